//! The bounded table of connections (see the module docs of `flows`).

use std::cmp::Reverse;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::mem::size_of;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};

use super::ports::{FlowKey, PortSet, orient};
use crate::record::Dir;

/// Per-connection state kept in a [`FlowTable`].
pub trait FlowState {
    /// Heap bytes this state holds (buffers, queues), counted against the table's memory cap.
    /// Called each time a [`FlowRef`] is dropped: keep it O(1).
    fn mem(&self) -> usize;

    /// The server side has spoken (sent data): a real connection. A flow that never heard from
    /// its server (spoofed SYNs with data, half-open, one-sided) is the first to go when room is
    /// needed, whatever its age. O(1).
    fn confirmed(&self) -> bool {
        true
    }

    /// Work is outstanding (a command awaiting its reply, such as a `BLPOP queue 0`): the flow
    /// is not idle however quiet it is. Busy flows are never expired for idleness and are
    /// evicted for room only when nothing else can go. O(1).
    fn busy(&self) -> bool {
        false
    }
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
    /// Of `flows_evicted_cap`: flows that never heard from their server (evicted first).
    pub flows_evicted_unconfirmed: u64,
    /// Of `flows_evicted_cap`: flows with a command awaiting its reply (evicted last, only to
    /// keep the memory cap).
    pub flows_evicted_busy: u64,
    /// Removed by [`FlowTable::remove`] (connection closed).
    pub flows_closed: u64,
}

struct Entry<T> {
    /// Boxed: a connection's state is large (about 1.5 KiB), and the map keeps up to twice
    /// its length in slots; boxed, a spare slot costs under 100 bytes.
    state: Box<T>,
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

/// Busy flows one eviction or expiry pass steps over before giving up.
const SPARE_MAX: usize = 1024;

/// Connections and their state `T`. See the module docs.
pub struct FlowTable<T: FlowState> {
    map: HashMap<FlowKey, Entry<T>, ahash::RandomState>,
    pub(super) heap: BinaryHeap<HeapItem>,
    /// `(flow id, key)` of flows in creation order, for evicting unconfirmed flows first. Items
    /// of flows since removed or confirmed are skipped when they surface; rebuilt like `heap`.
    fresh: VecDeque<(u64, FlowKey)>,
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
    /// Table overhead per flow beyond its state's own `mem()` (which counts the state itself),
    /// amortised over what the containers keep spare: the allocator's header of the boxed
    /// state; a map slot, twice (the map grows by doubling and never shrinks); a heap item and
    /// a `fresh` item, four times each (up to twice as many items as flows before a rebuild,
    /// and doubling capacity).
    pub(super) const PER_FLOW: usize = 16
        + 2 * (size_of::<FlowKey>() + size_of::<Entry<T>>() + 1)
        + 4 * size_of::<HeapItem>()
        + 4 * size_of::<(u64, FlowKey)>();

