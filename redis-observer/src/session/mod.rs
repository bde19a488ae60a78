//! Per-connection pairing of commands with their replies.
//!
//! A [`Session`] owns one connection's request and reply decoders and turns their events into
//! exactly one [`CommandRecord`] per command Redis runs (or is known not to answer), plus pushes
//! and notices. Redis answers a connection's commands in order, so pairing is a FIFO; everything
//! else here is where Redis (7.0, see `docs/redis-notes.md`) departs from one reply per command:
//!
//! - **CLIENT REPLY** OFF / SKIP (and an `OFF`/`SKIP` that is itself silent) are followed on the
//!   request side, in command order: a command the server will not answer is emitted at once as
//!   `no_reply`. `CLIENT REPLY ON` and `RESET` are answered even under OFF; under SKIP nothing is.
//!   An empty line or `*0` consumes a SKIP. Pub/sub confirmations are sent even to a silenced
//!   client (Redis ≥ 7.0.10 marks them `CLIENT_PUSHING`): they then count as pushes.
//! - **Pub/sub**: `(P|S)SUBSCRIBE` with n channels completes after its n-th confirmation; an
//!   argless `(P|S)UNSUBSCRIBE` after one confirmation per subscription of its kind (counted from
//!   the confirmations' third element), or the single `[.., null, n]` one. Deliveries, and
//!   confirmations that no command is waiting for, are pushes. In RESP2 an array is read as
//!   pub/sub only while subscribed (or when the head command is a pub/sub command), so a list
//!   that happens to start with `"message"` is still a reply elsewhere.
//! - **RESP3** (after a `HELLO` answered with a map, or any `>` seen): every push is a push,
//!   never a reply, except confirmations a pub/sub command at the head is waiting for.
//! - **MULTI/EXEC**: a command answered `+QUEUED` moves to the transaction and is emitted once, at
//!   EXEC, with the outcome of its element in EXEC's array (`in_transaction`, EXEC's latency,
//!   `resp_bytes` = its `+QUEUED`). A queue-time error is an ordinary error reply. Queued commands
//!   that never ran are emitted with `in_transaction` set and **no latency** (see [`executed`]):
//!   status `aborted` (with EXEC's `-EXECABORT` reply as their reply when there is one) after
//!   EXECABORT, a WATCH abort (EXEC's null), DISCARD or RESET; `unanswered` when the connection
//!   ends first.
//! - **MONITOR**: after its `+OK`, `+<ts> [db addr] ...` lines are pushes.
//! - **RESET** leaves subscribed mode, MONITOR, MULTI and RESP3 and turns replies back on.
//! - **Replication links** ([`repl`]): after `PSYNC` is answered `+FULLRESYNC`/`+CONTINUE` (or
//!   `SYNC`'s stream starts), the server side is a replication stream, not replies; replies are
//!   fed a line at a time while such an answer is awaited, so the hand-over is exact. A link
//!   already running is found by the replica's `REPLCONF ACK` or by commands the server sends
//!   with nothing pending. `REPLCONF ACK`/`GETACK` are never answered.
//! - **QUIT**, a protocol error and Redis's `POST`/`Host:` guard end the request stream: nothing
//!   the client sends afterwards runs. The protocol error's `-ERR` reply is consumed (a notice,
//!   not a command).
//!
//! Losses are counted, never guessed: a reply-side desync drops every pending command
//! ([`Notice::CommandsLost`]); a request-side desync (commands lost whose replies will still come)
//! keeps pairing the commands sent before it, then treats replies that started before the next
//! known command was fully sent as orphans (causality; exact for request/response clients,
//! best effort for pipelines). A session started mid-stream drops server bytes until the first
//! command and applies the same causality rule to its first pairing. Over `max_pending` (commands
//! awaiting a reply plus commands queued in MULTI), the oldest command is dropped
//! ([`Notice::PendingOverflow`]) and its reply skipped (a queued one: absent from EXEC's outcome).

mod ident;
mod pending;
mod pubsub;
mod repl;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::commands::redact::{self, Policy};
use crate::commands::{self, CommandId, UNKNOWN};
use crate::conn::ConnMeta;
use crate::limits::RecordLimits;
use crate::record::{
    CommandRecord, Dir, Notice, RecordArg, ReplEvent, ReplySummary, Sink, Status, SyncKind,
};
use crate::resp::{
    DesyncReason, Kind, Limits, ProtocolError, Reply, ReplyDecoder, ReplyEvent, Request,
    RequestDecoder, RequestEvent,
};

use pending::{Chan, Entry, Fifo, Role};
use pubsub::{Confirmation, PubSub};
use repl::Link;

/// Per-connection bounds.
#[derive(Clone, Debug)]
pub struct SessionLimits {
    /// Commands awaiting a reply, queued MULTI commands included; beyond it the oldest is dropped
    /// and its reply skipped.
    pub max_pending: usize,
    /// Bytes those commands may hold (their entries, kept arguments and bytes); beyond it the
    /// oldest is dropped the same way. Derived from `--memory-limit`.
    pub max_pending_bytes: usize,
    /// Decoder limits (what the decoders keep bounds what records can show); their working
    /// prefixes come from `record` (see [`RecordLimits::decoder`]).
    pub resp: Limits,
    /// What a record keeps of arguments, key and name.
    pub record: RecordLimits,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self::with_record(RecordLimits::default())
    }
}

impl SessionLimits {
    /// Default bounds, keeping what `record` says.
    #[must_use]
    pub fn with_record(record: RecordLimits) -> Self {
        SessionLimits {
            max_pending: 100_000,
            max_pending_bytes: 64 << 20,
            resp: record.decoder(Limits::default()),
            record,
        }
    }
}

/// Whether Redis ran the command, i.e. whether INFO commandstats counts it (as a call, or as a
/// rejected call for an error reply such as arity or NOPERM). False only for commands queued in a
/// transaction that never ran (EXECABORT, WATCH abort, DISCARD, RESET, connection ended): those
/// carry `in_transaction` without a latency.
#[must_use]
pub fn executed(rec: &CommandRecord<'_>) -> bool {
    !matches!(rec.status, Status::Aborted) && (!rec.in_transaction || rec.latency_ns.is_some())
}

/// One TCP connection: both decoders and the pairing state.
pub struct Session {
    requests: RequestDecoder,
    replies: ReplyDecoder,
    core: Core,
}

impl Session {
    /// `mid_stream`: the capture did not see the connection start (decoders resynchronise, server
    /// bytes are dropped until the first command).
    #[must_use]
    pub fn new(meta: ConnMeta, limits: &SessionLimits, mid_stream: bool) -> Self {
        let (requests, replies) = if mid_stream {
            (
                RequestDecoder::new_mid_stream(limits.resp.clone()),
                ReplyDecoder::new_mid_stream(limits.resp.clone()),
            )
        } else {
            (
                RequestDecoder::new(limits.resp.clone()),
                ReplyDecoder::new(limits.resp.clone()),
            )
        };
        Session {
            requests,
            replies,
            core: Core::new(meta, limits, mid_stream),
        }
    }

