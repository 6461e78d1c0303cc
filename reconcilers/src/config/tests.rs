//! Parsing and validation tests: the seed config, every key, every rule, positions of errors.

use std::time::Duration;

use super::*;
use crate::observed::PublishMode;

const SEED: &str = include_str!("../../../deploy/examples/service-clusters.toml");

fn parse_ok(text: &str) -> Loaded {
    parse("test.toml", text).unwrap_or_else(|e| panic!("expected a valid config, got:\n{e}"))
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match parse("test.toml", text) {
        Ok(loaded) => panic!("expected errors, got a valid config: {:#?}", loaded.config),
        Err(e) => e.errors().cloned().collect(),
    }
}

/// Asserts exactly one error, at `line`, on `key`, whose message contains `needle`.
fn assert_one_error(text: &str, line: usize, key: &str, needle: &str) {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "expected one error, got: {errors:#?}");
    let e = &errors[0];
    assert_eq!((e.line, e.key.as_str()), (line, key), "{e}");
    assert!(e.message.contains(needle), "{e} should mention {needle:?}");
    assert_eq!(e.file, "test.toml");
}

/// A minimal valid extension, to which tests add one key.
fn ext(extra: &str) -> String {
    format!("[Extensions.a]\nImage = \"ext:1\"\nProxyImage = \"nginx:alpine\"\n{extra}\n")
}

#[test]
fn seed_config_parses_as_written() {
    let loaded = parse_ok(SEED);
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let c = &loaded.config;
    assert_eq!(c.listen_addr.to_string(), ":8080");
    assert_eq!(c.docker_url, Some(DockerUrl::Unix("/var/run/docker.sock".into())));
    assert_eq!(c.poll_interval, Duration::from_secs(3));
    assert_eq!(c.extensions.keys().collect::<Vec<_>>(), ["us-east", "us-west"]);
    for (region, ext) in &c.extensions {
        assert_eq!(ext.image, "interlockpreview/interlock-extension-nginx:2.0.0-preview");
        assert_eq!(ext.args, ["-D"]);
        assert_eq!(ext.service_name, format!("interlock-ext-{region}"));
        assert_eq!(ext.proxy_image, "nginx:alpine");
        assert!(ext.proxy_args.is_empty());
        assert_eq!(ext.proxy_service_name, format!("interlock-proxy-{region}"));
        assert_eq!(ext.proxy_config_path, "/etc/nginx/nginx.conf");
        assert_eq!(&ext.service_cluster, region);
        assert_eq!(ext.publish_mode, PublishMode::Host);
        assert_eq!((ext.published_port, ext.target_port), (80, 80));
        assert_eq!((ext.published_ssl_port, ext.target_ssl_port), (443, 443));
        assert_eq!(ext.labels.get("ext_region"), Some(region));
        assert_eq!(ext.proxy_labels.get("proxy_region"), Some(region));
        assert_eq!(ext.proxy_kind, ProxyKind::Nginx);
        let ProxyConfig::Nginx(n) = &ext.config else { panic!("nginx expected") };
        assert_eq!(n.user, "nginx");
        assert_eq!(n.pid_path, "/var/run/proxy.pid");
        assert_eq!(n.worker_processes, "1");
        assert_eq!(n.rlimit_nofile, 65535);
        assert_eq!(n.max_connections, 2048);
        // Defaults for what the seed leaves out.
        assert_eq!(n.keepalive_timeout, "75s");
        assert_eq!(ext.proxy_replicas, 1);
        assert_eq!(ext.proxy_stop_signal, "SIGQUIT");
    }
}

#[test]
fn defaults_follow_interlock() {
    let c = parse_ok(&ext("")).config;
    assert_eq!(c.listen_addr.to_string(), ":8080");
    assert_eq!(c.docker_url, None);
    assert_eq!(c.poll_interval, Duration::from_secs(3));
    assert!(!c.allow_insecure);
    let e = &c.extensions["a"];
    assert_eq!(e.service_name, "interlock-ext-a");
    assert_eq!(e.proxy_service_name, "interlock-proxy-a");
    assert_eq!(e.publish_mode, PublishMode::Ingress);
    assert_eq!((e.published_port, e.target_port, e.published_ssl_port, e.target_ssl_port), (8080, 80, 8443, 443));
    assert_eq!(e.proxy_stop_grace_period, Duration::from_secs(5));
    assert_eq!(e.proxy_update_delay, None);
    assert_eq!(e.service_cluster, "");
    assert_eq!(e.config, ProxyConfig::Nginx(NginxConfig::default()));
}

