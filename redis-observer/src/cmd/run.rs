//! `redis-observer run`: the live daemon.
//!
//! One task owns the capture, the pipeline and the outputs: it drains the ring buffer (woken by
//! the kernel past a fill threshold, otherwise every [`DRAIN_TICK`]), feeds each event through
//! reassembly and pairing, and hands log lines to the writer thread through a bounded queue. The
//! ring buffer itself is the hand-off from the kernel; nothing here blocks on I/O.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    analytics::{self, Analytics, TopConfig},
    budget::Budget,
    capture::{self, Capture, CaptureConfig},
    cli::{LogFormat, OutputArgs, RunArgs, Switch},
    command_log::{Format, Target},
    conn::IfaceNames,
    metrics::Metrics,
    outputs::{self, LogMode, Outputs, TopSink},
    pipeline::{Pipeline, PipelineConfig},
    privilege,
    record::Sink as _,
};

/// `--top-addr` when not given.
const DEFAULT_TOP_ADDR: &str = "127.0.0.1:9380";
/// How often the reader drains the ring when the kernel does not wake it.
const DRAIN_TICK: Duration = Duration::from_millis(2);
/// Housekeeping: idle connections, held out-of-order data.
const HOUSEKEEPING: Duration = Duration::from_millis(500);
/// Kernel counters into metrics (a handful of per-CPU map lookups).
const KERNEL_COUNTERS: Duration = Duration::from_millis(100);

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    // The analytics get a sixth of the limit: as many servers' tables as that holds.
    let top_cfg =
        (args.top == Switch::On).then(|| TopConfig::default().within(args.out.memory_limit / 6));
    let top_bytes = top_cfg
        .as_ref()
        .map_or(0, |c| Analytics::reserve_bytes(c) as u64);
    let budget = Budget::split(args.out.memory_limit, args.ring_bytes, top_bytes)?;
    let config = CaptureConfig {
        ifaces: args.ifaces.clone(),
        ports: args.out.ports.clone(),
        mode: args.attach,
        capture_bytes: u32::try_from(args.capture_bytes).context("--capture-bytes too large")?,
        ring_bytes: u32::try_from(args.ring_bytes).context("--ring-bytes too large")?,
        debug: args.debug,
        ..CaptureConfig::default()
    };
    // One thread runs the capture loop, its timer and the ring's readiness, and the (rarely
    // used) HTTP endpoint: no cross-thread wakeup per drain tick. The log writer has its own
    // thread.
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")
    };
    if args.dump_events {
        let cap = Capture::start(config)?;
        return runtime()?.block_on(dump_events(cap));
    }
    let listening = capture::listening_ports(&config.ports);
    for p in &config.ports {
        if !listening.contains(p) {
            tracing::warn!(
                port = p,
                "nothing is listening on this port here: no Redis traffic will be seen until a server does \
                 (try `cargo xtask demo` for a throwaway server with traffic)"
            );
        }
    }
    // Everything that needs privileges or can fail on the operator's input happens here, on the
    // only thread: bind the endpoint, open the log, load and attach. Then capabilities are
    // dropped (they are per thread: no other thread exists yet) and the runtime starts.
    let listener = std::net::TcpListener::bind(args.metrics_addr)
        .with_context(|| format!("binding the metrics endpoint {}", args.metrics_addr))?;
    listener.set_nonblocking(true)?;
    let top_listener = match (args.top, args.top_addr) {
        (Switch::Off, _) => None,
        (Switch::On, Some(addr)) => Some(
            std::net::TcpListener::bind(addr)
                .with_context(|| format!("binding the top endpoint {addr}"))?,
        ),
        (Switch::On, None) => match std::net::TcpListener::bind(DEFAULT_TOP_ADDR) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(addr = DEFAULT_TOP_ADDR, error = %e, "the /top endpoint is off: its default address is taken (give --top-addr)");
                None
            }
        },
    };
    if let Some(l) = &top_listener {
        l.set_nonblocking(true)?;
    }
    let target = open_log(&args.out)?;
    let mut cap = Capture::start(config)?;
    // After the kernel hook is attached (a connection opened meanwhile is in its map) and
    // before capabilities go (other users' sockets in /proc are readable only until then).
    let resolver = crate::attribution::Resolver::new(
        cap.take_attribution_maps(),
        cap.clock(),
        &args.out.ports,
    );
    if args.keep_privileges {
        tracing::info!("keeping all capabilities (--keep-privileges)");
    } else {
        let keep: &[u32] = if cap.needs_net_admin_at_exit() {
            &[privilege::CAP_NET_ADMIN]
        } else {
            &[]
        };
        match privilege::drop_all_but(keep) {
            Ok(left) => tracing::info!(
                remaining = ?left.iter().map(|&c| privilege::name(c)).collect::<Vec<_>>(),
                "dropped capabilities after attaching"
            ),
            Err(e) => tracing::warn!(error = %e, "could not drop capabilities"),
        }
    }
    runtime()?.block_on(run_async(
        args,
        (budget, top_cfg.unwrap_or_default()),
        cap,
        listener,
        top_listener,
        target,
        resolver,
    ))
}

