//! `redis-observer run`: the live daemon.

use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    capture::{self, Capture, CaptureConfig},
    cli::RunArgs,
};

/// How often the reader drains the ring when the kernel does not wake it.
const DRAIN_TICK: Duration = Duration::from_millis(2);

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> anyhow::Result<()> {
    let config = CaptureConfig {
        ifaces: args.ifaces.clone(),
        ports: args.out.ports.clone(),
        mode: args.attach,
        capture_bytes: u32::try_from(args.capture_bytes).context("--capture-bytes too large")?,
        ring_bytes: u32::try_from(args.ring_bytes).context("--ring-bytes too large")?,
        debug: args.debug,
        ..CaptureConfig::default()
    };
    let listening = capture::listening_ports(&config.ports);
    for p in &config.ports {
        if !listening.contains(p) {
            tracing::warn!(
                port = p,
                "nothing is listening on this port here: no Redis traffic will be seen until a server does (start one with `redis-server --port {p}`)"
            );
        }
    }
    let mut cap = Capture::start(config)?;
    tracing::info!(ifaces = ?args.ifaces, ports = ?args.out.ports, mode = ?args.attach, "attached");
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let clock = cap.clock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            r = cap.drain(DRAIN_TICK, |rec| dump_event(&mut out, rec, clock)) => { r?; }
        }
        use std::io::Write as _;
        out.flush()?;
    }
    cap.drain_now(|rec| dump_event(&mut out, rec, clock));
    cap.detach()?;
    tracing::info!(counters = ?cap.counters(), "detached");
    Ok(())
}

fn dump_event(out: &mut impl std::io::Write, rec: &[u8], clock: capture::Clock) {
    match capture::parse_record(rec)
        .and_then(|(h, d)| capture::to_segment(&h, d, clock).map(|s| (h, s)))
    {
        Ok((h, s)) => {
            let _ = writeln!(
                out,
                "{} {} -> {} seq={} flags={:#04x} len={} off={} payload={} missing={} fnv={:016x} {:?}",
                s.ts_ns,
                s.src,
                s.dst,
                s.seq,
                s.flags,
                s.data.len(),
                h.offset,
                h.payload_len,
                s.missing,
                fnv1a(s.data),
                String::from_utf8_lossy(&s.data[..s.data.len().min(64)])
            );
        }
        Err(e) => tracing::warn!(error = %e, "bad ring-buffer record"),
    }
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
