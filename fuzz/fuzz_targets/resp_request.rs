//! RequestDecoder: the stream cut at fuzzer-chosen points (or with runs of bytes reported
//! missing). Every event must be well-formed under the limits, the decoder's memory bounded,
//! the commands' wire bytes within the stream, and — without missing bytes — the events must not
//! depend on how the stream was cut (whole, cut, byte by byte).
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_observer::resp::{RequestDecoder, RequestEvent};
use redis_observer_fuzz::{DecoderInput, ReqEv, limits, own_request, request_mem_bound};

fuzz_target!(|input: DecoderInput| {
    let lim = limits(input.preset);
    let bound = request_mem_bound(&lim);
    let make = || {
        if input.mid_stream {
            RequestDecoder::new_mid_stream(lim.clone())
        } else {
            RequestDecoder::new(lim.clone())
        }
    };
    let plan = input.plan();
    let max_ts = plan.len() as u64;

    // As planned: ts = the segment's index.
    let mut d = make();
    let mut got: Vec<ReqEv> = Vec::new();
    let mut stream_bytes = 0u64;
    for (ts, seg) in plan.iter().enumerate() {
        let ts = ts as u64;
        let mut on = |e: RequestEvent<'_>| got.push(own_request(e, &lim, max_ts));
        match *seg {
            Ok(b) => {
                stream_bytes += b.len() as u64;
                d.feed(ts, b, &mut on);
            }
            Err(n) => {
                stream_bytes += n;
                d.missing(ts, n, &mut on);
            }
        }
        assert!(d.mem() <= bound, "mem {} over {bound}", d.mem());
    }
    let wire: u64 = got
        .iter()
        .map(|e| match e {
            ReqEv::Cmd { wire, .. } => *wire,
            _ => 0,
        })
        .sum();
    assert!(
        wire <= stream_bytes,
        "commands span {wire} bytes of {stream_bytes}"
    );
    // After a protocol error nothing more is a command.
    if let Some(i) = got.iter().position(|e| matches!(e, ReqEv::Proto(_))) {
        assert_eq!(i, got.len() - 1, "events after a protocol error");
    }
    if input.missing_mode && plan.iter().any(|s| s.is_err()) {
        return;
    }
    for e in &got {
        if let ReqEv::Cmd { truncated, .. } = e {
            assert!(!truncated, "truncated without missing bytes");
        }
    }

    // Whole: one feed.
    let mut whole = Vec::new();
    let mut d = make();
    d.feed(0, &input.data, &mut |e| whole.push(own_request(e, &lim, 0)));
    assert!(d.mem() <= bound);
    assert_eq!(got, whole, "cut vs whole");

    // Byte by byte.
    if input.data.len() <= 4096 {
        let mut bytes = Vec::new();
        let mut d = make();
        let n = input.data.len() as u64;
        for (i, b) in input.data.iter().enumerate() {
            d.feed(i as u64, std::slice::from_ref(b), &mut |e| {
                bytes.push(own_request(e, &lim, n))
            });
        }
        assert_eq!(bytes, whole, "byte by byte vs whole");
    }
});
