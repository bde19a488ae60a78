//! Pairing cases, fed as real RESP bytes through the real decoders. Every event (record, push,
//! notice) is rendered as one line, in the order the session produced it:
//! `NAME [args] status kind:text` (`tx` when in a transaction), `push kind [children]`,
//! `notice ...`.

use std::fmt::Write as _;
use std::net::SocketAddr;

use rstest::rstest;

use super::*;

// ------------------------------------------------------------------------------------------------
// Harness

/// An owned copy of a record.
#[derive(Clone, Debug)]
struct Rec {
    line: String,
    key: Option<String>,
    argc: u64,
    ts: u64,
    latency: Option<u64>,
    req_bytes: u64,
    resp_bytes: u64,
    executed: bool,
}

#[derive(Default)]
struct Collect {
    events: Vec<String>,
    recs: Vec<Rec>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Sink for Collect {
    fn command(&mut self, r: &CommandRecord<'_>) {
        let mut line = format!("{} [", text(r.name));
        for (i, a) in r.args.iter().enumerate() {
            if i > 0 {
                line.push(' ');
            }
            if a.redacted {
                line.push_str("(redacted)");
            } else {
                let s = a.start as usize;
                line.push_str(&text(&r.arg_buf[s..s + a.kept as usize]));
            }
        }
        let _ = write!(line, "] {}", r.status.as_str());
        match r.reply {
            None => line.push_str(" -"),
            Some(s) if s.redacted && !s.text.is_empty() => {
                let _ = write!(line, " {}:{} (redacted)", s.kind.as_str(), text(s.text));
            }
            Some(s) if s.redacted => {
                let _ = write!(line, " {}:(redacted)", s.kind.as_str());
            }
            Some(s) if s.kind.is_aggregate() || s.kind == Kind::Null => {
                let _ = write!(line, " {}({})", s.kind.as_str(), s.len);
            }
            Some(s) => {
                let _ = write!(line, " {}:{}", s.kind.as_str(), text(s.text));
            }
        }
        if r.in_transaction {
            line.push_str(" tx");
        }
        if r.protocol_error.is_some() {
            line.push_str(" refused");
        }
        if r.blocking {
            line.push_str(" blocking");
        }
        self.events.push(line.clone());
        self.recs.push(Rec {
            line,
            key: r.key.map(text),
            argc: r.argc,
            ts: r.ts_ns,
            latency: r.latency_ns,
            req_bytes: r.req_bytes,
            resp_bytes: r.resp_bytes,
            executed: executed(r),
        });
    }

    fn push(&mut self, _c: &ConnMeta, _ts: u64, r: &Reply) {
        let mut line = format!("push {} [", r.kind.as_str());
        for (i, c) in r.children.iter().enumerate() {
            if i > 0 {
                line.push(' ');
            }
            match c.kind {
                Kind::Null => line.push_str("nil"),
                k if k.is_aggregate() => {
                    let _ = write!(line, "{}({})", k.as_str(), c.len);
                }
                _ => line.push_str(&text(r.child_text(i).unwrap_or_default())),
            }
        }
        if r.children.is_empty() {
            line.push_str(&text(&r.text));
        }
        line.push(']');
        self.events.push(line);
    }

    fn notice(&mut self, _c: &ConnMeta, _ts: u64, n: Notice) {
        self.events.push(format!("notice {n:?}"));
    }

    fn replication(&mut self, _c: &ConnMeta, replica: SocketAddr, e: ReplEvent) {
        self.events.push(format!("repl {replica} {e:?}"));
    }
}

/// One step of a conversation.
#[derive(Clone, Debug)]
enum Step {
    /// Client bytes.
    C(Vec<u8>),
    /// Server bytes.
    S(Vec<u8>),
    /// Bytes missing from the client / server stream.
    CMiss(u64),
    SMiss(u64),
    Close,
}

/// A command as a client library sends it (multibulk), arguments split on spaces.
fn c(cmd: &str) -> Step {
    Step::C(multibulk(&cmd.split(' ').collect::<Vec<_>>()))
}

fn multibulk(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Raw client bytes (inline commands, garbage).
fn raw(bytes: &str) -> Step {
    Step::C(bytes.as_bytes().to_vec())
}

/// Raw server bytes.
fn s(resp: &str) -> Step {
    Step::S(resp.as_bytes().to_vec())
}

fn bulk(x: &str) -> String {
    format!("${}\r\n{x}\r\n", x.len())
}

/// A pub/sub confirmation; `>` for RESP3, `*` for RESP2; `None` channel is null.
fn conf(agg: char, kind: &str, ch: Option<&str>, n: u64) -> String {
    let ch = ch.map_or("$-1\r\n".to_string(), bulk);
    format!("{agg}3\r\n{}{ch}:{n}\r\n", bulk(kind))
}

fn msg(agg: char, ch: &str, payload: &str) -> String {
    format!("{agg}3\r\n{}{}{}", bulk("message"), bulk(ch), bulk(payload))
}

/// Redis 7.0's answer to `HELLO 3`.
fn hello3_reply() -> String {
    let mut r = String::from("%7\r\n");
    for (k, v) in [
        ("server", "$5\r\nredis\r\n"),
        ("version", "$6\r\n7.0.15\r\n"),
        ("proto", ":3\r\n"),
    ] {
        r += &bulk(k);
        r += v;
    }
    r += &bulk("id");
    r += ":5\r\n";
    for (k, v) in [("mode", "standalone"), ("role", "master")] {
        r += &bulk(k);
        r += &bulk(v);
    }
    r += &bulk("modules");
    r += "*0\r\n";
    r
}

/// Its answer to `HELLO 2`: the same fields, flattened into an array.
fn hello2_reply() -> String {
    hello3_reply()
        .replacen("%7", "*14", 1)
        .replacen(":3", ":2", 1)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct Run {
    session: Session,
    sink: Collect,
}

/// Feeds `steps` (step i at ts = 1000 * (i + 1)).
fn run_with(limits: &SessionLimits, mid_stream: bool, steps: &[Step]) -> Run {
    let session = Session::new(
        ConnMeta::new(addr("10.0.0.1:50000"), addr("10.0.0.2:6379")),
        limits,
        mid_stream,
    );
    let mut r = Run {
        session,
        sink: Collect::default(),
    };
    for (i, step) in steps.iter().enumerate() {
        let ts = 1000 * (i as u64 + 1);
        r.step(ts, step);
    }
    r
}

impl Run {
    fn step(&mut self, ts: u64, step: &Step) {
        let (s, sink) = (&mut self.session, &mut self.sink);
        match step {
            Step::C(b) => s.client_bytes(ts, b, sink),
            Step::S(b) => s.server_bytes(ts, b, sink),
            Step::CMiss(n) => s.client_missing(ts, *n, sink),
            Step::SMiss(n) => s.server_missing(ts, *n, sink),
            Step::Close => s.close(ts, sink),
        }
    }
}

fn run(steps: &[Step]) -> Run {
    run_with(&SessionLimits::default(), false, steps)
}

fn events(steps: &[Step]) -> Vec<String> {
    run(steps).sink.events
}

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_ALLOWED: &str = concat!(
    "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET ",
    "are allowed in this context"
);
const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

// ------------------------------------------------------------------------------------------------
// Named cases: conversation → exact events

#[rstest]
#[case::get_set(
    vec![c("SET a 1"), c("GET a"), s("+OK\r\n$1\r\n1\r\n")],
    &["SET [a 1] ok simple:OK", "GET [a] ok bulk:1"],
)]
#[case::runtime_error(
    vec![c("INCR s"), s(&format!("-{WRONGTYPE}\r\n"))],
    &["INCR [s] error error:WRONGTYPE Operation against a key holding the wrong kind of value"],
)]
#[case::unknown_command_upper_cased(
    vec![c("foo bar"), s("-ERR unknown command 'foo', with args beginning with: 'bar' \r\n")],
    &["FOO [bar] error error:ERR unknown command 'foo', with args beginning with: 'bar' "],
)]
#[case::container_subcommand(
    vec![c("config get maxmemory"), s("*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n")],
    &["CONFIG GET [maxmemory] ok array(2)"],
)]
#[case::inline_and_empty_lines(
    vec![raw("\r\nPING\r\n\n"), s("+PONG\r\n")],
    &["PING [] ok simple:PONG"],
)]
#[case::orphan_reply(vec![s("+OK\r\n")], &["notice OrphanReply"])]
#[case::null_bulk(vec![c("GET nope"), s("$-1\r\n")], &["GET [nope] ok null(-1)"])]
#[case::blocking_command(
    vec![c("BLPOP q 0"), c("PING"), s("*2\r\n$1\r\nq\r\n$1\r\nx\r\n+PONG\r\n")],
    &["BLPOP [q 0] ok array(2) blocking", "PING [] ok simple:PONG"],
)]
#[case::blocking_only_when_it_can_block(
    vec![
        c("XREAD COUNT 1 STREAMS s 0"),
        c("XREAD BLOCK 10 STREAMS s 0"),
        c("WAIT 0 0"),
        s("*-1\r\n*-1\r\n:0\r\n"),
    ],
    &[
        "XREAD [COUNT 1 STREAMS s 0] ok null(-1)",
        "XREAD [BLOCK 10 STREAMS s 0] ok null(-1) blocking",
        "WAIT [0 0] ok integer:0 blocking",
    ],
)]
#[case::nothing_blocks_in_a_transaction(
    vec![c("MULTI"), c("BLPOP q 1"), c("EXEC"), s("+OK\r\n+QUEUED\r\n*1\r\n*-1\r\n")],
    &["MULTI [] ok simple:OK", "BLPOP [q 1] ok null(-1) tx", "EXEC [] ok array(1)"],
)]
// CLIENT REPLY
#[case::client_reply_off_on(
    vec![
        c("CLIENT REPLY OFF"),
        c("SET a 1"),
        c("CLIENT REPLY ON"),
        c("GET a"),
        s("+OK\r\n$1\r\n1\r\n"),
    ],
    &[
        "CLIENT REPLY [OFF] no_reply -",
        "SET [a 1] no_reply -",
        "CLIENT REPLY [ON] ok simple:OK",
        "GET [a] ok bulk:1",
    ],
)]
#[case::client_reply_skip(
    vec![c("CLIENT REPLY SKIP"), c("SET a 1"), c("GET a"), s("$1\r\n1\r\n")],
    &["CLIENT REPLY [SKIP] no_reply -", "SET [a 1] no_reply -", "GET [a] ok bulk:1"],
)]
#[case::client_reply_skip_consumed_by_empty_line(
    vec![c("CLIENT REPLY SKIP"), raw("\r\n"), c("GET a"), s("$1\r\n1\r\n")],
    &["CLIENT REPLY [SKIP] no_reply -", "GET [a] ok bulk:1"],
)]
#[case::client_reply_skip_consumed_by_star_zero(
    vec![c("CLIENT REPLY SKIP"), raw("*0\r\n"), c("GET a"), s("$1\r\n1\r\n")],
    &["CLIENT REPLY [SKIP] no_reply -", "GET [a] ok bulk:1"],
)]
#[case::client_reply_skip_under_off_does_nothing(
    vec![
        c("CLIENT REPLY OFF"),
        c("CLIENT REPLY SKIP"),
        c("CLIENT REPLY ON"),
        c("GET a"),
        s("+OK\r\n$1\r\n1\r\n"),
    ],
    &[
        "CLIENT REPLY [OFF] no_reply -",
        "CLIENT REPLY [SKIP] no_reply -",
        "CLIENT REPLY [ON] ok simple:OK",
        "GET [a] ok bulk:1",
    ],
)]
#[case::client_reply_on_skipped(
    vec![c("CLIENT REPLY SKIP"), c("CLIENT REPLY ON"), c("PING"), s("+PONG\r\n")],
    &["CLIENT REPLY [SKIP] no_reply -", "CLIENT REPLY [ON] no_reply -", "PING [] ok simple:PONG"],
)]
#[case::client_reply_bad_argument_errors(
    vec![
        c("CLIENT REPLY MAYBE"),
        c("CLIENT REPLY"),
        s("-ERR syntax error\r\n-ERR wrong number of arguments for 'client|reply' command\r\n"),
    ],
    &[
        "CLIENT REPLY [MAYBE] error error:ERR syntax error",
        "CLIENT REPLY [] error error:ERR wrong number of arguments for 'client|reply' command",
    ],
)]
#[case::client_reply_bad_argument_under_off(
    vec![c("CLIENT REPLY OFF"), c("CLIENT REPLY MAYBE"), c("CLIENT REPLY ON"), s("+OK\r\n")],
    &[
        "CLIENT REPLY [OFF] no_reply -",
        "CLIENT REPLY [MAYBE] no_reply -",
        "CLIENT REPLY [ON] ok simple:OK",
    ],
)]
#[case::client_reply_off_behind_pending(
    vec![c("GET a"), c("CLIENT REPLY OFF"), c("GET b"), s("$1\r\nx\r\n")],
    &["CLIENT REPLY [OFF] no_reply -", "GET [b] no_reply -", "GET [a] ok bulk:x"],
)]
#[case::reset_answered_under_off(
    vec![c("CLIENT REPLY OFF"), c("RESET"), c("PING"), s("+RESET\r\n+PONG\r\n")],
    &["CLIENT REPLY [OFF] no_reply -", "RESET [] ok simple:RESET", "PING [] ok simple:PONG"],
)]
#[case::client_reply_in_multi_is_queued(
    vec![
        c("CLIENT REPLY SKIP"),
        c("MULTI"),
        c("CLIENT REPLY ON"),
        c("EXEC"),
        c("PING"),
        s("+QUEUED\r\n*1\r\n+OK\r\n+PONG\r\n"),
    ],
    &[
        "CLIENT REPLY [SKIP] no_reply -",
        "MULTI [] no_reply -",
        "CLIENT REPLY [ON] ok simple:OK tx",
        "EXEC [] ok array(1)",
        "PING [] ok simple:PONG",
    ],
)]
// RESP2 pub/sub
#[case::subscribe_two_channels_with_messages(
    vec![
        c("SUBSCRIBE a b"),
        s(&conf('*', "subscribe", Some("a"), 1)),
        s(&(conf('*', "subscribe", Some("b"), 2) + &msg('*', "a", "hi"))),
        c("PING"),
        s(&(msg('*', "b", "yo") + "*2\r\n$4\r\npong\r\n$0\r\n\r\n" + &msg('*', "a", "again"))),
        c("GET x"),
        s(&format!("-{NOT_ALLOWED}\r\n")),
        c("UNSUBSCRIBE"),
        s(&(conf('*', "unsubscribe", Some("a"), 1) + &conf('*', "unsubscribe", Some("b"), 0))),
        c("LRANGE l 0 -1"),
        s(&msg('*', "looks", "like")),
    ],
    &[
        "SUBSCRIBE [a b] ok array(3)",
        "push array [message a hi]",
        "push array [message b yo]",
        "PING [] ok array(2)",
        "push array [message a again]",
        &format!("GET [x] error error:{NOT_ALLOWED}"),
        "UNSUBSCRIBE [] ok array(3)",
        "LRANGE [l 0 -1] ok array(3)",
    ],
)]
#[case::pubsub_pipelined_counts(
    vec![
        c("SUBSCRIBE a b"),
        c("PSUBSCRIBE p*"),
        c("UNSUBSCRIBE"),
        c("PUNSUBSCRIBE"),
        c("PING"),
        s(&[
            conf('*', "subscribe", Some("a"), 1),
            conf('*', "subscribe", Some("b"), 2),
            conf('*', "psubscribe", Some("p*"), 3),
            "*4\r\n$8\r\npmessage\r\n$2\r\np*\r\n$2\r\npx\r\n$1\r\nm\r\n".into(),
            conf('*', "unsubscribe", Some("b"), 2),
            conf('*', "unsubscribe", Some("a"), 1),
            conf('*', "punsubscribe", Some("p*"), 0),
            "+PONG\r\n".into(),
        ].concat()),
    ],
    &[
        "SUBSCRIBE [a b] ok array(3)",
        "PSUBSCRIBE [p*] ok array(3)",
        "push array [pmessage p* px m]",
        "UNSUBSCRIBE [] ok array(3)",
        "PUNSUBSCRIBE [] ok array(3)",
        "PING [] ok simple:PONG",
    ],
)]
#[case::unsubscribe_with_nothing_subscribed(
    vec![
        c("UNSUBSCRIBE"),
        c("SUNSUBSCRIBE"),
        c("PING"),
        s(&(conf('*', "unsubscribe", None, 0) + &conf('*', "sunsubscribe", None, 0) + "+PONG\r\n")),
    ],
    &["UNSUBSCRIBE [] ok array(3)", "SUNSUBSCRIBE [] ok array(3)", "PING [] ok simple:PONG"],
)]
#[case::subscribe_same_channel_twice(
    vec![
        c("SUBSCRIBE a a"),
        c("UNSUBSCRIBE a x"),
        s(&[
            conf('*', "subscribe", Some("a"), 1),
            conf('*', "subscribe", Some("a"), 1),
            conf('*', "unsubscribe", Some("a"), 0),
            conf('*', "unsubscribe", Some("x"), 0),
        ].concat()),
    ],
    &["SUBSCRIBE [a a] ok array(3)", "UNSUBSCRIBE [a x] ok array(3)"],
)]
#[case::shard_subscribe_counts_apart(
    vec![
        c("SUBSCRIBE a"),
        c("SSUBSCRIBE s1 s2"),
        c("SUNSUBSCRIBE"),
        c("PING"),
        s(&[
            conf('*', "subscribe", Some("a"), 1),
            conf('*', "ssubscribe", Some("s1"), 1),
            conf('*', "ssubscribe", Some("s2"), 2),
            "*3\r\n$8\r\nsmessage\r\n$2\r\ns1\r\n$1\r\nz\r\n".into(),
            conf('*', "sunsubscribe", Some("s1"), 1),
            conf('*', "sunsubscribe", Some("s2"), 0),
            "*2\r\n$4\r\npong\r\n$0\r\n\r\n".into(),
        ].concat()),
    ],
    &[
        "SUBSCRIBE [a] ok array(3)",
        "SSUBSCRIBE [s1 s2] ok array(3)",
        "push array [smessage s1 z]",
        "SUNSUBSCRIBE [] ok array(3)",
        "PING [] ok array(2)",
    ],
)]
#[case::subscribe_arity_error(
    vec![c("SUBSCRIBE"), s("-ERR wrong number of arguments for 'subscribe' command\r\n")],
    &["SUBSCRIBE [] error error:ERR wrong number of arguments for 'subscribe' command"],
)]
#[case::subscribe_under_client_reply_off(
    // Redis >= 7.0.10 still sends pub/sub confirmations to a silenced client.
    vec![
        c("CLIENT REPLY OFF"),
        c("SUBSCRIBE a"),
        s(&(conf('*', "subscribe", Some("a"), 1) + &msg('*', "a", "hi"))),
    ],
    &[
        "CLIENT REPLY [OFF] no_reply -",
        "SUBSCRIBE [a] no_reply -",
        "push array [subscribe a 1]",
        "push array [message a hi]",
    ],
)]
#[case::reset_leaves_subscribed_mode(
    vec![
        c("SUBSCRIBE a"),
        s(&conf('*', "subscribe", Some("a"), 1)),
        c("RESET"),
        s("+RESET\r\n"),
        c("LRANGE l 0 -1"),
        s(&msg('*', "x", "y")),
    ],
    &["SUBSCRIBE [a] ok array(3)", "RESET [] ok simple:RESET", "LRANGE [l 0 -1] ok array(3)"],
)]
// RESP3
#[case::hello3_map_reply(
    vec![c("HELLO 3"), s(&hello3_reply()), c("GET a"), s("$1\r\n1\r\n")],
    &["HELLO [3] ok map(7)", "GET [a] ok bulk:1"],
)]
#[case::resp3_push_between_pipelined_replies(
    vec![
        c("HELLO 3"),
        s(&hello3_reply()),
        c("CLIENT TRACKING on"),
        c("GET a"),
        c("GET b"),
        c("FLUSHDB"),
        c("PING"),
        s("+OK\r\n$1\r\n1\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n$1\r\n2\r\n"),
        s("+OK\r\n>2\r\n$10\r\ninvalidate\r\n_\r\n+PONG\r\n"),
    ],
    &[
        "HELLO [3] ok map(7)",
        "CLIENT TRACKING [on] ok simple:OK",
        "GET [a] ok bulk:1",
        "push push [invalidate array(1)]",
        "GET [b] ok bulk:2",
        "FLUSHDB [] ok simple:OK",
        "push push [invalidate nil]",
        "PING [] ok simple:PONG",
    ],
)]
#[case::resp3_subscribe_confirmations_are_pushes(
    vec![
        c("HELLO 3"),
        s(&hello3_reply()),
        c("SUBSCRIBE a b"),
        c("GET k"),
        c("PING"),
        c("UNSUBSCRIBE"),
        s(&[
            conf('>', "subscribe", Some("a"), 1),
            msg('>', "x", "early"),
            conf('>', "subscribe", Some("b"), 2),
            "$1\r\nv\r\n".into(),
            msg('>', "a", "hi"),
            "+PONG\r\n".into(),
            conf('>', "unsubscribe", Some("a"), 1),
            conf('>', "unsubscribe", Some("b"), 0),
        ].concat()),
    ],
    &[
        "HELLO [3] ok map(7)",
        "push push [message x early]",
        "SUBSCRIBE [a b] ok push(3)",
        "GET [k] ok bulk:v",
        "push push [message a hi]",
        "PING [] ok simple:PONG",
        "UNSUBSCRIBE [] ok push(3)",
    ],
)]
#[case::resp3_unsolicited_confirmation_is_push(
    // A cluster slot migration unsubscribes shard channels on its own.
    vec![
        c("HELLO 3"),
        s(&hello3_reply()),
        c("GET k"),
        s(&(conf('>', "sunsubscribe", Some("s"), 0) + "$1\r\nv\r\n")),
    ],
    &["HELLO [3] ok map(7)", "push push [sunsubscribe s 0]", "GET [k] ok bulk:v"],
)]
#[case::hello2_back_to_resp2(
    vec![
        c("HELLO 3"),
        s(&hello3_reply()),
        c("HELLO 2"),
        s(&hello2_reply()),
        c("SUBSCRIBE a"),
        s(&(conf('*', "subscribe", Some("a"), 1) + &msg('*', "a", "m"))),
    ],
    &[
        "HELLO [3] ok map(7)",
        "HELLO [2] ok array(14)",
        "SUBSCRIBE [a] ok array(3)",
        "push array [message a m]",
    ],
)]
#[case::reset_leaves_resp3(
    vec![
        c("HELLO 3"),
        s(&hello3_reply()),
        c("SUBSCRIBE a"),
        s(&conf('>', "subscribe", Some("a"), 1)),
        c("RESET"),
        s("+RESET\r\n"),
        c("LRANGE l 0 -1"),
        s(&msg('*', "x", "y")),
    ],
    &[
        "HELLO [3] ok map(7)",
        "SUBSCRIBE [a] ok push(3)",
        "RESET [] ok simple:RESET",
        "LRANGE [l 0 -1] ok array(3)",
    ],
)]
// MULTI / EXEC
#[case::multi_exec_with_runtime_error(
    vec![
        c("MULTI"),
        c("SET a 1"),
        c("INCR s"),
        c("GET a"),
        c("EXEC"),
        s("+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n"),
        s(&format!("*3\r\n+OK\r\n-{WRONGTYPE}\r\n$1\r\n1\r\n")),
    ],
    &[
        "MULTI [] ok simple:OK",
        "SET [a 1] ok simple:OK tx",
        "INCR [s] error error:WRONGTYPE Operation against a key holding the wrong kind of value tx",
        "GET [a] ok bulk:1 tx",
        "EXEC [] ok array(3)",
    ],
)]
#[case::multi_execabort(
    vec![
        c("MULTI"),
        c("SET a 1"),
        c("FOO"),
        c("WATCH x"),
        c("MULTI"),
        c("GET a"),
        c("EXEC"),
        s("+OK\r\n+QUEUED\r\n-ERR unknown command 'FOO', with args beginning with: \r\n"),
        s("-ERR WATCH inside MULTI is not allowed\r\n-ERR MULTI calls can not be nested\r\n"),
        s(&format!("+QUEUED\r\n-{EXECABORT}\r\n")),
    ],
    &[
        "MULTI [] ok simple:OK",
        "FOO [] error error:ERR unknown command 'FOO', with args beginning with: ",
        "WATCH [x] error error:ERR WATCH inside MULTI is not allowed",
        "MULTI [] error error:ERR MULTI calls can not be nested",
        "SET [a 1] aborted error:EXECABORT Transaction discarded because of previous errors. tx",
        "GET [a] aborted error:EXECABORT Transaction discarded because of previous errors. tx",
        "EXEC [] error error:EXECABORT Transaction discarded because of previous errors.",
    ],
)]
#[case::multi_watch_abort(
    vec![c("WATCH a"), c("MULTI"), c("SET a 1"), c("EXEC"), s("+OK\r\n+OK\r\n+QUEUED\r\n*-1\r\n")],
    &[
        "WATCH [a] ok simple:OK",
        "MULTI [] ok simple:OK",
        "SET [a 1] aborted - tx",
        "EXEC [] ok null(-1)",
    ],
)]
#[case::multi_watch_abort_resp3(
    vec![
        c("HELLO 3"),
        s(&hello3_reply()),
        c("MULTI"),
        c("SET a 1"),
        c("EXEC"),
        s("+OK\r\n+QUEUED\r\n_\r\n"),
    ],
    &[
        "HELLO [3] ok map(7)",
        "MULTI [] ok simple:OK",
        "SET [a 1] aborted - tx",
        "EXEC [] ok null(-1)",
    ],
)]
#[case::multi_discard(
    vec![c("MULTI"), c("SET a 1"), c("DISCARD"), c("GET a"), s("+OK\r\n+QUEUED\r\n+OK\r\n$-1\r\n")],
    &[
        "MULTI [] ok simple:OK",
        "SET [a 1] aborted - tx",
        "DISCARD [] ok simple:OK",
        "GET [a] ok null(-1)",
    ],
)]
#[case::multi_reset(
    vec![c("MULTI"), c("SET a 1"), c("RESET"), s("+OK\r\n+QUEUED\r\n+RESET\r\n")],
    &["MULTI [] ok simple:OK", "SET [a 1] aborted - tx", "RESET [] ok simple:RESET"],
)]
#[case::exec_without_multi(
    vec![c("EXEC"), c("DISCARD"), s("-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n")],
    &[
        "EXEC [] error error:ERR EXEC without MULTI",
        "DISCARD [] error error:ERR DISCARD without MULTI",
    ],
)]
#[case::queued_status_outside_multi_is_a_reply(
    vec![c("EVAL return_queued 0"), s("+QUEUED\r\n")],
    &["EVAL [return_queued 0] ok simple:QUEUED"],
)]
#[case::multi_closed_before_exec(
    vec![c("MULTI"), c("SET a 1"), s("+OK\r\n+QUEUED\r\n"), Step::Close],
    &["MULTI [] ok simple:OK", "SET [a 1] unanswered - tx"],
)]
// MONITOR, QUIT, protocol errors, close
#[case::monitor_feed_is_pushes(
    vec![
        c("MONITOR"),
        s("+OK\r\n+1700000000.123456 [0 127.0.0.1:5000] \"get\" \"a\"\r\n"),
        c("PING"),
        s("+1700000000.2 [0 lua] \"ping\"\r\n+PONG\r\n"),
        c("RESET"),
        s("+RESET\r\n"),
    ],
    &[
        "MONITOR [] ok simple:OK",
        "push simple [1700000000.123456 [0 127.0.0.1:5000] \"get\" \"a\"]",
        "push simple [1700000000.2 [0 lua] \"ping\"]",
        "PING [] ok simple:PONG",
        "RESET [] ok simple:RESET",
    ],
)]
#[case::quit_ends_the_request_stream(
    vec![c("GET a"), c("QUIT"), c("GET b"), s("$1\r\n1\r\n+OK\r\n"), Step::Close],
    &["GET [a] ok bulk:1", "QUIT [] ok simple:OK"],
)]
#[case::quit_under_off(
    vec![c("CLIENT REPLY OFF"), c("QUIT"), c("GET b"), Step::Close],
    &["CLIENT REPLY [OFF] no_reply -", "QUIT [] no_reply -"],
)]
#[case::protocol_error_reply_consumed(
    vec![
        raw("GET a\r\nSET \"a b\r\nGET c\r\n"),
        s("$1\r\n1\r\n-ERR Protocol error: unbalanced quotes in request\r\n"),
        Step::Close,
    ],
    &[
        "GET [a] ok bulk:1",
        "SET [a b] error error:ERR Protocol error: unbalanced quotes in request refused",
    ],
)]
#[case::protocol_error_bad_bulk_length(
    vec![
        c("PING"),
        raw("*1\r\n$-5\r\n"),
        s("+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"),
    ],
    &["PING [] ok simple:PONG", " [] error error:ERR Protocol error: invalid bulk length refused"],
)]
#[case::protocol_error_named_multibulk(
    vec![
        raw("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n:1\r\n"),
        s("-ERR Protocol error: expected '$', got ':'\r\n"),
    ],
    &["SET [k] error error:ERR Protocol error: expected '$', got ':' refused"],
)]
// Fuzz finding (session): a non-error reply at a refused request's turn was logged as its
// reply with status error.
#[case::protocol_error_takes_only_an_error_reply(
    vec![
        raw("PING\r\n*x\r\n"),
        s("+PONG\r\n*1\r\n:1\r\n-ERR Protocol error: invalid multibulk length\r\n"),
    ],
    &[
        "PING [] ok simple:PONG",
        "notice OrphanReply",
        " [] error error:ERR Protocol error: invalid multibulk length refused",
    ],
)]
#[case::protocol_error_without_its_reply_at_close(
    vec![raw("PING\r\n*x\r\n"), s("+PONG\r\n*1\r\n:1\r\n"), Step::Close],
    &[
        "PING [] ok simple:PONG",
        "notice OrphanReply",
        " [] error error:ERR Protocol error: invalid multibulk length refused",
    ],
)]
#[case::protocol_error_closed_before_reply(
    vec![raw("SET k \"v\r\n"), Step::Close],
    &["SET [k v] error error:ERR Protocol error: unbalanced quotes in request refused"],
)]
#[case::protocol_error_under_reply_off(
    vec![c("CLIENT REPLY OFF"), raw("*1\r\n$x\r\n"), Step::Close],
    &[
        "CLIENT REPLY [OFF] no_reply -",
        " [] error error:ERR Protocol error: invalid bulk length refused",
    ],
)]
#[case::protocol_error_secret_args_stay_redacted(
    vec![raw("AUTH u \"pw\r\n"), s("-ERR Protocol error: unbalanced quotes in request\r\n")],
    &["AUTH [(redacted) (redacted)] error error:ERR Protocol error: unbalanced quotes in request refused"],
)]
#[case::unauthenticated_limit_from_the_reply(
    vec![
        c("MSET a 1 b 2 c 3 d 4 e 5"),
        c("PING"),
        s("-ERR Protocol error: unauthenticated multibulk length\r\n"),
        Step::Close,
    ],
    &[
        "MSET [a 1 b 2 c 3 d 4 e 5] error error:ERR Protocol error: unauthenticated multibulk length refused",
        "PING [] unanswered -",
    ],
)]
#[case::unauthenticated_text_from_a_small_command_is_an_error(
    vec![c("EVAL x 0"), s("-ERR Protocol error: unauthenticated multibulk length\r\n")],
    &["EVAL [x 0] error error:ERR Protocol error: unauthenticated multibulk length"],
)]
#[case::http_guard_closes(
    vec![raw("PING\r\nHost: example.com\r\nGET a\r\n"), s("+PONG\r\n"), Step::Close],
    &["PING [] ok simple:PONG"],
)]
#[case::closed_mid_pipeline(
    vec![c("GET a"), c("GET b"), c("GET c"), s("$1\r\n1\r\n$1\r"), Step::Close],
    &["GET [a] ok bulk:1", "GET [b] unanswered -", "GET [c] unanswered -"],
)]
#[case::closed_during_confirmations(
    vec![c("SUBSCRIBE a b"), s(&conf('*', "subscribe", Some("a"), 1)), Step::Close],
    &["SUBSCRIBE [a b] ok array(3)"],
)]
// Secrets
#[case::auth_redacted(
    vec![
        c("AUTH user s3cret"),
        c("AUTH pw"),
        s("+OK\r\n-WRONGPASS invalid username-password pair\r\n"),
    ],
    &[
        "AUTH [(redacted) (redacted)] ok simple:OK",
        "AUTH [(redacted)] error error:WRONGPASS (redacted)",
    ],
)]
#[case::dropped_auth_reply(
    vec![c("PING"), c("AUTH u wrong"), c("PING"), s("+PONG\r\n+PONG\r\n")],
    &[
        "PING [] ok simple:PONG",
        "AUTH [(redacted) (redacted)] reply_dropped -",
        "PING [] ok simple:PONG",
    ],
)]
#[case::dropped_auth_reply_after_a_good_one(
    vec![c("AUTH pw"), c("AUTH wrong"), c("PING"), s("+OK\r\n+PONG\r\n")],
    &[
        "AUTH [(redacted)] ok simple:OK",
        "AUTH [(redacted)] reply_dropped -",
        "PING [] ok simple:PONG",
    ],
)]
#[case::dropped_hello_auth_reply(
    vec![c("PING"), c("HELLO 3 AUTH u wrong"), c("GET a"), s("+PONG\r\n$1\r\n1\r\n")],
    &[
        "PING [] ok simple:PONG",
        "HELLO [3 AUTH (redacted) (redacted)] reply_dropped -",
        "GET [a] ok bulk:1",
    ],
)]
#[case::hello_auth_answered(
    vec![c("PING"), c("HELLO 3 AUTH u pw"), s("+PONG\r\n"), s(&hello3_reply())],
    &["PING [] ok simple:PONG", "HELLO [3 AUTH (redacted) (redacted)] ok map(7)"],
)]
#[case::dropped_auth_reply_in_a_transaction(
    vec![
        c("MULTI"),
        c("PING"),
        c("AUTH u wrong"),
        c("PING"),
        c("EXEC"),
        c("GET a"),
        c("PING"),
        s("+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+PONG\r\n+PONG\r\n$1\r\n1\r\n+PONG\r\n"),
    ],
    &[
        "MULTI [] ok simple:OK",
        "PING [] ok simple:PONG tx",
        "AUTH [(redacted) (redacted)] reply_dropped - tx",
        "PING [] ok simple:PONG tx",
        "EXEC [] ok array(3)",
        "GET [a] ok bulk:1",
        "PING [] ok simple:PONG",
    ],
)]
#[case::hello_auth_redacted(
    vec![c("HELLO 3 AUTH default s3cret SETNAME app"), s(&hello3_reply())],
    &["HELLO [3 AUTH (redacted) (redacted) SETNAME app] ok map(7)"],
)]
#[case::config_get_secret_reply_redacted(
    vec![
        c("CONFIG GET requirepass"),
        c("CONFIG SET requirepass pw"),
        s("*2\r\n$11\r\nrequirepass\r\n$2\r\npw\r\n+OK\r\n"),
    ],
    &[
        "CONFIG GET [requirepass] ok array:(redacted)",
        "CONFIG SET [requirepass (redacted)] ok simple:OK",
    ],
)]
#[case::acl_setuser_error_echo_redacted(
    vec![
        c("ACL SETUSER alice <OldPassword"),
        s("-ERR Error in ACL SETUSER modifier '<OldPassword': no such password\r\n"),
    ],
    &["ACL SETUSER [alice (redacted)] error error:ERR (redacted)"],
)]
#[case::acl_selector_password_redacted(
    vec![c("ACL SETUSER alice on (>s3cret ~k) (~x +get)"), s("+OK\r\n")],
    &["ACL SETUSER [alice on (redacted) ~k) (~x +get)] ok simple:OK"],
)]
#[case::acl_setuser_error_in_exec_redacted(
    vec![
        c("MULTI"),
        c("ACL SETUSER bob !deadbeef"),
        c("EXEC"),
        s("+OK\r\n+QUEUED\r\n*1\r\n-ERR Error in ACL SETUSER modifier '!deadbeef': bad\r\n"),
    ],
    &[
        "MULTI [] ok simple:OK",
        "ACL SETUSER [bob (redacted)] error error:ERR (redacted) tx",
        "EXEC [] ok array(1)",
    ],
)]
#[case::sentinel_set_on_plain_server(
    vec![
        c("SENTINEL SET mymaster auth-pass s3cret"),
        s("-ERR unknown command 'SENTINEL', with args beginning with: 'SET' 'mymaster' 'auth-pass' 's3cret' \r\n"),
    ],
    &["SENTINEL [SET mymaster auth-pass (redacted)] error error:ERR (redacted)"],
)]
#[case::sentinel_config_set(
    vec![c("SENTINEL CONFIG SET sentinel-user u sentinel-pass p"), s("+OK\r\n")],
    &["SENTINEL [CONFIG SET sentinel-user (redacted) sentinel-pass (redacted)] ok simple:OK"],
)]
#[case::unknown_subcommand_of_secret_container(
    vec![c("ACL SETUSR alice >s3cret"), s("-ERR unknown subcommand 'SETUSR'. Try ACL HELP.\r\n")],
    &["ACL SETUSR [(redacted) (redacted)] error error:ERR (redacted)"],
)]
#[case::name_cut_by_gap_hides_everything(
    vec![raw("*3\r\n$4\r\nAU"), Step::CMiss(2), raw("\r\n$1\r\nu\r\n$6\r\ns3cret\r\n"), s("-ERR unknown\r\n")],
    &["AU [(redacted) (redacted)] error error:ERR (redacted)"],
)]
#[case::secret_in_transaction_redacted(
    vec![
        c("MULTI"),
        c("CONFIG GET *"),
        c("EXEC"),
        s("+OK\r\n+QUEUED\r\n*1\r\n*2\r\n$11\r\nrequirepass\r\n$2\r\npw\r\n"),
    ],
    &["MULTI [] ok simple:OK", "CONFIG GET [*] ok array:(redacted) tx", "EXEC [] ok array(1)"],
)]
fn conversation(#[case] steps: Vec<Step>, #[case] expected: &[&str]) {
    assert_eq!(events(&steps), expected);
}

