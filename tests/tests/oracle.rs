//! Redis itself is the oracle. Each scenario runs real clients against a real redis-server
//! while the observer watches live AND tcpdump records the traffic; then `replay` runs over the
//! recording. Per command, the commands the observer saw Redis execute (status ok, error or
//! no_reply) must equal the INFO commandstats delta (calls + rejected_calls), live and in
//! replay, and the log must hold one line per command.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    thread::sleep,
    time::Duration,
};

use serde_json::Value;
use tests::*;

const EXECUTED: &[&str] = &["ok", "error", "no_reply", "reply_dropped"];

struct Outcome {
    /// INFO commandstats delta, less the admin client's own commands (INFO, and its AUTH on a
    /// server with a password): they go over the unix socket the observer does not watch.
    delta: BTreeMap<String, u64>,
    live: Metrics,
    live_metrics_text: String,
    live_log: Vec<Value>,
    live_log_text: String,
    replay: Replay,
    /// Packets tcpdump itself dropped (the replay can then only be checked for honesty).
    tcpdump_dropped: u64,
    observer_stderr: String,
    dir: PathBuf,
}

fn scripts() -> PathBuf {
    root().join("tests/scripts")
}

/// Runs `traffic` with the observer live and tcpdump recording, then replays the recording.
fn observe(name: &str, redis_args: &[&str], traffic: impl FnOnce(&Redis)) -> Outcome {
    observe_on(Path::new("redis-server"), name, redis_args, traffic)
}

/// [`observe`] on the server binary `bin`.
fn observe_on(
    bin: &Path,
    name: &str,
    redis_args: &[&str],
    traffic: impl FnOnce(&Redis),
) -> Outcome {
    let _g = e2e_lock();
    require_root();
    let redis = Redis::start_bin(bin, redis_args);
    let dir = temp_dir(name);
    let port = redis.port.to_string();
    let log = dir.join("live.jsonl");
    let before = redis.commandstats();
    let mut dump = Tcpdump::start(None, "lo", redis.port, &dir.join("capture.pcap"));
    let mut obs = Observer::start(
        None,
        &["-i", "lo", "-p", &port, "--log", log.to_str().unwrap()],
    );
    traffic(&redis);
    sleep(Duration::from_millis(400));
    let after = redis.commandstats();
    let live_metrics_text = http_get(&obs.metrics_addr, "/metrics").expect("metrics");
    obs.stop();
    let tcpdump_dropped = dump.stop();
    let live_log_text = std::fs::read_to_string(&log).expect("live log");
    let replay = replay(&dump.path, redis.port);
    let mut delta = before.delta(&after);
    delta.remove("INFO");
    if redis.password.is_some() {
        if let Some(n) = delta.get_mut("AUTH") {
            *n -= 1;
        }
    }
    Outcome {
        delta,
        live: Metrics::parse(&live_metrics_text),
        live_metrics_text,
        live_log: parse_log(&live_log_text),
        live_log_text,
        replay,
        tcpdump_dropped,
        observer_stderr: obs.stderr(),
        dir,
    }
}

fn python(scenario: &str) -> impl FnOnce(&Redis) {
    let scenario = scenario.to_owned();
    move |r: &Redis| {
        let mut c = Command::new("python3");
        c.arg(scripts().join("scenarios.py"))
            .arg(&scenario)
            .arg(&r.host)
            .arg(r.port.to_string());
        if let Some(p) = &r.password {
            c.arg(p);
        }
        sh(&mut c);
    }
}

