//! `deploy/stack.yml` on the lab: interlock deployed with `docker stack deploy`, serving the
//! service-clusters walk-through, and a replaced TOML converging.
//!
//! The walk-through as `tests/lab/walkthrough.rs` runs it (the lab's TOML with
//! `HitlessServiceUpdate = true`, node labels, the proxies pinned by hand, the two demo apps,
//! `/ping` through lb-00 and lb-01), except that interlock is the stack's service
//! `interlock_core` (dnsrr, on a manager, its TOML from the stack's config object) instead of a
//! `docker service create`d `interlock`. Its extensions call it by that name: the scaling step
//! (reloaded in place, no proxy restart) only passes when they reach it. Then the TOML changes
//! (a new `ProxyLabels` value) and is deployed as the README says, under a new config name with
//! the same `docker stack deploy`: the core restarts on it and converges. A TOML the core rejects
//! is rolled back to the previous one. And `local/interlock:lab` is checked against the
//! Dockerfile's layout.
//!
//! Run it alone against the lab: `cargo test --features lab --test lab_stack`
//! (`INTERLOCK_IMAGE=IMAGE` runs the core from another image on the manager, such as one built
//! from the Dockerfile).

#[path = "../support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use interlock::docker::DockerClient;
use reconcilers::observed::ServiceFacts;
use reconcilers::ownership::{LABEL_MANAGED_BY, MANAGED_BY};
use support::walkthrough::{self, APPS, answer_becomes, answered_by, assert_demo_answer, pin_proxy, pinned};
use support::{docker, docker_quiet, eventually, lab, lab_env};

/// The stack's name, as the README deploys it; its core is `<stack>_core`.
const STACK: &str = "interlock";
const CORE: &str = "interlock_core";
const STACK_FILE: &str = "deploy/stack.yml";
/// The lab's TOML, and the copies this test deploys (hitless updates on, as in the walk-through).
const CONFIG: &str = "target/stack.hitless.toml";
const CHANGED_CONFIG: &str = "target/stack.hitless.changed.toml";
const BROKEN_CONFIG: &str = "target/stack.broken.toml";
const OPERATOR_IMAGE: &str = "local/interlock:lab";

/// Removes the core (and any other operator in the lab), the stack, the demo apps and everything
/// interlock owns, and waits until the core's container has stopped: until then it reconciles.
async fn clean(api: &DockerClient) {
    // Removes `interlock_core` among the others, and waits for its container.
    support::stop_demo_operator(api).await;
    docker_quiet(&["stack", "rm", STACK]);
    eventually("the stack's core stopped", Duration::from_secs(30), || async {
        docker(&["ps", "-q", "--filter", &format!("label=com.docker.swarm.service.name={CORE}")])
            .trim()
            .is_empty()
            .then_some(())
    })
    .await;
    support::remove_services(&APPS);
    support::remove_owned_services(api).await;
    eventually("old services gone", Duration::from_secs(30), || async {
        let left = api.list_services("").await.ok()?;
        left.iter().all(|s| !APPS.contains(&s.def.name.as_str()) && !s.def.name.starts_with("interlock")).then_some(())
    })
    .await;
    for c in api.list_configs(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}")).await.unwrap() {
        docker_quiet(&["config", "rm", &c.id]);
    }
    // `docker stack rm` removes the stack's config objects; these are what a failed one left.
    let stack_configs =
        docker(&["config", "ls", "-q", "--filter", &format!("label=com.docker.stack.namespace={STACK}")]);
    for id in stack_configs.split_whitespace() {
        docker_quiet(&["config", "rm", id]);
    }
}

/// The lab's TOML with `HitlessServiceUpdate = true` in each extension and us-east's
/// `proxy_region` set to `region`, written to `path`. Returns its absolute path.
fn write_config(path: &str, east_proxy_region: &str) -> PathBuf {
    let out = walkthrough::hitless_config(|line| {
        if line.trim() == r#"proxy_region = "us-east""# {
            line.replace(r#""us-east""#, &format!("{east_proxy_region:?}"))
        } else {
            line.to_owned()
        }
    });
    assert!(out.contains(&format!("proxy_region = {east_proxy_region:?}")), "{out}");
    std::fs::create_dir_all("target").unwrap();
    std::fs::write(path, out).unwrap();
    std::fs::canonicalize(path).unwrap()
}

/// The core's image: `local/interlock:lab`, or `INTERLOCK_IMAGE` when set (an image built from
/// the Dockerfile and loaded on the manager, say: only the core runs from it; the TOML's
/// extensions keep the lab's image).
fn core_image() -> String {
    std::env::var("INTERLOCK_IMAGE").unwrap_or_else(|_| OPERATOR_IMAGE.to_owned())
}

