//! Key patterns: the segments of a key that look like ids replaced by `{}`, so
//! `user:1234:profile` and `user:99:profile` are both `user:{}:profile`.
//!
//! A key is cut into segments at separators (`:` `/` `.` `|` `#` `,` `=` `@` `;` `_` `-` space
//! and the braces of hash tags). A segment is an id when it is all decimal digits, or at least 8
//! hex digits with at least one digit (so words such as `deadbeef`... and `facade` stay), and a
//! UUID (`8-4-4-4-12` hex, dashes included) is one id. Everything else is kept as it is.

/// Longest pattern kept; the rest of the key is dropped (the pattern then ends with `…`).
pub const PATTERN_BYTES: usize = 64;

fn is_sep(c: u8) -> bool {
    CLASS.get(usize::from(c)).is_some_and(|&k| k & SEP != 0)
}

const SEP: u8 = 1;
const DIGIT: u8 = 2;
const HEX: u8 = 4;

/// Byte classes, so a key is read once, one table load a byte (this runs for every key the
/// key table does not hold yet).
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let seps = b":/.|#,=@;_- {}";
    let mut i = 0;
    while i < seps.len() {
        t[seps[i] as usize] = SEP;
        i += 1;
    }
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = DIGIT | HEX;
        c += 1;
    }
    let mut c = 0;
    while c < 6 {
        t[(b'a' + c) as usize] = HEX;
        t[(b'A' + c) as usize] = HEX;
        c += 1;
    }
    t
};

/// A UUID at the start of `s`, not followed by more of the same segment.
fn uuid_at(s: &[u8]) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut i = 0;
    for (g, &n) in GROUPS.iter().enumerate() {
        if g > 0 {
            if s.get(i) != Some(&b'-') {
                return false;
            }
            i += 1;
        }
        match s.get(i..i + n) {
            Some(part) if part.iter().all(u8::is_ascii_hexdigit) => i += n,
            _ => return false,
        }
    }
    s.get(i).is_none_or(|&c| is_sep(c))
}

/// The pattern being written, cut at [`PATTERN_BYTES`].
struct Out<'a> {
    buf: &'a mut [u8; PATTERN_BYTES],
    n: usize,
    full: bool,
}

impl Out<'_> {
    #[inline]
    fn put(&mut self, b: &[u8]) {
        let room = PATTERN_BYTES - self.n;
        let take = b.len().min(room);
        if let (Some(d), Some(s)) = (self.buf.get_mut(self.n..self.n + take), b.get(..take)) {
            d.copy_from_slice(s);
            self.n += take;
        }
        if take < b.len() {
            self.full = true;
        }
    }
}

/// Writes the pattern of `key` into `out`; returns its length. `cut`: the key itself was cut
/// before it reached here (the pattern of what is left is still useful; it ends with `…`).
pub fn normalize(key: &[u8], cut: bool, out: &mut [u8; PATTERN_BYTES]) -> usize {
    let mut o = Out {
        buf: out,
        n: 0,
        full: false,
    };
    // Bytes kept as they are go out in one copy per run, up to the next id.
    let mut kept_from = 0;
    let mut i = 0;
    while i < key.len() {
        // One segment: up to the next separator, judged on the way (`all`: the classes every
        // byte has, `any`: those some byte has).
        let rest = key.get(i..).unwrap_or_default();
        let (mut all, mut any) = (DIGIT | HEX, 0u8);
        let mut n = rest.len();
        for (at, &c) in rest.iter().enumerate() {
            let k = CLASS[usize::from(c)];
            if k & SEP != 0 {
                n = at;
                break;
            }
            all &= k;
            any |= k;
        }
        let j = i + n;
        let (digits, hex, any_digit) = (all & DIGIT != 0, all & HEX != 0, any & DIGIT != 0);
        // A UUID's first group is 8 hex digits ended by a dash (a separator).
        if n == 8 && hex && key.get(j) == Some(&b'-') && uuid_at(rest) {
            o.put(key.get(kept_from..i).unwrap_or_default());
            o.put(b"{}");
            i += 36;
            kept_from = i;
            continue;
        }
        let is_id = n > 0 && (digits || (n >= 8 && hex && any_digit));
        // The last segment of a cut key is incomplete: not judged, kept as it is.
        let last_cut = cut && j == key.len();
        if !last_cut && is_id {
            o.put(key.get(kept_from..i).unwrap_or_default());
            o.put(b"{}");
            kept_from = j;
        }
        // Past the segment and its separator.
        i = j + 1;
    }
    o.put(key.get(kept_from..).unwrap_or_default());
    let (mut n, full) = (o.n, o.full);
    if cut || full {
        // `…` marks a pattern of a cut key; it replaces the last bytes if there is no room.
        const ELLIPSIS: &[u8] = "…".as_bytes();
        let at = n.min(PATTERN_BYTES - ELLIPSIS.len());
        if let Some(d) = out.get_mut(at..at + ELLIPSIS.len()) {
            d.copy_from_slice(ELLIPSIS);
        }
        n = at + ELLIPSIS.len();
    }
    n
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn pat(key: &str) -> String {
        let mut out = [0u8; PATTERN_BYTES];
        let n = normalize(key.as_bytes(), false, &mut out);
        String::from_utf8(out[..n].to_vec()).unwrap()
    }

    #[rstest]
    #[case("user:1234:profile", "user:{}:profile")]
    #[case("user:7", "user:{}")]
    #[case("session:9f86d081884c7d65", "session:{}")]
    #[case("obj:550e8400-e29b-41d4-a716-446655440000:meta", "obj:{}:meta")]
    #[case("550E8400-E29B-41D4-A716-446655440000", "{}")]
    #[case("cache/v2/item/42", "cache/v2/item/{}")]
    #[case("orders_2024_17", "orders_{}_{}")]
    #[case("{user1000}.following", "{user1000}.following")]
    #[case("{1000}.following", "{{}}.following")]
    #[case("deadbeef", "deadbeef")]
    #[case("facade:cafebabe12", "facade:{}")]
    #[case("counter", "counter")]
    #[case("a::b", "a::b")]
    #[case("", "")]
    #[case("key:__rand_int__", "key:__rand_int__")]
    #[case("k:12ab", "k:12ab")]
    #[case("ünïcode:12", "ünïcode:{}")]
    fn patterns(#[case] key: &str, #[case] want: &str) {
        assert_eq!(pat(key), want);
    }

    #[test]
    fn bounded_and_marked_when_cut() {
        let mut out = [0u8; PATTERN_BYTES];
        let long = "x:1:".repeat(40);
        let n = normalize(long.as_bytes(), false, &mut out);
        assert_eq!(n, PATTERN_BYTES);
        assert!(out[..n].ends_with("…".as_bytes()));
        // A cut key: its last (incomplete) segment is not judged.
        let n = normalize(b"user:12", true, &mut out);
        assert_eq!(&out[..n], "user:12…".as_bytes());
    }
}
