//! Hostile and broken traffic, scale and memory (root, real redis-server on loopback).
//!
//! Every test attaches the real daemon to `lo`, throws one kind of bad traffic at the Redis port
//! (or at a second watched port where a plain TCP sink stands in for "something that is not
//! Redis"), and checks, each time:
//! - the daemon is still running and `/healthz` answers;
//! - its RSS stays bounded (peak sampled every 20 ms) and does not grow across repetitions;
//! - the counter that should move did (`redis_observer_desyncs_total{reason,dir}`,
//!   `redis_commands_total{status="unanswered"}`, `redis_observer_events_lost_total`, ...);
//! - it wrote at most a few lines about it on stderr;
//! - a well-behaved client on another connection at the same time (200 INCRs) is paired and
//!   counted exactly: `redis_commands_total{command="INCR",status="ok"}` equals Redis' own
//!   INFO commandstats delta, and every other command Redis ran is counted exactly too (or, where
//!   the contract says the observer cannot know, never over-counted).

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{JoinHandle, sleep},
    time::{Duration, Instant},
};

use tests::*;

/// Statuses of commands Redis ran (what INFO commandstats counts).
const EXECUTED: &[&str] = &["ok", "error", "no_reply", "reply_dropped"];
/// RSS bound for every hostile-input test (MiB).
const RSS_LIMIT_MB: u64 = 200;
/// RSS bound with 10,000 connections open (MiB).
const RSS_LIMIT_CONNS_MB: u64 = 100;
/// RSS may move this much between the first and the last repetition of an attack (allocator
/// noise), no more (MiB).
const RSS_GROWTH_MB: u64 = 8;
/// Lines the daemon may write on stderr per test beyond its start-up lines.
const MAX_LOG_LINES: usize = 3;
/// INCRs the well-behaved client sends while each attack runs.
const GOOD_INCRS: u64 = 200;

// ------------------------------------------------------------------------------------------------
// The rig: redis-server, the daemon, an RSS sampler.

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU seconds of a process.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / hz
}

struct Rig {
    redis: Redis,
    obs: Observer,
    addr: SocketAddr,
    name: String,
    peak_kb: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<()>>,
    start_lines: usize,
    started: Instant,
    log: std::path::PathBuf,
}

impl Rig {
    /// redis-server with `redis_args`, the daemon watching its port and `extra_ports`.
    fn start(name: &str, redis_args: &[&str], extra_ports: &[u16], obs_args: &[&str]) -> Rig {
        let redis = Redis::start(redis_args);
        Self::observe(name, redis, extra_ports, obs_args)
    }

