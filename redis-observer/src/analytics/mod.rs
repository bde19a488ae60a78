//! Hot keys, key patterns, big keys, busy clients and commands, per server, over the last 60 s
//! and since start, in bounded memory: what `GET /top` and `replay --top N` show.
//!
//! - Keys (every key of every command, [`CommandRecord::keys`]), patterns ([`pattern`]) and
//!   clients go into [`sketch::Sketch`]es, one table per dimension tracking calls, bytes
//!   (request + reply of the commands that touched the item) and total latency at once, with a
//!   per-item error bound (see `sketch.rs`).
//! - Big keys: [`bigkeys::BigKeys`], exact (no error).
//! - Commands: one exact counter per command-table entry.
//!
//! Windows: each server has six 10-second buckets; a command updates the current bucket only.
//! When a bucket ends it is merged into the since-start tables, and the oldest bucket is
//! reused. "60s" answers merge the six buckets (the last 50 to 60 seconds); "all" answers merge
//! the since-start tables with the current bucket. Merges happen when someone asks, on the
//! pipeline's thread, never per command.
//!
//! Memory: at most [`TopConfig::max_servers`] servers (later ones are not analysed), each
//! with seven windows of fixed-capacity tables: [`Analytics::max_bytes`] bounds it whatever the
//! number of distinct keys (about 6.8 MiB per server with the defaults).

pub mod bigkeys;
pub mod http;
pub mod pattern;
pub mod sketch;

use std::net::SocketAddr;

use serde::Serialize;

use crate::commands::{self, CommandId};
use crate::conn::ConnMeta;
use crate::record::{CommandRecord, Status};
use bigkeys::BigKeys;
use sketch::{BYTES, CALLS, LATENCY, Name, Sketch, Slot, WEIGHTS};

/// Keys a record carries for the analytics (the rest of a larger MGET/MSET/DEL is not seen).
pub const KEYS_PER_COMMAND: usize = 32;
const BUCKET_NS: u64 = 10_000_000_000;
/// Entries of the cache of keys' pattern hashes (a power of two; 16 bytes each).
const PATTERN_CACHE: usize = 8192;
const BUCKETS: usize = 6;
/// Items an answer holds at most.
pub const MAX_N: usize = 1000;

#[derive(Clone, Debug)]
pub struct TopConfig {
    /// Keys tracked per window (sketch capacity).
    pub keys: usize,
    pub patterns: usize,
    pub clients: usize,
    pub bigkeys: usize,
    pub max_servers: usize,
}

impl Default for TopConfig {
    fn default() -> Self {
        TopConfig {
            keys: 4096,
            patterns: 1024,
            clients: 1024,
            bigkeys: 512,
            max_servers: 8,
        }
    }
}

