//! Shared pieces of the fuzz targets: the input formats (hand-written, fixed layouts, so that
//! `seeds.py` can write seeds from real captures and the fuzzer can mutate every knob), decoder
//! limit presets, and the invariant checks.
//!
//! Every input type implements `arbitrary::Arbitrary` by parsing its layout from the raw bytes,
//! so `cargo fuzz fmt <target> <file>` prints a crashing input as a structure. Every layout
//! accepts any byte string (short inputs read as zeros).

use redis_observer::{
    conn::ConnMeta,
    record::{CommandRecord, FlowEvent, Notice, Sink, Status},
    resp::{Child, Kind, Limits, Reply, ReplyEvent, Request, RequestEvent},
};

// ------------------------------------------------------------------------------------------------
// Reading the layouts

/// Little-endian reader that never fails: past the end it reads zeros / empty slices.
pub struct Rd<'a>(pub &'a [u8]);

impl<'a> Rd<'a> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Implements `Arbitrary` for a type with `fn parse(&[u8]) -> Self`.
#[macro_export]
macro_rules! parsed_input {
    ($t:ty) => {
        impl<'a> ::arbitrary::Arbitrary<'a> for $t {
            fn arbitrary(u: &mut ::arbitrary::Unstructured<'a>) -> ::arbitrary::Result<Self> {
                let rest = std::mem::replace(u, ::arbitrary::Unstructured::new(&[]));
                Ok(<$t>::parse(rest.take_rest()))
            }
            fn arbitrary_take_rest(
                mut u: ::arbitrary::Unstructured<'a>,
            ) -> ::arbitrary::Result<Self> {
                Self::arbitrary(&mut u)
            }
        }
    };
}

// ------------------------------------------------------------------------------------------------
// Decoder inputs (resp_request, resp_reply)

/// Layout: `flags` (bit 0: mid-stream decoder, bits 1-2: limits preset, bit 3: the ops are
/// missing-byte runs instead of cuts), `n` (ops, at most 64 used), `n` × (`pos` u16, `len` u8),
/// then the stream.
///
/// A cut op splits the stream at `pos` (mod its length + 1). A missing op at `pos` drops `len`
/// bytes of the stream (at least 1) there and reports `len` (× 4096 if `len` ≥ 128) missing bytes
/// to the decoder instead.
#[derive(Debug, Clone)]
pub struct DecoderInput {
    pub mid_stream: bool,
    pub preset: u8,
    pub missing_mode: bool,
    pub ops: Vec<(u16, u8)>,
    pub data: Vec<u8>,
}

impl DecoderInput {
    pub fn parse(b: &[u8]) -> Self {
        let mut r = Rd(b);
        let flags = r.u8();
        let n = usize::from(r.u8()) % 65;
        let ops = (0..n).map(|_| (r.u16(), r.u8())).collect();
        DecoderInput {
            mid_stream: flags & 1 != 0,
            preset: (flags >> 1) & 3,
            missing_mode: flags & 8 != 0,
            ops,
            data: r.rest().to_vec(),
        }
    }

    /// The segments to feed, in order: `Ok(bytes)` or `Err(missing count)`, covering the stream
    /// (minus the bytes missing ops drop).
    pub fn plan(&self) -> Vec<Result<&[u8], u64>> {
        let n = self.data.len();
        let mut ops: Vec<(usize, u8)> = self
            .ops
            .iter()
            .map(|&(p, l)| (usize::from(p) % (n + 1), l))
            .collect();
        ops.sort_by_key(|o| o.0);
        let mut out = Vec::new();
        let mut at = 0;
        for (pos, len) in ops {
            if pos < at {
                continue; // inside bytes a missing op dropped
            }
            out.push(Ok(&self.data[at..pos]));
            at = pos;
            if self.missing_mode {
                let skip = usize::from(len.max(1)).min(n - at);
                let reported = if len >= 128 {
                    u64::from(len) * 4096
                } else {
                    u64::from(len.max(1))
                };
                out.push(Err(reported.max(skip as u64)));
                at += skip;
            }
        }
        out.push(Ok(&self.data[at..]));
        out.retain(|s| !matches!(s, Ok(b) if b.is_empty()));
        out
    }
}

parsed_input!(DecoderInput);