#[test]
fn every_core_and_extension_key_parses() {
    let text = r#"
ListenAddr = "127.0.0.1:9090"
DockerURL = "tcp://10.0.0.1:2376"
TLSCACert = "/certs/ca.pem"
TLSCert = "/certs/cert.pem"
TLSKey = "/certs/key.pem"
AllowInsecure = false
PollInterval = "1m30s"
EndpointOverride = "interlock:8080"

[Extensions.edge]
Image = "ext:1"
Args = ["-D", "--x"]
ServiceName = "ext-edge"
ProxyImage = "haproxy:2.6"
ProxyArgs = ["-f", "/cfg"]
ProxyServiceName = "proxy-edge"
ProxyConfigPath = "/usr/local/etc/haproxy/haproxy.cfg"
ProxyReplicas = 3
ProxyStopSignal = "SIGTERM"
ProxyStopGracePeriod = "3s"
ProxyUpdateDelay = "500ms"
ServiceCluster = "edge"
PublishMode = "ingress"
PublishedPort = 8081
TargetPort = 81
PublishedSSLPort = 8444
TargetSSLPort = 444
Template = "my-template"
Networks = ["net-a", "net-b"]
HitlessServiceUpdate = true
ConfigImage = "cfg:1"
ConfigServiceName = "cfg-edge"
Constraints = ["node.platform.os==linux"]
PlacementPreferences = ["spread=node.labels.zone"]
ProxyConstraints = ["node.labels.nodetype==loadbalancer", "node.role!=manager"]
ProxyPlacementPreferences = ["spread=node.labels.rack"]
[Extensions.edge.Labels]
a = "1"
[Extensions.edge.ContainerLabels]
b = "2"
[Extensions.edge.ProxyLabels]
c = "3"
[Extensions.edge.ProxyContainerLabels]
d = "4"
[Extensions.edge.Config]
PidPath = "/run/haproxy.pid"
MaxConnections = 4096
ConnectTimeout = 1000
ClientTimeout = 2000
ServerTimeout = 3000
AdminUser = "admin"
AdminPass = "secret"
SSLOpts = "no-sslv3"
SSLDefaultDHParam = 2048
SSLVerify = "none"
SSLCiphers = "HIGH:!aNULL"
SSLProtocols = "TLSv1.2 TLSv1.3"
GlobalOptions = ["tune.ssl.default-dh-param 2048"]
DefaultOptions = ["option forwardfor"]
"#;
    let loaded = parse_ok(text);
    // Read, but not honoured: each says so (see `keys_not_honoured_warn_with_their_line`).
    let warned: Vec<&str> = loaded.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(
        warned,
        ["Extensions.edge.Template", "Extensions.edge.ConfigImage", "Extensions.edge.ConfigServiceName"],
        "{:#?}",
        loaded.warnings
    );
    let c = loaded.config;
    assert_eq!(c.listen_addr, ListenAddr { host: "127.0.0.1".into(), port: 9090 });
    assert_eq!(c.docker_url, Some(DockerUrl::Tcp("10.0.0.1:2376".into())));
    assert_eq!(c.tls.ca_cert.as_deref(), Some("/certs/ca.pem"));
    assert_eq!(c.tls.cert.as_deref(), Some("/certs/cert.pem"));
    assert_eq!(c.tls.key.as_deref(), Some("/certs/key.pem"));
    assert_eq!(c.poll_interval, Duration::from_secs(90));
    assert_eq!(c.endpoint_override.as_deref(), Some("interlock:8080"));
    let e = &c.extensions["edge"];
    assert_eq!(e.args, ["-D", "--x"]);
    assert_eq!(e.service_name, "ext-edge");
    assert_eq!(e.proxy_kind, ProxyKind::Haproxy, "an image naming haproxy selects HAProxy");
    assert_eq!(e.proxy_args, ["-f", "/cfg"]);
    assert_eq!(e.proxy_service_name, "proxy-edge");
    assert_eq!(e.proxy_config_path, "/usr/local/etc/haproxy/haproxy.cfg");
    assert_eq!(e.proxy_replicas, 3);
    assert_eq!(e.proxy_stop_signal, "SIGTERM");
    assert_eq!(e.proxy_stop_grace_period, Duration::from_secs(3));
    assert_eq!(e.proxy_update_delay, Some(Duration::from_millis(500)));
    assert_eq!(e.service_cluster, "edge");
    assert_eq!(e.publish_mode, PublishMode::Ingress);
    assert_eq!((e.published_port, e.target_port, e.published_ssl_port, e.target_ssl_port), (8081, 81, 8444, 444));
    assert_eq!(e.template.as_deref(), Some("my-template"));
    assert_eq!(e.networks.as_deref(), Some(&["net-a".to_string(), "net-b".to_string()][..]));
    assert!(e.hitless_service_update);
    assert_eq!(e.config_image.as_deref(), Some("cfg:1"));
    assert_eq!(e.config_service_name.as_deref(), Some("cfg-edge"));
    assert_eq!(e.constraints.iter().map(ToString::to_string).collect::<Vec<_>>(), ["node.platform.os==linux"]);
    assert_eq!(e.placement_preferences[0].to_string(), "spread=node.labels.zone");
    assert_eq!(e.proxy_constraints.len(), 2);
    assert_eq!(e.proxy_placement_preferences[0].to_string(), "spread=node.labels.rack");
    assert_eq!(e.labels["a"], "1");
    assert_eq!(e.container_labels["b"], "2");
    assert_eq!(e.proxy_labels["c"], "3");
    assert_eq!(e.proxy_container_labels["d"], "4");
    assert_eq!(
        e.config,
        ProxyConfig::Haproxy(HaproxyConfig {
            pid_path: "/run/haproxy.pid".into(),
            max_connections: 4096,
            connect_timeout: 1000,
            client_timeout: 2000,
            server_timeout: 3000,
            admin_user: "admin".into(),
            admin_pass: "secret".into(),
            ssl_opts: "no-sslv3".into(),
            ssl_default_dh_param: 2048,
            ssl_verify: "none".into(),
            ssl_ciphers: "HIGH:!aNULL".into(),
            ssl_protocols: "TLSv1.2 TLSv1.3".into(),
            global_options: vec!["tune.ssl.default-dh-param 2048".into()],
            default_options: vec!["option forwardfor".into()],
        })
    );
}

