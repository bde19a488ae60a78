//! Where log lines go: stdout, a size-rotated file, or any writer; and the writer thread.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use prometheus::IntCounter;

/// How often the writer thread looks at the reopen flag when no lines come.
const REOPEN_POLL: Duration = Duration::from_millis(200);
/// Write errors are reported at most this often (each lost line is counted anyway).
const ERROR_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// A log destination.
pub enum Target {
    Stdout,
    File(RotatingFile),
    /// Anything else (tests, a pipe the caller opened). Not reopened on SIGHUP.
    Writer(Box<dyn Write + Send>),
}

impl Target {
    /// `-` for stdout, else a file path: appended to, created with mode 0600, rotated past
    /// `max_size` bytes (0 = never) keeping `keep` old files (`PATH.1` newest).
    pub fn open(dest: &str, max_size: u64, keep: u32) -> io::Result<Target> {
        if dest == "-" {
            Ok(Target::Stdout)
        } else {
            RotatingFile::open(dest, max_size, keep).map(Target::File)
        }
    }

    /// Writes whole lines.
    pub fn write_lines(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Target::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(data)?;
                out.flush()
            }
            Target::File(f) => f.write_lines(data),
            Target::Writer(w) => w.write_all(data),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Target::Stdout => io::stdout().lock().flush(),
            // Written with plain `write` calls: nothing buffered here.
            Target::File(_) => Ok(()),
            Target::Writer(w) => w.flush(),
        }
    }

    /// Reopens a file target at its path (after logrotate moved it away).
    pub fn reopen(&mut self) -> io::Result<()> {
        match self {
            Target::File(f) => f.reopen(),
            Target::Stdout | Target::Writer(_) => Ok(()),
        }
    }
}

/// A log file rotated by size: `PATH` → `PATH.1` → … → `PATH.keep` (the oldest is deleted).
/// Lines are never split across files; a single line longer than the limit gets a file of its
/// own.
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    keep: u32,
}

impl RotatingFile {
    pub fn open(path: impl AsRef<Path>, max_size: u64, keep: u32) -> io::Result<RotatingFile> {
        let path = path.as_ref().to_path_buf();
        let (file, size) = open_log(&path)?;
        Ok(RotatingFile {
            path,
            file,
            size,
            max_size,
            keep,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn reopen(&mut self) -> io::Result<()> {
        let (file, size) = open_log(&self.path)?;
        self.file = file;
        self.size = size;
        Ok(())
    }

    /// Writes `data` (whole lines), rotating between lines when the file would exceed
    /// `max_size`. If rotating fails the lines still go to the current file and the error is
    /// returned.
    pub fn write_lines(&mut self, mut data: &[u8]) -> io::Result<()> {
        let mut rotate_error = None;
        while !data.is_empty() {
            let room = self.max_size.saturating_sub(self.size);
            if self.max_size == 0 || rotate_error.is_some() || data.len() as u64 <= room {
                self.append(data)?;
                break;
            }
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            // Whole lines that fit; or, in an empty file, the first line however long.
            let fit = data
                .get(..room)
                .and_then(|d| d.iter().rposition(|&b| b == b'\n'))
                .map(|i| i + 1);
            let n = match fit {
                Some(n) => n,
                None if self.size == 0 => data
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(data.len(), |i| i + 1),
                None => 0,
            };
            let (now, later) = data.split_at(n);
            if !now.is_empty() {
                self.append(now)?;
            }
            data = later;
            if !data.is_empty() {
                if let Err(e) = self.rotate() {
                    rotate_error = Some(e);
                }
            }
        }
        rotate_error.map_or(Ok(()), Err)
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.size = self.size.saturating_add(data.len() as u64);
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            remove_if_exists(&self.path)?;
        } else {
            // Shift the run PATH.1..PATH.n that exists (n <= keep, so a huge --log-keep costs
            // nothing), dropping PATH.keep.
            let mut n = 0;
            while n < self.keep && numbered(&self.path, n + 1).exists() {
                n += 1;
            }
            for i in (1..=n).rev() {
                if i >= self.keep {
                    remove_if_exists(&numbered(&self.path, i))?;
                } else {
                    rename_if_exists(&numbered(&self.path, i), &numbered(&self.path, i + 1))?;
                }
            }
            rename_if_exists(&self.path, &numbered(&self.path, 1))?;
        }
        self.reopen()
    }
}

/// `PATH.i`
fn numbered(path: &Path, i: u32) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Opens for appending, creating it with mode 0600 (the log shows keys and values); an
/// existing file keeps the mode the operator gave it.
fn open_log(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// Asks the writer to reopen its file (for logrotate's `postrotate kill -HUP`). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Reopener(Arc<AtomicBool>);

impl Reopener {
    pub fn reopen(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub(super) fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }

    /// Registers a SIGHUP handler (call inside a tokio runtime) and returns the future that
    /// turns each SIGHUP into a reopen; spawn it. Registering first means no SIGHUP sent after
    /// this returns can kill the process.
    pub fn on_sighup(self) -> io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        Ok(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reopening the command log");
                self.reopen();
            }
        })
    }
}

/// Writes `data`, counting its lines as lost on error; reports errors at most every
/// [`ERROR_REPORT_INTERVAL`].
pub(super) struct ErrorReporter {
    pub lost: IntCounter,
    last: Option<Instant>,
    pub first: Option<io::Error>,
}

impl ErrorReporter {
    pub fn new(lost: IntCounter) -> Self {
        ErrorReporter {
            lost,
            last: None,
            first: None,
        }
    }

    pub fn write(&mut self, target: &mut Target, data: &[u8]) {
        if let Err(e) = target.write_lines(data) {
            let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
            self.lost.inc_by(lines);
            self.error(e);
        }
    }

    pub fn error(&mut self, e: io::Error) {
        let now = Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= ERROR_REPORT_INTERVAL)
        {
            tracing::warn!(error = %e, "command log: write failed (lines are counted in redis_observer_log_dropped_total)");
            self.last = Some(now);
        }
        if self.first.is_none() {
            self.first = Some(e);
        }
    }
}

/// The writer thread: writes each batch it receives, hands emptied buffers back, reopens when
/// asked, and returns the first error when the producer hangs up.
pub(super) fn writer_loop(
    rx: Receiver<Vec<u8>>,
    spare_tx: SyncSender<Vec<u8>>,
    mut target: Target,
    reopen: Reopener,
    lost: IntCounter,
    max_spare_capacity: usize,
) -> io::Result<()> {
    let mut errors = ErrorReporter::new(lost);
    loop {
        let msg = rx.recv_timeout(REOPEN_POLL);
        if reopen.take() {
            if let Err(e) = target.reopen() {
                errors.error(e);
            }
        }
        match msg {
            Ok(mut batch) => {
                errors.write(&mut target, &batch);
                batch.clear();
                if batch.capacity() <= max_spare_capacity {
                    let _ = spare_tx.try_send(batch);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Err(e) = target.flush() {
        errors.error(e);
    }
    errors.first.map_or(Ok(()), Err)
}
