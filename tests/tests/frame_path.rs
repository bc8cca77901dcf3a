//! One frame path: `flight run` (tile by tile, checkpointed between runs, batches as the
//! scheduler sizes them), `flight-tools detect` and `flight-tools eval` find the same detections in
//! the same frames: a real Sentinel-2 scene folder, a real aerial GeoTIFF, and that image with its
//! top half blanked (tiles the flat screen keeps from the detector).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use kestrel_e2e::{Ground, Scratch, flight, run, spool, stderr, workspace_root};
use kestrel_flight::config::LoadedFlightMission;
use kestrel_flight::mission_detector::MissionDetector;
use kestrel_ground::archive::{Archive, SledArchive};
use kestrel_link::product::{Body, Kind, Product};
use kestrel_tools::scene_evaluation::{self, LabelledScene, SceneOutcome};

/// Scores and box sides agree to this: a batch of tiles may round differently from single
/// tiles on a provider (flight checks at load that they agree this closely or runs one at a time).
const TOLERANCE: f32 = 1e-3;

/// (score, pixel box) of each detection, in a stable order.
type Found = Vec<(f32, [f32; 4])>;

fn sorted(mut found: Found) -> Found {
    found.sort_by(|a, b| a.1.partial_cmp(&b.1).expect("finite boxes").then(a.0.total_cmp(&b.0)));
    found
}

fn assert_same(what: &str, left: &Found, right: &Found) {
    assert_eq!(left.len(), right.len(), "{what}: {} against {} detections", left.len(), right.len());
    for (a, b) in left.iter().zip(right) {
        let close = (a.0 - b.0).abs() <= TOLERANCE && a.1.iter().zip(&b.1).all(|(x, y)| (x - y).abs() <= TOLERANCE);
        assert!(close, "{what}: {a:?} against {b:?}");
    }
}

/// What `flight run` downlinked for each frame: the archive's detections products, by frame name
/// in the order the frames were spooled (their capture times).
fn downlinked(scratch: &Scratch) -> Vec<Found> {
    let archive = SledArchive::open(&scratch.path().join("var/ground/archive")).expect("archive");
    let mut products: Vec<(i64, Found)> = archive
        .records(None, 1_000_000)
        .expect("records")
        .iter()
        .filter(|r| r.kind == Kind::Detections)
        .map(|r| {
            let bytes = archive.product_bytes(r.id).expect("read").expect("stored");
            match Product::decode(&bytes).expect("a verified product").body {
                Body::Detections(set) => {
                    (set.frame_time_ms, set.detections.iter().map(|d| (d.score, d.pixel_box)).collect())
                }
                other => panic!("a detections record holds {:?}", other.kind()),
            }
        })
        .collect();
    products.sort_by_key(|(time, _)| *time);
    products.into_iter().map(|(_, found)| sorted(found)).collect()
}

/// What `flight-tools detect --geojson` found in `frame`.
fn detected_by_the_tool(scratch: &Scratch, frame: &Path) -> Found {
    let frame = frame.to_str().expect("a UTF-8 path");
    let output = run(
        "flight-tools",
        &["detect", "--mission", "mission.toml", "--geojson", "found.geojson", frame],
        scratch.path(),
    );
    assert!(output.status.success(), "flight-tools detect: {}", stderr(&output));
    let text = std::fs::read_to_string(scratch.path().join("found.geojson")).expect("GeoJSON");
    let collection: serde_json::Value = serde_json::from_str(&text).expect("GeoJSON");
    let features = collection["features"].as_array().expect("features");
    sorted(
        features
            .iter()
            .map(|f| {
                let properties = &f["properties"];
                let pixel_box: [f32; 4] = serde_json::from_value(properties["pixel_box"].clone()).expect("box");
                (properties["score"].as_f64().expect("score") as f32, pixel_box)
            })
            .collect(),
    )
}

/// The aerial image with its top half one flat grey, as a PNG.
fn half_blank(aerial: &Path, to: &Path) -> PathBuf {
    let mut image = image::open(aerial).expect("the aerial image").into_rgb8();
    let height = image.height();
    for (_, y, pixel) in image.enumerate_pixels_mut() {
        if y < height / 2 {
            *pixel = image::Rgb([128, 128, 128]);
        }
    }
    let path = to.join("half-blank.png");
    image.save(&path).expect("PNG");
    path
}

#[test]
fn flight_run_detect_and_eval_find_the_same_detections_in_a_frame() {
    let ports = kestrel_flight::reference_data::expect("satellite/sen2ships");
    let scene = ports.join("casablanca");
    let aerial = workspace_root().join("testdata/aerial/OSBS_029.tif");
    let scratch = Scratch::new();
    let blanked = half_blank(&aerial, scratch.path());
    let ground = Ground::for_flight(&scratch);
    spool(
        &scratch,
        &[("casablanca", scene.clone()), ("osbs.tif", aerial.clone()), ("half-blank.png", blanked.clone())],
    );
    let output = flight(&scratch, &["--until-drained", "--summary", "summary.json"])
        .stdout(Stdio::null())
        .output()
        .expect("flight runs");
    assert!(output.status.success(), "flight run: {}", stderr(&output));
    drop(ground);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.path().join("summary.json")).expect("summary"))
            .expect("summary JSON");
    assert!(summary["tiles_screened"].as_u64().expect("tiles_screened") > 0, "{summary}");
    let by_run = downlinked(&scratch);
    assert_eq!(by_run.len(), 3, "one detections product per frame");
    assert!(!by_run[0].is_empty(), "the vessel model finds vessels in Casablanca");

    for (frame, run) in [&scene, &aerial, &blanked].into_iter().zip(&by_run) {
        assert_same(
            &format!("flight run and flight-tools detect on {}", frame.display()),
            run,
            &detected_by_the_tool(&scratch, frame),
        );
    }

    // eval runs the frame as detect does, with its curves' floor below the operating threshold:
    // what it keeps at the threshold is what flight downlinked
    let mission = LoadedFlightMission::load(&scratch.path().join("mission.toml")).expect("mission");
    let mut detector = MissionDetector::load(&mission, None).expect("the mission's detector");
    let labels = scene.join("casablanca_coco.json");
    let scored = LabelledScene { name: "casablanca".into(), folder: scene.clone(), labels };
    let evaluation = scene_evaluation::evaluate(&mut detector, vec![Ok(scored)]);
    let SceneOutcome::Scored { scores, .. } = &evaluation.scenes[0].outcome else {
        panic!("casablanca not scored: {:?}", evaluation.scenes[0].outcome);
    };
    assert_eq!(scores.kept, by_run[0].len(), "flight-tools eval keeps at its threshold what flight run downlinked");
}
