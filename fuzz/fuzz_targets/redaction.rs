//! The redaction layer: conversations in which a secret token sits only where the redaction
//! table says a secret is (AUTH, HELLO … AUTH, CONFIG SET requirepass, ACL SETUSER rules and
//! selectors, MIGRATE AUTH/AUTH2, Sentinel's auth-pass and sentinel-pass, wrapped in COMMAND
//! GETKEYS / ACL DRYRUN), in any case, multibulk or inline, pipelined or not, answered by errors
//! that echo it or replies that hold it (CONFIG GET, ACL GETUSER), seen through MONITOR lines,
//! with missing byte runs anywhere on either side and any keep limits. Every record, push and
//! notice is rendered in JSON and text: the token (its marker, any case) never appears.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use redis_observer::{
    command_log::{Format, NoticeLine, Renderer},
    conn::ConnMeta,
    record::{CommandRecord, Notice, Sink},
    resp::Reply,
    session::{Session, SessionLimits},
};
use redis_observer_fuzz::{Rd, limits, parsed_input};

/// Every token starts with it; nothing else the target generates contains it (any case).
const MARKER: &[u8] = b"qz7";

/// `{}` is the token.
const TEMPLATES: [&[&str]; 20] = [
    &["AUTH", "{}"],
    &["AUTH", "user", "{}"],
    &["AUTH", "user", "{}", "extra"],
    &["HELLO", "3", "AUTH", "user", "{}"],
    &["HELLO", "AUTH", "user", "{}"],
    &["HELLO", "4", "AUTH", "user", "{}", "SETNAME", "x"],
    &["CONFIG", "SET", "requirepass", "{}"],
    &["CONFIG", "SET", "maxmemory", "1", "masterauth", "{}"],
    &["ACL", "SETUSER", "alice", "on", ">{}"],
    &["ACL", "SETUSER", "alice", "<{}", "#{}", "!{}"],
    &["ACL", "SETUSER", "alice", "(>{} ~k)", "(~x +get)"],
    &["ACL", "SETUSR", "alice", ">{}"],
    &["MIGRATE", "h", "1", "", "0", "5", "AUTH", "{}", "KEYS", "k"],
    &[
        "MIGRATE", "h", "1", "k", "0", "5", "COPY", "AUTH2", "u", "{}",
    ],
    &["SENTINEL", "SET", "m", "auth-pass", "{}"],
    &["SENTINEL", "SET", "m", "quorum", "2", "auth-user", "{}"],
    &["SENTINEL", "CONFIG", "SET", "sentinel-pass", "{}"],
    &["COMMAND", "GETKEYS", "AUTH", "{}"],
    &["ACL", "DRYRUN", "u", "HELLO", "3", "AUTH", "u", "{}"],
    &["CONFIG", "GET", "*"],
];

#[derive(Debug)]
enum Step {
    Client(Vec<u8>),
    Server(Vec<u8>),
    ClientMissing(u64),
    ServerMissing(u64),
}

#[derive(Debug)]
struct Input {
    mid_stream: bool,
    preset: u8,
    steps: Vec<Step>,
}

/// Redis's sdscatrepr quoting, as in MONITOR lines.
fn repr(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'\\' | b'"' => out.extend_from_slice(&[b'\\', c]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x20..=0x7e => out.push(c),
            _ => out.extend_from_slice(format!("\\x{c:02x}").as_bytes()),
        }
    }
    out.push(b'"');
}

