use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::*;
use crate::conn::ConnMeta;
use crate::record::{Dir, ReplySummary};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn rec<'a>(
    server: SocketAddr,
    command: u16,
    status: Status,
    reply: Option<ReplySummary<'a>>,
    latency_ns: Option<u64>,
) -> CommandRecord<'a> {
    CommandRecord {
        ts_ns: 1,
        // Tests only: a record borrows its connection, which lives as long as the test.
        conn: Box::leak(Box::new(ConnMeta::new(sa("10.0.0.7:40000"), server))),
        command: CommandId(command),
        name: b"X",
        key: None,
        args: &[],
        keys: &[],
        arg_buf: &[],
        argc: 0,
        status,
        reply,
        latency_ns,
        req_bytes: 10,
        resp_bytes: 5,
        in_transaction: false,
        blocking: false,
        protocol_error: None,
    }
}

fn err(text: &[u8]) -> Option<ReplySummary<'_>> {
    Some(ReplySummary {
        kind: Kind::Error,
        len: text.len() as i64,
        text,
        redacted: false,
    })
}

/// The value of the sample line `name{labels} value` (labels in the encoder's order).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn every_contract_metric_is_exported() {
    let mut m = Metrics::new();
    let server = sa("10.0.0.1:6379");
    m.record_flow(server, FlowEvent::Opened);
    m.record_command(&rec(server, 1, Status::Ok, None, Some(150_000)));
    m.record_command(&rec(
        server,
        1,
        Status::Error,
        err(b"WRONGTYPE Operation against a key"),
        Some(10),
    ));
    m.record_push(server, 40);
    m.flow_evicted("idle");
    let text = m.encode_text();
    for name in [
        "redis_commands_total",
        "redis_command_duration_seconds",
        "redis_command_errors_total",
        "redis_request_bytes_total",
        "redis_response_bytes_total",
        "redis_connections_active",
        "redis_connections_total",
        "redis_push_messages_total",
        "redis_client_commands_total",
        "redis_client_command_duration_seconds",
        "redis_observer_packets_total",
        "redis_observer_events_lost_total",
        "redis_observer_bytes_missed_total",
        "redis_observer_desyncs_total",
        "redis_observer_log_dropped_total",
        "redis_observer_commands_lost_total",
        "redis_observer_orphan_replies_total",
        "redis_observer_flows_evicted_total",
        "redis_observer_servers_overflow_total",
        "redis_observer_flows_refused_total",
        "redis_observer_ring_bytes_lost_total",
        "redis_observer_segments_total",
        "redis_observer_bytes_captured_total",
        "redis_observer_ring_wakeups_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{text}"
        );
    }
    assert!(text.contains("# TYPE redis_command_duration_seconds histogram"));
    assert!(text.contains("# TYPE redis_connections_active gauge"));
    let get = crate::commands::name(CommandId(1));
    let s = "server=\"10.0.0.1:6379\"";
    assert_eq!(
        sample(
            &text,
            &format!("redis_commands_total{{command=\"{get}\",{s},status=\"ok\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("redis_command_errors_total{{command=\"{get}\",error=\"WRONGTYPE\",{s}}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, &format!("redis_request_bytes_total{{{s}}}")),
        Some(20.0)
    );
    assert_eq!(
        sample(&text, &format!("redis_response_bytes_total{{{s}}}")),
        Some(50.0)
    );
    assert_eq!(
        sample(&text, &format!("redis_connections_active{{{s}}}")),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, &format!("redis_push_messages_total{{{s}}}")),
        Some(1.0)
    );
    // 150 µs lands in the 200 µs bucket, not the 100 µs one; 10 ns in the first.
    let b = |le: &str| {
        sample(
            &text,
            &format!("redis_command_duration_seconds_bucket{{command=\"{get}\",{s},le=\"{le}\"}}"),
        )
    };
    assert_eq!(b("0.00001"), Some(1.0));
    assert_eq!(b("0.0001"), Some(1.0));
    assert_eq!(b("0.0002"), Some(2.0));
    assert_eq!(b("+Inf"), Some(2.0));
    // Fixed-reason series exist from the start.
    assert!(text.contains("redis_observer_desyncs_total{dir=\"request\",reason=\"not_resp\"} 0"));
    assert!(text.contains("redis_observer_events_lost_total{reason=\"ring_full\"} 0"));
    assert!(text.contains("redis_observer_bytes_missed_total{reason=\"gap\"} 0"));
    assert!(text.contains("redis_observer_log_dropped_total{reason=\"queue_full\"} 0"));
    m.record_flow(server, FlowEvent::Closed);
    m.connection_closed(server);
    let text = m.encode_text();
    assert_eq!(
        sample(&text, &format!("redis_connections_active{{{s}}}")),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, &format!("redis_connections_total{{{s}}}")),
        Some(1.0)
    );
}

#[test]
fn buckets_span_10us_to_10s_three_per_decade() {
    assert_eq!(DURATION_BUCKETS.first(), Some(&0.000_01));
    assert_eq!(DURATION_BUCKETS.last(), Some(&10.0));
    for decade in -5..1 {
        let lo = 10f64.powi(decade);
        let n = DURATION_BUCKETS
            .iter()
            .filter(|&&b| b > lo * 1.0001 && b <= lo * 10.0001)
            .count();
        assert!(n >= 3, "decade {lo}: {n} buckets");
    }
    assert!(DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn histogram_count_equals_counter() {
    let mut m = Metrics::new();
    let server = sa("10.0.0.1:6379");
    let mut n = 0u64;
    for i in 0..5_000u64 {
        let id = (i % 4) as u16;
        let lat = (i * 7_919) % 3_000_000_000;
        let status = if i % 10 == 0 {
            Status::Error
        } else {
            Status::Ok
        };
        m.record_command(&rec(server, id, status, err(b"ERR x"), Some(lat)));
        n += 1;
    }
    let text = m.encode_text();
    let sum_of = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(sum_of("redis_commands_total{"), n as f64);
    assert_eq!(sum_of("redis_command_duration_seconds_count{"), n as f64);
    assert_eq!(sum_of("redis_command_errors_total{"), (n / 10) as f64);
    // Per command too.
    for id in 0..4u16 {
        let name = crate::commands::name(CommandId(id));
        let c = format!("command=\"{name}\",");
        let count: f64 = text
            .lines()
            .filter(|l| l.starts_with("redis_command_duration_seconds_count{") && l.contains(&c))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        let total: f64 = text
            .lines()
            .filter(|l| l.starts_with("redis_commands_total{") && l.contains(&c))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(count, total, "{name}");
        assert_eq!(total, 1250.0);
    }
}

#[test]
fn latency_only_when_known() {
    let mut m = Metrics::new();
    let server = sa("10.0.0.1:6379");
    m.record_command(&rec(server, 1, Status::Unanswered, None, None));
    m.record_command(&rec(server, 1, Status::NoReply, None, None));
    let text = m.encode_text();
    assert!(text.contains("status=\"unanswered\"} 1"));
    assert!(text.contains("status=\"no_reply\"} 1"));
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("redis_command_duration_seconds_count"))
            .map(|l| l.ends_with(" 0"))
            .collect::<Vec<_>>(),
        vec![true]
    );
}

#[test]
fn server_label_values_are_capped() {
    let mut m = Metrics::new();
    for i in 0..1000u32 {
        let server = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 6379));
        m.connection_opened(server);
        m.record_command(&rec(server, 1, Status::Ok, None, Some(1_000)));
        // Seen again: an overflowed server is counted once.
        m.record_command(&rec(server, 1, Status::Ok, None, Some(1_000)));
    }
    let text = m.encode_text();
    let servers: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("redis_request_bytes_total{"))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert_eq!(servers.len(), MAX_SERVERS + 1);
    assert!(servers.contains("other"));
    assert_eq!(
        sample(&text, "redis_observer_servers_overflow_total"),
        Some((1000 - MAX_SERVERS) as f64)
    );
    assert_eq!(
        sample(&text, "redis_connections_total{server=\"other\"}"),
        Some((1000 - MAX_SERVERS) as f64)
    );
    let sum: f64 = text
        .lines()
        .filter(|l| l.starts_with("redis_commands_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(sum, 2000.0);
}

#[test]
fn unknown_commands_share_one_label() {
    let mut m = Metrics::new();
    let server = sa("10.0.0.1:6379");
    for id in [0u16, 0, u16::MAX, 9_999, crate::commands::count() as u16] {
        m.record_command(&rec(
            server,
            id,
            Status::Error,
            err(b"ERR unknown command"),
            Some(1),
        ));
    }
    let text = m.encode_text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("redis_commands_total{"))
        .collect();
    assert_eq!(
        lines,
        vec![
            "redis_commands_total{command=\"UNKNOWN\",server=\"10.0.0.1:6379\",status=\"error\"} 5"
        ]
    );
}

