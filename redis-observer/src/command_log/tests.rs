use std::io::Write;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::*;
use crate::commands::CommandId;
use crate::conn::ConnMeta;
use crate::metrics::Metrics;
use crate::outputs::{LogSink, Outputs};
use crate::record::{Notice, ReplySummary, Sink as _, Status};
use crate::resp::Kind;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "redis-observer-test-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sa(s: &str) -> std::net::SocketAddr {
    s.parse().unwrap()
}

/// A connection that lives as long as the test (records borrow theirs).
fn conn() -> &'static ConnMeta {
    Box::leak(Box::new(ConnMeta::new(
        sa("10.0.0.7:53422"),
        sa("10.0.0.1:6379"),
    )))
}

/// Metrics plus a command log, as `run` and `replay` build them.
fn outputs(metrics: Metrics, log: CommandLog, slow: Option<Duration>, pushes: bool) -> Outputs {
    Outputs::new(metrics).with(Box::new(LogSink::new(log, slow, pushes)))
}

/// A command record whose key is `key-{i}` (so lines can be matched up).
fn with_rec<R>(i: u64, latency_ns: Option<u64>, f: impl FnOnce(&CommandRecord<'_>) -> R) -> R {
    let key = format!("key-{i}");
    let r = CommandRecord {
        ts_ns: 1_795_218_994_000_000_000 + i,
        conn: conn(),
        command: CommandId(1),
        name: b"GET",
        key: Some(key.as_bytes()),
        args: &[],
        keys: &[],
        arg_buf: &[],
        argc: 1,
        status: if latency_ns.is_some() {
            Status::Ok
        } else {
            Status::Unanswered
        },
        reply: latency_ns.map(|_| ReplySummary {
            kind: Kind::Bulk,
            len: 3,
            text: b"bar",
            redacted: false,
        }),
        latency_ns,
        req_bytes: 20,
        resp_bytes: 9,
        in_transaction: false,
        blocking: false,
        protocol_error: None,
    };
    f(&r)
}

fn keys_in(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("valid JSON line");
            v["key"].as_str()?.strip_prefix("key-")?.parse().ok()
        })
        .collect()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// A `Write` into shared memory, optionally held shut until released.
