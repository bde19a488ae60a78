//! Connections by 4-tuple: which side is the server, per-connection state with caps on count and
//! memory, eviction of the longest-idle flows, and the TCP open/close lifecycle.
//!
//! The map uses `ahash` with a per-process random seed: the 4-tuples come from the network, and a
//! fixed-seed hash (FxHash) would let a sender who can choose ports pile flows into one bucket.
//!
//! Idle order is kept in a min-heap of `(last activity, flow id, key)` that is cleaned lazily:
//! touching a flow only stores its new time in the map entry (no heap work per packet); when an
//! item reaches the top with an older time than its entry's, it is pushed back with the current
//! one. Items of removed flows are dropped when they surface, and the heap is rebuilt in place when
//! they outnumber live flows, so every operation is O(log n) amortised and memory stays O(flows).

use std::cmp::Reverse;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BinaryHeap, HashMap};
use std::mem::size_of;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};

use redis_ebpf_common::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

use crate::record::Dir;

/// Ports the observer watches (the Redis servers' ports).
#[derive(Clone)]
pub struct PortSet {
    /// One bit per port: O(1) lookups for any number of ports, 8 KiB.
    bits: Box<[u64]>,
}

impl PortSet {
    pub fn new() -> Self {
        PortSet {
            bits: vec![0u64; 1 << 10].into_boxed_slice(),
        }
    }

    pub fn insert(&mut self, port: u16) {
        if let Some(w) = self.bits.get_mut(usize::from(port >> 6)) {
            *w |= 1 << (port & 63);
        }
    }

    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.bits
            .get(usize::from(port >> 6))
            .is_some_and(|w| w & (1 << (port & 63)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }
}

impl Default for PortSet {
    fn default() -> Self {
        PortSet::new()
    }
}

impl FromIterator<u16> for PortSet {
    fn from_iter<I: IntoIterator<Item = u16>>(iter: I) -> Self {
        let mut set = PortSet::new();
        for p in iter {
            set.insert(p);
        }
        set
    }
}

impl std::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ports = (0..=u16::MAX).filter(|&p| self.contains(p));
        f.debug_set().entries(ports).finish()
    }
}

/// A connection, client side first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// Hashed as three words (both addresses, both ports) instead of field by field: the key is
/// hashed for every segment, and the derived impl fed the hasher a dozen small pieces. Equal keys
/// still hash equally (IPv6 flow info and scope are left out of the hash, not of `Eq`).
impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        fn ip(a: &SocketAddr) -> u128 {
            match a {
                SocketAddr::V4(v) => u128::from(u32::from(*v.ip())),
                SocketAddr::V6(v) => u128::from(*v.ip()),
            }
        }
        h.write_u128(ip(&self.client));
        h.write_u128(ip(&self.server));
        h.write_u32(u32::from(self.client.port()) << 16 | u32::from(self.server.port()));
    }
}

/// The connection a segment `src` → `dst` belongs to, and its direction.
///
/// The server is the side whose port is watched. If both or neither are, the side with the lower
/// port is the server (the ephemeral port is almost always the higher); on equal ports, the lower
/// address. The rule only looks at the pair, so both directions of a connection agree.
#[inline]
pub fn orient(ports: &PortSet, src: SocketAddr, dst: SocketAddr) -> (FlowKey, Dir) {
    let src_is_server = match (ports.contains(src.port()), ports.contains(dst.port())) {
        (true, false) => true,
        (false, true) => false,
        _ => (src.port(), src) < (dst.port(), dst),
    };
    if src_is_server {
        (
            FlowKey {
                client: dst,
                server: src,
            },
            Dir::Reply,
        )
    } else {
        (
            FlowKey {
                client: src,
                server: dst,
            },
            Dir::Request,
        )
    }
}

/// Per-connection state kept in a [`FlowTable`].
pub trait FlowState {
    /// Heap bytes this state holds (buffers, queues), counted against the table's memory cap.
    /// Called each time a [`FlowRef`] is dropped: keep it O(1).
    fn mem(&self) -> usize;
}

/// Caps of a [`FlowTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowLimits {
    /// Most connections tracked at once.
    pub max_flows: usize,
    /// Most memory all connections may hold: their [`FlowState::mem`] plus the table's per-flow
    /// overhead.
    pub max_mem_bytes: usize,
    /// To make room, only flows idle at least this long are evicted; if none is, the new flow is
    /// refused. Protects live connections from a flood of new ones. 0: plain LRU.
    pub min_idle_to_evict_ns: u64,
}

