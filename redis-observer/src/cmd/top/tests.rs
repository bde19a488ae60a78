use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{Action, App};
use super::fetch::{By, Panels, ServerSel, Settings, Snapshot, Stamped, TopItem};
use super::model::{
    self, CommandRow, SortBy, Timed, Window, histogram_delta, increase, quantile, rate,
};
use super::prom::{self, Histogram, Scrape};
use super::ui::{self, Theme};

/// Buckets as the daemon writes them (seconds), for one command on one server.
fn hist_lines(server: &str, cmd: &str, cum: &[(&str, u64)]) -> String {
    cum.iter()
        .map(|(le, c)| {
            format!(
                "redis_command_duration_seconds_bucket{{server=\"{server}\",command=\"{cmd}\",le=\"{le}\"}} {c}\n"
            )
        })
        .collect()
}

const A: &str = "127.0.0.1:6379";
const B: &str = "10.0.0.2:6380";

/// A scrape: GET with 100 ok + 2 errors (latencies 10 in ≤20 µs, 80 in ≤50 µs, 10 in ≤100 µs),
/// SET with 40 ok on server A; 7 GETs on server B; some losses.
fn scrape_one() -> String {
    let mut s = String::from(
        "# HELP redis_commands_total Commands.\n# TYPE redis_commands_total counter\n",
    );
    s += &format!("redis_commands_total{{server=\"{A}\",command=\"GET\",status=\"ok\"}} 100\n");
    s += &format!("redis_commands_total{{server=\"{A}\",command=\"GET\",status=\"error\"}} 2\n");
    s += &format!(
        "redis_commands_total{{server=\"{A}\",command=\"GET\",status=\"unanswered\"}} 5\n"
    );
    s += &format!("redis_commands_total{{server=\"{A}\",command=\"SET\",status=\"ok\"}} 40\n");
    s += &format!("redis_commands_total{{server=\"{B}\",command=\"GET\",status=\"ok\"}} 7\n");
    s += &hist_lines(
        A,
        "GET",
        &[
            ("1e-5", 0),
            ("2e-5", 10),
            ("5e-5", 90),
            ("0.0001", 100),
            ("+Inf", 100),
        ],
    );
    s += &hist_lines(A, "SET", &[("1e-5", 40), ("2e-5", 40), ("+Inf", 40)]);
    s += &format!("redis_connections_active{{server=\"{A}\"}} 3\n");
    s += &format!("redis_connections_active{{server=\"{B}\"}} 1\n");
    s += &format!("redis_request_bytes_total{{server=\"{A}\"}} 1000\n");
    s += &format!("redis_response_bytes_total{{server=\"{A}\"}} 5000\n");
    s += "redis_observer_events_lost_total{reason=\"ring_full\"} 3\n";
    s += "redis_observer_events_lost_total{reason=\"unparsed\"} 1\n";
    s += "redis_observer_desyncs_total{reason=\"gap\",dir=\"reply\"} 2\n";
    s += "redis_observer_bytes_missed_total{reason=\"gap\"} 512\n";
    s += "redis_observer_bytes_missed_total{reason=\"not_captured\"} 9999\n";
    s
}

/// Two seconds later: GET +200 calls (+4 errors), all 200 new ones in the ≤100 µs bucket;
/// SET unchanged.
fn scrape_two() -> String {
    let mut s = String::new();
    s += &format!("redis_commands_total{{server=\"{A}\",command=\"GET\",status=\"ok\"}} 296\n");
    s += &format!("redis_commands_total{{server=\"{A}\",command=\"GET\",status=\"error\"}} 6\n");
    s += &format!("redis_commands_total{{server=\"{A}\",command=\"SET\",status=\"ok\"}} 40\n");
    s += &hist_lines(
        A,
        "GET",
        &[
            ("1e-5", 0),
            ("2e-5", 10),
            ("5e-5", 90),
            ("0.0001", 300),
            ("+Inf", 300),
        ],
    );
    s += &hist_lines(A, "SET", &[("1e-5", 40), ("2e-5", 40), ("+Inf", 40)]);
    s += &format!("redis_connections_active{{server=\"{A}\"}} 4\n");
    s += &format!("redis_request_bytes_total{{server=\"{A}\"}} 3000\n");
    s += &format!("redis_response_bytes_total{{server=\"{A}\"}} 9000\n");
    s += "redis_observer_events_lost_total{reason=\"ring_full\"} 3\n";
    s
}

