//! Which command lines `tail` shows: every given condition must hold (AND); several `--command`
//! names are alternatives (OR).

use std::time::Duration;

/// `tail`'s filter flags (flattened into its arguments): a filter is its flag here and its test
/// in [`Filter::matches_line`], in this one file.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct FilterArgs {
    /// Only these commands (case-insensitive; `CONFIG GET` or `CONFIG`).
    #[arg(long = "command")]
    pub commands: Vec<String>,
    /// Only commands at least this slow.
    #[arg(long, value_parser = crate::cli::parse_duration)]
    pub min_latency: Option<Duration>,
    /// Only commands that got an error reply.
    #[arg(long)]
    pub errors: bool,
    /// Only commands seen on this interface (repeatable: any of them).
    #[arg(long = "iface")]
    pub ifaces: Vec<String>,
    /// Only commands of this client: its CLIENT SETNAME name, else its process name, else its
    /// library name (exact).
    #[arg(long)]
    pub client: Option<String>,
    /// Only commands of connections authenticated as this ACL user.
    #[arg(long)]
    pub user: Option<String>,
    /// Only commands of this local client process (needs process attribution).
    #[arg(long)]
    pub pid: Option<u32>,
}

#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Upper case, single spaces between words (`CONFIG GET`); never empty strings.
    commands: Vec<String>,
    /// In nanoseconds, compared with `latency_us * 1000`.
    min_latency_ns: Option<f64>,
    errors: bool,
    /// `--iface`: interface names (any of them).
    ifaces: Vec<String>,
    /// `--client`: the line's client name, else process name, else library name.
    client: Option<String>,
    /// `--user`.
    user: Option<String>,
    /// `--pid`: the client process.
    pid: Option<u32>,
}

impl Filter {
    /// The filter the flags ask for.
    pub fn from_args(a: &FilterArgs) -> Self {
        Filter::new(&a.commands, a.min_latency, a.errors)
            .with_ifaces(&a.ifaces)
            .with_identity(a.client.clone(), a.user.clone(), a.pid)
    }

    pub fn new(commands: &[String], min_latency: Option<Duration>, errors: bool) -> Self {
        let commands = commands
            .iter()
            .map(|c| normalize(c))
            .filter(|c| !c.is_empty())
            .collect();
        Self {
            commands,
            // Exact below 2^53 ns (104 days); durations parse from f64 seconds anyway.
            min_latency_ns: min_latency.map(|d| d.as_nanos() as f64),
            errors,
            ifaces: Vec::new(),
            client: None,
            user: None,
            pid: None,
        }
    }

    /// Also requires the line's interface to be one of `ifaces` (when not empty).
    #[must_use]
    pub fn with_ifaces(mut self, ifaces: &[String]) -> Self {
        self.ifaces = ifaces.iter().filter(|i| !i.is_empty()).cloned().collect();
        self
    }

    /// Also requires the line's client (`--client`), user and client process to be these.
    #[must_use]
    pub fn with_identity(
        mut self,
        client: Option<String>,
        user: Option<String>,
        pid: Option<u32>,
    ) -> Self {
        self.client = client.filter(|c| !c.is_empty());
        self.user = user.filter(|u| !u.is_empty());
        self.pid = pid;
        self
    }

    /// A command line of the log (the caller checks `line.is_command()`).
    pub fn matches_line(&self, line: &crate::command_log::LogLine) -> bool {
        if let Some(c) = &self.client {
            // The library as logged is "name version": its name is the first word.
            let lib = line
                .client_lib
                .as_deref()
                .map(|l| l.split(' ').next().unwrap_or(l));
            let who = line
                .client_name
                .as_deref()
                .or(line.client_comm.as_deref())
                .or(lib);
            if who != Some(c.as_str()) {
                return false;
            }
        }
        if self.user.is_some() && line.user != self.user {
            return false;
        }
        if self.pid.is_some() && line.client_pid != self.pid {
            return false;
        }
        if !self.ifaces.is_empty()
            && !line
                .capture
                .iface
                .as_ref()
                .is_some_and(|i| self.ifaces.iter().any(|f| **f == **i))
        {
            return false;
        }
        self.matches(
            line.command.as_deref().unwrap_or(""),
            &line.status,
            line.latency_us,
        )
    }

