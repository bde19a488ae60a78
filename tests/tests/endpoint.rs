//! The metrics endpoint under attack (root: the daemon attaches to `lo`).
//!
//! A liveness probe (`/healthz`, 1 s timeout as kubelet's default) and scrapers must keep being
//! answered while a client holds many idle connections open, and when 200 scrapers come at once.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::sleep,
    time::{Duration, Instant},
};

use tests::*;

/// GET `path` with a probe's patience: connect, request and answer within `timeout`.
fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, String> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    if start.elapsed() > timeout {
        return Err(format!("slow: {:?}", start.elapsed()));
    }
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {:?}", text.lines().next()));
    }
    Ok(text)
}

/// Idle connections: connected, then nothing (half of them send a partial request line).
fn hold_idle(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|i| {
            let mut s = TcpStream::connect(addr).ok()?;
            if i % 2 == 1 {
                let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost:");
            }
            Some(s)
        })
        .collect()
}

#[test]
fn healthz_answers_while_idle_connections_are_held() {
    let _lock = e2e_lock();
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let mut obs = Observer::start(None, &["-i", "lo", "-p", &port, "--log", "/dev/null"]);
    let addr: SocketAddr = obs.metrics_addr.parse().unwrap();

    // The attacker holds 64 idle connections and keeps replacing the ones the server closes.
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held = hold_idle(addr, 64);
            while !stop.load(Ordering::Relaxed) {
                held.retain(|s| {
                    let mut b = [0u8; 1];
                    s.set_nonblocking(true).ok();
                    // Closed by the server: read returns 0.
                    !matches!((&*s).read(&mut b), Ok(0))
                });
                let more = 64usize.saturating_sub(held.len());
                held.extend(hold_idle(addr, more));
                sleep(Duration::from_millis(20));
            }
            held.len()
        })
    };
    sleep(Duration::from_millis(500));
    let mut failures = Vec::new();
    for i in 0..12 {
        if let Err(e) = probe(addr, "/healthz", Duration::from_secs(1)) {
            failures.push(format!("healthz {i}: {e}"));
        }
        if let Err(e) = probe(addr, "/metrics", Duration::from_secs(2)) {
            failures.push(format!("metrics {i}: {e}"));
        }
        sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    let held = attacker.join().expect("attacker");
    assert!(held > 0, "the attacker held connections");
    assert!(
        failures.is_empty(),
        "probes failed:\n{}",
        failures.join("\n")
    );
    obs.stop();
}

#[test]
fn two_hundred_concurrent_scrapers_are_all_answered() {
    let _lock = e2e_lock();
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let mut obs = Observer::start(None, &["-i", "lo", "-p", &port, "--log", "/dev/null"]);
    let addr: SocketAddr = obs.metrics_addr.parse().unwrap();
    let go = Arc::new(std::sync::Barrier::new(200));
    let scrapers: Vec<_> = (0..200)
        .map(|i| {
            let go = Arc::clone(&go);
            std::thread::spawn(move || {
                go.wait();
                let path = if i % 10 == 0 { "/healthz" } else { "/metrics" };
                probe(addr, path, Duration::from_secs(10))
                    .map(|body| (path, body))
                    .map_err(|e| format!("scraper {i}: {e}"))
            })
        })
        .collect();
    let mut failures = Vec::new();
    for s in scrapers {
        match s.join().expect("scraper thread") {
            Ok((path, body)) => {
                if path == "/metrics" && !body.contains("redis_observer_") {
                    failures.push("metrics body without metrics".to_owned());
                }
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 200 failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    obs.stop();
}