impl Default for FlowLimits {
    fn default() -> Self {
        FlowLimits {
            max_flows: 100_000,
            max_mem_bytes: 512 << 20,
            min_idle_to_evict_ns: 1_000_000_000,
        }
    }
}

/// Counters of a [`FlowTable`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub flows_created: u64,
    /// Evicted to make room (count or memory cap).
    pub flows_evicted_cap: u64,
    /// Removed by [`FlowTable::expire`].
    pub flows_expired_idle: u64,
    /// Not created: table full and no flow idle enough to evict.
    pub flows_refused: u64,
    /// Removed by [`FlowTable::remove`] (connection closed).
    pub flows_closed: u64,
}

struct Entry<T> {
    state: T,
    /// Latest activity, ns (never moves backwards).
    last_ns: u64,
    /// Unique per flow ever created: tells this flow's heap item from a previous flow's with the
    /// same key.
    id: u64,
    /// `state.mem()` when last measured, included in the table's total.
    mem: usize,
}

/// `(last activity when pushed, flow id, key)`, smallest first.
type HeapItem = Reverse<(u64, u64, FlowKey)>;

/// Connections and their state `T`. See the module docs.
pub struct FlowTable<T: FlowState> {
    map: HashMap<FlowKey, Entry<T>, ahash::RandomState>,
    heap: BinaryHeap<HeapItem>,
    ports: PortSet,
    limits: FlowLimits,
    /// Sum over flows of `Entry::mem + PER_FLOW`.
    mem: usize,
    next_id: u64,
    stats: FlowStats,
}

/// A flow's state, borrowed from the table. Dropping it re-measures the state's memory.
pub struct FlowRef<'a, T: FlowState> {
    key: FlowKey,
    dir: Dir,
    created: bool,
    entry: &'a mut Entry<T>,
    total: &'a mut usize,
}

impl<T: FlowState> FlowRef<'_, T> {
    pub fn key(&self) -> FlowKey {
        self.key
    }

    /// Direction of the segment this lookup was for.
    pub fn dir(&self) -> Dir {
        self.dir
    }

    /// The flow was created by this lookup.
    pub fn is_new(&self) -> bool {
        self.created
    }
}

impl<T: FlowState> Deref for FlowRef<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.entry.state
    }
}

impl<T: FlowState> DerefMut for FlowRef<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.entry.state
    }
}

impl<T: FlowState> Drop for FlowRef<'_, T> {
    fn drop(&mut self) {
        let now = self.entry.state.mem();
        *self.total = self
            .total
            .saturating_sub(self.entry.mem)
            .saturating_add(now);
        self.entry.mem = now;
    }
}

impl<T: FlowState> FlowTable<T> {
    /// Table overhead per flow beyond its state's own `mem()`: map slot, heap item.
    const PER_FLOW: usize =
        size_of::<FlowKey>() + size_of::<Entry<T>>() + size_of::<HeapItem>() + 8;

    pub fn new(ports: PortSet, limits: FlowLimits) -> Self {
        FlowTable {
            map: HashMap::with_hasher(ahash::RandomState::new()),
            heap: BinaryHeap::new(),
            ports,
            limits,
            mem: 0,
            next_id: 0,
            stats: FlowStats::default(),
        }
    }

    pub fn ports(&self) -> &PortSet {
        &self.ports
    }

    /// The connection of a segment `src` → `dst`, and its direction.
    pub fn orient(&self, src: SocketAddr, dst: SocketAddr) -> (FlowKey, Dir) {
        orient(&self.ports, src, dst)
    }

