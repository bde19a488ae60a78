//! Prometheus metrics (names and labels as in docs/contract.md) and the HTTP endpoint.
//!
//! Updated only from the pipeline thread through `&mut Metrics`; the HTTP task only gathers (the
//! `prometheus` types are atomics, so gathering while the pipeline counts is fine). Per-command
//! counts, bytes and latencies gather in plain cells and reach the registry together in
//! [`Metrics::flush_local`], after every batch, so a scrape sees them at most one batch late.
//!
//! Hot path: [`Metrics::record_command`] does no allocation and no label hashing once warm. The
//! label handles of each (server, command) pair are resolved the first time the pair is seen and
//! kept in a `Vec` indexed by command id; the server is found through a one-entry cache, then a
//! scan of the addresses while there are few, else a `HashMap` of at most [`MAX_SERVERS`] +
//! [`OVERFLOW_REMEMBERED`] entries. Measured: about 20-25 ns per command (release, one core).
//!
//! Who feeds what: [`Metrics::record_command`], [`Metrics::record_push`],
//! [`Metrics::record_notice`] and [`Metrics::record_flow`] come from the pipeline (through
//! [`Outputs`](crate::command_log::Outputs)); [`Metrics::set_kernel_counters`] from the capture's
//! running totals, as often as convenient; the log writer counts its own drops through
//! [`LogCounters`].
//!
//! Cardinality is bounded: `command` values come from the command table only (`UNKNOWN` for the
//! rest), `error` from [`ERROR_CLASSES`] (else `OTHER`), `server` from the first [`MAX_SERVERS`]
//! servers seen (the rest share `other`), every `reason` from a fixed set in this file or a
//! `&'static str` chosen in code.

mod clients;
pub(crate) mod errors;
mod http;
mod repl;

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    local::LocalHistogram,
};

use redis_ebpf_common::{Counters, counter};

use crate::commands::{self, CommandId};
use crate::record::{CommandRecord, FlowEvent, MissReason, Notice, ReplEvent, Status};
use crate::resp::{DesyncReason, Kind, ProtocolError};

pub use clients::{ClientLabel, MAX_CLIENTS, OTHER_CLIENT, UNKNOWN_CLIENT};
pub use errors::{ERROR_CLASSES, error_class};
pub use http::serve;
pub use repl::MAX_REPLICAS;

/// Distinct `server` label values; servers seen after these are counted as `other`.
pub const MAX_SERVERS: usize = 64;
/// Overflowed server addresses remembered (so each is counted once in
/// `redis_observer_servers_overflow_total`); past this every lookup of a new one counts again.
pub const OVERFLOW_REMEMBERED: usize = 4096;
/// Up to this many servers, a server is found by scanning their addresses.
const SCAN_SERVERS: usize = 16;
/// Slots for `Status` values (`repr(u8)` discriminants).
const STATUS_SLOTS: usize = 8;
/// `server` label value shared by servers past [`MAX_SERVERS`].
pub const OTHER_SERVER: &str = "other";

/// Upper bounds of `redis_blocking_command_duration_seconds`: those below, then up to 5 minutes
/// (a BLPOP waits as long as its timeout).
pub const BLOCKING_DURATION_BUCKETS: [f64; 23] = [
    0.000_01, 0.000_02, 0.000_05, 0.000_1, 0.000_2, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
    0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Upper bounds of `redis_command_duration_seconds`: 10 µs to 10 s, 1-2-5 in each decade.
pub const DURATION_BUCKETS: [f64; 19] = [
    0.000_01, 0.000_02, 0.000_05, 0.000_1, 0.000_2, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
    0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// Why kernel events or hand-offs were lost (`redis_observer_events_lost_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// The kernel could not reserve ring-buffer space.
    RingFull,
    /// Packets on a watched port the kernel could not parse (fragments, long header chains).
    Unparsed,
    /// `bpf_skb_load_bytes` failed.
    LoadFailed,
    /// A ring-buffer record failed the checks (see `events::MalformedRecords`).
    Malformed,
}

impl LostReason {
    pub const ALL: [LostReason; 4] = [
        LostReason::RingFull,
        LostReason::Unparsed,
        LostReason::LoadFailed,
        LostReason::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LostReason::RingFull => "ring_full",
            LostReason::Unparsed => "unparsed",
            LostReason::LoadFailed => "load_failed",
            LostReason::Malformed => "malformed",
        }
    }
}

/// Reasons of `redis_observer_bytes_missed_total`, created at start.
const MISS_REASONS: [MissReason; 3] = [
    MissReason::NotCaptured,
    MissReason::Gap,
    MissReason::Ignored,
];

/// A counter fed with running totals: adds the difference from the last total. A total smaller
/// than the last one (the source restarted) counts from zero again.
struct Monotonic {
    counter: IntCounter,
    last: u64,
}

impl Monotonic {
    fn new(counter: IntCounter) -> Self {
        Monotonic { counter, last: 0 }
    }

    fn set(&mut self, total: u64) {
        let delta = total.checked_sub(self.last).unwrap_or(total);
        self.counter.inc_by(delta);
        self.last = total;
    }
}

