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
