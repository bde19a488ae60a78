//! Joining the two connections of a Redis 8 full sync through an RDB channel (see
//! `docs/redis-notes.md` §4): the main connection is named by the client id the master gives it
//! in `+RDBCHANNELSYNC <id>`, the RDB channel names the same id in `REPLCONF ...
//! main-ch-client-id <id>` and learns the offset the main connection's stream starts at from its
//! `+FULLRESYNC <replid> <offset>`.
//!
//! Each session reports what it learned as an [`RdbChannelNote`]; the pipeline puts the notes of
//! all connections through one [`RdbChannels`] table, which hands the offset to the main
//! connection's session once both sides are known. Whichever side comes first waits, bounded:
//! at most [`MAX_WAITING`] entries (the oldest goes when a new one needs room), each for at
//! most [`WAIT_NS`]. Ids are only trusted per server address, and the main session checks the id
//! again before it takes an offset.

use std::collections::VecDeque;
use std::net::SocketAddr;

/// What one connection learned about an rdb-channel sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RdbChannelNote {
    /// This is the main connection of a replica; the master calls it `id`.
    Main { id: u64 },
    /// This is the RDB channel of main connection `id`; the master's snapshot (and the main
    /// connection's stream) starts at `offset`.
    Rdb { id: u64, offset: u64 },
}

/// Sides waiting for the other one, across all connections.
pub const MAX_WAITING: usize = 64;
/// How long a side waits. The RDB channel's `+FULLRESYNC` comes when the master forks, which
/// can wait for `repl-diskless-sync-delay` and for a running child to finish.
pub const WAIT_NS: u64 = 10 * 60 * 1_000_000_000;

#[derive(Clone, Copy, Debug)]
enum Side<K> {
    Main(K),
    Rdb(u64),
}

#[derive(Clone, Copy, Debug)]
struct Waiting<K> {
    server: SocketAddr,
    id: u64,
    ts: u64,
    side: Side<K>,
}

/// The pending halves of rdb-channel syncs; `K` names a connection (the pipeline's flow key).
#[derive(Debug)]
pub struct RdbChannels<K> {
    waiting: VecDeque<Waiting<K>>,
    /// Entries dropped for room or expired without their other half.
    pub unmatched: u64,
}

impl<K> Default for RdbChannels<K> {
    fn default() -> Self {
        RdbChannels {
            waiting: VecDeque::new(),
            unmatched: 0,
        }
    }
}

/// Hand this offset to the main connection `main`, which the master calls `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Join<K> {
    pub main: K,
    pub id: u64,
    pub offset: u64,
}

impl<K: Copy> RdbChannels<K> {
    /// `note` from connection `conn` to `server`, seen at `ts`: the join to make when it
    /// completes a pair.
    pub fn note(
        &mut self,
        server: SocketAddr,
        conn: K,
        note: RdbChannelNote,
        ts: u64,
    ) -> Option<Join<K>> {
        self.expire(ts);
        let (id, side) = match note {
            RdbChannelNote::Main { id } => (id, Side::Main(conn)),
            RdbChannelNote::Rdb { id, offset } => (id, Side::Rdb(offset)),
        };
        if let Some(i) = self
            .waiting
            .iter()
            .position(|w| w.server == server && w.id == id)
        {
            let w = self.waiting.remove(i)?;
            match (w.side, side) {
                (Side::Main(main), Side::Rdb(offset)) | (Side::Rdb(offset), Side::Main(main)) => {
                    return Some(Join { main, id, offset });
                }
                // The same side again (a retry): the newer one waits instead.
                _ => self.unmatched += 1,
            }
        }
        if self.waiting.len() >= MAX_WAITING {
            self.waiting.pop_front();
            self.unmatched += 1;
        }
        self.waiting.push_back(Waiting {
            server,
            id,
            ts,
            side,
        });
        None
    }