/// Handles of the log writer's own counters, shared with its thread.
#[derive(Clone, Debug)]
pub struct LogCounters {
    /// Lines dropped because the writer's queue was full.
    pub queue_full: IntCounter,
    /// Lines lost to write errors (disk full, closed pipe).
    pub write_error: IntCounter,
}

/// The labelled families, separate from the per-server handles so both can be borrowed at once.
struct Families {
    commands: IntCounterVec,
    duration: HistogramVec,
    blocking_duration: HistogramVec,
    errors: IntCounterVec,
    req_bytes: IntCounterVec,
    resp_bytes: IntCounterVec,
    conns_active: IntGaugeVec,
    conns_total: IntCounterVec,
    pushes: IntCounterVec,
    client_commands: IntCounterVec,
    client_duration: HistogramVec,
}

/// Handles of one (server, command) pair, resolved on first use.
///
/// Latencies, status counts and bytes gather here without atomics and reach the registry on
/// [`Metrics::flush_local`] (after every drain) or when the metrics are encoded, all at once.
struct CmdHandles {
    duration: LocalHistogram,
    /// Latencies of this command when it could block; created on its first one.
    blocking_duration: Option<LocalHistogram>,
    /// This pair holds unflushed counts: it is in `Metrics::dirty`.
    dirty: Cell<bool>,
    /// Indexed by `Status as usize`; created when first needed so absent statuses add no series.
    /// Room for statuses added later (a status past the end is not counted, never a panic).
    status: [Option<IntCounter>; STATUS_SLOTS],
    /// Counts for `status` not yet added to it.
    status_local: [Cell<u64>; STATUS_SLOTS],
    /// Request and reply bytes not yet added to the server's counters.
    req_bytes_local: Cell<u64>,
    resp_bytes_local: Cell<u64>,
    /// Indexed by the position in [`ERROR_CLASSES`], `OTHER` last.
    errors: [Option<IntCounter>; ERROR_CLASSES.len() + 1],
}

struct ServerSlot {
    label: String,
    /// When its last connection closed (a count of such closes, as a clock); 0 if never open.
    idle_at: u64,
    req_bytes: IntCounter,
    resp_bytes: IntCounter,
    conns_active: IntGauge,
    conns_total: IntCounter,
    pushes: IntCounter,
    /// Indexed by command id.
    cmds: Vec<Option<Box<CmdHandles>>>,
    clients: clients::Clients,
}

impl ServerSlot {
    fn new(fam: &Families, label: String) -> Self {
        let l = [label.as_str()];
        ServerSlot {
            req_bytes: fam.req_bytes.with_label_values(&l),
            resp_bytes: fam.resp_bytes.with_label_values(&l),
            conns_active: fam.conns_active.with_label_values(&l),
            conns_total: fam.conns_total.with_label_values(&l),
            pushes: fam.pushes.with_label_values(&l),
            cmds: (0..commands::count().max(1)).map(|_| None).collect(),
            idle_at: 0,
            clients: clients::Clients::default(),
            label,
        }
    }

    /// Removes every series this slot created, so its label value can be given to another server.
    fn remove_series(&self, fam: &Families) {
        let l = self.label.as_str();
        for f in [
            &fam.req_bytes,
            &fam.resp_bytes,
            &fam.conns_total,
            &fam.pushes,
        ] {
            let _ = f.remove_label_values(&[l]);
        }
        let _ = fam.conns_active.remove_label_values(&[l]);
        for (id, h) in self.cmds.iter().enumerate() {
            let Some(h) = h else { continue };
            let name = u16::try_from(id).map_or("UNKNOWN", |id| commands::name(CommandId(id)));
            let _ = fam.duration.remove_label_values(&[l, name]);
            for (st, c) in STATUSES.iter().zip(&h.status) {
                if c.is_some() {
                    let _ = fam.commands.remove_label_values(&[l, name, st.as_str()]);
                }
            }
            for (k, c) in h.errors.iter().enumerate() {
                if c.is_some() {
                    let err = ERROR_CLASSES.get(k).copied().unwrap_or(errors::OTHER);
                    let _ = fam.errors.remove_label_values(&[l, name, err]);
                }
            }
        }
        self.clients
            .remove_series(l, &fam.client_commands, &fam.client_duration);
    }

    /// This server's label and the handles for a command id (ids outside the table count as
    /// `UNKNOWN`).
    fn cmd(&mut self, fam: &Families, id: CommandId) -> (&str, &mut CmdHandles) {
        let id = table_id(id);
        let label = self.label.as_str();
        let slot = match self.cmds.get_mut(usize::from(id.0)) {
            Some(s) => s,
            // `cmds` has `commands::count()` entries and `table_id` keeps ids below that.
            None => unreachable_slot(),
        };
        let h = slot.get_or_insert_with(|| {
            Box::new(CmdHandles {
                duration: fam
                    .duration
                    .with_label_values(&[label, commands::name(id)])
                    .local(),
                blocking_duration: None,
                dirty: Cell::new(false),
                status: Default::default(),
                status_local: Default::default(),
                req_bytes_local: Cell::new(0),
                resp_bytes_local: Cell::new(0),
                errors: Default::default(),
            })
        });
        (label, h)
    }
}

