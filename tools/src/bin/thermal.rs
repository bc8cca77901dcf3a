//! `thermal`: the mission planner's command line. All behaviour lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use kestrel_mission::cli;
use kestrel_thermal::config::LoadedThermalMission;
use kestrel_thermal::plan::{self, GpuProfile};
use kestrel_tools::thermal_plot;

const ABOUT: &str = "Kestrel orbit, thermal and power model: passes, eclipses, temperatures and energy of a mission.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a mission file's orbit, ground stations and thermal sections.
    Check {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
    },
    /// Plan the mission over N orbits: passes, eclipses, temperature and state-of-charge extremes
    /// against their limits; writes a plot of temperatures, SoC, eclipses and passes.
    Plan {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
        #[arg(long, default_value_t = 3.0)]
        orbits: f64,
        /// What the GPU does: the hot case (active) or the cold case (idle).
        #[arg(long, value_enum, default_value_t = GpuProfile::Active)]
        gpu: GpuProfile,
        /// Where the plot goes (SVG).
        #[arg(long, value_name = "FILE", default_value = "thermal-plan.svg")]
        plot: PathBuf,
        /// Print the plan as JSON (passes, eclipses, extremes) instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let result = match cli::parse::<Command>("thermal", ABOUT) {
        Command::Check { mission } => LoadedThermalMission::load(&mission)
            .map(|loaded| {
                println!(
                    "{}: OK for thermal (mission `{}`, {} ground stations)",
                    mission.display(),
                    loaded.config.mission.name,
                    loaded.config.thermal.ground_stations.len()
                );
            })
            .map_err(anyhow::Error::from),
        Command::Plan { mission, orbits, gpu, plot, json } => run_plan(&mission, orbits, gpu, &plot, json),
    };
    cli::finish("thermal", result)
}

fn run_plan(mission: &Path, orbits: f64, gpu: GpuProfile, plot: &Path, json: bool) -> anyhow::Result<()> {
    if !(orbits > 0.0 && orbits <= 1000.0) {
        anyhow::bail!("--orbits must be above 0 and at most 1000, found {orbits}");
    }
    let loaded = LoadedThermalMission::load(mission)?;
    let plan = plan::plan(&loaded, orbits, gpu)
        .map_err(|e| anyhow::anyhow!("{}: key `thermal.tle`: {e}", mission.display()))?;
    thermal_plot::write_svg(&plan, plot).map_err(anyhow::Error::msg)?;
    if json {
        let report = serde_json::json!({
            "passes": plan.passes,
            "eclipses": plan.eclipse_intervals(),
            "temperatures_c": plan.nodes.iter().map(|n| serde_json::json!({"node": n.name, "min": n.min_c, "max": n.max_c, "limits": [n.limits_c.0, n.limits_c.1]})).collect::<Vec<_>>(),
            "soc": [plan.soc_range.0, plan.soc_range.1],
            "within_limits": plan.within_limits(),
            "energy_balance_error": plan.energy_balance_error(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{plan}");
        println!("plot written to {}", plot.display());
    }
    Ok(())
}
