//! The only module that talks to the kernel: loads the eBPF object, attaches it (TC or socket
//! filter), drains the ring buffer, reads the kernel's counters, and detaches on drop.

pub mod event;
mod iface;
#[cfg(test)]
mod parity_tests;
mod ring;

use std::{
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, Map, MapData, PerCpuArray},
    programs::{
        SchedClassifier, SocketFilter, TcAttachType, TracePoint,
        tc::{self, SchedClassifierLinkId},
    },
};
use redis_ebpf_common::{
    Counters, MAX_CAPTURE_BYTES, iface as iface_bits, names, setting, sock_state,
};
use tokio::io::unix::AsyncFd;

pub use event::{Clock, EventError, parse_record, to_segment};
pub use iface::Iface;
use ring::Ring;

/// The kernel object, built by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/redis-ebpf"));

/// How the program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// TC classifier (TCX links on kernels >= 6.6, clsact + tc filter before).
    Tc,
    /// Socket filter on an AF_PACKET socket per interface.
    Socket,
}

#[derive(Clone, Debug)]
pub struct CaptureConfig {
    pub ifaces: Vec<String>,
    pub ports: Vec<u16>,
    pub mode: AttachMode,
    pub capture_bytes: u32,
    /// Ring buffer size (power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Unread bytes in the ring past which the kernel wakes the reader.
    pub wakeup_bytes: u64,
    pub debug: bool,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            ifaces: vec!["lo".into()],
            ports: vec![6379],
            mode: AttachMode::Tc,
            capture_bytes: 65536,
            ring_bytes: 16 << 20,
            wakeup_bytes: 2 << 20,
            debug: false,
        }
    }
}

enum Attachment {
    Tc {
        iface: String,
        link: SchedClassifierLinkId,
    },
    Socket {
        iface: String,
        fd: OwnedFd,
    },
}

/// A loaded and attached capture. Dropping it detaches everything it attached.
pub struct Capture {
    ebpf: Ebpf,
    /// Registered with tokio on the first `drain` (the capture is started before the runtime, so
    /// that privileges can be dropped while the process has a single thread).
    ring: Option<Ring>,
    async_ring: Option<AsyncFd<Ring>>,
    counters: PerCpuArray<MapData, Counters>,
    attachments: Vec<Attachment>,
    /// Interfaces on which we added the clsact qdisc (pre-TCX kernels only).
    created_clsact: Vec<String>,
    clock: Clock,
    /// Kernel-side diagnostics (`--debug` only), flushed on every drain.
    logger: Option<aya_log::EbpfLogger<LogToTracing>>,
    /// The interfaces it is attached to.
    ifaces: Vec<Iface>,
    /// The process-attribution tracepoint is attached.
    sock_state: bool,
    pub config: CaptureConfig,
}

/// Forwards aya-log records from the kernel program to the daemon's own log.
pub struct LogToTracing;

impl log::Log for LogToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        tracing::warn!(kernel = true, "{}", record.args());
    }
    fn flush(&self) {}
}