// ------------------------------------------------------------------------------------------------
// Record fields

#[test]
fn timestamps_latency_and_bytes() {
    let get = multibulk(&["GET", "a"]);
    let (head, tail) = get.split_at(7);
    let mut r = run(&[]);
    let steps = [
        (1000, Step::C(head.to_vec())),
        (1500, Step::C(tail.to_vec())),
        (4000, s("$3\r\nb")),
        (4200, s("ar\r\n")),
    ];
    for (ts, step) in &steps {
        r.step(*ts, step);
    }
    let rec = &r.sink.recs[0];
    assert_eq!(rec.line, "GET [a] ok bulk:bar");
    assert_eq!((rec.ts, rec.latency), (1000, Some(2500)));
    assert_eq!((rec.req_bytes, rec.resp_bytes), (get.len() as u64, 9));
    assert_eq!(
        (rec.key.as_deref(), rec.argc, rec.executed),
        (Some("a"), 1, true)
    );
}

#[rstest]
#[case::set("SET mykey v", Some("mykey"), 2)]
#[case::mget("MGET k1 k2", Some("k1"), 2)]
#[case::eval("EVAL return 1 key1 arg", Some("key1"), 4)]
#[case::container("OBJECT ENCODING k", Some("k"), 1)]
#[case::no_key("PING", None, 0)]
#[case::unknown("NOSUCH k", None, 1)]
fn key_and_argc(#[case] cmd: &str, #[case] key: Option<&str>, #[case] argc: u64) {
    let r = run(&[c(cmd), s("+OK\r\n")]);
    assert_eq!(
        (r.sink.recs[0].key.as_deref(), r.sink.recs[0].argc),
        (key, argc)
    );
}

