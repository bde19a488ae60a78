//! Small helpers shared by `bench` and `demo`: child processes stopped on drop, a free port,
//! a plain HTTP GET.

use std::{
    io::Read as _,
    net::TcpListener,
    process::Child,
    thread::sleep,
    time::{Duration, Instant},
};

/// A child process stopped when dropped: SIGTERM (so the observer detaches and flushes), then
/// SIGKILL after 10 s.
pub struct Kill(pub Child);
impl Drop for Kill {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::Write as _;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut b = String::new();
    s.read_to_string(&mut b).ok()?;
    b.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// Polls `ready` every 50 ms for up to `secs` seconds; the error names `what`.
pub fn wait_for(what: &str, secs: u64, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ready() {
        if Instant::now() > deadline {
            anyhow::bail!("{what}");
        }
        sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A throwaway redis-server on 127.0.0.1:`port` (no persistence), optionally also on a unix
/// socket, returned once it accepts connections.
pub fn start_redis(port: u16, unixsocket: Option<&std::path::Path>) -> anyhow::Result<Kill> {
    use anyhow::Context as _;
    let mut c = std::process::Command::new("redis-server");
    c.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    if let Some(s) = unixsocket {
        c.arg("--unixsocket").arg(s);
    }
    let redis = Kill(
        c.stdout(std::process::Stdio::null())
            .spawn()
            .context("starting redis-server (run `cargo xtask setup`)")?,
    );
    wait_for(
        &format!("redis-server did not start on port {port}"),
        10,
        || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && unixsocket.is_none_or(|s| s.exists())
        },
    )?;
    Ok(redis)
}

/// Waits until the observer's `/healthz` on `addr` answers `ok`.
pub fn wait_healthy(addr: &str, secs: u64) -> anyhow::Result<()> {
    wait_for("the observer did not come up (is this root?)", secs, || {
        http_get(addr, "/healthz").is_some_and(|b| b.starts_with("ok"))
    })
}
