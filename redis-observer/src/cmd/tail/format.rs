//! Rendering command-log lines as aligned columns, with ANSI colors on a terminal.
//!
//! The one text layout of the command log: `tail` and `--log-format text` both print through
//! [`Formatter`] (a command line through [`Formatter::command_fields`], which `tail` reaches from
//! the parsed line and the text format straight from the record), so they write the same bytes
//! for the same lines.
//!
//! Columns: time (UTC), client, command, key, latency, status, reply or error text (with
//! ` (in MULTI)` / ` (refused)`), arguments.
//! Columns are as wide as the widest value seen so far (up to a cap), so a stream stays aligned
//! without reading ahead. Everything taken from the log is made safe to print: control and
//! bidirectional-formatting characters are escaped, since keys and values come from clients and
//! must not be able to drive the operator's terminal.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::command_log::LogLine;

/// How output looks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    /// ANSI colors.
    pub color: bool,
    /// Output is a terminal: cut long keys and replies to keep columns aligned.
    pub truncate: bool,
    /// Terminal width: lines are cut to fit (arguments first).
    pub width: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

struct Col {
    /// Starting width.
    min: usize,
    /// A column grows to fit what it has shown, up to this.
    grow_cap: usize,
    /// On a terminal, longer values are cut to this (with `…`).
    trunc_cap: Option<usize>,
    align: Align,
}

const TIME: usize = 0;
const CLIENT: usize = 1;
const COMMAND: usize = 2;
const KEY: usize = 3;
const LATENCY: usize = 4;
const STATUS: usize = 5;
const REPLY: usize = 6;
const ARGS: usize = 7;
const NCOLS: usize = 8;

const fn col(min: usize, grow_cap: usize, trunc_cap: Option<usize>, align: Align) -> Col {
    Col {
        min,
        grow_cap,
        trunc_cap,
        align,
    }
}

const COLS: [Col; NCOLS] = [
    // TIME: HH:MM:SS.uuuuuu
    col(15, 15, None, Align::Left),
    // CLIENT: 127.0.0.1:51234 up to [ipv6]:port
    col(15, 47, None, Align::Left),
    // COMMAND: fits `CLIENT REPLY` from the start
    col(12, 24, None, Align::Left),
    // KEY
    col(10, 32, Some(32), Align::Left),
    // LATENCY
    col(8, 10, None, Align::Right),
    // STATUS: `unanswered`
    col(10, 10, None, Align::Left),
    // REPLY
    col(4, 32, Some(40), Align::Left),
    // ARGS: last, never padded
    col(0, 0, None, Align::Left),
];

const SEP: &str = "  ";
/// On a terminal, the key column shrinks (down to its minimum) to leave this much room for the
/// reply or error.
const REPLY_ROOM: usize = 24;

// SGR parameters.
const DIM: &str = "2";
const RED: &str = "31";
const BOLD_RED: &str = "1;31";
const GREEN: &str = "32";
const YELLOW: &str = "33";
const MAGENTA: &str = "35";
const BOLD_CYAN: &str = "1;36";
const PLAIN: &str = "";

/// Fields every line has; the others are shown as `name=value` on push and notice lines.
const STANDARD_FIELDS: [&str; 22] = [
    "ts",
    "client",
    "server",
    "command",
    "status",
    "reply_type",
    "reply",
    "latency_us",
    "req_bytes",
    "resp_bytes",
    // The connection's identity: in the client column of command lines, noise elsewhere.
    "client_name",
    "client_lib",
    "user",
    "db",
    "resp",
    "client_pid",
    "client_comm",
    "client_container",
    "server_pid",
    "server_comm",
    "client_pod",
    "client_cgroup",
];

/// The values a command line shows, borrowed: from a parsed [`LogLine`] (`tail`), or straight
/// from the record (`--log-format text`, which thereby skips writing and parsing JSON). Each
/// text is the JSON string's value, unescaped.
#[derive(Clone, Debug)]
pub struct CommandFields<'a, A> {
    pub ts: &'a str,
    pub client: Option<&'a str>,
    pub client_name: Option<&'a str>,
    pub client_comm: Option<&'a str>,
    pub command: &'a str,
    pub key: Option<&'a str>,
    /// The arguments, the key (if it is one) first.
    pub args: A,
    pub status: &'a str,
    pub reply: Option<&'a str>,
    pub error: Option<&'a str>,
    pub latency_us: Option<f64>,
    pub in_transaction: bool,
    pub protocol_error: bool,
}

