//! The load generator the lab tests measure serving with (`support::load`: new-connection and
//! keep-alive clients, failures classified, `time_to_served`), against scripted local servers:
//! no lab needed.

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::load::{self, FailureClass, Load, LoadSpec, Mode};

/// Reads one request head; `None` at EOF.
async fn read_request(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// A server answering each connection with `script(request number on it)`: `Some(bytes)` to
/// write, then keep the connection open for the next request; `None` to close it.
async fn server(script: fn(usize) -> Option<&'static [u8]>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                for n in 0.. {
                    let Some(request) = read_request(&mut s).await else { return };
                    let Some(bytes) = script(n) else { return };
                    if s.write_all(bytes).await.is_err() || request.contains("Connection: close") {
                        return;
                    }
                }
            });
        }
    });
    port
}

async fn run(port: u16, mode: Mode, body: &str) -> load::LoadReport {
    let spec = LoadSpec { pause: Duration::from_millis(5), ..LoadSpec::new("127.0.0.1", port, &["x.local"], mode, 2) }
        .expect_body(body);
    let l = Load::start(spec);
    tokio::time::sleep(Duration::from_millis(300)).await;
    l.stop().await
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n";

#[tokio::test]
async fn content_length_and_chunked_bodies_on_both_modes() {
    let port = server(|_| Some(OK)).await;
    for mode in [Mode::NewConnection, Mode::KeepAlive] {
        let r = run(port, mode, "hello").await;
        assert!(r.ok > 10 && r.failed_total() == 0 && r.keepalive_closed == 0, "{mode}: {r}");
    }
    let chunked = server(|_| {
        Some(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n3\r\nlo\n\r\n0\r\nT: v\r\n\r\n")
    })
    .await;
    let r = run(chunked, Mode::KeepAlive, "hello").await;
    assert!(r.ok > 10 && r.failed_total() == 0, "{r}");
    let wrong = run(chunked, Mode::KeepAlive, "other").await;
    assert!(wrong.ok == 0 && wrong.count(FailureClass::WrongBody) > 0, "{wrong}");
}

#[tokio::test]
async fn an_idle_close_on_a_reused_connection_is_retried_and_counted_apart() {
    // Every connection serves one request without `Connection: close`, then closes: each
    // reuse meets a closed connection.
    let port = server(|n| (n == 0).then_some(OK)).await;
    let r = run(port, Mode::KeepAlive, "hello").await;
    assert!(r.ok > 10 && r.failed_total() == 0 && r.keepalive_closed > 5, "{r}");
    assert!(r.keepalive_samples[0].what.contains("before_response"), "{:?}", r.keepalive_samples);
    // Connection: close is honoured: no reuse, nothing to retry.
    let closing = server(|n| {
        (n == 0).then_some(&b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 6\r\n\r\nhello\n"[..])
    })
    .await;
    let r = run(closing, Mode::KeepAlive, "hello").await;
    assert!(r.ok > 10 && r.failed_total() == 0 && r.keepalive_closed == 0, "{r}");
}

#[tokio::test]
async fn failures_are_classified() {
    let eof = server(|_| None).await;
    let r = run(eof, Mode::NewConnection, "").await;
    assert!(r.ok == 0 && r.failed_total() == r.count(FailureClass::EofBeforeResponse), "{r}");
    assert!(r.failures[0].what.starts_with("eof_before_response"), "{:?}", r.failures);
    // On a new keep-alive connection an EOF is a failure, not an idle close.
    let r = run(eof, Mode::KeepAlive, "").await;
    assert!(r.ok == 0 && r.keepalive_closed == 0 && r.count(FailureClass::EofBeforeResponse) > 0, "{r}");

    let cut = server(|_| Some(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")).await;
    // The server keeps a keep-alive connection open: the response never completes.
    let spec = LoadSpec::new("127.0.0.1", cut, &["x.local"], Mode::KeepAlive, 1);
    let l = Load::start(spec);
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let r = l.stop().await;
    assert!(r.ok == 0 && r.count(FailureClass::Timeout) >= 1, "{r}");

    let unavailable = server(|_| Some(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")).await;
    let r = run(unavailable, Mode::KeepAlive, "").await;
    assert!(r.ok == 0 && r.failed_total() == r.count(FailureClass::ErrorStatus), "{r}");
    let missing = server(|_| Some(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")).await;
    let r = run(missing, Mode::NewConnection, "").await;
    assert!(r.ok == 0 && r.failed_total() == r.count(FailureClass::UnexpectedStatus), "{r}");
    let garbage = server(|_| Some(b"SSH-2.0-OpenSSH\r\n\r\n")).await;
    let r = run(garbage, Mode::NewConnection, "").await;
    assert!(r.ok == 0 && r.failed_total() == r.count(FailureClass::Malformed), "{r}");

    // Nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let r = run(port, Mode::NewConnection, "").await;
    assert!(r.ok == 0 && r.failed_total() == r.count(FailureClass::ConnectRefused), "{r}");
    let r = run(port, Mode::KeepAlive, "").await;
    assert!(r.ok == 0 && r.failed_total() == r.count(FailureClass::ConnectRefused), "{r}");

    // time_to_served: a 200 with the text, or None at the limit.
    let ok = server(|_| Some(OK)).await;
    let t = load::time_to_served("127.0.0.1", ok, "x.local", "hello", Duration::from_secs(2)).await;
    assert!(t.is_some_and(|t| t < Duration::from_secs(1)), "{t:?}");
    let t = load::time_to_served("127.0.0.1", missing, "x.local", "", Duration::from_millis(300)).await;
    assert_eq!(t, None);
}

#[tokio::test]
async fn a_response_cut_short_by_a_close_is_truncated() {
    // The server writes half a response and closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                if read_request(&mut s).await.is_some() {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort").await;
                }
            });
        }
    });
    let r = run(port, Mode::NewConnection, "").await;
    assert!(r.ok == 0 && r.failed_total() == r.count(FailureClass::Truncated), "{r}");
}
