//! Who is calling, from the protocol: real clients (redis-py, redis-cli) against a real
//! redis-server with an ACL user; the log lines carry each connection's name, library, user and
//! db; `tail --client` follows one client; a client setting 10,000 names keeps the per-client
//! series bounded; per-command counts still equal INFO commandstats.

use std::{process::Command, thread::sleep, time::Duration};

use serde_json::Value;
use tests::*;

const EXECUTED: &[&str] = &["ok", "error", "no_reply"];

fn python(script: &str, port: u16) {
    let out = sh(Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PORT", port.to_string()));
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn field<'a>(l: &'a Value, name: &str) -> Option<&'a str> {
    l.get(name).and_then(Value::as_str)
}

/// The command lines of `log` whose command (and first argument, if given) match.
fn lines<'a>(log: &'a [Value], command: &str, arg0: Option<&str>) -> Vec<&'a Value> {
    log.iter()
        .filter(|l| field(l, "command") == Some(command))
        .filter(|l| arg0.is_none_or(|a| l["args"].get(0).and_then(Value::as_str) == Some(a)))
        .collect()
}

#[test]
fn identity_from_real_clients() {
    let _g = e2e_lock();
    require_root();
    let redis = Redis::start(&[]);
    redis.admin(&[
        "ACL",
        "SETUSER",
        "app",
        "on",
        ">app-secret",
        "~*",
        "&*",
        "+@all",
    ]);
    let dir = temp_dir("identity");
    let log = dir.join("live.jsonl");
    let port = redis.port.to_string();
    let before = redis.commandstats();
    let mut obs = Observer::start(
        None,
        &["-i", "lo", "-p", &port, "--log", log.to_str().unwrap()],
    );
    // redis-py: AUTH app …, CLIENT SETNAME, CLIENT SETINFO (rejected by 7.0), SELECT 3.
    python(
        r#"
import os, redis
r = redis.Redis(port=int(os.environ["PORT"]), username="app", password="app-secret",
                db=3, client_name="orders-api")
r.set("py-before", "1")
r.get("py-before")
r.client_setname("billing")
r.get("py-after")
try:
    r.client_setname("bad name")
except redis.ResponseError:
    pass
r.get("py-last")
"#,
        redis.port,
    );
    // redis-cli: AUTH app …, SELECT 3, then the command.
    let cli = sh(Command::new("redis-cli")
        .args([
            "-p",
            &port,
            "--user",
            "app",
            "--pass",
            "app-secret",
            "--no-auth-warning",
        ])
        .args(["-n", "3", "GET", "cli-key"]));
    assert!(cli.status.success());
    // One connection setting 10,000 distinct names, a PING after each.
    python(
        r#"
import os, redis
r = redis.Redis(port=int(os.environ["PORT"]))
p = r.pipeline(transaction=False)
for i in range(10000):
    p.execute_command("CLIENT", "SETNAME", "churn-%d" % i)
    p.execute_command("PING", "after-%d" % i)
p.execute()
"#,
        redis.port,
    );
    sleep(Duration::from_millis(500));
    let after = redis.commandstats();
    let metrics = obs.metrics();
    let metrics_text = http_get(&obs.metrics_addr, "/metrics").expect("metrics");
    obs.stop();
    let text = std::fs::read_to_string(&log).expect("log");
    let log = parse_log(&text);

    // redis-py's connection.
    let get_before = lines(&log, "GET", Some("py-before"));
    assert_eq!(get_before.len(), 1, "{text:.2000}");
    let l = get_before[0];
    assert_eq!(field(l, "client_name"), Some("orders-api"), "{l}");
    assert_eq!(field(l, "client_lib"), Some("redis-py 5.0.8"), "{l}");
    assert_eq!(field(l, "user"), Some("app"), "{l}");
    assert_eq!(l["db"], 3, "{l}");
    assert_eq!(l["resp"], 2, "{l}");
    // The local processes (tests/tests/attribution.rs checks them in detail).
    assert_eq!(field(l, "client_comm"), Some("python3"), "{l}");
    assert_eq!(
        l["server_pid"].as_u64(),
        Some(u64::from(redis.proc.child.id())),
        "{l}"
    );
    // The SETNAME mid-connection applies to later commands only; the rejected one to none.
    let setname = lines(&log, "CLIENT SETNAME", Some("billing"));
    assert_eq!(field(setname[0], "client_name"), Some("orders-api"));
    let get_after = lines(&log, "GET", Some("py-after"));
    assert_eq!(field(get_after[0], "client_name"), Some("billing"));
    let get_last = lines(&log, "GET", Some("py-last"));
    assert_eq!(field(get_last[0], "client_name"), Some("billing"));
    // The AUTH line carries no password anywhere, and no line does.
    assert!(!text.contains("app-secret"));

    // redis-cli's connection.
    let cli_get = lines(&log, "GET", Some("cli-key"));
    assert_eq!(cli_get.len(), 1);
    let l = cli_get[0];
    assert_eq!(
        (field(l, "user"), l["db"].as_u64()),
        (Some("app"), Some(3)),
        "{l}"
    );
    assert!(
        l["client_name"].is_null() && l["client_lib"].is_null(),
        "{l}"
    );

    // The churning client: the log keeps every name.
    let pings = lines(&log, "PING", None);
    assert_eq!(pings.len(), 10_000);
    for (i, p) in pings.iter().enumerate() {
        let want = format!("churn-{i}");
        assert_eq!(field(p, "client_name"), Some(want.as_str()), "{p}");
    }

    // Per command, the log equals INFO commandstats.
    let mut delta = before.delta(&after);
    delta.remove("INFO");
    // Unknown subcommands (CLIENT SETINFO on 7.0: two per redis-py connection) have no
    // commandstats entry (docs/redis-notes.md).
    let mut counts = log_counts(&log, EXECUTED);
    // Logged as `CLIENT SETINFO` (the table knows 7.2's commands), or `CLIENT` with an older one.
    let setinfo =
        counts.remove("CLIENT SETINFO").unwrap_or(0) + counts.remove("CLIENT").unwrap_or(0);
    assert_eq!(setinfo, 4);
    assert_eq!(counts, delta);

    // Series bounded: at most 50 names per server plus `other`.
    let server = format!("127.0.0.1:{port}");
    let clients: std::collections::BTreeSet<&str> = metrics_text
        .lines()
        .filter(|l| l.starts_with("redis_client_commands_total{"))
        .filter(|l| l.contains(&format!("server=\"{server}\"")))
        .filter_map(|l| l.split("client=\"").nth(1)?.split('"').next())
        .collect();
    assert!(clients.len() <= 51, "{clients:?}");
    // A connection without a name is labelled by its process (before its library).
    for c in ["orders-api", "billing", "other", "python3"] {
        assert!(clients.contains(c), "{c} missing from {clients:?}");
    }
    // Every command is counted once by client too.
    let per_client = metrics.sum("redis_client_commands_total", &[("server", &server)]);
    let total = metrics.sum("redis_commands_total", &[("server", &server)]);
    assert_eq!(per_client, total);
    assert_eq!(total as u64, delta.values().sum::<u64>() + 4);

    // `tail --client orders-api` follows that client only.
    let tail = sh(Command::new(observer_bin())
        .args(["tail", "--json", "--client", "orders-api"])
        .arg(dir.join("live.jsonl")));
    let followed = parse_log(&String::from_utf8_lossy(&tail.stdout));
    let names: Vec<&str> = followed
        .iter()
        .filter_map(|l| field(l, "command"))
        .collect();
    assert!(!followed.is_empty());
    assert!(
        followed
            .iter()
            .all(|l| field(l, "client_name") == Some("orders-api"))
    );
    assert!(
        names.contains(&"SET") && names.contains(&"CLIENT SETNAME"),
        "{names:?}"
    );
    let by_user = sh(Command::new(observer_bin())
        .args(["tail", "--json", "--user", "app"])
        .arg(dir.join("live.jsonl")));
    let by_user = parse_log(&String::from_utf8_lossy(&by_user.stdout));
    assert!(
        by_user
            .iter()
            .any(|l| field(l, "command") == Some("GET") && l["args"][0] == "cli-key")
    );
    assert!(by_user.iter().all(|l| field(l, "user") == Some("app")));
}