#[test]
fn every_nginx_config_key_parses() {
    let text = ext(r#"
[Extensions.a.Config]
User = "www-data"
PidPath = "/run/nginx.pid"
MaxConnections = 2048
ConnectTimeout = 10
SendTimeout = 11
ReadTimeout = 12
IPHash = true
SSLOpts = "ssl_session_cache shared:SSL:10m"
SSLDefaultDHParam = 2048
SSLDefaultDHParamPath = "/etc/ssl/dh.pem"
SSLVerify = "optional"
WorkerProcesses = "auto"
RLimitNoFile = 1000
SSLCiphers = "HIGH:!aNULL"
SSLProtocols = "TLSv1.2 TLSv1.3"
HideInfoHeaders = true
KeepaliveTimeout = "1m30s"
ClientMaxBodySize = "32m"
ClientBodyBufferSize = "16k"
ClientHeaderBufferSize = "2k"
LargeClientHeaderBuffers = "8 16k"
ClientBodyTimeout = "30s"
UnderscoresInHeaders = true
ServerNamesHashBucketSize = 256
UpstreamZoneSize = 128
GlobalOptions = ["worker_shutdown_timeout 10s;"]
HTTPOptions = ["server_tokens off;"]
TCPOptions = ["proxy_timeout 10s;"]
AccessLogPath = "/var/log/nginx/access.log"
ErrorLogPath = "/var/log/nginx/error.log"
MainLogFormat = "$remote_addr $request"
TraceLogFormat = "$request_id $msec"
Version = "1"
HTTPVersion = "1.1"
"#);
    let loaded = parse_ok(&text);
    let warned: Vec<&str> = loaded.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(warned, ["Extensions.a.Config.SSLVerify"], "no nginx directive uses it: {:#?}", loaded.warnings);
    let ProxyConfig::Nginx(n) = &loaded.config.extensions["a"].config else { panic!() };
    let want = NginxConfig {
        user: "www-data".into(),
        pid_path: "/run/nginx.pid".into(),
        max_connections: 2048,
        connect_timeout: 10,
        send_timeout: 11,
        read_timeout: 12,
        ip_hash: true,
        ssl_opts: "ssl_session_cache shared:SSL:10m".into(),
        ssl_default_dh_param: 2048,
        ssl_default_dh_param_path: "/etc/ssl/dh.pem".into(),
        ssl_verify: "optional".into(),
        worker_processes: "auto".into(),
        rlimit_nofile: 1000,
        ssl_ciphers: "HIGH:!aNULL".into(),
        ssl_protocols: "TLSv1.2 TLSv1.3".into(),
        hide_info_headers: true,
        keepalive_timeout: "1m30s".into(),
        client_max_body_size: "32m".into(),
        client_body_buffer_size: "16k".into(),
        client_header_buffer_size: "2k".into(),
        large_client_header_buffers: "8 16k".into(),
        client_body_timeout: "30s".into(),
        underscores_in_headers: true,
        server_names_hash_bucket_size: 256,
        upstream_zone_size: 128,
        global_options: vec!["worker_shutdown_timeout 10s;".into()],
        http_options: vec!["server_tokens off;".into()],
        tcp_options: vec!["proxy_timeout 10s;".into()],
        access_log_path: "/var/log/nginx/access.log".into(),
        error_log_path: "/var/log/nginx/error.log".into(),
        main_log_format: "$remote_addr $request".into(),
        trace_log_format: "$request_id $msec".into(),
        version: "1".into(),
        http_version: "1.1".into(),
    };
    assert_eq!(n, &want);
}

#[test]
fn keys_match_case_insensitively() {
    let text = r#"
listenaddr = ":9000"
POLLINTERVAL = "1s"
[extensions.a]
image = "ext:1"
proxyimage = "nginx"
publishedPORT = 81
[extensions.a.config]
RlimitNoFile = 100
workerprocesses = 2
"#;
    let loaded = parse_ok(text);
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.listen_addr.port, 9000);
    assert_eq!(c.poll_interval, Duration::from_secs(1));
    let e = &c.extensions["a"];
    assert_eq!(e.published_port, 81);
    let ProxyConfig::Nginx(n) = &e.config else { panic!() };
    assert_eq!(n.rlimit_nofile, 100);
    assert_eq!(n.worker_processes, "2");
}

#[test]
fn one_key_in_two_spellings_is_an_error() {
    let text = ext("[Extensions.a.Config]\nRlimitNoFile = 1\nRLimitNoFile = 2");
    assert_one_error(&text, 6, "Extensions.a.Config.RLimitNoFile", "duplicate key");
}

#[test]
fn unknown_keys_warn_with_line_and_suggestion() {
    let loaded = parse_ok(&ext("PublishPort = 80\nFlavour = \"x\""));
    let w = &loaded.warnings;
    assert_eq!(w.len(), 2, "{w:#?}");
    assert_eq!((w[0].line, w[0].column, w[0].key.as_str()), (4, 1, "Extensions.a.PublishPort"));
    assert!(w[0].message.contains("did you mean \"PublishedPort\""), "{}", w[0]);
    assert_eq!(w[0].severity, Severity::Warning);
    assert_eq!(w[1].line, 5);
    assert!(!w[1].message.contains("did you mean"), "{}", w[1]);
    assert_eq!(
        w[0].to_string(),
        "test.toml:4:1: warning: Extensions.a.PublishPort: unknown key \"PublishPort\" is ignored; did you mean \"PublishedPort\"?"
    );
}

#[test]
fn other_proxy_kind_keys_warn() {
    let loaded = parse_ok(&ext("[Extensions.a.Config]\nAdminUser = \"x\""));
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].message.contains("does not apply to a nginx proxy"), "{}", loaded.warnings[0]);
}

#[test]
fn keys_not_honoured_warn_with_their_line() {
    let text = ext(
        "Template = \"my-template\"\nHitlessServiceUpdate = true\nConfigImage = \"cfg:1\"\nConfigServiceName = \"cfg\"",
    );
    let loaded = parse_ok(&text);
    let got: Vec<(usize, &str, &str)> =
        loaded.warnings.iter().map(|w| (w.line, w.key.as_str(), w.message.as_str())).collect();
    assert_eq!(
        got,
        [
            (
                4,
                "Extensions.a.Template",
                "custom templates are not supported: interlock renders its built-in nginx/HAProxy config"
            ),
            (
                6,
                "Extensions.a.ConfigImage",
                "interlock renders proxy configs itself (with HitlessServiceUpdate its extension delivers them): no \
                 config service is created"
            ),
            (
                7,
                "Extensions.a.ConfigServiceName",
                "interlock renders proxy configs itself (with HitlessServiceUpdate its extension delivers them): no \
                 config service is created"
            ),
        ]
    );
    assert!(loaded.warnings.iter().all(|w| w.severity == Severity::Warning));
    assert_eq!(
        loaded.warnings[0].to_string(),
        "test.toml:4:12: warning: Extensions.a.Template: custom templates are not supported: interlock renders its \
         built-in nginx/HAProxy config"
    );
    // The values are still read, as Interlock read them.
    let e = &loaded.config.extensions["a"];
    assert!(e.hitless_service_update);
    assert_eq!(e.template.as_deref(), Some("my-template"));
    assert_eq!((e.config_image.as_deref(), e.config_service_name.as_deref()), (Some("cfg:1"), Some("cfg")));
    // Off or empty asks for nothing interlock does not do.
    let quiet = parse_ok(&ext("Template = \"\"\nHitlessServiceUpdate = false\nConfigImage = \"\""));
    assert!(quiet.warnings.is_empty(), "{:#?}", quiet.warnings);
}

