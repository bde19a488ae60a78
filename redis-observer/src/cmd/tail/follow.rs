//! Reading the log: a file or stdin to its end, or following a file as it grows and across
//! rotation (renamed away and recreated, or truncated in place).
//!
//! Following polls (every 200 ms): it works on every filesystem, needs no extra dependency, and
//! a command log is read by people, for whom 200 ms is instant.

use std::{
    fs::File,
    io::{self, Read as _, Seek as _, SeekFrom},
    os::unix::fs::{FileExt as _, MetadataExt as _},
    path::Path,
    time::{Duration, Instant},
};

/// How often a followed file is checked for new data and rotation.
pub const POLL: Duration = Duration::from_millis(200);
/// How long a rotated-away file is still read: the writer may append a last few lines to it
/// before it reopens the path (logrotate's `postrotate` HUP).
pub const GRACE: Duration = Duration::from_secs(2);
/// Longer lines are cut here (the rest up to the newline is skipped): the log's own lines are
/// bounded far below this, so only foreign data hits it, and memory stays bounded.
pub const MAX_LINE: usize = 1 << 20;
const READ_CHUNK: usize = 64 << 10;
/// How far back from the end `-f` looks for its first lines.
const BACKLOG_SCAN: u64 = 4 << 20;

/// Where lines go.
pub trait LineSink {
    /// One line, without its `\n`.
    fn line(&mut self, line: &[u8]) -> io::Result<()>;
    /// No more input for the moment: a good time to flush.
    fn idle(&mut self) -> io::Result<()>;
    /// Something about the input the user should know (rotation, truncation): for stderr.
    fn note(&mut self, msg: &str);
}

/// Cuts a byte stream into lines, keeping at most one partial line.
#[derive(Debug)]
pub struct Splitter {
    buf: Vec<u8>,
    max_line: usize,
    /// Skipping the rest of an over-long line.
    discarding: bool,
}

impl Default for Splitter {
    fn default() -> Self {
        Self::new(MAX_LINE)
    }
}

impl Splitter {
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_line: max_line.max(1),
            discarding: false,
        }
    }

    pub fn push(&mut self, mut data: &[u8], sink: &mut dyn LineSink) -> io::Result<()> {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let (head, rest) = data.split_at(nl);
            data = rest.get(1..).unwrap_or_default();
            if self.discarding {
                self.discarding = false;
            } else if self.buf.is_empty() && head.len() <= self.max_line {
                // The common case: a whole line inside one read, no copy.
                sink.line(head)?;
            } else {
                self.take(head);
                sink.line(&self.buf)?;
                self.buf.clear();
            }
        }
        if !self.discarding {
            self.take(data);
            if self.buf.len() >= self.max_line {
                sink.line(&self.buf)?;
                self.buf.clear();
                self.discarding = true;
            }
        }
        Ok(())
    }

    /// End of this input: a last line without `\n` is still a line.
    pub fn finish(&mut self, sink: &mut dyn LineSink) -> io::Result<()> {
        self.discarding = false;
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = sink.line(&self.buf);
        self.buf.clear();
        r
    }

    /// Appends what fits under `max_line`.
    fn take(&mut self, data: &[u8]) {
        let room = self.max_line.saturating_sub(self.buf.len());
        self.buf
            .extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
    }
}

fn ctx(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))
}

/// Reads `file` to its end (for a pipe or terminal: until the writer closes it), checking
/// `stop` at least every [`POLL`].
pub fn read_to_end(
    file: &mut File,
    label: &Path,
    stop: &dyn Fn() -> bool,
    sink: &mut dyn LineSink,
) -> io::Result<()> {
    // Regular files never block; anything else is polled so a signal is noticed promptly and
    // lines show as they arrive.
    let stream = !file
        .metadata()
        .map_err(|e| ctx(label, e))?
        .file_type()
        .is_file();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut split = Splitter::default();
    loop {
        if stop() {
            return sink.idle();
        }
        if stream {
            match wait_readable(file, POLL) {
                Ok(true) => {}
                Ok(false) => {
                    sink.idle()?;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ctx(label, e)),
            }
        }
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ctx(label, e)),
        };
        split.push(buf.get(..n).unwrap_or_default(), sink)?;
        if stream {
            sink.idle()?;
        }
    }
    split.finish(sink)?;
    sink.idle()
}

