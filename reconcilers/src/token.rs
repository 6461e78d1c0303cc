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