    pub fn client_bytes(&mut self, ts: u64, data: &[u8], sink: &mut impl Sink) {
        if self.core.req_closed || self.core.ignored || self.core.closed {
            return;
        }
        self.core.reply_idle = self.replies.is_idle();
        let core = &mut self.core;
        core.now = ts;
        self.requests.feed(ts, data, &mut |ev: RequestEvent<'_>| {
            core.on_request(ts, ev, sink);
        });
    }

    pub fn client_missing(&mut self, ts: u64, n: u64, sink: &mut impl Sink) {
        if self.core.req_closed || self.core.ignored || self.core.closed {
            return;
        }
        self.core.reply_idle = self.replies.is_idle();
        let core = &mut self.core;
        core.now = ts;
        self.requests.missing(ts, n, &mut |ev: RequestEvent<'_>| {
            core.on_request(ts, ev, sink);
        });
    }

    pub fn server_bytes(&mut self, ts: u64, data: &[u8], sink: &mut impl Sink) {
        if self.core.ignored || self.core.await_command || self.core.closed {
            return;
        }
        if self.core.link_watch {
            self.server_bytes_repl(ts, data, sink);
            return;
        }
        let core = &mut self.core;
        core.now = ts;
        self.replies.feed(ts, data, &mut |ev: ReplyEvent<'_>| {
            core.on_reply_event(ev, sink);
        });
        if let Some(refusal) = self.core.refusal.take() {
            self.refused_mid_request(refusal, sink);
        }
    }

    /// The server refused the request still arriving: what the decoder read of it is logged
    /// as refused and nothing after it is a command. With no partial request, the reply is an
    /// orphan after all.
    #[cold]
    fn refused_mid_request(
        &mut self,
        (pe, ts, wire): (ProtocolError, u64, u64),
        sink: &mut impl Sink,
    ) {
        let core = &mut self.core;
        match self.requests.refuse() {
            Some(req) if !core.req_closed => {
                core.req_closed = true;
                let mut buf = [0u8; 48];
                let reply = Reply {
                    kind: Kind::Error,
                    len: pe.text(&mut buf).len() as i64,
                    text: pe.text(&mut buf).to_vec(),
                    wire_len: wire,
                    first_ts: ts,
                    last_ts: ts,
                    ..Reply::default()
                };
                core.refused_partial(pe, req, &reply, sink);
            }
            _ => core.notice(sink, Notice::OrphanReply),
        }
    }

    pub fn server_missing(&mut self, ts: u64, n: u64, sink: &mut impl Sink) {
        if self.core.ignored || self.core.await_command || self.core.closed {
            return;
        }
        self.core.now = ts;
        if self.core.link_watch
            && let Some(names) = self.core.link_names()
            && let Some(link) = self.core.link.as_deref_mut()
        {
            link.missing(ts, n, &names, sink);
            return;
        }
        let core = &mut self.core;
        self.replies.missing(ts, n, &mut |ev: ReplyEvent<'_>| {
            core.on_reply_event(ev, sink);
        });
    }

    /// Server bytes while a replication link is expected or running (a rare, per-connection
    /// mode). While a PSYNC or SYNC awaits its answer, replies are fed a line at a time so that
    /// the stream is handed to the link exactly where it starts; keepalives (`\n`) between
    /// replies are skipped.
    #[cold]
    fn server_bytes_repl(&mut self, ts: u64, mut data: &[u8], sink: &mut impl Sink) {
        self.core.now = ts;
        loop {
            if let Some(names) = self.core.link_names()
                && let Some(link) = self.core.link.as_deref_mut()
            {
                link.bytes(ts, data, &names, sink);
                return;
            }
            let Some(&first) = data.first() else {
                return;
            };
            if self.replies.is_idle() {
                if first == b'\n' {
                    data = &data[1..];
                    continue;
                }
                if first != b'-' && self.core.sync_at_head() {
                    self.core.start_sync(ts, sink);
                    continue;
                }
            }
            let end = memchr::memchr(b'\n', data).map_or(data.len(), |i| i + 1);
            let core = &mut self.core;
            self.replies
                .feed(ts, &data[..end], &mut |ev: ReplyEvent<'_>| {
                    core.on_reply_event(ev, sink);
                });
            data = &data[end..];
            if self.core.link.is_none() && !self.core.awaits_link() {
                self.core.link_watch = false;
                let core = &mut self.core;
                self.replies.feed(ts, data, &mut |ev: ReplyEvent<'_>| {
                    core.on_reply_event(ev, sink);
                });
                return;
            }
        }
    }

    /// Connection ended: every pending command becomes `unanswered` (a pub/sub command that got
    /// some confirmations is complete), queued transaction commands too (never ran).
    pub fn close(&mut self, ts: u64, sink: &mut impl Sink) {
        self.core.now = self.core.now.max(ts);
        self.core.close(sink);
    }

    /// Bytes held, for the flow table's memory cap.
    #[must_use]
    pub fn mem(&self) -> usize {
        size_of::<Self>()
            + self.requests.mem()
            + self.replies.mem()
            + self.core.mem()
            + self.core.link.as_ref().map_or(0, |l| l.mem())
    }

    /// The connection this session pairs.
    #[must_use]
    pub fn meta(&self) -> &ConnMeta {
        &self.core.meta
    }

    /// Not RESP: the pipeline stops feeding it.
    #[must_use]
    pub fn ignored(&self) -> bool {
        self.core.ignored
    }

    /// The client waits on the server: a command awaits its reply (a blocked `BLPOP` too), a
    /// transaction is open, it is subscribed, or it is a replication link. Such a connection is
    /// not idle however quiet it is.
    #[must_use]
    pub fn waiting(&self) -> bool {
        let c = &self.core;
        !c.closed
            && !c.ignored
            && (!c.pending.is_empty()
                || !c.tx.is_empty()
                || c.multi_req
                || c.pubsub.subscribed()
                || c.link.is_some())
    }
}

/// Whether the connection is inside MULTI, as the replies showed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Multi {
    No,
    Yes,
    /// Started mid-stream or lost replies.
    Unknown,
}

/// What a record says about a command's outcome.
#[derive(Clone, Copy)]
struct Outcome<'a> {
    status: Status,
    reply: Option<ReplySummary<'a>>,
    latency_ns: Option<u64>,
    resp_bytes: u64,
    in_transaction: bool,
}

impl Outcome<'_> {
    /// No reply of its own (not sent, not come, or not this command's).
    fn bare(status: Status, resp_bytes: u64, in_transaction: bool) -> Self {
        Outcome {
            status,
            reply: None,
            latency_ns: None,
            resp_bytes,
            in_transaction,
        }
    }
}

/// How queued transaction commands end when they did not run.
#[derive(Clone, Copy)]
enum TxEnd<'a> {
    /// EXEC answered `-EXECABORT`: status `aborted`, with that reply as theirs.
    Aborted(&'a Reply),
    /// WATCH abort, DISCARD, RESET: status `aborted`, no reply.
    Discarded,
    /// Connection ended: `unanswered`.
    Closed,
}

struct Core {
    meta: ConnMeta,
    /// Time of the latest bytes fed (ns since the epoch): when notices happen.
    now: u64,
    max_pending: usize,
    max_pending_bytes: usize,
    keep_args: usize,
    keep_arg_bytes: usize,
    keep_name_bytes: usize,
    resolver: commands::Resolver,

    /// Commands awaiting a reply, oldest first.
    pending: VecDeque<Entry>,
    /// Commands queued in MULTI (answered `+QUEUED`), oldest first; all older than `pending`.
    tx: VecDeque<Entry>,
    /// Kept bytes and arguments of `tx` then `pending`, in that order.
    bytes: Fifo<u8>,
    args: Fifo<RecordArg>,

    // Request side, in command order (what Redis knows when it reads a command).
    reply_off: bool,
    skip_next: bool,
    multi_req: bool,
    /// QUIT, protocol error, close: nothing more the client sends is a command.
    req_closed: bool,
    /// Mid-stream start: server bytes are dropped until the first command.
    await_command: bool,