/// Renders lines; keeps the column widths seen so far.
#[derive(Clone, Debug)]
pub struct Formatter {
    style: Style,
    widths: [usize; NCOLS],
    /// One reused buffer per cell of the line being built.
    cells: [String; NCOLS],
    /// Widest the key column may be on this line (it yields to the reply on narrow terminals).
    key_cap: usize,
}

impl Formatter {
    pub fn new(style: Style) -> Self {
        Self {
            style,
            widths: COLS.map(|c| c.min),
            cells: Default::default(),
            key_cap: usize::MAX,
        }
    }

    pub fn style(&self) -> Style {
        self.style
    }

    /// The terminal was resized.
    pub fn set_width(&mut self, width: Option<usize>) {
        self.style.width = width;
    }

    /// One JSON object of the log: a command line when it is one of the log's own (`typed`,
    /// with `command` set), anything else as [`Formatter::other`] shows it. This is the one text
    /// layout: `tail` and `--log-format text` both come here. Appends one line, without the
    /// newline, to `out`.
    pub fn object(&mut self, m: &Map<String, Value>, typed: Option<&LogLine>, out: &mut String) {
        match typed {
            Some(l) if l.command.is_some() => self.command(l, out),
            _ => self.other(m, out),
        }
    }

    /// A command line (`command` is set). Appends one line, without the newline, to `out`.
    pub fn command(&mut self, l: &LogLine, out: &mut String) {
        self.command_fields(
            &CommandFields {
                ts: &l.ts,
                client: l.client.as_deref(),
                client_name: l.client_name.as_deref(),
                client_comm: l.client_comm.as_deref(),
                command: l.command.as_deref().unwrap_or_default(),
                key: l.key.as_deref(),
                args: l.args.iter().map(String::as_str),
                status: &l.status,
                reply: l.reply.as_deref(),
                error: l.error.as_deref(),
                latency_us: l.latency_us,
                in_transaction: l.in_transaction,
                protocol_error: l.protocol_error,
            },
            out,
        );
    }

