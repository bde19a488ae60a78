//! Rendering records as log lines, by hand into a reused buffer: no serde, no `fmt` on the JSON
//! path (IPv6 addresses excepted), no allocation beyond the buffer's growth. The text format is
//! what `tail` shows for the JSON line (see [`TextLayout`]).

use std::net::SocketAddr;

use serde_json::Value;

use crate::cmd::tail::{CommandFields, Formatter, Style};
use crate::commands::redact;
use crate::conn::{Capture, CaptureInfo, ConnMeta, Process};
use crate::record::{CommandRecord, Notice, ReplySummary};
use crate::resp::{Child, Kind, Reply};

use super::LogLine;

mod primitives;

use primitives::*;

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (the contract's fields).
    Json,
    /// One aligned human-readable line per command: `tail`'s layout.
    Text,
}

/// How much of each value a line shows: the same limits the session keeps by.
pub use crate::limits::RecordLimits as Bounds;

/// Renders lines in one format with one set of bounds. Keeps small caches (the timestamp's
/// date and time of day, the last addresses), so rendering takes `&mut self`.
#[derive(Clone, Debug)]
pub struct Renderer {
    pub format: Format,
    pub bounds: Bounds,
    cache: Cache,
    text: TextLayout,
}

impl Renderer {
    pub fn new(format: Format) -> Self {
        Self::with_bounds(format, Bounds::default())
    }

    pub fn with_bounds(format: Format, bounds: Bounds) -> Self {
        Renderer {
            format,
            bounds,
            cache: Cache::default(),
            text: TextLayout::default(),
        }
    }

    /// Appends one line (with its `\n`) for a command.
    pub fn command(&mut self, rec: &CommandRecord<'_>, out: &mut Vec<u8>) {
        match self.format {
            Format::Json => json_command(out, rec, &self.bounds, &mut self.cache),
            Format::Text => self.text.command(rec, &self.bounds, &mut self.cache, out),
        }
    }

    /// Appends one line for a push or pub/sub delivery.
    pub fn push(&mut self, ts_ns: u64, conn: &ConnMeta, reply: &Reply, out: &mut Vec<u8>) {
        match self.format {
            Format::Json => json_push(out, ts_ns, conn, reply, &self.bounds, &mut self.cache),
            Format::Text => {
                let t = &mut self.text;
                t.json.clear();
                json_push(
                    &mut t.json,
                    ts_ns,
                    conn,
                    reply,
                    &self.bounds,
                    &mut self.cache,
                );
                t.lay_out(out);
            }
        }
    }

    /// Appends one notice line.
    pub fn notice(
        &mut self,
        ts_ns: u64,
        conn: Option<&ConnMeta>,
        what: NoticeLine<'_>,
        out: &mut Vec<u8>,
    ) {
        match self.format {
            Format::Json => json_notice(out, ts_ns, conn, what, &mut self.cache),
            Format::Text => {
                self.text.json.clear();
                json_notice(&mut self.text.json, ts_ns, conn, what, &mut self.cache);
                self.text.lay_out(out);
            }
        }
    }
}

/// What a notice line says.
#[derive(Clone, Copy, Debug)]
pub enum NoticeLine<'a> {
    /// From the pairing.
    Pipeline(&'a Notice),
    /// Lines the writer could not take (its queue was full).
    Dropped(u64),
}

/// The contract's JSON line for a command, with the default [`Bounds`].
pub fn write_json(rec: &CommandRecord<'_>, out: &mut Vec<u8>) {
    json_command(out, rec, &Bounds::default(), &mut Cache::default());
}

/// The text-format line for a command, with the default [`Bounds`] (columns as wide as this
/// one line needs).
pub fn write_text(rec: &CommandRecord<'_>, out: &mut Vec<u8>) {
    Renderer::new(Format::Text).command(rec, out);
}

// ---------------------------------------------------------------------------------------------
// JSON

