//! Server → client: RESP2 and RESP3 replies and pushes, summarised as they stream by.

use super::scan::{Resync, Scan, Verdict, WIN, fast_num, sane, string2ll};
use super::types::{Child, DesyncReason, Kind, Limits, Reply, ReplyEvent};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Expecting a type byte (a new reply, or the next element of an open aggregate).
    Value,
    /// Inside a line (simple value or a header) that did not fit in one feed.
    Line,
    /// Inside a `$`/`!`/`=` payload: `data_left` payload + CRLF bytes to go.
    Blob,
    Resync,
    /// Not RESP at all: ignore the stream.
    Dead,
}

/// Where the text of the value being read goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tgt {
    /// The reply itself.
    Top,
    /// A summarised direct child of the reply (the last of `reply.children`).
    Child,
    /// Deeper, inside an attribute, or past `keep_children`: counted, not kept.
    Skip,
}

/// An open aggregate: elements still to come (maps and attributes: keys + values).
#[derive(Clone, Copy, Debug)]
struct Frame {
    left: u64,
    attr: bool,
}

/// Outcome of the top-level fast path.
enum Whole {
    /// A whole reply ending here.
    Done(usize),
    /// An aggregate was opened (and maybe some elements read); continue from here.
    Open(usize),
    /// Nothing taken.
    No,
}

/// First bytes of a slow-path line kept for numbers and validation.
const LINE_HEAD: usize = 24;

fn is_type(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b':'
            | b'$'
            | b'*'
            | b'_'
            | b'#'
            | b','
            | b'('
            | b'!'
            | b'='
            | b'%'
            | b'~'
            | b'|'
            | b'>'
    )
}

fn is_scalar_line(t: u8) -> bool {
    matches!(t, b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_')
}

fn line_kind(t: u8) -> Kind {
    match t {
        b'+' => Kind::Simple,
        b'-' => Kind::Error,
        b':' => Kind::Integer,
        b',' => Kind::Double,
        b'(' => Kind::BigNumber,
        b'#' => Kind::Boolean,
        _ => Kind::Null,
    }
}

/// Content rules of simple lines (what Redis can send; anything else means we are lost).
fn line_ok(t: u8, c: &[u8]) -> bool {
    match t {
        b':' | b'(' => {
            let d = c.strip_prefix(b"-").unwrap_or(c);
            !d.is_empty() && d.iter().all(u8::is_ascii_digit) && (t == b'(' || c.len() <= 20)
        }
        b'#' => c == b"t" || c == b"f",
        b'_' => c.is_empty(),
        b',' => !c.is_empty(),
        _ => true,
    }
}

/// [`line_ok`] when only the first `head.len()` of `len` bytes were kept; `tail_digits`: the
/// bytes past the head were all digits (big numbers are the only long line with a rule).
fn line_ok_head(t: u8, head: &[u8], len: usize, tail_digits: bool) -> bool {
    if len <= head.len() {
        line_ok(t, head)
    } else {
        match t {
            b'+' | b'-' | b',' => true,
            b'(' => tail_digits && line_ok(t, head),
            _ => false,
        }
    }
}

/// `memchr` for a `\n` that is usually a few bytes away: look at the first bytes directly
/// before paying for the vectorised search.
#[inline(always)]
fn find_lf(hay: &[u8]) -> Option<usize> {
    let head = hay.len().min(16);
    if let Some(i) = hay[..head].iter().position(|&b| b == b'\n') {
        return Some(i);
    }
    memchr::memchr(b'\n', &hay[head..]).map(|i| i + head)
}

/// A whole, valid scalar at `data[p..]`: its kind, length, text and end; `None` for anything
/// else (aggregates, attributes, cut or invalid values).
#[inline(always)]
fn scalar_at(
    data: &[u8],
    p: usize,
    max_bulk: u64,
    max_line: usize,
) -> Option<(Kind, i64, &[u8], usize)> {
    let t = *data.get(p)?;
    match t {
        b'$' | b'!' | b'=' => {
            let (n, cr) = fast_num(data, p + 1)?;
            if data.get(cr + 1) != Some(&b'\n') {
                return None;
            }
            let start = cr + 2;
            if n == -1 {
                return Some((Kind::Null, -1, &[], start));
            }
            if n < 0 || n as u64 > max_bulk {
                return None;
            }
            let end = start.checked_add(n as usize)?;
            if data.get(end..end.checked_add(2)?)? != b"\r\n" {
                return None;
            }
            let (kind, skip) = match t {
                b'$' => (Kind::Bulk, 0),
                b'!' => (Kind::Error, 0),
                _ => (Kind::Verbatim, (n as usize).min(4)),
            };
            Some((
                kind,
                (n as usize - skip) as i64,
                &data[start + skip..end],
                end + 2,
            ))
        }
        b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_' => {
            let body = p + 1;
            let lim = data
                .len()
                .min(body.saturating_add(max_line).saturating_add(2));
            let i = find_lf(data.get(body..lim)?)?;
            if i == 0 || data[body + i - 1] != b'\r' {
                return None;
            }
            let c = &data[body..body + i - 1];
            if c.len() > max_line || !line_ok(t, c) {
                return None;
            }
            let len = if t == b'_' { -1 } else { c.len() as i64 };
            Some((line_kind(t), len, c, body + i + 1))
        }
        _ => None,
    }
}

fn printable(c: &[u8]) -> bool {
    c.iter().all(|b| (0x20..0x7f).contains(b))
}

/// A plausible reply start at a line start (used only while resynchronising).
fn plausible(w: &[u8], max_bulk: u64) -> Verdict {
    let Some((&t, body)) = w.split_first() else {
        return Verdict::More;
    };
    let short = w.len() < WIN;
    let e = match memchr::memchr(b'\n', body) {
        Some(i) if i > 0 && body[i - 1] == b'\r' => i - 1,
        Some(_) => return Verdict::No,
        None if short => return Verdict::More,
        // A long status line.
        None if matches!(t, b'+' | b'-') && printable(body) => return Verdict::Yes,
        None => return Verdict::No,
    };
    let (c, after) = (&body[..e], &body[e + 2..]);
    let yes = |ok: bool| if ok { Verdict::Yes } else { Verdict::No };
    match t {
        b'+' => yes(printable(c)),
        b'-' => yes(c.first().is_some_and(u8::is_ascii_uppercase) && printable(c)),
        b':' | b'(' | b'#' | b'_' | b',' => yes(line_ok(t, c) && printable(c)),
        b'$' | b'!' | b'=' => match string2ll(c) {
            Some(-1) => yes(t == b'$'),
            Some(n) if n >= 0 && n as u64 <= max_bulk => {
                let n = n as usize;
                if t == b'=' && (n < 4 || after.get(3).is_some_and(|&b| b != b':')) {
                    return Verdict::No;
                }
                match after.get(n..n.saturating_add(2)) {
                    Some(tail) => yes(tail == b"\r\n"),
                    None if short => Verdict::More,
                    None => Verdict::Yes,
                }
            }
            _ => Verdict::No,
        },
        b'*' | b'%' | b'~' | b'>' | b'|' => match string2ll(c) {
            Some(-1) => yes(t == b'*'),
            Some(0) => yes(t != b'|'),
            Some(n) if n > 0 => match after.first() {
                Some(&b) => yes(is_type(b)),
                None if short => Verdict::More,
                None => Verdict::Yes,
            },
            _ => Verdict::No,
        },
        _ => Verdict::No,
    }
}

