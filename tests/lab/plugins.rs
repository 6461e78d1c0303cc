//! Interlock 0.3's command line against the lab: the seed's `interlock --plugin example start`,
//! run as the built binary against the lab's manager, its output checked line by line against
//! the seed's form; and the same with `--swarm-url` and no `DOCKER_HOST`. Carina's sign-in flags,
//! which need no lab: `tests/plugins.rs`. And `interlock -p stats start` as a plain process (as
//! 0.3 ran): 0.3's container series of the engine it is connected to reach a Carbon receiver (a
//! listener in the test), and it says how the other nodes' are had.
//!
//! The seed (0.3.2 on Carina) printed:
//!
//! ```text
//! time="2015-10-19T01:22:59Z" level=info msg="interlock running version=0.3.2 (2df2d23)"
//! time="2015-10-19T01:22:59Z" level=info msg="loading plugin name=example version=0.1"
//! time="2015-10-19T01:22:59Z" level=info msg="[interlock] dispatching event to plugin: name=example version=0.1"
//! time="2015-10-19T01:22:59Z" level=info msg="[example] action=received event= time=1445217779076879776"
//! ```
//!
//! interlock prints the same lines, with its version, and `event=interlock-start` where 0.3.2
//! left the name empty (see `src/core/plugins/example.rs`). Like every lab test, these fail (never
//! pass) without the lab.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use regex::Regex;
use support::{docker, docker_quiet, eventually, lab, lab_env, service};

#[path = "../support/mod.rs"]
mod support;

const APP_IMAGE: &str = "local/interlock-app:lab";
const TEST_LABEL: &str = "com.docker.interlock.lab-test";

