//! `radiation-sim`: the fault-injection harness's command line. All behaviour lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use kestrel_mission::cli;
use kestrel_radiation_sim::campaign;
use kestrel_radiation_sim::config::CampaignMission;
use kestrel_radiation_sim::plan::Plan;

const ABOUT: &str = "Kestrel fault injection: drive the real flight and ground binaries through a mission while injecting radiation, link and power faults, and report the invariants.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that a mission file declares what a campaign drives (the flight and ground sections).
    Check {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
    },
    /// Fly the plan's frames through the real `ground` and `flight` binaries twice, undisturbed
    /// and under the plan's faults; report each fault's outcome and the invariants. Exits
    /// non-zero, naming them, when products were lost, duplicated or accepted corrupt.
    Campaign {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
        /// The campaign plan (TOML): frames, speed-up, faults.
        #[arg(long, value_name = "FILE")]
        plan: PathBuf,
        #[arg(long, value_name = "N", default_value_t = 1)]
        seed: u64,
        /// The report, as JSON; the table goes beside it (`.txt`) and to stdout, the plot beside it (`.svg`).
        #[arg(long, value_name = "OUT")]
        report: PathBuf,
        /// Where the runs keep their state and archives (default: a new temporary folder,
        /// removed afterwards).
        #[arg(long, value_name = "DIR")]
        work: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let result = match cli::parse::<Command>("radiation-sim", ABOUT) {
        Command::Check { mission } => CampaignMission::load(&mission).map_err(anyhow::Error::from).map(|loaded| {
            println!("{}: OK for radiation-sim (mission `{}`)", mission.display(), loaded.mission.name);
        }),
        Command::Campaign { mission, plan, seed, report, work } => campaign(&mission, &plan, seed, &report, work),
    };
    cli::finish("radiation-sim", result)
}

fn campaign(mission: &Path, plan: &Path, seed: u64, out: &Path, work: Option<PathBuf>) -> anyhow::Result<()> {
    CampaignMission::load(mission)?;
    let plan = Plan::load(plan)?;
    let dir = campaign::work_dir(work.as_deref(), seed);
    let result = campaign::run(mission, &plan, seed, &dir);
    if work.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let report = result.map_err(|e| anyhow::anyhow!("campaign: {e}"))?;
    let text = report.to_text();
    print!("{text}");
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes).map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))
    };
    write(out, &serde_json::to_vec_pretty(&report)?)?;
    write(&out.with_extension("txt"), text.as_bytes())?;
    kestrel_radiation_sim::plot::write_svg(&report, &out.with_extension("svg")).map_err(|e| anyhow::anyhow!(e))?;
    anyhow::ensure!(report.passed(), "invariants broken: {}", report.broken.join("; "));
    Ok(())
}
