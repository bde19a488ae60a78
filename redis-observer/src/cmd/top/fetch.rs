//! Talking to a running daemon: `GET /metrics` and `GET /top` over plain HTTP/1.1, on a
//! collector thread, so a slow daemon never freezes the keys.

use std::{
    collections::VecDeque,
    io::{Read as _, Write as _},
    net::{TcpStream, ToSocketAddrs as _},
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use serde::Deserialize;

use super::model::{self, Window};
use super::prom::Scrape;

/// Bodies larger than this are refused (a scrape of the daemon is far smaller).
const MAX_BODY: usize = 32 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The daemon answers `/top` within 5 s or says 503.
const READ_TIMEOUT: Duration = Duration::from_secs(6);
/// Items asked per `/top` table: more than any terminal shows.
const TOP_N: usize = 40;
/// How far back the command table's `60s` window reaches.
pub const WINDOW_SECS: f64 = 60.0;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}: no address")]
    NoAddress { addr: String },
    #[error("{addr}{path}: HTTP {status}: {body}")]
    Status {
        addr: String,
        path: String,
        status: u16,
        body: String,
    },
    #[error("{addr}: {what}")]
    Malformed { addr: String, what: &'static str },
    #[error("{addr}{path}: not the JSON expected: {source}")]
    Json {
        addr: String,
        path: String,
        source: serde_json::Error,
    },
}

/// `GET path` on `addr` (`host:port`); the body of a 200 answer.
pub fn http_get(addr: &str, path: &str) -> Result<String, FetchError> {
    let io = |source| FetchError::Io {
        addr: addr.to_owned(),
        source,
    };
    let sock = addr
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| FetchError::NoAddress {
            addr: addr.to_owned(),
        })?;
    let mut s = TcpStream::connect_timeout(&sock, CONNECT_TIMEOUT).map_err(io)?;
    s.set_read_timeout(Some(READ_TIMEOUT)).map_err(io)?;
    s.set_write_timeout(Some(READ_TIMEOUT)).map_err(io)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: redis-observer-top\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut raw = Vec::new();
    s.take(MAX_BODY as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(io)?;
    let bad = |what| FetchError::Malformed {
        addr: addr.to_owned(),
        what,
    };
    if raw.len() > MAX_BODY {
        return Err(bad("answer too large"));
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no HTTP header"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|l| l.split_ascii_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("not an HTTP answer"))?;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k.eq_ignore_ascii_case("content-length") {
            if let Ok(n) = v.parse::<usize>() {
                body.truncate(n);
            }
        }
    }
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    if status != 200 {
        return Err(FetchError::Status {
            addr: addr.to_owned(),
            path: path.to_owned(),
            status,
            body: body
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect(),
        });
    }
    Ok(body)
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// What the `/top` panels are ranked by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    Calls,
    Bytes,
    Latency,
}

impl By {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            By::Calls => "calls",
            By::Bytes => "bytes",
            By::Latency => "latency",
        }
    }

    #[must_use]
    pub fn next(self) -> By {
        match self {
            By::Calls => By::Bytes,
            By::Bytes => By::Latency,
            By::Latency => By::Calls,
        }
    }
}

/// One item of a `/top` answer (docs/contract.md §5).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct TopItem {
    pub name: String,
    #[serde(default)]
    pub calls: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub latency_us: u64,
    #[serde(default)]
    pub error: u64,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct TopAnswer {
    #[serde(default)]
    pub items: Vec<TopItem>,
    #[serde(default)]
    pub servers: Vec<String>,
}

/// Which server the view is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerSel {
    /// Not chosen yet: the first one the daemon knows.
    First,
    One(String),
    /// Every server together.
    All,
}

impl ServerSel {
    #[must_use]
    pub fn as_option(&self) -> Option<&str> {
        match self {
            ServerSel::One(s) => Some(s),
            ServerSel::First | ServerSel::All => None,
        }
    }
}

/// What the collector asks `/top` for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub server: ServerSel,
    pub window: Window,
    pub by: By,
}

/// The four `/top` panels.
#[derive(Clone, Debug, Default)]
pub struct Panels {
    pub keys: Vec<TopItem>,
    pub patterns: Vec<TopItem>,
    pub bigkeys: Vec<TopItem>,
    pub clients: Vec<TopItem>,
    pub servers: Vec<String>,
}

/// A scrape taken `at` seconds after `top` started.
#[derive(Clone, Debug)]
pub struct Stamped {
    pub at: f64,
    pub scrape: Arc<Scrape>,
}

impl Stamped {
    #[must_use]
    pub fn timed(&self) -> model::Timed<'_> {
        model::Timed {
            at: self.at,
            scrape: &self.scrape,
        }
    }
}

