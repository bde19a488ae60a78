//! Local process and container attribution: real clients (redis-cli, redis-py) against a real
//! redis-server; every command line carries the pid and comm of the process that owns its
//! client socket (compared with the pid of the child the test started), its cgroup and the
//! container or unit parsed from it, and the server's pid and comm. Covers clients in cgroups
//! the test creates, a client in another network namespace reaching Redis over veth, many
//! short-lived connections, and a connection opened before the observer started (from /proc).

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread::sleep,
    time::Duration,
};

use serde_json::Value;
use tests::*;

fn field<'a>(l: &'a Value, name: &str) -> Option<&'a str> {
    l.get(name).and_then(Value::as_str)
}

/// The command lines whose first argument (the key) is `key`.
fn by_key<'a>(log: &'a [Value], key: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|l| l["args"].get(0).and_then(Value::as_str) == Some(key))
        .collect()
}

/// Where the cgroup v2 file system is mounted (`/sys/fs/cgroup` or, on hybrid hosts,
/// `/sys/fs/cgroup/unified`), and the cgroup path its root shows.
fn cgroup2() -> (PathBuf, String) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        if post.starts_with("cgroup2 ") {
            let cols: Vec<&str> = pre.split_whitespace().collect();
            return (PathBuf::from(cols[4]), cols[3].to_string());
        }
    }
    panic!("no cgroup2 mount");
}

/// A cgroup the test creates (and removes, with any parent it created).
struct Cgroup {
    dirs: Vec<PathBuf>,
    /// Path as the kernel names it (`/system.slice/docker-….scope`).
    path: String,
}

impl Cgroup {
    fn new(rel: &str) -> Cgroup {
        let (mount, root) = cgroup2();
        let mut dirs = Vec::new();
        let mut d = mount.clone();
        for comp in rel.split('/').filter(|c| !c.is_empty()) {
            d = d.join(comp);
            if !d.exists() {
                std::fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
                dirs.push(d.clone());
            }
        }
        let path = if root == "/" {
            rel.to_string()
        } else {
            format!("{root}{rel}")
        };
        Cgroup { dirs, path }
    }

    fn procs(&self) -> PathBuf {
        let (mount, _) = cgroup2();
        mount
            .join(self.path.trim_start_matches('/'))
            .join("cgroup.procs")
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// `redis-cli ARGS` started inside `cg` (it moves itself in, then execs: same pid); returns
/// its pid once it has exited successfully.
fn cli_in(cg: Option<&Cgroup>, port: u16, args: &[&str]) -> u32 {
    let mut cmd = match cg {
        Some(cg) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!(
                    "echo $$ > '{}' && exec redis-cli \"$@\"",
                    cg.procs().display()
                ))
                .arg("sh");
            c
        }
        None => Command::new("redis-cli"),
    };
    let child = cmd
        .args(["-p", &port.to_string()])
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-cli");
    let pid = child.id();
    let out = child.wait_with_output().expect("redis-cli");
    assert!(out.status.success());
    pid
}

fn hex64(seed: u64) -> String {
    let mut s = String::new();
    let mut x = seed | 1;
    while s.len() < 64 {
        // xorshift: a unique-looking id per test run.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!("{x:016x}"));
    }
    s.truncate(64);
    s
}

fn tail(log: &Path, args: &[&str]) -> Vec<Value> {
    let out = sh(Command::new(observer_bin())
        .arg("tail")
        .args(args)
        .arg("--json")
        .arg(log));
    parse_log(&String::from_utf8_lossy(&out.stdout))
}

