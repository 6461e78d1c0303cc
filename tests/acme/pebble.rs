//! The ACME client (`src/core/acme/`) against a real ACME server: Debian's `pebble` (Let's
//! Encrypt's test CA) with `pebble-challtestsrv` as its DNS, both run here as processes on
//! loopback ports, each test with its own pair. Every name resolves to 127.0.0.1, where the test
//! serves the HTTP-01 answers itself (on the port pebble validates, its `httpPort`), as the
//! proxies will.
//!
//! Pebble ships no certificate for its own listener: each test makes a CA and a certificate for
//! 127.0.0.1 (rcgen) and hands the CA to the client as `CACertificate`, as a user of a private
//! CA would.
//!
//! Needs `pebble` (`apt-get install pebble`; `deploy/test.sh` installs it): run with
//! `cargo test --features acme-server --test acme_pebble`. Without it the tests fail, saying so.

// Only its listener certificates: the rest of `support` is the labs'.
#[allow(dead_code)]
#[path = "../support/acme.rs"]
mod acme_support;

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use interlock::core::acme::{AcmeClient, AcmeError, Issued};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::ServerCertVerifier;
use tokio_rustls::rustls::{self, RootCertStore};

const PEBBLE: &str = "/usr/bin/pebble";
const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";
const HOST: &str = "a.example.test";
/// An order's whole wait (validation and issuance: about a second with `PEBBLE_VA_NOSLEEP`).
const FINISH: Duration = Duration::from_secs(60);

/// A free loopback port (free when asked: the OS does not hand it out again at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Pebble and its DNS, running until dropped.
struct Pebble {
    dir: PathBuf,
    children: Vec<Child>,
    directory_url: String,
    /// The CA of pebble's listener (what `CACertificate` would hold).
    listener_ca_pem: Vec<u8>,
    management: SocketAddr,
    /// pebble's ACME port, and challtestsrv's DNS port.
    listen: u16,
    dns: u16,
}