#[test]
fn error_labels_are_bounded() {
    let mut m = Metrics::new();
    let server = sa("10.0.0.1:6379");
    let texts: [&[u8]; 6] = [
        b"MOVED 3999 127.0.0.1:6381",
        b"NOSUCHTHING at all",
        b"\xff\xfe",
        b"whatever",
        b"",
        b"ERR",
    ];
    for t in texts {
        m.record_command(&rec(server, 2, Status::Error, err(t), Some(1)));
    }
    // A redacted error and an error status without an error reply.
    let red = Some(ReplySummary {
        kind: Kind::Error,
        len: 3,
        text: b"",
        redacted: true,
    });
    m.record_command(&rec(server, 2, Status::Error, red, Some(1)));
    m.record_command(&rec(server, 2, Status::Error, None, None));
    let text = m.encode_text();
    let errors: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("redis_command_errors_total{"))
        .map(|l| l.split("error=\"").nth(1).unwrap_or("").to_string())
        .collect();
    assert_eq!(
        errors,
        vec![
            "ERR\",server=\"10.0.0.1:6379\"} 1",
            "MOVED\",server=\"10.0.0.1:6379\"} 1",
            "OTHER\",server=\"10.0.0.1:6379\"} 6",
        ]
    );
}

#[test]
fn notices_and_observer_counters() {
    let mut m = Metrics::new();
    m.record_notice(&Notice::Desync {
        dir: Dir::Reply,
        reason: DesyncReason::Gap,
    });
    m.record_notice(&Notice::OrphanReply);
    m.record_notice(&Notice::CommandsLost(7));
    m.record_notice(&Notice::PendingOverflow);
    m.flow_evicted("idle");
    m.flow_evicted("idle");
    m.flow_evicted("table_full");
    m.add_events_lost(LostReason::Malformed, 3);
    m.add_bytes_missed(MissReason::Gap, 1000);
    let server = sa("10.0.0.1:6379");
    m.record_flow(
        server,
        FlowEvent::BytesMissed {
            reason: MissReason::NotCaptured,
            n: 20,
        },
    );
    m.record_flow(server, FlowEvent::Refused);
    m.record_flow(
        server,
        FlowEvent::Evicted {
            reason: crate::record::EvictReason::Limit,
        },
    );
    let mut k = Counters::default();
    k.0[counter::PACKETS as usize] = 10;
    k.0[counter::EVENTS_LOST as usize] = 2;
    k.0[counter::BYTES_LOST as usize] = 300;
    k.0[counter::BYTES_NOT_CAPTURED as usize] = 50;
    k.0[counter::UNPARSED as usize] = 1;
    m.set_kernel_counters(&k);
    k.0[counter::PACKETS as usize] = 25;
    k.0[counter::EVENTS_LOST as usize] = 2;
    m.set_kernel_counters(&k);
    m.set_kernel_counters(&k);
    let text = m.encode_text();
    for (series, v) in [
        (
            "redis_observer_desyncs_total{dir=\"reply\",reason=\"gap\"}",
            1.0,
        ),
        (
            "redis_observer_desyncs_total{dir=\"request\",reason=\"gap\"}",
            0.0,
        ),
        ("redis_observer_orphan_replies_total", 1.0),
        ("redis_observer_commands_lost_total{reason=\"gap\"}", 7.0),
        (
            "redis_observer_commands_lost_total{reason=\"pending_overflow\"}",
            1.0,
        ),
        ("redis_observer_flows_evicted_total{reason=\"idle\"}", 2.0),
        (
            "redis_observer_flows_evicted_total{reason=\"table_full\"}",
            1.0,
        ),
        (
            "redis_observer_events_lost_total{reason=\"malformed\"}",
            3.0,
        ),
        (
            "redis_observer_events_lost_total{reason=\"ring_full\"}",
            2.0,
        ),
        ("redis_observer_events_lost_total{reason=\"unparsed\"}", 1.0),
        ("redis_observer_bytes_missed_total{reason=\"gap\"}", 1000.0),
        (
            "redis_observer_bytes_missed_total{reason=\"not_captured\"}",
            20.0,
        ),
        ("redis_observer_ring_bytes_lost_total", 300.0),
        ("redis_observer_flows_refused_total", 1.0),
        ("redis_observer_flows_evicted_total{reason=\"limit\"}", 1.0),
        ("redis_observer_packets_total", 25.0),
    ] {
        assert_eq!(sample(&text, series), Some(v), "{series}\n{text}");
    }
    // A source that restarted (smaller total) counts from zero again.
    m.set_packets_total(5);
    assert_eq!(
        sample(&m.encode_text(), "redis_observer_packets_total"),
        Some(30.0)
    );
}

