//! The kernel capture path, end to end (root): a real redis-server, the observer attached, a
//! client whose every byte is recorded. The observer's reassembled streams (`--dump-streams`)
//! must equal exactly what was sent and received, with zero losses.

use std::{net::SocketAddr, path::Path, process::Command, thread::sleep, time::Duration};

use tests::*;

/// Known traffic: small commands, a 1 MiB value both ways, a pipeline of 200 commands.
fn traffic(addr: SocketAddr) -> (u16, Vec<u8>, Vec<u8>) {
    let mut c = RawClient::connect(addr);
    c.call(&[b"PING"]);
    c.call(&[b"SET", b"greeting", b"hello world"]);
    c.call(&[b"GET", b"greeting"]);
    let big: Vec<u8> = (0..1024 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    c.call(&[b"SET", b"big", &big]);
    c.call(&[b"GET", b"big"]);
    let mut pipeline = Vec::new();
    for i in 0..200 {
        pipeline.extend(encode(&[b"INCRBY", b"counter", i.to_string().as_bytes()]));
    }
    c.send_raw(&pipeline);
    c.read_replies(205);
    c.call(&[b"DEL", b"big"]);
    let port = c.stream.local_addr().expect("local addr").port();
    (port, c.sent, c.received)
}

fn dumped(dir: &Path, client_port: u16, ext: &str) -> Vec<u8> {
    let suffix = format!(".{ext}");
    let entry = std::fs::read_dir(dir)
        .expect("dump dir")
        .filter_map(Result::ok)
        .find(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with(&suffix) && n.contains(&format!("_{client_port}-"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no dumped {ext} stream for client port {client_port} in {}",
                dir.display()
            )
        });
    std::fs::read(entry.path()).expect("read dump")
}

fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let first = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: {} bytes reassembled, {} expected; first difference at byte {first}",
            got.len(),
            want.len()
        );
    }
}

fn assert_no_losses(m: &Metrics) {
    assert_eq!(
        m.sum("redis_observer_events_lost_total", &[]),
        0.0,
        "ring buffer losses"
    );
    assert_eq!(
        m.sum("redis_observer_bytes_missed_total", &[]),
        0.0,
        "bytes missed"
    );
    assert!(
        m.sum("redis_observer_packets_total", &[]) > 0.0,
        "no packets counted"
    );
}

/// What the observer attached (`ids`, taken while it ran) is gone: its tc filters, programs and
/// links. Only its own: another observer on the host may have its own attached.
fn assert_nothing_attached(iface_ns: Option<&NetNs>, iface: &str, ids: &BpfIds) {
    assert!(!ids.progs.is_empty(), "the observer held no program");
    for dir in ["ingress", "egress"] {
        let mut c = match iface_ns {
            Some(ns) => ns.cmd("tc"),
            None => Command::new("tc"),
        };
        let out = sh(c.args(["filter", "show", "dev", iface, dir]));
        let text = String::from_utf8_lossy(&out.stdout);
        for id in &ids.progs {
            assert!(
                !text
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .any(|w| w[0] == "id" && w[1] == id.to_string()),
                "tc filter {dir} on {iface} still shows our program {id}:\n{text}"
            );
        }
    }
    let progs = bpftool_ids("prog");
    for id in &ids.progs {
        assert!(!progs.contains(id), "our program {id} is still loaded");
    }
    let links = bpftool_ids("link");
    for id in &ids.links {
        assert!(!links.contains(id), "our link {id} is still attached");
    }
}

fn lo_roundtrip(mode: &str) {
    let _g = e2e_lock();
    let redis = Redis::start(&[]);
    let dir = temp_dir("streams");
    let port = redis.port.to_string();
    let mut obs = Observer::start(
        None,
        &[
            "-i",
            "lo",
            "-p",
            &port,
            "--attach",
            mode,
            "--dump-streams",
            dir.to_str().unwrap(),
            "--log",
            dir.join("log").to_str().unwrap(),
        ],
    );
    let (cport, sent, received) = traffic(format!("127.0.0.1:{port}").parse().unwrap());
    sleep(Duration::from_millis(300));
    let m = obs.metrics();
    let ids = obs.bpf_ids();
    obs.stop();
    assert_same("client → server", &dumped(&dir, cport, "req"), &sent);
    assert_same("server → client", &dumped(&dir, cport, "rep"), &received);
    assert_no_losses(&m);
    assert_nothing_attached(None, "lo", &ids);
    assert_every_line_on(&dir.join("log"), "lo");
}

