//! Byte-level pieces of the log lines: escaping, cutting, numbers, timestamps, addresses.
//! Written by hand into the line buffer: no `fmt` (IPv6 excepted), no allocation.

use std::io::Write as _;
use std::net::{SocketAddr, SocketAddrV4};

/// At most `max` bytes of `s`, not ending inside a UTF-8 sequence that continues past the cut.
pub(super) fn cut(s: &[u8], max: usize) -> &[u8] {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    // Back off over continuation bytes (at most 3) to the start of the split character.
    let mut steps = 0;
    while end > 0 && steps < 3 && s.get(end).is_some_and(|&c| c & 0xc0 == 0x80) {
        end -= 1;
        steps += 1;
    }
    // Not a well-formed split after all (invalid bytes): cut at `max`, they are escaped anyway.
    if steps == 3 || s.get(end).is_some_and(|&c| c < 0xc0) {
        end = max;
    }
    s.get(..end).unwrap_or(s)
}

/// `42.123` microseconds from nanoseconds (always three decimals).
#[inline]
pub(super) fn latency_us(out: &mut Vec<u8>, ns: u64) {
    push_u64(out, ns / 1_000);
    out.push(b'.');
    let frac = ns % 1_000;
    out.extend_from_slice(&[
        b'0' + (frac / 100) as u8,
        b'0' + ((frac / 10) % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// Small caches for the common case: consecutive lines in the same second share the date and
/// time of day, and most lines name the same server and a recent client.
#[derive(Clone, Debug, Default)]
pub(super) struct Cache {
    /// Seconds since the epoch, plus one, of `ts_prefix` (0: empty).
    ts_key: u64,
    /// `YYYY-MM-DDTHH:MM:SS`
    ts_prefix: [u8; 19],
    pub(super) client: AddrCache,
    pub(super) server: AddrCache,
}

impl Cache {
    #[inline(always)]
    pub(super) fn timestamp(&mut self, out: &mut Vec<u8>, ts_ns: u64) {
        let mut b = timestamp_template();
        let key = ts_ns / 1_000_000_000 + 1;
        if self.ts_key == key {
            let (head, tail) = b.split_at_mut(19);
            head.copy_from_slice(&self.ts_prefix);
            if let Some(us) = tail.get_mut(1..7) {
                digits(us, (ts_ns % 1_000_000_000) / 1_000);
            }
        } else {
            b = timestamp_bytes(ts_ns);
            if let Some(p) = b.get(..19) {
                self.ts_prefix.copy_from_slice(p);
                self.ts_key = key;
            }
        }
        out.extend_from_slice(&b);
    }
}

/// The last IPv4 address written in one role, formatted.
#[derive(Clone, Debug, Default)]
pub(super) struct AddrCache {
    addr: Option<SocketAddrV4>,
    buf: [u8; 21],
    len: usize,
}

impl AddrCache {
    pub(super) fn write(&mut self, out: &mut Vec<u8>, a: &SocketAddr) {
        match a {
            SocketAddr::V4(v4) => {
                if self.addr != Some(*v4) {
                    (self.buf, self.len) = ipv4(v4);
                    self.addr = Some(*v4);
                }
                out.extend_from_slice(self.buf.get(..self.len).unwrap_or(&[]));
            }
            // Rare enough for `fmt` (writing to a Vec cannot fail).
            SocketAddr::V6(v6) => {
                let _ = write!(out, "{v6}");
            }
        }
    }
}

/// `a.b.c.d:port` on the stack.
fn ipv4(a: &SocketAddrV4) -> ([u8; 21], usize) {
    let mut buf = [0u8; 21];
    let mut n = 0;
    let mut put = |c: u8| {
        if let Some(slot) = buf.get_mut(n) {
            *slot = c;
            n += 1;
        }
    };
    for (i, &o) in a.ip().octets().iter().enumerate() {
        if i > 0 {
            put(b'.');
        }
        if o >= 100 {
            put(b'0' + o / 100);
        }
        if o >= 10 {
            put(b'0' + (o / 10) % 10);
        }
        put(b'0' + o % 10);
    }
    put(b':');
    let port = a.port();
    let mut started = false;
    for p in [10_000, 1_000, 100, 10, 1] {
        let d = (port / p % 10) as u8;
        if d != 0 || started || p == 1 {
            put(b'0' + d);
            started = true;
        }
    }
    (buf, n)
}

fn timestamp_template() -> [u8; 27] {
    *b"0000-00-00T00:00:00.000000Z"
}

/// RFC 3339 UTC with microseconds: `2026-11-20T23:56:34.123456Z`.
pub(super) fn timestamp_bytes(ts_ns: u64) -> [u8; 27] {
    let secs = ts_ns / 1_000_000_000;
    let micros = (ts_ns % 1_000_000_000) / 1_000;
    let (y, m, d) = civil_from_days(secs / 86_400);
    let sod = secs % 86_400;
    let mut b = timestamp_template();
    for (range, v) in [
        (0..4, y),
        (5..7, m),
        (8..10, d),
        (11..13, sod / 3_600),
        (14..16, (sod / 60) % 60),
        (17..19, sod % 60),
        (20..26, micros),
    ] {
        if let Some(dst) = b.get_mut(range) {
            digits(dst, v);
        }
    }
    b
}

#[cfg(test)]
pub(super) fn timestamp(out: &mut Vec<u8>, ts_ns: u64) {
    out.extend_from_slice(&timestamp_bytes(ts_ns));
}

/// `v`'s last `buf.len()` decimal digits into `buf`, zero-padded.
fn digits(buf: &mut [u8], mut v: u64) {
    for d in buf.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`, for
/// non-negative days).
pub(super) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Writes `v`'s digits right-aligned into `buf`; returns how many.
fn fmt_u64(buf: &mut [u8; 20], mut v: u64) -> usize {
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    buf.len() - i
}

pub(super) fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let n = fmt_u64(&mut buf, v);
    out.extend_from_slice(buf.get(20 - n..).unwrap_or(&[]));
}

// ---------------------------------------------------------------------------------------------
// Escaping

/// Escapes `s` for a JSON string: valid UTF-8 passes through (with JSON's escapes), invalid
/// bytes become the four characters `\xNN` (JSON `\\xNN`). Runs of plain bytes are found eight
/// at a time and copied at once.
pub(super) fn escape(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    let mut i = 0;
    loop {
        i += plain_prefix(s.get(i..).unwrap_or(&[]), true);
        let Some(&c) = s.get(i) else { break };
        if c >= 0x80 {
            let n = utf8_len(s.get(i..).unwrap_or(&[]));
            if n > 0 {
                i += n;
                continue;
            }
            out.extend_from_slice(s.get(start..i).unwrap_or(&[]));
            hex(out, c);
            i += 1;
            start = i;
            continue;
        }
        out.extend_from_slice(s.get(start..i).unwrap_or(&[]));
        i += 1;
        start = i;
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                out.extend_from_slice(b"\\u00");
                out.extend_from_slice(&[HEX[usize::from(c >> 4)], HEX[usize::from(c & 0xf)]]);
            }
        }
    }
    out.extend_from_slice(s.get(start..).unwrap_or(&[]));
}

/// Whether a byte ends a run of plain bytes: it needs escaping, or is not ASCII (then checked
/// as UTF-8).
pub(super) fn is_special(c: u8, json: bool) -> bool {
    let special = if json {
        c == b'"' || c == b'\\'
    } else {
        c == 0x7f
    };
    !(0x20..0x80).contains(&c) || special
}

/// How many bytes at the start of `s` need no escaping: printable ASCII (and for JSON not `"`
/// or `\`; for text not DEL). Eight bytes at a time with the "has byte less than / equal to"
/// word tricks; the lowest flagged byte of each mask is exact, which is all that is used.
pub(super) fn plain_prefix(s: &[u8], json: bool) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let mut i = 0;
    for chunk in s.chunks_exact(8) {
        // `chunks_exact(8)` yields 8 bytes; the fallback only makes the chunk "special".
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or([0x80; 8]));
        let mut special = (x & HI) | (x.wrapping_sub(0x20 * LO) & !x & HI);
        special |= if json {
            has_zero(x ^ (u64::from(b'"') * LO)) | has_zero(x ^ (u64::from(b'\\') * LO))
        } else {
            has_zero(x ^ (0x7f * LO))
        };
        if special != 0 {
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = s.get(i) {
        if is_special(c, json) {
            break;
        }
        i += 1;
    }
    i
}

/// Length of the valid UTF-8 sequence that starts `s` (whose first byte is >= 0x80), or 0.
fn utf8_len(s: &[u8]) -> usize {
    let n = match s.first() {
        Some(0xc2..=0xdf) => 2,
        Some(0xe0..=0xef) => 3,
        Some(0xf0..=0xf4) => 4,
        _ => return 0,
    };
    // `from_utf8` rejects overlong forms and surrogates.
    match s.get(..n).map(std::str::from_utf8) {
        Some(Ok(_)) => n,
        _ => 0,
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `\xNN`, its backslash escaped for JSON.
fn hex(out: &mut Vec<u8>, c: u8) {
    out.push(b'\\');
    out.extend_from_slice(&[
        b'\\',
        b'x',
        HEX[usize::from(c >> 4)],
        HEX[usize::from(c & 0xf)],
    ]);
}
