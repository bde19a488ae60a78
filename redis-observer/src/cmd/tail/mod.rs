//! `redis-observer tail`: pretty-print and filter a command log, from a file or stdin, and with
//! `-f` follow the file as it grows and across rotation.
//!
//! What is shown:
//! - command lines (`command` is a string) that pass every filter given (AND; several
//!   `--command` are alternatives);
//! - notices (`"command": null`, status `notice`, or any other JSON object without a command):
//!   always, dimmed — they say data was lost, which matters whatever one filters for;
//! - pushes (`"status": "push"`): only when no filter is given, since they are not commands and
//!   can be a flood;
//! - lines that are not JSON objects: as they are, dimmed (with `--json`: to stderr, so stdout
//!   stays JSON lines);
//! - blank lines: nothing.
//!
//! `--json` passes the lines it would show through unchanged. Colors follow `--color`
//! (`auto`: on a terminal, unless `NO_COLOR` is set or `TERM=dumb`). On a terminal, lines are
//! cut to its width. Times are shown in UTC, as logged. `-f` starts with the last 10 lines of
//! the file. SIGINT/SIGTERM end it after flushing (then the process dies by that signal, as
//! shells expect); a closed pipe (`| head`) ends it quietly with success.

mod filter;
mod follow;
mod format;

use std::{
    fs::File,
    io::{self, BufWriter, IsTerminal as _, Write},
    path::Path,
};

use anyhow::Context as _;
use serde_json::Value;

pub use self::{
    filter::{Filter, FilterArgs},
    follow::{Follow, LineSink},
    format::{CommandFields, Formatter, Style},
};
use crate::cli::TailArgs;
use crate::command_log::LogLine;

/// Lines already in the file that `-f` shows first, as tail(1) does.
const FOLLOW_BACKLOG: usize = 10;

pub fn run(args: TailArgs) -> anyhow::Result<()> {
    let Some(color) = ColorChoice::parse(&args.color) else {
        // A bad argument: one line and exit code 2, as for every other flag.
        eprintln!(
            "redis-observer: invalid value '{}' for '--color <COLOR>' (auto, always, never)",
            args.color
        );
        std::process::exit(2);
    };
    let stdout = io::stdout();
    let tty = stdout.is_terminal();
    let style = Style {
        color: color.enabled(tty),
        truncate: tty,
        width: if tty { terminal_width() } else { None },
    };
    let printer = Printer::new(Filter::from_args(&args.filter), style, args.json);
    let mut sink = Output {
        printer,
        out: BufWriter::with_capacity(64 << 10, stdout.lock()),
        tty,
    };
    signals::install();
    let stop = signals::caught;
    let result = match args.path.as_deref() {
        Some(p) if p != Path::new("-") => {
            // A FIFO or a device has no size to watch: read it as a stream. (A path that does
            // not exist yet is waited for by `follow`.)
            let regular = std::fs::metadata(p).map_or(true, |m| m.is_file());
            if args.follow && regular {
                let cfg = Follow {
                    path: p,
                    backlog: FOLLOW_BACKLOG,
                    poll: follow::POLL,
                    grace: follow::GRACE,
                };
                follow::follow(&cfg, &stop, &mut sink)
            } else {
                let mut f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
                follow::read_to_end(&mut f, p, &stop, &mut sink)
            }
        }
        // stdin; `-f` changes nothing: a pipe is read until its writer closes it.
        _ => {
            let mut f = stdin_file().context("reading stdin")?;
            follow::read_to_end(&mut f, Path::new("stdin"), &stop, &mut sink)
        }
    };
    match result {
        Ok(()) => {}
        // Whoever read our output is gone (`| head`): nothing left to do.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    drop(sink);
    signals::reraise();
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Some(Self::Auto),
            "always" | "yes" | "force" => Some(Self::Always),
            "never" | "no" | "none" => Some(Self::Never),
            _ => None,
        }
    }

    fn enabled(self, tty: bool) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            // https://no-color.org: set and non-empty disables.
            Self::Auto => {
                tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
            }
        }
    }
}