/// The observer's executed commands equal Redis's commandstats delta, live and in replay, in
/// the metrics and in the log; the histogram counts every answered command.
fn assert_matches_redis(o: &Outcome) {
    // Unknown commands have no commandstats entry: the observer files names the table lacks
    // under UNKNOWN, and those the server rejected as unknown to it (CLIENT SETINFO on 7.0)
    // under their own label with an `ERR unknown …` error; neither counts here.
    let unknown_live = unknown_to_server(&o.live_log);
    let unknown_replay = unknown_to_server(&o.replay.log);
    let live = executed_by_server(o.live.commands_by_name(EXECUTED), &unknown_live);
    let replayed = executed_by_server(o.replay.metrics.commands_by_name(EXECUTED), &unknown_replay);
    let mut want = o.delta.clone();
    want.remove("UNKNOWN");
    assert_eq!(
        live,
        want,
        "live metrics vs INFO commandstats ({})",
        o.dir.display()
    );
    assert_eq!(
        executed_by_server(log_counts(&o.live_log, EXECUTED), &unknown_live),
        want,
        "live log vs INFO commandstats"
    );
    if o.tcpdump_dropped == 0 {
        assert_eq!(
            replayed,
            want,
            "replay metrics vs INFO commandstats ({})",
            o.dir.display()
        );
        assert_eq!(
            executed_by_server(log_counts(&o.replay.log, EXECUTED), &unknown_replay),
            want,
            "replay log vs INFO commandstats"
        );
    } else {
        // tcpdump lost packets: the replay never counts more than Redis ran, and counts its losses.
        eprintln!(
            "tcpdump dropped {} packets; replay checked for honesty only",
            o.tcpdump_dropped
        );
        for (cmd, n) in &replayed {
            assert!(
                *n <= want.get(cmd).copied().unwrap_or(0),
                "replay counted {n} {cmd}, Redis ran {:?}",
                want.get(cmd)
            );
        }
        // What the replay counted as lost: holes in a stream (seen from sequence or
        // acknowledgement numbers), replies whose command it never saw (a connection whose
        // first packets, handshake included, were dropped is picked up mid-stream: its first
        // replies are orphans), framing lost, commands given up.
        let m = &o.replay.metrics;
        let losses = m.sum("redis_observer_bytes_missed_total", &[("reason", "gap")])
            + m.sum("redis_observer_orphan_replies_total", &[])
            + m.sum("redis_observer_desyncs_total", &[])
            + m.sum("redis_observer_commands_lost_total", &[]);
        // Packets without payload (pure ACKs) can be dropped without a loss; then nothing is
        // lost and the counts agree.
        assert!(
            losses > 0.0 || replayed == want,
            "tcpdump dropped packets, the replay counted no loss, yet counts differ ({})",
            o.dir.display()
        );
    }
    // Every command with a reply has one latency observation: in the blocking histogram for
    // commands that can block (WAITAOF, BLPOP, ...), in the other one for the rest.
    for (cmd, n) in o.live.commands_by_name(&["ok", "error"]) {
        let h = o
            .live
            .sum("redis_command_duration_seconds_count", &[("command", &cmd)])
            + o.live.sum(
                "redis_blocking_command_duration_seconds_count",
                &[("command", &cmd)],
            );
        assert_eq!(h as u64, n, "histogram count for {cmd}");
    }
    assert_eq!(
        o.live.sum("redis_observer_events_lost_total", &[]),
        0.0,
        "events lost"
    );
}

fn lines<'a>(log: &'a [Value], cmd: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|v| v["command"].as_str() == Some(cmd))
        .collect()
}

#[test]
fn benchmark_default_tests_pipelined_1_and_16() {
    let o = observe("bench", &[], |r| {
        for p in ["1", "16"] {
            sh(Command::new("redis-benchmark")
                .args(["-h", &r.host, "-p", &r.port.to_string()])
                .args(["-n", "2000", "-c", "20", "-P", p, "-q"]));
        }
    });
    assert_matches_redis(&o);
    assert!(
        o.delta.get("SET").copied().unwrap_or(0) >= 4000,
        "benchmark ran: {:?}",
        o.delta
    );
    // redis-benchmark asks for these on a separate connection first.
    assert!(!lines(&o.live_log, "CONFIG GET").is_empty());
}

