//! The proxies' own counters: their status pages (nginx's `stub_status`, HAProxy's stats CSV),
//! fetched from inside each proxy container with an exec of a small `sh` script (the task's
//! network is not the agent's), and parsed into a [`ProxyReading`].

use base64::Engine as _;
use reconcilers::config::ProxyKind;
use reconcilers::proxy::haproxy::TLS_TERMINATION_FRONTEND;

use super::ProxyTarget;
use crate::engine::NodeEngine;

/// The `Host` header of a status request: no route can claim a name with `_`.
const STATUS_HOST: &str = "interlock_stats";
const NGINX_STATUS_PATH: &str = "/nginx_status";
const HAPROXY_STATUS_PATH: &str = "/haproxy?stats;csv";

/// A proxy task's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyReading {
    /// Requests served since the proxy (or its current worker set, for HAProxy) started.
    pub requests: u64,
    /// Client connections open now.
    pub active: u64,
    /// Further counters by name (nginx's `accepts`, `handled`, `reading`, `writing`, `waiting`).
    pub extra: Vec<(&'static str, u64)>,
}

/// Fetches the proxy's status page from inside its container and parses it.
pub(super) async fn read_proxy(
    docker: &impl NodeEngine,
    container: &str,
    proxy: &ProxyTarget,
) -> Result<ProxyReading, String> {
    let argv = fetch_command(proxy);
    let out = docker.exec(container, &argv).await.map_err(|e| e.to_string())?;
    let parsed = match proxy.kind {
        ProxyKind::Nginx => parse_stub_status(&out.output),
        ProxyKind::Haproxy => parse_haproxy_csv(&out.output),
    };
    parsed.ok_or_else(|| {
        let said: String = out.output.chars().take(300).collect();
        format!("exit code {}, not a {} status page: {said:?}", out.exit_code, proxy.kind)
    })
}

/// Fetches `http://127.0.0.1:PORT/PATH` inside a container with whatever it has: curl, wget, or
/// bash's `/dev/tcp` (then the answer's headers come too; the parsers skip them).
const FETCH_SCRIPT: &str = r#"port=$1 path=$2 host=$3 auth=$4
url="http://127.0.0.1:$port$path"
if command -v curl >/dev/null 2>&1; then
  if [ -n "$auth" ]; then exec curl -sS -m 5 -H "Host: $host" -H "Authorization: Basic $auth" "$url"; fi
  exec curl -sS -m 5 -H "Host: $host" "$url"
fi
if command -v wget >/dev/null 2>&1; then
  if [ -n "$auth" ]; then exec wget -q -T 5 -O - --header "Host: $host" --header "Authorization: Basic $auth" "$url"; fi
  exec wget -q -T 5 -O - --header "Host: $host" "$url"
fi
if command -v bash >/dev/null 2>&1; then
  exec bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 7
a=""; if [ -n "$4" ]; then a="Authorization: Basic $4\r\n"; fi
printf "GET %s HTTP/1.0\r\nHost: %s\r\n%b\r\n" "$2" "$3" "$a" >&3
cat <&3' interlock-stats "$port" "$path" "$host" "$auth"
fi
echo "interlock-stats: no curl, wget or bash in this container" >&2
exit 127"#;