impl TopConfig {
    /// This configuration analysing as many servers as `bytes` holds (with
    /// [`Analytics::reserve_bytes`]): at least one, at most `max_servers`.
    #[must_use]
    pub fn within(mut self, bytes: u64) -> TopConfig {
        let per = (BUCKETS + 1) * Tables::max_bytes(&self);
        let room = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .saturating_sub(3 * Tables::max_bytes(&self) + PATTERN_CACHE * 16);
        self.max_servers = (room / per.max(1)).clamp(1, self.max_servers.max(1));
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum What {
    Keys,
    Patterns,
    Bigkeys,
    Clients,
    Commands,
}

impl What {
    pub const ALL: [What; 5] = [
        What::Keys,
        What::Patterns,
        What::Bigkeys,
        What::Clients,
        What::Commands,
    ];

    #[must_use]
    pub fn parse(s: &str) -> Option<What> {
        What::ALL.into_iter().find(|w| w.as_str() == s)
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            What::Keys => "keys",
            What::Patterns => "patterns",
            What::Bigkeys => "bigkeys",
            What::Clients => "clients",
            What::Commands => "commands",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    Calls,
    Bytes,
    Latency,
}

impl By {
    #[must_use]
    pub fn parse(s: &str) -> Option<By> {
        match s {
            "calls" => Some(By::Calls),
            "bytes" => Some(By::Bytes),
            "latency" => Some(By::Latency),
            _ => None,
        }
    }

    fn weight(self) -> usize {
        match self {
            By::Calls => CALLS,
            By::Bytes => BYTES,
            By::Latency => LATENCY,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Window {
    #[serde(rename = "60s")]
    Last60s,
    #[serde(rename = "all")]
    All,
}

impl Window {
    #[must_use]
    pub fn parse(s: &str) -> Option<Window> {
        match s {
            "60s" => Some(Window::Last60s),
            "all" => Some(Window::All),
            _ => None,
        }
    }
}

/// What `/top` asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// `None`: every server together.
    pub server: Option<SocketAddr>,
    pub what: What,
    pub by: By,
    pub window: Window,
    pub n: usize,
}

/// One line of an answer. `error` bounds the `by` column: the true value is between
/// `value - error` and `value`. The other two columns are estimates of the same kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Item {
    pub name: String,
    pub calls: u64,
    pub bytes: u64,
    pub latency_us: u64,
    pub error: u64,
}

/// The answer, as docs/contract.md gives it (plus `servers`: every server analysed).
#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    pub server: Option<String>,
    pub what: What,
    pub by: By,
    pub window: Window,
    pub items: Vec<Item>,
    pub servers: Vec<String>,
}

/// One window's tables.
struct Tables {
    keys: Sketch,
    patterns: Sketch,
    clients: Sketch,
    big: BigKeys,
    /// Exact, by command id: calls, bytes, latency (ns).
    commands: Vec<[u64; WEIGHTS]>,
}

impl Tables {
    fn new(c: &TopConfig) -> Tables {
        Tables {
            keys: Sketch::new(c.keys),
            patterns: Sketch::new(c.patterns),
            clients: Sketch::new(c.clients),
            big: BigKeys::new(c.bigkeys),
            commands: vec![[0; WEIGHTS]; commands::count()],
        }
    }

    fn max_bytes(c: &TopConfig) -> usize {
        Sketch::max_bytes(c.keys)
            + Sketch::max_bytes(c.patterns)
            + Sketch::max_bytes(c.clients)
            + BigKeys::max_bytes(c.bigkeys)
            + commands::count() * size_of::<[u64; WEIGHTS]>()
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.patterns.clear();
        self.clients.clear();
        self.big.clear();
        self.commands.fill([0; WEIGHTS]);
    }

    fn merge(&mut self, o: &Tables) {
        self.keys.merge(&o.keys);
        self.patterns.merge(&o.patterns);
        self.clients.merge(&o.clients);
        self.big.merge(&o.big);
        for (a, b) in self.commands.iter_mut().zip(&o.commands) {
            sketch::add(a, *b);
        }
    }
}

struct ServerTop {
    addr: SocketAddr,
    buckets: Vec<Tables>,
    cur: usize,
    /// Start of the current bucket (ns since the epoch, capture clock); 0 before any command.
    cur_start: u64,
    all: Tables,
}

impl ServerTop {
    fn new(addr: SocketAddr, c: &TopConfig) -> ServerTop {
        ServerTop {
            addr,
            buckets: (0..BUCKETS).map(|_| Tables::new(c)).collect(),
            cur: 0,
            cur_start: 0,
            all: Tables::new(c),
        }
    }

    /// Moves the current bucket forward to the one holding `now`.
    #[inline]
    fn advance(&mut self, now: u64) {
        if now.wrapping_sub(self.cur_start) < BUCKET_NS {
            return; // the current bucket (the common case)
        }
        self.advance_slow(now);
    }

    fn advance_slow(&mut self, now: u64) {
        if self.cur_start == 0 {
            self.cur_start = now - now % BUCKET_NS;
            return;
        }
        let Some(ahead) = now.checked_sub(self.cur_start) else {
            return; // a little out of order: counted in the current bucket
        };
        let steps = ahead / BUCKET_NS;

        for _ in 0..steps.min(BUCKETS as u64) {
            let (done, all) = (&self.buckets[self.cur], &mut self.all);
            all.merge(done);
            self.cur = (self.cur + 1) % BUCKETS;
            // Merged into `all` when it ended, 50 s ago.
            self.buckets[self.cur].clear();
        }
        self.cur_start = self
            .cur_start
            .saturating_add(steps.saturating_mul(BUCKET_NS));
    }
}

/// `cfg` with records carrying up to [`KEYS_PER_COMMAND`] keys (what the analytics need).
pub fn with_keys(cfg: &mut crate::pipeline::PipelineConfig) {
    let record = crate::limits::RecordLimits {
        keys: KEYS_PER_COMMAND,
        ..cfg.session.record.clone()
    };
    cfg.session = crate::session::SessionLimits {
        max_pending: cfg.session.max_pending,
        ..crate::session::SessionLimits::with_record(record)
    };
}

/// The analytics of every server; owned by the pipeline's thread.
pub struct Analytics {
    cfg: TopConfig,
    servers: Vec<ServerTop>,
    last: usize,
    /// Seed of every hash (random per process).
    seed: u64,
    /// Key hash → its pattern's hash, direct-mapped: a key that comes back after its entry was
    /// purged (or whose pattern's entry moved) is not cut into its pattern again.
    patterns_of: Vec<(u64, u64)>,
}

impl Analytics {
    #[must_use]
    pub fn new(cfg: TopConfig) -> Analytics {
        Analytics {
            cfg,
            servers: Vec::new(),
            last: 0,
            seed: random_seed(),
            patterns_of: vec![(0, 0); PATTERN_CACHE],
        }
    }

    /// The most memory the tables can take, whatever the traffic.
    #[must_use]
    pub fn max_bytes(cfg: &TopConfig) -> usize {
        cfg.max_servers * (BUCKETS + 1) * Tables::max_bytes(cfg) + PATTERN_CACHE * 16
    }

    /// What to set aside for the analytics in the memory budget: the tables, and the merged
    /// copies an answer or a bucket's end builds for a moment (three windows' worth).
    #[must_use]
    pub fn reserve_bytes(cfg: &TopConfig) -> usize {
        Self::max_bytes(cfg) + 3 * Tables::max_bytes(cfg)
    }

    /// Counts one command.
    pub fn record(&mut self, rec: &CommandRecord<'_>) {
        if rec.status == Status::Aborted || rec.protocol_error.is_some() {
            return; // never ran
        }
        let Analytics {
            cfg,
            servers,
            last,
            seed,
            patterns_of,
        } = self;
        let seed = *seed;
        // Most records name the same server as the one before.
        let i = if servers
            .get(*last)
            .is_some_and(|s| s.addr == rec.conn.server)
        {
            *last
        } else {
            let Some(i) = find_server(servers, cfg, rec.conn.server) else {
                return;
            };
            *last = i;
            i
        };
        let Some(s) = servers.get_mut(i) else {
            return;
        };
        s.advance(rec.ts_ns);
        let Some(t) = s.buckets.get_mut(s.cur) else {
            return;
        };
        let latency = rec.latency_ns.unwrap_or(0);
        let bytes = rec.req_bytes.saturating_add(rec.resp_bytes);
        let w = [1, bytes, latency];
        if let Some(c) = t.commands.get_mut(rec.command.index()) {
            sketch::add_fast(c, w);
        }
        // The connection remembers where its client's entry is (valid while that table has
        // not moved its entries): no hash, no probe, for all but its first command per window.
        let conn = rec.conn;
        if !t.clients.add_at(Slot::from_aux(conn.top_slot.get()), w) {
            add_client(t, seed, conn, w);
        }
        if rec.keys.is_empty() {
            return;
        }
        // Per key: a multi-key command's request and reply are shared among its keys.
        let largest = rec.req_bytes.max(rec.resp_bytes);
        let big = match rec.keys.len() {
            1 => largest, // no division for the usual one key
            n => largest.div_ceil(n as u64),
        };
        for k in rec.keys {
            let start = k.start as usize;
            let Some(kb) = rec.arg_buf.get(start..start + k.kept as usize) else {
                continue;
            };
            // One hash per key, for the key table and big keys. A tracked key remembers where
            // its pattern's entry is (its `aux`): the pattern is computed when the key starts
            // being tracked, and again only if the pattern table has moved its entries since.
            let h = hash_bytes(seed, kb, k.len);
            match t.keys.add_tracked_at(h, w) {
                Some(pos) if t.patterns.add_at(Slot::from_aux(t.keys.aux(pos)), w) => {}
                Some(pos) => add_pattern(t, seed, patterns_of, pos, h, kb, k.len, w),
                None => {
                    let pos = t.keys.insert(h, Name::new(kb, k.len), w, 0);
                    add_pattern(t, seed, patterns_of, pos, h, kb, k.len, w);
                }
            }
            if big > t.big.threshold() {
                t.big.see(h, big, latency, || Name::new(kb, k.len));
            }
        }
    }

    /// Moves every server's windows to `now` (so an idle server's last 60 s empty).
    pub fn advance(&mut self, now: u64) {
        for s in &mut self.servers {
            if s.cur_start != 0 {
                s.advance(now);
            }
        }
    }

    #[must_use]
    pub fn servers(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.addr).collect()
    }

    /// Answers a query (merging the windows asked for).
    #[must_use]
    pub fn answer(&self, q: &Query) -> Answer {
        let chosen: Vec<&ServerTop> = self
            .servers
            .iter()
            .filter(|s| q.server.is_none_or(|a| a == s.addr))
            .collect();
        let mut merged = Tables::new(&self.cfg);
        for s in &chosen {
            match q.window {
                Window::All => {
                    merged.merge(&s.all);
                    if let Some(b) = s.buckets.get(s.cur) {
                        merged.merge(b);
                    }
                }
                Window::Last60s => {
                    for b in &s.buckets {
                        merged.merge(b);
                    }
                }
            }
        }
        let n = q.n.min(MAX_N);
        let by = q.by.weight();
        let items = match q.what {
            What::Keys => sketch_items(&merged.keys, by, n),
            What::Patterns => sketch_items(&merged.patterns, by, n),
            What::Clients => sketch_items(&merged.clients, by, n),
            What::Bigkeys => merged
                .big
                .top(n)
                .iter()
                .map(|b| Item {
                    name: display(&b.name),
                    calls: b.calls,
                    bytes: b.max,
                    latency_us: b.latency_ns / 1_000,
                    error: 0,
                })
                .collect(),
            What::Commands => {
                let mut v: Vec<(CommandId, [u64; WEIGHTS])> = commands::all()
                    .zip(merged.commands.iter().copied())
                    .filter(|(_, c)| c[CALLS] > 0)
                    .collect();
                v.sort_by(|a, b| b.1[by].cmp(&a.1[by]).then(a.0.cmp(&b.0)));
                v.truncate(n);
                v.into_iter()
                    .map(|(id, c)| Item {
                        name: id.name().to_owned(),
                        calls: c[CALLS],
                        bytes: c[BYTES],
                        latency_us: c[LATENCY] / 1_000,
                        error: 0,
                    })
                    .collect()
            }
        };
        Answer {
            server: q.server.map(|a| a.to_string()),
            what: q.what,
            by: q.by,
            window: q.window,
            items,
            servers: self.servers.iter().map(|s| s.addr.to_string()).collect(),
        }
    }
}

/// A connection's first command in this window (or its client's entry moved): finds or adds
/// the client's entry and remembers its slot. Out of line: the per-command path stays small.
#[cold]
#[inline(never)]
fn add_client(t: &mut Tables, seed: u64, conn: &ConnMeta, w: [u64; WEIGHTS]) {
    let client = &conn.client;
    let slot = t
        .clients
        .add_slot(addr_hash(seed, client), w, || client_name(*client));
    conn.top_slot.set(slot.to_aux());
}

/// Adds to the pattern of the key `h` at `pos` in the key table (its pattern's slot unknown or
/// stale) and remembers the slot. The key is cut into its pattern only when the cache does not
/// know the pattern's hash, or the pattern table needs its name.
#[allow(clippy::too_many_arguments)] // the per-command path's state, passed as it is
#[inline(never)]
fn add_pattern(
    t: &mut Tables,
    seed: u64,
    cache: &mut [(u64, u64)],
    pos: usize,
    h: u64,
    kb: &[u8],
    len: u64,
    w: [u64; WEIGHTS],
) {
    let at = (h >> 32) as usize & (PATTERN_CACHE - 1);
    let ph = match cache.get(at) {
        Some(&(key, ph)) if key == h && ph != 0 => ph,
        _ => {
            let p = pattern_of(kb, len);
            let ph = hash_bytes(seed, p.bytes(), 0).max(1);
            if let Some(c) = cache.get_mut(at) {
                *c = (h, ph);
            }
            ph
        }
    };
    let slot = t.patterns.add_slot(ph, w, || {
        let p = pattern_of(kb, len);
        Name::new(p.bytes(), p.len as u64)
    });
    t.keys.set_aux(pos, slot.to_aux());
}

/// The index of the server's tables (created if there is room).
#[cold]
#[inline(never)]
fn find_server(servers: &mut Vec<ServerTop>, cfg: &TopConfig, addr: SocketAddr) -> Option<usize> {
    match servers.iter().position(|s| s.addr == addr) {
        Some(i) => Some(i),
        None if servers.len() < cfg.max_servers => {
            servers.push(ServerTop::new(addr, cfg));
            Some(servers.len() - 1)
        }
        None => None,
    }
}

fn sketch_items(s: &Sketch, by: usize, n: usize) -> Vec<Item> {
    s.top(by, n)
        .iter()
        .map(|e| Item {
            name: display(&e.name),
            calls: e.v[CALLS],
            bytes: e.v[BYTES],
            latency_us: e.v[LATENCY] / 1_000,
            error: if by == LATENCY {
                e.err[by].div_ceil(1_000)
            } else {
                e.err[by]
            },
        })
        .collect()
}

/// `a · b` folded to 64 bits (wyhash's mixing step).
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

#[inline]
fn read8(b: &[u8], i: usize) -> u64 {
    b.get(i..i + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

#[inline]
fn read4(b: &[u8], i: usize) -> u64 {
    b.get(i..i + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, |a| u64::from(u32::from_le_bytes(a)))
}

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;

/// A fast 64-bit hash of `b` and `extra` (wyhash's construction) under the per-process random
/// `seed`: keys come from the network, and a fixed seed would let a client aim many keys at one
/// index slot (long probes for the observer).
#[inline]
#[must_use]
pub fn hash_bytes(seed: u64, b: &[u8], extra: u64) -> u64 {
    let n = b.len();
    let mut seed = seed ^ fold(extra ^ P0, P1);
    let (a, c) = if n <= 16 {
        if n >= 4 {
            let q = (n >> 3) << 2;
            (
                (read4(b, 0) << 32) | read4(b, q),
                (read4(b, n - 4) << 32) | read4(b, n - 4 - q),
            )
        } else if n > 0 {
            let at = |i: usize| u64::from(b.get(i).copied().unwrap_or(0));
            ((at(0) << 16) | (at(n >> 1) << 8) | at(n - 1), 0)
        } else {
            (0, 0)
        }
    } else {
        let mut i = 0;
        while n - i > 16 {
            seed = fold(read8(b, i) ^ P1, read8(b, i + 8) ^ seed);
            i += 16;
        }
        (read8(b, n - 16), read8(b, n - 8))
    };
    fold(P1 ^ n as u64, fold(a ^ P1, c ^ seed))
}

/// A random seed for this process.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(P0);
    h.finish()
}

/// A client address's hash (an IPv4-mapped IPv6 address as its IPv4 one, as it is shown).
#[inline]
fn addr_hash(seed: u64, a: &SocketAddr) -> u64 {
    let v4 = |ip: std::net::Ipv4Addr, port: u16| {
        fold((u64::from(ip.to_bits()) << 16 | u64::from(port)) ^ seed, P1)
    };
    match a {
        SocketAddr::V4(a4) => v4(*a4.ip(), a4.port()),
        SocketAddr::V6(a6) => match a6.ip().to_ipv4_mapped() {
            Some(ip) => v4(ip, a6.port()),
            None => {
                let x = a6.ip().to_bits();
                fold(
                    (x >> 64) as u64 ^ seed,
                    fold(x as u64 ^ P1, u64::from(a6.port()) ^ seed),
                )
            }
        },
    }
}

/// A pattern on the stack.
struct Pat {
    buf: [u8; pattern::PATTERN_BYTES],
    len: usize,
}

impl Pat {
    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

fn pattern_of(key: &[u8], full: u64) -> Pat {
    let mut buf = [0u8; pattern::PATTERN_BYTES];
    let len = pattern::normalize(key, full > key.len() as u64, &mut buf);
    Pat { buf, len }
}

fn client_name(a: SocketAddr) -> Name {
    use std::io::Write as _;
    let a = match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => a,
        },
        SocketAddr::V4(_) => a,
    };
    let mut buf = [0u8; 64];
    let mut w = &mut buf[..];
    let _ = write!(w, "{a}");
    let n = 64 - w.len();
    Name::new(buf.get(..n).unwrap_or(&[]), n as u64)
}

/// A name as the log shows bytes: valid UTF-8 as is, control characters and invalid bytes as
/// `\n`, `\xNN`...; cut names end with `…(+N bytes)`.
#[must_use]
pub fn display(n: &Name) -> String {
    let b = n.as_bytes();
    let mut s = String::with_capacity(b.len() + 8);
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                c if c.is_control() => {
                    let mut tmp = [0u8; 4];
                    for byte in c.encode_utf8(&mut tmp).bytes() {
                        s.push_str(&format!("\\x{byte:02x}"));
                    }
                }
                c => s.push(c),
            }
        }
        for byte in chunk.invalid() {
            s.push_str(&format!("\\x{byte:02x}"));
        }
    }
    let full = u64::from(n.full);
    if full > b.len() as u64 {
        s.push_str(&format!("…(+{} bytes)", full - b.len() as u64));
    }
    s
}