    /// The existing flow of a segment, marked active at `now_ns`.
    pub fn get(&mut self, src: SocketAddr, dst: SocketAddr, now_ns: u64) -> Option<FlowRef<'_, T>> {
        let (key, dir) = orient(&self.ports, src, dst);
        let entry = self.map.get_mut(&key)?;
        entry.last_ns = entry.last_ns.max(now_ns);
        Some(FlowRef {
            key,
            dir,
            created: false,
            entry,
            total: &mut self.mem,
        })
    }

    /// The flow of a segment, created with `make` if new, marked active at `now_ns`. When the
    /// table is full, the longest-idle flows are evicted first (handed to `on_evict`); if none
    /// has been idle for `min_idle_to_evict_ns`, the new flow is refused (`None`, counted).
    ///
    /// Create flows for segments that open or carry data, not for bare ACKs: a closed flow's
    /// last ACK would otherwise open a new one.
    pub fn get_or_insert_with(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        now_ns: u64,
        make: impl FnOnce(&FlowKey, Dir) -> T,
        mut on_evict: impl FnMut(FlowKey, T),
    ) -> Option<FlowRef<'_, T>> {
        let (key, dir) = orient(&self.ports, src, dst);
        // Only a full table pays for the extra lookup; the common path hashes once.
        if self.is_full() && !self.map.contains_key(&key) && !self.make_room(now_ns, &mut on_evict)
        {
            self.stats.flows_refused += 1;
            return None;
        }
        let (entry, created) = match self.map.entry(key) {
            MapEntry::Occupied(o) => {
                let e = o.into_mut();
                e.last_ns = e.last_ns.max(now_ns);
                (e, false)
            }
            MapEntry::Vacant(v) => {
                let state = make(&key, dir);
                let mem = state.mem();
                let id = self.next_id;
                self.next_id += 1;
                self.heap.push(Reverse((now_ns, id, key)));
                self.mem = self.mem.saturating_add(mem + Self::PER_FLOW);
                self.stats.flows_created += 1;
                let e = v.insert(Entry {
                    state,
                    last_ns: now_ns,
                    id,
                    mem,
                });
                (e, true)
            }
        };
        Some(FlowRef {
            key,
            dir,
            created,
            entry,
            total: &mut self.mem,
        })
    }

    /// Removes a flow (its connection closed), returning its state.
    pub fn remove(&mut self, key: &FlowKey) -> Option<T> {
        let e = self.map.remove(key)?;
        self.mem = self.mem.saturating_sub(e.mem + Self::PER_FLOW);
        self.stats.flows_closed += 1;
        self.maybe_rebuild_heap();
        Some(e.state)
    }

    /// Removes flows idle for `idle_timeout_ns` or more, oldest first, handing each to
    /// `on_evict`; then evicts down to the caps (flows grow after they are created). Returns how
    /// many idle flows were removed. Call it periodically (e.g. every second).
    pub fn expire(
        &mut self,
        now_ns: u64,
        idle_timeout_ns: u64,
        mut on_evict: impl FnMut(FlowKey, T),
    ) -> usize {
        let mut n = 0;
        while let Some((key, state)) =
            self.pop_oldest(|last| now_ns.saturating_sub(last) >= idle_timeout_ns)
        {
            self.stats.flows_expired_idle += 1;
            n += 1;
            on_evict(key, state);
        }
        self.enforce_limits(now_ns, &mut on_evict);
        n
    }

    /// Evicts longest-idle flows (idle at least `min_idle_to_evict_ns`) while over a cap.
    pub fn enforce_limits(&mut self, now_ns: u64, mut on_evict: impl FnMut(FlowKey, T)) {
        while self.over_limits() && self.evict_one(now_ns, &mut on_evict) {}
    }

    /// Removes every flow (shutdown), handing each to `on_evict`.
    pub fn drain(&mut self, mut on_evict: impl FnMut(FlowKey, T)) {
        self.heap.clear();
        self.mem = 0;
        for (key, e) in self.map.drain() {
            on_evict(key, e.state);
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &T)> {
        self.map.iter().map(|(k, e)| (k, &e.state))
    }

    /// Visits every flow mutably (periodic work such as `Stream::expire_held`), re-measuring
    /// each one's memory. Does not count as activity.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&FlowKey, &mut T)) {
        for (k, e) in &mut self.map {
            f(k, &mut e.state);
            let now = e.state.mem();
            self.mem = self.mem.saturating_sub(e.mem).saturating_add(now);
            e.mem = now;
        }
    }

    /// Memory counted against the cap: states plus per-flow overhead.
    pub fn flows_mem(&self) -> usize {
        self.mem
    }

    /// All memory: `flows_mem` plus spare capacity of the map and heap.
    pub fn mem(&self) -> usize {
        let slot = size_of::<FlowKey>() + size_of::<Entry<T>>() + 1;
        let live = self.map.len().saturating_mul(Self::PER_FLOW);
        self.mem
            .saturating_sub(live)
            .saturating_add(self.map.capacity().saturating_mul(slot))
            .saturating_add(self.heap.capacity().saturating_mul(size_of::<HeapItem>()))
            .saturating_add(size_of::<Self>())
    }

    pub fn stats(&self) -> &FlowStats {
        &self.stats
    }

    pub fn limits(&self) -> &FlowLimits {
        &self.limits
    }

    fn is_full(&self) -> bool {
        self.map.len() >= self.limits.max_flows || self.mem >= self.limits.max_mem_bytes
    }

    fn over_limits(&self) -> bool {
        self.map.len() > self.limits.max_flows || self.mem > self.limits.max_mem_bytes
    }

    /// Evicts until one more flow fits; false if it cannot.
    fn make_room(&mut self, now_ns: u64, on_evict: &mut impl FnMut(FlowKey, T)) -> bool {
        while self.is_full() {
            if !self.evict_one(now_ns, on_evict) {
                return false;
            }
        }
        true
    }

    fn evict_one(&mut self, now_ns: u64, on_evict: &mut impl FnMut(FlowKey, T)) -> bool {
        let min_idle = self.limits.min_idle_to_evict_ns;
        match self.pop_oldest(|last| now_ns.saturating_sub(last) >= min_idle) {
            Some((key, state)) => {
                self.stats.flows_evicted_cap += 1;
                on_evict(key, state);
                true
            }
            None => false,
        }
    }

    /// Removes and returns the flow with the oldest activity if `evictable(last_ns)` holds for
    /// it. Cleans stale heap items on the way.
    fn pop_oldest(&mut self, evictable: impl Fn(u64) -> bool) -> Option<(FlowKey, T)> {
        loop {
            let &Reverse((ts, id, key)) = self.heap.peek()?;
            let last = match self.map.get(&key) {
                Some(e) if e.id == id => e.last_ns,
                // A removed flow's item.
                _ => {
                    self.heap.pop();
                    continue;
                }
            };
            if last > ts {
                // Active since the item was pushed: requeue at its real time.
                self.heap.pop();
                self.heap.push(Reverse((last, id, key)));
                continue;
            }
            // The top item is current, so this is the least recently active flow.
            if !evictable(last) {
                return None;
            }
            self.heap.pop();
            let e = self.map.remove(&key)?;
            self.mem = self.mem.saturating_sub(e.mem + Self::PER_FLOW);
            return Some((key, e.state));
        }
    }

    /// Drops heap items of removed flows once they outnumber live flows: in place, O(n), at most
    /// once per n removals.
    fn maybe_rebuild_heap(&mut self) {
        if self.heap.len() <= 2 * self.map.len() + 1024 {
            return;
        }
        let mut items = std::mem::take(&mut self.heap).into_vec();
        items.retain(|Reverse((_, id, key))| self.map.get(key).is_some_and(|e| e.id == *id));
        self.heap = BinaryHeap::from(items);
    }
}

