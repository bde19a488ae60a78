//! The server side of a replication link: what a master sends a replica after `+FULLRESYNC`,
//! `+CONTINUE` or `SYNC` (see `docs/redis-notes.md`). None of it is a reply:
//!
//! - bare `\n` keepalives while the RDB is being produced (and, from a replica that lost its own
//!   master, between propagated commands);
//! - the RDB: `$<len>\r\n<len bytes>` with no CRLF after it, or (diskless)
//!   `$EOF:<40-byte mark>\r\n<rdb><the same mark>`; skipped by length or by scanning for the
//!   mark, keeping at most the mark and 40 bytes of the stream;
//! - the propagated commands, multibulk arrays exactly as a client sends them, so the request
//!   decoder reads them. Their bytes advance the master's replication offset; keepalives do not.

use std::net::SocketAddr;

use crate::conn::ConnMeta;
use crate::record::{Dir, Notice, ReplEvent, Sink, SyncKind};
use crate::resp::{DesyncReason, Limits, RequestDecoder, RequestEvent};

/// Length of the diskless transfer's end mark.
const MARK: usize = 40;
/// Longest `$<len>` / `$EOF:<mark>` line taken.
const MAX_HDR: usize = 64;

/// The stream's commands are counted, not shown: keep next to nothing of them.
fn limits() -> Limits {
    Limits {
        keep_args: 2,
        keep_arg_bytes: 16,
        ..Limits::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Keepalives until the RDB header.
    AwaitRdb,
    /// Inside the `$...` line (`hdr_len` bytes of it kept).
    RdbHeader,
    /// `left` RDB bytes to skip.
    Rdb { left: u64 },
    /// Diskless RDB: scanning for the end mark.
    RdbEof,
    /// Propagated commands.
    Commands,
}

/// Who the link is, for its events.
#[derive(Clone, Debug)]
pub(super) struct Names {
    pub meta: ConnMeta,
    pub replica: SocketAddr,
}

pub(super) struct Link {
    st: St,
    cmds: RequestDecoder,
    /// Master offset of the last byte streamed (known from the handshake).
    offset: Option<u64>,
    /// The replica's last `REPLCONF ACK`.
    acked: Option<u64>,
    hdr: [u8; MAX_HDR],
    hdr_len: usize,
    mark: [u8; MARK],
    /// The last bytes of the diskless RDB seen so far (a mark can straddle feeds).
    tail: [u8; MARK],
    tail_len: usize,
    rdb_bytes: u64,
    rdb_ts: u64,
}

impl Link {
    /// After `+FULLRESYNC <id> <offset>` (`base` = offset), `+CONTINUE` (`base` = the PSYNC
    /// offset minus one), `SYNC` (offset unknown), or picked up mid-stream.
    pub(super) fn new(kind: SyncKind, base: Option<u64>) -> Self {
        let (st, cmds) = match kind {
            SyncKind::Full => (St::AwaitRdb, RequestDecoder::new(limits())),
            SyncKind::Partial => (St::Commands, RequestDecoder::new(limits())),
            SyncKind::Unknown => (St::Commands, RequestDecoder::new_mid_stream(limits())),
        };
        Link {
            st,
            cmds,
            offset: base,
            acked: None,
            hdr: [0; MAX_HDR],
            hdr_len: 0,
            mark: [0; MARK],
            tail: [0; MARK],
            tail_len: 0,
            rdb_bytes: 0,
            rdb_ts: 0,
        }
    }

    pub(super) fn mem(&self) -> usize {
        size_of::<Self>() + self.cmds.mem()
    }

    /// The replica acknowledged `offset`: the lag behind the stream, when known.
    pub(super) fn ack(&mut self, offset: u64) -> Option<u64> {
        self.acked = Some(offset);
        self.lag()
    }

    fn lag(&self) -> Option<u64> {
        Some(self.offset?.saturating_sub(self.acked?))
    }

    pub(super) fn bytes(&mut self, ts: u64, mut data: &[u8], n: &Names, sink: &mut impl Sink) {
        while !data.is_empty() {
            data = match self.st {
                St::AwaitRdb => match data.iter().position(|&b| b != b'\n') {
                    None => &[],
                    Some(i) if data[i] == b'$' => {
                        (self.st, self.hdr_len, self.rdb_ts) = (St::RdbHeader, 0, ts);
                        &data[i + 1..]
                    }
                    // Not an RDB (a server that sends the stream at once): commands.
                    Some(i) => {
                        self.st = St::Commands;
                        &data[i..]
                    }
                },
                St::RdbHeader => self.header(ts, data, n, sink),
                St::Rdb { left } => {
                    let take = left.min(data.len() as u64);
                    self.rdb_bytes += take;
                    self.st = St::Rdb { left: left - take };
                    if left == take {
                        self.rdb_done(ts, n, sink);
                    }
                    // take <= data.len()
                    data.get(take as usize..).unwrap_or_default()
                }
                St::RdbEof => self.scan_mark(ts, data, n, sink),
                St::Commands => {
                    self.commands(ts, data, n, sink);
                    &[]
                }
            };
        }
    }

    /// `len` bytes of the stream were not captured.
    pub(super) fn missing(&mut self, ts: u64, len: u64, n: &Names, sink: &mut impl Sink) {
        match self.st {
            St::Rdb { left } if len <= left => {
                self.rdb_bytes += len;
                self.st = St::Rdb { left: left - len };
                if len == left {
                    self.rdb_done(ts, n, sink);
                }
            }
            St::Commands => {
                let mut lost = false;
                self.cmds.missing(ts, len, &mut |ev| {
                    lost |= matches!(ev, RequestEvent::Desync(_));
                });
                if lost {
                    self.gap(ts, n, sink);
                }
            }
            // Where the RDB ends (or the header) was lost: look for the next command.
            _ => {
                self.gap(ts, n, sink);
                self.resync_commands();
            }
        }
    }

    fn gap(&mut self, ts: u64, n: &Names, sink: &mut impl Sink) {
        // Bytes of the stream were lost: the offset can no longer be followed.
        self.offset = None;
        sink.notice(
            &n.meta,
            ts,
            Notice::Desync {
                dir: Dir::Reply,
                reason: DesyncReason::Gap,
            },
        );
    }

    fn resync_commands(&mut self) {
        self.st = St::Commands;
        self.cmds = RequestDecoder::new_mid_stream(limits());
    }

    fn header<'d>(&mut self, ts: u64, data: &'d [u8], n: &Names, sink: &mut impl Sink) -> &'d [u8] {
        let (line, rest, done) = match memchr::memchr(b'\n', data) {
            Some(i) => (&data[..i], &data[i + 1..], true),
            None => (data, &[][..], false),
        };
        let room = MAX_HDR - self.hdr_len;
        if line.len() > room {
            // No such header from Redis: we are lost.
            self.bad(ts, n, sink);
            return rest;
        }
        self.hdr[self.hdr_len..self.hdr_len + line.len()].copy_from_slice(line);
        self.hdr_len += line.len();
        if !done {
            return rest;
        }
        let h = &self.hdr[..self.hdr_len];
        let h = h.strip_suffix(b"\r").unwrap_or(h);
        if let Some(mark) = h.strip_prefix(b"EOF:") {
            if let Some(m) = mark.get(..MARK) {
                self.mark.copy_from_slice(m);
                (self.st, self.tail_len, self.rdb_bytes) = (St::RdbEof, 0, 0);
                return rest;
            }
        } else if let Some(len) = std::str::from_utf8(h).ok().and_then(|s| s.parse().ok()) {
            (self.st, self.rdb_bytes) = (St::Rdb { left: len }, 0);
            return rest;
        }
        self.bad(ts, n, sink);
        rest
    }

    fn bad(&mut self, ts: u64, n: &Names, sink: &mut impl Sink) {
        sink.notice(
            &n.meta,
            ts,
            Notice::Desync {
                dir: Dir::Reply,
                reason: DesyncReason::BadByte,
            },
        );
        self.resync_commands();
    }

    /// Diskless RDB: consumes up to the end mark (or all of `data`).
    fn scan_mark<'d>(
        &mut self,
        ts: u64,
        data: &'d [u8],
        n: &Names,
        sink: &mut impl Sink,
    ) -> &'d [u8] {
        // A mark that starts in the bytes kept from earlier feeds ends in the first MARK - 1
        // bytes of this one.
        let mut end = None;
        if self.tail_len > 0 {
            let head = data.len().min(MARK - 1);
            let mut buf = [0u8; 2 * MARK];
            buf[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            buf[self.tail_len..self.tail_len + head].copy_from_slice(&data[..head]);
            if let Some(i) = memchr::memmem::find(&buf[..self.tail_len + head], &self.mark) {
                end = Some(i + MARK - self.tail_len);
            }
        }
        if end.is_none() {
            end = memchr::memmem::find(data, &self.mark).map(|i| i + MARK);
        }
        let take = end.unwrap_or(data.len());
        self.rdb_bytes += take as u64;
        if end.is_some() {
            let bytes = self.rdb_bytes.saturating_sub(MARK as u64);
            self.rdb_bytes = bytes;
            self.rdb_done(ts, n, sink);
            return &data[take..];
        }
        // Keep the last MARK bytes seen.
        if data.len() >= MARK {
            self.tail.copy_from_slice(&data[data.len() - MARK..]);
            self.tail_len = MARK;
        } else {
            let keep = (MARK - data.len()).min(self.tail_len);
            self.tail
                .copy_within(self.tail_len - keep..self.tail_len, 0);
            self.tail[keep..keep + data.len()].copy_from_slice(data);
            self.tail_len = keep + data.len();
        }
        &[]
    }

    fn rdb_done(&mut self, ts: u64, n: &Names, sink: &mut impl Sink) {
        self.st = St::Commands;
        let ev = ReplEvent::Rdb {
            bytes: self.rdb_bytes,
            duration_ns: ts.saturating_sub(self.rdb_ts),
        };
        sink.replication(&n.meta, n.replica, ev);
    }

    fn commands(&mut self, ts: u64, data: &[u8], n: &Names, sink: &mut impl Sink) {
        let (mut count, mut bytes, mut bad, mut dead) = (0u64, 0u64, None, false);
        self.cmds.feed(ts, data, &mut |ev| match ev {
            RequestEvent::Command(req) => {
                count += 1;
                bytes += req.wire_len;
            }
            RequestEvent::Empty => {}
            RequestEvent::ProtocolError(..) => {
                (bad, dead) = (Some(DesyncReason::BadByte), true);
            }
            RequestEvent::Desync(r) => bad = Some(r),
        });
        if let Some(reason) = bad {
            self.offset = None;
            sink.notice(
                &n.meta,
                ts,
                Notice::Desync {
                    dir: Dir::Reply,
                    reason,
                },
            );
            if dead {
                // A protocol error leaves the decoder dead: look for the next command instead.
                self.resync_commands();
            }
        }
        self.streamed(count, bytes, n, sink);
    }

    /// Counts propagated commands that reached the link some other way (read as replies before
    /// the link was recognised).
    pub(super) fn streamed(&mut self, commands: u64, bytes: u64, n: &Names, sink: &mut impl Sink) {
        if commands == 0 && bytes == 0 {
            return;
        }
        if let Some(o) = self.offset.as_mut() {
            *o = o.saturating_add(bytes);
        }
        let ev = ReplEvent::Stream {
            commands,
            bytes,
            offset: self.offset,
            lag: self.lag(),
        };
        sink.replication(&n.meta, n.replica, ev);
    }
}
