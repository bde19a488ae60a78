//! Replication links on a watched port, against real servers: a master M with a replica R0 that
//! was linked before the observer started (picked up mid-stream), a replica R1 that does a full
//! sync while observed (disk form: `$<len>` RDB), a replica R3 that does a diskless full sync
//! (`$EOF:` form), a chained replica R2 of R1 (R1's port is watched too; R1 sends it a diskless
//! RDB), and every link of M cut once so that the replicas come back with `+CONTINUE`. Writes
//! on M include EXPIRE, a script, MULTI/EXEC, another db and WAIT.
//!
//! Oracle: per command, what the observer saw M execute equals M's INFO commandstats delta,
//! live and in replay; on R1's port the replication commands (PING, REPLCONF, PSYNC) equal R1's
//! delta. No orphan replies, desyncs, lost commands or notice lines; the links' stream offsets
//! equal the servers' `master_repl_offset`, and the replicas' acknowledged lag reaches 0.
//!
//! The counts are cut exactly by freezing the replicas (SIGSTOP) around the INFO snapshots:
//! replicas send `REPLCONF ACK` every second.

use std::{collections::BTreeMap, path::Path, process::Command, thread::sleep, time::Duration};

use serde_json::Value;
use tests::*;

const EXECUTED: &[&str] = &["ok", "error", "no_reply"];

fn server_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["--dir", dir.to_str().expect("dir")]
        .iter()
        .chain(["--repl-diskless-sync-delay", "0"].iter())
        .map(|s| s.to_string())
        .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn start(name: &str, extra: &[&str]) -> Redis {
    let args = server_args(&temp_dir(name), extra);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Redis::start(&refs)
}

fn info_field(r: &Redis, field: &str) -> Option<String> {
    let info = r.admin(&["INFO", "replication"]);
    info.lines().find_map(|l| {
        l.trim()
            .strip_prefix(&format!("{field}:"))
            .map(str::to_owned)
    })
}

fn wait_link_up(r: &Redis) {
    wait_until("replica link up", Duration::from_secs(20), || {
        info_field(r, "master_link_status").as_deref() == Some("up")
    });
}