    /// Any condition given: then lines that are not commands (pushes) are left out too.
    pub fn is_active(&self) -> bool {
        !self.commands.is_empty()
            || self.min_latency_ns.is_some()
            || self.errors
            || !self.ifaces.is_empty()
            || self.client.is_some()
            || self.user.is_some()
            || self.pid.is_some()
    }

    /// `command` as logged (`CONFIG GET`), `status` (`ok`, `error`, ...), `latency_us` (null for
    /// commands that got no reply, which therefore never pass `--min-latency`).
    pub fn matches(&self, command: &str, status: &str, latency_us: Option<f64>) -> bool {
        if self.errors && status != "error" {
            return false;
        }
        if let Some(min) = self.min_latency_ns {
            // Half a nanosecond of slack: `250us` must match a logged 250 whatever the float
            // rounding of either side.
            match latency_us {
                Some(us) if us * 1000.0 + 0.5 >= min => {}
                _ => return false,
            }
        }
        self.commands.is_empty() || self.commands.iter().any(|f| name_matches(f, command))
    }
}

/// `config  get` → `CONFIG GET`.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.make_ascii_uppercase();
    out
}

/// `CONFIG` matches `CONFIG` and `CONFIG GET` but not `CONFIGX`; `CONFIG GET` matches only
/// `CONFIG GET`. Case-insensitive; compares bytes so no input can split a character.
fn name_matches(filter: &str, command: &str) -> bool {
    let (f, c) = (filter.as_bytes(), command.trim().as_bytes());
    match c.get(..f.len()) {
        Some(head) if head.eq_ignore_ascii_case(f) => matches!(c.get(f.len()), None | Some(b' ')),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(cmds: &[&str], min: Option<&str>, errors: bool) -> Filter {
        let cmds: Vec<String> = cmds.iter().map(|s| (*s).to_owned()).collect();
        Filter::new(
            &cmds,
            min.map(|m| crate::cli::parse_duration(m).unwrap()),
            errors,
        )
    }

    #[test]
    fn no_conditions_match_everything() {
        let all = f(&[], None, false);
        assert!(!all.is_active());
        assert!(all.matches("GET", "ok", Some(1.0)));
        assert!(all.matches("BLPOP", "unanswered", None));
    }

    #[test]
    fn command_names() {
        let config = f(&["config"], None, false);
        assert!(config.is_active());
        assert!(config.matches("CONFIG GET", "ok", None));
        assert!(config.matches("CONFIG", "error", None));
        assert!(config.matches("config set", "ok", None));
        assert!(!config.matches("CONFIGX", "ok", None));
        assert!(!config.matches("CLIENT SETNAME", "ok", None));

        let get = f(&["Config  Get"], None, false);
        assert!(get.matches("CONFIG GET", "ok", None));
        assert!(!get.matches("CONFIG SET", "ok", None));
        assert!(!get.matches("CONFIG", "ok", None));

        let either = f(&["get", "set"], None, false);
        assert!(either.matches("GET", "ok", None));
        assert!(either.matches("SET", "ok", None));
        assert!(!either.matches("GETSET", "ok", None));
        assert!(!either.matches("DEL", "ok", None));

        // Multi-byte text never splits a character.
        assert!(!f(&["é"], None, false).matches("x", "ok", None));
        assert!(!f(&["x"], None, false).matches("éé", "ok", None));
        // Blank names are ignored rather than matching nothing.
        assert!(!f(&["  "], None, false).is_active());
    }

    #[test]
    fn min_latency() {
        let slow = f(&[], Some("250us"), false);
        assert!(slow.matches("GET", "ok", Some(250.0)));
        assert!(slow.matches("GET", "ok", Some(1e6)));
        assert!(!slow.matches("GET", "ok", Some(249.0)));
        assert!(!slow.matches("BLPOP", "unanswered", None));
        let ms = f(&[], Some("1.5ms"), false);
        assert!(ms.matches("GET", "ok", Some(1500.0)));
        assert!(!ms.matches("GET", "ok", Some(1499.9)));
        assert!(f(&[], Some("2s"), false).matches("BLPOP", "ok", Some(2_000_000.0)));
    }

    #[test]
    fn errors_and_combination() {
        let errs = f(&[], None, true);
        assert!(errs.matches("GET", "error", None));
        assert!(!errs.matches("GET", "ok", None));
        assert!(!errs.matches("GET", "unanswered", None));

        let all = f(&["get", "hgetall"], Some("1ms"), true);
        assert!(all.matches("HGETALL", "error", Some(5000.0)));
        assert!(!all.matches("HGETALL", "ok", Some(5000.0)));
        assert!(!all.matches("HGETALL", "error", Some(10.0)));
        assert!(!all.matches("SET", "error", Some(5000.0)));
    }

    #[test]
    fn interfaces() {
        use crate::command_log::LogLine;
        let line = |iface: Option<&str>| LogLine {
            command: Some("GET".into()),
            status: "ok".into(),
            capture: crate::conn::CaptureInfo::on(iface),
            ..LogLine::default()
        };
        let lo = f(&[], None, false).with_ifaces(&["lo".into(), "eth1".into()]);
        assert!(lo.is_active());
        assert!(lo.matches_line(&line(Some("lo"))));
        assert!(lo.matches_line(&line(Some("eth1"))));
        assert!(!lo.matches_line(&line(Some("eth0"))));
        assert!(!lo.matches_line(&line(None)));
        assert!(f(&[], None, false).matches_line(&line(None)));
        let get_on_lo = f(&["get"], None, false).with_ifaces(&["lo".into()]);
        assert!(get_on_lo.matches_line(&line(Some("lo"))));
        assert!(!get_on_lo.matches_line(&LogLine {
            command: Some("SET".into()),
            ..line(Some("lo"))
        }));
    }

    #[test]
    fn identity() {
        use crate::command_log::LogLine;
        let line = |name: Option<&str>, lib: Option<&str>, user: Option<&str>| LogLine {
            command: Some("GET".into()),
            status: "ok".into(),
            client_name: name.map(Into::into),
            client_lib: lib.map(Into::into),
            user: user.map(Into::into),
            ..LogLine::default()
        };
        let by = |c: &str| f(&[], None, false).with_identity(Some(c.into()), None, None);
        let orders = by("orders-api");
        assert!(orders.is_active());
        assert!(orders.matches_line(&line(Some("orders-api"), Some("redis-py 5.0.8"), None)));
        assert!(!orders.matches_line(&line(Some("billing"), None, None)));
        assert!(!orders.matches_line(&line(None, None, None)));
        // No name: the library's name stands in; a name wins over the library.
        assert!(by("redis-py").matches_line(&line(None, Some("redis-py 5.0.8"), None)));
        assert!(!by("redis-py").matches_line(&line(Some("x"), Some("redis-py 5.0.8"), None)));
        let alice = f(&[], None, false).with_identity(None, Some("alice".into()), None);
        assert!(alice.matches_line(&line(None, None, Some("alice"))));
        assert!(!alice.matches_line(&line(None, None, Some("default"))));
        assert!(!alice.matches_line(&line(None, None, None)));
        // No process attribution yet: `--pid` matches nothing.
        let pid = f(&[], None, false).with_identity(None, None, Some(42));
        assert!(!pid.matches_line(&line(None, None, None)));
    }
}
