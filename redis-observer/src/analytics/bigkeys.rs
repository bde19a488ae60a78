//! Big keys: the keys with the largest single request or reply, exactly.
//!
//! The table holds at most `cap` keys, each with the largest size seen for it, and a threshold:
//! every key not held never had a size above it. A size at or under the threshold is dropped
//! with one comparison (most commands); a larger one is recorded, and when the table is full
//! the smaller half goes and the threshold becomes the largest size that went. A held key's
//! size is therefore its true maximum (anything it had before it was held was under the
//! threshold, so under the size that got it in): big keys carry no error.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::sketch::Name;

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

#[derive(Clone, Copy, Debug)]
pub struct BigKey {
    pub hash: u64,
    /// Largest request or reply seen (bytes).
    pub max: u64,
    /// Commands seen for the key above the threshold while held (a lower bound), and their
    /// total latency (ns).
    pub calls: u64,
    pub latency_ns: u64,
    pub name: Name,
}

pub struct BigKeys {
    cap: usize,
    threshold: u64,
    entries: Vec<BigKey>,
    index: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
}

impl BigKeys {
    #[must_use]
    pub fn new(cap: usize) -> BigKeys {
        BigKeys {
            cap: cap.max(2),
            threshold: 0,
            entries: Vec::new(),
            index: HashMap::default(),
        }
    }

    #[must_use]
    pub fn max_bytes(cap: usize) -> usize {
        let cap = cap.max(2);
        cap * size_of::<BigKey>() + (cap * 8 / 7).next_power_of_two() * 17
    }

    #[must_use]
    pub fn entries(&self) -> &[BigKey] {
        &self.entries
    }

    /// Sizes at or under it are not recorded (checked by the caller before anything else).
    #[inline]
    #[must_use]
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// A command of `size` bytes touched the key `hash`.
    #[inline]
    pub fn see(&mut self, hash: u64, size: u64, latency_ns: u64, name: impl FnOnce() -> Name) {
        if size <= self.threshold {
            return;
        }
        if let Some(&i) = self.index.get(&hash)
            && let Some(e) = self.entries.get_mut(i as usize)
        {
            e.max = e.max.max(size);
            e.calls += 1;
            e.latency_ns = e.latency_ns.saturating_add(latency_ns);
            return;
        }
        if self.entries.len() >= self.cap {
            self.shrink(self.cap / 2);
        }
        self.push(BigKey {
            hash,
            max: size,
            calls: 1,
            latency_ns,
            name: name(),
        });
    }

    fn push(&mut self, e: BigKey) {
        self.index.insert(
            e.hash,
            u32::try_from(self.entries.len()).unwrap_or(u32::MAX),
        );
        self.entries.push(e);
    }

    /// Keeps the `keep` largest; the threshold rises to the largest dropped.
    fn shrink(&mut self, keep: usize) {
        if self.entries.len() > keep {
            self.entries
                .select_nth_unstable_by(keep, |a, b| b.max.cmp(&a.max));
            for e in self.entries.get(keep..).unwrap_or_default() {
                self.threshold = self.threshold.max(e.max);
            }
            self.entries.truncate(keep);
        }
        self.reindex();
    }

    fn reindex(&mut self) {
        self.index.clear();
        for (i, e) in self.entries.iter().enumerate() {
            self.index
                .insert(e.hash, u32::try_from(i).unwrap_or(u32::MAX));
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
        self.threshold = 0;
    }

    /// The union: maxima of both, the higher threshold, and only keys at or above it (those
    /// are exact on both sides).
    pub fn merge(&mut self, other: &BigKeys) {
        self.threshold = self.threshold.max(other.threshold);
        for o in &other.entries {
            if let Some(&i) = self.index.get(&o.hash)
                && let Some(e) = self.entries.get_mut(i as usize)
            {
                e.max = e.max.max(o.max);
                e.calls += o.calls;
                e.latency_ns = e.latency_ns.saturating_add(o.latency_ns);
            } else {
                self.push(*o);
            }
        }
        // A key held at exactly the threshold is exact too (the other side never saw it above
        // that): keeping it matters when sizes tie, as equal values make every threshold one
        // of the held sizes.
        let t = self.threshold;
        self.entries.retain(|e| e.max >= t);
        if self.entries.len() > self.cap {
            self.shrink(self.cap);
        } else {
            self.reindex();
        }
        self.entries.shrink_to(self.cap);
        self.index.shrink_to(self.cap);
    }

    /// The `n` largest, largest first.
    #[must_use]
    pub fn top(&self, n: usize) -> Vec<BigKey> {
        let mut v = self.entries.clone();
        v.sort_by(|a, b| {
            b.max
                .cmp(&a.max)
                .then(a.name.as_bytes().cmp(b.name.as_bytes()))
        });
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_sizes_survive_merges() {
        // Every command the same size: thresholds equal the held sizes.
        let mut parts: Vec<BigKeys> = (0..6).map(|_| BigKeys::new(16)).collect();
        for (p, b) in parts.iter_mut().enumerate() {
            for k in 0..200u64 {
                b.see(k + 1000 * p as u64, 100, 1, || Name::new(b"k", 1));
            }
        }
        let mut m = BigKeys::new(16);
        for b in &parts {
            m.merge(b);
        }
        assert!(!m.top(5).is_empty());
        assert!(m.top(5).iter().all(|e| e.max == 100));
    }

    #[test]
    fn the_largest_are_exact() {
        let mut b = BigKeys::new(16);
        let mut truth = HashMap::new();
        let mut x = 12345u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = x % 500;
            let size = (x >> 20) % 100_000;
            let t = truth.entry(key).or_insert(0u64);
            *t = (*t).max(size);
            b.see(key, size, 0, || Name::new(b"k", 1));
        }
        let mut want: Vec<u64> = truth.values().copied().collect();
        want.sort_unstable_by(|a, b| b.cmp(a));
        let got: Vec<u64> = b.top(5).iter().map(|e| e.max).collect();
        assert_eq!(got, want[..5]);
        for e in b.entries() {
            assert_eq!(e.max, truth[&e.hash]);
        }
        let mut m = BigKeys::new(16);
        m.merge(&b);
        assert_eq!(
            m.top(5).iter().map(|e| e.max).collect::<Vec<_>>(),
            want[..5]
        );
    }
}