    /// A command line from its values (see [`CommandFields`]). Appends one line, without the
    /// newline, to `out`.
    pub fn command_fields<'a, A>(&mut self, l: &CommandFields<'a, A>, out: &mut String)
    where
        A: Iterator<Item = &'a str> + Clone,
    {
        for c in &mut self.cells {
            c.clear();
        }
        let status = l.status;
        time_into(l.ts, &mut self.cells[TIME]);
        // Who is calling: `name@address` when the client named itself (or its process is known).
        if let Some(who) = l.client_name.or(l.client_comm) {
            sanitize_into(&mut self.cells[CLIENT], who);
            self.cells[CLIENT].push('@');
        }
        sanitize_into(&mut self.cells[CLIENT], l.client.unwrap_or("-"));
        sanitize_into(&mut self.cells[COMMAND], l.command);
        let key = l.key;
        let key_sgr = match key {
            Some(k) => {
                arg_into(&mut self.cells[KEY], k);
                PLAIN
            }
            None => {
                self.cells[KEY].push('-');
                DIM
            }
        };
        let latency = l.latency_us;
        let latency_sgr = match latency {
            Some(us) => {
                latency_into(&mut self.cells[LATENCY], us);
                if us >= 100_000.0 {
                    BOLD_RED
                } else if us >= 10_000.0 {
                    YELLOW
                } else {
                    PLAIN
                }
            }
            None => {
                self.cells[LATENCY].push('-');
                DIM
            }
        };
        sanitize_into(&mut self.cells[STATUS], status);
        let status_sgr = match status {
            "ok" => GREEN,
            "error" => BOLD_RED,
            "unanswered" | "reply_dropped" => YELLOW,
            "no_reply" | "aborted" => DIM,
            _ => PLAIN,
        };
        // The error text for errors, else the reply's rendering.
        let (text, reply_sgr) = match (l.error, status) {
            (Some(e), _) => (Some(e), RED),
            (None, "error") => (l.reply, RED),
            (None, _) => (l.reply, PLAIN),
        };
        let reply_sgr = match text {
            Some(t) => {
                sanitize_into(&mut self.cells[REPLY], t);
                reply_sgr
            }
            None => {
                self.cells[REPLY].push('-');
                DIM
            }
        };
        // What the status alone does not say.
        if l.in_transaction {
            self.cells[REPLY].push_str(" (in MULTI)");
        }
        if l.protocol_error {
            self.cells[REPLY].push_str(" (refused)");
        }
        let mut args = l.args.clone().peekable();
        if args.peek().is_some_and(|a| Some(*a) == key) {
            args.next();
        }
        for (i, a) in args.enumerate() {
            if i > 0 {
                self.cells[ARGS].push(' ');
            }
            arg_into(&mut self.cells[ARGS], a);
        }
        self.key_cap = match self.style.width {
            Some(w) => {
                let others = [TIME, CLIENT, COMMAND, LATENCY, STATUS]
                    .iter()
                    .map(|&c| self.widths.get(c).copied().unwrap_or(0))
                    .sum::<usize>()
                    + REPLY_ROOM
                    + 6 * SEP.len();
                w.saturating_sub(others).max(COLS[KEY].min)
            }
            None => usize::MAX,
        };
        // Errors are what one reads an error line for: not cut to the column, only to the line.
        let reply_col = if status == "error" { None } else { Some(REPLY) };
        let layout = [
            (Some(TIME), DIM),
            (Some(CLIENT), PLAIN),
            (Some(COMMAND), BOLD_CYAN),
            (Some(KEY), key_sgr),
            (Some(LATENCY), latency_sgr),
            (Some(STATUS), status_sgr),
            (reply_col, reply_sgr),
            (None, DIM),
        ];
        self.emit(&layout, false, out);
    }

    /// A line that is not a command (`command` null or absent): a push, a notice, or JSON from
    /// elsewhere. Notices and unknown lines are dimmed.
    pub fn other(&mut self, m: &Map<String, Value>, out: &mut String) {
        for c in &mut self.cells {
            c.clear();
        }
        time_of(m, &mut self.cells[0]);
        sanitize_into(&mut self.cells[1], str_field(m, "client").unwrap_or("-"));
        let status = str_field(m, "status").unwrap_or("?");
        let push = status == "push";
        sanitize_into(&mut self.cells[2], status);
        let details = &mut self.cells[3];
        // As the daemon's text format shows them: the summary (`message [3 items]`), the
        // elements after the first (`news hello`), a notice's sentence, then anything else.
        if let Some(r) = str_field(m, "reply") {
            sanitize_into(details, r);
        }
        if let Some(args) = m
            .get("args")
            .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
        {
            if !details.is_empty() {
                details.push(' ');
            }
            args_into(details, args, None);
        }
        if let Some(n) = str_field(m, "notice") {
            if !details.is_empty() {
                details.push(' ');
            }
            sanitize_into(details, n);
        }
        for (name, v) in m {
            let empty = match v {
                Value::Null => true,
                Value::String(s) => s.is_empty(),
                Value::Array(a) => a.is_empty(),
                _ => false,
            };
            let shown = matches!(name.as_str(), "notice" | "args")
                || STANDARD_FIELDS.contains(&name.as_str());
            if empty || shown {
                continue;
            }
            if !details.is_empty() {
                details.push(' ');
            }
            sanitize_into(details, name);
            details.push('=');
            value_into(details, v);
        }
        let layout = [
            (Some(TIME), DIM),
            (Some(CLIENT), PLAIN),
            (Some(COMMAND), if push { MAGENTA } else { DIM }),
            (None, PLAIN),
        ];
        self.emit(&layout, !push, out);
    }

    /// A line that is not a JSON object: as it is (control characters escaped on a terminal or
    /// with colors), dimmed.
    pub fn raw(&mut self, line: &[u8], out: &mut String) {
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        open(out, self.style.color, DIM);
        if self.style.color || self.style.truncate {
            sanitize_into(out, text);
        } else {
            out.push_str(text);
        }
        close(out, self.style.color, DIM);
    }

    /// Writes `self.cells[i]` for each `layout[i]` = (column whose width it uses, SGR), separated
    /// by two spaces, dropping trailing empty cells and cutting to the terminal width.
    fn emit(&mut self, layout: &[(Option<usize>, &'static str)], all_dim: bool, out: &mut String) {
        let color = self.style.color;
        let Some(last) = (0..layout.len())
            .rev()
            .find(|&i| self.cells.get(i).is_some_and(|c| !c.is_empty()))
        else {
            return;
        };
        if all_dim {
            open(out, color, DIM);
        }
        let mut used = 0usize;
        for (i, &(col, sgr)) in layout.iter().enumerate().take(last + 1) {
            let Some(text) = self.cells.get(i) else { break };
            if i > 0 {
                if self.style.width.is_some_and(|w| used + SEP.len() >= w) {
                    break;
                }
                out.push_str(SEP);
                used += SEP.len();
            }
            let full = if text.is_ascii() {
                text.len()
            } else {
                text.chars().count()
            };
            let spec = col.and_then(|c| COLS.get(c));
            let mut cap = match spec.and_then(|s| s.trunc_cap) {
                Some(c) if self.style.truncate => c,
                _ => usize::MAX,
            };
            let mut grow_cap = spec.map_or(0, |s| s.grow_cap);
            if col == Some(KEY) {
                cap = cap.min(self.key_cap);
                grow_cap = grow_cap.min(self.key_cap);
            }
            if let Some(w) = self.style.width {
                cap = cap.min(w.saturating_sub(used));
            }
            let shown = full.min(cap);
            let mut pad = 0;
            let mut right = false;
            if let (Some(width), Some(spec)) = (col.and_then(|c| self.widths.get_mut(c)), spec) {
                *width = (*width).max(full.min(grow_cap));
                if i < last {
                    let target = if col == Some(KEY) {
                        (*width).min(self.key_cap)
                    } else {
                        *width
                    };
                    pad = target.saturating_sub(shown);
                    if let Some(w) = self.style.width {
                        pad = pad.min(w.saturating_sub(used + shown));
                    }
                }
                right = spec.align == Align::Right;
            }
            if right {
                push_spaces(out, pad);
            }
            let sgr = if all_dim { PLAIN } else { sgr };
            open(out, color, sgr);
            push_truncated(out, text, full, shown);
            close(out, color, sgr);
            if !right {
                push_spaces(out, pad);
            }
            used += shown + pad;
        }
        if all_dim {
            close(out, color, DIM);
        }
    }
}

fn open(out: &mut String, color: bool, sgr: &str) {
    if color && !sgr.is_empty() {
        out.push_str("\x1b[");
        out.push_str(sgr);
        out.push('m');
    }
}

fn close(out: &mut String, color: bool, sgr: &str) {
    if color && !sgr.is_empty() {
        out.push_str("\x1b[0m");
    }
}

fn push_spaces(out: &mut String, mut n: usize) {
    const SPACES: &str = "                                                                ";
    while n > 0 {
        let k = n.min(SPACES.len());
        out.push_str(SPACES.get(..k).unwrap_or_default());
        n -= k;
    }
}

/// `text` (of `full` characters) cut to `shown` characters, the last one `…` when cut.
fn push_truncated(out: &mut String, text: &str, full: usize, shown: usize) {
    if shown >= full {
        out.push_str(text);
    } else if shown > 0 {
        out.extend(text.chars().take(shown - 1));
        out.push('…');
    }
}

fn str_field<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    m.get(name).and_then(Value::as_str)
}

