//! Command line, as in docs/contract.md (extended, never renamed).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::capture::AttachMode;

#[derive(Parser, Debug)]
#[command(
    name = "redis-observer",
    version,
    about = "See what a Redis server is doing, from the outside (eBPF)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Attach to interfaces and observe Redis traffic live (root).
    Run(RunArgs),
    /// Run the same pipeline over a pcap/pcapng capture (no privileges).
    Replay(ReplayArgs),
    /// Pretty-print and filter a command log.
    Tail(TailArgs),
    /// Say whether this host can run `run`.
    Check(CheckArgs),
    /// A live, full-screen view of a running daemon (its /metrics and /top endpoints).
    Top(TopArgs),
}

/// `run --top`: the hot-key analytics and their `/top` endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Options shared by `run` and `replay` for the command log and the pipeline.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Redis server ports (a connection is observed when either side uses one).
    #[arg(short = 'p', long = "port", default_value = "6379", value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Vec<u16>,
    /// Command log destination: a file, or `-` for stdout.
    #[arg(long, default_value = "-")]
    pub log: String,
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// What names a client in `redis_client_*` metrics: its CLIENT SETNAME name, its local
    /// process, or its library (the others follow as fallbacks), or `none` for no per-client
    /// series.
    #[arg(long, value_enum, default_value_t = crate::metrics::ClientLabel::Name)]
    pub client_label: crate::metrics::ClientLabel,
    /// Log only commands at least this slow (metrics still count every command).
    #[arg(long, value_parser = parse_duration)]
    pub slow: Option<Duration>,
    /// Rotate the log file past this size (bytes, or with K/M/G suffix); 0 = never.
    #[arg(long, default_value = "0", value_parser = parse_size)]
    pub log_max_size: u64,
    /// Rotated files to keep.
    #[arg(long, default_value_t = 5)]
    pub log_keep: u32,
    /// Also log pub/sub and RESP3 push deliveries (`"command": null, "status": "push"`).
    #[arg(long)]
    pub log_pushes: bool,
    /// Connections without traffic for this long are closed out (their pending commands are
    /// logged `unanswered`); in replay, on the capture's clock.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Memory the daemon may use in all (bytes, or with K/M/G suffix): every budget (connections,
    /// commands awaiting replies, buffers) is derived from it.
    #[arg(long, default_value = "192M", value_parser = parse_size)]
    pub memory_limit: u64,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Interfaces to attach to.
    #[arg(short = 'i', long = "iface", default_value = "lo")]
    pub ifaces: Vec<String>,
    #[arg(long = "attach", value_enum, default_value_t = AttachMode::Tc)]
    pub attach: AttachMode,
    /// Address of the Prometheus endpoint (`/metrics`, `/healthz`).
    #[arg(long, default_value = "127.0.0.1:9379")]
    pub metrics_addr: SocketAddr,
    /// Hot keys, key patterns, big keys and busy clients (`GET /top` on `--top-addr`).
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub top: Switch,
    /// Address of the `/top` endpoint (keys are data: never served on the metrics port);
    /// default 127.0.0.1:9380. When the default is taken (another observer), `/top` is off
    /// with a warning; an address given here must bind.
    #[arg(long)]
    pub top_addr: Option<SocketAddr>,
    /// Payload bytes copied per TCP segment (the rest is counted as not captured; large values are
    /// still decoded by length).
    #[arg(long, default_value = "65536", value_parser = parse_size)]
    pub capture_bytes: u64,
    /// Kernel ring buffer size (power of two).
    #[arg(long, default_value = "16M", value_parser = parse_size)]
    pub ring_bytes: u64,
    /// Print one line per kernel event instead of decoding (debugging the capture).
    #[arg(long)]
    pub dump_events: bool,
    /// Kernel-side diagnostics for rare events.
    #[arg(long)]
    pub debug: bool,
    /// Keep every capability after attaching (by default all are dropped once attached).
    #[arg(long)]
    pub keep_privileges: bool,
    /// Benchmarking: drain the ring buffer but decode nothing (measures the capture path's own
    /// cost; no command is counted).
    #[arg(long, hide = true)]
    pub capture_only: bool,
    /// Debugging and tests: write each connection's reassembled bytes into this directory.
    #[arg(long, hide = true)]
    pub dump_streams: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A pcap or pcapng file.
    pub file: PathBuf,
    /// Write the final metrics (Prometheus text format) to this file.
    #[arg(long)]
    pub metrics_out: Option<PathBuf>,
    /// Print the hot-key tables (keys, patterns, big keys, clients, commands), N lines each,
    /// once the capture is read.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub top: Option<u16>,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Args, Debug)]
