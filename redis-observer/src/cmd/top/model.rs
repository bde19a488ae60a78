//! What the screen shows, computed from scrapes: rates and quantiles from the difference
//! between two scrapes, rows sorted as asked. Plain data and functions, no I/O, no terminal.

use super::prom::{CommandCounters, Health, Histogram, Scrape, ServerCounters};

/// A counter's increase from `before` to `now`. A smaller value means the daemon restarted
/// (counters start again at zero), so the increase is `now`, as Prometheus's `rate` takes it.
#[must_use]
pub fn increase(now: f64, before: f64) -> f64 {
    if now >= before { now - before } else { now }
}

/// Per-second rate of a counter over `secs` seconds (0 when no time has passed).
#[must_use]
pub fn rate(now: f64, before: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        increase(now, before) / secs
    } else {
        0.0
    }
}

/// The observations between two scrapes of a histogram, bucket by bucket. When any bucket went
/// down the daemon restarted, and `now` is all there is since.
#[must_use]
pub fn histogram_delta(now: &Histogram, before: &Histogram) -> Histogram {
    let mut out = Vec::with_capacity(now.buckets.len());
    for &(le, c) in &now.buckets {
        let b = before
            .buckets
            .iter()
            .find(|(l, _)| *l == le)
            .map_or(0.0, |x| x.1);
        if c < b {
            return now.clone();
        }
        out.push((le, c - b));
    }
    Histogram { buckets: out }
}

/// The `q`-quantile (0..=1) of a cumulative histogram, interpolated linearly inside the bucket
/// that holds it, as Prometheus's `histogram_quantile` does: the first bucket starts at 0, and a
/// rank in the `+Inf` bucket gives the highest finite bound. `None` without observations.
#[must_use]
pub fn quantile(q: f64, h: &Histogram) -> Option<f64> {
    let total = h.total();
    if total.is_nan() || total <= 0.0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total;
    let i = h.buckets.iter().position(|&(_, c)| c >= rank)?;
    let (le, count) = h.buckets[i];
    if le.is_infinite() {
        // Above the last finite bound: that bound is all we know.
        return Some(if i > 0 { h.buckets[i - 1].0 } else { 0.0 });
    }
    let (start, below) = if i > 0 { h.buckets[i - 1] } else { (0.0, 0.0) };
    let inside = count - below;
    if inside <= 0.0 {
        return Some(le);
    }
    Some(start + (le - start) * (rank - below) / inside)
}

/// The window of the command table and of the `/top` panels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The last 60 s (for the command table: since `top` started, when that is shorter).
    Last60s,
    /// Since the daemon started.
    All,
}

impl Window {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Last60s => "60s",
            Window::All => "all",
        }
    }

    #[must_use]
    pub fn toggle(self) -> Window {
        match self {
            Window::Last60s => Window::All,
            Window::All => Window::Last60s,
        }
    }
}

/// The column the command table is sorted by (largest first; `Command` alphabetically).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    Rate,
    Calls,
    Errors,
    P50,
    P99,
    Command,
}

impl SortBy {
    pub const ALL: [SortBy; 6] = [
        SortBy::Rate,
        SortBy::Calls,
        SortBy::Errors,
        SortBy::P50,
        SortBy::P99,
        SortBy::Command,
    ];

    #[must_use]
    pub fn next(self) -> SortBy {
        let i = Self::ALL.iter().position(|s| *s == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    #[must_use]
    pub fn prev(self) -> SortBy {
        let i = Self::ALL.iter().position(|s| *s == self).unwrap_or(0);
        Self::ALL[(i + Self::ALL.len() - 1) % Self::ALL.len()]
    }
}

/// One row of the command table.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandRow {
    pub name: String,
    /// Calls per second between the last two scrapes.
    pub rate: f64,
    /// Calls and errors in the window.
    pub calls: f64,
    pub errors: f64,
    /// Latency quantiles in the window, in seconds.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// The summary line of one server (or of all of them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub calls_per_sec: f64,
    pub errors_per_sec: f64,
    pub connections: f64,
    pub request_bytes_per_sec: f64,
    pub response_bytes_per_sec: f64,
}

/// The observer's losses: totals, and whether each grew since the previous scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HealthView {
    pub total: Health,
    pub growing: bool,
}

