//! `docker-demo`: the lab's stand-in for the image `ehazlett/docker-demo`, the app of Docker's
//! Interlock "service clusters" walk-through. The lab has no registry, so `deploy/lab/swarm-lab.sh`
//! builds this binary into `local/docker-demo:lab`, which `deploy/demo.sh` and
//! `tests/lab/walkthrough.rs` deploy where the walk-through deploys `ehazlett/docker-demo`.
//!
//! Like the original it listens on port 8080 (`PORT` overrides it) and answers
//! `GET /ping` with
//! `{"instance":"1b2d71619592","version":"0.1","metadata":"us-east","request_id":"3d57…"}`:
//! the container's hostname, the `METADATA` environment variable and a fresh random request ID,
//! so a client can tell which replica of which service cluster answered. `GET /` answers
//! `docker-demo <instance> <metadata>` as plain text; anything else is a 404.
//!
//! std only: one thread per connection, HTTP/1.1 with `Connection: close` after each response.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const VERSION: &str = "0.1";
const DEFAULT_PORT: u16 = 8080;
/// The most request-header bytes read before answering 431.
const MAX_HEADER_BYTES: usize = 16 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// What every response is made from: fixed for the process's life.
struct App {
    instance: String,
    metadata: String,
}

fn main() {
    let port = match std::env::var("PORT") {
        Ok(p) => match p.trim().parse::<u16>() {
            Ok(p) => p,
            Err(_) => {
                eprintln!("docker-demo: PORT={p:?} is not a port number");
                std::process::exit(2);
            }
        },
        Err(_) => DEFAULT_PORT,
    };
    let app = Arc::new(App { instance: hostname(), metadata: std::env::var("METADATA").unwrap_or_default() });
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("docker-demo: cannot listen on 0.0.0.0:{port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("docker-demo: listening on 0.0.0.0:{port} (instance {:?}, metadata {:?})", app.instance, app.metadata);
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let app = Arc::clone(&app);
                std::thread::spawn(move || {
                    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
                    if let Err(e) = serve(&app, stream) {
                        eprintln!("docker-demo: {peer}: {e}");
                    }
                });
            }
            Err(e) => {
                eprintln!("docker-demo: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The container's hostname (Docker writes the short container ID there), else `$HOSTNAME`.
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// One connection: read the request head, answer it, close.
fn serve(app: &App, mut stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let response = match read_head(&mut stream)? {
        Head::Complete(head) => respond(app, &head),
        Head::TooLarge => Response::text(431, "request header fields too large\n").build(false),
        Head::Closed => return Ok(()),
    };
    stream.write_all(&response)?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

enum Head {
    Complete(String),
    TooLarge,
    /// The peer closed before sending a whole request head.
    Closed,
}

/// Reads up to and including the blank line that ends the request head.
fn read_head(stream: &mut impl Read) -> io::Result<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = head_end(&buf) {
            if end > MAX_HEADER_BYTES {
                return Ok(Head::TooLarge);
            }
            buf.truncate(end);
            return Ok(Head::Complete(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() > MAX_HEADER_BYTES {
            return Ok(Head::TooLarge);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The length of the head up to its terminating blank line (`\r\n\r\n`, or a bare `\n\n`).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The whole response (status line, headers, body) to a request head.
fn respond(app: &App, head: &str) -> Vec<u8> {
    let request_line = head.lines().next().unwrap_or("");
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::text(400, "bad request\n").build(false);
    };
    if !version.starts_with("HTTP/1.") {
        return Response::text(505, "HTTP version not supported\n").build(false);
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return Response::text(405, "method not allowed\n").header("Allow", "GET, HEAD").build(false);
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    let response = match path {
        "/ping" => Response::new(200, "application/json", ping_body(app, &request_id())),
        "/" => Response::text(200, &format!("docker-demo {} {}\n", app.instance, app.metadata)),
        _ => Response::text(404, "not found\n"),
    };
    response.build(head_only)
}

/// The `/ping` body: the original's JSON object, one line.
fn ping_body(app: &App, request_id: &str) -> String {
    format!(
        "{{\"instance\":{},\"version\":{},\"metadata\":{},\"request_id\":{}}}\n",
        json_string(&app.instance),
        json_string(VERSION),
        json_string(&app.metadata),
        json_string(request_id),
    )
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// 32 random lowercase hex characters: two 64-bit hashes of the time, a counter and the pid,
/// each under a freshly keyed `RandomState` (std's SipHash with random keys).
fn request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let pid = std::process::id();
    let half = |salt: u8| {
        let mut h = RandomState::new().build_hasher();
        h.write_u8(salt);
        h.write_u128(nanos);
        h.write_u64(count);
        h.write_u32(pid);
        h.finish()
    };
    format!("{:016x}{:016x}", half(0), half(1))
}

struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Response {
    fn new(status: u16, content_type: &str, body: String) -> Self {
        Response { status, headers: vec![("Content-Type", content_type.to_owned())], body }
    }

    fn text(status: u16, body: &str) -> Self {
        Response::new(status, "text/plain; charset=utf-8", body.to_owned())
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// The bytes on the wire; `head_only` (a HEAD request) keeps the headers, drops the body.
    fn build(self, head_only: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", self.body.len()));
        if !head_only {
            out.push_str(&self.body);
        }
        out.into_bytes()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        App { instance: "1b2d71619592".into(), metadata: "us-east".into() }
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn ping_body_is_the_originals_json() {
        assert_eq!(
            ping_body(&app(), "3d57404cf90112eee861f9d7955d044b"),
            "{\"instance\":\"1b2d71619592\",\"version\":\"0.1\",\"metadata\":\"us-east\",\
             \"request_id\":\"3d57404cf90112eee861f9d7955d044b\"}\n"
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
        assert_eq!(json_string(""), "\"\"");
    }

    #[test]
    fn request_ids_are_32_lowercase_hex_and_differ() {
        let (a, b) = (request_id(), request_id());
        for id in [&a, &b] {
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)), "{id}");
        }
        assert_ne!(a, b);
    }

    #[test]
    fn ping_answers_json_with_length_and_close() {
        let r = text(respond(&app(), "GET /ping?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"));
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\nContent-Type: application/json\r\n"), "{head}");
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())), "{head}");
        assert!(head.ends_with("\r\nConnection: close"), "{head}");
        assert!(body.starts_with("{\"instance\":\"1b2d71619592\",\"version\":\"0.1\",\"metadata\":\"us-east\","));
    }

    #[test]
    fn root_head_and_not_found() {
        let root = text(respond(&app(), "GET / HTTP/1.1\r\n\r\n"));
        assert!(root.ends_with("\r\n\r\ndocker-demo 1b2d71619592 us-east\n"), "{root}");
        let head = text(respond(&app(), "HEAD / HTTP/1.1\r\n\r\n"));
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
        assert!(head.contains("Content-Length: 33\r\n"), "{head}");
        assert!(text(respond(&app(), "GET /nope HTTP/1.1\r\n\r\n")).starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text(respond(&app(), "POST /ping HTTP/1.1\r\n\r\n")).starts_with("HTTP/1.1 405 "));
        assert!(text(respond(&app(), "garbage\r\n\r\n")).starts_with("HTTP/1.1 400 "));
    }

    #[test]
    fn the_head_is_read_up_to_its_blank_line_and_bounded() {
        let mut input: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
        assert!(
            matches!(read_head(&mut input).unwrap(), Head::Complete(h) if h == "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        );
        let mut partial: &[u8] = b"GET / HTTP/1.1\r\n";
        assert!(matches!(read_head(&mut partial).unwrap(), Head::Closed));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEADER_BYTES + 10));
        assert!(matches!(read_head(&mut big.as_bytes()).unwrap(), Head::TooLarge));
    }
}
