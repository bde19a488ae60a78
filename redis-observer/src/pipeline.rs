//! Segments in, records out: the flow table, per-direction reassembly and per-connection
//! pairing, glued together. Shared unchanged by the live daemon and `replay`.

use std::{net::SocketAddr, sync::Arc};

use redis_ebpf_common::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

use crate::{
    conn::{ConnMeta, Process},
    flows::{
        CloseReason, FlowKey, FlowLimits, FlowState, FlowTable, Lifecycle, PortSet, Transition,
    },
    reassembly::{Stream, StreamEvent, StreamLimits},
    record::{Dir, EvictReason, FlowEvent, MissReason, Sink},
    segment::Segment,
    session::{RdbChannelNote, RdbChannels, Session, SessionLimits},
};

#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub ports: Vec<u16>,
    pub session: SessionLimits,
    pub stream: StreamLimits,
    pub flows: FlowLimits,
    /// Connections without traffic for this long are closed (their pending commands become
    /// `unanswered`).
    pub idle_timeout_ns: u64,
}

/// Sees each connection's reassembled bytes, in stream order, before they are decoded
/// (debugging: `run --dump-streams`).
pub type StreamTap = Box<dyn FnMut(&ConnMeta, Dir, &[u8])>;

/// Finds the local processes at both ends of a connection (the live daemon's process
/// attribution; `replay` has none). Called once per connection, when its first request bytes
/// arrive: by then the client has finished its handshake, so whatever the kernel recorded about
/// it is there.
pub trait Attributor {
    /// `client` and `server` as the connection's key has them; `syn_ts`: when the client's SYN
    /// was seen (ns since the epoch), `None` for a connection picked up mid-stream.
    fn attribute(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        syn_ts: Option<u64>,
    ) -> (Option<Arc<Process>>, Option<Arc<Process>>);
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            ports: vec![6379],
            session: SessionLimits::default(),
            stream: StreamLimits::default(),
            flows: FlowLimits::default(),
            idle_timeout_ns: 600 * 1_000_000_000,
        }
    }
}

/// One TCP connection.
pub struct Conn {
    session: Session,
    req: Stream,
    rep: Stream,
    life: Lifecycle,
    /// Both FINs seen (ns) but data before them still missing: segments of one connection can
    /// reach the ring out of order (different CPUs). Closed once the streams catch up, or by
    /// the periodic tick after `CLOSE_WAIT_NS`.
    closing_since: Option<u64>,
    /// Timestamp of its latest segment.
    last_ns: u64,
    /// When the client's SYN was seen; `None` when picked up mid-stream.
    syn_ts: Option<u64>,
    /// Process attribution was done (once per connection).
    attributed: bool,
}

/// How long a connection that sent both FINs waits for data still in flight before its FINs.
const CLOSE_WAIT_NS: u64 = 1_000_000_000;

/// How long a connection that sent one FIN may stay silent before it is closed out. Redis never
/// half-closes: it closes as soon as it reads the client's EOF (after the replies it owes), and
/// after its own FIN it runs nothing more. So one FIN and silence means the other FIN was not
/// seen (lost with a full ring buffer, or a client that never closes its end): without this the
/// connection stayed in `redis_connections_active` and the flow table until the idle timeout.
const HALF_CLOSED_IDLE_NS: u64 = 5_000_000_000;

impl FlowState for Conn {
    fn mem(&self) -> usize {
        self.session.mem() + self.req.mem() + self.rep.mem()
    }

    /// The server answered the handshake or sent bytes. A flood of spoofed SYNs with data to
    /// an address that never answers stays unconfirmed: cheap to lose, and never `busy`.
    fn confirmed(&self) -> bool {
        self.life.saw_server_syn() || self.rep.bytes_delivered() > 0 || self.rep.bytes_missing() > 0
    }

    fn busy(&self) -> bool {
        self.confirmed() && self.session.waiting()
    }
}

impl Conn {
    fn new(cfg: &PipelineConfig, key: &FlowKey, seg: &Segment<'_>, mid_stream: bool) -> Conn {
        let meta = ConnMeta::new(key.client, key.server).with_capture(seg.capture.clone());
        Conn {
            session: Session::new(meta, &cfg.session, mid_stream),
            req: Stream::new(cfg.stream),
            rep: Stream::new(cfg.stream),
            life: Lifecycle::new(),
            closing_since: None,
            last_ns: 0,
            syn_ts: (!mid_stream).then_some(seg.ts_ns),
            attributed: false,
        }
    }