    fn observe(name: &str, redis: Redis, extra_ports: &[u16], obs_args: &[&str]) -> Rig {
        let started = Instant::now();
        let port = redis.port.to_string();
        let extra: Vec<String> = extra_ports.iter().map(|p| p.to_string()).collect();
        let log = temp_dir(name).join("commands.jsonl");
        let log = log.to_str().expect("utf-8 path").to_owned();
        let mut args: Vec<&str> = vec!["-i", "lo", "-p", &port, "--log", &log];
        for p in &extra {
            args.extend(["-p", p.as_str()]);
        }
        args.extend(obs_args.iter().copied());
        let obs = Observer::start(None, &args);
        let pid = obs.proc.child.id();
        let peak_kb = Arc::new(AtomicU64::new(rss_kb(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop) = (peak_kb.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kb(pid), Ordering::Relaxed);
                    sleep(Duration::from_millis(20));
                }
            })
        };
        // Start-up lines (attached, warnings about the extra ports nobody listens on yet...).
        sleep(Duration::from_millis(100));
        let start_lines = obs.stderr().lines().count();
        Rig {
            addr: format!("127.0.0.1:{}", redis.port).parse().expect("addr"),
            redis,
            obs,
            name: name.into(),
            peak_kb,
            stop,
            sampler: Some(sampler),
            start_lines,
            started,
            log: log.into(),
        }
    }

    fn pid(&self) -> u32 {
        self.obs.proc.child.id()
    }

    fn rss_mb(&self) -> u64 {
        rss_kb(self.pid()) / 1024
    }

    fn peak_mb(&self) -> u64 {
        self.peak_kb.load(Ordering::Relaxed).max(rss_kb(self.pid())) / 1024
    }

    fn metrics(&self) -> Metrics {
        self.obs.metrics()
    }

    fn stats(&self) -> CommandStats {
        self.redis.commandstats()
    }

    /// The process is alive, `/healthz` answers, RSS is under `limit_mb`.
    fn assert_healthy(&mut self, what: &str, limit_mb: u64) {
        if let Ok(Some(st)) = self.obs.proc.child.try_wait() {
            panic!(
                "[{}] the daemon exited ({st}) during {what}; stderr:\n{}",
                self.name,
                self.obs.stderr()
            );
        }
        let h = http_get(&self.obs.metrics_addr, "/healthz");
        assert!(
            h.as_deref().is_some_and(|b| b.starts_with("ok")),
            "[{}] /healthz after {what}: {h:?}",
            self.name
        );
        let peak = self.peak_mb();
        assert!(
            peak < limit_mb,
            "[{}] daemon RSS peaked at {peak} MiB during {what} (limit {limit_mb} MiB)",
            self.name
        );
    }

    /// Waits until the daemon has nothing left to process: its segment and command counters
    /// stand still across two readings 600 ms apart (kernel counters are published every 500 ms).
    fn quiesce(&self) {
        let snapshot = |m: &Metrics| {
            (
                m.sum("redis_observer_segments_total", &[]),
                m.sum("redis_commands_total", &[]),
            )
        };
        let mut last = snapshot(&self.metrics());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            sleep(Duration::from_millis(600));
            let now = snapshot(&self.metrics());
            if now == last {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] the daemon never went quiet",
                self.name
            );
            last = now;
        }
    }

    /// Polls metrics and commandstats until `check` passes (10 s), else panics with its last
    /// complaint. Returns the final delta.
    fn settle(
        &self,
        what: &str,
        m0: &Metrics,
        s0: &CommandStats,
        check: impl Fn(&Delta) -> Result<(), String>,
    ) -> Delta {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Kernel counters reach the metrics every 500 ms.
            let d = Delta {
                server: self.addr.to_string(),
                m0: m0.clone(),
                m1: self.metrics(),
                s0: s0.clone(),
                s1: self.stats(),
            };
            match check(&d) {
                Ok(()) => return d,
                Err(e) if Instant::now() > deadline => {
                    let own: Vec<String> =
                        d.m1.0
                            .iter()
                            .filter(|(k, v)| {
                                **v != 0.0
                                    && (k.starts_with("redis_observer_")
                                        || k.starts_with("redis_connections"))
                            })
                            .map(|(k, v)| format!("{k} {v}"))
                            .collect();
                    panic!(
                        "[{}] {what}: {e}\nobserver metrics:\n{}\ncommand log: {}\nstderr:\n{}",
                        self.name,
                        own.join("\n"),
                        self.log.display(),
                        self.obs.stderr()
                    )
                }
                Err(_) => sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Few stderr lines, clean exit (SIGTERM → 0), RSS summary printed.
    fn finish(mut self, rss_after_reps: &[u64]) {
        let text = self.obs.stderr();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.len() <= self.start_lines + MAX_LOG_LINES,
            "[{}] the daemon wrote {} lines on stderr (after {} at start-up):\n{text}",
            self.name,
            lines.len(),
            self.start_lines
        );
        let peak = self.peak_mb();
        println!(
            "[{}] daemon RSS: after each repetition {rss_after_reps:?} MiB, peak {peak} MiB; \
             {} stderr lines; {:.1} s, daemon CPU {:.1} s",
            self.name,
            lines.len(),
            self.started.elapsed().as_secs_f64(),
            cpu_secs(self.pid())
        );
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.sampler.take() {
            let _ = h.join();
        }
        self.obs.stop();
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `redis_commands_total` of executed statuses for one server, by command.
fn by_name(m: &Metrics, server: &str) -> BTreeMap<String, u64> {
    let only = Metrics(
        m.0.iter()
            .filter(|(k, _)| k.contains(&format!("server=\"{server}\"")))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
    );
    only.commands_by_name(EXECUTED)
}

/// Metrics and commandstats before and after one repetition.
struct Delta {
    /// The Redis server's `server` label.
    server: String,
    m0: Metrics,
    m1: Metrics,
    s0: CommandStats,
    s1: CommandStats,
}

fn metric_delta(m0: &Metrics, m1: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    (m1.sum(name, labels) - m0.sum(name, labels)).max(0.0) as u64
}

impl Delta {
    fn m(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        metric_delta(&self.m0, &self.m1, name, labels)
    }

    fn cmd(&self, command: &str, status: &str) -> u64 {
        self.m(
            "redis_commands_total",
            &[
                ("server", &self.server),
                ("command", command),
                ("status", status),
            ],
        )
    }

    /// `redis_observer_protocol_errors_total{reason}` (all reasons with `""`).
    fn proto(&self, reason: &str) -> u64 {
        if reason.is_empty() {
            self.m("redis_observer_protocol_errors_total", &[])
        } else {
            self.m(
                "redis_observer_protocol_errors_total",
                &[("reason", reason)],
            )
        }
    }

    fn desync(&self, reason: &str, dir: &str) -> u64 {
        self.m(
            "redis_observer_desyncs_total",
            &[("reason", reason), ("dir", dir)],
        )
    }

    fn active(&self) -> f64 {
        self.m1.sum("redis_connections_active", &[])
    }

    /// Commands the observer saw the Redis server run (UNKNOWN aside: Redis has no commandstats
    /// for them). Other watched ports (the garbage sink) are left out.
    fn observed(&self) -> BTreeMap<String, u64> {
        let (a, b) = (
            by_name(&self.m0, &self.server),
            by_name(&self.m1, &self.server),
        );
        let mut d = BTreeMap::new();
        for (k, v) in b {
            let n = v.saturating_sub(a.get(&k).copied().unwrap_or(0));
            if n > 0 && k != "UNKNOWN" {
                d.insert(k, n);
            }
        }
        d
    }

    /// What Redis ran, per INFO commandstats (our own INFO over the unix socket aside).
    fn redis(&self) -> BTreeMap<String, u64> {
        let mut d = self.s0.delta(&self.s1);
        d.remove("INFO");
        d
    }

    fn redis_cmd(&self, command: &str) -> u64 {
        self.redis().get(command).copied().unwrap_or(0)
    }

    /// The observer's executed commands equal Redis' exactly, except `not_seen`, commands Redis
    /// ran that the observer cannot know ran (their counts are checked by the caller).
    fn exact_except(&self, not_seen: &[&str]) -> Result<(), String> {
        let (mut got, mut want) = (self.observed(), self.redis());
        for c in not_seen {
            got.remove(*c);
            want.remove(*c);
        }
        if got == want {
            Ok(())
        } else {
            Err(format!("observed {got:?}\nINFO commandstats {want:?}"))
        }
    }

    /// Never a command Redis did not run.
    fn never_more(&self) -> Result<(), String> {
        let want = self.redis();
        for (k, n) in self.observed() {
            let w = want.get(&k).copied().unwrap_or(0);
            if n > w {
                return Err(format!("{k}: {n} counted, Redis ran {w}"));
            }
        }
        Ok(())
    }

    /// The well-behaved client's INCRs: all paired, counted once, status ok.
    fn good_client_exact(&self) -> Result<(), String> {
        let (ok, redis) = (self.cmd("INCR", "ok"), self.redis_cmd("INCR"));
        let other = self.cmd("INCR", "unanswered") + self.cmd("INCR", "error");
        if ok != redis || redis < GOOD_INCRS || other != 0 {
            return Err(format!(
                "good client: INCR ok {ok}, other statuses {other}, Redis ran {redis} (sent {GOOD_INCRS})"
            ));
        }
        Ok(())
    }

    fn expect(&self, what: &str, got: u64, want: u64) -> Result<(), String> {
        if got == want {
            Ok(())
        } else {
            Err(format!("{what}: {got}, expected {want}"))
        }
    }

    fn expect_at_least(&self, what: &str, got: u64, want: u64) -> Result<(), String> {
        if got >= want {
            Ok(())
        } else {
            Err(format!("{what}: {got}, expected at least {want}"))
        }
    }

    /// Every connection of the repetition is closed (the gauge is back where it was).
    fn connections_back(&self) -> Result<(), String> {
        let before = self.m0.sum("redis_connections_active", &[]);
        if self.active() <= before {
            Ok(())
        } else {
            Err(format!(
                "redis_connections_active {} (was {before} before)",
                self.active()
            ))
        }
    }
}

/// 200 INCRs, one at a time, on a connection of their own.
fn good_client(addr: SocketAddr) -> JoinHandle<()> {
    good_client_over(addr, Duration::from_millis(100))
}

/// The same, spread over about `over`.
fn good_client_over(addr: SocketAddr, over: Duration) -> JoinHandle<()> {
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

/// Runs `attack` `reps` times, each with the good client alongside, and `check` after each.
fn hostile(
    name: &str,
    reps: usize,
    setup: impl FnOnce(&Rig),
    attack: impl Fn(&Rig),
    check: impl Fn(&Delta) -> Result<(), String>,
) {
    let _g = e2e_lock();
    let mut rig = Rig::start(name, &[], &[], &[]);
    let (mi, si) = (rig.metrics(), rig.stats());
    setup(&rig);
    // The setup's commands are counted before the first repetition's snapshot.
    rig.settle("setup", &mi, &si, |d| {
        d.exact_except(&[])?;
        d.connections_back()
    });
    let mut rss = Vec::new();
    for rep in 0..reps {
        let (m0, s0) = (rig.metrics(), rig.stats());
        let good = good_client(rig.addr);
        attack(&rig);
        good.join().expect("the good client failed");
        rig.settle(&format!("repetition {rep}"), &m0, &s0, |d| {
            d.good_client_exact()?;
            check(d)?;
            d.connections_back()
        });
        rig.assert_healthy(&format!("repetition {rep}"), RSS_LIMIT_MB);
        rss.push(rig.rss_mb());
    }
    let (first, last) = (rss[0], rss[rss.len() - 1]);
    assert!(
        last <= first + RSS_GROWTH_MB,
        "[{name}] RSS grows with repetitions: {rss:?} MiB"
    );
    rig.finish(&rss);
}

// ------------------------------------------------------------------------------------------------
// Traffic helpers.

/// xorshift64*: deterministic garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Writes what the server lets us write (it may close on us), waits a little for its answer,
/// reads what came, closes. Returns what came back.
fn send_and_close(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let mut s = connect(addr);
    let _ = s.write_all(bytes);
    sleep(wait);
    s.set_nonblocking(true).expect("nonblocking");
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// Sends `bytes` and reads until `want` bytes arrived (or the peer closed, or `deadline`
/// passed), then closes.
fn send_and_await(addr: SocketAddr, bytes: &[u8], want: usize, deadline: Duration) -> Vec<u8> {
    let mut s = connect(addr);
    let _ = s.write_all(bytes);
    let until = std::time::Instant::now() + deadline;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while got.len() < want {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

/// Close with RST (SO_LINGER 0).
fn reset(s: TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized linger struct.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
    assert_eq!(r, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(s);
}

/// Stores a value of `len` bytes under `key` (setup traffic, outside any measured repetition).
fn set_big(addr: SocketAddr, key: &[u8], len: usize) {
    let value: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    let mut c = RawClient::connect(addr);
    c.call(&[b"SET", key, &value]);
    assert!(c.received.starts_with(b"+OK"), "SET {len} bytes failed");
}

/// A TCP server on a free port that is not Redis: reads and discards everything, optionally
/// streams `reply` back to each connection (a chunk, how many times, at how many MB/s).
struct Sink {
    port: u16,
    received: Arc<AtomicU64>,
}

impl Sink {
    fn start(reply: Option<(Vec<u8>, usize, f64)>) -> Sink {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind sink");
        let port = l.local_addr().expect("addr").port();
        let received = Arc::new(AtomicU64::new(0));
        let rx = received.clone();
        let reply = Arc::new(reply);
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let rx = rx.clone();
                let reply = reply.clone();
                if let Some((chunk, times, rate)) = &*reply {
                    let mut w = s.try_clone().expect("clone");
                    let (chunk, times, rate) = (chunk.clone(), *times, *rate);
                    std::thread::spawn(move || {
                        let _ = paced_write(&mut w, &chunk, times, rate);
                    });
                }
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 20];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        rx.fetch_add(n as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        Sink { port, received }
    }
}

/// Writes `chunk` `times` times, at most `mb_per_s` MB/s (so the test measures the daemon's
/// memory, not how fast two shared cores drain a ring buffer).
fn paced_write(
    s: &mut TcpStream,
    chunk: &[u8],
    times: usize,
    mb_per_s: f64,
) -> std::io::Result<()> {
    let t0 = Instant::now();
    let mut sent = 0f64;
    for _ in 0..times {
        s.write_all(chunk)?;
        sent += chunk.len() as f64;
        let due = Duration::from_secs_f64(sent / (mb_per_s * 1e6));
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            sleep(wait);
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Hostile inputs on the Redis port.

/// Random binary bytes (the first is not text: not RESP, ignored until close), and random text
/// lines that Redis runs as inline commands (unknown ones: error replies) until a line it cannot
/// parse (a `*` line is a bad multibulk header; else an unbalanced quote at the end): protocol
/// error, close.
#[test]
fn garbage_bytes() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut binary = rng.bytes(256 * 1024);
    binary[0] = 0xc3;
    let charset = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789 \t\\$*:+-{}[]";
    let mut text = Vec::new();
    for _ in 0..300 {
        let len = 1 + (rng.next() % 120) as usize;
        for _ in 0..len {
            text.push(charset[(rng.next() % charset.len() as u64) as usize]);
        }
        text.extend_from_slice(if rng.next() & 1 == 0 { b"\r\n" } else { b"\n" });
    }
    text.extend_from_slice(b"SET \"unbalanced x\r\nPING\r\n");
    let unknown_replies = AtomicU64::new(0);
    hostile(
        "garbage",
        3,
        |_| {},
        |rig| {
            send_and_close(rig.addr, &binary, Duration::from_millis(50));
            let r = send_and_close(rig.addr, &text, Duration::from_millis(100));
            let r = String::from_utf8_lossy(&r);
            // A line starting with `*` is a multibulk header to Redis: it may end things early.
            assert!(
                r.trim_end()
                    .lines()
                    .last()
                    .is_some_and(|l| l.starts_with("-ERR Protocol error")),
                "{r}"
            );
            let n = r.matches("-ERR unknown command").count() as u64;
            assert!(n > 0, "no unknown command:\n{r}");
            unknown_replies.store(n, Ordering::Relaxed);
        },
        |d| {
            d.expect("not_resp desyncs", d.desync("not_resp", "request"), 1)?;
            let all = d.m("redis_observer_desyncs_total", &[("dir", "request")]);
            d.expect("other desyncs", all - d.desync("not_resp", "request"), 0)?;
            d.expect("protocol errors", d.proto(""), 1)?;
            d.expect(
                "UNKNOWN errors",
                d.cmd("UNKNOWN", "error"),
                unknown_replies.load(Ordering::Relaxed),
            )?;
            d.exact_except(&[])
        },
    );
}

/// Absurd lengths. Redis 7.0 accepts multibulk counts up to INT_MAX (not 1,048,576, as older
/// versions did): `*1000000000\r\n` is a valid start (Redis waits for the arguments; a `*` where
/// the first `$` should be is then the error), and an MSET of 1,048,578 arguments runs.
/// `*3000000000\r\n`, `$999999999999`, `$-7` and `$536870913` (one over proto-max-bulk-len)
/// inside a command are protocol errors (reply, close). A bare `$999999999999\r\n` is an inline
/// command of that name (unknown).
#[test]
fn absurd_multibulk_and_bulk_lengths() {
    let n = 1_048_578;
    let mut mset = format!("*{}\r\n$4\r\nMSET\r\n", n + 1).into_bytes();
    for i in 0..n {
        let a = format!("k{}", i / 2 % 1000);
        mset.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
    }
    hostile(
        "lengths",
        3,
        |_| {},
        |rig| {
            for bytes in [
                &b"*3000000000\r\n"[..],
                b"*1\r\n$999999999999\r\n",
                b"*2\r\n$3\r\nGET\r\n$-7\r\n",
                b"*1\r\n$536870913\r\n",
            ] {
                let r = send_and_close(rig.addr, bytes, Duration::from_millis(30));
                assert!(r.starts_with(b"-ERR Protocol error: invalid"), "{r:?}");
            }
            let r = send_and_close(rig.addr, b"*1000000000\r\n", Duration::from_millis(30));
            assert!(r.is_empty(), "{r:?}");
            let r = send_and_close(
                rig.addr,
                b"*1000000000\r\n*1\r\n$4\r\nPING\r\n",
                Duration::from_millis(30),
            );
            assert!(r.starts_with(b"-ERR Protocol error: expected '$'"), "{r:?}");
            let r = send_and_close(rig.addr, b"$999999999999\r\n", Duration::from_millis(30));
            assert!(r.starts_with(b"-ERR unknown command"), "{r:?}");
            // A 1M-argument MSET takes Redis a while (longer on a loaded machine): wait for
            // its reply rather than for a fixed time.
            let r = send_and_await(rig.addr, &mset, b"+OK\r\n".len(), Duration::from_secs(30));
            assert_eq!(r, b"+OK\r\n");
        },
        |d| {
            d.expect("invalid multibulk", d.proto("invalid_multibulk_length"), 1)?;
            d.expect("invalid bulk", d.proto("invalid_bulk_length"), 3)?;
            d.expect("expected $", d.proto("expected_dollar"), 1)?;
            d.expect(
                "request desyncs",
                d.m("redis_observer_desyncs_total", &[]),
                0,
            )?;
            d.expect("UNKNOWN errors", d.cmd("UNKNOWN", "error"), 1)?;
            d.expect("MSET of 1,048,578 arguments", d.cmd("MSET", "ok"), 1)?;
            d.exact_except(&[])
        },
    );
}

/// 10,000 nested array headers in a request (Redis: "expected '$', got '*'", close), and a reply
/// nested 1,000 deep (an EVAL returning nested tables: the reply decoder gives up past its depth
/// limit instead of recursing, and counts it).
#[test]
fn ten_thousand_nested_arrays() {
    let nested = b"*1\r\n".repeat(10_000);
    let script = b"local t={} local c=t for i=1,1000 do local n={} c[1]=n c=n end return t";
    hostile(
        "nested",
        3,
        |_| {},
        |rig| {
            let r = send_and_close(rig.addr, &nested, Duration::from_millis(30));
            assert!(r.starts_with(b"-ERR Protocol error: expected '$'"), "{r:?}");
            let mut c = RawClient::connect(rig.addr);
            c.send(&[b"EVAL", script, b"0"]);
            c.read_replies(1);
            assert_eq!(c.received.len(), 1001 * 4, "1,000 nested arrays");
            // The connection goes on: the decoder finds its feet again.
            sleep(Duration::from_millis(20));
            for _ in 0..10 {
                c.call(&[b"PING"]);
            }
        },
        |d| {
            d.expect("expected $", d.proto("expected_dollar"), 1)?;
            // Once per 128 levels (the decoder's depth limit): it resynchronises inside the same
            // reply and finds more `*1` frames.
            d.expect_at_least("too_deep reply desyncs", d.desync("too_deep", "reply"), 1)?;
            d.expect("PING after the deep reply", d.cmd("PING", "ok"), 10)?;
            // EVAL ran, but its reply could not be followed: counted as lost, not as a command.
            d.expect(
                "commands lost",
                d.m("redis_observer_commands_lost_total", &[("reason", "gap")]),
                1,
            )?;
            d.expect("EVAL in commandstats", d.redis_cmd("EVAL"), 1)?;
            d.exact_except(&["EVAL"])
        },
    );
}

/// Lines without CRLF: 100 KB with no newline at all (Redis: "too big inline request", close);
/// inline commands ended by a bare LF (valid: Redis runs them); a multibulk written with bare LFs
/// (Redis waits for a CR that never comes: nothing runs), then closed.
#[test]
fn lines_without_crlf() {
    let no_newline = vec![b'A'; 100 * 1024];
    hostile(
        "no-crlf",
        3,
        |_| {},
        |rig| {
            let r = send_and_close(rig.addr, &no_newline, Duration::from_millis(30));
            assert!(
                r.starts_with(b"-ERR Protocol error: too big inline"),
                "{r:?}"
            );
            let r = send_and_close(
                rig.addr,
                b"PING\nECHO hello\nSET lf:key \"a b\"\n",
                Duration::from_millis(30),
            );
            assert_eq!(count_replies(&r), 3, "{r:?}");
            let r = send_and_close(rig.addr, b"*1\n$4\nPING\n", Duration::from_millis(30));
            assert!(r.is_empty(), "{r:?}");
        },
        |d| {
            d.expect("too big inline", d.proto("too_big_inline_request"), 1)?;
            d.expect("PING", d.cmd("PING", "ok"), 1)?;
            d.expect("ECHO", d.cmd("ECHO", "ok"), 1)?;
            d.expect("SET", d.cmd("SET", "ok"), 1)?;
            d.exact_except(&[])
        },
    );
}

/// An inline command of 1 MB (Redis: "too big inline request", close) next to a valid inline
/// SET of 60 KB (under Redis' 64 KiB limit: it runs).
#[test]
fn one_megabyte_inline_command() {
    let mut big = b"SET inline:big ".to_vec();
    big.extend(std::iter::repeat_n(b'x', 1 << 20));
    big.extend_from_slice(b"\r\n");
    let mut ok = b"SET inline:ok ".to_vec();
    ok.extend(std::iter::repeat_n(b'y', 60_000));
    ok.extend_from_slice(b"\r\n");
    hostile(
        "inline-1mb",
        3,
        |_| {},
        |rig| {
            let r = send_and_close(rig.addr, &big, Duration::from_millis(30));
            assert!(
                r.starts_with(b"-ERR Protocol error: too big inline"),
                "{r:?}"
            );
            let r = send_and_close(rig.addr, &ok, Duration::from_millis(30));
            assert_eq!(r, b"+OK\r\n");
        },
        |d| {
            d.expect("too big inline", d.proto("too_big_inline_request"), 1)?;
            d.expect("SET", d.cmd("SET", "ok"), 1)?;
            d.exact_except(&[])
        },
    );
}

/// The client resets (SO_LINGER 0) while a 16 MB GET reply is streaming: the GET ran (Redis
/// counts it) but its reply never completed, so it is `unanswered`; the connection is closed.
#[test]
fn reset_in_the_middle_of_a_reply() {
    hostile(
        "rst-mid-reply",
        3,
        |rig| set_big(rig.addr, b"rst:big", 16 << 20),
        |rig| {
            for _ in 0..2 {
                let mut s = connect(rig.addr);
                s.write_all(&encode(&[b"GET", b"rst:big"])).expect("write");
                let mut buf = vec![0u8; 256 * 1024];
                let mut got = 0;
                while got < 256 * 1024 {
                    let n = s.read(&mut buf).expect("read");
                    assert!(n > 0, "Redis closed early");
                    got += n;
                }
                reset(s);
            }
        },
        |d| {
            d.expect("GET unanswered", d.cmd("GET", "unanswered"), 2)?;
            d.expect("GET ran", d.redis_cmd("GET"), 2)?;
            d.exact_except(&["GET"])
        },
    );
}

/// Half-closed connections: pipelined commands, shutdown(SHUT_WR), then the replies are read to
/// the end; a 200 KB SET written and shut down at once (TCP carries the FIN on the command's
/// last, large segment: the kernel program cuts that segment into chunks, and the flow must not
/// close before the last one). And GETs of 2 MB and 16 MB the same way: Redis closes the
/// connection when it reads the client's EOF, with the reply still queued in the socket (2 MB:
/// whole, the FIN rides on its last large segment) or partly unsent (16 MB: the client gets a
/// truncated reply). The observer must call the complete one `ok`, the truncated one
/// `unanswered`.
#[test]
fn half_closed_connections() {
    let complete = AtomicU64::new(0);
    let truncated = AtomicU64::new(0);
    hostile(
        "half-closed",
        3,
        |rig| {
            set_big(rig.addr, b"half:big", 16 << 20);
            set_big(rig.addr, b"half:2mb", 2 << 20);
        },
        |rig| {
            complete.store(0, Ordering::Relaxed);
            truncated.store(0, Ordering::Relaxed);
            for _ in 0..10 {
                let mut s = connect(rig.addr);
                let mut p = Vec::new();
                for _ in 0..3 {
                    p.extend(encode(&[b"HINCRBY", b"half:h", b"f", b"1"]));
                }
                s.write_all(&p).expect("write");
                s.shutdown(Shutdown::Write).expect("shutdown");
                let mut got = Vec::new();
                s.read_to_end(&mut got).expect("read");
                assert_eq!(count_replies(&got), 3);
            }
            // A 200 KB command and the FIN in the same segments (write, then shutdown at once).
            let value = vec![b'v'; 200_000];
            for _ in 0..3 {
                let mut s = connect(rig.addr);
                let mut p = encode(&[b"SET", b"half:v", &value]);
                p.extend(encode(&[b"STRLEN", b"half:v"]));
                s.write_all(&p).expect("write");
                s.shutdown(Shutdown::Write).expect("shutdown");
                let mut got = Vec::new();
                s.read_to_end(&mut got).expect("read");
                assert_eq!(got, b"+OK\r\n:200000\r\n");
            }
            // 2 MB fits the socket buffer: Redis writes it whole, then closes on the EOF with
            // most of it still queued, so TCP carries its FIN on the reply's last large segment.
            for (key, len) in [(&b"half:2mb"[..], 2usize << 20), (b"half:big", 16 << 20)] {
                let whole = format!("${len}\r\n").len() + len + 2;
                let mut s = connect(rig.addr);
                s.write_all(&encode(&[b"GET", key])).expect("write");
                s.shutdown(Shutdown::Write).expect("shutdown");
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got);
                assert!(got.len() <= whole && !got.is_empty(), "{} bytes", got.len());
                let n = if got.len() == whole {
                    &complete
                } else {
                    &truncated
                };
                n.fetch_add(1, Ordering::Relaxed);
            }
        },
        |d| {
            d.expect("HINCRBY", d.cmd("HINCRBY", "ok"), 30)?;
            d.expect("SET", d.cmd("SET", "ok"), 3)?;
            d.expect("STRLEN", d.cmd("STRLEN", "ok"), 3)?;
            d.expect(
                "GET ok",
                d.cmd("GET", "ok"),
                complete.load(Ordering::Relaxed),
            )?;
            d.expect(
                "GET unanswered (reply cut short)",
                d.cmd("GET", "unanswered"),
                truncated.load(Ordering::Relaxed),
            )?;
            d.expect_at_least("complete GET replies", complete.load(Ordering::Relaxed), 1)?;
            d.expect_at_least("complete GET replies", complete.load(Ordering::Relaxed), 1)?;
            d.expect("GET ran", d.redis_cmd("GET"), 2)?;
            d.exact_except(&["GET"])
        },
    );
}

/// A TLS ClientHello and an HTTP request on the Redis port: not RESP, counted as such, no command
/// counted. (Redis itself runs the HTTP request line as an inline GET and rejects it for its
/// arity before closing on `Host:`; the contract has the observer ignore HTTP, so that GET is the
/// one command Redis counts that the observer does not.)
#[test]
fn tls_and_http_on_the_redis_port() {
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    let mut rng = Rng(42);
    hello.extend(rng.bytes(32)); // random
    hello.push(32);
    hello.extend(rng.bytes(32)); // session id
    hello.extend([
        0x00, 0x08, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2f, 0x01, 0x00,
    ]);
    hello.extend([0x01, 0xab]);
    hello.extend(rng.bytes(0x1ab)); // extensions
    let http = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n";
    hostile(
        "tls-http",
        3,
        |_| {},
        |rig| {
            for _ in 0..5 {
                send_and_close(rig.addr, &hello, Duration::from_millis(20));
            }
            send_and_close(rig.addr, http, Duration::from_millis(20));
        },
        |d| {
            d.expect("not_resp desyncs", d.desync("not_resp", "request"), 6)?;
            // Not decoded, but counted: every byte the clients sent, and any reply.
            d.expect_at_least(
                "bytes ignored",
                d.m(
                    "redis_observer_bytes_missed_total",
                    &[("reason", "ignored")],
                ),
                (5 * hello.len() + http.len()) as u64,
            )?;
            d.expect(
                "commands",
                d.m("redis_commands_total", &[]),
                d.cmd("INCR", "ok"),
            )?;
            d.expect("Redis' rejected GET", d.redis_cmd("GET"), 1)?;
            d.exact_except(&["GET"])
        },
    );
}

// ------------------------------------------------------------------------------------------------
// Volume.

/// Rate (MB/s) of the 1 GB garbage stream; overridable to measure what the daemon sustains.
fn garbage_rate() -> f64 {
    std::env::var("HOSTILE_GARBAGE_MBPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150.0)
}

/// 1 GB of garbage on a watched port where a plain TCP sink (not Redis) listens, while the sink
/// streams 64 MB of garbage back; plus 128 MB one way and 64 MB back on a connection the daemon
/// picks up mid-stream (opened before it started: its decoders hunt for a frame start instead of
/// giving up). Paced (150 MB/s for the big stream) so that the test measures memory and
/// isolation, not how fast two shared cores drain a ring: nothing may be lost at that rate.
/// Bounded memory, the good client exact.
#[test]
fn one_gigabyte_of_garbage() {
    let _g = e2e_lock();
    let mut rng = Rng(7);
    // Random bytes salted with things that look like RESP frame starts.
    let mut chunk = rng.bytes(4 << 20);
    let lures: [&[u8]; 6] = [
        b"*3\r\n$3\r\nSET\r\n$",
        b"*2\r\n$999999\r\n",
        b"$-1\r\n",
        b"*1000000000\r\n",
        b"+OK\r\n:12\r\n",
        b"*1\r\n$4\r\nPING\r\n",
    ];
    for i in 0..2000 {
        let at = (rng.next() % (chunk.len() as u64 - 32)) as usize;
        let l = lures[i % lures.len()];
        chunk[at..at + l.len()].copy_from_slice(l);
    }
    let rate = garbage_rate();
    let sink = Sink::start(Some((chunk.clone(), 16, rate / 4.0)));
    let redis = Redis::start(&[]);
    // Opened before the daemon starts.
    let sink_addr: SocketAddr = format!("127.0.0.1:{}", sink.port).parse().unwrap();
    let mut early = connect(sink_addr);
    early.write_all(b"x").expect("write");
    // A 32 MiB ring: 150 ms of this traffic, so that two shared cores busy with other work do
    // not starve the reader into ring losses (that is `ring_buffer_overload`'s subject).
    let mut rig = Rig::observe("1gb-garbage", redis, &[sink.port], &["--ring-bytes", "32M"]);
    let (m0, s0) = (rig.metrics(), rig.stats());
    let t0 = Instant::now();
    let drain = |mut r: TcpStream| {
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            let mut n = 0u64;
            while let Ok(k) = r.read(&mut buf) {
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            n
        })
    };
    let fresh = {
        let chunk = chunk.clone();
        std::thread::spawn(move || {
            let mut s = connect(sink_addr);
            let reader = drain(s.try_clone().expect("clone"));
            paced_write(&mut s, &chunk, 256, rate).expect("write 1 GB");
            (s, reader)
        })
    };
    let early_reader = drain(early.try_clone().expect("clone"));
    let good = good_client_over(rig.addr, Duration::from_secs_f64(1024.0 / rate));
    paced_write(&mut early, &chunk, 32, rate / 4.0).expect("write");
    let (fresh, fresh_reader) = fresh.join().expect("1 GB writer");
    let secs = t0.elapsed().as_secs_f64();
    good.join().expect("good client");
    let want = (1u64 << 30) + (128 << 20) + 1;
    wait_until("the sink to read 1.125 GB", Duration::from_secs(20), || {
        sink.received.load(Ordering::Relaxed) >= want
    });
    for s in [&fresh, &early] {
        s.shutdown(Shutdown::Both).ok();
    }
    let back = fresh_reader.join().expect("reader") + early_reader.join().expect("reader");
    drop((fresh, early));
    rig.assert_healthy("1.25 GB of garbage", RSS_LIMIT_MB);
    let d = rig.settle("after the garbage", &m0, &s0, |d| {
        d.expect(
            "events lost",
            d.m("redis_observer_events_lost_total", &[]),
            0,
        )?;
        d.good_client_exact()?;
        d.exact_except(&[])?;
        d.expect_at_least(
            "request desyncs and protocol errors",
            d.m("redis_observer_desyncs_total", &[("dir", "request")])
                + d.m("redis_observer_protocol_errors_total", &[]),
            1,
        )?;
        d.connections_back()
    });
    let cpu = cpu_secs(rig.pid());
    println!(
        "[1gb-garbage] {:.0} MB in {secs:.1} s ({} MB came back); daemon CPU {cpu:.1} s; \
         desyncs {:?}",
        (want + back) as f64 / 1e6,
        back / 1_000_000,
        d.m1.0
            .iter()
            .filter(|(k, v)| k.starts_with("redis_observer_desyncs_total") && **v > 0.0)
            .map(|(k, v)| format!("{} {v}", &k["redis_observer_desyncs_total".len()..]))
            .collect::<Vec<_>>(),
    );
    let rss = rig.rss_mb();
    rig.finish(&[rss]);
}

/// One bulk string of 400 MB (SET, Redis' proto-max-bulk-len is 512 MB) and one of 400 MB that is
/// streamed half-way and abandoned (the connection closes): decoded by length, bounded memory,
/// the good client exact.
#[test]
fn a_400_mb_bulk_string() {
    let _g = e2e_lock();
    let mut rig = Rig::start("400mb-bulk", &[], &[], &[]);
    let (m0, s0) = (rig.metrics(), rig.stats());
    let good = good_client_over(rig.addr, Duration::from_secs(1));
    let t0 = Instant::now();
    let value_len: usize = 400 << 20;
    let chunk = vec![b'v'; 4 << 20];
    let mut s = connect(rig.addr);
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(format!("*3\r\n$3\r\nSET\r\n$8\r\nbulk:big\r\n${value_len}\r\n").as_bytes())
        .expect("write");
    paced_write(&mut s, &chunk, value_len / chunk.len(), 400.0).expect("write");
    s.write_all(b"\r\n").expect("write");
    let mut ok = [0u8; 5];
    s.read_exact(&mut ok).expect("SET reply");
    assert_eq!(&ok, b"+OK\r\n");
    let mut abandoned = connect(rig.addr);
    abandoned
        .write_all(format!("*3\r\n$3\r\nSET\r\n$9\r\nbulk:lost\r\n${value_len}\r\n").as_bytes())
        .expect("write");
    paced_write(&mut abandoned, &chunk, value_len / chunk.len() / 2, 400.0).expect("write");
    drop(abandoned);
    let secs = t0.elapsed().as_secs_f64();
    // Redis gives the memory back.
    s.write_all(&encode(&[b"DEL", b"bulk:big"])).expect("write");
    let mut del = [0u8; 4];
    s.read_exact(&mut del).expect("DEL reply");
    drop(s);
    good.join().expect("good client");
    rig.assert_healthy("a 400 MB bulk string", RSS_LIMIT_MB);
    rig.settle("after the bulk strings", &m0, &s0, |d| {
        d.good_client_exact()?;
        d.expect("SET", d.cmd("SET", "ok"), 1)?;
        d.expect(
            "unanswered",
            d.m("redis_commands_total", &[("status", "unanswered")]),
            0,
        )?;
        d.exact_except(&[])?;
        d.expect(
            "events lost",
            d.m("redis_observer_events_lost_total", &[]),
            0,
        )?;
        d.connections_back()
    });
    println!("[400mb-bulk] 600 MB sent in {secs:.1} s");
    let rss = rig.rss_mb();
    rig.finish(&[rss]);
}

// ------------------------------------------------------------------------------------------------
// Scale.

/// Raises RLIMIT_NOFILE to at least `n`: up to the hard limit, and past it when allowed
/// (CAP_SYS_RESOURCE; containers often withhold it). redis-server, started after this, inherits
/// it.
fn raise_nofile(n: u64) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with valid structs.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    let want = libc::rlimit {
        rlim_cur: n.max(rl.rlim_cur),
        rlim_max: n.max(rl.rlim_max),
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
        return;
    }
    rl.rlim_cur = rl.rlim_max;
    // SAFETY: as above.
    let r = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) };
    assert_eq!(r, 0, "RLIMIT_NOFILE: {}", std::io::Error::last_os_error());
    assert!(
        rl.rlim_max >= n,
        "RLIMIT_NOFILE hard limit {} < {n}, and it cannot be raised here",
        rl.rlim_max
    );
}

/// 10,000 concurrent client connections, mostly idle, every 50th running commands: RSS under
/// 100 MB, `redis_connections_active` counts them, and returns to 0 once they are all closed.
#[test]
fn ten_thousand_connections() {
    const N: usize = 10_000;
    let _g = e2e_lock();
    raise_nofile(N as u64 + 1_500);
    let redis = Redis::start(&["--maxclients", "11000", "--tcp-backlog", "4096"]);
    let mut rig = Rig::observe("10k-connections", redis, &[], &[]);
    let rss0 = rig.rss_mb();
    let (m0, s0) = (rig.metrics(), rig.stats());
    let t0 = Instant::now();
    let mut conns: Vec<TcpStream> = Vec::with_capacity(N);
    for i in 0..N {
        let mut s = connect(rig.addr);
        if i % 50 == 0 {
            s.write_all(&encode(&[b"PING"])).expect("write");
            let mut r = [0u8; 7];
            s.read_exact(&mut r).expect("PONG");
        }
        conns.push(s);
    }
    let opened = t0.elapsed().as_secs_f64();
    // Redis accepts on its own time; our own redis-cli on the admin socket is one more.
    wait_until(
        "Redis to accept 10,000 clients",
        Duration::from_secs(10),
        || {
            rig.redis
                .admin(&["INFO", "clients"])
                .contains(&format!("connected_clients:{}", N + 1))
        },
    );
    // Some active ones while all are open, and the good client.
    let good = good_client(rig.addr);
    for s in conns.iter_mut().step_by(100) {
        let mut p = Vec::new();
        for _ in 0..5 {
            p.extend(encode(&[b"SADD", b"conns:set", b"member"]));
        }
        s.write_all(&p).expect("write");
    }
    for s in conns.iter_mut().step_by(100) {
        let mut r = [0u8; 20];
        s.read_exact(&mut r).expect("5 replies");
    }
    good.join().expect("good client");
    let d = rig.settle("10,000 connections open", &m0, &s0, |d| {
        d.good_client_exact()?;
        d.expect("PING", d.cmd("PING", "ok"), (N / 50) as u64)?;
        d.expect("SADD", d.cmd("SADD", "ok"), (N / 100 * 5) as u64)?;
        d.exact_except(&[])?;
        let active = d.active() as u64;
        if !(N as u64..=N as u64 + 1).contains(&active) {
            return Err(format!("redis_connections_active {active}, {N} open"));
        }
        d.expect(
            "flows refused",
            d.m("redis_observer_flows_refused_total", &[]),
            0,
        )
    });
    let rss_open = rig.rss_mb();
    rig.assert_healthy("10,000 connections", RSS_LIMIT_CONNS_MB);
    let t1 = Instant::now();
    drop(conns);
    wait_until(
        "redis_connections_active back to 0",
        Duration::from_secs(15),
        || rig.metrics().sum("redis_connections_active", &[]) == 0.0,
    );
    let closed = t1.elapsed().as_secs_f64();
    rig.assert_healthy("closing 10,000 connections", RSS_LIMIT_CONNS_MB);
    let rss_closed = rig.rss_mb();
    println!(
        "[10k-connections] opened in {opened:.1} s, all closed seen in {closed:.1} s; RSS {rss0} \
         MiB idle, {rss_open} MiB with {} connections, {rss_closed} MiB after; connections_total \
         +{}",
        d.active(),
        d.m("redis_connections_total", &[])
    );
    rig.finish(&[rss0, rss_open, rss_closed]);
}

/// `n` raw SYNs to 127.0.0.1:`port` from spoofed loopback sources 127.1.x.y (nobody answers the
/// SYN-ACKs: the kernel resets them), as fast as a raw socket goes.
fn syn_flood(port: u16, n: usize) {
    let raw = RawSyns::new();
    let mut rng = Rng(0x5eed);
    for i in 0..n {
        let src = [127u8, 1, (i / 250) as u8, (i % 250) as u8 + 1];
        let sport = 1024 + (rng.next() % 60_000) as u16;
        raw.send(src, sport, [127, 0, 0, 1], port, rng.next() as u32, &[]);
    }
}

/// A SYN flood of 10,000 raw SYNs from spoofed loopback addresses, then 2,000 complete
/// handshakes reset at once: bounded memory, the good client exact, no connection left open.
#[test]
fn syn_flood_and_reset_handshakes() {
    hostile(
        "syn-flood",
        2,
        |_| {},
        |rig| {
            syn_flood(rig.redis.port, 10_000);
            for _ in 0..2_000 {
                reset(connect(rig.addr));
            }
        },
        |d| {
            d.expect_at_least(
                "connections seen",
                d.m("redis_connections_total", &[]),
                10_000 + 2_000,
            )?;
            d.expect(
                "flows refused",
                d.m("redis_observer_flows_refused_total", &[]),
                0,
            )?;
            d.exact_except(&[])
        },
    );
}

/// A 64 KiB ring flooded by redis-benchmark (pipelines of 64 SETs of 4 KiB): events are lost
/// and counted, nothing is over-counted, the daemon survives, and a fresh connection's 100
/// commands afterwards are counted exactly.
#[test]
fn ring_buffer_overload() {
    let _g = e2e_lock();
    let mut rig = Rig::start("ring-overload", &[], &[], &["--ring-bytes", "64K"]);
    let (m0, s0) = (rig.metrics(), rig.stats());
    let t0 = Instant::now();
    sh(Command::new("redis-benchmark").args([
        "-p",
        &rig.redis.port.to_string(),
        "-P",
        "64",
        "-d",
        "4096",
        "-n",
        "200000",
        "-c",
        "8",
        "-t",
        "set",
        "-q",
    ]));
    let secs = t0.elapsed().as_secs_f64();
    rig.assert_healthy("ring overload", RSS_LIMIT_MB);
    let d = rig.settle("after the flood", &m0, &s0, |d| {
        d.expect_at_least(
            "ring_full losses",
            d.m(
                "redis_observer_events_lost_total",
                &[("reason", "ring_full")],
            ),
            1,
        )?;
        d.expect_at_least(
            "gap bytes",
            d.m("redis_observer_bytes_missed_total", &[("reason", "gap")]),
            1,
        )?;
        d.never_more()
    });
    let lost = d.m("redis_observer_events_lost_total", &[]);
    let sets = d.cmd("SET", "ok");
    let active_after_flood = d.active();
    // New traffic pairs exactly again.
    rig.quiesce();
    let (m1, s1) = (rig.metrics(), rig.stats());
    let mut c = RawClient::connect(rig.addr);
    for _ in 0..100 {
        c.call(&[b"INCR", b"after:flood"]);
    }
    drop(c);
    rig.settle("fresh traffic after the flood", &m1, &s1, |d| {
        d.expect("INCR ok", d.cmd("INCR", "ok"), 100)?;
        d.expect("INCR in commandstats", d.redis_cmd("INCR"), 100)?;
        d.exact_except(&[])
    });
    rig.assert_healthy("after the flood", RSS_LIMIT_MB);
    let active_now = rig.metrics().sum("redis_connections_active", &[]);
    println!(
        "[ring-overload] benchmark {secs:.1} s: {lost} events lost, {sets} of 200000 SETs \
         paired; connections_active after the flood {active_after_flood}, now {active_now}"
    );
    let rss = rig.rss_mb();
    rig.finish(&[rss]);
}