async fn http_get(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[test]
fn http_endpoint() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut m = Metrics::new();
        m.record_command(&rec(sa("10.0.0.1:6379"), 1, Status::Ok, None, Some(1_000)));
        m.flush_local();
        let health = Arc::new(AtomicBool::new(true));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, m.registry(), Arc::clone(&health), async {
            let _ = stopped.await;
        }));
        let get =
            |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");

        let r = http_get(addr, &get("/metrics")).await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.contains("content-type: text/plain; version=0.0.4\r\n"),
            "{r}"
        );
        assert!(r.contains("redis_commands_total{"), "{r}");
        // Updates after the endpoint started are visible once flushed (the daemon flushes
        // after every batch), counts and latencies together.
        m.record_command(&rec(sa("10.0.0.1:6379"), 1, Status::Ok, None, Some(1_000)));
        let r = http_get(addr, &get("/metrics")).await;
        assert!(r.contains("status=\"ok\"} 1"), "{r}");
        m.flush_local();
        let r = http_get(addr, &get("/metrics")).await;
        assert!(r.contains("status=\"ok\"} 2"), "{r}");

        let r = http_get(addr, &get("/healthz")).await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nok\n"), "{r}");
        health.store(false, std::sync::atomic::Ordering::Relaxed);
        let r = http_get(addr, &get("/healthz")).await;
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");

        let r = http_get(addr, &get("/nope")).await;
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
        let r = http_get(
            addr,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        let r = http_get(addr, "garbage\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returns on shutdown")
            .unwrap();
    });
}

