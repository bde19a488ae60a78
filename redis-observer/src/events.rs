//! Every loss or anomaly the observer reports, one type each. Each type's one method moves its
//! counter and writes its bounded notice (or rate-limited message), side by side here, so a
//! counter and its message cannot drift apart.
//!
//! - [`Notice`]: found by the pairing on one connection; counted by the metrics
//!   ([`Notice::count`]) and written as a `"status": "notice"` log line ([`Notice::describe`]),
//!   both through the outputs.
//! - [`MalformedRecords`]: ring-buffer records that fail the checks.
//!
//! Byte losses (not captured, gaps) are `FlowEvent::BytesMissed`, counted per connection.

use prometheus::IntCounter;

use crate::capture::EventError;
use crate::metrics::{LostReason, Metrics};
use crate::record::Dir;
use crate::resp::DesyncReason;

/// Something about a connection that is not a command: counted, and logged if asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A decoder lost the frame boundary.
    Desync { dir: Dir, reason: DesyncReason },
    /// A reply arrived with no command waiting for it (discarded).
    OrphanReply,
    /// Pending commands whose replies can no longer be matched (after a gap); their count.
    CommandsLost(u64),
    /// A pending command beyond the per-connection cap was dropped.
    PendingOverflow,
}

/// The counters [`Notice`]s move (registered by [`Metrics`]).
pub struct NoticeCounters {
    /// `redis_observer_desyncs_total{reason, dir}`, `[dir][reason]`: request = 0, reply = 1.
    pub desyncs: [[IntCounter; DesyncReason::ALL.len()]; 2],
    /// `redis_observer_orphan_replies_total`.
    pub orphan_replies: IntCounter,
    /// `redis_observer_commands_lost_total{reason="gap"}`.
    pub commands_lost_gap: IntCounter,
    /// `redis_observer_commands_lost_total{reason="pending_overflow"}`.
    pub commands_lost_overflow: IntCounter,
}

impl Notice {
    /// Moves this notice's counter.
    pub fn count(&self, c: &NoticeCounters) {
        match *self {
            Notice::Desync { dir, reason } => {
                let d = match dir {
                    Dir::Request => 0,
                    Dir::Reply => 1,
                };
                let i = DesyncReason::ALL.iter().position(|r| *r == reason);
                if let Some(c) = i.and_then(|i| c.desyncs.get(d).and_then(|row| row.get(i))) {
                    c.inc();
                }
            }
            Notice::OrphanReply => c.orphan_replies.inc(),
            Notice::CommandsLost(n) => c.commands_lost_gap.inc_by(n),
            Notice::PendingOverflow => c.commands_lost_overflow.inc(),
        }
    }

    /// The notice line's sentence: plain ASCII, no quotes or backslashes, so it is safe in JSON
    /// and text as is.
    pub fn describe(&self, out: &mut Vec<u8>) {
        match *self {
            Notice::Desync { dir, reason } => {
                out.extend_from_slice(match dir {
                    Dir::Request => b"lost the command stream's framing: ".as_slice(),
                    Dir::Reply => b"lost the reply stream's framing: ",
                });
                out.extend_from_slice(reason.as_str().as_bytes());
            }
            Notice::OrphanReply => {
                out.extend_from_slice(b"reply without a pending command (discarded)");
            }
            Notice::CommandsLost(k) => {
                out.extend_from_slice(itoa::Buffer::new().format(k).as_bytes());
                out.extend_from_slice(if k == 1 {
                    b" command lost (its reply cannot be matched after a gap)".as_slice()
                } else {
                    b" commands lost (their replies cannot be matched after a gap)"
                });
            }
            Notice::PendingOverflow => {
                out.extend_from_slice(
                    b"command dropped (too many commands waiting for replies on this connection)",
                );
            }
        }
    }
}

/// Ring-buffer records that fail the checks (short, unknown kind or family, bad length):
/// `redis_observer_events_lost_total{reason="malformed"}` and a warning at the 1st, 2nd, 4th,
/// 8th, ... occurrence.
#[derive(Debug, Default)]
pub struct MalformedRecords {
    seen: u64,
}

impl MalformedRecords {
    pub fn emit(&mut self, error: &EventError, metrics: &mut Metrics) {
        self.seen += 1;
        metrics.add_events_lost(LostReason::Malformed, 1);
        if self.seen.is_power_of_two() {
            tracing::warn!(%error, count = self.seen, "malformed ring-buffer record");
        }
    }
}