/// Every line of the command log names the interface, and `tail --iface` selects by it.
fn assert_every_line_on(log: &Path, iface: &str) {
    let text = std::fs::read_to_string(log).expect("command log");
    let lines = parse_log(&text);
    assert!(!lines.is_empty(), "no log lines");
    for l in &lines {
        assert_eq!(l["iface"], iface, "{l}");
    }
    let tail = |filter: &str| {
        let out = sh(Command::new(observer_bin())
            .args(["tail", "--json", "--iface", filter])
            .arg(log));
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let commands = lines.iter().filter(|l| !l["command"].is_null()).count();
    assert_eq!(tail(iface), commands, "tail --iface {iface}");
    assert_eq!(tail("no-such-if0"), 0, "tail --iface no-such-if0");
}

#[test]
fn lo_tc_reassembles_every_byte() {
    lo_roundtrip("tc");
}

#[test]
fn lo_socket_reassembles_every_byte() {
    lo_roundtrip("socket");
}

fn veth_roundtrip(v6: bool, mode: &str) {
    let _g = e2e_lock();
    let net = VethPair::new();
    let host = if v6 { SERVER_V6 } else { SERVER_V4 };
    let redis = Redis::start_in(&net.server, host, &[]);
    let dir = temp_dir("streams");
    let port = redis.port.to_string();
    let mut obs = Observer::start(
        Some(&net.server),
        &[
            "-i",
            &net.server_if,
            "-p",
            &port,
            "--attach",
            mode,
            "--dump-streams",
            dir.to_str().unwrap(),
            "--log",
            dir.join("log").to_str().unwrap(),
        ],
    );
    let addr: SocketAddr = if v6 {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
    .parse()
    .unwrap();
    let (cport, sent, received) = net.client.run(move || traffic(addr));
    sleep(Duration::from_millis(300));
    let m = obs.metrics_in(Some(&net.server));
    let ids = obs.bpf_ids();
    obs.stop();
    assert_same("client → server", &dumped(&dir, cport, "req"), &sent);
    assert_same("server → client", &dumped(&dir, cport, "rep"), &received);
    assert_no_losses(&m);
    assert_nothing_attached(Some(&net.server), &net.server_if, &ids);
    assert_every_line_on(&dir.join("log"), &net.server_if);
}

#[test]
fn veth_ipv4_tc() {
    veth_roundtrip(false, "tc");
}

#[test]
fn veth_ipv6_tc() {
    veth_roundtrip(true, "tc");
}

#[test]
fn veth_ipv4_socket() {
    veth_roundtrip(false, "socket");
}

#[test]
fn veth_ipv6_socket() {
    veth_roundtrip(true, "socket");
}

/// Both modes attached at once to the same traffic produce the same events (timestamps aside).
#[test]
fn tc_and_socket_modes_emit_the_same_events() {
    let _g = e2e_lock();
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let d = temp_dir("events");
    let (tc_out, sock_out) = (d.join("tc.txt"), d.join("sock.txt"));
    let mut tc = Observer::start_with_stdout(
        None,
        &["-i", "lo", "-p", &port, "--attach", "tc", "--dump-events"],
        &tc_out,
    );
    let mut sock = Observer::start_with_stdout(
        None,
        &[
            "-i",
            "lo",
            "-p",
            &port,
            "--attach",
            "socket",
            "--dump-events",
        ],
        &sock_out,
    );
    traffic(format!("127.0.0.1:{port}").parse().unwrap());
    sleep(Duration::from_millis(300));
    let (tc_ids, sock_ids) = (tc.bpf_ids(), sock.bpf_ids());
    tc.stop();
    sock.stop();
    let events = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_to_string(p)
            .expect("events file")
            .lines()
            .map(|l| {
                l.split_once(' ')
                    .map(|(_ts, rest)| rest.to_owned())
                    .unwrap_or_default()
            })
            .collect();
        v.sort();
        v
    };
    let (a, b) = (events(&tc_out), events(&sock_out));
    assert!(a.len() > 20, "too few events: {}", a.len());
    assert_eq!(
        a.len(),
        b.len(),
        "event counts differ (tc {}, socket {})",
        a.len(),
        b.len()
    );
    assert!(a == b, "event streams differ");
    assert_nothing_attached(None, "lo", &tc_ids);
    assert_nothing_attached(None, "lo", &sock_ids);
}
