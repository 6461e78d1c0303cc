//! What interlock's ACME objects are called and labelled (`docs/design/acme.md`, "Storage"):
//! names by content, so that an object never changes under a name, and the labels that say what
//! each object is. Pure.
//!
//! Kept in this one file to be moved into `reconcilers` when the two ACME branches join: the
//! pure core (`reconcilers::acme`, `reconcilers::ownership`) defines the label keys,
//! `directory_id` and `certificate_name` the same way (this file's tests pin the forms so that
//! either copy can be dropped for the other); the account's name and the label sets are only
//! here.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use reconcilers::ownership::sha256_hex;

/// On interlock's ACME objects (secrets, and their sealed copies as configs): [`ACCOUNT`] or
/// [`CERTIFICATE`].
pub const LABEL_ACME: &str = "com.docker.interlock.acme";
pub const ACCOUNT: &str = "account";
pub const CERTIFICATE: &str = "certificate";
/// On a certificate's objects: the host it was ordered for.
pub const LABEL_HOST: &str = "com.docker.interlock.acme.host";
/// On a certificate's objects: its `notAfter`, RFC 3339 in UTC.
pub const LABEL_NOT_AFTER: &str = "com.docker.interlock.acme.not-after";
/// On every ACME object: [`directory_id`] of the directory it belongs to (another CA is another
/// account and other certificates).
pub const LABEL_DIRECTORY: &str = "com.docker.interlock.acme.directory";
/// A sealed copy (a config) is named as its secret, and this.
pub const SEALED_SUFFIX: &str = "-sealed";
/// Swarm's longest object name.
const MAX_NAME: usize = 64;

/// The id of a directory in [`LABEL_DIRECTORY`]: sha256 of its URL, hex.
pub fn directory_id(directory_url: &str) -> String {
    sha256_hex(directory_url.as_bytes())
}

/// The secret of a certificate for `host` holding `pem` (chain, then key):
/// `interlock-acme-<host>-<sha12>`. A host is a DNS name (`[a-z0-9.-]`, all valid in a Swarm
/// name); `*` (never ordered) becomes `_`. A long host is cut so that the sealed copy's name stays
/// within Swarm's 64 characters: the hash keeps names apart.
pub fn certificate_name(host: &str, pem: &[u8]) -> String {
    let hash = &sha256_hex(pem)[..12];
    let room = MAX_NAME - "interlock-acme-".len() - 1 - 12 - SEALED_SUFFIX.len();
    let host: String = host.replace('*', "_").chars().take(room).collect();
    format!("interlock-acme-{}-{hash}", host.trim_end_matches(['.', '-']))
}

/// The secret of the account whose stored credentials are `credentials`:
/// `interlock-acme-account-<sha12>`.
pub fn account_name(credentials: &[u8]) -> String {
    format!("interlock-acme-account-{}", &sha256_hex(credentials)[..12])
}

/// The sealed copy's name (a config) of the secret `name`.
pub fn sealed_name(name: &str) -> String {
    format!("{name}{SEALED_SUFFIX}")
}

/// The labels of an account's objects (beside interlock's ownership labels, which the writer
/// adds to every object it owns).
pub fn account_labels(directory_url: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_ACME.to_owned(), ACCOUNT.to_owned()),
        (LABEL_DIRECTORY.to_owned(), directory_id(directory_url)),
    ])
}

/// The labels of a certificate's objects.
pub fn certificate_labels(directory_url: &str, host: &str, not_after: SystemTime) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_ACME.to_owned(), CERTIFICATE.to_owned()),
        (LABEL_DIRECTORY.to_owned(), directory_id(directory_url)),
        (LABEL_HOST.to_owned(), host.to_owned()),
        (LABEL_NOT_AFTER.to_owned(), rfc3339(not_after)),
    ])
}

/// RFC 3339 in UTC, to the second (`2026-03-01T12:00:00Z`); a time before 1970 is 1970.
pub fn rfc3339(time: SystemTime) -> String {
    let unix_seconds = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3_600, secs % 3_600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn names_are_by_content() {
        let a = certificate_name("a.example.test", b"chain and key");
        assert_eq!(a, format!("interlock-acme-a.example.test-{}", &sha256_hex(b"chain and key")[..12]));
        assert_ne!(a, certificate_name("a.example.test", b"renewed"));
        assert_eq!(sealed_name(&a), format!("{a}-sealed"));
        assert_eq!(account_name(b"{}"), format!("interlock-acme-account-{}", &sha256_hex(b"{}")[..12]));
        assert_eq!(directory_id("https://acme.test/dir"), sha256_hex(b"https://acme.test/dir"));
    }

    #[test]
    fn long_hosts_are_cut_to_swarms_limit() {
        let host = format!("{}.example.test", "a".repeat(80));
        let name = certificate_name(&host, b"x");
        assert_eq!(sealed_name(&name).len(), MAX_NAME);
        // A cut that ends on a dot or dash does not leave it before the hash's dash.
        let dotted = format!("{}.b.example.test", "a".repeat(28));
        assert!(!certificate_name(&dotted, b"x").contains(".-"), "{}", certificate_name(&dotted, b"x"));
        assert!(certificate_name("*.example.test", b"x").starts_with("interlock-acme-_.example.test-"));
    }

    #[test]
    fn labels_say_what_each_object_is() {
        let not_after = UNIX_EPOCH + Duration::from_secs(1_772_366_400);
        let labels = certificate_labels("https://acme.test/dir", "a.example.test", not_after);
        assert_eq!(labels[LABEL_ACME], "certificate");
        assert_eq!(labels[LABEL_HOST], "a.example.test");
        assert_eq!(labels[LABEL_NOT_AFTER], "2026-03-01T12:00:00Z");
        assert_eq!(labels[LABEL_DIRECTORY], directory_id("https://acme.test/dir"));
        let labels = account_labels("https://acme.test/dir");
        assert_eq!(labels.len(), 2);
        assert_eq!(labels[LABEL_ACME], "account");
    }

    #[test]
    fn rfc3339_in_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(4_102_444_799)), "2099-12-31T23:59:59Z");
    }
}
