//! One memory limit (`--memory-limit`), split into the budgets of everything that grows with
//! traffic.
//!
//! The daemon's memory is a fixed part (the executable, the async runtime, the metrics registry
//! and HTTP server, the allocator's own slack), the kernel ring buffer (charged to the daemon's
//! memory cgroup), the command log's queue, the hot-key analytics (fixed-capacity tables for as
//! many servers as a sixth of the limit holds), and the connections: the flow table, each
//! connection's reassembly buffers and the commands awaiting replies. Only the last part grows
//! with traffic, so it gets what is left, less a margin for allocator fragmentation: every byte
//! of it is counted (`FlowState::mem`) and the flow table evicts to stay under it. Within it, one
//! connection's pending commands may hold at most a quarter, so a single client pipelining
//! without reading its replies cannot push every other connection out.
//!
//! Eviction order when room is needed (see `flows::FlowTable`): connections that never heard
//! from their server (spoofed SYNs with data, half-open, one-sided: they cost little to lose),
//! then the longest-idle connections with nothing outstanding, and only to keep the memory cap
//! with nothing else left, connections with a command awaiting its reply.

use crate::command_log::{BATCH_BYTES, QUEUE_BATCHES};

/// The default limit: fits the shipped DaemonSet's `limits.memory: 256Mi` and the systemd unit's
/// `MemoryMax=256M` with a quarter to spare.
pub const DEFAULT_LIMIT: u64 = 192 << 20;

/// Executable, runtime, metrics registry, HTTP server, allocator arenas: measured about 20 MiB
/// at rest on x86_64; this leaves room for their growth (label sets are capped elsewhere).
pub const FIXED: u64 = 40 << 20;

/// Connections get at least this much, or the limit is refused.
pub const MIN_FLOWS: u64 = 8 << 20;

/// The smallest a connection costs in the table (its state, buffers not yet grown, the table's
/// bookkeeping); bounds how many connections the budget can hold.
pub const MIN_PER_FLOW: u64 = 2048;

/// Connections tracked at most, whatever the budget.
pub const MAX_FLOWS: u64 = 100_000;

/// How a limit splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub limit: u64,
    pub fixed: u64,
    /// The kernel ring buffer (0 in replay).
    pub ring: u64,
    /// The command log's queue of batches waiting for the writer thread.
    pub log_queue: u64,
    /// The hot-key analytics' fixed-capacity tables (0 with `--top off`).
    pub top: u64,
    /// Kept free for allocator fragmentation: a quarter of what remains.
    pub margin: u64,
    /// All connections together (the flow table's memory cap).
    pub flows: u64,
    /// Connections tracked at most.
    pub max_flows: usize,
    /// What one connection's commands awaiting replies may hold.
    pub pending_per_conn: u64,
}

impl Budget {
    /// Splits `limit` for a daemon whose ring buffer is `ring` bytes (0 for replay) and whose
    /// analytics take `top` bytes at most.
    pub fn split(limit: u64, ring: u64, top: u64) -> anyhow::Result<Budget> {
        let log_queue = 2 * QUEUE_BATCHES as u64 * (BATCH_BYTES as u64 + 4096);
        let reserved = FIXED
            .saturating_add(ring)
            .saturating_add(log_queue)
            .saturating_add(top);
        let rest = limit.saturating_sub(reserved);
        let margin = rest / 4;
        let flows = rest - margin;
        if flows < MIN_FLOWS {
            anyhow::bail!(
                "--memory-limit {} MiB leaves {} MiB for connections after the fixed part ({} \
                 MiB), the ring buffer ({} MiB), the log queue ({} MiB) and the hot-key \
                 analytics ({} MiB); at least {} MiB is needed",
                limit >> 20,
                flows >> 20,
                FIXED >> 20,
                ring >> 20,
                log_queue >> 20,
                top >> 20,
                MIN_FLOWS >> 20
            );
        }
        let max_flows = (flows / MIN_PER_FLOW).min(MAX_FLOWS);
        Ok(Budget {
            limit,
            fixed: FIXED,
            ring,
            log_queue,
            top,
            margin,
            flows,
            max_flows: usize::try_from(max_flows).unwrap_or(usize::MAX),
            pending_per_conn: flows / 4,
        })
    }

    /// The parts, for `redis_observer_memory_budget_bytes{part}`.
    #[must_use]
    pub fn parts(&self) -> [(&'static str, u64); 7] {
        [
            ("limit", self.limit),
            ("fixed", self.fixed),
            ("ring", self.ring),
            ("log_queue", self.log_queue),
            ("top", self.top),
            ("margin", self.margin),
            ("flows", self.flows),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_split_fits_the_deployments() {
        let b = Budget::split(DEFAULT_LIMIT, 16 << 20, 24 << 20).unwrap();
        assert_eq!(
            b.fixed + b.ring + b.log_queue + b.top + b.margin + b.flows,
            DEFAULT_LIMIT
        );
        assert!(b.flows >= 56 << 20, "{b:?}");
        assert_eq!(b.max_flows, 100_000.min((b.flows / MIN_PER_FLOW) as usize));
        assert_eq!(b.pending_per_conn, b.flows / 4);
    }

    #[test]
    fn too_small_a_limit_is_refused() {
        let e = Budget::split(64 << 20, 16 << 20, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--memory-limit 64 MiB"), "{e}");
        assert!(Budget::split(0, 0, 0).is_err());
        assert!(Budget::split(u64::MAX, 0, 0).is_ok());
    }

    #[test]
    fn replay_has_no_ring() {
        let live = Budget::split(256 << 20, 16 << 20, 0).unwrap();
        let replay = Budget::split(256 << 20, 0, 0).unwrap();
        assert!(replay.flows > live.flows);
    }
}
