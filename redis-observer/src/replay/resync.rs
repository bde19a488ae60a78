//! Damaged captures: a record whose length field is corrupt would make the parser read the rest
//! of the file as one record (or stop). Each record is checked before the parser trusts its
//! length, and after a bad one reading resumes at the next plausible record.
//!
//! Plausible, for a pcap record: a sub-second field within its unit, a captured length no larger
//! than the original length nor than [`MAX_RECORD`]; after damage, a candidate must also be close
//! in time to the last good record, and the record after it must be plausible too (or the file
//! end right there). For a pcapng block: a known block type, a length that is a
//! multiple of 4 within bounds, and the same length repeated at the block's end.

/// Largest packet a capture record is believed to hold: the reader's buffer limit (a TSO
/// super-packet on `lo` with a large snap length exceeds tcpdump's 262,144).
pub const MAX_RECORD: u32 = (16 << 20) - 64;
/// Largest pcapng block believed (the reader's own buffer limit).
const MAX_BLOCK: u32 = 16 << 20;
const PCAP_HEADER: usize = 16;

/// How the file's records are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Legacy pcap: byte order, the sub-second unit's bound, and the seconds of the last record
    /// judged good (records are in time order, give or take; garbage rarely is).
    Legacy {
        be: bool,
        frac_max: u32,
        last_sec: Option<u32>,
    },
    /// pcapng: the current section's byte order.
    Ng { be: bool },
}

/// What the bytes at the head of the buffer are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judge {
    Good,
    /// Cannot tell without more bytes.
    NeedMore,
    Bad,
    /// At the end of the file: a record that plausibly starts here but is cut off (a capture
    /// that was stopped mid-write), or a corrupt length; the rest of the file decides.
    Cut,
}

impl Framing {
    /// From the file's first four bytes; `None` for neither format (the parser says so).
    pub fn from_magic(head: [u8; 4]) -> Option<Framing> {
        Some(match head {
            [0xd4, 0xc3, 0xb2, 0xa1] => Framing::Legacy {
                be: false,
                frac_max: 1_000_000,
                last_sec: None,
            },
            [0x4d, 0x3c, 0xb2, 0xa1] => Framing::Legacy {
                be: false,
                frac_max: 1_000_000_000,
                last_sec: None,
            },
            [0xa1, 0xb2, 0xc3, 0xd4] => Framing::Legacy {
                be: true,
                frac_max: 1_000_000,
                last_sec: None,
            },
            [0xa1, 0xb2, 0x3c, 0x4d] => Framing::Legacy {
                be: true,
                frac_max: 1_000_000_000,
                last_sec: None,
            },
            [0x0a, 0x0d, 0x0d, 0x0a] => Framing::Ng { be: false },
            _ => return None,
        })
    }

    /// Where candidates are looked for while resynchronising: pcapng blocks are 4-byte aligned.
    pub fn step(self) -> usize {
        match self {
            Framing::Legacy { .. } => 1,
            Framing::Ng { .. } => 4,
        }
    }

    /// Judges the record at the start of `data`; `eof`: no more bytes will come. A pcapng
    /// section header updates the byte order.
    /// `strict` while looking for a record after a bad one: garbage must not pass for one.
    pub fn judge(&mut self, data: &[u8], eof: bool, strict: bool) -> Judge {
        let more = match (eof, data.is_empty()) {
            (false, _) => Judge::NeedMore,
            (true, true) => Judge::Good,
            (true, false) => Judge::Cut,
        };
        match *self {
            Framing::Legacy {
                be,
                frac_max,
                last_sec,
            } => {
                let plausible = |d: &[u8]| pcap_header(d, be, frac_max, last_sec, strict);
                let Some(caplen) = plausible(data) else {
                    return if data.len() < PCAP_HEADER {
                        more
                    } else {
                        Judge::Bad
                    };
                };
                let end = PCAP_HEADER + caplen as usize;
                let v = match data.get(end..) {
                    Some([]) if eof => Judge::Good,
                    // In order so far: the record is taken at its word (a bad next header is the
                    // next record's fault). Only a candidate after damage must prove itself.
                    Some(_) if !strict => Judge::Good,
                    Some(next) if next.len() >= PCAP_HEADER => {
                        if plausible(next).is_some() {
                            Judge::Good
                        } else {
                            Judge::Bad
                        }
                    }
                    _ if eof => Judge::Cut,
                    _ => Judge::NeedMore,
                };
                if v == Judge::Good {
                    *self = Framing::Legacy {
                        be,
                        frac_max,
                        last_sec: word(data, 0, be),
                    };
                }
                v
            }
            Framing::Ng { be } => {
                let (Some(t), Some(l)) = (word(data, 0, false), word(data, 4, false)) else {
                    return more;
                };
                let be = if t == 0x0a0d_0d0a {
                    // The section header's byte-order magic decides for the whole section.
                    match data.get(8..12) {
                        Some([0x1a, 0x2b, 0x3c, 0x4d]) => true,
                        Some([0x4d, 0x3c, 0x2b, 0x1a]) => false,
                        Some(_) => return Judge::Bad,
                        None => return more,
                    }
                } else {
                    be
                };
                let fix = |v: u32| if be { v.swap_bytes() } else { v };
                let (t, len) = (fix(t), fix(l));
                let known = matches!(t, 0x0a0d_0d0a | 1..=7 | 9 | 10 | 0x0bad | 0x40000bad);
                if !known || len < 12 || len % 4 != 0 || len > MAX_BLOCK {
                    return Judge::Bad;
                }
                let Some(trailer) = word(data, len as usize - 4, be) else {
                    return if eof { Judge::Cut } else { Judge::NeedMore };
                };
                if trailer != len {
                    return Judge::Bad;
                }
                if t == 0x0a0d_0d0a {
                    *self = Framing::Ng { be };
                }
                Judge::Good
            }
        }
    }
}

