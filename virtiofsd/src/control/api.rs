//! `--api-socket`: change the limits live and read statistics, over HTTP/1.1 + JSON on a Unix
//! socket (`curl --unix-socket PATH http://localhost/api/v1/ratelimit`), like Firecracker's and
//! Cloud Hypervisor's APIs.
//!
//! - `GET /api/v1/ratelimit`: every bucket's size, burst and current level.
//! - `PUT /api/v1/ratelimit`: replace all limits (buckets not given become unlimited);
//!   `PATCH`: change only the buckets given (a bucket given with only a size keeps its burst).
//!   Applied at once to parked and future requests; size 0 removes a limit; an invalid body
//!   is a 400 naming the field, and nothing changes.
//! - `GET /api/v1/stats`: requests and bytes by kind, throttled requests and waits.
//! - `GET /metrics`: the same in the Prometheus text format.
//! - `GET /api/v1/group`, `PATCH /api/v1/group`: the node group (`--fs-group`), see
//!   [`crate::control::group_api`].
//!
//! The socket is 0600. Each connection is served on its own thread, one request per
//! connection: the whole request must arrive within 5 s of the connection (else 408, however
//! it trickles), with 8 KiB of headers and a `Content-Length` body of 64 KiB at most
//! (`Transfer-Encoding` is answered 501); the reply has 5 s to be written. At most 16
//! connections at once (more are closed). Nothing here touches the data path's locks except
//! the limiter's, briefly.
//!
//! HTTP by hand over `httparse`: `tiny_http` 0.12 (Unix sockets supported) accepts on its own
//! thread with no hook for a per-connection deadline (measured: headers trickled over 8 s were
//! served, not cut at 5 s) and no connection cap, and `hyper` 1 needs an async runtime and
//! bounds only the header read; the deadline, the 501 for chunked and the cap are 60 lines here.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use limits_api::group::GROUP_PATH;
use limits_api::wire::{
    BucketUpdate, BucketView, ErrorBody, RateLimitUpdate, RateLimitView, JSON_CONTENT_TYPE,
    METRICS_CONTENT_TYPE, METRICS_PATH, RATELIMIT_PATH, STATS_PATH,
};
use ratelimit::Limit;
use serde::Serialize;

use crate::control::stats::Stats;
use crate::device::throttle::{Limiter, Limits};

/// Time for the whole request to arrive, and for the reply to be written.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Time to drain what a client sent after the reply (so the close does not reset it).
const LINGER: Duration = Duration::from_secs(1);
const MAX_HEADERS: usize = 8 << 10;
const MAX_BODY: usize = 64 << 10;
const MAX_CONNECTIONS: usize = 16;

/// What the API serves.
pub struct Api {
    /// The limits it shows and changes.
    pub limiter: Arc<Limiter>,
    /// The counters it reports.
    pub stats: Arc<Stats>,
}

/// Binds the socket, replacing a stale one; it appears with mode 0600 and listening (see
/// [`crate::setup::bind_socket`]). Done before the sandbox: the path is outside the shared
/// directory.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    crate::setup::bind_socket(path, Some(0o600), None)
}

/// Serves `listener` on a thread of its own.
pub fn spawn(listener: UnixListener, api: Api) -> io::Result<()> {
    let api = Arc::new(api);
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::AcqRel);
                    log::warn!("api: too many connections; closing one");
                    continue;
                }
                let (api, active) = (api.clone(), active.clone());
                let spawned =
                    std::thread::Builder::new()
                        .name("api-conn".into())
                        .spawn(move || {
                            if let Err(e) = serve_connection(conn, &api) {
                                log::debug!("api connection: {e}");
                            }
                            active.fetch_sub(1, Ordering::AcqRel);
                        });
                if spawned.is_err() {
                    log::warn!("api: cannot start a connection thread");
                }
            }
        })?;
    Ok(())
}

/// One HTTP request, as far as the API needs it.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