#[test]
fn inline_commands_and_an_unbalanced_quote() {
    let o = observe("inline", &[], python("inline"));
    assert_matches_redis(&o);
    let sets = lines(&o.live_log, "SET");
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[0]["key"], "inl");
    assert_eq!(sets[0]["args"], serde_json::json!(["inl", "hello world"]));
    assert_eq!(sets[1]["key"], "a b");
    assert_eq!(sets[1]["args"], serde_json::json!(["a b", "x\tyA"]));
    // The command after the protocol error never ran.
    assert_eq!(lines(&o.live_log, "PING").len(), 1);
    // The refused request: one record, with its name as sent and Redis's error text.
    for log in [&o.live_log, &o.replay.log] {
        let echo = lines(log, "ECHO");
        assert_eq!(echo.len(), 1, "{}", o.live_log_text);
        assert_eq!(echo[0]["status"], "error");
        assert_eq!(echo[0]["protocol_error"], true);
        assert_eq!(
            echo[0]["error"],
            "ERR Protocol error: unbalanced quotes in request"
        );
    }
    assert_eq!(
        o.live.sum(
            "redis_observer_protocol_errors_total",
            &[("reason", "unbalanced_quotes")]
        ),
        1.0
    );
    assert_eq!(
        o.live
            .sum("redis_observer_desyncs_total", &[("dir", "request")]),
        0.0
    );
}

#[test]
fn pubsub_with_two_subscribers() {
    let o = observe("pubsub", &[], python("pubsub"));
    assert_matches_redis(&o);
    assert_eq!(lines(&o.live_log, "PUBLISH").len(), 4);
    let pushes = o.live.sum("redis_push_messages_total", &[]);
    assert!(pushes >= 7.0, "7 deliveries at least, got {pushes}");
}

#[test]
fn multi_exec_runtime_error_execabort_watch_discard() {
    let o = observe("multi", &[], python("multi"));
    assert_matches_redis(&o);
    // redis-py sends INCR as INCRBY; the one on a string fails at run time, inside EXEC's array.
    let incr: Vec<_> = lines(&o.live_log, "INCRBY");
    assert!(
        incr.iter()
            .any(|v| v["status"] == "error" && v["in_transaction"] == true),
        "the runtime error inside EXEC is an error: {}",
        o.live_log_text
    );
    let aborted = o
        .live_log
        .iter()
        .filter(|v| v["status"] == "aborted")
        .count();
    assert_eq!(
        aborted, 4,
        "EXECABORT (2), WATCH abort (1), DISCARD (1): queued, never ran\n{}",
        o.live_log_text
    );
}

#[test]
fn client_reply_off_skip_on() {
    let o = observe("client_reply", &[], python("client_reply"));
    assert_matches_redis(&o);
    let no_reply = o
        .live_log
        .iter()
        .filter(|v| v["status"] == "no_reply")
        .count();
    // CLIENT REPLY OFF, SET, SET, CLIENT REPLY SKIP, SET cr:c, CLIENT REPLY SKIP.
    assert_eq!(no_reply, 6, "{}", o.live_log_text);
}

#[test]
fn resp3_maps_sets_doubles_and_pushes() {
    let o = observe("resp3", &[], python("resp3"));
    assert_matches_redis(&o);
    let types: Vec<&str> = o
        .live_log
        .iter()
        .filter_map(|v| v["reply_type"].as_str())
        .collect();
    for t in ["map", "set", "double"] {
        assert!(types.contains(&t), "no {t} reply in {types:?}");
    }
    assert!(
        o.live.sum("redis_push_messages_total", &[]) >= 2.0,
        "invalidation and pub/sub pushes"
    );
}

#[test]
fn auth_passwords_appear_nowhere() {
    let secrets = [
        "Top-S3cret-pw",
        "wrong-S3cret-guess",
        "Master-S3cret-pass",
        "Bob-S3cret-pass",
    ];
    let o = observe("auth", &["--requirepass", "Top-S3cret-pw"], python("auth"));
    assert_matches_redis(&o);
    for s in secrets {
        for (what, text) in [
            ("live log", &o.live_log_text),
            ("replay log", &o.replay.log_text),
            ("live metrics", &o.live_metrics_text),
            ("replay metrics", &o.replay.metrics_text),
            ("observer stderr", &o.observer_stderr),
            ("replay stderr", &o.replay.stderr),
        ] {
            assert!(!text.contains(s), "{s} appears in the {what}");
        }
    }
    assert!(!lines(&o.live_log, "AUTH").is_empty());
    assert!(o.live_log_text.contains("(redacted)"));
}

