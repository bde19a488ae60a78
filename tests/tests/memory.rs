//! Memory under floods, the way it is deployed (root, real redis-server on loopback).
//!
//! The daemon runs at its default `--memory-limit` inside a memory cgroup with the shipped
//! DaemonSet's `limits.memory: 256Mi`, so the kernel's OOM killer is the judge. Each flood checks:
//! - no OOM kill, and the daemon's peak RSS stays under its configured limit;
//! - `/healthz` answers throughout;
//! - a well-behaved client on another connection is counted exactly (INFO commandstats);
//! - a client blocked in `BLPOP queue 0`, quiet for longer than `--idle-timeout`, keeps its
//!   connection and gets its reply paired (a connection waiting on the server is not idle, and a
//!   flood does not push it out);
//! - what was dropped is counted (flows evicted by reason, commands lost, refused flows).

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{JoinHandle, sleep},
    time::{Duration, Instant},
};

use tests::*;

/// The DaemonSet's `limits.memory`.
const CGROUP_LIMIT: u64 = 256 << 20;
/// The daemon's default `--memory-limit` (MiB): its RSS must stay under it.
const MEMORY_LIMIT_MIB: u64 = 192;
/// INCRs the well-behaved client sends, spread over the flood.
const GOOD_INCRS: u64 = 500;

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

struct Rig {
    redis: Redis,
    obs: Observer,
    cg: MemCgroup,
    addr: SocketAddr,
    /// Highest `/healthz` latency seen by the prober, ms; failures counted.
    health_fail: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    prober: Option<JoinHandle<()>>,
    log: std::path::PathBuf,
}

impl Rig {
    /// Also watching `extra_if` when given.
    fn start(name: &str, idle_timeout: &str, extra_if: Option<&str>) -> Rig {
        let redis = Redis::start(&[]);
        let cg = MemCgroup::new(name, CGROUP_LIMIT);
        let port = redis.port.to_string();
        let log = temp_dir(name).join("commands.jsonl");
        let log = log.to_str().expect("utf-8").to_owned();
        let mut args = vec![
            "-i",
            "lo",
            "-p",
            &port,
            "--log",
            &log,
            "--idle-timeout",
            idle_timeout,
        ];
        if let Some(i) = extra_if {
            args.extend(["-i", i]);
        }
        let obs = Observer::start_in_cgroup(&args, &cg);
        let (health_fail, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let prober = {
            let (fail, stop, addr) = (health_fail.clone(), stop.clone(), obs.metrics_addr.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if !http_get(&addr, "/healthz").is_some_and(|b| b.starts_with("ok")) {
                        fail.fetch_add(1, Ordering::Relaxed);
                    }
                    sleep(Duration::from_millis(200));
                }
            })
        };
        Rig {
            addr: format!("127.0.0.1:{}", redis.port).parse().expect("addr"),
            redis,
            obs,
            cg,
            health_fail,
            stop,
            prober: Some(prober),
            log: log.into(),
        }
    }

    fn pid(&self) -> u32 {
        self.obs.proc.child.id()
    }

    /// Alive, never OOM-killed, peak RSS under the limit, `/healthz` never failed.
    fn assert_within_budget(&mut self, what: &str) {
        if let Ok(Some(st)) = self.obs.proc.child.try_wait() {
            panic!(
                "the daemon exited ({st}) during {what} (OOM kills in its cgroup: {}); stderr:\n{}",
                self.cg.oom_kills(),
                self.obs.stderr()
            );
        }
        assert_eq!(self.cg.oom_kills(), 0, "OOM kill during {what}");
        let hwm = status_kb(self.pid(), "VmHWM:") / 1024;
        println!(
            "[{what}] daemon peak RSS {hwm} MiB (limit {MEMORY_LIMIT_MIB} MiB); cgroup peak {} \
             MiB (limit {} MiB)",
            self.cg.peak_bytes() >> 20,
            CGROUP_LIMIT >> 20
        );
        assert!(
            hwm < MEMORY_LIMIT_MIB,
            "daemon peak RSS {hwm} MiB during {what}, limit {MEMORY_LIMIT_MIB} MiB"
        );
        assert_eq!(
            self.health_fail.load(Ordering::Relaxed),
            0,
            "/healthz failed during {what}"
        );
    }

    fn metrics(&self) -> Metrics {
        self.obs.metrics()
    }

    /// Waits (60 s at most) until the daemon's segment counter stands still across two readings
    /// 600 ms apart (kernel counters are published every 100 ms).
    fn quiesce(&self) {
        let segs = |m: &Metrics| m.sum("redis_observer_segments_total", &[]);
        let mut last = segs(&self.metrics());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            sleep(Duration::from_millis(600));
            let now = segs(&self.metrics());
            if now == last {
                return;
            }
            assert!(Instant::now() < deadline, "the daemon never went quiet");
            last = now;
        }
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(p) = self.prober.take() {
            let _ = p.join();
        }
        self.obs.stop();
    }
}