#[test]
fn local_clients_servers_and_cgroups() {
    let _g = e2e_lock();
    require_root();
    let redis = Redis::start(&[]);
    let server_pid = redis.proc.child.id();
    let port = redis.port;
    let dir = temp_dir("attribution");
    let log = dir.join("live.jsonl");

    // A redis-py connection opened before the observer starts: attributed from /proc.
    let mut pre = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import os, sys, redis
r = redis.Redis(port=int(os.environ["PORT"]))
r.ping()
print(os.getpid(), flush=True)
sys.stdin.readline()
r.get("pre-key")
"#,
        )
        .env("PORT", port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(pre.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("python pid");
    assert_eq!(line.trim().parse::<u32>().ok(), Some(pre.id()));

    let mut obs = Observer::start(
        None,
        &[
            "-i",
            "lo",
            "-p",
            &port.to_string(),
            "--log",
            log.to_str().unwrap(),
            "--client-label",
            "process",
        ],
    );
    pre.stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("stdin");
    assert!(pre.wait().expect("python").success());

    // Short-lived connections: every invocation is its own process and connection.
    let mut cli_pids = BTreeMap::new();
    for i in 0..40 {
        let key = format!("cli-{i}");
        cli_pids.insert(key.clone(), cli_in(None, port, &["GET", &key]));
    }
    // redis-py, started by the test.
    let py = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import os, redis
r = redis.Redis(port=int(os.environ["PORT"]))
r.get("py-key")
"#,
        )
        .env("PORT", port.to_string())
        .spawn()
        .expect("python3");
    let py_pid = py.id();
    assert!(py.wait_with_output().expect("python3").status.success());
    // Two clients in two cgroups the test creates: one named like a docker container's scope,
    // one like a systemd unit.
    let id = hex64(u64::from(std::process::id()) << 20 ^ u64::from(port));
    let docker = Cgroup::new(&format!("/system.slice/docker-{id}.scope"));
    let unit_name = format!("ro-test-{}.scope", std::process::id());
    let unit = Cgroup::new(&format!("/{unit_name}"));
    let docker_pid = cli_in(Some(&docker), port, &["GET", "docker-key"]);
    let unit_pid = cli_in(Some(&unit), port, &["GET", "unit-key"]);

    sleep(Duration::from_millis(500));
    let metrics = obs.metrics();
    obs.stop();
    let text = std::fs::read_to_string(&log).expect("log");
    let lines = parse_log(&text);

    // Every line names its server process.
    let commands: Vec<&Value> = lines.iter().filter(|l| l["command"].is_string()).collect();
    // 40 redis-cli, 2 in cgroups, the early connection's GET, and redis-py's GET after its
    // two CLIENT SETINFO.
    assert_eq!(commands.len(), 40 + 2 + 1 + 3, "{text:.3000}");
    for l in &commands {
        assert!(
            l["client_pid"].is_u64() && l["client_comm"].is_string(),
            "{l}"
        );
        assert_eq!(l["server_pid"].as_u64(), Some(u64::from(server_pid)), "{l}");
        assert_eq!(field(l, "server_comm"), Some("redis-server"), "{l}");
    }
    // Each redis-cli invocation: its own pid.
    for (key, pid) in &cli_pids {
        let l = by_key(&lines, key);
        assert_eq!(l.len(), 1, "{key}");
        assert_eq!(
            l[0]["client_pid"].as_u64(),
            Some(u64::from(*pid)),
            "{}",
            l[0]
        );
        assert_eq!(field(l[0], "client_comm"), Some("redis-cli"), "{}", l[0]);
    }
    let l = by_key(&lines, "py-key");
    assert_eq!(
        l[0]["client_pid"].as_u64(),
        Some(u64::from(py_pid)),
        "{}",
        l[0]
    );
    assert_eq!(field(l[0], "client_comm"), Some("python3"), "{}", l[0]);
    // Opened before the start: from /proc.
    let l = by_key(&lines, "pre-key");
    assert_eq!(l.len(), 1, "{text:.3000}");
    assert_eq!(
        l[0]["client_pid"].as_u64(),
        Some(u64::from(pre.id())),
        "{}",
        l[0]
    );
    assert_eq!(field(l[0], "client_comm"), Some("python3"), "{}", l[0]);
    // The cgroups, and what they say.
    let l = by_key(&lines, "docker-key");
    assert_eq!(
        l[0]["client_pid"].as_u64(),
        Some(u64::from(docker_pid)),
        "{}",
        l[0]
    );
    assert_eq!(
        field(l[0], "client_cgroup"),
        Some(docker.path.as_str()),
        "{}",
        l[0]
    );
    let want = format!("docker://{id}");
    assert_eq!(
        field(l[0], "client_container"),
        Some(want.as_str()),
        "{}",
        l[0]
    );
    let l = by_key(&lines, "unit-key");
    assert_eq!(
        l[0]["client_pid"].as_u64(),
        Some(u64::from(unit_pid)),
        "{}",
        l[0]
    );
    assert_eq!(
        field(l[0], "client_cgroup"),
        Some(unit.path.as_str()),
        "{}",
        l[0]
    );
    assert_eq!(
        field(l[0], "client_container"),
        Some(unit_name.as_str()),
        "{}",
        l[0]
    );

    // Counted: 43 connections from the kernel hook, 1 from /proc, no failure.
    let m = |name: &str, labels: &[(&str, &str)]| metrics.sum(name, labels) as u64;
    assert_eq!(
        m(
            "redis_observer_attributions_total",
            &[("side", "client"), ("source", "kernel")]
        ),
        43
    );
    assert_eq!(
        m(
            "redis_observer_attributions_total",
            &[("side", "client"), ("source", "proc")]
        ),
        1
    );
    // Servers: through the accepted socket and its listener (entered from /proc at start); the
    // connection accepted before the start from /proc.
    assert_eq!(
        m(
            "redis_observer_attributions_total",
            &[("side", "server"), ("source", "kernel")]
        ),
        43
    );
    assert_eq!(
        m(
            "redis_observer_attributions_total",
            &[("side", "server"), ("source", "proc")]
        ),
        1
    );
    assert_eq!(m("redis_observer_attribution_failures_total", &[]), 0);

    // `--client-label process`: the comm names the series.
    let server = format!("127.0.0.1:{port}");
    let by_client = |c: &str| {
        m(
            "redis_client_commands_total",
            &[("server", server.as_str()), ("client", c)],
        )
    };
    assert_eq!(by_client("redis-cli"), 42);
    // python3: the GETs, plus the PING and redis-py's CLIENT SETINFO (two per connection).
    assert_eq!(
        by_client("python3"),
        m("redis_commands_total", &[("server", server.as_str())]) - 42
    );

    // `tail --pid` follows one process.
    let docker_lines = tail(&log, &["--pid", &docker_pid.to_string()]);
    assert_eq!(docker_lines.len(), 1);
    assert_eq!(field(&docker_lines[0], "command"), Some("GET"));
    // `tail --client COMM` too, when the client set no name.
    assert_eq!(tail(&log, &["--client", "redis-cli"]).len(), 42);
}

