//! A heavy-hitter sketch for three weights at once (calls, bytes, latency): Space-Saving's
//! estimates and per-item error, with Misra–Gries' batched eviction so an update is one hash
//! probe and eviction is amortised O(1).
//!
//! Each tracked item has, per weight `m`, an estimate `v[m]` and an error `err[m]`; the sketch
//! has a floor `floor[m]`. Invariants, for every item `x` and weight `m` (`true` = the weight
//! `x` really got):
//! - tracked: `v[m] - err[m] <= true <= v[m]`;
//! - not tracked: `true <= floor[m]`.
//!
//! An update adds to `v` of a tracked item, or starts tracking it at `v = floor + w`,
//! `err = floor` (it may have had up to `floor` before). When the table is full, a purge raises
//! each floor to the `capacity / 6`-th largest `v[m]` and drops the items at or under the floor
//! for all three weights: fewer than half the slots survive, and a dropped item keeps the
//! invariant (its true weight is at most its `v`, at most the floor).
//!
//! Bound: `floor[m] <= 6 · W[m] / capacity`, `W[m]` the total weight `m` added (merges
//! included). Proof sketch: with `Φ = Σ max(0, v[m] - floor[m])`, `Φ + (capacity/6)·floor[m]
//! <= W[m]` holds after each update (Φ grows by at most `w`), each purge (at least
//! `capacity / 6` items lose the floor's rise) and each merge (floors and Φ add up). So each
//! reported error is at most that bound, and items whose true weight exceeds it are tracked.
//!
//! Items are identified by a 64-bit hash of their bytes (a collision merges two items; at a
//! million distinct keys the chance is about 1 in 10^7); their name is kept, cut to
//! [`NAME_BYTES`], for display.
//!
//! Layout, for the per-command cost: what an update touches (hash, estimates, the owner's
//! word) is a dense 40-byte entry; errors and names live in a parallel array read only at
//! insertion, purge, merge and answers; the index is open addressing with linear probing over
//! `u32` slots (16 bits of the hash as a tag, the entry's position), at most half full: 32 KiB
//! for the default 4096 keys, so it mostly stays in the L1 cache, and a lookup reads one index
//! slot and, on a tag match, one entry. Nothing is allocated per update once the first
//! insertion has sized the table.

/// Weights tracked per item.
pub const CALLS: usize = 0;
pub const BYTES: usize = 1;
pub const LATENCY: usize = 2;
pub const WEIGHTS: usize = 3;

/// Bytes of an item's name kept for display (the record's key cap by default).
pub const NAME_BYTES: usize = 64;

/// A name cut to [`NAME_BYTES`], with its full length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Name {
    bytes: [u8; NAME_BYTES],
    len: u8,
    /// Full length before the cut.
    pub full: u32,
}

impl Name {
    #[must_use]
    pub fn new(b: &[u8], full: u64) -> Name {
        let mut bytes = [0u8; NAME_BYTES];
        let n = b.len().min(NAME_BYTES);
        if let (Some(d), Some(s)) = (bytes.get_mut(..n), b.get(..n)) {
            d.copy_from_slice(s);
        }
        Name {
            bytes,
            len: u8::try_from(n).unwrap_or(u8::MAX),
            full: u32::try_from(full.max(n as u64)).unwrap_or(u32::MAX),
        }
    }

    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

/// One tracked item, as answers and merges see it.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub hash: u64,
    pub v: [u64; WEIGHTS],
    pub err: [u64; WEIGHTS],
    /// What the owner wants to remember with the item (the key's pattern hash).
    pub aux: u64,
    pub name: Name,
}

/// The part of an entry an update touches.
#[derive(Clone, Copy, Debug)]
struct Hot {
    hash: u64,
    v: [u64; WEIGHTS],
    aux: u64,
}

/// An entry's position in a sketch, valid while the sketch's generation is unchanged. Entries
/// move only when a purge, merge or clear rebuilds a table, and each rebuild of any sketch takes
/// a new generation from one process-wide counter, so a slot names one entry of one sketch (a
/// generation repeats only after 2^32 rebuilds). Lets a key reach its pattern's entry, and a
/// connection its client's, without hashing or probing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    generation: u32,
    /// Position + 1 (0: none).
    pos: u32,
}

/// Where generations come from (0 is never handed out: a default [`Slot`] names nothing).
static GENERATIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

fn next_generation() -> u32 {
    let g = GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if g == 0 { next_generation() } else { g }
}