/// Everything one refresh of the screen needs.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The settings `/top` was asked with (the server resolved).
    pub settings: Settings,
    pub now: Option<Stamped>,
    pub prev: Option<Stamped>,
    /// The oldest scrape of the last 60 s: where the `60s` window of the command table starts.
    pub base: Option<Stamped>,
    pub panels: Option<Panels>,
    pub metrics_error: Option<String>,
    pub top_error: Option<String>,
}

/// Endpoints and pacing.
#[derive(Clone, Debug)]
pub struct Source {
    pub metrics: String,
    pub top: String,
    pub interval: Duration,
}

/// Scrapes `/metrics` and asks `/top` every `interval`, and asks `/top` again at once when the
/// settings change. Ends when either channel is closed.
pub struct Collector {
    src: Source,
    started: Instant,
    history: VecDeque<Stamped>,
    metrics_error: Option<String>,
}

impl Collector {
    #[must_use]
    pub fn new(src: Source) -> Collector {
        Collector {
            src,
            started: Instant::now(),
            history: VecDeque::new(),
            metrics_error: None,
        }
    }

    /// Takes one scrape of `/metrics` into the history.
    pub fn scrape(&mut self) {
        match http_get(&self.src.metrics, "/metrics") {
            Ok(text) => {
                self.metrics_error = None;
                let at = self.started.elapsed().as_secs_f64();
                self.history.push_back(Stamped {
                    at,
                    scrape: Arc::new(Scrape::from_text(&text)),
                });
                // Keep the newest scrape at least 60 s old as the window's start.
                while self.history.len() > 2 && at - self.history[1].at >= WINDOW_SECS {
                    self.history.pop_front();
                }
            }
            Err(e) => self.metrics_error = Some(format!("metrics: {e}")),
        }
    }

    /// The settings with the server chosen (the first one known when not chosen yet).
    fn resolve(&self, s: &Settings) -> Settings {
        let mut s = s.clone();
        if s.server == ServerSel::First {
            if let Some(now) = self.history.back() {
                if let Some(Some(first)) = model::server_choices(&now.scrape, &[]).first() {
                    s.server = ServerSel::One(first.clone());
                }
            }
        }
        s
    }

    /// A snapshot for `settings`, asking `/top` now.
    pub fn snapshot(&self, settings: &Settings) -> Snapshot {
        let settings = self.resolve(settings);
        let (panels, top_error) = match self.ask_top(&settings) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        };
        let n = self.history.len();
        Snapshot {
            now: self.history.back().cloned(),
            prev: n.checked_sub(2).and_then(|i| self.history.get(i)).cloned(),
            base: self.history.front().cloned(),
            settings,
            panels,
            metrics_error: self.metrics_error.clone(),
            top_error,
        }
    }

    fn ask_top(&self, s: &Settings) -> Result<Panels, String> {
        let server = match &s.server {
            // `other` is the metrics' overflow label, not an address /top knows.
            ServerSel::One(a) if a == "other" => {
                return Err("no /top data for the `other` servers".into());
            }
            ServerSel::One(a) => format!("server={a}&"),
            ServerSel::First | ServerSel::All => String::new(),
        };
        let ask = |what: &str, by: By| -> Result<TopAnswer, String> {
            let path = format!(
                "/top?{server}what={what}&by={}&window={}&n={TOP_N}",
                by.as_str(),
                s.window.as_str()
            );
            let body = http_get(&self.src.top, &path).map_err(|e| format!("top: {e}"))?;
            serde_json::from_str(&body).map_err(|source| {
                format!(
                    "top: {}",
                    FetchError::Json {
                        addr: self.src.top.clone(),
                        path,
                        source
                    }
                )
            })
        };
        // One question at a time: the daemon keeps only four waiting.
        let keys = ask("keys", s.by)?;
        let patterns = ask("patterns", s.by)?;
        let bigkeys = ask("bigkeys", By::Bytes)?;
        let clients = ask("clients", s.by)?;
        Ok(Panels {
            keys: keys.items,
            patterns: patterns.items,
            bigkeys: bigkeys.items,
            clients: clients.items,
            servers: keys.servers,
        })
    }

    /// The collector thread's loop.
    pub fn run(
        mut self,
        mut settings: Settings,
        rx: &mpsc::Receiver<Settings>,
        tx: &mpsc::Sender<Snapshot>,
    ) {
        let mut next = Instant::now();
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(s) => {
                    // Take the newest settings only: keys pressed quickly ask once.
                    settings = rx.try_iter().last().unwrap_or(s);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.scrape();
                    next = Instant::now() + self.src.interval;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if tx.send(self.snapshot(&settings)).is_err() {
                return;
            }
        }
    }
}