#[test]
fn args_and_names_are_bounded() {
    let limits = SessionLimits::with_record(RecordLimits {
        args: 3,
        arg_bytes: 4,
        key_bytes: 4,
        name_bytes: 5,
        ..RecordLimits::default()
    });
    let r = run_with(
        &limits,
        false,
        &[
            c("DEL key1 key2 key3 key4 key5"),
            c("verylongname abcdefgh"),
            s(":5\r\n-ERR unknown\r\n"),
        ],
    );
    assert_eq!(
        r.sink.events,
        [
            "DEL [key1 key2 key3] ok integer:5",
            "VERYL [abcd] error error:ERR unknown"
        ]
    );
    assert_eq!(
        (r.sink.recs[0].argc, r.sink.recs[0].key.as_deref()),
        (5, Some("key1"))
    );
    // An unknown subcommand of a known container is named with both words, bounded as a whole,
    // and its arguments start after it; an unknown command keeps its first word only.
    let limits = SessionLimits::with_record(RecordLimits {
        name_bytes: 10,
        ..RecordLimits::default()
    });
    let r = run_with(
        &limits,
        false,
        &[
            c("config nosuchsub x"),
            c("client bogus"),
            c("nosuch bogus"),
            c("clientelement bogus"),
            s("-ERR a\r\n-ERR b\r\n-ERR c\r\n-ERR d\r\n"),
        ],
    );
    assert_eq!(
        r.sink.events,
        [
            "CONFIG NOS [(redacted)] error error:ERR (redacted)",
            "CLIENT BOG [] error error:ERR b",
            "NOSUCH [bogus] error error:ERR c",
            "CLIENTELEM [bogus] error error:ERR d",
        ]
    );
    let argc: Vec<u64> = r.sink.recs.iter().map(|rec| rec.argc).collect();
    assert_eq!(argc, [1, 0, 1, 1]);
    let r = run(&[c("CLIENT NOSUCH-SUBCOMMAND a b"), s("-ERR x\r\n")]);
    assert_eq!(
        r.sink.events,
        ["CLIENT NOSUCH-SUBCOMMAND [a b] error error:ERR x"]
    );
    // The key is kept even when it lies beyond the kept arguments.
    let limits = SessionLimits::with_record(RecordLimits {
        args: 1,
        ..RecordLimits::default()
    });
    let r = run_with(&limits, false, &[c("EVAL script 1 thekey"), s("+OK\r\n")]);
    assert_eq!(
        (r.sink.events[0].as_str(), r.sink.recs[0].key.as_deref()),
        ("EVAL [script] ok simple:OK", Some("thekey"))
    );
}