    // Reply side, in reply order.
    resp3: bool,
    multi: Multi,
    monitor: bool,
    pubsub: PubSub,
    /// RESP2 arrays shaped like pub/sub frames are taken as such even when not known to be
    /// subscribed (mid-stream start, or a silenced SUBSCRIBE).
    loose_pubsub: bool,
    /// Replies owed to commands dropped on overflow: skipped.
    skip_replies: u64,
    /// After a gap: the next pairing must be causal (reply started after the command was sent).
    resync: bool,
    /// Pending commands sent before the last request-side gap: they pair without that check.
    barrier: usize,
    /// A gap (or a mid-stream start) left the pairing in doubt: replies show no text until a
    /// command is sent with nothing pending and the reply stream between replies.
    uncertain: bool,
    /// The reply decoder is between replies (set before each request-side feed).
    reply_idle: bool,
    ignored: bool,
    /// `close` ran: nothing more is produced.
    closed: bool,

    // Replication (see `repl`): rare, kept out of the way of ordinary connections.
    /// A PSYNC or SYNC is pending, or `link` runs: server bytes take `server_bytes_repl`.
    link_watch: bool,
    /// The server side is a replication stream.
    link: Option<Box<Link>>,
    /// `REPLCONF listening-port` (0: not seen): names the link.
    repl_port: u16,
    /// A protocol-error reply that came with no command pending: (error, reply time, bytes).
    refusal: Option<(ProtocolError, u64, u64)>,
}

impl Core {
    fn new(mut meta: ConnMeta, l: &SessionLimits, mid_stream: bool) -> Self {
        if !mid_stream {
            meta.ident = crate::conn::Identity::fresh();
        }
        Core {
            meta,
            now: 0,
            max_pending: l.max_pending.max(1),
            max_pending_bytes: l.max_pending_bytes,
            // Bounds keep every entry's bytes far below u32 offsets.
            keep_args: l.record.args.min(1024),
            keep_arg_bytes: l.record.arg_bytes.max(l.record.key_bytes).min(1 << 16),
            keep_name_bytes: l.record.name_bytes.min(1 << 10),
            resolver: commands::Resolver::default(),
            pending: VecDeque::new(),
            tx: VecDeque::new(),
            bytes: Fifo::new(),
            args: Fifo::new(),
            reply_off: false,
            skip_next: false,
            multi_req: false,
            req_closed: false,
            await_command: mid_stream,
            resp3: false,
            multi: if mid_stream {
                Multi::Unknown
            } else {
                Multi::No
            },
            monitor: false,
            pubsub: PubSub::new(mid_stream),
            loose_pubsub: mid_stream,
            skip_replies: 0,
            resync: mid_stream,
            barrier: 0,
            uncertain: mid_stream,
            reply_idle: false,
            ignored: false,
            closed: false,
            link_watch: false,
            link: None,
            repl_port: 0,
            refusal: None,
        }
    }

    fn mem(&self) -> usize {
        (self.pending.capacity() + self.tx.capacity()) * size_of::<Entry>()
            + self.bytes.mem()
            + self.args.mem()
    }

    fn notice(&self, sink: &mut impl Sink, n: Notice) {
        sink.notice(&self.meta, self.now, n);
    }

    // --------------------------------------------------------------------------------------------
    // Replication links

    /// The link's names for its events, while there is a link.
    fn link_names(&self) -> Option<repl::Names> {
        self.link.as_ref()?;
        let client = self.meta.client;
        let replica = if self.repl_port == 0 {
            client
        } else {
            SocketAddr::new(client.ip(), self.repl_port)
        };
        Some(repl::Names {
            meta: self.meta.clone(),
            replica,
        })
    }

    /// A PSYNC or SYNC awaits its answer.
    fn awaits_link(&self) -> bool {
        self.pending
            .iter()
            .any(|e| matches!(e.role, Role::Psync | Role::Sync))
    }

    fn sync_at_head(&self) -> bool {
        self.pending.front().is_some_and(|e| e.role == Role::Sync)
    }

    /// The stream started where SYNC's reply would be: SYNC ran, and the stream is its answer.
    fn start_sync(&mut self, ts: u64, sink: &mut impl Sink) {
        let Some(h) = self.pending.front().copied() else {
            return;
        };
        let o = Outcome {
            latency_ns: Some(ts.saturating_sub(h.ts_last)),
            ..Outcome::bare(Status::Ok, 0, false)
        };
        self.emit(&h, o, sink);
        self.pop_pending();
        self.start_link(SyncKind::Full, None, sink);
    }

    /// From here on the server side is a replication stream, and the client a replica whose
    /// commands (ACKs) the master never answers.
    fn start_link(&mut self, kind: SyncKind, base: Option<u64>, sink: &mut impl Sink) {
        if let Some(n) = self.link_names() {
            // A second handshake on one connection: the old link ends here.
            sink.replication(&n.meta, n.replica, ReplEvent::Down);
        }
        self.link = Some(Box::new(Link::new(kind, base)));
        self.link_watch = true;
        self.reply_off = true;
        if let Some(n) = self.link_names() {
            sink.replication(&n.meta, n.replica, ReplEvent::Up(kind));
        }
    }

    /// `REPLCONF ACK <offset>`: only a replica sends it, so it also reveals a link picked up
    /// mid-stream.
    fn on_ack(&mut self, req: &Request, sink: &mut impl Sink) {
        let mut i = 1;
        let offset = loop {
            let Some((opt, len)) = req.arg(i) else {
                return; // GETACK: no link is implied
            };
            if len == 3 && opt.eq_ignore_ascii_case(b"ack") {
                break req.arg(i + 1).and_then(|(v, _)| parse_u64(v));
            }
            i += 2;
        };
        if self.link.is_none() {
            self.start_link(SyncKind::Unknown, None, sink);
        }
        let (Some(offset), Some(n)) = (offset, self.link_names()) else {
            return;
        };
        let lag = self.link.as_deref_mut().and_then(|l| l.ack(offset));
        sink.replication(&n.meta, n.replica, ReplEvent::Ack { offset, lag });
    }

    /// PSYNC's answer: `+FULLRESYNC <replid> <offset>` or `+CONTINUE [<replid>]` start a link.
    fn on_psync_reply(&mut self, psync: &Entry, r: &Reply, sink: &mut impl Sink) {
        if r.kind != Kind::Simple {
            return;
        }
        let mut words = r.text.split(|&b| b == b' ');
        match words.next() {
            Some(b"FULLRESYNC") => {
                let base = words.nth(1).and_then(parse_u64);
                self.start_link(SyncKind::Full, base, sink);
            }
            Some(b"CONTINUE") => {
                // The master resumes at the offset the replica asked for.
                let asked = self.entry_arg(psync, 1).and_then(parse_u64);
                self.start_link(SyncKind::Partial, asked.map(|o| o.saturating_sub(1)), sink);
            }
            _ => {}
        }
    }

    /// Kept bytes of argument `i` (after the name) of a pending entry.
    fn entry_arg(&self, e: &Entry, i: usize) -> Option<&[u8]> {
        let a = self.args.slice(e.args_at, e.args_len as usize).get(i)?;
        if a.redacted || u64::from(a.kept) != a.len {
            return None;
        }
        let buf = self.bytes.slice(e.bytes_at, e.bytes_len as usize);
        buf.get(a.start as usize..(a.start + a.kept) as usize)
    }

    /// A reply nothing waits for. A replication stream picked up mid-stream (or whose handshake
    /// was lost) shows itself here: arrays of bulk strings naming a command, sent by the server.
    #[cold]
    fn orphan(&mut self, r: &Reply, sink: &mut impl Sink) {
        if self.link.is_none() && is_command_array(r) {
            self.start_link(SyncKind::Unknown, None, sink);
        }
        if let Some(n) = self.link_names() {
            // The rest of the feed that revealed the link was read as replies: count its
            // commands, drop the rest quietly.
            if let Some(link) = self.link.as_deref_mut()
                && is_command_array(r)
            {
                link.streamed(1, 0, &n, sink);
            }
            return;
        }
        self.notice(sink, Notice::OrphanReply);
    }