impl Slot {
    /// As an entry's `aux`.
    #[must_use]
    pub fn to_aux(self) -> u64 {
        u64::from(self.generation) << 32 | u64::from(self.pos)
    }

    #[must_use]
    pub fn from_aux(aux: u64) -> Slot {
        Slot {
            generation: (aux >> 32) as u32,
            pos: aux as u32,
        }
    }
}

/// The part read only at insertion, purge, merge and answers.
#[derive(Clone, Copy, Debug)]
struct Cold {
    err: [u64; WEIGHTS],
    name: Name,
}

/// Most items a sketch tracks: a merge holds up to twice that for a moment, and positions + 1
/// must fit the index's 16 bits.
pub const MAX_CAP: usize = 32_000;

/// Index slots for `n` entries: a power of two, at most half full.
fn slots(n: usize) -> usize {
    (n.max(8) * 2).next_power_of_two()
}

pub struct Sketch {
    cap: usize,
    hot: Vec<Hot>,
    cold: Vec<Cold>,
    /// 0: empty; else the hash's high 16 bits, then the entry's position + 1.
    index: Vec<u32>,
    floor: [u64; WEIGHTS],
    /// Scratch for purges (reused).
    scratch: Vec<u64>,
    /// Changes whenever entries move (see [`Slot`]).
    generation: u32,
}

impl Sketch {
    /// A sketch tracking at most `cap` items (at least 12, at most [`MAX_CAP`]). Memory is
    /// taken at the first insertion, up to [`Sketch::max_bytes`].
    #[must_use]
    pub fn new(cap: usize) -> Sketch {
        Sketch {
            cap: cap.clamp(12, MAX_CAP),
            hot: Vec::new(),
            cold: Vec::new(),
            index: Vec::new(),
            floor: [0; WEIGHTS],
            scratch: Vec::new(),
            generation: next_generation(),
        }
    }

    /// Upper bound of this sketch's memory between merges: entries, index and the purge
    /// scratch. A merge holds up to twice that for a moment.
    #[must_use]
    pub fn max_bytes(cap: usize) -> usize {
        let cap = cap.clamp(12, MAX_CAP);
        cap * (size_of::<Hot>() + size_of::<Cold>() + size_of::<u64>())
            + slots(cap) * size_of::<u32>()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.hot.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.hot.is_empty()
    }

    #[must_use]
    pub fn floor(&self) -> [u64; WEIGHTS] {
        self.floor
    }

    /// Every tracked item (a copy).
    #[must_use]
    pub fn entries(&self) -> Vec<Entry> {
        self.hot
            .iter()
            .zip(&self.cold)
            .map(|(h, c)| Entry {
                hash: h.hash,
                v: h.v,
                err: c.err,
                aux: h.aux,
                name: c.name,
            })
            .collect()
    }

    /// The entry holding `hash` (`Ok`), or the empty index slot where it would go (`Err`).
    #[inline]
    fn probe(&self, hash: u64) -> Result<usize, usize> {
        let mask = self.index.len().wrapping_sub(1);
        let tag = (hash >> 48) as u32;
        let mut p = (hash as usize) & mask;
        // The index is never full, so an empty slot ends the walk.
        while let Some(&s) = self.index.get(p) {
            if s == 0 {
                return Err(p);
            }
            if s >> 16 == tag {
                let i = (s & 0xffff) as usize - 1;
                if self.hot.get(i).is_some_and(|h| h.hash == hash) {
                    return Ok(i);
                }
            }
            p = (p + 1) & mask;
        }
        Err(usize::MAX)
    }

    /// Adds `w` to the item `hash`, if tracked; returns its position if it was.
    #[inline]
    pub fn add_tracked_at(&mut self, hash: u64, w: [u64; WEIGHTS]) -> Option<usize> {
        let i = self.probe(hash).ok()?;
        let h = self.hot.get_mut(i)?;
        add_fast(&mut h.v, w);
        Some(i)
    }

    /// Adds `w` to the item `hash`, if tracked; returns whether it was.
    #[inline]
    pub fn add_tracked(&mut self, hash: u64, w: [u64; WEIGHTS]) -> bool {
        self.add_tracked_at(hash, w).is_some()
    }

    /// The `aux` of the entry at `pos` (from [`Sketch::add_tracked_at`]).
    #[inline]
    #[must_use]
    pub fn aux(&self, pos: usize) -> u64 {
        self.hot.get(pos).map_or(0, |h| h.aux)
    }