    /// Asks `a` who is at both ends, once.
    fn attribute(&mut self, a: &mut dyn Attributor) {
        self.attributed = true;
        let (client, server) = {
            let m = self.session.meta();
            (m.client, m.server)
        };
        let (cp, sp) = a.attribute(client, server, self.syn_ts);
        if cp.is_none() && sp.is_none() {
            return;
        }
        let m = self.session.meta_mut();
        m.client_proc = cp;
        m.server_proc = sp;
        // The metrics' client label may come from the process.
        m.ident.label_changed();
    }

    fn meta(&self) -> &ConnMeta {
        self.session.meta()
    }

    /// A segment's ACK tells what the peer received of the opposite direction: holes before it
    /// will never be filled (see `Stream::acked`).
    fn acked(
        &mut self,
        dir: Dir,
        seg: &Segment<'_>,
        tap: &mut Option<StreamTap>,
        sink: &mut impl Sink,
    ) {
        if seg.flags & TCP_ACK == 0 {
            return;
        }
        let Conn {
            session, req, rep, ..
        } = self;
        let (other, odir) = match dir {
            Dir::Request => (rep, Dir::Reply),
            Dir::Reply => (req, Dir::Request),
        };
        let before = *other.stats();
        let ignored = session.ignored();
        other.acked(seg.ack, seg.ts_ns, &mut |ev| {
            if !ignored {
                deliver(session, tap, odir, ev, sink);
            }
        });
        report_missing(session.meta(), &before, other.stats(), sink);
    }

    /// Hands a segment's bytes to its direction's stream and the stream's output to the pairing;
    /// reports bytes the stream found missing.
    fn push(
        &mut self,
        dir: Dir,
        seg: &Segment<'_>,
        tap: &mut Option<StreamTap>,
        sink: &mut impl Sink,
    ) {
        let Conn {
            session, req, rep, ..
        } = self;
        let stream = match dir {
            Dir::Request => req,
            Dir::Reply => rep,
        };
        let before = *stream.stats();
        let ignored = session.ignored();
        stream.push(seg.ts_ns, seg.seq, seg.data, seg.missing, &mut |ev| {
            if ignored {
                return;
            }
            deliver(session, tap, dir, ev, sink);
        });
        report_missing(session.meta(), &before, stream.stats(), sink);
        if session.ignored() {
            // Not decoded (not RESP), but Redis may run what it carries: counted, never silent.
            let n = seg.data.len() as u64 + u64::from(seg.missing);
            sink.flow(
                session.meta(),
                FlowEvent::BytesMissed {
                    reason: MissReason::Ignored,
                    n,
                },
            );
        }
    }

    /// What the session learned about a Redis 8 rdb-channel sync, for the pipeline to join.
    fn take_note(&mut self, key: FlowKey) -> Option<Note> {
        let note = self.session.take_rdb_channel_note()?;
        Some((self.session.meta().server, key, note))
    }

    /// End of the connection: everything held goes out, pending commands become unanswered.
    fn close(mut self, ts: u64, tap: &mut Option<StreamTap>, sink: &mut impl Sink) {
        let Conn {
            session, req, rep, ..
        } = &mut self;
        for (dir, stream) in [(Dir::Request, req), (Dir::Reply, rep)] {
            let before = *stream.stats();
            stream.flush(&mut |ev| deliver(session, tap, dir, ev, sink));
            report_missing(session.meta(), &before, stream.stats(), sink);
        }
        session.close(ts, sink);
        sink.flow(session.meta(), FlowEvent::Closed);
    }
}

fn deliver(
    session: &mut Session,
    tap: &mut Option<StreamTap>,
    dir: Dir,
    ev: StreamEvent<'_>,
    sink: &mut impl Sink,
) {
    if let (Some(tap), StreamEvent::Data { bytes, .. }) = (tap.as_mut(), &ev) {
        tap(session.meta(), dir, bytes);
    }
    match (dir, ev) {
        (Dir::Request, StreamEvent::Data { ts, bytes }) => session.client_bytes(ts, bytes, sink),
        (Dir::Reply, StreamEvent::Data { ts, bytes }) => session.server_bytes(ts, bytes, sink),
        (Dir::Request, StreamEvent::Missing { ts, len }) => session.client_missing(ts, len, sink),
        (Dir::Reply, StreamEvent::Missing { ts, len }) => session.server_missing(ts, len, sink),
    }
}

