//! split_inline (Redis' sdssplitargs). Mode 0 (even first byte): the rest is a line; the split
//! never panics, reports as many arguments as it hands out (none on failure), stops at a NUL,
//! and agrees with RequestDecoder on the same line sent as an inline command. Mode 1 (odd first
//! byte): the rest is a list of arguments, each quoted by Redis' rules in a fuzzer-chosen style
//! and joined by fuzzer-chosen whitespace; the line must split back into exactly those
//! arguments.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_observer::resp::{Limits, RequestDecoder, split_inline};
use redis_observer_fuzz::{Rd, ReqEv, own_request, parsed_input};

#[derive(Debug)]
enum Input {
    Line(Vec<u8>),
    /// (style, argument)
    Args(Vec<(u8, Vec<u8>)>),
}

impl Input {
    fn parse(b: &[u8]) -> Self {
        let mut r = Rd(b);
        if r.u8() & 1 == 0 {
            return Input::Line(r.rest().to_vec());
        }
        let mut args = Vec::new();
        while !r.is_empty() {
            let style = r.u8();
            let len = usize::from(r.u8());
            args.push((style, r.take(len).to_vec()));
        }
        Input::Args(args)
    }
}

parsed_input!(Input);

fn split(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut v = Vec::new();
    let n = split_inline(line, &mut |a: &[u8]| v.push(a.to_vec()));
    match n {
        Some(n) => assert_eq!(n, v.len(), "count vs callbacks"),
        None => assert!(v.is_empty(), "callbacks on a failed split"),
    }
    n.map(|_| v)
}

/// C isspace.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn double_quoted(a: &[u8], hex_all: bool, upper: bool) -> Vec<u8> {
    let mut v = vec![b'"'];
    for &b in a {
        let hex = |v: &mut Vec<u8>| {
            let s = if upper {
                format!("\\x{b:02X}")
            } else {
                format!("\\x{b:02x}")
            };
            v.extend_from_slice(s.as_bytes());
        };
        if hex_all {
            hex(&mut v);
            continue;
        }
        match b {
            b'\\' => v.extend_from_slice(b"\\\\"),
            b'"' => v.extend_from_slice(b"\\\""),
            b'\n' => v.extend_from_slice(b"\\n"),
            b'\r' => v.extend_from_slice(b"\\r"),
            b'\t' => v.extend_from_slice(b"\\t"),
            0x07 => v.extend_from_slice(b"\\a"),
            0x08 => v.extend_from_slice(b"\\b"),
            0x20..=0x7e => v.push(b),
            _ => hex(&mut v),
        }
    }
    v.push(b'"');
    v
}

/// `'...'`: only `\'` is an escape; impossible with a NUL (ends the C string) or a trailing
/// backslash (it would escape the closing quote).
fn single_quoted(a: &[u8]) -> Option<Vec<u8>> {
    if a.contains(&0) || a.last() == Some(&b'\\') {
        return None;
    }
    let mut v = vec![b'\''];
    for &b in a {
        if b == b'\'' {
            v.extend_from_slice(b"\\'");
        } else {
            v.push(b);
        }
    }
    v.push(b'\'');
    Some(v)
}

/// Bare: non-empty, no whitespace, quotes or NUL.
fn bare(a: &[u8]) -> Option<Vec<u8>> {
    let ok = !a.is_empty()
        && a.iter()
            .all(|&b| !is_space(b) && !matches!(b, b'"' | b'\'' | 0));
    ok.then(|| a.to_vec())
}

/// Separators: after a bare token the first byte must end it (space, tab, CR, LF); after that
/// any C whitespace.
const SEPS: [&[u8]; 8] = [
    b" ", b"\t", b"\r", b"\n", b" \x0b", b"\t\x0c ", b"   ", b"\r\n",
];

fn roundtrip(args: &[(u8, Vec<u8>)]) {
    let mut line = Vec::new();
    if args.first().is_some_and(|(s, _)| s & 0x80 != 0) {
        line.extend_from_slice(b" \x0b\x0c\t"); // leading whitespace is skipped
    }
    for (i, (style, a)) in args.iter().enumerate() {
        if i > 0 {
            line.extend_from_slice(SEPS[usize::from((style >> 2) & 7)]);
        }
        let q = match style & 3 {
            0 => bare(a),
            2 => single_quoted(a),
            _ => None,
        };
        let q = q.unwrap_or_else(|| double_quoted(a, style & 3 == 3, style & 0x40 != 0));
        line.extend_from_slice(&q);
    }
    if args.last().is_some_and(|(s, _)| s & 0x20 != 0) {
        line.extend_from_slice(b" \t\r"); // trailing whitespace too
    }
    let want: Vec<Vec<u8>> = args.iter().map(|(_, a)| a.clone()).collect();
    assert_eq!(
        split(&line),
        Some(want),
        "line {:?}",
        String::from_utf8_lossy(&line)
    );
}

fn line(line: &[u8]) {
    let got = split(line);
    // A NUL ends the line.
    if let Some(i) = line.iter().position(|&b| b == 0) {
        assert_eq!(split(&line[..i]), got, "NUL does not end the line");
    }
    // The decoder, on the same line sent as an inline command after a first one.
    let sendable = !line.contains(&b'\n') && !line.contains(&0) && line.first() != Some(&b'*');
    if !sendable || line.len() > 60_000 {
        return;
    }
    let lim = Limits {
        keep_args: 1 << 16,
        keep_arg_bytes: 1 << 16,
        ..Limits::default()
    };
    let mut d = RequestDecoder::new(lim.clone());
    let mut evs = Vec::new();
    let mut stream = b"PING\r\n".to_vec();
    stream.extend_from_slice(line);
    stream.push(b'\n');
    d.feed(0, &stream, &mut |e| evs.push(own_request(e, &lim, 0)));
    assert_eq!(evs.len(), 2, "{evs:?}");
    // The decoder drops one trailing CR before splitting; a CR is whitespace to the splitter,
    // so the split is the same (a CR inside open quotes fails either way).
    let want = match got {
        None => ReqEv::Proto("UnbalancedQuotes".into()),
        Some(a) if a.is_empty() => ReqEv::Empty,
        Some(a) => ReqEv::Cmd {
            argc: a.len() as u64,
            args: a
                .into_iter()
                .map(|x| {
                    let n = x.len() as u64;
                    (x, n)
                })
                .collect(),
            inline: true,
            wire: line.len() as u64 + 1,
            truncated: false,
        },
    };
    assert_eq!(evs[1], want);
}

fuzz_target!(|input: Input| {
    match input {
        Input::Line(l) => line(&l),
        Input::Args(a) => roundtrip(&a),
    }
});