#[test]
fn parses_lines_labels_and_escapes() {
    let text = "# TYPE x counter\n\
        x 1\n\
        y{a=\"1\",b=\"q\\\"uo\\\\te\\n\"} 2.5 1700000000000\n\
        z{le=\"+Inf\",} +Inf\n\
        w{} NaN\n\
        \n\
        bad{a=\"unterminated} 1\n\
        {nameless=\"x\"} 1\n\
        v{a=\"1\"} notanumber\n";
    let (s, bad) = prom::parse(text);
    assert_eq!(bad, 3);
    assert_eq!(s.len(), 4);
    assert_eq!((s[0].name.as_str(), s[0].value), ("x", 1.0));
    assert!(s[0].labels.is_empty());
    assert_eq!(s[1].label("a"), Some("1"));
    assert_eq!(s[1].label("b"), Some("q\"uo\\te\n"));
    assert_eq!(s[1].value, 2.5);
    assert_eq!(s[2].label("le"), Some("+Inf"));
    assert_eq!(s[2].value, f64::INFINITY);
    assert!(s[3].value.is_nan());
}

#[test]
fn garbage_never_panics() {
    for text in [
        "{",
        "a{",
        "a{b",
        "a{b=",
        "a{b=\"",
        "a{b=\"\\",
        "a{=\"x\"} 1",
        "a 1 2 3",
        "\u{0}\u{7f}",
        "é{é=\"é\"} 1",
    ] {
        let _ = Scrape::from_text(text);
    }
}

#[test]
fn scrape_folds_counters_per_server() {
    let s = Scrape::from_text(&scrape_one());
    assert_eq!(s.bad_lines, 0);
    let a = &s.servers[A];
    // Ran = ok + error (+ no_reply, reply_dropped); `unanswered` did not run.
    assert_eq!(a.commands["GET"].calls, 102.0);
    assert_eq!(a.commands["GET"].errors, 2.0);
    assert_eq!(a.commands["SET"].calls, 40.0);
    assert_eq!(
        a.commands["GET"].latency.buckets,
        vec![
            (1e-5, 0.0),
            (2e-5, 10.0),
            (5e-5, 90.0),
            (1e-4, 100.0),
            (f64::INFINITY, 100.0)
        ]
    );
    assert_eq!(a.connections_active, 3.0);
    assert_eq!(s.servers[B].commands["GET"].calls, 7.0);
    assert_eq!(s.health.events_lost, 4.0);
    assert_eq!(s.health.ring_full, 3.0);
    assert_eq!(s.health.desyncs, 2.0);
    assert_eq!(s.health.gap_bytes, 512.0);
    // Every server together.
    let all = s.counters(None);
    assert_eq!(all.commands["GET"].calls, 109.0);
    assert_eq!(all.connections_active, 4.0);
    assert_eq!(s.counters(Some("nowhere:1")), Default::default());
}

