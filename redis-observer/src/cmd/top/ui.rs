//! Drawing one frame: a title bar, the server's summary and the observer's health, the command
//! table, the four `/top` panels and a line of keys. Every line is laid out here at fixed
//! column widths, so the screen reads the same on any terminal; panels are dropped, stacked or
//! shortened to fit small ones (down to a title line).

use ratatui::{
    Frame,
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::Paragraph,
};
use unicode_width::UnicodeWidthChar as _;

use super::app::{App, Panel};
use super::fetch::{By, TopItem};
use super::model::{CommandRow, SortBy};

/// Colours only where asked (a terminal without `NO_COLOR`); modifiers (bold, reverse) always.
#[derive(Clone, Copy, Debug)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    fn pick(self, color: Style, plain: Style) -> Style {
        if self.color { color } else { plain }
    }
    fn bar(self) -> Style {
        self.pick(
            Style::new().fg(Color::Black).bg(Color::Cyan),
            Style::new().add_modifier(Modifier::REVERSED),
        )
    }
    fn head(self) -> Style {
        self.pick(
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }
    fn title(self) -> Style {
        self.pick(
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }
    fn bad(self) -> Style {
        self.pick(
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }
    fn good(self) -> Style {
        self.pick(Style::new().fg(Color::Green), Style::new())
    }
    fn paused(self) -> Style {
        self.pick(
            Style::new()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }
    fn key(self) -> Style {
        self.pick(
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }
}

/// Where each part goes on a `width × height` screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub title: Option<Rect>,
    pub summary: Option<Rect>,
    pub health: Option<Rect>,
    pub footer: Option<Rect>,
    pub commands: Option<Rect>,
    pub panels: Vec<(Panel, Rect)>,
}

/// Panels side by side from this width on; stacked below it.
const TWO_COLUMNS: u16 = 72;
/// A panel needs its header and at least this many items to be worth showing.
const PANEL_MIN_ITEMS: u16 = 2;

/// Lays out the screen: the command table gets up to 2/5 of the middle (less when it has fewer
/// rows), the panels share the rest; panels that do not fit are dropped last first.
#[must_use]
pub fn plan(area: Rect, command_rows: usize) -> Plan {
    let (w, h) = (area.width, area.height);
    let line = |y: u16| Rect::new(area.x, area.y + y, w, 1);
    let mut p = Plan {
        title: None,
        summary: None,
        health: None,
        footer: None,
        commands: None,
        panels: Vec::new(),
    };
    if h == 0 || w == 0 {
        return p;
    }
    p.title = Some(line(0));
    if h < 3 {
        return p;
    }
    p.summary = Some(line(1));
    // Health and keys lines only when there is room for a table too.
    let (top, bottom) = if h >= 10 {
        p.health = Some(line(2));
        p.footer = Some(line(h - 1));
        (3, 1)
    } else {
        (2, 0)
    };
    let middle = h - top - bottom;
    let y0 = area.y + top;
    let rows: Vec<Vec<Panel>> = if w >= TWO_COLUMNS {
        vec![
            vec![Panel::Keys, Panel::Patterns],
            vec![Panel::BigKeys, Panel::Clients],
        ]
    } else {
        Panel::ALL.iter().map(|p| vec![*p]).collect()
    };
    let cmd_want = u16::try_from(command_rows.max(1) + 1).unwrap_or(u16::MAX);
    let mut cmd = cmd_want.min((middle * 2 / 5).max(3)).min(middle);
    let per_row_min = PANEL_MIN_ITEMS + 1;
    let rest = middle - cmd;
    let fit = usize::from(rest / (per_row_min + 1)).min(rows.len());
    if fit == 0 {
        cmd = middle;
    }
    if cmd > 0 {
        p.commands = Some(Rect::new(area.x, y0, w, cmd));
    }
    if fit > 0 {
        // One blank line above each panel row keeps the tables apart.
        let n = u16::try_from(fit).unwrap_or(1);
        let each = rest / n;
        let mut y = y0 + cmd;
        for (i, row) in rows.iter().take(fit).enumerate() {
            let hgt = if i + 1 == fit {
                rest - each * (n - 1)
            } else {
                each
            };
            let cols = u16::try_from(row.len()).unwrap_or(1);
            let cw = w / cols;
            for (j, panel) in row.iter().enumerate() {
                let jx = u16::try_from(j).unwrap_or(0);
                let x = area.x + cw * jx;
                // The last column takes the odd cell; one cell between columns.
                let width = if j + 1 == row.len() {
                    w - cw * jx
                } else {
                    cw - 1
                };
                p.panels
                    .push((*panel, Rect::new(x, y + 1, width, hgt.saturating_sub(1))));
            }
            y += hgt;
        }
    }
    p
}

pub fn draw(f: &mut Frame<'_>, app: &App) {
    let area = f.area();
    let rows = app.command_rows();
    let plan = plan(area, rows.len());
    let t = app.theme;
    if let Some(r) = plan.title {
        f.render_widget(Paragraph::new(title_line(app, r.width)).style(t.bar()), r);
    }
    if let Some(r) = plan.summary {
        f.render_widget(Paragraph::new(summary_line(app)), r);
    }
    if let Some(r) = plan.health {
        f.render_widget(Paragraph::new(health_line(app)), r);
    }
    if let Some(r) = plan.commands {
        let lines = command_lines(app, &rows, r.width, usize::from(r.height));
        f.render_widget(Paragraph::new(lines), r);
    }
    for (panel, r) in &plan.panels {
        let lines = panel_lines(app, *panel, r.width, usize::from(r.height));
        f.render_widget(Paragraph::new(lines), *r);
    }
    if let Some(r) = plan.footer {
        f.render_widget(Paragraph::new(footer_line(app)), r);
    }
}

fn title_line(app: &App, width: u16) -> Line<'static> {
    let t = app.theme;
    let (i, n) = app.server_position();
    let server = match app.server_label() {
        Some(s) if n > 1 => format!("{s} [{i}/{n}]"),
        Some(s) => s,
        None => "waiting for the daemon".to_owned(),
    };
    let left = format!(" redis-observer top │ {server}");
    let right = format!("window {} │ by {} ", app.window.as_str(), app.by.as_str());
    let state = if app.paused { " PAUSED " } else { "" };
    let used = width_of(&left) + width_of(&right) + width_of(state);
    let gap = usize::from(width).saturating_sub(used).max(1);
    let mut spans = vec![Span::raw(left), Span::raw(" ".repeat(gap))];
    if app.paused {
        spans.push(Span::styled(state, t.paused()));
    }
    spans.push(Span::raw(right));
    Line::from(spans)
}

fn summary_line(app: &App) -> Line<'static> {
    let t = app.theme;
    let Some(s) = app.summary() else {
        return Line::from(Span::styled(
            app.metrics_error()
                .unwrap_or("waiting for /metrics…")
                .to_owned(),
            t.bad(),
        ));
    };
    let err_style = if s.errors_per_sec > 0.0 {
        t.bad()
    } else {
        Style::new()
    };
    Line::from(vec![
        Span::styled(" cmd/s ", t.head()),
        Span::raw(fmt_rate(s.calls_per_sec)),
        Span::styled("  err/s ", t.head()),
        Span::styled(fmt_rate(s.errors_per_sec), err_style),
        Span::styled("  conns ", t.head()),
        Span::raw(fmt_count(s.connections, 12)),
        Span::styled("  in ", t.head()),
        Span::raw(format!("{}/s", fmt_bytes(s.request_bytes_per_sec))),
        Span::styled("  out ", t.head()),
        Span::raw(format!("{}/s", fmt_bytes(s.response_bytes_per_sec))),
    ])
}

fn health_line(app: &App) -> Line<'static> {
    let t = app.theme;
    let Some(hv) = app.health() else {
        return Line::default();
    };
    let h = hv.total;
    let n = |v: f64| fmt_count(v, 12);
    let style = |v: f64| if v > 0.0 { t.bad() } else { t.good() };
    Line::from(vec![
        Span::styled(" observer ", t.head()),
        Span::styled(if hv.growing { "LOSING " } else { "" }.to_owned(), t.bad()),
        Span::raw("lost events "),
        Span::styled(n(h.events_lost), style(h.events_lost)),
        Span::raw(" (ring "),
        Span::styled(n(h.ring_full), style(h.ring_full)),
        Span::raw(")  desyncs "),
        Span::styled(n(h.desyncs), style(h.desyncs)),
        Span::raw("  cmds lost "),
        Span::styled(n(h.commands_lost), style(h.commands_lost)),
        Span::raw("  gaps "),
        Span::styled(fmt_bytes(h.gap_bytes), style(h.gap_bytes)),
    ])
}

