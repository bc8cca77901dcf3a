//! `ground`: the ground station's command line. All behaviour lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use kestrel_ground::archive::{self, DetectionQuery};
use kestrel_ground::config::LoadedGroundMission;
use kestrel_ground::decode_file::{Report, decode_file};
use kestrel_ground::http_server;
use kestrel_ground::serve::{self, Service};
use kestrel_link::profile::LinkProfile;
use kestrel_mission::cli;

const ABOUT: &str = "Kestrel ground station: receive CADU streams, verify and archive products, serve the console.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a mission file for the ground station: syntax, every key, and that the files it names exist.
    Check {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
    },
    /// Run the ground station: receive CADU streams from stations over TCP, verify and archive
    /// products, acknowledge them on the uplink, and serve the HTTP API. Stops on SIGINT or SIGTERM.
    Serve {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
        /// The archive: a `postgres://user:password@host/database` URL to share one archive between
        /// ground stations; without it, the embedded archive in the mission's `ground.archive_dir`.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
    /// Write the mission dictionary (parameters, telecommands, housekeeping channels with the
    /// mission's limits, event sources): as XTCE 1.2 for Yamcs and other ground systems, or as
    /// the JSON that `GET /api/dictionary` serves.
    Dictionary {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
        #[arg(long, value_name = "FILE", required_unless_present = "json")]
        xtce: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Add an operator: a new token is printed (hand it to the operator; it is stored nowhere) and
    /// its SHA-256 appended to the operators file under the name.
    OperatorToken {
        /// The operators file (the mission's `ground.operators_file`); made if missing.
        #[arg(long, value_name = "FILE")]
        operators: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Export detections from the archive as GeoJSON (points at detection centres).
    Export {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
        /// The archive (a postgres:// URL); without it, the mission's embedded archive, which
        /// `ground serve` must not be holding open.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        #[arg(long, value_name = "FILE")]
        geojson: PathBuf,
        /// Only this class.
        #[arg(long)]
        class: Option<String>,
        /// Only inside west,south,east,north (degrees).
        #[arg(long, value_name = "W,S,E,N", value_delimiter = ',', num_args = 4, allow_negative_numbers = true)]
        bbox: Option<Vec<f64>>,
        /// Frame times from (inclusive) and to (exclusive), ms since the Unix epoch.
        #[arg(long, allow_negative_numbers = true)]
        from_ms: Option<i64>,
        #[arg(long, allow_negative_numbers = true)]
        to_ms: Option<i64>,
        /// Most detections to export.
        #[arg(long, default_value_t = 1_000_000)]
        limit: usize,
    },
    /// Decode a recorded CADU stream: report CADUs, RS corrections, frames, missing frames and
    /// packets per APID, and write the packets. Without --mission: plain CCSDS (1024-byte CADUs,
    /// RS interleave 4, no FECF, no authentication), as real spacecraft send.
    Decode {
        /// Decode with this mission's `[link]` (its key verifies the frames).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["spacecraft", "profile", "detect"])]
        mission: Option<PathBuf>,
        /// Decode with a known public mission's downlink profile (`--spacecraft list` names them).
        #[arg(long, value_name = "NAME", conflicts_with_all = ["profile", "detect"])]
        spacecraft: Option<String>,
        /// Decode with the channel a TOML file describes in a `[link]` table (the mission file's
        /// `[link]` keys; `security` and `downlink_rate_bps` may be left out).
        #[arg(long, value_name = "FILE", conflicts_with = "detect")]
        profile: Option<PathBuf>,
        /// Try every known profile on the capture and say which one fits.
        #[arg(long)]
        detect: bool,
        #[arg(long = "in", value_name = "STREAM")]
        input: PathBuf,
        /// Write the decoded packets here, back to back.
        #[arg(long, value_name = "OUT")]
        packets: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn write_dictionary(mission: &Path, xtce: Option<&Path>, json: Option<&Path>) -> anyhow::Result<()> {
    let dictionary = LoadedGroundMission::load(mission)?.dictionary;
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    };
    if let Some(path) = xtce {
        write(path, kestrel_dictionary::xtce::document(&dictionary))?;
        println!("{}: XTCE 1.2 dictionary of mission `{}`", path.display(), dictionary.mission);
    }
    if let Some(path) = json {
        write(path, serde_json::to_string_pretty(&dictionary)?)?;
        println!("{}: JSON dictionary of mission `{}`", path.display(), dictionary.mission);
    }
    Ok(())
}

fn main() -> ExitCode {
    let result = match cli::parse::<Command>("ground", ABOUT) {
        Command::Check { mission } => LoadedGroundMission::load(&mission)
            .map(|loaded| {
                let g = &loaded.config.ground;
                println!(
                    "{}: OK for ground (mission `{}`, CADUs on {}, console on {})",
                    mission.display(),
                    loaded.config.mission.name,
                    g.cadu_listen,
                    g.http_listen
                );
            })
            .map_err(anyhow::Error::from),
        Command::Serve { mission, store } => serve(&mission, store.as_deref()),
        Command::OperatorToken { operators, name } => {
            kestrel_ground::operators::add_operator(&operators, &name).map(|token| println!("{token}"))
        }
        Command::Dictionary { mission, xtce, json } => write_dictionary(&mission, xtce.as_deref(), json.as_deref()),
        Command::Export { mission, store, geojson, class, bbox, from_ms, to_ms, limit } => {
            let all = DetectionQuery::default();
            let query = DetectionQuery {
                from_ms: from_ms.unwrap_or(all.from_ms),
                to_ms: to_ms.unwrap_or(all.to_ms),
                class,
                bbox: bbox.map(|b| [b[0], b[1], b[2], b[3]]),
                offset: 0,
                limit,
            };
            export(&mission, store.as_deref(), &geojson, &query)
        }
        Command::Decode { mission, spacecraft, profile, detect, input, packets, json } => {
            let channel = match (mission, spacecraft, profile) {
                (Some(mission), _, _) => Channel::Mission(mission),
                (_, Some(name), _) => Channel::Spacecraft(name),
                (_, _, Some(file)) => Channel::File(file),
                _ if detect => Channel::Detect,
                _ => Channel::PlainCcsds,
            };
            decode(channel, &input, packets.as_deref(), json)
        }
    };
    cli::finish("ground", result)
}

/// The archive `--store` names, or the mission's embedded one.
fn open_archive(loaded: &LoadedGroundMission, store: Option<&str>) -> anyhow::Result<Box<dyn archive::Archive>> {
    let embedded = loaded.file.resolve(&loaded.config.ground.archive_dir);
    Ok(archive::open(store.unwrap_or(&embedded.to_string_lossy()))?)
}

fn export(mission: &Path, store: Option<&str>, path: &Path, query: &DetectionQuery) -> anyhow::Result<()> {
    let loaded = LoadedGroundMission::load(mission)?;
    let found = open_archive(&loaded, store)?.detections(query)?;
    let text = serde_json::to_string_pretty(&kestrel_ground::geojson::feature_collection(&found))?;
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
    println!("{} detections written to {}", found.len(), path.display());
    Ok(())
}

fn serve(mission: &Path, store: Option<&str>) -> anyhow::Result<()> {
    let loaded = LoadedGroundMission::load(mission)?;
    let ground = &loaded.config.ground;
    let archive = Arc::from(open_archive(&loaded, store)?);
    let service = Service::new(
        loaded.link.clone(),
        archive,
        loaded.operators.clone(),
        loaded.station_keys.clone(),
        loaded.model_verifying_key,
    )?;
    let service = service.with_predictions(loaded.predictions.clone()).with_dictionary(loaded.dictionary.clone());
    let service = Arc::new(service.with_timeout_contacts(loaded.timeout_contacts()));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let stations = serve::bind(ground.cadu_listen).await?;
        let http = serve::bind(ground.http_listen).await?;
        println!("ground: CADUs on {}, HTTP on {}", stations.local_addr()?, http.local_addr()?);
        tokio::spawn(serve::accept_stations(service.clone(), stations));
        let limits = http_server::Limits::for_this_process();
        tracing::info!(
            "HTTP: at most {} connections ({} from one address), headers within {} s",
            limits.max_connections,
            limits.max_per_peer,
            limits.header_read_timeout.as_secs()
        );
        let api = http_server::serve(http, kestrel_ground::http::router(service.clone()), limits);
        tokio::select! {
            never = api => match never {},
            () = shutdown_signal() => {
                tracing::info!("stopping");
                Ok(())
            }
        }
    })
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// What `ground decode` decodes a capture as.
enum Channel {
    Mission(PathBuf),
    Spacecraft(String),
    File(PathBuf),
    Detect,
    PlainCcsds,
}

/// A `[link]` table in a TOML file of its own: another spacecraft's channel.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    link: kestrel_mission::link::LinkConfig,
}

fn decode(channel: Channel, input: &Path, packets: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let profile = match channel {
        Channel::Mission(path) => LoadedGroundMission::load(&path)?.link,
        Channel::Spacecraft(name) => match kestrel_link::spacecraft::by_name(&name) {
            Some(known) => known.profile(),
            None => {
                let names: Vec<_> = kestrel_link::spacecraft::KNOWN.iter().map(|s| s.name).collect();
                anyhow::bail!("no known spacecraft `{name}`; known: {}", names.join(", "));
            }
        },
        Channel::File(path) => {
            let file = kestrel_mission::MissionFile::read(&path)?;
            file.parse_document::<ProfileFile>()?.link.channel(&file, "link")?
        }
        Channel::Detect => {
            let fits = kestrel_ground::decode_file::detect(input)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&fits)?);
            } else {
                print!("{}", kestrel_ground::decode_file::Detection(&fits));
            }
            return Ok(());
        }
        Channel::PlainCcsds => LinkProfile::plain_ccsds(),
    };
    let stats = decode_file(profile, input, packets)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{}", Report(&stats));
    }
    Ok(())
}