fn repl_offset(r: &Redis) -> u64 {
    info_field(r, "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `redis-cli` reading commands from stdin on one connection.
fn pipe(r: &Redis, script: &str) {
    use std::io::Write as _;
    let mut child = Command::new("redis-cli")
        .args(["-h", &r.host, "-p", &r.port.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-cli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    assert!(child.wait().expect("wait").success());
}

/// Per command: `redis_commands_total` of one server, executed statuses only.
fn commands_of(m: &Metrics, server: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (k, v) in &m.0 {
        let Some(rest) = k.strip_prefix("redis_commands_total{") else {
            continue;
        };
        let label = |name: &str| {
            rest.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("")
                .to_owned()
        };
        if label("server") == server && EXECUTED.contains(&label("status").as_str()) && *v > 0.0 {
            *out.entry(label("command")).or_insert(0) += *v as u64;
        }
    }
    out
}

fn log_counts_of(log: &[Value], server: &str) -> BTreeMap<String, u64> {
    let mine: Vec<Value> = log
        .iter()
        .filter(|v| v["server"].as_str() == Some(server))
        .cloned()
        .collect();
    log_counts(&mine, EXECUTED)
}

/// Series of `name` for one server, by `replica` label.
fn by_replica(m: &Metrics, name: &str, server: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (k, v) in &m.0 {
        let Some(rest) = k.strip_prefix(&format!("{name}{{")) else {
            continue;
        };
        if !rest.contains(&format!("server=\"{server}\"")) {
            continue;
        }
        let replica = rest
            .split("replica=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("")
            .to_owned();
        out.insert(replica, *v);
    }
    out
}

fn no_losses(m: &Metrics, what: &str) {
    for name in [
        "redis_observer_orphan_replies_total",
        "redis_observer_desyncs_total",
        "redis_observer_commands_lost_total",
        "redis_observer_events_lost_total",
    ] {
        assert_eq!(m.sum(name, &[]), 0.0, "{what}: {name}");
    }
}

#[test]
fn replication_links_counted_exactly() {
    let _g = e2e_lock();
    require_root();
    let dir = temp_dir("replication");
    // No PINGs in the stream during the test (they would run on R1 too, uncounted on its port).
    let m = start(
        "repl-m",
        &[
            "--repl-diskless-sync",
            "no",
            "--repl-ping-replica-period",
            "3600",
        ],
    );
    let mp = m.port.to_string();
    let r0 = start("repl-r0", &["--replicaof", "127.0.0.1", &mp]);
    wait_link_up(&r0);
    let r1 = start(
        "repl-r1",
        &[
            "--repl-diskless-sync",
            "yes",
            "--repl-ping-replica-period",
            "3600",
        ],
    );
    let r3 = start("repl-r3", &[]);
    let r2 = start("repl-r2", &[]);
    let (ms, r1s) = (
        format!("127.0.0.1:{}", m.port),
        format!("127.0.0.1:{}", r1.port),
    );

    // R0's link runs already: freeze it so that the observer's start is an exact cut.
    r0.proc.signal(libc::SIGSTOP);
    let mut dump = Tcpdump::start(None, "lo", m.port, &dir.join("capture.pcap"));
    let log = dir.join("live.jsonl");
    let r1p = r1.port.to_string();
    let mut obs = Observer::start(
        None,
        &[
            "-i",
            "lo",
            "-p",
            &mp,
            "-p",
            &r1p,
            "--log",
            log.to_str().unwrap(),
        ],
    );
    let before_m = m.commandstats();
    r0.proc.signal(libc::SIGCONT);

    // R1: full sync, disk form.
    r1.admin(&["REPLICAOF", "127.0.0.1", &mp]);
    wait_link_up(&r1);

    // Writes, then WAIT (the master sends REPLCONF GETACK to its replicas).
    let mut writes = 0;
    for i in 0..5 {
        m.cli(&["SET", &format!("k{i}"), "v"]);
        writes += 1;
    }
    m.cli(&["EXPIRE", "k1", "100"]);
    m.cli(&["INCR", "n"]);
    m.cli(&[
        "EVAL",
        "return redis.call('SET', KEYS[1], ARGV[1])",
        "1",
        "s",
        "1",
    ]);
    m.cli(&["-n", "2", "SET", "other-db", "1"]);
    pipe(&m, "MULTI\nSET t 1\nINCR t\nEXEC\n");
    writes += 6;
    let waited = m.cli(&["WAIT", "2", "2000"]);
    assert_eq!(waited.trim(), "2", "WAIT: both replicas acknowledged");

    // R3: diskless full sync, with keepalives before +FULLRESYNC.
    m.admin(&["CONFIG", "SET", "repl-diskless-sync", "yes"]);
    m.admin(&["CONFIG", "SET", "repl-diskless-sync-delay", "2"]);
    r3.admin(&["REPLICAOF", "127.0.0.1", &mp]);
    wait_link_up(&r3);

    // R2: replica of R1, whose port is watched too. R1's own counts are cut from here (no WAIT
    // below: a GETACK would run on R1 without crossing its port).
    let before_r1 = r1.commandstats();
    r2.admin(&["REPLICAOF", "127.0.0.1", &r1p]);
    wait_link_up(&r2);
    for i in 0..5 {
        m.cli(&["SET", &format!("c{i}"), "v"]);
    }
    writes += 5;

    // Cut every link of M: the replicas come back with PSYNC and +CONTINUE.
    m.admin(&["CLIENT", "KILL", "TYPE", "replica"]);
    sleep(Duration::from_millis(300));
    for r in [&r0, &r1, &r3] {
        wait_link_up(r);
    }
    m.cli(&["SET", "after", "1"]);
    writes += 1;

    // Quiescence: every replica at the master's offset, and the observer agrees.
    let top = repl_offset(&m);
    for r in [&r0, &r1, &r3, &r2] {
        wait_until("replica caught up", Duration::from_secs(10), || {
            info_field(r, "slave_repl_offset").and_then(|v| v.parse().ok()) == Some(top)
        });
    }
    // The replicas acknowledge every second: the lag the observer computes comes back to 0.
    wait_until("observer lag 0", Duration::from_secs(10), || {
        let live = obs.metrics();
        let lag = by_replica(&live, "redis_replication_ack_lag_bytes", &ms);
        let lag_r1 = by_replica(&live, "redis_replication_ack_lag_bytes", &r1s);
        lag.len() == 3
            && lag_r1.len() == 1
            && lag.values().chain(lag_r1.values()).all(|v| *v == 0.0)
    });

    // Freeze the replicas (R2 first: R1 must still answer INFO), then read both sides.
    r2.proc.signal(libc::SIGSTOP);
    sleep(Duration::from_millis(400));
    let after_r1 = r1.commandstats();
    for r in [&r0, &r1, &r3] {
        r.proc.signal(libc::SIGSTOP);
    }
    sleep(Duration::from_millis(400));
    let after_m = m.commandstats();
    let live_text = http_get(&obs.metrics_addr, "/metrics").expect("metrics");
    let live = Metrics::parse(&live_text);
    obs.stop();
    let tcpdump_dropped = dump.stop();
    for r in [&r0, &r1, &r2, &r3] {
        r.proc.signal(libc::SIGCONT);
    }
    let live_log = parse_log(&std::fs::read_to_string(&log).expect("live log"));

    // M: every command on its port, exactly. Its own admin commands went over the unix socket;
    // the script's SET ran inside EVAL.
    let mut want_m = before_m.delta(&after_m);
    for admin in ["INFO", "CONFIG SET", "CLIENT KILL"] {
        want_m.remove(admin);
    }
    *want_m.get_mut("SET").expect("SET ran") -= 1;
    let got_m = commands_of(&live, &ms);
    eprintln!("M: {got_m:?}");
    assert_eq!(
        got_m,
        want_m,
        "M: live metrics vs INFO commandstats ({})",
        dir.display()
    );
    assert_eq!(log_counts_of(&live_log, &ms), want_m, "M: live log");
    for c in ["PSYNC", "REPLCONF", "WAIT"] {
        assert!(want_m.contains_key(c), "{c} ran on M: {want_m:?}");
    }

    // R1: the replication commands R2 sent on its port, exactly (R1 also ran what M propagated,
    // which never crossed R1's port).
    let delta_r1 = before_r1.delta(&after_r1);
    let got_r1 = commands_of(&live, &r1s);
    let want_r1: BTreeMap<String, u64> = delta_r1
        .iter()
        .filter(|(k, _)| ["PING", "REPLCONF", "PSYNC", "SYNC"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(got_r1, want_r1, "R1: live metrics vs INFO commandstats");
    assert_eq!(log_counts_of(&live_log, &r1s), want_r1, "R1: live log");

    // Nothing was lost, nothing is an orphan, no notice lines.
    no_losses(&live, "live");
    let notices: Vec<&Value> = live_log.iter().filter(|v| v["command"].is_null()).collect();
    assert!(notices.is_empty(), "notice lines: {notices:?}");

    // Replication metrics.
    let sum = |name: &str, server: &str| live.sum(name, &[("server", server)]);
    assert_eq!(
        sum("redis_replication_full_syncs_total", &ms),
        2.0,
        "R1 and R3"
    );
    assert_eq!(
        sum("redis_replication_partial_syncs_total", &ms),
        3.0,
        "after the kill"
    );
    assert_eq!(sum("redis_replication_full_syncs_total", &r1s), 1.0, "R2");
    assert_eq!(sum("redis_replication_links_active", &ms), 3.0);
    assert_eq!(sum("redis_replication_links_active", &r1s), 1.0);
    let label = |r: &Redis| format!("127.0.0.1:{}", r.port);
    let rdb = by_replica(&live, "redis_replication_rdb_bytes", &ms);
    for r in [&r1, &r3] {
        assert!(
            rdb.get(&label(r)).is_some_and(|b| *b > 50.0),
            "RDB size: {rdb:?}"
        );
    }
    // The stream offsets are the servers' own, and every replica acknowledged all of it.
    for name in [
        "redis_replication_stream_offset",
        "redis_replication_acked_offset",
    ] {
        let on_m = by_replica(&live, name, &ms);
        let want: BTreeMap<String, f64> = [&r0, &r1, &r3]
            .iter()
            .map(|r| (label(r), top as f64))
            .collect();
        assert_eq!(on_m, want, "{name} on M");
        let on_r1 = by_replica(&live, name, &r1s);
        assert_eq!(on_r1, [(label(&r2), top as f64)].into(), "{name} on R1");
    }
    let cmds = by_replica(&live, "redis_replication_commands_total", &ms);
    assert!(
        cmds.get(&label(&r1))
            .is_some_and(|n| *n >= f64::from(writes)),
        "propagated to R1: {cmds:?}, {writes} writes"
    );
    let bytes = by_replica(&live, "redis_replication_bytes_total", &ms);
    assert!(
        bytes.get(&label(&r1)).is_some_and(|n| *n > 0.0),
        "{bytes:?}"
    );

    for l in live_text
        .lines()
        .filter(|l| l.starts_with("redis_replication_"))
    {
        eprintln!("{l}");
    }
    eprintln!("R1: {got_r1:?}; writes {writes}; master offset {top}");

    // Replay of the capture of M's port: the same counts.
    let rep = replay(&dump.path, m.port);
    if tcpdump_dropped == 0 {
        assert_eq!(commands_of(&rep.metrics, &ms), want_m, "M: replay metrics");
        assert_eq!(log_counts_of(&rep.log, &ms), want_m, "M: replay log");
        no_losses(&rep.metrics, "replay");
        assert_eq!(
            rep.metrics.sum("redis_replication_full_syncs_total", &[]),
            2.0
        );
        assert_eq!(
            rep.metrics
                .sum("redis_replication_partial_syncs_total", &[]),
            3.0
        );
        eprintln!("replay: {:?}", commands_of(&rep.metrics, &ms));
    } else {
        eprintln!("tcpdump dropped {tcpdump_dropped} packets: replay not compared");
    }
}

/// `redis-cli --replica` replicates with the old `SYNC`: no `+FULLRESYNC`, the RDB (and then the
/// stream) is SYNC's answer.
#[test]
fn sync_from_redis_cli_replica() {
    let _g = e2e_lock();
    require_root();
    let m = start("sync-m", &["--repl-ping-replica-period", "3600"]);
    let mp = m.port.to_string();
    let ms = format!("127.0.0.1:{mp}");
    let dir = temp_dir("sync");
    let log = dir.join("live.jsonl");
    let mut obs = Observer::start(
        None,
        &["-i", "lo", "-p", &mp, "--log", log.to_str().unwrap()],
    );
    let before = m.commandstats();
    let mut cli = Proc::spawn(
        "redis-cli --replica",
        Command::new("redis-cli")
            .args(["-p", &mp, "--replica"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    wait_until("SYNC ran", Duration::from_secs(10), || {
        m.commandstats().0.contains_key("sync")
    });
    for i in 0..5 {
        m.cli(&["SET", &format!("k{i}"), "v"]);
    }
    wait_until("stream seen", Duration::from_secs(10), || {
        obs.metrics()
            .sum("redis_replication_commands_total", &[("server", &ms)])
            >= 5.0
    });
    let _ = cli.stop();
    sleep(Duration::from_millis(400));
    let after = m.commandstats();
    let live = obs.metrics();
    obs.stop();
    let mut want = before.delta(&after);
    want.remove("INFO");
    assert_eq!(
        commands_of(&live, &ms),
        want,
        "live metrics vs INFO commandstats"
    );
    assert_eq!(want.get("SYNC"), Some(&1), "{want:?}");
    let log = parse_log(&std::fs::read_to_string(&log).expect("log"));
    assert_eq!(log_counts_of(&log, &ms), want, "live log");
    assert!(log.iter().all(|v| !v["command"].is_null()), "notice lines");
    no_losses(&live, "live");
    let sum = |name: &str| live.sum(name, &[("server", &ms)]);
    assert_eq!(sum("redis_replication_full_syncs_total"), 1.0);
    assert!(sum("redis_replication_rdb_bytes_total") > 50.0);
    assert_eq!(sum("redis_replication_links_active"), 0.0);
}

/// `WAIT` and `WAITAOF` (Redis ≥ 7.2: the master sends `REPLCONF GETACK *` inside the stream,
/// the replica answers `REPLCONF ACK <offset> FACK <aof offset>`) with the append-only file on
/// master and replicas, and a chained replica, on the newer servers.
#[test]
fn wait_waitaof_and_chained_replica_redis_7_2() {
    wait_waitaof_and_chained_replica("redis-7.2");
}

#[test]
fn wait_waitaof_and_chained_replica_redis_8_2() {
    wait_waitaof_and_chained_replica("redis-8.2");
}

#[test]
fn wait_waitaof_and_chained_replica_valkey_8_1() {
    wait_waitaof_and_chained_replica("valkey-8.1");
}

/// M with replica R1, and R2 a replica of R1, all with `appendonly yes`; M's and R1's ports are
/// watched, R1 and R2 sync while observed. On M: writes, `WAIT` (answered at once and timing
/// out), `WAITAOF` for the local AOF and the replica's. Oracle: M's INFO commandstats delta,
/// per command, live and in replay; on R1's port the handshake commands (PING, PSYNC) exactly,
/// and REPLCONF as R1's delta minus the `GETACK`s M sent R1 (R1 runs those from its master
/// link, not on its own port; counted in the capture of M's port).
fn wait_waitaof_and_chained_replica(server: &str) {
    let _g = e2e_lock();
    require_root();
    let bin = server_bin(server);
    let dir = temp_dir(&format!("waitaof-{server}"));
    let start_on = |name: &str, extra: &[&str]| {
        let mut args = server_args(&temp_dir(name), extra);
        args.extend(
            // No PINGs in the stream (they would run on R1 too, uncounted on its port).
            ["--appendonly", "yes", "--appendfsync", "always"]
                .iter()
                .chain(["--repl-ping-replica-period", "3600"].iter())
                .map(|s| s.to_string()),
        );
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Redis::start_bin(&bin, &refs)
    };
    let m = start_on("waitaof-m", &[]);
    let r1 = start_on("waitaof-r1", &[]);
    let r2 = start_on("waitaof-r2", &[]);
    let (mp, r1p) = (m.port.to_string(), r1.port.to_string());
    let (ms, r1s) = (format!("127.0.0.1:{mp}"), format!("127.0.0.1:{r1p}"));

    let mut dump = Tcpdump::start(None, "lo", m.port, &dir.join("capture.pcap"));
    let log = dir.join("live.jsonl");
    let mut obs = Observer::start(
        None,
        &[
            "-i",
            "lo",
            "-p",
            &mp,
            "-p",
            &r1p,
            "--log",
            log.to_str().unwrap(),
        ],
    );
    let before_m = m.commandstats();
    let before_r1 = r1.commandstats();
    r1.admin(&["REPLICAOF", "127.0.0.1", &mp]);
    wait_link_up(&r1);
    r2.admin(&["REPLICAOF", "127.0.0.1", &r1p]);
    wait_link_up(&r2);

    for i in 0..5 {
        m.cli(&["SET", &format!("k{i}"), "v"]);
    }
    m.cli(&["HSET", "h", "f", "1"]);
    assert_eq!(m.cli(&["WAIT", "1", "5000"]).trim(), "1", "WAIT 1");
    assert_eq!(
        m.cli(&["WAITAOF", "1", "1", "5000"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1", "1"],
        "WAITAOF 1 1: the local AOF and R1's"
    );
    m.cli(&["INCR", "n"]);
    assert_eq!(
        m.cli(&["WAITAOF", "0", "1", "5000"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1", "1"],
        "WAITAOF 0 1"
    );
    // Two replicas wanted, one direct: times out after GETACKs.
    assert_eq!(m.cli(&["WAIT", "2", "300"]).trim(), "1", "WAIT 2 times out");
    // Pipelined: the WAITAOF's reply comes after the GETACK round trip.
    let waits = "SET p 1\nWAITAOF 1 1 5000\nSET p 2\nWAIT 1 5000\n";
    pipe(&m, waits);

    // Quiescence: both replicas at M's offset.
    let top = repl_offset(&m);
    for r in [&r1, &r2] {
        wait_until("replica caught up", Duration::from_secs(10), || {
            info_field(r, "slave_repl_offset").and_then(|v| v.parse().ok()) == Some(top)
        });
    }
    // Redis 8 replicas sync through a second connection (`+RDBCHANNELSYNC <id>` on the main
    // one, then `+FULLRESYNC` and the RDB on the RDB channel): the observer joins the two, so
    // the main link knows its stream offset, and its lag, as on any other server.
    wait_until("observer lag 0", Duration::from_secs(10), || {
        let live = obs.metrics();
        let lag = by_replica(&live, "redis_replication_ack_lag_bytes", &ms);
        let lag_r1 = by_replica(&live, "redis_replication_ack_lag_bytes", &r1s);
        lag.len() == 1
            && lag_r1.len() == 1
            && lag.values().chain(lag_r1.values()).all(|v| *v == 0.0)
    });
    // Freeze the replicas (R2 first: R1 must still answer INFO), then read both sides.
    r2.proc.signal(libc::SIGSTOP);
    sleep(Duration::from_millis(400));
    let after_r1 = r1.commandstats();
    r1.proc.signal(libc::SIGSTOP);
    sleep(Duration::from_millis(400));
    let after_m = m.commandstats();
    let live_text = http_get(&obs.metrics_addr, "/metrics").expect("metrics");
    let live = Metrics::parse(&live_text);
    obs.stop();
    let tcpdump_dropped = dump.stop();
    for r in [&r1, &r2] {
        r.proc.signal(libc::SIGCONT);
    }
    let live_log = parse_log(&std::fs::read_to_string(&log).expect("live log"));

    let mut want_m = before_m.delta(&after_m);
    want_m.remove("INFO");
    eprintln!("{server} M: {want_m:?}");
    for c in ["PSYNC", "REPLCONF", "WAIT", "WAITAOF"] {
        assert!(want_m.contains_key(c), "{c} ran on M: {want_m:?}");
    }
    assert_eq!(
        commands_of(&live, &ms),
        want_m,
        "M: live metrics vs INFO commandstats"
    );
    assert_eq!(log_counts_of(&live_log, &ms), want_m, "M: live log");

    // R1: R2's handshake and acknowledgements. The GETACKs M sent R1 ran on R1 from its master
    // link (and R1 passed them on to R2 on its own port: R2's ACKs are what R1's port shows).
    let capture = std::fs::read(&dump.path).expect("capture");
    let getacks = capture
        .windows(b"$6\r\nGETACK\r\n".len())
        .filter(|w| w.eq_ignore_ascii_case(b"$6\r\nGETACK\r\n"))
        .count() as u64;
    assert!(getacks > 0, "M sent no GETACK");
    let delta_r1 = before_r1.delta(&after_r1);
    let mut want_r1: BTreeMap<String, u64> = delta_r1
        .iter()
        .filter(|(k, _)| ["PING", "REPLCONF", "PSYNC", "SYNC"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    if tcpdump_dropped == 0 {
        let rc = want_r1.get_mut("REPLCONF").expect("REPLCONF ran on R1");
        *rc = rc.checked_sub(getacks).expect("R1 ran every GETACK M sent");
    }
    let got_r1 = commands_of(&live, &r1s);
    eprintln!("{server} R1: {got_r1:?}; {getacks} GETACKs from M");
    if tcpdump_dropped == 0 {
        assert_eq!(got_r1, want_r1, "R1: live metrics vs INFO commandstats");
        assert_eq!(log_counts_of(&live_log, &r1s), want_r1, "R1: live log");
    } else {
        for c in ["PING", "PSYNC"] {
            assert_eq!(got_r1.get(c), want_r1.get(c), "R1: {c}");
        }
    }

    no_losses(&live, "live");
    let notices: Vec<&Value> = live_log.iter().filter(|v| v["command"].is_null()).collect();
    assert!(notices.is_empty(), "notice lines: {notices:?}");
    let sum = |name: &str, server: &str| live.sum(name, &[("server", server)]);
    assert_eq!(sum("redis_replication_full_syncs_total", &ms), 1.0, "R1");
    assert_eq!(sum("redis_replication_full_syncs_total", &r1s), 1.0, "R2");
    let label = |r: &Redis| format!("127.0.0.1:{}", r.port);
    // One link per replica (a Redis 8 RDB channel carries its replica's full sync but is not a
    // link of its own, as INFO's connected_slaves counts it), and each RDB counted once.
    assert_eq!(sum("redis_replication_links_active", &ms), 1.0, "R1");
    assert_eq!(sum("redis_replication_links_active", &r1s), 1.0, "R2");
    for (srv, r) in [(&ms, &r1), (&r1s, &r2)] {
        let rdb = by_replica(&live, "redis_replication_rdb_bytes", srv);
        let total = sum("redis_replication_rdb_bytes_total", srv);
        assert!(
            total > 50.0 && rdb == [(label(r), total)].into(),
            "{srv}: RDB counted once: {rdb:?}, total {total}"
        );
    }
    for name in [
        "redis_replication_stream_offset",
        "redis_replication_acked_offset",
    ] {
        assert_eq!(
            by_replica(&live, name, &ms),
            [(label(&r1), top as f64)].into(),
            "{name} on M"
        );
        assert_eq!(
            by_replica(&live, name, &r1s),
            [(label(&r2), top as f64)].into(),
            "{name} on R1"
        );
    }
    // WAIT and WAITAOF are blocking commands: in their own histogram.
    for c in ["WAIT", "WAITAOF"] {
        assert!(
            live.sum(
                "redis_blocking_command_duration_seconds_count",
                &[("server", &ms), ("command", c)]
            ) > 0.0,
            "{c} in the blocking histogram"
        );
    }

    let rep = replay(&dump.path, m.port);
    if tcpdump_dropped == 0 {
        assert_eq!(commands_of(&rep.metrics, &ms), want_m, "M: replay metrics");
        assert_eq!(log_counts_of(&rep.log, &ms), want_m, "M: replay log");
        no_losses(&rep.metrics, "replay");
        let notices: Vec<&Value> = rep.log.iter().filter(|v| v["command"].is_null()).collect();
        assert!(notices.is_empty(), "replay notice lines: {notices:?}");
    } else {
        eprintln!("tcpdump dropped {tcpdump_dropped} packets: replay not compared");
    }
}