/// Decoder limits: 0 the defaults, 1 small, 2 degenerate (nothing kept, tiny maxima), 3 medium.
pub fn limits(preset: u8) -> Limits {
    match preset & 3 {
        0 => Limits::default(),
        1 => Limits {
            max_line: 64,
            max_request_args: 16,
            max_bulk: 1000,
            max_depth: 4,
            keep_args: 3,
            keep_arg_bytes: 5,
            keep_reply_bytes: 5,
            keep_children: 3,
        },
        2 => Limits {
            max_line: 4,
            max_request_args: 2,
            max_bulk: 4,
            max_depth: 1,
            keep_args: 0,
            keep_arg_bytes: 0,
            keep_reply_bytes: 0,
            keep_children: 0,
        },
        _ => Limits {
            max_line: 1024,
            max_depth: 16,
            keep_args: 8,
            keep_arg_bytes: 32,
            keep_reply_bytes: 32,
            keep_children: 16,
            ..Limits::default()
        },
    }
}

/// Capacity a `Vec` reaches holding at most `n` elements of `size` bytes (growth doubles).
fn vec_bound(n: usize, size: usize) -> usize {
    2 * n.max(8) * size
}

/// What `RequestDecoder::mem` may reach under `l`: kept argument spans and prefixes, and one
/// inline line.
pub fn request_mem_bound(l: &Limits) -> usize {
    vec_bound(l.keep_args, size_of::<redis_observer::resp::ArgSpan>())
        + vec_bound(l.keep_args * l.keep_arg_bytes, 1)
        // A complete inline line is followed up to `max_line` plus the 16 KiB Redis may have
        // read past its limit before seeing the newline (`INLINE_CERTAIN_FAIL_EXTRA`).
        + vec_bound(l.max_line.max(32) + 16 * 1024, 1)
}

/// What `ReplyDecoder::mem` may reach under `l`: kept text and children, and the nesting stack.
pub fn reply_mem_bound(l: &Limits) -> usize {
    vec_bound(l.keep_reply_bytes, 1)
        + vec_bound(l.keep_children, size_of::<Child>())
        + vec_bound(l.keep_children * l.keep_reply_bytes, 1)
        // Frame { left: u64, attr: bool }; attributes nest too.
        + vec_bound(l.max_depth + 2, 16)
}

/// An owned, comparable request event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReqEv {
    Cmd {
        args: Vec<(Vec<u8>, u64)>,
        argc: u64,
        inline: bool,
        wire: u64,
        truncated: bool,
    },
    Empty,
    Proto(String),
    Desync(String),
}

/// Checks a request's own invariants under `l`; returns it owned.
pub fn check_request(r: &Request, l: &Limits, max_ts: u64) -> ReqEv {
    assert!(r.args.len() <= l.keep_args, "more args kept than keep_args");
    assert!(r.args.len() as u64 <= r.argc, "more args kept than argc");
    assert!(r.argc >= 1, "a command without arguments");
    if !r.inline {
        assert!(r.argc <= l.max_request_args, "argc over max_request_args");
    }
    assert!(r.wire_len >= 1, "a command of no bytes");
    assert!(r.first_ts <= r.last_ts && r.last_ts <= max_ts, "timestamps");
    let mut at = 0u32;
    let mut args = Vec::new();
    for (i, a) in r.args.iter().enumerate() {
        assert_eq!(a.start, at, "kept prefixes not contiguous");
        assert!(
            a.kept as usize <= l.keep_arg_bytes,
            "arg prefix over keep_arg_bytes"
        );
        assert!(u64::from(a.kept) <= a.len, "arg prefix longer than the arg");
        if !r.truncated && !r.inline {
            assert!(a.len <= l.max_bulk, "bulk over max_bulk");
        }
        at += a.kept;
        let (p, len) = r.arg(i).expect("arg in range");
        args.push((p.to_vec(), len));
    }
    assert_eq!(at as usize, r.buf.len(), "kept bytes not all in args");
    ReqEv::Cmd {
        args,
        argc: r.argc,
        inline: r.inline,
        wire: r.wire_len,
        truncated: r.truncated,
    }
}

pub fn own_request(e: RequestEvent<'_>, l: &Limits, max_ts: u64) -> ReqEv {
    match e {
        RequestEvent::Command(r) => check_request(r, l, max_ts),
        RequestEvent::Empty => ReqEv::Empty,
        RequestEvent::ProtocolError(p, _) => ReqEv::Proto(format!("{p:?}")),
        RequestEvent::Desync(d) => ReqEv::Desync(d.as_str().into()),
    }
}