#[test]
fn client_in_another_namespace_over_veth() {
    let _g = e2e_lock();
    require_root();
    let pair = VethPair::new();
    let redis = Redis::start_in(&pair.server, SERVER_V4, &[]);
    let server_pid = redis.proc.child.id();
    let port = redis.port.to_string();
    let dir = temp_dir("attribution-veth");
    let log = dir.join("live.jsonl");
    let mut obs = Observer::start(
        Some(&pair.server),
        &[
            "-i",
            &pair.server_if,
            "-p",
            &port,
            "--log",
            log.to_str().unwrap(),
        ],
    );
    let mut pids = Vec::new();
    for (host, key) in [(SERVER_V4, "v4-key"), (SERVER_V6, "v6-key")] {
        // `ip netns exec` enters the namespace and execs: the child's pid is redis-cli's.
        let child = pair
            .client
            .cmd("redis-cli")
            .args(["-h", host, "-p", &port, "GET", key])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-cli");
        pids.push((key, child.id()));
        assert!(
            child
                .wait_with_output()
                .expect("redis-cli")
                .status
                .success()
        );
    }
    sleep(Duration::from_millis(500));
    let metrics = obs.metrics_in(Some(&pair.server));
    obs.stop();
    let text = std::fs::read_to_string(&log).expect("log");
    let lines = parse_log(&text);
    for (key, pid) in pids {
        let l = by_key(&lines, key);
        assert_eq!(l.len(), 1, "{key}: {text:.2000}");
        assert_eq!(
            l[0]["client_pid"].as_u64(),
            Some(u64::from(pid)),
            "{}",
            l[0]
        );
        assert_eq!(field(l[0], "client_comm"), Some("redis-cli"), "{}", l[0]);
        assert_eq!(
            l[0]["server_pid"].as_u64(),
            Some(u64::from(server_pid)),
            "{}",
            l[0]
        );
        assert_eq!(field(l[0], "server_comm"), Some("redis-server"), "{}", l[0]);
    }
    // (`ip netns exec` gives the observer a fresh /sys without the cgroup mounts: the cgroup
    // may be unknown there, and is counted as such; nothing else failed.)
    for reason in ["not_found", "ambiguous", "no_access"] {
        assert_eq!(
            metrics.sum(
                "redis_observer_attribution_failures_total",
                &[("reason", reason)]
            ) as u64,
            0,
            "{reason}"
        );
    }
}

/// Two Redis servers on one host are told apart by their processes; a server restarted on the
/// same port is a new process, and later connections name it.
#[test]
fn two_servers_and_a_restart() {
    let _g = e2e_lock();
    require_root();
    let a = Redis::start(&[]);
    let mut b = Redis::start(&[]);
    let (pa, pb) = (a.port.to_string(), b.port.to_string());
    let dir = temp_dir("attribution-servers");
    let log = dir.join("live.jsonl");
    let mut obs = Observer::start(
        None,
        &[
            "-i",
            "lo",
            "-p",
            &pa,
            "-p",
            &pb,
            "--log",
            log.to_str().unwrap(),
        ],
    );
    cli_in(None, a.port, &["GET", "a-key"]);
    cli_in(None, b.port, &["GET", "b-key"]);
    let old_b = b.proc.child.id();
    b.proc.stop();
    // The same port, a new process.
    let b2 = Command::new("redis-server")
        .args([
            "--port",
            &pb,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    let _b2 = Proc {
        child: b2,
        name: "redis-server".into(),
    };
    let new_b = _b2.child.id();
    wait_until("restarted redis-server", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", b.port)).is_ok()
    });
    // Past the daemon's 1 s re-check of a known server.
    sleep(Duration::from_millis(1200));
    cli_in(None, b.port, &["GET", "b2-key"]);
    sleep(Duration::from_millis(500));
    obs.stop();
    let text = std::fs::read_to_string(&log).expect("log");
    let lines = parse_log(&text);
    let server = |key: &str| {
        let l = by_key(&lines, key);
        assert_eq!(l.len(), 1, "{key}: {text:.2000}");
        (
            l[0]["server_pid"].as_u64(),
            field(l[0], "server_comm").map(str::to_string),
        )
    };
    let rs = Some("redis-server".to_string());
    assert_eq!(
        server("a-key"),
        (Some(u64::from(a.proc.child.id())), rs.clone())
    );
    assert_eq!(server("b-key"), (Some(u64::from(old_b)), rs.clone()));
    assert_eq!(server("b2-key"), (Some(u64::from(new_b)), rs));
}
