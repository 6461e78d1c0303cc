//! Which proxy an extension drives ([`ProxyKind`], its `ProxyKind` key) and the
//! `[Extensions.NAME.Config]` table: nginx's or HAProxy's settings, with Interlock's defaults
//! (`docs/configuration.md`). Keys of the other kind, and nginx's `SSLVerify`
//! (which no nginx directive uses), are accepted with a warning that they have no effect.

use std::fmt;

use super::reader::TableReader;

/// Which proxy an extension drives; decides the `Config` table's keys and the default
/// `ProxyConfigPath`. What else differs by kind (renderer, TLS secret layout, passthrough,
/// check and reload commands, the hitless layout) is in the `proxy` module, as methods on this
/// type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProxyKind {
    /// Also the kind when nothing names HAProxy.
    #[default]
    Nginx,
    Haproxy,
}

impl ProxyKind {
    /// Every kind.
    pub const ALL: [ProxyKind; 2] = [ProxyKind::Nginx, ProxyKind::Haproxy];

    /// Where the proxy reads its config when `ProxyConfigPath` is not set: where the nginx
    /// images and the official haproxy image read theirs.
    pub fn default_config_path(self) -> &'static str {
        match self {
            ProxyKind::Nginx => "/etc/nginx/nginx.conf",
            ProxyKind::Haproxy => "/usr/local/etc/haproxy/haproxy.cfg",
        }
    }
}

impl fmt::Display for ProxyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyKind::Nginx => "nginx",
            ProxyKind::Haproxy => "haproxy",
        })
    }
}

/// The proxy settings of one extension. One per extension, so the size difference between the
/// variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyConfig {
    Nginx(NginxConfig),
    Haproxy(HaproxyConfig),
}

/// nginx settings. Sizes and times stay nginx's own syntax (`"75s"`, `"1m"`), checked here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxConfig {
    pub user: String,
    pub pid_path: String,
    pub max_connections: u32,
    pub connect_timeout: u32,
    pub send_timeout: u32,
    pub read_timeout: u32,
    pub ip_hash: bool,
    pub ssl_opts: String,
    pub ssl_default_dh_param: u32,
    pub ssl_default_dh_param_path: String,
    /// Read and warned about: nothing in the rendered nginx.conf uses it (nor did Interlock's
    /// nginx template).
    pub ssl_verify: String,
    /// A number or `auto`.
    pub worker_processes: String,
    pub rlimit_nofile: u32,
    pub ssl_ciphers: String,
    pub ssl_protocols: String,
    pub hide_info_headers: bool,
    pub keepalive_timeout: String,
    pub client_max_body_size: String,
    pub client_body_buffer_size: String,
    pub client_header_buffer_size: String,
    pub large_client_header_buffers: String,
    pub client_body_timeout: String,
    pub underscores_in_headers: bool,
    pub server_names_hash_bucket_size: u32,
    pub upstream_zone_size: u32,
    pub global_options: Vec<String>,
    pub http_options: Vec<String>,
    pub tcp_options: Vec<String>,
    pub access_log_path: String,
    pub error_log_path: String,
    pub main_log_format: String,
    pub trace_log_format: String,
    pub version: String,
    pub http_version: String,
}

/// HAProxy settings. Timeouts are milliseconds, as in Interlock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxyConfig {
    pub pid_path: String,
    pub max_connections: u32,
    pub connect_timeout: u32,
    pub client_timeout: u32,
    pub server_timeout: u32,
    pub admin_user: String,
    pub admin_pass: String,
    pub ssl_opts: String,
    pub ssl_default_dh_param: u32,
    pub ssl_verify: String,
    pub ssl_ciphers: String,
    pub ssl_protocols: String,
    pub global_options: Vec<String>,
    pub default_options: Vec<String>,
}

impl Default for NginxConfig {
    fn default() -> Self {
        Self {
            user: "nginx".into(),
            pid_path: "/var/run/proxy.pid".into(),
            max_connections: 1024,
            connect_timeout: 600,
            send_timeout: 600,
            read_timeout: 600,
            ip_hash: false,
            ssl_opts: String::new(),
            ssl_default_dh_param: 1024,
            ssl_default_dh_param_path: String::new(),
            ssl_verify: "required".into(),
            worker_processes: "1".into(),
            rlimit_nofile: 65535,
            ssl_ciphers: "HIGH:!aNULL:!MD5".into(),
            ssl_protocols: "TLSv1.2".into(),
            hide_info_headers: false,
            keepalive_timeout: "75s".into(),
            client_max_body_size: "1m".into(),
            client_body_buffer_size: "8k".into(),
            client_header_buffer_size: "1k".into(),
            large_client_header_buffers: "4 8k".into(),
            client_body_timeout: "60s".into(),
            underscores_in_headers: false,
            server_names_hash_bucket_size: 128,
            upstream_zone_size: 64,
            global_options: Vec::new(),
            http_options: Vec::new(),
            tcp_options: Vec::new(),
            access_log_path: "/dev/stdout".into(),
            error_log_path: "/dev/stdout".into(),
            main_log_format: String::new(),
            trace_log_format: String::new(),
            version: String::new(),
            http_version: String::new(),
        }
    }
}

