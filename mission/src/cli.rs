//! What every Kestrel command line shares: the log options, how its arguments are read, and how
//! an error ends the process.

use std::borrow::Cow;
use std::fmt::{Display, Write as _};
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per event, for log collectors and the fault-injection harness.
    Json,
}

/// The logging options of every binary (`parse` reads them before its subcommand).
#[derive(Debug, Clone, Args)]
struct LogArgs {
    /// Log format on stderr; `RUST_LOG` sets the level (default `info`).
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

impl LogArgs {
    /// Installs the global `tracing` subscriber writing to stderr.
    fn init(&self) {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        // An error here only means a subscriber is already installed.
        let _ = match self.log_format {
            LogFormat::Text => builder.fmt_fields(EscapedFields).try_init(),
            LogFormat::Json => builder.json().flatten_event(true).try_init(),
        };
    }
}

/// A binary's command line: the shared log options, then its own subcommand.
#[derive(Debug, Parser)]
#[command(version)]
struct CommandLine<C: Subcommand> {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: C,
}

/// Reads the process's arguments as binary `name` (`about` heads its help), installs the logging
/// they ask for and returns the subcommand; a mistake exits with clap's message.
pub fn parse<C: Subcommand>(name: &'static str, about: &'static str) -> C {
    let matches = CommandLine::<C>::command().name(name).bin_name(name).about(about).get_matches();
    let line = CommandLine::<C>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    line.log.init();
    line.command
}

/// The text format's fields, the message among them, with control characters escaped
/// ([`escape_controls`]): whatever a logged name holds, one event is one line. (The JSON format
/// escapes them itself.)
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> std::fmt::Result {
        let mut text = String::new();
        DefaultFields::new().format_fields(Writer::new(&mut text), fields)?;
        writer.write_str(&escape_controls(&text))
    }
}

/// `text` with each control character (newline, carriage return, escape, ...) written as its
/// Rust escape (`\n`, `\u{1b}`): a name that came from outside (a spool file's) shown in a log line
/// or an event can neither break the line nor forge another.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(escaped, "{}", c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

/// Ends a command: success, or the error on stderr prefixed with the program's name and exit code 1.
pub fn finish<E: Display>(program: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        assert!(matches!(escape_controls("frame-1.tif ü `x`"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("a\nINFO forged\r\u{1b}[31m\t"), "a\\nINFO forged\\r\\u{1b}[31m\\t");
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_newline_in_a_logged_name_cannot_forge_a_text_log_line() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(EscapedFields)
            .finish();
        let name = "a.png\n2026-03-20T00:00:00Z ERROR flight: forged";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(source = "spool", path = %name, "spool `{name}`: a FIFO; quarantined");
        });
        let text = String::from_utf8(captured.0.lock().expect("log").clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(text.matches("a.png\\n2026").count(), 2, "message and field, escaped: {text}");
    }
}