    pub fn new(ports: PortSet, limits: FlowLimits) -> Self {
        FlowTable {
            map: HashMap::with_hasher(ahash::RandomState::new()),
            heap: BinaryHeap::new(),
            fresh: VecDeque::new(),
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

    /// The flow `key`, as it is (not marked active): for facts another connection learned.
    pub fn get_key(&mut self, key: &FlowKey) -> Option<FlowRef<'_, T>> {
        let entry = self.map.get_mut(key)?;
        Some(FlowRef {
            key: *key,
            dir: Dir::Request,
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
        if self.fresh.len() > 2 * self.map.len() + 1024 {
            self.compact_fresh();
        }
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
                let state = Box::new(make(&key, dir));
                let mem = state.mem();
                let id = self.next_id;
                self.next_id += 1;
                self.heap.push(Reverse((now_ns, id, key)));
                self.fresh.push_back((id, key));
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
        Some(*e.state)
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
        let mut spared = 0;
        while let Some((key, state)) = self.pop_oldest(
            now_ns,
            |last| now_ns.saturating_sub(last) >= idle_timeout_ns,
            Some(&mut spared),
        ) {
            self.stats.flows_expired_idle += 1;
            n += 1;
            on_evict(key, state);
        }
        self.enforce_limits(now_ns, &mut on_evict);
        n
    }

    /// Evicts while over a cap: flows that never heard from their server first, then the
    /// longest-idle ones (idle at least `min_idle_to_evict_ns`, not busy); over the memory cap
    /// with nothing else left, the least recently active flow even if busy.
    pub fn enforce_limits(&mut self, now_ns: u64, mut on_evict: impl FnMut(FlowKey, T)) {
        while self.over_limits() {
            let evicted = self.evict_one(now_ns, &mut on_evict)
                || (self.mem > self.limits.max_mem_bytes && self.evict_any(now_ns, &mut on_evict));
            if !evicted {
                break;
            }
        }
    }

    /// Over the memory cap (the caller just let a flow grow): evicts until under it. One
    /// comparison when under.
    pub fn enforce_mem(&mut self, now_ns: u64, on_evict: impl FnMut(FlowKey, T)) {
        if self.mem > self.limits.max_mem_bytes {
            self.enforce_limits(now_ns, on_evict);
        }
    }

    /// Removes every flow (shutdown), handing each to `on_evict`.
    pub fn drain(&mut self, mut on_evict: impl FnMut(FlowKey, T)) {
        self.heap.clear();
        self.fresh.clear();
        self.mem = 0;
        for (key, e) in self.map.drain() {
            on_evict(key, *e.state);
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &T)> {
        self.map.iter().map(|(k, e)| (k, &*e.state))
    }

    /// Visits every flow mutably (periodic work such as `Stream::expire_held`), re-measuring
    /// each one's memory. Does not count as activity.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&FlowKey, &mut T)) {
        for (k, e) in &mut self.map {
            f(k, &mut *e.state);
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
            .saturating_add(self.map.len().saturating_mul(16))
            .saturating_add(self.map.capacity().saturating_mul(slot))
            .saturating_add(self.heap.capacity().saturating_mul(size_of::<HeapItem>()))
            .saturating_add(
                self.fresh
                    .capacity()
                    .saturating_mul(size_of::<(u64, FlowKey)>()),
            )
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

    /// Evicts one flow to make room: the oldest that never heard from its server, else the
    /// longest-idle one that is idle at least `min_idle_to_evict_ns` and not busy.
    fn evict_one(&mut self, now_ns: u64, on_evict: &mut impl FnMut(FlowKey, T)) -> bool {
        if let Some((key, state)) = self.pop_unconfirmed(now_ns) {
            self.stats.flows_evicted_cap += 1;
            self.stats.flows_evicted_unconfirmed += 1;
            on_evict(key, state);
            return true;
        }
        let min_idle = self.limits.min_idle_to_evict_ns;
        let mut spared = 0;
        match self.pop_oldest(
            now_ns,
            |last| now_ns.saturating_sub(last) >= min_idle,
            Some(&mut spared),
        ) {
            Some((key, state)) => {
                self.stats.flows_evicted_cap += 1;
                on_evict(key, state);
                true
            }
            None => false,
        }
    }

    /// The memory cap's last resort, when every flow left is busy or recently active: the
    /// flow holding the most memory (a client pipelining without reading its replies), not the
    /// oldest (a worker blocked for an hour holds almost nothing). O(flows), and rare: it frees
    /// the most per call.
    fn evict_any(&mut self, _now_ns: u64, on_evict: &mut impl FnMut(FlowKey, T)) -> bool {
        let Some(key) = self
            .map
            .iter()
            .max_by_key(|(_, e)| (e.mem, std::cmp::Reverse(e.last_ns)))
            .map(|(k, _)| *k)
        else {
            return false;
        };
        let Some(e) = self.map.remove(&key) else {
            return false;
        };
        self.mem = self.mem.saturating_sub(e.mem + Self::PER_FLOW);
        self.stats.flows_evicted_cap += 1;
        if e.state.busy() {
            self.stats.flows_evicted_busy += 1;
        }
        on_evict(key, *e.state);
        self.maybe_rebuild_heap();
        true
    }

    /// Removes and returns the oldest-created flow that has not heard from its server, if it
    /// has been quiet `min_idle_to_evict_ns` (a real connection's SYN-ACK comes within a round
    /// trip: a new connection must not be taken for a one-sided one while it waits for it).
    fn pop_unconfirmed(&mut self, now_ns: u64) -> Option<(FlowKey, T)> {
        let min_idle = self.limits.min_idle_to_evict_ns;
        while let Some(&(id, key)) = self.fresh.front() {
            match self.map.get(&key) {
                Some(e) if e.id == id && !e.state.confirmed() => {
                    if now_ns.saturating_sub(e.last_ns) < min_idle {
                        // The oldest one-sided flow is still active: the others are younger.
                        return None;
                    }
                    self.fresh.pop_front();
                    let e = self.map.remove(&key)?;
                    self.mem = self.mem.saturating_sub(e.mem + Self::PER_FLOW);
                    return Some((key, *e.state));
                }
                // Removed, replaced or confirmed since: a confirmed flow never goes back.
                _ => {
                    self.fresh.pop_front();
                }
            }
        }
        None
    }

    /// Removes and returns the flow with the oldest activity if `evictable(last_ns)` holds for
    /// it. Cleans stale heap items on the way. With `spare`, a busy flow is not taken: its item
    /// is requeued at `now_ns` (so it is looked at again only after the others) and counted
    /// there; at most [`SPARE_MAX`] per call, so a table full of busy flows costs bounded work.
    fn pop_oldest(
        &mut self,
        now_ns: u64,
        evictable: impl Fn(u64) -> bool,
        mut spare: Option<&mut usize>,
    ) -> Option<(FlowKey, T)> {
        loop {
            let &Reverse((ts, id, key)) = self.heap.peek()?;
            let (last, busy) = match self.map.get(&key) {
                Some(e) if e.id == id => (e.last_ns, e.state.busy()),
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
            // The top item is current, so this is the least recently active flow (busy flows
            // requeued earlier aside).
            if !evictable(last) {
                return None;
            }
            if busy && let Some(spared) = spare.as_deref_mut() {
                // Requeued by this pass already (everything behind it is as recent): stop.
                if ts >= now_ns || *spared >= SPARE_MAX {
                    return None;
                }
                *spared += 1;
                self.heap.pop();
                self.heap
                    .push(Reverse((now_ns.max(ts.saturating_add(1)), id, key)));
                continue;
            }
            self.heap.pop();
            let e = self.map.remove(&key)?;
            self.mem = self.mem.saturating_sub(e.mem + Self::PER_FLOW);
            return Some((key, *e.state));
        }
    }

    /// Drops `fresh` items of flows removed or confirmed since: O(n), at most once per n
    /// creations or removals.
    fn compact_fresh(&mut self) {
        let map = &self.map;
        self.fresh.retain(|(id, key)| {
            map.get(key)
                .is_some_and(|e| e.id == *id && !e.state.confirmed())
        });
    }

    /// Drops heap items of removed flows once they outnumber live flows: in place, O(n), at most
    /// once per n removals.
    fn maybe_rebuild_heap(&mut self) {
        if self.fresh.len() > 2 * self.map.len() + 1024 {
            self.compact_fresh();
        }
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
