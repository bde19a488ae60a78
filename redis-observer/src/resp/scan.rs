//! Helpers shared by the two decoders: Redis' integer parser, a fast header-number path, a
//! bounded header-line accumulator, and the resynchronisation scanner.

use super::types::Limits;

/// Clamps the keep limits so every offset into a kept-bytes buffer fits the `u32` fields of
/// `ArgSpan`/`Child` (65,535 × 65,535 < 2^32).
pub(super) fn sane(mut l: Limits) -> Limits {
    const CAP: usize = u16::MAX as usize;
    // The header fast paths (`fast_num`: a type byte, a `-` and up to 18 digits, so at most 20
    // bytes before the `\r`) do not look at `max_line`; below this the slow path would reject a
    // header the fast path accepts, and the outcome would depend on how the stream was cut
    // (found by the `resp_reply` fuzz target).
    const MIN_LINE: usize = 32;
    l.max_line = l.max_line.max(MIN_LINE);
    l.keep_args = l.keep_args.min(CAP);
    l.keep_arg_bytes = l.keep_arg_bytes.min(CAP);
    l.keep_children = l.keep_children.min(CAP);
    l.keep_reply_bytes = l.keep_reply_bytes.min(CAP);
    l
}

/// Redis' `string2ll` (util.c), byte for byte: no sign but `-`, no leading zeros, no spaces, at
/// most 20 characters, overflow rejected.
pub(super) fn string2ll(s: &[u8]) -> Option<i64> {
    // LONG_STR_SIZE is 21: longer strings are rejected before looking at them.
    if s.is_empty() || s.len() >= 21 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    let (&first, rest) = digits.split_first()?;
    if !(b'1'..=b'9').contains(&first) {
        return None;
    }
    let mut v = u64::from(first - b'0');
    for &c in rest {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if neg {
        // -(2^63) is representable; anything beyond is not.
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// Fast path for a canonical header number at `data[start..]` terminated by `\r`: returns the
/// value and the index of the `\r`. Anything unusual (signs other than `-1`-style canonical
/// negatives, leading zeros, more than 18 digits, another byte, end of slice) returns `None` and
/// the caller takes the exact slow path, so this never has to be right about errors.
#[inline(always)]
pub(super) fn fast_num(data: &[u8], start: usize) -> Option<(i64, usize)> {
    let mut i = start;
    let neg = *data.get(i)? == b'-';
    if neg {
        i += 1;
    }
    let first = *data.get(i)?;
    if first == b'0' {
        if neg || *data.get(i + 1)? != b'\r' {
            return None;
        }
        return Some((0, i + 1));
    }
    if !(b'1'..=b'9').contains(&first) {
        return None;
    }
    let mut v = i64::from(first - b'0');
    i += 1;
    let limit = i + 17; // at most 18 digits: cannot overflow an i64
    loop {
        let c = *data.get(i)?;
        if c.is_ascii_digit() {
            if i >= limit {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
            i += 1;
        } else if c == b'\r' {
            return Some((if neg { -v } else { v }, i));
        } else {
            return None;
        }
    }
}

/// Outcome of feeding bytes to a [`HdrAcc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HdrOut {
    /// All bytes consumed, line not complete yet.
    Pending,
    /// Line complete; the count says how many bytes of the input were consumed.
    Done(usize),
    /// The line exceeded the limit.
    TooLong,
}

/// Bytes of a header line kept: enough for the type byte and any number `string2ll` accepts.
const HDR_KEEP: usize = 24;

/// One request header line (`*N` or `$N`) split across feeds, with Redis' semantics: the line
/// ends at the first `\r` and the byte after it is skipped unchecked; a NUL before the `\r` hides
/// it from `strchr`, so the line never ends (Redis then waits until 64 KiB pile up and fails).
#[derive(Clone, Debug, Default)]
pub(super) struct HdrAcc {
    pub(super) busy: bool,
    buf: [u8; HDR_KEEP],
    len: usize,
    cr: bool,
    stuck: bool,
}

impl HdrAcc {
    pub(super) fn begin(&mut self) {
        self.busy = true;
        self.len = 0;
        self.cr = false;
        self.stuck = false;
    }

    /// Consumes bytes of the line; `max_line` bounds the bytes before the `\r`.
    pub(super) fn push(&mut self, data: &[u8], max_line: usize) -> HdrOut {
        if self.cr {
            // The byte after '\r' (Redis assumes '\n' and skips it unchecked).
            return if data.is_empty() {
                HdrOut::Pending
            } else {
                self.busy = false;
                HdrOut::Done(1)
            };
        }
        if self.stuck {
            self.len = self.len.saturating_add(data.len());
            return if self.len > max_line {
                HdrOut::TooLong
            } else {
                HdrOut::Pending
            };
        }
        let (chunk, end) = match memchr::memchr2(b'\r', 0, data) {
            Some(i) => (&data[..i], Some((i, data[i] == b'\r'))),
            None => (data, None),
        };
        let room = HDR_KEEP.saturating_sub(self.len);
        let k = room.min(chunk.len());
        if let (Some(dst), Some(src)) = (self.buf.get_mut(self.len..self.len + k), chunk.get(..k)) {
            dst.copy_from_slice(src);
        }
        self.len = self.len.saturating_add(chunk.len());
        if self.len > max_line {
            return HdrOut::TooLong;
        }
        match end {
            None => HdrOut::Pending,
            Some((i, false)) => {
                // NUL: the rest of this line is invisible to Redis; count it from here on.
                self.stuck = true;
                self.len = self.len.saturating_add(data.len() - i);
                if self.len > max_line {
                    HdrOut::TooLong
                } else {
                    HdrOut::Pending
                }
            }
            Some((i, true)) => {
                self.cr = true;
                if i + 1 < data.len() {
                    self.busy = false;
                    HdrOut::Done(i + 2)
                } else {
                    HdrOut::Pending
                }
            }
        }
    }

    /// First byte of the completed line (`\r` for an empty line).
    pub(super) fn first(&self) -> u8 {
        if self.len == 0 { b'\r' } else { self.buf[0] }
    }

    /// The number after the first byte, per `string2ll`.
    pub(super) fn num(&self) -> Option<i64> {
        if self.len == 0 || self.len > HDR_KEEP {
            return None;
        }
        string2ll(self.buf.get(1..self.len)?)
    }
}

/// Bytes a plausibility check may look at (and the resync carry size).
pub(super) const WIN: usize = 64;

/// Whether a window starting at a candidate byte looks like a frame start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Yes,
    No,
    /// The window ended before a decision (only returned for windows shorter than [`WIN`]).
    More,
}

/// What a resync scan found.
pub(super) enum Scan {
    /// Everything consumed, still looking.
    Consumed,
    /// A frame starts at `data[pos]`, or, with `replay`, at the first `replay.1` bytes of
    /// `replay.0` (carried over from an earlier feed with timestamp `replay.2`), followed by
    /// `data[pos..]`.
    Found {
        pos: usize,
        replay: Option<([u8; WIN], usize, u64)>,
    },
}

/// Looks for the next plausible frame start at a line start, across feeds. A candidate whose
/// check needs bytes the feed did not have is carried (at most [`WIN`] bytes) to the next feed.
#[derive(Clone, Debug)]
pub(super) struct Resync {
    carry: [u8; WIN],
    len: usize,
    ts: u64,
    /// The byte before the next feed's first byte ended a line (or a gap/stream start is there).
    line_start: bool,
}

impl Default for Resync {
    fn default() -> Self {
        Resync {
            carry: [0; WIN],
            len: 0,
            ts: 0,
            line_start: false,
        }
    }
}

impl Resync {
    /// Starts over; `line_start` says whether the next byte may begin a frame.
    pub(super) fn reset(&mut self, line_start: bool) {
        self.len = 0;
        self.line_start = line_start;
    }

    /// Scans `data[from..]` (after any carried bytes). `starts` says which bytes can begin a
    /// frame, `check` judges a window beginning with such a byte.
    pub(super) fn scan(
        &mut self,
        ts: u64,
        data: &[u8],
        from: usize,
        starts: impl Fn(u8) -> bool,
        check: impl Fn(&[u8]) -> Verdict,
    ) -> Scan {
        let from = from.min(data.len());
        let mut line_start = if from == 0 {
            self.line_start
        } else {
            data[from - 1] == b'\n'
        };
        if self.len > 0 {
            // Candidates that began in the carry: judge them on carry + the next bytes.
            let c = self.len;
            let extra = WIN.min(data.len() - from);
            let mut win = [0u8; 2 * WIN];
            win[..c].copy_from_slice(&self.carry[..c]);
            win[c..c + extra].copy_from_slice(&data[from..from + extra]);
            let w = &win[..c + extra];
            for q in 0..c {
                if !(q == 0 || w[q - 1] == b'\n') || !starts(w[q]) {
                    continue;
                }
                let cand = &w[q..w.len().min(q + WIN)];
                match check(cand) {
                    Verdict::Yes => {
                        let mut r = [0u8; WIN];
                        r[..c - q].copy_from_slice(&w[q..c]);
                        self.len = 0;
                        return Scan::Found {
                            pos: from,
                            replay: Some((r, c - q, self.ts)),
                        };
                    }
                    Verdict::More if cand.len() < WIN && from + extra == data.len() => {
                        // Still undecided and this feed is used up: carry all of it.
                        let n = cand.len();
                        self.carry[..n].copy_from_slice(cand);
                        self.len = n;
                        // Its first byte came from the earlier feed: `self.ts` stays.
                        return Scan::Consumed;
                    }
                    _ => {}
                }
            }
            line_start = w[c - 1] == b'\n';
            self.len = 0;
        }
        let mut q = from;
        while q < data.len() {
            if line_start && starts(data[q]) {
                let end = data.len().min(q + WIN);
                match check(&data[q..end]) {
                    Verdict::Yes => {
                        return Scan::Found {
                            pos: q,
                            replay: None,
                        };
                    }
                    Verdict::More if end - q < WIN => {
                        self.carry[..end - q].copy_from_slice(&data[q..end]);
                        self.len = end - q;
                        self.ts = ts;
                        return Scan::Consumed;
                    }
                    _ => {}
                }
            }
            match memchr::memchr(b'\n', &data[q..]) {
                Some(i) => {
                    q += i + 1;
                    line_start = true;
                }
                None => {
                    q = data.len();
                    line_start = false;
                }
            }
        }
        self.line_start = line_start;
        Scan::Consumed
    }
}

/// Parses `<digits>\r\n` at `w[i..]` (no sign, canonical, at most `max_digits`), for
/// plausibility checks. `Err(More)` if the window ends first.
pub(super) fn plain_num(
    w: &[u8],
    mut i: usize,
    max_digits: usize,
) -> Result<(u64, usize), Verdict> {
    let start = i;
    let mut v: u64 = 0;
    loop {
        let Some(&c) = w.get(i) else {
            return Err(Verdict::More);
        };
        if c.is_ascii_digit() {
            if i - start >= max_digits || (i > start && v == 0) {
                return Err(Verdict::No);
            }
            v = v * 10 + u64::from(c - b'0');
            i += 1;
        } else if c == b'\r' && i > start {
            return match w.get(i + 1) {
                None => Err(Verdict::More),
                Some(b'\n') => Ok((v, i + 2)),
                Some(_) => Err(Verdict::No),
            };
        } else {
            return Err(Verdict::No);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(b"0", Some(0))]
    #[case(b"1", Some(1))]
    #[case(b"-1", Some(-1))]
    #[case(b"9223372036854775807", Some(i64::MAX))]
    #[case(b"-9223372036854775808", Some(i64::MIN))]
    #[case(b"9223372036854775808", None)]
    #[case(b"-9223372036854775809", None)]
    #[case(b"18446744073709551616", None)]
    #[case(b"", None)]
    #[case(b"-", None)]
    #[case(b"-0", None)]
    #[case(b"01", None)]
    #[case(b"+1", None)]
    #[case(b" 1", None)]
    #[case(b"1 ", None)]
    #[case(b"12a", None)]
    #[case(b"000000000000000000001", None)]
    fn string2ll_cases(#[case] s: &[u8], #[case] want: Option<i64>) {
        assert_eq!(string2ll(s), want);
    }

    #[rstest]
    #[case(b"*3\r\n", 1, Some((3, 2)))]
    #[case(b"$-1\r\n", 1, Some((-1, 3)))]
    #[case(b"$0\r\n", 1, Some((0, 2)))]
    #[case(b"$00\r\n", 1, None)]
    #[case(b"$-0\r\n", 1, None)]
    #[case(b"$12", 1, None)]
    #[case(b"$1x\r\n", 1, None)]
    #[case(b"$999999999999999999\r\n", 1, Some((999_999_999_999_999_999, 19)))]
    #[case(b"$9999999999999999999\r\n", 1, None)]
    fn fast_num_cases(#[case] d: &[u8], #[case] at: usize, #[case] want: Option<(i64, usize)>) {
        assert_eq!(fast_num(d, at), want);
    }

    #[test]
    fn hdr_acc_split_and_nul() {
        let mut h = HdrAcc::default();
        h.begin();
        assert_eq!(h.push(b"*1", 100), HdrOut::Pending);
        assert_eq!(h.push(b"2\r", 100), HdrOut::Pending);
        assert_eq!(h.push(b"Xrest", 100), HdrOut::Done(1));
        assert_eq!((h.first(), h.num()), (b'*', Some(12)));
        h.begin();
        assert_eq!(h.push(b"*1\0\r\n", 10), HdrOut::Pending);
        assert_eq!(h.push(b"12345", 10), HdrOut::Pending);
        assert_eq!(h.push(b"6", 10), HdrOut::TooLong);
        h.begin();
        assert_eq!(h.push(b"\r\n", 10), HdrOut::Done(2));
        assert_eq!((h.first(), h.num()), (b'\r', None));
    }
}