    // --------------------------------------------------------------------------------------------
    // Requests

    fn on_request(&mut self, ts: u64, ev: RequestEvent<'_>, sink: &mut impl Sink) {
        if self.req_closed || self.ignored {
            return;
        }
        match ev {
            RequestEvent::Command(req) => self.on_command(req, sink),
            // Redis resets the client on an empty command, which ends a SKIP.
            RequestEvent::Empty => self.skip_next = false,
            RequestEvent::ProtocolError(e, req) => self.on_protocol_error(ts, e, req, sink),
            RequestEvent::Desync(reason) => {
                self.notice(
                    sink,
                    Notice::Desync {
                        dir: Dir::Request,
                        reason,
                    },
                );
                if reason == DesyncReason::NotResp {
                    self.ignore(sink);
                } else {
                    // Commands were lost; their replies will come after those of the commands
                    // pending now.
                    self.barrier = self.pending.len();
                    self.resync = true;
                    self.uncertain = true;
                }
            }
        }
    }

    fn on_command(&mut self, req: &Request, sink: &mut impl Sink) {
        self.await_command = false;
        if self.uncertain && self.reply_idle && self.pending.is_empty() && self.tx.is_empty() {
            // Everything the server sent before this command was consumed: pairing is sure again.
            self.uncertain = false;
        }
        let (id, name_args) = self.resolver.resolve(req);
        if id == UNKNOWN && is_http_guard(req) {
            // Redis's securityWarningCommand: closes without a reply, counts nothing.
            self.req_closed = true;
            return;
        }
        let role = self.role_of(id, req, name_args);
        // Silencing as Redis applies it: SKIP covers exactly this command, OFF until ON or RESET
        // (both of which clear OFF before replying).
        let skipped = std::mem::take(&mut self.skip_next);
        let off = self.reply_off;
        let answered = match role {
            Role::ReplyOn | Role::Reset => {
                self.reply_off = false;
                !skipped
            }
            Role::ReplyOff => {
                self.reply_off = true;
                false
            }
            Role::ReplySkip => {
                self.skip_next = !off;
                false
            }
            Role::ReplAck => false,
            _ => !(off || skipped),
        };
        match role {
            Role::Multi => self.multi_req = true,
            Role::Exec | Role::Discard | Role::Reset => self.multi_req = false,
            Role::Quit => self.req_closed = true,
            _ => {}
        }
        if answered {
            if self.full() {
                self.drop_oldest(sink);
            }
            let e = self.build(req, id, name_args, role);
            self.pending.push_back(e);
        } else {
            self.unanswered_by_design(req, id, name_args, role, sink);
        }
    }

    fn role_of(&mut self, id: CommandId, req: &Request, name_args: usize) -> Role {
        let argc = req.argc.saturating_sub(name_args as u64);
        let queued = self.multi_req
            && !matches!(id, commands::MULTI | commands::EXEC | commands::DISCARD)
            && !matches!(id, commands::RESET | commands::QUIT | commands::WATCH);
        if queued {
            return Role::Plain;
        }
        let unsub = |chan| {
            if argc == 0 {
                Role::UnsubscribeAll(chan)
            } else {
                Role::Unsubscribe(chan)
            }
        };
        match id {
            commands::SUBSCRIBE => Role::Subscribe(Chan::Channel),
            commands::PSUBSCRIBE => Role::Subscribe(Chan::Pattern),
            commands::SSUBSCRIBE => Role::Subscribe(Chan::Shard),
            commands::UNSUBSCRIBE => unsub(Chan::Channel),
            commands::PUNSUBSCRIBE => unsub(Chan::Pattern),
            commands::SUNSUBSCRIBE => unsub(Chan::Shard),
            commands::CLIENT_REPLY if req.argc == 3 => {
                let is = |w: &[u8]| {
                    req.arg(2)
                        .is_some_and(|(b, len)| len == w.len() as u64 && b.eq_ignore_ascii_case(w))
                };
                if is(b"on") {
                    Role::ReplyOn
                } else if is(b"off") {
                    Role::ReplyOff
                } else if is(b"skip") {
                    Role::ReplySkip
                } else {
                    Role::Plain // -ERR syntax error
                }
            }
            commands::MULTI => Role::Multi,
            commands::EXEC => Role::Exec,
            commands::DISCARD => Role::Discard,
            commands::RESET => Role::Reset,
            commands::QUIT => Role::Quit,
            commands::HELLO => Role::Hello,
            commands::MONITOR => Role::Monitor,
            commands::REPLCONF => self.replconf(req),
            // Server bytes take the replication-aware path until the answer is known.
            commands::PSYNC => {
                self.link_watch = true;
                Role::Psync
            }
            commands::SYNC => {
                self.link_watch = true;
                Role::Sync
            }
            _ => Role::Plain,
        }
    }

    /// Redis's replconfCommand walks its option pairs and returns at once, without a reply, on
    /// `ack` or `getack`; `listening-port` names the replica for the link's metrics.
    #[cold]
    fn replconf(&mut self, req: &Request) -> Role {
        if req.argc.is_multiple_of(2) {
            return Role::Plain; // -ERR syntax error
        }
        let mut i = 1;
        while let Some((opt, len)) = req.arg(i) {
            let is = |w: &[u8]| len == w.len() as u64 && opt.eq_ignore_ascii_case(w);
            if is(b"ack") || is(b"getack") {
                return Role::ReplAck;
            }
            if is(b"listening-port")
                && let Some(port) = req.arg(i + 1).and_then(|(v, _)| parse_u64(v))
            {
                self.repl_port = u16::try_from(port).unwrap_or(0);
            }
            i += 2;
        }
        Role::Plain
    }

    /// A command the server runs without answering: emitted now, with the reply-side effects it
    /// would have had.
    fn unanswered_by_design(
        &mut self,
        req: &Request,
        id: CommandId,
        name_args: usize,
        role: Role,
        sink: &mut impl Sink,
    ) {
        match role {
            Role::Subscribe(_) | Role::Unsubscribe(_) | Role::UnsubscribeAll(_) if !self.resp3 => {
                // Its confirmations still come (CLIENT_PUSHING) with nothing waiting for them.
                self.loose_pubsub = true;
            }
            Role::Hello => match req.arg(1) {
                Some((b"3", 1)) => self.resp3 = true,
                Some((b"2", 1)) => self.resp3 = false,
                _ => {}
            },
            // Skipped: its +OK is not sent, the feed lines are.
            Role::Monitor => self.monitor = true,
            // Skipped: queued commands are still answered +QUEUED.
            Role::Multi => self.multi = Multi::Yes,
            Role::Reset => self.reset(sink),
            Role::ReplAck => self.on_ack(req, sink),
            _ => {}
        }
        let bytes_at = self.bytes.end();
        let args_at = self.args.end();
        let e = self.build(req, id, name_args, role);
        self.emit(&e, Outcome::bare(Status::NoReply, 0, false), sink);
        self.bytes.truncate(bytes_at);
        self.args.truncate(args_at);
        if role == Role::Exec {
            // Ran, outcome unseen (only possible when we mistracked): not "never ran".
            while let Some(q) = self.tx.pop_front() {
                self.emit(
                    &q,
                    Outcome::bare(Status::NoReply, q.resp_bytes, false),
                    sink,
                );
                self.release();
            }
            self.multi = Multi::No;
        }
    }