    /// Drops the sides that waited [`WAIT_NS`] by `now`.
    pub fn expire(&mut self, now: u64) {
        let before = self.waiting.len();
        self.waiting.retain(|w| now.saturating_sub(w.ts) < WAIT_NS);
        self.unmatched += (before - self.waiting.len()) as u64;
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Bytes held.
    #[must_use]
    pub fn mem(&self) -> usize {
        size_of::<Self>() + self.waiting.capacity() * size_of::<Waiting<K>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn srv(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn main(id: u64) -> RdbChannelNote {
        RdbChannelNote::Main { id }
    }

    fn rdb(id: u64, offset: u64) -> RdbChannelNote {
        RdbChannelNote::Rdb { id, offset }
    }

    #[test]
    fn joins_in_either_order() {
        let mut t = RdbChannels::default();
        assert_eq!(t.note(srv(1), 10, main(7), SEC), None);
        assert_eq!(
            t.note(srv(1), 11, rdb(7, 500), 2 * SEC),
            Some(Join {
                main: 10,
                id: 7,
                offset: 500
            })
        );
        assert!(t.is_empty());
        // The RDB channel first (its +FULLRESYNC reached the observer before the main
        // channel's +RDBCHANNELSYNC).
        assert_eq!(t.note(srv(1), 21, rdb(8, 900), 3 * SEC), None);
        assert_eq!(
            t.note(srv(1), 20, main(8), 3 * SEC),
            Some(Join {
                main: 20,
                id: 8,
                offset: 900
            })
        );
        assert!(t.is_empty());
        assert_eq!(t.unmatched, 0);
    }

    #[test]
    fn ids_are_per_server() {
        let mut t = RdbChannels::default();
        assert_eq!(t.note(srv(1), 10, main(7), SEC), None);
        assert_eq!(t.note(srv(2), 11, rdb(7, 500), SEC), None);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.note(srv(2), 12, main(7), SEC),
            Some(Join {
                main: 12,
                id: 7,
                offset: 500
            })
        );
    }

    #[test]
    fn a_retry_replaces_the_side_waiting() {
        let mut t = RdbChannels::default();
        assert_eq!(t.note(srv(1), 11, rdb(7, 100), SEC), None);
        assert_eq!(t.note(srv(1), 12, rdb(7, 300), SEC), None);
        assert_eq!((t.len(), t.unmatched), (1, 1));
        assert_eq!(
            t.note(srv(1), 10, main(7), SEC),
            Some(Join {
                main: 10,
                id: 7,
                offset: 300
            })
        );
    }

    #[test]
    fn pending_sides_expire() {
        let mut t = RdbChannels::default();
        assert_eq!(t.note(srv(1), 10, main(7), SEC), None);
        t.expire(SEC + WAIT_NS - 1);
        assert_eq!(t.len(), 1);
        t.expire(SEC + WAIT_NS);
        assert_eq!((t.len(), t.unmatched), (0, 1));
        // Too late: the RDB channel finds no main channel, and waits in turn.
        assert_eq!(t.note(srv(1), 11, rdb(7, 1), 2 * WAIT_NS), None);
        assert_eq!(t.len(), 1);
    }

    /// A peer inventing ids (as a fake master could) holds at most `MAX_WAITING` entries; the
    /// newest pairs still join.
    #[test]
    fn bounded_under_invented_ids() {
        let mut t = RdbChannels::default();
        let mem = t.mem();
        for id in 0..100_000u64 {
            assert_eq!(t.note(srv(1), id, main(id), SEC + id), None);
            assert!(t.len() <= MAX_WAITING);
        }
        assert_eq!(t.len(), MAX_WAITING);
        assert_eq!(t.unmatched, 100_000 - MAX_WAITING as u64);
        assert!(t.mem() <= mem + 2 * MAX_WAITING * size_of::<Waiting<u64>>());
        assert_eq!(
            t.note(srv(1), 0, rdb(99_999, 42), 2 * SEC),
            Some(Join {
                main: 99_999,
                id: 99_999,
                offset: 42
            })
        );
        assert_eq!(t.note(srv(1), 0, rdb(0, 42), 2 * SEC), None, "dropped");
    }
}