    /// Sets the `aux` of the entry at `pos`.
    #[inline]
    pub fn set_aux(&mut self, pos: usize, aux: u64) {
        if let Some(h) = self.hot.get_mut(pos) {
            h.aux = aux;
        }
    }

    /// The current slot of the entry at `pos`.
    #[inline]
    #[must_use]
    pub fn slot(&self, pos: usize) -> Slot {
        Slot {
            generation: self.generation,
            pos: u32::try_from(pos + 1).unwrap_or(0),
        }
    }

    /// Adds `w` to the entry `link` names if it is still there (same generation): no hash, no
    /// probe. Returns whether it was.
    #[inline]
    pub fn add_at(&mut self, link: Slot, w: [u64; WEIGHTS]) -> bool {
        if link.generation != self.generation || link.pos == 0 {
            return false;
        }
        match self.hot.get_mut(link.pos as usize - 1) {
            Some(h) => {
                add_fast(&mut h.v, w);
                true
            }
            None => false,
        }
    }

    /// Adds `w` to the item `hash` (named `name()`, called only when the item is new) and
    /// returns its slot.
    #[inline]
    pub fn add_slot(&mut self, hash: u64, w: [u64; WEIGHTS], name: impl FnOnce() -> Name) -> Slot {
        let pos = match self.add_tracked_at(hash, w) {
            Some(i) => i,
            None => self.insert(hash, name(), w, 0),
        };
        self.slot(pos)
    }

    /// Starts tracking an item that [`Sketch::add_tracked`] did not find; returns its position.
    pub fn insert(&mut self, hash: u64, name: Name, w: [u64; WEIGHTS], aux: u64) -> usize {
        if self.index.is_empty() {
            self.index = vec![0; slots(self.cap)];
            self.hot.reserve_exact(self.cap);
            self.cold.reserve_exact(self.cap);
        }
        if self.hot.len() >= self.cap {
            self.purge();
        }
        let mut v = self.floor;
        add(&mut v, w);
        self.push(
            Hot { hash, v, aux },
            Cold {
                err: self.floor,
                name,
            },
        )
    }

    /// Appends an item known not to be tracked (the index has room); returns its position.
    fn push(&mut self, h: Hot, c: Cold) -> usize {
        let i = self.hot.len();
        self.hot.push(h);
        self.cold.push(c);
        self.place(h.hash, i);
        i
    }

    fn place(&mut self, hash: u64, i: usize) {
        let mask = self.index.len().wrapping_sub(1);
        let mut p = (hash as usize) & mask;
        while let Some(s) = self.index.get_mut(p) {
            if *s == 0 {
                // Positions stay under 2 * MAX_CAP (a merge's moment of two tables).
                *s = ((hash >> 48) as u32) << 16 | (i as u32 + 1);
                return;
            }
            p = (p + 1) & mask;
        }
    }

    /// Adds `w` to item `hash` (named `name()`, called only when the item is new).
    #[inline]
    pub fn add(&mut self, hash: u64, w: [u64; WEIGHTS], name: impl FnOnce() -> Name) {
        if !self.add_tracked(hash, w) {
            self.insert(hash, name(), w, 0);
        }
    }

    /// Raises the floors and drops what is under all of them: fewer than half the slots stay.
    fn purge(&mut self) {
        let rank = (self.cap / 6).max(1);
        for m in 0..WEIGHTS {
            self.scratch.clear();
            self.scratch.extend(self.hot.iter().map(|e| e.v[m]));
            if self.scratch.len() >= rank {
                let (_, t, _) = self
                    .scratch
                    .select_nth_unstable_by(rank - 1, |a, b| b.cmp(a));
                let floor = self.floor.get_mut(m);
                if let Some(f) = floor {
                    *f = (*f).max(*t);
                }
            }
        }
        let floor = self.floor;
        let mut kept = 0;
        for i in 0..self.hot.len() {
            let (Some(&h), Some(&c)) = (self.hot.get(i), self.cold.get(i)) else {
                break;
            };
            if h.v.iter().zip(floor).any(|(&v, f)| v > f) {
                if let (Some(dh), Some(dc)) = (self.hot.get_mut(kept), self.cold.get_mut(kept)) {
                    (*dh, *dc) = (h, c);
                }
                kept += 1;
            }
        }
        self.hot.truncate(kept);
        self.cold.truncate(kept);
        self.reindex(self.index.len());
        self.generation = next_generation();
    }