    /// Redis refuses the request, answers `-ERR Protocol error: …` and closes: one record with
    /// the name as sent (when it got that far) and that error, paired with the server's reply
    /// (its real text and latency) unless replies are off.
    fn on_protocol_error(
        &mut self,
        ts: u64,
        e: ProtocolError,
        req: &Request,
        sink: &mut impl Sink,
    ) {
        self.req_closed = true;
        let (id, name_args) = if req.args.is_empty() {
            (UNKNOWN, 0)
        } else {
            self.resolver.resolve(req)
        };
        let silenced = self.reply_off || std::mem::take(&mut self.skip_next);
        if !silenced && self.full() {
            self.drop_oldest(sink);
        }
        let mut m = self.build(req, id, name_args, Role::ProtocolError);
        m.proto = Some(e);
        m.ts_last = ts;
        if req.args.is_empty() {
            m.ts_first = ts;
        }
        if silenced {
            let bytes_at = self.bytes.end();
            let args_at = self.args.end();
            self.emit_refused(&m, None, sink);
            self.bytes.truncate(bytes_at);
            self.args.truncate(args_at);
        } else {
            self.pending.push_back(m);
        }
    }

    /// Logs `req`, a request the server refused part-way with `reply`.
    fn refused_partial(
        &mut self,
        pe: ProtocolError,
        req: &Request,
        reply: &Reply,
        sink: &mut impl Sink,
    ) {
        let (id, name_args) = if req.args.is_empty() {
            (UNKNOWN, 0)
        } else {
            self.resolver.resolve(req)
        };
        let bytes_at = self.bytes.end();
        let args_at = self.args.end();
        let mut m = self.build(req, id, name_args, Role::ProtocolError);
        m.proto = Some(pe);
        m.ts_last = m.ts_last.max(req.first_ts);
        self.emit_refused(&m, Some(reply), sink);
        self.bytes.truncate(bytes_at);
        self.args.truncate(args_at);
    }

    /// A refused request's record: with the server's reply when it came, else with the text
    /// Redis sends.
    fn emit_refused(&mut self, e: &Entry, r: Option<&Reply>, sink: &mut impl Sink) {
        let Some(pe) = e.proto else {
            return;
        };
        let mut buf = [0u8; 48];
        let (reply, latency, resp_bytes) = match r {
            Some(r) => (
                summary(r),
                Some(r.first_ts.saturating_sub(e.ts_last)),
                r.wire_len,
            ),
            None => {
                let text = pe.text(&mut buf);
                let s = ReplySummary {
                    kind: Kind::Error,
                    len: text.len() as i64,
                    text,
                    redacted: false,
                };
                (s, None, 0)
            }
        };
        self.emit(
            e,
            Outcome {
                status: Status::Error,
                reply: Some(reply),
                latency_ns: latency,
                resp_bytes,
                in_transaction: false,
            },
            sink,
        );
    }

    /// `max_pending` bounds the commands held: those awaiting a reply and those queued in a
    /// transaction. (Queued ones used to be unbounded: MULTI followed by a long stream of
    /// commands answered `+QUEUED` grew `tx` and the arenas without limit; found while writing
    /// the `session` fuzz target, whose memory bound catches it.)
    fn full(&self) -> bool {
        let n = self.pending.len() + self.tx.len();
        n >= self.max_pending
            || (n > 0
                && n * size_of::<Entry>() + self.bytes.live_bytes() + self.args.live_bytes()
                    >= self.max_pending_bytes)
    }

    fn drop_oldest(&mut self, sink: &mut impl Sink) {
        // Queued transaction commands are the oldest. Their `+QUEUED` came already, and EXEC's
        // array is matched from its end, so a dropped one is simply absent from the outcome.
        if self.tx.pop_front().is_some() {
            self.release();
            self.notice(sink, Notice::PendingOverflow);
            return;
        }
        if let Some(e) = self.pop_pending() {
            // Its reply (or its first confirmation) will still come: skip it, keep the FIFO true.
            if !e.got {
                self.skip_replies = self.skip_replies.saturating_add(1);
            }
            self.notice(sink, Notice::PendingOverflow);
        }
    }

    fn blank_entry(&self, id: CommandId, role: Role) -> Entry {
        Entry {
            ts_first: 0,
            ts_last: 0,
            req_bytes: 0,
            argc: 0,
            bytes_at: self.bytes.end(),
            args_at: self.args.end(),
            left: 0,
            reply_ts: 0,
            resp_bytes: 0,
            reply_len: 0,
            bytes_len: 0,
            key_start: 0,
            key_len: 0,
            args_len: 0,
            name_len: 0,
            ident_len: 0,
            id,
            role,
            reply_kind: Kind::Null,
            has_key: false,
            redact: Policy::NONE,
            got: false,
            blocking: false,
            auth: false,
            proto: None,
        }
    }

    /// Copies what a record shows of `req` to the back of the arenas.
    fn build(&mut self, req: &Request, id: CommandId, name_args: usize, role: Role) -> Entry {
        let mut e = self.blank_entry(id, role);
        e.ts_first = req.first_ts;
        e.ts_last = req.last_ts;
        e.req_bytes = req.wire_len;
        e.argc = req.argc.saturating_sub(name_args as u64);
        let policy = redact::policy(id, req);
        e.redact = policy;
        e.blocking = commands::is_blocking(id, req);
        e.auth = id == commands::AUTH
            || (id == commands::HELLO
                && req
                    .arg(2)
                    .is_some_and(|(a, len)| len == 4 && a.eq_ignore_ascii_case(b"AUTH")));
        // Offsets within this entry's bytes: small, since the keep limits are clamped.
        let rel = |bytes: &Fifo<u8>| {
            u32::try_from(bytes.end().wrapping_sub(e.bytes_at)).unwrap_or(u32::MAX)
        };

        if id == UNKNOWN
            && let Some((name, _)) = req.arg(0)
        {
            // The name as sent, up to `keep_name_bytes` in all: with its subcommand when the
            // container is known (`CLIENT FOO`).
            let name = name.get(..self.keep_name_bytes).unwrap_or(name);
            self.bytes.extend(name);
            let room = self.keep_name_bytes.saturating_sub(name.len() + 1);
            if name_args == 2
                && room > 0
                && let Some((sub, _)) = req.arg(1)
            {
                self.bytes.extend(b" ");
                self.bytes.extend(sub.get(..room).unwrap_or(sub));
            }
            self.bytes.tail_mut(e.bytes_at).make_ascii_uppercase();
            e.name_len = rel(&self.bytes);
        }

        let key = commands::first_key(id, req);
        let last = req.args.len().min(name_args.saturating_add(self.keep_args));
        for i in name_args..last {
            let Some((prefix, len)) = req.arg(i) else {
                break;
            };
            let start = rel(&self.bytes);
            let arg = if policy.secret_arg(id, req, i) {
                RecordArg {
                    start,
                    kept: 0,
                    len,
                    redacted: true,
                }
            } else {
                let kept = prefix.get(..self.keep_arg_bytes).unwrap_or(prefix);
                self.bytes.extend(kept);
                if key == Some(i) {
                    (e.has_key, e.key_start, e.key_len) = (true, start, len32(kept.len()));
                }
                RecordArg {
                    start,
                    kept: len32(kept.len()),
                    len,
                    redacted: false,
                }
            };
            self.args.push(arg);
            e.args_len += 1;
        }
        // A key past the kept arguments (EVAL's, say) is kept on its own.
        if let Some(k) = key.filter(|_| !e.has_key)
            && let Some((prefix, _)) = req.arg(k)
            && !policy.secret_arg(id, req, k)
        {
            let kept = prefix.get(..self.keep_arg_bytes).unwrap_or(prefix);
            (e.has_key, e.key_start, e.key_len) = (true, rel(&self.bytes), len32(kept.len()));
            self.bytes.extend(kept);
        }
        e.bytes_len = rel(&self.bytes);
        // After the record's bytes, so freed with them; never shown.
        e.ident_len = ident::encode(id, req, &mut self.bytes);
        e
    }