#[test]
fn quantiles_interpolate_like_prometheus() {
    let h = Histogram {
        buckets: vec![
            (1e-5, 0.0),
            (2e-5, 10.0),
            (5e-5, 90.0),
            (1e-4, 100.0),
            (f64::INFINITY, 100.0),
        ],
    };
    // p50: rank 50 is in (20 µs, 50 µs], 40 of its 80 → 20 + 30 · 40/80 = 35 µs.
    assert!((quantile(0.5, &h).unwrap() - 35e-6).abs() < 1e-12);
    // p99: rank 99 is in (50 µs, 100 µs], 9 of its 10 → 50 + 50 · 9/10 = 95 µs.
    assert!((quantile(0.99, &h).unwrap() - 95e-6).abs() < 1e-12);
    // p10: rank 10 fills (10 µs, 20 µs] exactly → 20 µs.
    assert!((quantile(0.1, &h).unwrap() - 20e-6).abs() < 1e-12);
    // In the first bucket, from 0: 4 of 8 in (0, 10 µs] → 5 µs.
    let first = Histogram {
        buckets: vec![(1e-5, 8.0), (f64::INFINITY, 8.0)],
    };
    assert!((quantile(0.5, &first).unwrap() - 5e-6).abs() < 1e-12);
    // Above the last finite bound: that bound.
    let over = Histogram {
        buckets: vec![(1e-5, 1.0), (10.0, 1.0), (f64::INFINITY, 4.0)],
    };
    assert_eq!(quantile(0.99, &over), Some(10.0));
    assert_eq!(quantile(0.5, &Histogram::default()), None);
    let empty = Histogram {
        buckets: vec![(1e-5, 0.0), (f64::INFINITY, 0.0)],
    };
    assert_eq!(quantile(0.5, &empty), None);
    assert_eq!(quantile(1.5, &h), None);
}

#[test]
fn deltas_rates_and_restarts() {
    assert_eq!(increase(150.0, 100.0), 50.0);
    // A restarted daemon counts from zero again: all of `now` is new.
    assert_eq!(increase(30.0, 100.0), 30.0);
    assert_eq!(rate(300.0, 100.0, 2.0), 100.0);
    assert_eq!(rate(300.0, 100.0, 0.0), 0.0);
    let before = Histogram {
        buckets: vec![(1e-5, 2.0), (f64::INFINITY, 5.0)],
    };
    let now = Histogram {
        buckets: vec![(1e-5, 3.0), (f64::INFINITY, 9.0)],
    };
    assert_eq!(
        histogram_delta(&now, &before).buckets,
        vec![(1e-5, 1.0), (f64::INFINITY, 4.0)]
    );
    let restarted = Histogram {
        buckets: vec![(1e-5, 1.0), (f64::INFINITY, 1.0)],
    };
    assert_eq!(histogram_delta(&restarted, &before), restarted);
}

#[test]
fn command_rows_from_two_scrapes() {
    let one = Scrape::from_text(&scrape_one());
    let two = Scrape::from_text(&scrape_two());
    let now = Timed {
        at: 12.0,
        scrape: &two,
    };
    let prev = Timed {
        at: 10.0,
        scrape: &one,
    };
    // Window from `one`: GET +200 calls, all in (50 µs, 100 µs]; SET nothing new (left out).
    let rows = model::command_rows(
        now.clone(),
        Some(prev.clone()),
        Some(&one),
        Some(A),
        SortBy::Rate,
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    let get = &rows[0];
    assert_eq!(get.name, "GET");
    assert_eq!(get.rate, 100.0);
    assert_eq!(get.calls, 200.0);
    assert_eq!(get.errors, 4.0);
    // p50: rank 100 of 200 in (50, 100] → 50 + 50 · 100/200 = 75 µs; p99: 50 + 50 · 198/200.
    assert!((get.p50.unwrap() - 75e-6).abs() < 1e-12);
    assert!((get.p99.unwrap() - 99.5e-6).abs() < 1e-12);

    // Since the daemon started (no base): both commands, totals and whole histograms.
    let all = model::command_rows(
        now.clone(),
        Some(prev.clone()),
        None,
        Some(A),
        SortBy::Calls,
    );
    let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["GET", "SET"]);
    assert_eq!((all[0].calls, all[0].errors), (302.0, 6.0));
    assert_eq!((all[1].calls, all[1].rate), (40.0, 0.0));
    // SET: all 40 in (0, 10 µs] → p50 = 5 µs.
    assert!((all[1].p50.unwrap() - 5e-6).abs() < 1e-12);

    // Rates of the summary line.
    let s = model::summary(now, Some(prev), Some(A));
    assert_eq!(s.calls_per_sec, 100.0);
    assert_eq!(s.errors_per_sec, 2.0);
    assert_eq!(s.request_bytes_per_sec, 1000.0);
    assert_eq!(s.response_bytes_per_sec, 2000.0);
    assert_eq!(s.connections, 4.0);
}