/// An owned, comparable reply event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepEv {
    Reply {
        kind: Kind,
        len: i64,
        text: Vec<u8>,
        children: Vec<(Kind, i64, Vec<u8>)>,
        wire: u64,
        truncated: bool,
    },
    Desync(String),
}

/// Checks a reply's own invariants under `l`; returns it owned.
pub fn check_reply(r: &Reply, l: &Limits, max_ts: u64) -> RepEv {
    assert!(r.first_ts <= r.last_ts && r.last_ts <= max_ts, "timestamps");
    assert!(r.wire_len >= 1, "a reply of no bytes");
    assert!(
        r.text.len() <= l.keep_reply_bytes,
        "text over keep_reply_bytes"
    );
    assert!(
        r.children.len() <= l.keep_children,
        "children over keep_children"
    );
    check_value(r.kind, r.len, r.text.len(), r.children.len(), "reply");
    let mut children = Vec::new();
    for (i, c) in r.children.iter().enumerate() {
        assert!(
            c.kept as usize <= l.keep_reply_bytes,
            "child text over keep_reply_bytes"
        );
        assert!(
            c.start as usize + c.kept as usize <= r.child_text.len(),
            "child text out of range"
        );
        check_value(c.kind, c.len, c.kept as usize, 0, "child");
        children.push((c.kind, c.len, r.child_text(i).expect("child").to_vec()));
    }
    RepEv::Reply {
        kind: r.kind,
        len: r.len,
        text: r.text.clone(),
        children,
        wire: r.wire_len,
        truncated: r.truncated,
    }
}

/// Kind / length / kept text / children agree.
fn check_value(kind: Kind, len: i64, text: usize, children: usize, what: &str) {
    match kind {
        Kind::Null => {
            assert_eq!(len, -1, "{what}: null with a length");
            assert_eq!(text, 0, "{what}: null with text");
        }
        k if k.is_aggregate() => {
            assert!(len >= 0, "{what}: aggregate of negative length");
            assert_eq!(text, 0, "{what}: aggregate with text");
            let elems = if k == Kind::Map { 2 * len } else { len };
            assert!(
                children as i64 <= elems,
                "{what}: more children than elements"
            );
        }
        _ => {
            assert!(len >= 0, "{what}: scalar of negative length");
            assert!(
                text as i64 <= len,
                "{what}: kept text longer than the value"
            );
            assert_eq!(children, 0, "{what}: scalar with children");
        }
    }
}

pub fn own_reply(e: ReplyEvent<'_>, l: &Limits, max_ts: u64) -> RepEv {
    match e {
        ReplyEvent::Reply(r) => check_reply(r, l, max_ts),
        ReplyEvent::Desync(d) => RepEv::Desync(d.as_str().into()),
    }
}

// ------------------------------------------------------------------------------------------------
// Records (session, pipeline)

/// Bounds a record must respect.
#[derive(Clone, Debug)]
pub struct RecordBounds {
    pub keep_args: usize,
    pub keep_arg_bytes: usize,
    pub keep_name_bytes: usize,
    pub keep_reply_bytes: usize,
}

/// A sink that checks every record, push and notice, and sums what they account for.
#[derive(Debug)]
pub struct Checker {
    pub bounds: RecordBounds,
    /// Latest timestamp handed to the code under test.
    pub now: u64,
    pub records: u64,
    pub req_bytes: u64,
    pub resp_bytes: u64,
    pub push_bytes: u64,
    pub pushes: u64,
    pub notices: u64,
    pub lost: u64,
    pub overflows: u64,
    pub opened: u64,
    pub closed: u64,
    /// No record may come any more (the session was closed).
    pub sealed: bool,
}

impl Checker {
    pub fn new(bounds: RecordBounds) -> Self {
        Checker {
            bounds,
            now: 0,
            records: 0,
            req_bytes: 0,
            resp_bytes: 0,
            push_bytes: 0,
            pushes: 0,
            notices: 0,
            lost: 0,
            overflows: 0,
            opened: 0,
            closed: 0,
            sealed: false,
        }
    }