#[cold]
fn unreachable_slot() -> ! {
    unreachable!("command slot index checked against cmds.len()")
}

/// Connections to a server that has not answered in RESP yet: counted here, without a label, and
/// moved to its slot when it does (refused `connect()`s never get one).
#[derive(Clone, Copy, Default)]
struct Candidate {
    active: i64,
    total: u64,
}

/// Maps server addresses to label slots, bounded. A slot goes only to a server that answered in
/// RESP; when all are taken, the slot idle longest (no open connection) is reclaimed.
struct Servers {
    candidates: HashMap<SocketAddr, Candidate>,
    /// Clock for `ServerSlot::idle_at`.
    closes: u64,
    slots: Vec<ServerSlot>,
    /// Address of each real slot: `slots[i]` is `addrs[i]` (`other` is created only once the
    /// real slots are all taken, so it comes after them).
    addrs: Vec<SocketAddr>,
    index: HashMap<SocketAddr, usize>,
    /// Slot of `other`, created on the first overflow.
    other: Option<usize>,
    last: Option<(SocketAddr, usize)>,
    max: usize,
}

impl Servers {
    /// A server slot and the handles of one of its commands.
    fn handles(&self, si: usize, id: CommandId) -> Option<(&ServerSlot, &CmdHandles)> {
        let slot = self.slots.get(si)?;
        Some((slot, slot.cmds.get(usize::from(id.0))?.as_deref()?))
    }

    /// The slot of a server that has one (or was sent to `other`).
    #[inline]
    fn lookup(&mut self, addr: SocketAddr) -> Option<usize> {
        if let Some((a, i)) = self.last
            && a == addr
        {
            return Some(i);
        }
        // A few servers: a scan of their addresses beats hashing.
        let scanned = if self.addrs.len() <= SCAN_SERVERS {
            self.addrs.iter().position(|a| *a == addr)
        } else {
            None
        };
        let i = scanned.or_else(|| self.index.get(&addr).copied())?;
        self.last = Some((addr, i));
        Some(i)
    }

    fn real_slots(&self) -> usize {
        self.slots.len() - usize::from(self.other.is_some())
    }

    /// A new slot for `addr` at index `i` (a fresh one, or a reclaimed one), with the
    /// connections counted while it had none.
    fn install(&mut self, fam: &Families, addr: SocketAddr, i: Option<usize>) -> usize {
        let slot = ServerSlot::new(fam, addr.to_string());
        if let Some(c) = self.candidates.remove(&addr) {
            slot.conns_total.inc_by(c.total);
            slot.conns_active.set(c.active.max(0));
        }
        let i = match i {
            Some(i) => {
                if let Some(old) = self.addrs.get(i).copied() {
                    self.index.remove(&old);
                }
                if let (Some(s), Some(a)) = (self.slots.get_mut(i), self.addrs.get_mut(i)) {
                    *s = slot;
                    *a = addr;
                }
                i
            }
            None => {
                // `other`, if it exists, stays last among the real slots' indices: insert
                // before it would shift indices, so real slots are pushed and `other` keeps
                // its index wherever it is.
                let i = self.slots.len();
                self.slots.push(slot);
                self.addrs.push(addr);
                i
            }
        };
        self.index.insert(addr, i);
        self.last = Some((addr, i));
        i
    }

    /// The real slot with no open connection that has been idle longest.
    fn idlest_free(&self) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(i, s)| Some(*i) != self.other && s.conns_active.get() == 0)
            .min_by_key(|(_, s)| s.idle_at)
            .map(|(i, _)| i)
    }

    fn other_slot(&mut self, fam: &Families) -> usize {
        match self.other {
            Some(i) => i,
            None => {
                let i = self.slots.len();
                self.slots
                    .push(ServerSlot::new(fam, OTHER_SERVER.to_string()));
                // Keeps `addrs` index-aligned with `slots`.
                self.addrs.push(SocketAddr::from(([0, 0, 0, 0], 0)));
                self.other = Some(i);
                i
            }
        }
    }

    /// `addr` goes to `other` (counted once while remembered).
    fn overflow(&mut self, fam: &Families, overflow: &IntCounter, addr: SocketAddr) -> usize {
        overflow.inc();
        let i = self.other_slot(fam);
        if self.index.len() < self.max + OVERFLOW_REMEMBERED {
            self.index.insert(addr, i);
            // Its connections are `other`'s from now on (their closes will find it there).
            if let (Some(c), Some(o)) = (self.candidates.remove(&addr), self.slots.get(i)) {
                o.conns_total.inc_by(c.total);
                o.conns_active.add(c.active.max(0));
            }
        }
        self.last = Some((addr, i));
        i
    }

    /// A connection to `addr` opened (`+1`) or closed (`-1`).
    fn connection(&mut self, addr: SocketAddr, delta: i64) {
        match self.lookup(addr).and_then(|i| self.slots.get_mut(i)) {
            Some(slot) => {
                if delta > 0 {
                    slot.conns_total.inc();
                    slot.conns_active.inc();
                } else if slot.conns_active.get() > 0 {
                    // Never below zero, even if a caller closes what it did not open.
                    slot.conns_active.dec();
                    if slot.conns_active.get() == 0 {
                        self.closes += 1;
                        slot.idle_at = self.closes;
                    }
                }
            }
            None => {
                if delta > 0 && self.candidates.len() >= OVERFLOW_REMEMBERED {
                    // Bounded: forget the candidates with nothing open (refused connects).
                    self.candidates.retain(|_, c| c.active > 0);
                    if self.candidates.len() >= OVERFLOW_REMEMBERED {
                        return;
                    }
                }
                if let Some(c) = match delta > 0 {
                    true => Some(self.candidates.entry(addr).or_default()),
                    false => self.candidates.get_mut(&addr),
                } {
                    if delta > 0 {
                        c.active += 1;
                        c.total += 1;
                    } else {
                        c.active = (c.active - 1).max(0);
                    }
                }
            }
        }
    }
}

