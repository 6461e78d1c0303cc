//! Logging set-up: tracing's text lines or one JSON object per line (`--log-format`) for every
//! command, and Interlock 0.3's logrus lines ([`logrus`]) for `start`. `-D` turns on interlock's
//! debug lines; `RUST_LOG` overrides the filter.

use super::args::LogFormat;

/// Every command's logging but `start`'s: `format`'s lines on standard error, `-D` for debug.
pub fn init(debug: bool, format: LogFormat) {
    use tracing_subscriber::util::SubscriberInitExt as _;
    // `-D` is interlock's debug log, not the Docker client's dump of every response body
    // (megabytes per pass); `RUST_LOG` can still ask for that.
    let default = if debug { "info,interlock=debug,reconcilers=debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    log_subscriber(format, filter, std::io::stderr, ansi).init();
}

/// The subscriber of every command but `start`: `format`'s lines, filtered, to `writer`.
pub fn log_subscriber<W>(
    format: LogFormat,
    filter: tracing_subscriber::EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        // Flat: the message and the event's fields at the top level, as shippers index them.
        LogFormat::Json => {
            Box::new(builder.json().flatten_event(true).with_current_span(false).with_span_list(false).finish())
        }
    }
}

/// `interlock start`'s logging: Interlock 0.3's (logrus's text format), see [`logrus`].
pub fn init_logrus(debug: bool) {
    let default = if debug { "info,interlock=debug,reconcilers=debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).event_format(logrus::Logrus).init();
}

/// Interlock 0.3's log format, logrus's text formatter without a terminal, for `interlock start`:
///
/// ```text
/// time="2015-10-19T01:22:59Z" level=info msg="loading plugin name=example version=0.1"
/// ```
///
/// `time` in UTC to the second (0.3 ran in a container, whose zone is UTC), `level` in logrus's
/// words (`warning`, not `warn`), the message as `msg`, then any other fields, sorted; a value is
/// quoted, Go-style, unless it is a plain word.
mod logrus {
    use std::fmt::{self, Write as _};
    use std::time::{SystemTime, UNIX_EPOCH};

    use tracing::field::{Field, Visit};
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
    use tracing_subscriber::registry::LookupSpan;

    /// See the module documentation.
    pub struct Logrus;

    impl<S, N> FormatEvent<S, N> for Logrus
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
            let mut fields = Fields::default();
            event.record(&mut fields);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            writeln!(writer, "{}", line(now, *event.metadata().level(), &fields.message, fields.rest))
        }
    }

    #[derive(Default)]
    struct Fields {
        message: String,
        rest: Vec<(String, String)>,
    }

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.record(field, value.to_owned());
        }

        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.record(field, format!("{value:?}"));
        }
    }

    impl Fields {
        fn record(&mut self, field: &Field, value: String) {
            if field.name() == "message" {
                self.message = value;
            } else {
                self.rest.push((field.name().to_owned(), value));
            }
        }
    }

    /// One log line, without its newline.
    pub fn line(unix_seconds: u64, level: Level, message: &str, mut fields: Vec<(String, String)>) -> String {
        let level = match level {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        let mut out = format!("time=\"{}\" level={level} msg={}", timestamp(unix_seconds), value(message));
        fields.sort();
        for (key, v) in fields {
            let _ = write!(out, " {key}={}", value(&v));
        }
        out
    }

    /// RFC 3339 in UTC, to the second: `2015-10-19T01:22:59Z`.
    pub fn timestamp(unix_seconds: u64) -> String {
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

    /// A value as logrus writes it: bare when it is a plain word, else quoted as Go's `%q`.
    fn value(text: &str) -> String {
        let plain = !text.is_empty()
            && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/' | '@' | '^' | '+'));
        if plain {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len() + 2);
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn lines_have_the_seeds_form() {
            // The seed's first line, 2015-10-19T01:22:59Z.
            assert_eq!(
                line(1_445_217_779, Level::INFO, "interlock running version=0.3.2 (2df2d23)", vec![]),
                "time=\"2015-10-19T01:22:59Z\" level=info msg=\"interlock running version=0.3.2 (2df2d23)\""
            );
            assert_eq!(
                line(1_445_217_779, Level::WARN, "stopping", vec![("plugin".into(), "carbon x".into())]),
                "time=\"2015-10-19T01:22:59Z\" level=warning msg=stopping plugin=\"carbon x\""
            );
            assert_eq!(
                line(0, Level::ERROR, "a \"b\"\n", vec![]),
                "time=\"1970-01-01T00:00:00Z\" level=error msg=\"a \\\"b\\\"\\n\""
            );
        }

        #[test]
        fn timestamps_are_utc_calendar_dates() {
            assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
            assert_eq!(timestamp(951_782_400), "2000-02-29T00:00:00Z");
            assert_eq!(timestamp(1_709_251_199), "2024-02-29T23:59:59Z");
            assert_eq!(timestamp(4_102_444_800), "2100-01-01T00:00:00Z");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A log writer into memory.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_logs_are_one_flat_object_per_line() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = log_subscriber(LogFormat::Json, "info".into(), move || writer.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(extension = "us-east", "quarantined: bad: \"port\"\nsecond line");
            tracing::debug!("filtered out");
            tracing::info!(writes = 3, "pass wrote");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["message"], "quarantined: bad: \"port\"\nsecond line");
        assert_eq!(lines[0]["extension"], "us-east");
        assert!(lines[0]["timestamp"].as_str().is_some_and(|t| t.contains('T')), "{text}");
        assert_eq!(lines[1]["writes"], 3);
    }
}