fn wait_readable(file: &File, timeout: Duration) -> io::Result<bool> {
    use std::os::fd::AsRawFd as _;
    let mut pfd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, count 1; the fd stays open for the call (borrowed from `file`).
    let r = unsafe { libc::poll(&raw mut pfd, 1, ms) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // POLLHUP/POLLERR also mean "read now": the read returns the end or the error.
    Ok(r > 0)
}

/// What `-f` follows.
#[derive(Debug, Clone)]
pub struct Follow<'a> {
    pub path: &'a Path,
    /// Lines already in the file shown first (as tail(1) does, 10).
    pub backlog: usize,
    pub poll: Duration,
    pub grace: Duration,
}

/// One open generation of the followed file.
struct Tracked {
    file: File,
    /// (device, inode): a different one at the path means the file was rotated.
    id: (u64, u64),
    /// Bytes read so far; the file's size dropping below it means it was truncated.
    pos: u64,
    split: Splitter,
}

impl Tracked {
    fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let m = file.metadata()?;
        Ok(Self {
            file,
            id: (m.dev(), m.ino()),
            pos: 0,
            split: Splitter::default(),
        })
    }

    /// Reads everything there is now.
    fn drain(
        &mut self,
        path: &Path,
        buf: &mut [u8],
        stop: &dyn Fn() -> bool,
        sink: &mut dyn LineSink,
    ) -> io::Result<()> {
        while !stop() {
            let n = match self.file.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ctx(path, e)),
            };
            self.pos = self.pos.saturating_add(n as u64);
            self.split.push(buf.get(..n).unwrap_or_default(), sink)?;
        }
        Ok(())
    }
}

/// Follows `cfg.path` until `stop` says so: shows the last `cfg.backlog` lines, then every line
/// appended; when the path is renamed away and recreated, finishes the old file (and keeps
/// reading it for `cfg.grace`) and continues with the new one from its start; when the file
/// shrinks, continues from its start. A path that does not exist yet is waited for.
pub fn follow(
    cfg: &Follow<'_>,
    stop: &dyn Fn() -> bool,
    sink: &mut dyn LineSink,
) -> io::Result<()> {
    let path = cfg.path;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut cur = match Tracked::open(path) {
        Ok(mut t) => {
            let len = t.file.metadata().map_err(|e| ctx(path, e))?.len();
            let start = backlog_start(&t.file, len, cfg.backlog).map_err(|e| ctx(path, e))?;
            t.file
                .seek(SeekFrom::Start(start))
                .map_err(|e| ctx(path, e))?;
            t.pos = start;
            Some(t)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            sink.note(&format!(
                "{} does not exist yet; waiting for it",
                path.display()
            ));
            None
        }
        Err(e) => return Err(ctx(path, e)),
    };
    let mut old: Option<(Tracked, Instant)> = None;
    while !stop() {
        if let Some((o, until)) = &mut old {
            o.drain(path, &mut buf, stop, sink)?;
            if Instant::now() >= *until {
                o.split.finish(sink)?;
                old = None;
            }
        }
        if let Some(c) = &mut cur {
            c.drain(path, &mut buf, stop, sink)?;
            let len = c.file.metadata().map_err(|e| ctx(path, e))?.len();
            if len < c.pos {
                sink.note(&format!("{}: file truncated", path.display()));
                c.split.finish(sink)?;
                c.file.seek(SeekFrom::Start(0)).map_err(|e| ctx(path, e))?;
                c.pos = 0;
                continue;
            }
        }
        // Renamed away and not recreated yet: keep reading the old file, look again later.
        let replaced = std::fs::metadata(path)
            .is_ok_and(|m| cur.as_ref().map(|c| c.id) != Some((m.dev(), m.ino())));
        if replaced {
            match Tracked::open(path) {
                Ok(new) => {
                    if let Some(prev) = cur.take() {
                        if let Some((mut o, _)) = old.take() {
                            o.split.finish(sink)?;
                        }
                        old = Some((prev, Instant::now() + cfg.grace));
                        sink.note(&format!(
                            "{} was replaced; following the new file",
                            path.display()
                        ));
                    } else {
                        sink.note(&format!("{} appeared; following it", path.display()));
                    }
                    cur = Some(new);
                    continue;
                }
                // Gone again between the two calls: look next time.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ctx(path, e)),
            }
        }
        sink.idle()?;
        std::thread::sleep(cfg.poll);
    }
    // A partial last line is left out: it may be half written.
    sink.idle()
}

