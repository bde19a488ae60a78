//! Inline commands: Redis' `sdssplitargs` (sds.c), the splitter `processInlineBuffer` uses.

/// Every byte value as a one-byte slice, so escaped bytes can be handed out with the same
/// lifetime as slices of the line itself.
static BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as u8;
        i += 1;
    }
    t
};

fn byte(b: u8) -> &'static [u8] {
    let i = usize::from(b);
    &BYTES[i..=i]
}

/// Receives the arguments of a line piece by piece (an argument may arrive as several pieces:
/// runs of plain bytes and single escaped bytes), so callers keep only what they need.
pub(super) trait ArgSink<'a> {
    fn begin(&mut self);
    fn bytes(&mut self, b: &'a [u8]);
    fn end(&mut self);
}

/// C `isspace` in the C locale.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Ends an unquoted token (a narrower set than `isspace`: `\v` and `\f` are token bytes).
fn ends_token(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t' | b'"' | b'\'')
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Splits `line` like `sdssplitargs`, feeding `sink`; returns the argument count, or `None` on
/// unbalanced quotes (or a closing quote followed by something other than a space or the end).
/// Pieces already handed to `sink` then belong to an invalid line.
pub(super) fn split_into<'a>(line: &'a [u8], sink: &mut impl ArgSink<'a>) -> Option<usize> {
    // sdssplitargs works on a C string: a NUL ends the line. (Redis never gets here with one:
    // its `strchr` for the newline stops at the NUL first.)
    let line = match memchr::memchr(0, line) {
        Some(i) => &line[..i],
        None => line,
    };
    // Byte at `i`, or 0 (the C terminator) past the end.
    let at = |i: usize| -> u8 { line.get(i).copied().unwrap_or(0) };
    let n = line.len();
    let mut p = 0;
    let mut argc = 0;
    loop {
        while p < n && is_space(line[p]) {
            p += 1;
        }
        if p >= n {
            return Some(argc);
        }
        sink.begin();
        let (mut inq, mut insq) = (false, false);
        loop {
            let c = at(p);
            if inq {
                let hex_pair = match (c, at(p + 1)) {
                    (b'\\', b'x') => hex(at(p + 2)).zip(hex(at(p + 3))),
                    _ => None,
                };
                if let Some((h, l)) = hex_pair {
                    sink.bytes(byte(h * 16 + l));
                    p += 4;
                    continue;
                }
                if c == b'\\' && at(p + 1) != 0 {
                    let e = match at(p + 1) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        o => o,
                    };
                    sink.bytes(byte(e));
                    p += 2;
                } else if c == b'"' {
                    // A closing quote must be followed by a space or nothing at all.
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    // A run of plain bytes (at least this one).
                    let end = memchr::memchr2(b'\\', b'"', &line[p + 1..]).map_or(n, |i| p + 1 + i);
                    sink.bytes(&line[p..end]);
                    p = end;
                }
            } else if insq {
                if c == b'\\' && at(p + 1) == b'\'' {
                    sink.bytes(b"'");
                    p += 2;
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    let end =
                        memchr::memchr2(b'\\', b'\'', &line[p + 1..]).map_or(n, |i| p + 1 + i);
                    sink.bytes(&line[p..end]);
                    p = end;
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' => {
                        p += 1;
                        break;
                    }
                    0 => break,
                    b'"' => {
                        inq = true;
                        p += 1;
                    }
                    b'\'' => {
                        insq = true;
                        p += 1;
                    }
                    _ => {
                        let mut end = p + 1;
                        while end < n && !ends_token(line[end]) {
                            end += 1;
                        }
                        sink.bytes(&line[p..end]);
                        p = end;
                    }
                }
            }
        }
        sink.end();
        argc += 1;
    }
}

/// Counts only: validates a line before anything is handed out.
struct Nothing;

impl ArgSink<'_> for Nothing {
    fn begin(&mut self) {}
    fn bytes(&mut self, _: &[u8]) {}
    fn end(&mut self) {}
}

/// Joins pieces into whole arguments; borrows straight from the line when an argument is one
/// piece (the common case), copies into `scratch` otherwise.
struct Join<'a, 'f, F: FnMut(&[u8])> {
    first: Option<&'a [u8]>,
    scratch: Vec<u8>,
    joined: bool,
    out: &'f mut F,
}

impl<'a, F: FnMut(&[u8])> ArgSink<'a> for Join<'a, '_, F> {
    fn begin(&mut self) {
        self.first = None;
        self.joined = false;
        self.scratch.clear();
    }