impl<T: FlowState> std::fmt::Debug for FlowTable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable")
            .field("flows", &self.map.len())
            .field("mem", &self.mem)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Both sides sent FIN.
    Fin,
    /// Either side sent RST.
    Rst,
}

/// What a segment's flags did to a connection (see [`Lifecycle::observe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Nothing,
    /// The connection is over: flush both streams and remove the flow. Reported once.
    Closed(CloseReason),
    /// A client SYN opened a new connection on this 4-tuple while the old one was never seen to
    /// close: end the old one (flush, count as closed), reset its streams, then handle this SYN.
    Reopened,
}

/// TCP open/close tracking of one connection, from the flags of its segments.
///
/// Closed when both sides have sent FIN, or either RST. It does not wait for data still in
/// flight before a FIN (reordered): on `lo` there is none, elsewhere it is rare, and closing
/// promptly matters more for the command log; the streams' `flush` reports anything held.
///
/// With a SYN, the pipeline sets the stream start: `set_isn(seq + 1)` on the client stream for
/// a SYN, on the server stream for a SYN-ACK.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifecycle {
    bits: u8,
    client_isn: u32,
}

const SEEN: u8 = 1;
const SYN_CLIENT: u8 = 2;
const SYN_SERVER: u8 = 4;
const FIN_CLIENT: u8 = 8;
const FIN_SERVER: u8 = 16;
const CLOSED: u8 = 32;

