//! Client → server: multibulk and inline commands, parsed the way Redis' `processInputBuffer`
//! (networking.c) parses them, so what we report is what the server executed.

use super::inline::{ArgSink, split_into};
use super::scan::{HdrAcc, HdrOut, Resync, Scan, Verdict, fast_num, plain_num, sane};
use super::types::{ArgSpan, DesyncReason, Limits, ProtocolError, Request, RequestEvent};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Between commands.
    Start,
    /// Reading the `*N` line.
    Count,
    /// Reading a `$N` line (`args_left` > 0).
    ArgHdr,
    /// Inside a bulk argument: `data_left` payload + CRLF bytes to go.
    ArgData,
    /// Reading an inline line.
    Inline,
    /// Looking for a plausible command start.
    Resync,
    /// After a protocol error (the server closes) or non-RESP traffic: ignore everything.
    Dead,
}

/// Outcome of the multibulk fast path.
enum Whole {
    /// A whole command ending here.
    Done(usize),
    /// Header and some arguments read; the state machine continues at this argument.
    Open(usize),
    /// Nothing taken.
    No,
}

enum Hdr {
    /// Header complete: its first byte, its number (per `string2ll`), where the next byte is.
    Line(u8, Option<i64>, usize),
    Pending,
    TooLong,
}

/// An inline line whose newline lies this far (or farther) from its start was certainly refused:
/// Redis reads at most 16 KiB at a time and fails once more than 64 KiB are pending without a
/// newline, so some read left between 64 KiB and this many bytes pending. Shorter lines past
/// 64 KiB run or not depending on how the reads fell; the decoder lets them run and the session
/// believes the server's `too big inline request` when it comes.
const INLINE_CERTAIN_FAIL_EXTRA: usize = 16 * 1024;

/// Bytes of a refused inline line split to find its name.
const NAME_SCAN: usize = 1024;

/// Largest multibulk count taken as a plausible command start when resynchronising.
const RESYNC_MAX_ARGS: u64 = 1024 * 1024;

/// An inline line buffer that grew past this is shrunk back after use (it can reach
/// `max_line`, 64 KiB, per connection otherwise).
const LINE_SHRINK: usize = 16 * 1024;

/// Incremental decoder for one client → server byte stream.
pub struct RequestDecoder {
    lim: Limits,
    st: St,
    req: Request,
    args_left: u64,
    data_left: u64,
    /// Payload bytes of the current argument still to copy into `req.buf`.
    keep_left: usize,
    hdr: HdrAcc,
    /// Partial inline line (bounded by `max_line`).
    line: Vec<u8>,
    /// Bytes of an inline line that can never end (a NUL hid its newline from Redis).
    stuck_len: usize,
    stuck: bool,
    /// No byte seen yet on a stream that starts at its beginning.
    fresh: bool,
    /// The first command of such a stream is not complete yet.
    first: bool,
    resync: Resync,
}

struct ReqSink<'r> {
    req: &'r mut Request,
    keep_args: usize,
    keep_bytes: usize,
    keep_left: usize,
    kept: bool,
}

impl ArgSink<'_> for ReqSink<'_> {
    fn begin(&mut self) {
        self.kept = self.req.args.len() < self.keep_args;
        if self.kept {
            let start = u32::try_from(self.req.buf.len()).unwrap_or(u32::MAX);
            self.req.args.push(ArgSpan {
                start,
                kept: 0,
                len: 0,
            });
            self.keep_left = self.keep_bytes;
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        if !self.kept {
            return;
        }
        let k = self.keep_left.min(b.len());
        self.req.buf.extend_from_slice(&b[..k]);
        self.keep_left -= k;
        if let Some(a) = self.req.args.last_mut() {
            a.len += b.len() as u64;
            a.kept += k as u32; // k <= keep_arg_bytes <= u16::MAX
        }
    }

    fn end(&mut self) {}
}

/// Some first bytes of a connection an HTTP client sends; Redis would run them as inline
/// commands, but no Redis client does (Redis itself closes such connections on `Host:`).
fn is_http(line: &[u8]) -> bool {
    const METHODS: [&[u8]; 10] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"HEAD ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
        b"PRI ",
    ];
    METHODS.iter().any(|m| line.starts_with(m)) && memchr::memmem::find(line, b" HTTP/").is_some()
}

/// A plausible command start: `*<count>\r\n$<len>\r\n`.
fn plausible(w: &[u8], max_args: u64, max_bulk: u64) -> Verdict {
    let (n, i) = match plain_num(w, 1, 7) {
        Ok(x) => x,
        Err(v) => return v,
    };
    if n == 0 || n > max_args {
        return Verdict::No;
    }
    match w.get(i) {
        None => return Verdict::More,
        Some(b'$') => {}
        Some(_) => return Verdict::No,
    }
    match plain_num(w, i + 1, 10) {
        Ok((len, _)) if len <= max_bulk => Verdict::Yes,
        Ok(_) => Verdict::No,
        Err(v) => v,
    }
}