/// The command table's columns: header, width, and the sort it stands for.
const COMMAND_COLUMNS: [(&str, usize, SortBy); 5] = [
    ("CALLS/S", 9, SortBy::Rate),
    ("CALLS", 10, SortBy::Calls),
    ("ERRORS", 8, SortBy::Errors),
    ("P50", 9, SortBy::P50),
    ("P99", 9, SortBy::P99),
];

/// Which numeric columns fit in `width` (P50 then ERRORS then CALLS go first).
fn command_columns(width: usize) -> Vec<(&'static str, usize, SortBy)> {
    let mut cols = COMMAND_COLUMNS.to_vec();
    for drop in [SortBy::P50, SortBy::Errors, SortBy::Calls] {
        let used: usize = cols.iter().map(|c| c.1).sum();
        if used + 12 <= width {
            break;
        }
        cols.retain(|c| c.2 != drop);
    }
    cols
}

fn command_lines(app: &App, rows: &[CommandRow], width: u16, height: usize) -> Vec<Line<'static>> {
    let t = app.theme;
    let width = usize::from(width);
    let cols = command_columns(width);
    let fixed: usize = cols.iter().map(|c| c.1).sum();
    let name_w = width.saturating_sub(fixed).max(1);
    let mark = |s: SortBy| if app.sort == s { "▼" } else { "" };
    let mut head = vec![Span::styled(
        pad(
            &format!(" {}COMMANDS {}", mark(SortBy::Command), app.window_label()),
            name_w,
        ),
        t.title(),
    )];
    for (h, w, s) in &cols {
        let st = if app.sort == *s {
            t.head().add_modifier(Modifier::UNDERLINED)
        } else {
            t.head()
        };
        head.push(Span::styled(rjust(&format!("{}{h}", mark(*s)), *w), st));
    }
    let mut out = vec![Line::from(head)];
    if rows.is_empty() {
        out.push(Line::from(" (no commands yet)"));
    }
    for r in rows.iter().take(height.saturating_sub(1)) {
        let mut spans = vec![Span::raw(pad(&format!(" {}", r.name), name_w))];
        for (_, w, s) in &cols {
            let (text, style) = match s {
                SortBy::Rate => (fmt_rate(r.rate), Style::new()),
                SortBy::Calls => (fmt_count(r.calls, w - 1), Style::new()),
                SortBy::Errors => (
                    fmt_count(r.errors, w - 1),
                    if r.errors > 0.0 {
                        t.bad()
                    } else {
                        Style::new()
                    },
                ),
                SortBy::P50 => (r.p50.map_or("-".into(), fmt_secs), Style::new()),
                SortBy::P99 => (r.p99.map_or("-".into(), fmt_secs), Style::new()),
                SortBy::Command => (String::new(), Style::new()),
            };
            spans.push(Span::styled(rjust(&text, *w), style));
        }
        out.push(Line::from(spans));
    }
    out
}