fn report_missing(
    meta: &ConnMeta,
    before: &crate::reassembly::StreamStats,
    after: &crate::reassembly::StreamStats,
    sink: &mut impl Sink,
) {
    let nc = after
        .bytes_not_captured
        .saturating_sub(before.bytes_not_captured);
    if nc > 0 {
        sink.flow(
            meta,
            FlowEvent::BytesMissed {
                reason: MissReason::NotCaptured,
                n: nc,
            },
        );
    }
    let gap = after.bytes_gap.saturating_sub(before.bytes_gap);
    if gap > 0 {
        sink.flow(
            meta,
            FlowEvent::BytesMissed {
                reason: MissReason::Gap,
                n: gap,
            },
        );
    }
}

/// A session's [`RdbChannelNote`], with its server and connection.
type Note = (SocketAddr, FlowKey, RdbChannelNote);

/// Counters of the pipeline itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct PipelineStats {
    pub segments: u64,
}

pub struct Pipeline {
    cfg: PipelineConfig,
    table: FlowTable<Conn>,
    ports: PortSet,
    pub stats: PipelineStats,
    last_ts: u64,
    tap: Option<StreamTap>,
    attributor: Option<Box<dyn Attributor>>,
    /// Redis 8 rdb-channel syncs with one side seen (bounded, expiring).
    rdb_channels: RdbChannels<FlowKey>,
    /// The note of the segment being handled.
    note: Option<Note>,
}

impl Pipeline {
    pub fn new(cfg: PipelineConfig) -> Pipeline {
        let ports: PortSet = cfg.ports.iter().copied().collect();
        let table = FlowTable::new(ports.clone(), cfg.flows);
        Pipeline {
            cfg,
            table,
            ports,
            stats: PipelineStats::default(),
            last_ts: 0,
            tap: None,
            attributor: None,
            rdb_channels: RdbChannels::default(),
            note: None,
        }
    }

    /// Attributes every new connection to local processes through `a` (live capture).
    pub fn set_attributor(&mut self, a: Box<dyn Attributor>) {
        self.attributor = Some(a);
    }

    /// Shows every connection's reassembled bytes to `tap` (debugging).
    pub fn set_tap(&mut self, tap: StreamTap) {
        self.tap = Some(tap);
    }

    /// Latest segment timestamp seen (ns since the epoch).
    pub fn last_ts(&self) -> u64 {
        self.last_ts
    }

    pub fn flows(&self) -> usize {
        self.table.len()
    }

    pub fn mem(&self) -> usize {
        self.table.mem() + self.rdb_channels.mem()
    }

    pub fn segment(&mut self, seg: &Segment<'_>, sink: &mut impl Sink) {
        self.stats.segments += 1;
        self.last_ts = self.last_ts.max(seg.ts_ns);
        let opens = seg.flags & TCP_SYN != 0 || !seg.data.is_empty() || seg.missing > 0;
        let mut evicted: Vec<(FlowKey, Conn)> = Vec::new();
        let closed = self.segment_in_flow(seg, opens, &mut evicted, sink);
        if let Some(note) = self.note.take() {
            self.join(note, seg.ts_ns, sink);
        }
        if let Some(key) = closed {
            if let Some(conn) = self.table.remove(&key) {
                conn.close(seg.ts_ns, &mut self.tap, sink);
            }
        }
        // A flow grows between ticks (pipelined commands awaiting replies, held segments): the
        // memory cap holds at every segment, not only once a second.
        self.table
            .enforce_mem(seg.ts_ns, |k, c| evicted.push((k, c)));
        self.evict(evicted, seg.ts_ns, sink);
    }