pub struct TailArgs {
    /// Log file (stdin when absent).
    pub path: Option<PathBuf>,
    /// Follow the file as it grows, across rotation.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Which lines to show (`--command`, `--min-latency`, `--errors`, `--iface`, `--client`,
    /// `--user`, `--pid`): declared with the filter, in `cmd/tail/filter.rs`.
    #[command(flatten)]
    pub filter: crate::cmd::tail::FilterArgs,
    /// Pass matching lines through as JSON.
    #[arg(long)]
    pub json: bool,
    /// Colors: auto (on a terminal), always, never.
    #[arg(long, default_value = "auto")]
    pub color: String,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    /// The daemon's metrics endpoint (`run --metrics-addr`), host:port.
    #[arg(long, default_value = "127.0.0.1:9379")]
    pub metrics: String,
    /// The daemon's `/top` endpoint (`run --top-addr`), host:port.
    #[arg(long, default_value = "127.0.0.1:9380")]
    pub top_addr: String,
    /// Time between refreshes (100ms to 1h).
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err(format!("interval {s:?} out of range (100ms to 1h)"));
    }
    Ok(d)
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[arg(short = 'i', long = "iface", default_value = "lo")]
    pub ifaces: Vec<String>,
}

/// `250us`, `1.5ms`, `2s`, `1m`, `100ns`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (try 250us, 1.5ms, 2s)"))?;
    let mult = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        u => {
            return Err(format!(
                "bad duration unit {u:?} in {s:?} (ns, us, ms, s, m, h)"
            ));
        }
    };
    let secs = v * mult;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `65536`, `64K`, `16M`, `1G` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad size {s:?} (try 65536, 64K, 16M)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(
            parse_duration("1.5ms").unwrap(),
            Duration::from_micros(1500)
        );
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert!(parse_duration("2 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64K").unwrap(), 65536);
        assert_eq!(parse_size("16M").unwrap(), 16 << 20);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn contract_command_lines_parse() {
        Cli::try_parse_from([
            "redis-observer",
            "run",
            "-i",
            "lo",
            "-p",
            "6379",
            "-p",
            "6380",
            "--attach",
            "socket",
            "--metrics-addr",
            "127.0.0.1:9379",
            "--log",
            "-",
            "--log-format",
            "text",
            "--capture-bytes",
            "16384",
            "--slow",
            "1.5ms",
        ])
        .unwrap();
        Cli::try_parse_from([
            "redis-observer",
            "replay",
            "x.pcap",
            "-p",
            "6379",
            "--log",
            "out.jsonl",
            "--metrics-out",
            "m.prom",
        ])
        .unwrap();
        Cli::try_parse_from([
            "redis-observer",
            "tail",
            "log",
            "-f",
            "--command",
            "GET",
            "--min-latency",
            "250us",
            "--errors",
            "--json",
        ])
        .unwrap();
        Cli::try_parse_from(["redis-observer", "check", "-i", "lo"]).unwrap();
        Cli::try_parse_from([
            "redis-observer",
            "top",
            "--metrics",
            "127.0.0.1:9379",
            "--top-addr",
            "127.0.0.1:9380",
        ])
        .unwrap();
        assert!(Cli::try_parse_from(["redis-observer", "top", "--interval", "1ms"]).is_err());
        assert!(Cli::try_parse_from(["redis-observer", "run", "--slow", "soon"]).is_err());
    }
}
