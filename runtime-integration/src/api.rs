//! A small client for the daemon's HTTP control API (`virtiofsd --api-socket=PATH`): HTTP/1.1
//! with JSON bodies over a Unix socket, one request per connection (`Connection: close`).
//!
//! Endpoints used ([`Client`] has a method for each):
//! * `GET /api/v1/ratelimit`, `PATCH /api/v1/ratelimit`, `PUT /api/v1/ratelimit`: the four
//!   buckets `bw`, `read_bw`, `write_bw`, `ops`, each `{"size","burst","level"}` (size 0 =
//!   unlimited; `level` null when unlimited, negative while in debt). PATCH changes only the
//!   buckets given (a bucket given with only `size` keeps its burst); PUT replaces all.
//! * `GET /api/v1/stats`: uptime, request and byte counters, throttling.
//! * `GET /metrics`: Prometheus text.
//!
//! Every request is bounded: connecting (a listener whose backlog is full is retried until the
//! deadline, never waited on without one), writing and reading each within
//! [`Client::timeout`] and the whole exchange within the same deadline, and the response to
//! [`Client::max_response`] bytes. A non-2xx answer is an [`Error::Api`] carrying the daemon's
//! `{"error": "..."}` message.

use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use limits_api::wire::{
    BucketUpdate, RateLimitUpdate, METRICS_PATH, RATELIMIT_PATH, STATS_PATH,
};

use crate::error::{Error, Result};

/// Default connect, read and write timeout (also the bound on a whole exchange).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default largest accepted response (head and body).
pub const DEFAULT_MAX_RESPONSE: usize = 4 << 20;

/// A decoded HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client for one daemon's API socket.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
    /// Connect, read and write timeout, and the bound on a whole exchange.
    pub timeout: Duration,
    /// Largest accepted response in bytes.
    pub max_response: usize,
}

fn sockaddr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a usable unix socket path (empty, NUL or longer than 107 bytes)",
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

/// Connects to a unix stream socket, giving up at `deadline` (a listener with a full backlog
/// makes a non-blocking connect fail with `EAGAIN`: retried every 10 ms).
pub fn connect(path: &Path, deadline: Instant) -> io::Result<UnixStream> {
    let (addr, len) = sockaddr(path)?;
    loop {
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: addr/len describe a valid sockaddr_un.
        let r = unsafe {
            libc::connect(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &addr as *const libc::sockaddr_un as *const libc::sockaddr,
                len,
            )
        };
        if r == 0 {
            let s = UnixStream::from(fd);
            s.set_nonblocking(false)?;
            return Ok(s);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Some(libc::EAGAIN) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connect timed out (listener backlog full)",
                ))
            }
            _ => return Err(e),
        }
    }
}

/// Whether something accepts connections on `path` (connects and closes at once).
pub fn probe(path: &Path, timeout: Duration) -> bool {
    connect(path, Instant::now() + timeout).is_ok()
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

/// Sets the socket timeout to what is left until `deadline` (at most `cap`).
fn arm(s: &UnixStream, deadline: Instant, cap: Duration, what: &str) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now()).min(cap);
    if left.is_zero() {
        return Err(timed_out(what));
    }
    s.set_read_timeout(Some(left))?;
    s.set_write_timeout(Some(left))
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Decodes a `Transfer-Encoding: chunked` body (chunk sizes parsed by `httparse`).
fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let (used, n) = match httparse::parse_chunk_size(data) {
            Ok(httparse::Status::Complete(x)) => x,
            Ok(httparse::Status::Partial) => return Err(bad("truncated chunk size")),
            Err(_) => return Err(bad("bad chunk size")),
        };
        data = &data[used..];
        let n = usize::try_from(n).map_err(|_| bad("bad chunk size"))?;
        if n == 0 {
            return Ok(out);
        }
        if data.len() < n + 2 || &data[n..n + 2] != b"\r\n" {
            return Err(bad("truncated chunk"));
        }
        out.extend_from_slice(&data[..n]);
        data = &data[n + 2..];
    }
}

/// Most response headers accepted.
const MAX_HEADERS: usize = 64;

