//! What operators run: a real Prometheus scraping the daemon and every dashboard and alert
//! expression answered; log rotation and SIGHUP with no line lost; `tail` in a real terminal;
//! two observers on one interface; the metrics endpoint exposes no keys, values or addresses.

use std::{process::Command, thread::sleep, time::Duration};

use tests::*;

fn scenario(r: &Redis, name: &str) {
    sh(Command::new("python3")
        .arg(root().join("tests/scripts/scenarios.py"))
        .args([name, &r.host, &r.port.to_string()]));
}

#[test]
fn prometheus_answers_every_dashboard_and_alert_expression() {
    let _g = e2e_lock();
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let obs = Observer::start(None, &["-i", "lo", "-p", &port, "--log", "/dev/null"]);
    let dir = temp_dir("prometheus");
    let alerts = root().join("deploy/prometheus/alerts.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: redis-observer\n    static_configs:\n      - targets: [\"{}\"]\n",
        alerts.display(),
        obs.metrics_addr
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("config");
    let web = format!("127.0.0.1:{}", free_port());
    let _prom = Proc::spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log")),
    );
    // Traffic of every kind the dashboard shows: commands, errors, pushes, connections.
    for s in ["errors", "pubsub", "multi"] {
        scenario(&redis, s);
    }
    sh(Command::new("redis-benchmark").args([
        "-p",
        &port,
        "-n",
        "3000",
        "-P",
        "8",
        "-q",
        "-t",
        "set,get,incr,lpush",
    ]));
    // Two scrapes after the traffic.
    let value = |q: &str| -> f64 {
        let enc: String = q
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'_' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let body = http_get(&web, &format!("/api/v1/query?query={enc}")).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0)
    };
    wait_until(
        "two scrapes with command data",
        Duration::from_secs(60),
        || value(r#"count_over_time(redis_commands_total{command="SET",status="ok"}[5m])"#) >= 2.0,
    );
    for s in ["errors", "pubsub"] {
        scenario(&redis, s);
    }
    sleep(Duration::from_secs(3));
    let out = Command::new("python3")
        .arg(root().join("tests/scripts/check_promql.py"))
        .arg(format!("http://{web}"))
        .arg("--require-data")
        .output()
        .expect("check_promql");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "PromQL check failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines().filter(|l| l.starts_with("OK")).count() >= 20,
        "{text}"
    );
    drop(obs);
}

/// Rotation by size and SIGHUP (after an external rename, as logrotate does) lose no line:
/// lines written equal commands counted.
#[test]
fn rotation_and_sighup_lose_no_line() {
    let _g = e2e_lock();
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let dir = temp_dir("rotation");
    let log = dir.join("commands.log");
    let mut obs = Observer::start(
        None,
        &[
            "-i",
            "lo",
            "-p",
            &port,
            "--log",
            log.to_str().unwrap(),
            "--log-max-size",
            "64K",
            "--log-keep",
            "1000",
        ],
    );
    sh(Command::new("redis-benchmark").args([
        "-p", &port, "-n", "3000", "-c", "4", "-P", "4", "-q", "-t", "set,get",
    ]));
    sleep(Duration::from_millis(500));
    std::fs::rename(&log, dir.join("moved-away.log")).expect("rename");
    obs.proc.signal(libc::SIGHUP);
    sleep(Duration::from_millis(300));
    sh(Command::new("redis-benchmark").args([
        "-p", &port, "-n", "2000", "-c", "4", "-P", "4", "-q", "-t", "incr",
    ]));
    sleep(Duration::from_millis(500));
    let m = obs.metrics();
    obs.stop();
    let mut lines = 0u64;
    let mut files = 0;
    for e in std::fs::read_dir(&dir).expect("dir").filter_map(Result::ok) {
        let text = std::fs::read_to_string(e.path()).expect("read");
        files += 1;
        for l in text.lines() {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line ({e}): {l}"));
            if v["command"].is_string() {
                lines += 1;
            }
        }
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&e.metadata().expect("meta").permissions())
                & 0o777;
        if e.file_name() != "moved-away.log" || mode != 0 {
            assert_eq!(mode, 0o600, "{:?} has mode {mode:o}", e.file_name());
        }
    }
    let counted = m.sum("redis_commands_total", &[]) as u64;
    assert!(files > 3, "rotation happened ({files} files)");
    assert!(counted >= 7000, "commands counted: {counted}");
    assert_eq!(lines, counted, "log lines vs commands counted");
    assert_eq!(m.sum("redis_observer_log_dropped_total", &[]), 0.0);
}