#[test]
fn transaction_fields() {
    let r = run(&[
        c("MULTI"),
        c("SET a 1"),
        c("FOO"),
        c("EXEC"),
        s(&format!(
            "+OK\r\n+QUEUED\r\n-ERR unknown command\r\n-{EXECABORT}\r\n"
        )),
        c("MULTI"),
        c("INCR n"),
        c("EXEC"),
        s("+OK\r\n"),
        s("+QUEUED\r\n"),
        s("*1\r\n:1\r\n"),
    ]);
    let by_line = |l: &str| r.sink.recs.iter().find(|x| x.line == l).unwrap().clone();
    // Queued, never run: not executed, no latency; the queue-time error and EXEC ran.
    let set = by_line(
        "SET [a 1] aborted error:EXECABORT Transaction discarded because of previous errors. tx",
    );
    assert_eq!(
        (set.executed, set.latency, set.resp_bytes),
        (false, None, 9)
    );
    assert!(by_line("FOO [] error error:ERR unknown command").executed);
    assert!(
        by_line("EXEC [] error error:EXECABORT Transaction discarded because of previous errors.")
            .executed
    );
    // Ran at EXEC: its element, EXEC's latency, its +QUEUED bytes.
    let incr = by_line("INCR [n] ok integer:1 tx");
    let exec = by_line("EXEC [] ok array(1)");
    assert_eq!(
        (incr.executed, incr.latency, incr.resp_bytes, incr.ts),
        (true, Some(3000), 9, 7000)
    );
    assert_eq!(exec.latency, Some(3000));
}

// ------------------------------------------------------------------------------------------------
// Gaps, desyncs, limits

#[test]
fn reply_desync_drops_pending_commands() {
    let ev = events(&[
        c("GET a"),
        c("GET b"),
        c("GET c"),
        s("$1\r\n1\r\n"),
        s("\x01garbage\r\n"),
        c("GET d"),
        s("$1\r\n4\r\n"),
        c("GET e"),
        s("$1\r\n5\r\n"),
    ]);
    // GET d's pairing rests on a resynchronisation: its text is hidden. GET e is sent with nothing
    // pending and the replies between frames: sure again.
    assert_eq!(
        ev,
        [
            "GET [a] ok bulk:1",
            "notice Desync { dir: Reply, reason: BadByte }",
            "notice CommandsLost(2)",
            "GET [d] ok bulk:(redacted)",
            "GET [e] ok bulk:5",
        ]
    );
}

#[test]
fn reply_gap_inside_payload_keeps_pairing() {
    let ev = events(&[
        c("GET a"),
        c("GET b"),
        s("$10\r\n01"),
        Step::SMiss(6),
        s("89\r\n$1\r\nb\r\n"),
    ]);
    assert_eq!(ev, ["GET [a] ok bulk:01", "GET [b] ok bulk:b"]);
}

#[test]
fn reply_gap_in_framing_loses_commands() {
    let ev = events(&[
        c("GET a"),
        c("GET b"),
        s("$1"),
        Step::SMiss(10),
        c("GET c"),
        s("$1\r\nc\r\n"),
    ]);
    assert_eq!(
        ev,
        [
            "notice Desync { dir: Reply, reason: Gap }",
            "notice CommandsLost(2)",
            "GET [c] ok bulk:(redacted)"
        ]
    );
}

#[test]
fn request_gap_keeps_earlier_commands_and_drops_noncausal_replies() {
    let mut r = run(&[]);
    let mut at = |ts: u64, step: Step| r.step(ts, &step);
    at(1000, c("GET a"));
    at(1100, c("GET b"));
    at(1200, raw("*2\r\n$3\r\nSE"));
    at(1300, Step::CMiss(20)); // the rest of a lost command
    at(2000, s("$1\r\n1\r\n$1\r\n2\r\n")); // GET a, GET b: before the gap, paired
    at(2100, s("$4\r\nlo")); // the lost command's reply begins…
    at(2200, c("GET c")); // …before GET c is sent
    at(2300, s("st\r\n")); // and ends after
    at(2400, s("$1\r\n3\r\n"));
    assert_eq!(
        r.sink.events,
        [
            "notice Desync { dir: Request, reason: Gap }",
            "GET [a] ok bulk:1",
            "GET [b] ok bulk:2",
            "notice OrphanReply",
            "GET [c] ok bulk:(redacted)",
        ]
    );
}

#[test]
fn request_gap_inside_argument_keeps_sync() {
    let ev = events(&[
        raw("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n01"),
        Step::CMiss(6),
        raw("89\r\n"),
        s("+OK\r\n"),
    ]);
    assert_eq!(ev, ["SET [k 01] ok simple:OK"]);
}

#[test]
fn mid_stream_drops_server_bytes_until_first_command() {
    let limits = SessionLimits::default();
    let r = run_with(
        &limits,
        true,
        &[
            s("+OK\r\n$5\r\nhello\r\n"),
            raw("LUE\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n"),
            s("llo\r\n$1\r\n1\r\n"),
        ],
    );
    // Picked up mid-stream: the first pairing is in doubt.
    assert_eq!(r.sink.events, ["GET [a] ok bulk:(redacted)"]);
}

