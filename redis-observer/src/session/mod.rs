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
//!   status `aborted` after EXECABORT (with EXEC's `-EXECABORT` as their reply), a WATCH abort
//!   (EXEC's null, no reply), `EXEC without MULTI`, DISCARD or RESET (no reply); `unanswered`
//!   when the connection ends first, or when EXEC's array has no element left for them. A
//!   queued AUTH whose reply Redis 8 dropped is `reply_dropped` with EXEC's latency.
//! - **MONITOR**: after its `+OK`, `+<ts> [db addr] ...` lines are pushes.
//! - **RESET** leaves subscribed mode, MONITOR, MULTI and RESP3 and turns replies back on.
//! - **Replication links** ([`repl`]): after `PSYNC` is answered `+FULLRESYNC`/`+CONTINUE` (or
//!   `SYNC`'s stream starts), the server side is a replication stream, not replies; replies are
//!   fed a line at a time while such an answer is awaited, so the hand-over is exact. A link
//!   already running is found by the replica's `REPLCONF ACK` or by commands the server sends
//!   with nothing pending. `REPLCONF ACK`/`GETACK` are never answered. Redis 8's RDB channel
//!   (`+RDBCHANNELSYNC <id>` on the main connection, the RDB on a second one) is joined to its
//!   main connection through [`RdbChannels`]: see [`Session::take_rdb_channel_note`].
//! - **QUIT**, a protocol error and Redis's `POST`/`Host:` guard end the request stream: nothing
//!   the client sends afterwards runs. A request refused with a protocol error is one record
//!   (status `error`, `protocol_error` set) paired with the server's `-ERR Protocol error: …`
//!   (only an error reply can be its answer); without that reply it shows Redis's text and no
//!   latency. A refusal that arrives while the request is still being sent is paired with what
//!   the request decoder read of it.
//! - **Dropped AUTH replies** (Redis 8, redis#15640): an AUTH (or HELLO … AUTH) whose turn
//!   brings a reply it cannot get had its `-WRONGPASS` dropped: `reply_dropped`, and the reply
//!   is the next command's.
//!
//! Losses are counted, never guessed: a reply-side desync drops every pending command
//! ([`Notice::CommandsLost`]); a request-side desync (commands lost whose replies will still come)
//! keeps pairing the commands sent before it, then treats replies that started before the next
//! known command was fully sent as orphans (causality; exact for request/response clients,
//! best effort for pipelines). A session started mid-stream drops server bytes until the first
//! command and applies the same causality rule to its first pairing. Over `max_pending` (commands
//! awaiting a reply plus commands queued in MULTI), the oldest command is dropped
//! ([`Notice::PendingOverflow`]) and its reply skipped (a queued one: absent from EXEC's outcome).
//!
//! Files: this one holds the [`Session`] (the decoders and the byte-feeding entry points) and the
//! pairing state; `request` is the request side (command order), `reply` the reply side (pairing,
//! pushes, desyncs, close), `tx` transactions, `emit` the records; `pending` the queue entries and
//! their arenas, `pubsub` confirmations, `ident` the identity a command changes, `repl`
//! replication links.

mod channels;
mod emit;
mod ident;
mod pending;
mod pubsub;
mod repl;
mod reply;
mod request;
#[cfg(test)]
mod tests;
mod tx;

use std::collections::VecDeque;

use crate::commands;
use crate::conn::ConnMeta;
use crate::limits::RecordLimits;
#[cfg(test)]
use crate::record::ReplEvent;
use crate::record::{CommandRecord, Notice, RecordArg, Sink, Status};
use crate::resp::{
    Kind, Limits, ProtocolError, Reply, ReplyDecoder, ReplyEvent, RequestDecoder, RequestEvent,
};

pub use channels::{Join, MAX_WAITING, RdbChannelNote, RdbChannels, WAIT_NS};
use pending::{Entry, Fifo};
use pubsub::PubSub;
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

    /// What this connection learned about a Redis 8 rdb-channel sync since the last call: the
    /// pipeline puts it through its [`RdbChannels`] and hands the offset it yields to the main
    /// connection's [`Session::rdb_channel_offset`].
    pub fn take_rdb_channel_note(&mut self) -> Option<RdbChannelNote> {
        self.core.rdb_note.take()
    }

    /// The RDB channel of this connection (which the master calls `id`) started at `offset`:
    /// the stream offset, and the lag, of its link from now on. Ignored unless this connection
    /// is a main channel that the master called `id` and still waits for its offset.
    pub fn rdb_channel_offset(&mut self, id: u64, offset: u64, sink: &mut impl Sink) {
        self.core.rdb_channel_offset(id, offset, sink);
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

    /// The connection's identity, for facts learned outside the protocol (its processes).
    pub fn meta_mut(&mut self) -> &mut ConnMeta {
        &mut self.core.meta
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

struct Core {
    meta: ConnMeta,
    /// Time of the latest bytes fed (ns since the epoch): when notices happen.
    now: u64,
    max_pending: usize,
    max_pending_bytes: usize,
    keep_args: usize,
    keep_arg_bytes: usize,
    keep_name_bytes: usize,
    /// Keys per record for the analytics (0: none, no work); each cut to `keep_key_bytes`.
    keep_keys: usize,
    keep_key_bytes: usize,
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
    /// `REPLCONF main-ch-client-id <id>`: an RDB channel, for the main connection `id`.
    rdb_channel_of: Option<u64>,
    /// `REPLCONF rdb-channel 1`: an RDB channel (Redis 8, Valkey's dual channel).
    rdb_channel: bool,
    /// `+RDBCHANNELSYNC <id>`: a main channel, which the master calls `id`.
    main_channel_id: Option<u64>,
    /// Not yet taken by the pipeline.
    rdb_note: Option<RdbChannelNote>,
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
            keep_keys: l.record.keys.min(1024),
            keep_key_bytes: l.record.key_bytes.min(1 << 16),
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
            rdb_channel_of: None,
            rdb_channel: false,
            main_channel_id: None,
            rdb_note: None,
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
}

/// A plain non-negative decimal.
fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}