fn m(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    metrics.sum(name, labels) as u64
}

/// `GOOD_INCRS` INCRs, one at a time, spread over about `over`.
fn good_client(addr: SocketAddr, over: Duration) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let pause = over / (GOOD_INCRS as u32 / 10);
        let mut c = RawClient::connect(addr);
        for i in 0..GOOD_INCRS {
            c.call(&[b"INCR", b"good:counter"]);
            if i % 10 == 0 {
                sleep(pause);
            }
        }
    })
}

/// A worker blocked in `BLPOP queue:<tag> 0`; returns its reply once something is pushed.
fn blocked_worker(addr: SocketAddr, queue: &'static str) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        s.write_all(&encode(&[b"BLPOP", queue.as_bytes(), b"0"]))
            .expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while count_replies(&got) < 1 {
            let n = s.read(&mut buf).expect("BLPOP reply");
            assert!(n > 0, "connection closed while blocked");
            got.extend_from_slice(&buf[..n]);
        }
        got
    })
}

/// A sink nothing answers from: a veth pair whose far end sits in a namespace of the test's own
/// that neither owns nor forwards `TARGET`, routed through it from here. Packets sent there
/// leave through `host_if` (where the daemon sees them) and vanish: no SYN-ACK, no RST.
struct Blackhole {
    _ns: NetNs,
    host_if: String,
    target: [u8; 4],
}

impl Blackhole {
    fn new() -> Blackhole {
        let ns = NetNs::new();
        let host_if = unique("vbh");
        let far_if = unique("vbn");
        // A /30 of the benchmarking range (RFC 2544) per test process.
        let k = (std::process::id() % 60) as u8 * 4;
        let (near, far) = (format!("198.18.{k}.1"), format!("198.18.{k}.2"));
        let ip = |args: &[&str]| sh(std::process::Command::new("ip").args(args));
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &far_if,
        ]);
        ip(&["link", "set", &far_if, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{near}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{far}/30"),
            "dev",
            &far_if,
        ]);
        ip(&["-n", &ns.name, "link", "set", &far_if, "up"]);
        let _ = std::fs::write(format!("/proc/sys/net/ipv4/conf/{host_if}/rp_filter"), "0");
        let target = [198, 19, k, 1];
        ip(&["route", "add", &format!("198.19.{k}.0/30"), "via", &far]);
        Blackhole {
            _ns: ns,
            host_if,
            target,
        }
    }
}

/// `n` raw SYNs carrying `payload(i)` to `dst`:`port` from spoofed sources 198.20.x.y (so each
/// is a new connection), paced to about `per_sec`.
fn syn_data_flood(
    dst: [u8; 4],
    port: u16,
    n: usize,
    per_sec: u64,
    payload: impl Fn(usize) -> Vec<u8>,
) {
    let raw = RawSyns::new();
    let t0 = Instant::now();
    for i in 0..n {
        let src = [198u8, 20, (i / 250 % 250) as u8, (i % 250) as u8 + 1];
        let sport = 1024 + (i / 62_500) as u16 * 7 + (i % 7) as u16;
        let seq = (i as u32).wrapping_mul(2_654_435_761);
        raw.send(src, sport, dst, port, seq, &payload(i));
        if i % 1000 == 999 {
            let due = Duration::from_secs_f64((i + 1) as f64 / per_sec as f64);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                sleep(wait);
            }
        }
    }
}