    // --------------------------------------------------------------------------------------------
    // Replies

    fn on_reply_event(&mut self, ev: ReplyEvent<'_>, sink: &mut impl Sink) {
        if self.ignored {
            return;
        }
        match ev {
            ReplyEvent::Reply(r) => self.on_reply(r, sink),
            ReplyEvent::Desync(reason) => self.on_reply_desync(reason, sink),
        }
    }

    fn on_reply(&mut self, r: &Reply, sink: &mut impl Sink) {
        if r.kind == Kind::Push {
            // Only RESP3 has pushes; they never answer a command, except the confirmations a
            // pub/sub command is waiting for.
            self.resp3 = true;
            if let Some(c) = pubsub::confirmation(r) {
                let consumed = self.confirm(&c, r, sink);
                self.pubsub.apply(&c);
                if consumed {
                    return;
                }
            }
            self.push(r, sink);
            return;
        }
        if !self.resp3 && r.kind == Kind::Array {
            let context = self.pubsub.subscribed() || self.loose_pubsub;
            if let Some(c) = pubsub::confirmation(r) {
                if context || self.head_wants(&c) {
                    let consumed = self.confirm(&c, r, sink);
                    self.pubsub.apply(&c);
                    if !consumed {
                        self.push(r, sink);
                    }
                    return;
                }
            } else if context && pubsub::is_message(r) {
                self.push(r, sink);
                return;
            }
        }
        if matches!(
            r.kind,
            Kind::Map | Kind::Set | Kind::Double | Kind::Boolean | Kind::BigNumber | Kind::Verbatim
        ) {
            // Types only RESP3 has (a session picked up mid-stream learns the protocol here).
            self.resp3 = true;
        }
        if self.monitor && r.kind == Kind::Simple && pubsub::is_monitor_line(&r.text) {
            self.push(r, sink);
            return;
        }
        if self.skip_replies > 0 {
            self.skip_replies -= 1;
            return;
        }
        self.pair(r, sink);
    }

    fn push(&self, r: &Reply, sink: &mut impl Sink) {
        sink.push(&self.meta, r.first_ts, r);
    }

    /// The reply could be the head's: always, unless we are resynchronising and the reply began
    /// before the head command was fully sent.
    fn causal(&mut self, head_ts_last: u64, r: &Reply) -> bool {
        if !self.resync || self.barrier > 0 {
            return true;
        }
        if r.first_ts < head_ts_last {
            return false;
        }
        self.resync = false;
        true
    }

    fn head_wants(&self, c: &Confirmation) -> bool {
        self.pending.front().is_some_and(|h| wants(h.role, c))
    }

    /// `r` is a confirmation: count it for the head command if it is waiting for one.
    fn confirm(&mut self, c: &Confirmation, r: &Reply, sink: &mut impl Sink) -> bool {
        let Some(head) = self.pending.front().copied() else {
            return false;
        };
        if !wants(head.role, c) || !self.causal(head.ts_last, r) {
            return false;
        }
        let expected = match head.role {
            Role::UnsubscribeAll(chan) => self.pubsub.count(chan).unwrap_or(1).max(1),
            _ => head.argc.max(1),
        };
        let Some(h) = self.pending.front_mut() else {
            return false;
        };
        if !h.got {
            (h.got, h.left) = (true, expected);
            (h.reply_ts, h.reply_kind, h.reply_len) = (r.first_ts, r.kind, r.len);
        }
        h.resp_bytes = h.resp_bytes.saturating_add(r.wire_len);
        h.left = if c.null_channel {
            0
        } else {
            h.left.saturating_sub(1)
        };
        if h.left == 0 {
            self.finish_confirmed(sink);
        }
        true
    }

    /// Emits the head pub/sub command with what its confirmations said.
    fn finish_confirmed(&mut self, sink: &mut impl Sink) {
        let Some(h) = self.pending.front().copied() else {
            return;
        };
        let summary = ReplySummary {
            kind: h.reply_kind,
            len: h.reply_len,
            text: &[],
            redacted: false,
        };
        let latency = Some(h.reply_ts.saturating_sub(h.ts_last));
        self.emit(
            &h,
            Outcome {
                status: Status::Ok,
                reply: Some(summary),
                latency_ns: latency,
                resp_bytes: h.resp_bytes,
                in_transaction: false,
            },
            sink,
        );
        self.pop_pending();
    }

    fn pair(&mut self, r: &Reply, sink: &mut impl Sink) {
        let head = loop {
            let Some(head) = self.pending.front().copied() else {
                if r.kind == Kind::Error
                    && self.refusal.is_none()
                    && let Some(pe) = ProtocolError::from_reply(&r.text)
                {
                    // Refused while the request was still arriving (Redis gave up on a long
                    // inline line, or an unauthenticated header): the session asks the request
                    // decoder for what it holds.
                    self.refusal = Some((pe, r.first_ts, r.wire_len));
                    return;
                }
                self.orphan(r, sink);
                return;
            };
            if head.got {
                // A pub/sub command is over once anything but its confirmations comes.
                self.finish_confirmed(sink);
                continue;
            }
            if head.auth && !auth_reply_fits(head.id, r.kind, &r.text) {
                // Not an answer AUTH can get: its reply was dropped (redis#15640), this one
                // is the next command's.
                self.emit(&head, Outcome::bare(Status::ReplyDropped, 0, false), sink);
                self.pop_pending();
                continue;
            }
            break head;
        };
        if !self.causal(head.ts_last, r) {
            self.notice(sink, Notice::OrphanReply);
            return;
        }
        if head.role == Role::ProtocolError {
            self.emit_refused(&head, Some(r), sink);
            self.pop_pending();
            return;
        }
        if r.kind == Kind::Error
            && let Some(pe) = refused_by_server(&head, r)
        {
            // Refused for a limit only the server knew (or a read pattern): not a command it
            // ran. The request side stays open: if the server did not really close, later
            // replies still pair (a script cannot hide commands by returning this text).
            let mut h = head;
            h.proto = Some(pe);
            self.emit_refused(&h, Some(r), sink);
            self.pop_pending();
            return;
        }
        let ok = r.kind != Kind::Error;
        if ok
            && self.multi != Multi::No
            && head.role.queueable()
            && r.kind == Kind::Simple
            && r.text == b"QUEUED"
        {
            // Runs at EXEC: emitted then, with its element of EXEC's array.
            if let Some(mut q) = self.pending.pop_front() {
                self.barrier = self.barrier.saturating_sub(1);
                (q.reply_ts, q.resp_bytes) = (r.first_ts, r.wire_len);
                self.tx.push_back(q);
            }
            self.multi = Multi::Yes;
            return;
        }
        let mut absorbed = 0;
        match head.role {
            Role::Exec => absorbed = self.on_exec_reply(&head, r, sink),
            Role::Multi if ok => self.multi = Multi::Yes,
            Role::Discard if ok => {
                self.end_tx(TxEnd::Discarded, sink);
                self.multi = Multi::No;
            }
            Role::Reset if ok => self.reset(sink),
            Role::Hello => match r.kind {
                Kind::Map => self.resp3 = true,
                Kind::Array => self.resp3 = false,
                _ => {}
            },
            Role::Monitor if ok => self.monitor = true,
            Role::Psync if ok => {
                let latency = Some(r.first_ts.saturating_sub(head.ts_last));
                let o = Outcome {
                    status: Status::Ok,
                    reply: Some(summary(r)),
                    latency_ns: latency,
                    resp_bytes: r.wire_len,
                    in_transaction: false,
                };
                self.emit(&head, o, sink);
                self.on_psync_reply(&head, r, sink);
                self.pop_pending();
                return;
            }
            Role::Plain if ok => {
                // In RESP2 subscribed mode anything but PING gets an error, and inside MULTI
                // anything but an error is QUEUED: a plain answer proves neither holds.
                if !self.resp3 && head.id != commands::PING {
                    self.loose_pubsub = false;
                }
                if self.multi == Multi::Unknown {
                    self.multi = Multi::No;
                }
            }
            _ => {}
        }
        let latency = Some(r.first_ts.saturating_sub(head.ts_last));
        let status = if ok { Status::Ok } else { Status::Error };
        self.emit(
            &head,
            Outcome {
                status,
                reply: Some(summary(r)),
                latency_ns: latency,
                resp_bytes: r.wire_len,
                in_transaction: false,
            },
            sink,
        );
        self.pop_pending();
        if absorbed > 0 {
            // EXEC's array took the replies of the commands after it in place of the dropped
            // AUTH replies: they are those commands' replies.
            let n = r.children.len();
            let replies: Vec<Reply> = (n.saturating_sub(absorbed)..n)
                .filter_map(|i| child_reply(r, i))
                .collect();
            for c in &replies {
                self.pair(c, sink);
            }
        }
    }

