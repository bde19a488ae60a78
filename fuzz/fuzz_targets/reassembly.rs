//! Stream (one direction's TCP reassembly): a byte stream delivered as fuzzer-chosen segments —
//! any order, duplicates, overlaps, uncaptured tails, holes — under fuzzer-chosen limits. The
//! output must cover the positions from the stream's start to the furthest byte any segment (or
//! acknowledgement, bounded by the FIN) reached, exactly once and in order; delivered bytes must be the original ones and captured by
//! some segment; bytes reported missing must be uncaptured in some segment unless a hole was
//! given up on; counters must add up; the limits and memory bounds must hold after every push.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_observer::reassembly::{Stream, StreamEvent, StreamLimits};
use redis_observer_fuzz::{Rd, parsed_input};

/// Segment `[start, start + cap)` of the stream's bytes (clipped to them), then `miss`
/// uncaptured bytes; offsets are reduced to at most 4 KiB past the data.
#[derive(Debug)]
struct Op {
    start: u16,
    cap: u16,
    miss: u16,
    /// ts advance; 255: call `expire_held` (at the current ts), 254: `acked` up to `start`, 253:
    /// `set_fin` at `start`, instead of pushing.
    tsd: u8,
}

/// Layout: flags (bit 0: `set_isn`, bit 1: flush once half-way), isn u32, max bytes (× 64; 255 =
/// 1 MiB), max pieces, max hold (0 = none), op count, ops (start u16, captured u16, missing u16,
/// ts step u8, whose values 253-255 make other calls), then the stream's bytes.
#[derive(Debug)]
struct Input {
    set_isn: bool,
    mid_flush: bool,
    isn: u32,
    limits: StreamLimits,
    ops: Vec<Op>,
    data: Vec<u8>,
}

impl Input {
    fn parse(b: &[u8]) -> Self {
        let mut r = Rd(b);
        let flags = r.u8();
        let isn = r.u32();
        let max_bytes = match r.u8() {
            255 => 1 << 20,
            v => usize::from(v) * 64,
        };
        let max_segs = usize::from(r.u8());
        let max_hold_ns = match r.u8() {
            0 => u64::MAX,
            v => u64::from(v),
        };
        let n = r.u8();
        let ops = (0..n)
            .map(|_| Op {
                start: r.u16(),
                cap: r.u16(),
                miss: r.u16(),
                tsd: r.u8(),
            })
            .collect();
        Input {
            set_isn: flags & 1 != 0,
            mid_flush: flags & 2 != 0,
            isn,
            limits: StreamLimits {
                max_out_of_order_bytes: max_bytes,
                max_out_of_order_segments: max_segs,
                max_hold_ns,
            },
            ops,
            data: r.rest().to_vec(),
        }
    }
}

parsed_input!(Input);

/// Size of a held piece (seq u32, len u32, off usize, ts u64).
const PIECE: usize = 24;