pub fn format(f: LogFormat) -> Format {
    match f {
        LogFormat::Json => Format::Json,
        LogFormat::Text => Format::Text,
    }
}

/// The pipeline `run` and `replay` both use, from the shared arguments and the memory budget.
pub fn pipeline_config(out: &OutputArgs, budget: &Budget) -> PipelineConfig {
    let mut cfg = PipelineConfig {
        ports: out.ports.clone(),
        idle_timeout_ns: u64::try_from(out.idle_timeout.as_nanos()).unwrap_or(u64::MAX),
        ..PipelineConfig::default()
    };
    cfg.flows.max_flows = budget.max_flows;
    cfg.flows.max_mem_bytes = usize::try_from(budget.flows).unwrap_or(usize::MAX);
    cfg.session.max_pending_bytes = usize::try_from(budget.pending_per_conn).unwrap_or(usize::MAX);
    cfg
}

/// The command log's destination, opened before anything is attached so a bad path fails early.
pub fn open_log(out: &OutputArgs) -> anyhow::Result<Target> {
    Target::open(&out.log, out.log_max_size, out.log_keep)
        .with_context(|| format!("opening the log {:?}", out.log))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

async fn run_async(
    args: RunArgs,
    (budget, top_cfg): (Budget, TopConfig),
    mut cap: Capture,
    listener: std::net::TcpListener,
    top_listener: Option<std::net::TcpListener>,
    target: Target,
    resolver: crate::attribution::Resolver,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener).context("metrics endpoint")?;
    let metrics = Metrics::new();
    let registry = metrics.registry();
    resolver
        .metrics()
        .register(&registry)
        .context("registering the attribution metrics")?;
    // The analytics answer `/top` from the pipeline's thread, at each flush.
    let top_addr = top_listener.as_ref().and_then(|l| l.local_addr().ok());
    let (top, top_http) = match top_listener {
        Some(l) => {
            let l = tokio::net::TcpListener::from_std(l).context("top endpoint")?;
            let (tx, rx) = analytics::http::channel();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(analytics::http::serve(l, tx, async move {
                let _ = stopped.await;
            }));
            let sink = TopSink::new(top_cfg).serving(rx);
            (Some(sink), Some((stop, task)))
        }
        None => (None, None),
    };
    // SIGHUP reopens the log file (logrotate, systemd reload); with stdout it is a no-op, but it
    // must never terminate the daemon.
    let (mut outputs, reopener) = outputs::build(&args.out, metrics, target, LogMode::Queued, top)
        .context("starting the log writer")?;
    tokio::spawn(reopener.on_sighup().context("SIGHUP handler")?);

    let health = Arc::new(AtomicBool::new(false));
    let (stop_http, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(crate::metrics::serve(
        listener,
        registry,
        health.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));

    tracing::info!(ifaces = ?args.ifaces, ports = ?args.out.ports, mode = ?args.attach, metrics = %args.metrics_addr, top = ?top_addr, "attached");
    health.store(true, Ordering::Relaxed);

    outputs.metrics.set_memory_budget(&budget);
    tracing::info!(
        limit_mib = budget.limit >> 20,
        connections_mib = budget.flows >> 20,
        max_connections = budget.max_flows,
        "memory budget"
    );
    let mut config = pipeline_config(&args.out, &budget);
    if top_http.is_some() {
        analytics::with_keys(&mut config);
    }
    let mut pipeline = Pipeline::new(config);
    pipeline.set_attributor(Box::new(resolver));
    let mut ifaces = IfaceNames::default();
    for i in cap.ifaces() {
        ifaces.set(i.index, &i.name);
    }
    if let Some(dir) = &args.dump_streams {
        pipeline.set_tap(crate::debug::stream_dump(dir.clone()));
    }
    let clock = cap.clock();
    let stop = Arc::new(AtomicBool::new(false));
    spawn_stop_on_signals(stop.clone())?;
    let mut bad_records = crate::events::MalformedRecords::default();
    let mut last_housekeeping = Instant::now();
    let mut last_counters = Instant::now();
    let capture_only = args.capture_only;
    let mut handle =
        |rec: &[u8], pipeline: &mut Pipeline, outputs: &mut Outputs| match capture::parse_record(
            rec,
        )
        .and_then(|(h, d)| capture::to_segment(&h, d, clock, &ifaces))
        {
            Ok(_) if capture_only => {}
            Ok(seg) => pipeline.segment(&seg, outputs),
            Err(e) => bad_records.emit(&e, &mut outputs.metrics),
        };
    let result: anyhow::Result<()> = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        if let Err(e) = cap
            .drain(DRAIN_TICK, |rec| handle(rec, &mut pipeline, &mut outputs))
            .await
        {
            break Err(e);
        }
        outputs.flush();
        if last_counters.elapsed() >= KERNEL_COUNTERS {
            last_counters = Instant::now();
            outputs.kernel_counters(&cap.counters());
        }
        if last_housekeeping.elapsed() >= HOUSEKEEPING {
            last_housekeeping = Instant::now();
            let now = now_ns();
            pipeline.tick(now, &mut outputs);
            outputs.metrics.set_flows_memory(pipeline.mem());
            outputs.tick(now);
        }
    };
    // Whatever the kernel already captured is still decoded before we stop.
    cap.drain_now(|rec| handle(rec, &mut pipeline, &mut outputs));
    outputs.flush();
    health.store(false, Ordering::Relaxed);
    outputs.kernel_counters(&cap.counters());
    let detached = cap.detach();
    drop(cap);
    // Connections are still open: their pending commands are not "unanswered", so they are not
    // closed out (replay, at the end of a capture, does close them).
    let (_metrics, log_result) = outputs.finish();
    let _ = stop_http.send(());
    let _ = http.await;
    if let Some((stop, task)) = top_http {
        let _ = stop.send(());
        let _ = task.await;
    }
    detached.context("detaching")?;
    log_result.context("flushing the command log")?;
    tracing::info!(connections = pipeline.flows(), "detached and flushed");
    result
}