#[test]
fn mid_stream_transaction_matches_from_the_end() {
    let r = run_with(
        &SessionLimits::default(),
        true,
        &[
            c("INCR n"),
            c("EXEC"),
            s("+QUEUED\r\n*2\r\n+OK\r\n:7\r\n"),
            c("GET a"),
            s("$1\r\n1\r\n"),
        ],
    );
    assert_eq!(
        r.sink.events,
        [
            "INCR [n] ok integer:(redacted) tx",
            "EXEC [] ok array(2)",
            "GET [a] ok bulk:1"
        ]
    );
}

#[test]
fn mid_stream_subscriber_messages_are_pushes() {
    let r = run_with(
        &SessionLimits::default(),
        true,
        &[
            c("PING"),
            s(&(msg('*', "a", "x")
                + "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
                + &conf('*', "unsubscribe", Some("a"), 0))),
        ],
    );
    assert_eq!(
        r.sink.events,
        [
            "push array [message a x]",
            "PING [] ok array(2)",
            "push array [unsubscribe a 0]"
        ]
    );
}

#[rstest]
#[case::tls(vec![Step::C(vec![0x16, 0x03, 0x01, 0x00, 0xa5])])]
#[case::http(vec![raw("GET / HTTP/1.1\r\nHost: x\r\n\r\n")])]
fn not_resp_is_ignored(#[case] mut steps: Vec<Step>) {
    steps.extend([s("HTTP/1.1 400 Bad Request\r\n"), c("GET a"), Step::Close]);
    let r = run(&steps);
    assert!(r.session.ignored());
    assert_eq!(
        r.sink.events,
        ["notice Desync { dir: Request, reason: NotResp }"]
    );
}

#[test]
fn server_speaking_first_with_something_else_is_ignored() {
    let r = run(&[s("SSH-2.0-OpenSSH_9.6\r\n"), c("PING")]);
    assert!(r.session.ignored());
    assert_eq!(
        r.sink.events,
        ["notice Desync { dir: Reply, reason: NotResp }"]
    );
}

#[test]
fn pending_overflow_drops_oldest_and_skips_its_reply() {
    let limits = SessionLimits {
        max_pending: 3,
        ..SessionLimits::default()
    };
    let mut steps: Vec<Step> = (1..=5).map(|i| c(&format!("GET k{i}"))).collect();
    steps.push(s("$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n$1\r\n4\r\n$1\r\n5\r\n"));
    let r = run_with(&limits, false, &steps);
    assert_eq!(
        r.sink.events,
        [
            "notice PendingOverflow",
            "notice PendingOverflow",
            "GET [k3] ok bulk:3",
            "GET [k4] ok bulk:4",
            "GET [k5] ok bulk:5",
        ]
    );
}

#[test]
fn queued_transaction_commands_count_against_max_pending() {
    // MULTI then commands each answered +QUEUED used to pile up in the transaction queue without
    // bound (found with the `session` fuzz target's memory bound). Now the oldest queued ones are
    // dropped, and EXEC's array, matched from its end, goes to the ones kept.
    let limits = SessionLimits {
        max_pending: 3,
        ..SessionLimits::default()
    };
    let mut steps = vec![c("MULTI"), s("+OK\r\n")];
    for i in 1..=5 {
        steps.push(c(&format!("INCR k{i}")));
        steps.push(s("+QUEUED\r\n"));
    }
    steps.push(c("EXEC"));
    steps.push(s("*5\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n"));
    let r = run_with(&limits, false, &steps);
    assert_eq!(
        r.sink.events,
        [
            "MULTI [] ok simple:OK",
            "notice PendingOverflow",
            "notice PendingOverflow",
            "notice PendingOverflow",
            "INCR [k4] ok integer:4 tx",
            "INCR [k5] ok integer:5 tx",
            "EXEC [] ok array(5)",
        ]
    );
    // A long transaction holds no more than max_pending commands: memory stops growing (the
    // arenas' compaction slack aside, a fixed amount).
    let mem = |n: usize| {
        let mut steps = vec![c("MULTI"), s("+OK\r\n")];
        for _ in 0..n {
            steps.push(c("SET k v"));
            steps.push(s("+QUEUED\r\n"));
        }
        run_with(&limits, false, &steps).session.mem()
    };
    let (a, b) = (mem(10_000), mem(40_000));
    assert!(b <= a && a < 256 * 1024, "{a} {b}");
}

// ------------------------------------------------------------------------------------------------
// Pipelines and segmentation

/// Deterministic xorshift: tests stay reproducible without a rand dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A conversation as two byte streams, with where each command ends and each reply starts.
struct Script {
    client: Vec<u8>,
    cmd_ends: Vec<usize>,
    server: Vec<u8>,
    /// Per reply frame: its start offset and how many commands must have been sent before it.
    reply_starts: Vec<(usize, usize)>,
}

impl Script {
    fn new() -> Self {
        Script {
            client: Vec::new(),
            cmd_ends: Vec::new(),
            server: Vec::new(),
            reply_starts: Vec::new(),
        }
    }

    fn cmd(&mut self, args: &[&str]) {
        self.client.extend(multibulk(args));
        self.cmd_ends.push(self.client.len());
    }

    /// A server frame that can only be sent once `after` commands were sent.
    fn reply(&mut self, resp: &str, after: usize) {
        self.reply_starts.push((self.server.len(), after));
        self.server.extend_from_slice(resp.as_bytes());
    }

    /// Feeds both streams cut at random points, interleaved at random but never a reply byte
    /// before the command it needs was fully sent.
    fn feed(&self, rng: &mut Rng, max_chunk: u64) -> Run {
        let mut r = run(&[]);
        let (mut cpos, mut spos, mut ts) = (0usize, 0usize, 0u64);
        while cpos < self.client.len() || spos < self.server.len() {
            ts += 1000;
            let sent = self.cmd_ends.iter().take_while(|&&e| e <= cpos).count();
            // Server bytes may go up to the start of the first reply that needs more commands.
            let limit = self
                .reply_starts
                .iter()
                .find(|&&(_, after)| after > sent)
                .map_or(self.server.len(), |&(start, _)| start);
            let server_turn = spos < limit && (cpos == self.client.len() || rng.below(2) == 0);
            if server_turn {
                let n = (1 + rng.below(max_chunk) as usize).min(limit - spos);
                r.step(ts, &Step::S(self.server[spos..spos + n].to_vec()));
                spos += n;
            } else if cpos < self.client.len() {
                let n = (1 + rng.below(max_chunk) as usize).min(self.client.len() - cpos);
                r.step(ts, &Step::C(self.client[cpos..cpos + n].to_vec()));
                cpos += n;
            } else {
                panic!("script deadlock: reply needs commands that were never sent");
            }
        }
        r
    }
}

/// What redis-benchmark sends with `-P`: SET/GET/INCR/LPUSH/LRANGE on random keys.
fn benchmark_script(n: usize, rng: &mut Rng) -> (Script, Vec<String>) {
    let mut sc = Script::new();
    let mut expected = Vec::new();
    for i in 0..n {
        let key = format!("key:{:012}", rng.below(100_000));
        match i % 5 {
            0 => {
                sc.cmd(&["SET", &key, "xxx"]);
                sc.reply("+OK\r\n", i + 1);
                expected.push(format!("SET [{key} xxx] ok simple:OK"));
            }
            1 => {
                sc.cmd(&["GET", &key]);
                sc.reply("$3\r\nxxx\r\n", i + 1);
                expected.push(format!("GET [{key}] ok bulk:xxx"));
            }
            2 => {
                sc.cmd(&["INCR", "counter:__rand_int__"]);
                sc.reply(&format!(":{i}\r\n"), i + 1);
                expected.push(format!("INCR [counter:__rand_int__] ok integer:{i}"));
            }
            3 => {
                sc.cmd(&["LPUSH", "mylist", "xxx"]);
                sc.reply(&format!(":{i}\r\n"), i + 1);
                expected.push(format!("LPUSH [mylist xxx] ok integer:{i}"));
            }
            _ => {
                sc.cmd(&["LRANGE", "mylist", "0", "99"]);
                sc.reply("*2\r\n$3\r\nxxx\r\n$3\r\nxxx\r\n", i + 1);
                expected.push("LRANGE [mylist 0 99] ok array(2)".to_string());
            }
        }
    }
    (sc, expected)
}

#[rstest]
#[case::tiny_chunks(1, 7)]
#[case::packet_sized(2, 1500)]
#[case::whole_streams(3, 1 << 20)]
#[case::odd_cuts(4, 61)]
fn benchmark_pipeline_of_1000_cut_at_random(#[case] seed: u64, #[case] max_chunk: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
    let (sc, expected) = benchmark_script(1000, &mut rng);
    let r = sc.feed(&mut rng, max_chunk);
    assert_eq!(r.sink.events.len(), 1000);
    assert_eq!(r.sink.events, expected);
    let req_total: u64 = r.sink.recs.iter().map(|x| x.req_bytes).sum();
    let resp_total: u64 = r.sink.recs.iter().map(|x| x.resp_bytes).sum();
    assert_eq!(
        (req_total, resp_total),
        (sc.client.len() as u64, sc.server.len() as u64)
    );
}

#[test]
fn benchmark_pipeline_all_requests_first() {
    let mut rng = Rng(42);
    let (sc, expected) = benchmark_script(1000, &mut rng);
    let mut r = run(&[]);
    r.step(1, &Step::C(sc.client.clone()));
    r.step(2, &Step::S(sc.server.clone()));
    assert_eq!(r.sink.events, expected);
    // Everything is released once the pipeline drains.
    let core = &r.session.core;
    assert!(core.pending.is_empty() && core.tx.is_empty());
    assert!(r.session.mem() < 1 << 20, "{}", r.session.mem());
}

/// Every feature in one conversation; the events must not depend on how the streams are cut.
fn mixed_script() -> Script {
    let mut sc = Script::new();
    let mut n = 0;
    let mut cmd = |sc: &mut Script, args: &[&str]| {
        sc.cmd(args);
        n += 1;
        n
    };
    let k = cmd(&mut sc, &["SET", "a", "1"]);
    sc.reply("+OK\r\n", k);
    cmd(&mut sc, &["CLIENT", "REPLY", "SKIP"]);
    cmd(&mut sc, &["SET", "b", "2"]);
    let k = cmd(&mut sc, &["MULTI"]);
    sc.reply("+OK\r\n", k);
    let k = cmd(&mut sc, &["INCR", "a"]);
    sc.reply("+QUEUED\r\n", k);
    let k = cmd(&mut sc, &["EXEC"]);
    sc.reply("*1\r\n:2\r\n", k);
    let k = cmd(&mut sc, &["SUBSCRIBE", "c1", "c2"]);
    sc.reply(&conf('*', "subscribe", Some("c1"), 1), k);
    sc.reply(&conf('*', "subscribe", Some("c2"), 2), k);
    sc.reply(&msg('*', "c1", "payload"), k);
    let k = cmd(&mut sc, &["PING", "x"]);
    sc.reply("*2\r\n$4\r\npong\r\n$1\r\nx\r\n", k);
    let k = cmd(&mut sc, &["UNSUBSCRIBE"]);
    sc.reply(&conf('*', "unsubscribe", Some("c1"), 1), k);
    sc.reply(&conf('*', "unsubscribe", Some("c2"), 0), k);
    let k = cmd(&mut sc, &["HELLO", "3"]);
    sc.reply(&hello3_reply(), k);
    let k = cmd(&mut sc, &["GET", "a"]);
    sc.reply(">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n", k - 1);
    sc.reply("$1\r\n2\r\n", k);
    sc
}

/// Records of commands answered by design are written when the command is seen, so where they
/// land among the others depends on how the streams interleave: compare them apart.
fn split_no_reply(events: Vec<String>) -> (Vec<String>, Vec<String>) {
    events.into_iter().partition(|e| !e.contains(" no_reply "))
}

