//! `radiation-sim`: the fault-injection harness's command line. All behaviour lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kestrel_link::cli::{self, LogArgs};
use kestrel_radiation_sim::config::CampaignMission;

/// Kestrel fault injection: drive the real flight and ground binaries through a mission while
/// injecting radiation, link and power faults, and report the invariants.
#[derive(Debug, Parser)]
#[command(name = "radiation-sim", version)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that a mission file declares what a campaign drives (the flight and ground sections).
    Check {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    let result = match cli.command {
        Command::Check { mission } => CampaignMission::load(&mission).map(|loaded| {
            println!("{}: OK for radiation-sim (mission `{}`)", mission.display(), loaded.mission.name);
        }),
    };
    cli::finish("radiation-sim", result)
}
