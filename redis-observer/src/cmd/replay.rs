//! `redis-observer replay FILE`: the live pipeline over a pcap/pcapng capture, no privileges.

use std::{fs::File, io::BufReader};

use anyhow::Context as _;

use crate::{
    analytics::{self, TopConfig},
    cli::ReplayArgs,
    cmd::run::{open_log, pipeline_config},
    metrics::Metrics,
    outputs::{self, LogMode, TopSink},
    pipeline::Pipeline,
    record::Sink as _,
    replay::PacketReader,
};

/// Idle connections are closed on the capture's own clock, checked this often.
const TICK_NS: u64 = 1_000_000_000;

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let file =
        File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    let mut reader = PacketReader::new(BufReader::with_capacity(1 << 20, file))
        .with_context(|| format!("reading {}", args.file.display()))?;
    let top_cfg = TopConfig::default().within(args.out.memory_limit / 6);
    let top_bytes = if args.top.is_some() {
        analytics::Analytics::reserve_bytes(&top_cfg) as u64
    } else {
        0
    };
    let top = args
        .top
        .map(|n| TopSink::new(top_cfg).printing(usize::from(n)));
    let budget = crate::budget::Budget::split(args.out.memory_limit, 0, top_bytes)?;
    let mut config = pipeline_config(&args.out, &budget);
    if top.is_some() {
        analytics::with_keys(&mut config);
    }
    let (mut outputs, _reopener) = outputs::build(
        &args.out,
        Metrics::new(),
        open_log(&args.out)?,
        LogMode::Direct,
        top,
    )?;
    outputs.metrics.set_memory_budget(&budget);
    let mut pipeline = Pipeline::new(config);
    let mut next_tick = 0u64;
    let result = loop {
        match reader.next_segment() {
            Ok(Some(seg)) => {
                let ts = seg.ts_ns;
                pipeline.segment(&seg, &mut outputs);
                if ts >= next_tick {
                    if next_tick != 0 {
                        pipeline.tick(ts, &mut outputs);
                        outputs.tick(ts);
                    }
                    next_tick = ts.saturating_add(TICK_NS);
                }
            }
            Ok(None) => break Ok(()),
            // A damaged file: everything read so far still counts.
            Err(e) => break Err(e),
        }
    };
    // The capture ended: connections still open are closed out (pending → unanswered).
    pipeline.finish(&mut outputs);
    let stats = *reader.stats();
    outputs.metrics.set_packets_total(stats.packets);
    if stats.file_truncated {
        tracing::warn!("the capture file ends in the middle of a packet record");
    }
    if stats.skipped_bytes > 0 {
        tracing::warn!(
            bytes = stats.skipped_bytes,
            places = stats.resyncs,
            "damaged capture: bytes between plausible records were skipped"
        );
    }
    if stats.unsupported_link > 0 {
        tracing::warn!(packets = stats.unsupported_link, link_type = ?stats.last_unsupported_link_type, "packets with an unsupported link type were skipped");
    }
    tracing::info!(
        packets = stats.packets,
        tcp_segments = stats.tcp_segments,
        truncated_packets = stats.truncated_packets,
        fragments = stats.fragments,
        unparsable = stats.unparsable,
        "replay done"
    );
    let (metrics, log_result) = outputs.finish();
    log_result.context("writing the command log")?;
    if let Some(path) = &args.metrics_out {
        std::fs::write(path, metrics.encode_text())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    result.with_context(|| format!("reading {}", args.file.display()))?;
    // Everything readable was replayed; the exit status still says the capture was damaged.
    if stats.skipped_bytes > 0 {
        anyhow::bail!(
            "{}: damaged capture, {} bytes skipped in {} places",
            args.file.display(),
            stats.skipped_bytes,
            stats.resyncs
        );
    }
    Ok(())
}