/// `cargo test --release -- --ignored --nocapture metrics_cost`
#[test]
#[ignore = "timing; run in release with --nocapture"]
fn metrics_cost() {
    let mut m = Metrics::new();
    let servers = [sa("10.0.0.1:6379"), sa("10.0.0.2:6379")];
    let n = 5_000_000u64;
    // Warm up every (server, command, status) used below.
    for i in 0..1_000u64 {
        let s = servers[(i % 2) as usize];
        m.record_command(&rec(s, (i % 4) as u16, Status::Ok, None, Some(i * 1_000)));
    }
    let t = Instant::now();
    for i in 0..n {
        let s = servers[((i >> 6) % 2) as usize];
        m.record_command(&rec(
            s,
            (i % 4) as u16,
            Status::Ok,
            None,
            Some((i % 5_000) * 1_000),
        ));
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("Metrics::record_command: {ns:.1} ns/record");
    let t = Instant::now();
    let text = m.encode_text();
    println!("encode_text: {:?} for {} bytes", t.elapsed(), text.len());
}

#[test]
fn every_status_is_counted() {
    let mut m = Metrics::new();
    let server = sa("10.0.0.1:6379");
    let all = [
        Status::Ok,
        Status::Error,
        Status::Unanswered,
        Status::NoReply,
        Status::Aborted,
        Status::ReplyDropped,
    ];
    for s in Status::ALL.iter().chain(&all) {
        assert!((*s as usize) < STATUS_SLOTS);
        m.record_command(&rec(server, 1, *s, None, None));
    }
    let text = m.encode_text();
    for s in all {
        assert!(
            text.contains(&format!("status=\"{}\"}}", s.as_str())),
            "{}",
            s.as_str()
        );
    }
}

#[test]
fn replication_series_are_bounded_and_ended_links_lose_their_gauges() {
    use crate::record::SyncKind;
    let mut m = Metrics::new();
    let srv = sa("10.0.0.1:6379");
    let r = sa("10.0.0.2:6380");
    m.record_replication(srv, r, ReplEvent::Up(SyncKind::Full));
    m.record_replication(
        srv,
        r,
        ReplEvent::Rdb {
            bytes: 1000,
            duration_ns: 2_000_000,
        },
    );
    m.record_replication(
        srv,
        r,
        ReplEvent::Stream {
            commands: 3,
            bytes: 90,
            offset: Some(190),
            lag: None,
        },
    );
    m.record_replication(
        srv,
        r,
        ReplEvent::Ack {
            offset: 150,
            lag: Some(40),
        },
    );
    let t = m.encode_text();
    let l = r#"{replica="10.0.0.2:6380",server="10.0.0.1:6379"}"#;
    for line in [
        "redis_replication_full_syncs_total{server=\"10.0.0.1:6379\"} 1".to_string(),
        "redis_replication_links_active{server=\"10.0.0.1:6379\"} 1".to_string(),
        format!("redis_replication_rdb_bytes{l} 1000"),
        format!("redis_replication_rdb_duration_seconds{l} 0.002"),
        format!("redis_replication_commands_total{l} 3"),
        format!("redis_replication_bytes_total{l} 90"),
        format!("redis_replication_stream_offset{l} 190"),
        format!("redis_replication_acked_offset{l} 150"),
        format!("redis_replication_ack_lag_bytes{l} 40"),
    ] {
        assert!(t.contains(&line), "{line} missing from\n{t}");
    }
    m.record_replication(srv, r, ReplEvent::Down);
    let t = m.encode_text();
    assert!(t.contains("redis_replication_links_active{server=\"10.0.0.1:6379\"} 0"));
    assert!(!t.contains("redis_replication_ack_lag_bytes{"), "{t}");
    assert!(t.contains(&format!("redis_replication_commands_total{l} 3")));

    // Replica label values are capped per server.
    for port in 0..100u16 {
        let r = SocketAddr::new(sa("10.0.0.3:1").ip(), 7000 + port);
        m.record_replication(srv, r, ReplEvent::Up(SyncKind::Unknown));
        m.record_replication(
            srv,
            r,
            ReplEvent::Stream {
                commands: 1,
                bytes: 1,
                offset: None,
                lag: None,
            },
        );
    }
    let t = m.encode_text();
    let series = t
        .lines()
        .filter(|l| l.starts_with("redis_replication_commands_total{"))
        .count();
    assert_eq!(series, MAX_REPLICAS + 1, "the cap and `other`");
    assert!(
        t.contains(
            r#"redis_replication_commands_total{replica="other",server="10.0.0.1:6379"} 69"#
        ),
        "{t}"
    );
}

/// Some sample line (not a comment) holds `what`.
fn series(text: &str, what: &str) -> bool {
    text.lines()
        .any(|l| !l.starts_with('#') && l.contains(what))
}

#[test]
fn refused_connects_never_take_a_server_slot() {
    let mut m = Metrics::new();
    // 78 other loopback addresses on the port: SYN, RST, nothing in RESP.
    for i in 0..78u8 {
        let other = SocketAddr::from(([127, 0, 0, 2 + i], 6379));
        m.connection_opened(other);
        m.connection_closed(other);
    }
    let real = sa("127.0.0.1:6379");
    m.connection_opened(real);
    m.record_command(&rec(real, 1, Status::Ok, None, Some(1_000)));
    let text = m.encode_text();
    assert_eq!(
        sample(&text, "redis_connections_total{server=\"127.0.0.1:6379\"}"),
        Some(1.0)
    );
    assert!(!series(&text, "server=\"other\""), "{text}");
    assert!(
        !series(&text, "127.0.0.2:"),
        "no slot for a refused connect"
    );
}

#[test]
fn idle_server_slots_are_reclaimed() {
    let mut m = Metrics::new();
    let server = |i: u32| SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 6379));
    for i in 0..MAX_SERVERS as u32 {
        m.connection_opened(server(i));
        m.record_command(&rec(server(i), 1, Status::Ok, None, Some(1_000)));
        m.connection_closed(server(i));
    }
    // All slots taken, all idle: a new server reclaims the one idle longest (the first).
    let new = server(1000);
    m.connection_opened(new);
    m.record_command(&rec(new, 1, Status::Ok, None, Some(1_000)));
    let text = m.encode_text();
    assert_eq!(
        sample(
            &text,
            "redis_connections_active{server=\"10.1.3.232:6379\"}"
        ),
        Some(1.0)
    );
    assert!(!series(&text, "server=\"10.1.0.0:6379\""), "reclaimed");
    assert!(series(&text, "server=\"10.1.0.1:6379\""));
    assert!(!series(&text, "server=\"other\""));
    // A server with an open connection is never reclaimed: with every slot busy, `other`.
    for i in 1..MAX_SERVERS as u32 {
        m.connection_opened(server(i));
    }
    let late = server(2000);
    m.record_command(&rec(late, 1, Status::Ok, None, Some(1_000)));
    let text = m.encode_text();
    assert!(series(&text, "server=\"other\""));
    assert!(series(&text, "server=\"10.1.0.1:6379\""));
}