impl Default for HaproxyConfig {
    fn default() -> Self {
        Self {
            pid_path: "/var/run/proxy.pid".into(),
            max_connections: 1024,
            connect_timeout: 5000,
            client_timeout: 10000,
            server_timeout: 10000,
            admin_user: String::new(),
            admin_pass: String::new(),
            ssl_opts: String::new(),
            ssl_default_dh_param: 1024,
            ssl_verify: "required".into(),
            ssl_ciphers: "HIGH:!aNULL:!MD5".into(),
            ssl_protocols: "TLSv1.2".into(),
            global_options: Vec::new(),
            default_options: Vec::new(),
        }
    }
}

/// nginx-only keys: a HAProxy extension accepts them (UCP's defaults mix both) but ignores them.
const NGINX_ONLY: &[&str] = &[
    "User",
    "SendTimeout",
    "ReadTimeout",
    "IPHash",
    "SSLDefaultDHParamPath",
    "WorkerProcesses",
    "RLimitNoFile",
    "HideInfoHeaders",
    "KeepaliveTimeout",
    "ClientMaxBodySize",
    "ClientBodyBufferSize",
    "ClientHeaderBufferSize",
    "LargeClientHeaderBuffers",
    "ClientBodyTimeout",
    "UnderscoresInHeaders",
    "ServerNamesHashBucketSize",
    "UpstreamZoneSize",
    "HTTPOptions",
    "TCPOptions",
    "AccessLogPath",
    "ErrorLogPath",
    "MainLogFormat",
    "TraceLogFormat",
    "Version",
    "HTTPVersion",
];
/// HAProxy-only keys, likewise accepted and ignored by an nginx extension.
const HAPROXY_ONLY: &[&str] = &["ClientTimeout", "ServerTimeout", "AdminUser", "AdminPass", "DefaultOptions"];

pub(super) fn read(ext: &TableReader<'_, '_, '_>, kind: ProxyKind) -> Option<ProxyConfig> {
    let Some((table, _)) = ext.table("Config") else {
        // A present but mistyped `Config` was reported by `table()`.
        return ext.span_of("Config").is_none().then(|| match kind {
            ProxyKind::Nginx => ProxyConfig::Nginx(NginxConfig::default()),
            ProxyKind::Haproxy => ProxyConfig::Haproxy(HaproxyConfig::default()),
        });
    };
    let errors_before = ext.diagnostics().has_errors();
    let (config, other_kind_keys) = match kind {
        ProxyKind::Nginx => (ProxyConfig::Nginx(read_nginx(&table)), HAPROXY_ONLY),
        ProxyKind::Haproxy => (ProxyConfig::Haproxy(read_haproxy(&table)), NGINX_ONLY),
    };
    for key in other_kind_keys {
        if let Some(span) = table.span_of(key) {
            table.warning(key, span, format!("{key} does not apply to a {kind} proxy and is ignored"));
            // Consumed, so that `finish` does not also call it unknown.
            table.ignore(key);
        }
    }
    table.finish();
    (errors_before || !ext.diagnostics().has_errors()).then_some(config)
}