/// The lab manager's address, as `support::lab` finds it: what the binary gets as DOCKER_HOST.
fn lab_host() -> String {
    std::env::var("INTERLOCK_LAB_DOCKER_HOST")
        .ok()
        .or_else(|| lab_env("LAB_MANAGER_HOST"))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

fn unix_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

/// `interlock ARGS start` running, its stderr collected line by line.
struct Started {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Started {
    fn spawn(args: &[&str], docker_host: Option<&str>) -> Self {
        Self::spawn_with_env(args, docker_host, &[])
    }

    fn spawn_with_env(args: &[&str], docker_host: Option<&str>, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_interlock"));
        command.args(args).env_remove("RUST_LOG").stdout(Stdio::null()).stderr(Stdio::piped());
        command.envs(env.iter().copied());
        match docker_host {
            Some(host) => command.env("DOCKER_HOST", host),
            None => command.env_remove("DOCKER_HOST"),
        };
        let mut child = command.spawn().expect("run target/debug/interlock");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Started { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    async fn wait_for_line(&self, what: &str, matches: impl Fn(&str) -> bool) {
        eventually(what, Duration::from_secs(30), || async { self.lines().iter().any(|l| matches(l)).then_some(()) })
            .await
    }

    /// SIGTERM, then the exit code (within 10 s) and every line written.
    fn terminate(mut self) -> (Option<i32>, Vec<String>) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(killed.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for interlock") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("interlock start did not exit within 10 s of SIGTERM:\n{}", self.lines().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader thread sees the end of the pipe right after the exit.
        std::thread::sleep(Duration::from_millis(200));
        (status.code(), self.lines())
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The seed's line form: logrus's text format.
fn logrus_line() -> Regex {
    Regex::new(r#"^time="\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z" level=(debug|info|warning|error) msg=(.*)$"#).unwrap()
}

/// `[example] action=received event=NAME time=NANOS` as `(NAME, NANOS)`.
fn example_event(line: &str) -> Option<(String, u128)> {
    let re = Regex::new(r#"msg="\[example\] action=received event=(\S*) time=(\d{19})"$"#).unwrap();
    let captures = re.captures(line)?;
    Some((captures[1].to_owned(), captures[2].parse().unwrap()))
}

#[tokio::test]
async fn the_example_plugin_prints_the_seeds_lines() {
    let _api = lab().await;
    let host = lab_host();
    let before = unix_nanos();
    let started = Started::spawn(&["-p", "example", "start"], Some(&host));
    started
        .wait_for_line("the example plug-in received interlock-start", |l| {
            example_event(l).is_some_and(|(name, _)| name == "interlock-start")
        })
        .await;

    // Events: a service created and removed (swarm events every manager sees).
    let name = format!("plugins-test-{}", std::process::id());
    docker_quiet(&["service", "rm", &name]);
    service::Create::new()
        .detach()
        .quiet()
        .name(&name)
        .label(TEST_LABEL, &name)
        .replicas(0)
        .image(APP_IMAGE)
        .run_with(docker);
    started.wait_for_line("the service's create event", |l| example_event(l).is_some_and(|(n, _)| n == "create")).await;
    docker(&["service", "rm", &name]);
    started.wait_for_line("the service's remove event", |l| example_event(l).is_some_and(|(n, _)| n == "remove")).await;
    let (code, lines) = started.terminate();
    let after = unix_nanos();
    let all = lines.join("\n");
    assert_eq!(code, Some(0), "exit 0 after SIGTERM:\n{all}");

    // Every line in logrus's form.
    let form = logrus_line();
    for line in &lines {
        assert!(form.is_match(line), "not in the seed's form: {line:?}\n{all}");
    }
    // The seed's four lines, in its order, first.
    assert!(lines.len() >= 4, "{all}");
    let version = Regex::new(r#" level=info msg="interlock running version=\d+\.\d+\.\d+ \([^()\s]+\)"$"#).unwrap();
    assert!(version.is_match(&lines[0]), "{}", lines[0]);
    assert!(lines[1].ends_with(r#" level=info msg="loading plugin name=example version=0.1""#), "{}", lines[1]);
    assert!(
        lines[2].ends_with(r#" level=info msg="[interlock] dispatching event to plugin: name=example version=0.1""#),
        "{}",
        lines[2]
    );
    let (first, time) = example_event(&lines[3]).unwrap_or_else(|| panic!("{}", lines[3]));
    assert_eq!(first, "interlock-start");
    assert!(lines[3].contains(" level=info msg="), "{}", lines[3]);
    assert!((before..=after).contains(&time), "time= is unix nanoseconds of the run: {time}");

    // interlock-start first, interlock-stop last, the Docker events between, in time order.
    let events: Vec<(String, u128)> = lines.iter().filter_map(|l| example_event(l)).collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"interlock-start"), "{names:?}");
    assert_eq!(names.last(), Some(&"interlock-stop"), "{names:?}");
    assert_eq!(names.iter().filter(|n| n.starts_with("interlock-")).count(), 2, "{names:?}");
    let create = names.iter().position(|n| *n == "create").expect("create");
    let remove = names.iter().position(|n| *n == "remove").expect("remove");
    assert!(create < remove, "{names:?}");
    for (_, t) in &events {
        assert!((before..=after).contains(t), "every event's time is in the run: {t}");
    }
    assert!(lines.iter().any(|l| l.ends_with(" level=info msg=SIGTERM")), "{all}");
}

#[tokio::test]
async fn swarm_url_connects_without_docker_host() {
    let _api = lab().await;
    let host = lab_host();
    let started = Started::spawn(&["--swarm-url", &host, "--plugin", "example", "start"], None);
    started
        .wait_for_line("the example plug-in received interlock-start", |l| {
            example_event(l).is_some_and(|(name, _)| name == "interlock-start")
        })
        .await;
    let (code, lines) = started.terminate();
    assert_eq!(code, Some(0), "{}", lines.join("\n"));
    let last = lines.iter().filter_map(|l| example_event(l)).next_back().map(|(n, _)| n);
    assert_eq!(last.as_deref(), Some("interlock-stop"), "{}", lines.join("\n"));
}

/// `interlock -p stats start` as a plain process sends 0.3's container series of the
/// engine it is connected to (the lab's manager: an app task placed there), under the engine's
/// name, besides `cluster.events`; and, on a manager outside a container, says how the other
/// nodes' series are had (the agent as a global service on the other nodes).
#[tokio::test]
async fn the_stats_plugin_as_a_plain_process_sends_its_engines_container_series() {
    use tokio::io::AsyncBufReadExt as _;

    let api = lab().await;
    let engine = api.engine().await.expect("the lab manager's engine");
    let node = interlock::carbon::sanitize(&engine.name);
    let name = format!("stats-plain-{}", std::process::id());
    docker_quiet(&["service", "rm", &name]);
    service::Create::new()
        .detach()
        .quiet()
        .name(&name)
        .label(TEST_LABEL, &name)
        .constraint(&format!("node.hostname=={}", engine.name))
        .image(APP_IMAGE)
        .run_with(docker);

    let carbon = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = carbon.local_addr().unwrap().to_string();
    let prefix = format!("statsplain{}", std::process::id());
    let started = Started::spawn_with_env(
        &["-p", "stats", "start"],
        Some(&lab_host()),
        &[
            ("STATS_CARBON_ADDRESS", &address),
            ("STATS_PREFIX", &prefix),
            ("STATS_IMAGE_NAME_FILTER", "interlock-app"),
            ("STATS_INTERVAL", "1"),
        ],
    );
    // Lines until the app task's whole reading (its container `NAME.1.TASK` is `NAME_1_TASK`).
    let task_series = format!("{prefix}.containers.nodes.{node}.{name}_1_");
    let lines = tokio::time::timeout(Duration::from_secs(60), async {
        let (stream, _) = carbon.accept().await.unwrap();
        let mut reader = tokio::io::BufReader::new(stream).lines();
        let mut seen = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            // The last of a reading's 16 lines.
            let done = line.starts_with(&task_series) && line.contains(".network.txDropped ");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    })
    .await;
    let (code, log) = started.terminate();
    docker_quiet(&["service", "rm", &name]);
    let log = log.join("\n");
    let lines = lines.unwrap_or_else(|_| panic!("no whole reading of {task_series}* in 60 s; the log:\n{log}"));
    assert_eq!(code, Some(0), "{log}");
    assert!(lines.iter().any(|l| l.starts_with(&format!("{prefix}.cluster.events 1 "))), "{lines:?}");
    for key in ["cpu.totalUsage", "memory.usage", "memory.limit", "network.rxBytes"] {
        assert!(
            lines.iter().any(|l| l.starts_with(&task_series) && l.contains(&format!(".{key} "))),
            "{key}: {lines:?}"
        );
    }
    assert!(
        lines.iter().filter(|l| l.contains(".containers.")).all(|l| l.contains(&format!(".nodes.{node}."))),
        "only the connected engine's containers: {lines:?}"
    );
    assert!(log.contains(&format!("statistics from this engine ({}) only", engine.name)), "{log}");
    assert!(log.contains("--mode global --constraint node.id!="), "how to run the agent on the other nodes: {log}");
}
