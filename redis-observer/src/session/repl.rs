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
//!
//! Redis 8 splits a full sync over two connections (`repl-rdb-channel`, with a diskless
//! master): the main connection's PSYNC is answered `+RDBCHANNELSYNC <client id>` and the stream
//! follows at once; the replica opens an RDB channel (`REPLCONF ... rdb-channel 1
//! main-ch-client-id <id>`, then `PSYNC`) that gets `+FULLRESYNC <replid> <offset>`, the RDB, and
//! is closed. The main link's stream starts at that offset: the two sessions are joined by the
//! pipeline ([`super::RdbChannels`]), which hands the offset over ([`Link::set_base`]).
//!
//! Valkey's dual-channel sync (off by default) differs: the main connection gets
//! `+DUALCHANNELSYNC`, an ordinary reply; the RDB channel (`REPLCONF ... rdb-channel 1`) sends
//! `SYNC` and gets `$ENDOFF:<offset> <replid> <dbid> <client id>` before the `$EOF:` RDB; the
//! main connection then sends `PSYNC <replid> <offset + 1>`, answered `+CONTINUE`: its link
//! knows its offset by itself.

use std::net::SocketAddr;

use crate::commands::{self, UNKNOWN};
use crate::conn::ConnMeta;
use crate::record::{Dir, Notice, ReplEvent, Sink, Status, SyncKind};
use crate::resp::{DesyncReason, Kind, Limits, Reply, Request, RequestDecoder, RequestEvent};

