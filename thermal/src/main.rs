//! `thermal`: the mission planner's command line. All behaviour lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kestrel_link::cli::{self, LogArgs};
use kestrel_thermal::config::LoadedThermalMission;

/// Kestrel orbit, thermal and power model: passes, eclipses, temperatures and energy of a mission.
#[derive(Debug, Parser)]
#[command(name = "thermal", version)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a mission file's orbit, ground stations and thermal sections.
    Check {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    let result = match cli.command {
        Command::Check { mission } => LoadedThermalMission::load(&mission).map(|loaded| {
            println!(
                "{}: OK for thermal (mission `{}`, {} ground stations)",
                mission.display(),
                loaded.config.mission.name,
                loaded.config.thermal.ground_stations.len()
            );
        }),
    };
    cli::finish("thermal", result)
}