/// `2024-05-01T12:34:56.123456Z` → `12:34:56.123456` (UTC, as logged); anything else as it is.
fn time_of(m: &Map<String, Value>, out: &mut String) {
    match str_field(m, "ts") {
        Some(ts) => time_into(ts, out),
        None => out.push('-'),
    }
}

fn time_into(ts: &str, out: &mut String) {
    match hms(ts) {
        Some((hms, frac)) => {
            out.push_str(hms);
            out.push('.');
            // ASCII digits (checked by `hms`).
            let shown = frac.get(..frac.len().min(6)).unwrap_or_default();
            out.push_str(shown);
            out.push_str("000000".get(shown.len()..).unwrap_or_default());
        }
        None => sanitize_into(out, ts),
    }
}

/// (`HH:MM:SS`, fraction digits) of an RFC 3339 timestamp.
fn hms(ts: &str) -> Option<(&str, &str)> {
    // The log's own shape, `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`, checked a byte at a time; the same
    // answer as the general parse below.
    let b = ts.as_bytes();
    if b.len() == 27
        && b.get(10) == Some(&b'T')
        && b.get(19) == Some(&b'.')
        && b.get(26) == Some(&b'Z')
    {
        let digit_or = |r: std::ops::Range<usize>, sep: &[usize], c: u8| {
            r.clone().all(|i| {
                let x = b.get(i).copied().unwrap_or(0);
                if sep.contains(&i) {
                    x == c
                } else {
                    x.is_ascii_digit()
                }
            })
        };
        if digit_or(0..10, &[4, 7], b'-')
            && digit_or(11..19, &[13, 16], b':')
            && digit_or(20..26, &[], 0)
        {
            return Some((ts.get(11..19)?, ts.get(20..26)?));
        }
    }
    let (_, time) = ts.split_once(['T', 't', ' '])?;
    let end = time.find(['Z', 'z', '+', '-']).unwrap_or(time.len());
    let time = time.get(..end)?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let b = hms.as_bytes();
    let shape_ok = b.len() == 8
        && b.iter().enumerate().all(|(i, c)| {
            if i == 2 || i == 5 {
                *c == b':'
            } else {
                c.is_ascii_digit()
            }
        });
    (shape_ok && frac.bytes().all(|c| c.is_ascii_digit())).then_some((hms, frac))
}

