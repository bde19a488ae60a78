//! Secrets through every output (root, real redis-server 7.0 and a real Sentinel on loopback).
//!
//! One hostile client sends every form of credential the redaction table knows, in forms Redis
//! accepts and forms it rejects (whose errors echo the arguments), to a plain server and to a
//! Sentinel, while a MONITOR client watches the server and the observer logs pushes. Then no
//! secret token may appear in the JSON log, the text log, `tail`'s output, the metrics, the
//! daemon's stderr or `run --dump-events` output.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    thread::sleep,
    time::Duration,
};

use tests::*;

/// A real Sentinel (`redis-server CONF --sentinel`) monitoring `master` on loopback.
struct Sentinel {
    _proc: Proc,
    port: u16,
}

impl Sentinel {
    fn start(master_port: u16) -> Sentinel {
        let port = free_port();
        let dir = temp_dir("sentinel");
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\n\
                 dir {}\nsentinel monitor mymaster 127.0.0.1 {master_port} 1\n",
                dir.display()
            ),
        )
        .expect("sentinel.conf");
        let mut cmd = Command::new("redis-server");
        cmd.arg(&conf).arg("--sentinel").stdout(Stdio::null());
        let proc = Proc::spawn("redis-sentinel", &mut cmd);
        wait_until("sentinel", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Sentinel { _proc: proc, port }
    }
}

/// Sends each command on its own and reads its reply (errors included).
fn send_all(addr: SocketAddr, cmds: &[Vec<Vec<u8>>]) {
    let mut c = RawClient::connect(addr);
    for cmd in cmds {
        let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
        c.call(&args);
    }
}

fn words(s: &str) -> Vec<Vec<u8>> {
    s.split(' ').map(|w| w.as_bytes().to_vec()).collect()
}

/// Reads MONITOR output from `s` for a while, so the server's lines reach the observer.
fn start_monitor(addr: SocketAddr) -> std::thread::JoinHandle<()> {
    let mut s = TcpStream::connect(addr).expect("monitor connect");
    s.write_all(b"MONITOR\r\n").expect("MONITOR");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let end = std::time::Instant::now() + Duration::from_secs(6);
        while std::time::Instant::now() < end {
            let _ = s.read(&mut buf);
        }
    })
}