    /// Returns how many of the array's last elements are not the transaction's (see
    /// [`Core::run_tx`]).
    fn on_exec_reply(&mut self, exec: &Entry, r: &Reply, sink: &mut impl Sink) -> usize {
        let mut absorbed = 0;
        match r.kind {
            Kind::Array => absorbed = self.run_tx(exec, r, sink),
            Kind::Error if r.text.starts_with(b"EXECABORT") => self.end_tx(TxEnd::Aborted(r), sink),
            // Rejected EXEC (arity...): the transaction goes on. `EXEC without MULTI` ends it.
            Kind::Error if !r.text.ends_with(b"without MULTI") => return 0,
            // A WATCH abort (null), or nothing we can tell ran.
            _ => self.end_tx(TxEnd::Discarded, sink),
        }
        self.multi = Multi::No;
        absorbed
    }

    /// EXEC ran the transaction: each queued command gets its element of the array. Elements are
    /// matched from the end, so commands queued before a mid-stream start are simply absent.
    ///
    /// A queued AUTH whose element has a shape AUTH cannot get had its reply dropped (redis#15640:
    /// the array header still counts it): the elements after it belong to the next queued
    /// commands, and the last ones to the commands sent after EXEC; their number is returned.
    fn run_tx(&mut self, exec: &Entry, r: &Reply, sink: &mut impl Sink) -> usize {
        let elements = u64::try_from(r.len).unwrap_or(0);
        let queued = self.tx.len() as u64;
        let kept_all = r.children.len() as u64 == elements;
        if kept_all && elements == queued && self.tx.iter().any(|q| q.auth) {
            return self.run_tx_auth(exec, r, sink);
        }
        let unmatched = queued.saturating_sub(elements);
        let first = elements.saturating_sub(queued);
        let latency = Some(r.first_ts.saturating_sub(exec.ts_last));
        let mut j = 0u64;
        while let Some(q) = self.tx.front().copied() {
            if j < unmatched {
                self.emit(
                    &q,
                    Outcome::bare(Status::Unanswered, q.resp_bytes, true),
                    sink,
                );
            } else {
                let idx = usize::try_from(first + (j - unmatched)).unwrap_or(usize::MAX);
                match r.children.get(idx) {
                    Some(ch) => {
                        let s = ReplySummary {
                            kind: ch.kind,
                            len: ch.len,
                            text: r.child_text(idx).unwrap_or_default(),
                            redacted: false,
                        };
                        let status = if ch.kind == Kind::Error {
                            Status::Error
                        } else {
                            Status::Ok
                        };
                        self.emit(
                            &q,
                            Outcome {
                                status,
                                reply: Some(s),
                                latency_ns: latency,
                                resp_bytes: q.resp_bytes,
                                in_transaction: true,
                            },
                            sink,
                        );
                    }
                    // Past the children the decoder keeps: ran, outcome not kept.
                    None => self.emit(
                        &q,
                        Outcome {
                            status: Status::Ok,
                            reply: None,
                            latency_ns: latency,
                            resp_bytes: q.resp_bytes,
                            in_transaction: true,
                        },
                        sink,
                    ),
                }
            }
            self.tx.pop_front();
            self.release();
            j += 1;
        }
        0
    }

    /// [`Core::run_tx`] for a transaction with an AUTH in it, every element kept.
    fn run_tx_auth(&mut self, exec: &Entry, r: &Reply, sink: &mut impl Sink) -> usize {
        let latency = Some(r.first_ts.saturating_sub(exec.ts_last));
        let mut idx = 0;
        while let Some(q) = self.tx.front().copied() {
            let ch = r.children.get(idx);
            let text = r.child_text(idx).unwrap_or_default();
            match ch {
                Some(ch) if !q.auth || auth_reply_fits(q.id, ch.kind, text) => {
                    // Secret replies are redacted when emitted (`redact::reply`).
                    let s = ReplySummary {
                        kind: ch.kind,
                        len: ch.len,
                        text,
                        redacted: false,
                    };
                    let status = if ch.kind == Kind::Error {
                        Status::Error
                    } else {
                        Status::Ok
                    };
                    self.emit(
                        &q,
                        Outcome {
                            status,
                            reply: Some(s),
                            latency_ns: latency,
                            resp_bytes: q.resp_bytes,
                            in_transaction: true,
                        },
                        sink,
                    );
                    idx += 1;
                }
                _ => self.emit(
                    &q,
                    Outcome {
                        status: Status::ReplyDropped,
                        reply: None,
                        latency_ns: latency,
                        resp_bytes: q.resp_bytes,
                        in_transaction: true,
                    },
                    sink,
                ),
            }
            self.tx.pop_front();
            self.release();
        }
        r.children.len().saturating_sub(idx)
    }

    /// Queued commands that will never run.
    fn end_tx(&mut self, end: TxEnd<'_>, sink: &mut impl Sink) {
        while let Some(q) = self.tx.front().copied() {
            let o = match end {
                TxEnd::Aborted(r) => Outcome {
                    status: Status::Aborted,
                    reply: Some(summary(r)),
                    latency_ns: None,
                    resp_bytes: q.resp_bytes,
                    in_transaction: true,
                },
                TxEnd::Discarded => Outcome::bare(Status::Aborted, q.resp_bytes, true),
                TxEnd::Closed => Outcome::bare(Status::Unanswered, q.resp_bytes, true),
            };
            self.emit(&q, o, sink);
            self.tx.pop_front();
            self.release();
        }
    }

    /// RESET: back to a fresh connection's state.
    fn reset(&mut self, sink: &mut impl Sink) {
        self.end_tx(TxEnd::Discarded, sink);
        self.multi = Multi::No;
        self.resp3 = false;
        self.monitor = false;
        self.pubsub = PubSub::default();
        self.loose_pubsub = false;
    }

    fn on_reply_desync(&mut self, reason: DesyncReason, sink: &mut impl Sink) {
        if self.link.is_some() {
            // The rest of the feed that revealed a replication stream, read as replies.
            return;
        }
        self.notice(
            sink,
            Notice::Desync {
                dir: Dir::Reply,
                reason,
            },
        );
        if reason == DesyncReason::NotResp {
            self.ignore(sink);
            return;
        }
        // Replies may be lost: nothing pending can be paired any more.
        let ends_tx = self
            .pending
            .iter()
            .any(|e| matches!(e.role, Role::Exec | Role::Discard | Role::Reset));
        let mut lost = self.drop_pending();
        if ends_tx {
            lost += self.tx.len() as u64;
            self.tx.clear();
            self.release();
        }
        if lost > 0 {
            self.notice(sink, Notice::CommandsLost(lost));
            self.multi = Multi::Unknown;
        }
        self.skip_replies = 0;
        self.barrier = 0;
        self.resync = true;
        self.uncertain = true;
        self.pubsub.unknown = true;
    }

