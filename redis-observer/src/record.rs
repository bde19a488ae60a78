//! What the pairing produces: one record per command (the command log's fields) and notices.

use std::net::SocketAddr;

use crate::conn::ConnMeta;
use crate::resp::{Kind, Reply};

/// Outcome of one command, as in the contract's `status` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    Error = 1,
    /// The connection ended (or the observer lost track of it) before a reply came.
    Unanswered = 2,
    /// The server sends no reply by design (CLIENT REPLY OFF/SKIP and the like).
    NoReply = 3,
    /// Queued in MULTI but never run: EXEC aborted (EXECABORT, WATCH), DISCARD, RESET. Redis
    /// does not count these in INFO commandstats, and neither do the "executed" totals.
    Aborted = 4,
    /// The server ran it but never sent its reply: Redis 7.2+ drops the `-WRONGPASS` of a
    /// failing AUTH (or HELLO … AUTH) when earlier replies are still unsent (redis#15640).
    /// Known from the next reply's shape. INFO commandstats counts it as a call.
    ReplyDropped = 5,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Ok,
        Status::Error,
        Status::Unanswered,
        Status::NoReply,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::Unanswered => "unanswered",
            Status::NoReply => "no_reply",
            Status::Aborted => "aborted",
            Status::ReplyDropped => "reply_dropped",
        }
    }
}

/// One argument in a [`CommandRecord`]: kept prefix `arg_buf[start..start + kept]` of an
/// argument `len` bytes long on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordArg {
    pub start: u32,
    pub kept: u32,
    pub len: u64,
    /// A secret: written as `(redacted)`, its bytes are not in `arg_buf`.
    pub redacted: bool,
}

/// The reply a command got, summarised.
#[derive(Clone, Copy, Debug)]
pub struct ReplySummary<'a> {
    pub kind: Kind,
    /// Element count for aggregates (pairs for maps), text length for scalars, -1 for null.
    pub len: i64,
    /// Kept text of a scalar reply (empty for aggregates and when `redacted`).
    pub text: &'a [u8],
    /// The reply holds secrets (ACL GETUSER/LIST, CONFIG GET requirepass...): render as
    /// `(redacted)`.
    pub redacted: bool,
}

/// Direction of a connection's byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Client → server (commands).
    Request,
    /// Server → client (replies, pushes).
    Reply,
}

/// One command with its outcome: the command log's fields, borrowed, so nothing is formatted or
/// allocated unless a sink decides to write it.
#[derive(Clone, Copy, Debug)]
pub struct CommandRecord<'a> {
    /// When the command was seen (the packet that carried its first byte), ns since the epoch.
    pub ts_ns: u64,
    /// The connection it ran on.
    pub conn: &'a ConnMeta,
    /// Index into the command table (`commands::UNKNOWN` for names it does not hold).
    pub command: crate::commands::CommandId,
    /// Upper-case display name: the table's (`CONFIG GET`), or for an unknown command the name as
    /// sent, upper-cased and bounded.
    pub name: &'a [u8],
    /// First key argument's kept prefix.
    pub key: Option<&'a [u8]>,
    /// Arguments after the command name (and subcommand), the first few only.
    pub args: &'a [RecordArg],
    /// Every key of the command from the key specs (prefixes in `arg_buf`), at most
    /// [`RecordLimits::keys`](crate::limits::RecordLimits::keys); empty when that is 0.
    pub keys: &'a [RecordArg],
    pub arg_buf: &'a [u8],
    /// Total number of arguments after the name (may exceed `args.len()`).
    pub argc: u64,
    pub status: Status,
    pub reply: Option<ReplySummary<'a>>,
    /// Reply's first byte minus command's last byte, in ns.
    pub latency_ns: Option<u64>,
    pub req_bytes: u64,
    pub resp_bytes: u64,
    /// Ran inside MULTI/EXEC (its reply came in EXEC's array).
    pub in_transaction: bool,
    /// The command can block (BLPOP, XREAD … BLOCK, WAIT, …) and was not run by EXEC: its
    /// latency goes to `redis_blocking_command_duration_seconds`.
    pub blocking: bool,
    /// Redis refused the request with `-ERR Protocol error: …` and closed the connection: not a
    /// command it ran (INFO commandstats does not count it), logged with its name as sent.
    pub protocol_error: Option<crate::resp::ProtocolError>,
}

pub use crate::events::Notice;

/// Why stream bytes were never seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MissReason {
    /// Over the capture limit (`--capture-bytes`) or a pcap's snaplen: positions known, bytes
    /// not copied; decoders skip them by length.
    NotCaptured,
    /// Lost: ring buffer full, packets dropped, or held out-of-order data over the bound.
    Gap,
    /// Seen but not decoded: the connection is ignored as not RESP (a TLS handshake, HTTP), yet
    /// Redis may run what it carries. Counted so that nothing on the port goes unaccounted.
    Ignored,
}