/// `sha256sum FILE | cut -c1-12`: the config version the README derives from the TOML.
fn version_of(path: &PathBuf) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().expect("run sha256sum");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)[..12].to_owned()
}

/// `INTERLOCK_CONFIG=… INTERLOCK_CONFIG_VERSION=… docker stack deploy -c deploy/stack.yml
/// interlock`, as the README runs it (with `--resolve-image never`: the lab has no registry).
/// Returns the name of the config object the stack now names.
fn stack_deploy(config: &PathBuf) -> String {
    let version = version_of(config);
    let output = std::process::Command::new("docker")
        .args(["stack", "deploy", "--resolve-image", "never", "-c", STACK_FILE, STACK])
        .env("INTERLOCK_IMAGE", core_image())
        .env("INTERLOCK_CONFIG", config)
        .env("INTERLOCK_CONFIG_VERSION", &version)
        .output()
        .expect("run the docker CLI");
    assert!(
        output.status.success(),
        "docker stack deploy: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    format!("interlock-config-{version}")
}

/// The config objects the core's service mounts, by name.
fn core_configs() -> String {
    docker(&[
        "service",
        "inspect",
        "-f",
        "{{range .Spec.TaskTemplate.ContainerSpec.Configs}}{{.ConfigName}} {{end}}",
        CORE,
    ])
    .trim()
    .to_owned()
}

/// `interlock plan` run in the core's container, where it knows its own service name (run on the
/// host, `plan` would want the extensions to call `interlock:8080`): `Some` when it plans nothing.
fn plan_in_core_is_empty() -> Option<()> {
    let ids = docker(&["ps", "-q", "--filter", &format!("label=com.docker.swarm.service.name={CORE}")]);
    let id = ids.lines().next()?;
    let out = std::process::Command::new("docker")
        .args(["exec", id, "interlock", "plan", "-c", "/config.toml"])
        .output()
        .expect("run the docker CLI");
    (out.status.success() && String::from_utf8_lossy(&out.stdout).contains("nothing to do")).then_some(())
}

async fn service(api: &DockerClient, name: &str) -> ServiceFacts {
    api.inspect_service(name).await.unwrap().unwrap_or_else(|| panic!("service {name} exists"))
}

/// Running tasks of a service: their IDs and the hostnames of their nodes.
async fn running(api: &DockerClient, name: &str) -> Vec<(String, String)> {
    let Ok(Some(s)) = api.inspect_service(name).await else { return vec![] };
    let nodes = api.list_nodes().await.unwrap();
    let mut tasks: Vec<(String, String)> = api
        .list_tasks()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.service_id == s.id && t.running)
        .filter_map(|t| nodes.iter().find(|n| n.id == t.node_id).map(|n| (t.id.clone(), n.hostname.clone())))
        .collect();
    tasks.sort();
    tasks
}

/// Prints a step with the time since the test started (`--nocapture` shows them).
fn step(started: Instant, what: &str) {
    eprintln!("[{:6.1} s] {what}", started.elapsed().as_secs_f64());
}