/// Incremental decoder for one server → client byte stream.
pub struct ReplyDecoder {
    lim: Limits,
    st: St,
    reply: Reply,
    stack: Vec<Frame>,
    /// Some bytes of the current reply were consumed.
    in_reply: bool,
    /// Value being read in `Line`/`Blob`: its type byte and where its text goes.
    t: u8,
    tgt: Tgt,
    /// Text bytes still to keep for the current value.
    keep_left: usize,
    line_len: usize,
    line_cr: bool,
    /// Non-digits seen past the first `LINE_HEAD` bytes of a `(` line (its `\r` included).
    line_odd: usize,
    head: [u8; LINE_HEAD],
    data_left: u64,
    /// Verbatim format prefix (`txt:`) bytes still to drop.
    skip: u64,
    /// No byte seen yet on a stream that starts at its beginning.
    fresh: bool,
    /// The last byte of the previous feed was `\n` (a frame may start at the next one).
    prev_lf: bool,
    resync: Resync,
}

impl ReplyDecoder {
    /// Decoder for a stream seen from its first byte.
    pub fn new(limits: Limits) -> Self {
        ReplyDecoder {
            lim: sane(limits),
            st: St::Value,
            reply: Reply::default(),
            stack: Vec::new(),
            in_reply: false,
            t: 0,
            tgt: Tgt::Skip,
            keep_left: 0,
            line_len: 0,
            line_cr: false,
            line_odd: 0,
            head: [0; LINE_HEAD],
            data_left: 0,
            skip: 0,
            fresh: true,
            prev_lf: false,
            resync: Resync::default(),
        }
    }

    /// Decoder for a stream picked up mid-way: it first looks for a plausible reply start at a
    /// line start (or at the first byte).
    pub fn new_mid_stream(limits: Limits) -> Self {
        let mut d = Self::new(limits);
        d.enter_resync(true);
        d
    }