    /// Forgets every pending command; returns how many were commands.
    fn drop_pending(&mut self) -> u64 {
        let n = self
            .pending
            .iter()
            .filter(|e| e.role != Role::ProtocolError)
            .count() as u64;
        self.pending.clear();
        self.release();
        n
    }

    /// Not RESP: drop everything, produce nothing more.
    fn ignore(&mut self, sink: &mut impl Sink) {
        self.ignored = true;
        let lost = self.drop_pending() + self.tx.len() as u64;
        self.tx.clear();
        self.release();
        if lost > 0 {
            self.notice(sink, Notice::CommandsLost(lost));
        }
    }

    fn close(&mut self, sink: &mut impl Sink) {
        if self.ignored || self.closed {
            return;
        }
        self.end_tx(TxEnd::Closed, sink);
        while let Some(h) = self.pending.front().copied() {
            if h.got {
                self.finish_confirmed(sink);
                continue;
            }
            if h.role == Role::ProtocolError {
                self.emit_refused(&h, None, sink);
            } else {
                self.emit(&h, Outcome::bare(Status::Unanswered, 0, false), sink);
            }
            self.pop_pending();
        }
        if let Some(n) = self.link_names() {
            sink.replication(&n.meta, n.replica, ReplEvent::Down);
        }
        self.closed = true;
    }

    // --------------------------------------------------------------------------------------------
    // Storage and output

    fn pop_pending(&mut self) -> Option<Entry> {
        let e = self.pending.pop_front()?;
        self.barrier = self.barrier.saturating_sub(1);
        self.release();
        Some(e)
    }

    /// Frees arena space before the oldest live entry.
    fn release(&mut self) {
        if let Some(oldest) = self.tx.front().or(self.pending.front()) {
            self.bytes.free_before(oldest.bytes_at);
            self.args.free_before(oldest.args_at);
        } else {
            self.bytes.clear();
            self.args.clear();
            // A burst of pipelined commands must not pin its peak for the connection's life.
            if self.pending.capacity() > 16 * 1024 {
                self.pending.shrink_to(1024);
            }
            if self.tx.capacity() > 16 * 1024 {
                self.tx.shrink_to(1024);
            }
        }
    }

    /// Hands the record to `sink`, then applies the identity change it carries (later commands
    /// see it, this one does not).
    fn emit(&mut self, e: &Entry, o: Outcome<'_>, sink: &mut impl Sink) {
        // Every reply a record shows passes the redaction table's rules here.
        // Commands sent before a request-side gap (`barrier`) still pair for sure.
        let policy = if self.uncertain && self.barrier == 0 {
            e.redact.union(redact::UNCERTAIN_REPLY)
        } else {
            e.redact
        };
        let reply = o.reply.map(|r| redact::reply(r, policy));
        let arg_buf = self.bytes.slice(e.bytes_at, e.bytes_len as usize);
        let name: &[u8] = if e.id == UNKNOWN {
            arg_buf.get(..e.name_len as usize).unwrap_or_default()
        } else {
            commands::name(e.id).as_bytes()
        };
        let key = e.has_key.then(|| {
            let start = e.key_start as usize;
            arg_buf
                .get(start..start + e.key_len as usize)
                .unwrap_or_default()
        });
        sink.command(&CommandRecord {
            ts_ns: e.ts_first,
            conn: &self.meta,
            command: e.id,
            name,
            key,
            args: self.args.slice(e.args_at, e.args_len as usize),
            arg_buf,
            argc: e.argc,
            status: o.status,
            reply,
            latency_ns: o.latency_ns,
            req_bytes: e.req_bytes,
            resp_bytes: o.resp_bytes,
            in_transaction: o.in_transaction,
            blocking: e.blocking && !o.in_transaction,
            protocol_error: e.proto,
        });
        // A refused request never ran: it changes nothing.
        if e.ident_len > 0 && e.proto.is_none() {
            let at = e.bytes_at.wrapping_add(u64::from(e.bytes_len));
            let change = self.bytes.slice(at, usize::from(e.ident_len));
            if ident::apply(&mut self.meta.ident, change, o.status, o.reply.as_ref()) {
                self.meta.ident.label_changed();
            }
        }
    }
}

/// `head` is waiting for confirmation `c`.
fn wants(role: Role, c: &Confirmation) -> bool {
    match role {
        Role::Subscribe(chan) => c.subscribe && c.chan == chan,
        Role::Unsubscribe(chan) | Role::UnsubscribeAll(chan) => !c.subscribe && c.chan == chan,
        _ => false,
    }
}

/// The reply as it came; [`Core::emit`] redacts it.
fn summary(r: &Reply) -> ReplySummary<'_> {
    let text = if r.kind.is_aggregate() {
        &[][..]
    } else {
        &r.text[..]
    };
    ReplySummary {
        kind: r.kind,
        len: r.len,
        text,
        redacted: false,
    }
}

/// Redis closes, without a reply, a connection whose command is `POST` or `Host:` (an HTTP
/// request sent to Redis).
fn is_http_guard(req: &Request) -> bool {
    matches!(req.arg(0), Some((name, len))
        if len == name.len() as u64
            && (name.eq_ignore_ascii_case(b"post") || name.eq_ignore_ascii_case(b"host:")))
}

/// A plain non-negative decimal.
fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// A RESP2 array of bulk strings whose first names a command: what a master propagates.
fn is_command_array(r: &Reply) -> bool {
    r.kind == Kind::Array
        && r.len >= 1
        && r.children.len() as i64 == r.len
        && r.children.iter().all(|c| c.kind == Kind::Bulk)
        && r.child_text(0)
            .is_some_and(|name| commands::by_name(name) != UNKNOWN)
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Whether a reply of this shape can answer an AUTH or a HELLO … AUTH:
/// OK, a HELLO map or array, an error, or `+QUEUED` inside MULTI.
fn auth_reply_fits(id: CommandId, kind: Kind, text: &[u8]) -> bool {
    match kind {
        Kind::Error => true,
        Kind::Simple => text == b"OK" || text == b"QUEUED",
        Kind::Map | Kind::Array => id == commands::HELLO,
        _ => false,
    }
}

/// Element `i` of `r` as a reply of its own (kind, length and kept text; an aggregate's own
/// elements are not kept), for pairing an element that belongs to a later command.
fn child_reply(r: &Reply, i: usize) -> Option<Reply> {
    let c = r.children.get(i)?;
    Some(Reply {
        kind: c.kind,
        len: c.len,
        text: r.child_text(i).unwrap_or_default().to_vec(),
        first_ts: r.last_ts,
        last_ts: r.last_ts,
        ..Reply::default()
    })
}

/// `r` is Redis refusing `head`'s request for a reason the decoder could not know (the limits
/// for clients not yet authenticated, an inline line whose fate depended on Redis's reads), and
/// `head` is shaped so that it could be.
fn refused_by_server(head: &Entry, r: &Reply) -> Option<ProtocolError> {
    let pe = ProtocolError::from_reply(&r.text)?;
    let fits = match pe {
        ProtocolError::InlineTooLong => head.req_bytes > 64 * 1024,
        // More than 10 arguments, name and subcommand included.
        ProtocolError::UnauthMultibulkLength => head.argc >= 9,
        ProtocolError::UnauthBulkLength => head.req_bytes > 16 * 1024,
        _ => false,
    };
    fits.then_some(pe)
}