fn read_nginx(t: &TableReader<'_, '_, '_>) -> NginxConfig {
    let d = NginxConfig::default();
    NginxConfig {
        user: word(t, "User").unwrap_or(d.user),
        pid_path: path(t, "PidPath").unwrap_or(d.pid_path),
        max_connections: count(t, "MaxConnections").unwrap_or(d.max_connections),
        connect_timeout: count(t, "ConnectTimeout").unwrap_or(d.connect_timeout),
        send_timeout: count(t, "SendTimeout").unwrap_or(d.send_timeout),
        read_timeout: count(t, "ReadTimeout").unwrap_or(d.read_timeout),
        ip_hash: t.bool("IPHash").map_or(d.ip_hash, |(b, _)| b),
        ssl_opts: directive_text(t, "SSLOpts").unwrap_or(d.ssl_opts),
        ssl_default_dh_param: count(t, "SSLDefaultDHParam").unwrap_or(d.ssl_default_dh_param),
        ssl_default_dh_param_path: directive_text(t, "SSLDefaultDHParamPath").unwrap_or(d.ssl_default_dh_param_path),
        ssl_verify: nginx_ssl_verify(t).unwrap_or(d.ssl_verify),
        worker_processes: worker_processes(t).unwrap_or(d.worker_processes),
        rlimit_nofile: count(t, "RLimitNoFile").unwrap_or(d.rlimit_nofile),
        ssl_ciphers: word(t, "SSLCiphers").unwrap_or(d.ssl_ciphers),
        ssl_protocols: directive_text(t, "SSLProtocols").unwrap_or(d.ssl_protocols),
        hide_info_headers: t.bool("HideInfoHeaders").map_or(d.hide_info_headers, |(b, _)| b),
        keepalive_timeout: nginx_time(t, "KeepaliveTimeout").unwrap_or(d.keepalive_timeout),
        client_max_body_size: nginx_size(t, "ClientMaxBodySize").unwrap_or(d.client_max_body_size),
        client_body_buffer_size: nginx_size(t, "ClientBodyBufferSize").unwrap_or(d.client_body_buffer_size),
        client_header_buffer_size: nginx_size(t, "ClientHeaderBufferSize").unwrap_or(d.client_header_buffer_size),
        large_client_header_buffers: large_buffers(t).unwrap_or(d.large_client_header_buffers),
        client_body_timeout: nginx_time(t, "ClientBodyTimeout").unwrap_or(d.client_body_timeout),
        underscores_in_headers: t.bool("UnderscoresInHeaders").map_or(d.underscores_in_headers, |(b, _)| b),
        server_names_hash_bucket_size: count(t, "ServerNamesHashBucketSize").unwrap_or(d.server_names_hash_bucket_size),
        upstream_zone_size: count(t, "UpstreamZoneSize").unwrap_or(d.upstream_zone_size),
        global_options: lines(t, "GlobalOptions"),
        http_options: lines(t, "HTTPOptions"),
        tcp_options: lines(t, "TCPOptions"),
        access_log_path: path(t, "AccessLogPath").unwrap_or(d.access_log_path),
        error_log_path: path(t, "ErrorLogPath").unwrap_or(d.error_log_path),
        main_log_format: directive_text(t, "MainLogFormat").unwrap_or(d.main_log_format),
        trace_log_format: directive_text(t, "TraceLogFormat").unwrap_or(d.trace_log_format),
        version: t.string("Version").map_or(d.version, |(s, _)| s),
        http_version: http_version(t).unwrap_or(d.http_version),
    }
}

fn read_haproxy(t: &TableReader<'_, '_, '_>) -> HaproxyConfig {
    let d = HaproxyConfig::default();
    HaproxyConfig {
        pid_path: path(t, "PidPath").unwrap_or(d.pid_path),
        max_connections: count(t, "MaxConnections").unwrap_or(d.max_connections),
        connect_timeout: count(t, "ConnectTimeout").unwrap_or(d.connect_timeout),
        client_timeout: count(t, "ClientTimeout").unwrap_or(d.client_timeout),
        server_timeout: count(t, "ServerTimeout").unwrap_or(d.server_timeout),
        admin_user: word(t, "AdminUser").unwrap_or(d.admin_user),
        admin_pass: word(t, "AdminPass").unwrap_or(d.admin_pass),
        ssl_opts: directive_text(t, "SSLOpts").unwrap_or(d.ssl_opts),
        ssl_default_dh_param: count(t, "SSLDefaultDHParam").unwrap_or(d.ssl_default_dh_param),
        ssl_verify: word(t, "SSLVerify").unwrap_or(d.ssl_verify),
        ssl_ciphers: word(t, "SSLCiphers").unwrap_or(d.ssl_ciphers),
        ssl_protocols: directive_text(t, "SSLProtocols").unwrap_or(d.ssl_protocols),
        global_options: lines(t, "GlobalOptions"),
        default_options: lines(t, "DefaultOptions"),
    }
}

/// nginx's `SSLVerify`: read as Interlock did, and said to have no effect.
fn nginx_ssl_verify(t: &TableReader<'_, '_, '_>) -> Option<String> {
    const KEY: &str = "SSLVerify";
    let value = word(t, KEY)?;
    t.warning(
        KEY,
        t.span_of(KEY).unwrap_or(0..0),
        "SSLVerify has no effect on an nginx proxy: interlock's nginx config asks clients for no \
         certificate and proxies to tasks over plain HTTP",
    );
    Some(value)
}

/// Text that ends up inside one directive: no `;`, braces, quotes or line breaks, which would
/// end the directive or open a block.
fn directive_text(t: &TableReader<'_, '_, '_>, key: &'static str) -> Option<String> {
    let (value, span) = t.string(key)?;
    match value.chars().find(|c| matches!(c, ';' | '{' | '}' | '"' | '\'' | '\n' | '\r' | '#')) {
        Some(c) => {
            t.error(key, span, format!("{value:?} contains {c:?}, which would break the generated directive"));
            None
        }
        None => Some(value),
    }
}

