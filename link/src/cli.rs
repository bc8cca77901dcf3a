//! What every Kestrel command line shares: the log options and how an error ends the process.

use std::fmt::Display;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per event, for log collectors and the fault-injection harness.
    Json,
}

/// The logging options of every binary; `#[command(flatten)]` them into its parser.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format on stderr; `RUST_LOG` sets the level (default `info`).
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the global `tracing` subscriber writing to stderr.
    pub fn init(&self) {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        // An error here only means a subscriber is already installed.
        let _ = match self.log_format {
            LogFormat::Text => builder.try_init(),
            LogFormat::Json => builder.json().flatten_event(true).try_init(),
        };
    }
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
