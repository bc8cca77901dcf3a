//! `flight`: the on-board software's command line. All behaviour lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kestrel_flight::config::LoadedFlightMission;
use kestrel_flight::{frame_file, model_check, models};
use kestrel_link::cli::{self, LogArgs};

/// Kestrel on-board software: ingest frames, detect, checkpoint, schedule and downlink products.
#[derive(Debug, Parser)]
#[command(name = "flight", version)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a mission file for flight: syntax, every key, ranges, and that the files it names exist.
    Check {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
    },
    /// Wrap a file of space packets into a CADU stream as the mission's link section says.
    Frame {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
        /// Space packets, back to back.
        #[arg(long = "in", value_name = "PACKETS")]
        input: PathBuf,
        /// Where the CADU stream goes.
        #[arg(long = "out", value_name = "STREAM")]
        output: PathBuf,
    },
    /// Make a model-signing key pair: the signing key goes to FILE (owner-only, keep it off the
    /// spacecraft and out of the repository); the verifying key is printed.
    Keygen {
        #[arg(long, value_name = "FILE")]
        secret: PathBuf,
    },
    /// Sign a model of the manifest: writes its SHA-256 and ed25519 signature into the manifest.
    SignModel {
        /// The signing key (from `flight keygen`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[arg(long, value_name = "FILE", default_value = "models/models.toml")]
        manifest: PathBuf,
        /// The model's name in the manifest.
        #[arg(long, value_name = "NAME")]
        model: String,
    },
    /// Load ONNX Runtime and an ONNX model with the mission's execution providers, and run it once.
    ModelCheck {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
        #[arg(long, value_name = "FILE")]
        model: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    let result = match cli.command {
        Command::Check { mission } => LoadedFlightMission::load(&mission)
            .map(|loaded| {
                let m = &loaded.config;
                println!(
                    "{}: OK for flight (mission `{}`, spacecraft {}, RS interleave {}, providers {:?})",
                    mission.display(),
                    m.mission.name,
                    m.link.spacecraft_id,
                    m.link.rs_interleave.get_ref(),
                    m.flight.inference.execution_providers.get_ref().iter().map(|k| k.name()).collect::<Vec<_>>(),
                );
            })
            .map_err(anyhow::Error::from),
        Command::Frame { mission, input, output } => LoadedFlightMission::load(&mission)
            .map_err(anyhow::Error::from)
            .and_then(|loaded| frame_file::frame_file(loaded.link, &input, &output).map_err(Into::into))
            .map(|r| {
                println!(
                    "{} packets ({} bytes) -> {} CADUs ({} bytes) in {}",
                    r.packets,
                    r.packet_bytes,
                    r.cadus,
                    r.stream_bytes,
                    output.display()
                )
            }),
        Command::Keygen { secret } => models::generate_key_pair(&secret)
            .map(|public| println!("signing key written to {}\nverifying key: {public}", secret.display()))
            .map_err(Into::into),
        Command::SignModel { key, manifest, model } => models::sign(&manifest, &model, &key)
            .map(|(sha256, signature)| {
                println!("{} model `{model}`: sha256 {sha256}\nsignature {signature}", manifest.display())
            })
            .map_err(Into::into),
        Command::ModelCheck { mission, model } => LoadedFlightMission::load(&mission)
            .map_err(anyhow::Error::from)
            .and_then(|loaded| model_check::run(&loaded.config.flight.inference, &model).map_err(Into::into))
            .map(|report| print!("{report}")),
    };
    cli::finish("flight", result)
}