    /// The part of `segment` that works inside the flow; returns the key if the connection closed.
    fn segment_in_flow(
        &mut self,
        seg: &Segment<'_>,
        opens: bool,
        evicted: &mut Vec<(FlowKey, Conn)>,
        sink: &mut impl Sink,
    ) -> Option<FlowKey> {
        let syn = seg.flags & TCP_SYN != 0;
        let cfg = &self.cfg;
        let found = if opens {
            let client_syn = syn && seg.flags & TCP_ACK == 0;
            self.table.get_or_insert_with(
                seg.src,
                seg.dst,
                seg.ts_ns,
                |key, _dir| Conn::new(cfg, key, seg, !client_syn),
                |k, c| evicted.push((k, c)),
            )
        } else if seg.flags & (TCP_FIN | TCP_RST) != 0 || seg.flags & TCP_ACK != 0 {
            self.table.get(seg.src, seg.dst, seg.ts_ns)
        } else {
            None
        };
        let mut flow = match found {
            Some(f) => f,
            None => {
                if opens {
                    let (key, _) = crate::flows::orient(&self.ports, seg.src, seg.dst);
                    let meta =
                        ConnMeta::new(key.client, key.server).with_capture(seg.capture.clone());
                    sink.flow(&meta, FlowEvent::Refused);
                }
                return None;
            }
        };
        let key = flow.key();
        let dir = flow.dir();
        let tap = &mut self.tap;
        if flow.is_new() {
            sink.flow(flow.meta(), FlowEvent::Opened);
        }
        flow.last_ns = flow.last_ns.max(seg.ts_ns);
        let mut closed = false;
        if syn {
            if flow.life.observe(dir, seg.flags, seg.seq) == Transition::Reopened {
                // The 4-tuple was reused for a new connection: end the old one first.
                let fresh = Conn::new(cfg, &key, seg, false);
                let old = std::mem::replace(&mut *flow, fresh);
                let _ = flow.life.observe(dir, seg.flags, seg.seq);
                old.close(seg.ts_ns, tap, sink);
                sink.flow(flow.meta(), FlowEvent::Opened);
            }
            match dir {
                Dir::Request => flow.req.set_isn(seg.seq.wrapping_add(1)),
                Dir::Reply => flow.rep.set_isn(seg.seq.wrapping_add(1)),
            }
            // A SYN's payload (TCP Fast Open) starts at seq + 1.
            if !seg.data.is_empty() {
                let shifted = Segment {
                    seq: seg.seq.wrapping_add(1),
                    ..*seg
                };
                flow.push(dir, &shifted, tap, sink);
            }
        } else {
            flow.acked(dir, seg, tap, sink);
            if !seg.data.is_empty() || seg.missing > 0 {
                if dir == Dir::Request && !flow.attributed {
                    if let Some(a) = self.attributor.as_deref_mut() {
                        flow.attribute(a);
                    }
                }
                flow.push(dir, seg, tap, sink);
            }
            if seg.flags & TCP_FIN != 0 {
                let len = u32::try_from(seg.data.len()).unwrap_or(u32::MAX);
                let fin = seg.seq.wrapping_add(len).wrapping_add(seg.missing);
                match dir {
                    Dir::Request => flow.req.set_fin(fin),
                    Dir::Reply => flow.rep.set_fin(fin),
                }
            }
            match flow.life.observe(dir, seg.flags, seg.seq) {
                Transition::Closed(CloseReason::Rst) => closed = true,
                Transition::Closed(CloseReason::Fin) => flow.closing_since = Some(seg.ts_ns),
                _ => {}
            }
            // After both FINs: close once everything before them has arrived.
            if flow.closing_since.is_some() && flow.req.reached_fin() && flow.rep.reached_fin() {
                closed = true;
            }
        }
        self.note = flow.take_note(key);
        closed.then_some(key)
    }

    /// Puts a session's rdb-channel note through the table; a completed pair hands the main
    /// connection its stream's starting offset.
    #[cold]
    fn join(&mut self, (server, key, note): Note, ts: u64, sink: &mut impl Sink) {
        if let Some(j) = self.rdb_channels.note(server, key, note, ts)
            && let Some(mut main) = self.table.get_key(&j.main)
        {
            main.session.rdb_channel_offset(j.id, j.offset, sink);
        }
    }

    fn evict(&mut self, evicted: Vec<(FlowKey, Conn)>, ts: u64, sink: &mut impl Sink) {
        for (_, c) in evicted {
            let reason = if !c.confirmed() {
                EvictReason::OneSided
            } else if c.busy() {
                EvictReason::Busy
            } else {
                EvictReason::Limit
            };
            sink.flow(c.meta(), FlowEvent::Evicted { reason });
            c.close(ts, &mut self.tap, sink);
        }
    }

