//! How the `sluice` commands log: `tracing` to stdout (`serve`) or stderr (the author's
//! tools), as text or one JSON object a line, and panics as log events.
//!
//! **Nothing logged can forge a line.** Drivers and providers put text in the log (a
//! driver's `log` messages, its error texts, a provider's answer). JSON escapes it by
//! itself; the text format writes every field through [`escape_controls`], so a newline,
//! a carriage return, a NUL or any other control character in a value shows as an escape
//! instead of starting a line of its own or rewriting the terminal.

use std::borrow::Cow;
use std::fmt;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{Writer, debug_fn};

use crate::config::LogFormat;

/// Log to stdout in `format`, filtered by `SLUICE_LOG` (default `info`), and log panics
/// the same way.
pub fn init(format: LogFormat) {
    init_with(format, "info", false);
}

/// Log to stderr as text, filtered by `SLUICE_LOG` (default `default`), so the command's
/// own output stays alone on stdout.
pub fn init_stderr(default: &str) {
    init_with(LogFormat::Text, default, true);
}

fn init_with(format: LogFormat, default: &str, stderr: bool) {
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // `try_init` because tests may start several servers in one process.
    let installed = match (format, stderr) {
        (LogFormat::Text, false) => builder.fmt_fields(escaping_fields()).try_init(),
        (LogFormat::Text, true) => builder
            .fmt_fields(escaping_fields())
            .with_writer(std::io::stderr)
            .try_init(),
        // One JSON object a line: `timestamp`, `level`, `target`, `fields` (with `message`).
        (LogFormat::Json, false) => builder.json().flatten_event(false).try_init(),
        (LogFormat::Json, true) => builder
            .json()
            .flatten_event(false)
            .with_writer(std::io::stderr)
            .try_init(),
    };
    if installed.is_ok() {
        log_panics();
    }
}

/// The text format's fields: `name=value`, space-separated, the message bare, every value
/// with its control characters escaped.
fn escaping_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    debug_fn(|writer: &mut Writer<'_>, field, value: &dyn fmt::Debug| {
        let text = format!("{value:?}");
        let text = escape_controls(&text);
        if field.name() == "message" {
            write!(writer, "{text}")
        } else {
            write!(writer, "{}={text}", field.name())
        }
    })
    .delimited(" ")
}

/// `text` with every control character (C0, DEL, C1) and the Unicode line and paragraph
/// separators written as escapes: `\n`, `\r`, `\t`, `\0`, else `\u{…}`.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let special = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.chars().any(special) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if special(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Panics become error events (target `sluice::panic`, with the location and a backtrace)
/// in the configured format, instead of raw text on stderr beside a JSON log.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(a panic without a message)".into());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::force_capture();
        tracing::error!(
            target: "sluice::panic",
            location,
            backtrace = %backtrace,
            "panicked: {message}"
        );
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("plain text, é ✓"), "plain text, é ✓");
        assert_eq!(
            escape_controls("a\nINFO forged\r\0\u{1b}[2J\u{7f}\u{85}\u{2028}\tz"),
            "a\\nINFO forged\\r\\0\\u{1b}[2J\\u{7f}\\u{85}\\u{2028}\\tz"
        );
    }

    #[test]
    fn a_logged_newline_stays_on_its_line() {
        use std::sync::{Arc, Mutex};
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(escaping_fields())
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("driver_call", driver = "evil\nINFO x");
            let _in = span.enter();
            tracing::warn!(installation = %"i\r\n1", "line one\nINFO sluice: forged");
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("line one\\nINFO sluice: forged"), "{text}");
        assert!(text.contains("installation=i\\r\\n1"), "{text}");
        assert!(text.contains("driver=\"evil\\nINFO x\""), "{text}");
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