/// A single token: [`directive_text`] without spaces.
fn word(t: &TableReader<'_, '_, '_>, key: &'static str) -> Option<String> {
    let value = directive_text(t, key)?;
    if value.chars().any(char::is_whitespace) {
        t.error(key, t.span_of(key).unwrap_or(0..0), format!("{value:?} must be a single word"));
        return None;
    }
    Some(value)
}

fn path(t: &TableReader<'_, '_, '_>, key: &'static str) -> Option<String> {
    let value = word(t, key)?;
    if !value.starts_with('/') {
        t.error(key, t.span_of(key).unwrap_or(0..0), format!("{value:?} must be an absolute path"));
        return None;
    }
    Some(value)
}

fn count(t: &TableReader<'_, '_, '_>, key: &'static str) -> Option<u32> {
    t.integer(key, 1..=i64::from(u32::MAX)).map(|(n, _)| n as u32)
}

/// Raw lines injected as they are (`GlobalOptions`, `HTTPOptions`, ...). The proxy binary's own
/// check is what validates them.
fn lines(t: &TableReader<'_, '_, '_>, key: &'static str) -> Vec<String> {
    t.string_list(key)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(line, span)| {
            if line.contains(['\n', '\r']) {
                t.error(key, span, "each option must be a single line");
                None
            } else {
                Some(line)
            }
        })
        .collect()
}

/// `WorkerProcesses` is a number or `auto`, written as a string or an integer.
fn worker_processes(t: &TableReader<'_, '_, '_>) -> Option<String> {
    const KEY: &str = "WorkerProcesses";
    let (text, span) = t.string_or_integer(KEY)?;
    if text == "auto" || text.parse::<u16>().is_ok_and(|n| n > 0) {
        return Some(text);
    }
    t.error(KEY, span, format!("{text:?} must be a positive number or \"auto\""));
    None
}

/// nginx time syntax: one or more `<number><unit>` with units ms, s, m, h, d, w, M, y (or none).
fn nginx_time(t: &TableReader<'_, '_, '_>, key: &'static str) -> Option<String> {
    let (value, span) = t.string(key)?;
    if is_nginx_time(&value) {
        Some(value)
    } else {
        t.error(key, span, format!("{value:?} is not an nginx time (e.g. \"75s\", \"1m30s\", \"500ms\")"));
        None
    }
}

/// `<digits><unit>` repeated; the unit may be left out only at the end (seconds).
fn is_nginx_time(value: &str) -> bool {
    let mut rest = value;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "M", "y"].into_iter().find(|u| rest.starts_with(u));
        match unit {
            Some(unit) => rest = &rest[unit.len()..],
            None => return rest.is_empty(),
        }
    }
    !value.is_empty()
}

fn is_nginx_size(value: &str) -> bool {
    let digits = value.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
    !digits.is_empty() && value.len() - digits.len() <= 1 && digits.chars().all(|c| c.is_ascii_digit())
}

/// nginx size syntax: a number with an optional k, m or g.
fn nginx_size(t: &TableReader<'_, '_, '_>, key: &'static str) -> Option<String> {
    let (value, span) = t.string(key)?;
    if is_nginx_size(&value) {
        Some(value)
    } else {
        t.error(key, span, format!("{value:?} is not an nginx size (e.g. \"8k\", \"1m\")"));
        None
    }
}

/// `LargeClientHeaderBuffers`: `"<number> <size>"`.
fn large_buffers(t: &TableReader<'_, '_, '_>) -> Option<String> {
    const KEY: &str = "LargeClientHeaderBuffers";
    let (value, span) = t.string(KEY)?;
    let mut parts = value.split_whitespace();
    let valid = matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(n), Some(size), None) if n.parse::<u32>().is_ok_and(|n| n > 0) && is_nginx_size(size)
    );
    if valid {
        Some(value)
    } else {
        t.error(KEY, span, format!("{value:?} is not \"<number> <size>\" (e.g. \"4 8k\")"));
        None
    }
}

/// `HTTPVersion`: the `proxy_http_version` to use towards upstreams.
fn http_version(t: &TableReader<'_, '_, '_>) -> Option<String> {
    const KEY: &str = "HTTPVersion";
    let (value, span) = t.string(KEY)?;
    if matches!(value.as_str(), "1.0" | "1.1") {
        Some(value)
    } else {
        t.error(KEY, span, format!("{value:?} is not an HTTP version nginx proxies with (\"1.0\" or \"1.1\")"));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::is_nginx_time;

    #[test]
    fn nginx_times_are_read_as_nginx_reads_them() {
        for ok in ["75s", "1m30s", "500ms", "1h", "30", "1d2h", "2w"] {
            assert!(is_nginx_time(ok), "{ok}");
        }
        for bad in ["", "s", "ms", "1.5s", "10 s", "5x", "-1s"] {
            assert!(!is_nginx_time(bad), "{bad}");
        }
    }
}