    pub fn check_record(&mut self, r: &CommandRecord<'_>) {
        assert!(!self.sealed, "a record after close");
        let b = &self.bounds;
        self.records += 1;
        self.req_bytes += r.req_bytes;
        self.resp_bytes += r.resp_bytes;
        assert!(r.ts_ns <= self.now, "record from the future");
        assert!(r.req_bytes >= 1, "a command of no bytes");
        assert!(r.args.len() <= b.keep_args, "more args than keep_args");
        assert!(r.args.len() as u64 <= r.argc, "more args than argc");
        for a in r.args {
            let end = a.start as usize + a.kept as usize;
            assert!(end <= r.arg_buf.len(), "arg out of arg_buf");
            assert!(
                a.kept as usize <= b.keep_arg_bytes,
                "arg over keep_arg_bytes"
            );
            assert!(u64::from(a.kept) <= a.len, "arg prefix longer than the arg");
            if a.redacted {
                assert_eq!(a.kept, 0, "redacted arg with bytes");
            }
        }
        if let Some(k) = r.key {
            assert!(k.len() <= b.keep_arg_bytes, "key over keep_arg_bytes");
        }
        assert!(r.name.len() <= b.keep_name_bytes.max(64), "name too long");
        match r.status {
            Status::Ok | Status::Error => {}
            Status::Unanswered | Status::NoReply => {
                assert!(r.latency_ns.is_none(), "latency without a reply");
                assert!(r.reply.is_none(), "reply on an unanswered command");
            }
            Status::ReplyDropped => {
                assert!(
                    r.reply.is_none(),
                    "reply on a command whose reply was dropped"
                );
                assert!(
                    r.latency_ns.is_none() || r.in_transaction,
                    "latency without a reply"
                );
            }
            Status::Aborted => {
                assert!(r.in_transaction, "aborted outside a transaction");
                assert!(r.latency_ns.is_none(), "latency on an aborted command");
            }
        }
        if r.status == Status::Error {
            assert_eq!(
                r.reply.map(|s| s.kind),
                Some(Kind::Error),
                "status error without an error reply"
            );
        }
        if let Some(s) = r.reply {
            if s.kind == Kind::Error {
                assert!(
                    matches!(r.status, Status::Error | Status::Aborted),
                    "error reply with status {:?}",
                    r.status
                );
            }
            // A refused request's text may be the observer's own copy of Redis's (at most 48
            // bytes) when the server's reply did not come.
            let cap = if r.protocol_error.is_some() {
                b.keep_reply_bytes.max(48)
            } else {
                b.keep_reply_bytes
            };
            assert!(s.text.len() <= cap, "reply text over keep_reply_bytes");
            if s.redacted {
                // A redacted error keeps only its class word (`ERR`, `WRONGPASS`, ...).
                assert!(
                    s.text.is_empty()
                        || (s.kind == Kind::Error
                            && s.text.len() <= 16
                            && s.text.iter().all(u8::is_ascii_uppercase)),
                    "redacted reply with text"
                );
            }
            check_value(s.kind, s.len, s.text.len(), 0, "record reply");
        }
        if let Some(l) = r.latency_ns {
            assert!(l <= self.now, "latency longer than the capture");
            assert!(
                r.reply.is_some() || r.in_transaction,
                "latency without a reply"
            );
        }
        assert!(!redis_observer::session::executed(r) || r.status != Status::Aborted);
    }

    pub fn check_push(&mut self, ts: u64, r: &Reply) {
        assert!(!self.sealed, "a push after close");
        assert!(ts <= self.now, "push from the future");
        self.pushes += 1;
        self.push_bytes += r.wire_len;
        assert!(r.wire_len >= 1);
    }

    pub fn check_notice(&mut self, n: &Notice) {
        self.notices += 1;
        match *n {
            Notice::CommandsLost(k) => {
                assert!(k >= 1, "zero commands lost");
                self.lost += k;
            }
            Notice::PendingOverflow => self.overflows += 1,
            _ => {}
        }
    }

    pub fn check_flow(&mut self, e: FlowEvent) {
        match e {
            FlowEvent::Opened => self.opened += 1,
            FlowEvent::Closed => {
                self.closed += 1;
                assert!(self.closed <= self.opened, "closed more flows than opened");
            }
            FlowEvent::BytesMissed { n, .. } => assert!(n > 0, "zero bytes missed"),
            FlowEvent::Evicted { .. } | FlowEvent::Refused => {}
        }
    }
}

impl Sink for Checker {
    fn flow(&mut self, _c: &ConnMeta, e: FlowEvent) {
        self.check_flow(e);
    }
    fn command(&mut self, rec: &CommandRecord<'_>) {
        self.check_record(rec);
    }
    fn push(&mut self, _c: &ConnMeta, ts: u64, r: &Reply) {
        self.check_push(ts, r);
    }
    fn notice(&mut self, _c: &ConnMeta, _ts: u64, n: Notice) {
        self.check_notice(&n);
    }
}