#[test]
fn no_secret_reaches_any_output() {
    let _lock = e2e_lock();
    require_root();
    let redis = Redis::start(&[]);
    let sentinel = Sentinel::start(redis.port);
    let ports = format!("{}", redis.port);
    let sport = format!("{}", sentinel.port);
    let dir = temp_dir("secrets");
    let json_log = dir.join("log.json");
    let text_log = dir.join("log.txt");
    let dump = dir.join("dump.txt");
    let json_s = json_log.to_str().unwrap();
    let text_s = text_log.to_str().unwrap();
    let mut json_obs = Observer::start(
        None,
        &[
            "-i",
            "lo",
            "-p",
            &ports,
            "-p",
            &sport,
            "--log",
            json_s,
            "--log-pushes",
        ],
    );
    let mut text_obs = Observer::start(
        None,
        &[
            "-i",
            "lo",
            "-p",
            &ports,
            "-p",
            &sport,
            "--log",
            text_s,
            "--log-format",
            "text",
            "--log-pushes",
        ],
    );
    let mut dump_obs = Observer::start_with_stdout(
        None,
        &["-i", "lo", "-p", &ports, "-p", &sport, "--dump-events"],
        &dump,
    );

    // Every token is unique, so a hit names the case that leaked.
    let tok = |n: u32| format!("Sec{n}x{}", std::process::id());
    let addr: SocketAddr = format!("127.0.0.1:{}", redis.port).parse().unwrap();
    let saddr: SocketAddr = format!("127.0.0.1:{}", sentinel.port).parse().unwrap();
    let monitor = start_monitor(addr);
    sleep(Duration::from_millis(300));

    let server_cases: Vec<Vec<Vec<u8>>> = vec![
        words(&format!("AUTH {}", tok(1))),
        words(&format!("AUTH alice {} extra", tok(2))),
        words(&format!("HELLO AUTH alice {}", tok(3))),
        words(&format!("HELLO 4 AUTH alice {}", tok(4))),
        words(&format!("HELLO 2 AUTH default {}", tok(5))),
        words(&format!("ACL SETUSER alice <{}", tok(6))),
        words(&format!("ACL SETUSER alice !{}", tok(7))),
        words(&format!("ACL SETUSER alice #{}", tok(8))),
        words(&format!(
            "ACL SETUSER alice on >{} badrule <{}",
            tok(9),
            tok(10)
        )),
        vec![
            b"ACL".to_vec(),
            b"SETUSER".to_vec(),
            b"alice".to_vec(),
            format!("(>{} ~k)", tok(11)).into_bytes(),
        ],
        words(&format!("ACL SETUSR alice >{}", tok(12))),
        words(&format!("SENTINEL SET mymaster auth-pass {}", tok(13))),
        words(&format!("SENTINEL CONFIG SET sentinel-pass {}", tok(14))),
        words(&format!("CONFIG SET masterauth {}", tok(15))),
        words("CONFIG GET masterauth"),
        words("CONFIG GET *"),
        words(&format!("MIGRATE 127.0.0.1 1 k 0 100 AUTH {}", tok(16))),
        words(&format!(
            "MIGRATE 127.0.0.1 1 k 0 100 AUTH2 u {} KEYS k",
            tok(17)
        )),
        words(&format!("COMMAND GETKEYS AUTH {}", tok(18))),
        words(&format!("ACL DRYRUN default AUTH {}", tok(19))),
        words("MULTI"),
        words(&format!("ACL SETUSER alice <{}", tok(20))),
        words(&format!("CONFIG SET requirepass {} masterauth", tok(21))),
        words("EXEC"),
        words("ACL LIST"),
    ];
    send_all(addr, &server_cases);
    // Inline forms too (the same parser path Redis uses for telnet).
    {
        let mut c = RawClient::connect(addr);
        c.send_raw(format!("AUTH {}\r\n", tok(22)).as_bytes());
        c.send_raw(format!("HELLO AUTH bob {}\r\n", tok(23)).as_bytes());
        c.read_replies(2);
    }
    let sentinel_cases: Vec<Vec<Vec<u8>>> = vec![
        words(&format!("SENTINEL SET mymaster auth-pass {}", tok(30))),
        words(&format!("SENTINEL SET mymaster auth-user {}", tok(31))),
        words(&format!(
            "SENTINEL SET mymaster quorum x auth-pass {}",
            tok(32)
        )),
        words(&format!("SENTINEL CONFIG SET sentinel-pass {}", tok(33))),
        words(&format!("SENTINEL CONFIG SET sentinel-user {}", tok(34))),
        words("SENTINEL CONFIG GET *"),
        words(&format!("AUTH {}", tok(35))),
        words(&format!("HELLO 2 AUTH default {}", tok(36))),
        words(&format!("CONFIG SET requirepass {}", tok(37))),
        words("SENTINEL MASTER mymaster"),
    ];
    send_all(saddr, &sentinel_cases);
    // Undo what would disturb the servers; over the admin socket, unseen.
    redis.admin(&["ACL", "DELUSER", "alice"]);
    monitor.join().expect("monitor thread");
    sleep(Duration::from_millis(500));

    let metrics = http_get(&json_obs.metrics_addr, "/metrics").expect("metrics");
    json_obs.stop();
    text_obs.stop();
    dump_obs.stop();
    let json = std::fs::read_to_string(&json_log).expect("json log");
    let text = std::fs::read_to_string(&text_log).expect("text log");
    let dumped = std::fs::read_to_string(&dump).unwrap_or_default();
    let tail = Command::new(observer_bin())
        .arg("tail")
        .arg(&json_log)
        .output()
        .expect("tail");
    let tail_out =
        String::from_utf8_lossy(&tail.stdout).into_owned() + &String::from_utf8_lossy(&tail.stderr);

    let outputs = [
        ("JSON log", &json),
        ("text log", &text),
        ("tail", &tail_out),
        ("metrics", &metrics),
        ("dump-events", &dumped),
        ("json observer stderr", &json_obs.stderr()),
        ("text observer stderr", &text_obs.stderr()),
        ("dump observer stderr", &dump_obs.stderr()),
    ];
    let mut leaks = Vec::new();
    for n in 1..=40 {
        let t = tok(n);
        for (what, out) in &outputs {
            if out.contains(&t) {
                let line = out.lines().find(|l| l.contains(&t)).unwrap_or_default();
                leaks.push(format!("{t} in {what}: {line}"));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));

    // The cases were seen: the log holds their records, redacted.
    let log = parse_log(&json);
    let count = |name: &str| log.iter().filter(|v| v["command"] == name).count();
    assert!(count("ACL SETUSER") >= 6, "ACL SETUSER records: {json}");
    assert!(count("AUTH") >= 3, "AUTH records");
    assert!(json.contains("\"SENTINEL\""), "SENTINEL records: {json}");
    assert!(json.contains("ERR (redacted)"), "redacted errors");
    assert!(text.contains("(redacted)"));
    let pushes = log.iter().filter(|v| v["status"] == "push").count();
    assert!(pushes >= 10, "MONITOR lines logged: {pushes}");
    assert!(dumped.lines().count() > 20, "dump-events ran");
}
