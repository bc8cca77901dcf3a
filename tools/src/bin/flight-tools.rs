//! `flight-tools`: the operator's tools for what flight runs, used on the ground: detect, screen
//! and score scenes with a mission's models, check and sign models, frame packets as the link does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use kestrel_flight::config::LoadedFlightMission;
use kestrel_flight::mission_detector::MissionDetector;
use kestrel_mission::cli;
use kestrel_tools::{evaluate, frame_file, model_check, scene_evaluation, signing};

const ABOUT: &str = "Kestrel's tools for what flight runs: detect, screen and score scenes, check and sign models, frame space packets as the mission's link does.";

#[derive(Debug, Subcommand)]
enum Command {
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
    /// Detect in frames (image files, or scene folders of band files) with the mission's detector.
    Detect {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
        /// A model of the manifest instead of the mission's detector.
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
        /// Also write the detections as GeoJSON.
        #[arg(long, value_name = "FILE")]
        geojson: Option<PathBuf>,
        #[arg(required = true, value_name = "IMAGE")]
        inputs: Vec<PathBuf>,
    },
    /// Run the mission's cloud screen (`[flight.cloud_screen]`, even when the mission has it
    /// disabled) on frames: each tile's cloud fraction, and the tiles it keeps from the detector.
    Screen {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
        #[arg(required = true, value_name = "IMAGE")]
        inputs: Vec<PathBuf>,
    },
    /// Score the detector against labelled scenes: per scene and pooled precision, recall, false
    /// alarms and AP at IoU 0.5 and 0.3.
    Eval {
        #[arg(long, value_name = "FILE")]
        mission: PathBuf,
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
        /// One scene: a folder of the labelled images, or a scene folder of band files (with
        /// --labels).
        #[arg(long, value_name = "DIR", requires = "labels")]
        images: Option<PathBuf>,
        /// The labels of --images: COCO JSON, CSV (image_path,xmin,ymin,xmax,ymax,label) or Pascal
        /// VOC XML.
        #[arg(long, value_name = "FILE", requires = "images")]
        labels: Option<PathBuf>,
        /// Write each scene's and the pooled precision-recall curve as an SVG plot.
        #[arg(long, value_name = "FILE")]
        pr_curve: Option<PathBuf>,
        /// Write the whole evaluation (scores and curves) as JSON.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Scene folders (each holding its labels file), or folders of scene folders.
        #[arg(value_name = "SCENE", required_unless_present = "images")]
        scenes: Vec<PathBuf>,
    },
    /// Make a model-signing key pair: the signing key goes to FILE (owner-only, keep it off the
    /// spacecraft and out of the repository); the verifying key is printed.
    Keygen {
        #[arg(long, value_name = "FILE")]
        secret: PathBuf,
    },
    /// Sign a model of the manifest: writes its SHA-256 and ed25519 signature into the manifest.
    SignModel {
        /// The signing key (from `flight-tools keygen`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[arg(long, value_name = "FILE", default_value = "models/models.toml")]
        manifest: PathBuf,
        /// The verifying key flight checks signatures with: the signing key must be its pair.
        #[arg(long, value_name = "FILE", default_value = "models/model-signing.pub")]
        verifying_key: PathBuf,
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
        /// The side fed for a free height or width when the file does not state its own (`imgsz`).
        #[arg(long, value_name = "PIXELS", default_value_t = 640)]
        size: usize,
    },
}

fn main() -> ExitCode {
    let result = match cli::parse::<Command>("flight-tools", ABOUT) {
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
        Command::Detect { mission, model, geojson, inputs } => {
            detect(&mission, model.as_deref(), geojson.as_deref(), &inputs)
        }
        Command::Screen { mission, inputs } => screen(&mission, &inputs),
        Command::Eval { mission, model, images, labels, pr_curve, report, scenes } => {
            let mut scenes = scene_evaluation::find_scenes(&scenes);
            if let (Some(images), Some(labels)) = (images, labels) {
                let name =
                    images.file_name().map_or_else(|| images.display().to_string(), |n| n.to_string_lossy().into());
                scenes.insert(0, Ok(scene_evaluation::LabelledScene { name, folder: images, labels }));
            }
            evaluate(&mission, model.as_deref(), scenes, pr_curve.as_deref(), report.as_deref())
        }
        Command::Keygen { secret } => signing::generate_key_pair(&secret)
            .map(|public| println!("signing key written to {}\nverifying key: {public}", secret.display()))
            .map_err(Into::into),
        Command::SignModel { key, manifest, verifying_key, model } => {
            signing::sign(&manifest, &model, &key, &verifying_key)
                .map(|(sha256, signature)| {
                    println!("{} model `{model}`: sha256 {sha256}\nsignature {signature}", manifest.display())
                })
                .map_err(Into::into)
        }
        Command::ModelCheck { mission, model, size } => LoadedFlightMission::load(&mission)
            .map_err(anyhow::Error::from)
            .and_then(|loaded| model_check::run(&loaded.config.flight.inference, &model, size).map_err(Into::into))
            .map(|report| print!("{report}")),
    };
    cli::finish("flight-tools", result)
}

