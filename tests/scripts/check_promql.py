#!/usr/bin/env python3
"""Runs every PromQL expression of the Grafana dashboard and the alert rules against a
Prometheus server, so a renamed metric or a typo shows up before an operator sees an empty panel.

    tests/scripts/check_promql.py http://127.0.0.1:9090 [--require-data]

Expressions come from deploy/grafana/redis-observer.json (every panel target's `expr`, and the
template variables' `label_values(...)` queries, checked as `count by (label) (...)`) and from
deploy/prometheus/alerts.yml (every `expr`). Dashboard variables are replaced before querying:
`$__rate_interval`/`$__interval` by --rate-interval (1m), `$__range` by --range (1h), constant
variables by their value, and every other variable by a match-all: a label matcher holding one
becomes `label=~".*"`.

One line per expression: OK (with the number of series) or FAIL (with Prometheus's error).
Exit status: 0 when all pass, 1 when any fails, 2 when Prometheus cannot be reached or the files
cannot be read.

--require-data also fails expressions that return nothing. Alert expressions are filtered by
their threshold, so for them it instead requires that every metric they use has series.

Standard library only.
"""

import argparse
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DASHBOARD = REPO / "deploy" / "grafana" / "redis-observer.json"
DEFAULT_ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"

# `$name`, `${name}`, `${name:format}`, `[[name]]`
VAR = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")
# A label matcher whose value holds a variable.
MATCHER_WITH_VAR = re.compile(
    r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*(?:\$|\[\[)(?:[^"\\]|\\.)*)"'
)
LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*$", re.S)
QUERY_RESULT = re.compile(r"^\s*query_result\((.*)\)\s*$", re.S)
# Metric names in an expression: an identifier followed by a selector's `{` or `[`, or one of
# our metric families (or `up`) written bare; never a function name (followed by `(`).
METRIC = re.compile(r"\b([A-Za-z_:][\w:]*)\s*[{\[]|\b(redis_\w+|up)\b(?!\s*\()")
NOT_METRICS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}


def substitute(expr, constants, rate_interval, range_):
    """The expression with dashboard variables replaced (see the module docstring)."""
    builtins = {
        "__rate_interval": rate_interval,
        "__interval": rate_interval,
        "__range": range_,
    }

    def name_of(m):
        return m.group(1) or m.group(2) or m.group(3)

    def matcher(m):
        label, op, value = m.group(1), m.group(2), m.group(3)
        names = [name_of(v) for v in VAR.finditer(value)]
        if all(n in constants or n in builtins for n in names):
            return m.group(0)  # replaced below
        # A match-all, whatever the operator: a negated variable would otherwise match nothing.
        return f'{label}=~".*"'

    expr = MATCHER_WITH_VAR.sub(matcher, expr)

    def var(m):
        n = name_of(m)
        if n in builtins:
            return builtins[n]
        if n in constants:
            return constants[n]
        return ".*"

    return VAR.sub(var, expr)


def dashboard_exprs(path):
    """(where, expr, kind) for every query of the dashboard; kind is "panel" or "variable"."""
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    constants = {}
    out = []
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") in ("constant", "custom", "textbox"):
            q = v.get("query")
            if isinstance(q, str) and v.get("type") == "constant":
                constants[v["name"]] = q
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query", "")
        if not isinstance(q, str) or not q.strip():
            continue
        m = LABEL_VALUES.match(q)
        if m:
            out.append((f"variable ${v['name']}", f"count by ({m.group(2)}) ({m.group(1)})", "variable"))
            continue
        m = QUERY_RESULT.match(q)
        if m:
            out.append((f"variable ${v['name']}", m.group(1), "variable"))
        # label_values(label), label_names(), metrics(): not PromQL, nothing to check.

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []) or []:
                expr = t.get("expr")
                if isinstance(expr, str) and expr.strip() and not t.get("hide"):
                    where = f'panel "{p.get("title", "?")}" [{t.get("refId", "?")}]'
                    out.append((where, expr, "panel"))
            walk(p.get("panels", []) or [])  # panels inside collapsed rows

    walk(dash.get("panels", []))
    return out, constants


def alert_exprs(path):
    """(where, expr, "alert") for every rule in a rules file: `expr:` on one line (plain or
    quoted) or as a `|`/`>` block. A minimal reader, enough for the files this project writes."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    out = []
    name = "?"
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^(\s*)(?:-\s+)?(alert|record):\s*(.+?)\s*$", line)
        if m:
            name = f"{m.group(2)} {unquote(m.group(3))}"
        m = re.match(r"^(\s*)(?:-\s+)?expr:\s*(.*?)\s*$", line)
        if not m:
            i += 1
            continue
        indent = len(m.group(1))
        value = m.group(2)
        if value[:1] in ("|", ">"):
            folded = value[0] == ">"
            block = []
            i += 1
            while i < len(lines):
                nxt = lines[i]
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                block.append(nxt.strip())
                i += 1
            expr = (" " if folded else "\n").join(block).strip()
        else:
            expr = unquote(strip_comment(value))
            i += 1
        out.append((f"rule {name}", expr, "alert"))
    return out


def strip_comment(value):
    """A plain YAML scalar ends at ` #`."""
    if value[:1] in ("'", '"'):
        return value
    return re.split(r"\s+#", value, maxsplit=1)[0]


def unquote(value):
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return json.loads(value)
    return value


class Unreachable(Exception):
    pass


def query(base, expr, timeout):
    """(series count, None) or (None, error text)."""
    url = base.rstrip("/") + "/api/v1/query"
    data = urllib.parse.urlencode({"query": expr}).encode()
    req = urllib.request.Request(url, data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as e:
        # Bad queries come back as 400/422 with a JSON error body.
        try:
            body = json.load(e)
        except (ValueError, OSError):
            return None, f"HTTP {e.code} {e.reason}"
    except (urllib.error.URLError, OSError) as e:
        raise Unreachable(f"cannot reach Prometheus at {base}: {e}") from e
    except ValueError as e:
        return None, f"not JSON from Prometheus: {e}"
    if body.get("status") != "success":
        return None, f"{body.get('errorType', 'error')}: {body.get('error', body)}"
    result = body.get("data", {}).get("result")
    if body.get("data", {}).get("resultType") == "scalar":
        return 1, None
    return (len(result) if isinstance(result, list) else 0), None


def metrics_in(expr):
    names = set()
    for m in METRIC.finditer(expr):
        n = m.group(1) or m.group(2)
        if n not in NOT_METRICS:
            names.add(n)
    return sorted(names)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prometheus", help="base URL, e.g. http://127.0.0.1:9090")
    ap.add_argument("--dashboard", default=str(DEFAULT_DASHBOARD))
    ap.add_argument("--alerts", default=str(DEFAULT_ALERTS))
    ap.add_argument("--require-data", action="store_true",
                    help="also fail expressions that return no series")
    ap.add_argument("--rate-interval", default="1m", help="for $__rate_interval (default 1m)")
    ap.add_argument("--range", default="1h", help="for $__range (default 1h)")
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()

    try:
        dash, constants = dashboard_exprs(args.dashboard)
        rules = alert_exprs(args.alerts)
    except (OSError, ValueError) as e:
        print(f"cannot read the dashboard or the rules: {e}", file=sys.stderr)
        return 2
    if not dash or not rules:
        print(f"found {len(dash)} dashboard and {len(rules)} rule expressions: expected some",
              file=sys.stderr)
        return 2

    failed = 0
    try:
        for where, raw, kind in dash + rules:
            expr = substitute(raw, constants, args.rate_interval, args.range)
            one_line = " ".join(expr.split())
            n, err = query(args.prometheus, expr, args.timeout)
            if err is None and args.require_data:
                if kind == "alert":
                    empty = []
                    for metric in metrics_in(expr):
                        m, e = query(args.prometheus, f"count({{__name__={json.dumps(metric)}}})",
                                     args.timeout)
                        if e or not m:
                            empty.append(metric)
                    if empty:
                        err = f"no series for {', '.join(empty)}"
                elif not n:
                    err = "no data"
            if err is None:
                print(f"OK   {where}: {n} series: {one_line}")
            else:
                failed += 1
                print(f"FAIL {where}: {err}: {one_line}")
    except Unreachable as e:
        print(str(e), file=sys.stderr)
        return 2
    total = len(dash) + len(rules)
    print(f"{total - failed}/{total} expressions passed"
          + (" (with data)" if args.require_data else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
