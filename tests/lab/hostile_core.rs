//! A hostile core, on the lab (issue 19): the extension runs on every node with that node's
//! Docker socket, so whoever answers on the core's address must not be able to turn it against
//! the node. The real `interlock extension` binary runs here on the host against lb-00's engine,
//! pointed at a fake core in this process, beside two plain containers on lb-00: the cluster's
//! proxy (labelled as the extension's proxy service) and a victim (another service's).
//!
//! The fake core serves deliveries that write `/pwned`, check with `sh -c 'echo pwned > /pwned'`,
//! reload with SIGKILL, and record to another applied file:
//! - (a) without knowing any key (aimed at the victim): its answers carry no valid MAC, so the
//!   extension never uses them and says the answer is not the core's;
//! - (b) with a valid MAC (the test knows the token it gave the extension), aimed at the victim;
//! - (c) the same, aimed at the real proxy service.
//!
//! In every case nothing is written into either container, nothing runs in them but the
//! extension's own read of its applied file, nothing is signalled (both keep running, not
//! restarted), and the extension logs its refusal; in (b) and (c) it reports it to the core as a
//! rejection "refused by the extension: …".

#[path = "../support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reconcilers::desired::{DeliveredFile, Delivery};
use reconcilers::token::{Authorization, RESPONSE_MAC_HEADER, extension_token, response_mac};
use support::{docker, docker_quiet, eventually, lab_env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EXTENSION: &str = "hostile-core";
const PROXY: &str = "hostile-core-proxy";
const VICTIM: &str = "hostile-core-victim";
const CONFIG_PATH: &str = "/etc/nginx/nginx.conf";
const HASH: &str = "5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f5e1f";

/// lb-00's engine: the extension's node.
fn node_host() -> String {
    lab_env("LAB_HOST_lb_00").unwrap_or_else(|| {
        panic!("\n\nThe Swarm lab is not running (no /run/interlock-lab/env).\nStart it with `deploy/lab/swarm-lab.sh up` (as root).\n\n")
    })
}

/// `docker -H <lb-00> ARGS`, panicking on failure.
fn on_node(args: &[&str]) -> String {
    let host = node_host();
    let mut all = vec!["-H", host.as_str()];
    all.extend_from_slice(args);
    docker(&all)
}

/// Whether `docker -H <lb-00> exec CONTAINER ARGV` exits 0.
fn exec_succeeds(container: &str, argv: &[&str]) -> bool {
    Command::new("docker")
        .args(["-H", &node_host(), "exec", container])
        .args(argv)
        .output()
        .expect("run the docker CLI")
        .status
        .success()
}

/// Removes the containers and stops the extension, also when the test fails.
struct Cleanup {
    extension: Option<Child>,
}

impl Cleanup {
    fn stop_extension(&mut self) {
        if let Some(mut child) = self.extension.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.stop_extension();
        let host = node_host();
        for name in [PROXY, VICTIM] {
            docker_quiet(&["-H", &host, "rm", "-f", name]);
        }
    }
}

/// A plain container on lb-00 that Docker's filters take for a task of service `service`.
fn start_container(service: &str) -> String {
    docker_quiet(&["-H", &node_host(), "rm", "-f", service]);
    let label = format!("com.docker.swarm.service.name={service}");
    let image = lab_env("LAB_IMAGE_PROXY").unwrap_or_else(|| "local/interlock-proxy:lab".to_owned());
    on_node(&["run", "-d", "--name", service, "--label", &label, &image, "sleep", "600"]).trim().to_owned()
}

/// What must not change in a container: running, since when, its nginx.conf.
fn fingerprint(container: &str) -> (String, String) {
    let state = on_node(&["inspect", "-f", "{{.State.Running}} {{.State.StartedAt}} {{.RestartCount}}", container]);
    let config = on_node(&["exec", container, "cat", CONFIG_PATH]);
    (state.trim().to_owned(), config)
}

/// What the fake core saw.
#[derive(Default)]
struct Seen {
    /// Request lines and their `Authorization`.
    requests: Vec<(String, String)>,
    /// Report bodies.
    reports: Vec<serde_json::Value>,
}

/// An HTTP core on loopback serving `delivery` for `EXTENSION`; it signs its answers with
/// `token` when it has one.
async fn fake_core(delivery: Delivery, token: Option<String>, seen: Arc<Mutex<Seen>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let json = serde_json::to_string(&delivery).unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (json, token, seen) = (json.clone(), token.clone(), seen.clone());
            tokio::spawn(async move {
                let Some((head, body)) = read_request(&mut stream).await else { return };
                let line = head.lines().next().unwrap_or_default().to_owned();
                let auth = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().starts_with("authorization:").then(|| l[14..].trim().to_owned())
                    })
                    .unwrap_or_default();
                let (status, answer) = if line.starts_with("POST ") {
                    if let Ok(report) = serde_json::from_slice(&body) {
                        seen.lock().unwrap().reports.push(report);
                    }
                    ("204 No Content", String::new())
                } else if line.contains(&format!("after={HASH}")) {
                    // Has it: a short long poll.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    ("204 No Content", String::new())
                } else {
                    ("200 OK", json)
                };
                seen.lock().unwrap().requests.push((line, auth.clone()));
                let mac = match (&token, Authorization::parse(&auth)) {
                    (Some(token), Some(auth)) => {
                        let code = status[..3].parse().unwrap();
                        format!(
                            "{RESPONSE_MAC_HEADER}: {}\r\n",
                            response_mac(token, EXTENSION, &auth.nonce, code, answer.as_bytes())
                        )
                    }
                    _ => String::new(),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{mac}content-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// A request's head and body (by its content-length).
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while data.len() < end + length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    Some((head, data[end..end + length].to_vec()))
}

/// Runs the built `interlock extension` on the host against lb-00's engine and `core`; its log
/// goes to `log`.
fn start_extension(core: std::net::SocketAddr, token_file: &PathBuf, log: &PathBuf) -> Child {
    let out = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_interlock"))
        .arg("extension")
        .env("RUST_LOG", "info")
        .env("DOCKER_HOST", node_host())
        .env("INTERLOCK_EXTENSION_NAME", EXTENSION)
        .env("INTERLOCK_CORE_ENDPOINT", core.to_string())
        .env("INTERLOCK_HITLESS", "1")
        .env("INTERLOCK_PROXY_SERVICE", PROXY)
        .env("INTERLOCK_PROXY_KIND", "nginx")
        .env("INTERLOCK_PROXY_CONFIG_PATH", CONFIG_PATH)
        .env("INTERLOCK_TOKEN_FILE", token_file)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("run interlock extension")
}

fn read_log(log: &PathBuf) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(log) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// Now, as docker events takes it (Unix seconds and nanoseconds).
fn now() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// The actions of `container`'s docker events between `since` and `until` ([`now`]).
fn events(container: &str, since: &str, until: &str) -> Vec<String> {
    let filter = format!("container={container}");
    on_node(&["events", "--since", since, "--until", until, "--filter", &filter, "--format", "{{.Action}}"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A delivery that would run a shell in a container, write `/pwned`, empty `/` and SIGKILL it.
fn malicious(proxy_service: &str) -> Delivery {
    Delivery {
        extension: EXTENSION.into(),
        proxy_service: proxy_service.into(),
        hash: HASH.into(),
        generation: 1_000_000,
        files: vec![
            DeliveredFile { path: "/pwned".into(), content: "pwned\n".into() },
            DeliveredFile { path: CONFIG_PATH.into(), content: "pwned\n".into() },
        ],
        clear_dirs: vec!["/".into()],
        check: ["sh", "-c", "echo pwned > /pwned"].map(String::from).to_vec(),
        reload_signal: "SIGKILL".into(),
        applied_file: "/pwned-applied".into(),
        checked_with: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_core_can_neither_run_write_nor_signal_anything() {
    let mut cleanup = Cleanup { extension: None };
    let proxy = start_container(PROXY);
    let victim = start_container(VICTIM);
    let before = [(PROXY, fingerprint(&proxy)), (VICTIM, fingerprint(&victim))];
    let host_pwned_before = std::path::Path::new("/pwned").exists();

    let dir = std::env::temp_dir().join(format!("hostile-core-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = extension_token("hostile-core-test-key", EXTENSION);
    let token_file = dir.join("token");
    std::fs::File::create(&token_file).unwrap().write_all(format!("{token}\n").as_bytes()).unwrap();

    // (what, the delivery's target service, whether the fake core signs, what the log says)
    let cases = [
        ("(a) an impostor knowing no key", VICTIM, false, "not the core's"),
        (
            "(b) a core with the token, aimed at the victim",
            VICTIM,
            true,
            "refused a delivery: it is for the containers of service",
        ),
        ("(c) a core with the token, aimed at the proxy", PROXY, true, "refused a delivery: its check command"),
    ];
    for (what, target, signs, logged) in cases {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let delivery = malicious(target);
        let core = fake_core(delivery.clone(), signs.then(|| token.clone()), seen.clone()).await;
        let since = now();
        let log = dir.join(format!("extension-{}.log", &what[1..2]));
        cleanup.extension = Some(start_extension(core, &token_file, &log));

        eventually(&format!("{what}: the extension logs {logged:?}"), Duration::from_secs(15), || {
            let text = read_log(&log);
            async move { text.contains(logged).then_some(()) }
        })
        .await;
        if signs {
            let reports = eventually(&format!("{what}: the refusal reported"), Duration::from_secs(15), || {
                let reports = seen.lock().unwrap().reports.clone();
                async move { (!reports.is_empty()).then_some(reports) }
            })
            .await;
            let report = &reports[0];
            assert_eq!(report["container"], proxy.as_str(), "{what}: reported for the proxy container: {report}");
            assert_eq!(report["rejected"], delivery.hash.as_str(), "{what}: {report}");
            let error = report["error"].as_str().unwrap_or_default();
            assert!(error.starts_with("refused by the extension: "), "{what}: {report}");
        }
        // Past a rescan, when a rejected config would be retried.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let alive = cleanup.extension.as_mut().unwrap().try_wait().unwrap();
        assert!(alive.is_none(), "{what}: the extension exited ({alive:?}):\n{}", read_log(&log));
        cleanup.stop_extension();
        let until = now();
        let text = read_log(&log);
        // Docker's own record first (the checks below exec in the containers): no signal, no
        // archive written, no exec but the extension's read of its applied file in its proxy.
        eprintln!("--- {what}: the extension's log\n{text}");
        for (name, id) in [(PROXY, &proxy), (VICTIM, &victim)] {
            let actions = events(id, &since, &until);
            if signs && name == PROXY {
                // The record is read: the extension's own read of its applied file is in it.
                assert!(
                    actions.iter().any(|a| a.starts_with("exec_create: cat /interlock/applied")),
                    "{what}: no record of the extension's read in {name}: {actions:?}"
                );
            }
            for action in actions {
                let allowed =
                    action.starts_with("exec_die") || (name == PROXY && action.ends_with(": cat /interlock/applied"));
                assert!(allowed, "{what}: {name} saw {action:?}\n{text}");
            }
        }

        for (name, id) in [(PROXY, &proxy), (VICTIM, &victim)] {
            let was = &before.iter().find(|(n, _)| *n == name).unwrap().1;
            assert_eq!(&fingerprint(id), was, "{what}: {name} was signalled, restarted or rewritten\n{text}");
            for path in ["/pwned", "/pwned-applied", "/interlock/applied"] {
                assert!(!exec_succeeds(id, &["test", "-e", path]), "{what}: {path} in {name}\n{text}");
            }
        }
        assert_eq!(std::path::Path::new("/pwned").exists(), host_pwned_before, "{what}: /pwned on the host");
        let seen = seen.lock().unwrap();
        assert!(!seen.requests.is_empty(), "{what}: the extension never asked the fake core\n{text}");
        for (line, auth) in &seen.requests {
            assert!(auth.starts_with("Interlock-HMAC "), "{what}: {line} not signed: {auth:?}");
            assert!(!auth.contains(&token), "{what}: the token on the wire");
        }
        if !signs {
            assert!(seen.reports.is_empty(), "{what}: an unsigned delivery was acted on: {:?}", seen.reports);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
