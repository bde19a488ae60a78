//! `redis-observer top`: a live, full-screen view of a running daemon, from its `/metrics` and
//! `/top` endpoints only (it never touches the daemon's internals, and costs the daemon one
//! scrape and four `/top` questions per refresh).
//!
//! Layout, as bpftop keeps it: [`prom`] reads the exposition, [`model`] turns two scrapes into
//! rates, quantiles and sorted rows (plain data, unit-tested), [`fetch`] collects on its own
//! thread, [`app`] holds the view's state and keys, [`ui`] draws a frame.
//!
//! On a terminal: raw mode and the alternate screen, restored on quit (`q`, Ctrl-C), on
//! SIGTERM/SIGHUP, and on panic (ratatui's hook). Colours unless `NO_COLOR` is set or
//! `TERM=dumb`. When stdout is not a terminal, one frame is printed as plain text (after two
//! scrapes, so rates are there) and `top` exits: `redis-observer top > now.txt`.

mod app;
mod fetch;
mod model;
mod prom;
mod ui;

#[cfg(test)]
mod tests;

use std::{
    io::{self, IsTerminal as _, Write as _},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::Duration,
};

use anyhow::Context as _;
use crossterm::event::{self, Event};
use ratatui::{Terminal, backend::TestBackend, buffer::Buffer};

use self::{
    app::{Action, App},
    fetch::{Collector, Source},
    ui::Theme,
};
use crate::cli::TopArgs;

/// Set by SIGTERM, SIGHUP or SIGINT: the loop ends and the terminal is restored.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

/// How often keys are looked for while waiting for data.
const KEY_POLL: Duration = Duration::from_millis(100);

pub fn run(args: TopArgs) -> anyhow::Result<()> {
    let src = Source {
        metrics: args.metrics,
        top: args.top_addr,
        interval: args.interval,
    };
    if !io::stdout().is_terminal() {
        return once(src);
    }
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb");
    let mut app = App::new(Theme { color });
    let (set_tx, set_rx) = mpsc::channel();
    let (snap_tx, snap_rx) = mpsc::channel();
    let settings = app.settings();
    let collector = Collector::new(src);
    std::thread::Builder::new()
        .name("top-collector".into())
        .spawn(move || collector.run(settings, &set_rx, &snap_tx))
        .context("starting the collector thread")?;
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    std::thread::Builder::new()
        .name("top-watchdog".into())
        .spawn(watchdog)
        .context("starting the watchdog thread")?;
    // The end-to-end test's way to check that a panic restores the terminal.
    let panic_after_draw = std::env::var_os("REDIS_OBSERVER_TOP_TEST_PANIC").is_some();
    // Raw mode and the alternate screen; also installs a panic hook that restores both.
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let result = (|| -> anyhow::Result<()> {
        let mut dirty = true;
        loop {
            if dirty {
                terminal.draw(|f| ui::draw(f, &app))?;
                dirty = false;
                assert!(!panic_after_draw, "REDIS_OBSERVER_TOP_TEST_PANIC is set");
            }
            if STOP.load(Ordering::Relaxed) {
                return Ok(());
            }
            if event::poll(KEY_POLL)? {
                match event::read()? {
                    Event::Key(k) => match app.key(k) {
                        Action::Quit => return Ok(()),
                        Action::Refetch => {
                            // The collector only ends when this loop does.
                            let _ = set_tx.send(app.settings());
                            dirty = true;
                        }
                        Action::Redraw => dirty = true,
                        Action::None => {}
                    },
                    Event::Resize(..) => dirty = true,
                    _ => {}
                }
            }
            while let Ok(s) = snap_rx.try_recv() {
                dirty |= app.receive(s);
            }
        }
    })();
    drop(terminal);
    ratatui::restore();
    result
}

/// Ends the process when the terminal is gone (its window closed, the tmux server killed), or
/// when a stop signal was not acted on within 2 s. crossterm 0.29 reads a hung-up terminal in a
/// loop that never returns (end of file is retried), so the main loop cannot notice either.
fn watchdog() {
    const TICK: Duration = Duration::from_millis(250);
    let mut stop_seen = None;
    loop {
        std::thread::sleep(TICK);
        let mut fd = libc::pollfd {
            fd: libc::STDOUT_FILENO,
            events: 0,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout; poll only writes `revents`.
        let n = unsafe { libc::poll(&raw mut fd, 1, 0) };
        let gone = n > 0 && fd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0;
        if STOP.load(Ordering::Relaxed) && !gone {
            let since = *stop_seen.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() < Duration::from_secs(2) {
                continue;
            }
            ratatui::restore();
        } else if !gone {
            continue;
        }
        // SAFETY: ends the process at once; nothing of ours needs a destructor to run (the
        // terminal is gone or restored just above).
        unsafe { libc::_exit(129) }
    }
}

/// Stdout is not a terminal: two scrapes an interval apart, one plain frame, done.
fn once(src: Source) -> anyhow::Result<()> {
    let interval = src.interval;
    let mut c = Collector::new(src);
    c.scrape();
    std::thread::sleep(interval);
    c.scrape();
    let mut app = App::new(Theme { color: false });
    let snap = c.snapshot(&app.settings());
    let failed = snap.metrics_error.clone();
    app.receive(snap);
    let dim = |var: &str, default: u16| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse::<u16>().ok())
            .filter(|v| (10..=1000).contains(v))
            .unwrap_or(default)
    };
    let text = render_text(&app, dim("COLUMNS", 80), dim("LINES", 24))?;
    let mut out = io::stdout().lock();
    // A closed pipe (`| head`) is not an error.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    match failed {
        Some(e) => anyhow::bail!("{e}"),
        None => Ok(()),
    }
}

/// One frame of `app` at `width × height`, as plain lines (trailing blanks trimmed).
fn render_text(app: &App, width: u16, height: u16) -> anyhow::Result<String> {
    let mut term = Terminal::new(TestBackend::new(width, height))?;
    term.draw(|f| ui::draw(f, app))?;
    Ok(buffer_text(term.backend().buffer()))
}

fn buffer_text(buf: &Buffer) -> String {
    let area = buf.area;
    let mut out = String::new();
    for y in area.top()..area.bottom() {
        let mut line = String::new();
        let mut skip = 0usize;
        for x in area.left()..area.right() {
            let sym = buf[(x, y)].symbol();
            if skip > 0 {
                // Covered by the wide character before it.
                skip -= 1;
                continue;
            }
            line.push_str(sym);
            skip = unicode_width::UnicodeWidthStr::width(sym).saturating_sub(1);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