/// Decides, per input line, what to write.
pub struct Printer {
    filter: Filter,
    fmt: Formatter,
    json: bool,
    text: String,
}

impl Printer {
    pub fn new(filter: Filter, style: Style, json: bool) -> Self {
        Self {
            filter,
            fmt: Formatter::new(style),
            json,
            text: String::new(),
        }
    }

    pub fn set_width(&mut self, width: Option<usize>) {
        self.fmt.set_width(width);
    }

    /// One input line (without `\n`). Errors are `out`'s; `err` (non-JSON lines in `--json`
    /// mode) is best effort.
    pub fn line(&mut self, raw: &[u8], out: &mut dyn Write, err: &mut dyn Write) -> io::Result<()> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        self.text.clear();
        match serde_json::from_slice::<Value>(raw) {
            Ok(Value::Object(m)) => {
                // A command line of the log's own schema; one that does not fit it (from another
                // tool) is shown, as other lines are, only without filters.
                let typed = m
                    .get("command")
                    .is_some_and(Value::is_string)
                    .then(|| serde_json::from_slice::<LogLine>(raw).ok())
                    .flatten();
                let show = match &typed {
                    Some(l) => self.filter.matches_line(l),
                    None if m.get("command").is_some_and(Value::is_string) => {
                        !self.filter.is_active()
                    }
                    None => {
                        m.get("status").and_then(Value::as_str) != Some("push")
                            || !self.filter.is_active()
                    }
                };
                if !show {
                    return Ok(());
                }
                if self.json {
                    return write_line(out, raw);
                }
                self.fmt.object(&m, typed.as_ref(), &mut self.text);
            }
            _ if self.json => {
                let _ = write_line(err, raw);
                return Ok(());
            }
            _ => self.fmt.raw(raw, &mut self.text),
        }
        self.text.push('\n');
        out.write_all(self.text.as_bytes())
    }
}

fn write_line(out: &mut dyn Write, raw: &[u8]) -> io::Result<()> {
    out.write_all(raw)?;
    out.write_all(b"\n")
}

/// The real output: stdout, flushed whenever the input pauses.
struct Output<W: Write> {
    printer: Printer,
    out: W,
    tty: bool,
}

impl<W: Write> LineSink for Output<W> {
    fn line(&mut self, line: &[u8]) -> io::Result<()> {
        self.printer
            .line(line, &mut self.out, &mut io::stderr().lock())
            .map_err(output_error)
    }

    fn idle(&mut self) -> io::Result<()> {
        self.out.flush().map_err(output_error)?;
        if self.tty {
            self.printer.set_width(terminal_width());
        } else if stdout_reader_gone() {
            // `tail -f log | head`: notice that head is gone even while no lines come.
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        Ok(())
    }

    fn note(&mut self, msg: &str) {
        let _ = self.out.flush();
        eprintln!("redis-observer: tail: {msg}");
    }
}

/// Says which side failed; a closed pipe stays as it is (it ends `tail` quietly).
fn output_error(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        return e;
    }
    io::Error::new(e.kind(), format!("writing output: {e}"))
}

fn stdin_file() -> io::Result<File> {
    use std::os::fd::AsFd as _;
    // Our own descriptor, read directly: std's stdin buffer would hide data from poll(2).
    Ok(File::from(io::stdin().as_fd().try_clone_to_owned()?))
}

fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills the winsize it is given; fd 1 is only queried.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &raw mut ws) };
    if r == 0 && ws.ws_col > 0 {
        return Some(usize::from(ws.ws_col));
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&c| c > 0)
}

/// Stdout is a pipe whose reading end was closed.
fn stdout_reader_gone() -> bool {
    let mut pfd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let r = unsafe { libc::poll(&raw mut pfd, 1, 0) };
    r > 0 && pfd.revents & libc::POLLERR != 0
}

/// SIGINT/SIGTERM set a flag the read loops check (at least every 200 ms), so output is flushed
/// and the terminal left clean; then [`reraise`] ends the process by the same signal.
mod signals {
    use std::sync::atomic::{AtomicI32, Ordering};