#[test]
fn nginx_ssl_verify_warns_that_it_has_no_effect() {
    let loaded = parse_ok(&ext("[Extensions.a.Config]\nSSLVerify = \"none\""));
    assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert_eq!((w.line, w.key.as_str()), (5, "Extensions.a.Config.SSLVerify"));
    assert!(w.message.contains("no effect on an nginx proxy"), "{w}");
    // HAProxy uses it (`ssl-server-verify`).
    let haproxy = parse_ok(&ext("ProxyKind = \"haproxy\"\n[Extensions.a.Config]\nSSLVerify = \"none\""));
    assert!(haproxy.warnings.is_empty(), "{:#?}", haproxy.warnings);
}

#[test]
fn proxy_kind_can_be_explicit() {
    let e = &parse_ok(&ext("ProxyKind = \"haproxy\"")).config.extensions["a"];
    assert_eq!(e.proxy_kind, ProxyKind::Haproxy);
    assert_eq!(e.proxy_config_path, "/usr/local/etc/haproxy/haproxy.cfg");
    assert!(matches!(e.config, ProxyConfig::Haproxy(_)));
    assert_one_error(&ext("ProxyKind = \"envoy\""), 4, "Extensions.a.ProxyKind", "not a proxy kind");
}

#[test]
fn wrong_type_is_reported_at_the_value() {
    assert_one_error(
        &ext("PublishedPort = \"80\""),
        4,
        "Extensions.a.PublishedPort",
        "expected an integer, found a string",
    );
    assert_one_error("PollInterval = 3\n", 1, "PollInterval", "expected a string, found an integer");
    assert_one_error(&ext("Args = \"-D\""), 4, "Extensions.a.Args", "expected an array of strings");
    assert_one_error(&ext("Args = [\"-D\", 1]"), 4, "Extensions.a.Args", "a string in the array");
    assert_one_error(&ext("[Extensions.a.Labels]\nx = 1"), 5, "Extensions.a.Labels.x", "expected a string");
    assert_one_error(&ext("HitlessServiceUpdate = \"yes\""), 4, "Extensions.a.HitlessServiceUpdate", "boolean");
    assert_one_error("Extensions = 1\n", 1, "Extensions", "expected a table");
    let errs = errors("[Extensions]\na = 1\n");
    assert_eq!((errs[0].line, errs[0].key.as_str()), (2, "Extensions.a"));
}

#[test]
fn bad_durations_are_errors() {
    assert_one_error("PollInterval = \"3 seconds\"\n", 1, "PollInterval", "unknown unit");
    assert_one_error("PollInterval = \"3\"\n", 1, "PollInterval", "missing unit");
    assert_one_error("PollInterval = \"0s\"\n", 1, "PollInterval", "longer than zero");
    assert_one_error(&ext("ProxyStopGracePeriod = \"-1s\""), 4, "Extensions.a.ProxyStopGracePeriod", "negative");
    assert_one_error(&ext("ProxyUpdateDelay = \"soon\""), 4, "Extensions.a.ProxyUpdateDelay", "invalid duration");
}

#[test]
fn ports_out_of_range_are_errors() {
    assert_one_error(&ext("PublishedPort = 70000"), 4, "Extensions.a.PublishedPort", "out of range");
    assert_one_error(&ext("TargetPort = 0"), 4, "Extensions.a.TargetPort", "out of range");
    assert_one_error(&ext("PublishedSSLPort = -1"), 4, "Extensions.a.PublishedSSLPort", "out of range");
    assert_one_error(&ext("PublishedSSLPort = 8080"), 4, "Extensions.a.PublishedSSLPort", "already the PublishedPort");
    assert_one_error(&ext("PublishedSSLPort = 0"), 4, "Extensions.a.PublishedSSLPort", "both be 0");
    let c = parse_ok(&ext("PublishedSSLPort = 0\nTargetSSLPort = 0")).config;
    assert_eq!(c.extensions["a"].published_ssl_port, 0, "0 and 0 disable the TLS port");
}

#[test]
fn publish_mode_is_host_or_ingress() {
    assert_one_error(&ext("PublishMode = \"bridge\""), 4, "Extensions.a.PublishMode", "use \"host\" or \"ingress\"");
    assert_eq!(parse_ok(&ext("PublishMode = \"Host\"")).config.extensions["a"].publish_mode, PublishMode::Host);
}

#[test]
fn images_are_required_and_non_empty() {
    assert_one_error(
        "[Extensions.a]\nImage = \"\"\nProxyImage = \"nginx\"\n",
        2,
        "Extensions.a.Image",
        "must not be empty",
    );
    assert_one_error(
        "[Extensions.a]\nImage = \"x\"\nProxyImage = \"  \"\n",
        3,
        "Extensions.a.ProxyImage",
        "must not be empty",
    );
    assert_one_error("[Extensions.a]\nImage = \"x\"\n", 1, "Extensions.a.ProxyImage", "ProxyImage is required");
}

#[test]
fn malformed_constraints_are_errors() {
    for (constraint, needle) in [
        ("node.labels.region=us-east", "no == or != operator"),
        ("node.labels.region==", "empty value"),
        ("node.role==boss", "manager or worker"),
        ("node.hostnme==lb-00", "unknown constraint attribute"),
        ("engine.labels.==x", "invalid label key"),
    ] {
        assert_one_error(
            &ext(&format!("ProxyConstraints = [\"node.role==worker\", \"{constraint}\"]")),
            4,
            "Extensions.a.ProxyConstraints",
            needle,
        );
    }
    for ok in ["node.labels.x!=y", "node.hostname==lb-00", "node.id==abc", "engine.labels.disk==ssd"] {
        parse_ok(&ext(&format!("Constraints = [\"{ok}\"]")));
    }
    assert_one_error(
        &ext("PlacementPreferences = [\"spread=zone\"]"),
        4,
        "Extensions.a.PlacementPreferences",
        "spread=node.labels",
    );
}

