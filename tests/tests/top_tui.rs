//! `redis-observer top` used as a person would, in a real terminal (tmux, 80×24): a real client
//! sends a Zipf workload to a real redis-server watched by the daemon; `top` shows the workload's
//! hottest key first, switches sort, ranking and window (the screen follows; the `all` window's
//! GET count equals INFO commandstats), pauses, and `q` brings the shell back with the terminal
//! restored. Without a terminal it prints one plain frame.

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread::sleep,
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::*;

/// A tmux server of our own (its own socket), one 80×24 session running a plain shell.
struct Tmux {
    sock: PathBuf,
}

impl Tmux {
    fn start(dir: &Path) -> Tmux {
        let t = Tmux {
            sock: dir.join("tmux.sock"),
        };
        t.run(&[
            "new-session",
            "-d",
            "-x",
            "80",
            "-y",
            "24",
            "-s",
            "t",
            "env",
            "PS1=PROMPT$ ",
            "bash",
            "--norc",
            "--noprofile",
        ]);
        t
    }

    fn run(&self, args: &[&str]) -> String {
        let out = sh(Command::new("tmux").arg("-S").arg(&self.sock).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` and presses Enter.
    fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-t", "t", "-l", text]);
        self.run(&["send-keys", "-t", "t", "Enter"]);
    }

    fn key(&self, k: &str) {
        self.run(&["send-keys", "-t", "t", k]);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    /// With escape sequences (colours).
    fn screen_esc(&self) -> String {
        self.run(&["capture-pane", "-p", "-e", "-t", "t"])
    }

    fn format(&self, f: &str) -> String {
        self.run(&["display-message", "-p", "-t", "t", f])
            .trim()
            .to_owned()
    }

    /// Waits (up to 15 s) until the screen satisfies `ok`; returns that screen.
    fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{s}"
            );
            sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.sock)
            .arg("kill-server")
            .status();
    }
}

/// The first name under a panel's title (panels sit side by side: the left one's name is the
/// line's first word).
fn panel_first(screen: &str, title: &str) -> Option<String> {
    let lines: Vec<&str> = screen.lines().collect();
    let i = lines.iter().position(|l| l.contains(title))?;
    let l = lines.get(i + 1)?;
    if title == "HOT PATTERNS" || title == "TOP CLIENTS" {
        // The right-hand panel: from the column its title starts at.
        let col = lines[i].find(title)?;
        return l.get(col..)?.split_whitespace().next().map(str::to_owned);
    }
    l.split_whitespace().next().map(str::to_owned)
}

/// The command table's rows, as words, in screen order.
fn command_rows(screen: &str) -> Vec<Vec<String>> {
    screen
        .lines()
        .skip_while(|l| !l.contains("COMMANDS"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && !l.contains("HOT KEYS"))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// The command table's header line.
fn commands_header(screen: &str) -> String {
    screen
        .lines()
        .find(|l| l.contains("COMMANDS"))
        .unwrap_or("")
        .to_owned()
}

/// `CALLS` of a command (columns: name, CALLS/S, CALLS, ERRORS, P50, P99).
fn calls_of(screen: &str, cmd: &str) -> Option<u64> {
    command_rows(screen)
        .into_iter()
        .find(|r| r.first().map(String::as_str) == Some(cmd))
        .and_then(|r| r.get(2)?.parse().ok())
}

/// Whether a screen captured with its escapes sets a foreground or background colour (SGR 30–37,
/// 40–47, 90–97, 100–107, or 38/48 with a palette index or RGB); 39 and 49 are the defaults.
fn has_colour(esc: &str) -> bool {
    esc.split("\u{1b}[").skip(1).any(|seq| {
        let Some(end) = seq.find('m') else {
            return false;
        };
        let params: Vec<&str> = seq[..end].split(';').collect();
        params.iter().any(|p| {
            matches!(
                p.parse::<u32>(),
                Ok(30..=38 | 40..=48 | 90..=97 | 100..=107)
            )
        })
    })
}

/// The key a displayed name stands for (a name too long for its column ends with `…`).
fn shows(displayed: &str, key: &str) -> bool {
    match displayed.strip_suffix('…') {
        Some(prefix) => key.starts_with(prefix),
        None => displayed == key,
    }
}

#[test]
fn top_in_tmux_shows_the_hot_key_switches_views_and_quits_cleanly() {
    let _g = e2e_lock();
    require_root();
    let bin = observer_bin();
    let redis = Redis::start(&[]);
    let port = redis.port.to_string();
    let mut obs = Observer::start(None, &["-i", "lo", "-p", &port, "--log", "/dev/null"]);
    let top_addr = obs.top_addr.clone().expect("a /top address");
    let dir = temp_dir("top-tui");

    // The workload, before `top` starts: Zipf over 20,000 keys (redis-py pipelines), a big value
    // read 30 times, and 10 WRONGTYPE errors.
    let sent = dir.join("sent.json");
    let st = Command::new("python3")
        .arg(root().join("tests/scripts/zipf_workload.py"))
        .args([&port, "60000", "20000", "1.1", "3"])
        .arg(&sent)
        .status()
        .expect("python3");
    assert!(st.success(), "workload failed");
    let sent: Value = serde_json::from_str(&std::fs::read_to_string(&sent).unwrap()).unwrap();
    let mut calls: Vec<(String, u64)> = sent["calls"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    calls.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let (hot, hot_calls) = calls[0].clone();
    assert!(
        hot_calls > calls[1].1,
        "no single hottest key: {:?}",
        &calls[..2]
    );
    eprintln!("hottest key {hot} ({hot_calls} calls), next {:?}", calls[1]);
    // A 200,000-byte value (zeros up to the last byte).
    redis.cli(&["SETRANGE", "big:blob", "199999", "x"]);
    redis.cli(&["-r", "30", "GET", "big:blob"]);
    redis.cli(&["SET", "str:key", "v"]);
    redis.cli(&["-r", "10", "LPUSH", "str:key", "x"]);

    let tmux = Tmux::start(&dir);
    tmux.wait("the shell prompt", |s| s.contains("PROMPT$"));
    let metrics = obs.metrics_addr.clone();
    let cmdline = format!(
        "{} top --metrics {metrics} --top-addr {top_addr}; echo EXIT=$?",
        bin.display()
    );
    tmux.type_line(&cmdline);

    // It launches full-screen, with the hottest key first.
    let s = tmux.wait("the hot keys and the command table", |s| {
        panel_first(s, "HOT KEYS").is_some_and(|k| k != "(none") && s.contains("COMMANDS (last")
    });
    eprintln!("first screen:\n{s}");
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "1",
        "not on the alternate screen"
    );
    assert_eq!(s.lines().count(), 24, "{s}");
    assert!(s.lines().all(|l| l.chars().count() <= 80), "{s}");
    assert!(
        s.lines()
            .next()
            .unwrap()
            .contains(&format!("127.0.0.1:{port}")),
        "{s}"
    );
    assert!(s.contains("window 60s") && s.contains("by calls"), "{s}");
    let first = panel_first(&s, "HOT KEYS").unwrap();
    assert!(
        shows(&first, &hot),
        "hot keys start with {first}, not {hot}\n{s}"
    );
    assert_eq!(
        panel_first(&s, "BIG KEYS").as_deref(),
        Some("big:blob"),
        "{s}"
    );
    // Colours on a terminal.
    let esc = tmux.screen_esc();
    assert!(has_colour(&esc), "no colour: {esc:?}");

    // The 60 s window starts where `top` started: only what is sent from now on.
    assert_eq!(calls_of(&s, "GET"), None, "GET in a window before it:\n{s}");
    redis.cli(&["-r", "50", "GET", &hot]);
    let s = tmux.wait("50 GETs in the 60s window", |s| {
        calls_of(s, "GET") == Some(50)
    });
    assert!(s.contains("COMMANDS (last"), "{s}");

    // Window `all`: since the daemon started, GET as Redis counts it.
    let info = redis.commandstats();
    let (c, r, _) = info.0["get"];
    let get_all = c + r;
    tmux.key("w");
    let s = tmux.wait("window all", |s| {
        s.contains("window all") && calls_of(s, "GET") == Some(get_all)
    });
    assert!(s.contains("COMMANDS (all)"), "{s}");
    eprintln!("window all:\n{s}");

    // Sort: by calls (GET first), by errors (LPUSH's 10 WRONGTYPE first), by name.
    tmux.key("o");
    let s = tmux.wait("sort by calls", |s| commands_header(s).contains("▼CALLS "));
    assert_eq!(command_rows(&s)[0][0], "GET", "{s}");
    tmux.key("o");
    let s = tmux.wait("sort by errors", |s| commands_header(s).contains("▼ERRORS"));
    let top_row = &command_rows(&s)[0];
    assert_eq!(
        (top_row[0].as_str(), top_row[3].as_str()),
        ("LPUSH", "10"),
        "{s}"
    );
    tmux.key("<");
    tmux.key("<");
    let s = tmux.wait("sort by rate", |s| commands_header(s).contains("▼CALLS/S"));
    tmux.key("<");
    let s2 = tmux.wait("sort by name", |s| commands_header(s).contains("▼COMMANDS"));
    let names: Vec<String> = command_rows(&s2)
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "{s2}");
    assert_ne!(s, s2);

    // Ranked by bytes: the big value comes first.
    tmux.key("b");
    let s = tmux.wait("by bytes", |s| {
        s.contains("by bytes") && panel_first(s, "HOT KEYS").as_deref() == Some("big:blob")
    });
    assert!(s.contains("▼BYTES"), "{s}");
    tmux.key("b");
    tmux.key("b");
    tmux.wait("by calls again", |s| {
        s.contains("by calls") && panel_first(s, "HOT KEYS").is_some_and(|k| shows(&k, &hot))
    });

    // Pause: new traffic does not move the screen until resumed.
    tmux.key("p");
    let paused = tmux.wait("paused", |s| s.contains("PAUSED"));
    let before = calls_of(&paused, "GET").unwrap();
    redis.cli(&["-r", "100", "GET", &hot]);
    sleep(Duration::from_millis(3_000));
    let still = tmux.screen();
    assert_eq!(
        calls_of(&still, "GET"),
        Some(before),
        "moved while paused:\n{still}"
    );
    assert!(still.contains("PAUSED"));
    tmux.key("Space");
    tmux.wait("resumed with the new GETs", |s| {
        !s.contains("PAUSED") && calls_of(s, "GET") == Some(before + 100)
    });

    // `q`: the shell comes back, exit status 0, no alternate screen left, cursor shown.
    tmux.key("q");
    let s = tmux.wait("the shell after q", |s| s.contains("EXIT=0"));
    assert!(s.lines().any(|l| l.starts_with("PROMPT$")), "{s}");
    assert!(!s.contains("HOT KEYS"), "the view was left on screen:\n{s}");
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "0",
        "alternate screen left on"
    );
    assert_eq!(tmux.format("#{cursor_flag}"), "1", "cursor left hidden");

    // NO_COLOR: the same view without colours; Ctrl-C quits as cleanly.
    tmux.type_line("clear");
    tmux.type_line(&format!("NO_COLOR=1 {cmdline}"));
    tmux.wait("top again", |s| {
        panel_first(s, "HOT KEYS").is_some_and(|k| k != "(none")
    });
    let esc = tmux.screen_esc();
    assert!(!has_colour(&esc), "colours with NO_COLOR: {esc:?}");
    tmux.key("C-c");
    tmux.wait("the shell after Ctrl-C", |s| {
        s.matches("EXIT=0").count() >= 1 && !s.contains("HOT KEYS")
    });
    assert_eq!(tmux.format("#{alternate_on}"), "0");

    // SIGTERM: the terminal is restored as well.
    tmux.type_line("clear");
    tmux.type_line(&cmdline);
    tmux.wait("top for SIGTERM", |s| s.contains("HOT KEYS"));
    let shell = tmux.format("#{pane_pid}");
    let top_pid = sh(Command::new("pgrep").args(["-P", &shell]))
        .stdout
        .clone();
    let top_pid = String::from_utf8_lossy(&top_pid).trim().to_owned();
    sh(Command::new("kill").args(["-TERM", &top_pid]));
    tmux.wait("the shell after SIGTERM", |s| {
        s.contains("EXIT=0") && !s.contains("HOT KEYS")
    });
    assert_eq!(tmux.format("#{alternate_on}"), "0");
    assert_eq!(tmux.format("#{cursor_flag}"), "1");

    // A panic: the message comes out on the restored screen, exit 101.
    tmux.type_line("clear");
    tmux.type_line(&format!("REDIS_OBSERVER_TOP_TEST_PANIC=1 {cmdline}"));
    let s = tmux.wait("the shell after a panic", |s| s.contains("EXIT=101"));
    assert!(s.contains("REDIS_OBSERVER_TOP_TEST_PANIC is set"), "{s}");
    assert_eq!(tmux.format("#{alternate_on}"), "0");
    assert_eq!(tmux.format("#{cursor_flag}"), "1");
    // And the tty is back in cooked mode with echo (raw mode off).
    tmux.type_line("clear");
    tmux.type_line("stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo");
    let s = tmux.wait("stty's modes", |s| {
        s.lines().any(|l| l.trim().ends_with("icanon"))
            && s.lines().any(|l| l.trim().ends_with("echo"))
    });
    let modes: Vec<&str> = s
        .lines()
        .map(str::trim)
        .filter(|l| matches!(*l, "icanon" | "-icanon" | "echo" | "-echo"))
        .collect();
    assert_eq!(modes, ["icanon", "echo"], "{s}");

    // The terminal goes away under it (the tmux server killed): `top` ends by itself.
    tmux.type_line("clear");
    tmux.type_line(&cmdline);
    tmux.wait("top before the terminal goes", |s| s.contains("HOT KEYS"));
    let shell = tmux.format("#{pane_pid}");
    let pid = sh(Command::new("pgrep").args(["-P", &shell]))
        .stdout
        .clone();
    let pid = String::from_utf8_lossy(&pid).trim().to_owned();
    drop(tmux);
    wait_until(
        "top to end with its terminal",
        Duration::from_secs(5),
        || !Path::new(&format!("/proc/{pid}")).exists(),
    );

    // Not a terminal: one plain frame, then exit 0.
    let out = Command::new(&bin)
        .args(["top", "--metrics", &metrics, "--top-addr", &top_addr])
        .output()
        .expect("top");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(
        !text.contains('\u{1b}'),
        "escapes without a terminal: {text:?}"
    );
    assert_eq!(text.lines().count(), 24, "{text}");
    let first = panel_first(&text, "HOT KEYS").unwrap();
    assert!(shows(&first, &hot), "{text}");

    // A daemon that is not there: one line, exit 1.
    let gone = format!("127.0.0.1:{}", free_port());
    let out = Command::new(&bin)
        .args([
            "top",
            "--metrics",
            &gone,
            "--top-addr",
            &gone,
            "--interval",
            "100ms",
        ])
        .output()
        .expect("top");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("metrics:"));
    obs.stop();
}