#[test]
fn one_and_five_mib_values() {
    let o = observe("big", &[], python("bigvalues"));
    assert_matches_redis(&o);
    let sets = lines(&o.live_log, "SET");
    let sizes: Vec<u64> = sets
        .iter()
        .filter_map(|v| v["req_bytes"].as_u64())
        .collect();
    assert!(sizes.iter().any(|&n| n > 5 * 1024 * 1024), "{sizes:?}");
    let gets = lines(&o.live_log, "GET");
    assert!(gets.iter().all(|v| v["status"] == "ok"));
}

#[test]
fn connection_killed_mid_pipeline() {
    let mut o = observe("killed", &[], python("killed"));
    // Redis counts the BLPOP it was blocked in when the client was killed; the observer saw no
    // reply and logs it unanswered, like the INCRs behind it that never ran.
    assert_eq!(o.delta.remove("BLPOP"), Some(1));
    assert_matches_redis(&o);
    let unanswered = o
        .live_log
        .iter()
        .filter(|v| v["status"] == "unanswered")
        .count();
    // BLPOP (blocked when killed) and the ten INCRs behind it.
    assert_eq!(unanswered, 11, "{}", o.live_log_text);
}

#[test]
fn errors_and_blocking_latency() {
    let o = observe("errors", &[], python("errors"));
    assert_matches_redis(&o);
    let m = &o.live;
    assert!(m.sum("redis_command_errors_total", &[("error", "WRONGTYPE")]) >= 1.0);
    assert!(m.sum("redis_command_errors_total", &[("error", "ERR")]) >= 3.0);
    // BLPOP with a 300 ms timeout (server at hz 100): logged at 300 ms ± 50 ms.
    let blpop = lines(&o.live_log, "BLPOP");
    let timed_out = blpop
        .iter()
        .find(|v| v["reply_type"] == "null")
        .expect("the BLPOP that timed out");
    let us = timed_out["latency_us"].as_f64().expect("latency");
    assert!(
        (250_000.0..=350_000.0).contains(&us),
        "BLPOP latency {us} µs"
    );
}

/// A capture cut to 200 bytes per packet still yields every command (large values are skipped by
/// length), with the uncaptured bytes counted; a capture that lost packets yields what it can,
/// never more than Redis ran, with the losses counted.
#[test]
fn replay_of_truncated_and_lossy_captures() {
    let _g = e2e_lock();
    require_root();
    let redis = Redis::start(&[]);
    let dir = temp_dir("snaplen");
    let before = redis.commandstats();
    let mut small = Tcpdump::start_snap(None, "lo", redis.port, &dir.join("small.pcap"), 200);
    python("bigvalues")(&redis);
    // The lossy case starts from a complete capture of the benchmark alone (tcpdump drops
    // packets of the big values at full size), so every loss in it is one we made.
    let mid = redis.commandstats();
    let mut full = Tcpdump::start(None, "lo", redis.port, &dir.join("full.pcap"));
    sh(Command::new("redis-benchmark").args([
        "-p",
        &redis.port.to_string(),
        "-n",
        "500",
        "-c",
        "5",
        "-q",
        "-t",
        "set,get,lpush,lrange_100",
    ]));
    assert_eq!(
        full.stop(),
        0,
        "tcpdump dropped packets of the full capture"
    );
    assert_eq!(
        small.stop(),
        0,
        "tcpdump dropped packets of the snaplen capture"
    );
    let after = redis.commandstats();
    let mut want = before.delta(&after);
    want.remove("INFO");
    let mut want_lossy = mid.delta(&after);
    want_lossy.remove("INFO");

    // Every command whose reply's framing fits the snap length is recovered exactly; replies
    // whose framing was cut (100-element arrays) lose their command, and that loss is counted.
    let r = replay(&small.path, redis.port);
    let mut got = executed_by_server(
        r.metrics.commands_by_name(EXECUTED),
        &unknown_to_server(&r.log),
    );
    let lost = r.metrics.sum("redis_observer_commands_lost_total", &[]) as u64;
    let lrange = got.get("LRANGE").copied().unwrap_or(0);
    assert_eq!(
        lrange + lost,
        want["LRANGE"],
        "LRANGE counted {lrange} + lost {lost}"
    );
    got.remove("LRANGE");
    want.remove("LRANGE");
    assert_eq!(got, want, "snaplen 200");
    assert!(
        r.metrics.sum(
            "redis_observer_bytes_missed_total",
            &[("reason", "not_captured")]
        ) > 5.0 * 1024.0 * 1024.0
    );

    // One data packet in 25 removed. At -P 1 every data packet carries one command or one
    // reply, so each removal costs at most one command.
    check_lossy_replay("-P 1", &full.path, &dir, redis.port, &want_lossy, 1);

    // Pipelined (-P 16): a removed packet costs the commands it carried, or a reply gap the
    // batch still waiting; the accounting stays exact.
    let before = redis.commandstats();
    let mut full = Tcpdump::start(None, "lo", redis.port, &dir.join("p16.pcap"));
    sh(Command::new("redis-benchmark").args([
        "-p",
        &redis.port.to_string(),
        "-n",
        "2000",
        "-c",
        "5",
        "-P",
        "16",
        "-q",
        "-t",
        "set,get,lpush,lrange_100",
    ]));
    assert_eq!(
        full.stop(),
        0,
        "tcpdump dropped packets of the -P 16 capture"
    );
    let mut want = before.delta(&redis.commandstats());
    want.remove("INFO");
    check_lossy_replay("-P 16", &full.path, &dir, redis.port, &want, 16);
}