#[test]
fn mixed_conversation_events() {
    let (paired, silent) = split_no_reply(mixed_script().feed(&mut Rng(7), 1 << 20).sink.events);
    assert_eq!(
        silent,
        ["CLIENT REPLY [SKIP] no_reply -", "SET [b 2] no_reply -"]
    );
    assert_eq!(
        paired,
        [
            "SET [a 1] ok simple:OK",
            "MULTI [] ok simple:OK",
            "INCR [a] ok integer:2 tx",
            "EXEC [] ok array(1)",
            "SUBSCRIBE [c1 c2] ok array(3)",
            "push array [message c1 payload]",
            "PING [x] ok array(2)",
            "UNSUBSCRIBE [] ok array(3)",
            "HELLO [3] ok map(7)",
            "push push [invalidate array(1)]",
            "GET [a] ok bulk:2",
        ]
    );
}

proptest::proptest! {
    #[test]
    fn segmentation_does_not_change_events(seed in 1u64.., max_chunk in 1u64..64) {
        let sc = mixed_script();
        let whole = split_no_reply(sc.feed(&mut Rng(1), 1 << 20).sink.events);
        let cut = split_no_reply(sc.feed(&mut Rng(seed), max_chunk).sink.events);
        proptest::prop_assert_eq!(whole, cut);
    }

    /// Any mix of commands, replies, pushes, gaps and garbage: never a panic, and never more
    /// records than commands.
    #[test]
    fn arbitrary_traffic_never_panics(
        steps in proptest::collection::vec((0usize..FRAGMENTS.len(), 0u8..4, 1u64..5), 0..64),
        mid_stream: bool,
    ) {
        let limits = SessionLimits { max_pending: 4, ..SessionLimits::default() };
        let mut r = run_with(&limits, mid_stream, &[]);
        let mut commands = 0;
        for (i, &(f, how, n)) in steps.iter().enumerate() {
            let frag = FRAGMENTS[f].as_bytes().to_vec();
            let step = match how {
                0 => {
                    commands += frag.iter().filter(|&&b| b == b'\n').count();
                    Step::C(frag)
                }
                1 | 2 => Step::S(frag),
                _ if f % 2 == 0 => Step::CMiss(n),
                _ => Step::SMiss(n),
            };
            r.step(i as u64 * 100, &step);
        }
        r.step(u64::MAX, &Step::Close);
        proptest::prop_assert!(r.sink.recs.len() <= commands);
        proptest::prop_assert!(r.session.mem() < 1 << 20);
    }
}

/// Building blocks for the fuzz-style property above: whole and partial frames of both sides.
const FRAGMENTS: &[&str] = &[
    "*2\r\n$3\r\nGET\r\n$1\r\na\r\n",
    "*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n",
    "*1\r\n$11\r\nUNSUBSCRIBE\r\n",
    "*1\r\n$5\r\nMULTI\r\n",
    "*1\r\n$4\r\nEXEC\r\n",
    "*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n",
    "*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$4\r\nSKIP\r\n",
    "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n",
    "RESET\r\nMONITOR\r\nQUIT\r\n",
    "*2\r\n$3\r",
    "+OK\r\n",
    "+QUEUED\r\n",
    "$1\r\n1\r\n",
    "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n",
    ">3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
    "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nx\r\n",
    ">2\r\n$10\r\ninvalidate\r\n_\r\n",
    "-EXECABORT Transaction discarded\r\n",
    "*-1\r\n",
    "%1\r\n$5\r\nproto\r\n:3\r\n",
    "+1700000000.1 [0 lua] \"ping\"\r\n",
    "\x00\x16garbage\r\n",
];

// ------------------------------------------------------------------------------------------------
// Replication links

const REPLID: &str = "8f2a9c1e5b7d3f6a0c4e8b2d6f1a3c5e7b9d0f2a";

/// A propagated command (multibulk, as the master streams it).
fn prop(cmd: &str) -> String {
    String::from_utf8(multibulk(&cmd.split(' ').collect::<Vec<_>>())).unwrap()
}

/// The replica's handshake up to PSYNC, answered.
fn handshake() -> Vec<Step> {
    vec![
        c("PING"),
        s("+PONG\r\n"),
        c("REPLCONF listening-port 6380"),
        c("REPLCONF capa eof capa psync2"),
        s("+OK\r\n+OK\r\n"),
        c(&format!("PSYNC {REPLID} -1")),
    ]
}

fn handshake_events() -> Vec<String> {
    [
        "PING [] ok simple:PONG",
        "REPLCONF [listening-port 6380] ok simple:OK",
        "REPLCONF [capa eof capa psync2] ok simple:OK",
    ]
    .map(String::from)
    .to_vec()
}

/// What a master sends after PSYNC for a full sync: keepalives, the answer, an RDB of `rdb`
/// (disk form: no CRLF after it; diskless: between two marks), then `stream`.
fn full_sync(rdb: &[u8], diskless: bool, offset: u64, stream: &str) -> Vec<u8> {
    let mut out = b"\n\n".to_vec();
    out.extend_from_slice(format!("+FULLRESYNC {REPLID} {offset}\r\n\n").as_bytes());
    let mark = "0123456789abcdef0123456789abcdef01234567";
    if diskless {
        out.extend_from_slice(format!("$EOF:{mark}\r\n").as_bytes());
        out.extend_from_slice(rdb);
        out.extend_from_slice(mark.as_bytes());
    } else {
        out.extend_from_slice(format!("${}\r\n", rdb.len()).as_bytes());
        out.extend_from_slice(rdb);
    }
    out.extend_from_slice(stream.as_bytes());
    out
}

/// An RDB-looking payload full of things that look like RESP and like the mark's start.
fn rdb_payload() -> Vec<u8> {
    let mut v = b"REDIS0010\xfa\tredis-ver\x067.0.15".to_vec();
    v.extend_from_slice(b"\r\n+OK\r\n*3\r\n$3\r\nSET\r\n\n\n$EOF:0123456789abcdef0123");
    v.extend((0..=255u8).cycle().take(3000));
    v.extend_from_slice(b"\xff\x01\x02\x03\x04\x05\x06\x07\x08");
    v
}

fn stream_body() -> String {
    [
        prop("SELECT 0"),
        prop("SET a 1"),
        prop("PEXPIREAT a 1700000000000"),
        "\n".to_string(),
        prop("MULTI"),
        prop("INCR c"),
        prop("EXEC"),
        prop("SELECT 1"),
        prop("SET b 2"),
        prop("PING"),
        prop("REPLCONF GETACK *"),
    ]
    .concat()
}

/// Steps of a whole full sync whose server side after PSYNC is cut into `parts`.
fn full_sync_steps(diskless: bool, cut: impl Fn(&[u8]) -> Vec<Vec<u8>>) -> (Vec<Step>, u64) {
    let body = stream_body();
    let streamed = (body.len() - 1) as u64; // the keepalive is not in the offset
    let server = full_sync(&rdb_payload(), diskless, 1000, &body);
    let mut steps = handshake();
    steps.extend(cut(&server).into_iter().map(Step::S));
    steps.push(raw("\n"));
    steps.push(c(&format!("REPLCONF ACK {} FACK 0", 1000 + streamed - 5)));
    steps.push(c(&format!("REPLCONF ACK {}", 1000 + streamed)));
    steps.push(Step::Close);
    (steps, streamed)
}

fn full_sync_expected(diskless: bool, streamed: u64) -> Vec<String> {
    let r = "10.0.0.1:6380";
    let mut e = handshake_events();
    e.push(format!(
        "PSYNC [{REPLID} -1] ok simple:FULLRESYNC {REPLID} 1000"
    ));
    e.push(format!("repl {r} Up(Full)"));
    e.push(format!(
        "repl {r} Rdb {{ bytes: {}, duration_ns: DUR }}",
        rdb_payload().len()
    ));
    e.push(format!(
        "repl {r} Stream {{ commands: 10, bytes: {streamed}, offset: Some({}), lag: None }}",
        1000 + streamed
    ));
    let _ = diskless;
    e.push(format!(
        "repl {r} Ack {{ offset: {}, lag: Some(5) }}",
        1000 + streamed - 5
    ));
    e.push(format!(
        "REPLCONF [ACK {} FACK 0] no_reply -",
        1000 + streamed - 5
    ));
    e.push(format!(
        "repl {r} Ack {{ offset: {}, lag: Some(0) }}",
        1000 + streamed
    ));
    e.push(format!("REPLCONF [ACK {}] no_reply -", 1000 + streamed));
    e.push(format!("repl {r} Down"));
    e
}

/// Stream events summed and durations blanked, so that any segmentation compares equal.
fn normalized(events: Vec<String>) -> Vec<String> {
    normalized_for(events, "10.0.0.1:6380")
}

/// [`normalized`] for the link of `replica`.
fn normalized_for(events: Vec<String>, replica: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let (mut cmds, mut bytes, mut last) = (0u64, 0u64, String::new());
    let prefix = format!("repl {replica} Stream {{ commands: ");
    let flush = |out: &mut Vec<String>, cmds: &mut u64, bytes: &mut u64, last: &mut String| {
        if *cmds > 0 || *bytes > 0 {
            out.push(format!(
                "repl {replica} Stream {{ commands: {cmds}, bytes: {bytes}, offset: {last}"
            ));
            (*cmds, *bytes) = (0, 0);
        }
    };
    for e in events {
        if let Some(rest) = e.strip_prefix(&prefix) {
            let (c, rest) = rest.split_once(", bytes: ").unwrap();
            let (b, rest) = rest.split_once(", offset: ").unwrap();
            cmds += c.parse::<u64>().unwrap();
            bytes += b.parse::<u64>().unwrap();
            last = rest.to_string();
            continue;
        }
        flush(&mut out, &mut cmds, &mut bytes, &mut last);
        let e = match e.split_once("duration_ns: ") {
            Some((a, _)) => format!("{a}duration_ns: DUR }}"),
            None => e,
        };
        out.push(e);
    }
    flush(&mut out, &mut cmds, &mut bytes, &mut last);
    out
}

#[rstest]
fn full_sync_is_not_replies(
    #[values(false, true)] diskless: bool,
    #[values(0, 1, 7, 41, 1000)] piece: usize,
) {
    let cut = |b: &[u8]| -> Vec<Vec<u8>> {
        if piece == 0 {
            vec![b.to_vec()]
        } else {
            b.chunks(piece).map(<[u8]>::to_vec).collect()
        }
    };
    let (steps, streamed) = full_sync_steps(diskless, cut);
    let got = normalized(events(&steps));
    assert_eq!(got, full_sync_expected(diskless, streamed), "piece {piece}");
}

#[test]
fn rdb_size_and_duration() {
    let (mut steps, _) = full_sync_steps(false, |b| {
        // The header and half the RDB in one segment, the rest with the stream in another.
        let at = b.iter().position(|&x| x == b'$').unwrap() + 1500;
        vec![b[..at].to_vec(), b[at..].to_vec()]
    });
    steps.truncate(steps.len() - 4);
    let ev = events(&steps);
    let rdb = ev.iter().find(|e| e.contains("Rdb")).unwrap();
    // Header at step 7 (ts 7000), last RDB byte at step 8 (ts 8000).
    assert!(
        rdb.ends_with(&format!(
            "Rdb {{ bytes: {}, duration_ns: 1000 }}",
            rdb_payload().len()
        )),
        "{rdb}"
    );
}

