//! `GET /top` on its own listener (`--top-addr`), never the metrics port: keys are data.
//!
//! The pipeline's thread owns the tables; a request is passed to it through a small bounded
//! channel and answered at its next flush (every drain tick, a few ms), so nothing is locked
//! per command and nothing is computed unless someone asks. One question is answered at a
//! time per slot; when the channel is full the client gets 503. The connection limits are the
//! metrics endpoint's.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{Answer, By, Query, What, Window};

/// A question for the pipeline and where its answer goes.
pub type TopRequest = (Query, oneshot::Sender<Answer>);

/// Questions waiting for the pipeline at once; more get 503.
pub const QUEUE: usize = 4;
const MAX_CONNECTIONS: usize = 16;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// How long a question may wait for the pipeline.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_N: usize = 10;

/// The channel between the endpoint and the pipeline's analytics.
#[must_use]
pub fn channel() -> (mpsc::Sender<TopRequest>, mpsc::Receiver<TopRequest>) {
    mpsc::channel(QUEUE)
}

/// Serves `/top` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    questions: mpsc::Sender<TopRequest>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "top endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let questions = questions.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let questions = questions.clone();
                async move { Ok::<_, Infallible>(respond(&req, &questions).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            drop(permit);
        });
    }
}

async fn respond<B>(
    req: &Request<B>,
    questions: &mpsc::Sender<TopRequest>,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/top" {
        return plain(StatusCode::NOT_FOUND, "not found\n".into());
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        );
    }
    let q = match parse_query(req.uri().query().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let (tx, rx) = oneshot::channel();
    if questions.try_send((q, tx)).is_err() {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "busy, try again\n".into());
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
        Ok(Ok(answer)) => match serde_json::to_vec(&answer) {
            Ok(body) => {
                let mut r = Response::new(Full::new(Bytes::from(body)));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            Err(_) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding failed\n".into(),
            ),
        },
        _ => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "no answer from the pipeline\n".into(),
        ),
    }
}

/// `server`, `what`, `by`, `window`, `n`; defaults: every server, keys, calls, 60s, 10.
pub fn parse_query(qs: &str) -> Result<Query, String> {
    let mut q = Query {
        server: None,
        what: What::Keys,
        by: By::Calls,
        window: Window::Last60s,
        n: DEFAULT_N,
    };
    for pair in qs.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or("bad percent-encoding")?;
        match k {
            "server" => {
                q.server = Some(
                    v.parse::<SocketAddr>()
                        .map_err(|_| "server: expected ip:port")?,
                );
            }
            "what" => {
                q.what =
                    What::parse(&v).ok_or("what: keys, patterns, bigkeys, clients or commands")?;
            }
            "by" => q.by = By::parse(&v).ok_or("by: calls, bytes or latency")?,
            "window" => q.window = Window::parse(&v).ok_or("window: 60s or all")?,
            "n" => {
                q.n = v
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n <= super::MAX_N)
                    .ok_or("n: a number up to 1000")?;
            }
            _ => {
                return Err(format!(
                    "unknown parameter {:?}",
                    k.chars().take(32).collect::<String>()
                ));
            }
        }
    }
    Ok(q)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let q =
            parse_query("server=127.0.0.1%3A6379&what=patterns&by=latency&window=all&n=5").unwrap();
        assert_eq!(q.server, Some("127.0.0.1:6379".parse().unwrap()));
        assert_eq!(
            (q.what, q.by, q.window, q.n),
            (What::Patterns, By::Latency, Window::All, 5)
        );
        let d = parse_query("").unwrap();
        assert_eq!(
            (d.what, d.by, d.window, d.n),
            (What::Keys, By::Calls, Window::Last60s, 10)
        );
        for bad in [
            "what=x",
            "n=100000",
            "server=nope",
            "foo=1",
            "by=%zz",
            "window=1h",
        ] {
            assert!(parse_query(bad).is_err(), "{bad}");
        }
    }
}