impl MissReason {
    pub fn as_str(self) -> &'static str {
        match self {
            MissReason::NotCaptured => "not_captured",
            MissReason::Gap => "gap",
            MissReason::Ignored => "ignored",
        }
    }
}

/// Connection-level happenings, for metrics.
/// Why a connection left the flow table before it ended (`redis_observer_flows_evicted_total`'s
/// `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictReason {
    /// Quiet for `--idle-timeout` with nothing awaiting a reply.
    Idle,
    /// To make room (count or memory cap), the longest-idle connection.
    Limit,
    /// To make room, a connection that never heard from its server (spoofed or half-open):
    /// these go first.
    OneSided,
    /// To keep the memory cap when nothing else was left: a connection with a command awaiting
    /// its reply.
    Busy,
}

impl EvictReason {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EvictReason::Idle => "idle",
            EvictReason::Limit => "limit",
            EvictReason::OneSided => "one_sided",
            EvictReason::Busy => "busy",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowEvent {
    /// First seen (at its SYN, or mid-stream).
    Opened,
    /// Ended (FIN both ways or RST), expired idle, evicted, or the observer stopped.
    Closed,
    BytesMissed {
        reason: MissReason,
        n: u64,
    },
    /// Dropped from the flow table: by the idle timeout, or to respect its caps.
    Evicted {
        reason: EvictReason,
    },
    /// Not tracked: the flow table was full of active connections.
    Refused,
}

/// How a replication link started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// `+FULLRESYNC` (or `SYNC`): an RDB transfer comes first.
    Full,
    /// `+CONTINUE`: the master resumes from the replica's offset.
    Partial,
    /// Picked up mid-stream (the handshake was not seen).
    Unknown,
    /// `+RDBCHANNELSYNC <id>` (Redis 8 full sync through an RDB channel): the link of the
    /// replica's main connection. The stream starts at once; the RDB, and the offset the stream
    /// starts at, come on the RDB channel. Not counted as a full sync (the RDB channel is).
    MainChannel,
    /// The RDB channel of a Redis 8 full sync (`REPLCONF rdb-channel 1`, then `+FULLRESYNC`),
    /// or of Valkey's dual-channel sync (`SYNC`): one RDB, then the master closes it. Counted as
    /// the full sync; not a link of its own (no `Down` follows).
    RdbChannel,
}

/// What a replication link (a replica connected to the watched port) did, for metrics. The
/// link is named by `replica`: the replica's IP with its `REPLCONF listening-port` when the
/// handshake was seen, else the connection's client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplEvent {
    Up(SyncKind),
    /// The RDB transfer ended: payload bytes and time from its first to its last byte.
    Rdb {
        bytes: u64,
        duration_ns: u64,
    },
    /// Commands the master propagated (not replies), their bytes, the master's replication
    /// offset after them when the handshake told where the stream started, and that offset
    /// minus the replica's last acknowledged one.
    Stream {
        commands: u64,
        bytes: u64,
        offset: Option<u64>,
        lag: Option<u64>,
    },
    /// `REPLCONF ACK <offset>`; `lag` = the master's offset streamed so far minus `offset`,
    /// when known.
    Ack {
        offset: u64,
        lag: Option<u64>,
    },
    Down,
}

/// Where the pipeline delivers what it finds: an output (metrics, a log, ...) implements the
/// methods it needs; the rest default to doing nothing.
pub trait Sink {
    /// Connection-level events from the pipeline.
    fn flow(&mut self, _conn: &ConnMeta, _event: FlowEvent) {}
    /// A command completed (or is known to get no reply).
    fn command(&mut self, rec: &CommandRecord<'_>);
    /// A push or pub/sub message delivered to the client (not a reply to any command), seen at
    /// `ts_ns`.
    fn push(&mut self, _conn: &ConnMeta, _ts_ns: u64, _reply: &Reply) {}
    /// Something worth counting, seen at `ts_ns`.
    fn notice(&mut self, _conn: &ConnMeta, _ts_ns: u64, _notice: Notice) {}
    /// The kernel program's counters, totals since it was loaded.
    fn kernel_counters(&mut self, _totals: &redis_ebpf_common::Counters) {}
    /// End of a batch of events: make what was gathered visible (log lines, metrics).
    fn flush(&mut self) {}
    /// Periodic housekeeping, at `now_ns` (wall clock live, capture clock in replay).
    fn tick(&mut self, _now_ns: u64) {}
    /// End of input: write everything out; the first error is returned.
    fn close(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    /// A replication link's progress; `replica` names the link (see [`ReplEvent`]).
    fn replication(&mut self, _conn: &ConnMeta, _replica: SocketAddr, _event: ReplEvent) {}
}