/// The tables `replay --top N` prints.
#[must_use]
pub fn tables_text(a: &Analytics, n: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let views: [(&str, What, By); 9] = [
        ("keys by calls", What::Keys, By::Calls),
        ("keys by bytes", What::Keys, By::Bytes),
        ("keys by latency", What::Keys, By::Latency),
        ("patterns by calls", What::Patterns, By::Calls),
        ("patterns by latency", What::Patterns, By::Latency),
        (
            "big keys (largest request or reply)",
            What::Bigkeys,
            By::Bytes,
        ),
        ("clients by calls", What::Clients, By::Calls),
        ("commands by calls", What::Commands, By::Calls),
        ("commands by latency", What::Commands, By::Latency),
    ];
    for server in a.servers() {
        let _ = writeln!(out, "== server {server} (whole capture)");
        for (title, what, by) in views {
            let ans = a.answer(&Query {
                server: Some(server),
                what,
                by,
                window: Window::All,
                n,
            });
            let _ = writeln!(out, "-- {title}");
            let _ = writeln!(
                out,
                "{:>4}  {:<48} {:>12} {:>14} {:>14} {:>10}",
                "#", "name", "calls", "bytes", "latency_us", "error"
            );
            for (i, it) in ans.items.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{:>4}  {:<48} {:>12} {:>14} {:>14} {:>10}",
                    i + 1,
                    it.name,
                    it.calls,
                    it.bytes,
                    it.latency_us,
                    it.error
                );
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
