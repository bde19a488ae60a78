//! `GET /metrics` and `GET /healthz` over HTTP/1.1 (hyper 1), on tokio.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

/// Connections served at once. At the limit, the least recently active connection is closed to
/// make room (a scraper that sent its request is the most recently active); if every connection
/// is mid-request, new ones wait in the kernel's accept queue rather than being refused.
const MAX_CONNECTIONS: usize = 32;
/// A connection without a request for this long may be closed to make room: a probe or scraper
/// sends its request at once, so only a connection this quiet is taken for idle.
const IDLE_MIN: Duration = Duration::from_millis(250);
/// Time for a client to send its request headers (a probe or scraper sends them at once).
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest life of one connection (keep-alive included).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// The open connections, for evicting the least recently active one at the limit.
#[derive(Default)]
struct Conns {
    next: u64,
    open: HashMap<u64, Arc<Conn>>,
}

struct Conn {
    /// Milliseconds since `epoch` of the last request (or of the accept).
    active_ms: AtomicU64,
    /// Told to close (evicted).
    close: Notify,
}

impl Conns {
    fn add(&mut self, now_ms: u64) -> (u64, Arc<Conn>) {
        let id = self.next;
        self.next += 1;
        let c = Arc::new(Conn {
            active_ms: AtomicU64::new(now_ms),
            close: Notify::new(),
        });
        self.open.insert(id, Arc::clone(&c));
        (id, c)
    }

    /// Closes the least recently active connection if it has been quiet since `before_ms`;
    /// false if there is none.
    fn evict_idlest(&mut self, before_ms: u64) -> bool {
        let idlest = self
            .open
            .iter()
            .map(|(id, c)| (c.active_ms.load(Ordering::Relaxed), *id))
            .filter(|&(ms, _)| ms <= before_ms)
            .min()
            .map(|(_, id)| id);
        match idlest.and_then(|id| self.open.remove(&id)) {
            Some(c) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `/metrics` (the registry, Prometheus text format) and `/healthz` (200 `ok` while
/// `health` is true, 503 otherwise) on `listener` until `shutdown` completes. Bind the listener
/// first (`TcpListener::bind(addr).await`) so a bad `--metrics-addr` fails before the capture
/// starts. Requests in flight at shutdown are abandoned.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    health: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let conns = Arc::new(Mutex::new(Conns::default()));
    let epoch = Instant::now();
    let now_ms = move || millis(epoch.elapsed());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and the like: do not spin.
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Full: close the idlest connection quiet for IDLE_MIN, then take its slot (or
                // any other that frees first) while further clients wait in the accept queue.
                // Retried as connections age, so busy ones are never cut short.
                let mut acquire = std::pin::pin!(Arc::clone(&slots).acquire_owned());
                loop {
                    let quiet = now_ms().saturating_sub(millis(IDLE_MIN));
                    lock(&conns).evict_idlest(quiet);
                    tokio::select! {
                        () = &mut shutdown => return,
                        p = &mut acquire => match p {
                            Ok(p) => break p,
                            Err(_) => return, // closed: never happens, the semaphore lives here
                        },
                        () = tokio::time::sleep(IDLE_MIN / 5) => {}
                    }
                }
            }
        };
        let (id, conn) = lock(&conns).add(now_ms());
        let registry = registry.clone();
        let health = Arc::clone(&health);
        let conns = Arc::clone(&conns);
        tokio::spawn(async move {
            let active = Arc::clone(&conn);
            let svc = service_fn(move |req: Request<Incoming>| {
                active.active_ms.store(now_ms(), Ordering::Relaxed);
                let resp = respond(&req, &registry, &health);
                async move { Ok::<_, Infallible>(resp) }
            });
            let serve = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_LIFETIME, serve) => {}
                () = conn.close.notified() => {}
            }
            lock(&conns).open.remove(&id);
            drop(permit);
        });
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The table is only touched at accept and close; a panic elsewhere cannot leave it half-updated.
fn lock(c: &Mutex<Conns>) -> std::sync::MutexGuard<'_, Conns> {
    c.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn respond<B>(req: &Request<B>, registry: &Registry, health: &AtomicBool) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = matches!(path, "/metrics" | "/healthz");
    if !known {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if path == "/healthz" {
        return if health.load(Ordering::Relaxed) {
            plain(StatusCode::OK, "ok\n")
        } else {
            plain(StatusCode::SERVICE_UNAVAILABLE, "not attached\n")
        };
    }
    let body = super::encode_registry(registry);
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(prometheus::TEXT_FORMAT),
    );
    r
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