fuzz_target!(|input: Input| {
    let data = &input.data;
    let n = data.len();
    let lim = input.limits;
    let mut s = Stream::new(lim);
    if input.set_isn {
        s.set_isn(input.isn);
    }
    // What the segments carried, by stream offset: ranges, summed into counts at the end.
    let mut captured: Vec<(usize, usize)> = Vec::new();
    let mut uncaptured: Vec<(usize, usize)> = Vec::new();
    // Output, by stream offset from `base`: Some(byte) or None (missing).
    let mut out: Vec<Option<u8>> = Vec::new();
    let mut sink = |e: StreamEvent<'_>| match e {
        StreamEvent::Data { bytes, .. } => {
            assert!(!bytes.is_empty(), "empty Data");
            out.extend(bytes.iter().map(|&b| Some(b)));
        }
        StreamEvent::Missing { len, .. } => {
            assert!(len > 0, "empty Missing");
            assert!(len <= 1 << 20, "absurd Missing");
            out.extend(std::iter::repeat_n(None, len as usize));
        }
    };
    let mut base: Option<usize> = input.set_isn.then_some(0);
    let mut end = 0usize;
    let mut ts = 0u64;
    let mut max_seg = 0usize;
    let mut fin: Option<usize> = None;
    let half = input.ops.len() / 2;
    for (i, op) in input.ops.iter().enumerate() {
        if input.mid_flush && i == half {
            s.flush(&mut sink);
            assert_eq!(s.held_segments(), 0);
        }
        // Positions stay within a few KiB past the data, so every run stays cheap.
        let start = usize::from(op.start) % (n + 4097);
        let seq = input.isn.wrapping_add(start as u32);
        match op.tsd {
            255 => {
                s.expire_held(ts, &mut sink);
                continue;
            }
            254 => {
                // The peer has every byte before `start` (never past the FIN): what was not seen
                // is lost, the stream moves on to there.
                let ack = fin.map_or(start, |f: usize| start.min(f));
                if base.is_some() {
                    end = end.max(ack);
                }
                s.acked(seq, ts, &mut sink);
                continue;
            }
            253 => {
                fin = Some(start);
                s.set_fin(seq);
                continue;
            }
            _ => ts += u64::from(op.tsd),
        }
        let c = usize::from(op.cap).min(n.saturating_sub(start));
        let miss = usize::from(op.miss) % 4096;
        let bytes = &data[start.min(n)..start.min(n) + c];
        let len = c + miss;
        max_seg = max_seg.max(len);
        if len > 0 {
            base.get_or_insert(start);
            end = end.max(start + len);
            captured.push((start, start + c));
            uncaptured.push((start + c, start + len));
        }
        s.push(ts, seq, bytes, miss as u32, &mut sink);
        assert!(
            s.held_bytes() <= lim.max_out_of_order_bytes,
            "held bytes over the limit"
        );
        assert!(
            s.held_segments() <= lim.max_out_of_order_segments,
            "held pieces over the limit"
        );
        // Held bytes (≤ limit + one segment before the limit is enforced) plus as much garbage
        // again plus the compaction slack, doubled by Vec growth; pieces likewise.
        let bound = size_of::<Stream>()
            + 2 * (3 * (lim.max_out_of_order_bytes + max_seg) + 16 * 1024)
            + 2 * (3 * lim.max_out_of_order_segments + 2 * input.ops.len() + 8) * PIECE;
        assert!(s.mem() <= bound, "mem {} over {bound}", s.mem());
    }
    s.flush(&mut sink);
    assert_eq!(s.held_segments(), 0);
    assert_eq!(s.held_bytes(), 0);
    // After an episode the buffers shrink back (64 KiB of bytes, 32 pieces kept).
    assert!(
        s.mem() <= size_of::<Stream>() + 64 * 1024 + 32 * PIECE,
        "mem {} after flush",
        s.mem()
    );

    let Some(base) = base else {
        assert!(out.is_empty(), "output without input");
        return;
    };
    // When the start is taken from the first segment, segments before it are old duplicates.
    assert_eq!(
        out.len(),
        end - base,
        "output does not cover [{base}, {end})"
    );
    let st = *s.stats();
    let delivered = out.iter().filter(|x| x.is_some()).count() as u64;
    assert_eq!(st.bytes_delivered, delivered);
    assert_eq!(s.bytes_missing(), out.len() as u64 - delivered);
    assert_eq!(
        s.next_seq(),
        Some(input.isn.wrapping_add(end as u32)),
        "next_seq after flush"
    );
    let covered = |ranges: &[(usize, usize)]| {
        let mut d = vec![0i32; end + 1];
        for &(a, b) in ranges {
            if a < b {
                d[a] += 1;
                d[b] -= 1;
            }
        }
        let mut n = 0;
        d.iter()
            .map(|x| {
                n += x;
                n > 0
            })
            .collect::<Vec<bool>>()
    };
    let (captured, uncaptured) = (covered(&captured), covered(&uncaptured));
    for (i, x) in out.iter().enumerate() {
        let p = base + i;
        match x {
            Some(b) => {
                assert!(captured[p], "byte {p} delivered but never captured");
                assert_eq!(*b, data[p], "byte {p} spliced");
            }
            None => assert!(
                st.gaps > 0 || uncaptured[p],
                "byte {p} missing without a gap or an uncaptured copy"
            ),
        }
    }
});