/// Replays `full` with one data packet in 25 removed, against `want` (what Redis ran): nothing
/// is counted above it, each removed packet costs at most `per_packet` commands, and every
/// command is accounted for — counted, lost to a reply gap, or an orphan reply (its request
/// was lost).
fn check_lossy_replay(
    label: &str,
    full: &Path,
    dir: &Path,
    port: u16,
    want: &BTreeMap<String, u64>,
    per_packet: u64,
) {
    let lossy = dir.join("lossy.pcap");
    let removed = drop_packets(full, &lossy, 25, 100) as u64;
    assert!(removed > 10, "removed {removed}");
    let r = replay(&lossy, port);
    let got = r.metrics.commands_by_name(EXECUTED);
    for (cmd, n) in &got {
        assert!(
            *n <= want.get(cmd).copied().unwrap_or(0),
            "{label}: {cmd}: {n} counted, Redis ran {:?}",
            want.get(cmd)
        );
    }
    let total: u64 = got.values().sum();
    let want_total: u64 = want.values().sum();
    let lost = r.metrics.sum("redis_observer_commands_lost_total", &[]) as u64;
    let orphans = r.metrics.sum("redis_observer_orphan_replies_total", &[]) as u64;
    eprintln!(
        "lossy {label} capture: {total} of {want_total} commands recovered, {lost} lost to reply \
         gaps, {orphans} orphan replies ({removed} packets removed)"
    );
    assert!(
        total + per_packet * removed >= want_total,
        "{label}: {total} of {want_total} recovered with {removed} packets removed"
    );
    assert_eq!(
        total + lost + orphans,
        want_total,
        "{label}: every command accounted for"
    );
    assert!(
        r.metrics
            .sum("redis_observer_bytes_missed_total", &[("reason", "gap")])
            > 0.0,
        "{label}: gaps counted"
    );
}

/// The same oracle across a veth pair: redis-server in one namespace, the observer on the
/// server's veth, clients (redis-benchmark at -P 1 and -P 16, redis-py scenarios) in the other.
#[test]
fn veth_mixed_workload_matches_commandstats() {
    let _g = e2e_lock();
    require_root();
    let net = VethPair::new();
    let redis = Redis::start_in(&net.server, SERVER_V4, &[]);
    let port = redis.port.to_string();
    let before = redis.commandstats();
    let log = temp_dir("veth-log").join("log.jsonl");
    let mut obs = Observer::start(
        Some(&net.server),
        &[
            "-i",
            &net.server_if,
            "-p",
            &port,
            "--log",
            log.to_str().unwrap(),
        ],
    );
    for p in ["1", "16"] {
        sh(net
            .client
            .cmd("redis-benchmark")
            .args([
                "-h", SERVER_V4, "-p", &port, "-n", "2000", "-c", "20", "-P", p, "-q",
            ])
            .args(["-t", "set,get,incr,lpush,hset,lrange_100"]));
    }
    for s in ["errors", "multi", "pubsub"] {
        sh(net
            .client
            .cmd("python3")
            .arg(scripts().join("scenarios.py"))
            .args([s, SERVER_V4, &port]));
    }
    sleep(Duration::from_millis(500));
    let m = obs.metrics_in(Some(&net.server));
    obs.stop();
    let mut want = before.delta(&redis.commandstats());
    want.remove("INFO");
    let unknown = unknown_to_server(&parse_log(
        &std::fs::read_to_string(&log).expect("veth log"),
    ));
    let got = executed_by_server(m.commands_by_name(EXECUTED), &unknown);
    assert_eq!(got, want, "veth: metrics vs INFO commandstats");
    assert_eq!(m.sum("redis_observer_events_lost_total", &[]), 0.0);
    assert_eq!(m.sum("redis_observer_bytes_missed_total", &[]), 0.0);
}