    /// Periodic housekeeping: closes connections idle past the timeout, enforces the caps.
    pub fn tick(&mut self, now_ns: u64, sink: &mut impl Sink) {
        // Holes the capture will never fill (a lost event is not retransmitted) must not stall a
        // connection that went quiet.
        let mut stale_closing = Vec::new();
        let mut notes = Vec::new();
        let tap = &mut self.tap;
        self.table.for_each_mut(|key, conn| {
            let stale = match conn.closing_since {
                Some(t) => now_ns.saturating_sub(t) >= CLOSE_WAIT_NS,
                None => {
                    (conn.life.fin_seen(Dir::Request) || conn.life.fin_seen(Dir::Reply))
                        && now_ns.saturating_sub(conn.last_ns) >= HALF_CLOSED_IDLE_NS
                }
            };
            if stale {
                stale_closing.push(*key);
            }
            let Conn {
                session, req, rep, ..
            } = conn;
            for (dir, stream) in [(Dir::Request, req), (Dir::Reply, rep)] {
                if stream.held_segments() > 0 {
                    let before = *stream.stats();
                    stream.expire_held(now_ns, &mut |ev| deliver(session, tap, dir, ev, sink));
                    report_missing(session.meta(), &before, stream.stats(), sink);
                }
            }
            notes.extend(conn.take_note(*key));
        });
        for note in notes {
            self.join(note, now_ns, sink);
        }
        self.rdb_channels.expire(now_ns);
        // Both FINs seen long ago and data before them never came, or one FIN and silence:
        // close with what there is.
        for key in stale_closing {
            if let Some(conn) = self.table.remove(&key) {
                conn.close(now_ns, &mut self.tap, sink);
            }
        }
        let mut expired = Vec::new();
        self.table.expire(now_ns, self.cfg.idle_timeout_ns, |k, c| {
            expired.push((k, c))
        });
        for (_, c) in expired {
            sink.flow(
                c.meta(),
                FlowEvent::Evicted {
                    reason: EvictReason::Idle,
                },
            );
            c.close(now_ns, &mut self.tap, sink);
        }
    }

    /// End of input (replay) or shutdown: every connection is closed out.
    pub fn finish(&mut self, sink: &mut impl Sink) {
        let ts = self.last_ts;
        let mut all = Vec::new();
        self.table.drain(|k, c| all.push((k, c)));
        for (_, c) in all {
            c.close(ts, &mut self.tap, sink);
        }
    }
}