/// Offset where the last `lines` lines of the file begin (looking back at most
/// [`BACKLOG_SCAN`] bytes).
fn backlog_start(file: &File, len: u64, lines: usize) -> io::Result<u64> {
    if lines == 0 || len == 0 {
        return Ok(len);
    }
    let floor = len.saturating_sub(BACKLOG_SCAN);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut end = len;
    let mut seen = 0usize;
    let mut earliest = None;
    while end > floor {
        let start = end.saturating_sub(READ_CHUNK as u64).max(floor);
        let chunk = buf
            .get_mut(..usize::try_from(end - start).unwrap_or(READ_CHUNK))
            .unwrap_or_default();
        file.read_exact_at(chunk, start)?;
        for (i, &b) in chunk.iter().enumerate().rev() {
            let at = start + i as u64;
            // The file's final newline ends the last line; it does not start one.
            if b != b'\n' || at + 1 == len {
                continue;
            }
            seen += 1;
            earliest = Some(at);
            if seen == lines {
                return Ok(at + 1);
            }
        }
        end = start;
    }
    Ok(if floor == 0 {
        0
    } else {
        // Only whole lines: from the first newline found, or nothing if the tail is one huge line.
        earliest.map_or(len, |at| at + 1)
    })
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write as _,
        path::PathBuf,
        sync::{
            Arc, Mutex,
            atomic::{AtomicBool, Ordering},
        },
    };

    use super::*;

    #[derive(Default, Clone)]
    struct Collect {
        lines: Arc<Mutex<Vec<String>>>,
        notes: Arc<Mutex<Vec<String>>>,
    }

    impl LineSink for Collect {
        fn line(&mut self, line: &[u8]) -> io::Result<()> {
            self.lines
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(line).into_owned());
            Ok(())
        }
        fn idle(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn note(&mut self, msg: &str) {
            self.notes.lock().unwrap().push(msg.to_owned());
        }
    }

    impl Collect {
        fn lines(&self) -> Vec<String> {
            self.lines.lock().unwrap().clone()
        }
        fn wait_for(&self, n: usize) -> Vec<String> {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let got = self.lines();
                if got.len() >= n || Instant::now() > deadline {
                    return got;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("redis-observer-tail-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn splitter_lines_partials_and_limits() {
        let mut c = Collect::default();
        let mut s = Splitter::new(8);
        s.push(b"ab\ncd", &mut c).unwrap();
        s.push(b"ef\n\n", &mut c).unwrap();
        s.push(b"0123456789abc\nok\nlast", &mut c).unwrap();
        s.push(b"xyz0123456789", &mut c).unwrap();
        s.push(b"more\nend", &mut c).unwrap();
        s.finish(&mut c).unwrap();
        s.finish(&mut c).unwrap();
        assert_eq!(
            c.lines(),
            ["ab", "cdef", "", "01234567", "ok", "lastxyz0", "end"]
        );
    }

    #[test]
    fn backlog_is_last_lines() {
        let dir = temp_dir("backlog");
        let p = dir.join("log");
        let text: String = (0..30).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, &text).unwrap();
        let f = File::open(&p).unwrap();
        let len = text.len() as u64;
        let start = backlog_start(&f, len, 10).unwrap();
        assert!(text[start as usize..].starts_with("line 20\n"));
        assert_eq!(backlog_start(&f, len, 0).unwrap(), len);
        assert_eq!(backlog_start(&f, len, 100).unwrap(), 0);
        // Without a final newline the partial last line counts as one.
        let start = backlog_start(&f, len - 1, 1).unwrap();
        assert!(text[start as usize..].starts_with("line 29"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Lines written (through a rename rotation, lines appended to the old file after the
    /// rename, a truncation, partial writes) = lines seen, in order.
    #[test]
    fn follows_rename_rotation_and_truncation() {
        let dir = temp_dir("follow");
        let path = dir.join("commands.log");
        let rotated = dir.join("commands.log.1");
        std::fs::write(&path, "").unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let sink = Collect::default();
        let follower = {
            let (stop, mut sink, path) = (stop.clone(), sink.clone(), path.clone());
            std::thread::spawn(move || {
                let cfg = Follow {
                    path: &path,
                    backlog: 10,
                    poll: Duration::from_millis(20),
                    grace: Duration::from_millis(500),
                };
                follow(&cfg, &|| stop.load(Ordering::Relaxed), &mut sink)
            })
        };
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
                .unwrap()
        };
        let mut expected = Vec::new();
        let mut write = |f: &mut File, line: String| {
            // Half a line, then the rest: the follower must not show the half.
            let (a, b) = line.split_at(line.len() / 2);
            f.write_all(a.as_bytes()).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(1));
            f.write_all(format!("{b}\n").as_bytes()).unwrap();
            expected.push(line);
        };

        let mut w = open(&path);
        for i in 0..40 {
            write(&mut w, format!("first file line {i}"));
        }
        assert_eq!(sink.wait_for(40).len(), 40);
        std::fs::rename(&path, &rotated).unwrap();
        // The writer has not reopened yet: its last lines still go to the renamed file.
        for i in 0..3 {
            write(&mut w, format!("late line {i}"));
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut w = open(&path);
        for i in 0..40 {
            write(&mut w, format!("second file line {i}"));
        }
        assert_eq!(sink.wait_for(83).len(), 83);
        // Truncated in place (copytruncate); the writer appends from offset 0.
        w.set_len(0).unwrap();
        for i in 0..10 {
            write(&mut w, format!("after truncation {i}"));
        }
        let got = sink.wait_for(expected.len());
        stop.store(true, Ordering::Relaxed);
        follower.join().unwrap().unwrap();
        assert_eq!(got, expected);
        assert_eq!(sink.lines(), expected);
        let notes = sink.notes.lock().unwrap().clone();
        assert!(notes.iter().any(|n| n.contains("replaced")), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("truncated")), "{notes:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn follow_starts_with_backlog_and_waits_for_missing_file() {
        let dir = temp_dir("backlog-follow");
        let path = dir.join("later.log");
        let stop = Arc::new(AtomicBool::new(false));
        let sink = Collect::default();
        let follower = {
            let (stop, mut sink, path) = (stop.clone(), sink.clone(), path.clone());
            std::thread::spawn(move || {
                let cfg = Follow {
                    path: &path,
                    backlog: 2,
                    poll: Duration::from_millis(20),
                    grace: Duration::from_millis(100),
                };
                follow(&cfg, &|| stop.load(Ordering::Relaxed), &mut sink)
            })
        };
        std::thread::sleep(Duration::from_millis(60));
        // Created with content already in it: all of it is new, none is backlog.
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(sink.wait_for(3), ["a", "b", "c"]);
        stop.store(true, Ordering::Relaxed);
        follower.join().unwrap().unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let sink = Collect::default();
        let follower = {
            let (stop, mut sink, path) = (stop.clone(), sink.clone(), path.clone());
            std::thread::spawn(move || {
                let cfg = Follow {
                    path: &path,
                    backlog: 2,
                    poll: Duration::from_millis(20),
                    grace: Duration::from_millis(100),
                };
                follow(&cfg, &|| stop.load(Ordering::Relaxed), &mut sink)
            })
        };
        assert_eq!(sink.wait_for(2), ["b", "c"]);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"d\n")
            .unwrap();
        assert_eq!(sink.wait_for(3), ["b", "c", "d"]);
        stop.store(true, Ordering::Relaxed);
        follower.join().unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn read_to_end_of_file_and_pipe() {
        let dir = temp_dir("read");
        let p = dir.join("log");
        std::fs::write(&p, "one\ntwo\nno newline").unwrap();
        let mut sink = Collect::default();
        read_to_end(&mut File::open(&p).unwrap(), &p, &|| false, &mut sink).unwrap();
        assert_eq!(sink.lines(), ["one", "two", "no newline"]);

        let mut fds = [0; 2];
        // SAFETY: a valid two-int array for pipe(2).
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both fds were just created and are owned by nothing else.
        let (r, mut w) = unsafe {
            use std::os::fd::FromRawFd as _;
            (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1]))
        };
        let writer = std::thread::spawn(move || {
            w.write_all(b"x\n").unwrap();
            std::thread::sleep(Duration::from_millis(250));
            w.write_all(b"y\n").unwrap();
        });
        let mut sink = Collect::default();
        let mut r = r;
        read_to_end(&mut r, Path::new("pipe"), &|| false, &mut sink).unwrap();
        writer.join().unwrap();
        assert_eq!(sink.lines(), ["x", "y"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