    /// Rebuilds the index with `n` slots (a power of two, more than twice the entries).
    fn reindex(&mut self, n: usize) {
        if self.index.len() == n {
            self.index.fill(0);
        } else {
            self.index = vec![0; n];
        }
        for i in 0..self.hot.len() {
            if let Some(h) = self.hot.get(i) {
                self.place(h.hash, i);
            }
        }
    }

    /// Forgets everything (keeps the allocations).
    pub fn clear(&mut self) {
        self.hot.clear();
        self.cold.clear();
        self.index.fill(0);
        self.floor = [0; WEIGHTS];
        self.generation = next_generation();
    }

    /// Adds `other` into `self`: the estimates and errors of the union (an item missing on one
    /// side counts that side's floor), floors added up, then purged back under capacity.
    pub fn merge(&mut self, other: &Sketch) {
        if other.hot.is_empty() && other.floor == [0; WEIGHTS] {
            return;
        }
        let of = other.floor;
        // Items only here get `other`'s floor; items in both are fixed up below.
        for (h, c) in self.hot.iter_mut().zip(self.cold.iter_mut()) {
            add(&mut h.v, of);
            add(&mut c.err, of);
        }
        let need = slots(self.hot.len() + other.hot.len());
        if self.index.len() < need {
            self.reindex(need);
        }
        let sf = self.floor;
        for (o, oc) in other.hot.iter().zip(&other.cold) {
            match self.probe(o.hash) {
                Ok(i) => {
                    let (Some(h), Some(c)) = (self.hot.get_mut(i), self.cold.get_mut(i)) else {
                        continue;
                    };
                    // Undo the floor added above: the item is on both sides.
                    #[allow(clippy::needless_range_loop)] // four arrays indexed alike
                    for m in 0..WEIGHTS {
                        h.v[m] = h.v[m].saturating_sub(of[m]).saturating_add(o.v[m]);
                        c.err[m] = c.err[m].saturating_sub(of[m]).saturating_add(oc.err[m]);
                    }
                }
                Err(_) => {
                    let (mut h, mut c) = (*o, *oc);
                    add(&mut h.v, sf);
                    add(&mut c.err, sf);
                    self.push(h, c);
                }
            }
        }
        add(&mut self.floor, of);
        self.generation = next_generation();
        while self.hot.len() > self.cap {
            self.purge();
        }
        // A merge can hold twice the capacity for a moment; do not keep that.
        if self.index.len() > slots(self.cap) {
            self.reindex(slots(self.cap));
        }
        self.hot.shrink_to(self.cap);
        self.cold.shrink_to(self.cap);
    }

    /// The `n` items with the largest estimate of weight `by`, largest first.
    #[must_use]
    pub fn top(&self, by: usize, n: usize) -> Vec<Entry> {
        let mut v = self.entries();
        let key = |e: &Entry| e.v.get(by).copied().unwrap_or(0);
        if n < v.len() {
            v.select_nth_unstable_by(n, |a, b| key(b).cmp(&key(a)));
            v.truncate(n);
        }
        v.sort_by(|a, b| {
            key(b)
                .cmp(&key(a))
                .then(a.name.as_bytes().cmp(b.name.as_bytes()))
        });
        v
    }
}

/// `a += b`, per weight, on the per-command path: wrapping, as no total can reach 2^64 (the
/// largest, latency in ns, would take 584 years of one command's time).
#[inline]
pub fn add_fast(a: &mut [u64; WEIGHTS], b: [u64; WEIGHTS]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.wrapping_add(y);
    }
}

