//! The trained models of models/models.toml on imagery they never trained on, through the same
//! path `flight-tools detect` takes: each detector finds the labelled objects of its validation split
//! with the precision and recall its card states, and every detection lands inside the scene's
//! georeferenced footprint (Web Mercator for the vessels, UTM for the crowns); the cloud screen
//! calls the cloudy dates of a real Sentinel-2 series cloudy and the clear ones clear. (Needs
//! scripts/setup.sh: ONNX Runtime, dev keys.)

use std::path::{Path, PathBuf};

use kestrel_flight::config::LoadedFlightMission;
use kestrel_flight::detect::FrameDetection;
use kestrel_flight::mission_detector::MissionDetector;
use kestrel_flight::reference_data;
use kestrel_tools::evaluate::{LabelledBox, ScoredBox, Scores, read_labels, score};
use kestrel_tools::scene_evaluation;

/// Card figures are held to within this.
const TOLERANCE: f64 = 0.02;

/// What a model's card states for its validation split: precision and recall.
struct Card {
    precision: f64,
    recall: f64,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs model `name` (the mission's detector when `None`) on `scene`, checks every detection is
/// inside the scene's footprint, and scores the detections and labels that `validation` keeps
/// (by box).
fn validate(name: Option<&str>, scene: &Path, labels: &Path, validation: impl Fn(&[f32; 4]) -> bool) -> Scores {
    let mission =
        LoadedFlightMission::load(&root().join("mission.toml")).expect("reference mission (run scripts/setup.sh)");
    let mut detector = MissionDetector::load(&mission, name).expect("the verified model");
    let (raster, georef) = detector.read_frame(scene).expect("scene");
    let footprint = georef.expect("georeferenced").footprint(raster.width, raster.height).expect("footprint");
    let found: Vec<FrameDetection> = detector.detect(scene).expect("detect");
    let range = |i: usize| {
        let values = footprint.iter().map(|c| c[i]);
        (values.clone().fold(f64::INFINITY, f64::min), values.fold(f64::NEG_INFINITY, f64::max))
    };
    let ((lat_min, lat_max), (lon_min, lon_max)) = (range(0), range(1));
    for d in &found {
        let (lat, lon) = d.lat_lon.expect("georeferenced");
        assert!((lat_min..=lat_max).contains(&lat) && (lon_min..=lon_max).contains(&lon), "{d:?} outside the scene");
    }

    let labels: Vec<LabelledBox> =
        read_labels(labels).expect("labels").into_iter().filter(|l| validation(&l.pixel_box)).collect();
    let scored: Vec<ScoredBox> = found
        .iter()
        .filter(|d| validation(&d.pixel_box))
        .map(|d| ScoredBox {
            image: labels[0].image.clone(),
            class: d.class_name.clone(),
            score: d.score,
            pixel_box: d.pixel_box,
        })
        .collect();
    let scores = score(&labels, &scored, detector.spec().min_score);
    println!(
        "{}: {} labels, {} detections, precision {:.3}, recall {:.3}, mAP@0.5 {:.3}",
        detector.spec().name,
        labels.len(),
        scored.len(),
        scores.precision,
        scores.recall,
        scores.map50
    );
    scores
}

fn assert_as_card_states(scores: &Scores, card: Card) {
    assert!(scores.precision >= card.precision - TOLERANCE, "{scores:?}");
    assert!(scores.recall >= card.recall - TOLERANCE, "{scores:?}");
}

#[test]
fn the_vessel_model_finds_the_casablanca_vessels_as_its_card_says() {
    let scene = reference_data::expect("satellite/sen2ships/casablanca");
    // the mission's detector; Casablanca is one of its two validation scenes, all of it
    let scores = validate(None, &scene, &scene.join("casablanca_coco.json"), |_| true);
    assert_as_card_states(&scores, Card { precision: 0.700, recall: 0.467 });
}

#[test]
fn the_vessel_model_scores_its_validation_scenes_as_its_card_says() {
    let mission =
        LoadedFlightMission::load(&root().join("mission.toml")).expect("reference mission (run scripts/setup.sh)");
    let mut detector = MissionDetector::load(&mission, None).expect("the verified model");
    let scenes = [
        reference_data::expect("satellite/sen2ships/casablanca"),
        reference_data::expect("satellite/sen2ships-more/marseille"),
    ];
    let evaluation = scene_evaluation::evaluate(&mut detector, scene_evaluation::find_scenes(&scenes));
    assert_eq!(evaluation.failures().count(), 0);
    let pooled = &evaluation.pooled;
    println!("{pooled:?}");
    // models/vessels-s2.md: pooled over Casablanca and Marseille at the manifest's 0.7
    assert_eq!(pooled.labels, 33);
    assert!((pooled.map50 - 0.342).abs() <= TOLERANCE, "{pooled:?}");
    assert!(pooled.recall >= 0.485 - TOLERANCE && pooled.precision >= 0.356 - TOLERANCE, "{pooled:?}");
    // the threshold in the manifest is the validation scenes' best F1
    let best = evaluation.best_f1.expect("a curve");
    assert!((best.score - detector.spec().min_score).abs() < 0.01, "{best:?}");
}

#[test]
fn the_tree_model_finds_the_held_out_crowns_of_osbs_029_as_its_card_says() {
    let aerial = root().join("testdata/aerial");
    // models/train/trees.py holds out the crowns whose centres lie at column 240 and beyond
    let held_out = |b: &[f32; 4]| (b[0] + b[2]) / 2.0 >= 240.0;
    let scores = validate(Some("trees-neon"), &aerial.join("OSBS_029.tif"), &aerial.join("OSBS_029.csv"), held_out);
    assert_as_card_states(&scores, Card { precision: 0.414, recall: 0.480 });
}

#[test]
fn the_cloud_screen_calls_dates_0_and_1_cloudy_and_2_to_4_clear() {
    let mut mission =
        LoadedFlightMission::load(&root().join("mission.toml")).expect("reference mission (run scripts/setup.sh)");
    // the reference mission's cloud screen is off (its demo scenes are not calibrated); these are
    mission.config.flight.cloud_screen.as_mut().expect("the reference mission has a cloud screen").enabled = true;
    let mut detector = MissionDetector::load(&mission, None).expect("the verified models");
    let dates = reference_data::cloudy_clear_dates().unwrap_or_else(|e| panic!("{e}"));
    for date in 0..5 {
        let scene = dates.join(format!("date-{date}"));
        let (raster, _) = detector.read_frame(&scene).expect("scene");
        let windows = detector.detector().windows(&raster);
        assert_eq!(windows.len(), 1, "a 100 x 101 scene is one tile");
        let cover = detector.cloud_cover(&raster, windows[0]).expect("cloud screen").expect("the mission has one");
        println!("date {date}: cloud fraction {:.3}", cover.fraction);
        assert_eq!(cover.over_limit, date <= 1, "date {date}: {cover:?}");
    }
}

#[test]
fn a_model_of_the_wrong_kind_is_refused_with_the_key_that_named_it() {
    let mut mission =
        LoadedFlightMission::load(&root().join("mission.toml")).expect("reference mission (run scripts/setup.sh)");
    let error = MissionDetector::load(&mission, Some("clouds-s2")).expect_err("a cloud mask is no detector");
    assert_eq!(
        error.to_string(),
        "model `clouds-s2` is a cloud_mask in the manifest; `flight.detector.model` needs a detector"
    );
    let screen = mission.config.flight.cloud_screen.as_mut().expect("the reference mission has a cloud screen");
    screen.enabled = true;
    screen.model = "vessels-s2".into();
    let error = MissionDetector::load(&mission, None).expect_err("a detector is no cloud mask");
    assert_eq!(
        error.to_string(),
        "model `vessels-s2` is a detector in the manifest; `flight.cloud_screen.model` needs a cloud_mask"
    );
}

#[test]
fn screen_reports_each_tile_and_what_it_keeps_from_the_detector() {
    let dates = reference_data::cloudy_clear_dates().unwrap_or_else(|e| panic!("{e}"));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flight-tools"))
        .args(["screen", "--mission"])
        .arg(root().join("mission.toml"))
        .args((0..5).map(|date| dates.join(format!("date-{date}"))))
        .output()
        .expect("flight-tools runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    for (date, line) in lines.iter().enumerate() {
        let dropped = if date <= 1 { "1 clouded over 0.7" } else { "0 clouded over 0.7" };
        assert!(line.contains(&format!("date-{date}: 1 tiles, {dropped}")), "{line}");
    }
}

#[test]
fn the_vessel_model_gives_the_same_detections_in_batches_as_one_tile_at_a_time() {
    let mut mission =
        LoadedFlightMission::load(&root().join("mission.toml")).expect("reference mission (run scripts/setup.sh)");
    let scene = reference_data::expect("satellite/sen2ships/casablanca");
    let mut batched = MissionDetector::load(&mission, None).expect("the verified model");
    assert_eq!(batched.detector().max_batch(), 4, "the committed model has a free batch axis, and batches agree");
    *mission.config.flight.inference.max_batch.get_mut() = 1;
    let mut single = MissionDetector::load(&mission, None).expect("the verified model");
    assert_eq!(single.detector().max_batch(), 1);

    let (raster, _) = batched.read_frame(&scene).expect("scene");
    let ranges = batched.scaling(&raster);
    let windows = batched.detector().windows(&raster);
    let one_at_a_time = |single: &mut MissionDetector, group: &[_]| -> Vec<_> {
        group
            .iter()
            .map(|w| single.detector().detect_tiles(&raster, &ranges, &[*w]).expect("a tile").remove(0))
            .collect()
    };
    assert!(windows.len() > 8, "{} tiles", windows.len());
    let mut found_any = false;
    for group in windows.chunks(4) {
        let together = batched.detector().detect_tiles(&raster, &ranges, group).expect("a batch");
        assert_eq!(together, one_at_a_time(&mut single, group), "tiles {group:?}");
        found_any |= together.iter().any(|found| !found.is_empty());
    }
    assert!(found_any, "the scene's vessels are found");
    assert_eq!(batched.detect(&scene).expect("batched"), single.detect(&scene).expect("single"));

    // what a GPU runs: short batches filled up to 4 with blank tiles give their own tiles' results,
    // and a frame made a batch ahead on a thread of its own gives the same detections
    batched.detector().set_accelerated(true);
    for group in windows.chunks(3).take(6) {
        let filled = batched.detector().detect_tiles(&raster, &ranges, group).expect("a filled batch");
        assert_eq!(filled, one_at_a_time(&mut single, group), "tiles {group:?}");
    }
    assert_eq!(batched.detect(&scene).expect("filled"), single.detect(&scene).expect("single"));
}
