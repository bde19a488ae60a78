//! `replay` of a trace from Zeek's Redis analyzer tests (tests/data/zeek, with its licence):
//! inline commands with quoted arguments, then an unbalanced quote that Redis answers with
//! `-ERR Protocol error: unbalanced quotes in request` before closing the connection. No root
//! needed.

use serde_json::Value;
use tests::*;

#[test]
fn pipeline_quotes_logs_the_rejected_command_with_the_error_text() {
    // `replay` writes its outputs beside the capture: work on a copy.
    let dir = temp_dir("zeek-pipeline-quotes");
    let pcap = dir.join("pipeline-quotes.pcap");
    std::fs::copy(root().join("tests/data/zeek/pipeline-quotes.pcap"), &pcap).expect("copy");
    let rep = replay(&pcap, 6379);
    let log = &rep.log;
    eprintln!("{}", rep.log_text);

    // Every line is a command: no framing notice.
    assert!(
        log.iter().all(|v| !v["command"].is_null()),
        "notice lines: {}",
        rep.log_text
    );
    let sets: Vec<&Value> = log
        .iter()
        .filter(|v| v["command"].as_str() == Some("SET"))
        .collect();
    assert_eq!(sets.len(), log.len(), "only SETs: {}", rep.log_text);
    // The six quoted forms, unquoted as Redis's sdssplitargs does.
    let ok = [
        ("key", "my value with spaces"),
        ("key2", "my value with single quotes"),
        ("key3", "my value with \"double\" inners"),
        ("key4", "my value with 'single' inners"),
        ("key5", "my value with \"escaped\" quotes"),
        ("key6", "my value with 'escaped' quotes"),
    ];
    assert_eq!(sets.len(), ok.len() + 1, "{}", rep.log_text);
    for (v, (key, value)) in sets.iter().zip(ok) {
        assert_eq!(v["status"], "ok", "{v}");
        assert_eq!(v["key"], key, "{v}");
        assert_eq!(v["args"], serde_json::json!([key, value]), "{v}");
        assert_eq!(v["reply"], "OK", "{v}");
    }
    // The unbalanced quote: one record, the command as sent, Redis's error text. The command
    // after it (`SET bad2 'unclosed…`) was never read by the server: no record.
    let bad = sets[ok.len()];
    assert_eq!(bad["key"], "bad1", "{bad}");
    assert_eq!(bad["status"], "error", "{bad}");
    assert_eq!(
        bad["error"], "ERR Protocol error: unbalanced quotes in request",
        "{bad}"
    );
    assert_eq!(bad["protocol_error"], true, "{bad}");
    assert!(
        !rep.log_text.contains("bad2"),
        "a command after the protocol error: {}",
        rep.log_text
    );

    let m = &rep.metrics;
    assert_eq!(
        m.sum(
            "redis_commands_total",
            &[("command", "SET"), ("status", "ok")]
        ),
        6.0
    );
    // The refused request never ran: like INFO commandstats, the command counters leave it out;
    // it is counted as a protocol error.
    assert_eq!(m.sum("redis_commands_total", &[]), 6.0);
    assert_eq!(
        m.sum(
            "redis_observer_protocol_errors_total",
            &[("reason", "unbalanced_quotes")]
        ),
        1.0
    );
    for name in [
        "redis_observer_desyncs_total",
        "redis_observer_orphan_replies_total",
        "redis_observer_commands_lost_total",
    ] {
        assert_eq!(m.sum(name, &[]), 0.0, "{name}");
    }
    // The connection (handshake, both FINs) is complete in the trace.
    assert_eq!(m.sum("redis_connections_total", &[]), 1.0);
    assert_eq!(m.sum("redis_connections_active", &[]), 0.0);
}
