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

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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

/// One tracked item.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub hash: u64,
    pub v: [u64; WEIGHTS],
    pub err: [u64; WEIGHTS],
    /// What the owner wants to remember with the item (the key's pattern hash).
    pub aux: u64,
    pub name: Name,
}

/// Hashes are already well mixed: the map uses them as they are.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdMap = HashMap<u64, u32, BuildHasherDefault<IdHasher>>;

pub struct Sketch {
    cap: usize,
    entries: Vec<Entry>,
    index: IdMap,
    floor: [u64; WEIGHTS],
    /// Scratch for purges (reused).
    scratch: Vec<u64>,
}

impl Sketch {
    /// A sketch tracking at most `cap` items (at least 12). Memory grows with use up to
    /// [`Sketch::max_bytes`].
    #[must_use]
    pub fn new(cap: usize) -> Sketch {
        Sketch {
            cap: cap.max(12),
            entries: Vec::new(),
            index: IdMap::default(),
            floor: [0; WEIGHTS],
            scratch: Vec::new(),
        }
    }

    /// Upper bound of this sketch's memory: entries, index (hashbrown: 16 bytes a slot at a load
    /// of 7/8, rounded to a power of two) and the purge scratch.
    #[must_use]
    pub fn max_bytes(cap: usize) -> usize {
        let cap = cap.max(12);
        cap * size_of::<Entry>() + (cap * 8 / 7).next_power_of_two() * 17 + cap * 8
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[must_use]
    pub fn floor(&self) -> [u64; WEIGHTS] {
        self.floor
    }

    #[must_use]
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The tracked item with this hash.
    #[inline]
    pub fn get_mut(&mut self, hash: u64) -> Option<&mut Entry> {
        let i = *self.index.get(&hash)?;
        self.entries.get_mut(i as usize)
    }

    /// Adds `w` to the item `hash`, if tracked; returns whether it was.
    #[inline]
    pub fn add_tracked(&mut self, hash: u64, w: [u64; WEIGHTS]) -> bool {
        match self.get_mut(hash) {
            Some(e) => {
                for (v, w) in e.v.iter_mut().zip(w) {
                    *v = v.saturating_add(w);
                }
                true
            }
            None => false,
        }
    }

    /// Starts tracking an item that [`Sketch::add_tracked`] did not find.
    pub fn insert(&mut self, hash: u64, name: Name, w: [u64; WEIGHTS], aux: u64) {
        if self.entries.len() >= self.cap {
            self.purge();
        }
        let mut v = self.floor;
        for (v, w) in v.iter_mut().zip(w) {
            *v = v.saturating_add(w);
        }
        let i = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.entries.push(Entry {
            hash,
            v,
            err: self.floor,
            aux,
            name,
        });
        self.index.insert(hash, i);
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
            self.scratch.extend(self.entries.iter().map(|e| e.v[m]));
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
        self.entries
            .retain(|e| e.v.iter().zip(floor).any(|(&v, f)| v > f));
        self.reindex();
    }

    fn reindex(&mut self) {
        self.index.clear();
        for (i, e) in self.entries.iter().enumerate() {
            self.index
                .insert(e.hash, u32::try_from(i).unwrap_or(u32::MAX));
        }
    }

    /// Forgets everything (keeps the allocations).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
        self.floor = [0; WEIGHTS];
    }

    /// Adds `other` into `self`: the estimates and errors of the union (an item missing on one
    /// side counts that side's floor), floors added up, then purged back under capacity.
    pub fn merge(&mut self, other: &Sketch) {
        let of = other.floor;
        // Items only here get `other`'s floor; items in both are fixed up below.
        for e in &mut self.entries {
            add(&mut e.v, of);
            add(&mut e.err, of);
        }
        let sf = self.floor;
        for o in &other.entries {
            if let Some(&i) = self.index.get(&o.hash)
                && let Some(e) = self.entries.get_mut(i as usize)
            {
                // Undo the floor added above: the item is on both sides.
                for ((v, err), (&f, (&ov, &oerr))) in
                    e.v.iter_mut()
                        .zip(e.err.iter_mut())
                        .zip(of.iter().zip(o.v.iter().zip(&o.err)))
                {
                    *v = v.saturating_sub(f).saturating_add(ov);
                    *err = err.saturating_sub(f).saturating_add(oerr);
                }
            } else {
                let mut n = *o;
                add(&mut n.v, sf);
                add(&mut n.err, sf);
                self.index.insert(
                    n.hash,
                    u32::try_from(self.entries.len()).unwrap_or(u32::MAX),
                );
                self.entries.push(n);
            }
        }
        add(&mut self.floor, of);
        while self.entries.len() > self.cap {
            self.purge();
        }
        // A merge can hold twice the capacity for a moment; do not keep that.
        self.entries.shrink_to(self.cap);
        self.index.shrink_to(self.cap);
    }

    /// The `n` items with the largest estimate of weight `by`, largest first.
    #[must_use]
    pub fn top(&self, by: usize, n: usize) -> Vec<Entry> {
        let mut v: Vec<Entry> = self.entries.clone();
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

/// `a += b`, per weight, saturating.
#[inline]
pub fn add(a: &mut [u64; WEIGHTS], b: [u64; WEIGHTS]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.saturating_add(y);
    }
}

#[cfg(test)]
mod tests {
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
        let tracked: HashMap<u64, &Entry> = s.entries().iter().map(|e| (e.hash, e)).collect();
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