/// Seconds a record may lie before the last good one (clock steps) or after it (a long capture
/// with quiet stretches).
const BACK_SECS: u32 = 3600;
const AHEAD_SECS: u32 = 30 * 86_400;

/// A plausible pcap record header at the start of `data`: its captured length. Any IP packet
/// is at least 20 bytes on the wire (checked when `strict`).
fn pcap_header(
    data: &[u8],
    be: bool,
    frac_max: u32,
    last_sec: Option<u32>,
    strict: bool,
) -> Option<u32> {
    let sec = word(data, 0, be)?;
    let frac = word(data, 4, be)?;
    let caplen = word(data, 8, be)?;
    let origlen = word(data, 12, be)?;
    let in_time = last_sec.is_none_or(|last| {
        sec >= last.saturating_sub(BACK_SECS) && sec <= last.saturating_add(AHEAD_SECS)
    });
    let strict_ok = !strict || (in_time && origlen >= 20);
    (strict_ok && frac < frac_max && caplen <= origlen && caplen <= MAX_RECORD).then_some(caplen)
}

fn word(data: &[u8], at: usize, be: bool) -> Option<u32> {
    let b: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if be {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(caplen: u32, origlen: u32) -> Vec<u8> {
        let origlen = origlen.max(20);
        let mut r = Vec::new();
        for w in [1_700_000_000u32, 5, caplen, origlen] {
            r.extend_from_slice(&w.to_le_bytes());
        }
        r.extend(std::iter::repeat_n(0xab, caplen as usize));
        r
    }

    #[test]
    fn legacy_records() {
        let mut f = Framing::from_magic([0xd4, 0xc3, 0xb2, 0xa1]).unwrap();
        let two = [rec(10, 10), rec(20, 60)].concat();
        assert_eq!(f.judge(&two, false, false), Judge::Good);
        assert_eq!(f.judge(&rec(10, 10), false, true), Judge::NeedMore);
        assert_eq!(f.judge(&rec(10, 10), true, false), Judge::Good);
        assert_eq!(f.judge(&rec(10, 10)[..20], true, false), Judge::Cut);
        assert_eq!(f.judge(&[], true, false), Judge::Good);
        // caplen over origlen, over the maximum, a bad microsecond field.
        assert_eq!(f.judge(&rec(30, 29), true, false), Judge::Bad);
        let mut huge = rec(10, 10);
        huge[8..12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        huge[12..16].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        assert_eq!(f.judge(&huge, false, false), Judge::Bad);
        // A plausible but wrong length: the next header gives it away.
        let mut wrong = two.clone();
        wrong[8..12].copy_from_slice(&12u32.to_le_bytes());
        wrong[12..16].copy_from_slice(&12u32.to_le_bytes());
        assert_eq!(f.judge(&wrong, false, true), Judge::Bad);
    }

    #[test]
    fn ng_blocks() {
        let mut f = Framing::from_magic([0x0a, 0x0d, 0x0d, 0x0a]).unwrap();
        let mut b = Vec::new();
        for w in [6u32, 32, 0, 0, 0, 0, 0, 32] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(f.judge(&b, false, false), Judge::Good);
        assert_eq!(f.judge(&b[..20], false, false), Judge::NeedMore);
        let mut bad = b.clone();
        bad[4..8].copy_from_slice(&36u32.to_le_bytes());
        assert_eq!(
            f.judge(&[bad, vec![0; 8]].concat(), false, false),
            Judge::Bad
        );
        let mut unknown = b.clone();
        unknown[0] = 0x77;
        assert_eq!(f.judge(&unknown, false, false), Judge::Bad);
    }
}