/// Polls until `check` passes (20 s), else panics with its last complaint.
fn settle(what: &str, rig: &Rig, check: impl Fn(&Metrics) -> Result<(), String>) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m1 = rig.metrics();
        match check(&m1) {
            Ok(()) => return m1,
            Err(e) if Instant::now() > deadline => {
                let own: Vec<String> =
                    m1.0.iter()
                        .filter(|(k, v)| **v != 0.0 && k.starts_with("redis_observer_"))
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect();
                panic!(
                    "{what}: {e}\nobserver metrics:\n{}\nstderr:\n{}",
                    own.join("\n"),
                    rig.obs.stderr()
                )
            }
            Err(_) => sleep(Duration::from_millis(200)),
        }
    }
}

fn delta(m0: &Metrics, m1: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    m(m1, name, labels).saturating_sub(m(m0, name, labels))
}

/// 120,000 spoofed SYNs, each carrying a 1 KiB SET to the Redis port of an address nothing
/// answers from (a new one-sided connection each, with a command that is never answered), while
/// real clients use the real server; the default limit inside a 256 MiB cgroup.
#[test]
fn spoofed_syn_data_flood_stays_within_the_memory_limit() {
    const N: usize = 120_000;
    let _g = e2e_lock();
    let hole = Blackhole::new();
    let mut rig = Rig::start("mem-syn-data", "5s", Some(&hole.host_if));
    let (m0, s0) = (rig.metrics(), rig.redis.commandstats());
    let worker = blocked_worker(rig.addr, "mem:queue:a");
    sleep(Duration::from_millis(300));
    let good = good_client(rig.addr, Duration::from_secs(10));
    let value = vec![b'v'; 1000];
    let t0 = Instant::now();
    syn_data_flood(hole.target, rig.redis.port, N, 12_000, |i| {
        encode(&[b"SET", format!("spoof:{i}").as_bytes(), &value])
    });
    let secs = t0.elapsed().as_secs_f64();
    good.join().expect("good client");
    sleep(Duration::from_secs(1));
    rig.redis.cli(&["LPUSH", "mem:queue:a", "job-1"]);
    let reply = worker.join().expect("blocked worker");
    assert_eq!(
        reply,
        b"*2\r\n$11\r\nmem:queue:a\r\n$5\r\njob-1\r\n".to_vec(),
        "BLPOP reply"
    );
    let s1 = rig.redis.commandstats();
    let redis = s0.delta(&s1);
    let m1 = settle("after the SYN+data flood", &rig, |m1| {
        let incr = delta(
            &m0,
            m1,
            "redis_commands_total",
            &[("command", "INCR"), ("status", "ok")],
        );
        let want = redis.get("INCR").copied().unwrap_or(0);
        if incr != want || want != GOOD_INCRS {
            return Err(format!(
                "INCR ok {incr}, Redis ran {want} (sent {GOOD_INCRS})"
            ));
        }
        let blpop = delta(
            &m0,
            m1,
            "redis_commands_total",
            &[("command", "BLPOP"), ("status", "ok")],
        );
        if blpop != 1 {
            return Err(format!("BLPOP ok {blpop}, expected 1 (the blocked worker)"));
        }
        // Every spoofed connection left the table evicted (one-sided, or idle once the flood
        // ended) or was refused: none silently.
        let gone = delta(&m0, m1, "redis_observer_flows_evicted_total", &[])
            + delta(&m0, m1, "redis_observer_flows_refused_total", &[]);
        if gone < N as u64 {
            return Err(format!(
                "spoofed connections evicted or refused {gone}, sent {N}"
            ));
        }
        Ok(())
    });
    // Each spoofed SET is in the log, unanswered (its connection was let go), unless its
    // connection was refused (counted above).
    let log = std::fs::read_to_string(&rig.log).expect("log");
    let unanswered = log
        .lines()
        .filter(|l| l.contains("\"command\":\"SET\"") && l.contains("\"status\":\"unanswered\""))
        .count() as u64;
    let refused = delta(&m0, &m1, "redis_observer_flows_refused_total", &[]);
    assert!(
        unanswered + refused >= N as u64,
        "spoofed SETs logged unanswered {unanswered} + refused connections {refused} < {N}"
    );
    let one_sided = delta(
        &m0,
        &m1,
        "redis_observer_flows_evicted_total",
        &[("reason", "one_sided")],
    );
    let busy = delta(
        &m0,
        &m1,
        "redis_observer_flows_evicted_total",
        &[("reason", "busy")],
    );
    let limit = delta(
        &m0,
        &m1,
        "redis_observer_flows_evicted_total",
        &[("reason", "limit")],
    );
    println!(
        "[mem-syn-data] {N} SYN+data in {secs:.1} s: evicted one_sided {one_sided}, limit \
         {limit}, busy {busy}; refused {}; flows memory now {} MiB of {} MiB",
        delta(&m0, &m1, "redis_observer_flows_refused_total", &[]),
        m(&m1, "redis_observer_memory_bytes", &[("part", "flows")]) >> 20,
        m(
            &m1,
            "redis_observer_memory_budget_bytes",
            &[("part", "flows")]
        ) >> 20,
    );
    assert!(
        one_sided > 0,
        "the flood never reached the connection budget"
    );
    assert_eq!(busy, 0, "a connection waiting on the server was evicted");
    rig.assert_within_budget("SYN+data flood");
    rig.finish();
}