/// `a += b`, per weight, saturating.
#[inline]
pub fn add(a: &mut [u64; WEIGHTS], b: [u64; WEIGHTS]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.saturating_add(y);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Deterministic xorshift.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Zipf(s) over `n` items by inversion of the cumulative weights.
    fn zipf(n: usize, s: f64) -> Vec<f64> {
        let mut c = Vec::with_capacity(n);
        let mut acc = 0.0;
        for k in 1..=n {
            acc += 1.0 / (k as f64).powf(s);
            c.push(acc);
        }
        for x in &mut c {
            *x /= acc;
        }
        c
    }

    fn h(i: u64) -> u64 {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555
    }

    fn check(s: &Sketch, truth: &HashMap<u64, [u64; 3]>, total: [u64; 3], cap: usize) {
        let floor = s.floor();
        for m in 0..WEIGHTS {
            assert!(
                floor[m] <= 6 * total[m] / cap as u64 + 1,
                "floor {} over the bound {}",
                floor[m],
                6 * total[m] / cap as u64
            );
        }
        let entries = s.entries();
        let tracked: HashMap<u64, &Entry> = entries.iter().map(|e| (e.hash, e)).collect();
        for (k, t) in truth {
            for m in 0..WEIGHTS {
                match tracked.get(k) {
                    Some(e) => {
                        assert!(e.v[m] >= t[m], "estimate under the truth");
                        assert!(e.v[m] - e.err[m] <= t[m], "estimate over truth + error");
                        assert!(e.err[m] <= floor[m]);
                    }
                    None => assert!(t[m] <= floor[m], "an untracked item over the floor"),
                }
            }
        }
    }

    #[test]
    fn error_bound_holds_on_a_zipf_stream_with_weights() {
        let cap = 600;
        let cdf = zipf(50_000, 1.1);
        let mut rng = Rng(42);
        let mut s = Sketch::new(cap);
        let mut truth: HashMap<u64, [u64; 3]> = HashMap::new();
        let mut total = [0u64; 3];
        for _ in 0..300_000 {
            let u = (rng.next() % 1_000_000) as f64 / 1e6;
            let k = cdf.partition_point(|&c| c < u) as u64;
            // Bytes and latency unrelated to popularity, so the three rankings differ.
            let w = [1, 10 + rng.next() % 1000, rng.next() % 50];
            let e = truth.entry(h(k)).or_default();
            for m in 0..3 {
                e[m] += w[m];
                total[m] += w[m];
            }
            s.add(h(k), w, || Name::new(&k.to_le_bytes(), 8));
        }
        check(&s, &truth, total, cap);
        // The top 10 by calls are the true top 10.
        let mut want: Vec<(u64, u64)> = truth.iter().map(|(k, t)| (t[0], *k)).collect();
        want.sort_by(|a, b| b.cmp(a));
        let got: Vec<u64> = s.top(CALLS, 10).iter().map(|e| e.hash).collect();
        let mut w10: Vec<u64> = want.iter().take(10).map(|x| x.1).collect();
        let mut g10 = got.clone();
        w10.sort_unstable();
        g10.sort_unstable();
        assert_eq!(g10, w10);
    }

    #[test]
    fn merge_keeps_the_bound() {
        let cap = 120;
        let mut rng = Rng(7);
        let mut parts: Vec<Sketch> = (0..6).map(|_| Sketch::new(cap)).collect();
        let mut truth: HashMap<u64, [u64; 3]> = HashMap::new();
        let mut total = [0u64; 3];
        let cdf = zipf(5_000, 1.0);
        for (i, p) in parts.iter_mut().enumerate() {
            for _ in 0..20_000 {
                let u = (rng.next() % 1_000_000) as f64 / 1e6;
                // Each part favours other items, so merges see items on one side only.
                let k = (cdf.partition_point(|&c| c < u) + i * 37) as u64 % 5_000;
                let w = [1, rng.next() % 100, rng.next() % 7];
                let e = truth.entry(h(k)).or_default();
                for m in 0..3 {
                    e[m] += w[m];
                    total[m] += w[m];
                }
                p.add(h(k), w, || Name::new(b"x", 1));
            }
        }
        let mut all = Sketch::new(cap);
        for p in &parts {
            all.merge(p);
        }
        check(&all, &truth, total, cap);
    }

    #[test]
    fn exact_while_under_capacity() {
        let mut s = Sketch::new(100);
        for i in 0..50u64 {
            for _ in 0..=i {
                s.add(h(i), [1, 2, 3], || Name::new(b"k", 1));
            }
        }
        assert_eq!(s.floor(), [0, 0, 0]);
        let top = s.top(CALLS, 3);
        assert_eq!(
            top.iter().map(|e| e.v[CALLS]).collect::<Vec<_>>(),
            [50, 49, 48]
        );
        assert!(top.iter().all(|e| e.err == [0, 0, 0]));
    }

    #[test]
    fn names_are_cut_with_their_length() {
        let long = [b'a'; 100];
        let n = Name::new(&long, 100);
        assert_eq!(n.as_bytes().len(), NAME_BYTES);
        assert_eq!(n.full, 100);
    }
}
