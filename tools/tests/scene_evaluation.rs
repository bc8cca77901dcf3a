//! `flight-tools eval` over several scenes: each scored on its own and all of them pooled, and a scene
//! that cannot be scored (no labels, labels naming an image that is not there, a band file
//! missing) named with what and where while the others are still scored. (Needs scripts/setup.sh:
//! ONNX Runtime, dev keys; and the shared reference data.)

use std::path::{Path, PathBuf};

use kestrel_flight::config::LoadedFlightMission;
use kestrel_flight::mission_detector::MissionDetector;
use kestrel_flight::reference_data;
use kestrel_tools::scene_evaluation::{SceneOutcome, evaluate, find_scenes, precision_recall_svg};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn copy_scene(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).expect("scene folder");
    for entry in std::fs::read_dir(from).expect("scene") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        if !skip.contains(&name.as_str()) {
            std::fs::copy(&path, to.join(&name)).expect("copy");
        }
    }
}

#[test]
fn scenes_are_scored_one_by_one_and_pooled_and_a_bad_scene_is_named_while_the_rest_are_scored() {
    let scenes = tempfile::tempdir().expect("tempdir");
    let casablanca = reference_data::expect("satellite/sen2ships/casablanca");
    copy_scene(&casablanca, &scenes.path().join("casablanca"), &[]);
    // the same scene without its near-infrared band, and without its labels
    copy_scene(&casablanca, &scenes.path().join("no-b08"), &["B08.tif"]);
    copy_scene(&casablanca, &scenes.path().join("unlabelled"), &["casablanca_coco.json"]);
    // an image folder whose labels name an image it does not hold
    let images = scenes.path().join("aerial");
    std::fs::create_dir(&images).expect("aerial");
    std::fs::copy(root().join("testdata/aerial/OSBS_029.tif"), images.join("OSBS_029.tif")).expect("tif");
    std::fs::write(images.join("labels.csv"), "image_path,xmin,ymin,xmax,ymax,label\nOSBS_030.tif,1,2,30,40,Tree\n")
        .expect("labels");

    let mission =
        LoadedFlightMission::load(&root().join("mission.toml")).expect("reference mission (run scripts/setup.sh)");
    let mut detector = MissionDetector::load(&mission, None).expect("the verified model");
    let found = find_scenes(&[scenes.path().to_path_buf()]);
    assert_eq!(found.len(), 4);
    let evaluation = evaluate(&mut detector, found);

    let names: Vec<&str> = evaluation.scenes.iter().map(|s| s.scene.as_str()).collect();
    assert_eq!(names, ["aerial", "casablanca", "no-b08", "unlabelled"]);
    let failures: Vec<(&str, &str)> = evaluation.failures().collect();
    assert_eq!(failures.len(), 3, "{failures:?}");
    let error_of = |scene: &str| failures.iter().find(|(s, _)| *s == scene).map(|(_, e)| *e).expect("failed");
    assert!(error_of("aerial").contains("labels.csv") && error_of("aerial").contains("OSBS_030.tif"));
    assert!(error_of("no-b08").contains("B08.tif"), "{}", error_of("no-b08"));
    assert!(error_of("unlabelled").contains("no labels file"), "{}", error_of("unlabelled"));

    // the one good scene is the pool, and scores as it does alone
    let scored = evaluation.scene("casablanca").expect("scored");
    assert_eq!(scored.labels, 15);
    assert_eq!(&evaluation.pooled, scored);
    let alone = evaluate(&mut detector, find_scenes(&[scenes.path().join("casablanca")]));
    assert_eq!(alone.scene("casablanca"), Some(scored));
    let SceneOutcome::Scored { curve, .. } = &alone.scenes[0].outcome else { panic!("scored") };
    assert_eq!(curve, &evaluation.pooled_curve);

    // the plot is well-formed SVG with a line for the scene and one for the pool
    let svg = precision_recall_svg(&evaluation);
    let document = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    assert_eq!(document.descendants().filter(|n| n.has_tag_name("polyline")).count(), 2);
}

#[test]
fn two_scenes_pool_their_labels_without_mixing_their_images() {
    let mission =
        LoadedFlightMission::load(&root().join("mission.toml")).expect("reference mission (run scripts/setup.sh)");
    let mut detector = MissionDetector::load(&mission, None).expect("the verified model");
    let ports = reference_data::expect("satellite/sen2ships");
    let evaluation = evaluate(&mut detector, find_scenes(&[ports.join("casablanca"), ports.join("busan")]));
    assert_eq!(evaluation.failures().count(), 0);
    let (a, b) = (evaluation.scene("casablanca").expect("a"), evaluation.scene("busan").expect("b"));
    // both COCO files call their image by its own name, and a detection in one never matches the other
    assert_eq!(evaluation.pooled.labels, a.labels + b.labels);
    assert_eq!(evaluation.pooled.kept, a.kept + b.kept);
    assert_eq!(evaluation.pooled.false_alarms, a.false_alarms + b.false_alarms);
}
