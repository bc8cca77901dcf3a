//! The reference mission's detector (models/vessels-s2.onnx, signed in models/models.toml) on the
//! Casablanca scene it never trained on, through the same path `flight detect` takes: it finds the
//! labelled vessels with the precision and recall its card states, and every detection lands
//! inside the scene's georeferenced footprint. (Needs scripts/setup.sh: ONNX Runtime, dev keys.)

use std::path::PathBuf;

use kestrel_flight::config::LoadedFlightMission;
use kestrel_flight::evaluate::{ScoredBox, read_labels, score};
use kestrel_flight::mission_detector::MissionDetector;

/// What models/vessels-s2.md states for the validation scene (precision, recall), less a small tolerance.
const CARD: (f64, f64) = (0.333, 0.133);
const TOLERANCE: f64 = 0.02;

#[test]
fn the_vessel_model_finds_the_casablanca_vessels_as_its_card_says() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mission =
        LoadedFlightMission::load(&root.join("mission.toml")).expect("reference mission (run scripts/setup.sh)");
    let mut detector = MissionDetector::load(&mission, None).expect("the mission's verified detector");
    assert_eq!(detector.spec().name, "vessels-s2");

    let scene = root.join("testdata/satellite/sen2ships/casablanca");
    let (raster, georef) = detector.read_frame(&scene).expect("scene");
    let footprint = georef.expect("georeferenced").footprint(raster.width, raster.height).expect("footprint");
    let found = detector.detect(&scene).expect("detect");
    let range = |i: usize| {
        let values = footprint.iter().map(|c| c[i]);
        (values.clone().fold(f64::INFINITY, f64::min), values.fold(f64::NEG_INFINITY, f64::max))
    };
    let ((lat_min, lat_max), (lon_min, lon_max)) = (range(0), range(1));
    for d in &found {
        let (lat, lon) = d.lat_lon.expect("georeferenced");
        assert!((lat_min..=lat_max).contains(&lat) && (lon_min..=lon_max).contains(&lon), "{d:?} outside the scene");
    }

    let labels = read_labels(&scene.join("casablanca_coco.json")).expect("labels");
    let scored: Vec<ScoredBox> = found
        .iter()
        .map(|d| ScoredBox {
            image: labels[0].image.clone(),
            class: d.class_name.clone(),
            score: d.score,
            pixel_box: d.pixel_box,
        })
        .collect();
    let scores = score(&labels, &scored, detector.spec().min_score);
    println!(
        "casablanca: {} detections, precision {:.3}, recall {:.3}, mAP@0.5 {:.3}",
        found.len(),
        scores.precision,
        scores.recall,
        scores.map50
    );
    assert!(scores.precision >= CARD.0 - TOLERANCE, "{scores:?}");
    assert!(scores.recall >= CARD.1 - TOLERANCE, "{scores:?}");
}
