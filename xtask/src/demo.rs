//! `cargo xtask demo`: a first look. Starts a throwaway redis-server on a free loopback port,
//! attaches the observer, sends some traffic with redis-cli and redis-benchmark, then shows the
//! command log (through `redis-observer tail`), a few metrics, and Redis's own commandstats
//! beside the observer's counts.

use std::{
    path::Path,
    process::{Command, Stdio},
    thread::sleep,
    time::Duration,
};

use anyhow::Context as _;

use crate::proc_util::{Kill, free_port, http_get, start_redis, wait_healthy};

fn cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn demo(bin: &Path) -> anyhow::Result<()> {
    let port = free_port()?;
    let mport = free_port()?;
    let dir = std::env::temp_dir().join(format!("redis-observer-demo-{port}"));
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("commands.log");
    let _ = std::fs::remove_file(&log);
    println!("== starting redis-server on 127.0.0.1:{port}");
    let _redis = start_redis(port, None)?;
    let maddr = format!("127.0.0.1:{mport}");
    println!("== attaching redis-observer to lo, port {port}; metrics on http://{maddr}/metrics");
    let observer = Kill(
        Command::new(bin)
            .args([
                "run",
                "-i",
                "lo",
                "-p",
                &port.to_string(),
                "--metrics-addr",
                &maddr,
            ])
            .arg("--log")
            .arg(&log)
            .spawn()
            .context("starting redis-observer")?,
    );
    wait_healthy(&maddr, 10)?;
    let before = cli(port, &["INFO", "commandstats"])?;
    println!(
        "== traffic: redis-cli commands, an error, a transaction, and redis-benchmark -n 2000 -P 16"
    );
    cli(port, &["SET", "greeting", "hello world"])?;
    cli(port, &["GET", "greeting"])?;
    cli(port, &["INCR", "visits"])?;
    cli(port, &["LPUSH", "queue", "a", "b", "c"])?;
    cli(port, &["HSET", "user:1", "name", "ada", "lang", "rust"])?;
    cli(port, &["INCR", "greeting"])?; // ERR value is not an integer
    let mut multi = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    if let Some(stdin) = multi.stdin.as_mut() {
        use std::io::Write as _;
        stdin.write_all(b"MULTI\nINCR visits\nGET greeting\nEXEC\n")?;
    }
    multi.wait()?;
    Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-n",
            "2000",
            "-P",
            "16",
            "-q",
            "-t",
            "set,get,incr",
        ])
        .stdout(Stdio::null())
        .status()?;
    let after = cli(port, &["INFO", "commandstats"])?;
    sleep(Duration::from_millis(300));
    let metrics = http_get(&maddr, "/metrics").context("GET /metrics")?;
    drop(observer);

    println!("\n== the command log (first 12 lines, through `redis-observer tail`):");
    let tail = Command::new(bin)
        .arg("tail")
        .arg(&log)
        .arg("--color")
        .arg("always")
        .output()?;
    for l in String::from_utf8_lossy(&tail.stdout).lines().take(12) {
        println!("  {l}");
    }
    println!("\n== some metrics:");
    for l in metrics.lines().filter(|l| {
        l.starts_with("redis_commands_total")
            || l.starts_with("redis_connections_total")
            || l.starts_with("redis_observer_events_lost_total")
    }) {
        println!("  {l}");
    }
    println!(
        "\n== Redis's own INFO commandstats (calls since start) next to the observer's count:"
    );
    // (The demo's own INFO queries are left out: one of them ran before the counts it compares.)
    for l in after
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
    {
        let name = l
            .trim_start_matches("cmdstat_")
            .split(':')
            .next()
            .unwrap_or("");
        let calls = |s: &str| -> u64 {
            s.lines()
                .find(|x| x.starts_with(&format!("cmdstat_{name}:")))
                .and_then(|x| x.split("calls=").nth(1))
                .and_then(|x| x.split(',').next())
                .and_then(|x| x.parse().ok())
                .unwrap_or(0)
        };
        let upper = name.replace('|', " ").to_uppercase();
        let seen: f64 = metrics
            .lines()
            .filter(|m| {
                m.starts_with("redis_commands_total{")
                    && m.contains(&format!("command=\"{upper}\""))
            })
            .filter_map(|m| m.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        println!(
            "  {:<16} redis: {:>6}   observer: {:>6}",
            upper,
            calls(&after) - calls(&before),
            seen
        );
    }
    println!("\nlog file: {}", log.display());
    Ok(())
}