/// Every metric of the contract, on its own registry.
pub struct Metrics {
    registry: Registry,
    fam: Families,
    servers: Servers,
    /// (server slot, command id) pairs whose local histogram holds observations.
    dirty: Vec<(usize, CommandId)>,
    /// `--client-label`.
    client_label: ClientLabel,
    /// (server slot, client slot) pairs holding unflushed counts.
    dirty_clients: Vec<(usize, usize)>,
    servers_overflow: IntCounter,
    events_lost: [IntCounter; LostReason::ALL.len()],
    bytes_missed: [IntCounter; MISS_REASONS.len()],
    flows_refused: IntCounter,
    notices: crate::events::NoticeCounters,
    /// Indexed like [`ProtocolError::ALL`].
    protocol_errors: [IntCounter; ProtocolError::ALL.len()],
    flows_evicted: IntCounterVec,
    /// Handles of the reasons seen so far (a handful of `&'static str`s).
    flows_evicted_cache: Vec<(&'static str, IntCounter)>,
    log: LogCounters,
    packets: Monotonic,
    segments: Monotonic,
    bytes_captured: Monotonic,
    wakeups: Monotonic,
    k_events_lost: Monotonic,
    k_unparsed: Monotonic,
    k_load_failed: Monotonic,
    k_bytes_lost: Monotonic,
    repl_fam: repl::Families,
    repl: repl::Links,
    /// `redis_observer_memory_budget_bytes{part}`: how `--memory-limit` splits.
    memory_budget: IntGaugeVec,
    /// `redis_observer_memory_bytes{part="flows"}`: what the connections hold now.
    flows_memory: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| bad_metric(name, &e));
    register(registry, name, Box::new(c.clone()));
    c
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g =
        IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| bad_metric(name, &e));
    register(registry, name, Box::new(g.clone()));
    g
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c =
        IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| bad_metric(name, &e));
    register(registry, name, Box::new(c.clone()));
    c
}

fn register(registry: &Registry, name: &str, c: Box<dyn prometheus::core::Collector>) {
    if let Err(e) = registry.register(c) {
        bad_metric(name, &e);
    }
}