    /// Consumes all of `data` (`ts`: ns timestamp of the packet carrying it), calling `on` for
    /// each event.
    pub fn feed(&mut self, ts: u64, data: &[u8], on: &mut impl FnMut(ReplyEvent<'_>)) {
        let mut pos = 0;
        while pos < data.len() {
            pos = match self.st {
                St::Value => self.value(ts, data, pos, on),
                St::Line => self.line(ts, data, pos, on),
                St::Blob => self.blob(ts, data, pos, on),
                St::Resync => self.resync(ts, data, pos, on),
                St::Dead => data.len(),
            };
        }
        if let Some(&b) = data.last() {
            self.prev_lf = b == b'\n';
        }
    }

    /// `n` bytes are missing from the stream here. Inside a bulk payload (or its CRLF) with at
    /// least `n` bytes to go the decoder stays in sync and marks the reply truncated; anywhere
    /// else it emits `Desync(Gap)` and resyncs.
    pub fn missing(&mut self, ts: u64, n: u64, on: &mut impl FnMut(ReplyEvent<'_>)) {
        if n == 0 {
            return;
        }
        // The byte before the next feed is one nobody saw.
        self.prev_lf = false;
        match self.st {
            St::Dead => {}
            St::Resync => self.resync.reset(true),
            St::Blob if n <= self.data_left => {
                self.reply.truncated = true;
                self.reply.wire_len = self.reply.wire_len.saturating_add(n);
                // Kept text must stay a contiguous prefix.
                self.keep_left = 0;
                self.skip = self.skip.saturating_sub(n);
                self.data_left -= n;
                if self.data_left == 0 {
                    self.st = St::Value;
                    self.value_done(ts, on);
                }
            }
            _ => {
                on(ReplyEvent::Desync(DesyncReason::Gap));
                self.enter_resync(true);
            }
        }
    }

    /// True when between replies (no partial reply held), or ignoring the stream for good.
    pub fn is_idle(&self) -> bool {
        (self.st == St::Value && !self.in_reply) || self.st == St::Dead
    }

    /// Heap bytes held by the decoder's buffers.
    pub fn mem(&self) -> usize {
        self.reply.text.capacity()
            + self.reply.children.capacity() * size_of::<Child>()
            + self.reply.child_text.capacity()
            + self.stack.capacity() * size_of::<Frame>()
    }

    fn enter_resync(&mut self, line_start: bool) {
        self.st = St::Resync;
        self.stack.clear();
        self.in_reply = false;
        self.fresh = false;
        self.resync.reset(line_start);
    }

    /// Gives up on the current reply; scanning resumes at `resume`.
    fn desync(
        &mut self,
        r: DesyncReason,
        data: &[u8],
        resume: usize,
        on: &mut impl FnMut(ReplyEvent<'_>),
    ) -> usize {
        on(ReplyEvent::Desync(r));
        // Whether `resume` is at a line start, for when it is the start or end of this feed.
        let line_start = match resume.checked_sub(1) {
            Some(i) => data.get(i) == Some(&b'\n'),
            None => self.prev_lf,
        };
        self.enter_resync(line_start);
        resume
    }

    fn target(&self) -> Tgt {
        match self.stack.as_slice() {
            [] => Tgt::Top,
            [f] if !f.attr && self.reply.children.len() < self.lim.keep_children => Tgt::Child,
            _ => Tgt::Skip,
        }
    }

    /// Records a value's kind and length where it belongs and arms text keeping for it.
    fn summary(&mut self, tgt: Tgt, kind: Kind, len: i64) {
        match tgt {
            Tgt::Top => {
                self.reply.kind = kind;
                self.reply.len = len;
                self.keep_left = self.lim.keep_reply_bytes;
            }
            Tgt::Child => {
                let start = u32::try_from(self.reply.child_text.len()).unwrap_or(u32::MAX);
                self.reply.children.push(Child {
                    kind,
                    len,
                    start,
                    kept: 0,
                });
                self.keep_left = self.lim.keep_reply_bytes;
            }
            Tgt::Skip => self.keep_left = 0,
        }
    }

    fn fix_len(&mut self, tgt: Tgt, len: i64) {
        match tgt {
            Tgt::Top => self.reply.len = len,
            Tgt::Child => {
                if let Some(c) = self.reply.children.last_mut() {
                    c.len = len;
                }
            }
            Tgt::Skip => {}
        }
    }

    #[inline(always)]
    fn keep(&mut self, tgt: Tgt, b: &[u8]) {
        let k = self.keep_left.min(b.len());
        if k == 0 {
            return;
        }
        match tgt {
            Tgt::Top => self.reply.text.extend_from_slice(&b[..k]),
            Tgt::Child => {
                self.reply.child_text.extend_from_slice(&b[..k]);
                if let Some(c) = self.reply.children.last_mut() {
                    c.kept += k as u32; // k <= keep_reply_bytes <= u16::MAX
                }
            }
            Tgt::Skip => {}
        }
        self.keep_left -= k;
    }

    /// Cuts kept text back to `len` bytes (a slow-path line may have kept its `\r`).
    fn trim_kept(&mut self, tgt: Tgt, len: usize) {
        match tgt {
            Tgt::Top => self.reply.text.truncate(len),
            Tgt::Child => {
                let Some(c) = self.reply.children.last_mut() else {
                    return;
                };
                if c.kept as usize > len {
                    c.kept = len as u32;
                    self.reply.child_text.truncate(c.start as usize + len);
                }
            }
            Tgt::Skip => {}
        }
    }

    fn begin_reply(&mut self, ts: u64) {
        self.in_reply = true;
        let r = &mut self.reply;
        r.kind = Kind::Null;
        r.len = -1;
        r.text.clear();
        r.children.clear();
        r.child_text.clear();
        r.wire_len = 0;
        r.first_ts = ts;
        r.last_ts = ts;
        r.truncated = false;
    }

    /// A value ended: close the aggregates it completes; emit the reply when it was the last.
    fn value_done(&mut self, ts: u64, on: &mut impl FnMut(ReplyEvent<'_>)) {
        loop {
            let Some(f) = self.stack.last_mut() else {
                self.reply.last_ts = ts;
                self.in_reply = false;
                on(ReplyEvent::Reply(&self.reply));
                return;
            };
            f.left = f.left.saturating_sub(1);
            if f.left > 0 {
                return;
            }
            let attr = f.attr;
            self.stack.pop();
            if attr {
                // An attribute is not an element: the value it annotates comes next.
                return;
            }
        }
    }

    fn value(
        &mut self,
        ts: u64,
        data: &[u8],
        mut pos: usize,
        on: &mut impl FnMut(ReplyEvent<'_>),
    ) -> usize {
        if self.fresh {
            self.fresh = false;
            if !is_type(data[pos]) {
                // E.g. a TLS record (0x16) or a banner: not a Redis server speaking RESP.
                self.st = St::Dead;
                on(ReplyEvent::Desync(DesyncReason::NotResp));
                return data.len();
            }
        }
        // Fast paths: whole values inside this slice, back to back, without the state machine.
        loop {
            if !self.in_reply {
                self.begin_reply(ts);
                match self.whole_reply(data, pos) {
                    Whole::Done(end) => {
                        self.reply.wire_len = (end - pos) as u64;
                        self.in_reply = false;
                        on(ReplyEvent::Reply(&self.reply));
                        if end >= data.len() {
                            return end;
                        }
                        pos = end;
                        continue;
                    }
                    Whole::Open(end) if end >= data.len() => return end,
                    Whole::Open(end) => pos = end,
                    Whole::No => {}
                }
            }
            let tgt = self.target();
            let (max_bulk, max_line) = (self.lim.max_bulk, self.lim.max_line);
            if let Some((kind, len, text, end)) = scalar_at(data, pos, max_bulk, max_line) {
                self.summary(tgt, kind, len);
                self.keep(tgt, text);
                self.reply.wire_len += (end - pos) as u64;
                pos = end;
                self.value_done(ts, on);
            } else {
                let t = data[pos];
                if !matches!(t, b'$' | b'!' | b'=' | b'*' | b'%' | b'~' | b'>' | b'|') {
                    return self.value_slow(data, pos, tgt, on);
                }
                let Some((n, cr)) = fast_num(data, pos + 1) else {
                    return self.value_slow(data, pos, tgt, on);
                };
                if data.get(cr + 1) != Some(&b'\n') {
                    return self.value_slow(data, pos, tgt, on);
                }
                self.reply.wire_len += (cr + 2 - pos) as u64;
                pos = self.header(ts, t, tgt, Some(n), data, cr + 2, on);
                if self.st != St::Value {
                    return pos;
                }
            }
            if pos >= data.len() {
                return pos;
            }
        }
    }

    /// A value the fast paths could not take: cut by the end of the slice, or invalid.
    fn value_slow(
        &mut self,
        data: &[u8],
        pos: usize,
        tgt: Tgt,
        on: &mut impl FnMut(ReplyEvent<'_>),
    ) -> usize {
        let t = data[pos];
        match t {
            b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_' => {
                let body = pos + 1;
                let lim = data
                    .len()
                    .min(body.saturating_add(self.lim.max_line).saturating_add(2));
                match find_lf(&data[body..lim]) {
                    // A complete line scalar_at rejected.
                    Some(i) => {
                        let end = body + i + 1;
                        let reason = if i > 0 && i - 1 > self.lim.max_line {
                            DesyncReason::LineTooLong
                        } else {
                            DesyncReason::BadByte
                        };
                        self.desync(reason, data, end, on)
                    }
                    None if lim < data.len() => {
                        self.desync(DesyncReason::LineTooLong, data, lim, on)
                    }
                    None => {
                        self.reply.wire_len += 1;
                        self.summary(tgt, line_kind(t), 0);
                        self.enter_line(t, tgt);
                        body
                    }
                }
            }
            b'$' | b'!' | b'=' | b'*' | b'%' | b'~' | b'>' | b'|' => {
                self.reply.wire_len += 1;
                self.enter_line(t, tgt);
                pos + 1
            }
            _ => self.desync(DesyncReason::BadByte, data, pos, on),
        }
    }

    /// Fast path for a top-level reply: a whole scalar, or an aggregate of scalars. Whatever it
    /// cannot take (an element that is an aggregate, cut, or invalid) it leaves to the caller,
    /// with the aggregate opened on the stack. Leaves `wire_len` to the caller for `Done`.
    #[inline(always)]
    fn whole_reply(&mut self, data: &[u8], pos: usize) -> Whole {
        let (max_bulk, max_line) = (self.lim.max_bulk, self.lim.max_line);
        let keep = self.lim.keep_reply_bytes;
        let t = data[pos];
        let kind = match t {
            b'*' => Kind::Array,
            b'%' => Kind::Map,
            b'~' => Kind::Set,
            b'>' => Kind::Push,
            _ => {
                let Some((kind, len, text, end)) = scalar_at(data, pos, max_bulk, max_line) else {
                    return Whole::No;
                };
                let r = &mut self.reply;
                r.kind = kind;
                r.len = len;
                r.text.extend_from_slice(&text[..text.len().min(keep)]);
                return Whole::Done(end);
            }
        };
        let Some((n, cr)) = fast_num(data, pos + 1) else {
            return Whole::No;
        };
        // The general path reports a bad count, or nesting deeper than a `max_depth` of 0.
        if data.get(cr + 1) != Some(&b'\n') || n < -1 || (n > 0 && self.lim.max_depth == 0) {
            return Whole::No;
        }
        let r = &mut self.reply;
        if n == -1 {
            r.kind = Kind::Null;
            r.len = -1;
            return Whole::Done(cr + 2);
        }
        r.kind = kind;
        r.len = n;
        let count = if t == b'%' { 2 * n as u64 } else { n as u64 };
        let mut p = cr + 2;
        for done in 0..count {
            let Some((kind, len, text, end)) = scalar_at(data, p, max_bulk, max_line) else {
                self.reply.wire_len = (p - pos) as u64;
                self.stack.push(Frame {
                    left: count - done,
                    attr: false,
                });
                return Whole::Open(p);
            };
            if r.children.len() < self.lim.keep_children {
                let start = u32::try_from(r.child_text.len()).unwrap_or(u32::MAX);
                let k = text.len().min(keep);
                r.children.push(Child {
                    kind,
                    len,
                    start,
                    kept: k as u32,
                });
                r.child_text.extend_from_slice(&text[..k]);
            }
            p = end;
        }
        Whole::Done(p)
    }

    fn enter_line(&mut self, t: u8, tgt: Tgt) {
        self.st = St::Line;
        self.t = t;
        self.tgt = tgt;
        self.line_len = 0;
        self.line_cr = false;
        self.line_odd = 0;
    }

    /// A length/count header (`$ ! = * % ~ > |`) is complete; `next` is the byte after it.
    #[expect(
        clippy::too_many_arguments,
        reason = "hot path: plain values from two callers"
    )]
    fn header(
        &mut self,
        ts: u64,
        t: u8,
        tgt: Tgt,
        num: Option<i64>,
        data: &[u8],
        next: usize,
        on: &mut impl FnMut(ReplyEvent<'_>),
    ) -> usize {
        let n = match num {
            Some(n) if n >= -1 => n,
            _ => return self.desync(DesyncReason::BadLength, data, next, on),
        };
        self.st = St::Value;
        match t {
            b'$' | b'!' | b'=' => {
                if n == -1 {
                    self.summary(tgt, Kind::Null, -1);
                    self.value_done(ts, on);
                    return next;
                }
                let n = n as u64;
                if n > self.lim.max_bulk {
                    return self.desync(DesyncReason::BadLength, data, next, on);
                }
                let (kind, skip) = match t {
                    b'$' => (Kind::Bulk, 0),
                    b'!' => (Kind::Error, 0),
                    _ => (Kind::Verbatim, n.min(4)),
                };
                self.summary(tgt, kind, (n - skip) as i64);
                self.skip = skip;
                self.data_left = n + 2;
                self.tgt = tgt;
                self.st = St::Blob;
                if next < data.len() {
                    self.blob(ts, data, next, on)
                } else {
                    next
                }
            }
            b'|' => {
                if n == -1 {
                    return self.desync(DesyncReason::BadLength, data, next, on);
                }
                if n > 0 {
                    if self.stack.len() >= self.lim.max_depth {
                        return self.desync(DesyncReason::TooDeep, data, next, on);
                    }
                    self.stack.push(Frame {
                        left: 2 * n as u64,
                        attr: true,
                    });
                }
                next
            }
            _ => {
                if n == -1 {
                    self.summary(tgt, Kind::Null, -1);
                    self.value_done(ts, on);
                    return next;
                }
                let kind = match t {
                    b'*' => Kind::Array,
                    b'%' => Kind::Map,
                    b'~' => Kind::Set,
                    _ => Kind::Push,
                };
                self.summary(tgt, kind, n);
                if n == 0 {
                    self.value_done(ts, on);
                    return next;
                }
                if self.stack.len() >= self.lim.max_depth {
                    return self.desync(DesyncReason::TooDeep, data, next, on);
                }
                let left = if t == b'%' { 2 * n as u64 } else { n as u64 };
                self.stack.push(Frame { left, attr: false });
                next
            }
        }
    }

    fn blob(
        &mut self,
        ts: u64,
        data: &[u8],
        mut pos: usize,
        on: &mut impl FnMut(ReplyEvent<'_>),
    ) -> usize {
        let payload_left = self.data_left.saturating_sub(2);
        if payload_left > 0 {
            let take = payload_left.min((data.len() - pos) as u64) as usize;
            let mut chunk = &data[pos..pos + take];
            if self.skip > 0 {
                let s = self.skip.min(take as u64) as usize;
                chunk = &chunk[s..];
                self.skip -= s as u64;
            }
            if self.keep_left > 0 {
                self.keep(self.tgt, chunk);
            }
            self.data_left -= take as u64;
            self.reply.wire_len += take as u64;
            pos += take;
        }
        while self.data_left > 0 && self.data_left <= 2 && pos < data.len() {
            let want = if self.data_left == 2 { b'\r' } else { b'\n' };
            if data[pos] != want {
                return self.desync(DesyncReason::BadByte, data, pos, on);
            }
            pos += 1;
            self.data_left -= 1;
            self.reply.wire_len += 1;
        }
        if self.data_left == 0 {
            self.st = St::Value;
            self.value_done(ts, on);
        }
        pos
    }

    /// Slow path: a line that did not fit in one feed.
    fn line(
        &mut self,
        ts: u64,
        data: &[u8],
        pos: usize,
        on: &mut impl FnMut(ReplyEvent<'_>),
    ) -> usize {
        let rest = &data[pos..];
        let (chunk, done) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], true),
            None => (rest, false),
        };
        if self.line_len < LINE_HEAD {
            let k = (LINE_HEAD - self.line_len).min(chunk.len());
            self.head[self.line_len..self.line_len + k].copy_from_slice(&chunk[..k]);
        }
        let scalar = is_scalar_line(self.t);
        if scalar && self.keep_left > 0 {
            self.keep(self.tgt, chunk);
        }
        if let Some(&b) = chunk.last() {
            self.line_cr = b == b'\r';
        }
        if self.t == b'(' && self.line_len + chunk.len() > LINE_HEAD {
            let from = LINE_HEAD.saturating_sub(self.line_len);
            self.line_odd += chunk[from..].iter().filter(|b| !b.is_ascii_digit()).count();
        }
        self.line_len = self.line_len.saturating_add(chunk.len());
        let end = pos + chunk.len() + usize::from(done);
        self.reply.wire_len += (end - pos) as u64;
        // +1: the '\r' is still counted in `line_len`.
        if self.line_len > self.lim.max_line.saturating_add(1) {
            return self.desync(DesyncReason::LineTooLong, data, end, on);
        }
        if !done {
            return end;
        }
        if self.line_len == 0 || !self.line_cr {
            return self.desync(DesyncReason::BadByte, data, end, on);
        }
        let len = self.line_len - 1;
        let (t, tgt, head) = (self.t, self.tgt, self.head);
        let head = &head[..len.min(LINE_HEAD)];
        if scalar {
            if !line_ok_head(t, head, len, self.line_odd == 1) {
                return self.desync(DesyncReason::BadByte, data, end, on);
            }
            self.trim_kept(tgt, len);
            self.fix_len(tgt, if t == b'_' { -1 } else { len as i64 });
            self.st = St::Value;
            self.value_done(ts, on);
            end
        } else {
            let num = if len <= LINE_HEAD {
                string2ll(head)
            } else {
                None
            };
            self.header(ts, t, tgt, num, data, end, on)
        }
    }

    fn resync(
        &mut self,
        ts: u64,
        data: &[u8],
        pos: usize,
        on: &mut impl FnMut(ReplyEvent<'_>),
    ) -> usize {
        let max_bulk = self.lim.max_bulk;
        match self
            .resync
            .scan(ts, data, pos, is_type, |w| plausible(w, max_bulk))
        {
            Scan::Consumed => data.len(),
            Scan::Found { pos, replay } => {
                self.st = St::Value;
                if let Some((buf, n, rts)) = replay {
                    // The reply began in bytes carried from the previous feed.
                    self.feed(rts, &buf[..n], on);
                }
                pos
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use rstest::rstest;

    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Rs {
        kind: Kind,
        len: i64,
        text: Vec<u8>,
        children: Vec<(Kind, i64, Vec<u8>)>,
        wire: u64,
        truncated: bool,
    }

    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Ev {
        Reply(Rs),
        Desync(DesyncReason),
    }

    fn ev(e: ReplyEvent<'_>) -> (Ev, u64, u64) {
        match e {
            ReplyEvent::Reply(r) => {
                let children = (0..r.children.len())
                    .map(|i| {
                        (
                            r.children[i].kind,
                            r.children[i].len,
                            r.child_text(i).unwrap().to_vec(),
                        )
                    })
                    .collect();
                let rs = Rs {
                    kind: r.kind,
                    len: r.len,
                    text: r.text.clone(),
                    children,
                    wire: r.wire_len,
                    truncated: r.truncated,
                };
                (Ev::Reply(rs), r.first_ts, r.last_ts)
            }
            ReplyEvent::Desync(d) => (Ev::Desync(d), 0, 0),
        }
    }

    fn feed_all(d: &mut ReplyDecoder, parts: &[&[u8]]) -> Vec<Ev> {
        let mut out = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            d.feed(i as u64, p, &mut |e| out.push(ev(e).0));
        }
        out
    }

    fn rs(kind: Kind, len: i64, text: &[u8], children: &[(Kind, i64, &[u8])], wire: usize) -> Ev {
        Ev::Reply(Rs {
            kind,
            len,
            text: text.to_vec(),
            children: children
                .iter()
                .map(|&(k, l, t)| (k, l, t.to_vec()))
                .collect(),
            wire: wire as u64,
            truncated: false,
        })
    }

    fn ok() -> Ev {
        rs(Kind::Simple, 2, b"OK", &[], 5)
    }

    use DesyncReason::*;
    use Kind::*;

    #[rstest]
    #[case::simple(b"+OK\r\n", vec![ok()])]
    #[case::simple_empty(b"+\r\n", vec![rs(Simple, 0, b"", &[], 3)])]
    #[case::simple_cr_inside(b"+a\rb\r\n", vec![rs(Simple, 3, b"a\rb", &[], 6)])]
    #[case::error(b"-ERR unknown command\r\n", vec![rs(Error, 19, b"ERR unknown command", &[], 22)])]
    #[case::integer(b":42\r\n", vec![rs(Integer, 2, b"42", &[], 5)])]
    #[case::integer_neg(b":-7\r\n", vec![rs(Integer, 2, b"-7", &[], 5)])]
    #[case::bulk(b"$3\r\nfoo\r\n", vec![rs(Bulk, 3, b"foo", &[], 9)])]
    #[case::bulk_binary(b"$4\r\n\r\n\0\xff\r\n", vec![rs(Bulk, 4, b"\r\n\0\xff", &[], 10)])]
    #[case::bulk_empty(b"$0\r\n\r\n", vec![rs(Bulk, 0, b"", &[], 6)])]
    #[case::null_bulk(b"$-1\r\n", vec![rs(Null, -1, b"", &[], 5)])]
    #[case::null_array(b"*-1\r\n", vec![rs(Null, -1, b"", &[], 5)])]
    #[case::null_resp3(b"_\r\n", vec![rs(Null, -1, b"", &[], 3)])]
    #[case::empty_array(b"*0\r\n", vec![rs(Array, 0, b"", &[], 4)])]
    #[case::array(b"*2\r\n$1\r\na\r\n:1\r\n", vec![rs(Array, 2, b"", &[(Bulk, 1, b"a"), (Integer, 1, b"1")], 15)])]
    #[case::array_nulls(b"*3\r\n$-1\r\n*-1\r\n_\r\n", vec![rs(Array, 3, b"", &[(Null, -1, b""), (Null, -1, b""), (Null, -1, b"")], 17)])]
    #[case::nested(b"*2\r\n*2\r\n:1\r\n:2\r\n$1\r\nx\r\n", vec![rs(Array, 2, b"", &[(Array, 2, b""), (Bulk, 1, b"x")], 23)])]
    #[case::map(b"%1\r\n+k\r\n:1\r\n", vec![rs(Map, 1, b"", &[(Simple, 1, b"k"), (Integer, 1, b"1")], 12)])]
    #[case::set(b"~2\r\n+a\r\n+b\r\n", vec![rs(Set, 2, b"", &[(Simple, 1, b"a"), (Simple, 1, b"b")], 12)])]
    #[case::push(b">2\r\n+message\r\n$2\r\nhi\r\n", vec![rs(Push, 2, b"", &[(Simple, 7, b"message"), (Bulk, 2, b"hi")], 22)])]
    #[case::bool_t(b"#t\r\n", vec![rs(Boolean, 1, b"t", &[], 4)])]
    #[case::bool_f(b"#f\r\n", vec![rs(Boolean, 1, b"f", &[], 4)])]
    #[case::double(b",3.14\r\n", vec![rs(Double, 4, b"3.14", &[], 7)])]
    #[case::double_inf(b",-inf\r\n", vec![rs(Double, 4, b"-inf", &[], 7)])]
    #[case::bignum(b"(3492890328409238509324850943850943825024385\r\n", vec![rs(BigNumber, 43, b"3492890328409238509324850943850943825024385", &[], 46)])]
    #[case::blob_error(b"!21\r\nSYNTAX invalid syntax\r\n", vec![rs(Error, 21, b"SYNTAX invalid syntax", &[], 28)])]
    #[case::verbatim(b"=15\r\ntxt:Some string\r\n", vec![rs(Verbatim, 11, b"Some string", &[], 22)])]
    #[case::attribute(b"|1\r\n+key\r\n+val\r\n+OK\r\n", vec![rs(Simple, 2, b"OK", &[], 21)])]
    #[case::attribute_nested(b"|1\r\n+k\r\n*1\r\n:1\r\n:5\r\n", vec![rs(Integer, 1, b"5", &[], 20)])]
    #[case::attribute_in_array(b"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n", vec![rs(Array, 2, b"", &[(Integer, 1, b"1"), (Integer, 1, b"2")], 24)])]
    #[case::attribute_before_last(b"*2\r\n:1\r\n|1\r\n+a\r\n+b\r\n:2\r\n", vec![rs(Array, 2, b"", &[(Integer, 1, b"1"), (Integer, 1, b"2")], 24)])]
    #[case::attribute_empty(b"|0\r\n+OK\r\n", vec![rs(Simple, 2, b"OK", &[], 9)])]
    #[case::pipeline(b"+OK\r\n:1\r\n$-1\r\n", vec![ok(), rs(Integer, 1, b"1", &[], 4), rs(Null, -1, b"", &[], 5)])]
    #[case::huge_count_accepted(b"*9223372036854775807\r\n:1\r\n", vec![])]
    #[case::tls(b"\x16\x03\x03\x00\x7a\x02", vec![Ev::Desync(NotResp)])]
    #[case::banner(b"SSH-2.0-OpenSSH\r\n+OK\r\n", vec![Ev::Desync(NotResp)])]
    #[case::bad_type(b"+OK\r\n?x\r\n:1\r\n", vec![ok(), Ev::Desync(BadByte), rs(Integer, 1, b"1", &[], 4)])]
    #[case::bad_length(b"+OK\r\n$-2\r\n:1\r\n", vec![ok(), Ev::Desync(BadLength), rs(Integer, 1, b"1", &[], 4)])]
    #[case::bad_count(b"+OK\r\n*x\r\n:1\r\n", vec![ok(), Ev::Desync(BadLength), rs(Integer, 1, b"1", &[], 4)])]
    #[case::bulk_over_max(b"+OK\r\n$536870913\r\n:1\r\n", vec![ok(), Ev::Desync(BadLength), rs(Integer, 1, b"1", &[], 4)])]
    #[case::bad_integer(b"+OK\r\n:12a\r\n:1\r\n", vec![ok(), Ev::Desync(BadByte), rs(Integer, 1, b"1", &[], 4)])]
    #[case::bad_bool(b"+OK\r\n#x\r\n:1\r\n", vec![ok(), Ev::Desync(BadByte), rs(Integer, 1, b"1", &[], 4)])]
    #[case::bad_null(b"+OK\r\n_x\r\n:1\r\n", vec![ok(), Ev::Desync(BadByte), rs(Integer, 1, b"1", &[], 4)])]
    #[case::bad_trailer(b"+OK\r\n$3\r\nfooXY\r\n:1\r\n", vec![ok(), Ev::Desync(BadByte), rs(Integer, 1, b"1", &[], 4)])]
    #[case::bare_lf(b"+OK\n:1\r\n", vec![Ev::Desync(BadByte), rs(Integer, 1, b"1", &[], 4)])]
    #[case::in_aggregate(b"*3\r\n:1\r\n?\r\n:2\r\n", vec![Ev::Desync(BadByte), rs(Integer, 1, b"2", &[], 4)])]
    fn reply_cases(#[case] input: &[u8], #[case] want: Vec<Ev>) {
        assert_eq!(
            feed_all(&mut ReplyDecoder::new(Limits::default()), &[input]),
            want
        );
        let parts: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            feed_all(&mut ReplyDecoder::new(Limits::default()), &parts),
            want
        );
    }

    #[test]
    fn long_bignum_checked_past_its_head() {
        // Found by `whole_equals_bytewise`: the slow path once checked only the first bytes.
        let input = b"+OK\r\n(100000000000000000000000\x000000\r\n:1\r\n";
        let want = vec![ok(), Ev::Desync(BadByte), rs(Integer, 1, b"1", &[], 4)];
        let parts: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            feed_all(&mut ReplyDecoder::new(Limits::default()), &parts),
            want
        );
        assert_eq!(
            feed_all(&mut ReplyDecoder::new(Limits::default()), &[input]),
            want
        );
    }

    #[test]
    fn desync_at_feed_start_after_newline() {
        // Found by `whole_equals_bytewise`: a frame right after the bad byte's line start was
        // missed when the bad byte began a feed.
        let mut d = ReplyDecoder::new(Limits::default());
        let got = feed_all(&mut d, &[b"$0\r\n", b"~1\r\n$-1\r\n"]);
        assert_eq!(
            got,
            vec![Ev::Desync(BadByte), rs(Set, 1, b"", &[(Null, -1, b"")], 9)]
        );
    }

    #[test]
    fn keep_limits() {
        let lim = Limits {
            keep_children: 2,
            keep_reply_bytes: 2,
            ..Limits::default()
        };
        let input = b"*3\r\n+abc\r\n$4\r\nwxyz\r\n:1\r\n=8\r\ntxt:abcd\r\n";
        let want = vec![
            rs(Array, 3, b"", &[(Simple, 3, b"ab"), (Bulk, 4, b"wx")], 24),
            rs(Verbatim, 4, b"ab", &[], 14),
        ];
        assert_eq!(
            feed_all(&mut ReplyDecoder::new(lim.clone()), &[input]),
            want
        );
        let parts: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(feed_all(&mut ReplyDecoder::new(lim), &parts), want);
    }

    #[test]
    fn timestamps_and_idle() {
        let mut d = ReplyDecoder::new(Limits::default());
        let mut got = Vec::new();
        d.feed(5, b"|1\r\n+a\r\n+b\r\n*2\r\n:1", &mut |e| got.push(ev(e)));
        assert!(!d.is_idle());
        d.feed(6, b"\r\n:2\r\n", &mut |e| got.push(ev(e)));
        assert!(d.is_idle());
        assert_eq!(
            got,
            vec![(
                rs(Array, 2, b"", &[(Integer, 1, b"1"), (Integer, 1, b"2")], 24),
                5,
                6
            )]
        );
    }

    #[test]
    fn too_deep() {
        let mut input = b"*1\r\n".repeat(200);
        input.extend_from_slice(b":1\r\n+OK\r\n");
        let mut d = ReplyDecoder::new(Limits::default());
        // The resync then picks up one of the inner arrays.
        let got = feed_all(&mut d, &[&input]);
        assert_eq!(
            (got.first(), got.last(), got.len()),
            (Some(&Ev::Desync(TooDeep)), Some(&ok()), 3)
        );
        assert!(d.mem() < 128 * 16 + 1024);
        let lim = Limits {
            max_depth: 2,
            ..Limits::default()
        };
        let got = feed_all(
            &mut ReplyDecoder::new(lim),
            &[b"*1\r\n*1\r\n:1\r\n*1\r\n*1\r\n|1\r\n"],
        );
        assert_eq!(
            got,
            vec![
                rs(Array, 1, b"", &[(Array, 1, b"")], 12),
                Ev::Desync(TooDeep)
            ]
        );
    }

    #[test]
    fn line_too_long() {
        let mut input = b"+OK\r\n+".to_vec();
        input.extend(std::iter::repeat_n(b'a', 64 * 1024 + 2));
        input.extend_from_slice(b"\r\n:1\r\n");
        let want = vec![ok(), Ev::Desync(LineTooLong), rs(Integer, 1, b"1", &[], 4)];
        assert_eq!(
            feed_all(&mut ReplyDecoder::new(Limits::default()), &[&input]),
            want
        );
        let parts: Vec<&[u8]> = input.chunks(1000).collect();
        assert_eq!(
            feed_all(&mut ReplyDecoder::new(Limits::default()), &parts),
            want
        );
        // Exactly at the limit is fine.
        let mut input = b"+".to_vec();
        input.extend(std::iter::repeat_n(b'a', 64 * 1024));
        input.extend_from_slice(b"\r\n");
        let parts: Vec<&[u8]> = input.chunks(1000).collect();
        let got = feed_all(&mut ReplyDecoder::new(Limits::default()), &parts);
        assert!(matches!(&got[..], [Ev::Reply(r)] if r.len == 64 * 1024 && r.text.len() == 128));
    }

    #[test]
    fn tiny_max_line_header_independent_of_cuts() {
        // Found by the resp_reply fuzz target: with a max_line shorter than the header, the fast
        // path took `*77095` in one feed while the slow path (byte by byte) rejected it as too
        // long. max_line is now at least 32, so both read it.
        let lim = Limits {
            max_line: 4,
            max_request_args: 2,
            max_bulk: 4,
            max_depth: 1,
            keep_args: 0,
            keep_arg_bytes: 0,
            keep_reply_bytes: 0,
            keep_children: 0,
        };
        let input = b"*77095\r\n";
        let whole = feed_all(&mut ReplyDecoder::new(lim.clone()), &[input]);
        let parts: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(feed_all(&mut ReplyDecoder::new(lim), &parts), whole);
        assert_eq!(whole, vec![]);
    }

    #[test]
    fn missing_inside_huge_bulk() {
        let n = 5 * 1024 * 1024;
        let mut d = ReplyDecoder::new(Limits::default());
        let mut got = Vec::new();
        d.feed(1, b"*2\r\n$5242880\r\nabc", &mut |e| got.push(ev(e)));
        d.missing(2, (n - 4) as u64, &mut |e| got.push(ev(e)));
        d.feed(3, b"z\r\n:1\r\n+OK\r\n", &mut |e| got.push(ev(e)));
        let mut want = rs(
            Array,
            2,
            b"",
            &[(Bulk, n as i64, b"abc"), (Integer, 1, b"1")],
            4 + 10 + n + 2 + 4,
        );
        if let Ev::Reply(r) = &mut want {
            r.truncated = true;
        }
        assert_eq!(got, vec![(want, 1, 3), (ok(), 3, 3)]);
        // A gap outside a payload loses the framing.
        got.clear();
        d.feed(4, b"*2\r\n:1\r\n", &mut |e| got.push(ev(e)));
        d.missing(5, 3, &mut |e| got.push(ev(e)));
        d.feed(6, b"\r\n+OK\r\n", &mut |e| got.push(ev(e)));
        assert_eq!(got, vec![(Ev::Desync(Gap), 0, 0), (ok(), 6, 6)]);
    }

    #[test]
    fn mid_stream_start() {
        // Picked up inside a bulk holding text, then real replies.
        let mut d = ReplyDecoder::new_mid_stream(Limits::default());
        let got = feed_all(
            &mut d,
            &[b"lue of a key\r\nwith lines\r\n", b"+OK\r\n:1\r\n"],
        );
        assert_eq!(got, vec![ok(), rs(Integer, 1, b"1", &[], 4)]);
        // Picked up right at a reply.
        let mut d = ReplyDecoder::new_mid_stream(Limits::default());
        assert_eq!(
            feed_all(&mut d, &[b"*1\r\n+OK\r\n"]),
            vec![rs(Array, 1, b"", &[(Simple, 2, b"OK")], 9)]
        );
        // A header whose payload end is not in view yet is judged when more bytes come.
        let mut d = ReplyDecoder::new_mid_stream(Limits::default());
        let got = feed_all(&mut d, &[b"x\r\n$3\r\nab", b"c\r\n+OK\r\n"]);
        assert_eq!(got, vec![rs(Bulk, 3, b"abc", &[], 9), ok()]);
        let mut d = ReplyDecoder::new_mid_stream(Limits::default());
        let got = feed_all(&mut d, &[b"x\r\n$3\r\nab", b"cd\r\n+OK\r\n"]);
        assert_eq!(got, vec![ok()]);
    }

    #[test]
    fn resync_candidate_split_across_feeds() {
        let input = b"\x01garbage\r\n*2\r\n$3\r\nfoo\r\n:1\r\n";
        let want = rs(Array, 2, b"", &[(Bulk, 3, b"foo"), (Integer, 1, b"1")], 17);
        for cut in 0..input.len() {
            for cut2 in cut..input.len() {
                let mut d = ReplyDecoder::new_mid_stream(Limits::default());
                let mut got = Vec::new();
                for (ts, p) in [&input[..cut], &input[cut..cut2], &input[cut2..]]
                    .into_iter()
                    .enumerate()
                {
                    d.feed(ts as u64, p, &mut |e| got.push(ev(e)));
                }
                let first_ts = if cut > 10 {
                    0
                } else if cut2 > 10 {
                    1
                } else {
                    2
                };
                let last_ts = if cut == input.len() {
                    0
                } else if cut2 == input.len() {
                    1
                } else {
                    2
                };
                assert_eq!(
                    got,
                    vec![(want.clone(), first_ts, last_ts)],
                    "cuts {cut} {cut2}"
                );
            }
        }
    }

    #[test]
    fn no_growth_once_warm() {
        let mut input = Vec::new();
        for i in 0..100 {
            input.extend_from_slice(b"+OK\r\n");
            input
                .extend_from_slice(format!("${}\r\n{}\r\n", i * 31, "v".repeat(i * 31)).as_bytes());
            input.extend_from_slice(format!("*{i}\r\n").as_bytes());
            for j in 0..i {
                input.extend_from_slice(format!("${}\r\nmember:{j:04}\r\n", 11).as_bytes());
            }
        }
        let mut d = ReplyDecoder::new(Limits::default());
        let mut n = 0;
        let mut pass = |d: &mut ReplyDecoder| {
            d.feed(0, &input, &mut |_| n += 1);
            for c in input.chunks(7) {
                d.feed(0, c, &mut |_| n += 1);
            }
        };
        pass(&mut d);
        let warm = d.mem();
        pass(&mut d);
        assert_eq!(n, 1200);
        assert_eq!(d.mem(), warm);
    }

    // --- properties ---

    #[derive(Clone, Debug)]
    enum V {
        Simple(String),
        Err(String),
        Int(i64),
        Bulk(Vec<u8>),
        BlobErr(Vec<u8>),
        Verb(Vec<u8>),
        NullBulk,
        NullArr,
        Null,
        Double(String),
        Bool(bool),
        Big(String),
        Arr(Vec<V>),
        Map(Vec<(V, V)>),
        Set(Vec<V>),
        Push(Vec<V>),
        Attr(Vec<(V, V)>, Box<V>),
    }

    fn enc(v: &V, o: &mut Vec<u8>) {
        let agg = |t: char, n: usize, o: &mut Vec<u8>| {
            o.extend_from_slice(format!("{t}{n}\r\n").as_bytes())
        };
        let blob = |t: char, pre: &[u8], b: &[u8], o: &mut Vec<u8>| {
            o.extend_from_slice(format!("{t}{}\r\n", pre.len() + b.len()).as_bytes());
            o.extend_from_slice(pre);
            o.extend_from_slice(b);
            o.extend_from_slice(b"\r\n");
        };
        match v {
            V::Simple(s) => o.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            V::Err(s) => o.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            V::Int(i) => o.extend_from_slice(format!(":{i}\r\n").as_bytes()),
            V::Bulk(b) => blob('$', b"", b, o),
            V::BlobErr(b) => blob('!', b"", b, o),
            V::Verb(b) => blob('=', b"txt:", b, o),
            V::NullBulk => o.extend_from_slice(b"$-1\r\n"),
            V::NullArr => o.extend_from_slice(b"*-1\r\n"),
            V::Null => o.extend_from_slice(b"_\r\n"),
            V::Double(s) => o.extend_from_slice(format!(",{s}\r\n").as_bytes()),
            V::Bool(b) => o.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            V::Big(s) => o.extend_from_slice(format!("({s}\r\n").as_bytes()),
            V::Arr(xs) | V::Set(xs) | V::Push(xs) => {
                let t = match v {
                    V::Arr(_) => '*',
                    V::Set(_) => '~',
                    _ => '>',
                };
                agg(t, xs.len(), o);
                xs.iter().for_each(|x| enc(x, o));
            }
            V::Map(kv) => {
                agg('%', kv.len(), o);
                kv.iter().for_each(|(k, x)| {
                    enc(k, o);
                    enc(x, o);
                });
            }
            V::Attr(kv, x) => {
                agg('|', kv.len(), o);
                kv.iter().for_each(|(k, x)| {
                    enc(k, o);
                    enc(x, o);
                });
                enc(x, o);
            }
        }
    }

    /// (kind, len, full text) of a value, and its direct children.
    fn summ(v: &V) -> (Kind, i64, Vec<u8>, Vec<&V>) {
        let s = |k, t: &[u8]| (k, t.len() as i64, t.to_vec(), vec![]);
        match v {
            V::Simple(x) => s(Simple, x.as_bytes()),
            V::Err(x) => s(Error, x.as_bytes()),
            V::Int(i) => s(Integer, i.to_string().as_bytes()),
            V::Bulk(b) => s(Bulk, b),
            V::BlobErr(b) => s(Error, b),
            V::Verb(b) => s(Verbatim, b),
            V::NullBulk | V::NullArr | V::Null => (Null, -1, vec![], vec![]),
            V::Double(x) => s(Double, x.as_bytes()),
            V::Bool(b) => s(Boolean, if *b { b"t" } else { b"f" }),
            V::Big(x) => s(BigNumber, x.as_bytes()),
            V::Arr(xs) => (Array, xs.len() as i64, vec![], xs.iter().collect()),
            V::Set(xs) => (Set, xs.len() as i64, vec![], xs.iter().collect()),
            V::Push(xs) => (Push, xs.len() as i64, vec![], xs.iter().collect()),
            V::Map(kv) => (
                Map,
                kv.len() as i64,
                vec![],
                kv.iter().flat_map(|(k, x)| [k, x]).collect(),
            ),
            V::Attr(_, x) => summ(x),
        }
    }

    fn expected(v: &V, lim: &Limits) -> Ev {
        let cut = |t: Vec<u8>| t[..t.len().min(lim.keep_reply_bytes)].to_vec();
        let (kind, len, text, kids) = summ(v);
        let children = kids
            .iter()
            .take(lim.keep_children)
            .map(|c| {
                let (k, l, t, _) = summ(c);
                (k, l, cut(t))
            })
            .collect();
        let mut o = Vec::new();
        enc(v, &mut o);
        Ev::Reply(Rs {
            kind,
            len,
            text: cut(text),
            children,
            wire: o.len() as u64,
            truncated: false,
        })
    }

    fn arb_v() -> impl Strategy<Value = V> {
        let leaf = prop_oneof![
            1 => "[ -~]{0,20}".prop_map(V::Simple),
            1 => "[A-Z]{1,6}( [ -~]{0,20})?".prop_map(V::Err),
            1 => any::<i64>().prop_map(V::Int),
            3 => vec(any::<u8>(), 0..40).prop_map(V::Bulk),
            1 => vec(any::<u8>(), 100..3000).prop_map(V::Bulk),
            1 => vec(any::<u8>(), 0..40).prop_map(V::BlobErr),
            1 => vec(any::<u8>(), 0..40).prop_map(V::Verb),
            1 => Just(V::NullBulk),
            1 => Just(V::NullArr),
            1 => Just(V::Null),
            1 => "-?[0-9]{1,5}(\\.[0-9]{1,3})?|inf|-inf|nan".prop_map(V::Double),
            1 => any::<bool>().prop_map(V::Bool),
            1 => "-?[1-9][0-9]{0,40}".prop_map(V::Big),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                3 => vec(inner.clone(), 0..8).prop_map(V::Arr),
                1 => vec((inner.clone(), inner.clone()), 0..4).prop_map(V::Map),
                1 => vec(inner.clone(), 0..5).prop_map(V::Set),
                1 => vec(inner.clone(), 0..5).prop_map(V::Push),
                1 => (vec((inner.clone(), inner.clone()), 1..3), inner).prop_map(|(kv, x)| V::Attr(kv, Box::new(x))),
            ]
        })
    }

    fn segments(len: usize, cuts: &[usize]) -> Vec<(usize, usize)> {
        let mut pts: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
        pts.push(0);
        pts.push(len);
        pts.sort_unstable();
        pts.dedup();
        pts.windows(2).map(|w| (w[0], w[1])).collect()
    }

    proptest! {
        #[test]
        fn segmentation_independent(
            vals in vec(arb_v(), 1..10),
            cuts in vec(any::<usize>(), 0..40),
            keep_children in 0usize..6,
            keep_reply_bytes in 0usize..50,
        ) {
            let lim = Limits { keep_children, keep_reply_bytes, ..Limits::default() };
            let mut stream = Vec::new();
            let mut bounds = Vec::new();
            for v in &vals {
                let a = stream.len();
                enc(v, &mut stream);
                bounds.push((a, stream.len()));
            }
            let segs = segments(stream.len(), &cuts);
            let mut d = ReplyDecoder::new(lim.clone());
            let mut got = Vec::new();
            for &(a, b) in &segs {
                d.feed(a as u64, &stream[a..b], &mut |e| got.push(ev(e)));
            }
            prop_assert!(d.is_idle());
            let seg_of = |off: usize| segs.iter().find(|s| s.0 <= off && off < s.1).unwrap().0 as u64;
            let want: Vec<_> = vals
                .iter()
                .zip(&bounds)
                .map(|(v, &(a, b))| (expected(v, &lim), seg_of(a), seg_of(b - 1)))
                .collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn garbage_then_replies_resyncs(
            garbage in vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..300),
            vals in vec(arb_v(), 1..6),
            cuts in vec(any::<usize>(), 0..10),
        ) {
            // A bad first byte, as after a missed chunk.
            let mut stream = b"+OK\r\n\x00".to_vec();
            stream.extend_from_slice(&garbage);
            stream.extend_from_slice(b"\r\n");
            let mut want = vec![ok(), Ev::Desync(BadByte)];
            for v in &vals {
                enc(v, &mut stream);
                want.push(expected(v, &Limits::default()));
            }
            let mut d = ReplyDecoder::new(Limits::default());
            let mut got = Vec::new();
            for (a, b) in segments(stream.len(), &cuts) {
                d.feed(0, &stream[a..b], &mut |e| got.push(ev(e).0));
            }
            prop_assert_eq!(got, want);
        }

        #[test]
        fn missing_inside_bulk_keeps_sync(
            len in 200usize..3000,
            gap_at in any::<usize>(),
            gap_len in any::<usize>(),
        ) {
            let value = vec![b'q'; len];
            let mut stream = b"*2\r\n".to_vec();
            enc(&V::Bulk(value), &mut stream);
            stream.extend_from_slice(b":7\r\n+OK\r\n");
            let payload = 4 + format!("${len}\r\n").len();
            let gap_at = payload + gap_at % (len + 1);
            let gap_len = 1 + gap_len % (payload + len + 2 - gap_at);
            let mut d = ReplyDecoder::new(Limits::default());
            let mut got = Vec::new();
            d.feed(0, &stream[..gap_at], &mut |e| got.push(ev(e).0));
            d.missing(0, gap_len as u64, &mut |e| got.push(ev(e).0));
            d.feed(0, &stream[gap_at + gap_len..], &mut |e| got.push(ev(e).0));
            let kept = (gap_at - payload).min(128);
            let first = Ev::Reply(Rs {
                kind: Array,
                len: 2,
                text: vec![],
                children: vec![(Bulk, len as i64, vec![b'q'; kept]), (Integer, 1, b"7".to_vec())],
                wire: (stream.len() - 5) as u64,
                truncated: true,
            });
            prop_assert_eq!(got, vec![first, ok()]);
        }

        #[test]
        fn never_panics(data in vec(any::<u8>(), 0..2000), cuts in vec(any::<usize>(), 0..10), mid in any::<bool>()) {
            let lim = Limits { max_line: 100, max_depth: 5, keep_children: 3, keep_reply_bytes: 5, ..Limits::default() };
            let mut d = if mid { ReplyDecoder::new_mid_stream(lim) } else { ReplyDecoder::new(lim) };
            for (a, b) in segments(data.len(), &cuts) {
                d.feed(0, &data[a..b], &mut |_| {});
                d.missing(0, (a % 3) as u64, &mut |_| {});
            }
            prop_assert!(d.mem() < 10_000);
        }

        #[test]
        fn whole_equals_bytewise(
            vals in vec(arb_v(), 1..6),
            flips in vec((any::<usize>(), any::<u8>()), 0..4),
            mid in any::<bool>(),
            cuts in vec(any::<usize>(), 0..20),
        ) {
            // The fast paths (whole values in one slice) against the byte-at-a-time state
            // machine, on valid and damaged traffic alike.
            let mut stream = Vec::new();
            vals.iter().for_each(|v| enc(v, &mut stream));
            for (at, b) in flips {
                let n = stream.len();
                stream[at % n] = b;
            }
            let lim = Limits { max_depth: 4, keep_children: 3, keep_reply_bytes: 8, ..Limits::default() };
            let make = || if mid { ReplyDecoder::new_mid_stream(lim.clone()) } else { ReplyDecoder::new(lim.clone()) };
            let whole = feed_all(&mut make(), &[&stream]);
            let parts: Vec<&[u8]> = stream.chunks(1).collect();
            prop_assert_eq!(&feed_all(&mut make(), &parts), &whole);
            let parts: Vec<&[u8]> = segments(stream.len(), &cuts).into_iter().map(|(a, b)| &stream[a..b]).collect();
            prop_assert_eq!(&feed_all(&mut make(), &parts), &whole);
        }

        #[test]
        fn never_panics_resp_like(vals in vec(arb_v(), 1..5), flips in vec((any::<usize>(), any::<u8>()), 1..5), cuts in vec(any::<usize>(), 0..10)) {
            // Valid traffic with a few bytes changed: exercises the error paths deep inside frames.
            let mut stream = Vec::new();
            vals.iter().for_each(|v| enc(v, &mut stream));
            for (at, b) in flips {
                let n = stream.len();
                stream[at % n] = b;
            }
            let lim = Limits { max_depth: 3, ..Limits::default() };
            let mut d = ReplyDecoder::new(lim);
            for (a, b) in segments(stream.len(), &cuts) {
                d.feed(0, &stream[a..b], &mut |_| {});
            }
        }
    }
}