/// A scrape and when it was taken (seconds on a monotonic clock).
#[derive(Clone, Debug)]
pub struct Timed<'a> {
    pub at: f64,
    pub scrape: &'a Scrape,
}

/// Rates between `prev` and `now`.
#[must_use]
pub fn summary(now: Timed<'_>, prev: Option<Timed<'_>>, server: Option<&str>) -> Summary {
    let n = now.scrape.counters(server);
    let mut s = Summary {
        connections: n.connections_active,
        ..Summary::default()
    };
    if let Some(p) = prev {
        let b = p.scrape.counters(server);
        let dt = now.at - p.at;
        s.calls_per_sec = rate(n.calls(), b.calls(), dt);
        s.errors_per_sec = rate(n.errors(), b.errors(), dt);
        s.request_bytes_per_sec = rate(n.request_bytes, b.request_bytes, dt);
        s.response_bytes_per_sec = rate(n.response_bytes, b.response_bytes, dt);
    }
    s
}

#[must_use]
pub fn health(now: &Scrape, prev: Option<&Scrape>) -> HealthView {
    let t = now.health;
    let lost = |h: &Health| h.events_lost + h.desyncs + h.commands_lost + h.gap_bytes;
    HealthView {
        total: t,
        growing: prev.is_some_and(|p| lost(&t) > lost(&p.health)),
    }
}

/// The command table: per command, the rate between `prev` and `now`, and calls, errors and
/// quantiles over the window that starts at `base` (`None`: since the daemon started).
#[must_use]
pub fn command_rows(
    now: Timed<'_>,
    prev: Option<Timed<'_>>,
    base: Option<&Scrape>,
    server: Option<&str>,
    sort: SortBy,
) -> Vec<CommandRow> {
    let n = now.scrape.counters(server);
    let p = prev.as_ref().map(|p| p.scrape.counters(server));
    let b = base.map(|b| b.counters(server));
    let dt = prev.as_ref().map_or(0.0, |p| now.at - p.at);
    let empty = CommandCounters::default();
    let mut rows: Vec<CommandRow> = n
        .commands
        .iter()
        .filter_map(|(name, c)| {
            let before = |s: &Option<ServerCounters>| -> CommandCounters {
                s.as_ref()
                    .and_then(|s| s.commands.get(name))
                    .unwrap_or(&empty)
                    .clone()
            };
            let pc = before(&p);
            let bc = before(&b);
            let calls = increase(c.calls, bc.calls);
            let errors = increase(c.errors, bc.errors);
            let lat = histogram_delta(&c.latency, &bc.latency);
            let rate = if p.is_some() {
                rate(c.calls, pc.calls, dt)
            } else {
                0.0
            };
            // A command never called in the window is noise in the table.
            (calls > 0.0 || rate > 0.0).then(|| CommandRow {
                name: name.clone(),
                rate,
                calls,
                errors,
                p50: quantile(0.5, &lat),
                p99: quantile(0.99, &lat),
            })
        })
        .collect();
    sort_rows(&mut rows, sort);
    rows
}

/// Largest first on the chosen column, then by calls, then by name (so equal rows keep a
/// stable order from one refresh to the next).
pub fn sort_rows(rows: &mut [CommandRow], sort: SortBy) {
    let key = |r: &CommandRow| -> f64 {
        match sort {
            SortBy::Rate => r.rate,
            SortBy::Calls | SortBy::Command => r.calls,
            SortBy::Errors => r.errors,
            SortBy::P50 => r.p50.unwrap_or(-1.0),
            SortBy::P99 => r.p99.unwrap_or(-1.0),
        }
    };
    rows.sort_by(|a, b| {
        if sort == SortBy::Command {
            return a.name.cmp(&b.name);
        }
        key(b)
            .total_cmp(&key(a))
            .then(b.calls.total_cmp(&a.calls))
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// The servers to cycle through: those in the metrics and those `/top` analyses, sorted, with
/// "every server" (`None`) last when there are several.
#[must_use]
pub fn server_choices(scrape: &Scrape, top_servers: &[String]) -> Vec<Option<String>> {
    let mut v: Vec<String> = scrape.servers.keys().cloned().collect();
    v.extend(top_servers.iter().cloned());
    v.sort();
    v.dedup();
    let many = v.len() > 1;
    let mut out: Vec<Option<String>> = v.into_iter().map(Some).collect();
    if many {
        out.push(None);
    }
    out
}