/// A response: status, content type, body.
type Response = (u16, &'static str, String);

fn serve_connection(mut conn: UnixStream, api: &Api) -> io::Result<()> {
    conn.set_write_timeout(Some(TIMEOUT))?;
    let (status, ctype, body) = match read_request(&mut conn, Instant::now() + TIMEOUT) {
        Ok(req) => route(api, &req),
        Err(resp) => resp,
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        501 => "Not Implemented",
        _ => "Error",
    };
    write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()?;
    // Close gracefully even when the request was not read whole (e.g. a body too large):
    // closing with unread input would reset the connection before the client reads the reply.
    conn.shutdown(std::net::Shutdown::Write)?;
    let deadline = Instant::now() + LINGER;
    let (mut chunk, mut left) = ([0u8; 4096], 4 * MAX_BODY);
    while left > 0 {
        match read_by(&mut conn, &mut chunk, deadline) {
            Ok(n) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
    Ok(())
}

/// One `read` that must end by `deadline`: the timeout is what is left of it, so a client
/// trickling bytes cannot stretch the time a request may take.
fn read_by(conn: &mut UnixStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    conn.set_read_timeout(Some(left))?;
    conn.read(buf)
}

/// The reply to a failed read of the request: 408 once the deadline has passed.
fn read_error(what: &str, e: io::Error) -> Response {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => error(
            408,
            format!("the request did not arrive within {} s", TIMEOUT.as_secs()),
        ),
        _ => error(400, format!("reading the {what}: {e}")),
    }
}

fn error(status: u16, msg: impl std::fmt::Display) -> Response {
    let body = ErrorBody {
        error: msg.to_string(),
    };
    (
        status,
        JSON_CONTENT_TYPE,
        serde_json::to_string(&body).unwrap_or_default(),
    )
}

/// Reads headers (bounded) and a Content-Length body (bounded), all by `deadline`.
fn read_request(conn: &mut UnixStream, deadline: Instant) -> Result<Request, Response> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (head_len, method, path, body_len) = loop {
        let n = read_by(conn, &mut chunk, deadline).map_err(|e| read_error("request", e))?;
        if n == 0 {
            return Err(error(400, "connection closed before the request ended"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let header = |name: &'static str| {
                    req.headers
                        .iter()
                        .filter(move |h| h.name.eq_ignore_ascii_case(name))
                };
                // A chunked (or otherwise encoded) body is not read as an empty one.
                if header("transfer-encoding").next().is_some() {
                    return Err(error(
                        501,
                        "Transfer-Encoding is not supported: send a Content-Length body",
                    ));
                }
                let mut lengths = header("content-length").map(|h| {
                    std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse::<usize>().ok())
                });
                let body_len = match lengths.next() {
                    None => 0,
                    Some(Some(n)) if lengths.all(|m| m == Some(n)) => n,
                    Some(_) => return Err(error(400, "bad Content-Length")),
                };
                let method = req.method.unwrap_or_default().to_owned();
                let path = req.path.unwrap_or_default().to_owned();
                break (len, method, path, body_len);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEADERS => continue,
            Ok(httparse::Status::Partial) => return Err(error(413, "headers too large")),
            Err(e) => return Err(error(400, format!("malformed request: {e}"))),
        }
    };
    if body_len > MAX_BODY {
        return Err(error(413, format!("body larger than {MAX_BODY} bytes")));
    }
    let mut body = buf.split_off(head_len);
    body.truncate(body_len);
    let mut got = body.len();
    body.resize(body_len, 0);
    while got < body_len {
        match read_by(conn, &mut body[got..], deadline) {
            Ok(0) => return Err(error(400, "connection closed before the body ended")),
            Ok(n) => got += n,
            Err(e) => return Err(read_error("body", e)),
        }
    }
    Ok(Request { method, path, body })
}

fn json<T: Serialize>(v: &T) -> Response {
    (
        200,
        JSON_CONTENT_TYPE,
        serde_json::to_string(v).unwrap_or_default(),
    )
}

fn route(api: &Api, req: &Request) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", RATELIMIT_PATH) => json(&view(&api.limiter)),
        ("PUT", RATELIMIT_PATH) | ("PATCH", RATELIMIT_PATH) => {
            match parse_update(&req.body, req.method == "PUT", api.limiter.limits()) {
                Ok(limits) => {
                    api.limiter.set_limits(limits);
                    json(&view(&api.limiter))
                }
                Err(e) => error(400, e),
            }
        }
        ("GET", GROUP_PATH) => match crate::control::group_api::view(&api.limiter) {
            Some(v) => json(&v),
            None => error(404, "this daemon is in no group (--fs-group)".to_string()),
        },
        ("PATCH", GROUP_PATH) => match crate::control::group_api::patch(&api.limiter, &req.body) {
            Ok(Some(v)) => json(&v),
            Ok(None) => error(404, "this daemon is in no group (--fs-group)".to_string()),
            Err(e) => error(400, e),
        },
        ("GET", STATS_PATH) => json(&api.stats.snapshot()),
        ("GET", METRICS_PATH) => (
            200,
            METRICS_CONTENT_TYPE,
            crate::control::metrics::encode(&api.stats, &api.limiter),
        ),
        (_, RATELIMIT_PATH | STATS_PATH | METRICS_PATH | GROUP_PATH) => {
            error(405, format!("{} not allowed on {}", req.method, req.path))
        }
        _ => error(404, format!("no such endpoint: {}", req.path)),
    }
}