fn multibulk(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Pushes `bytes` as steps, maybe with a run of them reported missing instead.
fn add(steps: &mut Vec<Step>, bytes: Vec<u8>, client: bool, cut: Option<(usize, usize)>) {
    let wrap = |b: Vec<u8>| {
        if client {
            Step::Client(b)
        } else {
            Step::Server(b)
        }
    };
    match cut {
        Some((at, n)) if !bytes.is_empty() => {
            let at = at % bytes.len();
            let end = (at + n.max(1)).min(bytes.len());
            steps.push(wrap(bytes[..at].to_vec()));
            let miss = (end - at) as u64;
            steps.push(if client {
                Step::ClientMissing(miss)
            } else {
                Step::ServerMissing(miss)
            });
            steps.push(wrap(bytes[end..].to_vec()));
        }
        _ => steps.push(wrap(bytes)),
    }
}

impl Input {
    /// Layout: flags (bit 0 mid-stream, bits 1-2 limits preset, bit 3 MONITOR, bit 4 pipelined),
    /// then per command: template, variant (bit 0 inline, bit 1 lower case, bits 2-3 reply kind,
    /// bit 4 client gap, bit 5 server gap), gap position and length, token length.
    fn parse(b: &[u8]) -> Self {
        let mut r = Rd(b);
        let flags = r.u8();
        let monitor = flags & 8 != 0;
        let pipelined = flags & 16 != 0;
        let mut steps = Vec::new();
        let mut replies = Vec::new();
        if monitor {
            steps.push(Step::Client(b"*1\r\n$7\r\nMONITOR\r\n".to_vec()));
            steps.push(Step::Server(b"+OK\r\n".to_vec()));
        }
        let mut n = 0;
        while !r.is_empty() && n < 32 {
            n += 1;
            let t = TEMPLATES[usize::from(r.u8()) % TEMPLATES.len()];
            let v = r.u8();
            let (pos, len) = (usize::from(r.u16()), usize::from(r.u8()));
            let tok_len = usize::from(r.u8() % 9);
            let mut token = MARKER.to_vec();
            token.extend((0..tok_len).map(|i| b'a' + (i as u8 * 7 + n as u8) % 26));
            if v & 1 != 0 {
                token[0] = b'Q';
            }
            let args: Vec<Vec<u8>> = t
                .iter()
                .map(|w| {
                    let mut a = w.replace("{}", std::str::from_utf8(&token).unwrap_or("qz7"));
                    if v & 2 != 0 {
                        a = a.to_lowercase();
                    }
                    a.into_bytes()
                })
                .collect();
            let client_cut = (v & 16 != 0).then_some((pos, len));
            let server_cut = (v & 32 != 0).then_some((pos / 3, len));
            if monitor {
                // The server's MONITOR line for it (a client elsewhere sent it).
                let mut line = b"+1700000000.123456 [0 10.0.0.9:5000]".to_vec();
                for a in &args {
                    line.push(b' ');
                    repr(&mut line, a);
                }
                line.extend_from_slice(b"\r\n");
                add(&mut steps, line, false, server_cut);
                continue;
            }
            let inline_ok = args.iter().all(|a| !a.is_empty() && !a.contains(&b' '));
            let req = if v & 1 != 0 && inline_ok {
                let mut l = args.join(&b' ');
                l.extend_from_slice(b"\r\n");
                l
            } else {
                multibulk(&args)
            };
            add(&mut steps, req, true, client_cut);
            let tok = String::from_utf8_lossy(&token).into_owned();
            // A server echoes only what was sent: no token, no echo.
            let holds_token = t.iter().any(|w| w.contains("{}"));
            let kind = match (v >> 2) & 3 {
                1 | 3 if !holds_token => 0,
                k => k,
            };
            let reply = match kind {
                0 => b"+OK\r\n".to_vec(),
                1 => format!("-ERR Error in ACL SETUSER modifier '>{tok}': Syntax error\r\n")
                    .into_bytes(),
                2 => {
                    format!("*2\r\n$11\r\nrequirepass\r\n${}\r\n{tok}\r\n", tok.len()).into_bytes()
                }
                _ => format!(
                    "-ERR unknown command '{}', with args beginning with: '{tok}'\r\n",
                    t[0]
                )
                .into_bytes(),
            };
            if pipelined {
                replies.push((reply, server_cut));
            } else {
                add(&mut steps, reply, false, server_cut);
            }
        }
        for (reply, cut) in replies {
            add(&mut steps, reply, false, cut);
        }
        Input {
            mid_stream: flags & 1 != 0,
            preset: (flags >> 1) & 3,
            steps,
        }
    }
}

parsed_input!(Input);

struct Render {
    json: Renderer,
    text: Renderer,
    out: Vec<u8>,
}

impl Render {
    fn check(&mut self) {
        let lower = self.out.to_ascii_lowercase();
        assert!(
            !lower.windows(MARKER.len()).any(|w| w == MARKER),
            "a secret reached the output: {}",
            String::from_utf8_lossy(&self.out)
        );
        self.out.clear();
    }
}

impl Sink for Render {
    fn command(&mut self, rec: &CommandRecord<'_>) {
        self.json.command(rec, &mut self.out);
        self.text.command(rec, &mut self.out);
        self.check();
    }
    fn push(&mut self, conn: &ConnMeta, ts: u64, reply: &Reply) {
        self.json.push(ts, conn, reply, &mut self.out);
        self.text.push(ts, conn, reply, &mut self.out);
        self.check();
    }
    fn notice(&mut self, conn: &ConnMeta, ts: u64, n: Notice) {
        let line = NoticeLine::Pipeline(&n);
        self.json.notice(ts, Some(conn), line, &mut self.out);
        self.text.notice(ts, Some(conn), line, &mut self.out);
        self.check();
    }
}

fuzz_target!(|input: Input| {
    let resp = limits(input.preset);
    let lim = SessionLimits {
        resp,
        ..SessionLimits::default()
    };
    let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let server: SocketAddr = "10.0.0.2:6379".parse().unwrap();
    let mut s = Session::new(ConnMeta::new(client, server), &lim, input.mid_stream);
    let mut sink = Render {
        json: Renderer::new(Format::Json),
        text: Renderer::new(Format::Text),
        out: Vec::new(),
    };
    let mut ts = 1_000_000u64;
    for step in &input.steps {
        ts += 1000;
        match step {
            Step::Client(b) => s.client_bytes(ts, b, &mut sink),
            Step::Server(b) => s.server_bytes(ts, b, &mut sink),
            Step::ClientMissing(n) => s.client_missing(ts, *n, &mut sink),
            Step::ServerMissing(n) => s.server_missing(ts, *n, &mut sink),
        }
    }
    s.close(ts, &mut sink);
});
