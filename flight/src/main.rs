//! `flight`: the on-board software's command line (check a mission, fly it). All behaviour lives
//! in the library; the operator's tools for models, imagery and framing are `flight-tools`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use kestrel_flight::checkpoint::Durability;
use kestrel_flight::clock::Clock;
use kestrel_flight::config::LoadedFlightMission;
use kestrel_flight::mission_detector::{MissionDetector, MissionDetectorError};
use kestrel_flight::models::ModelError;
use kestrel_flight::pipeline::{Pipeline, Stop};
use kestrel_mission::cli;
use kestrel_thermal::config::LoadedThermalMission;

const ABOUT: &str = "Kestrel on-board software: ingest frames, detect, checkpoint, schedule and downlink products. Models, imagery and framing on the ground: `flight-tools`.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a mission file for flight: syntax, every key, ranges, and that the files it names
    /// exist; with the `[thermal]` section (TLE, stations, plant) that `flight run` also reads.
    Check {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
    },
    /// Fly: ingest frames from the spool, detect, checkpoint, and downlink products in contacts.
    Run {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
        /// Run a simulated clock this many times faster than the wall clock, from the mission
        /// epoch (or where the checkpoint left it); without it, the system clock.
        #[arg(long, value_name = "FACTOR")]
        speedup: Option<f64>,
        /// Stop after this much mission time, e.g. 90s, 45m, 6h.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration_ms)]
        duration_ms: Option<i64>,
        /// Stop once the spool is empty, every frame is processed and every product acknowledged.
        #[arg(long)]
        until_drained: bool,
        /// Also write the run summary as JSON.
        #[arg(long, value_name = "FILE")]
        summary: Option<PathBuf>,
        /// Benchmarks only: keep the checkpoint in a temporary database that is never flushed
        /// (a crash loses everything), to measure what checkpointing costs.
        #[arg(long, hide = true)]
        volatile_checkpoint: bool,
    },
}

fn main() -> ExitCode {
    let result = match cli::parse::<Command>("flight", ABOUT) {
        // what `flight run` reads: the flight view, and `[thermal]` (contacts, the scheduler's plant)
        Command::Check { mission } => check(&mission),
        Command::Run { mission, speedup, duration_ms, until_drained, summary, volatile_checkpoint } => {
            let stop = Stop { after_ms: duration_ms, when_drained: until_drained };
            let durability = if volatile_checkpoint { Durability::Volatile } else { Durability::Durable };
            run(&mission, speedup, stop, durability, summary.as_deref())
        }
    };
    cli::finish("flight", result)
}

/// `flight check`: the mission file, its `[thermal]` section, and the mission's models (in the
/// manifest, signed, and loaded: their input and output checked as flight will run them).
fn check(mission: &Path) -> anyhow::Result<()> {
    let loaded = LoadedFlightMission::load(mission)?;
    LoadedThermalMission::load(mission)?;
    let detector = MissionDetector::load(&loaded, None).map_err(|e| match e {
        MissionDetectorError::Model(ModelError::Unknown(_)) => {
            anyhow::anyhow!("{}: key `flight.detector.model`: {e}", mission.display())
        }
        e => e.into(),
    })?;
    let m = &loaded.config;
    let spec = detector.spec();
    println!(
        "{}: OK for flight (mission `{}`, spacecraft {}, RS interleave {}, providers {:?}; model `{}` loads on {}: \
         {} channels of {} px, {} classes, output {})",
        mission.display(),
        m.mission.name,
        m.link.spacecraft_id,
        m.link.rs_interleave.get_ref(),
        m.flight.inference.execution_providers.get_ref().iter().map(|k| k.name()).collect::<Vec<_>>(),
        spec.name,
        detector.provider().name(),
        spec.bands.len(),
        spec.input_size,
        spec.classes.len(),
        spec.layout.describe(),
    );
    Ok(())
}

fn run(
    mission: &Path,
    speedup: Option<f64>,
    stop: Stop,
    durability: Durability,
    summary_file: Option<&Path>,
) -> anyhow::Result<()> {
    let loaded = LoadedFlightMission::load(mission)?;
    let thermal = LoadedThermalMission::load(mission)?;
    let clock = match speedup {
        Some(factor) if factor.is_finite() && factor > 0.0 => {
            Clock::simulated(loaded.config.mission.epoch_ms(), factor)
        }
        Some(factor) => anyhow::bail!("--speedup must be a positive factor, not {factor}"),
        None => Clock::Real,
    };
    if durability == Durability::Volatile {
        tracing::warn!("the checkpoint is volatile: this run is not crash-safe (benchmarks only)");
    }
    let mut pipeline = Pipeline::start(loaded, thermal, clock, durability)?;
    let summary = pipeline.run(stop)?;
    println!("{}", summary.to_text());
    if let Some(path) = summary_file {
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)
            .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
    }
    Ok(())
}

/// "90s", "45m", "6h", "2d" or plain seconds, as milliseconds.
fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let seconds = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(format!("unit `{unit}` is not s, m, h or d")),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("`{number}` is not a number"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("`{text}` is not a duration"));
    }
    Ok((value * seconds * 1000.0) as i64)
}