/// 16 clients pipeline `GET`s without reading replies while Redis is paused (it runs nothing), so every command waits on the server: the flood of unanswered
/// commands is bounded by the per-connection and total budgets; once Redis resumes, everything
/// is answered and what the observer let go is counted.
#[test]
fn unanswered_command_flood_stays_within_the_memory_limit() {
    const CLIENTS: usize = 16;
    const PER_CLIENT: usize = 250_000;
    let _g = e2e_lock();
    let mut rig = Rig::start("mem-unanswered", "2s", None);
    let (m0, s0) = (rig.metrics(), rig.redis.commandstats());
    let worker = blocked_worker(rig.addr, "mem:queue:b");
    sleep(Duration::from_millis(300));
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut s = TcpStream::connect(rig.addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(60)))
                .expect("timeout");
            // One answered command first: a real, two-sided connection.
            s.write_all(&encode(&[b"PING"])).expect("write");
            let mut r = [0u8; 7];
            s.read_exact(&mut r).expect("PONG");
            s
        })
        .collect();
    // CLIENT PAUSE ALL holds every client, its own connection included (no UNPAUSE can get
    // through): the pause ends by itself.
    rig.redis.cli(&["CLIENT", "PAUSE", "10000", "ALL"]);
    let paused = Instant::now();
    let mut batch = Vec::new();
    for i in 0..1000 {
        batch.extend(encode(&[b"GET", format!("flood:key:{i:06}").as_bytes()]));
    }
    let t0 = Instant::now();
    let writers: Vec<JoinHandle<TcpStream>> = clients
        .drain(..)
        .map(|mut s| {
            let batch = batch.clone();
            std::thread::spawn(move || {
                for _ in 0..PER_CLIENT / 1000 {
                    s.write_all(&batch).expect("write");
                }
                s
            })
        })
        .collect();
    // Readers: once Redis resumes, every reply is drained.
    let readers: Vec<JoinHandle<usize>> = writers
        .into_iter()
        .map(|w| {
            std::thread::spawn(move || {
                let mut s = w.join().expect("writer");
                let mut buf = vec![0u8; 1 << 16];
                let (mut nulls, mut tail) = (0usize, 0usize);
                // Each reply is `$-1\r\n` (5 bytes: no such key).
                while nulls < PER_CLIENT {
                    let n = s.read(&mut buf).expect("replies");
                    assert!(n > 0, "closed");
                    tail += n;
                    nulls = tail / 5;
                }
                nulls
            })
        })
        .collect();
    sleep(Duration::from_secs(8));
    rig.assert_within_budget("unanswered flood, Redis paused");
    if let Some(left) = Duration::from_millis(10_300).checked_sub(paused.elapsed()) {
        sleep(left);
    }
    for r in readers {
        assert_eq!(r.join().expect("reader"), PER_CLIENT);
    }
    // CLIENT PAUSE ALL held every client during the flood; the burst of replies after it
    // overflows the ring (counted) and keeps the daemon busy for a while: the good client runs
    // once it is through.
    rig.quiesce();
    good_client(rig.addr, Duration::from_secs(2))
        .join()
        .expect("good client");
    let secs = t0.elapsed().as_secs_f64();
    rig.redis.cli(&["LPUSH", "mem:queue:b", "job-1"]);
    worker.join().expect("blocked worker");
    let s1 = rig.redis.commandstats();
    let redis: BTreeMap<String, u64> = s0.delta(&s1);
    let sent = (CLIENTS * PER_CLIENT) as u64;
    assert_eq!(redis.get("GET").copied(), Some(sent), "Redis ran every GET");
    let m1 = settle("after the unanswered flood", &rig, |m1| {
        let incr = delta(
            &m0,
            m1,
            "redis_commands_total",
            &[("command", "INCR"), ("status", "ok")],
        );
        if incr != GOOD_INCRS {
            return Err(format!("INCR ok {incr}, sent {GOOD_INCRS}"));
        }
        let blpop = delta(
            &m0,
            m1,
            "redis_commands_total",
            &[("command", "BLPOP"), ("status", "ok")],
        );
        if blpop != 1 {
            return Err(format!("BLPOP ok {blpop}, expected 1"));
        }
        let get = |status: &str| {
            delta(
                &m0,
                m1,
                "redis_commands_total",
                &[("command", "GET"), ("status", status)],
            )
        };
        let ok = get("ok");
        if ok > sent {
            return Err(format!("GET ok {ok} > {sent} sent: over-counted"));
        }
        // Every GET is paired, or counted where it went: dropped on overflow, logged
        // unanswered with its evicted connection, or in bytes the capture missed.
        let lost = delta(&m0, m1, "redis_observer_commands_lost_total", &[]);
        let missed = delta(&m0, m1, "redis_observer_bytes_missed_total", &[])
            + delta(&m0, m1, "redis_observer_events_lost_total", &[]);
        let accounted = ok + get("unanswered") + lost;
        if accounted < sent && missed == 0 {
            return Err(format!(
                "GET ok {ok} + unanswered {} + lost {lost} = {accounted} < {sent}, nothing missed",
                get("unanswered")
            ));
        }
        Ok(())
    });
    println!(
        "[mem-unanswered] {sent} GETs from {CLIENTS} clients in {secs:.1} s: ok {}, lost \
         (pending_overflow) {}, unanswered {}; flows evicted busy {}; flows memory budget {} MiB",
        delta(
            &m0,
            &m1,
            "redis_commands_total",
            &[("command", "GET"), ("status", "ok")]
        ),
        delta(
            &m0,
            &m1,
            "redis_observer_commands_lost_total",
            &[("reason", "pending_overflow")]
        ),
        delta(
            &m0,
            &m1,
            "redis_commands_total",
            &[("command", "GET"), ("status", "unanswered")]
        ),
        delta(
            &m0,
            &m1,
            "redis_observer_flows_evicted_total",
            &[("reason", "busy")]
        ),
        m(
            &m1,
            "redis_observer_memory_budget_bytes",
            &[("part", "flows")]
        ) >> 20,
    );
    rig.assert_within_budget("unanswered flood");
    rig.finish();
}
