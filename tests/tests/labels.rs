//! The `server` label cap under attack (root: the daemon attaches to `lo`).
//!
//! Plain `connect()`s to 78 other loopback addresses on the watched port (all refused) must not
//! take the label slots: the real server's commands keep their own `server` label, exactly.

use std::{
    net::{SocketAddr, TcpStream},
    thread::sleep,
    time::Duration,
};

use tests::*;

const INCRS: u64 = 50;

#[test]
fn refused_connects_do_not_push_the_real_server_into_other() {
    let _lock = e2e_lock();
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let mut obs = Observer::start(None, &["-i", "lo", "-p", &port, "--log", "/dev/null"]);
    let before = redis.commandstats();
    for i in 0..78u8 {
        let addr = SocketAddr::from(([127, 0, 0, 2 + i], redis.port));
        // Nothing listens there: SYN, RST.
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
            "{addr} answered"
        );
    }
    let addr: SocketAddr = format!("127.0.0.1:{}", redis.port).parse().unwrap();
    let mut c = RawClient::connect(addr);
    for _ in 0..INCRS {
        c.call(&[b"INCR", b"label-counter"]);
    }
    drop(c);
    sleep(Duration::from_millis(500));
    let after = redis.commandstats();
    assert_eq!(before.delta(&after).get("INCR"), Some(&INCRS));
    let m = obs.metrics();
    let server = format!("127.0.0.1:{}", redis.port);
    assert_eq!(
        m.sum(
            "redis_commands_total",
            &[("server", &server), ("command", "INCR"), ("status", "ok")]
        ),
        INCRS as f64
    );
    let labelled: Vec<&String> =
        m.0.keys()
            .filter(|k| k.contains("server=\"other\"") || k.contains("server=\"127.0.0.2"))
            .collect();
    assert!(labelled.is_empty(), "series: {labelled:?}");
    obs.stop();
}