    static CAUGHT: AtomicI32 = AtomicI32::new(0);

    extern "C" fn on_signal(sig: libc::c_int) {
        // Only an atomic store: async-signal-safe.
        CAUGHT.store(sig, Ordering::Relaxed);
    }

    pub fn install() {
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: sigaction gets valid pointers to initialised structs; the handler is
            // async-signal-safe. No SA_RESTART: a blocked read returns EINTR and the loop looks
            // at the flag.
            unsafe {
                let mut prev: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &raw mut prev) != 0
                    || prev.sa_sigaction == libc::SIG_IGN
                {
                    // Ignored by whoever started us (nohup, `&` in a script): keep it so.
                    continue;
                }
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                libc::sigemptyset(&raw mut sa.sa_mask);
                libc::sigaction(sig, &raw const sa, std::ptr::null_mut());
            }
        }
    }

    pub fn caught() -> bool {
        CAUGHT.load(Ordering::Relaxed) != 0
    }

    /// If a signal stopped us, die by it (the shell then knows the user interrupted us).
    pub fn reraise() {
        let sig = CAUGHT.load(Ordering::Relaxed);
        if sig != 0 {
            // SAFETY: restoring the default action and raising a signal have no memory effects.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"{"ts":"2024-05-01T12:34:56.000001Z","client":"127.0.0.1:51234","server":"127.0.0.1:6379","command":"GET","key":"user:1","args":["user:1"],"status":"ok","reply_type":"bulk","reply":"\"alice\"","error":null,"latency_us":182,"req_bytes":31,"resp_bytes":11}
{"ts":"2024-05-01T12:34:56.000002Z","client":"127.0.0.1:51234","server":"127.0.0.1:6379","command":"CONFIG GET","key":null,"args":["maxmemory"],"status":"ok","reply_type":"array","reply":"[2 items]","error":null,"latency_us":40,"req_bytes":40,"resp_bytes":30}
{"ts":"2024-05-01T12:34:56.000003Z","client":"127.0.0.1:51234","server":"127.0.0.1:6379","command":"INCR","key":"user:1","args":["user:1"],"status":"error","reply_type":"error","reply":null,"error":"WRONGTYPE Operation against a key holding the wrong kind of value","latency_us":2500,"req_bytes":30,"resp_bytes":70}
{"ts":"2024-05-01T12:34:56.000004Z","client":"127.0.0.1:51235","server":"127.0.0.1:6379","command":null,"key":null,"args":[],"status":"push","reply_type":"push","reply":"message news hi","error":null,"latency_us":null,"req_bytes":0,"resp_bytes":40}
this is not json
{"ts":"2024-05-01T12:34:56.000005Z","client":"127.0.0.1:51235","server":"127.0.0.1:6379","command":null,"status":"notice","notice":"lines_dropped","count":3}

{"ts":"2024-05-01T12:34:56.000006Z","client":"127.0.0.1:51236","server":"127.0.0.1:6379","command":"BLPOP","key":"q","args":["q","0"],"status":"unanswered","reply_type":null,"reply":null,"error":null,"latency_us":null,"req_bytes":30,"resp_bytes":0}
[1,2,3]
{"ts":"2024-05-01T12:34:56.000007Z","client":"127.0.0.1:51234","server":"127.0.0.1:6379","command":"config set","key":null,"args":["maxmemory","1gb"],"status":"ok","reply_type":"simple","reply":"OK","error":null,"latency_us":2000000,"req_bytes":50,"resp_bytes":5}"#;

    fn run_filter(cmds: &[&str], min: Option<&str>, errors: bool, json: bool) -> (String, String) {
        let cmds: Vec<String> = cmds.iter().map(|s| (*s).to_owned()).collect();
        let filter = Filter::new(
            &cmds,
            min.map(|m| crate::cli::parse_duration(m).unwrap()),
            errors,
        );
        let mut p = Printer::new(filter, Style::default(), json);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        for line in LOG.lines() {
            p.line(line.as_bytes(), &mut out, &mut err).unwrap();
        }
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn everything_plain() {
        let (out, err) = run_filter(&[], None, false, false);
        assert_eq!(err, "");
        let want = [
            r#"12:34:56.000001  127.0.0.1:51234  GET           user:1         182us  ok          "alice""#,
            "12:34:56.000002  127.0.0.1:51234  CONFIG GET    -               40us  ok          [2 items]  maxmemory",
            "12:34:56.000003  127.0.0.1:51234  INCR          user:1        2.50ms  error       WRONGTYPE Operation against a key holding the wrong kind of value",
            "12:34:56.000004  127.0.0.1:51235  push          message news hi",
            "this is not json",
            "12:34:56.000005  127.0.0.1:51235  notice        lines_dropped count=3",
            "12:34:56.000006  127.0.0.1:51236  BLPOP         q                  -  unanswered  -          0",
            "[1,2,3]",
            "12:34:56.000007  127.0.0.1:51234  config set    -              2.00s  ok          OK         maxmemory 1gb",
        ];
        assert_eq!(out.lines().collect::<Vec<_>>(), want);
    }

    #[test]
    fn filters_keep_notices_and_raw_lines_but_not_pushes() {
        let (out, _) = run_filter(&["config"], None, false, false);
        let got: Vec<&str> = out.lines().collect();
        assert_eq!(got.len(), 5, "{out}");
        assert!(got[0].contains("CONFIG GET"));
        assert_eq!(got[1], "this is not json");
        assert!(got[2].contains("notice"));
        assert_eq!(got[3], "[1,2,3]");
        assert!(got[4].contains("config set"));

        let (out, _) = run_filter(&[], Some("1.5ms"), false, false);
        let cmds: Vec<&str> = out.lines().filter(|l| l.starts_with("12:")).collect();
        assert_eq!(cmds.len(), 3, "{out}");
        assert!(cmds[0].contains("INCR") && cmds[1].contains("notice"));
        assert!(cmds[2].contains("config set"));

        let (out, _) = run_filter(&["incr", "get"], Some("1ms"), true, false);
        let cmds: Vec<&str> = out.lines().filter(|l| l.starts_with("12:")).collect();
        assert_eq!(cmds.len(), 2, "{out}");
        assert!(cmds[0].contains("INCR") && cmds[0].contains("error"));
    }

    #[test]
    fn json_passes_lines_through_unchanged() {
        let (out, err) = run_filter(&["GET", "BLPOP"], None, false, true);
        let src: Vec<&str> = LOG.lines().collect();
        assert_eq!(out.lines().collect::<Vec<_>>(), [src[0], src[5], src[7]]);
        assert_eq!(err, "this is not json\n[1,2,3]\n");

        let (out, _) = run_filter(&[], None, false, true);
        assert_eq!(out.lines().count(), 7, "{out}");
        assert!(
            out.lines()
                .all(|l| serde_json::from_str::<Value>(l).is_ok())
        );
    }

    #[test]
    fn odd_input_never_fails() {
        let mut p = Printer::new(
            Filter::default(),
            Style {
                color: true,
                truncate: true,
                width: Some(80),
            },
            false,
        );
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let deep = "[".repeat(100_000);
        for line in [
            &b"\xff\xfe binary"[..],
            b"{",
            b"{\"command\":\"GET\"",
            b"null",
            b"   ",
            deep.as_bytes(),
            b"{\"command\":\"\\u0000\",\"ts\":\"\\u001b[31m\"}",
        ] {
            p.line(line, &mut out, &mut err).unwrap();
        }
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.lines().count(), 6, "{text}");
    }

    #[test]
    fn color_choice() {
        assert_eq!(ColorChoice::parse("AUTO"), Some(ColorChoice::Auto));
        assert_eq!(ColorChoice::parse("never"), Some(ColorChoice::Never));
        assert_eq!(ColorChoice::parse("sometimes"), None);
        assert!(ColorChoice::Always.enabled(false));
        assert!(!ColorChoice::Never.enabled(true));
        assert!(!ColorChoice::Auto.enabled(false));
    }
}