/// Addresses for display and labels: IPv4-mapped IPv6 shown as IPv4.
pub fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::CommandRecord;

    #[derive(Default)]
    struct Flows {
        opened: u32,
        closed: u32,
        commands: Vec<String>,
    }

    impl Sink for Flows {
        fn flow(&mut self, _c: &crate::conn::ConnMeta, e: FlowEvent) {
            match e {
                FlowEvent::Opened => self.opened += 1,
                FlowEvent::Closed => self.closed += 1,
                _ => {}
            }
        }
        fn command(&mut self, r: &CommandRecord<'_>) {
            self.commands.push(format!(
                "{} {}",
                String::from_utf8_lossy(r.name),
                r.status.as_str()
            ));
        }
    }

    const SEC: u64 = 1_000_000_000;

    /// The client half-closes after GET; the server's reply, and the FIN on its last segment,
    /// never reach the observer (lost with a full ring). The connection must not stay open.
    #[test]
    fn one_fin_and_silence_closes_the_connection() {
        let (c, s): (SocketAddr, SocketAddr) = (
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:6379".parse().unwrap(),
        );
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut f = Flows::default();
        let seg = |ts, src, dst, seq, flags, ack, data| Segment {
            ts_ns: ts,
            src,
            dst,
            seq,
            flags,
            ack,
            data,
            missing: 0,
            capture: crate::conn::Capture::unknown(),
        };
        let get = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        p.segment(&seg(SEC, c, s, 100, TCP_SYN, 0, &[]), &mut f);
        p.segment(&seg(SEC, s, c, 500, TCP_SYN | TCP_ACK, 101, &[]), &mut f);
        p.segment(&seg(SEC, c, s, 101, TCP_ACK, 501, get), &mut f);
        let fin_seq = 101 + get.len() as u32;
        p.segment(
            &seg(SEC, c, s, fin_seq, TCP_FIN | TCP_ACK, 501, &[]),
            &mut f,
        );
        p.tick(3 * SEC, &mut f);
        assert_eq!((f.opened, f.closed, p.flows()), (1, 0, 1));
        // Still silent 5 s after its last segment: closed out, the GET unanswered.
        p.tick(6 * SEC + 1, &mut f);
        assert_eq!((f.opened, f.closed, p.flows()), (1, 1, 0));
        assert_eq!(f.commands, vec!["GET unanswered"]);
    }

    /// Commands (executed ones, by name), notices and replication events, as text.
    #[derive(Default)]
    struct Repl {
        commands: std::collections::BTreeMap<String, u64>,
        notices: Vec<String>,
        events: Vec<String>,
    }

    impl Sink for Repl {
        fn command(&mut self, r: &CommandRecord<'_>) {
            if crate::session::executed(r) {
                *self
                    .commands
                    .entry(String::from_utf8_lossy(r.name).into_owned())
                    .or_insert(0) += 1;
            }
        }
        fn notice(&mut self, _c: &crate::conn::ConnMeta, _ts: u64, n: crate::record::Notice) {
            self.notices.push(format!("{n:?}"));
        }
        fn replication(
            &mut self,
            _c: &crate::conn::ConnMeta,
            replica: SocketAddr,
            e: crate::record::ReplEvent,
        ) {
            self.events.push(format!("{replica} {e:?}"));
        }
    }

    /// Redis 8.2's full sync through an RDB channel, as captured (see `docs/redis-notes.md`
    /// §4): replica 17003 syncs (main connection, then its RDB channel) while replica 57224's
    /// link, already running, is picked up mid-stream; writes during the RDB transfer, then a
    /// WAIT (GETACK in the stream). The pipeline joins the RDB channel to its main connection,
    /// whose link then knows where its stream stands: 202 at the end, as the master's
    /// `master_repl_offset` said; acknowledged 165.
    #[test]
    fn rdb_channel_joined_to_its_main_connection() {
        let pcap: &[u8] = include_bytes!("../../tests/data/replication/redis-8.2-rdb-channel.pcap");
        let mut r = crate::replay::PacketReader::new(pcap).expect("pcap");
        let mut p = Pipeline::new(PipelineConfig {
            ports: vec![17001],
            ..PipelineConfig::default()
        });
        let mut f = Repl::default();
        while let Some(seg) = r.next_segment().expect("segment") {
            p.segment(&seg, &mut f);
        }
        p.finish(&mut f);
        let want: std::collections::BTreeMap<String, u64> = [
            ("INCR", 1),
            ("PING", 1),
            ("PSYNC", 2),
            ("REPLCONF", 13),
            ("SET", 2),
            ("WAIT", 1),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .into();
        assert_eq!(f.commands, want);
        assert_eq!(f.notices, Vec::<String>::new());
        let of = |replica: &str| -> Vec<&str> {
            f.events
                .iter()
                .filter_map(|e| e.strip_prefix(replica))
                .collect()
        };
        let r3 = of("127.0.0.1:17003 ");
        assert_eq!(
            r3,
            [
                "Up(MainChannel)",
                "Up(RdbChannel)",
                "Stream { commands: 0, bytes: 0, offset: Some(55), lag: None }",
                "Stream { commands: 2, bytes: 56, offset: Some(111), lag: None }",
                "Stream { commands: 1, bytes: 27, offset: Some(138), lag: None }",
                "Rdb { bytes: 251, duration_ns: 0 }",
                "Ack { offset: 55, lag: Some(83) }",
                "Ack { offset: 138, lag: Some(0) }",
                "Ack { offset: 138, lag: Some(0) }",
                "Stream { commands: 2, bytes: 64, offset: Some(202), lag: Some(64) }",
                "Ack { offset: 165, lag: Some(37) }",
                "Down",
            ]
        );
        // The link picked up mid-stream: counted, no offset to know.
        let r0 = of("127.0.0.1:57224 ");
        assert_eq!(r0.first(), Some(&"Up(Unknown)"));
        assert!(r0.iter().all(|e| !e.contains("offset: Some")), "{r0:?}");
        assert_eq!(p.rdb_channels.len(), 0);
    }

    /// Records every call; names the client `cli` and the server `srv`.
    type CallLog = std::rc::Rc<std::cell::RefCell<Vec<(SocketAddr, Option<u64>)>>>;
    struct Calls(CallLog);

    impl Attributor for Calls {
        fn attribute(
            &mut self,
            client: SocketAddr,
            _server: SocketAddr,
            syn_ts: Option<u64>,
        ) -> (Option<Arc<Process>>, Option<Arc<Process>>) {
            self.0.borrow_mut().push((client, syn_ts));
            let p = |pid, comm: &str| {
                Some(Arc::new(Process {
                    pid,
                    comm: comm.into(),
                    ..Process::default()
                }))
            };
            (p(7, "cli"), p(1, "srv"))
        }
    }

    #[derive(Default)]
    struct Procs(Vec<(Option<u32>, Option<u32>)>);

    impl Sink for Procs {
        fn command(&mut self, r: &CommandRecord<'_>) {
            let pid = |p: &Option<Arc<Process>>| p.as_ref().map(|p| p.pid);
            self.0
                .push((pid(&r.conn.client_proc), pid(&r.conn.server_proc)));
        }
    }

    /// The attributor is asked once per connection, at its first request bytes (after the
    /// handshake), with the SYN's time; a connection picked up mid-stream gets `None`.
    #[test]
    fn attribution_once_per_connection() {
        let (c, s): (SocketAddr, SocketAddr) = (
            "127.0.0.1:40002".parse().unwrap(),
            "127.0.0.1:6379".parse().unwrap(),
        );
        let mid: SocketAddr = "127.0.0.1:40003".parse().unwrap();
        let calls = std::rc::Rc::default();
        let mut p = Pipeline::new(PipelineConfig::default());
        p.set_attributor(Box::new(Calls(std::rc::Rc::clone(&calls))));
        let mut f = Procs::default();
        let seg = |ts, src, dst, seq, flags, ack, data| Segment {
            ts_ns: ts,
            src,
            dst,
            seq,
            flags,
            ack,
            data,
            missing: 0,
            capture: crate::conn::Capture::unknown(),
        };
        p.segment(&seg(SEC, c, s, 100, TCP_SYN, 0, &[]), &mut f);
        p.segment(
            &seg(SEC + 1, s, c, 500, TCP_SYN | TCP_ACK, 101, &[]),
            &mut f,
        );
        assert!(calls.borrow().is_empty());
        p.segment(&seg(SEC + 2, c, s, 101, TCP_ACK, 501, b"PING\r\n"), &mut f);
        p.segment(&seg(SEC + 3, s, c, 501, TCP_ACK, 107, b"+PONG\r\n"), &mut f);
        p.segment(&seg(SEC + 4, c, s, 107, TCP_ACK, 508, b"PING\r\n"), &mut f);
        p.segment(&seg(SEC + 5, s, c, 508, TCP_ACK, 113, b"+PONG\r\n"), &mut f);
        p.segment(&seg(SEC + 6, mid, s, 900, TCP_ACK, 77, b"PING\r\n"), &mut f);
        assert_eq!(*calls.borrow(), vec![(c, Some(SEC)), (mid, None)]);
        assert_eq!(f.0, vec![(Some(7), Some(1)), (Some(7), Some(1))]);
    }

    /// Traffic after one FIN (the server still sending its reply) keeps the connection.
    #[test]
    fn one_fin_with_traffic_stays_open() {
        let (c, s): (SocketAddr, SocketAddr) = (
            "127.0.0.1:40001".parse().unwrap(),
            "127.0.0.1:6379".parse().unwrap(),
        );
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut f = Flows::default();
        let seg = |ts, src, dst, seq, flags, ack, data| Segment {
            ts_ns: ts,
            src,
            dst,
            seq,
            flags,
            ack,
            data,
            missing: 0,
            capture: crate::conn::Capture::unknown(),
        };
        p.segment(&seg(SEC, c, s, 100, TCP_SYN, 0, &[]), &mut f);
        p.segment(&seg(SEC, s, c, 500, TCP_SYN | TCP_ACK, 101, &[]), &mut f);
        p.segment(
            &seg(SEC, c, s, 101, TCP_FIN | TCP_ACK, 501, b"PING\r\n"),
            &mut f,
        );
        p.segment(&seg(5 * SEC, s, c, 501, TCP_ACK, 108, b"+PO"), &mut f);
        p.tick(9 * SEC, &mut f);
        assert_eq!(p.flows(), 1);
        p.segment(
            &seg(9 * SEC, s, c, 504, TCP_ACK | TCP_FIN, 108, b"NG\r\n"),
            &mut f,
        );
        assert_eq!((f.closed, p.flows()), (1, 0));
        assert_eq!(f.commands, vec!["PING ok"]);
    }
}