/// `182us`, `1.52ms`, `15.2ms`, `152ms`, `2.31s`: the units `--min-latency` accepts.
pub fn latency_into(out: &mut String, us: f64) {
    if !us.is_finite() || us < 0.0 {
        out.push('?');
        return;
    }
    let _ = if us < 999.5 {
        // What `{us:.0}` writes (round half to even), without `fmt`'s float machinery.
        push_u16(out, us.round_ties_even() as u16);
        out.push_str("us");
        Ok(())
    } else if us < 9_995.0 {
        write!(out, "{:.2}ms", us / 1e3)
    } else if us < 99_950.0 {
        write!(out, "{:.1}ms", us / 1e3)
    } else if us < 999_500.0 {
        write!(out, "{:.0}ms", us / 1e3)
    } else if us < 9_995_000.0 {
        write!(out, "{:.2}s", us / 1e6)
    } else if us < 99_950_000.0 {
        write!(out, "{:.1}s", us / 1e6)
    } else {
        write!(out, "{:.0}s", us / 1e6)
    };
}

/// `n` in decimal.
fn push_u16(out: &mut String, mut n: u16) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    for &d in digits.get(i..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

/// The arguments, each as [`arg_into`] renders it; the first one left out when it is the key
/// (already in its own column).
fn args_into(out: &mut String, args: &Value, key: Option<&Value>) {
    let Value::Array(args) = args else {
        value_into(out, args);
        return;
    };
    let skip = usize::from(matches!((args.first(), key), (Some(a), Some(k)) if a == k));
    for (i, a) in args.iter().skip(skip).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        value_into(out, a);
    }
}

/// A string as [`arg_into`] renders it; anything else as compact JSON, made safe to print.
fn value_into(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => arg_into(out, s),
        other => sanitize_into(out, &other.to_string()),
    }
}

/// As redis-cli would show it: bare when that is unambiguous, else in double quotes with
/// escapes. Backslashes are left alone: the log already escapes bytes that are not UTF-8 as
/// `\xHH`.
pub fn arg_into(out: &mut String, s: &str) {
    let quote = s.is_empty()
        || if s.is_ascii() {
            // The same test, a byte at a time (ASCII whitespace and controls).
            s.bytes().any(|c| {
                c.is_ascii_whitespace()
                    || c == 0x0b
                    || c == b'"'
                    || c == b'\''
                    || c.is_ascii_control()
            })
        } else {
            s.chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '\'' || needs_escape(c))
        };
    if !quote {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        if c == '"' {
            out.push_str("\\\"");
        } else {
            push_char_safe(out, c);
        }
    }
    out.push('"');
}

/// Appends `s` with control and bidi-formatting characters escaped.
pub fn sanitize_into(out: &mut String, s: &str) {
    let plain = if s.is_ascii() {
        !s.bytes().any(|c| c.is_ascii_control())
    } else {
        !s.chars().any(needs_escape)
    };
    if plain {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        push_char_safe(out, c);
    }
}

fn push_char_safe(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_escape(c) => {
            let n = u32::from(c);
            let _ = if n < 0x100 {
                write!(out, "\\x{n:02x}")
            } else {
                write!(out, "\\u{{{n:x}}}")
            };
        }
        c => out.push(c),
    }
}