fn panel_lines(app: &App, panel: Panel, width: u16, height: usize) -> Vec<Line<'static>> {
    let t = app.theme;
    let width = usize::from(width);
    // Two numeric columns of 8 (one when narrow): calls and the `by` column, or for big keys
    // the largest size and the calls.
    let num_w = 8;
    let (title, cols): (&str, Vec<(&str, Col)>) = match panel {
        Panel::Keys => ("HOT KEYS", by_cols(app.by)),
        Panel::Patterns => ("HOT PATTERNS", by_cols(app.by)),
        Panel::Clients => ("TOP CLIENTS", by_cols(app.by)),
        Panel::BigKeys => (
            "BIG KEYS",
            vec![("SIZE", Col::Bytes), ("CALLS", Col::Calls)],
        ),
    };
    let cols: Vec<(&str, Col)> = if width >= 12 + 2 * num_w {
        cols
    } else {
        cols.into_iter().take(1).collect()
    };
    let name_w = width.saturating_sub(num_w * cols.len()).max(1);
    let sorted = match panel {
        Panel::BigKeys => Col::Bytes,
        _ => Col::from(app.by),
    };
    let mut head = vec![Span::styled(pad(&format!(" {title}"), name_w), t.title())];
    for (h, c) in &cols {
        let (text, st) = if *c == sorted {
            (format!("▼{h}"), t.head().add_modifier(Modifier::UNDERLINED))
        } else {
            ((*h).to_owned(), t.head())
        };
        head.push(Span::styled(rjust(&text, num_w), st));
    }
    let mut out = vec![Line::from(head)];
    match app.panel_items(panel) {
        Err(e) => out.push(Line::from(Span::styled(
            fit(&format!(" {e}"), width),
            t.bad(),
        ))),
        Ok([]) => out.push(Line::from(" (none yet)")),
        Ok(items) => {
            for i in items.iter().take(height.saturating_sub(1)) {
                let mut spans = vec![Span::raw(pad(&format!(" {}", i.name), name_w))];
                for (_, c) in &cols {
                    spans.push(Span::raw(rjust(&c.show(i), num_w)));
                }
                out.push(Line::from(spans));
            }
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Calls,
    Bytes,
    Latency,
}

impl From<By> for Col {
    fn from(b: By) -> Col {
        match b {
            By::Calls => Col::Calls,
            By::Bytes => Col::Bytes,
            By::Latency => Col::Latency,
        }
    }
}

impl Col {
    fn show(self, i: &TopItem) -> String {
        match self {
            Col::Calls => fmt_count(i.calls as f64, 7),
            Col::Bytes => fmt_bytes(i.bytes as f64),
            Col::Latency => fmt_secs(i.latency_us as f64 / 1e6),
        }
    }
}

/// Calls, and the column the panel is ranked by (bytes when by calls).
fn by_cols(by: By) -> Vec<(&'static str, Col)> {
    match by {
        By::Calls | By::Bytes => vec![("CALLS", Col::Calls), ("BYTES", Col::Bytes)],
        By::Latency => vec![("CALLS", Col::Calls), ("LAT", Col::Latency)],
    }
}

fn footer_line(app: &App) -> Line<'static> {
    let t = app.theme;
    if let Some(e) = app.error_line() {
        return Line::from(Span::styled(format!(" {e}"), t.bad()));
    }
    let mut spans = Vec::new();
    for (k, what) in [
        ("q", "quit"),
        ("Tab", "server"),
        ("o", "sort"),
        ("b", "by"),
        ("w", "window"),
        ("p", "pause"),
    ] {
        spans.push(Span::styled(format!(" {k}"), t.key()));
        spans.push(Span::raw(format!(" {what} ")));
    }
    Line::from(spans)
}

