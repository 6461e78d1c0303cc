//! The one field interlock reads from an issued certificate: its `notAfter`, which the labels
//! record and the planner renews by. A short walk through the DER of an X.509 certificate (RFC
//! 5280, 4.1) rather than a parsing crate for one field. Pure.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT Version`, present in every v3 certificate.
const VERSION: u8 = 0xa0;

/// One DER element: its tag, its contents, and what follows it.
fn element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let (&tag, rest) = input.split_first().ok_or("DER: input ends before a tag")?;
    let (&first, rest) = rest.split_first().ok_or("DER: input ends before a length")?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits count the length's bytes (at most 4: no certificate is larger).
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err(format!("DER: unsupported length form {first:#04x}"));
        }
        let len = rest[..count].iter().fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return Err(format!("DER: element of {len} bytes, {} left", rest.len()));
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), String> {
    let (found, contents, rest) = element(input)?;
    if found != tag {
        return Err(format!("X.509: {what}: tag {found:#04x}, expected {tag:#04x}"));
    }
    Ok((contents, rest))
}

/// The `notAfter` of the DER certificate `der`.
pub fn not_after(der: &[u8]) -> Result<SystemTime, String> {
    let (certificate, _) = expect(der, SEQUENCE, "certificate")?;
    let (tbs, _) = expect(certificate, SEQUENCE, "tbsCertificate")?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = element(rest)?.2;
    }
    let (_, rest) = expect(rest, INTEGER, "serialNumber")?;
    let (_, rest) = expect(rest, SEQUENCE, "signature")?;
    let (_, rest) = expect(rest, SEQUENCE, "issuer")?;
    let (validity, _) = expect(rest, SEQUENCE, "validity")?;
    let (_, _, validity) = element(validity)?;
    let (tag, time, _) = element(validity)?;
    let text = std::str::from_utf8(time).map_err(|_| "X.509: notAfter is not text".to_owned())?;
    parse_time(tag, text)
}

/// A GeneralizedTime's text (`YYYYMMDDHHMMSSZ`), for other dates written the same way.
pub fn generalized_time(text: &str) -> Result<SystemTime, String> {
    parse_time(GENERALIZED_TIME, text)
}

/// `YYMMDDHHMMSSZ` (UTCTime: 50–99 are 19xx, RFC 5280 4.1.2.5.1) or `YYYYMMDDHHMMSSZ`
/// (GeneralizedTime), the only forms RFC 5280 allows.
fn parse_time(tag: u8, text: &str) -> Result<SystemTime, String> {
    let bad = || format!("X.509: notAfter {text:?} is not a UTC time RFC 5280 allows");
    let digits = text.strip_suffix('Z').filter(|d| d.bytes().all(|b| b.is_ascii_digit())).ok_or_else(bad)?;
    let number = |range: std::ops::Range<usize>| digits[range].parse::<i64>().map_err(|_| bad());
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy = number(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (GENERALIZED_TIME, 14) => (number(0..4)?, 4),
        _ => return Err(bad()),
    };
    let field = |i: usize| number(rest + 2 * i..rest + 2 * i + 2);
    let (month, day, hour, minute, second) = (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return Err(bad());
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second;
    let seconds = u64::try_from(seconds).map_err(|_| bad())?;
    Ok(UNIX_EPOCH + Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(time: SystemTime) -> u64 {
        time.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn reads_not_after_of_a_real_certificate() {
        for (year, month, day, expected) in
            [(2031, 5, 6, 1_935_792_000), (2049, 12, 31, 2_524_521_600), (2050, 1, 1, 2_524_608_000)]
        {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["a.example.test".to_owned()]).unwrap();
            params.not_after = rcgen::date_time_ymd(year, month, day);
            let cert = params.self_signed(&key).unwrap();
            assert_eq!(unix(not_after(cert.der()).unwrap()), expected, "{year}-{month}-{day}");
        }
    }

    #[test]
    fn times_of_both_forms() {
        assert_eq!(unix(parse_time(UTC_TIME, "700101000000Z").unwrap()), 0);
        assert_eq!(unix(parse_time(UTC_TIME, "260301120000Z").unwrap()), 1_772_366_400);
        assert_eq!(unix(parse_time(GENERALIZED_TIME, "20260301120000Z").unwrap()), 1_772_366_400);
        assert_eq!(unix(parse_time(GENERALIZED_TIME, "20000229235959Z").unwrap()), 951_868_799);
        for (tag, text) in [
            (UTC_TIME, "2603011200Z"),
            (UTC_TIME, "260301120000"),
            (UTC_TIME, "261301120000Z"),
            (UTC_TIME, "26030112000+Z"),
            (GENERALIZED_TIME, "260301120000Z"),
            (SEQUENCE, "260301120000Z"),
        ] {
            assert!(parse_time(tag, text).is_err(), "{text}");
        }
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example.test".to_owned()]).unwrap().self_signed(&key).unwrap();
        let der = cert.der().to_vec();
        for len in 0..der.len() {
            let _ = not_after(&der[..len]);
        }
        for i in 0..der.len() {
            let mut altered = der.clone();
            altered[i] = altered[i].wrapping_add(0x41);
            let _ = not_after(&altered);
        }
        assert!(not_after(&[]).is_err());
        assert!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