#[test]
fn continue_resumes_at_the_asked_offset() {
    let mut steps = handshake();
    steps[5] = c(&format!("PSYNC {REPLID} 5001"));
    let body = prop("SET a 1");
    steps.push(s(&format!("+CONTINUE {REPLID}\r\n{body}")));
    steps.push(c("REPLCONF ACK 5000"));
    steps.push(c(&format!("REPLCONF ACK {}", 5000 + body.len())));
    // Streamed since the last ACK: the lag follows the stream.
    steps.push(s(&prop("DEL a")));
    let r = "10.0.0.1:6380";
    let mut want = handshake_events();
    want.extend([
        format!("PSYNC [{REPLID} 5001] ok simple:CONTINUE {REPLID}"),
        format!("repl {r} Up(Partial)"),
        format!(
            "repl {r} Stream {{ commands: 1, bytes: {}, offset: Some({}), lag: None }}",
            body.len(),
            5000 + body.len()
        ),
        format!("repl {r} Ack {{ offset: 5000, lag: Some({}) }}", body.len()),
        "REPLCONF [ACK 5000] no_reply -".to_string(),
        format!(
            "repl {r} Ack {{ offset: {}, lag: Some(0) }}",
            5000 + body.len()
        ),
        format!("REPLCONF [ACK {}] no_reply -", 5000 + body.len()),
        format!("repl {r} Stream {{ commands: 1, bytes: 20, offset: Some(5047), lag: Some(20) }}"),
    ]);
    assert_eq!(events(&steps), want);
}

#[test]
fn psync_refused_is_an_ordinary_reply() {
    let mut steps = handshake();
    steps.push(s(
        "\n-NOMASTERLINK Can't SYNC while not connected with my master\r\n",
    ));
    steps.push(c("PING"));
    steps.push(s("+PONG\r\n"));
    let mut want = handshake_events();
    want.extend([
        format!("PSYNC [{REPLID} -1] error error:NOMASTERLINK Can't SYNC while not connected with my master"),
        "PING [] ok simple:PONG".to_string(),
    ]);
    assert_eq!(events(&steps), want);
}

#[test]
fn sync_stream_is_its_answer() {
    let body = prop("SET a 1");
    let steps = [
        raw("SYNC\r\n"),
        s("\n\n"),
        s(&format!("$3\r\nRDB{body}")),
        raw("\n"),
        Step::Close,
    ];
    let r = "10.0.0.1:50000";
    assert_eq!(
        normalized(events(&steps)),
        vec![
            "SYNC [] ok -".to_string(),
            format!("repl {r} Up(Full)"),
            format!("repl {r} Rdb {{ bytes: 3, duration_ns: DUR }}"),
            format!(
                "repl {r} Stream {{ commands: 1, bytes: {}, offset: None, lag: None }}",
                body.len()
            ),
            format!("repl {r} Down"),
        ]
    );
}

#[test]
fn mid_stream_link_found_by_ack() {
    // Picked up inside a command: the server bytes before the replica's first ACK are dropped,
    // the stream decoder finds the next command boundary.
    let steps = [
        s("a\r\n$1\r\n1\r\n"),
        c("REPLCONF ACK 77 FACK 0"),
        s(&format!("1\r\n{}\n{}", prop("SET b 2"), prop("DEL b"))),
        c("REPLCONF ACK 99"),
        Step::Close,
    ];
    let r = "10.0.0.1:50000";
    assert_eq!(
        run_with(&SessionLimits::default(), true, &steps)
            .sink
            .events,
        vec![
            format!("repl {r} Up(Unknown)"),
            format!("repl {r} Ack {{ offset: 77, lag: None }}"),
            "REPLCONF [ACK 77 FACK 0] no_reply -".to_string(),
            format!("repl {r} Stream {{ commands: 2, bytes: 47, offset: None, lag: None }}"),
            format!("repl {r} Ack {{ offset: 99, lag: None }}"),
            "REPLCONF [ACK 99] no_reply -".to_string(),
            format!("repl {r} Down"),
        ]
    );
}

#[test]
fn mid_stream_link_found_by_propagated_commands() {
    // No handshake seen, no ACK yet: commands coming from the server with nothing pending.
    let steps = [
        s(&format!("{}{}", prop("SET a 1"), prop("INCR n"))),
        s(&format!("\n{}", prop("DEL a"))),
        c("REPLCONF ACK 10"),
    ];
    let r = "10.0.0.1:50000";
    assert_eq!(
        events(&steps),
        vec![
            format!("repl {r} Up(Unknown)"),
            format!("repl {r} Stream {{ commands: 1, bytes: 0, offset: None, lag: None }}"),
            format!("repl {r} Stream {{ commands: 1, bytes: 0, offset: None, lag: None }}"),
            format!("repl {r} Stream {{ commands: 1, bytes: 20, offset: None, lag: None }}"),
            format!("repl {r} Ack {{ offset: 10, lag: None }}"),
            "REPLCONF [ACK 10] no_reply -".to_string(),
        ]
    );
}

#[test]
fn replconf_ack_and_getack_get_no_reply() {
    // Redis returns from replconfCommand without a reply at `ack`/`getack`, on any client.
    assert_eq!(
        events(&[
            c("REPLCONF GETACK *"),
            c("REPLCONF listening-port 1"),
            s("+OK\r\n")
        ]),
        vec![
            "REPLCONF [GETACK *] no_reply -",
            "REPLCONF [listening-port 1] ok simple:OK"
        ]
    );
    assert_eq!(
        events(&[c("REPLCONF ACK"), s("-ERR syntax error\r\n")]),
        vec!["REPLCONF [ACK] error error:ERR syntax error"]
    );
}

#[test]
fn rdb_gap_is_skipped_by_length() {
    let mut steps = handshake();
    steps.push(s(&format!("+FULLRESYNC {REPLID} 0\r\n$100000\r\nREDIS")));
    steps.push(Step::SMiss(99_990));
    steps.push(s(&format!("xxxxx{}", prop("SET a 1"))));
    let ev = events(&steps);
    assert!(ev.iter().all(|e| !e.contains("notice")), "{ev:#?}");
    assert!(
        ev.iter().any(|e| e.contains("Rdb { bytes: 100000")),
        "{ev:#?}"
    );
    assert!(
        ev.iter()
            .any(|e| e.contains("Stream { commands: 1, bytes: 27, offset: Some(27)")),
        "{ev:#?}"
    );
}

#[test]
fn refused_while_the_request_is_still_arriving() {
    // Redis gave up on an inline line after 64 KiB (it read it in small pieces); its reply comes
    // before the line's end, which then arrives but never runs.
    let head = format!("PING\r\nSET k {}", "v".repeat(70_000));
    let got = events(&[
        raw(&head),
        s("+PONG\r\n-ERR Protocol error: too big inline request\r\n"),
        raw("vvvv\r\nGET k\r\n"),
        Step::Close,
    ]);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], "PING [] ok simple:PONG");
    assert!(
        got[1].starts_with("SET [k vvvv")
            && got[1].ends_with("] error error:ERR Protocol error: too big inline request refused"),
        "{got:?}"
    );
    // A protocol-error text with nothing arriving is an orphan reply as before.
    let got = events(&[s("-ERR Protocol error: too big inline request\r\n")]);
    assert_eq!(got, vec!["notice OrphanReply"]);
}

/// Fuzz finding (session): a multibulk count line refused for its length (`*` and no `\r` within
/// the line limit) was logged with no request bytes.
#[test]
fn refused_count_line_has_its_bytes() {
    let resp = crate::resp::Limits {
        max_line: 4,
        max_request_args: 2,
        max_bulk: 4,
        max_depth: 1,
        keep_args: 0,
        keep_arg_bytes: 0,
        keep_reply_bytes: 0,
        keep_children: 0,
    };
    let lim = SessionLimits {
        resp,
        ..SessionLimits::default()
    };
    let bytes = b"*\n\x00\r$omHELP.\r\n\xf8'\x00*3\rgoal\r\n\xf9\x04\x00:1\r\n".to_vec();
    let r = run_with(&lim, false, &[Step::C(bytes.clone()), Step::Close]);
    assert_eq!(
        r.sink.events,
        [" [] error error:ERR Protocol error: too big mbulk count string refused"]
    );
    assert_eq!(r.sink.recs[0].req_bytes, bytes.len() as u64);
}

// ------------------------------------------------------------------------------------------------
// Redis 8: full sync through an RDB channel

/// The replica's two connections in the capture `tests/data/replication/redis-8.2-rdb-channel.pcap`
/// (Redis 8.2.3, diskless master, `rdb-key-save-delay` slowing the RDB): (main channel?, client
/// bytes?, µs since the capture's start, bytes), in capture order.
const RDB_CHANNEL_SYNC: &[(bool, bool, u64, &[u8])] = &[
    (true, true, 455371, b"*1\r\n$4\r\nPING\r\n"),
    (true, false, 455480, b"+PONG\r\n"),
    (
        true,
        true,
        455502,
        b"*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$5\r\n17003\r\n",
    ),
    (true, false, 455520, b"+OK\r\n"),
    (
        true,
        true,
        455524,
        b"*7\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n$\
          4\r\ncapa\r\n$16\r\nrdb-channel-repl\r\n",
    ),
    (true, false, 455530, b"+OK\r\n"),
    (
        true,
        true,
        455548,
        b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n",
    ),
    (true, false, 455587, b"+RDBCHANNELSYNC 15\r\n"),
    (
        false,
        true,
        455669,
        b"*11\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$8\r\nrdb-only\r\n$1\r\n1\r\n$\
          11\r\nrdb-channel\r\n$1\r\n1\r\n$17\r\nmain-ch-client-id\r\n$2\r\n15\r\n$14\r\nlis\
          tening-port\r\n$5\r\n17003\r\n",
    ),
    (false, false, 455695, b"+OK\r\n"),
    (
        false,
        true,
        455706,
        b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n",
    ),
    (
        false,
        false,
        455733,
        b"+FULLRESYNC 21d8e4dd20a610ea617ba28535e327aafcbdfc92 55\r\n",
    ),
    (
        true,
        false,
        861999,
        b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nset\r\n$7\r\nduring1\r\n$1\r\nx\r\n",
    ),
    (
        true,
        false,
        1272900,
        b"*2\r\n$4\r\nincr\r\n$7\r\nduring2\r\n",
    ),
    (
        false,
        false,
        2257902,
        b"$EOF:cf20b4a3acec8eb0fa91bca37e314b1759b58a04\r\nREDIS0012\xfa\tredis-ver\x058.2.3\
          \xfa\nredis-bits\xc0@\xfa\x05ctime\xc2\x1d\x1c\x17k\xfa\x08used-mem\xc2X\x80\r\x00\
          \xfa\x0erepl-stream-db\xc0\x00\xfa\x07repl-id(21d8e4dd20a610ea617ba28535e327aafcbd\
          fc92\xfa\x0brepl-offset\xc07\xfa\x08aof-base\xc0\x00\xfe\x00\xfb\x06\x00\x00\x04ke\
          y3\x06value3\x00\x04key5\x06value5\x00\x04key1\x06value1\x00\x04key2\x06value2\x00\
          \x04key4\x06value4\x00\x06before\xc0\x01\xff\xbe\xa0(\xfe5\xa2\x85Pcf20b4a3acec8eb\
          0fa91bca37e314b1759b58a04",
    ),
    (
        true,
        true,
        2261702,
        b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$2\r\n55\r\n",
    ),
    (
        true,
        true,
        2465800,
        b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$3\r\n138\r\n",
    ),
    (
        true,
        true,
        3469829,
        b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$3\r\n138\r\n",
    ),
    (
        true,
        false,
        3710342,
        b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$1\r\n1\r\n*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$\
          1\r\n*\r\n",
    ),
    (
        true,
        true,
        3710486,
        b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$3\r\n165\r\n",
    ),
];

/// Both connections fed in capture order; their notes joined by an [`RdbChannels`] table as
/// the pipeline does. Returns the main channel's and the RDB channel's events.
fn rdb_channel_run(steps: &[(bool, bool, u64, &[u8])]) -> (Vec<String>, Vec<String>) {
    rdb_channel_run_losing(steps, None)
}

