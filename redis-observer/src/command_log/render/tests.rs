use super::*;
use crate::commands::CommandId;
use crate::record::{Dir, RecordArg, Status};
use crate::resp::DesyncReason;

/// 2026-11-20T23:56:34.123456789Z
const TS: u64 = 1_795_218_994_123_456_789;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The identity fields of a connection that announced nothing (as `ConnMeta::new` makes it).
const NULL_IDENT: &str = ",\"client_name\":null,\"client_lib\":null,\"user\":null,\"db\":null,\
    \"resp\":null,\"client_pid\":null,\"client_comm\":null,\"client_container\":null,\
    \"server_pid\":null,\"server_comm\":null,\"client_pod\":null,\"client_cgroup\":null";

/// The connection fields of a connection with nothing known: the capture side's (pinned in
/// `conn.rs`), then the identity's.
fn null_conn_tail() -> String {
    let capture = crate::conn::Capture::unknown().json_fields();
    format!("{}{NULL_IDENT}", std::str::from_utf8(capture).unwrap())
}

/// A connection that lives as long as the test (records borrow theirs).
fn conn(client: &str, server: &str) -> &'static ConnMeta {
    Box::leak(Box::new(ConnMeta::new(sa(client), sa(server))))
}

/// Arguments as (kept bytes, full length, redacted), laid out in one buffer.
fn args(list: &[(&[u8], u64, bool)]) -> (Vec<RecordArg>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for (bytes, len, redacted) in list {
        let start = buf.len() as u32;
        if !redacted {
            buf.extend_from_slice(bytes);
        }
        out.push(RecordArg {
            start,
            kept: if *redacted { 0 } else { bytes.len() as u32 },
            len: *len,
            redacted: *redacted,
        });
    }
    (out, buf)
}

fn rec<'a>(
    name: &'a [u8],
    key: Option<&'a [u8]>,
    args: &'a [RecordArg],
    arg_buf: &'a [u8],
    status: Status,
    reply: Option<ReplySummary<'a>>,
    latency_ns: Option<u64>,
) -> CommandRecord<'a> {
    CommandRecord {
        ts_ns: TS,
        conn: conn("10.0.0.7:53422", "10.0.0.1:6379"),
        command: CommandId(1),
        name,
        key,
        args,
        keys: &[],
        arg_buf,
        argc: args.len() as u64,
        status,
        reply,
        latency_ns,
        req_bytes: 30,
        resp_bytes: 9,
        in_transaction: false,
        blocking: false,
        protocol_error: None,
    }
}

fn reply(kind: Kind, len: i64, text: &[u8]) -> Option<ReplySummary<'_>> {
    Some(ReplySummary {
        kind,
        len,
        text,
        redacted: false,
    })
}

fn json(r: &CommandRecord<'_>) -> String {
    let mut out = Vec::new();
    write_json(r, &mut out);
    let s = String::from_utf8(out).expect("lines are UTF-8");
    // Every line is valid JSON with the contract's fields.
    let v: serde_json::Value = serde_json::from_str(&s).expect("valid JSON");
    for f in [
        "ts",
        "client",
        "server",
        "command",
        "key",
        "args",
        "status",
        "reply_type",
        "reply",
        "error",
        "latency_us",
        "req_bytes",
        "resp_bytes",
    ] {
        assert!(v.get(f).is_some(), "{f} missing in {s}");
    }
    assert!(s.ends_with("}\n"));
    s
}

const HEAD: &str =
    r#"{"ts":"2026-11-20T23:56:34.123456Z","client":"10.0.0.7:53422","server":"10.0.0.1:6379""#;

#[test]
fn ok_bulk() {
    let conn_tail = null_conn_tail();
    let (a, buf) = args(&[(b"user:1", 6, false)]);
    let r = rec(
        b"GET",
        Some(b"user:1"),
        &a,
        &buf,
        Status::Ok,
        reply(Kind::Bulk, 3, b"bar"),
        Some(123_456),
    );
    assert_eq!(
        json(&r),
        format!(
            "{HEAD},\"command\":\"GET\",\"key\":\"user:1\",\"args\":[\"user:1\"],\"status\":\"ok\",\
             \"reply_type\":\"bulk\",\"reply\":\"\\\"bar\\\"\",\"error\":null,\"latency_us\":123.456,\
             \"req_bytes\":30,\"resp_bytes\":9{conn_tail}}}\n"
        )
    );
}

