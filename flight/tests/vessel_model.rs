//! The vessel model (models/vessels-s2.onnx, signed in models/models.toml) on the Casablanca scene
//! it never trained on: it finds the labelled vessels with the precision and recall its card
//! states, and every detection lands inside the scene's georeferenced footprint.

use std::path::PathBuf;

use kestrel_flight::config::ExecutionProviderKind;
use kestrel_flight::detect::{Detector, DetectorSpec};
use kestrel_flight::evaluate::{ScoredBox, read_labels, score};
use kestrel_flight::georef::GeoTransform;
use kestrel_flight::imagery::Raster;
use kestrel_flight::models::load_verified;
use kestrel_flight::onnx_runtime::OnnxRuntime;

/// What models/vessels-s2.md states for the validation scene, less a small tolerance.
const CARD_PRECISION: f64 = CARD_VALUES.0 - 0.02;
const CARD_RECALL: f64 = CARD_VALUES.1 - 0.02;
const CARD_VALUES: (f64, f64) = (0.333, 0.133);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_vessel_model_finds_the_casablanca_vessels_as_its_card_says() {
    let models = load_verified(&root().join("models/models.toml"), &root().join("models/model-signing.pub"))
        .expect("verified models");
    let model = models.iter().find(|m| m.entry.name == "vessels-s2").expect("vessels-s2 in the manifest");
    let runtime = OnnxRuntime::get().expect("ONNX Runtime");
    let (session, _) = runtime.session(&model.path, &[ExecutionProviderKind::Cpu], 2).expect("session");
    let spec = DetectorSpec {
        name: model.entry.name.clone(),
        classes: model.entry.classes.clone(),
        input_size: model.entry.input_size,
        bands: (0..model.entry.input_channels).collect(),
        min_score: model.entry.min_score,
        max_iou: model.entry.max_iou,
        tile_overlap: 32,
    };
    let mut detector = Detector::new(session, spec);

    let scene = root().join("testdata/satellite/sen2ships/casablanca");
    let bands: Vec<PathBuf> = ["B02", "B03", "B11"].iter().map(|b| scene.join(format!("{b}.tif"))).collect();
    let raster = Raster::read_bands(&bands).expect("bands");
    let ranges: Vec<(f32, f32)> = (0..3).map(|b| raster.band_range(b, 0.02, 0.98)).collect();
    let georef = GeoTransform::from_tiff(&bands[0]).expect("tags").expect("georeferenced");
    let found = detector.detect(&raster, &ranges, Some(&georef)).expect("detect");

    let footprint = georef.footprint(raster.width, raster.height).expect("footprint");
    let (lats, lons): (Vec<f64>, Vec<f64>) = footprint.iter().map(|c| (c[0], c[1])).unzip();
    let within = |v: f64, all: &[f64]| {
        all.iter().cloned().fold(f64::INFINITY, f64::min) <= v
            && v <= all.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
    };
    for d in &found {
        let (lat, lon) = d.lat_lon.expect("georeferenced");
        assert!(within(lat, &lats) && within(lon, &lons), "{d:?} outside the scene");
    }

    let labels = read_labels(&scene.join("casablanca_coco.json")).expect("labels");
    let image = labels[0].image.clone();
    let scored: Vec<ScoredBox> = found
        .iter()
        .map(|d| ScoredBox {
            image: image.clone(),
            class: d.class_name.clone(),
            score: d.score,
            pixel_box: d.pixel_box,
        })
        .collect();
    let scores = score(&labels, &scored, model.entry.min_score);
    println!(
        "casablanca: {} detections, precision {:.3}, recall {:.3}, mAP@0.5 {:.3}",
        found.len(),
        scores.precision,
        scores.recall,
        scores.map50
    );
    assert!(scores.precision >= CARD_PRECISION, "{scores:?}");
    assert!(scores.recall >= CARD_RECALL, "{scores:?}");
}