fn row(name: &str, rate: f64, calls: f64, errors: f64, p99: Option<f64>) -> CommandRow {
    CommandRow {
        name: name.into(),
        rate,
        calls,
        errors,
        p50: p99.map(|p| p / 2.0),
        p99,
    }
}

#[test]
fn sorting_by_each_column() {
    let rows = vec![
        row("SET", 5.0, 50.0, 0.0, Some(1e-4)),
        row("GET", 50.0, 500.0, 0.0, Some(2e-5)),
        row("HGET", 1.0, 10.0, 3.0, None),
        row("DEL", 5.0, 60.0, 0.0, Some(5e-3)),
    ];
    let order = |s: SortBy| -> Vec<String> {
        let mut r = rows.clone();
        model::sort_rows(&mut r, s);
        r.into_iter().map(|r| r.name).collect()
    };
    // Ties (SET and DEL at 5/s) go by calls.
    assert_eq!(order(SortBy::Rate), ["GET", "DEL", "SET", "HGET"]);
    assert_eq!(order(SortBy::Calls), ["GET", "DEL", "SET", "HGET"]);
    assert_eq!(order(SortBy::Errors), ["HGET", "GET", "DEL", "SET"]);
    assert_eq!(order(SortBy::P99), ["DEL", "SET", "GET", "HGET"]);
    assert_eq!(order(SortBy::P50), ["DEL", "SET", "GET", "HGET"]);
    assert_eq!(order(SortBy::Command), ["DEL", "GET", "HGET", "SET"]);
    assert_eq!(SortBy::Rate.prev(), SortBy::Command);
    assert_eq!(SortBy::Command.next(), SortBy::Rate);
}

#[test]
fn server_choices_add_every_server_when_several() {
    let one = Scrape::from_text(&scrape_one());
    assert_eq!(
        model::server_choices(&one, &[A.to_owned()]),
        vec![Some(B.to_owned()), Some(A.to_owned()), None]
    );
    let two = Scrape::from_text(&scrape_two());
    assert_eq!(model::server_choices(&two, &[]), vec![Some(A.to_owned())]);
}

#[test]
fn number_formats() {
    assert_eq!(ui::fmt_count(12345.0, 8), "12345");
    assert_eq!(ui::fmt_count(123_456_789.0, 8), "123.5M");
    assert_eq!(ui::fmt_count(1_500.0, 3), "1.5k");
    assert_eq!(ui::fmt_rate(3.04), "3.0");
    assert_eq!(ui::fmt_rate(1234.4), "1234");
    assert_eq!(ui::fmt_rate(250_000.0), "250.0k");
    assert_eq!(ui::fmt_secs(85e-6), "85µs");
    assert_eq!(ui::fmt_secs(1.254e-3), "1.25ms");
    assert_eq!(ui::fmt_secs(12.5e-3), "12.5ms");
    assert_eq!(ui::fmt_secs(0.25), "250ms");
    assert_eq!(ui::fmt_secs(1.5), "1.50s");
    assert_eq!(ui::fmt_bytes(512.0), "512B");
    assert_eq!(ui::fmt_bytes(1536.0), "1.5K");
    assert_eq!(ui::fmt_bytes(12.0 * 1024.0 * 1024.0), "12.0M");
}

#[test]
fn text_fitting_cuts_and_never_lets_control_bytes_through() {
    assert_eq!(ui::fit("user:1234:profile", 10), "user:1234…");
    assert_eq!(ui::fit("short", 10), "short");
    assert_eq!(ui::fit("\u{1b}[2Jx", 10), "?[2Jx");
    assert_eq!(ui::pad("ab", 5), "ab   ");
    assert_eq!(ui::rjust("ab", 5), "   ab");
    // Wide characters count two cells.
    assert_eq!(ui::fit("日本語のキー", 7), "日本語…");
}

