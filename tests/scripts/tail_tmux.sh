#!/usr/bin/env bash
# `redis-observer tail` in a real terminal (tmux): colors, aligned columns, lines cut to the
# terminal width, -f showing appended lines, Ctrl-C ending it; and, without a terminal, plain
# text, --color always, and a closed pipe (`| head`) ending it quietly.
#
# Usage: tests/scripts/tail_tmux.sh BINARY [SAMPLE_LOG]
#   BINARY      the redis-observer binary
#   SAMPLE_LOG  optional: a real command log, also shown in the terminal (must not crash and
#               must come out colored)
# Exits non-zero, with the pane's contents, on the first failed check. Needs tmux, python3, GNU grep
# and awk.
set -euo pipefail

if [[ $# -lt 1 || ! -x $1 ]]; then
    echo "usage: $0 BINARY [SAMPLE_LOG]" >&2
    exit 2
fi
BIN=$(realpath "$1")
SAMPLE=${2:+$(realpath "$2")}
command -v tmux >/dev/null || { echo "tmux not installed" >&2; exit 2; }

WORK=$(mktemp -d)
SOCK="$WORK/tmux.sock" # a private server: never touches the user's tmux sessions
COLS=160
ROWS=40
cleanup() {
    tmux -S "$SOCK" kill-server 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

tm() { tmux -S "$SOCK" "$@"; }
capture() {
    tm capture-pane -p -e -t t >"$WORK/pane-esc.txt"
    tm capture-pane -p -t t >"$WORK/pane.txt"
    [[ -n ${DEBUG_TAIL_TMUX:-} ]] && cat "$WORK/pane.txt" >&2 || true
}
fail() {
    echo "FAIL: $*" >&2
    if [[ -f $WORK/pane-esc.txt ]]; then
        echo "--- pane (escapes shown by cat -v) ---" >&2
        cat -v "$WORK/pane-esc.txt" >&2
    fi
    exit 1
}
pass() { echo "ok   $*"; }
# Waits (up to 10 s) until the pane shows the extended regex $1.
wait_for() {
    local i
    for ((i = 0; i < 100; i++)); do
        capture
        if grep -Eq -- "$1" "$WORK/pane.txt"; then
            # Once more, so both captures show the same, settled screen.
            sleep 0.1
            capture
            return 0
        fi
        sleep 0.1
    done
    fail "timed out waiting for /$1/ in the pane"
}
# Clears the screen and runs a command line in the pane's shell.
run_in_pane() {
    tm send-keys -t t "clear" Enter
    tm send-keys -t t "$1" Enter
}

# --- a log whose columns are known ----------------------------------------------------------
line() { # ts-seconds client command key(json) args(json) status reply(json) error(json) latency(json)
    printf '{"ts":"2024-05-01T12:34:%02d.%06dZ","client":"%s","server":"127.0.0.1:6379","command":"%s","key":%s,"args":%s,"status":"%s","reply_type":null,"reply":%s,"error":%s,"latency_us":%s,"req_bytes":30,"resp_bytes":10}\n' \
        "$1" "$(( $1 * 1111 ))" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$9"
}
LONG=$(printf 'x%.0s' $(seq 1 300))
{
    line 1 127.0.0.1:51000 GET '"user:1"' '["user:1"]' ok '"\"alice\""' null 182
    line 2 127.0.0.1:51001 SET '"user:2"' '["user:2","v","EX","10"]' ok '"OK"' null 1520
    line 3 127.0.0.1:51002 INCR '"user:3"' '["user:3"]' error null '"WRONGTYPE Operation against a key holding the wrong kind of value"' 31
    line 4 127.0.0.1:51003 BLPOP '"queue"' '["queue","0"]' unanswered null null null
    line 5 127.0.0.1:51004 'CLIENT REPLY' null '["OFF"]' no_reply null null null
    line 6 127.0.0.1:51005 'CONFIG GET' null '["maxmemory"]' ok '"[2 items]"' null 15240
    line 7 127.0.0.1:51006 SET '"big"' "[\"big\",\"$LONG\"]" ok '"OK"' null 2310000
    echo 'not json at all'
    echo '{"ts":"2024-05-01T12:34:08.000000Z","client":"127.0.0.1:51007","server":"127.0.0.1:6379","command":null,"status":"notice","notice":"lines_dropped","count":3}'
    line 9 127.0.0.1:51008 GET '"user:9"' '["user:9"]' ok '"\"bob\""' null 95
} >"$WORK/sample.log"
N_TIMED=9 # lines that start with a time

# A clean shell: no rc files, a known prompt, colors allowed.
tm new-session -d -s t -x "$COLS" -y "$ROWS" \
    "env -i PATH=$PATH HOME=$WORK HISTFILE=/dev/null TERM=xterm-256color PS1='$ ' bash --norc --noprofile"
sleep 0.3
tm set-option -t t history-limit 5000 >/dev/null

# --- 1. colors and columns on a terminal ----------------------------------------------------
run_in_pane "'$BIN' tail '$WORK/sample.log'; echo EXIT=\$?"
wait_for '^EXIT=[0-9]+'
grep -q '^EXIT=0$' "$WORK/pane.txt" || fail "tail exited non-zero"
pass "tail on a terminal exits 0"

# tmux's capture-pane -e re-encodes styles (`\e[1;31m` comes back as `\e[1m\e[31m`) and carries
# them across lines, so decode the whole capture into per-character styles and ask about words.
# style_of REGEX: prints the style of the first character of REGEX's first match (of its group 1
# if it has one), as "fg=<30..37|none> bold=<0|1> dim=<0|1>", or "absent".
style_of() {
    python3 - "$WORK/pane-esc.txt" "$1" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
state = {"fg": "none", "bold": 0, "dim": 0}
lines, chars, styles = [], [], []
i = 0
while i < len(text):
    m = re.match(r"\x1b\[([0-9;]*)m", text[i:])
    if m:
        codes = [int(c) if c else 0 for c in m.group(1).split(";")]
        j = 0
        while j < len(codes):
            c = codes[j]
            if c == 0:
                state = {"fg": "none", "bold": 0, "dim": 0}
            elif c == 1:
                state["bold"] = 1
            elif c == 2:
                state["dim"] = 1
            elif c == 22:
                state["bold"] = state["dim"] = 0
            elif 30 <= c <= 37:
                state["fg"] = str(c)
            elif c == 39:
                state["fg"] = "none"
            elif c in (38, 48):  # extended colors: skip their parameters
                j += 2 if codes[j + 1 : j + 2] == [5] else 4
            j += 1
        i += m.end()
        continue
    ch = text[i]
    if ch == "\n":
        lines.append(("".join(chars), styles))
        chars, styles = [], []
    else:
        chars.append(ch)
        styles.append(dict(state))
    i += 1
lines.append(("".join(chars), styles))
for line, st in lines:
    m = re.search(sys.argv[2], line)
    if m:
        s = st[m.start(1) if m.re.groups else m.start()]
        print(f"fg={s['fg']} bold={s['bold']} dim={s['dim']}")
        break
else:
    print("absent")
PY
}
expect_style() { # regex expected-substring-of-style what
    local got
    got=$(style_of "$1")
    [[ $got == *"$2"* ]] || fail "$3: /$1/ has style '$got', expected '$2'"
}
expect_style ' (ok)  ' 'fg=32' "status ok is not green"
expect_style ' (error)  ' 'fg=31' "status error is not red"
expect_style ' (unanswered) ' 'fg=33' "status unanswered is not yellow"
expect_style ' (no_reply) ' 'dim=1' "status no_reply is not dim"
expect_style ' (GET) ' 'fg=36' "command names are not cyan"
expect_style 'WRONGTYPE' 'fg=31' "error text is not red"
expect_style '^not json at all' 'dim=1' "a line that is not JSON is not dimmed"
expect_style '^12:34:08.000000  127.0.0.1:51007  notice' 'dim=1' "a notice is not dimmed"
expect_style 'count=3' 'dim=1' "a notice is not dimmed to its end"
expect_style '^12:34:09' 'dim=1' "times are not dimmed"
expect_style '127.0.0.1:51008' 'fg=none bold=0 dim=0' "plain columns are styled"
pass "colors: ok green, error red, unanswered yellow, no_reply dim, non-JSON and notices dim"

TIMED=$(grep -cE '^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}  ' "$WORK/pane.txt" || true)
[[ $TIMED -eq $N_TIMED ]] || fail "expected $N_TIMED lines starting with a time, got $TIMED (wrapped or missing lines?)"
# Every command line has its status word, and the end of its latency, at the same column.
STATUS_COLS=$(awk '/^[0-9][0-9]:/ && match($0, /  (ok|error|unanswered|no_reply) /) { print RSTART }' "$WORK/pane.txt" | sort -u)
[[ $(wc -l <<<"$STATUS_COLS") -eq 1 && -n $STATUS_COLS ]] || fail "status column not aligned (columns: $(echo $STATUS_COLS))"
LAT_ENDS=$(awk '/^[0-9][0-9]:/ && match($0, /[0-9](us|ms|s)  /) { print RSTART + RLENGTH }' "$WORK/pane.txt" | sort -u)
[[ $(wc -l <<<"$LAT_ENDS") -eq 1 && -n $LAT_ENDS ]] || fail "latency column not right-aligned (ends: $(echo $LAT_ENDS))"
KEY_COLS=$(awk '/^[0-9][0-9]:/ && match($0, /  (user:[0-9]|queue|big) /) { print RSTART }' "$WORK/pane.txt" | sort -u)
[[ $(wc -l <<<"$KEY_COLS") -eq 1 && -n $KEY_COLS ]] || fail "key column not aligned (columns: $(echo $KEY_COLS))"
pass "columns aligned (status at column $STATUS_COLS, latency ending at $LAT_ENDS)"

# (awk may count bytes: make the one non-ASCII character we print a single byte first)
LONGEST=$(sed 's/…/./g' "$WORK/pane.txt" | awk '{ n = length($0); if (n > m) m = n } END { print m + 0 }')
[[ $LONGEST -le $COLS ]] || fail "a line is wider than the terminal ($LONGEST > $COLS)"
grep -Eq '^[0-9:.]+  127\.0\.0\.1:51006 .*x…$' "$WORK/pane.txt" || fail "the long argument is not cut with … at the terminal width"
pass "long arguments cut to the terminal width"

# --- 2. -f follows appended lines; Ctrl-C ends it -------------------------------------------
: >"$WORK/follow.log"
# No `; echo` after it: bash abandons the rest of a command list killed by SIGINT.
run_in_pane "'$BIN' tail -f '$WORK/follow.log'"
sleep 0.5
line 21 127.0.0.1:52000 HSET '"h:1"' '["h:1","f","v"]' ok '"1"' null 77 >>"$WORK/follow.log"
line 22 127.0.0.1:52000 HGETALL '"h:1"' '["h:1"]' ok '"[2 items]"' null 88 >>"$WORK/follow.log"
wait_for 'HGETALL +h:1'
grep -q 'HSET' "$WORK/pane.txt" || fail "-f lost the first appended line"
grep -q '^EXIT=' "$WORK/pane.txt" && fail "-f exited by itself"
pass "-f shows appended lines"
mv "$WORK/follow.log" "$WORK/follow.log.1"
line 23 127.0.0.1:52001 DEL '"h:1"' '["h:1"]' ok '"1"' null 99 >"$WORK/follow.log"
wait_for 'DEL +h:1'
pass "-f continues across a rename rotation"
tm send-keys -t t C-c
wait_for '^\$ ?$'
tm send-keys -t t 'echo EXIT=$?' Enter
wait_for '^EXIT=[0-9]+'
grep -q '^EXIT=130$' "$WORK/pane.txt" || fail "Ctrl-C: expected exit by SIGINT (130), got $(grep '^EXIT=' "$WORK/pane.txt")"
pass "Ctrl-C ends -f (exit 130, by SIGINT)"

# --- 3. no terminal: plain text; --color always; closed pipes --------------------------------
"$BIN" tail "$WORK/sample.log" >"$WORK/plain.txt" || fail "tail to a file failed"
if grep -q $'\e' "$WORK/plain.txt"; then fail "escape codes in piped output"; fi
[[ $(grep -c 'ok ' "$WORK/plain.txt") -ge 4 ]] || fail "piped output lacks the ok lines"
"$BIN" tail --color always "$WORK/sample.log" | grep -q $'\e\\[32mok' || fail "--color always: no colors when piped"
"$BIN" tail --json --errors "$WORK/sample.log" >"$WORK/json.txt" 2>/dev/null
# The error line, and the notice (notices pass every filter), unchanged.
[[ $(grep -c '"status":"error"' "$WORK/json.txt") -eq 1 ]] || fail "--json --errors: no error line"
grep -Fxq "$(grep '"status":"error"' "$WORK/sample.log")" "$WORK/json.txt" || fail "--json changed the line"
if grep -qv '"status":"\(error\|notice\)"' "$WORK/json.txt"; then fail "--json --errors let other lines through"; fi
pass "plain text when piped, --color always, --json"

for i in $(seq 1 2000); do cat "$WORK/sample.log"; done >"$WORK/big.log"
set +e
"$BIN" tail "$WORK/big.log" 2>"$WORK/err.txt" | head -n 1 >/dev/null
RC=${PIPESTATUS[0]}
set -e
[[ $RC -eq 0 && ! -s $WORK/err.txt ]] || fail "| head: exit $RC, stderr: $(cat "$WORK/err.txt")"
# With -f and no new lines, a closed pipe must still end it (within a poll or two).
set +e
BIN="$BIN" LOG="$WORK/sample.log" timeout 5 bash -c '"$BIN" tail -f "$LOG" | head -n 1 >/dev/null; exit ${PIPESTATUS[0]}'
RC=$?
set -e
[[ $RC -eq 0 ]] || fail "tail -f | head: exit $RC (124: it did not end)"
pass "closed pipe ends it quietly (exit 0), also with -f"

# --- 4. a real log, if given -------------------------------------------------------------------
if [[ -n $SAMPLE ]]; then
    run_in_pane "'$BIN' tail '$SAMPLE'; echo EXIT=\$?"
    wait_for '^EXIT=[0-9]+'
    grep -q '^EXIT=0$' "$WORK/pane.txt" || fail "tail on $SAMPLE exited non-zero"
    if [[ $(grep -c . "$SAMPLE") -gt 0 ]]; then
        grep -q $'\e\\[' "$WORK/pane-esc.txt" || fail "no colors in the pane for $SAMPLE"
    fi
    pass "tail on $SAMPLE"
fi

echo "all tail terminal checks passed"