/// Parses a complete HTTP/1.x response (the connection was read to its end); the head is
/// parsed by `httparse`.
pub fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Response::new(&mut hs);
    let head_len = match head.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(bad("no complete response head")),
        Err(e) => return Err(bad(format!("not an HTTP/1.x response: {e}"))),
    };
    let status = head.code.ok_or_else(|| bad("no status code"))?;
    let headers = head
        .headers
        .iter()
        .map(|h| {
            let v = std::str::from_utf8(h.value)
                .map_err(|_| bad(format!("header {} is not UTF-8", h.name)))?;
            Ok((h.name.to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect::<io::Result<Vec<_>>>()?;
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &raw[head_len..];
    resp.body = if resp
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        dechunk(rest)?
    } else if let Some(cl) = resp.header("content-length") {
        let n: usize = cl
            .parse()
            .map_err(|_| bad(format!("bad Content-Length {cl:?}")))?;
        if rest.len() < n {
            return Err(bad(format!("truncated body: {} of {n} bytes", rest.len())));
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(resp)
}

impl Client {
    /// A client for the API socket at `socket` with the default limits.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
            timeout: DEFAULT_TIMEOUT,
            max_response: DEFAULT_MAX_RESPONSE,
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn err(&self, status: Option<u16>, message: impl Into<String>) -> Error {
        Error::Api {
            socket: self.socket.clone(),
            status,
            message: message.into(),
        }
    }

    fn exchange(&self, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<Response> {
        let deadline = Instant::now() + self.timeout;
        let mut s = connect(&self.socket, deadline)?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: virtiofs-sandbox\r\nAccept: */*\r\nConnection: close\r\n"
        );
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        let mut out = req.into_bytes();
        out.extend_from_slice(body.unwrap_or_default());
        arm(&s, deadline, self.timeout, "write")?;
        s.write_all(&out).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => timed_out("write"),
            _ => e,
        })?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            arm(&s, deadline, self.timeout, "read")?;
            let n = match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(timed_out("read"))
                }
                Err(e) => return Err(e),
            };
            if raw.len() + n > self.max_response {
                return Err(bad(format!(
                    "response larger than {} bytes",
                    self.max_response
                )));
            }
            raw.extend_from_slice(&buf[..n]);
        }
        parse_response(&raw)
    }

    /// Sends one request and returns the raw response (any status).
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Response> {
        self.exchange(method, path, body)
            .map_err(|e| self.err(None, format!("{method} {path}: {e}")))
    }

    /// Sends one request and returns the body of a 2xx response; otherwise an
    /// [`Error::Api`] with the daemon's `error` message.
    pub fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Vec<u8>> {
        let r = self.request(method, path, body)?;
        if (200..300).contains(&r.status) {
            return Ok(r.body);
        }
        let msg = serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| {
                let t = String::from_utf8_lossy(&r.body);
                let t = t.trim();
                t.chars().take(500).collect()
            });
        Err(self.err(Some(r.status), format!("{method} {path}: {msg}")))
    }

    fn json(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Value> {
        let out = self.call(method, path, body.as_deref())?;
        serde_json::from_slice(&out)
            .map_err(|e| self.err(None, format!("{method} {path}: response is not JSON: {e}")))
    }

    /// `GET /api/v1/ratelimit`.
    pub fn get_limits(&self) -> Result<Value> {
        self.json("GET", RATELIMIT_PATH, None)
    }

    /// `PATCH /api/v1/ratelimit`: changes the buckets given; returns the limits after.
    pub fn patch_limits(&self, update: &RateLimitUpdate) -> Result<Value> {
        let body = serde_json::to_vec(update).expect("serialises");
        self.json("PATCH", RATELIMIT_PATH, Some(body))
    }

    /// `PUT /api/v1/ratelimit`: replaces all buckets (absent ones become unlimited).
    pub fn put_limits(&self, update: &RateLimitUpdate) -> Result<Value> {
        let body = serde_json::to_vec(update).expect("serialises");
        self.json("PUT", RATELIMIT_PATH, Some(body))
    }

    /// `GET /api/v1/stats`.
    pub fn stats(&self) -> Result<Value> {
        self.json("GET", STATS_PATH, None)
    }

    /// `GET /metrics` (Prometheus text).
    pub fn metrics(&self) -> Result<String> {
        let b = self.call("GET", METRICS_PATH, None)?;
        String::from_utf8(b).map_err(|_| self.err(None, "GET /metrics: response is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }
    use std::os::unix::net::UnixListener;
    use std::sync::mpsc;

    /// A one-connection fake server: records the request, answers `reply`.
    fn fake(reply: &'static [u8]) -> (tempfile::TempDir, PathBuf, mpsc::Receiver<Vec<u8>>) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("api.sock");
        let l = UnixListener::bind(&p).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Head, then Content-Length bytes of body.
            loop {
                let n = c.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
                if let Some(h) = find(&req, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&req[..h]).to_ascii_lowercase();
                    let cl = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map(|v| v.trim().parse::<usize>().unwrap())
                        .unwrap_or(0);
                    if req.len() >= h + 4 + cl {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let _ = c.write_all(reply);
            tx.send(req).unwrap();
        });
        (d, p, rx)
    }

    #[test]
    fn get_sends_a_closing_request_and_parses_json() {
        let (_d, p, rx) = fake(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\": 1}   ",
        );
        let v = Client::new(&p).get_limits().unwrap();
        assert_eq!(v["a"], 1);
        let req = String::from_utf8(rx.recv().unwrap()).unwrap();
        assert!(
            req.starts_with("GET /api/v1/ratelimit HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(req.contains("\r\nConnection: close\r\n"), "{req}");
        assert!(req.contains("\r\nHost: localhost\r\n"), "{req}");
    }

    #[test]
    fn patch_sends_only_the_buckets_given() {
        let (_d, p, rx) = fake(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"b\r\n5\r\n\":2}\n\r\n0\r\n\r\n");
        let u = RateLimitUpdate {
            bw: Some(BucketUpdate {
                size: Some(2_000_000),
                burst: None,
            }),
            ops: Some(BucketUpdate {
                size: Some(0),
                burst: Some(5),
            }),
            ..Default::default()
        };
        let v = Client::new(&p).patch_limits(&u).unwrap();
        assert_eq!(v["b"], 2, "chunked body decoded");
        let req = String::from_utf8(rx.recv().unwrap()).unwrap();
        assert!(req.starts_with("PATCH /api/v1/ratelimit HTTP/1.1\r\n"));
        let body = &req[req.find("\r\n\r\n").unwrap() + 4..];
        assert_eq!(
            body,
            r#"{"bw":{"size":2000000},"ops":{"size":0,"burst":5}}"#
        );
        assert!(req.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(req.contains("Content-Type: application/json\r\n"));
    }

    #[test]
    fn errors_carry_the_daemons_message_and_status() {
        let (_d, p, _rx) = fake(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 37\r\n\r\n{\"error\":\"bw.burst: must not be 0\"}\n\n",
        );
        let e = Client::new(&p)
            .patch_limits(&RateLimitUpdate::default())
            .unwrap_err();
        match &e {
            Error::Api {
                status, message, ..
            } => {
                assert_eq!(*status, Some(400));
                assert!(message.contains("bw.burst: must not be 0"), "{message}");
            }
            o => panic!("{o}"),
        }
        assert!(e.to_string().contains("HTTP 400"), "{e}");
    }

    #[test]
    fn a_silent_server_times_out() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("api.sock");
        let _l = UnixListener::bind(&p).unwrap(); // never accepts, never answers
        let mut c = Client::new(&p);
        c.timeout = Duration::from_millis(300);
        let t = Instant::now();
        let e = c.stats().unwrap_err().to_string();
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(e.contains("timed out"), "{e}");
    }

    #[test]
    fn a_dripping_server_is_bounded_by_the_deadline() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("api.sock");
        let l = UnixListener::bind(&p).unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            for _ in 0..100 {
                if c.write_all(b"H").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut c = Client::new(&p);
        c.timeout = Duration::from_millis(400);
        let t = Instant::now();
        let e = c.stats().unwrap_err().to_string();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(e.contains("timed out"), "{e}");
    }

    #[test]
    fn oversized_responses_are_refused() {
        let (_d, p, _rx) = fake(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789");
        let mut c = Client::new(&p);
        c.max_response = 64;
        let e = c.metrics().unwrap_err().to_string();
        assert!(e.contains("larger than 64 bytes"), "{e}");
    }

    #[test]
    fn missing_socket_and_bad_responses() {
        let d = tempfile::tempdir().unwrap();
        let e = Client::new(d.path().join("none.sock"))
            .stats()
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.sock"), "{e}");
        assert!(!probe(
            &d.path().join("none.sock"),
            Duration::from_millis(100)
        ));
        assert!(parse_response(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
        let r = parse_response(b"HTTP/1.0 204 No Content\r\nX-A: b\r\n\r\n").unwrap();
        assert_eq!((r.status, r.header("x-a")), (204, Some("b")));
        assert!(sockaddr(Path::new(&"/x".repeat(60))).is_err());
    }
}
