//! `ground`: the ground station's command line. All behaviour lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kestrel_ground::config::LoadedGroundMission;
use kestrel_link::cli::{self, LogArgs};

/// Kestrel ground station: receive CADU streams, verify and archive products, serve the console.
#[derive(Debug, Parser)]
#[command(name = "ground", version)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a mission file for the ground station: syntax, every key, and that the files it names exist.
    Check {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    let result = match cli.command {
        Command::Check { mission } => LoadedGroundMission::load(&mission).map(|loaded| {
            let g = &loaded.config.ground;
            println!(
                "{}: OK for ground (mission `{}`, CADUs on {}, console on {})",
                mission.display(),
                loaded.config.mission.name,
                g.cadu_listen,
                g.http_listen
            );
        }),
    };
    cli::finish("ground", result)
}