/// Sets `stop` on SIGINT or SIGTERM (checked by the capture loop at least every drain tick).
fn spawn_stop_on_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        stop.store(true, Ordering::Relaxed);
    });
    Ok(())
}

/// `--dump-events`: one line per kernel event, no decoding (debugging the capture). Payload
/// bytes are never printed (they may hold secrets): their length and FNV-1a hash identify them.
async fn dump_events(mut cap: Capture) -> anyhow::Result<()> {
    use std::io::Write as _;
    tracing::info!("attached; dumping events");
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
        out.flush()?;
    }
    cap.drain_now(|rec| dump_event(&mut out, rec, clock));
    out.flush()?;
    cap.detach()?;
    tracing::info!(counters = ?cap.counters(), "detached");
    Ok(())
}

fn dump_event(out: &mut impl std::io::Write, rec: &[u8], clock: capture::Clock) {
    static NO_NAMES: IfaceNames = IfaceNames::new();
    match capture::parse_record(rec)
        .and_then(|(h, d)| capture::to_segment(&h, d, clock, &NO_NAMES).map(|s| (h, s)))
    {
        Ok((h, s)) => {
            let _ = writeln!(
                out,
                "{} {} -> {} seq={} flags={:#04x} len={} off={} payload={} missing={} fnv={:016x}",
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
            );
        }
        Err(e) => tracing::warn!(error = %e, "bad ring-buffer record"),
    }
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
