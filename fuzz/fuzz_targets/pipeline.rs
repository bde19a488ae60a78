//! Pipeline: arbitrary segments (four 4-tuples, either direction, any flags, sequence and
//! acknowledgement numbers, payloads, uncaptured tails, timestamps) and periodic ticks, into the flow table, reassembly and
//! pairing, with the real metrics sink behind a checking one. Never panics; every record is
//! well-formed; flows open before they close and all are closed at the end; the pipeline's memory
//! stays under a bound derived from its limits, and drops back once every flow is gone.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use redis_observer::{
    conn::ConnMeta,
    flows::FlowLimits,
    limits::RecordLimits,
    metrics::Metrics,
    outputs::Outputs,
    pipeline::{Pipeline, PipelineConfig},
    reassembly::StreamLimits,
    record::{CommandRecord, FlowEvent, Notice, Sink},
    resp::Reply,
    segment::Segment,
    session::{Session, SessionLimits},
};
use redis_observer_fuzz::{
    Checker, Rd, RecordBounds, limits, parsed_input, reply_mem_bound, request_mem_bound,
};

#[derive(Debug)]
struct Seg {
    /// bits 0-1: flow, bit 2: server → client, bit 3: a tick instead of a segment.
    ctl: u8,
    flags: u8,
    seq: u32,
    ack: u32,
    data: Vec<u8>,
    missing: u16,
    /// ts advance, × 10 ms.
    tsd: u8,
}

/// Layout: flags (bit 0: default limits, no memory bound), then segments: ctl, TCP flags, seq
/// u32, ack u32, len u16, missing u16, ts step u8, `len` bytes.
#[derive(Debug)]
struct Input {
    default_limits: bool,
    segs: Vec<Seg>,
}

impl Input {
    fn parse(b: &[u8]) -> Self {
        let mut r = Rd(b);
        let flags = r.u8();
        let mut segs = Vec::new();
        while !r.is_empty() {
            let ctl = r.u8();
            let flags = r.u8();
            let seq = r.u32();
            let ack = r.u32();
            let len = r.u16();
            let missing = r.u16();
            let tsd = r.u8();
            let data = r.take(usize::from(len)).to_vec();
            segs.push(Seg {
                ctl,
                flags,
                seq,
                ack,
                data,
                missing,
                tsd,
            });
        }
        Input {
            default_limits: flags & 1 != 0,
            segs,
        }
    }
}

parsed_input!(Input);

/// Checks, then hands everything to the real sink.
struct Tee {
    check: Checker,
    out: Outputs,
}

impl Sink for Tee {
    fn flow(&mut self, c: &ConnMeta, e: FlowEvent) {
        self.check.flow(c, e);
        self.out.flow(c, e);
    }
    fn command(&mut self, rec: &CommandRecord<'_>) {
        self.check.command(rec);
        self.out.command(rec);
    }
    fn push(&mut self, c: &ConnMeta, ts: u64, r: &Reply) {
        self.check.push(c, ts, r);
        self.out.push(c, ts, r);
    }
    fn notice(&mut self, c: &ConnMeta, ts: u64, n: Notice) {
        self.check.notice(c, ts, n);
        self.out.notice(c, ts, n);
    }
    fn flush(&mut self) {
        self.out.flush();
    }
}

/// The four connections: flow 3 is between two unwatched ports (the lower one is the server).
fn addrs(flow: u8) -> (SocketAddr, SocketAddr) {
    let c = |s: &str| s.parse::<SocketAddr>().unwrap();
    match flow & 3 {
        0 => (c("10.0.0.1:40000"), c("10.0.0.100:6379")),
        1 => (c("10.0.0.2:40001"), c("10.0.0.100:6379")),
        2 => (c("[fd00::3]:40002"), c("[fd00::64]:6379")),
        _ => (c("10.0.0.4:40003"), c("10.0.0.100:7000")),
    }
}

