//! Hot keys (`GET /top`): a real client sends a Zipf workload to a real redis-server; the top
//! keys and patterns the observer reports must be the true ones (computed from what was sent),
//! each count within its reported error bound. Keys never reach the metrics port; `--top off`
//! serves nothing; memory stays bounded with ten million distinct keys; `redis-cli --hotkeys` on
//! an LFU server finds mostly the same top 10.

use std::{
    collections::BTreeMap,
    net::TcpStream,
    process::Command,
    thread::sleep,
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::*;

fn top(addr: &str, query: &str) -> Value {
    let body = http_get(addr, &format!("/top?{query}")).expect("GET /top");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// `(name, count)` sorted by count, largest first (ties by name).
fn ranked(m: &BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// The answer's items equal the true top `n` (as a set; the true n-th must beat the n+1-th so
/// the set is well defined), each `calls` within `[true, true + error]`.
fn check_top(answer: &Value, truth: &BTreeMap<String, u64>, n: usize, what: &str) {
    let want = ranked(truth);
    assert!(
        want.len() <= n || want[n - 1].1 > want[n].1,
        "{what}: the true top {n} has a tie at its edge: {:?}",
        &want[n - 1..=n]
    );
    let items = answer["items"].as_array().expect("items");
    assert_eq!(items.len(), n.min(want.len()), "{what}: {answer}");
    let mut got_names: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
    let mut want_names: Vec<&str> = want.iter().take(n).map(|(k, _)| k.as_str()).collect();
    got_names.sort_unstable();
    want_names.sort_unstable();
    assert_eq!(got_names, want_names, "{what}: top {n} differs\n{answer}");
    for i in items {
        let name = i["name"].as_str().unwrap();
        let (est, err) = (i["calls"].as_u64().unwrap(), i["error"].as_u64().unwrap());
        let t = truth[name];
        assert!(
            t <= est && est <= t + err,
            "{what} {name}: true {t}, reported {est} ± {err}"
        );
    }
}

#[test]
fn zipf_top_keys_and_patterns_are_the_true_ones() {
    let _g = e2e_lock();
    require_root();
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let mut obs = Observer::start(None, &["-i", "lo", "-p", &port, "--log", "/dev/null"]);
    let top_addr = obs.top_addr.clone().expect("a /top address");
    let dir = temp_dir("topkeys-zipf");
    let sent = dir.join("sent.json");
    let started = Instant::now();
    let st = Command::new("python3")
        .arg(root().join("tests/scripts/zipf_workload.py"))
        .args([&port, "3000000", "1000000", "1.1", "7"])
        .arg(&sent)
        .status()
        .expect("python3");
    assert!(st.success(), "workload failed");
    let took = started.elapsed();
    eprintln!("workload: 3000000 commands over 1000000 keys in {took:?}");
    let sent: Value = serde_json::from_str(&std::fs::read_to_string(&sent).unwrap()).unwrap();
    let to_map = |v: &Value| -> BTreeMap<String, u64> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
            .collect()
    };
    let calls = to_map(&sent["calls"]);
    let patterns = to_map(&sent["patterns"]);
    eprintln!("distinct keys touched: {}", calls.len());
    sleep(Duration::from_millis(500));

    // Nothing lost on the way, or the counts could not be exact.
    let m = obs.metrics();
    assert_eq!(m.sum("redis_observer_events_lost_total", &[]), 0.0);
    assert_eq!(m.sum("redis_observer_bytes_missed_total", &[]), 0.0);

    let server = format!("127.0.0.1:{port}");
    let mut windows = vec!["all"];
    // The 60 s window holds the last 50 to 60 s: all of a shorter run.
    if took < Duration::from_secs(45) {
        windows.push("60s");
    }
    for window in windows {
        let a = top(
            &top_addr,
            &format!("server={server}&what=keys&by=calls&window={window}&n=10"),
        );
        assert_eq!(a["server"], server.as_str());
        assert_eq!(
            (a["what"].as_str(), a["by"].as_str()),
            (Some("keys"), Some("calls"))
        );
        assert_eq!(a["window"], window);
        check_top(&a, &calls, 10, &format!("keys/{window}"));
        let errs: Vec<u64> = a["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["error"].as_u64().unwrap())
            .collect();
        eprintln!("keys/{window}: top 10 errors {errs:?}; {a}");
        let p = top(
            &top_addr,
            &format!("server={server}&what=patterns&by=calls&window={window}&n=5"),
        );
        check_top(&p, &patterns, 5, &format!("patterns/{window}"));
    }
    // Commands are exact: every GET, SET and MGET sent.
    let c = top(&top_addr, "what=commands&by=calls&window=all&n=5");
    let total: u64 = c["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| matches!(i["name"].as_str(), Some("GET" | "SET" | "MGET")))
        .map(|i| i["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(total, sent["commands"].as_u64().unwrap());
    // Other views answer in the contract's shape.
    for q in [
        "what=bigkeys&by=bytes",
        "what=clients&by=calls",
        "what=keys&by=bytes",
        "what=keys&by=latency",
        "what=patterns&by=latency",
    ] {
        let a = top(&top_addr, q);
        let items = a["items"].as_array().unwrap();
        assert!(!items.is_empty(), "{q}: {a}");
        for i in items {
            for f in ["name", "calls", "bytes", "latency_us", "error"] {
                assert!(i.get(f).is_some(), "{q}: no {f} in {i}");
            }
        }
    }
    // Keys are data: never on the metrics port.
    let metrics = http_get(&obs.metrics_addr, "/metrics").unwrap();
    let hottest = ranked(&calls)[0].0.clone();
    assert!(!metrics.contains(&hottest), "a key in /metrics");
    assert!(!metrics.contains("user:") && !metrics.contains("session:"));
    let on_metrics = http_get(&obs.metrics_addr, "/top?what=keys").unwrap_or_default();
    assert!(
        !on_metrics.contains(&hottest),
        "/top served on the metrics port"
    );
    // Bad questions get 400, not an answer.
    assert!(
        http_get(&top_addr, "/top?what=nope")
            .unwrap()
            .contains("what:")
    );
    obs.stop();
}

#[test]
fn top_off_serves_nothing() {
    let _g = e2e_lock();
    require_root();
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let top_port = free_port();
    let top_addr = format!("127.0.0.1:{top_port}");
    let mut obs = Observer::start(
        None,
        &[
            "-i",
            "lo",
            "-p",
            &port,
            "--log",
            "/dev/null",
            "--top",
            "off",
            "--top-addr",
            &top_addr,
        ],
    );
    redis.cli(&["SET", "k", "v"]);
    assert!(
        TcpStream::connect(&top_addr).is_err(),
        "/top listens with --top off"
    );
    assert!(http_get(&obs.metrics_addr, "/metrics").is_some());
    obs.stop();
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Two observers on the same traffic, analytics on and off: ten million distinct keys cost the
/// one with analytics no more than the documented bound for one server.
#[test]
fn ten_million_distinct_keys_stay_within_the_bound() {
    /// docs/contract.md: about 7.4 MiB per server with the defaults, plus up to 2.3 MiB for a
    /// moment while a question is answered or a bucket is folded.
    const BOUND_KIB: u64 = 7_600 + 2_400;
    /// Allocator slack and the records carrying keys.
    const SLACK_KIB: u64 = 4_096;
    let _g = e2e_lock();
    require_root();
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let mut on = Observer::start(None, &["-i", "lo", "-p", &port, "--log", "/dev/null"]);
    let mut off = Observer::start(
        None,
        &[
            "-i",
            "lo",
            "-p",
            &port,
            "--log",
            "/dev/null",
            "--top",
            "off",
        ],
    );
    let top_addr = on.top_addr.clone().unwrap();
    let st = Command::new("redis-benchmark")
        .args([
            "-p",
            &port,
            "-t",
            "set",
            "-n",
            "11000000",
            "-r",
            "1000000000",
            "-P",
            "32",
            "-c",
            "4",
            "-q",
        ])
        .status()
        .expect("redis-benchmark");
    assert!(st.success());
    sleep(Duration::from_millis(500));
    // Ask (the merge of every window is the largest transient allocation).
    let a = top(&top_addr, "what=keys&by=calls&window=all&n=100");
    assert_eq!(a["items"].as_array().unwrap().len(), 100);
    let distinct = redis.admin(&["DBSIZE"]);
    let (rss_on, rss_off) = (rss_kib(on.proc.child.id()), rss_kib(off.proc.child.id()));
    eprintln!(
        "distinct keys {}; RSS with analytics {rss_on} KiB, without {rss_off} KiB, difference {} KiB (bound {BOUND_KIB} + slack {SLACK_KIB})",
        distinct.trim(),
        rss_on as i64 - rss_off as i64
    );
    assert!(distinct.trim().parse::<u64>().unwrap() >= 10_000_000);
    assert!(
        rss_on <= rss_off + BOUND_KIB + SLACK_KIB,
        "RSS {rss_on} KiB vs {rss_off} KiB without analytics"
    );
    on.stop();
    off.stop();
}

/// The rows of one table `replay --top N` printed: `(name, calls)`.
fn printed_table(out: &str, title: &str) -> Vec<(String, u64)> {
    let mut rows = Vec::new();
    let mut lines = out.lines().skip_while(|l| *l != format!("-- {title}"));
    lines.next(); // title
    lines.next(); // header
    for l in lines.take_while(|l| !l.starts_with("--") && !l.is_empty()) {
        let f: Vec<&str> = l.split_whitespace().collect();
        // #, name (`CLIENT SETINFO` has a space), calls, bytes, latency_us, error.
        assert!(f.len() >= 6, "row {l:?}");
        let k = f.len();
        rows.push((f[1..k - 4].join(" "), f[k - 4].parse().unwrap()));
    }
    rows
}

/// `replay --top N` over a tcpdump recording of the same kind of workload prints the true top
/// keys and patterns with their exact counts (a whole small capture fits the sketches).
#[test]
fn replay_prints_the_true_tables() {
    let _g = e2e_lock();
    require_root();
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let dir = temp_dir("topkeys-replay");
    let mut dump = Tcpdump::start(None, "lo", redis.port, &dir.join("capture.pcap"));
    let sent = dir.join("sent.json");
    let st = Command::new("python3")
        .arg(root().join("tests/scripts/zipf_workload.py"))
        .args([&port, "30000", "20000", "1.1", "11"])
        .arg(&sent)
        .status()
        .expect("python3");
    assert!(st.success());
    assert_eq!(dump.stop(), 0, "tcpdump dropped packets");
    let sent: Value = serde_json::from_str(&std::fs::read_to_string(&sent).unwrap()).unwrap();
    let out = Command::new(observer_bin())
        .arg("replay")
        .arg(&dump.path)
        .args(["-p", &port, "--log", "/dev/null", "--top", "5"])
        .output()
        .expect("replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(text.contains(&format!("== server 127.0.0.1:{port}")));
    for (table, field) in [
        ("keys by calls", "calls"),
        ("patterns by calls", "patterns"),
    ] {
        let truth: BTreeMap<String, u64> = sent[field]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        let want: Vec<(String, u64)> = ranked(&truth).into_iter().take(5).collect();
        let got = printed_table(&text, table);
        let mut g = got.clone();
        let mut w = want.clone();
        g.sort();
        w.sort();
        assert_eq!(g, w, "{table}");
    }
    for t in [
        "keys by bytes",
        "keys by latency",
        "patterns by latency",
        "big keys (largest request or reply)",
        "clients by calls",
        "commands by calls",
        "commands by latency",
    ] {
        assert!(!printed_table(&text, t).is_empty(), "{t} empty");
    }
}

/// `redis-cli --hotkeys` (which needs an LFU policy and scans the keyspace) against `/top` on the
/// same Zipf data: the overlap of the two top-10 lists, printed; both must find most of the true
/// top 10 (LFU counters are logarithmic and probabilistic, so `--hotkeys` may swap neighbours).
#[test]
fn hotkeys_of_redis_cli_and_top_agree() {
    let _g = e2e_lock();
    require_root();
    let redis = Redis::start(&["--maxmemory-policy", "allkeys-lfu"]);
    let port = redis.port.to_string();
    let mut obs = Observer::start(None, &["-i", "lo", "-p", &port, "--log", "/dev/null"]);
    let top_addr = obs.top_addr.clone().expect("a /top address");
    let dir = temp_dir("topkeys-hotkeys");
    let sent = dir.join("sent.json");
    let st = Command::new("python3")
        .arg(root().join("tests/scripts/zipf_workload.py"))
        .args([&port, "300000", "100000", "1.1", "11"])
        .arg(&sent)
        .status()
        .expect("python3");
    assert!(st.success(), "workload failed");
    let sent: Value = serde_json::from_str(&std::fs::read_to_string(&sent).unwrap()).unwrap();
    let calls: BTreeMap<String, u64> = sent["calls"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect();
    sleep(Duration::from_millis(500));
    let a = top(
        &top_addr,
        &format!("server=127.0.0.1:{port}&what=keys&by=calls&window=all&n=10"),
    );
    let ours: Vec<String> = a["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    // Read after the observer's answer: --hotkeys' own SCAN and OBJECT FREQ calls go to the
    // same port, and they are commands like any other (keys are touched by OBJECT FREQ).
    let out = Command::new("redis-cli")
        .args(["-p", &port, "--hotkeys"])
        .output()
        .expect("redis-cli --hotkeys");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    // `hot key found with counter: 37\tkeyname: "user:1:profile"`, hottest first.
    let theirs: Vec<String> = text
        .lines()
        .filter_map(|l| {
            l.split_once("keyname: ")
                .map(|(_, k)| k.trim_matches('"').to_owned())
        })
        .take(10)
        .collect();
    let truth: Vec<String> = ranked(&calls)
        .into_iter()
        .take(10)
        .map(|(k, _)| k)
        .collect();
    let overlap = |x: &[String], y: &[String]| x.iter().filter(|k| y.contains(k)).count();
    eprintln!(
        "top 10 overlap: /top and --hotkeys {}/10; /top and the truth {}/10; --hotkeys and the truth {}/10\n/top: {ours:?}\n--hotkeys: {theirs:?}\ntruth: {truth:?}",
        overlap(&ours, &theirs),
        overlap(&ours, &truth),
        overlap(&theirs, &truth)
    );
    assert_eq!(theirs.len(), 10, "{text}");
    assert_eq!(overlap(&ours, &truth), 10);
    assert!(overlap(&ours, &theirs) >= 6, "{text}");
    obs.stop();
}