#[test]
fn service_names_must_be_unique_across_extensions() {
    let text = r#"
[Extensions.a]
Image = "x"
ProxyImage = "nginx"
ServiceName = "shared"
PublishMode = "host"

[Extensions.b]
Image = "x"
ProxyImage = "nginx"
ProxyServiceName = "shared"
PublishMode = "host"
"#;
    assert_one_error(text, 11, "Extensions.b.ProxyServiceName", "already the ServiceName of extension \"a\"");
    assert_one_error(
        &ext("ServiceName = \"p\"\nProxyServiceName = \"p\""),
        5,
        "Extensions.a.ProxyServiceName",
        "already the ServiceName",
    );
    assert_one_error(&ext("ServiceName = \"bad name\""), 4, "Extensions.a.ServiceName", "not a valid service name");
}

#[test]
fn ingress_ports_are_reserved_on_every_node() {
    let two = |mode_a: &str, mode_b: &str| {
        format!(
            "[Extensions.a]\nImage = \"x\"\nProxyImage = \"nginx\"\nPublishMode = \"{mode_a}\"\nPublishedPort = 80\n\n\
             [Extensions.b]\nImage = \"x\"\nProxyImage = \"nginx\"\nPublishMode = \"{mode_b}\"\nPublishedPort = 80\n\
             PublishedSSLPort = 9443\n"
        )
    };
    // a uses the default SSL port 8443, b another one, so only port 80 collides.
    assert_one_error(&two("ingress", "ingress"), 11, "Extensions.b.PublishedPort", "reserved on every node");
    assert_one_error(&two("host", "ingress"), 11, "Extensions.b.PublishedPort", "reserved on every node");
    assert_one_error(&two("ingress", "host"), 11, "Extensions.b.PublishedPort", "reserved on every node");
    parse_ok(&two("host", "host"));
}

#[test]
fn docker_url_and_listen_addr_are_checked() {
    assert_one_error("DockerURL = \"ssh://host\"\n", 1, "DockerURL", "must start with unix:// or tcp://");
    assert_one_error("DockerURL = \"tcp://host\"\n", 1, "DockerURL", "needs a host and a port");
    assert_one_error("DockerURL = \"unix://docker.sock\"\n", 1, "DockerURL", "absolute path");
    assert_one_error("ListenAddr = \"8080\"\n", 1, "ListenAddr", "not host:port");
    assert_one_error(
        "DockerURL = \"tcp://h:2376\"\nTLSCert = \"/c\"\nTLSKey = \"/k\"\n",
        2,
        "TLSCACert",
        "must be given together",
    );
}

#[test]
fn nginx_values_cannot_break_directives() {
    assert_one_error(&ext("[Extensions.a.Config]\nUser = \"nginx; daemon off\""), 5, "Extensions.a.Config.User", "';'");
    assert_one_error(
        &ext("[Extensions.a.Config]\nKeepaliveTimeout = \"75 s\""),
        5,
        "Extensions.a.Config.KeepaliveTimeout",
        "not an nginx time",
    );
    assert_one_error(
        &ext("[Extensions.a.Config]\nClientMaxBodySize = \"1mb\""),
        5,
        "Extensions.a.Config.ClientMaxBodySize",
        "not an nginx size",
    );
    assert_one_error(
        &ext("[Extensions.a.Config]\nWorkerProcesses = \"many\""),
        5,
        "Extensions.a.Config.WorkerProcesses",
        "\"auto\"",
    );
    assert_one_error(
        &ext("[Extensions.a.Config]\nPidPath = \"proxy.pid\""),
        5,
        "Extensions.a.Config.PidPath",
        "absolute path",
    );
}

#[test]
fn syntax_errors_have_a_position() {
    let errs = errors("ListenAddr = \":8080\"\n[Extensions.a\nImage = 1\n");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 2, "{}", errs[0]);
    assert!(errs[0].message.starts_with("invalid TOML"), "{}", errs[0]);
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text = ext("PublishedPort = 0\nPublishMode = \"x\"\nProxyStopGracePeriod = \"1y\"\nConstraints = [\"x\"]");
    let errs = errors(&text);
    let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
    assert_eq!(lines, [4, 5, 6, 7], "{errs:#?}");
}

#[test]
fn empty_config_warns_that_nothing_is_routed() {
    let loaded = parse_ok("");
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].message.contains("nothing will be routed"));
}

#[test]
fn secret_policy_is_any_or_labelled() {
    use crate::config::SecretPolicy;
    let with = |line: &str| format!("{line}\n{}", include_str!("../../../deploy/examples/service-clusters.toml"));
    assert_eq!(parse("t", &with("")).unwrap().config.secret_policy, SecretPolicy::Any);
    let labelled = parse("t", &with("SecretPolicy = \"labelled\"")).unwrap().config;
    assert_eq!(labelled.secret_policy, SecretPolicy::Labelled);
    let err = parse("t.toml", &with("SecretPolicy = \"strict\"")).unwrap_err();
    assert!(
        err.diagnostics.iter().any(|d| d.to_string().contains("t.toml:1:16") && d.to_string().contains("SecretPolicy")),
        "{err:?}"
    );
}

/// Hostile TOML: whatever the file holds, `parse` returns (no panic), and every diagnostic
/// points at a line of the file.
mod hostile {
    use proptest::prelude::*;

    use super::*;

