//! `interlock status [--url URL | -c FILE]`: fetches a running core's `/status` and prints it
//! as a table; by default from this host, at the port of the config's `ListenAddr`.

use std::path::Path;
use std::process::ExitCode;

use reconcilers::config::{self, ListenAddr};

/// `interlock status`: fetches a running core's `/status` and prints it as a table.
pub fn run(url: Option<String>, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let url = match (url, config) {
        (Some(url), _) => url,
        (None, Some(path)) => {
            let Some(loaded) = super::load(path)? else { return Ok(ExitCode::FAILURE) };
            local_url(&loaded.config.listen_addr)
        }
        (None, None) => {
            let defaults = config::parse("(defaults)", "").map_err(|e| anyhow::anyhow!("{e}"))?;
            local_url(&defaults.config.listen_addr)
        }
    };
    let runtime = super::current_thread_runtime()?;
    let status = runtime.block_on(interlock::core::status::fetch(&url))?;
    print!("{}", interlock::core::status::table(&status, interlock::core::status::unix_now()));
    Ok(ExitCode::SUCCESS)
}

/// Where a core listening on `addr` answers on this host: a wildcard or empty host is
/// loopback.
fn local_url(addr: &ListenAddr) -> String {
    let host = match addr.host.as_str() {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" | "[::]" => "[::1]".to_owned(),
        host if host.contains(':') && !host.starts_with('[') => format!("[{host}]"),
        host => host.to_owned(),
    };
    format!("http://{host}:{}", addr.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reaches_the_listen_addr_on_this_host() {
        let addr = |host: &str, port| ListenAddr { host: host.into(), port };
        assert_eq!(local_url(&addr("", 8080)), "http://127.0.0.1:8080");
        assert_eq!(local_url(&addr("0.0.0.0", 9000)), "http://127.0.0.1:9000");
        assert_eq!(local_url(&addr("::", 8080)), "http://[::1]:8080");
        assert_eq!(local_url(&addr("fd00::2", 8080)), "http://[fd00::2]:8080");
        assert_eq!(local_url(&addr("10.0.0.5", 8080)), "http://10.0.0.5:8080");
        let defaults = config::parse("(defaults)", "").unwrap().config;
        assert_eq!(local_url(&defaults.listen_addr), "http://127.0.0.1:8080");
    }
}