impl Lifecycle {
    pub fn new() -> Self {
        Lifecycle::default()
    }

    /// Updates the state with one segment's flags (`dir` from the flow lookup, `seq` the
    /// segment's sequence number). Call it after the segment's payload went to the stream: a FIN
    /// may carry the last bytes.
    pub fn observe(&mut self, dir: Dir, flags: u8, seq: u32) -> Transition {
        let syn = flags & TCP_SYN != 0;
        let ack = flags & TCP_ACK != 0;
        if dir == Dir::Request && syn && !ack {
            // A second SYN is a retransmission if it has the same ISN; otherwise (or if the
            // connection was picked up mid-stream) the client reused the 4-tuple.
            let seen_before = self.bits & SEEN != 0;
            let same_syn = self.bits & SYN_CLIENT != 0 && self.client_isn == seq;
            let reopened = seen_before && !same_syn;
            if reopened || !seen_before {
                *self = Lifecycle {
                    bits: SEEN | SYN_CLIENT,
                    client_isn: seq,
                };
            }
            return if reopened {
                Transition::Reopened
            } else {
                Transition::Nothing
            };
        }
        self.bits |= SEEN;
        if self.bits & CLOSED != 0 {
            return Transition::Nothing;
        }
        if syn && ack && dir == Dir::Reply {
            self.bits |= SYN_SERVER;
        }
        if flags & TCP_RST != 0 {
            self.bits |= CLOSED;
            return Transition::Closed(CloseReason::Rst);
        }
        if flags & TCP_FIN != 0 {
            self.bits |= match dir {
                Dir::Request => FIN_CLIENT,
                Dir::Reply => FIN_SERVER,
            };
            if self.bits & (FIN_CLIENT | FIN_SERVER) == FIN_CLIENT | FIN_SERVER {
                self.bits |= CLOSED;
                return Transition::Closed(CloseReason::Fin);
            }
        }
        Transition::Nothing
    }

    pub fn is_closed(&self) -> bool {
        self.bits & CLOSED != 0
    }

    /// The client's SYN was seen: the request stream starts at a frame boundary.
    pub fn saw_client_syn(&self) -> bool {
        self.bits & SYN_CLIENT != 0
    }

    /// The server's SYN-ACK was seen: the reply stream starts at a frame boundary.
    pub fn saw_server_syn(&self) -> bool {
        self.bits & SYN_SERVER != 0
    }

    /// `dir`'s side has sent FIN.
    pub fn fin_seen(&self, dir: Dir) -> bool {
        let bit = match dir {
            Dir::Request => FIN_CLIENT,
            Dir::Reply => FIN_SERVER,
        };
        self.bits & bit != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    /// A state whose memory the test sets.
    #[derive(Debug, Default)]
    struct S {
        mem: usize,
        tag: u32,
    }

    impl FlowState for S {
        fn mem(&self) -> usize {
            self.mem
        }
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn client(n: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 40000 + n))
    }

    const SERVER: &str = "10.0.0.2:6379";

    fn table(max_flows: usize, min_idle: u64) -> FlowTable<S> {
        FlowTable::new(
            [6379].into_iter().collect(),
            FlowLimits {
                max_flows,
                max_mem_bytes: usize::MAX,
                min_idle_to_evict_ns: min_idle,
            },
        )
    }

    /// Inserts (or touches) client `n`'s flow at `now`; returns what was evicted.
    fn touch(t: &mut FlowTable<S>, n: u16, now: u64) -> (bool, Vec<u16>) {
        let mut ev = Vec::new();
        let ok = t
            .get_or_insert_with(
                client(n),
                a(SERVER),
                now,
                |_, _| S {
                    mem: 0,
                    tag: u32::from(n),
                },
                |k, _| ev.push(k.client.port() - 40000),
            )
            .is_some();
        (ok, ev)
    }