/// Metric definitions are constants of this file, so a failure is a bug caught by the tests.
#[cold]
fn bad_metric(name: &str, e: &prometheus::Error) -> ! {
    panic!("metric {name} is ill-defined: {e}")
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Self::with_max_servers(MAX_SERVERS);
        // Series with a fixed set of reasons exist from the start, at zero, so dashboards and
        // alerts have data before the first eviction.
        for reason in ["idle", "limit"] {
            m.flows_evicted_cache
                .push((reason, m.flows_evicted.with_label_values(&[reason])));
        }
        m
    }

    /// As [`Metrics::new`] with a different cap on distinct `server` values.
    pub fn with_max_servers(max_servers: usize) -> Self {
        let r = Registry::new();
        let fam = Families {
            commands: counter_vec(
                &r,
                "redis_commands_total",
                "Commands seen, by server, command and outcome.",
                &["server", "command", "status"],
            ),
            duration: {
                let name = "redis_command_duration_seconds";
                let opts = HistogramOpts::new(
                    name,
                    "Time from a command's last byte to its reply's first byte, as seen in the kernel.",
                )
                .buckets(DURATION_BUCKETS.to_vec());
                let h = HistogramVec::new(opts, &["server", "command"])
                    .unwrap_or_else(|e| bad_metric(name, &e));
                register(&r, name, Box::new(h.clone()));
                h
            },
            blocking_duration: {
                let name = "redis_blocking_command_duration_seconds";
                let opts = HistogramOpts::new(
                    name,
                    "As redis_command_duration_seconds, for commands that can block (BLPOP, XREAD ... BLOCK, WAIT, ...), which it excludes.",
                )
                .buckets(BLOCKING_DURATION_BUCKETS.to_vec());
                let h = HistogramVec::new(opts, &["server", "command"])
                    .unwrap_or_else(|e| bad_metric(name, &e));
                register(&r, name, Box::new(h.clone()));
                h
            },
            errors: counter_vec(
                &r,
                "redis_command_errors_total",
                "Error replies, by the error's first word.",
                &["server", "command", "error"],
            ),
            req_bytes: counter_vec(
                &r,
                "redis_request_bytes_total",
                "Bytes of commands on the wire.",
                &["server"],
            ),
            resp_bytes: counter_vec(
                &r,
                "redis_response_bytes_total",
                "Bytes of replies and pushes on the wire.",
                &["server"],
            ),
            conns_active: {
                let name = "redis_connections_active";
                let g =
                    IntGaugeVec::new(Opts::new(name, "Connections being observed."), &["server"])
                        .unwrap_or_else(|e| bad_metric(name, &e));
                register(&r, name, Box::new(g.clone()));
                g
            },
            conns_total: counter_vec(
                &r,
                "redis_connections_total",
                "Connections seen.",
                &["server"],
            ),
            pushes: counter_vec(
                &r,
                "redis_push_messages_total",
                "Pub/sub messages and RESP3 pushes delivered to clients.",
                &["server"],
            ),
            client_commands: counter_vec(
                &r,
                "redis_client_commands_total",
                "Commands seen, by server, client (as --client-label chooses) and outcome.",
                &["server", "client", "status"],
            ),
            client_duration: {
                let name = "redis_client_command_duration_seconds";
                let opts = HistogramOpts::new(
                    name,
                    "Latency of non-blocking commands (as redis_command_duration_seconds), by server and client.",
                )
                .buckets(DURATION_BUCKETS.to_vec());
                let h = HistogramVec::new(opts, &["server", "client"])
                    .unwrap_or_else(|e| bad_metric(name, &e));
                register(&r, name, Box::new(h.clone()));
                h
            },
        };
        let events_lost_vec = counter_vec(
            &r,
            "redis_observer_events_lost_total",
            "Capture events lost before decoding.",
            &["reason"],
        );
        let bytes_missed_vec = counter_vec(
            &r,
            "redis_observer_bytes_missed_total",
            "Stream bytes the observer did not see.",
            &["reason"],
        );
        let desyncs_vec = counter_vec(
            &r,
            "redis_observer_desyncs_total",
            "Times a decoder lost the frame boundary.",
            &["reason", "dir"],
        );
        let desync_row = |dir: &str| {
            DesyncReason::ALL.map(|reason| desyncs_vec.with_label_values(&[reason.as_str(), dir]))
        };
        let commands_lost = counter_vec(
            &r,
            "redis_observer_commands_lost_total",
            "Commands whose replies could not be matched.",
            &["reason"],
        );
        let log_dropped = counter_vec(
            &r,
            "redis_observer_log_dropped_total",
            "Command log lines not written.",
            &["reason"],
        );
        let protocol_errors = counter_vec(
            &r,
            "redis_observer_protocol_errors_total",
            "Requests the server refused with -ERR Protocol error (then closed the connection); not commands.",
            &["reason"],
        );
        let k = |name: &str, help: &str| Monotonic::new(counter(&r, name, help));
        Metrics {
            servers_overflow: counter(
                &r,
                "redis_observer_servers_overflow_total",
                "Server addresses beyond the label cap, counted as server=\"other\".",
            ),
            events_lost: LostReason::ALL.map(|x| events_lost_vec.with_label_values(&[x.as_str()])),
            bytes_missed: MISS_REASONS.map(|x| bytes_missed_vec.with_label_values(&[x.as_str()])),
            flows_refused: counter(
                &r,
                "redis_observer_flows_refused_total",
                "Connections not tracked because the flow table was full of active ones.",
            ),
            notices: crate::events::NoticeCounters {
                desyncs: [desync_row("request"), desync_row("reply")],
                orphan_replies: counter(
                    &r,
                    "redis_observer_orphan_replies_total",
                    "Replies with no command waiting for them (discarded).",
                ),
                commands_lost_gap: commands_lost.with_label_values(&["gap"]),
                commands_lost_overflow: commands_lost.with_label_values(&["pending_overflow"]),
            },
            protocol_errors: ProtocolError::ALL
                .map(|e| protocol_errors.with_label_values(&[e.as_str()])),
            flows_evicted: counter_vec(
                &r,
                "redis_observer_flows_evicted_total",
                "Connections whose state was dropped before they closed.",
                &["reason"],
            ),
            flows_evicted_cache: Vec::new(),
            log: LogCounters {
                queue_full: log_dropped.with_label_values(&["queue_full"]),
                write_error: log_dropped.with_label_values(&["write_error"]),
            },
            packets: k(
                "redis_observer_packets_total",
                "Packets seen on the watched ports.",
            ),
            segments: k(
                "redis_observer_segments_total",
                "Segment events the kernel sent to userspace.",
            ),
            bytes_captured: k(
                "redis_observer_bytes_captured_total",
                "Payload bytes the kernel copied to userspace.",
            ),
            wakeups: k(
                "redis_observer_ring_wakeups_total",
                "Forced ring-buffer wakeups (fill past the threshold).",
            ),
            k_events_lost: Monotonic::new(events_lost_vec.with_label_values(&["ring_full"])),
            k_unparsed: Monotonic::new(events_lost_vec.with_label_values(&["unparsed"])),
            k_load_failed: Monotonic::new(events_lost_vec.with_label_values(&["load_failed"])),
            k_bytes_lost: k(
                "redis_observer_ring_bytes_lost_total",
                "Payload bytes in events lost to a full ring buffer (they reach the streams as gaps).",
            ),
            dirty: Vec::new(),
            repl_fam: repl::Families::new(&r),
            repl: repl::Links::default(),
            memory_budget: gauge_vec(
                &r,
                "redis_observer_memory_budget_bytes",
                "How --memory-limit splits: limit, fixed, ring, log_queue, top, margin, flows.",
                &["part"],
            ),
            flows_memory: gauge_vec(
                &r,
                "redis_observer_memory_bytes",
                "Memory held now, counted against its budget (flows: connections' state, buffers and commands awaiting replies).",
                &["part"],
            )
            .with_label_values(&["flows"]),
            client_label: ClientLabel::default(),
            dirty_clients: Vec::new(),
            servers: Servers {
                candidates: HashMap::new(),
                closes: 0,
                slots: Vec::new(),
                addrs: Vec::new(),
                index: HashMap::new(),
                other: None,
                last: None,
                max: max_servers,
            },
            fam,
            registry: r,
        }
    }

    /// The registry, for the HTTP endpoint (clones share the metrics).
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// What names a client in the per-client series (`--client-label`).
    pub fn set_client_label(&mut self, mode: ClientLabel) {
        self.client_label = mode;
    }

    /// Counters for the command log writer.
    pub fn log_counters(&self) -> LogCounters {
        self.log.clone()
    }

    /// Counts one command: `redis_commands_total`, its latency when known, its error class,
    /// and its bytes.
    pub fn record_command(&mut self, rec: &CommandRecord<'_>) {
        if let Some(pe) = rec.protocol_error {
            self.record_refused(rec, pe);
            return;
        }
        // An `ok` or `error` status means the server answered in RESP: it may take a slot.
        let proven = matches!(rec.status, Status::Ok | Status::Error);
        let si = self.server_slot(rec.conn.server, proven);
        let Some(slot) = self.servers.slots.get_mut(si) else {
            unreachable_slot()
        };
        let fam = &self.fam;
        let st = status_index(rec.status);
        if self.client_label != ClientLabel::None {
            let ident = &rec.conn.ident;
            let comm = rec.conn.client_proc.as_deref().map(|p| p.comm.as_bytes());
            let ci = slot.clients.slot(
                &fam.client_duration,
                &slot.label,
                self.client_label,
                ident,
                comm,
            );
            if let Some(h) = slot.clients.slots.get_mut(ci) {
                let status = rec.status.as_str();
                h.count(
                    &fam.client_commands,
                    &slot.label,
                    st,
                    status,
                    // Blocking commands wait for data, not for the server: kept out, as in
                    // redis_command_duration_seconds.
                    rec.latency_ns.filter(|_| !rec.blocking),
                );
                if !h.dirty.replace(true) {
                    self.dirty_clients.push((si, ci));
                }
            }
        }
        let (label, h) = slot.cmd(fam, rec.command);
        let name = commands::name(table_id(rec.command));
        if let (Some(c), Some(n)) = (h.status.get_mut(st), h.status_local.get(st)) {
            c.get_or_insert_with(|| {
                fam.commands
                    .with_label_values(&[label, name, rec.status.as_str()])
            });
            add(n, 1);
        }
        add(&h.req_bytes_local, rec.req_bytes);
        add(&h.resp_bytes_local, rec.resp_bytes);
        if let Some(ns) = rec.latency_ns {
            // Precision loss past 2^53 ns (104 days) is irrelevant here.
            let secs = ns as f64 * 1e-9;
            if rec.blocking {
                h.blocking_duration
                    .get_or_insert_with(|| {
                        fam.blocking_duration
                            .with_label_values(&[label, name])
                            .local()
                    })
                    .observe(secs);
            } else {
                h.duration.observe(secs);
            }
        }
        if !h.dirty.replace(true) {
            self.dirty.push((si, table_id(rec.command)));
        }
        if rec.status == Status::Error {
            let text = match rec.reply {
                // A redacted error keeps its class word, which is all the label needs.
                Some(r) if r.kind == Kind::Error => r.text,
                _ => &[],
            };
            let class = error_class(text);
            if let Some(c) = h.errors.get_mut(class) {
                c.get_or_insert_with(|| {
                    let err = ERROR_CLASSES.get(class).copied().unwrap_or(errors::OTHER);
                    fam.errors.with_label_values(&[label, name, err])
                })
                .inc();
            }
        }
    }

    /// A request the server refused: `redis_observer_protocol_errors_total{reason}` and its
    /// bytes; no command counter moves (INFO commandstats does not count it either).
    #[cold]
    fn record_refused(&mut self, rec: &CommandRecord<'_>, pe: ProtocolError) {
        let i = ProtocolError::ALL
            .iter()
            .position(|e| std::mem::discriminant(e) == std::mem::discriminant(&pe));
        if let Some(c) = i.and_then(|i| self.protocol_errors.get(i)) {
            c.inc();
        }
        // The refusal is the server's own RESP error: it may take a slot.
        let si = self.server_slot(rec.conn.server, true);
        let Some(slot) = self.servers.slots.get_mut(si) else {
            unreachable_slot()
        };
        slot.req_bytes.inc_by(rec.req_bytes);
        slot.resp_bytes.inc_by(rec.resp_bytes);
    }

    /// Counts a push or pub/sub message of `wire_len` bytes delivered to a client of `server`.
    pub fn record_push(&mut self, server: SocketAddr, wire_len: u64) {
        let si = self.server_slot(server, true);
        let Some(slot) = self.servers.slots.get_mut(si) else {
            unreachable_slot()
        };
        slot.pushes.inc();
        slot.resp_bytes.inc_by(wire_len);
    }

    /// Counts a [`Notice`].
    pub fn record_notice(&mut self, notice: &Notice) {
        notice.count(&self.notices);
    }

    /// Counts a replication link's progress (`redis_replication_*`).
    pub fn record_replication(&mut self, server: SocketAddr, replica: SocketAddr, ev: ReplEvent) {
        // A replication link is RESP the server answered.
        let si = self.server_slot(server, true);
        let Some(slot) = self.servers.slots.get(si) else {
            unreachable_slot()
        };
        self.repl.record(&self.repl_fam, &slot.label, replica, ev);
    }

    /// A connection to `server` started being observed.
    pub fn connection_opened(&mut self, server: SocketAddr) {
        self.servers.connection(server, 1);
    }

    /// A connection opened with [`Metrics::connection_opened`] ended (or was evicted).
    pub fn connection_closed(&mut self, server: SocketAddr) {
        self.servers.connection(server, -1);
    }

    /// The slot counting `server`: its own; a new one if it answered in RESP (`proven`) and
    /// there is room or an idle slot to reclaim; else `other`.
    fn server_slot(&mut self, server: SocketAddr, proven: bool) -> usize {
        if let Some(i) = self.servers.lookup(server) {
            return i;
        }
        if !proven {
            return self.servers.other_slot(&self.fam);
        }
        if self.servers.real_slots() < self.servers.max {
            return self.servers.install(&self.fam, server, None);
        }
        if let Some(victim) = self.servers.idlest_free() {
            // Pending local counts go to the old label before its series are removed.
            self.flush_local();
            if let Some(old) = self.servers.slots.get(victim) {
                old.remove_series(&self.fam);
            }
            return self.servers.install(&self.fam, server, Some(victim));
        }
        self.servers
            .overflow(&self.fam, &self.servers_overflow, server)
    }

    /// Connection state dropped before the connection closed (idle, table full...). `reason`
    /// is a label value: keep it to a few literals.
    /// Publishes how the memory limit splits (once, at start).
    pub fn set_memory_budget(&mut self, b: &crate::budget::Budget) {
        for (part, bytes) in b.parts() {
            self.memory_budget
                .with_label_values(&[part])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// What the connections hold now (periodically).
    pub fn set_flows_memory(&mut self, bytes: usize) {
        self.flows_memory
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn flow_evicted(&mut self, reason: &'static str) {
        if let Some((_, c)) = self.flows_evicted_cache.iter().find(|(r, _)| *r == reason) {
            c.inc();
            return;
        }
        let c = self.flows_evicted.with_label_values(&[reason]);
        c.inc();
        self.flows_evicted_cache.push((reason, c));
    }

    /// Adds to `redis_observer_events_lost_total{reason}`.
    pub fn add_events_lost(&mut self, reason: LostReason, n: u64) {
        if let Some(c) = LostReason::ALL
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.events_lost.get(i))
        {
            c.inc_by(n);
        }
    }

    /// Adds to `redis_observer_bytes_missed_total{reason}` (stream bytes never seen, counted
    /// per connection by the pipeline).
    pub fn add_bytes_missed(&mut self, reason: MissReason, n: u64) {
        if let Some(c) = MISS_REASONS
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.bytes_missed.get(i))
        {
            c.inc_by(n);
        }
    }

    /// Counts a connection-level event from the pipeline.
    pub fn record_flow(&mut self, server: SocketAddr, event: FlowEvent) {
        match event {
            FlowEvent::Opened => self.connection_opened(server),
            FlowEvent::Closed => self.connection_closed(server),
            FlowEvent::BytesMissed { reason, n } => self.add_bytes_missed(reason, n),
            FlowEvent::Evicted { reason } => self.flow_evicted(reason.as_str()),
            FlowEvent::Refused => self.flows_refused.inc(),
        }
    }

    /// Takes the kernel's running totals; call it as often as convenient.
    ///
    /// The kernel's counters are running totals summed over CPUs. `EVENTS_LOST`, `UNPARSED` and
    /// `LOAD_FAILED` go to `redis_observer_events_lost_total{reason}`; `BYTES_LOST` to
    /// `redis_observer_ring_bytes_lost_total`. `BYTES_NOT_CAPTURED` is not exported: the same
    /// bytes reach the streams and are counted there, per connection, as
    /// `redis_observer_bytes_missed_total{reason="not_captured"}` (counting both would count
    /// twice).
    pub fn set_kernel_counters(&mut self, k: &Counters) {
        self.packets.set(k.get(counter::PACKETS));
        self.segments.set(k.get(counter::SEGMENTS));
        self.bytes_captured.set(k.get(counter::BYTES_CAPTURED));
        self.wakeups.set(k.get(counter::WAKEUPS));
        self.k_events_lost.set(k.get(counter::EVENTS_LOST));
        self.k_unparsed.set(k.get(counter::UNPARSED));
        self.k_load_failed.set(k.get(counter::LOAD_FAILED));
        self.k_bytes_lost.set(k.get(counter::BYTES_LOST));
    }

    /// Sets `redis_observer_packets_total` from a running total (replay counts its own packets).
    pub fn set_packets_total(&mut self, total: u64) {
        self.packets.set(total);
    }

    /// Moves the command counts, bytes and latencies gathered since the last call into the
    /// registry. The daemon calls it after every drain; the HTTP endpoint shares the registry,
    /// not `Metrics`.
    pub fn flush_local(&mut self) {
        self.flush_dirty(true);
        self.dirty.clear();
        self.dirty_clients.clear();
    }

    /// Adds every dirty pair's local counts to the registry, leaving them zero; with `done`,
    /// also marks the pairs clean (the caller then empties the list).
    fn flush_dirty(&self, done: bool) {
        for &(si, id) in &self.dirty {
            let Some((slot, h)) = self.servers.handles(si, id) else {
                continue;
            };
            if done {
                h.dirty.set(false);
            }
            h.duration.flush();
            if let Some(b) = &h.blocking_duration {
                b.flush();
            }
            for (c, n) in h.status.iter().zip(&h.status_local) {
                if let Some(c) = c {
                    c.inc_by(n.take());
                }
            }
            slot.req_bytes.inc_by(h.req_bytes_local.take());
            slot.resp_bytes.inc_by(h.resp_bytes_local.take());
        }
        for &(si, ci) in &self.dirty_clients {
            let Some(h) = self
                .servers
                .slots
                .get(si)
                .and_then(|s| s.clients.slots.get(ci))
            else {
                continue;
            };
            if done {
                h.dirty.set(false);
            }
            h.flush();
        }
    }

    /// Everything, in the Prometheus text format (local counts included).
    pub fn encode_text(&self) -> String {
        // The list stays: a later `flush_local` finds those pairs empty, which is fine.
        self.flush_dirty(false);
        encode_registry(&self.registry)
    }
}