    /// Fragments of the seed config and of TOML syntax, recombined and corrupted.
    fn toml_like() -> impl Strategy<Value = String> {
        let seed_lines: Vec<String> = SEED.lines().map(str::to_owned).collect();
        let fragment = prop_oneof![
            proptest::sample::select(seed_lines),
            Just("[Extensions.x]".to_owned()),
            Just("[[Extensions]]".to_owned()),
            Just("PollInterval = \"-1s\"".to_owned()),
            Just("PublishedPort = 99999999999999999999".to_owned()),
            Just("ProxyConstraints = [\"node.labels.a==\", 1, []]".to_owned()),
            Just("Image = { a = 1 }".to_owned()),
            Just("\"quoted key\" = 'x'".to_owned()),
            Just("a.b.c = 1".to_owned()),
            Just("x = \"\\u0000\"".to_owned()),
            Just("Config = 3".to_owned()),
            Just("[NodeLabels.\"lb-*\"]".to_owned()),
            Just("[NodeLabels]".to_owned()),
            Just("region = [1]".to_owned()),
            Just("\"bad key!\" = \"v\"".to_owned()),
            Just("[Plugins]".to_owned()),
            Just("Enabled = [\"carbon\", \"nope\", 3]".to_owned()),
            Just("[Plugins.Carbon]".to_owned()),
            Just("Interval = \"1ms\"".to_owned()),
            Just("DriftPolicy = \"sometimes\"".to_owned()),
            Just("HitlessServiceUpdate = \"yes\"".to_owned()),
            Just("SecretPolicy = 1".to_owned()),
            Just("ListenAddr = \":99999\"".to_owned()),
            Just("DockerURL = \"ftp://x\"".to_owned()),
            Just("[Extensions.x.Config]".to_owned()),
            Just("ProxyKind = \"caddy\"".to_owned()),
            Just("[ACME]".to_owned()),
            Just("DirectoryURL = \"gopher://x\"".to_owned()),
            Just("Challenge = \"tls-alpn-01\"".to_owned()),
            Just("RenewBefore = \"-1h\"".to_owned()),
            "\\PC{0,40}",
        ];
        proptest::collection::vec(fragment, 0..40).prop_map(|lines| lines.join("\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_input_parses_or_fails_with_lines(text in toml_like()) {
            let line_count = text.lines().count().max(1);
            let diagnostics = match parse("hostile.toml", &text) {
                Ok(loaded) => loaded.warnings,
                Err(e) => {
                    prop_assert!(
                        e.diagnostics.iter().any(|d| d.severity == Severity::Error),
                        "a rejected file says why: {:?}", e.diagnostics
                    );
                    e.diagnostics
                }
            };
            for d in &diagnostics {
                prop_assert!(d.line >= 1 && d.line <= line_count + 1, "{d} (the file has {line_count} lines)");
                prop_assert_eq!(&d.file, "hostile.toml");
            }
        }

        /// The seed config with up to 8 random edits (a byte replaced, inserted or removed, at
        /// a random place): near-valid files, where a reader's assumptions break first.
        #[test]
        fn edited_seed_parses_or_fails_with_lines(
            edits in proptest::collection::vec((0usize..3, any::<prop::sample::Index>(), any::<u8>()), 1..8)
        ) {
            let mut bytes = SEED.as_bytes().to_vec();
            for (kind, at, byte) in edits {
                let i = at.index(bytes.len().max(1)).min(bytes.len());
                match kind {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ if i < bytes.len() => { bytes.remove(i); }
                    _ => {}
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let line_count = text.lines().count().max(1);
            if let Err(e) = parse("edited.toml", &text) {
                prop_assert!(e.diagnostics.iter().any(|d| d.severity == Severity::Error), "{:?}", e.diagnostics);
                for d in &e.diagnostics {
                    prop_assert!(d.line >= 1 && d.line <= line_count + 1, "{d} (the file has {line_count} lines)");
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse("bytes.toml", &text);
        }
    }
}

// `[Plugins]`: which plug-ins `interlock run` feeds, and the carbon plug-in's settings.

/// A minimal valid config with a `[Plugins]` section after the extension.
fn with_plugins(plugins: &str) -> String {
    format!("{}{plugins}\n", ext(""))
}

#[test]
fn no_plugins_table_enables_none() {
    let c = parse_ok(&ext("")).config;
    assert_eq!(c.plugins, Plugins::default());
}

#[test]
fn plugins_are_read_with_carbon_defaults() {
    let text =
        with_plugins("[Plugins]\nEnabled = [\"example\", \"stats\"]\n[Plugins.Carbon]\nAddress = \"graphite:2003\"");
    let loaded = parse_ok(&text);
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let plugins = &loaded.config.plugins;
    assert_eq!(plugins.enabled, ["example", "carbon"], "stats is 0.3's name for carbon");
    let carbon = plugins.carbon.as_ref().expect("carbon settings");
    assert_eq!(carbon.address, "graphite:2003");
    assert_eq!(carbon.prefix, "docker.stats");
    assert_eq!(carbon.image_name_filter, None);
    assert_eq!(carbon.interval, Duration::from_secs(10));
}

#[test]
fn carbon_keys_are_read_case_insensitively() {
    let text = with_plugins(
        "[plugins]\nenabled = [\"Carbon\"]\n[plugins.carbon]\naddress = \"10.0.0.9:2003\"\nprefix = \"lab.stats\"\n\
         imagenamefilter = \"^local/\"\ninterval = \"1m30s\"",
    );
    let c = parse_ok(&text).config;
    let carbon = c.plugins.carbon.expect("carbon settings");
    assert_eq!(c.plugins.enabled, ["carbon"]);
    assert_eq!(
        (carbon.address.as_str(), carbon.prefix.as_str(), carbon.image_name_filter.as_deref(), carbon.interval),
        ("10.0.0.9:2003", "lab.stats", Some("^local/"), Duration::from_secs(90))
    );
}

#[test]
fn an_unknown_plugin_is_an_error_naming_the_known_ones() {
    // ext("") is 4 lines; [Plugins] is line 5, Enabled line 6.
    let text = with_plugins("[Plugins]\nEnabled = [\"example\", \"haproxy\"]");
    assert_one_error(
        &text,
        6,
        "Plugins.Enabled",
        "\"haproxy\" is not a plug-in (known: \"example\", \"carbon\", \"stats\"",
    );
    let e = &errors(&text)[0];
    assert_eq!(e.column, 23, "at the bad element: {e}");
}

#[test]
fn carbon_enabled_without_an_address_is_an_error() {
    let text = with_plugins("[Plugins]\nEnabled = [\"carbon\"]");
    assert_one_error(&text, 6, "Plugins.Enabled", "needs [Plugins.Carbon] with Address");
    let text = with_plugins("[Plugins]\nEnabled = [\"carbon\"]\n[Plugins.Carbon]\nPrefix = \"x\"");
    assert_one_error(&text, 7, "Plugins.Carbon.Address", "Address is required");
}

#[test]
fn carbon_values_are_checked_where_they_are_written() {
    let carbon = |key: &str| {
        with_plugins(&format!(
            "[Plugins]\nEnabled = [\"carbon\"]\n[Plugins.Carbon]\nAddress = \"graphite:2003\"\n{key}"
        ))
    };
    assert_one_error(&carbon("").replace("graphite:2003", "graphite"), 8, "Plugins.Carbon.Address", "not HOST:PORT");
    assert_one_error(&carbon("").replace("graphite:2003", "graphite:0"), 8, "Plugins.Carbon.Address", "not HOST:PORT");
    assert_one_error(&carbon("Prefix = \"docker stats\""), 9, "Plugins.Carbon.Prefix", "not a Graphite path prefix");
    assert_one_error(&carbon("Prefix = \"docker.\""), 9, "Plugins.Carbon.Prefix", "not a Graphite path prefix");
    assert_one_error(&carbon("Interval = \"10\""), 9, "Plugins.Carbon.Interval", "");
    assert_one_error(&carbon("Interval = \"500ms\""), 9, "Plugins.Carbon.Interval", "at least 1s");
    assert_one_error(&carbon("Interval = 10"), 9, "Plugins.Carbon.Interval", "expected a string");
    assert_one_error(&carbon("ImageNameFilter = 1"), 9, "Plugins.Carbon.ImageNameFilter", "expected a string");
    assert_one_error(&with_plugins("[Plugins]\nEnabled = \"carbon\""), 6, "Plugins.Enabled", "an array of strings");
}

#[test]
fn plugin_warnings_name_the_key() {
    let warnings = |text: &str| -> Vec<String> { parse_ok(text).warnings.iter().map(ToString::to_string).collect() };
    assert_eq!(
        warnings(&with_plugins("[Plugins]\nEnabled = [\"example\", \"example\"]")),
        ["test.toml:6:23: warning: Plugins.Enabled: \"example\": plug-in \"example\" is already enabled"]
    );
    let w = warnings(&with_plugins("[Plugins]\nEnabled = []\n[Plugins.Carbon]\nAddress = \"graphite:2003\""));
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].starts_with("test.toml:7:10: warning: Plugins.Carbon: plug-in \"carbon\" is not enabled"), "{w:#?}");
    let w = warnings(&with_plugins("[Plugins]\nEnable = [\"example\"]"));
    assert_eq!(
        w,
        ["test.toml:6:1: warning: Plugins.Enable: unknown key \"Enable\" is ignored; did you mean \"Enabled\"?"]
    );
    let w = warnings(&with_plugins(
        "[Plugins]\nEnabled = [\"carbon\"]\n[Plugins.Carbon]\nAddress = \"graphite:2003\"\nIntervall = \"5s\"",
    ));
    assert_eq!(
        w,
        [
            "test.toml:9:1: warning: Plugins.Carbon.Intervall: unknown key \"Intervall\" is ignored; did you mean \"Interval\"?"
        ]
    );
}

/// A valid extension, then `tables` (so the `[NodeLabels…]` tables start on line 5).
fn with_node_labels(tables: &str) -> String {
    format!("{}{tables}\n", ext(""))
}

#[test]
fn node_labels_are_read_per_hostname_and_glob_in_file_order() {
    let config = parse_ok(&with_node_labels(
        "[NodeLabels.\"lb-00\"]\nnodetype = \"loadbalancer\"\nregion = \"us-east\"\n[NodeLabels.\"app-*\"]\n\"com.example.tier\" = \"app\"\n[NodeLabels.lb-01]",
    ))
    .config;
    let rules: Vec<(&str, bool, usize)> =
        config.node_labels.iter().map(|r| (r.pattern.as_str(), r.glob, r.labels.len())).collect();
    assert_eq!(rules, [("lb-00", false, 2), ("app-*", true, 1), ("lb-01", false, 0)]);
    assert_eq!(config.node_labels[0].labels["region"], "us-east");
    assert_eq!(config.node_labels[1].labels["com.example.tier"], "app");
    assert!(parse_ok(&ext("")).config.node_labels.is_empty());
    // The table's own key matches case-insensitively, as every key does.
    let lower = parse_ok(&with_node_labels("[nodelabels.lb-00]\nregion = \"us-east\"")).config;
    assert_eq!(lower.node_labels[0].labels["region"], "us-east");
}

#[test]
fn node_label_problems_are_errors_at_their_key_or_value() {
    let table = |body: &str| with_node_labels(&format!("[NodeLabels.\"lb-00\"]\n{body}"));
    assert_one_error(&table("region = 1"), 6, "NodeLabels.lb-00.region", "expected a string, found an integer");
    assert_one_error(&table("\"a b\" = \"x\""), 6, "NodeLabels.lb-00.a b", "not a label key");
    assert_one_error(&table("\"1st\" = \"x\""), 6, "NodeLabels.lb-00.1st", "not a label key");
    assert_one_error(
        &table("\"com.docker.interlock.managed-node-labels\" = \"[]\""),
        6,
        "NodeLabels.lb-00.com.docker.interlock.managed-node-labels",
        "interlock's own namespace",
    );
    assert_one_error(&table("region = \"a\\nb\""), 6, "NodeLabels.lb-00.region", "control characters");
    // An unquoted dotted key is a nested table in TOML: the error says to quote it.
    assert_one_error(&table("com.example.tier = \"app\""), 6, "NodeLabels.lb-00.com", "quote it");
    assert_one_error(
        &with_node_labels("[NodeLabels.\"lb 00\"]\nregion = \"x\""),
        5,
        "NodeLabels.lb 00",
        "not a hostname or a glob",
    );
    assert_one_error(
        &with_node_labels("[NodeLabels.lb-00]\nregion = \"x\"\n[NodeLabels.LB-00]\nregion = \"y\""),
        7,
        "NodeLabels.LB-00",
        "hostnames are case-insensitive",
    );
    assert_one_error(
        &with_node_labels("[NodeLabels]\nlb-00 = \"x\""),
        6,
        "NodeLabels.lb-00",
        "expected a table of labels",
    );
    assert_one_error(&format!("NodeLabels = 3\n{}", ext("")), 1, "NodeLabels", "expected tables");
    // Every problem, not just the first.
    assert_eq!(errors(&table("a = 1\nb = true\n\"c d\" = \"x\"")).len(), 3);
}

#[test]
fn a_node_label_value_no_constraint_can_match_is_a_warning() {
    let loaded = parse_ok(&with_node_labels("[NodeLabels.lb-00]\nnote = \"a=b, c\"\nempty = \"\""));
    let w: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(
        w[0].starts_with("test.toml:6:8: warning: NodeLabels.lb-00.note: no placement constraint can match"),
        "{w:#?}"
    );
    assert_eq!(loaded.config.node_labels[0].labels["note"], "a=b, c");
}

#[test]
fn drift_policy_is_revert_or_report() {
    use crate::config::DriftPolicy;
    assert_eq!(parse_ok(&ext("")).config.drift_policy, DriftPolicy::Revert);
    let report = parse_ok(&format!("DriftPolicy = \"report\"\n{}", ext(""))).config;
    assert_eq!(report.drift_policy, DriftPolicy::Report);
    let revert = parse_ok(&format!("driftpolicy = \"Revert\"\n{}", ext(""))).config;
    assert_eq!(revert.drift_policy, DriftPolicy::Revert);
    assert_one_error(&format!("DriftPolicy = \"ignore\"\n{}", ext("")), 1, "DriftPolicy", "not a drift policy");
}

#[test]
fn the_walk_through_node_label_steps_become_config() {
    // `docker node update --label-add nodetype=loadbalancer --label-add region=us-east lb-00`,
    // and the same for lb-01 in us-west.
    let text = format!(
        "{SEED}\n[NodeLabels.\"lb-00\"]\n  nodetype = \"loadbalancer\"\n  region = \"us-east\"\n[NodeLabels.\"lb-01\"]\n  nodetype = \"loadbalancer\"\n  region = \"us-west\"\n"
    );
    let loaded = parse_ok(&text);
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let east = crate::node_labels::declared_for(&loaded.config.node_labels, "lb-00").unwrap();
    assert_eq!(east, [("nodetype".into(), "loadbalancer".into()), ("region".into(), "us-east".into())].into());
}

// `[ACME]`: automatic HTTPS.

/// A minimal valid config with an `[ACME]` table after the extension (which is 4 lines: the
/// table header is line 5, its first key line 6).
fn with_acme(keys: &str) -> String {
    format!("{}[ACME]\n{keys}\n", ext(""))
}

#[test]
fn no_acme_table_means_no_acme() {
    assert_eq!(parse_ok(&ext("")).config.acme, None);
}

#[test]
fn acme_defaults_and_every_key() {
    let c = parse_ok(&with_acme("DirectoryURL = \"https://acme.example/dir\"")).config;
    assert_eq!(
        c.acme,
        Some(AcmeConfig {
            directory_url: "https://acme.example/dir".into(),
            email: None,
            ca_certificate: None,
            renew_before: DEFAULT_RENEW_BEFORE,
            challenge: Challenge::Http01,
        })
    );
    assert_eq!(DEFAULT_RENEW_BEFORE, Duration::from_secs(30 * 24 * 3600));
    let c = parse_ok(&with_acme(
        "directoryurl = \"http://pebble:14000/dir\"\nEmail = \"ops@example.com\"\nCACertificate = \"pebble-ca\"\n\
         RenewBefore = \"48h\"\nchallenge = \"HTTP-01\"",
    ))
    .config;
    let acme = c.acme.unwrap();
    assert_eq!(acme.directory_url, "http://pebble:14000/dir");
    assert_eq!(acme.email.as_deref(), Some("ops@example.com"));
    assert_eq!(acme.ca_certificate.as_deref(), Some("/run/secrets/pebble-ca"), "a secret name");
    assert_eq!(acme.renew_before, Duration::from_secs(48 * 3600));
    let c = parse_ok(&with_acme("DirectoryURL = \"https://a.b/d\"\nCACertificate = \"/etc/interlock/ca.pem\"")).config;
    assert_eq!(c.acme.unwrap().ca_certificate.as_deref(), Some("/etc/interlock/ca.pem"), "an absolute path");
}

#[test]
fn acme_values_are_checked_where_they_are_written() {
    let acme = |key: &str| with_acme(&format!("DirectoryURL = \"https://acme.example/dir\"\n{key}"));
    assert_one_error(&with_acme("Email = \"a@b.c\""), 5, "ACME.DirectoryURL", "DirectoryURL is required");
    assert_one_error(&with_acme("DirectoryURL = \"ftp://x/dir\""), 6, "ACME.DirectoryURL", "not an http(s) URL");
    assert_one_error(&with_acme("DirectoryURL = \"https://\""), 6, "ACME.DirectoryURL", "not an http(s) URL");
    assert_one_error(&with_acme("DirectoryURL = \"https://a b/\""), 6, "ACME.DirectoryURL", "not an http(s) URL");
    assert_one_error(&with_acme("DirectoryURL = 1"), 6, "ACME.DirectoryURL", "expected a string");
    assert_one_error(&acme("Email = \"ops\""), 7, "ACME.Email", "not an email address");
    assert_one_error(&acme("Email = \"a@b@c.d\""), 7, "ACME.Email", "not an email address");
    assert_one_error(&acme("CACertificate = \"../ca.pem\""), 7, "ACME.CACertificate", "neither an absolute path");
    assert_one_error(&acme("CACertificate = \"/etc/../x\""), 7, "ACME.CACertificate", "not a file's absolute path");
    assert_one_error(&acme("RenewBefore = \"30d\""), 7, "ACME.RenewBefore", "");
    assert_one_error(&acme("RenewBefore = \"0s\""), 7, "ACME.RenewBefore", "longer than zero");
    assert_one_error(&acme("RenewBefore = 720"), 7, "ACME.RenewBefore", "expected a string");
    assert_one_error(&acme("Challenge = \"tls-alpn-01\""), 7, "ACME.Challenge", "only \"http-01\" is built");
    assert_one_error(&acme("Challenge = \"dns-01\""), 7, "ACME.Challenge", "only \"http-01\" is built");
    assert_one_error(&format!("ACME = 1\n{}", ext("")), 1, "ACME", "expected a table");
}

#[test]
fn unknown_acme_keys_warn_with_a_suggestion() {
    let loaded = parse_ok(&with_acme("DirectoryURL = \"https://a.b/d\"\nRenewBefor = \"1h\""));
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "test.toml:7:1: warning: ACME.RenewBefor: unknown key \"RenewBefor\" is ignored; did you mean \"RenewBefore\"?"
        ]
    );
    assert_eq!(loaded.config.acme.unwrap().renew_before, DEFAULT_RENEW_BEFORE);
}