    #[rstest]
    #[case::to_server("10.0.0.1:40000", "10.0.0.2:6379", Dir::Request)]
    #[case::from_server("10.0.0.2:6379", "10.0.0.1:40000", Dir::Reply)]
    #[case::neither_lower_port_is_server("10.0.0.1:40000", "10.0.0.2:80", Dir::Request)]
    #[case::neither_reverse("10.0.0.2:80", "10.0.0.1:40000", Dir::Reply)]
    #[case::both_lower_port_is_server("10.0.0.1:6380", "10.0.0.2:6379", Dir::Request)]
    #[case::equal_ports_lower_addr_is_server("10.0.0.9:6379", "10.0.0.2:6379", Dir::Request)]
    #[case::equal_ports_reverse("10.0.0.2:6379", "10.0.0.9:6379", Dir::Reply)]
    #[case::v6("[::1]:6379", "[::1]:51000", Dir::Reply)]
    fn orientation(#[case] src: &str, #[case] dst: &str, #[case] dir: Dir) {
        let ports: PortSet = [6379, 6380].into_iter().collect();
        let (key, d) = orient(&ports, a(src), a(dst));
        assert_eq!(d, dir);
        // The other direction finds the same key.
        let (key2, d2) = orient(&ports, a(dst), a(src));
        assert_eq!(key, key2);
        assert_ne!(d, d2);
        let (client, server) = match dir {
            Dir::Request => (a(src), a(dst)),
            Dir::Reply => (a(dst), a(src)),
        };
        assert_eq!(key, FlowKey { client, server });
    }

    #[test]
    fn port_set() {
        let s: PortSet = [0, 63, 64, 6379, 65535].into_iter().collect();
        for p in [0, 63, 64, 6379, 65535] {
            assert!(s.contains(p));
        }
        for p in [1, 62, 65, 6378, 65534] {
            assert!(!s.contains(p));
        }
        assert!(PortSet::new().is_empty());
        assert_eq!(format!("{s:?}"), "{0, 63, 64, 6379, 65535}");
    }

