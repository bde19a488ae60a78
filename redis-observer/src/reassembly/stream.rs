//! One direction of a TCP connection.
//!
//! Positions are TCP sequence numbers, compared modulo 2^32: a segment is "ahead" of the next
//! expected byte if it starts less than 2^31 after it, "behind" otherwise (RFC 1982 serial
//! arithmetic). Held (out-of-order) pieces are kept sorted, never overlapping, and always start
//! ahead of the next expected byte; that invariant is what keeps the wrapping comparisons sound.

use std::collections::VecDeque;
use std::mem::size_of;

/// How much out-of-order data one direction may hold before it gives up on a hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    /// Captured bytes held waiting for a hole to be filled.
    pub max_out_of_order_bytes: usize,
    /// Pieces held (a piece of uncaptured bytes counts too: it costs no buffer but one slot).
    pub max_out_of_order_segments: usize,
    /// Longest a piece waits behind a hole (by packet time) before the hole is given up on. TCP
    /// fills a network loss within about one retransmission timeout (200 ms minimum on Linux);
    /// a segment the capture itself dropped never comes, and a quiet connection would otherwise
    /// stall until the byte or segment limit. `u64::MAX`: no limit.
    pub max_hold_ns: u64,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_out_of_order_bytes: 256 * 1024,
            max_out_of_order_segments: 512,
            max_hold_ns: 1_000_000_000,
        }
    }
}

/// What a [`Stream`] delivers, in stream order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// The next bytes of the stream, seen in a packet taken at `ts` (ns since the epoch).
    Data { ts: u64, bytes: &'a [u8] },
    /// The next `len` bytes of the stream exist but were not seen: not captured (snaplen,
    /// `--capture-bytes`) or lost (a hole given up on). `ts` is the time of the packet that
    /// carried them, or of the first packet after the hole.
    Missing { ts: u64, len: u64 },
}

/// Counters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Captured bytes delivered as [`StreamEvent::Data`].
    pub bytes_delivered: u64,
    /// Bytes delivered as [`StreamEvent::Missing`] because the capture did not carry them.
    pub bytes_not_captured: u64,
    /// Bytes delivered as [`StreamEvent::Missing`] because a hole was given up on (limits hit,
    /// or flushed at close).
    pub bytes_gap: u64,
    /// Holes given up on.
    pub gaps: u64,
    /// Bytes received more than once (retransmissions, duplicates, overlaps) and dropped.
    pub bytes_duplicate: u64,
    /// Segments that arrived ahead of a hole and were held.
    pub segments_out_of_order: u64,
}

/// Longest range handled in one step. Keeps every held range within 2^31 + 2^30 of the next
/// expected byte, so the modulo-2^32 distances stay unambiguous. Real segments are < 2^17.
const MAX_RANGE: u32 = 1 << 30;
/// `Piece::off` of a piece of uncaptured bytes.
const NO_DATA: usize = usize::MAX;
/// Buffer capacity kept after an out-of-order episode ends; the rest goes back to the allocator.
const RETAIN_BYTES: usize = 64 * 1024;
/// Held-piece slots kept after an out-of-order episode ends.
const RETAIN_PIECES: usize = 32;
/// Garbage the buffer may carry beyond the live bytes before it is compacted (none in tests, so
/// the property tests exercise compaction).
const COMPACT_SLACK: usize = if cfg!(test) { 0 } else { 16 * 1024 };

/// A held range `[seq, seq + len)`: captured bytes at `buf[off..off + len]`, or uncaptured bytes
/// if `off == NO_DATA`.
#[derive(Clone, Copy, Debug)]
struct Piece {
    seq: u32,
    len: u32,
    off: usize,
    ts: u64,
}

/// One direction of a TCP connection, reassembled. See the module docs.
#[derive(Debug)]
pub struct Stream {
    limits: StreamLimits,
    /// Sequence number of the next byte to deliver (valid once `started`).
    next: u32,
    started: bool,
    /// Held pieces, sorted by position, non-overlapping, all ahead of `next`.
    held: VecDeque<Piece>,
    /// Captured bytes in `held` (excludes garbage in `buf`).
    held_bytes: usize,
    /// Storage of held captured bytes, in arrival order; compacted when mostly garbage.
    buf: Vec<u8>,
    stats: StreamStats,
    /// Sequence number of this direction's FIN, once seen: the peer's ACK of the FIN is one
    /// past the data and must not read as a lost byte.
    fin: Option<u32>,
}

impl Stream {
    pub fn new(limits: StreamLimits) -> Self {
        Stream {
            limits,
            next: 0,
            started: false,
            held: VecDeque::new(),
            held_bytes: 0,
            buf: Vec::new(),
            stats: StreamStats::default(),
            fin: None,
        }
    }

    /// This direction sent its FIN at `seq` (the sequence number after the FIN segment's data).
    pub fn set_fin(&mut self, seq: u32) {
        self.fin = Some(seq);
    }

    /// Every byte before this direction's FIN has been delivered (or reported missing). True
    /// when no FIN position is known or the stream never started.
    pub fn reached_fin(&self) -> bool {
        match self.fin {
            Some(f) if self.started => (self.next.wrapping_sub(f) as i32) >= 0,
            _ => true,
        }
    }