impl RequestDecoder {
    /// Decoder for a stream seen from its first byte.
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            lim: sane(limits),
            st: St::Start,
            req: Request::default(),
            args_left: 0,
            data_left: 0,
            keep_left: 0,
            hdr: HdrAcc::default(),
            line: Vec::new(),
            stuck_len: 0,
            stuck: false,
            fresh: true,
            first: true,
            resync: Resync::default(),
        }
    }

    /// Decoder for a stream picked up mid-way: it first looks for a plausible command start
    /// (`*<n>\r\n$<len>\r\n` at a line start or at the first byte) instead of assuming a boundary.
    pub fn new_mid_stream(limits: Limits) -> Self {
        let mut d = Self::new(limits);
        d.enter_resync(true);
        d
    }

    /// Consumes all of `data` (`ts`: ns timestamp of the packet carrying it), calling `on` for
    /// each event.
    pub fn feed(&mut self, ts: u64, data: &[u8], on: &mut impl FnMut(RequestEvent<'_>)) {
        let mut pos = 0;
        while pos < data.len() {
            pos = match self.st {
                St::Start => self.start(ts, data, pos, on),
                St::Count | St::ArgHdr | St::ArgData => self.multibulk(ts, data, pos, on),
                St::Inline => self.inline(ts, data, pos, on),
                St::Resync => self.resync(ts, data, pos, on),
                St::Dead => data.len(),
            };
        }
    }

    /// `n` bytes are missing from the stream here. Inside a bulk argument that still has at
    /// least `n` bytes to go (payload or its CRLF, which Redis skips unread) the decoder stays in
    /// sync and marks the command truncated; anywhere else it emits `Desync(Gap)` and resyncs.
    pub fn missing(&mut self, ts: u64, n: u64, on: &mut impl FnMut(RequestEvent<'_>)) {
        if n == 0 {
            return;
        }
        match self.st {
            St::Dead => {}
            St::Resync => self.resync.reset(true),
            St::ArgData if n <= self.data_left => {
                self.req.truncated = true;
                self.req.wire_len = self.req.wire_len.saturating_add(n);
                // The kept prefix must stay contiguous.
                self.keep_left = 0;
                self.data_left -= n;
                if self.data_left == 0 {
                    self.arg_done(ts, on);
                }
            }
            _ => {
                on(RequestEvent::Desync(DesyncReason::Gap));
                self.enter_resync(true);
            }
        }
    }

    /// The server refused the command still arriving: stop here (nothing after it runs) and
    /// return what was read of it, its name when that far. None between commands.
    pub fn refuse(&mut self) -> Option<&Request> {
        match self.st {
            St::Start | St::Dead | St::Resync => None,
            St::Inline => {
                let line = std::mem::take(&mut self.line);
                let head = line.get(..NAME_SCAN).unwrap_or(&line);
                let mut sink = ReqSink {
                    req: &mut self.req,
                    keep_args: self.lim.keep_args,
                    keep_bytes: self.lim.keep_arg_bytes,
                    keep_left: 0,
                    kept: false,
                };
                let _ = split_into(head, &mut sink);
                self.req.argc = self.req.args.len() as u64;
                self.line = line;
                self.line.clear();
                self.line.shrink_to(1024);
                self.st = St::Dead;
                Some(&self.req)
            }
            St::Count | St::ArgHdr | St::ArgData => {
                self.st = St::Dead;
                Some(&self.req)
            }
        }
    }

    /// True when between commands (no partial command held), or ignoring the stream for good.
    pub fn is_idle(&self) -> bool {
        matches!(self.st, St::Start | St::Dead)
    }

    /// Heap bytes held by the decoder's buffers.
    pub fn mem(&self) -> usize {
        self.req.args.capacity() * size_of::<ArgSpan>()
            + self.req.buf.capacity()
            + self.line.capacity()
    }

    fn enter_resync(&mut self, line_start: bool) {
        self.st = St::Resync;
        self.resync.reset(line_start);
        self.hdr.busy = false;
        self.fresh = false;
        self.first = false;
    }

    fn fail(&mut self, e: ProtocolError, on: &mut impl FnMut(RequestEvent<'_>)) {
        self.st = St::Dead;
        on(RequestEvent::ProtocolError(e, &self.req));
    }

    /// An inline line Redis gave up on: its name (and first arguments) from the bytes held.
    fn fail_inline(&mut self, on: &mut impl FnMut(RequestEvent<'_>)) {
        let line = std::mem::take(&mut self.line);
        let head = line.get(..NAME_SCAN).unwrap_or(&line);
        let mut sink = ReqSink {
            req: &mut self.req,
            keep_args: self.lim.keep_args,
            keep_bytes: self.lim.keep_arg_bytes,
            keep_left: 0,
            kept: false,
        };
        // The line is cut: an unbalanced quote at the cut is expected, the pieces still count.
        let _ = split_into(head, &mut sink);
        self.req.argc = self.req.args.len() as u64;
        self.line = line;
        self.line.clear();
        self.line.shrink_to(1024);
        self.fail(ProtocolError::InlineTooLong, on);
    }

    fn start(
        &mut self,
        ts: u64,
        data: &[u8],
        mut pos: usize,
        on: &mut impl FnMut(RequestEvent<'_>),
    ) -> usize {
        if self.fresh {
            self.fresh = false;
            let b = data[pos];
            // A client's first byte is `*` or text; a TLS ClientHello (0x16) and other binary
            // protocols are not Redis traffic.
            if !(b == b'*' || (0x20..0x7f).contains(&b) || matches!(b, b'\t' | b'\r' | b'\n')) {
                self.st = St::Dead;
                on(RequestEvent::Desync(DesyncReason::NotResp));
                return data.len();
            }
        }
        loop {
            let b = data[pos];
            let r = &mut self.req;
            r.args.clear();
            r.buf.clear();
            r.argc = 0;
            r.wire_len = 0;
            r.first_ts = ts;
            r.last_ts = ts;
            r.truncated = false;
            r.inline = b != b'*';
            if b != b'*' {
                self.st = St::Inline;
                self.line.clear();
                self.stuck = false;
                return self.inline(ts, data, pos, on);
            }
            let end = match self.whole_command(data, pos) {
                Whole::Done(end) => end,
                Whole::Open(p) => {
                    self.st = St::ArgHdr;
                    self.hdr.busy = false;
                    return self.multibulk(ts, data, p, on);
                }
                Whole::No => {
                    self.st = St::Count;
                    self.hdr.busy = false;
                    return self.multibulk(ts, data, pos, on);
                }
            };
            self.first = false;
            on(RequestEvent::Command(&self.req));
            // Pipelined commands: stay in this loop rather than go back to the dispatcher.
            if end >= data.len() || data[end] != b'*' {
                return end;
            }
            pos = end;
        }
    }

    /// Fast path: a canonical multibulk command inside `data[pos..]`, decoded without the
    /// state machine. When an argument is cut by the end of the slice (or is anything unusual)
    /// the command so far is committed and the state machine takes over at that argument.
    #[inline(always)]
    fn whole_command(&mut self, data: &[u8], pos: usize) -> Whole {
        let Some((n, cr)) = fast_num(data, pos + 1) else {
            return Whole::No;
        };
        if n <= 0 || n as u64 > self.lim.max_request_args || cr + 1 >= data.len() {
            return Whole::No;
        }
        let (keep_args, keep_bytes, max_bulk) = (
            self.lim.keep_args,
            self.lim.keep_arg_bytes,
            self.lim.max_bulk,
        );
        let n = n as u64;
        let req = &mut self.req;
        req.argc = n;
        let mut p = cr + 2;
        for i in 0..n {
            // A canonical `$len\r\n` and the whole payload plus the two bytes after it (which
            // Redis skips unchecked).
            let whole = match data.get(p) {
                Some(b'$') => fast_num(data, p + 1).and_then(|(len, cr)| {
                    let end = (cr + 2)
                        .checked_add(usize::try_from(len).ok()?)?
                        .checked_add(2)?;
                    (len as u64 <= max_bulk && end <= data.len()).then_some((
                        len as u64,
                        cr + 2,
                        end,
                    ))
                }),
                _ => None,
            };
            let Some((len, start, end)) = whole else {
                req.wire_len = (p - pos) as u64;
                self.args_left = n - i;
                return Whole::Open(p);
            };
            if i < keep_args as u64 {
                let k = (len as usize).min(keep_bytes);
                let at = u32::try_from(req.buf.len()).unwrap_or(u32::MAX);
                req.args.push(ArgSpan {
                    start: at,
                    kept: k as u32,
                    len,
                });
                req.buf.extend_from_slice(&data[start..start + k]);
            }
            p = end;
        }
        req.wire_len = (p - pos) as u64;
        Whole::Done(p)
    }

    /// A `*N` or `$N` line: the fast path reads a canonical number straight from the slice,
    /// anything else goes through the exact (and slower) `HdrAcc`.
    #[inline(always)]
    fn header(&mut self, data: &[u8], pos: usize) -> Hdr {
        if !self.hdr.busy {
            let b = data[pos];
            let fast = match b {
                b'\r' | 0 => None,
                _ => fast_num(data, pos + 1).filter(|&(_, cr)| cr + 1 < data.len()),
            };
            if let Some((v, cr)) = fast {
                return Hdr::Line(b, Some(v), cr + 2);
            }
            self.hdr.begin();
        }
        match self.hdr.push(&data[pos..], self.lim.max_line) {
            HdrOut::Pending => Hdr::Pending,
            HdrOut::TooLong => Hdr::TooLong,
            HdrOut::Done(n) => Hdr::Line(self.hdr.first(), self.hdr.num(), pos + n),
        }
    }

    fn multibulk(
        &mut self,
        ts: u64,
        data: &[u8],
        mut pos: usize,
        on: &mut impl FnMut(RequestEvent<'_>),
    ) -> usize {
        while pos < data.len() {
            match self.st {
                St::Count => match self.header(data, pos) {
                    Hdr::Pending => {
                        self.req.wire_len += (data.len() - pos) as u64;
                        return data.len();
                    }
                    Hdr::TooLong => {
                        // Read (and refused) by Redis: the request's bytes.
                        self.req.wire_len += (data.len() - pos) as u64;
                        self.fail(ProtocolError::TooBigMbulkCount, on);
                        return data.len();
                    }
                    Hdr::Line(_, num, next) => {
                        self.req.wire_len += (next - pos) as u64;
                        pos = next;
                        match num {
                            // `*0`, `*-1` and any other count <= 0: no command, no reply.
                            Some(n) if n <= 0 => {
                                self.st = St::Start;
                                self.first = false;
                                on(RequestEvent::Empty);
                                return pos;
                            }
                            Some(n) if n as u64 <= self.lim.max_request_args => {
                                self.args_left = n as u64;
                                self.req.argc = n as u64;
                                self.st = St::ArgHdr;
                            }
                            _ => {
                                self.fail(ProtocolError::BadMultibulkLength, on);
                                return data.len();
                            }
                        }
                    }
                },
                St::ArgHdr => match self.header(data, pos) {
                    Hdr::Pending => {
                        self.req.wire_len += (data.len() - pos) as u64;
                        return data.len();
                    }
                    Hdr::TooLong => {
                        // Read (and refused) by Redis: the request's bytes.
                        self.req.wire_len += (data.len() - pos) as u64;
                        self.fail(ProtocolError::TooBigBulkCount, on);
                        return data.len();
                    }
                    Hdr::Line(first, num, next) => {
                        if first != b'$' {
                            self.fail(ProtocolError::ExpectedDollar(first), on);
                            return data.len();
                        }
                        let len = match num {
                            Some(n) if n >= 0 && n as u64 <= self.lim.max_bulk => n as u64,
                            _ => {
                                self.fail(ProtocolError::BadBulkLength, on);
                                return data.len();
                            }
                        };
                        self.req.wire_len += (next - pos) as u64;
                        pos = next;
                        if self.req.args.len() < self.lim.keep_args {
                            let start = u32::try_from(self.req.buf.len()).unwrap_or(u32::MAX);
                            self.req.args.push(ArgSpan {
                                start,
                                kept: 0,
                                len,
                            });
                            self.keep_left = len.min(self.lim.keep_arg_bytes as u64) as usize;
                        } else {
                            self.keep_left = 0;
                        }
                        // Redis skips the two bytes after the payload without looking at them.
                        self.data_left = len + 2;
                        self.st = St::ArgData;
                    }
                },
                St::ArgData => {
                    let take = ((data.len() - pos) as u64).min(self.data_left) as usize;
                    if self.keep_left > 0 {
                        // keep_left <= payload bytes left, so this never copies the CRLF.
                        let k = self.keep_left.min(take);
                        self.req.buf.extend_from_slice(&data[pos..pos + k]);
                        self.keep_left -= k;
                        if let Some(a) = self.req.args.last_mut() {
                            a.kept += k as u32; // k <= keep_arg_bytes <= u16::MAX
                        }
                    }
                    self.data_left -= take as u64;
                    self.req.wire_len += take as u64;
                    pos += take;
                    if self.data_left == 0 {
                        self.arg_done(ts, on);
                        if self.st == St::Start {
                            return pos;
                        }
                    }
                }
                _ => return pos,
            }
        }
        pos
    }

    fn arg_done(&mut self, ts: u64, on: &mut impl FnMut(RequestEvent<'_>)) {
        self.args_left -= 1;
        if self.args_left > 0 {
            self.st = St::ArgHdr;
            return;
        }
        self.req.last_ts = ts;
        self.st = St::Start;
        self.first = false;
        on(RequestEvent::Command(&self.req));
    }

    /// An inline line ends at `\n` (Redis' `strchr`); a NUL before it hides the newline for
    /// good, and Redis fails once more than `max_line` bytes are pending without one. A line that
    /// ends runs, unless it is so long that Redis certainly saw `max_line` pending bytes without
    /// its newline (see [`INLINE_CERTAIN_FAIL_EXTRA`]).
    fn inline(
        &mut self,
        ts: u64,
        data: &[u8],
        pos: usize,
        on: &mut impl FnMut(RequestEvent<'_>),
    ) -> usize {
        let rest = &data[pos..];
        let max = self.lim.max_line;
        let certain = max.saturating_add(INLINE_CERTAIN_FAIL_EXTRA);
        if self.stuck {
            self.req.wire_len += rest.len() as u64;
            self.stuck_len = self.stuck_len.saturating_add(rest.len());
            if self.stuck_len > max {
                self.fail_inline(on);
            }
            return data.len();
        }
        match memchr::memchr2(b'\n', 0, rest) {
            Some(i) if rest[i] == b'\n' => {
                if self.line.len() + i >= certain {
                    self.line.extend_from_slice(&rest[..i.min(NAME_SCAN)]);
                    self.fail_inline(on);
                    return data.len();
                }
                self.req.wire_len += (i + 1) as u64;
                self.req.last_ts = ts;
                if self.line.is_empty() {
                    self.inline_line(&rest[..i], on);
                } else {
                    self.line.extend_from_slice(&rest[..i]);
                    let line = std::mem::take(&mut self.line);
                    self.inline_line(&line, on);
                    self.line = line;
                    self.line.clear();
                    if self.line.capacity() > LINE_SHRINK {
                        self.line.shrink_to(1024);
                    }
                }
                pos + i + 1
            }
            Some(nul) => {
                self.stuck = true;
                self.stuck_len = self.line.len() + rest.len();
                // Only the name matters now (for the record of the refusal).
                self.line.extend_from_slice(&rest[..nul.min(NAME_SCAN)]);
                self.line.truncate(NAME_SCAN);
                self.req.wire_len += rest.len() as u64;
                if self.stuck_len > max {
                    self.fail_inline(on);
                }
                data.len()
            }
            None => {
                if self.line.len() + rest.len() >= certain {
                    self.line
                        .extend_from_slice(&rest[..rest.len().min(NAME_SCAN)]);
                    self.fail_inline(on);
                    return data.len();
                }
                self.line.extend_from_slice(rest);
                self.req.wire_len += rest.len() as u64;
                data.len()
            }
        }
    }

    /// A complete inline line (without its `\n`).
    fn inline_line(&mut self, line: &[u8], on: &mut impl FnMut(RequestEvent<'_>)) {
        let content = match line {
            [head @ .., b'\r'] => head,
            _ => line,
        };
        if self.first && is_http(content) {
            self.st = St::Dead;
            on(RequestEvent::Desync(DesyncReason::NotResp));
            return;
        }
        self.first = false;
        self.st = St::Start;
        let mut sink = ReqSink {
            req: &mut self.req,
            keep_args: self.lim.keep_args,
            keep_bytes: self.lim.keep_arg_bytes,
            keep_left: 0,
            kept: false,
        };
        match split_into(content, &mut sink) {
            None => {
                self.req.argc = self.req.args.len() as u64;
                self.fail(ProtocolError::UnbalancedQuotes, on);
            }
            Some(0) => on(RequestEvent::Empty),
            Some(n) => {
                self.req.argc = n as u64;
                on(RequestEvent::Command(&self.req));
            }
        }
    }

    fn resync(
        &mut self,
        ts: u64,
        data: &[u8],
        pos: usize,
        on: &mut impl FnMut(RequestEvent<'_>),
    ) -> usize {
        // A heuristic bound for where a command plausibly starts, tighter than what Redis
        // accepts (`max_request_args`, INT_MAX): a huge count right after a gap is far more
        // likely payload than a real command.
        let max_args = self.lim.max_request_args.min(RESYNC_MAX_ARGS);
        let max_bulk = self.lim.max_bulk;
        match self.resync.scan(
            ts,
            data,
            pos,
            |b| b == b'*',
            |w| plausible(w, max_args, max_bulk),
        ) {
            Scan::Consumed => data.len(),
            Scan::Found { pos, replay } => {
                self.st = St::Start;
                if let Some((buf, n, rts)) = replay {
                    // The command began in bytes carried from the previous feed.
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
    use proptest::prelude::*;
    use rstest::rstest;

    /// An owned, comparable summary of one event.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Ev {
        Cmd {
            args: Vec<(Vec<u8>, u64)>,
            argc: u64,
            inline: bool,
            wire: u64,
            truncated: bool,
        },
        Empty,
        Proto(ProtocolError),
        Desync(DesyncReason),
    }

    fn ev(e: RequestEvent<'_>) -> (Ev, u64, u64) {
        match e {
            RequestEvent::Command(r) => {
                let args = (0..r.args.len())
                    .map(|i| r.arg(i).map(|(a, l)| (a.to_vec(), l)).unwrap())
                    .collect();
                let c = Ev::Cmd {
                    args,
                    argc: r.argc,
                    inline: r.inline,
                    wire: r.wire_len,
                    truncated: r.truncated,
                };
                (c, r.first_ts, r.last_ts)
            }
            RequestEvent::Empty => (Ev::Empty, 0, 0),
            RequestEvent::ProtocolError(p, _) => (Ev::Proto(p), 0, 0),
            RequestEvent::Desync(d) => (Ev::Desync(d), 0, 0),
        }
    }

    fn feed_all(d: &mut RequestDecoder, parts: &[&[u8]]) -> Vec<Ev> {
        let mut out = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            d.feed(i as u64, p, &mut |e| out.push(ev(e).0));
        }
        out
    }

    fn decode(input: &[u8]) -> Vec<Ev> {
        feed_all(&mut RequestDecoder::new(Limits::default()), &[input])
    }

    fn cmd(args: &[&[u8]], wire: usize) -> Ev {
        Ev::Cmd {
            args: args.iter().map(|a| (a.to_vec(), a.len() as u64)).collect(),
            argc: args.len() as u64,
            inline: false,
            wire: wire as u64,
            truncated: false,
        }
    }

    fn inl(args: &[&[u8]], wire: usize) -> Ev {
        match cmd(args, wire) {
            Ev::Cmd {
                args,
                argc,
                wire,
                truncated,
                ..
            } => Ev::Cmd {
                args,
                argc,
                inline: true,
                wire,
                truncated,
            },
            e => e,
        }
    }

    fn mb(args: &[&[u8]]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            v.extend_from_slice(a);
            v.extend_from_slice(b"\r\n");
        }
        v
    }

    use ProtocolError::*;

    #[rstest]
    #[case::get(b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n", vec![cmd(&[b"GET", b"foo"], 22)])]
    #[case::pipeline(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n", vec![cmd(&[b"PING"], 14), cmd(&[b"PING"], 14)])]
    #[case::empty_arg(b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", vec![cmd(&[b"ECHO", b""], 20)])]
    #[case::binary_arg(b"*2\r\n$4\r\nECHO\r\n$4\r\n\r\n\0\xff\r\n", vec![cmd(&[b"ECHO", b"\r\n\0\xff"], 24)])]
    #[case::star0(b"*0\r\n", vec![Ev::Empty])]
    #[case::star_minus1(b"*-1\r\n", vec![Ev::Empty])]
    // Redis returns early for any count <= 0.
    #[case::star_minus5(b"*-5\r\n*1\r\n$4\r\nPING\r\n", vec![Ev::Empty, cmd(&[b"PING"], 14)])]
    // Redis finds the '\r' and skips the next byte unchecked, in headers and after payloads.
    #[case::cr_any(b"*1\rX$4\rYPINGab", vec![cmd(&[b"PING"], 14)])]
    #[case::count_not_number(b"*abc\r\n", vec![Ev::Proto(BadMultibulkLength)])]
    #[case::count_leading_zero(b"*01\r\n", vec![Ev::Proto(BadMultibulkLength)])]
    #[case::count_plus(b"*+1\r\n", vec![Ev::Proto(BadMultibulkLength)])]
    #[case::count_space(b"*1 \r\n", vec![Ev::Proto(BadMultibulkLength)])]
    #[case::count_empty(b"*\r\n", vec![Ev::Proto(BadMultibulkLength)])]
    #[case::count_lf_only(b"*1\n$4\r\nPING\r\n", vec![Ev::Proto(BadMultibulkLength)])]
    // Redis 7.0 accepts counts up to INT_MAX.
    #[case::count_over(b"*2147483648\r\n", vec![Ev::Proto(BadMultibulkLength)])]
    #[case::count_max(b"*2147483647\r\n$1\r\n", vec![])]
    #[case::count_over_old_limit(b"*1048577\r\n$1\r\n", vec![])]
    #[case::count_overflow(b"*99999999999999999999\r\n", vec![Ev::Proto(BadMultibulkLength)])]
    #[case::expected_dollar(b"*1\r\n:4\r\nPING\r\n", vec![Ev::Proto(ExpectedDollar(b':'))])]
    #[case::expected_dollar_empty(b"*1\r\n\r\n", vec![Ev::Proto(ExpectedDollar(b'\r'))])]
    #[case::bulk_negative(b"*1\r\n$-1\r\n", vec![Ev::Proto(BadBulkLength)])]
    #[case::bulk_bad(b"*1\r\n$x\r\n", vec![Ev::Proto(BadBulkLength)])]
    #[case::bulk_leading_zero(b"*1\r\n$04\r\nPING\r\n", vec![Ev::Proto(BadBulkLength)])]
    #[case::bulk_over(b"*1\r\n$536870913\r\n", vec![Ev::Proto(BadBulkLength)])]
    #[case::bulk_max(b"*1\r\n$536870912\r\nabc", vec![])]
    #[case::error_then_ignored(b"*1\r\n$x\r\n*1\r\n$4\r\nPING\r\n", vec![Ev::Proto(BadBulkLength)])]
    #[case::before_error_kept(b"*1\r\n$4\r\nPING\r\n*x\r\nPING\r\n", vec![cmd(&[b"PING"], 14), Ev::Proto(BadMultibulkLength)])]
    #[case::inline_crlf(b"PING\r\n", vec![inl(&[b"PING"], 6)])]
    #[case::inline_lf(b"PING\n", vec![inl(&[b"PING"], 5)])]
    #[case::inline_args(b"SET k \"a b\\x41\" 'it\\'s'\r\n", vec![inl(&[b"SET", b"k", b"a bA", b"it's"], 25)])]
    #[case::inline_only_one_cr_stripped(b"PING\r\r\n", vec![inl(&[b"PING"], 7)])]
    #[case::inline_empty_crlf(b"\r\n", vec![Ev::Empty])]
    #[case::inline_empty_lf(b"\n", vec![Ev::Empty])]
    #[case::inline_blank(b"  \t \r\n", vec![Ev::Empty])]
    #[case::inline_then_mb(b"PING\n*1\r\n$4\r\nPING\r\n", vec![inl(&[b"PING"], 5), cmd(&[b"PING"], 14)])]
    #[case::inline_dollar(b"$3\r\nfoo\r\n", vec![inl(&[b"$3"], 4), inl(&[b"foo"], 5)])]
    #[case::unbalanced(b"SET k \"v\r\nPING\r\n", vec![Ev::Proto(UnbalancedQuotes)])]
    #[case::quote_then_text(b"GET \"a\"b\r\n", vec![Ev::Proto(UnbalancedQuotes)])]
    // A NUL hides the newline from Redis' strchr: nothing happens (until 64 KiB pile up).
    #[case::inline_nul(b"GET a\0b\r\nPING\r\n", vec![])]
    #[case::header_nul(b"*1\0\r\n$4\r\nPING\r\n", vec![])]
    #[case::tls(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", vec![Ev::Desync(DesyncReason::NotResp)])]
    #[case::http(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", vec![Ev::Desync(DesyncReason::NotResp)])]
    #[case::http_later(b"PING\r\nGET / HTTP/1.1\r\n", vec![inl(&[b"PING"], 6), inl(&[b"GET", b"/", b"HTTP/1.1"], 16)])]
    fn request_cases(#[case] input: &[u8], #[case] want: Vec<Ev>) {
        assert_eq!(decode(input), want);
        // The same events byte by byte.
        let parts: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            feed_all(&mut RequestDecoder::new(Limits::default()), &parts),
            want
        );
    }

    #[test]
    fn inline_line_limit() {
        // A complete line runs unless Redis certainly saw 64 KiB pending without its newline
        // (checked on 7.0.15 and 8.2.3: 70,000 bytes in one write run, 100,000 are refused).
        for n in [64 * 1024, 70_000, 80 * 1024 - 1] {
            let mut ok = b"SET k ".to_vec();
            ok.resize(n, b'a');
            ok.extend_from_slice(b"\nPING\n");
            let got = decode(&ok);
            assert_eq!(got.len(), 2, "{n}");
            assert!(matches!(&got[0], Ev::Cmd { argc: 3, .. }), "{n}");
        }
        let mut long = b"SET k ".to_vec();
        long.resize(80 * 1024, b'a');
        long.extend_from_slice(b"\nPING\n");
        assert_eq!(decode(&long), vec![Ev::Proto(InlineTooLong)]);
        // Unterminated, split across feeds too.
        let unterminated = vec![b'a'; 80 * 1024];
        let mut d = RequestDecoder::new(Limits::default());
        let (a, b) = unterminated.split_at(1000);
        assert_eq!(feed_all(&mut d, &[a, b]), vec![Ev::Proto(InlineTooLong)]);
        assert!(d.mem() < 20 * 1024 + 4096);
        // The refusal carries the name as sent.
        let mut d = RequestDecoder::new(Limits::default());
        let mut name = Vec::new();
        d.feed(0, &long, &mut |e| {
            if let RequestEvent::ProtocolError(_, r) = e {
                name = r.arg(0).map(|(a, _)| a.to_vec()).unwrap_or_default();
            }
        });
        assert_eq!(name, b"SET");
    }

    #[test]
    fn tiny_max_line_header_independent_of_cuts() {
        // The reply decoder's fuzz finding, on this side: a header longer than a tiny max_line
        // must not be taken whole and rejected when cut (max_line is now at least 32).
        let lim = Limits {
            max_line: 4,
            ..Limits::default()
        };
        let input = b"*12345\r\n$3\r\nGET\r\n";
        let whole = feed_all(&mut RequestDecoder::new(lim.clone()), &[input]);
        let parts: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(feed_all(&mut RequestDecoder::new(lim), &parts), whole);
        assert_eq!(whole, vec![]);
    }

    #[test]
    fn stuck_lines_fail_after_limit() {
        let mut s = b"GET a\0b\r\n".to_vec();
        s.extend(std::iter::repeat_n(b'x', 64 * 1024));
        assert_eq!(decode(&s), vec![Ev::Proto(InlineTooLong)]);
        let mut s = b"*1\0\r\n".to_vec();
        s.extend(std::iter::repeat_n(b'x', 64 * 1024));
        assert_eq!(decode(&s), vec![Ev::Proto(TooBigMbulkCount)]);
        let mut s = b"*1\r\n$1".to_vec();
        s.extend(std::iter::repeat_n(b'1', 64 * 1024));
        assert_eq!(decode(&s), vec![Ev::Proto(TooBigBulkCount)]);
        let mut s = b"*".to_vec();
        s.extend(std::iter::repeat_n(b'1', 64 * 1024));
        assert_eq!(decode(&s), vec![Ev::Proto(TooBigMbulkCount)]);
    }

    #[test]
    fn keep_limits_and_timestamps() {
        let lim = Limits {
            keep_args: 2,
            keep_arg_bytes: 3,
            ..Limits::default()
        };
        let mut d = RequestDecoder::new(lim);
        let input = mb(&[b"MSET", b"key", b"longvalue"]);
        let mut got = Vec::new();
        let (a, b) = input.split_at(5);
        d.feed(10, a, &mut |e| got.push(ev(e)));
        d.feed(20, b, &mut |e| got.push(ev(e)));
        let want = Ev::Cmd {
            args: vec![(b"MSE".to_vec(), 4), (b"key".to_vec(), 3)],
            argc: 3,
            inline: false,
            wire: input.len() as u64,
            truncated: false,
        };
        assert_eq!(got, vec![(want, 10, 20)]);
        assert!(d.is_idle());
        // Inline too.
        let mut got = Vec::new();
        d.feed(30, b"MSET key", &mut |e| got.push(ev(e)));
        assert!(!d.is_idle());
        d.feed(40, b" longvalue\r\n", &mut |e| got.push(ev(e)));
        let want = Ev::Cmd {
            args: vec![(b"MSE".to_vec(), 4), (b"key".to_vec(), 3)],
            argc: 3,
            inline: true,
            wire: 20,
            truncated: false,
        };
        assert_eq!(got, vec![(want, 30, 40)]);
    }

    #[test]
    fn missing_inside_huge_bulk_stays_in_sync() {
        let n = 5 * 1024 * 1024;
        let head = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5242880\r\n".to_vec();
        let mut d = RequestDecoder::new(Limits::default());
        let mut got = Vec::new();
        d.feed(1, &head, &mut |e| got.push(ev(e)));
        d.feed(2, &[b'v'; 1000], &mut |e| got.push(ev(e)));
        d.missing(3, (n - 2000) as u64, &mut |e| got.push(ev(e)));
        d.feed(4, &[b'v'; 1000], &mut |e| got.push(ev(e)));
        d.feed(5, b"\r\n*1\r\n$4\r\nPING\r\n", &mut |e| got.push(ev(e)));
        let big = Ev::Cmd {
            args: vec![
                (b"SET".to_vec(), 3),
                (b"k".to_vec(), 1),
                (vec![b'v'; 128], n as u64),
            ],
            argc: 3,
            inline: false,
            wire: (head.len() + n + 2) as u64,
            truncated: true,
        };
        assert_eq!(got, vec![(big, 1, 5), (cmd(&[b"PING"], 14), 5, 5)]);
        assert!(d.mem() < 8192);
    }

    #[test]
    fn missing_covering_payload_end_completes() {
        let mut d = RequestDecoder::new(Limits::default());
        let mut got = Vec::new();
        d.feed(1, b"*1\r\n$10\r\nab", &mut |e| got.push(ev(e).0));
        d.missing(2, 10, &mut |e| got.push(ev(e).0));
        assert_eq!(
            got,
            vec![Ev::Cmd {
                args: vec![(b"ab".to_vec(), 10)],
                argc: 1,
                inline: false,
                wire: 21,
                truncated: true
            }]
        );
        // More than the argument has left: the framing is lost.
        got.clear();
        d.feed(3, b"*1\r\n$10\r\nab", &mut |e| got.push(ev(e).0));
        d.missing(4, 11, &mut |e| got.push(ev(e).0));
        d.feed(5, b"*1\r\n$4\r\nPING\r\n", &mut |e| got.push(ev(e).0));
        assert_eq!(
            got,
            vec![Ev::Desync(DesyncReason::Gap), cmd(&[b"PING"], 14)]
        );
    }

    #[test]
    fn gap_at_boundary_and_in_header() {
        let mut d = RequestDecoder::new(Limits::default());
        let mut got = Vec::new();
        d.missing(1, 5, &mut |e| got.push(ev(e).0));
        // After the gap: the rest of some command, then a new one at a line start.
        d.feed(2, b"lue\r\n*1\r\n$4\r\nPING\r\n", &mut |e| {
            got.push(ev(e).0)
        });
        d.feed(3, b"*2\r\n$3\r\nGET\r\n$1", &mut |e| got.push(ev(e).0));
        d.missing(4, 1, &mut |e| got.push(ev(e).0));
        d.missing(4, 1, &mut |e| got.push(ev(e).0));
        d.feed(5, b"*1\r\n$4\r\nPING\r\n", &mut |e| got.push(ev(e).0));
        let ping = cmd(&[b"PING"], 14);
        let gap = Ev::Desync(DesyncReason::Gap);
        assert_eq!(got, vec![gap.clone(), ping.clone(), gap, ping]);
    }

    #[test]
    fn mid_stream_start() {
        let mut d = RequestDecoder::new_mid_stream(Limits::default());
        let mut got = Vec::new();
        // Inside a payload that itself holds '*' lines that are not plausible commands.
        d.feed(1, b"x*2\r\n*9999999\r\n$1\r\n*2\r\n:1\r\n", &mut |e| {
            got.push(ev(e).0)
        });
        assert!(got.is_empty());
        d.feed(2, b"\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", &mut |e| {
            got.push(ev(e).0)
        });
        assert_eq!(got, vec![cmd(&[b"GET", b"k"], 20)]);
        // A stream picked up right at a command start.
        let mut d = RequestDecoder::new_mid_stream(Limits::default());
        let input = mb(&[b"GET", b"k"]);
        assert_eq!(feed_all(&mut d, &[&input]), vec![cmd(&[b"GET", b"k"], 20)]);
    }

    #[test]
    fn resync_candidate_split_across_feeds() {
        let input = b"garbage\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        for cut in 0..input.len() {
            for cut2 in cut..input.len() {
                let mut d = RequestDecoder::new_mid_stream(Limits::default());
                let mut got = Vec::new();
                for (ts, p) in [&input[..cut], &input[cut..cut2], &input[cut2..]]
                    .into_iter()
                    .enumerate()
                {
                    d.feed(ts as u64, p, &mut |e| got.push(ev(e)));
                }
                let first_ts = if cut > 8 {
                    0
                } else if cut2 > 8 {
                    1
                } else {
                    2
                };
                let last_ts = if cut2 == input.len() { 1 } else { 2 };
                let last_ts = if cut == input.len() { 0 } else { last_ts };
                assert_eq!(
                    got,
                    vec![(cmd(&[b"GET", b"k"], 20), first_ts, last_ts)],
                    "cuts {cut} {cut2}"
                );
            }
        }
    }

    #[test]
    fn no_growth_once_warm() {
        let mut input = Vec::new();
        for i in 0..200 {
            input.extend(mb(&[
                b"SET",
                format!("key:{i}").as_bytes(),
                &vec![b'v'; i * 37],
            ]));
            input.extend_from_slice(b"GET \"some key\"\r\n");
        }
        let mut d = RequestDecoder::new(Limits::default());
        let mut n = 0;
        let mut pass = |d: &mut RequestDecoder| {
            d.feed(0, &input, &mut |_| n += 1);
            for c in input.chunks(7) {
                d.feed(0, c, &mut |_| n += 1);
            }
        };
        pass(&mut d);
        let warm = d.mem();
        pass(&mut d);
        assert_eq!(n, 1600);
        assert_eq!(d.mem(), warm);
    }

    // --- properties ---

    /// A command and its encoding.
    #[derive(Clone, Debug)]
    enum Cmd {
        Multi(Vec<Vec<u8>>),
        /// Inline arguments (written double-quoted with escapes).
        Inline(Vec<Vec<u8>>),
        Empty,
    }

    fn quote(a: &[u8]) -> Vec<u8> {
        let mut v = vec![b'"'];
        for &b in a {
            match b {
                b'"' => v.extend_from_slice(b"\\\""),
                b'\\' => v.extend_from_slice(b"\\\\"),
                b'\n' => v.extend_from_slice(b"\\n"),
                0x20..=0x7e => v.push(b),
                _ => v.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            }
        }
        v.push(b'"');
        v
    }

    fn encode(c: &Cmd) -> Vec<u8> {
        match c {
            Cmd::Multi(args) => {
                let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
                mb(&refs)
            }
            Cmd::Inline(args) => {
                let mut v = Vec::new();
                for a in args {
                    v.extend(quote(a));
                    v.push(b' ');
                }
                v.extend_from_slice(b"\r\n");
                v
            }
            Cmd::Empty => b"*0\r\n".to_vec(),
        }
    }

    fn arb_cmd() -> impl Strategy<Value = Cmd> {
        let arg = prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..12),
            1 => proptest::collection::vec(any::<u8>(), 100..400),
        ];
        prop_oneof![
            6 => proptest::collection::vec(arg.clone(), 1..6).prop_map(Cmd::Multi),
            2 => proptest::collection::vec(arg, 1..5).prop_map(Cmd::Inline),
            1 => Just(Cmd::Empty),
        ]
    }

    fn expected(c: &Cmd, lim: &Limits) -> Ev {
        match c {
            Cmd::Empty => Ev::Empty,
            Cmd::Multi(args) | Cmd::Inline(args) => Ev::Cmd {
                args: args
                    .iter()
                    .take(lim.keep_args)
                    .map(|a| {
                        (
                            a[..a.len().min(lim.keep_arg_bytes)].to_vec(),
                            a.len() as u64,
                        )
                    })
                    .collect(),
                argc: args.len() as u64,
                inline: matches!(c, Cmd::Inline(_)),
                wire: encode(c).len() as u64,
                truncated: false,
            },
        }
    }

    /// Cuts `len` bytes into segments at the given (sorted, deduplicated) points.
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
            cmds in proptest::collection::vec(arb_cmd(), 1..20),
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
            keep_args in 1usize..5,
            keep_arg_bytes in 0usize..20,
        ) {
            let lim = Limits { keep_args, keep_arg_bytes, ..Limits::default() };
            let mut stream = Vec::new();
            let mut bounds = Vec::new();
            for c in &cmds {
                let start = stream.len();
                stream.extend(encode(c));
                bounds.push((start, stream.len()));
            }
            let segs = segments(stream.len(), &cuts);
            let mut d = RequestDecoder::new(lim.clone());
            let mut got = Vec::new();
            // ts = offset of the segment's first byte.
            for &(a, b) in &segs {
                d.feed(a as u64, &stream[a..b], &mut |e| got.push(ev(e)));
            }
            prop_assert!(d.is_idle());
            let seg_of = |off: usize| segs.iter().find(|s| s.0 <= off && off < s.1).unwrap().0 as u64;
            let want: Vec<(Ev, u64, u64)> = cmds
                .iter()
                .zip(&bounds)
                .map(|(c, &(a, b))| match expected(c, &lim) {
                    e @ Ev::Cmd { .. } => (e, seg_of(a), seg_of(b - 1)),
                    e => (e, 0, 0),
                })
                .collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn missing_inside_bulk_keeps_sync(
            value_len in 300usize..5000,
            gap_at in 0usize..10_000,
            gap_len in 1usize..10_000,
            cut in any::<usize>(),
        ) {
            let value = vec![b'z'; value_len];
            let stream = [mb(&[b"SET", b"key", &value]), mb(&[b"GET", b"key"])].concat();
            let payload = stream.len() - 2 - 22 - value_len; // start of the value payload
            // The gap lies inside the payload or its CRLF.
            let gap_at = payload + gap_at % (value_len + 1);
            let gap_len = 1 + gap_len % (payload + value_len + 2 - gap_at);
            let mut d = RequestDecoder::new(Limits::default());
            let mut got = Vec::new();
            let before = &stream[..gap_at];
            let cut = cut % (before.len() + 1);
            d.feed(0, &before[..cut], &mut |e| got.push(ev(e).0));
            d.feed(0, &before[cut..], &mut |e| got.push(ev(e).0));
            d.missing(0, gap_len as u64, &mut |e| got.push(ev(e).0));
            d.feed(0, &stream[gap_at + gap_len..], &mut |e| got.push(ev(e).0));
            let kept = (gap_at - payload).min(128);
            let want = vec![
                Ev::Cmd {
                    args: vec![(b"SET".to_vec(), 3), (b"key".to_vec(), 3), (vec![b'z'; kept], value_len as u64)],
                    argc: 3,
                    inline: false,
                    wire: (payload + value_len + 2) as u64,
                    truncated: true,
                },
                cmd(&[b"GET", b"key"], 22),
            ];
            prop_assert_eq!(got, want);
        }

        #[test]
        fn garbage_then_commands_resyncs(
            garbage in proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..300),
            cmds in proptest::collection::vec(proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..4), 1..5),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut stream = garbage.clone();
            stream.push(b'\n');
            let mut want = Vec::new();
            for c in &cmds {
                let refs: Vec<&[u8]> = c.iter().map(|a| a.as_slice()).collect();
                let e = mb(&refs);
                want.push(cmd(&refs, e.len()));
                stream.extend(e);
            }
            let mut d = RequestDecoder::new_mid_stream(Limits::default());
            let mut got = Vec::new();
            for (a, b) in segments(stream.len(), &cuts) {
                d.feed(0, &stream[a..b], &mut |e| got.push(ev(e).0));
            }
            // A garbage prefix that happens to start like a command may swallow the first one.
            if garbage.first() == Some(&b'*') {
                prop_assert!(got.len() <= want.len());
            } else {
                prop_assert_eq!(got, want);
            }
        }

        #[test]
        fn whole_equals_bytewise(
            cmds in proptest::collection::vec(arb_cmd(), 1..8),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            mid in any::<bool>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            // The fast path (whole commands in one slice) against the byte-at-a-time state
            // machine, on valid and damaged traffic alike.
            let mut stream: Vec<u8> = cmds.iter().flat_map(encode).collect();
            for (at, b) in flips {
                let n = stream.len();
                stream[at % n] = b;
            }
            let lim = Limits { keep_args: 3, keep_arg_bytes: 8, ..Limits::default() };
            let make = || if mid { RequestDecoder::new_mid_stream(lim.clone()) } else { RequestDecoder::new(lim.clone()) };
            let whole = feed_all(&mut make(), &[&stream]);
            let parts: Vec<&[u8]> = stream.chunks(1).collect();
            prop_assert_eq!(&feed_all(&mut make(), &parts), &whole);
            let parts: Vec<&[u8]> = segments(stream.len(), &cuts).into_iter().map(|(a, b)| &stream[a..b]).collect();
            prop_assert_eq!(&feed_all(&mut make(), &parts), &whole);
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000), cuts in proptest::collection::vec(any::<usize>(), 0..10), mid in any::<bool>()) {
            let lim = Limits { max_line: 100, keep_args: 3, keep_arg_bytes: 5, ..Limits::default() };
            let mut d = if mid { RequestDecoder::new_mid_stream(lim) } else { RequestDecoder::new(lim) };
            for (a, b) in segments(data.len(), &cuts) {
                d.feed(0, &data[a..b], &mut |_| {});
                d.missing(0, (a % 3) as u64, &mut |_| {});
            }
            prop_assert!(d.mem() < 100_000);
        }
    }
}