const FLOWS: usize = 4;
const ENTRY: usize = 160;
const ARG: usize = 24;
const PIECE: usize = 24;

fuzz_target!(|input: Input| {
    let cfg = if input.default_limits {
        PipelineConfig::default()
    } else {
        PipelineConfig {
            ports: vec![6379],
            session: SessionLimits {
                max_pending: 8,
                max_pending_bytes: 4096,
                resp: limits(1),
                record: RecordLimits {
                    args: 4,
                    arg_bytes: 8,
                    key_bytes: 8,
                    name_bytes: 6,
                    ..RecordLimits::default()
                },
            },
            stream: StreamLimits {
                max_out_of_order_bytes: 4096,
                max_out_of_order_segments: 8,
                max_hold_ns: 1_000_000_000,
            },
            flows: FlowLimits {
                max_flows: 3,
                max_mem_bytes: 1 << 20,
                min_idle_to_evict_ns: 0,
            },
            idle_timeout_ns: 5_000_000_000,
        }
    };
    let sl = &cfg.session;
    let sl_resp = &sl.resp;
    let session_bound = {
        let per_entry = sl.record.name_bytes
            + (sl.record.args + 1) * sl.record.arg_bytes.max(sl.record.key_bytes);
        let live = sl.max_pending + 1;
        size_of::<Session>()
            + request_mem_bound(sl_resp)
            + reply_mem_bound(sl_resp)
            + 4 * live.max(8) * ENTRY
            + 2 * (2 * live * per_entry + 4096)
            + 2 * (2 * live * sl.record.args * ARG + 4096 * ARG)
    };
    let max_seg = input
        .segs
        .iter()
        .map(|s| s.data.len() + usize::from(s.missing))
        .max()
        .unwrap_or(0);
    let st = &cfg.stream;
    let stream_bound = 512
        + 2 * (3 * (st.max_out_of_order_bytes + max_seg) + 16 * 1024)
        + 2 * (3 * st.max_out_of_order_segments + 2 * input.segs.len() + 8) * PIECE;
    // Flows, plus the table's slots and idle heap (sized for a few times the flows).
    let bound = FLOWS * (session_bound + 2 * stream_bound) + 64 * 1024;
    let mut p = Pipeline::new(cfg.clone());
    let mut sink = Tee {
        check: Checker::new(RecordBounds {
            keep_args: sl.record.args,
            keep_arg_bytes: sl.record.arg_bytes.max(sl.record.key_bytes),
            keep_name_bytes: sl.record.name_bytes,
            keep_reply_bytes: sl_resp.keep_reply_bytes,
        }),
        out: Outputs::new(Metrics::new()),
    };
    let mut ts = 1_700_000_000_000_000_000u64;
    for s in &input.segs {
        ts += u64::from(s.tsd) * 10_000_000;
        sink.check.now = ts;
        if s.ctl & 8 != 0 {
            p.tick(ts, &mut sink);
        } else {
            let (client, server) = addrs(s.ctl);
            let (src, dst) = if s.ctl & 4 == 0 {
                (client, server)
            } else {
                (server, client)
            };
            p.segment(
                &Segment {
                    ts_ns: ts,
                    src,
                    dst,
                    seq: s.seq,
                    flags: s.flags,
                    ack: s.ack,
                    data: &s.data,
                    missing: u32::from(s.missing),
                    capture: redis_observer::conn::Capture::unknown(),
                },
                &mut sink,
            );
        }
        assert!(p.flows() <= FLOWS);
        if !input.default_limits {
            assert!(p.mem() <= bound, "pipeline mem {} over {bound}", p.mem());
        }
    }
    p.finish(&mut sink);
    assert_eq!(p.flows(), 0);
    assert_eq!(
        sink.check.opened, sink.check.closed,
        "flows opened vs closed"
    );
    assert!(
        p.mem() <= 64 * 1024,
        "pipeline mem {} with no flows",
        p.mem()
    );
    sink.out.flush();
});
