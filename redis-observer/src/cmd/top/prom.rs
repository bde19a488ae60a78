//! Reading the daemon's `/metrics` (Prometheus text exposition, version 0.0.4) into the few
//! numbers `top` shows: per server, the command counters and latency histograms, connections
//! and bytes; for the observer itself, its loss counters.
//!
//! A small parser of our own: the format is line-based and the daemon is the only producer we
//! read. A line that does not parse is skipped (and counted), never a panic.

use std::collections::BTreeMap;

/// One sample line: `name{k="v",…} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of `text`, and how many lines were not understood.
#[must_use]
pub fn parse(text: &str) -> (Vec<Sample>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Some(s) => out.push(s),
            None => bad += 1,
        }
    }
    (out, bad)
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
    {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest[..eq].trim();
            if key.is_empty() {
                return None;
            }
            let (value, r) = quoted(rest[eq + 1..].trim_start())?;
            labels.push((key.to_owned(), value));
            rest = r;
        }
    }
    // The value, then an optional timestamp we do not need.
    let value = rest.split_ascii_whitespace().next()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value: number(value)?,
    })
}

/// A label value in double quotes with `\\`, `\"` and `\n` escapes; the rest after it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

fn number(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// A cumulative histogram: `(upper bound, observations ≤ bound)`, bounds ascending, the last
/// one `+Inf` when the exposition had it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
}

impl Histogram {
    fn add_bucket(&mut self, le: f64, count: f64) {
        match self.buckets.iter_mut().find(|(b, _)| *b == le) {
            Some((_, c)) => *c += count,
            None => {
                self.buckets.push((le, count));
                self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
        }
    }

    fn merge(&mut self, other: &Histogram) {
        for &(le, c) in &other.buckets {
            self.add_bucket(le, c);
        }
    }

    /// Observations in total (the `+Inf` bucket).
    #[must_use]
    pub fn total(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }
}

/// What `top` shows of one command on one server (counters since the daemon started).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommandCounters {
    /// Commands run: statuses `ok`, `error`, `no_reply`, `reply_dropped` (what INFO
    /// commandstats counts as `calls + rejected_calls`).
    pub calls: f64,
    pub errors: f64,
    /// `redis_command_duration_seconds` (blocking commands are not in it).
    pub latency: Histogram,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerCounters {
    pub commands: BTreeMap<String, CommandCounters>,
    pub connections_active: f64,
    pub connections_total: f64,
    pub request_bytes: f64,
    pub response_bytes: f64,
}

impl ServerCounters {
    fn merge(&mut self, o: &ServerCounters) {
        for (name, c) in &o.commands {
            let mine = self.commands.entry(name.clone()).or_default();
            mine.calls += c.calls;
            mine.errors += c.errors;
            mine.latency.merge(&c.latency);
        }
        self.connections_active += o.connections_active;
        self.connections_total += o.connections_total;
        self.request_bytes += o.request_bytes;
        self.response_bytes += o.response_bytes;
    }

    #[must_use]
    pub fn calls(&self) -> f64 {
        self.commands.values().map(|c| c.calls).sum()
    }

    #[must_use]
    pub fn errors(&self) -> f64 {
        self.commands.values().map(|c| c.errors).sum()
    }
}

/// The observer's own losses (totals since it started).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Health {
    /// `redis_observer_events_lost_total`, every reason.
    pub events_lost: f64,
    /// Of those, `reason="ring_full"`: the kernel found the ring buffer full.
    pub ring_full: f64,
    pub ring_bytes_lost: f64,
    pub desyncs: f64,
    pub commands_lost: f64,
    /// `redis_observer_bytes_missed_total{reason="gap"}`.
    pub gap_bytes: f64,
    pub log_dropped: f64,
}

/// One scrape, folded into what `top` needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    pub servers: BTreeMap<String, ServerCounters>,
    pub health: Health,
    /// Lines that did not parse.
    pub bad_lines: usize,
}

/// Statuses that mean the command ran (docs/contract.md §2.2).
const RUN: [&str; 4] = ["ok", "error", "no_reply", "reply_dropped"];

impl Scrape {
    #[must_use]
    pub fn from_text(text: &str) -> Scrape {
        let (samples, bad_lines) = parse(text);
        let mut s = Scrape {
            bad_lines,
            ..Scrape::default()
        };
        for x in &samples {
            s.add(x);
        }
        s
    }

    fn add(&mut self, x: &Sample) {
        let h = &mut self.health;
        match x.name.as_str() {
            "redis_observer_events_lost_total" => {
                h.events_lost += x.value;
                if x.label("reason") == Some("ring_full") {
                    h.ring_full += x.value;
                }
                return;
            }
            "redis_observer_ring_bytes_lost_total" => return h.ring_bytes_lost += x.value,
            "redis_observer_desyncs_total" => return h.desyncs += x.value,
            "redis_observer_commands_lost_total" => return h.commands_lost += x.value,
            "redis_observer_log_dropped_total" => return h.log_dropped += x.value,
            "redis_observer_bytes_missed_total" => {
                if x.label("reason") == Some("gap") {
                    h.gap_bytes += x.value;
                }
                return;
            }
            _ => {}
        }
        let Some(server) = x.label("server") else {
            return;
        };
        let srv = || -> ServerCounters { ServerCounters::default() };
        match x.name.as_str() {
            "redis_commands_total" => {
                let (Some(cmd), Some(status)) = (x.label("command"), x.label("status")) else {
                    return;
                };
                let c = self.server(server, srv).commands.entry(cmd.to_owned());
                let c = c.or_default();
                if RUN.contains(&status) {
                    c.calls += x.value;
                }
                if status == "error" {
                    c.errors += x.value;
                }
            }
            "redis_command_duration_seconds_bucket" => {
                let (Some(cmd), Some(le)) = (x.label("command"), x.label("le").and_then(number))
                else {
                    return;
                };
                let c = self.server(server, srv).commands.entry(cmd.to_owned());
                c.or_default().latency.add_bucket(le, x.value);
            }
            "redis_connections_active" => self.server(server, srv).connections_active += x.value,
            "redis_connections_total" => self.server(server, srv).connections_total += x.value,
            "redis_request_bytes_total" => self.server(server, srv).request_bytes += x.value,
            "redis_response_bytes_total" => self.server(server, srv).response_bytes += x.value,
            _ => {}
        }
    }

    fn server(&mut self, name: &str, new: impl FnOnce() -> ServerCounters) -> &mut ServerCounters {
        self.servers.entry(name.to_owned()).or_insert_with(new)
    }

    /// One server's counters, or every server's added together (`None`).
    #[must_use]
    pub fn counters(&self, server: Option<&str>) -> ServerCounters {
        match server {
            Some(s) => self.servers.get(s).cloned().unwrap_or_default(),
            None => {
                let mut all = ServerCounters::default();
                for c in self.servers.values() {
                    all.merge(c);
                }
                all
            }
        }
    }
}