    /// Sets where the stream starts (`next_seq` = the SYN's sequence number + 1), if no byte has
    /// been seen yet. Without it the first segment carrying bytes sets the start (mid-stream
    /// pickup). Later calls (a retransmitted SYN) change nothing.
    pub fn set_isn(&mut self, next_seq: u32) {
        if !self.started {
            self.started = true;
            self.next = next_seq;
        }
    }

    /// Takes one segment: `data` are the captured bytes at sequence `seq`, followed by `missing`
    /// bytes that exist but were not captured. Delivers whatever becomes in order through `out`:
    /// new bytes only (duplicates and overlaps are dropped), uncaptured bytes as
    /// [`StreamEvent::Missing`] at their position. Data ahead of a hole is held; when the limits
    /// are exceeded the oldest hole is given up on (reported as `Missing`) and delivery resumes
    /// after it.
    ///
    /// When bytes overlap, the first copy seen wins, including a first copy that was not
    /// captured.
    #[inline]
    pub fn push(
        &mut self,
        ts: u64,
        seq: u32,
        data: &[u8],
        missing: u32,
        out: &mut impl FnMut(StreamEvent<'_>),
    ) {
        let max = MAX_RANGE as usize;
        if data.len() <= max && (missing as usize) <= max - data.len() {
            self.push_range(ts, seq, data, missing, out);
        } else {
            self.push_huge(ts, seq, data, missing, out);
        }
    }

    /// Delivers everything held, with `Missing` for the holes between (FIN, RST, idle close).
    /// The stream stays usable; the next byte expected is the one after the last held.
    pub fn flush(&mut self, out: &mut impl FnMut(StreamEvent<'_>)) {
        while let Some(&front) = self.held.front() {
            self.skip_to(front.seq, front.ts, out);
            self.drain(out);
        }
    }

    /// The peer acknowledged every byte before `ack` (it carried the ACK flag): bytes before it
    /// that were never seen will not come (the capture lost them, and acknowledged bytes are not
    /// retransmitted). Declares them missing and delivers what was held behind them, so a
    /// decoder can skip inside a bulk string or resynchronise without waiting for the hold
    /// limits. Apply it before the acknowledging segment's own data: the peer answered after
    /// receiving these bytes.
    pub fn acked(&mut self, ack: u32, ts: u64, out: &mut impl FnMut(StreamEvent<'_>)) {
        // Nothing past the FIN is data.
        let ack = match self.fin {
            Some(f) if (ack.wrapping_sub(f) as i32) > 0 => f,
            _ => ack,
        };
        let ahead = ack.wrapping_sub(self.next);
        if !self.started || ahead == 0 || ahead > MAX_RANGE {
            return;
        }
        while let Some(&front) = self.held.front() {
            if (front.seq.wrapping_sub(ack) as i32) >= 0 {
                break;
            }
            self.skip_to(front.seq, front.ts, out);
            self.drain(out);
        }
        if (ack.wrapping_sub(self.next) as i32) > 0 {
            self.skip_to(ack, ts, out);
            self.drain(out);
        }
    }

    /// Gives up on holes whose next piece has waited `max_hold_ns` by `now_ns`. For streams
    /// that stopped receiving (the pipeline's periodic tick); `push` checks on its own.
    pub fn expire_held(&mut self, now_ns: u64, out: &mut impl FnMut(StreamEvent<'_>)) {
        if !self.held.is_empty() {
            self.enforce_limits(now_ns, out);
        }
    }

    /// Forgets the position and everything held, without delivering it (the 4-tuple now carries
    /// a new connection). Counters are kept.
    pub fn reset(&mut self) {
        self.started = false;
        self.next = 0;
        self.fin = None;
        self.held.clear();
        self.held_bytes = 0;
        self.release_buffers();
    }

    /// Heap and inline bytes this stream uses.
    pub fn mem(&self) -> usize {
        size_of::<Self>()
            + self.buf.capacity()
            + self.held.capacity().saturating_mul(size_of::<Piece>())
    }

    pub fn bytes_delivered(&self) -> u64 {
        self.stats.bytes_delivered
    }

    /// Bytes delivered as `Missing`, for any reason.
    pub fn bytes_missing(&self) -> u64 {
        self.stats
            .bytes_not_captured
            .saturating_add(self.stats.bytes_gap)
    }

    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// Sequence number of the next byte to deliver, once the start is known.
    pub fn next_seq(&self) -> Option<u32> {
        self.started.then_some(self.next)
    }

    /// Pieces held waiting for a hole to fill.
    pub fn held_segments(&self) -> usize {
        self.held.len()
    }

    /// Captured bytes held waiting for a hole to fill.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Cuts absurdly long input (over 1 GiB) into ranges the modulo arithmetic handles.
    #[cold]
    fn push_huge(
        &mut self,
        ts: u64,
        mut seq: u32,
        data: &[u8],
        missing: u32,
        out: &mut impl FnMut(StreamEvent<'_>),
    ) {
        for chunk in data.chunks(MAX_RANGE as usize) {
            self.push_range(ts, seq, chunk, 0, out);
            seq = seq.wrapping_add(len_u32(chunk));
        }
        let mut left = missing;
        while left > 0 {
            let n = left.min(MAX_RANGE);
            self.push_range(ts, seq, &[], n, out);
            seq = seq.wrapping_add(n);
            left -= n;
        }
    }

    /// `push` for `data.len() + missing <= MAX_RANGE`.
    #[inline]
    fn push_range(
        &mut self,
        ts: u64,
        seq: u32,
        mut data: &[u8],
        mut missing: u32,
        out: &mut impl FnMut(StreamEvent<'_>),
    ) {
        let len = len_u32(data) + missing;
        if len == 0 {
            return;
        }
        if !self.started {
            self.started = true;
            self.next = seq;
        }
        let diff = seq.wrapping_sub(self.next) as i32;
        if diff > 0 {
            // `diff > 0` makes the cast exact.
            self.hold(ts, seq, diff as u32, data, missing, out);
            return;
        }
        if diff < 0 {
            // Starts before the next expected byte: a retransmission or duplicate. Same-sequence
            // duplicates (every segment twice on `lo`) end here, at once.
            let behind = diff.unsigned_abs();
            if behind >= len {
                self.stats.bytes_duplicate += u64::from(len);
                return;
            }
            self.stats.bytes_duplicate += u64::from(behind);
            let cut = data.len().min(behind as usize);
            data = data.get(cut..).unwrap_or_default();
            // `behind < len`, so what `data` cannot cover comes out of `missing`.
            missing -= behind - cut as u32;
        }
        // In order: straight through, no copy.
        if !data.is_empty() {
            out(StreamEvent::Data { ts, bytes: data });
            self.stats.bytes_delivered += data.len() as u64;
        }
        if missing > 0 {
            out(StreamEvent::Missing {
                ts,
                len: u64::from(missing),
            });
            self.stats.bytes_not_captured += u64::from(missing);
        }
        self.next = self.next.wrapping_add(len_u32(data)).wrapping_add(missing);
        if !self.held.is_empty() {
            self.drain(out);
            self.enforce_limits(ts, out);
        }
    }

    /// Stores the parts of an out-of-order range that no held piece covers yet. `rel` is how far
    /// ahead of `next` it starts (0 < rel < 2^31).
    #[cold]
    fn hold(
        &mut self,
        ts: u64,
        seq: u32,
        rel: u32,
        data: &[u8],
        missing: u32,
        out: &mut impl FnMut(StreamEvent<'_>),
    ) {
        self.stats.segments_out_of_order += 1;
        let next = self.next;
        let start = u64::from(rel);
        let data_end = start + data.len() as u64;
        let end = data_end + u64::from(missing);
        let rel_of = |p: &Piece| u64::from(p.seq.wrapping_sub(next));
        // First held piece that ends after `start` (pieces are sorted and disjoint).
        let mut i = self
            .held
            .partition_point(|p| rel_of(p) + u64::from(p.len) <= start);
        let mut cur = start;
        while cur < end {
            let (ps, pe) = match self.held.get(i) {
                Some(p) => (rel_of(p), rel_of(p) + u64::from(p.len)),
                None => (end, end),
            };
            if cur < ps {
                // [cur, stop) is new: its captured part, then its uncaptured part.
                let stop = ps.min(end);
                if cur < data_end {
                    let e = stop.min(data_end);
                    // Offsets within `data`: both <= data.len().
                    let bytes = data
                        .get((cur - start) as usize..(e - start) as usize)
                        .unwrap_or_default();
                    self.insert(i, seq_at(seq, cur - start), bytes, 0, ts);
                    i += 1;
                }
                if stop > data_end {
                    let s = cur.max(data_end);
                    // `stop - s <= missing`, a u32.
                    self.insert(i, seq_at(seq, s - start), &[], (stop - s) as u32, ts);
                    i += 1;
                }
                cur = stop;
                continue;
            }
            // [cur, pe) is already held: first copy wins.
            if pe > cur {
                self.stats.bytes_duplicate += pe.min(end) - cur;
                cur = pe;
            }
            i += 1;
        }
        self.enforce_limits(ts, out);
        self.maybe_compact();
    }

    /// Inserts a piece at index `i`: `bytes` (copied), or `missing` uncaptured bytes if `bytes`
    /// is empty.
    fn insert(&mut self, i: usize, seq: u32, bytes: &[u8], missing: u32, ts: u64) {
        let piece = if bytes.is_empty() {
            Piece {
                seq,
                len: missing,
                off: NO_DATA,
                ts,
            }
        } else {
            let off = self.buf.len();
            self.buf.extend_from_slice(bytes);
            self.held_bytes += bytes.len();
            Piece {
                seq,
                len: len_u32(bytes),
                off,
                ts,
            }
        };
        if piece.len > 0 {
            self.held.insert(i, piece);
        }
    }

    /// Gives up on the oldest hole while over a limit (`now` is the latest packet time).
    fn enforce_limits(&mut self, now: u64, out: &mut impl FnMut(StreamEvent<'_>)) {
        while let Some(&front) = self.held.front() {
            let over = self.held_bytes > self.limits.max_out_of_order_bytes
                || self.held.len() > self.limits.max_out_of_order_segments
                || now.saturating_sub(front.ts) >= self.limits.max_hold_ns;
            if !over {
                break;
            }
            self.skip_to(front.seq, front.ts, out);
            // Removes at least `front`, which now starts at `next`: the loop ends.
            self.drain(out);
        }
    }

    /// Declares the bytes from `next` to `seq` (ahead of it) lost.
    fn skip_to(&mut self, seq: u32, ts: u64, out: &mut impl FnMut(StreamEvent<'_>)) {
        let gap = seq.wrapping_sub(self.next);
        if (gap as i32) > 0 {
            out(StreamEvent::Missing {
                ts,
                len: u64::from(gap),
            });
            self.stats.bytes_gap += u64::from(gap);
            self.stats.gaps += 1;
            self.next = seq;
        }
    }

    /// Delivers held pieces that `next` has reached, trimming what it has passed.
    fn drain(&mut self, out: &mut impl FnMut(StreamEvent<'_>)) {
        while let Some(&p) = self.held.front() {
            let diff = p.seq.wrapping_sub(self.next) as i32;
            if diff > 0 {
                break;
            }
            self.held.pop_front();
            if p.off != NO_DATA {
                self.held_bytes -= p.len as usize;
            }
            let behind = diff.unsigned_abs();
            if behind >= p.len {
                self.stats.bytes_duplicate += u64::from(p.len);
                continue;
            }
            self.stats.bytes_duplicate += u64::from(behind);
            let n = p.len - behind;
            let bytes = if p.off == NO_DATA {
                None
            } else {
                let s = p.off + behind as usize;
                self.buf.get(s..s + n as usize)
            };
            match bytes {
                Some(bytes) => {
                    out(StreamEvent::Data { ts: p.ts, bytes });
                    self.stats.bytes_delivered += u64::from(n);
                }
                // Uncaptured (or, were the buffer ever inconsistent, unknown): never splice.
                None => {
                    out(StreamEvent::Missing {
                        ts: p.ts,
                        len: u64::from(n),
                    });
                    self.stats.bytes_not_captured += u64::from(n);
                }
            }
            self.next = self.next.wrapping_add(n);
        }
        if self.held.is_empty() {
            self.held_bytes = 0;
            self.release_buffers();
        }
    }

    /// Moves live bytes to the front of `buf` once it is mostly garbage (pieces delivered or
    /// dropped while others still wait): amortised O(1) per byte, no allocation.
    fn maybe_compact(&mut self) {
        if self.buf.len() <= self.held_bytes.saturating_mul(2) + COMPACT_SLACK {
            return;
        }
        let held = self.held.make_contiguous();
        // By buffer offset, so each move goes left over bytes already moved; NO_DATA sorts last.
        held.sort_unstable_by_key(|p| p.off);
        let mut w = 0;
        for p in held.iter_mut() {
            if p.off == NO_DATA {
                break;
            }
            let n = p.len as usize;
            self.buf.copy_within(p.off..p.off + n, w);
            p.off = w;
            w += n;
        }
        self.buf.truncate(w);
        let next = self.next;
        held.sort_unstable_by_key(|p| p.seq.wrapping_sub(next));
    }

    fn release_buffers(&mut self) {
        self.buf.clear();
        if self.buf.capacity() > RETAIN_BYTES {
            self.buf.shrink_to(RETAIN_BYTES);
        }
        if self.held.capacity() > RETAIN_PIECES {
            self.held.shrink_to(RETAIN_PIECES);
        }
    }
}

/// Length of a slice known to be at most `MAX_RANGE`.
#[inline]
fn len_u32(s: &[u8]) -> u32 {
    u32::try_from(s.len()).unwrap_or(u32::MAX)
}

/// Sequence number `delta` (< 2^32) bytes after `seq`.
#[inline]
fn seq_at(seq: u32, delta: u64) -> u32 {
    seq.wrapping_add(delta as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Ev {
        Data(u64, Vec<u8>),
        Missing(u64, u64),
    }

    fn d(ts: u64, b: &[u8]) -> Ev {
        Ev::Data(ts, b.to_vec())
    }

    fn m(ts: u64, n: u64) -> Ev {
        Ev::Missing(ts, n)
    }

    /// A stream plus everything it delivered.
    struct T {
        s: Stream,
        ev: Vec<Ev>,
    }

    impl T {
        fn new(limits: StreamLimits) -> Self {
            T {
                s: Stream::new(limits),
                ev: Vec::new(),
            }
        }
        fn push(&mut self, ts: u64, seq: u32, data: &[u8], missing: u32) {
            let ev = &mut self.ev;
            self.s
                .push(ts, seq, data, missing, &mut |e| ev.push(own(e)));
        }
        fn flush(&mut self) {
            let ev = &mut self.ev;
            self.s.flush(&mut |e| ev.push(own(e)));
        }
        fn take(&mut self) -> Vec<Ev> {
            std::mem::take(&mut self.ev)
        }
    }

    fn own(e: StreamEvent<'_>) -> Ev {
        match e {
            StreamEvent::Data { ts, bytes } => {
                assert!(!bytes.is_empty(), "empty Data event");
                Ev::Data(ts, bytes.to_vec())
            }
            StreamEvent::Missing { ts, len } => {
                assert!(len > 0, "empty Missing event");
                Ev::Missing(ts, len)
            }
        }
    }

    fn limits(bytes: usize, segs: usize) -> StreamLimits {
        StreamLimits {
            max_out_of_order_bytes: bytes,
            max_out_of_order_segments: segs,
            max_hold_ns: u64::MAX,
        }
    }

    #[test]
    fn in_order_is_passed_through_without_copy() {
        let mut s = Stream::new(StreamLimits::default());
        s.set_isn(1000);
        let seg = b"*1\r\n$4\r\nPING\r\n";
        let mut seen = Vec::new();
        s.push(1, 1000, seg, 0, &mut |e| {
            if let StreamEvent::Data { bytes, .. } = e {
                seen.push((bytes.as_ptr(), bytes.len()));
            }
        });
        assert_eq!(seen, vec![(seg.as_ptr(), seg.len())]);
        assert_eq!(s.next_seq(), Some(1014));
        assert_eq!(s.bytes_delivered(), 14);
        assert_eq!(s.mem(), size_of::<Stream>(), "nothing allocated");
    }

    #[test]
    fn same_sequence_duplicates_are_dropped() {
        let mut t = T::new(StreamLimits::default());
        t.s.set_isn(1);
        t.push(1, 1, b"abc", 0);
        t.push(2, 1, b"abc", 0);
        t.push(3, 4, b"def", 0);
        t.push(4, 4, b"def", 0);
        assert_eq!(t.take(), vec![d(1, b"abc"), d(3, b"def")]);
        assert_eq!(t.s.stats().bytes_duplicate, 6);
        assert_eq!(t.s.held_segments(), 0);
    }

    #[test]
    fn partial_overlap_delivers_only_the_new_part() {
        let mut t = T::new(StreamLimits::default());
        t.s.set_isn(100);
        t.push(1, 100, b"0123456789", 0);
        t.push(2, 105, b"56789abcde", 0);
        assert_eq!(t.take(), vec![d(1, b"0123456789"), d(2, b"abcde")]);
        assert_eq!(t.s.stats().bytes_duplicate, 5);
    }

    #[test]
    fn overlap_reaching_into_missing_tail_trims_from_missing() {
        let mut t = T::new(StreamLimits::default());
        t.s.set_isn(0);
        t.push(1, 0, b"ab", 0);
        // Starts 1 byte back; the overlap is all in the captured part.
        t.push(2, 1, b"bc", 3);
        // Starts 2 bytes into the previous segment's uncaptured tail.
        t.push(3, 4, b"", 4);
        assert_eq!(t.take(), vec![d(1, b"ab"), d(2, b"c"), m(2, 3), m(3, 2)]);
        assert_eq!(t.s.next_seq(), Some(8));
    }

    #[test]
    fn out_of_order_within_bound_is_reordered() {
        let mut t = T::new(StreamLimits::default());
        t.s.set_isn(0);
        t.push(1, 10, b"klmnopqrst", 0);
        t.push(2, 20, b"uvwxyz", 0);
        assert_eq!(t.take(), vec![]);
        assert_eq!(t.s.held_segments(), 2);
        assert_eq!(t.s.held_bytes(), 16);
        t.push(3, 0, b"abcdefghij", 0);
        assert_eq!(
            t.take(),
            vec![d(3, b"abcdefghij"), d(1, b"klmnopqrst"), d(2, b"uvwxyz")]
        );
        assert_eq!(t.s.held_segments(), 0);
        assert_eq!(t.s.stats().segments_out_of_order, 2);
        assert_eq!(t.s.bytes_missing(), 0);
    }

    #[test]
    fn hole_beyond_byte_bound_becomes_missing_then_held_data() {
        let mut t = T::new(limits(16, 100));
        t.s.set_isn(0);
        t.push(1, 10, b"0123456789", 0);
        assert_eq!(t.take(), vec![]);
        t.push(2, 30, b"abcdefghij", 0);
        // 20 bytes held > 16: give up on [0, 10), deliver up to the next hole.
        assert_eq!(t.take(), vec![m(1, 10), d(1, b"0123456789")]);
        assert_eq!(t.s.held_bytes(), 10);
        // The late bytes of the given-up hole are now duplicates.
        t.push(3, 0, b"late......", 0);
        assert_eq!(t.take(), vec![]);
        t.push(4, 20, b"ABCDEFGHIJ", 0);
        assert_eq!(t.take(), vec![d(4, b"ABCDEFGHIJ"), d(2, b"abcdefghij")]);
        assert_eq!(t.s.stats().gaps, 1);
        assert_eq!(t.s.stats().bytes_gap, 10);
        assert_eq!(t.s.next_seq(), Some(40));
    }

    #[test]
    fn hole_beyond_segment_bound_becomes_missing() {
        let mut t = T::new(limits(1 << 20, 2));
        t.s.set_isn(0);
        t.push(1, 5, b"f", 0);
        t.push(2, 7, b"h", 0);
        t.push(3, 9, b"j", 0);
        assert_eq!(t.take(), vec![m(1, 5), d(1, b"f")]);
        t.flush();
        assert_eq!(t.take(), vec![m(2, 1), d(2, b"h"), m(3, 1), d(3, b"j")]);
        assert_eq!(t.s.stats().gaps, 3);
    }

    #[test]
    fn hole_older_than_max_hold_becomes_missing() {
        let mut t = T::new(StreamLimits {
            max_hold_ns: 100,
            ..StreamLimits::default()
        });
        t.s.set_isn(0);
        t.push(1000, 0, b"a", 0);
        t.push(1010, 2, b"c", 0);
        t.push(1050, 4, b"e", 0);
        // Time passes on the other pieces' clocks, not yet 100 ns since "c" came.
        t.push(1100, 1, b"b", 0);
        assert_eq!(t.take(), vec![d(1000, b"a"), d(1100, b"b"), d(1010, b"c")]);
        // A packet 100 ns after "e" arrived gives up on the hole before it.
        t.push(1150, 9, b"j", 0);
        assert_eq!(t.take(), vec![m(1050, 1), d(1050, b"e")]);
        // A quiet stream: the pipeline's tick does it.
        t.s.expire_held(1249, &mut |_| panic!("too early"));
        t.s.expire_held(1250, &mut |_| {});
        assert_eq!(t.s.held_segments(), 0);
        assert_eq!(t.s.stats().gaps, 2);
        assert_eq!(t.s.next_seq(), Some(10));
    }

    #[test]
    fn zero_limits_hold_nothing() {
        let mut t = T::new(limits(0, 0));
        t.s.set_isn(0);
        t.push(1, 4, b"xy", 0);
        assert_eq!(t.take(), vec![m(1, 4), d(1, b"xy")]);
        assert_eq!(t.s.held_segments(), 0);
    }

    #[rstest]
    #[case::before_wrap(u32::MAX - 3)]
    #[case::at_wrap(u32::MAX)]
    #[case::zero(0)]
    #[case::half(1 << 31)]
    fn sequence_wraps_modulo_2_32(#[case] isn: u32) {
        let mut t = T::new(StreamLimits::default());
        t.s.set_isn(isn);
        t.push(1, isn, b"0123", 0);
        t.push(2, isn.wrapping_add(8), b"89", 0);
        t.push(3, isn.wrapping_add(4), b"4567", 0);
        // Duplicate from before the wrap point, must not look "far ahead".
        t.push(4, isn, b"0123", 0);
        t.push(5, isn.wrapping_add(2), b"2345678", 0);
        assert_eq!(t.take(), vec![d(1, b"0123"), d(3, b"4567"), d(2, b"89")]);
        assert_eq!(t.s.next_seq(), Some(isn.wrapping_add(10)));
    }

    #[test]
    fn missing_bytes_are_reported_at_their_position() {
        let mut t = T::new(StreamLimits::default());
        t.s.set_isn(0);
        t.push(1, 0, b"$10\r\nab", 5);
        t.push(2, 12, b"\r\n+OK\r\n", 0);
        assert_eq!(
            t.take(),
            vec![d(1, b"$10\r\nab"), m(1, 5), d(2, b"\r\n+OK\r\n")]
        );
        assert_eq!(t.s.stats().bytes_not_captured, 5);
        assert_eq!(t.s.bytes_missing(), 5);
    }

    #[test]
    fn missing_bytes_held_out_of_order_keep_their_position() {
        let mut t = T::new(StreamLimits::default());
        t.s.set_isn(0);
        t.push(1, 4, b"ef", 3);
        t.push(2, 9, b"jk", 0);
        t.push(3, 0, b"abcd", 0);
        assert_eq!(
            t.take(),
            vec![d(3, b"abcd"), d(1, b"ef"), m(1, 3), d(2, b"jk")]
        );
        assert_eq!(t.s.stats().bytes_not_captured, 3);
        assert_eq!(t.s.stats().bytes_gap, 0);
    }

    #[test]
    fn first_copy_wins_against_held_pieces() {
        let mut t = T::new(StreamLimits::default());
        t.s.set_isn(0);
        t.push(1, 4, b"EF", 0);
        t.push(2, 8, b"IJ", 0);
        // Covers both held pieces and the holes around them.
        t.push(3, 2, b"cdxxghxxkl", 0);
        assert_eq!(t.s.held_segments(), 5);
        t.push(4, 0, b"ab", 0);
        assert_eq!(
            t.take(),
            vec![
                d(4, b"ab"),
                d(3, b"cd"),
                d(1, b"EF"),
                d(3, b"gh"),
                d(2, b"IJ"),
                d(3, b"kl"),
            ]
        );
        assert_eq!(t.s.stats().bytes_duplicate, 4);
    }

    #[test]
    fn in_order_segment_overtaking_held_data_trims_it() {
        let mut t = T::new(StreamLimits::default());
        t.s.set_isn(0);
        t.push(1, 5, b"fghij", 0);
        t.push(2, 0, b"abcdefg", 0);
        assert_eq!(t.take(), vec![d(2, b"abcdefg"), d(1, b"hij")]);
        t.push(3, 10, b"k", 0);
        t.push(4, 12, b"m", 0);
        t.push(5, 10, b"klmn", 0);
        assert_eq!(t.take(), vec![d(3, b"k"), d(5, b"lmn")]);
        assert_eq!(t.s.held_segments(), 0);
    }

    #[test]
    fn flush_reports_holes_between_held_pieces() {
        let mut t = T::new(StreamLimits::default());
        t.s.set_isn(0);
        t.push(1, 0, b"a", 0);
        t.push(2, 3, b"d", 0);
        t.push(3, 6, b"g", 2);
        t.flush();
        assert_eq!(
            t.take(),
            vec![
                d(1, b"a"),
                m(2, 2),
                d(2, b"d"),
                m(3, 2),
                d(3, b"g"),
                m(3, 2)
            ]
        );
        assert_eq!(t.s.stats().bytes_gap, 4);
        assert_eq!(t.s.stats().bytes_not_captured, 2);
        assert_eq!(t.s.next_seq(), Some(9));
        // Still usable.
        t.push(4, 9, b"j", 0);
        assert_eq!(t.take(), vec![d(4, b"j")]);
    }

    #[test]
    fn mid_stream_pickup_starts_at_first_data() {
        let mut t = T::new(StreamLimits::default());
        assert_eq!(t.s.next_seq(), None);
        t.push(1, 77, b"", 0);
        assert_eq!(t.s.next_seq(), None, "a pure ACK does not start the stream");
        t.push(2, 500, b"xyz", 0);
        t.s.set_isn(1);
        assert_eq!(
            t.s.next_seq(),
            Some(503),
            "set_isn after the start is ignored"
        );
        assert_eq!(t.take(), vec![d(2, b"xyz")]);
    }

    #[test]
    fn far_behind_is_duplicate_far_ahead_is_held() {
        let mut t = T::new(StreamLimits::default());
        t.s.set_isn(0);
        // Exactly 2^31 away: ambiguous, treated as old.
        t.push(1, 1 << 31, b"x", 0);
        assert_eq!(t.take(), vec![]);
        assert_eq!(t.s.held_segments(), 0);
        t.push(2, (1 << 31) - 1, b"y", 0);
        assert_eq!(t.s.held_segments(), 1);
        t.flush();
        assert_eq!(t.take(), vec![m(2, (1 << 31) - 1), d(2, b"y")]);
        assert_eq!(t.s.next_seq(), Some(1 << 31));
    }

    #[test]
    fn absurd_lengths_do_not_panic() {
        let mut t = T::new(StreamLimits::default());
        t.s.set_isn(10);
        t.push(1, 10, b"ab", u32::MAX);
        assert_eq!(
            t.take(),
            vec![
                d(1, b"ab"),
                m(1, 1 << 30),
                m(1, 1 << 30),
                m(1, 1 << 30),
                m(1, (1 << 30) - 1)
            ]
        );
        assert_eq!(
            t.s.next_seq(),
            Some(10u32.wrapping_add(2).wrapping_add(u32::MAX))
        );
        // Missing far ahead is held without memory and given up on when flushed.
        t.push(2, 1 << 20, b"", u32::MAX);
        t.flush();
        assert!(t.take().iter().all(|e| matches!(e, Ev::Missing(..))));
    }

    #[test]
    fn reset_forgets_position_and_held_data() {
        let mut t = T::new(StreamLimits::default());
        t.s.set_isn(0);
        t.push(1, 5, b"zzz", 0);
        t.s.reset();
        assert_eq!(t.s.held_segments(), 0);
        t.s.set_isn(1000);
        t.push(2, 1000, b"new", 0);
        t.flush();
        assert_eq!(t.take(), vec![d(2, b"new")]);
    }

    #[test]
    fn buffer_is_compacted_and_released() {
        // A hole that never fills while pieces behind a second hole come and go.
        let lim = limits(64 * 1024, 1 << 20);
        let mut t = T::new(lim);
        t.s.set_isn(0);
        let chunk = [7u8; 1000];
        let mut seq = 1u32;
        for round in 0..200u32 {
            t.push(u64::from(round), seq, &chunk, 0);
            seq += 1001;
            assert!(t.s.mem() < 4 * lim.max_out_of_order_bytes, "round {round}");
        }
        t.flush();
        let ev = t.take();
        let data: u64 = ev
            .iter()
            .map(|e| match e {
                Ev::Data(_, b) => b.len() as u64,
                Ev::Missing(..) => 0,
            })
            .sum();
        assert_eq!(data, 200 * 1000);
        assert!(
            t.s.mem() <= size_of::<Stream>() + RETAIN_BYTES + RETAIN_PIECES * size_of::<Piece>()
        );
    }

    // --- property tests -------------------------------------------------------------------

    /// Tiny deterministic generator so one proptest seed drives cuts, duplicates and reordering.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
            if n == 0 { 0 } else { (x % n as u64) as usize }
        }
    }

    /// One segment to push: stream offsets `[start, start + cap + miss)`.
    #[derive(Clone, Copy, Debug)]
    struct Seg {
        start: usize,
        cap: usize,
        miss: usize,
    }

    /// Cuts `[0, n)` into segments, adds duplicates and overlapping retransmissions (if
    /// `with_overlaps`), and reorders with bounded displacement.
    fn schedule(
        n: usize,
        seed: u64,
        max_seg: usize,
        uncaptured: bool,
        with_overlaps: bool,
        window: usize,
    ) -> Vec<Seg> {
        let mut rng = Rng(seed | 1);
        let mut segs = Vec::new();
        let mut at = 0;
        while at < n {
            let len = 1 + rng.below(max_seg.min(n - at));
            let cap = if uncaptured && rng.below(4) == 0 {
                rng.below(len + 1)
            } else {
                len
            };
            segs.push(Seg {
                start: at,
                cap,
                miss: len - cap,
            });
            at += len;
        }
        let mut all = Vec::new();
        for s in segs {
            all.push(s);
            for _ in 0..rng.below(3) {
                all.push(s);
            }
            if with_overlaps && rng.below(3) == 0 {
                // A retransmission re-cut over a random range around this segment.
                let a = s.start.saturating_sub(rng.below(max_seg));
                let b = (s.start + s.cap + s.miss + rng.below(max_seg)).min(n);
                all.push(Seg {
                    start: a,
                    cap: b - a,
                    miss: 0,
                });
            }
        }
        let mut keyed: Vec<(usize, Seg)> = all
            .into_iter()
            .enumerate()
            .map(|(i, s)| (i + rng.below(window + 1), s))
            .collect();
        keyed.sort_by_key(|&(k, _)| k);
        keyed.into_iter().map(|(_, s)| s).collect()
    }

    /// Pushes the schedule, flushes, returns the stream as positions (Some(byte) or None).
    fn run(data: &[u8], isn: u32, sched: &[Seg], lim: StreamLimits) -> (Vec<Option<u8>>, Stream) {
        let mut s = Stream::new(lim);
        s.set_isn(isn);
        let mut got: Vec<Option<u8>> = Vec::new();
        let mut sink = |e: StreamEvent<'_>| match e {
            StreamEvent::Data { bytes, .. } => {
                assert!(!bytes.is_empty());
                got.extend(bytes.iter().map(|&b| Some(b)));
            }
            StreamEvent::Missing { len, .. } => {
                assert!(len > 0);
                got.extend(std::iter::repeat_n(None, len as usize));
            }
        };
        for (i, sg) in sched.iter().enumerate() {
            let seq = isn.wrapping_add(sg.start as u32);
            s.push(
                i as u64,
                seq,
                &data[sg.start..sg.start + sg.cap],
                sg.miss as u32,
                &mut sink,
            );
            assert!(s.held_bytes() <= lim.max_out_of_order_bytes);
            assert!(s.held_segments() <= lim.max_out_of_order_segments);
        }
        s.flush(&mut sink);
        (got, s)
    }

    fn isn_strategy() -> impl Strategy<Value = u32> {
        prop_oneof![any::<u32>(), (0u32..5000).prop_map(|x| u32::MAX - x)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Duplicates, overlapping retransmissions and bounded reordering within the limits:
        /// exactly the original bytes come out, nothing missing.
        #[test]
        fn reassembles_exactly(
            data in proptest::collection::vec(any::<u8>(), 0..4000),
            isn in isn_strategy(),
            seed in any::<u64>(),
            max_seg in 1usize..400,
            window in 0usize..12,
        ) {
            let sched = schedule(data.len(), seed, max_seg, false, true, window);
            let (got, s) = run(&data, isn, &sched, limits(1 << 20, 1 << 16));
            let want: Vec<Option<u8>> = data.iter().map(|&b| Some(b)).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(s.bytes_missing(), 0);
            prop_assert_eq!(s.bytes_delivered(), data.len() as u64);
            prop_assert_eq!(s.held_segments(), 0);
            prop_assert_eq!(s.next_seq(), Some(isn.wrapping_add(data.len() as u32)));
        }

        /// Uncaptured tails and tight limits: every position comes out exactly once, captured
        /// bytes are the original ones (never spliced), and uncaptured ones are never Data.
        /// Without a gap, Missing is exactly the uncaptured positions.
        #[test]
        fn never_splices_across_holes(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            isn in isn_strategy(),
            seed in any::<u64>(),
            max_seg in 1usize..300,
            window in 0usize..12,
            max_bytes in 0usize..1500,
            max_segs in 0usize..10,
            max_hold in prop_oneof![Just(u64::MAX), 0u64..20],
        ) {
            let sched = schedule(data.len(), seed, max_seg, true, false, window);
            let mut uncaptured = vec![false; data.len()];
            for sg in &sched {
                for u in &mut uncaptured[sg.start + sg.cap..sg.start + sg.cap + sg.miss] {
                    *u = true;
                }
            }
            let lim = StreamLimits { max_hold_ns: max_hold, ..limits(max_bytes, max_segs) };
            let (got, s) = run(&data, isn, &sched, lim);
            prop_assert_eq!(got.len(), data.len());
            for (i, g) in got.iter().enumerate() {
                match g {
                    Some(b) => {
                        prop_assert_eq!(*b, data[i], "byte {} spliced", i);
                        prop_assert!(!uncaptured[i]);
                    }
                    None => prop_assert!(uncaptured[i] || s.stats().gaps > 0),
                }
            }
            prop_assert_eq!(
                s.bytes_delivered() + s.bytes_missing(),
                data.len() as u64
            );
            prop_assert_eq!(s.held_segments(), 0);
        }
    }
}