/// With one client and no pipelining, the observer's median latency is positive and no larger
/// than what redis-benchmark measures end to end (the observer's clock starts when the command
/// reaches the server's side of the wire and stops when the reply leaves it).
#[test]
fn latency_is_plausible_against_the_client() {
    let _g = e2e_lock();
    require_root();
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let dir = temp_dir("latency");
    let log = dir.join("log.jsonl");
    let mut obs = Observer::start(
        None,
        &["-i", "lo", "-p", &port, "--log", log.to_str().unwrap()],
    );
    let out = sh(Command::new("redis-benchmark").args([
        "-p", &port, "-c", "1", "-P", "1", "-n", "5000", "-t", "get", "--csv",
    ]));
    sleep(Duration::from_millis(300));
    obs.stop();
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...
    let csv = String::from_utf8_lossy(&out.stdout);
    let row: Vec<String> = csv
        .lines()
        .nth(1)
        .expect("csv row")
        .split(',')
        .map(|c| c.trim_matches('"').to_owned())
        .collect();
    let client_p50_us: f64 = row[4].parse::<f64>().expect("p50") * 1000.0;
    let mut ours: Vec<f64> = parse_log(&std::fs::read_to_string(&log).expect("log"))
        .iter()
        .filter(|v| v["command"] == "GET")
        .filter_map(|v| v["latency_us"].as_f64())
        .collect();
    assert_eq!(ours.len(), 5000);
    ours.sort_by(f64::total_cmp);
    let median = ours[ours.len() / 2];
    eprintln!("observer median {median:.1} µs, redis-benchmark p50 {client_p50_us:.1} µs");
    assert!(median > 0.0, "median {median}");
    assert!(
        median <= client_p50_us,
        "observer median {median} µs > client p50 {client_p50_us} µs"
    );
}

// ------------------------------------------------------------------------------------------------
// Every server version

/// The same oracle on each server version the table covers: redis-benchmark at -P 1 and -P 16,
/// then redis-py over RESP2 and RESP3 sending the commands newer versions added (one by one,
/// pipelined, in MULTI). Per command, live and in replay, the executed count equals that
/// server's commandstats delta; a command the server knows is never `UNKNOWN`; the table's
/// record of which versions know a command agrees with what the server answers; and the
/// commands the version added show up under their own names.
fn versions(server: &str, added: &[&str]) {
    let bin = server_bin(server);
    let o = observe_on(&bin, &format!("versions-{server}"), &[], |r| {
        for p in ["1", "16"] {
            sh(Command::new("redis-benchmark")
                .args(["-h", &r.host, "-p", &r.port.to_string()])
                .args(["-n", "1000", "-c", "10", "-P", p, "-q"]));
        }
        python("versions")(r);
    });
    assert_matches_redis(&o);
    let table = command_table();
    // The table names servers `redis-8.2.3`; tests name them `redis-8.2`.
    let prefix = format!("{server}.");
    let mut logs = vec![("live", &o.live_log)];
    if o.tcpdump_dropped == 0 {
        logs.push(("replay", &o.replay.log));
    }
    for (what, log) in logs {
        let mut not_in_table = 0;
        for v in log
            .iter()
            .filter(|v| EXECUTED.contains(&v["status"].as_str().unwrap_or("")))
        {
            let cmd = v["command"].as_str().unwrap_or_default();
            let err = v["error"].as_str().unwrap_or_default();
            let rejected_as_unknown =
                err.starts_with("ERR unknown command") || err.starts_with("ERR unknown subcommand");
            match table.get(cmd) {
                None => {
                    not_in_table += 1;
                    assert!(
                        rejected_as_unknown,
                        "{what}: {cmd} is not in the table: {v}"
                    );
                }
                Some(known) => {
                    let knows = known.iter().any(|l| l.starts_with(&prefix));
                    assert_eq!(
                        !rejected_as_unknown, knows,
                        "{what}: the table says {server} knows {cmd}: {knows}; it answered {v}"
                    );
                }
            }
        }
        let metrics = if what == "live" {
            &o.live
        } else {
            &o.replay.metrics
        };
        let unknown = metrics
            .commands_by_name(EXECUTED)
            .get("UNKNOWN")
            .copied()
            .unwrap_or(0);
        // NOSUCHCMD and CLIENT NOSUCHSUB, one by one and pipelined, over RESP2 and RESP3.
        assert_eq!(
            unknown, not_in_table,
            "{what}: UNKNOWN vs names not in the table"
        );
        assert_eq!(not_in_table, 8, "{what}: unknown commands sent");
    }
    // The unknown subcommand is logged with both words.
    assert!(!lines(&o.live_log, "CLIENT NOSUCHSUB").is_empty());
    for cmd in added {
        let n = o.delta.get(*cmd).copied().unwrap_or(0);
        assert!(n >= 2, "{server}: {cmd} ran {n} times: {:?}", o.delta);
    }
}