#[tokio::test]
async fn the_walkthrough_served_by_the_stack_and_a_replaced_toml_converges() {
    let started = Instant::now();
    let config = write_config(CONFIG, "us-east");
    let api = lab().await;
    let manager = lab_env("LAB_MANAGER_NAME").expect("LAB_MANAGER_NAME in /run/interlock-lab/env");
    clean(&api).await;
    for node in ["lb-00", "lb-01"] {
        docker_quiet(&["node", "update", "--label-rm", "nodetype", "--label-rm", "region", node]);
    }

    step(started, "the walk-through's node labels and network, then docker stack deploy");
    // The walk-through's node labels and network, then interlock as the stack.
    docker(&["node", "update", "--label-add", "nodetype=loadbalancer", "--label-add", "region=us-east", "lb-00"]);
    docker(&["node", "update", "--label-add", "nodetype=loadbalancer", "--label-add", "region=us-west", "lb-01"]);
    docker_quiet(&["network", "create", "-d", "overlay", "--attachable", "interlock"]);
    let first = stack_deploy(&config);
    assert_eq!(core_configs(), first);
    let spec = |format: &str| docker(&["service", "inspect", "-f", format, CORE]).trim().to_owned();
    assert_eq!(spec("{{.Spec.EndpointSpec.Mode}}"), "dnsrr");
    assert_eq!(spec("{{json .Spec.TaskTemplate.Placement.Constraints}}"), r#"["node.role == manager"]"#);
    assert_eq!(spec("{{json .Spec.TaskTemplate.ContainerSpec.Args}}"), r#"["run","-c","/config.toml"]"#);
    assert_eq!(spec("{{.Spec.TaskTemplate.Placement.MaxReplicas}}"), "1");
    assert_eq!(spec("{{.Spec.UpdateConfig.Order}}"), "stop-first");
    assert_eq!(spec("{{.Spec.TaskTemplate.ContainerSpec.Image}}"), core_image());
    let core = eventually("the stack's core runs on the manager", Duration::from_secs(60), || async {
        let tasks = running(&api, CORE).await;
        (tasks.len() == 1 && tasks[0].1 == manager).then(|| tasks[0].0.clone())
    })
    .await;

    step(started, "the core runs; pinning the proxies by hand");
    // The proxies are interlock's; the walk-through pins them by hand.
    for region in ["us-east", "us-west"] {
        let proxy = format!("interlock-proxy-{region}");
        eventually(&format!("the stack's core created {proxy}"), Duration::from_secs(60), || async {
            api.inspect_service(&proxy).await.ok().flatten().map(drop)
        })
        .await;
        pin_proxy(region);
    }
    // Extensions are told the core's own service name (no EndpointOverride in the TOML).
    let extension = service(&api, "interlock-ext-us-east").await.def;
    assert!(extension.env.contains(&format!("INTERLOCK_CORE_ENDPOINT={CORE}:8080")), "{:?}", extension.env);

    step(started, "the demo apps");
    // The apps' networks and the apps, as the walk-through creates them.
    for (name, region) in [("demo-east", "us-east"), ("demo-west", "us-west")] {
        docker_quiet(&["network", "create", "-d", "overlay", name]);
        walkthrough::create_demo_app(name, region);
    }
    walkthrough::assert_clusters_isolated().await;
    for (proxy, node) in [("interlock-proxy-us-east", "lb-00"), ("interlock-proxy-us-west", "lb-01")] {
        eventually(&format!("{proxy} runs on {node} only"), Duration::from_secs(60), || async {
            let tasks = running(&api, proxy).await;
            (tasks.len() == 1 && tasks[0].1 == node).then_some(())
        })
        .await;
    }

    step(started, "served through lb-00 and lb-01; scaling demo-east");
    // Hitless through the stack: demo-east scaled to 2 reaches the running proxy in place, which
    // needs its extension to reach the core by its stack name.
    let east_tasks = running(&api, "interlock-proxy-us-east").await;
    docker(&["service", "scale", "--detach", "demo-east=2"]);
    answered_by("lb-00", "demo-east.local", 2).await;
    assert_eq!(running(&api, "interlock-proxy-us-east").await, east_tasks, "reloaded in place, not restarted");

    step(started, "a changed TOML under a new config name");
    // A changed TOML, deployed as the README says: a new config name, the same stack deploy.
    let changed = write_config(CHANGED_CONFIG, "us-east-v2");
    let second = stack_deploy(&changed);
    assert_ne!(second, first);
    assert_eq!(core_configs(), second, "the core's spec names the new config object");
    eventually(
        "the new core converged: us-east's proxy has the new ProxyLabels value",
        Duration::from_secs(60),
        || {
            let api = &api;
            async move {
                let proxy = api.inspect_service("interlock-proxy-us-east").await.ok().flatten()?;
                (proxy.def.labels.get("proxy_region").map(String::as_str) == Some("us-east-v2")).then_some(())
            }
        },
    )
    .await;
    let new_core = running(&api, CORE).await;
    assert!(
        new_core.len() == 1 && new_core[0].0 != core && new_core[0].1 == manager,
        "one new core task: {new_core:?}"
    );
    assert_eq!(service(&api, "interlock-proxy-us-west").await.def.labels.get("proxy_region").unwrap(), "us-west");
    assert_eq!(service(&api, "interlock-proxy-us-east").await.def.constraints, pinned("us-east"), "pins kept");
    assert_demo_answer(&answer_becomes("lb-00", "demo-east.local", 200).await, "us-east");
    assert_demo_answer(&answer_becomes("lb-01", "demo-west.local", 200).await, "us-west");
    eventually("plan in the new core's container: nothing to do", Duration::from_secs(60), || async {
        plan_in_core_is_empty()
    })
    .await;
    // The old config object goes once nothing uses it, as the README says.
    eventually(&format!("docker config rm {first}"), Duration::from_secs(30), || async {
        std::process::Command::new("docker")
            .args(["config", "rm", &first])
            .output()
            .ok()?
            .status
            .success()
            .then_some(())
    })
    .await;

    step(started, "a TOML the core rejects");
    // A TOML the core rejects: its task exits, and Swarm rolls the core back onto the previous
    // spec (update_config: failure_action rollback), hence the previous TOML.
    let broken_text =
        std::fs::read_to_string(&changed).unwrap().replace(r#"PollInterval = "3s""#, r#"PollInterval = "3 s""#);
    assert!(broken_text.contains("3 s"));
    std::fs::write(BROKEN_CONFIG, broken_text).unwrap();
    let broken = std::fs::canonicalize(BROKEN_CONFIG).unwrap();
    let (code, out) = support::interlock(&["validate", "-c", broken.to_str().unwrap()]);
    assert_eq!(code, 1, "the broken TOML is rejected: {out}");
    let third = stack_deploy(&broken);
    eventually("the core rolled back onto the previous config object", Duration::from_secs(90), || async {
        let state = docker(&["service", "inspect", "-f", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", CORE]);
        (state.trim() == "rollback_completed" && core_configs() == second).then_some(())
    })
    .await;
    eventually("a core runs again after the rollback", Duration::from_secs(60), || async {
        (running(&api, CORE).await.len() == 1).then_some(())
    })
    .await;
    assert_ne!(third, second);
    assert_demo_answer(&answer_becomes("lb-00", "demo-east.local", 200).await, "us-east");

    step(started, "rolled back; docker stack rm and clean-up");
    clean(&api).await;
    let left = docker(&["config", "ls", "--format", "{{.Name}}"]);
    assert!(!left.lines().any(|n| n.starts_with("interlock-config-")), "the stack's config objects are gone: {left}");
    step(started, "done");
}

/// The value of the Dockerfile's instruction `name` (the first such line).
fn dockerfile_instruction(dockerfile: &str, name: &str) -> String {
    dockerfile
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("the Dockerfile has {name}"))
        .trim()
        .to_owned()
}

/// The lab cannot build the Dockerfile (no registry to pull its base images from), so it builds
/// `local/interlock:lab` itself: this checks the two have the same layout. The same ENTRYPOINT,
/// the same Debian release and packages (the Dockerfile's `apt-get install` list is the lab's
/// `PROXY_INCLUDE`), the user nginx, /run/haproxy, and the stream module installed but not
/// enabled by default.
#[tokio::test]
async fn the_labs_interlock_image_has_the_dockerfiles_layout() {
    let _ = lab().await;
    let dockerfile = std::fs::read_to_string("Dockerfile").unwrap();
    let entrypoint = dockerfile_instruction(&dockerfile, "ENTRYPOINT");
    let lab_entrypoint = docker(&["image", "inspect", "-f", "{{json .Config.Entrypoint}}", OPERATOR_IMAGE]);
    assert_eq!(lab_entrypoint.trim(), entrypoint.replace(' ', ""), "the lab's image and the Dockerfile agree");

    // The packages after `apt-get install … --no-install-recommends`, up to the command's end.
    let install = dockerfile.split("--no-install-recommends").nth(1).expect("an apt-get install");
    let mut packages: Vec<&str> =
        install.split(';').next().unwrap().split_whitespace().filter(|w| *w != "\\").collect();
    packages.sort_unstable();
    let lab_script = std::fs::read_to_string("deploy/lab/swarm-lab.sh").unwrap();
    let lab_include = lab_script.lines().find_map(|l| l.strip_prefix("PROXY_INCLUDE=")).expect("PROXY_INCLUDE");
    let mut lab_packages: Vec<&str> = lab_include.split(',').collect();
    lab_packages.sort_unstable();
    assert_eq!(packages, lab_packages, "the Dockerfile installs what the lab's image has");
    let suite = lab_script.lines().find_map(|l| l.strip_prefix("PROXY_SUITE=")).expect("PROXY_SUITE");
    assert!(dockerfile.contains(&format!("ARG RUNTIME_IMAGE=debian:{suite}-slim")), "the same Debian release");

    let script = format!(
        "set -e; for p in {}; do dpkg-query -W -f '${{Status}}' \"$p\" | grep -q 'install ok installed' || \
         {{ echo \"$p is not installed\"; exit 1; }}; done; getent passwd nginx >/dev/null; test -d /run/haproxy; \
         test ! -e /etc/nginx/modules-enabled/50-mod-stream.conf; test -e /usr/lib/nginx/modules/ngx_stream_module.so; \
         cut -d. -f1 /etc/debian_version; /usr/local/bin/interlock --version",
        packages.join(" ")
    );
    let out = docker(&["run", "--rm", "--entrypoint", "/bin/sh", OPERATOR_IMAGE, "-c", &script]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("12"), "bookworm: {out}");
    assert!(lines.next().is_some_and(|l| l.starts_with("interlock ")), "{out}");
}