/// `tail` in a real terminal (tmux): aligned, colored columns.
#[test]
fn tail_in_a_terminal() {
    let dir = temp_dir("tail");
    let log = dir.join("sample.jsonl");
    let lines = [
        r#"{"ts":"2026-11-20T23:56:34.123456Z","client":"127.0.0.1:50000","server":"127.0.0.1:6379","command":"GET","key":"user:1","args":["user:1"],"status":"ok","reply_type":"bulk","reply":"\"ada\"","error":null,"latency_us":41.5,"req_bytes":27,"resp_bytes":9}"#,
        r#"{"ts":"2026-11-20T23:56:34.223456Z","client":"127.0.0.1:50000","server":"127.0.0.1:6379","command":"LPUSH","key":"user:1","args":["user:1","x"],"status":"error","reply_type":"error","reply":null,"error":"WRONGTYPE Operation against a key holding the wrong kind of value","latency_us":12.0,"req_bytes":31,"resp_bytes":68}"#,
        r#"{"ts":"2026-11-20T23:56:35.000001Z","client":"127.0.0.1:50002","server":"127.0.0.1:6379","command":"BLPOP","key":"q","args":["q","0.3"],"status":"ok","reply_type":"null","reply":"(nil)","error":null,"latency_us":301234.0,"req_bytes":33,"resp_bytes":5}"#,
    ];
    std::fs::write(&log, lines.join("\n") + "\n").expect("write");
    let out = Command::new("bash")
        .arg(root().join("tests/scripts/tail_tmux.sh"))
        .arg(observer_bin())
        .arg(&log)
        .output()
        .expect("tail_tmux.sh");
    assert!(
        out.status.success(),
        "tail in tmux failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Piped: plain text, no escape codes; filters combine.
    let piped = sh(Command::new(observer_bin())
        .arg("tail")
        .arg(&log)
        .arg("--errors"));
    let text = String::from_utf8_lossy(&piped.stdout);
    assert!(
        !text.contains('\u{1b}'),
        "escape codes when piped: {text:?}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("LPUSH") && text.contains("WRONGTYPE"));
    let slow = sh(Command::new(observer_bin()).arg("tail").arg(&log).args([
        "--min-latency",
        "100ms",
        "--json",
    ]));
    let text = String::from_utf8_lossy(&slow.stdout);
    assert_eq!(text.trim(), lines[2]);
}

/// A second observer on the same interface works alongside the first and its exit does not
/// disturb the first.
#[test]
fn two_observers_on_one_interface() {
    let _g = e2e_lock();
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let mut a = Observer::start(None, &["-i", "lo", "-p", &port, "--log", "/dev/null"]);
    let mut b = Observer::start(None, &["-i", "lo", "-p", &port, "--log", "/dev/null"]);
    for _ in 0..10 {
        redis.cli(&["INCR", "n"]);
    }
    sleep(Duration::from_millis(300));
    assert_eq!(
        b.metrics()
            .sum("redis_commands_total", &[("command", "INCR")]),
        10.0
    );
    b.stop();
    for _ in 0..5 {
        redis.cli(&["INCR", "n"]);
    }
    sleep(Duration::from_millis(300));
    let m = a.metrics();
    assert_eq!(m.sum("redis_commands_total", &[("command", "INCR")]), 15.0);
    a.stop();
}

/// The metrics endpoint carries no keys, values or client addresses.
#[test]
fn metrics_expose_no_keys_values_or_clients() {
    let _g = e2e_lock();
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let mut obs = Observer::start(None, &["-i", "lo", "-p", &port, "--log", "/dev/null"]);
    redis.cli(&["SET", "secret-key-name", "secret-value-text"]);
    redis.cli(&["GET", "secret-key-name"]);
    redis.cli(&["NoSuchCommandFromAClient", "x"]);
    sleep(Duration::from_millis(300));
    let text = http_get(&obs.metrics_addr, "/metrics").expect("metrics");
    obs.stop();
    for s in [
        "secret-key-name",
        "secret-value-text",
        "NoSuchCommand",
        "NOSUCHCOMMAND",
    ] {
        assert!(!text.contains(s), "{s} in metrics");
    }
    // Only the server's address appears, never a client's ephemeral port.
    for l in text.lines().filter(|l| l.contains("127.0.0.1:")) {
        assert!(
            l.contains(&format!("127.0.0.1:{port}")),
            "a client address in: {l}"
        );
    }
    assert!(text.contains("command=\"UNKNOWN\""));
}

/// Once attached, the daemon holds no capability in any thread (TCX kernels: nothing to remove
/// at exit), cannot regain any, and still reads its counters and detaches at exit.
#[test]
fn capabilities_are_dropped_after_attaching() {
    let _g = e2e_lock();
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let dir = temp_dir("privs");
    let log = dir.join("log.jsonl");
    let mut obs = Observer::start(
        None,
        &["-i", "lo", "-p", &port, "--log", log.to_str().unwrap()],
    );
    let pid = obs.proc.child.id();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .filter_map(Result::ok)
    {
        let status = std::fs::read_to_string(task.path().join("status")).expect("status");
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(str::trim)
                .unwrap_or("")
                .to_owned()
        };
        assert_eq!(
            field("CapEff:"),
            "0000000000000000",
            "thread {:?}",
            task.file_name()
        );
        assert_eq!(field("CapPrm:"), "0000000000000000");
        assert_eq!(field("CapBnd:"), "0000000000000000");
        assert_eq!(field("NoNewPrivs:"), "1");
    }
    redis.cli(&["SET", "k", "v"]);
    sleep(Duration::from_millis(1200));
    let m = obs.metrics();
    assert!(
        m.sum("redis_observer_packets_total", &[]) > 0.0,
        "kernel counters still readable"
    );
    assert_eq!(m.sum("redis_commands_total", &[("command", "SET")]), 1.0);
    let ids = obs.bpf_ids();
    obs.stop();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&log).expect("log").permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "the command log holds keys and values: 0600"
    );
    let links = bpftool_ids("link");
    for id in &ids.links {
        assert!(!links.contains(id), "our link {id} left attached");
    }
}