fn item(name: &str, calls: u64, bytes: u64) -> TopItem {
    TopItem {
        name: name.into(),
        calls,
        bytes,
        latency_us: calls * 10,
        error: 0,
    }
}

fn snapshot(window: Window, by: By) -> Snapshot {
    let one = Arc::new(Scrape::from_text(&scrape_one()));
    let two = Arc::new(Scrape::from_text(&scrape_two()));
    Snapshot {
        settings: Settings {
            server: ServerSel::One(A.into()),
            window,
            by,
        },
        now: Some(Stamped {
            at: 12.0,
            scrape: two,
        }),
        prev: Some(Stamped {
            at: 10.0,
            scrape: Arc::clone(&one),
        }),
        base: Some(Stamped {
            at: 10.0,
            scrape: one,
        }),
        panels: Some(Panels {
            keys: vec![item("hot:key", 900, 9_000), item("user:1:profile", 50, 500)],
            patterns: vec![
                item("hot:key", 900, 9_000),
                item("user:{}:profile", 60, 600),
            ],
            bigkeys: vec![item("big:blob", 3, 100_000)],
            clients: vec![item("127.0.0.1:50000", 950, 9_500)],
            servers: vec![A.into()],
        }),
        metrics_error: None,
        top_error: None,
    }
}

fn screen(app: &App, w: u16, h: u16) -> Vec<String> {
    super::render_text(app, w, h)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

#[test]
fn full_frame_at_80x24() {
    let mut app = App::new(Theme { color: false });
    assert!(app.receive(snapshot(Window::Last60s, By::Calls)));
    let s = screen(&app, 80, 24);
    let all = s.join("\n");
    assert_eq!(s.len(), 24);
    assert!(
        s[0].contains("redis-observer top") && s[0].contains(A),
        "{all}"
    );
    assert!(s[0].contains("window 60s"), "{all}");
    assert!(
        s[1].contains("cmd/s 100 ") && s[1].contains("err/s 2.0"),
        "{all}"
    );
    assert!(s[4].contains("75µs") && s[4].contains("100µs"), "{all}");
    assert!(s[2].contains("lost events 3"), "{all}");
    // The command table, then the first panel row: hot keys on the left, patterns beside.
    assert!(
        s[3].contains("COMMANDS") && s[3].contains("CALLS/S"),
        "{all}"
    );
    assert!(s[4].trim_start().starts_with("GET"), "{all}");
    let keys_head = s.iter().position(|l| l.contains("HOT KEYS")).expect(&all);
    assert!(s[keys_head].contains("HOT PATTERNS"), "{all}");
    assert!(
        s[keys_head + 1].trim_start().starts_with("hot:key"),
        "{all}"
    );
    assert!(
        all.contains("BIG KEYS") && all.contains("TOP CLIENTS"),
        "{all}"
    );
    assert!(
        all.contains("big:blob") && all.contains("127.0.0.1:50000"),
        "{all}"
    );
    assert!(s[23].contains("q quit"), "{all}");
    // No line is wider than the screen.
    assert!(s.iter().all(|l| ui_width(l) <= 80), "{all}");
}

fn ui_width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

#[test]
fn small_terminals_drop_panels_not_the_basics() {
    let mut app = App::new(Theme { color: false });
    app.receive(snapshot(Window::Last60s, By::Calls));
    for (w, h) in [(80, 12), (60, 20), (40, 10), (30, 6), (20, 3), (10, 1)] {
        let s = screen(&app, w, h);
        let all = s.join("\n");
        assert_eq!(s.len(), usize::from(h));
        assert!(s[0].starts_with(" redis-obs"), "{w}x{h}\n{all}");
        assert!(
            s.iter().all(|l| ui_width(l) <= usize::from(w)),
            "{w}x{h}\n{all}"
        );
        if h >= 6 {
            assert!(all.contains("GET"), "{w}x{h}\n{all}");
        }
    }
    // 80×12: the table and the first row of panels, no big keys.
    let s = screen(&app, 80, 12).join("\n");
    assert!(s.contains("HOT KEYS") && !s.contains("BIG KEYS"), "{s}");
    // Narrow: panels stacked, hot keys first.
    let s = screen(&app, 60, 20).join("\n");
    assert!(
        s.contains("HOT KEYS") && !s.contains("HOT KEYS    HOT PATTERNS"),
        "{s}"
    );
}

#[test]
fn keys_change_the_view() {
    let mut app = App::new(Theme { color: false });
    app.receive(snapshot(Window::Last60s, By::Calls));
    assert_eq!(app.sort, SortBy::Rate);
    assert_eq!(app.key(key('o')), Action::Redraw);
    assert_eq!(app.sort, SortBy::Calls);
    assert_eq!(app.key(key('<')), Action::Redraw);
    assert_eq!(app.sort, SortBy::Rate);
    // Window and ranking ask the collector again.
    assert_eq!(app.key(key('w')), Action::Refetch);
    assert_eq!(app.window, Window::All);
    assert_eq!(app.key(key('b')), Action::Refetch);
    assert_eq!(app.by, By::Bytes);
    // One server: Tab does nothing.
    assert_eq!(
        app.key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE)),
        Action::None
    );
    assert_eq!(app.key(key('q')), Action::Quit);
    assert_eq!(
        app.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Action::Quit
    );
}