/// `registry`'s metrics in the Prometheus text format.
pub fn encode_registry(registry: &Registry) -> String {
    let mut s = String::new();
    // Encoding our own well-formed families into a String cannot fail.
    let _ = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut s);
    s
}

fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

/// `id` if the table holds it, else `UNKNOWN`.
fn table_id(id: CommandId) -> CommandId {
    if usize::from(id.0) < commands::count() {
        id
    } else {
        commands::UNKNOWN
    }
}

/// Slot of a status in [`CmdHandles::status`]: its discriminant (`Status` is `repr(u8)`).
/// Statuses by [`status_index`], for removing a reclaimed slot's series.
const STATUSES: [Status; 5] = [
    Status::Ok,
    Status::Error,
    Status::Unanswered,
    Status::NoReply,
    Status::Aborted,
];
const _: () = assert!(Status::Aborted as usize == 4 && Status::Ok as usize == 0);

fn status_index(s: Status) -> usize {
    s as usize
}

#[cfg(test)]
mod tests;

/// The metrics as an output: every record is counted.
impl crate::record::Sink for Metrics {
    fn flow(&mut self, conn: &crate::conn::ConnMeta, event: FlowEvent) {
        self.record_flow(conn.server, event);
    }

    fn command(&mut self, rec: &CommandRecord<'_>) {
        self.record_command(rec);
    }

    fn push(&mut self, conn: &crate::conn::ConnMeta, _ts_ns: u64, reply: &crate::resp::Reply) {
        self.record_push(conn.server, reply.wire_len);
    }

    fn notice(&mut self, _conn: &crate::conn::ConnMeta, _ts_ns: u64, notice: Notice) {
        self.record_notice(&notice);
    }

    fn kernel_counters(&mut self, totals: &Counters) {
        self.set_kernel_counters(totals);
    }

    fn replication(
        &mut self,
        conn: &crate::conn::ConnMeta,
        replica: std::net::SocketAddr,
        event: ReplEvent,
    ) {
        self.record_replication(conn.server, replica, event);
    }

    fn flush(&mut self) {
        self.flush_local();
    }
}