impl Pebble {
    /// Starts `pebble-challtestsrv` (every name is 127.0.0.1; its own challenge servers off) and
    /// `pebble`, validating HTTP-01 on `http_port`.
    async fn start(http_port: u16) -> Self {
        for binary in [PEBBLE, CHALLTESTSRV] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: these tests need Debian's pebble (`apt-get install -y pebble`, which \
                 deploy/test.sh does)"
            );
        }
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "interlock-pebble-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();

        // pebble's listener: a CA and a certificate for 127.0.0.1 and localhost.
        let (ca_pem, cert_pem, key_pem) = acme_support::listener_certificates("127.0.0.1");
        std::fs::write(dir.join("cert.pem"), cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), key_pem).unwrap();

        let (listen, management, tls, dns, dns_management) =
            (free_port(), free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": dir.join("cert.pem"),
                "privateKey": dir.join("key.pem"),
                "httpPort": http_port,
                "tlsPort": tls,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();

        let logs = dir.clone();
        let log = move |name: &str| Stdio::from(std::fs::File::create(logs.join(name)).unwrap());
        let challtestsrv = Command::new(CHALLTESTSRV)
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}"), "-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .unwrap();
        let mut pebble = Self {
            dir,
            children: vec![challtestsrv],
            directory_url: String::new(),
            listener_ca_pem: Vec::new(),
            management: ([127, 0, 0, 1], management).into(),
            listen,
            dns,
        };
        pebble.wait_for_port(dns_management).await;
        pebble.start_ca().await;
        pebble.directory_url = format!("https://127.0.0.1:{listen}/dir");
        pebble.listener_ca_pem = ca_pem.into_bytes();
        pebble
    }

    /// Starts `pebble` itself (the second child), with a fresh state.
    async fn start_ca(&mut self) {
        let log = |name: &str| {
            Stdio::from(std::fs::File::options().create(true).append(true).open(self.dir.join(name)).unwrap())
        };
        let server = Command::new(PEBBLE)
            .arg("-config")
            .arg(self.dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{}", self.dns)])
            // No artificial sleeps in validation; no nonces refused on purpose (the client retries
            // them, but a rare third refusal in a row would make the test flaky); a new
            // authorization for every order (so that each one has a challenge to answer).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .unwrap();
        self.children.truncate(1);
        self.children.push(server);
        self.wait_for_port(self.listen).await;
        self.wait_for_port(self.management.port()).await;
    }

    /// Restarts `pebble`: it forgets every account and order (it keeps no state).
    async fn restart_ca(&mut self) {
        let mut old = self.children.pop().unwrap();
        old.kill().unwrap();
        old.wait().unwrap();
        self.start_ca().await;
    }

    async fn wait_for_port(&mut self, port: u16) {
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            for child in &mut self.children {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("a pebble process exited ({status}):\n{}", self.logs());
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "nothing listens on {port} after 20 s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&self) -> String {
        ["challtestsrv.log", "challtestsrv.err", "pebble.log", "pebble.err"]
            .iter()
            .map(|name| format!("--- {name}\n{}", std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()))
            .collect()
    }

    /// The root pebble issues under (its management API's `/roots/0`), DER.
    async fn issuing_root(&self) -> CertificateDer<'static> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(&self.listener_ca_pem).unwrap()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(self.management).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        // HTTP/1.0: the whole body up to the close, never chunked.
        tls.write_all(b"GET /roots/0 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await; // pebble closes without close_notify
        let text = String::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
        CertificateDer::from_pem_slice(body.as_bytes()).unwrap()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let _ = writeln!(std::io::stderr(), "{}", self.logs());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the proxies would do: answer `GET /.well-known/acme-challenge/TOKEN` from `answers`, 404
/// for anything else; counts the challenge requests it saw.
#[derive(Clone, Default)]
struct Answers {
    answers: Arc<Mutex<HashMap<String, String>>>,
    requests: Arc<AtomicUsize>,
}

impl Answers {
    /// Serves on a new loopback port (returned) until the test ends.
    async fn serve(&self) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let this = self.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let this = this.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16_384 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&request).lines().next().unwrap_or_default().to_owned();
                    let path = line.split(' ').nth(1).unwrap_or_default();
                    let answer = path.strip_prefix("/.well-known/acme-challenge/").and_then(|token| {
                        this.requests.fetch_add(1, Ordering::SeqCst);
                        this.answers.lock().unwrap().get(token).cloned()
                    });
                    let response = match answer {
                        Some(body) => format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
                    };
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        port
    }
}

/// Orders a certificate for `host` on `client`, serving its answer from `answers` meanwhile.
async fn order(client: &AcmeClient, answers: &Answers, host: &str) -> Result<Issued, AcmeError> {
    let mut order = client.order(host).await?;
    // Pebble 2.4 reuses a valid authorization of the account now and then even with
    // `PEBBLE_AUTHZREUSE=0` (its test is `rand.Intn(100) > percent`: 1 in 100): such an order
    // has nothing to answer, as with a real CA, and goes straight to issuance.
    let Some(answer) = order.answer().cloned() else {
        order.ready().await?;
        return order.finish(FINISH).await;
    };
    assert!(!answer.token.is_empty() && answer.key_authorization.starts_with(&format!("{}.", answer.token)));
    answers.answers.lock().unwrap().insert(answer.token.clone(), answer.key_authorization.clone());
    order.ready().await?;
    let issued = order.finish(FINISH).await;
    answers.answers.lock().unwrap().remove(&answer.token);
    issued
}

/// The chain names `host`, and verifies to `root` now.
fn check_chain(issued: &Issued, host: &str, root: &CertificateDer<'static>) {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes()).collect::<Result<_, _>>().unwrap();
    assert!(chain.len() >= 2, "a leaf and pebble's intermediate: {} certificates", chain.len());
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
    let verify = |name: &str| {
        verifier.verify_server_cert(
            &chain[0],
            &chain[1..],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
    };
    verify(host).unwrap_or_else(|e| panic!("the chain does not verify for {host} against pebble's root: {e}"));
    assert!(verify("other.example.test").is_err(), "the certificate names {host} alone");

    // The key is the certificate's.
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let signing_key = provider.key_provider.load_private_key(key).unwrap();
    rustls::sign::CertifiedKey::new(chain, signing_key).keys_match().expect("the key matches the certificate");
    let days = issued.not_after.duration_since(SystemTime::now()).expect("not_after is ahead").as_secs() / 86_400;
    assert!(days >= 1, "valid for {days} days");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_a_certificate_and_a_second_one_with_the_stored_account() {
    let started = Instant::now();
    let answers = Answers::default();
    let pebble = Pebble::start(answers.serve().await).await;
    let ca = Some(pebble.listener_ca_pem.as_slice());

    let (client, credentials) =
        AcmeClient::new(&pebble.directory_url, ca, Some("ops@example.test"), None).await.unwrap();
    let credentials = credentials.expect("a new account's credentials, to store");
    let issued = order(&client, &answers, HOST).await.unwrap();
    assert_eq!(issued.host, HOST);
    let root = pebble.issuing_root().await;
    check_chain(&issued, HOST, &root);
    assert!(answers.requests.load(Ordering::SeqCst) >= 1, "pebble fetched the answer");

    // The next active core: the stored account, no new one.
    let stored = interlock::core::acme::AccountCredentials::from_stored(credentials.as_bytes().to_vec()).unwrap();
    let (again, created) = AcmeClient::new(&pebble.directory_url, ca, None, Some(stored.clone())).await.unwrap();
    assert!(created.is_none(), "the stored account is used, none created");
    assert_eq!(again.account_id(), client.account_id());
    let renewed = order(&again, &answers, HOST).await.unwrap();
    check_chain(&renewed, HOST, &root);
    assert_ne!(renewed.key_pem, issued.key_pem, "a new key for every certificate");
    assert_ne!(renewed.chain_pem, issued.chain_pem);

    // An account of another directory is refused, not silently replaced.
    let other = format!("{}/", pebble.directory_url);
    let error = AcmeClient::new(&other, ca, None, Some(stored)).await.unwrap_err();
    assert!(matches!(error, AcmeError::Account(_)), "{error:?}");
    // Without the CA of pebble's listener the client does not trust it.
    let error = AcmeClient::new(&pebble.directory_url, None, None, None).await.unwrap_err();
    assert!(matches!(error, AcmeError::Transport(_) | AcmeError::Roots(_)), "{error:?}");
    eprintln!("two certificates from pebble in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_not_served_fails_the_order_and_issues_nothing() {
    let answers = Answers::default();
    let pebble = Pebble::start(answers.serve().await).await;
    let (client, _) = AcmeClient::new(&pebble.directory_url, Some(&pebble.listener_ca_pem), None, None).await.unwrap();

    let mut pending = client.order(HOST).await.unwrap();
    assert!(pending.answer().is_some());
    // Finishing before telling the CA is refused (the order would only time out).
    // (Checked on a second order: `finish` consumes the order.)
    let early = client.order("early.example.test").await.unwrap();
    assert!(matches!(early.finish(FINISH).await, Err(AcmeError::NotReady(host)) if host == "early.example.test"));

    // The answer is never published: the proxies answer 404. Pebble (without its random delay)
    // may validate before it answers "ready", and then says so there; else `finish` finds the
    // order invalid. Either way: the challenge failed, nothing is issued.
    let error = match pending.ready().await {
        Ok(()) => pending.finish(FINISH).await.expect_err("nothing is issued without the answer"),
        Err(error) => error,
    };
    match &error {
        AcmeError::ChallengeFailed { host, detail } => {
            assert_eq!(host, HOST);
            assert!(detail.contains("404") || detail.contains("unauthorized"), "{detail}");
        }
        other => panic!("expected ChallengeFailed, got {other:?}"),
    }
    assert!(answers.requests.load(Ordering::SeqCst) >= 1, "pebble asked for the answer and got a 404");
    assert_eq!(error.retry_after(), None);
    assert_eq!(error.next_try(1, SystemTime::now()), Duration::from_secs(60), "the orderer's backoff");

    // A wildcard is never ordered over HTTP-01.
    assert!(matches!(client.order("*.example.test").await, Err(AcmeError::Host(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_the_ca_forgot_is_told_apart() {
    let answers = Answers::default();
    let mut pebble = Pebble::start(answers.serve().await).await;
    let ca_pem = pebble.listener_ca_pem.clone();
    let ca = Some(ca_pem.as_slice());
    let (_, credentials) = AcmeClient::new(&pebble.directory_url, ca, None, None).await.unwrap();
    pebble.restart_ca().await;

    let (client, created) = AcmeClient::new(&pebble.directory_url, ca, None, credentials).await.unwrap();
    assert!(created.is_none());
    let error = client.order(HOST).await.expect_err("the CA no longer knows the account");
    assert!(error.account_unknown(), "{error:?}");
    // What the orderer then does: a new account, and the order goes through.
    let (client, created) = AcmeClient::new(&pebble.directory_url, ca, None, None).await.unwrap();
    assert!(created.is_some());
    order(&client, &answers, HOST).await.unwrap();
}
