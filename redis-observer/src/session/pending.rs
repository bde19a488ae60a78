//! Storage for commands awaiting their reply: fixed-size entries in a `VecDeque`, and their kept
//! bytes (unknown name, key, argument prefixes) in FIFO arenas shared by the whole connection.
//! Entries are freed oldest first, so the arenas are queues too: one reused `Vec` each, no
//! allocation per command once warm.

use crate::commands::CommandId;
use crate::resp::Kind;

/// Which of Redis's pub/sub namespaces a command or confirmation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Chan {
    Channel,
    Pattern,
    Shard,
}

/// How a command is paired with what the server sends back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// One reply.
    Plain,
    /// `(P|S)SUBSCRIBE ch...`: one confirmation per argument.
    Subscribe(Chan),
    /// `(P|S)UNSUBSCRIBE ch...`: one confirmation per argument.
    Unsubscribe(Chan),
    /// Argless `(P|S)UNSUBSCRIBE`: one confirmation per subscription still held, at least one.
    UnsubscribeAll(Chan),
    ReplyOn,
    ReplyOff,
    ReplySkip,
    Multi,
    Exec,
    Discard,
    Reset,
    Quit,
    Hello,
    Monitor,
    /// A request Redis refused (`-ERR Protocol error: …`, then it closes): logged with that
    /// reply, never counted as a command.
    ProtocolError,
    /// A replica's `PSYNC`: `+FULLRESYNC` / `+CONTINUE` start a replication link.
    Psync,
    /// `SYNC`: the replication stream itself is the answer.
    Sync,
    /// `REPLCONF ACK` / `GETACK`: never answered.
    ReplAck,
}

impl Role {
    /// Whether Redis queues it inside MULTI (answering `+QUEUED`) instead of running it.
    pub(super) fn queueable(self) -> bool {
        !matches!(
            self,
            Role::Multi
                | Role::Exec
                | Role::Discard
                | Role::Reset
                | Role::Quit
                | Role::ProtocolError
        )
    }
}

/// A command awaiting its reply (or, in `Core::tx`, queued in a transaction awaiting EXEC).
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    pub ts_first: u64,
    pub ts_last: u64,
    pub req_bytes: u64,
    /// Arguments after the name.
    pub argc: u64,
    /// Logical position of this entry's kept bytes in `Core::bytes`.
    pub bytes_at: u64,
    /// Logical position of this entry's `RecordArg`s in `Core::args`.
    pub args_at: u64,
    /// Pub/sub confirmations still expected, once the first came.
    pub left: u64,
    /// First reply (pub/sub: first confirmation; queued command: `+QUEUED`) time and bytes.
    pub reply_ts: u64,
    pub resp_bytes: u64,
    pub reply_len: i64,
    pub bytes_len: u32,
    /// Key prefix, relative to `bytes_at`.
    pub key_start: u32,
    pub key_len: u32,
    pub args_len: u32,
    /// Key spans (analytics) after the `args_len` argument spans.
    pub keys_len: u32,
    /// Unknown command: its upper-cased name is the first `name_len` kept bytes.
    pub name_len: u32,
    /// Identity change (see `ident.rs`) kept right after the record's `bytes_len` bytes.
    pub ident_len: u16,
    pub id: CommandId,
    pub role: Role,
    pub reply_kind: Kind,
    pub has_key: bool,
    /// How its arguments and reply are redacted.
    pub redact: crate::commands::redact::Policy,
    /// A pub/sub command got at least one confirmation.
    pub got: bool,
    /// The command can block (see `commands::is_blocking`).
    pub blocking: bool,
    /// AUTH, or HELLO with AUTH: answered only with OK, a HELLO reply or an error.
    pub auth: bool,
    /// Role `ProtocolError`: which one.
    pub proto: Option<crate::resp::ProtocolError>,
}

/// Shrink a queue's buffers back to this once it empties (bytes or elements), so one burst does
/// not pin memory for the connection's lifetime.
const SHRINK_ABOVE: usize = 1 << 20;
const SHRINK_TO: usize = 1 << 14;
/// Compact an arena (move live data to the front) only past this much dead space.
const COMPACT_MIN: usize = 1 << 12;

/// A FIFO of `T`s addressed by logical positions that stay valid across compaction.
#[derive(Debug)]
pub(super) struct Fifo<T> {
    buf: Vec<T>,
    /// Logical position of `buf[0]`.
    base: u64,
    /// Live data starts at `buf[lo]`.
    lo: usize,
}