    #[test]
    fn lookup_returns_direction_and_creation() {
        let mut t = table(10, 0);
        let r = t
            .get_or_insert_with(
                client(1),
                a(SERVER),
                5,
                |_, dir| {
                    assert_eq!(dir, Dir::Request);
                    S::default()
                },
                |_, _| {},
            )
            .unwrap();
        assert!(r.is_new());
        assert_eq!(r.dir(), Dir::Request);
        drop(r);
        let r = t.get(a(SERVER), client(1), 6).unwrap();
        assert!(!r.is_new());
        assert_eq!(r.dir(), Dir::Reply);
        assert_eq!(r.key().client, client(1));
        drop(r);
        assert!(t.get(client(2), a(SERVER), 7).is_none());
        assert_eq!(t.stats().flows_created, 1);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn cap_evicts_least_recently_active() {
        let mut t = table(3, 0);
        assert_eq!(touch(&mut t, 1, 1), (true, vec![]));
        assert_eq!(touch(&mut t, 2, 2), (true, vec![]));
        assert_eq!(touch(&mut t, 3, 3), (true, vec![]));
        // Flow 1 becomes the most recent; 2 is now the oldest.
        assert_eq!(touch(&mut t, 1, 4), (true, vec![]));
        assert_eq!(touch(&mut t, 4, 5), (true, vec![2]));
        assert_eq!(touch(&mut t, 5, 6), (true, vec![3]));
        assert_eq!(touch(&mut t, 6, 7), (true, vec![1]));
        assert_eq!(t.len(), 3);
        assert_eq!(t.stats().flows_evicted_cap, 3);
        assert_eq!(t.stats().flows_created, 6);
    }

    #[test]
    fn cap_refuses_when_nothing_is_idle_enough() {
        let mut t = table(2, 10);
        touch(&mut t, 1, 1);
        touch(&mut t, 2, 2);
        assert_eq!(touch(&mut t, 3, 5), (false, vec![]));
        assert_eq!(t.stats().flows_refused, 1);
        // Existing flows are still found when full.
        assert_eq!(touch(&mut t, 2, 6), (true, vec![]));
        // Flow 1 idle 10 ns: evictable.
        assert_eq!(touch(&mut t, 3, 11), (true, vec![1]));
        let tags: Vec<u32> = {
            let mut v: Vec<u32> = t.iter().map(|(_, s)| s.tag).collect();
            v.sort();
            v
        };
        assert_eq!(tags, vec![2, 3]);
    }

    #[test]
    fn zero_cap_refuses_everything() {
        let mut t = table(0, 0);
        assert_eq!(touch(&mut t, 1, 1), (false, vec![]));
        assert_eq!(t.stats().flows_refused, 1);
    }

    #[test]
    fn memory_cap_counts_state_growth() {
        let per = FlowTable::<S>::PER_FLOW;
        let mut t: FlowTable<S> = FlowTable::new(
            [6379].into_iter().collect(),
            FlowLimits {
                max_flows: 100,
                max_mem_bytes: 2 * per + 1000,
                min_idle_to_evict_ns: 0,
            },
        );
        touch(&mut t, 1, 1);
        touch(&mut t, 2, 2);
        assert_eq!(t.flows_mem(), 2 * per);
        // Flow 2 grows; the table sees it when the reference is dropped.
        t.get(client(2), a(SERVER), 3).unwrap().mem = 1000;
        assert_eq!(t.flows_mem(), 2 * per + 1000);
        // Full by memory: the oldest (1) makes room.
        assert_eq!(touch(&mut t, 3, 4), (true, vec![1]));
        t.get(client(3), a(SERVER), 5).unwrap().mem = 500;
        let mut ev = Vec::new();
        t.enforce_limits(6, |k, _| ev.push(k.client.port() - 40000));
        assert_eq!(ev, vec![2]);
        assert_eq!(t.flows_mem(), per + 500);
        t.for_each_mut(|_, s| s.mem = 100);
        assert_eq!(t.flows_mem(), per + 100);
        assert!(t.mem() >= t.flows_mem());
    }

    #[test]
    fn idle_expiry_removes_oldest_first() {
        let mut t = table(100, 0);
        for n in 1..=4 {
            touch(&mut t, n, u64::from(n));
        }
        touch(&mut t, 1, 10);
        let mut ev = Vec::new();
        let n = t.expire(12, 5, |k, s| ev.push((k.client.port() - 40000, s.tag)));
        assert_eq!(n, 3);
        assert_eq!(ev, vec![(2, 2), (3, 3), (4, 4)]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.stats().flows_expired_idle, 3);
        assert_eq!(t.expire(12, 5, |_, _| {}), 0);
        assert_eq!(t.expire(15, 5, |_, _| {}), 1);
        assert!(t.is_empty());
        assert_eq!(t.flows_mem(), 0);
    }

    #[test]
    fn expiry_early_in_time_does_not_underflow() {
        let mut t = table(100, 0);
        touch(&mut t, 1, 0);
        assert_eq!(t.expire(3, 10, |_, _| {}), 0);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn remove_and_reuse_of_a_key_is_a_new_flow() {
        let mut t = table(100, 0);
        touch(&mut t, 1, 1);
        let key = t.orient(client(1), a(SERVER)).0;
        assert_eq!(t.remove(&key).map(|s| s.tag), Some(1));
        assert!(t.remove(&key).is_none());
        assert_eq!(t.stats().flows_closed, 1);
        touch(&mut t, 1, 50);
        // The old flow's heap item (time 1) must not expire the new flow.
        assert_eq!(t.expire(52, 10, |_, _| {}), 0);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn heap_does_not_grow_with_closed_flows() {
        let mut t = table(1000, 0);
        for i in 0..100_000u64 {
            let n = (i % 20_000) as u16;
            touch(&mut t, n, i);
            let key = t.orient(client(n), a(SERVER)).0;
            t.remove(&key);
        }
        assert!(t.is_empty());
        assert!(t.heap.len() <= 1024 + 1, "heap {}", t.heap.len());
    }

    #[test]
    fn hundred_thousand_flows() {
        let mut t: FlowTable<S> = FlowTable::new(
            [6379].into_iter().collect(),
            FlowLimits {
                max_flows: 100_000,
                ..FlowLimits::default()
            },
        );
        let server = a(SERVER);
        for i in 0..100_000u32 {
            let c = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 50000));
            assert!(
                t.get_or_insert_with(c, server, u64::from(i), |_, _| S::default(), |_, _| {})
                    .is_some()
            );
        }
        assert_eq!(t.len(), 100_000);
        // Touch every flow again, then expire half.
        for i in 0..100_000u32 {
            let c = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 50000));
            assert!(t.get(server, c, 200_000 + u64::from(i)).is_some());
        }
        assert_eq!(t.expire(349_999, 100_000, |_, _| {}), 50_000);
        assert_eq!(t.len(), 50_000);
        let mut n = 0;
        t.drain(|_, _| n += 1);
        assert_eq!(n, 50_000);
        assert_eq!(t.flows_mem(), 0);
    }

    proptest! {
        /// Expiring everything hands flows out in order of last activity.
        #[test]
        fn eviction_order_is_last_activity(ops in proptest::collection::vec((0u16..40, any::<bool>()), 1..300)) {
            let mut t = table(1000, 0);
            let mut model: std::collections::HashMap<u16, u64> = Default::default();
            for (i, &(n, close)) in ops.iter().enumerate() {
                let now = i as u64 + 1;
                if close {
                    let key = t.orient(client(n), a(SERVER)).0;
                    prop_assert_eq!(t.remove(&key).is_some(), model.remove(&n).is_some());
                } else {
                    touch(&mut t, n, now);
                    model.insert(n, now);
                }
            }
            let mut want: Vec<(u64, u16)> = model.iter().map(|(&n, &ts)| (ts, n)).collect();
            want.sort();
            let mut got = Vec::new();
            t.expire(u64::MAX, 0, |k, _| got.push(k.client.port() - 40000));
            prop_assert_eq!(got, want.into_iter().map(|(_, n)| n).collect::<Vec<_>>());
        }
    }

    // --- lifecycle -------------------------------------------------------------------------

    const SYN: u8 = TCP_SYN;
    const SYNACK: u8 = TCP_SYN | TCP_ACK;
    const ACK: u8 = TCP_ACK;
    const FIN: u8 = TCP_FIN | TCP_ACK;
    const RST: u8 = TCP_RST;

    #[test]
    fn handshake_and_fin_close() {
        let mut l = Lifecycle::new();
        assert_eq!(l.observe(Dir::Request, SYN, 100), Transition::Nothing);
        assert_eq!(l.observe(Dir::Reply, SYNACK, 900), Transition::Nothing);
        assert!(l.saw_client_syn() && l.saw_server_syn());
        assert_eq!(l.observe(Dir::Request, ACK, 101), Transition::Nothing);
        assert_eq!(l.observe(Dir::Request, FIN, 150), Transition::Nothing);
        assert!(l.fin_seen(Dir::Request) && !l.fin_seen(Dir::Reply));
        assert!(!l.is_closed());
        assert_eq!(
            l.observe(Dir::Reply, FIN, 950),
            Transition::Closed(CloseReason::Fin)
        );
        assert!(l.is_closed());
        // Reported once; a retransmitted FIN or the last ACK changes nothing.
        assert_eq!(l.observe(Dir::Reply, FIN, 950), Transition::Nothing);
        assert_eq!(l.observe(Dir::Request, ACK, 151), Transition::Nothing);
    }

    #[rstest]
    #[case::from_client(Dir::Request)]
    #[case::from_server(Dir::Reply)]
    fn rst_closes(#[case] dir: Dir) {
        let mut l = Lifecycle::new();
        l.observe(Dir::Request, SYN, 1);
        assert_eq!(
            l.observe(dir, RST | ACK, 2),
            Transition::Closed(CloseReason::Rst)
        );
        assert_eq!(l.observe(dir, RST, 2), Transition::Nothing);
    }

    #[test]
    fn one_fin_twice_does_not_close() {
        let mut l = Lifecycle::new();
        l.observe(Dir::Request, FIN, 1);
        assert_eq!(l.observe(Dir::Request, FIN, 1), Transition::Nothing);
        assert!(!l.is_closed());
    }

    #[test]
    fn syn_retransmission_and_reuse() {
        let mut l = Lifecycle::new();
        assert_eq!(l.observe(Dir::Request, SYN, 7), Transition::Nothing);
        assert_eq!(l.observe(Dir::Request, SYN, 7), Transition::Nothing);
        l.observe(Dir::Reply, SYNACK, 70);
        assert_eq!(l.observe(Dir::Request, SYN, 9000), Transition::Reopened);
        assert!(l.saw_client_syn() && !l.saw_server_syn());
        // Mid-stream pickup, then a SYN: the 4-tuple carries a new connection.
        let mut l = Lifecycle::new();
        l.observe(Dir::Request, ACK, 5);
        assert!(!l.saw_client_syn());
        assert_eq!(l.observe(Dir::Request, SYN, 6), Transition::Reopened);
        // A server SYN without ACK (simultaneous open) is not a client SYN.
        let mut l = Lifecycle::new();
        assert_eq!(l.observe(Dir::Reply, SYN, 6), Transition::Nothing);
        assert!(!l.saw_client_syn());
    }
}