/// The exec that fetches a proxy's status page.
pub fn fetch_command(proxy: &ProxyTarget) -> Vec<String> {
    let path = match proxy.kind {
        ProxyKind::Nginx => NGINX_STATUS_PATH,
        ProxyKind::Haproxy => HAPROXY_STATUS_PATH,
    };
    let auth = proxy
        .credentials
        .as_ref()
        .map(|(user, password)| base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
        .unwrap_or_default();
    ["/bin/sh", "-c", FETCH_SCRIPT, "interlock-stats"]
        .into_iter()
        .map(str::to_owned)
        .chain([proxy.port.to_string(), path.to_owned(), STATUS_HOST.to_owned(), auth])
        .collect()
}

/// nginx's `stub_status` page (headers before it, if any, are skipped):
///
/// ```text
/// Active connections: 2
/// server accepts handled requests
///  16 16 31
/// Reading: 0 Writing: 1 Waiting: 1
/// ```
pub fn parse_stub_status(text: &str) -> Option<ProxyReading> {
    let mut lines = text.lines().map(str::trim);
    let active = lines.by_ref().find_map(|l| l.strip_prefix("Active connections:"))?.trim().parse().ok()?;
    lines.by_ref().find(|l| l.starts_with("server accepts handled requests"))?;
    let counts: Vec<u64> = lines.next()?.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
    let [accepts, handled, requests] = counts[..] else { return None };
    let states: Vec<&str> = lines.next()?.split_whitespace().collect();
    let state = |name: &str| states.windows(2).find(|w| w[0] == name).and_then(|w| w[1].parse::<u64>().ok());
    Some(ProxyReading {
        requests,
        active,
        extra: vec![
            ("accepts", accepts),
            ("handled", handled),
            ("reading", state("Reading:")?),
            ("writing", state("Writing:")?),
            ("waiting", state("Waiting:")?),
        ],
    })
}

/// HAProxy's stats CSV (`# pxname,svname,...` then a row per proxy and server; headers before
/// it are skipped): requests and current sessions summed over the frontends. Behind a TLS
/// passthrough switch, the terminating frontend's sessions are the switch's too: its requests
/// count, its sessions not again.
pub fn parse_haproxy_csv(text: &str) -> Option<ProxyReading> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("# pxname,"));
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (pxname, svname, scur, req_tot) = (column("pxname")?, column("svname")?, column("scur")?, column("req_tot")?);
    let (mut requests, mut active, mut frontends) = (0u64, 0u64, 0);
    for row in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = row.split(',').collect();
        if fields.get(svname) != Some(&"FRONTEND") {
            continue;
        }
        frontends += 1;
        let number = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        requests += number(req_tot);
        if fields.get(pxname) != Some(&TLS_TERMINATION_FRONTEND) {
            active += number(scur);
        }
    }
    (frontends > 0).then_some(ProxyReading { requests, active, extra: vec![] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::proxy_lines;

    #[test]
    fn nginx_stub_status_is_read_with_or_without_headers() {
        let page =
            "Active connections: 2 \nserver accepts handled requests\n 16 16 31 \nReading: 0 Writing: 1 Waiting: 1 \n";
        let want = ProxyReading {
            requests: 31,
            active: 2,
            extra: vec![("accepts", 16), ("handled", 16), ("reading", 0), ("writing", 1), ("waiting", 1)],
        };
        assert_eq!(parse_stub_status(page), Some(want.clone()));
        let raw = format!("HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\n\r\n{page}");
        assert_eq!(parse_stub_status(&raw), Some(want.clone()));
        assert_eq!(parse_stub_status("<html>404 Not Found</html>"), None);
        assert_eq!(parse_stub_status("Active connections: 2\nserver accepts handled requests\n 1 2\n"), None);
        let lines = proxy_lines("s", "lb-00", "proxy.1.abc", &want, 9);
        assert_eq!(
            lines[..2],
            ["s.proxies.lb-00.proxy_1_abc.requests 31 9\n", "s.proxies.lb-00.proxy_1_abc.active 2 9\n"]
        );
        assert_eq!(lines[6], "s.proxies.lb-00.proxy_1_abc.waiting 1 9\n");
    }

    #[test]
    fn haproxy_csv_sums_the_frontends() {
        let csv = "HTTP/1.0 200 OK\r\nContent-Type: text/csv\r\n\r\n\
# pxname,svname,qcur,qmax,scur,smax,slim,stot,req_tot,status\n\
http-default,FRONTEND,,,3,5,2048,100,250,OPEN\n\
https-default,FRONTEND,,,1,2,2048,10,20,OPEN\n\
be_0,host_0_0,0,0,2,3,,50,,UP\n\
be_0,BACKEND,0,0,2,3,205,50,,UP\n";
        assert_eq!(parse_haproxy_csv(csv), Some(ProxyReading { requests: 270, active: 4, extra: vec![] }));
        // Behind the SNI switch (https-default, mode tcp: no requests of its own).
        let switched = csv.replace(
            "https-default,FRONTEND,,,1,2,2048,10,20,OPEN\n",
            "https-default,FRONTEND,,,3,4,2048,30,,OPEN\nhttps-termination,FRONTEND,,,2,2,2048,20,20,OPEN\n",
        );
        assert_eq!(parse_haproxy_csv(&switched), Some(ProxyReading { requests: 270, active: 6, extra: vec![] }));
        assert_eq!(parse_haproxy_csv("401 Unauthorized"), None);
    }

    #[test]
    fn the_fetch_command_passes_port_path_host_and_credentials() {
        let p = ProxyTarget {
            service: "p".into(),
            kind: ProxyKind::Haproxy,
            port: 8080,
            credentials: Some(("admin".into(), "pw".into())),
        };
        let argv = fetch_command(&p);
        assert_eq!(argv[..2], ["/bin/sh", "-c"]);
        assert_eq!(argv[3..], ["interlock-stats", "8080", "/haproxy?stats;csv", "interlock_stats", "YWRtaW46cHc="]);
        let n = ProxyTarget { kind: ProxyKind::Nginx, credentials: None, port: 80, ..p };
        assert_eq!(fetch_command(&n)[4..], ["80", "/nginx_status", "interlock_stats", ""]);
    }

    /// The script itself, run by the system's sh against a local server, through each client
    /// the system has (skipped for a client it lacks).
    #[tokio::test]
    async fn the_fetch_script_gets_the_page_through_each_client() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<String>();
        let server = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                // The whole request (closing with unread data would reset the connection).
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = seen_tx.send(String::from_utf8_lossy(&request).into_owned());
                let body = "Active connections: 1 \nserver accepts handled requests\n 5 5 9 \nReading: 0 Writing: 1 Waiting: 0 \n";
                let answer = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        // Credentials (HAProxy's) go as a Basic header; nginx's page ignores it.
        let p = ProxyTarget {
            service: "p".into(),
            kind: ProxyKind::Nginx,
            port,
            credentials: Some(("u".into(), "p".into())),
        };
        let argv = fetch_command(&p);
        for client in ["curl", "wget", "bash"] {
            if std::process::Command::new("sh")
                .args(["-c", &format!("command -v {client}")])
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
            {
                eprintln!("no {client} here: skipped");
                continue;
            }
            // A PATH with only that client (and what the script itself uses).
            let dir = std::env::temp_dir().join(format!("interlock-fetch-{client}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            for tool in [client, "cat"] {
                let found =
                    std::process::Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap();
                let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
                let _ = std::fs::remove_file(dir.join(tool));
                std::os::unix::fs::symlink(path, dir.join(tool)).unwrap();
            }
            let out =
                tokio::process::Command::new("/bin/sh").args(&argv[1..]).env("PATH", &dir).output().await.unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let reading = parse_stub_status(&text);
            assert_eq!(
                reading.map(|r| (r.requests, r.active)),
                Some((9, 1)),
                "{client}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let request = seen.recv().await.unwrap();
            assert!(request.starts_with("GET /nginx_status HTTP/1."), "{client}: {request}");
            assert!(request.to_ascii_lowercase().contains("\r\nhost: interlock_stats\r\n"), "{client}: {request}");
            assert!(request.to_ascii_lowercase().contains("\r\nauthorization: basic dtpw\r\n"), "{client}: {request}");
        }
        server.abort();
    }
}