impl<T: Copy> Fifo<T> {
    pub(super) fn new() -> Self {
        Fifo {
            buf: Vec::new(),
            base: 0,
            lo: 0,
        }
    }

    /// Logical position of the next pushed element.
    pub(super) fn end(&self) -> u64 {
        self.base.wrapping_add(self.buf.len() as u64)
    }

    pub(super) fn push(&mut self, x: T) {
        self.buf.push(x);
    }

    pub(super) fn extend(&mut self, xs: &[T]) {
        self.buf.extend_from_slice(xs);
    }

    /// `len` elements from logical position `at`; empty if out of range (never panics).
    pub(super) fn slice(&self, at: u64, len: usize) -> &[T] {
        let Some(start) = at.checked_sub(self.base) else {
            return &[];
        };
        let Ok(start) = usize::try_from(start) else {
            return &[];
        };
        start
            .checked_add(len)
            .and_then(|end| self.buf.get(start..end))
            .unwrap_or(&[])
    }

    /// Mutable view of everything from logical position `at` to the end.
    pub(super) fn tail_mut(&mut self, at: u64) -> &mut [T] {
        let start = at
            .checked_sub(self.base)
            .and_then(|s| usize::try_from(s).ok())
            .unwrap_or(usize::MAX);
        self.buf.get_mut(start..).unwrap_or(&mut [])
    }

    /// Frees everything before logical position `at` (the oldest live entry's start).
    pub(super) fn free_before(&mut self, at: u64) {
        let rel = at
            .checked_sub(self.base)
            .and_then(|r| usize::try_from(r).ok())
            .unwrap_or(0);
        self.lo = rel.min(self.buf.len()).max(self.lo);
        // Amortised O(1): only move the live half when the dead part dominates.
        if self.lo >= COMPACT_MIN && self.lo >= self.buf.len() / 2 {
            let len = self.buf.len();
            self.buf.copy_within(self.lo..len, 0);
            self.buf.truncate(len - self.lo);
            self.base = self.base.wrapping_add(self.lo as u64);
            self.lo = 0;
        }
    }

    /// Drops everything from logical position `at` on (the newest entry, just emitted).
    pub(super) fn truncate(&mut self, at: u64) {
        if let Some(rel) = at
            .checked_sub(self.base)
            .and_then(|r| usize::try_from(r).ok())
            && rel >= self.lo
        {
            self.buf.truncate(rel);
        }
    }

    /// Frees everything; logical positions keep increasing.
    pub(super) fn clear(&mut self) {
        self.base = self.base.wrapping_add(self.buf.len() as u64);
        self.buf.clear();
        self.lo = 0;
        if self.buf.capacity() * size_of::<T>() > SHRINK_ABOVE {
            self.buf.shrink_to(SHRINK_TO / size_of::<T>().max(1));
        }
    }

    pub(super) fn mem(&self) -> usize {
        self.buf.capacity() * size_of::<T>()
    }

    /// Bytes of live elements (what a cap on held data compares; `mem` also counts spare
    /// capacity and freed space not yet compacted).
    pub(super) fn live_bytes(&self) -> usize {
        self.buf.len().saturating_sub(self.lo) * size_of::<T>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_positions_survive_compaction() {
        let mut f = Fifo::<u8>::new();
        let mut spans = Vec::new();
        for i in 0..10_000u32 {
            let at = f.end();
            let b = [(i % 251) as u8; 7];
            f.extend(&b);
            spans.push((at, b[0]));
            if spans.len() > 100 {
                let (at, v) = spans.remove(0);
                assert_eq!(f.slice(at, 7), &[v; 7]);
                f.free_before(spans[0].0);
            }
        }
        for (at, v) in &spans {
            assert_eq!(f.slice(*at, 7), &[*v; 7]);
        }
        // Bounded: only the live entries (and at most as much dead space) are held.
        assert!(f.buf.len() <= 2 * 101 * 7 + COMPACT_MIN);
        assert_eq!(f.slice(0, 7), &[] as &[u8]);
        f.truncate(spans[50].0);
        assert_eq!(f.slice(spans[49].0, 7), &[spans[49].1; 7]);
        assert_eq!(f.slice(spans[50].0, 7), &[] as &[u8]);
        f.clear();
        assert_eq!(f.slice(spans[0].0, 7), &[] as &[u8]);
    }
}