#[derive(Clone, Default)]
struct Shared {
    data: Arc<Mutex<Vec<u8>>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl Shared {
    fn closed_gate() -> Self {
        let s = Shared::default();
        *s.gate.0.lock().unwrap() = true;
        s
    }

    fn release(&self) {
        *self.gate.0.lock().unwrap() = false;
        self.gate.1.notify_all();
    }

    fn text(&self) -> String {
        String::from_utf8(self.data.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut shut = self.gate.0.lock().unwrap();
        while *shut {
            shut = self.gate.1.wait(shut).unwrap();
        }
        self.data.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn json() -> Renderer {
    Renderer::new(Format::Json)
}

#[test]
fn queued_log_writes_everything_on_close() {
    let m = Metrics::new();
    let out = Shared::default();
    let mut log = CommandLog::spawn(
        Target::Writer(Box::new(out.clone())),
        json(),
        m.log_counters(),
    )
    .unwrap();
    for i in 0..10_000 {
        with_rec(i, Some(1_000), |r| log.command(r));
        if i % 1_000 == 0 {
            log.flush();
        }
    }
    log.close().unwrap();
    assert_eq!(keys_in(&out.text()), (0..10_000).collect::<Vec<_>>());
    assert!(
        m.encode_text()
            .contains("redis_observer_log_dropped_total{reason=\"queue_full\"} 0")
    );
}

#[test]
fn full_queue_drops_and_says_so_once() {
    let m = Metrics::new();
    let out = Shared::closed_gate();
    let mut log = CommandLog::spawn_with(
        Target::Writer(Box::new(out.clone())),
        json(),
        m.log_counters(),
        1,
    )
    .unwrap();
    // The writer blocks on its first batch, the queue holds one more: the rest is dropped.
    let total = 5_000u64;
    for i in 0..total {
        with_rec(i, Some(1_000), |r| log.command(r));
    }
    out.release();
    // Lines are dropped until the writer has caught up; keep logging until one is taken (the
    // drop counter does not move): it follows the notice.
    let dropped = m.log_counters().queue_full;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = total;
    loop {
        let before = dropped.get();
        with_rec(sent, Some(1_000), |r| log.command(r));
        sent += 1;
        if dropped.get() == before {
            break;
        }
        assert!(Instant::now() < deadline, "writer stuck");
        std::thread::sleep(Duration::from_millis(5));
    }
    log.close().unwrap();
    let text = out.text();
    let notices: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["status"] == "notice")
        .collect();
    // One notice per episode of drops (the writer may have caught up once in between), each
    // saying how many lines it stands for.
    assert!((1..=3).contains(&notices.len()), "{notices:?}");
    let said: u64 = notices
        .iter()
        .map(|n| {
            n["notice"]
                .as_str()
                .unwrap()
                .strip_prefix("dropped ")
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    let written = keys_in(&text);
    assert!(said > 0);
    assert_eq!(written.len() as u64 + said, sent);
    assert!(written.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(written.last(), Some(&(sent - 1)));
    // The notice sits right before the last line, the first one taken after the gap.
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[lines.len() - 2].contains("\"status\":\"notice\""));
    let metrics = m.encode_text();
    assert!(
        metrics.contains(&format!(
            "redis_observer_log_dropped_total{{reason=\"queue_full\"}} {said}"
        )),
        "{metrics}"
    );
}

#[test]
fn direct_log_and_slow_filter() {
    let out = Shared::default();
    let metrics = Metrics::new();
    let log = CommandLog::direct(
        Target::Writer(Box::new(out.clone())),
        json(),
        metrics.log_counters(),
    );
    let mut o = outputs(metrics, log, Some(Duration::from_micros(100)), false);
    o.flow(conn(), crate::record::FlowEvent::Opened);
    with_rec(1, Some(99_999), |r| o.command(r));
    with_rec(2, Some(100_000), |r| o.command(r));
    with_rec(3, None, |r| o.command(r));
    with_rec(4, Some(5_000_000), |r| o.command(r));
    o.push(conn(), 7, &crate::resp::Reply::default());
    // A notice carries its own time (in replay, the capture's).
    o.notice(conn(), 1_795_218_994_000_000_004, Notice::OrphanReply);
    let (m, r) = o.finish();
    r.unwrap();
    let text = out.text();
    assert_eq!(keys_in(&text), vec![2, 4]);
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "notice");
    // Notice time in replay is the last record's.
    assert_eq!(last["ts"], "2026-11-20T23:56:34.000000Z");
    // Metrics count everything, pushes included.
    let mt = m.encode_text();
    assert!(mt.contains("status=\"ok\"} 3"), "{mt}");
    assert!(mt.contains("status=\"unanswered\"} 1"), "{mt}");
    assert!(mt.contains("redis_push_messages_total{server=\"10.0.0.1:6379\"} 1"));
    assert!(mt.contains("redis_observer_orphan_replies_total 1"));
    assert!(mt.contains("redis_connections_active{server=\"10.0.0.1:6379\"} 1"));
}

#[test]
fn without_slow_everything_is_logged_and_pushes_on_request() {
    let out = Shared::default();
    let metrics = Metrics::new();
    let log = CommandLog::direct(
        Target::Writer(Box::new(out.clone())),
        Renderer::new(Format::Text),
        metrics.log_counters(),
    );
    let mut o = outputs(metrics, log, None, true);
    with_rec(1, Some(1), |r| o.command(r));
    with_rec(2, None, |r| o.command(r));
    o.push(conn(), 7, &crate::resp::Reply::default());
    o.flush();
    assert_eq!(out.text().lines().count(), 3);
    let (_, r) = o.finish();
    r.unwrap();
    let text = out.text();
    assert!(text.contains(" key-1 "));
    assert!(text.contains(" key-2 "));
    assert!(text.contains(" push "));
}

#[test]
fn file_is_created_0600_and_appended() {
    let dir = TempDir::new("mode");
    let path = dir.join("commands.log");
    let m = Metrics::new();
    for round in 0..2 {
        let target = Target::open(path.to_str().unwrap(), 0, 3).unwrap();
        let mut log = CommandLog::spawn(target, json(), m.log_counters()).unwrap();
        with_rec(round, Some(1), |r| log.command(r));
        log.close().unwrap();
    }
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(keys_in(&read(&path)), vec![0, 1]);
}

#[test]
fn rotation_keeps_every_line_once_and_honours_keep() {
    let dir = TempDir::new("rotate");
    let path = dir.join("c.log");
    let m = Metrics::new();
    let line_len = with_rec(0, Some(1), |r| {
        let mut v = Vec::new();
        write_json(r, &mut v);
        v.len() as u64
    });
    let max = line_len * 10 + line_len / 2;
    let target = Target::open(path.to_str().unwrap(), max, 3).unwrap();
    let mut log = CommandLog::spawn(target, json(), m.log_counters()).unwrap();
    let total = 100u64;
    for i in 0..total {
        with_rec(i, Some(1), |r| log.command(r));
        if i % 7 == 0 {
            log.flush();
        }
    }
    log.close().unwrap();
    // Lines of key-0..key-9 are one digit shorter: 10 or 11 per file. Only the newest 4 files
    // remain: c.log and c.log.1..3.
    let files = ["c.log.3", "c.log.2", "c.log.1", "c.log"];
    let mut seen = Vec::new();
    for f in files {
        let text = read(&dir.join(f));
        assert!(text.len() as u64 <= max, "{f} is {} bytes", text.len());
        assert!(text.ends_with('\n'));
        seen.extend(keys_in(&text));
    }
    assert!(!dir.join("c.log.4").exists());
    let first = seen[0];
    assert_eq!(seen, (first..total).collect::<Vec<_>>());
    assert!(first > 0 && total - first >= 30, "kept {}", total - first);
}

#[test]
fn rotation_edge_cases() {
    let dir = TempDir::new("rotate-edges");
    let path = dir.join("x.log");
    // A line longer than the limit gets a file of its own; keep = 0 keeps no old files.
    let mut f = RotatingFile::open(&path, 10, 0).unwrap();
    f.write_lines(b"0123456789abcdef\n").unwrap();
    f.write_lines(b"a\nb\n").unwrap();
    f.write_lines(b"c\n").unwrap();
    assert_eq!(read(&path), "a\nb\nc\n");
    assert!(!dir.join("x.log.1").exists());
    let mut f = RotatingFile::open(&path, 10, 2).unwrap();
    f.write_lines(b"0123456789abcdef\nxy\n").unwrap();
    assert_eq!(read(&dir.join("x.log.2")), "a\nb\nc\n");
    assert_eq!(read(&dir.join("x.log.1")), "0123456789abcdef\n");
    assert_eq!(read(&path), "xy\n");
}

#[test]
fn sighup_reopens_the_file() {
    let dir = TempDir::new("hup");
    let path = dir.join("c.log");
    let moved = dir.join("c.log.old");
    let m = Metrics::new();
    let target = Target::open(path.to_str().unwrap(), 0, 1).unwrap();
    let mut log = CommandLog::spawn(target, json(), m.log_counters()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let watcher = {
        let _guard = rt.enter();
        log.reopener().on_sighup().unwrap()
    };
    rt.spawn(watcher);
    for i in 0..50 {
        with_rec(i, Some(1), |r| log.command(r));
    }
    log.flush();
    let wait = |what: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !what() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait(&|| keys_in(&read(&path)).len() == 50);
    // What logrotate does: move the file, then SIGHUP.
    std::fs::rename(&path, &moved).unwrap();
    // SAFETY: kill(2) on our own pid with a signal whose handler tokio installed above.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
    wait(&|| path.exists());
    for i in 50..80 {
        with_rec(i, Some(1), |r| log.command(r));
    }
    log.close().unwrap();
    assert_eq!(keys_in(&read(&moved)), (0..50).collect::<Vec<_>>());
    assert_eq!(keys_in(&read(&path)), (50..80).collect::<Vec<_>>());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn write_errors_are_counted() {
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let m = Metrics::new();
    let mut log =
        CommandLog::spawn(Target::Writer(Box::new(Broken)), json(), m.log_counters()).unwrap();
    for i in 0..10 {
        with_rec(i, Some(1), |r| log.command(r));
    }
    assert_eq!(log.close().unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    assert!(
        m.encode_text()
            .contains("redis_observer_log_dropped_total{reason=\"write_error\"} 10")
    );
    let mut log = CommandLog::direct(Target::Writer(Box::new(Broken)), json(), m.log_counters());
    with_rec(1, Some(1), |r| log.command(r));
    assert!(log.close().is_err());
}

/// `cargo test --release -- --ignored --nocapture log_cost`
#[test]
#[ignore = "timing; run in release with --nocapture"]
fn log_cost() {
    let args_buf = b"user:1000value-of-some-length-0123456789";
    let args = [
        crate::record::RecordArg {
            start: 0,
            kept: 9,
            len: 9,
            redacted: false,
        },
        crate::record::RecordArg {
            start: 9,
            kept: 31,
            len: 31,
            redacted: false,
        },
    ];
    let r = CommandRecord {
        ts_ns: 1_795_218_994_123_456_789,
        conn: conn(),
        command: CommandId(2),
        name: b"SET",
        key: Some(b"user:1000"),
        args: &args,
        keys: &[],
        arg_buf: args_buf,
        argc: 2,
        status: Status::Ok,
        reply: Some(ReplySummary {
            kind: Kind::Simple,
            len: 2,
            text: b"OK",
            redacted: false,
        }),
        latency_ns: Some(123_456),
        req_bytes: 60,
        resp_bytes: 5,
        in_transaction: false,
        blocking: false,
        protocol_error: None,
    };
    let n = 2_000_000u32;
    for (name, format) in [("json", Format::Json), ("text", Format::Text)] {
        let mut renderer = Renderer::new(format);
        let mut out = Vec::with_capacity(1 << 20);
        let t = Instant::now();
        for i in 0..n {
            if out.len() > (1 << 20) - 4096 {
                out.clear();
            }
            let mut rr = r;
            rr.ts_ns += u64::from(i);
            renderer.command(&rr, &mut out);
        }
        let ns = t.elapsed().as_nanos() as f64 / f64::from(n);
        println!("render {name}: {ns:.1} ns/line");
    }
    // Through the queue to a writer that discards.
    let m = Metrics::new();
    let mut log = CommandLog::spawn(
        Target::Writer(Box::new(io::sink())),
        json(),
        m.log_counters(),
    )
    .unwrap();
    let t = Instant::now();
    for i in 0..n {
        log.command(&r);
        if i % 4096 == 0 {
            log.flush();
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    log.close().unwrap();
    println!("CommandLog::command (queued, producer side): {ns:.1} ns/line");
    let mut o = Outputs::new(Metrics::new());
    let t = Instant::now();
    for _ in 0..n {
        o.command(&r);
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    println!("Outputs::command, metrics only: {ns:.1} ns/record");
}

#[test]
fn outputs_can_move_to_the_pipeline_thread() {
    fn send<T: Send>() {}
    send::<Outputs>();
    send::<Metrics>();
    send::<CommandLog>();
}

#[test]
fn huge_keep_is_cheap() {
    let dir = TempDir::new("keep-max");
    let path = dir.join("k.log");
    let mut f = RotatingFile::open(&path, 4, u32::MAX).unwrap();
    let t = Instant::now();
    for i in 0..5 {
        f.write_lines(format!("{i}\n").as_bytes()).unwrap();
        f.write_lines(b"x\n").unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(read(&path), "4\nx\n");
    assert_eq!(read(&dir.join("k.log.4")), "0\nx\n");
}