fn json_command(out: &mut Vec<u8>, rec: &CommandRecord<'_>, b: &Bounds, c: &mut Cache) {
    json_head(out, c, rec.ts_ns, Some(rec.conn));
    if nameless(rec) {
        // Refused before a name was read (`*abc`): no command to name.
        out.extend_from_slice(b",\"command\":null,\"key\":");
    } else {
        out.extend_from_slice(b",\"command\":\"");
        command_name(out, rec, b);
        out.extend_from_slice(b"\",\"key\":");
    }
    match rec.key {
        Some(k) => {
            out.push(b'"');
            bounded(out, k, k.len() as u64, b.key_bytes);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"args\":[");
    let mut first = true;
    for_each_arg(rec, b, |arg| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        arg_content(out, arg, b);
        out.push(b'"');
    });
    out.extend_from_slice(b"],\"status\":\"");
    out.extend_from_slice(rec.status.as_str().as_bytes());
    out.extend_from_slice(b"\",\"reply_type\":");
    match rec.reply {
        Some(r) => {
            out.push(b'"');
            out.extend_from_slice(r.kind.as_str().as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"reply\":");
    match rec.reply {
        Some(r) if r.kind != Kind::Error => {
            out.push(b'"');
            reply_content(out, &r, b);
            out.push(b'"');
        }
        _ => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"error\":");
    match rec.reply {
        Some(r) if r.kind == Kind::Error => {
            out.push(b'"');
            error_content(out, &r, b);
            out.push(b'"');
        }
        _ => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"latency_us\":");
    match rec.latency_ns {
        Some(ns) => latency_us(out, ns),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"req_bytes\":");
    push_u64(out, rec.req_bytes);
    out.extend_from_slice(b",\"resp_bytes\":");
    push_u64(out, rec.resp_bytes);
    if rec.in_transaction {
        out.extend_from_slice(b",\"in_transaction\":true");
    }
    if rec.blocking {
        out.extend_from_slice(b",\"blocking\":true");
    }
    if rec.protocol_error.is_some() {
        out.extend_from_slice(b",\"protocol_error\":true");
    }
    json_conn_tail(out, Some(rec.conn));
    out.extend_from_slice(b"}\n");
}

fn json_push(
    out: &mut Vec<u8>,
    ts_ns: u64,
    conn: &ConnMeta,
    reply: &Reply,
    b: &Bounds,
    c: &mut Cache,
) {
    json_head(out, c, ts_ns, Some(conn));
    out.extend_from_slice(b",\"command\":null,\"key\":null,\"args\":[");
    let mut first = true;
    for_each_push_element(reply, b, |el| {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        element(out, el, b);
        out.push(b'"');
    });
    out.extend_from_slice(b"],\"status\":\"push\",\"reply_type\":\"");
    out.extend_from_slice(reply.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"reply\":\"");
    push_summary(out, reply, b);
    out.extend_from_slice(b"\",\"error\":null,\"latency_us\":null,\"req_bytes\":0,\"resp_bytes\":");
    push_u64(out, reply.wire_len);
    json_conn_tail(out, Some(conn));
    out.extend_from_slice(b"}\n");
}

fn json_notice(
    out: &mut Vec<u8>,
    ts_ns: u64,
    conn: Option<&ConnMeta>,
    what: NoticeLine<'_>,
    c: &mut Cache,
) {
    json_head(out, c, ts_ns, conn);
    out.extend_from_slice(
        b",\"command\":null,\"key\":null,\"args\":[],\"status\":\"notice\",\"reply_type\":null,\
          \"reply\":null,\"error\":null,\"latency_us\":null,\"req_bytes\":0,\"resp_bytes\":0,\
          \"notice\":\"",
    );
    notice_text(out, what);
    out.push(b'"');
    json_conn_tail(out, conn);
    out.extend_from_slice(b"}\n");
}

/// `{"ts":"…","client":"…","server":"…"` (no trailing comma).
fn json_head(out: &mut Vec<u8>, c: &mut Cache, ts_ns: u64, conn: Option<&ConnMeta>) {
    out.extend_from_slice(b"{\"ts\":\"");
    c.timestamp(out, ts_ns);
    out.extend_from_slice(b"\",\"client\":");
    json_addr(out, &mut c.client, conn.map(|m| m.client));
    out.extend_from_slice(b",\"server\":");
    json_addr(out, &mut c.server, conn.map(|m| m.server));
}

/// The connection's fields that follow the record's own: what the capture source knew
/// (`,"iface":"lo"`, rendered once per interface), then its identity and processes.
fn json_conn_tail(out: &mut Vec<u8>, conn: Option<&ConnMeta>) {
    out.extend_from_slice(match conn {
        Some(m) => m.capture.json_fields(),
        None => Capture::unknown().json_fields(),
    });
    let id = conn.map(|m| &m.ident);
    let text = |out: &mut Vec<u8>, field: &[u8], v: Option<&[u8]>| {
        out.extend_from_slice(field);
        match v {
            Some(v) => {
                out.push(b'"');
                escape(out, v);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
    };
    text(
        out,
        b",\"client_name\":",
        id.and_then(|i| i.client_name.as_deref()),
    );
    out.extend_from_slice(b",\"client_lib\":");
    match id.map(|i| (i.lib_name.as_deref(), i.lib_ver.as_deref())) {
        None | Some((None, None)) => out.extend_from_slice(b"null"),
        Some((name, ver)) => {
            out.push(b'"');
            escape(out, name.unwrap_or_default());
            if name.is_some() && ver.is_some() {
                out.push(b' ');
            }
            escape(out, ver.unwrap_or_default());
            out.push(b'"');
        }
    }
    text(out, b",\"user\":", id.and_then(|i| i.user.as_deref()));
    out.extend_from_slice(b",\"db\":");
    match id.and_then(|i| i.db) {
        Some(db) => push_u64(out, u64::from(db)),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"resp\":");
    match id.and_then(|i| i.resp) {
        Some(v) => push_u64(out, u64::from(v)),
        None => out.extend_from_slice(b"null"),
    }
    // Local processes (live capture only): null when not attributed.
    let cp = conn.and_then(|m| m.client_proc.as_deref());
    let sp = conn.and_then(|m| m.server_proc.as_deref());
    let pid = |out: &mut Vec<u8>, field: &[u8], p: Option<&Process>| {
        out.extend_from_slice(field);
        match p {
            Some(p) => push_u64(out, u64::from(p.pid)),
            None => out.extend_from_slice(b"null"),
        }
    };
    fn s(v: Option<&str>) -> Option<&[u8]> {
        v.map(str::as_bytes)
    }
    pid(out, b",\"client_pid\":", cp);
    text(out, b",\"client_comm\":", s(cp.map(|p| &*p.comm)));
    text(
        out,
        b",\"client_container\":",
        s(cp.and_then(|p| p.container.as_deref())),
    );
    pid(out, b",\"server_pid\":", sp);
    text(out, b",\"server_comm\":", s(sp.map(|p| &*p.comm)));
    text(
        out,
        b",\"client_pod\":",
        s(cp.and_then(|p| p.pod.as_deref())),
    );
    text(
        out,
        b",\"client_cgroup\":",
        s(cp.and_then(|p| p.cgroup.as_deref())),
    );
}

/// The log fields of a [`CaptureInfo`] (`,"iface":"lo"`: its serde fields in order, each after a
/// comma), written once per interface by [`Capture::new`]. Strings are escaped as [`escape`]
/// escapes them (serde_json's own `\b` and `\f` written `\u0008` and `\u000c`), so a line's
/// bytes do not depend on which writer wrote a field.
#[must_use]
pub fn capture_fields(info: &CaptureInfo) -> Vec<u8> {
    use serde::Serialize as _;
    use serde_json::ser::{CharEscape, CompactFormatter};

    struct LogEscapes;
    impl serde_json::ser::Formatter for LogEscapes {
        fn write_char_escape<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
            char_escape: CharEscape,
        ) -> std::io::Result<()> {
            match char_escape {
                CharEscape::Backspace => writer.write_all(b"\\u0008"),
                CharEscape::FormFeed => writer.write_all(b"\\u000c"),
                other => CompactFormatter.write_char_escape(writer, other),
            }
        }
    }
    let mut json = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut json, LogEscapes);
    // Serialising plain fields into a Vec cannot fail; an empty object is the fallback.
    if info.serialize(&mut ser).is_err() {
        json.clear();
    }
    match json.strip_prefix(b"{").and_then(|j| j.strip_suffix(b"}")) {
        Some([]) | None => Vec::new(),
        Some(fields) => {
            let mut out = Vec::with_capacity(fields.len() + 1);
            out.push(b',');
            out.extend_from_slice(fields);
            out
        }
    }
}

fn json_addr(out: &mut Vec<u8>, cache: &mut AddrCache, a: Option<SocketAddr>) {
    match a {
        Some(a) => {
            out.push(b'"');
            cache.write(out, &a);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

// ---------------------------------------------------------------------------------------------
// Text

/// `--log-format text`: `tail`'s layout ([`Formatter`]), so a text log and `tail` on a JSON log
/// show the same bytes. A command's values go to the layout straight from the record: each is
/// written by the JSON writers above (the same bytes as in its JSON line) and unescaped, which is
/// what `tail` reads back from that line, without writing or parsing the rest of the line.
/// Pushes, notices and nameless refused requests (rare) are rendered as JSON and read back as
/// `tail` reads them.
#[derive(Clone, Debug)]
struct TextLayout {
    fmt: Formatter,
    json: Vec<u8>,
    /// The command's values as `tail` reads them, one after another (UTF-8), and where each
    /// ends.
    text: Vec<u8>,
    ends: Vec<usize>,
    line: String,
}

impl Default for TextLayout {
    fn default() -> Self {
        TextLayout {
            // A file: no colors, no terminal to fit.
            fmt: Formatter::new(Style::default()),
            json: Vec::new(),
            text: Vec::new(),
            ends: Vec::new(),
            line: String::new(),
        }
    }
}

/// Indices of a command's values in [`TextLayout::ends`]; the arguments follow.
const T_TS: usize = 0;
const T_CLIENT: usize = 1;
const T_NAME: usize = 2;
const T_COMMAND: usize = 3;
const T_KEY: usize = 4;
const T_REPLY: usize = 5;
const T_ARGS: usize = 6;

impl TextLayout {
    /// A command's line, with its `\n`, appended to `out`.
    fn command(&mut self, rec: &CommandRecord<'_>, b: &Bounds, c: &mut Cache, out: &mut Vec<u8>) {
        if nameless(rec) {
            // `command` is null: `tail` shows it as another line.
            self.json.clear();
            json_command(&mut self.json, rec, b, c);
            self.lay_out(out);
            return;
        }
        let conn = rec.conn;
        self.text.clear();
        self.ends.clear();
        // Each value as its JSON string holds it, unescaped in place when it has escapes.
        let value = |this: &mut Self, write: &mut dyn FnMut(&mut Vec<u8>)| {
            let start = this.text.len();
            write(&mut this.text);
            if this.text.get(start..).is_some_and(|v| v.contains(&b'\\')) {
                this.json.clear();
                this.json
                    .extend_from_slice(this.text.get(start..).unwrap_or_default());
                this.text.truncate(start);
                json_unescape(&mut this.text, &this.json);
            }
            this.ends.push(this.text.len());
        };
        value(self, &mut |o| c.timestamp(o, rec.ts_ns));
        value(self, &mut |o| c.client.write(o, &conn.client));
        value(self, &mut |o| {
            if let Some(n) = conn.ident.client_name.as_deref() {
                escape(o, n);
            }
        });
        value(self, &mut |o| command_name(o, rec, b));
        value(self, &mut |o| {
            if let Some(k) = rec.key {
                bounded(o, k, k.len() as u64, b.key_bytes);
            }
        });
        value(self, &mut |o| match rec.reply {
            Some(r) if r.kind == Kind::Error => error_content(o, &r, b),
            Some(r) => reply_content(o, &r, b),
            None => {}
        });
        for_each_arg(rec, b, |arg| value(self, &mut |o| arg_content(o, arg, b)));

        // Valid UTF-8 as `escape` writes it; each value ends on a character boundary.
        let Ok(text) = std::str::from_utf8(&self.text) else {
            // Not reached; read the JSON line back as `tail` would.
            self.json.clear();
            json_command(&mut self.json, rec, b, c);
            self.lay_out(out);
            return;
        };
        let ends = self.ends.as_slice();
        let at = |i: usize| {
            let start = match i.checked_sub(1) {
                Some(p) => ends.get(p).copied().unwrap_or(0),
                None => 0,
            };
            let end = ends.get(i).copied().unwrap_or(start);
            text.get(start..end).unwrap_or_default()
        };
        let args = (T_ARGS..ends.len()).map(at);
        let reply = rec.reply.map(|_| at(T_REPLY));
        let is_error = rec.reply.is_some_and(|r| r.kind == Kind::Error);
        let fields = CommandFields {
            ts: at(T_TS),
            client: Some(at(T_CLIENT)),
            client_name: conn.ident.client_name.as_ref().map(|_| at(T_NAME)),
            // A process name is text already: its JSON string reads back as itself.
            client_comm: conn.client_proc.as_deref().map(|p| &*p.comm),
            command: at(T_COMMAND),
            key: rec.key.map(|_| at(T_KEY)),
            args,
            status: rec.status.as_str(),
            reply: reply.filter(|_| !is_error),
            error: reply.filter(|_| is_error),
            latency_us: rec.latency_ns.map(latency_f64),
            in_transaction: rec.in_transaction,
            protocol_error: rec.protocol_error.is_some(),
        };
        self.line.clear();
        self.fmt.command_fields(&fields, &mut self.line);
        out.extend_from_slice(self.line.as_bytes());
        out.push(b'\n');
    }

    /// Lays out the JSON line in `self.json` and appends it, with its `\n`, to `out`.
    fn lay_out(&mut self, out: &mut Vec<u8>) {
        self.line.clear();
        match serde_json::from_slice::<Value>(&self.json) {
            Ok(Value::Object(m)) => {
                let typed = m
                    .get("command")
                    .is_some_and(Value::is_string)
                    .then(|| serde_json::from_slice::<LogLine>(&self.json).ok())
                    .flatten();
                self.fmt.object(&m, typed.as_ref(), &mut self.line);
            }
            // Not reached: the renderer writes JSON objects.
            _ => self.fmt.raw(self.json.trim_ascii_end(), &mut self.line),
        }
        out.extend_from_slice(self.line.as_bytes());
        out.push(b'\n');
    }
}

/// `latency_us` as `tail` reads it from the line: serde_json reads `N.fff` as the integer
/// `Nfff` divided by 1e3, which is `ns as f64 / 1e3` exactly while `ns` is below 2^53 (exact as
/// a float); past that (over 104 days), the written number is parsed as `tail` would.
fn latency_f64(ns: u64) -> f64 {
    if ns < 1 << 53 {
        return ns as f64 / 1e3;
    }
    let mut buf = Vec::with_capacity(24);
    latency_us(&mut buf, ns);
    serde_json::from_slice(&buf).unwrap_or(f64::NAN)
}

/// Appends the value of a JSON string's content as [`escape`] writes it (`\"`, `\\`, `\n`,
/// `\r`, `\t`, `\u00NN`), so what `serde_json` reads, as UTF-8. Never panics: anything else
/// is kept as it is.
fn json_unescape(out: &mut Vec<u8>, mut s: &[u8]) {
    while let Some(i) = s.iter().position(|&c| c == b'\\') {
        out.extend_from_slice(s.get(..i).unwrap_or_default());
        let (c, len) = match s.get(i + 1) {
            Some(b'"') => ('"', 2),
            Some(b'\\') => ('\\', 2),
            Some(b'n') => ('\n', 2),
            Some(b'r') => ('\r', 2),
            Some(b't') => ('\t', 2),
            Some(b'u') => match s
                .get(i + 2..i + 6)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .and_then(char::from_u32)
            {
                Some(c) => (c, 6),
                None => ('\\', 1),
            },
            _ => ('\\', 1),
        };
        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        s = s.get(i + len..).unwrap_or_default();
    }
    out.extend_from_slice(s);
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

const REDACTED: &[u8] = b"(redacted)";

/// A refused request that ended before its name.
fn nameless(rec: &CommandRecord<'_>) -> bool {
    rec.protocol_error.is_some() && rec.name.is_empty() && rec.command == crate::commands::UNKNOWN
}

fn command_name(out: &mut Vec<u8>, rec: &CommandRecord<'_>, b: &Bounds) {
    let name = if rec.name.is_empty() {
        crate::commands::name(rec.command).as_bytes()
    } else {
        rec.name
    };
    bounded(out, name, name.len() as u64, b.name_bytes);
}

/// One argument of a record, as the log shows it.
#[derive(Clone, Copy)]
enum ArgView<'a> {
    Redacted,
    /// Kept bytes and full length on the wire.
    Bytes(&'a [u8], u64),
    /// This many more arguments were not shown.
    More(u64),
}

fn for_each_arg<'a>(rec: &CommandRecord<'a>, b: &Bounds, mut f: impl FnMut(ArgView<'a>)) {
    let mut shown = 0u64;
    for a in rec.args.iter().take(b.args) {
        shown += 1;
        if a.redacted {
            f(ArgView::Redacted);
            continue;
        }
        let start = a.start as usize;
        let bytes = start
            .checked_add(a.kept as usize)
            .and_then(|end| rec.arg_buf.get(start..end))
            .unwrap_or(&[]);
        f(ArgView::Bytes(bytes, a.len.max(bytes.len() as u64)));
    }
    let total = rec.argc.max(rec.args.len() as u64);
    if total > shown {
        f(ArgView::More(total - shown));
    }
}

/// One argument's content (without the JSON quotes around it).
fn arg_content(out: &mut Vec<u8>, arg: ArgView<'_>, b: &Bounds) {
    match arg {
        ArgView::Redacted => out.extend_from_slice(REDACTED),
        ArgView::Bytes(bytes, len) => bounded(out, bytes, len, b.arg_bytes),
        ArgView::More(n) => more_marker(out, n),
    }
}

/// `…(+N more)`
fn more_marker(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice("…(+".as_bytes());
    push_u64(out, n);
    out.extend_from_slice(b" more)");
}

/// Writes at most `max` bytes of `bytes` (cut on a character boundary), escaped, and
/// `…(+N bytes)` if `full_len` (the value's length on the wire) is longer than what was shown.
fn bounded(out: &mut Vec<u8>, bytes: &[u8], full_len: u64, max: usize) {
    let shown = cut(bytes, max);
    escape(out, shown);
    let rest = full_len.saturating_sub(shown.len() as u64);
    if rest > 0 {
        out.extend_from_slice("…(+".as_bytes());
        push_u64(out, rest);
        out.extend_from_slice(b" bytes)");
    }
}

/// The content of `reply` (without the JSON quotes around it).
fn reply_content(out: &mut Vec<u8>, r: &ReplySummary<'_>, b: &Bounds) {
    if r.redacted {
        out.extend_from_slice(REDACTED);
        return;
    }
    let full = u64::try_from(r.len).unwrap_or(0).max(r.text.len() as u64);
    match r.kind {
        Kind::Simple | Kind::Integer | Kind::Double | Kind::BigNumber | Kind::Error => {
            bounded(out, r.text, full, b.reply_bytes);
        }
        Kind::Bulk | Kind::Verbatim => {
            escape(out, b"\"");
            let shown = cut(r.text, b.reply_bytes);
            escape(out, shown);
            escape(out, b"\"");
            let rest = full.saturating_sub(shown.len() as u64);
            if rest > 0 {
                out.extend_from_slice("…(+".as_bytes());
                push_u64(out, rest);
                out.extend_from_slice(b" bytes)");
            }
        }
        Kind::Boolean => match r.text.first() {
            Some(b't') => out.extend_from_slice(b"true"),
            Some(b'f') => out.extend_from_slice(b"false"),
            _ => bounded(out, r.text, full, b.reply_bytes),
        },
        Kind::Null => out.extend_from_slice(b"(nil)"),
        Kind::Array | Kind::Set | Kind::Push | Kind::Map => aggregate(out, r.kind, r.len),
    }
}

/// `[3 items]`, `{2 pairs}`, `(nil)` for a null aggregate.
fn aggregate(out: &mut Vec<u8>, kind: Kind, len: i64) {
    let Ok(n) = u64::try_from(len) else {
        out.extend_from_slice(b"(nil)");
        return;
    };
    let map = kind == Kind::Map;
    out.push(if map { b'{' } else { b'[' });
    push_u64(out, n);
    out.extend_from_slice(match (map, n == 1) {
        (true, true) => b" pair}".as_slice(),
        (true, false) => b" pairs}",
        (false, true) => b" item]",
        (false, false) => b" items]",
    });
}

fn error_content(out: &mut Vec<u8>, r: &ReplySummary<'_>, b: &Bounds) {
    if r.redacted {
        // The redaction layer left only the error's class (`ERR`), from a fixed set.
        if !r.text.is_empty() {
            escape(out, r.text);
            out.push(b' ');
        }
        out.extend_from_slice(REDACTED);
        return;
    }
    let full = u64::try_from(r.len).unwrap_or(0).max(r.text.len() as u64);
    bounded(out, r.text, full, b.error_bytes);
}

/// One element of a push, for `args`.
enum Element<'a> {
    Child(Child, &'a [u8]),
    More(u64),
}

/// The elements of a push after the first (the first, `message`, `invalidate`..., is in the
/// summary).
fn for_each_push_element<'a>(reply: &'a Reply, b: &Bounds, mut f: impl FnMut(Element<'a>)) {
    if !reply.kind.is_aggregate() {
        return;
    }
    let mut shown = 0u64;
    for c in reply.children.iter().skip(1).take(b.args) {
        shown += 1;
        f(Element::Child(*c, child_text(reply, c)));
    }
    let elements = u64::try_from(reply.len).unwrap_or(0);
    // Map lengths count pairs.
    let elements = if reply.kind == Kind::Map {
        elements.saturating_mul(2)
    } else {
        elements
    };
    let total = elements.max(reply.children.len() as u64).saturating_sub(1);
    if total > shown {
        f(Element::More(total - shown));
    }
}

fn child_text<'a>(reply: &'a Reply, c: &Child) -> &'a [u8] {
    let start = c.start as usize;
    start
        .checked_add(c.kept as usize)
        .and_then(|end| reply.child_text.get(start..end))
        .unwrap_or(&[])
}

fn element(out: &mut Vec<u8>, el: Element<'_>, b: &Bounds) {
    match el {
        Element::Child(c, text) => match c.kind {
            Kind::Null => out.extend_from_slice(b"(nil)"),
            k if k.is_aggregate() => aggregate(out, k, c.len),
            _ => {
                let full = u64::try_from(c.len).unwrap_or(0).max(text.len() as u64);
                bounded(out, text, full, b.arg_bytes);
            }
        },
        Element::More(n) => more_marker(out, n),
    }
}

/// `message [3 items]`: the push's kind word (its first element, if a string) and its size.
fn push_summary(out: &mut Vec<u8>, reply: &Reply, b: &Bounds) {
    if !reply.kind.is_aggregate() {
        if reply.kind == Kind::Simple && redact::is_monitor_line(&reply.text) {
            // Redis redacts only the commands it parsed: the table applies to every line.
            let mut line = Vec::with_capacity(reply.text.len() + 16);
            redact::monitor_line(&reply.text, &mut line);
            let full = line.len() as u64;
            bounded(out, &line, full, b.reply_bytes);
            return;
        }
        let summary = ReplySummary {
            kind: reply.kind,
            len: reply.len,
            text: &reply.text,
            redacted: false,
        };
        reply_content(out, &summary, b);
        return;
    }
    if let Some(c) = reply.children.first() {
        if matches!(c.kind, Kind::Bulk | Kind::Simple | Kind::Verbatim) {
            let text = child_text(reply, c);
            let full = u64::try_from(c.len).unwrap_or(0).max(text.len() as u64);
            bounded(out, text, full, 32);
            out.push(b' ');
        }
    }
    aggregate(out, reply.kind, reply.len);
}

/// Plain ASCII, no quotes or backslashes: safe in JSON and text as is.
fn notice_text(out: &mut Vec<u8>, what: NoticeLine<'_>) {
    match what {
        NoticeLine::Dropped(n) => {
            out.extend_from_slice(b"dropped ");
            push_u64(out, n);
            out.extend_from_slice(if n == 1 {
                b" log line (writer queue full)".as_slice()
            } else {
                b" log lines (writer queue full)"
            });
        }
        NoticeLine::Pipeline(n) => n.describe(out),
    }
}

#[cfg(test)]
mod tests;