use super::emit::Outcome;
use super::pending::{Entry, Role};
use super::{Core, RdbChannelNote, parse_u64};

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
    kind: SyncKind,
    st: St,
    cmds: RequestDecoder,
    /// Master offset of the last byte streamed (known from the handshake).
    offset: Option<u64>,
    /// A main channel waiting for its RDB channel's `+FULLRESYNC`: bytes streamed so far.
    pre_base: Option<u64>,
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
    /// offset minus one), `SYNC` (offset unknown), `+RDBCHANNELSYNC` (offset learned later), or
    /// picked up mid-stream.
    pub(super) fn new(kind: SyncKind, base: Option<u64>) -> Self {
        let (st, cmds) = match kind {
            SyncKind::Full | SyncKind::RdbChannel => (St::AwaitRdb, RequestDecoder::new(limits())),
            SyncKind::Partial | SyncKind::MainChannel => {
                (St::Commands, RequestDecoder::new(limits()))
            }
            SyncKind::Unknown => (St::Commands, RequestDecoder::new_mid_stream(limits())),
        };
        Link {
            kind,
            st,
            cmds,
            offset: base,
            pre_base: (kind == SyncKind::MainChannel).then_some(0),
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

    pub(super) fn kind(&self) -> SyncKind {
        self.kind
    }

    /// A main channel learned where its stream started (its RDB channel's `+FULLRESYNC`
    /// offset): the stream offset and lag from now on. `None` when it was not waiting for one
    /// (already known, or lost to a gap).
    pub(super) fn set_base(&mut self, base: u64) -> Option<(u64, Option<u64>)> {
        let streamed = self.pre_base.take()?;
        let offset = base.saturating_add(streamed);
        self.offset = Some(offset);
        Some((offset, self.lag()))
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
        (self.offset, self.pre_base) = (None, None);
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
        if h.starts_with(b"ENDOFF:") {
            // Valkey's dual-channel sync: `$ENDOFF:<offset> <replid> <dbid> <client id>` comes
            // before the RDB's own header on the RDB channel.
            self.st = St::AwaitRdb;
            return rest;
        }
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
            (self.offset, self.pre_base) = (None, None);
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
        if let Some(p) = self.pre_base.as_mut() {
            *p = p.saturating_add(bytes);
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

// ------------------------------------------------------------------------------------------------
// The session's side: recognising a link and handing the server's bytes to it

impl Core {
    /// The link's names for its events, while there is a link.
    pub(super) fn link_names(&self) -> Option<Names> {
        self.link.as_ref()?;
        let client = self.meta.client;
        let replica = if self.repl_port == 0 {
            client
        } else {
            SocketAddr::new(client.ip(), self.repl_port)
        };
        Some(Names {
            meta: self.meta.clone(),
            replica,
        })
    }

    /// A PSYNC or SYNC awaits its answer.
    pub(super) fn awaits_link(&self) -> bool {
        self.pending
            .iter()
            .any(|e| matches!(e.role, Role::Psync | Role::Sync))
    }

    pub(super) fn sync_at_head(&self) -> bool {
        self.pending.front().is_some_and(|e| e.role == Role::Sync)
    }

    /// The stream started where SYNC's reply would be: SYNC ran, and the stream is its answer.
    pub(super) fn start_sync(&mut self, ts: u64, sink: &mut impl Sink) {
        let Some(h) = self.pending.front().copied() else {
            return;
        };
        let o = Outcome {
            latency_ns: Some(ts.saturating_sub(h.ts_last)),
            ..Outcome::bare(Status::Ok, 0, false)
        };
        self.emit(&h, o, sink);
        self.pop_pending();
        // Valkey's dual-channel RDB channel syncs with SYNC.
        let kind = if self.rdb_channel {
            SyncKind::RdbChannel
        } else {
            SyncKind::Full
        };
        self.start_link(kind, None, sink);
    }

    /// From here on the server side is a replication stream, and the client a replica whose
    /// commands (ACKs) the master never answers.
    pub(super) fn start_link(&mut self, kind: SyncKind, base: Option<u64>, sink: &mut impl Sink) {
        // A second handshake on one connection: the old link ends here.
        self.link_down(sink);
        self.link = Some(Box::new(Link::new(kind, base)));
        self.link_watch = true;
        self.reply_off = true;
        if let Some(n) = self.link_names() {
            sink.replication(&n.meta, n.replica, ReplEvent::Up(kind));
        }
    }

    /// The link ends (an RDB channel was never counted as one).
    pub(super) fn link_down(&mut self, sink: &mut impl Sink) {
        if let Some(n) = self.link_names()
            && self
                .link
                .as_ref()
                .is_some_and(|l| l.kind() != SyncKind::RdbChannel)
        {
            sink.replication(&n.meta, n.replica, ReplEvent::Down);
        }
    }

    /// The main channel `id` learned its stream's starting offset from its RDB channel.
    pub(super) fn rdb_channel_offset(&mut self, id: u64, offset: u64, sink: &mut impl Sink) {
        if self.closed || self.main_channel_id != Some(id) {
            return;
        }
        let Some(n) = self.link_names() else {
            return;
        };
        let Some(link) = self
            .link
            .as_deref_mut()
            .filter(|l| l.kind() == SyncKind::MainChannel)
        else {
            return;
        };
        if let Some((offset, lag)) = link.set_base(offset) {
            let ev = ReplEvent::Stream {
                commands: 0,
                bytes: 0,
                offset: Some(offset),
                lag,
            };
            sink.replication(&n.meta, n.replica, ev);
        }
    }

    /// `REPLCONF ACK <offset>`: only a replica sends it, so it also reveals a link picked up
    /// mid-stream.
    pub(super) fn on_ack(&mut self, req: &Request, sink: &mut impl Sink) {
        let mut i = 1;
        let offset = loop {
            let Some((opt, len)) = req.arg(i) else {
                return; // GETACK: no link is implied
            };
            if len == 3 && opt.eq_ignore_ascii_case(b"ack") {
                break req.arg(i + 1).and_then(|(v, _)| parse_u64(v));
            }
            i += 2;
        };
        if self.link.is_none() {
            self.start_link(SyncKind::Unknown, None, sink);
        }
        let (Some(offset), Some(n)) = (offset, self.link_names()) else {
            return;
        };
        let lag = self.link.as_deref_mut().and_then(|l| l.ack(offset));
        sink.replication(&n.meta, n.replica, ReplEvent::Ack { offset, lag });
    }

    /// PSYNC's answer: `+FULLRESYNC <replid> <offset>`, `+CONTINUE [<replid>]` or
    /// `+RDBCHANNELSYNC <client id>` start a link.
    pub(super) fn on_psync_reply(&mut self, psync: &Entry, r: &Reply, sink: &mut impl Sink) {
        if r.kind != Kind::Simple {
            return;
        }
        let mut words = r.text.split(|&b| b == b' ');
        match words.next() {
            Some(b"FULLRESYNC") => {
                let base = words.nth(1).and_then(parse_u64);
                match self.rdb_channel_of {
                    // An RDB channel: its snapshot's offset is where the main channel's stream
                    // starts.
                    Some(id) => {
                        self.start_link(SyncKind::RdbChannel, base, sink);
                        if let Some(offset) = base {
                            self.rdb_note = Some(RdbChannelNote::Rdb { id, offset });
                        }
                    }
                    None if self.rdb_channel => {
                        self.start_link(SyncKind::RdbChannel, base, sink);
                    }
                    None => self.start_link(SyncKind::Full, base, sink),
                }
            }
            Some(b"RDBCHANNELSYNC") => {
                // The stream starts now; the RDB comes on another connection.
                self.main_channel_id = words.next().and_then(parse_u64);
                self.start_link(SyncKind::MainChannel, None, sink);
                if let Some(id) = self.main_channel_id {
                    self.rdb_note = Some(RdbChannelNote::Main { id });
                }
            }
            Some(b"CONTINUE") => {
                // The master resumes at the offset the replica asked for.
                let asked = self.entry_arg(psync, 1).and_then(parse_u64);
                self.start_link(SyncKind::Partial, asked.map(|o| o.saturating_sub(1)), sink);
            }
            _ => {}
        }
    }

    /// Kept bytes of argument `i` (after the name) of a pending entry.
    pub(super) fn entry_arg(&self, e: &Entry, i: usize) -> Option<&[u8]> {
        let a = self.args.slice(e.args_at, e.args_len as usize).get(i)?;
        if a.redacted || u64::from(a.kept) != a.len {
            return None;
        }
        let buf = self.bytes.slice(e.bytes_at, e.bytes_len as usize);
        buf.get(a.start as usize..(a.start + a.kept) as usize)
    }

    /// A reply nothing waits for. A replication stream picked up mid-stream (or whose handshake
    /// was lost) shows itself here: arrays of bulk strings naming a command, sent by the server.
    #[cold]
    pub(super) fn orphan(&mut self, r: &Reply, sink: &mut impl Sink) {
        if self.link.is_none() && is_command_array(r) {
            self.start_link(SyncKind::Unknown, None, sink);
        }
        if let Some(n) = self.link_names() {
            // The rest of the feed that revealed the link was read as replies: count its
            // commands, drop the rest quietly.
            if let Some(link) = self.link.as_deref_mut()
                && is_command_array(r)
            {
                link.streamed(1, 0, &n, sink);
            }
            return;
        }
        self.notice(sink, Notice::OrphanReply);
    }
}

/// A RESP2 array of bulk strings whose first names a command: what a master propagates.
pub(super) fn is_command_array(r: &Reply) -> bool {
    r.kind == Kind::Array
        && r.len >= 1
        && r.children.len() as i64 == r.len
        && r.children.iter().all(|c| c.kind == Kind::Bulk)
        && r.child_text(0)
            .is_some_and(|name| commands::by_name(name) != UNKNOWN)
}