impl Capture {
    /// Loads the program and attaches it to every configured interface.
    pub fn start(config: CaptureConfig) -> anyhow::Result<Self> {
        if config.ports.is_empty() {
            bail!("no port to watch");
        }
        if config.capture_bytes > MAX_CAPTURE_BYTES {
            bail!(
                "--capture-bytes {} exceeds the maximum {MAX_CAPTURE_BYTES}",
                config.capture_bytes
            );
        }
        if !config.ring_bytes.is_power_of_two() || config.ring_bytes < 4096 {
            bail!(
                "ring size {} must be a power of two of at least 4096",
                config.ring_bytes
            );
        }
        let ifaces: Vec<Iface> = config
            .ifaces
            .iter()
            .map(|name| Iface::lookup(name))
            .collect::<anyhow::Result<_>>()?;
        raise_memlock();
        // The kernel wakes the reader once this much is unread. It must stay well below the
        // ring's size: with the default 2 MiB and `--ring-bytes` of 2 MiB or less, the ring was
        // full before the threshold was ever crossed, so the kernel never woke the reader, which
        // then drained only on its 2 ms timer (a 64 KiB ring under load lost ~97% of its events).
        let wakeup_bytes = config.wakeup_bytes.min(u64::from(config.ring_bytes) / 4);

        let mut ebpf = EbpfLoader::new()
            .override_global(names::CAPTURE_BYTES, &config.capture_bytes, true)
            .override_global(names::WAKEUP_BYTES, &wakeup_bytes, true)
            .map_max_entries(names::EVENTS, config.ring_bytes)
            .load(EBPF_OBJECT)
            .context("loading the eBPF program (are you root, or have CAP_BPF+CAP_NET_ADMIN?)")?;

        {
            let mut ports: Array<_, u8> = Array::try_from(
                ebpf.map_mut(names::PORTS)
                    .ok_or_else(|| anyhow!("no {} map", names::PORTS))?,
            )?;
            for &p in &config.ports {
                ports.set(u32::from(p), 1, 0)?;
            }
        }
        {
            // Indexed by ifindex: the `iface` bits of the common crate.
            let mut map: Array<_, u32> = Array::try_from(
                ebpf.map_mut(names::IFACES)
                    .ok_or_else(|| anyhow!("no {} map", names::IFACES))?,
            )?;
            for i in &ifaces {
                // Socket mode on loopback: each packet reaches a packet socket twice (sent and
                // received); keep the received copy only.
                let skip_out = config.mode == AttachMode::Socket && i.loopback;
                let v = u32::from(i.l2_len)
                    | if skip_out {
                        iface_bits::SKIP_OUTGOING
                    } else {
                        0
                    }
                    | iface_bits::CONFIGURED;
                if i.index < iface_bits::MAX_IFINDEX {
                    map.set(i.index, v, 0)?;
                } else if v != (14 | iface_bits::CONFIGURED) {
                    bail!(
                        "interface {} has ifindex {} (at most {} supported for non-Ethernet or loopback socket capture)",
                        i.name,
                        i.index,
                        iface_bits::MAX_IFINDEX
                    );
                }
            }
        }
        let logger = if config.debug {
            Some(
                aya_log::EbpfLogger::init_with_logger(&mut ebpf, LogToTracing)
                    .context("kernel log")?,
            )
        } else {
            None
        };
        if config.debug {
            let mut settings: Array<_, u32> = Array::try_from(
                ebpf.map_mut(names::SETTINGS)
                    .ok_or_else(|| anyhow!("no {} map", names::SETTINGS))?,
            )?;
            settings.set(setting::DEBUG, 1, 0)?;
        }

        let ring = match ebpf.take_map(names::EVENTS) {
            Some(Map::RingBuf(data)) => Ring::new(data, config.ring_bytes as usize)?,
            _ => bail!("no {} ring buffer map", names::EVENTS),
        };
        let counters = PerCpuArray::try_from(
            ebpf.take_map(names::COUNTERS)
                .ok_or_else(|| anyhow!("no {} map", names::COUNTERS))?,
        )?;

        let mut cap = Capture {
            ebpf,
            ring: Some(ring),
            async_ring: None,
            counters,
            attachments: Vec::new(),
            created_clsact: Vec::new(),
            clock: Clock::now(),
            logger,
            ifaces: ifaces.clone(),
            sock_state: false,
            config: config.clone(),
        };
        match config.mode {
            AttachMode::Tc => cap.attach_tc(&ifaces)?,
            AttachMode::Socket => cap.attach_socket(&ifaces)?,
        }
        // Attribution is an extra: without it, traffic is still observed (and every lookup is
        // counted as failed).
        match cap.attach_sock_state() {
            Ok(()) => cap.sock_state = true,
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "process attribution: the kernel hook is not attached; clients are attributed only from /proc at start"
            ),
        }
        Ok(cap)
    }

    /// Attaches the program on `sock:inet_sock_set_state`, once its record layout on this
    /// kernel is checked to be the one the program reads.
    fn attach_sock_state(&mut self) -> anyhow::Result<()> {
        let format = tracefs()?
            .join("events")
            .join(sock_state::CATEGORY)
            .join(sock_state::NAME)
            .join("format");
        let text = std::fs::read_to_string(&format)
            .with_context(|| format!("reading {}", format.display()))?;
        check_format(&text)?;
        let prog: &mut TracePoint = self
            .ebpf
            .program_mut(names::PROG_SOCK_STATE)
            .ok_or_else(|| anyhow!("no {} program", names::PROG_SOCK_STATE))?
            .try_into()?;
        prog.load().context("loading the tracepoint program")?;
        prog.attach(sock_state::CATEGORY, sock_state::NAME)
            .context("attaching to sock:inet_sock_set_state")?;
        Ok(())
    }

    /// The kernel's attribution maps (`None` when the hook is not attached). The link stays
    /// with the capture.
    pub fn take_attribution_maps(&mut self) -> Option<crate::attribution::KernelMaps> {
        if !self.sock_state {
            return None;
        }
        let mut take = |name: &str| self.ebpf.take_map(name);
        let (clients, listeners, accepted) = (
            take(names::CLIENTS)?,
            take(names::LISTENERS)?,
            take(names::ACCEPTED)?,
        );
        let maps = (|| -> Result<_, aya::maps::MapError> {
            Ok(crate::attribution::KernelMaps {
                clients: clients.try_into()?,
                listeners: listeners.try_into()?,
                accepted: accepted.try_into()?,
            })
        })();
        match maps {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, "process attribution: the kernel maps");
                None
            }
        }
    }

    fn attach_tc(&mut self, ifaces: &[Iface]) -> anyhow::Result<()> {
        let tcx = aya::util::KernelVersion::current()
            .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0));
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(names::PROG_TC)
            .ok_or_else(|| anyhow!("no {} program", names::PROG_TC))?
            .try_into()?;
        prog.load().context("loading the TC program")?;
        for i in ifaces {
            if !tcx {
                match tc::qdisc_add_clsact(&i.name) {
                    Ok(()) => self.created_clsact.push(i.name.clone()),
                    // Already there (another tool's, or a previous run's): share it, never remove it.
                    Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("adding clsact to {}", i.name));
                    }
                }
            }
            // On loopback every packet passes egress and then ingress: one hook sees both
            // directions of every connection, so attach ingress only.
            let dirs: &[TcAttachType] = if i.loopback {
                &[TcAttachType::Ingress]
            } else {
                &[TcAttachType::Ingress, TcAttachType::Egress]
            };
            for &dir in dirs {
                let link = prog
                    .attach(&i.name, dir)
                    .with_context(|| format!("attaching the TC program to {} {dir:?}", i.name))?;
                self.attachments.push(Attachment::Tc {
                    iface: i.name.clone(),
                    link,
                });
            }
        }
        Ok(())
    }

    fn attach_socket(&mut self, ifaces: &[Iface]) -> anyhow::Result<()> {
        let prog: &mut SocketFilter = self
            .ebpf
            .program_mut(names::PROG_SOCKET)
            .ok_or_else(|| anyhow!("no {} program", names::PROG_SOCKET))?
            .try_into()?;
        prog.load().context("loading the socket filter")?;
        for i in ifaces {
            // Protocol 0 first: the socket receives nothing until the filter is in place.
            // SAFETY: plain socket(2) call; the fd is owned right away.
            let raw = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    0,
                )
            };
            if raw < 0 {
                return Err(std::io::Error::last_os_error())
                    .context("creating an AF_PACKET socket");
            }
            // SAFETY: `raw` is a fresh fd nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            prog.attach(fd.as_fd())
                .with_context(|| format!("attaching the socket filter for {}", i.name))?;
            // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            sll.sll_ifindex = i.index as i32;
            // SAFETY: bind with a correctly sized sockaddr_ll we own.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("binding to {}", i.name));
            }
            self.attachments.push(Attachment::Socket {
                iface: i.name.clone(),
                fd,
            });
        }
        Ok(())
    }

    /// Waits until the kernel wakes us or `tick` passes, then hands every available record to
    /// `f`. Returns the number of records. Must run inside a tokio runtime.
    pub async fn drain(
        &mut self,
        tick: Duration,
        mut f: impl FnMut(&[u8]),
    ) -> anyhow::Result<usize> {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
        if let Some(ring) = self.ring.take() {
            // SAFETY: the ring owns its map fd and lives inside the AsyncFd, which deregisters
            // the fd before dropping it.
            let afd = unsafe { AsyncFd::register(ring) }
                .map_err(|e| anyhow!("registering the ring buffer with tokio: {e}"))?;
            self.async_ring = Some(afd);
        }
        let Some(afd) = self.async_ring.as_mut() else {
            return Ok(0);
        };
        let n = match tokio::time::timeout(tick, afd.readable_mut()).await {
            Ok(guard) => {
                let mut guard = guard.context("polling the ring buffer")?;
                let n = guard.get_inner_mut().drain(&mut f);
                guard.clear_ready();
                n
            }
            // Timer: wakeups are batched in the kernel, so drain on our own schedule.
            Err(_) => afd.get_mut().drain(&mut f),
        };
        Ok(n)
    }

    /// Drains whatever is in the ring right now, without waiting.
    pub fn drain_now(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let ring = match (self.ring.as_mut(), self.async_ring.as_mut()) {
            (Some(r), _) => r,
            (None, Some(a)) => a.get_mut(),
            (None, None) => return 0,
        };
        ring.drain(&mut f)
    }

    /// CAP_NET_ADMIN is still needed at exit to remove a clsact qdisc this capture added.
    pub fn needs_net_admin_at_exit(&self) -> bool {
        !self.created_clsact.is_empty()
    }

    /// The interfaces it is attached to (their kernel index names segments' `iface`).
    pub fn ifaces(&self) -> &[Iface] {
        &self.ifaces
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The kernel's counters, summed over CPUs.
    pub fn counters(&self) -> Counters {
        let mut sum = Counters::default();
        // One entry per CPU holding every counter.
        if let Ok(per_cpu) = self.counters.get(&0, 0) {
            for c in per_cpu.iter() {
                sum.add(c);
            }
        }
        sum
    }

    /// Detaches everything this capture attached and removes qdiscs it created.
    pub fn detach(&mut self) -> anyhow::Result<()> {
        let mut first_err = None;
        for a in self.attachments.drain(..) {
            match a {
                Attachment::Tc { iface, link } => {
                    let r = self
                        .ebpf
                        .program_mut(names::PROG_TC)
                        .and_then(|p| <&mut SchedClassifier>::try_from(p).ok())
                        .map(|p| p.detach(link));
                    if let Some(Err(e)) = r {
                        first_err.get_or_insert(anyhow!("detaching from {iface}: {e}"));
                    }
                }
                Attachment::Socket { iface, fd } => {
                    // Closing the socket is what detaches; an explicit detach first is a courtesy.
                    if let Err(e) = SocketFilter::detach(fd.as_fd()) {
                        tracing::debug!(%iface, error = %e, "socket filter detach");
                    }
                    drop(fd);
                }
            }
        }
        for iface in self.created_clsact.drain(..) {
            if let Err(e) = iface::remove_clsact(&iface) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}

/// Where tracefs is mounted; mounted at /sys/kernel/tracing when it is nowhere (aya looks for
/// tracepoint ids there).
fn tracefs() -> anyhow::Result<std::path::PathBuf> {
    for p in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if std::path::Path::new(p).join("events").is_dir() {
            return Ok(p.into());
        }
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: mount(2) with NUL-terminated strings we own and no data.
    let r = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("mounting tracefs");
    }
    Ok("/sys/kernel/tracing".into())
}

/// Checks a tracepoint format file against the offsets the kernel program reads.
fn check_format(text: &str) -> anyhow::Result<()> {
    for (name, offset, size) in sock_state::FIELDS {
        let line = text
            .lines()
            .find(|l| format_field_name(l) == Some(name))
            .ok_or_else(|| anyhow!("the tracepoint has no field {name}"))?;
        let want_off = format!("offset:{offset};");
        let want_size = format!("size:{size};");
        if !line.contains(&want_off) || !line.contains(&want_size) {
            bail!("the tracepoint's field {name} is not at offset {offset}, size {size}: {line}");
        }
    }
    Ok(())
}

/// `field:__u8 saddr_v6[16]; offset:40;…` → `saddr_v6`.
fn format_field_name(line: &str) -> Option<&str> {
    let decl = line.trim().strip_prefix("field:")?.split(';').next()?;
    let last = decl.rsplit([' ', '*']).next()?;
    Some(last.split('[').next().unwrap_or(last))
}

/// Older kernels charge BPF memory to RLIMIT_MEMLOCK.
fn raise_memlock() {
    let rl = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid rlimit struct.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rl) };
}

