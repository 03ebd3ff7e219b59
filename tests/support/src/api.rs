//! One HTTP/1.1 request on a daemon's control socket (`--api-socket`), as a test sends it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// Sends one request with a `Content-Length` body and reads the reply to the end (10 s read
/// timeout); returns (status, body).
pub fn http(path: &Path, method: &str, url: &str, body: &str) -> (u16, String) {
    let mut c = UnixStream::connect(path).expect("connect to the API");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "{method} {url} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_owned();
    (status, body)
}

/// [`http`] with a JSON reply body (panics with the body if it is not JSON).
pub fn json(path: &Path, method: &str, url: &str, body: &str) -> (u16, Value) {
    let (st, b) = http(path, method, url, body);
    (
        st,
        serde_json::from_str(&b).unwrap_or_else(|e| panic!("{e}: {b}")),
    )
}