#[test]
fn versions_redis_7_0() {
    versions("redis-7.0", &["HSET", "XADD", "SET"]);
}

#[test]
fn versions_redis_7_2_with_modules() {
    // 7.2 added CLIENT SETINFO, CLIENT NO-TOUCH and WAITAOF; the hash field expiry commands
    // (HEXPIRE, ...) are 7.4's, so here they are answered `ERR unknown command`.
    versions(
        "redis-7.2",
        &[
            "CLIENT SETINFO",
            "CLIENT NO-TOUCH",
            "WAITAOF",
            "JSON.SET",
            "JSON.GET",
            "JSON.NUMINCRBY",
            "FT.CREATE",
            "FT.SEARCH",
            "TS.ADD",
            "TS.RANGE",
            "BF.ADD",
            "BF.EXISTS",
            "CF.ADD",
        ],
    );
}

#[test]
fn versions_redis_7_4_with_modules() {
    versions(
        "redis-7.4",
        &[
            "CLIENT SETINFO",
            "CLIENT NO-TOUCH",
            "WAITAOF",
            "HEXPIRE",
            "HTTL",
            "HPERSIST",
            "JSON.SET",
            "JSON.GET",
            "JSON.NUMINCRBY",
            "FT.CREATE",
            "FT.SEARCH",
            "TS.ADD",
            "TS.RANGE",
            "BF.ADD",
            "BF.EXISTS",
            "CF.ADD",
        ],
    );
}

#[test]
fn versions_redis_8_2() {
    versions(
        "redis-8.2",
        &[
            "CLIENT SETINFO",
            "CLIENT NO-TOUCH",
            "WAITAOF",
            "HEXPIRE",
            "HPEXPIRE",
            "HTTL",
            "HPTTL",
            "HEXPIRETIME",
            "HPERSIST",
            "HSETEX",
            "HGETEX",
            "HGETDEL",
            "XDELEX",
            "XACKDEL",
            "VADD",
            "VSIM",
            "VCARD",
        ],
    );
}

#[test]
fn versions_valkey_8_1() {
    versions(
        "valkey-8.1",
        &[
            "CLIENT SETINFO",
            "CLIENT NO-TOUCH",
            "CLIENT CAPA",
            "WAITAOF",
            "COMMANDLOG GET",
            "COMMANDLOG LEN",
        ],
    );
}

#[test]
fn versions_valkey_9_1() {
    versions(
        "valkey-9.1",
        &[
            "CLIENT SETINFO",
            "CLIENT NO-TOUCH",
            "CLIENT CAPA",
            "WAITAOF",
            "COMMANDLOG GET",
            "HEXPIRE",
            "HTTL",
            "HPERSIST",
            "HSETEX",
            "HGETEX",
        ],
    );
}