#[test]
fn ok_scalars_and_aggregates() {
    let cases: [(Option<ReplySummary<'_>>, &str, &str); 12] = [
        (reply(Kind::Simple, 2, b"OK"), "simple", "OK"),
        (reply(Kind::Integer, 2, b"42"), "integer", "42"),
        (reply(Kind::Null, -1, b""), "null", "(nil)"),
        (reply(Kind::Array, 3, b""), "array", "[3 items]"),
        (reply(Kind::Array, 1, b""), "array", "[1 item]"),
        (reply(Kind::Array, 0, b""), "array", "[0 items]"),
        (reply(Kind::Map, 2, b""), "map", "{2 pairs}"),
        (reply(Kind::Set, 5, b""), "set", "[5 items]"),
        (reply(Kind::Double, 4, b"3.14"), "double", "3.14"),
        (reply(Kind::Boolean, 1, b"t"), "boolean", "true"),
        (reply(Kind::BigNumber, 5, b"12345"), "bignum", "12345"),
        (
            reply(Kind::Verbatim, 8, b"some txt"),
            "verbatim",
            "\"some txt\"",
        ),
    ];
    for (rep, ty, shown) in cases {
        let r = rec(b"X", None, &[], &[], Status::Ok, rep, Some(1));
        let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(v["reply_type"], ty);
        assert_eq!(v["reply"], shown);
        assert_eq!(v["error"], serde_json::Value::Null);
    }
}

#[test]
fn error_reply() {
    let conn_tail = null_conn_tail();
    let r = rec(
        b"INCR",
        Some(b"k"),
        &[],
        &[],
        Status::Error,
        reply(
            Kind::Error,
            65,
            b"WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
        Some(50_000),
    );
    assert_eq!(
        json(&r),
        format!(
            "{HEAD},\"command\":\"INCR\",\"key\":\"k\",\"args\":[],\"status\":\"error\",\
             \"reply_type\":\"error\",\"reply\":null,\"error\":\"WRONGTYPE Operation against a key \
             holding the wrong kind of value\",\"latency_us\":50.000,\"req_bytes\":30,\"resp_bytes\":9{conn_tail}}}\n"
        )
    );
}

#[test]
fn unanswered_and_no_reply() {
    let conn_tail = null_conn_tail();
    let (a, buf) = args(&[(b"list", 4, false), (b"0", 1, false)]);
    let mut r = rec(
        b"BLPOP",
        Some(b"list"),
        &a,
        &buf,
        Status::Unanswered,
        None,
        None,
    );
    r.resp_bytes = 0;
    assert_eq!(
        json(&r),
        format!(
            "{HEAD},\"command\":\"BLPOP\",\"key\":\"list\",\"args\":[\"list\",\"0\"],\
             \"status\":\"unanswered\",\"reply_type\":null,\"reply\":null,\"error\":null,\
             \"latency_us\":null,\"req_bytes\":30,\"resp_bytes\":0{conn_tail}}}\n"
        )
    );
    r.status = Status::NoReply;
    assert!(json(&r).contains(r#""status":"no_reply","reply_type":null,"reply":null"#));
}

#[test]
fn null_key_and_container_name() {
    let (a, buf) = args(&[(b"save", 4, false)]);
    let r = rec(
        b"CONFIG GET",
        None,
        &a,
        &buf,
        Status::Ok,
        reply(Kind::Array, 2, b""),
        Some(7),
    );
    assert!(
        json(&r).contains(r#""command":"CONFIG GET","key":null,"args":["save"],"#),
        "{}",
        json(&r)
    );
}

#[test]
fn redacted_args_and_reply() {
    let (a, buf) = args(&[(b"default", 7, false), (b"hunter2", 7, true)]);
    let r = rec(
        b"AUTH",
        None,
        &a,
        &buf,
        Status::Ok,
        reply(Kind::Simple, 2, b"OK"),
        Some(9),
    );
    let s = json(&r);
    assert!(s.contains(r#""args":["default","(redacted)"]"#), "{s}");
    assert!(!s.contains("hunter2"));
    let rep = Some(ReplySummary {
        kind: Kind::Array,
        len: 2,
        text: b"",
        redacted: true,
    });
    let r = rec(b"CONFIG GET", None, &[], &[], Status::Ok, rep, Some(9));
    assert!(json(&r).contains(r#""reply":"(redacted)""#));
}

#[test]
fn non_utf8_and_control_bytes_are_escaped() {
    let key: &[u8] = b"k\xff\x00\"q\\\n\x1f\xc3\xa9\xe2\x82";
    let (a, buf) = args(&[(key, key.len() as u64, false)]);
    let r = rec(
        b"GET",
        Some(key),
        &a,
        &buf,
        Status::Ok,
        reply(Kind::Bulk, 2, b"\x80\x81"),
        Some(1),
    );
    let s = json(&r);
    let esc = r#""k\\xff\u0000\"q\\\n\u001fé\\xe2\\x82""#;
    assert!(s.contains(&format!("\"key\":{esc},")), "{s}");
    assert!(s.contains(&format!("\"args\":[{esc}]")), "{s}");
    assert!(s.contains(r#""reply":"\"\\x80\\x81\"""#), "{s}");
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["key"], "k\\xff\u{0}\"q\\\n\u{1f}é\\xe2\\x82");
}

#[test]
fn ipv6_addresses() {
    let mut r = rec(
        b"PING",
        None,
        &[],
        &[],
        Status::Ok,
        reply(Kind::Simple, 4, b"PONG"),
        Some(1),
    );
    r.conn = conn("[2001:db8::1]:53422", "[::1]:6379");
    assert!(json(&r).contains(r#""client":"[2001:db8::1]:53422","server":"[::1]:6379""#));
}

#[test]
fn long_args_are_cut_with_a_marker() {
    let value = vec![b'v'; 128];
    let (a, buf) = args(&[(b"k", 1, false), (&value, 10_000, false)]);
    let r = rec(
        b"SET",
        Some(b"k"),
        &a,
        &buf,
        Status::Ok,
        reply(Kind::Simple, 2, b"OK"),
        Some(1),
    );
    let s = json(&r);
    // Cut where the session cuts (one set of limits: 64 bytes per argument).
    let shown = "v".repeat(64);
    assert!(
        s.contains(&format!(r#""args":["k","{shown}…(+9936 bytes)"]"#)),
        "{s}"
    );
    // A cut in the middle of a character backs off to its start.
    let e = "é".repeat(60); // 120 bytes
    let (a, buf) = args(&[(e.as_bytes(), 120, false)]);
    let r = rec(b"SET", None, &a, &buf, Status::Ok, None, None);
    let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
    assert_eq!(v["args"][0], format!("{}…(+56 bytes)", "é".repeat(32)));
    // Long bulk replies too.
    let big = vec![b'x'; 128];
    let r = rec(
        b"GET",
        None,
        &[],
        &[],
        Status::Ok,
        reply(Kind::Bulk, 5000, &big),
        Some(1),
    );
    let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
    assert_eq!(v["reply"], format!("\"{}\"…(+4904 bytes)", "x".repeat(96)));
}

#[test]
fn many_args_are_bounded() {
    let list: Vec<(Vec<u8>, u64, bool)> = (0..20)
        .map(|i| (format!("a{i}").into_bytes(), 2 + u64::from(i >= 10), false))
        .collect();
    let list: Vec<(&[u8], u64, bool)> = list
        .iter()
        .map(|(b, l, r)| (b.as_slice(), *l, *r))
        .collect();
    let (a, buf) = args(&list);
    let mut r = rec(
        b"MSET",
        Some(b"a0"),
        &a,
        &buf,
        Status::Ok,
        reply(Kind::Simple, 2, b"OK"),
        Some(1),
    );
    r.argc = 100;
    let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
    let shown = v["args"].as_array().unwrap();
    assert_eq!(shown.len(), 17);
    assert_eq!(shown[0], "a0");
    assert_eq!(shown[15], "a15");
    assert_eq!(shown[16], "…(+84 more)");
}

#[test]
fn inconsistent_spans_do_not_panic() {
    let a = [RecordArg {
        start: u32::MAX,
        kept: u32::MAX,
        len: u64::MAX,
        redacted: false,
    }];
    let mut r = rec(
        b"GET",
        None,
        &a,
        b"abc",
        Status::Ok,
        reply(Kind::Array, i64::MIN, b""),
        Some(u64::MAX),
    );
    r.argc = u64::MAX;
    r.ts_ns = u64::MAX;
    let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
    assert_eq!(v["args"][0], format!("…(+{} bytes)", u64::MAX));
    assert_eq!(v["reply"], "(nil)");
    assert_eq!(v["ts"], "2554-07-21T23:34:33.709551Z");
    assert_eq!(v["latency_us"].as_f64().unwrap(), u64::MAX as f64 / 1000.0);
}

#[test]
fn in_transaction_flag() {
    let conn_tail = null_conn_tail();
    let mut r = rec(
        b"INCR",
        Some(b"n"),
        &[],
        &[],
        Status::Ok,
        reply(Kind::Integer, 1, b"1"),
        Some(1),
    );
    r.in_transaction = true;
    assert!(json(&r).ends_with(&format!(
        ",\"resp_bytes\":9,\"in_transaction\":true{conn_tail}}}\n"
    )));
}

#[test]
fn empty_name_falls_back_to_the_table() {
    let r = rec(b"", None, &[], &[], Status::Ok, None, None);
    let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
    assert_eq!(v["command"], crate::commands::name(CommandId(1)));
}

#[test]
fn timestamps() {
    let ts = |ns: u64| {
        let mut out = Vec::new();
        timestamp(&mut out, ns);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(ts(0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(ts(TS), "2026-11-20T23:56:34.123456Z");
    assert_eq!(ts(951_782_400_000_000_000), "2000-02-29T00:00:00.000000Z");
    assert_eq!(ts(4_107_585_659_000_001_000), "2100-03-01T12:00:59.000001Z");
    // Every day for 200 years round-trips through the civil calendar.
    let mut prev = (1969, 12, 31);
    for day in 0..(200 * 366) {
        let (y, m, d) = civil_from_days(day);
        let next_ok = (y, m, d) == (prev.0, prev.1, prev.2 + 1)
            || (y, m, d) == (prev.0, prev.1 + 1, 1)
            || (y, m, d) == (prev.0 + 1, 1, 1);
        assert!(next_ok, "{prev:?} -> {:?}", (y, m, d));
        prev = (y, m, d);
    }
}

#[test]
fn push_lines() {
    let conn_tail = null_conn_tail();
    let mut reply = Reply {
        kind: Kind::Push,
        len: 3,
        wire_len: 44,
        ..Reply::default()
    };
    for (kind, text) in [
        (Kind::Bulk, b"message".as_slice()),
        (Kind::Bulk, b"news"),
        (Kind::Bulk, b"hello \"world\""),
    ] {
        let start = reply.child_text.len() as u32;
        reply.child_text.extend_from_slice(text);
        reply.children.push(Child {
            kind,
            len: text.len() as i64,
            start,
            kept: text.len() as u32,
        });
    }
    let mut out = Vec::new();
    let c = conn("10.0.0.7:53422", "10.0.0.1:6379");
    Renderer::new(Format::Json).push(TS, c, &reply, &mut out);
    let s = String::from_utf8(out).unwrap();
    assert_eq!(
        s,
        format!(
            "{HEAD},\"command\":null,\"key\":null,\"args\":[\"news\",\"hello \\\"world\\\"\"],\
             \"status\":\"push\",\"reply_type\":\"push\",\"reply\":\"message [3 items]\",\
             \"error\":null,\"latency_us\":null,\"req_bytes\":0,\"resp_bytes\":44{conn_tail}}}\n"
        )
    );
    serde_json::from_str::<serde_json::Value>(&s).unwrap();
    let mut out = Vec::new();
    Renderer::new(Format::Text).push(TS, c, &reply, &mut out);
    let s = String::from_utf8(out).unwrap();
    assert_eq!(
        s,
        "23:56:34.123456  10.0.0.7:53422   push          message [3 items] news \"hello \\\"world\\\"\"\n"
    );
}

#[test]
fn notice_lines() {
    let conn_tail = null_conn_tail();
    let n = Notice::Desync {
        dir: Dir::Reply,
        reason: DesyncReason::Gap,
    };
    let mut out = Vec::new();
    let mut r = Renderer::new(Format::Json);
    r.notice(
        TS,
        Some(conn("10.0.0.7:53422", "10.0.0.1:6379")),
        NoticeLine::Pipeline(&n),
        &mut out,
    );
    r.notice(TS, None, NoticeLine::Dropped(42), &mut out);
    let s = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "{HEAD},\"command\":null,\"key\":null,\"args\":[],\"status\":\"notice\",\"reply_type\":null,\
             \"reply\":null,\"error\":null,\"latency_us\":null,\"req_bytes\":0,\"resp_bytes\":0,\
             \"notice\":\"lost the reply stream's framing: gap\"{conn_tail}}}"
        )
    );
    let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(v["client"], serde_json::Value::Null);
    assert_eq!(v["command"], serde_json::Value::Null);
    assert_eq!(v["status"], "notice");
    assert_eq!(v["notice"], "dropped 42 log lines (writer queue full)");
    for n in [
        Notice::OrphanReply,
        Notice::CommandsLost(3),
        Notice::PendingOverflow,
    ] {
        let mut out = Vec::new();
        r.notice(TS, None, NoticeLine::Pipeline(&n), &mut out);
        serde_json::from_slice::<serde_json::Value>(&out).unwrap();
    }
}

#[test]
fn text_lines_are_aligned() {
    let (a, buf) = args(&[(b"user:1", 6, false)]);
    let mut lines = Vec::new();
    // One renderer: columns grow with what they have shown.
    let mut text = Renderer::new(Format::Text);
    let r1 = rec(
        b"GET",
        Some(b"user:1"),
        &a,
        &buf,
        Status::Ok,
        reply(Kind::Bulk, 3, b"bar"),
        Some(123_456),
    );
    text.command(&r1, &mut lines);
    let mut r2 = rec(
        b"CLIENT SETNAME",
        Some(b"a-rather-long-key-name-that-does-not-fit:123"),
        &[],
        &[],
        Status::Error,
        reply(Kind::Error, 7, b"ERR bad"),
        Some(2_500_000_000),
    );
    r2.conn = conn("192.168.100.200:65535", "10.0.0.1:6379");
    text.command(&r2, &mut lines);
    let r3 = rec(
        b"BLPOP",
        Some(b"q"),
        &[],
        &[],
        Status::Unanswered,
        None,
        None,
    );
    text.command(&r3, &mut lines);
    let r4 = rec(
        b"SET",
        Some(b"k\n\xff"),
        &[],
        &[],
        Status::Ok,
        reply(Kind::Simple, 2, b"OK"),
        Some(850),
    );
    text.command(&r4, &mut lines);
    let s = String::from_utf8(lines).unwrap();
    let lines: Vec<&str> = s.lines().collect();
    // Columns are as wide as the widest value shown so far (tail's layout): a long address,
    // name or key widens its column for the lines after it.
    assert_eq!(
        lines,
        [
            "23:56:34.123456  10.0.0.7:53422   GET           user:1         123us  ok          \"bar\"",
            "23:56:34.123456  192.168.100.200:65535  CLIENT SETNAME  a-rather-long-key-name-that-does-not-fit:123     2.50s  error       ERR bad",
            "23:56:34.123456  10.0.0.7:53422         BLPOP           q                                        -  unanswered  -",
            "23:56:34.123456  10.0.0.7:53422         SET             \"k\\n\\xff\"                              1us  ok          OK",
        ]
    );
    // From the third line on, every column starts at the same character.
    let col = |l: &str, word: &str| l.char_indices().position(|(i, _)| l[i..].starts_with(word));
    assert_eq!(col(lines[2], "unanswered"), col(lines[3], "ok "));
}

/// `--log-format text` and `tail` on the JSON log of the same records write the same bytes:
/// one layout.
#[test]
fn text_format_is_tails_layout() {
    let (a, buf) = args(&[
        (b"user:1", 6, false),
        (b"hello world", 11, false),
        (b"", 4, true),
    ]);
    let mut recs = vec![
        rec(
            b"SET",
            Some(b"user:1"),
            &a,
            &buf,
            Status::Ok,
            reply(Kind::Simple, 2, b"OK"),
            Some(1_520_000),
        ),
        rec(
            b"GET",
            Some(b"k\n\xff"),
            &a[..1],
            &buf,
            Status::Ok,
            reply(Kind::Bulk, 5, b"alice"),
            Some(182_000),
        ),
        rec(
            b"INCR",
            Some(b"user:1"),
            &a[..1],
            &buf,
            Status::Error,
            reply(Kind::Error, 9, b"ERR wrong"),
            Some(31_000),
        ),
        rec(b"PING", None, &[], &[], Status::Unanswered, None, None),
        rec(
            b"CLIENT SETNAME",
            None,
            &a[1..2],
            &buf,
            Status::Ok,
            reply(Kind::Simple, 2, b"OK"),
            Some(2_500_000_000),
        ),
        rec(
            b"LRANGE",
            Some(b"q"),
            &a[..1],
            &buf,
            Status::Ok,
            reply(Kind::Array, 3, b""),
            Some(900),
        ),
        rec(b"GET", Some(b"x"), &[], &[], Status::Aborted, None, None),
        rec(
            b"",
            None,
            &[],
            &[],
            Status::Error,
            reply(Kind::Error, 40, b"ERR Protocol error: invalid bulk length"),
            Some(5_000),
        ),
        rec(
            b"SET",
            Some(b"a-rather-long-key-name-that-does-not-fit:123"),
            &a[1..],
            &buf,
            Status::Ok,
            reply(Kind::Simple, 2, b"OK"),
            Some(12),
        ),
    ];
    recs[6].in_transaction = true;
    recs[7].protocol_error = Some(crate::resp::ProtocolError::BadBulkLength);
    recs[7].command = crate::commands::UNKNOWN;
    let mut named = ConnMeta::new(sa("[::1]:40000"), sa("[::1]:6379"));
    named.ident.client_name = Some(Box::from(&b"orders-api"[..]));
    let named: &'static ConnMeta = Box::leak(Box::new(named));
    recs[1].conn = named;
    let mut push = Reply {
        kind: Kind::Push,
        len: 3,
        ..Reply::default()
    };
    for (kind, text) in [
        (Kind::Bulk, &b"message"[..]),
        (Kind::Bulk, b"news"),
        (Kind::Bulk, b"hi"),
    ] {
        let start = push.child_text.len() as u32;
        push.child_text.extend_from_slice(text);
        push.children.push(Child {
            kind,
            len: text.len() as i64,
            start,
            kept: text.len() as u32,
        });
    }

    let mut text = Renderer::new(Format::Text);
    let mut json = Renderer::new(Format::Json);
    let (mut t, mut j) = (Vec::new(), Vec::new());
    for (i, r) in recs.iter().enumerate() {
        text.command(r, &mut t);
        json.command(r, &mut j);
        if i == 3 {
            text.push(TS, r.conn, &push, &mut t);
            json.push(TS, r.conn, &push, &mut j);
            let n = Notice::OrphanReply;
            text.notice(TS, Some(r.conn), NoticeLine::Pipeline(&n), &mut t);
            json.notice(TS, Some(r.conn), NoticeLine::Pipeline(&n), &mut j);
            text.notice(TS, None, NoticeLine::Dropped(3), &mut t);
            json.notice(TS, None, NoticeLine::Dropped(3), &mut j);
        }
    }
    let mut tail = crate::cmd::tail::Printer::new(
        crate::cmd::tail::Filter::new(&[], None, false),
        crate::cmd::tail::Style::default(),
        false,
    );
    let mut via_tail = Vec::new();
    for line in j.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        tail.line(line, &mut via_tail, &mut std::io::sink())
            .unwrap();
    }
    let t = String::from_utf8(t).unwrap();
    assert_eq!(t, String::from_utf8(via_tail).unwrap());
    assert_eq!(t.lines().count(), recs.len() + 3);
}

#[test]
fn latency_formats() {
    let mut out = Vec::new();
    latency_us(&mut out, 5);
    assert_eq!(out, b"0.005");
}

#[test]
fn cut_respects_characters() {
    assert_eq!(cut(b"abc", 5), b"abc");
    assert_eq!(cut(b"abcdef", 3), b"abc");
    assert_eq!(cut("aé".as_bytes(), 2), b"a");
    assert_eq!(cut("a€".as_bytes(), 3), b"a");
    assert_eq!(cut("€€".as_bytes(), 4), "€".as_bytes());
    // Invalid continuation runs are cut where asked (then escaped).
    assert_eq!(cut(b"\x80\x80\x80\x80\x80", 4), b"\x80\x80\x80\x80");
    assert_eq!(cut(b"abc", 0), b"");
}

proptest::proptest! {
    #[test]
    fn any_bytes_make_valid_json(
        key in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        arg in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        text in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        name in proptest::collection::vec(proptest::num::u8::ANY, 0..100),
    ) {
        let (a, buf) = args(&[(&arg, arg.len() as u64 + 3, false)]);
        for kind in [Kind::Bulk, Kind::Error, Kind::Simple] {
            let r = rec(&name, Some(&key), &a, &buf, Status::Ok, reply(kind, 500, &text), Some(1));
            let mut out = Vec::new();
            write_json(&r, &mut out);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            // Valid UTF-8 input comes back unchanged when it has no backslash.
            if let Ok(k) = std::str::from_utf8(&key) {
                if !k.contains('\\') && k.len() <= Bounds::default().key_bytes {
                    proptest::prop_assert_eq!(v["key"].as_str().unwrap(), k);
                }
            }
            let mut out = Vec::new();
            write_text(&r, &mut out);
            proptest::prop_assert!(std::str::from_utf8(&out).is_ok());
            proptest::prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        }
    }
}

proptest::proptest! {
    #[test]
    fn plain_prefix_matches_bytewise(
        s in proptest::collection::vec(
            proptest::prop_oneof![0x20u8..0x7f, proptest::num::u8::ANY],
            0..64,
        ),
        json in proptest::bool::ANY,
    ) {
        let naive = s.iter().position(|&c| is_special(c, json)).unwrap_or(s.len());
        proptest::prop_assert_eq!(plain_prefix(&s, json), naive);
    }
}

#[test]
fn cached_timestamps_and_addresses_match_fresh_ones() {
    let mut c = Cache::default();
    let addrs = [
        sa("1.2.3.4:5"),
        sa("255.255.255.255:65535"),
        sa("[::1]:6379"),
        sa("0.0.0.0:0"),
    ];
    for (i, ts) in [
        TS,
        TS + 1,
        TS + 999_999_999,
        TS + 1_000_000_000,
        0,
        u64::MAX,
        TS,
    ]
    .into_iter()
    .enumerate()
    {
        let mut a = Vec::new();
        c.timestamp(&mut a, ts);
        let mut b = Vec::new();
        timestamp(&mut b, ts);
        assert_eq!(a, b);
        for addr in [addrs[i % 4], addrs[(i + 1) % 4]] {
            let mut a = Vec::new();
            c.client.write(&mut a, &addr);
            assert_eq!(String::from_utf8(a).unwrap(), addr.to_string());
        }
    }
}

/// What `tail` shows for the JSON lines of `recs`, and what the text format writes for them.
fn text_and_via_tail(recs: &[CommandRecord<'_>]) -> (String, String) {
    let mut text = Renderer::new(Format::Text);
    let mut json = Renderer::new(Format::Json);
    let (mut t, mut j) = (Vec::new(), Vec::new());
    for r in recs {
        text.command(r, &mut t);
        json.command(r, &mut j);
    }
    let mut tail = crate::cmd::tail::Printer::new(
        crate::cmd::tail::Filter::new(&[], None, false),
        crate::cmd::tail::Style::default(),
        false,
    );
    let mut via_tail = Vec::new();
    for line in j.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        tail.line(line, &mut via_tail, &mut std::io::sink())
            .unwrap();
    }
    (
        String::from_utf8(t).unwrap(),
        String::from_utf8(via_tail).unwrap(),
    )
}

proptest::proptest! {
    /// The text format takes a command's values straight from the record: byte for byte what
    /// `tail` shows for its JSON line, whatever the bytes, bounds, reply kinds and latencies.
    #[test]
    fn text_from_the_record_is_tails_layout_of_the_json_line(
        key in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..80)),
        arg in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        text in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        name in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
        client_name in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..80)),
        comm in proptest::option::of("\\PC{0,15}|[\\x00-\\x7f]{0,15}"),
        latency in proptest::option::of(proptest::prop_oneof![
            0u64..10_000_000_000,
            proptest::num::u64::ANY,
        ]),
        kind in 0usize..6,
        flags in 0u8..16,
        extra_args in 0u64..40,
    ) {
        let mut c = ConnMeta::new(sa("[::1]:40000"), sa("10.0.0.1:6379"));
        c.ident.client_name = client_name.map(Box::from);
        c.client_proc = comm.map(|comm| std::sync::Arc::new(crate::conn::Process {
            pid: 7,
            comm: comm.into(),
            ..crate::conn::Process::default()
        }));
        let c: &ConnMeta = &c;
        let (a, buf) = args(&[
            (&arg, arg.len() as u64 + 3, false),
            (b"", 9, flags & 1 != 0),
            (&arg, arg.len() as u64, false),
        ]);
        let kind = [Kind::Bulk, Kind::Error, Kind::Simple, Kind::Boolean, Kind::Map, Kind::Null][kind];
        let mut r = rec(&name, key.as_deref(), &a, &buf, Status::Ok, reply(kind, 500, &text), latency);
        r.conn = c;
        r.argc = a.len() as u64 + extra_args;
        r.in_transaction = flags & 2 != 0;
        if flags & 4 != 0 {
            r.protocol_error = Some(crate::resp::ProtocolError::UnbalancedQuotes);
            r.status = Status::Error;
        }
        if flags & 8 != 0 {
            r.reply = None;
            r.status = Status::Unanswered;
        }
        let mut no_args = r;
        no_args.args = &[];
        no_args.argc = 0;
        let (t, via_tail) = text_and_via_tail(&[r, no_args, r]);
        proptest::prop_assert_eq!(t, via_tail);
    }
}

#[test]
fn json_unescape_reads_what_escape_wrote() {
    let all: Vec<u8> = (0..=255).collect();
    let mut escaped = Vec::new();
    escape(&mut escaped, &all);
    let mut quoted = vec![b'"'];
    quoted.extend_from_slice(&escaped);
    quoted.push(b'"');
    let want: String = serde_json::from_slice(&quoted).unwrap();
    let mut got = Vec::new();
    json_unescape(&mut got, &escaped);
    assert_eq!(String::from_utf8(got).unwrap(), want);
    // Never produced by `escape`, kept as they are.
    let mut got = Vec::new();
    json_unescape(&mut got, br"a\q\u12\");
    assert_eq!(got, br"a\q\u12\");
}

#[test]
fn latency_reads_back_as_tail_reads_it() {
    for ns in [
        0,
        1,
        999,
        1_520_000,
        (1 << 53) - 1,
        1 << 53,
        (1 << 53) + 1,
        u64::MAX / 3,
        u64::MAX,
    ] {
        let mut buf = Vec::new();
        latency_us(&mut buf, ns);
        let parsed: f64 = serde_json::from_slice(&buf).unwrap();
        assert_eq!(latency_f64(ns).to_bits(), parsed.to_bits(), "{ns}");
    }
}

proptest::proptest! {
    /// The capture fields, rendered once from their serde form, are the bytes the renderer's own
    /// escaping writes (the log's bytes do not depend on which writer wrote a field).
    #[test]
    fn capture_fields_escape_as_the_renderer_does(
        name in proptest::option::of("[\\x00-\\x7f]{0,20}|\\PC{0,20}|.{0,20}"),
    ) {
        let mut want = b",\"iface\":".to_vec();
        let unknown = capture_fields(&CaptureInfo::default());
        let others = unknown.strip_prefix(&b",\"iface\":null"[..]).unwrap();
        match &name {
            Some(n) => {
                want.push(b'"');
                escape(&mut want, n.as_bytes());
                want.push(b'"');
            }
            None => want.extend_from_slice(b"null"),
        }
        want.extend_from_slice(others);
        let info = CaptureInfo::on(name.as_deref());
        proptest::prop_assert_eq!(
            String::from_utf8(capture_fields(&info)).unwrap(),
            String::from_utf8(want).unwrap()
        );
    }
}

#[test]
fn capture_fields_of_every_control_character() {
    let name: String = (0u8..0x20)
        .chain([b'"', b'\\', 0x7f])
        .map(char::from)
        .collect();
    let mut want = b",\"iface\":\"".to_vec();
    escape(&mut want, name.as_bytes());
    want.push(b'"');
    let got = capture_fields(&CaptureInfo::on(Some(&name)));
    assert!(
        got.starts_with(&want) && matches!(got.get(want.len()), None | Some(b',')),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn capture_fields_on_every_line_of_the_connection() {
    let mut meta = ConnMeta::new(sa("10.0.0.7:53422"), sa("10.0.0.1:6379"));
    meta = meta.with_capture(crate::conn::Capture::new(CaptureInfo::on(Some(
        "e\"th\u{8}0",
    ))));
    let others = null_conn_tail().replacen(",\"iface\":null", "", 1);
    let mut r = rec(b"PING", None, &[], &[], Status::Unanswered, None, None);
    r.conn = &meta;
    let mut out = Vec::new();
    let mut json = Renderer::new(Format::Json);
    json.command(&r, &mut out);
    json.notice(TS, Some(&meta), NoticeLine::Dropped(1), &mut out);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        out.matches(&format!(",\"iface\":\"e\\\"th\\u00080\"{others}}}\n"))
            .count(),
        2,
        "{out}"
    );
}
