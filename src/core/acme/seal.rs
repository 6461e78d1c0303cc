//! Sealing ACME material (account credentials, certificates with their keys) into bytes that may
//! sit in a Swarm config, which anyone with API access can read back: only a holder of the key
//! material (the managers' secret the extension tokens derive from, `docs/design/acme.md`) can
//! open them, and any change to them is detected.
//!
//! Format (version 1): `[1] ‖ nonce (12 bytes) ‖ ChaCha20-Poly1305(ciphertext ‖ tag)`. The key is
//! HKDF-SHA256 of the key material with the fixed label [`LABEL`] (so this key is never the one
//! the tokens use); the nonce is random per seal (a key seals few objects, far from the birthday
//! bound of 96 random bits); the version byte is authenticated as associated data, so a future
//! format cannot be passed off as this one.

use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

/// The HKDF label (`info`) of the sealing key: another use of the same key material gets another
/// key.
pub const LABEL: &[u8] = b"interlock acme seal v1";
/// The format's first byte.
pub const VERSION: u8 = 1;
const NONCE_LEN: usize = aead::NONCE_LEN;
const TAG_LEN: usize = 16;

/// Why sealed bytes could not be opened: too short, of another format version, or not sealed by
/// this key (or altered since, which the tag cannot tell apart).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("sealed data is too short ({0} bytes)")]
    Truncated(usize),
    #[error("sealed data has version {0}, this build reads version {VERSION}")]
    Version(u8),
    /// Another key (the key material changed: a rotated join token), or altered bytes.
    #[error("sealed data does not open with this key (another key, or altered)")]
    Open,
}

/// The sealing key for `key_material`.
fn key(key_material: &str) -> LessSafeKey {
    // HKDF-SHA256 with no salt (the key material is already a secret of full strength; the label
    // separates this use from others).
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(key_material.as_bytes());
    let info = [LABEL];
    let okm = prk.expand(&info, &CHACHA20_POLY1305).expect("32 bytes is within HKDF-SHA256's output limit");
    LessSafeKey::new(UnboundKey::from(okm))
}

/// `plaintext` sealed under `key_material` with a fresh random nonce.
pub fn seal(key_material: &str, plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).expect("the system's random source works");
    let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    let mut body = plaintext.to_vec();
    key(key_material)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from([VERSION]), &mut body)
        .expect("ChaCha20-Poly1305 seals any length a config can hold");
    out.extend_from_slice(&body);
    out
}

/// The plaintext of `sealed`, if `key_material` sealed it and nothing changed it since.
pub fn unseal(key_material: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    let Some((&version, rest)) = sealed.split_first() else {
        return Err(SealError::Truncated(0));
    };
    if version != VERSION {
        return Err(SealError::Version(version));
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(SealError::Truncated(sealed.len()));
    }
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Truncated(sealed.len()))?;
    let mut body = body.to_vec();
    let plaintext =
        key(key_material).open_in_place(nonce, Aad::from([VERSION]), &mut body).map_err(|_| SealError::Open)?;
    Ok(plaintext.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-7p73s1dx5in4tatdymyhg9hu2";

    #[test]
    fn round_trip() {
        for plaintext in [&b""[..], b"x", b"-----BEGIN CERTIFICATE-----\nMIIB...\n", &[0u8; 70_000]] {
            let sealed = seal(KEY, plaintext);
            assert_eq!(sealed[0], VERSION);
            assert_eq!(sealed.len(), 1 + NONCE_LEN + plaintext.len() + TAG_LEN);
            assert_eq!(unseal(KEY, &sealed).unwrap(), plaintext);
        }
    }

    #[test]
    fn each_seal_has_its_own_nonce() {
        let (a, b) = (seal(KEY, b"same"), seal(KEY, b"same"));
        assert_ne!(a, b, "a random nonce per seal: equal plaintexts do not show");
        assert_eq!(unseal(KEY, &a), unseal(KEY, &b));
    }

    #[test]
    fn any_altered_byte_is_detected() {
        let sealed = seal(KEY, b"account credentials");
        for i in 1..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 0x01;
            assert_eq!(unseal(KEY, &altered), Err(SealError::Open), "byte {i}");
        }
        let mut versioned = sealed.clone();
        versioned[0] = 2;
        assert_eq!(unseal(KEY, &versioned), Err(SealError::Version(2)));
    }

    #[test]
    fn another_key_does_not_open() {
        let sealed = seal(KEY, b"certificate and key");
        assert_eq!(unseal("SWMTKN-1-another", &sealed), Err(SealError::Open));
        assert_eq!(unseal("", &sealed), Err(SealError::Open));
    }

    #[test]
    fn truncated_input_is_refused() {
        let sealed = seal(KEY, b"certificate and key");
        assert_eq!(unseal(KEY, &[]), Err(SealError::Truncated(0)));
        for len in 1..1 + NONCE_LEN + TAG_LEN {
            assert_eq!(unseal(KEY, &sealed[..len]), Err(SealError::Truncated(len)), "{len} bytes");
        }
        // Long enough to parse, but cut: the tag no longer matches.
        for len in 1 + NONCE_LEN + TAG_LEN..sealed.len() {
            assert_eq!(unseal(KEY, &sealed[..len]), Err(SealError::Open), "{len} bytes");
        }
    }

    #[test]
    fn the_key_is_derived_with_the_fixed_label() {
        // A fixed vector: the same key material opens what an earlier build sealed.
        let sealed = seal(KEY, b"v1");
        let mut raw = [0u8; 32];
        hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
            .extract(KEY.as_bytes())
            .expand(&[b"interlock acme seal v1".as_slice()], &CHACHA20_POLY1305)
            .unwrap()
            .fill(&mut raw)
            .unwrap();
        let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &raw).unwrap());
        let mut body = sealed[1 + NONCE_LEN..].to_vec();
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN]).unwrap();
        assert_eq!(key.open_in_place(nonce, Aad::from([VERSION]), &mut body).unwrap(), b"v1");
    }
}