    fn bytes(&mut self, b: &'a [u8]) {
        if self.joined {
            self.scratch.extend_from_slice(b);
        } else if let Some(f) = self.first.take() {
            self.scratch.extend_from_slice(f);
            self.scratch.extend_from_slice(b);
            self.joined = true;
        } else {
            self.first = Some(b);
        }
    }

    fn end(&mut self) {
        if self.joined {
            (self.out)(&self.scratch);
        } else {
            (self.out)(self.first.unwrap_or(b""));
        }
    }
}

/// Splits an inline command line (without its newline) with Redis' `sdssplitargs` rules, calling
/// `out` with each argument. Returns the argument count, or `None` on unbalanced quotes — in
/// which case `out` was not called at all. A NUL byte ends the line, as in C.
pub fn split_inline(line: &[u8], out: &mut impl FnMut(&[u8])) -> Option<usize> {
    split_into(line, &mut Nothing)?;
    let mut sink = Join {
        first: None,
        scratch: Vec::new(),
        joined: false,
        out,
    };
    split_into(line, &mut sink)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn split(line: &[u8]) -> Option<Vec<Vec<u8>>> {
        let mut v = Vec::new();
        let n = split_inline(line, &mut |a: &[u8]| v.push(a.to_vec()))?;
        assert_eq!(n, v.len());
        Some(v)
    }

    fn args(a: &[&[u8]]) -> Option<Vec<Vec<u8>>> {
        Some(a.iter().map(|x| x.to_vec()).collect())
    }

    // Expected values follow sds.c `sdssplitargs` (and Redis' own test of it in sds.c).
    #[rstest]
    #[case(b"", args(&[]))]
    #[case(b"   \t ", args(&[]))]
    #[case(b"GET foo", args(&[b"GET", b"foo"]))]
    #[case(b"  SET   k  v  ", args(&[b"SET", b"k", b"v"]))]
    #[case(b"set key \"hello world\"", args(&[b"set", b"key", b"hello world"]))]
    #[case(b"\"\\n\\r\\t\\b\\a\\\\\\\"\"", args(&[b"\n\r\t\x08\x07\\\""]))]
    #[case(b"\"\\x41\\x6a\\xFF\"", args(&[b"Aj\xff"]))]
    #[case(b"\"\\x4\"", args(&[b"x4"]))]
    #[case(b"\"\\xzz\"", args(&[b"xzz"]))]
    #[case(b"\"\\q\"", args(&[b"q"]))]
    #[case(b"'it\\'s'", args(&[b"it's"]))]
    #[case(b"'a\\nb'", args(&[b"a\\nb"]))]
    #[case(b"'\"'", args(&[b"\""]))]
    #[case(b"\"'\"", args(&[b"'"]))]
    #[case(b"foo\"bar\"", args(&[b"foobar"]))]
    #[case(b"foo'bar' baz", args(&[b"foobar", b"baz"]))]
    #[case(b"\"\"", args(&[b""]))]
    #[case(b"'' ''", args(&[b"", b""]))]
    #[case(b"\"a\"\tb", args(&[b"a", b"b"]))]
    #[case(b"\"a\"\x0bb", args(&[b"a", b"b"]))]
    #[case(b"a\x0bb", args(&[b"a\x0bb"]))]
    #[case(b"\x0c a", args(&[b"a"]))]
    #[case(b"a\rb", args(&[b"a", b"b"]))]
    #[case(b"a\0b c", args(&[b"a"]))]
    #[case(b"\xc3\xa9t\xc3\xa9", args(&[b"\xc3\xa9t\xc3\xa9"]))]
    #[case(b"\"foo", None)]
    #[case(b"'foo", None)]
    #[case(b"\"foo\"bar", None)]
    #[case(b"'foo'bar", None)]
    #[case(b"\"foo\\\"", None)]
    #[case(b"\"foo\\", None)]
    #[case(b"\"a\0\"", None)]
    #[case(b"ok \"unterminated", None)]
    fn sdssplitargs_cases(#[case] line: &[u8], #[case] want: Option<Vec<Vec<u8>>>) {
        assert_eq!(split(line), want);
    }

    #[test]
    fn no_callback_on_error() {
        let mut called = false;
        assert_eq!(
            split_inline(b"a b \"c", &mut |_: &[u8]| called = true),
            None
        );
        assert!(!called);
    }
}