#[test]
fn client_series_are_bounded_and_follow_identity_changes() {
    let mut m = Metrics::new();
    let server = sa("10.0.0.1:6379");
    let mut r = rec(server, 1, Status::Ok, None, Some(1000));
    let mut conn = ConnMeta::new(sa("10.0.0.7:40000"), server);
    conn.ident.lib_name = Some(Box::from(&b"redis-py"[..]));
    // Library only: named by it.
    r.conn = Box::leak(Box::new(conn.clone()));
    m.record_command(&r);
    let text = m.encode_text();
    assert_eq!(
        sample(
            &text,
            "redis_client_commands_total{client=\"redis-py\",server=\"10.0.0.1:6379\",status=\"ok\"}"
        ),
        Some(1.0)
    );
    // 10,000 names: 50 values, then `other`.
    for i in 0..10_000 {
        conn.ident.client_name = Some(format!("name-{i}").into_bytes().into_boxed_slice());
        conn.ident.label_changed();
        let r = rec(server, 1, Status::Ok, None, Some(1000));
        m.record_command(&CommandRecord { conn: &conn, ..r });
    }
    m.flush_local();
    let text = m.encode_text();
    let series = text
        .lines()
        .filter(|l| l.starts_with("redis_client_commands_total{"))
        .count();
    assert_eq!(series, MAX_CLIENTS + 1);
    let other =
        "redis_client_commands_total{client=\"other\",server=\"10.0.0.1:6379\",status=\"ok\"}";
    assert_eq!(
        sample(&text, other),
        Some((10_000 - (MAX_CLIENTS - 1)) as f64)
    );
    let mut none = Metrics::new();
    none.set_client_label(ClientLabel::None);
    none.record_command(&rec(server, 1, Status::Ok, None, None));
    assert!(!none.encode_text().contains("redis_client_commands_total{"));
}