fn detect(mission: &Path, model: Option<&str>, geojson: Option<&Path>, inputs: &[PathBuf]) -> anyhow::Result<()> {
    let loaded = LoadedFlightMission::load(mission)?;
    let mut detector = MissionDetector::load(&loaded, model)?;
    let mut features = Vec::new();
    detector.detect_each(inputs, |input, found| {
        let found = found?;
        println!("{}: {} detections", input.display(), found.len());
        for d in &found {
            let [x0, y0, x1, y1] = d.pixel_box;
            let place = d.lat_lon.map_or(String::new(), |(lat, lon)| format!(" at {lat:.6}, {lon:.6}"));
            let oriented = d.rotated.as_ref().map(kestrel_flight::products::oriented_box);
            let turned = oriented.map_or(String::new(), |o| {
                let [cx, cy, w, h, angle] = o.pixel;
                format!(" oriented {w:.1} x {h:.1} at {cx:.1}, {cy:.1}, {angle:.4} rad")
            });
            println!("  {} {:.3} [{x0:.1}, {y0:.1}, {x1:.1}, {y1:.1}]{turned}{place}", d.class_name, d.score);
            // an image that is not georeferenced still gets its features, without a geometry
            let geometry = match (oriented.as_ref().and_then(|o| o.ring()), d.lat_lon) {
                (Some(ring), _) => serde_json::json!({ "type": "Polygon", "coordinates": [ring] }),
                (None, Some((lat, lon))) => serde_json::json!({ "type": "Point", "coordinates": [lon, lat] }),
                (None, None) => serde_json::Value::Null,
            };
            features.push(serde_json::json!({
                "type": "Feature",
                "geometry": geometry,
                "properties": {
                    "frame": input.display().to_string(),
                    "class": d.class_name,
                    "score": d.score,
                    "pixel_box": d.pixel_box,
                    "oriented_box": oriented.map(|o| o.pixel),
                },
            }));
        }
        Ok::<_, anyhow::Error>(())
    })?;
    if let Some(path) = geojson {
        let collection = serde_json::json!({ "type": "FeatureCollection", "features": features });
        std::fs::write(path, serde_json::to_string_pretty(&collection)?)
            .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
    }
    Ok(())
}

fn screen(mission: &Path, inputs: &[PathBuf]) -> anyhow::Result<()> {
    let mut loaded = LoadedFlightMission::load(mission)?;
    let Some(config) = loaded.config.flight.cloud_screen.as_mut() else {
        anyhow::bail!("`{}` has no [flight.cloud_screen] section", mission.display());
    };
    config.enabled = true;
    let limit = *config.max_cloud_fraction.get_ref();
    let mut detector = MissionDetector::load(&loaded, None)?;
    for input in inputs {
        let (raster, _) = detector.read_frame(input)?;
        let mut fractions = Vec::new();
        let mut dropped = 0;
        for window in detector.detector().windows(&raster) {
            if let Some(cover) = detector.cloud_cover(&raster, window)? {
                dropped += usize::from(cover.over_limit);
                fractions.push(format!("{:.2}", cover.fraction));
            }
        }
        println!(
            "{}: {} tiles, {dropped} clouded over {limit} (kept from the detector); cloud fraction per tile: {}",
            input.display(),
            fractions.len(),
            fractions.join(" ")
        );
    }
    Ok(())
}

fn evaluate(
    mission: &Path,
    model: Option<&str>,
    scenes: Vec<Result<scene_evaluation::LabelledScene, scene_evaluation::SceneError>>,
    pr_curve: Option<&Path>,
    report: Option<&Path>,
) -> anyhow::Result<()> {
    let loaded = LoadedFlightMission::load(mission)?;
    let mut detector = MissionDetector::load(&loaded, model)?;
    let evaluation = scene_evaluation::evaluate(&mut detector, scenes);
    println!("{} at score >= {} (IoU 0.5; AP also at IoU 0.3):", evaluation.model, evaluation.min_score);
    println!(
        "  {:<24} {:>6} {:>6} {:>9} {:>6} {:>6} {:>7} {:>7}",
        "scene", "labels", "kept", "precision", "recall", "false", "AP@0.5", "AP@0.3"
    );
    let row = |name: &str, s: &evaluate::Scores| {
        println!(
            "  {:<24} {:>6} {:>6} {:>9.3} {:>6.3} {:>6} {:>7.3} {:>7.3}",
            name, s.labels, s.kept, s.precision, s.recall, s.false_alarms, s.map50, s.map30
        )
    };
    for result in &evaluation.scenes {
        if let scene_evaluation::SceneOutcome::Scored { scores, .. } = &result.outcome {
            row(&result.scene, scores);
        }
    }
    let scored = evaluation.scenes.len() - evaluation.failures().count();
    row(&format!("pooled ({scored} scenes)"), &evaluation.pooled);
    if scored > 0 {
        println!("  false alarms per scene: {:.2}", evaluation.pooled.false_alarms as f64 / scored as f64);
    }
    if let Some(best) = evaluation.best_f1 {
        println!(
            "  best F1 over these scenes at score >= {:.3} (precision {:.3}, recall {:.3}); over validation scenes, that is the threshold for the manifest's min_score",
            best.score, best.precision, best.recall
        );
    }
    if let Some(path) = pr_curve {
        std::fs::write(path, scene_evaluation::precision_recall_svg(&evaluation))
            .map_err(|e| anyhow::anyhow!("`{}`: {e}", path.display()))?;
    }
    if let Some(path) = report {
        std::fs::write(path, serde_json::to_string_pretty(&evaluation)?)
            .map_err(|e| anyhow::anyhow!("`{}`: {e}", path.display()))?;
    }
    let failures: Vec<(&str, &str)> = evaluation.failures().collect();
    for (scene, error) in &failures {
        eprintln!("error: scene {scene}: {error}");
    }
    if !failures.is_empty() {
        anyhow::bail!("{} of {} scenes could not be scored", failures.len(), evaluation.scenes.len());
    }
    Ok(())
}
