//! The extension's credentials: a per-extension token the core derives, so that it can check
//! an extension's requests without storing anything, and so that every core instance (a restart,
//! a standby) derives the same token.
//!
//! `token = HMAC-SHA256(key, "interlock extension token\0" + extension name)`, hex. The key is a
//! secret only swarm managers can read (the shell passes the swarm's manager join token), so a
//! token reveals nothing about it, and one extension's token says nothing about another's: an
//! extension can read only its own cluster's config.

use sha2::{Digest, Sha256};

const BLOCK: usize = 64;

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The token of `extension` under `key`.
pub fn extension_token(key: &str, extension: &str) -> String {
    let mut message = b"interlock extension token\0".to_vec();
    message.extend_from_slice(extension.as_bytes());
    hex(&hmac_sha256(key.as_bytes(), &message))
}

/// The scheme of the `Authorization` header an extension signs its requests with:
/// `Interlock-HMAC ts=UNIX_SECONDS,nonce=HEX,mac=HEX`. The token itself never crosses the
/// network: only MACs made with it do.
pub const AUTH_SCHEME: &str = "Interlock-HMAC";
/// The response header carrying the core's MAC over its answer ([`response_mac`]).
pub const RESPONSE_MAC_HEADER: &str = "x-interlock-mac";
/// How far a request's time may be from the core's clock (either way), in seconds. Swarm nodes
/// keep their clocks close (certificate rotation needs it); five minutes allows for drift.
pub const MAX_SKEW_SECS: u64 = 300;

/// What an extension's request signs: the extension, the request line, its time and nonce, and
/// its body's digest. So a captured request cannot be changed, sent for another extension, or
/// (with the core's nonce cache and the time window) replayed.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub extension: &'a str,
    pub method: &'a str,
    /// Path and query, as sent (`/v1/extensions/us-east/config?after=…&generation=3`).
    pub target: &'a str,
    pub timestamp: u64,
    pub nonce: &'a str,
    pub body: &'a [u8],
}

/// The MAC of a request under the extension's `token` (hex).
pub fn request_mac(token: &str, request: &SignedRequest<'_>) -> String {
    let message = [
        b"interlock request".as_slice(),
        request.extension.as_bytes(),
        request.method.as_bytes(),
        request.target.as_bytes(),
        request.timestamp.to_string().as_bytes(),
        request.nonce.as_bytes(),
        hex(&Sha256::digest(request.body)).as_bytes(),
    ]
    .join(&0u8);
    hex(&hmac_sha256(token.as_bytes(), &message))
}

/// The MAC of the core's answer to the request that carried `nonce`, under the extension's
/// `token` (hex): bound to that request, so an old answer (an older delivery) cannot be
/// replayed to a later one, and to the extension, whose token only it and the core hold.
pub fn response_mac(token: &str, extension: &str, nonce: &str, status: u16, body: &[u8]) -> String {
    let message = [
        b"interlock response".as_slice(),
        extension.as_bytes(),
        nonce.as_bytes(),
        status.to_string().as_bytes(),
        hex(&Sha256::digest(body)).as_bytes(),
    ]
    .join(&0u8);
    hex(&hmac_sha256(token.as_bytes(), &message))
}

/// The parts of an `Authorization: Interlock-HMAC ts=…,nonce=…,mac=…` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub timestamp: u64,
    pub nonce: String,
    pub mac: String,
}

impl Authorization {
    /// The header's value.
    pub fn header(&self) -> String {
        format!("{AUTH_SCHEME} ts={},nonce={},mac={}", self.timestamp, self.nonce, self.mac)
    }

    /// Parses a header's value; `None` unless it is exactly the scheme with its three fields
    /// (a nonce of 16 to 64 hex digits, a 64-digit MAC).
    pub fn parse(value: &str) -> Option<Self> {
        let fields = value.strip_prefix(AUTH_SCHEME)?.strip_prefix(' ')?;
        let (mut timestamp, mut nonce, mut mac) = (None, None, None);
        for field in fields.split(',') {
            match field.trim().split_once('=')? {
                ("ts", v) => timestamp = Some(v.parse().ok()?),
                ("nonce", v) if (16..=64).contains(&v.len()) && is_hex(v) => nonce = Some(v.to_owned()),
                ("mac", v) if v.len() == 64 && is_hex(v) => mac = Some(v.to_owned()),
                _ => return None,
            }
        }
        Some(Self { timestamp: timestamp?, nonce: nonce?, mac: mac? })
    }
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Compares without an early exit, so the time taken says nothing about where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 2 and 6 (a key longer than a block).
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn request_and_response_macs_bind_every_part() {
        let token = extension_token("key", "us-east");
        let request = SignedRequest {
            extension: "us-east",
            method: "GET",
            target: "/v1/extensions/us-east/config?after=&generation=0",
            timestamp: 1_700_000_000,
            nonce: "00112233445566778899aabbccddeeff",
            body: b"",
        };
        let mac = request_mac(&token, &request);
        assert_eq!(mac.len(), 64);
        assert_eq!(mac, request_mac(&token, &request));
        for changed in [
            SignedRequest { extension: "us-west", ..request },
            SignedRequest { method: "POST", ..request },
            SignedRequest { target: "/v1/extensions/us-east/config?after=&generation=1", ..request },
            SignedRequest { timestamp: 1_700_000_001, ..request },
            SignedRequest { nonce: "00112233445566778899aabbccddeefe", ..request },
            SignedRequest { body: b"x", ..request },
        ] {
            assert_ne!(request_mac(&token, &changed), mac, "{changed:?}");
        }
        assert_ne!(request_mac(&extension_token("key", "us-west"), &request), mac, "another extension's token");
        let answer = response_mac(&token, "us-east", request.nonce, 200, b"{}");
        assert_ne!(answer, response_mac(&token, "us-east", "ffff2233445566778899aabbccddeeff", 200, b"{}"));
        assert_ne!(answer, response_mac(&token, "us-east", request.nonce, 200, b"{ }"));
        assert_ne!(answer, response_mac(&token, "us-east", request.nonce, 204, b"{}"));
        assert_ne!(answer, response_mac(&token, "us-west", request.nonce, 200, b"{}"));
    }

    #[test]
    fn the_authorization_header_round_trips_and_rejects_anything_else() {
        let auth = Authorization { timestamp: 5, nonce: "ab".repeat(16), mac: "cd".repeat(32) };
        assert_eq!(Authorization::parse(&auth.header()), Some(auth.clone()));
        for bad in [
            "Bearer abc".to_owned(),
            auth.header().replace("ts=5", "ts=x"),
            auth.header().replace(",mac=", ",max="),
            format!("{AUTH_SCHEME} ts=5,nonce=zz{},mac={}", "ab".repeat(15), "cd".repeat(32)),
            format!("{AUTH_SCHEME} ts=5,nonce={}", "ab".repeat(16)),
        ] {
            assert_eq!(Authorization::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn tokens_differ_by_extension_and_key() {
        let a = extension_token("SWMTKN-1-key", "us-east");
        assert_eq!(a.len(), 64);
        assert_eq!(a, extension_token("SWMTKN-1-key", "us-east"));
        assert_ne!(a, extension_token("SWMTKN-1-key", "us-west"));
        assert_ne!(a, extension_token("SWMTKN-1-other", "us-east"));
        assert!(same_token(&a, &a.clone()));
        assert!(!same_token(&a, &extension_token("SWMTKN-1-key", "us-west")));
        assert!(!same_token(&a, &a[..10]));
    }
}