/// The process's comm names a connection before its library (`--client-label name`), and first
/// with `--client-label process`.
#[test]
fn client_label_from_the_process() {
    let server = sa("10.0.0.1:6379");
    let mut conn = ConnMeta::new(sa("10.0.0.7:40001"), server);
    conn.ident.lib_name = Some(Box::from(&b"redis-py"[..]));
    conn.ident.client_name = Some(Box::from(&b"orders"[..]));
    conn.client_proc = Some(std::sync::Arc::new(crate::conn::Process {
        pid: 42,
        comm: "gunicorn".into(),
        ..crate::conn::Process::default()
    }));
    let conn: &'static ConnMeta = Box::leak(Box::new(conn));
    let label = |mode: ClientLabel, conn: &'static ConnMeta| {
        let mut m = Metrics::new();
        m.set_client_label(mode);
        let r = rec(server, 1, Status::Ok, None, Some(1000));
        m.record_command(&CommandRecord { conn, ..r });
        m.flush_local();
        let text = m.encode_text();
        let line = text
            .lines()
            .find(|l| l.starts_with("redis_client_commands_total{"))
            .map(str::to_string);
        line.and_then(|l| Some(l.split("client=\"").nth(1)?.split('"').next()?.to_string()))
    };
    assert_eq!(
        label(ClientLabel::Process, conn).as_deref(),
        Some("gunicorn")
    );
    assert_eq!(label(ClientLabel::Name, conn).as_deref(), Some("orders"));
    let mut unnamed = conn.clone();
    unnamed.ident.client_name = None;
    let unnamed: &'static ConnMeta = Box::leak(Box::new(unnamed));
    assert_eq!(
        label(ClientLabel::Name, unnamed).as_deref(),
        Some("gunicorn")
    );
    assert_eq!(
        label(ClientLabel::Lib, unnamed).as_deref(),
        Some("redis-py")
    );
}