fn view(limiter: &Limiter) -> RateLimitView {
    let [bw, read_bw, write_bw, ops] = limiter.levels().map(|(_, l, level)| BucketView {
        size: l.size,
        burst: l.burst,
        level,
    });
    RateLimitView {
        bw,
        read_bw,
        write_bw,
        ops,
    }
}

/// The limits after a PUT (`whole`) or PATCH, or an error naming the field.
fn parse_update(body: &[u8], whole: bool, current: Limits) -> Result<Limits, String> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let u: RateLimitUpdate = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "." | "" => e.inner().to_string(),
            _ => format!("{path}: {}", e.inner()),
        }
    })?;
    let bucket = |name: &str, u: Option<BucketUpdate>, cur: Limit| -> Result<Limit, String> {
        let Some(u) = u else {
            return Ok(if whole { Limit::UNLIMITED } else { cur });
        };
        let size = u.size.or((!whole).then_some(cur.size)).unwrap_or(0);
        let burst = match (u.burst, u.size) {
            (Some(b), _) => b,
            // PATCH with only a size keeps the burst it had (if it had one).
            (None, Some(_)) if !whole && !cur.is_unlimited() => cur.burst,
            (None, _) => size,
        };
        match (size, u.burst) {
            (0, Some(b)) if b > 0 => Err(format!("{name}.burst needs a non-zero {name}.size")),
            (0, _) => Ok(Limit::UNLIMITED),
            (_, Some(0)) => Err(format!("{name}.burst must be greater than 0")),
            _ => Ok(Limit::with_burst(size, burst)),
        }
    };
    Ok(Limits {
        bw: bucket("bw", u.bw, current.bw)?,
        read_bw: bucket("read_bw", u.read_bw, current.read_bw)?,
        write_bw: bucket("write_bw", u.write_bw, current.write_bw)?,
        ops: bucket("ops", u.ops, current.ops)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(bw: (u64, u64)) -> Limits {
        Limits {
            bw: Limit::with_burst(bw.0, bw.1),
            ..Default::default()
        }
    }

    #[test]
    fn patch_keeps_the_burst_and_other_buckets() {
        let cur = Limits {
            ops: Limit::new(100),
            ..limits((10, 20))
        };
        let l = parse_update(br#"{"bw":{"size":2}}"#, false, cur).unwrap();
        assert_eq!(l.bw, Limit::with_burst(2, 20));
        assert_eq!(l.ops, Limit::new(100));
        let l = parse_update(br#"{"bw":{"size":0}}"#, false, cur).unwrap();
        assert!(l.bw.is_unlimited());
        let l = parse_update(br#"{"write_bw":{"size":5}}"#, false, cur).unwrap();
        assert_eq!(
            l.write_bw,
            Limit::new(5),
            "a new bucket's burst is its size"
        );
    }

    #[test]
    fn put_replaces_everything() {
        let cur = Limits {
            ops: Limit::new(100),
            ..limits((10, 20))
        };
        let l = parse_update(br#"{"bw":{"size":2}}"#, true, cur).unwrap();
        assert_eq!(l.bw, Limit::new(2));
        assert!(l.ops.is_unlimited());
    }

    #[test]
    fn errors_name_the_field() {
        let cur = Limits::default();
        let e = parse_update(br#"{"bw":{"size":"x"}}"#, false, cur).unwrap_err();
        assert!(e.starts_with("bw.size:"), "{e}");
        let e = parse_update(br#"{"bw":{"sise":1}}"#, false, cur).unwrap_err();
        assert!(e.contains("sise"), "{e}");
        let e = parse_update(br#"{"bandwidth":{}}"#, false, cur).unwrap_err();
        assert!(e.contains("bandwidth"), "{e}");
        let e = parse_update(br#"{"bw":{"burst":5}}"#, true, cur).unwrap_err();
        assert!(e.contains("bw.burst"), "{e}");
        let e = parse_update(br#"{"ops":{"size":5,"burst":0}}"#, true, cur).unwrap_err();
        assert!(e.contains("ops.burst"), "{e}");
        let e = parse_update(br#"{"bw":{"size":-1}}"#, true, cur).unwrap_err();
        assert!(e.starts_with("bw.size:"), "{e}");
        assert!(parse_update(b"{", true, cur).is_err());
    }
}
