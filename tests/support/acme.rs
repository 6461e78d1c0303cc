//! Automatic HTTPS tests' common parts (`tests/lab/acme.rs`, `tests/ha/acme.rs`): pebble's
//! listener certificates (a CA the core's `CACertificate` trusts, and a leaf for pebble's service
//! name), and HTTPS requests through a proxy whose served chain is verified against pebble's root.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// pebble's listener: a CA (what `CACertificate` trusts), and a certificate for `service` (the
/// name the core reaches pebble by) with its key, all PEM.
pub fn listener_certificates(service: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "interlock lab test: pebble's listener CA");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![service.to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &*ca)
        .unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

/// A TLS client trusting only `root_pem` (pebble's root).
pub fn tls_connector(root_pem: &str) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// One HTTPS request to `host` through the proxy at `addr` (`IP:PORT`), the chain verified
/// against `connector`'s root: the leaf's bytes, and the answer's status line (a 200).
pub async fn https_get(connector: &TlsConnector, addr: &str, host: &str) -> Result<(Vec<u8>, String), String> {
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let mut tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| format!("handshake: {e}"))?;
    let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .map_err(|_| "read timed out".to_owned())?
        .map_err(|e| format!("read: {e}"))?;
    let status = String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned();
    if !status.contains(" 200 ") {
        return Err(format!("answer: {status}"));
    }
    Ok((leaf, status))
}

/// pebble's config file: its listener's certificate and key from the secrets `cert` and `key`,
/// and the ports it validates HTTP-01 and TLS-ALPN-01 answers on.
pub fn pebble_config(cert: &str, key: &str, http_port: u16, tls_port: u16) -> String {
    serde_json::json!({
        "pebble": {
            "listenAddress": "0.0.0.0:14000",
            "managementListenAddress": "0.0.0.0:15000",
            "certificate": format!("/run/secrets/{cert}"),
            "privateKey": format!("/run/secrets/{key}"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }
    })
    .to_string()
}

/// `pebble-challtestsrv` as pebble's DNS only, answering every name with `address`.
pub fn challtestsrv_command(address: &str) -> Vec<String> {
    let args = ["-defaultIPv6", "", "-dns01", ":8053", "-http01", "", "-https01", "", "-tlsalpn01", ""];
    ["/usr/bin/pebble-challtestsrv", "-defaultIPv4", address].into_iter().chain(args).map(str::to_owned).collect()
}

/// pebble's command (`/bin/sh -c` it), with its config at `/pebble.json`: it waits until the
/// DNS service `dns` (dnsrr) has a task, and asks it.
pub fn pebble_start_script(dns: &str) -> String {
    format!(
        "until dns=$(getent hosts tasks.{dns} | cut -d' ' -f1 | head -n1) && [ -n \"$dns\" ]; do sleep 1; done; \
         exec /usr/bin/pebble -config /pebble.json -dnsserver \"$dns:8053\""
    )
}
