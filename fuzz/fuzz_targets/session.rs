//! Session (per-connection pairing) fed arbitrary steps: client bytes, server bytes, missing
//! runs on either side, close. A checking sink validates every record (status and reply agree,
//! latency only with a reply and within the capture, arguments, key and name within the keep
//! limits and inside their buffer), pushes and notices; records never outnumber the commands a
//! twin decoder finds in the same client stream; records account for no more request bytes than
//! the client sent and, with pushes, no more reply bytes than the server sent; nothing comes out
//! after close; and the session's memory stays under a bound derived from its limits.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use redis_observer::{
    limits::RecordLimits,
    resp::{RequestDecoder, RequestEvent},
    session::{Session, SessionLimits},
};
use redis_observer_fuzz::{
    Checker, Rd, RecordBounds, limits, parsed_input, reply_mem_bound, request_mem_bound,
};

#[derive(Debug)]
enum Step {
    Client(Vec<u8>),
    Server(Vec<u8>),
    ClientMissing(u64),
    ServerMissing(u64),
    Close,
}

/// Layout: flags (bit 0: mid-stream, bits 1-2: decoder limits preset, bit 3: default session
/// limits, no memory bound), then steps: tag (bits 0-2: 0/5 client bytes, 1/6/7 server bytes,
/// 2 client missing, 3 server missing, 4 close; bits 3-7: ts step in µs), len u16 (missing
/// count: len, or (len & 0x7fff) << 12 with the top bit), then `len` bytes for byte steps.
#[derive(Debug)]
struct Input {
    mid_stream: bool,
    preset: u8,
    default_limits: bool,
    steps: Vec<(u64, Step)>,
}

fn missing(len: u16) -> u64 {
    if len & 0x8000 != 0 {
        u64::from(len & 0x7fff) << 12
    } else {
        u64::from(len)
    }
}

impl Input {
    fn parse(b: &[u8]) -> Self {
        let mut r = Rd(b);
        let flags = r.u8();
        let mut steps = Vec::new();
        while !r.is_empty() {
            let tag = r.u8();
            let len = r.u16();
            let dt = u64::from(tag >> 3) * 1000;
            let step = match tag & 7 {
                0 | 5 => Step::Client(r.take(usize::from(len)).to_vec()),
                2 => Step::ClientMissing(missing(len)),
                3 => Step::ServerMissing(missing(len)),
                4 => Step::Close,
                _ => Step::Server(r.take(usize::from(len)).to_vec()),
            };
            steps.push((dt, step));
        }
        Input {
            mid_stream: flags & 1 != 0,
            preset: (flags >> 1) & 3,
            default_limits: flags & 8 != 0,
            steps,
        }
    }
}

parsed_input!(Input);

/// Size of a pending entry (session::pending::Entry, 112 bytes today) with room to spare; the
/// pending and transaction queues each reach twice `max_pending` entries of capacity.
const ENTRY: usize = 160;
/// Size of a RecordArg.
const ARG: usize = 24;

fuzz_target!(|input: Input| {
    let resp = limits(input.preset);
    let lim = if input.default_limits {
        SessionLimits {
            resp: resp.clone(),
            ..SessionLimits::default()
        }
    } else {
        SessionLimits {
            max_pending: 8,
            max_pending_bytes: 4096,
            resp: resp.clone(),
            record: RecordLimits {
                args: 4,
                arg_bytes: 8,
                key_bytes: 8,
                name_bytes: 6,
                ..RecordLimits::default()
            },
        }
    };
    let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let server: SocketAddr = "10.0.0.2:6379".parse().unwrap();
    let mut s = Session::new(
        redis_observer::conn::ConnMeta::new(client, server),
        &lim,
        input.mid_stream,
    );
    let mut twin = if input.mid_stream {
        RequestDecoder::new_mid_stream(resp.clone())
    } else {
        RequestDecoder::new(resp.clone())
    };
    let mut commands = 0u64;
    let mut count = |e: RequestEvent<'_>| {
        // A request the server refuses is logged as one record too.
        if matches!(
            e,
            RequestEvent::Command(_) | RequestEvent::ProtocolError(..)
        ) {
            commands += 1;
        }
    };
    let mut sink = Checker::new(RecordBounds {
        keep_args: lim.record.args,
        keep_arg_bytes: lim.record.arg_bytes.max(lim.record.key_bytes),
        keep_name_bytes: lim.record.name_bytes,
        keep_reply_bytes: resp.keep_reply_bytes,
    });
    // Per entry: unknown name, kept args and the key; their spans.
    let per_entry = lim.record.name_bytes
        + (lim.record.args + 1) * lim.record.arg_bytes.max(lim.record.key_bytes);
    let live = lim.max_pending + 1;
    let bound = size_of::<Session>()
        + request_mem_bound(&resp)
        + reply_mem_bound(&resp)
        + 4 * live.max(8) * ENTRY
        // Fifo arenas: live data, as much dead space again plus 4096 before compaction, doubled.
        + 2 * (2 * live * per_entry + 4096)
        + 2 * (2 * live * lim.record.args * ARG + 4096 * ARG);
    let (mut cbytes, mut sbytes) = (0u64, 0u64);
    let mut closed = false;
    let mut ts = 1_000_000u64;
    for (dt, step) in &input.steps {
        ts += dt;
        sink.now = ts;
        match step {
            Step::Client(b) => {
                cbytes += b.len() as u64;
                twin.feed(ts, b, &mut count);
                s.client_bytes(ts, b, &mut sink);
            }
            Step::Server(b) => {
                sbytes += b.len() as u64;
                s.server_bytes(ts, b, &mut sink);
            }
            Step::ClientMissing(n) => {
                cbytes += n;
                twin.missing(ts, *n, &mut count);
                s.client_missing(ts, *n, &mut sink);
            }
            Step::ServerMissing(n) => {
                sbytes += n;
                s.server_missing(ts, *n, &mut sink);
            }
            Step::Close => {
                s.close(ts, &mut sink);
                closed = true;
                sink.sealed = true;
            }
        }
        if !input.default_limits {
            assert!(s.mem() <= bound, "session mem {} over {bound}", s.mem());
        }
    }
    if !closed {
        s.close(ts, &mut sink);
        sink.sealed = true;
    }
    // Closing twice produces nothing (the sink is sealed).
    s.close(ts, &mut sink);
    assert!(
        sink.records <= commands,
        "{} records for {commands} commands",
        sink.records
    );
    assert!(
        sink.req_bytes <= cbytes,
        "records span {} request bytes of {cbytes}",
        sink.req_bytes
    );
    assert!(
        sink.resp_bytes + sink.push_bytes <= sbytes,
        "records and pushes span {} + {} reply bytes of {sbytes}",
        sink.resp_bytes,
        sink.push_bytes
    );
});
