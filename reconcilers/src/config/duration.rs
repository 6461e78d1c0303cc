//! Go's duration syntax (`"3s"`, `"500ms"`, `"1m30s"`, `"1.5h"`), which Interlock's TOML uses for
//! `PollInterval`, `ProxyStopGracePeriod` and `ProxyUpdateDelay`.

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("negative durations are not allowed")]
    Negative,
    #[error("missing unit in duration {0:?} (use ns, us, ms, s, m or h, e.g. \"3s\")")]
    MissingUnit(String),
    #[error("unknown unit {unit:?} in duration {input:?} (use ns, us, ms, s, m or h)")]
    UnknownUnit { unit: String, input: String },
    #[error("invalid duration {0:?} (expected Go's form, e.g. \"3s\", \"500ms\", \"1m30s\")")]
    Invalid(String),
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses a Go duration. `"0"` is the only value allowed without a unit, as in Go.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let s = match s.strip_prefix('-') {
        Some(rest) if rest.trim_start_matches(['0', '.']).chars().any(|c| c.is_ascii_digit() && c != '0') => {
            return Err(DurationError::Negative);
        }
        Some(rest) => rest,
        None => s.strip_prefix('+').unwrap_or(s),
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total_nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if number_len == 0 {
            return Err(DurationError::Invalid(input.to_owned()));
        }
        let (number, after) = rest.split_at(number_len);
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(input.to_owned()));
        }
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(DurationError::UnknownUnit { unit: unit.to_owned(), input: input.to_owned() });
            }
        };
        total_nanos = total_nanos
            .checked_add(scaled(number, unit_nanos).ok_or_else(|| DurationError::Invalid(input.to_owned()))?)
            .ok_or_else(|| DurationError::Overflow(input.to_owned()))?;
        rest = after;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| DurationError::Overflow(input.to_owned()))?;
    // The remainder of a division by 10^9 always fits in u32.
    let nanos = (total_nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// `number` (digits with at most one '.') times `unit_nanos`, exactly for the integer part and
/// truncated to whole nanoseconds for the fraction, as Go does.
fn scaled(number: &str, unit_nanos: u128) -> Option<u128> {
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) if !f.contains('.') => (i, f),
        Some(_) => return None,
        None => (number, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let int: u128 = if int_part.is_empty() { 0 } else { int_part.parse().ok()? };
    let mut value = int.checked_mul(unit_nanos)?;
    let mut scale = unit_nanos;
    for digit in frac_part.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        value = value.checked_add(u128::from(digit - b'0') * scale)?;
    }
    Some(value)
}

/// Formats a duration the way Go prints it (`1m30s`, `500ms`, `0s`), for summaries and plans.
pub fn format_go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let nanos = d.as_nanos();
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}us", trim_fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos, 1_000_000));
    }
    let total_secs = d.as_secs();
    let (h, m) = (total_secs / 3600, (total_secs % 3600) / 60);
    let secs = trim_fraction(nanos % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let frac = format!("{frac:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_go_forms() {
        let cases = [
            ("3s", Duration::from_secs(3)),
            ("500ms", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("2h45m", Duration::from_secs(2 * 3600 + 45 * 60)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("-0s", Duration::ZERO),
        ];
        for (input, want) in cases {
            assert_eq!(parse_go_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_bad_forms() {
        assert_eq!(parse_go_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_go_duration("3"), Err(DurationError::MissingUnit("3".into())));
        assert!(matches!(parse_go_duration("3sec"), Err(DurationError::UnknownUnit { .. })));
        assert!(matches!(parse_go_duration("3d"), Err(DurationError::UnknownUnit { .. })));
        assert_eq!(parse_go_duration("-3s"), Err(DurationError::Negative));
        assert!(matches!(parse_go_duration("1..5s"), Err(DurationError::Invalid(_))));
        assert!(matches!(parse_go_duration("s"), Err(DurationError::Invalid(_))));
        assert!(parse_go_duration("three seconds").is_err());
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(nanos in 0u64..10_000_000_000_000u64) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_go_duration(&format_go_duration(d)), Ok(d));
        }
    }
}