/// Display width of `s` (after [`clean`]).
fn width_of(s: &str) -> usize {
    s.chars().map(|c| clean(c).width().unwrap_or(0)).sum()
}

/// Control characters never reach the terminal (keys are data).
fn clean(c: char) -> char {
    if c.is_control() { '?' } else { c }
}

/// `s` cut to `w` cells (ending in `…` when cut), control characters replaced.
#[must_use]
pub fn fit(s: &str, w: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    let total = width_of(s);
    for c in s.chars().map(clean) {
        let cw = c.width().unwrap_or(0);
        if total > w && used + cw + 1 > w {
            if w > 0 {
                out.push('…');
            }
            return out;
        }
        if used + cw > w {
            break;
        }
        out.push(c);
        used += cw;
    }
    out
}

/// `s` fitted to `w` cells and padded on the right.
#[must_use]
pub fn pad(s: &str, w: usize) -> String {
    let mut f = fit(s, w.saturating_sub(1));
    let used = width_of(&f);
    f.extend(std::iter::repeat_n(' ', w.saturating_sub(used)));
    f
}

/// `s` fitted to `w` cells and aligned right.
#[must_use]
pub fn rjust(s: &str, w: usize) -> String {
    let f = fit(s, w);
    let used = width_of(&f);
    let mut out: String = std::iter::repeat_n(' ', w.saturating_sub(used)).collect();
    out.push_str(&f);
    out
}

/// A count: exact when it has at most `digits` digits, else `12.3k`, `4.5M`, `6.7G`.
#[must_use]
pub fn fmt_count(v: f64, digits: usize) -> String {
    let v = v.max(0.0).round();
    let exact = format!("{v:.0}");
    if exact.len() <= digits {
        return exact;
    }
    compact(v)
}

fn compact(v: f64) -> String {
    for (div, unit) in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if v >= div {
            return format!("{:.1}{unit}", v / div);
        }
    }
    format!("{v:.0}")
}

/// A per-second rate: one decimal under 100, whole numbers up to 99,999, then compact.
#[must_use]
pub fn fmt_rate(v: f64) -> String {
    let v = v.max(0.0);
    if v < 100.0 {
        format!("{v:.1}")
    } else if v < 99_999.5 {
        format!("{v:.0}")
    } else {
        compact(v)
    }
}

/// Seconds as `85µs`, `1.25ms`, `12.5ms`, `250ms`, `1.50s`.
#[must_use]
pub fn fmt_secs(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.0}µs", s * 1e6)
    } else if s < 1e-2 {
        format!("{:.2}ms", s * 1e3)
    } else if s < 1e-1 {
        format!("{:.1}ms", s * 1e3)
    } else if s < 1.0 {
        format!("{:.0}ms", s * 1e3)
    } else {
        format!("{s:.2}s")
    }
}

/// Bytes in powers of 1024: `512B`, `1.5K`, `12.0M`.
#[must_use]
pub fn fmt_bytes(v: f64) -> String {
    let v = v.max(0.0);
    for (div, unit) in [
        (1u64 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ] {
        let d = div as f64;
        if v >= d {
            return format!("{:.1}{unit}", v / d);
        }
    }
    format!("{v:.0}B")
}