/// C0/C1 controls and DEL (terminal escape sequences), and the invisible characters that reorder
/// or hide text (zero-width, bidi embeddings, overrides and isolates).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN_STYLE: Style = Style {
        color: false,
        truncate: false,
        width: None,
    };

    fn obj(json: &str) -> Map<String, Value> {
        match serde_json::from_str(json).unwrap() {
            Value::Object(m) => m,
            _ => panic!("not an object: {json}"),
        }
    }

    fn render(f: &mut Formatter, json: &str) -> String {
        let m = obj(json);
        let typed = serde_json::from_str::<LogLine>(json).ok();
        let mut out = String::new();
        f.object(&m, typed.as_ref(), &mut out);
        out
    }

    fn line(cmd: &str, key: &str, args: &str, status: &str, extra: &str) -> String {
        format!(
            r#"{{"ts":"2024-05-01T12:34:56.123456Z","client":"127.0.0.1:51234","server":"127.0.0.1:6379","command":"{cmd}","key":{key},"args":{args},"status":"{status}",{extra},"req_bytes":31,"resp_bytes":11}}"#
        )
    }

    #[test]
    fn plain_columns_exact() {
        let mut f = Formatter::new(PLAIN_STYLE);
        let get = line(
            "GET",
            r#""user:1""#,
            r#"["user:1"]"#,
            "ok",
            r#""reply_type":"bulk","reply":"\"alice\"","error":null,"latency_us":182"#,
        );
        assert_eq!(
            render(&mut f, &get),
            r#"12:34:56.123456  127.0.0.1:51234  GET           user:1         182us  ok          "alice""#
        );
        let set = line(
            "SET",
            r#""user:1""#,
            r#"["user:1","hello world","EX","10"]"#,
            "ok",
            r#""reply_type":"simple","reply":"OK","error":null,"latency_us":1520"#,
        );
        assert_eq!(
            render(&mut f, &set),
            r#"12:34:56.123456  127.0.0.1:51234  SET           user:1        1.52ms  ok          OK       "hello world" EX 10"#
        );
        let err = line(
            "INCR",
            r#""user:1""#,
            r#"["user:1"]"#,
            "error",
            r#""reply_type":"error","reply":null,"error":"WRONGTYPE Operation against a key holding the wrong kind of value","latency_us":31"#,
        );
        assert_eq!(
            render(&mut f, &err),
            "12:34:56.123456  127.0.0.1:51234  INCR          user:1          31us  error       WRONGTYPE Operation against a key holding the wrong kind of value"
        );
        let ping = line(
            "PING",
            "null",
            "[]",
            "unanswered",
            r#""reply_type":null,"reply":null,"error":null,"latency_us":null"#,
        );
        assert_eq!(
            render(&mut f, &ping),
            "12:34:56.123456  127.0.0.1:51234  PING          -                  -  unanswered  -"
        );
        // A longer command name widens its column for this and later lines.
        let cfg = line(
            "CLIENT SETNAME",
            "null",
            r#"["worker-1"]"#,
            "ok",
            r#""reply_type":"simple","reply":"OK","error":null,"latency_us":2500000"#,
        );
        assert_eq!(
            render(&mut f, &cfg),
            "12:34:56.123456  127.0.0.1:51234  CLIENT SETNAME  -              2.50s  ok          OK       worker-1"
        );
        assert_eq!(
            render(&mut f, &get),
            r#"12:34:56.123456  127.0.0.1:51234  GET             user:1         182us  ok          "alice""#
        );
    }

    #[test]
    fn client_name_in_the_client_column() {
        let mut f = Formatter::new(PLAIN_STYLE);
        let get = line(
            "GET",
            r#""k""#,
            r#"["k"]"#,
            "ok",
            r#""reply_type":"null","reply":"(nil)","error":null,"latency_us":100,"client_name":"orders-api","user":"default","db":0"#,
        );
        assert!(
            render(&mut f, &get).starts_with("12:34:56.123456  orders-api@127.0.0.1:51234  GET"),
            "{}",
            render(&mut f, &get)
        );
    }

    #[test]
    fn other_lines() {
        let mut f = Formatter::new(PLAIN_STYLE);
        let push = r#"{"ts":"2024-05-01T12:34:56.5Z","client":"[::1]:40000","server":"[::1]:6379","command":null,"key":null,"args":[],"status":"push","reply_type":"push","reply":"message news hi","error":null,"latency_us":null,"req_bytes":0,"resp_bytes":40}"#;
        assert_eq!(
            render(&mut f, push),
            "12:34:56.500000  [::1]:40000      push          message news hi"
        );
        // As the daemon writes them: a push's elements in `args`, a notice's sentence in
        // `notice`, the client and server null when the notice is about no connection.
        let push = r#"{"ts":"2024-05-01T12:34:56.6Z","client":"127.0.0.1:40001","server":"127.0.0.1:6379","command":null,"key":null,"args":["news","hello \"world\""],"status":"push","reply_type":"push","reply":"message [3 items]","error":null,"latency_us":null,"req_bytes":0,"resp_bytes":44}"#;
        assert_eq!(
            render(&mut f, push),
            r#"12:34:56.600000  127.0.0.1:40001  push          message [3 items] news "hello \"world\"""#
        );
        let notice = r#"{"ts":"2024-05-01T12:34:57Z","client":null,"server":null,"command":null,"key":null,"args":[],"status":"notice","reply_type":null,"reply":null,"error":null,"latency_us":null,"req_bytes":0,"resp_bytes":0,"notice":"dropped 3 log lines (writer queue full)"}"#;
        assert_eq!(
            render(&mut f, notice),
            "12:34:57.000000  -                notice        dropped 3 log lines (writer queue full)"
        );
        let notice = r#"{"ts":"2024-05-01T12:34:57Z","client":"127.0.0.1:5000","server":"127.0.0.1:6379","command":null,"status":"notice","notice":"bytes_missed","bytes":1200,"reason":"gap"}"#;
        assert_eq!(
            render(&mut f, notice),
            "12:34:57.000000  127.0.0.1:5000   notice        bytes_missed bytes=1200 reason=gap"
        );
        assert_eq!(render(&mut f, "{}"), "-                -                ?");
    }

    #[test]
    fn colors_and_terminal_width() {
        let mut f = Formatter::new(Style {
            color: true,
            truncate: true,
            width: Some(100),
        });
        let set = line(
            "SET",
            r#""k""#,
            r#"["k","a-very-long-value-that-does-not-fit-in-the-rest-of-the-line"]"#,
            "ok",
            r#""reply_type":"simple","reply":"OK","error":null,"latency_us":20000"#,
        );
        let out = render(&mut f, &set);
        assert_eq!(
            out,
            "\x1b[2m12:34:56.123456\x1b[0m  127.0.0.1:51234  \x1b[1;36mSET\x1b[0m           k             \x1b[33m20.0ms\x1b[0m  \x1b[32mok\x1b[0m          OK    \x1b[2ma-very-long…\x1b[0m"
        );
        let visible = strip_ansi(&out);
        assert_eq!(visible.chars().count(), 100);

        // Long keys are cut to the column on a terminal, more so on a narrow one, to leave room
        // for the reply; errors are red.
        let long_key = "k".repeat(50);
        let err = line(
            "GET",
            &format!("\"{long_key}\""),
            "[]",
            "error",
            r#""reply_type":"error","reply":null,"error":"ERR x","latency_us":5"#,
        );
        let out = render(&mut f, &err);
        assert!(
            strip_ansi(&out).contains(&format!(" {}… ", "k".repeat(9))),
            "{out}"
        );
        assert!(out.contains("\x1b[1;31merror\x1b[0m"), "{out:?}");
        assert!(out.contains("\x1b[31mERR x\x1b[0m"), "{out:?}");
        f.set_width(Some(200));
        let out = strip_ansi(&render(&mut f, &err));
        assert!(out.contains(&format!(" {}… ", "k".repeat(31))), "{out}");
        assert!(out.ends_with("error       ERR x"), "{out}");

        // A narrow terminal cuts everything, never past the width.
        f.set_width(Some(20));
        let out = strip_ansi(&render(&mut f, &set));
        assert!(out.chars().count() <= 20, "{out:?}");
    }

    #[test]
    fn notice_is_dimmed_whole() {
        let mut f = Formatter::new(Style {
            color: true,
            truncate: false,
            width: None,
        });
        let out = render(
            &mut f,
            r#"{"ts":"2024-05-01T12:34:57Z","client":"127.0.0.1:5000","command":null,"status":"notice","lines_dropped":3}"#,
        );
        assert_eq!(
            out,
            "\x1b[2m12:34:57.000000  127.0.0.1:5000   notice        lines_dropped=3\x1b[0m"
        );
    }

    #[test]
    fn hostile_text_is_escaped() {
        let mut f = Formatter::new(PLAIN_STYLE);
        let evil = line(
            "SET",
            r#""\u001b[2Jkey""#,
            r#"["\u001b[2Jkey","a\nb","\u202egnp.exe",""]"#,
            "ok",
            r#""reply_type":"simple","reply":"O\u0007K","error":null,"latency_us":1"#,
        );
        let out = render(&mut f, &evil);
        assert!(!out.chars().any(needs_escape), "{out:?}");
        assert!(out.contains(r#""\x1b[2Jkey""#), "{out}");
        assert!(out.contains(r#""a\nb" "\u{202e}gnp.exe" """#), "{out}");
        assert!(out.contains(r"O\x07K"), "{out}");

        let mut raw = String::new();
        Formatter::new(Style {
            color: true,
            truncate: true,
            width: None,
        })
        .raw(b"bad \x1b]0;title\x07 line\r", &mut raw);
        assert_eq!(raw, "\x1b[2mbad \\x1b]0;title\\x07 line\x1b[0m");
        let mut raw = String::new();
        Formatter::new(PLAIN_STYLE).raw(b"as \xff is", &mut raw);
        assert_eq!(raw, "as \u{fffd} is");
    }

    #[test]
    fn ascii_fast_paths_agree_with_the_character_tests() {
        for c in (0u8..0x80).map(char::from) {
            let s = format!("a{c}b");
            let mut fast = String::new();
            arg_into(&mut fast, &s);
            let quote = c.is_whitespace() || c == '"' || c == '\'' || needs_escape(c);
            assert_eq!(fast.starts_with('"'), quote, "{c:?}");
            let mut fast = String::new();
            sanitize_into(&mut fast, &s);
            assert_eq!(fast == s, !needs_escape(c), "{c:?}");
        }
    }

    #[test]
    fn whole_microseconds_as_fmt_writes_them() {
        // Every latency the log can say below 999.5us (`ns / 1e3`), and the halves either side.
        for ns in 0..=999_500u64 {
            for us in [
                ns as f64 / 1e3,
                ns as f64 / 1e3 + 5e-4,
                (ns as f64 / 1e3 - 5e-4).max(0.0),
            ] {
                let mut fast = String::new();
                latency_into(&mut fast, us);
                if us < 999.5 {
                    assert_eq!(fast, format!("{us:.0}us"), "{us}");
                }
            }
        }
    }

    #[test]
    fn log_timestamps_take_the_short_path_to_the_same_answer() {
        for ts in [
            "2024-05-01T12:34:56.123456Z",
            "2024-05-01T12:34:56.12345xZ",
            "2024-05-01T12:3x:56.123456Z",
            "2024 05-01T12:34:56.123456Z",
            "2024-05-01 12:34:56.123456Z",
        ] {
            let general = ts.split_once(['T', 't', ' ']).and_then(|(_, t)| {
                let t = t.get(..t.find(['Z', 'z', '+', '-']).unwrap_or(t.len()))?;
                let (h, f) = t.split_once('.').unwrap_or((t, ""));
                let ok = h.len() == 8
                    && h.bytes().enumerate().all(|(i, c)| {
                        if i == 2 || i == 5 {
                            c == b':'
                        } else {
                            c.is_ascii_digit()
                        }
                    })
                    && f.bytes().all(|c| c.is_ascii_digit());
                ok.then_some((h, f))
            });
            assert_eq!(hms(ts), general, "{ts}");
        }
    }

    #[test]
    fn latencies() {
        let cases = [
            (0.0, "0us"),
            (182.0, "182us"),
            (999.4, "999us"),
            (999.6, "1.00ms"),
            (1520.0, "1.52ms"),
            (15_240.0, "15.2ms"),
            (152_400.0, "152ms"),
            (2_310_000.0, "2.31s"),
            (23_100_000.0, "23.1s"),
            (231_000_000.0, "231s"),
            (-1.0, "?"),
            (f64::NAN, "?"),
        ];
        for (us, want) in cases {
            let mut s = String::new();
            latency_into(&mut s, us);
            assert_eq!(s, want, "{us}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            hms("2024-05-01T12:34:56.123456Z"),
            Some(("12:34:56", "123456"))
        );
        assert_eq!(hms("2024-05-01T12:34:56+00:00"), Some(("12:34:56", "")));
        assert_eq!(hms("yesterday"), None);
        assert_eq!(hms("2024-05-01T1é:34:56Z"), None);
        let mut s = String::new();
        time_of(&obj(r#"{"ts":"2024-05-01T12:34:56.1234567891Z"}"#), &mut s);
        assert_eq!(s, "12:34:56.123456");
    }

    #[test]
    fn never_panics_on_odd_shapes() {
        let mut f = Formatter::new(Style {
            color: true,
            truncate: true,
            width: Some(0),
        });
        for json in [
            r#"{"command":"GET"}"#,
            r#"{"command":"GET","key":5,"args":"x","latency_us":"fast","status":7}"#,
            r#"{"command":"GET","args":[1,null,{"a":1}],"latency_us":1e300}"#,
            r#"{"command":null,"status":"push","reply":["a"]}"#,
        ] {
            let _ = render(&mut f, json);
            f.set_width(Some(1));
            let _ = render(&mut f, json);
            f.set_width(None);
            let _ = render(&mut f, json);
        }
    }

    pub(crate) fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut it = s.chars();
        while let Some(c) = it.next() {
            if c == '\x1b' {
                for c in it.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}