/// Loads both programs without attaching them (for `check`).
pub fn probe_load() -> anyhow::Result<()> {
    raise_memlock();
    let mut ebpf = EbpfLoader::new()
        .load(EBPF_OBJECT)
        .context("loading the eBPF object")?;
    let tc: &mut SchedClassifier = ebpf
        .program_mut(names::PROG_TC)
        .ok_or_else(|| anyhow!("no {} program", names::PROG_TC))?
        .try_into()?;
    tc.load().context("verifier rejected the TC program")?;
    let sf: &mut SocketFilter = ebpf
        .program_mut(names::PROG_SOCKET)
        .ok_or_else(|| anyhow!("no {} program", names::PROG_SOCKET))?
        .try_into()?;
    sf.load().context("verifier rejected the socket filter")?;
    let tp: &mut TracePoint = ebpf
        .program_mut(names::PROG_SOCK_STATE)
        .ok_or_else(|| anyhow!("no {} program", names::PROG_SOCK_STATE))?
        .try_into()?;
    tp.load()
        .context("verifier rejected the process-attribution tracepoint")?;
    Ok(())
}

/// Ports among `ports` on which something listens in this network namespace (from
/// /proc/net/tcp{,6}), so `run` can say when nothing does.
pub fn listening_ports(ports: &[u16]) -> Vec<u16> {
    let mut found = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for l in text.lines().skip(1) {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // local_address is ADDR:PORT in hex; state 0A is LISTEN.
            let (Some(local), Some(state)) = (cols.get(1), cols.get(3)) else {
                continue;
            };
            if *state != "0A" {
                continue;
            }
            let Some(port) = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
            else {
                continue;
            };
            if ports.contains(&port) && !found.contains(&port) {
                found.push(port);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    /// The format file of Linux 6.18 (the layout since 4.19).
    const FORMAT: &str = "name: inet_sock_set_state
ID: 2287
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;
";

    #[test]
    fn tracepoint_format() {
        super::check_format(FORMAT).unwrap();
        // Linux 4.16-4.18: no protocol field, addresses 2 bytes earlier.
        let old = FORMAT.replace(
            "\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;\n",
            "",
        );
        assert!(super::check_format(&old).is_err());
        let moved = FORMAT.replace("saddr[4];\toffset:32", "saddr[4];\toffset:30");
        assert!(super::check_format(&moved).is_err());
    }
}