#[test]
fn pause_freezes_the_screen_but_not_the_settings() {
    let mut app = App::new(Theme { color: false });
    app.receive(snapshot(Window::Last60s, By::Calls));
    app.key(key('p'));
    assert!(app.paused);
    let s = screen(&app, 80, 24);
    assert!(s[0].contains("PAUSED"));
    // A new snapshot while paused is kept aside.
    let mut later = snapshot(Window::Last60s, By::Calls);
    later.panels.as_mut().unwrap().keys[0].name = "other:key".into();
    assert!(!app.receive(later));
    assert!(screen(&app, 80, 24).join("\n").contains("hot:key"));
    // Changing the window while paused shows the next snapshot made for it, then freezes.
    app.key(key('w'));
    assert!(!app.receive(snapshot(Window::Last60s, By::Calls)));
    assert!(app.receive(snapshot(Window::All, By::Calls)));
    assert!(!app.receive(snapshot(Window::All, By::Calls)));
    // Resuming shows the newest.
    app.key(key(' '));
    assert!(!app.paused);
    assert!(!screen(&app, 80, 24)[0].contains("PAUSED"));
}

#[test]
fn the_window_switches_the_command_table() {
    let mut app = App::new(Theme { color: false });
    app.receive(snapshot(Window::Last60s, By::Calls));
    let rows = app.command_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].calls, 200.0);
    assert_eq!(app.window_label(), "(last 2s)");
    app.key(key('w'));
    app.receive(snapshot(Window::All, By::Calls));
    let rows = app.command_rows();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].calls, 302.0);
    assert!(screen(&app, 80, 24)[0].contains("window all"));
}

#[test]
fn tab_cycles_the_servers_then_all_of_them() {
    let mut app = App::new(Theme { color: false });
    let mut snap = snapshot(Window::Last60s, By::Calls);
    // A scrape that knows both servers.
    let one = Arc::new(Scrape::from_text(&scrape_one()));
    snap.now = Some(Stamped {
        at: 12.0,
        scrape: Arc::clone(&one),
    });
    app.receive(snap);
    assert_eq!(app.server, ServerSel::One(A.into()));
    assert_eq!(app.server_position(), (2, 3));
    let tab = KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE);
    assert_eq!(app.key(tab), Action::Refetch);
    assert_eq!(app.server, ServerSel::All);
    assert_eq!(app.settings().server, ServerSel::All);
    assert!(screen(&app, 80, 24)[0].contains("all servers [3/3]"));
    // Every server together: both servers' connections.
    assert_eq!(app.summary().unwrap().connections, 4.0);
    app.key(tab);
    assert_eq!(app.server, ServerSel::One(B.into()));
    app.key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
    assert_eq!(app.server, ServerSel::All);
    app.key(key('s'));
    assert_eq!(app.server, ServerSel::One(B.into()));
}