/// [`rdb_channel_run`], the bytes of step `lose` not captured.
fn rdb_channel_run_losing(
    steps: &[(bool, bool, u64, &[u8])],
    lose: Option<usize>,
) -> (Vec<String>, Vec<String>) {
    let server = addr("127.0.0.1:17001");
    let limits = SessionLimits::default();
    let conn = |client: &str| Run {
        session: Session::new(ConnMeta::new(addr(client), server), &limits, false),
        sink: Collect::default(),
    };
    let (mut main, mut rdb) = (conn("127.0.0.1:57272"), conn("127.0.0.1:57280"));
    let mut table = RdbChannels::default();
    let mut last = 0;
    for (i, &(is_main, client, us, bytes)) in steps.iter().enumerate() {
        last = us * 1000;
        let step = match (client, lose == Some(i)) {
            (true, false) => Step::C(bytes.to_vec()),
            (false, false) => Step::S(bytes.to_vec()),
            (true, true) => Step::CMiss(bytes.len() as u64),
            (false, true) => Step::SMiss(bytes.len() as u64),
        };
        let (run, key) = if is_main {
            (&mut main, "main")
        } else {
            (&mut rdb, "rdb")
        };
        run.step(last, &step);
        if let Some(note) = run.session.take_rdb_channel_note()
            && let Some(j) = table.note(server, key, note, last)
        {
            assert_eq!(j.main, "main");
            main.session
                .rdb_channel_offset(j.id, j.offset, &mut main.sink);
        }
    }
    assert!(table.is_empty(), "{table:?}");
    main.step(last + 1, &Step::Close);
    rdb.step(last + 1, &Step::Close);
    (main.sink.events, rdb.sink.events)
}

const R: &str = "repl 127.0.0.1:17003";

/// The main channel's events in the capture: the link starts at `+RDBCHANNELSYNC` and learns
/// at the RDB channel's `+FULLRESYNC` that its stream starts at offset 55, which the master's
/// `master_repl_offset` (202 at the end) confirms.
fn rdb_channel_main_events() -> Vec<String> {
    [
        "PING [] ok simple:PONG",
        "REPLCONF [listening-port 17003] ok simple:OK",
        "REPLCONF [capa eof capa psync2 capa rdb-channel-repl] ok simple:OK",
        "PSYNC [? -1] ok simple:RDBCHANNELSYNC 15",
        &format!("{R} Up(MainChannel)"),
        &format!("{R} Stream {{ commands: 0, bytes: 0, offset: Some(55), lag: None }}"),
        &format!("{R} Stream {{ commands: 2, bytes: 56, offset: Some(111), lag: None }}"),
        &format!("{R} Stream {{ commands: 1, bytes: 27, offset: Some(138), lag: None }}"),
        &format!("{R} Ack {{ offset: 55, lag: Some(83) }}"),
        "REPLCONF [ACK 55] no_reply -",
        &format!("{R} Ack {{ offset: 138, lag: Some(0) }}"),
        "REPLCONF [ACK 138] no_reply -",
        &format!("{R} Ack {{ offset: 138, lag: Some(0) }}"),
        "REPLCONF [ACK 138] no_reply -",
        &format!("{R} Stream {{ commands: 2, bytes: 64, offset: Some(202), lag: Some(64) }}"),
        &format!("{R} Ack {{ offset: 165, lag: Some(37) }}"),
        "REPLCONF [ACK 165] no_reply -",
        &format!("{R} Down"),
    ]
    .map(String::from)
    .to_vec()
}

/// The RDB channel: one REPLCONF and PSYNC, the full sync and its RDB (338 bytes on the wire:
/// `$EOF:<mark>\r\n`, 251 bytes of RDB, the mark), no link of its own (no `Down`).
fn rdb_channel_rdb_events() -> Vec<String> {
    [
        "REPLCONF [capa eof rdb-only 1 rdb-channel 1 main-ch-client-id 15 listening-port 17003] \
         ok simple:OK",
        "PSYNC [? -1] ok simple:FULLRESYNC 21d8e4dd20a610ea617ba28535e327aafcbdfc92 55",
        &format!("{R} Up(RdbChannel)"),
        &format!("{R} Rdb {{ bytes: 251, duration_ns: 0 }}"),
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn rdb_channel_sync_from_redis_8_2() {
    let (main, rdb) = rdb_channel_run(RDB_CHANNEL_SYNC);
    assert_eq!(main, rdb_channel_main_events());
    assert_eq!(rdb, rdb_channel_rdb_events());
}

/// The same bytes cut into pieces of every size: the same counts, offsets and lags.
#[rstest]
fn rdb_channel_sync_any_segmentation(#[values(1, 2, 7, 41, 200)] piece: usize) {
    let cut: Vec<(bool, bool, u64, &[u8])> = RDB_CHANNEL_SYNC
        .iter()
        .flat_map(|&(m, c, us, b)| b.chunks(piece).map(move |p| (m, c, us, p)))
        .collect();
    let (main, rdb) = rdb_channel_run(&cut);
    let replica = "127.0.0.1:17003";
    assert_eq!(
        normalized_for(main, replica),
        normalized_for(rdb_channel_main_events(), replica),
        "piece {piece}"
    );
    assert_eq!(rdb, rdb_channel_rdb_events(), "piece {piece}");
}

/// A gap in the main channel's stream before its offset is known: the offset it would learn
/// no longer adds up, so none is shown (nor a lag).
#[test]
fn rdb_channel_gap_before_the_offset() {
    let mut steps: Vec<(bool, bool, u64, &[u8])> = RDB_CHANNEL_SYNC.to_vec();
    // Move the RDB channel's +FULLRESYNC after the main channel's propagated INCR, and lose
    // the INCR.
    let full = steps
        .iter()
        .position(|s| s.3.starts_with(b"+FULLRESYNC"))
        .unwrap();
    let fr = steps.remove(full);
    let incr = steps
        .iter()
        .position(|s| s.3.starts_with(b"*2\r\n$4\r\nincr"))
        .unwrap();
    steps.insert(incr + 1, fr);
    let (main, rdb) = rdb_channel_run_losing(&steps, Some(incr));
    assert_eq!(rdb, rdb_channel_rdb_events());
    assert_eq!(
        main.iter().filter(|e| e.starts_with("notice")).count(),
        1,
        "the gap is a desync: {main:#?}"
    );
    let shown: Vec<&String> = main
        .iter()
        .filter(|e| e.contains("offset: Some") || e.contains("lag: Some"))
        .collect();
    assert!(shown.is_empty(), "{shown:#?}");
}

/// A Valkey 8.1.8 dual-channel full sync (`dual-channel-replication-enabled yes` on both), as
/// captured on loopback, in the same form as [`RDB_CHANNEL_SYNC`]: the main connection, then
/// the RDB channel (`SYNC`, `$ENDOFF:`, the RDB), then PSYNC `+CONTINUE` on the main one.
const VALKEY_DUAL_CHANNEL_SYNC: &[(bool, bool, u64, &[u8])] = &[
    (true, true, 75, b"*1\r\n$4\r\nPING\r\n"),
    (true, false, 177, b"+PONG\r\n"),
    (
        true,
        true,
        200,
        b"*3\r\n$8\r\nREPLCONF\r\n$14\r\nlistening-port\r\n$5\r\n17032\r\n",
    ),
    (true, false, 228, b"+OK\r\n"),
    (
        true,
        true,
        238,
        b"*7\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$4\r\ncapa\r\n$6\r\npsync2\r\n$\
          4\r\ncapa\r\n$12\r\ndual-channel\r\n",
    ),
    (true, false, 252, b"+OK\r\n"),
    (
        true,
        true,
        255,
        b"*3\r\n$8\r\nREPLCONF\r\n$7\r\nversion\r\n$5\r\n8.1.8\r\n",
    ),
    (true, false, 267, b"+OK\r\n"),
    (
        true,
        true,
        282,
        b"*3\r\n$5\r\nPSYNC\r\n$1\r\n?\r\n$2\r\n-1\r\n",
    ),
    (true, false, 313, b"+DUALCHANNELSYNC\r\n"),
    (
        false,
        true,
        414,
        b"*9\r\n$8\r\nREPLCONF\r\n$4\r\ncapa\r\n$3\r\neof\r\n$8\r\nrdb-only\r\n$1\r\n1\r\n$1\
          1\r\nrdb-channel\r\n$1\r\n1\r\n$14\r\nlistening-port\r\n$5\r\n17032\r\n",
    ),
    (false, false, 425, b"+OK\r\n"),
    (false, true, 435, b"SYNC\r\n"),
    (
        false,
        false,
        469,
        b"$ENDOFF:0 30a4997c297413cb4746616deceb54b7609cde21 0 7\r\n",
    ),
    (
        true,
        true,
        826,
        b"*3\r\n$8\r\nREPLCONF\r\n$17\r\nset-rdb-client-id\r\n$1\r\n7\r\n",
    ),
    (
        false,
        false,
        1411,
        b"$EOF:fb05c441e3582e5ba0720a5782d80a7bc8f45e43\r\nREDIS0011\xfa\nvalkey-ver\x058.1.\
          8\xfa\nredis-bits\xc0@\xfa\x05ctime\xc2\xc8 \x17k\xfa\x08used-mem\xc2\xb8\x18\x11\
          \x00\xfa\x0erepl-stream-db\xc0\x00\xfa\x07repl-id(30a4997c297413cb4746616deceb54b7\
          609cde21\xfa\x0brepl-offset\xc0\x00\xfa\x08aof-base\xc0\x00\xfe\x00\xfb\x03\x00\
          \x00\x02k1\x01v\x00\x02k2\x01v\x00\x02k3\x01v\xff\xbb6I\xd61\x03T\xa7fb05c441e3582\
          e5ba0720a5782d80a7bc8f45e43",
    ),
    (true, false, 1658, b"+OK\r\n"),
    (
        true,
        true,
        5077,
        b"*3\r\n$5\r\nPSYNC\r\n$40\r\n30a4997c297413cb4746616deceb54b7609cde21\r\n$1\r\n1\r\
          \n",
    ),
    (
        true,
        false,
        5176,
        b"+CONTINUE 30a4997c297413cb4746616deceb54b7609cde21\r\n",
    ),
    (
        true,
        true,
        5481,
        b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$1\r\n0\r\n",
    ),
    (
        true,
        true,
        1003264,
        b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n$1\r\n0\r\n",
    ),
    (
        true,
        false,
        1516885,
        b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nset\r\n$5\r\nafter\r\n$1\r\n1\r\n",
    ),
];

/// Valkey's dual channel: the RDB channel skips the `$ENDOFF:` line, counts the full sync and
/// its RDB, and is no link; the main connection's link starts at `+CONTINUE`, offset known.
#[test]
fn valkey_dual_channel_sync() {
    let (main, rdb) = rdb_channel_run(VALKEY_DUAL_CHANNEL_SYNC);
    let r = "repl 127.0.0.1:17032";
    let replid = "30a4997c297413cb4746616deceb54b7609cde21";
    assert_eq!(
        main,
        [
            "PING [] ok simple:PONG",
            "REPLCONF [listening-port 17032] ok simple:OK",
            "REPLCONF [capa eof capa psync2 capa dual-channel] ok simple:OK",
            "REPLCONF [version 8.1.8] ok simple:OK",
            "PSYNC [? -1] ok simple:DUALCHANNELSYNC",
            "REPLCONF [set-rdb-client-id 7] ok simple:OK",
            &format!("PSYNC [{replid} 1] ok simple:CONTINUE {replid}"),
            &format!("{r} Up(Partial)"),
            &format!("{r} Ack {{ offset: 0, lag: Some(0) }}"),
            "REPLCONF [ACK 0] no_reply -",
            &format!("{r} Ack {{ offset: 0, lag: Some(0) }}"),
            "REPLCONF [ACK 0] no_reply -",
            &format!("{r} Stream {{ commands: 2, bytes: 54, offset: Some(54), lag: Some(54) }}"),
            &format!("{r} Down"),
        ]
        .map(String::from)
    );
    assert_eq!(
        rdb,
        [
            "REPLCONF [capa eof rdb-only 1 rdb-channel 1 listening-port 17032] ok simple:OK",
            "SYNC [] ok -",
            &format!("{r} Up(RdbChannel)"),
            &format!("{r} Rdb {{ bytes: 195, duration_ns: 0 }}"),
        ]
        .map(String::from)
    );
}
