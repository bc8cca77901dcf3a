//! The model canary: the same weights give the same canary output, in any session; a weight
//! changed (here: in a copy of the file) moves it far beyond the tolerance. The canary stands
//! for what ONNX Runtime keeps in memory of its own (and for the weights on a GPU); the weights in
//! flight's memory have their own check (resident_weights.rs). (Needs scripts/setup.sh: ONNX
//! Runtime.)

use std::path::{Path, PathBuf};

use kestrel_flight::config::ExecutionProviderKind;
use kestrel_flight::detect::{CANARY_TOLERANCE, Detector, DetectorSpec, canary_difference};
use kestrel_flight::model_io::{OutputLayout, Preprocess};
use kestrel_flight::onnx_runtime::OnnxRuntime;

fn detector(model: &Path) -> Detector {
    let session = OnnxRuntime::get()
        .expect("ONNX Runtime")
        .session(model, &[ExecutionProviderKind::Cpu], 1)
        .expect("session")
        .session;
    let spec = DetectorSpec {
        name: "vessels-s2".into(),
        classes: vec!["vessel".into()],
        input_size: 128,
        bands: vec![0, 1],
        min_score: 0.5,
        max_iou: 0.4,
        tile_overlap: 32,
        preprocess: Preprocess::FLIGHT,
        layout: OutputLayout::Candidates,
    };
    Detector::new(session, spec)
}

#[test]
fn the_canary_is_stable_for_the_same_weights_and_moves_for_an_upset_one() {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/vessels-s2.onnx");
    let reference = detector(&model).canary().expect("canary");
    assert!(reference.len() > 100 && reference.iter().all(|v| v.is_finite()));
    let mut again = detector(&model);
    for _ in 0..3 {
        let difference = canary_difference(&reference, &again.canary().expect("canary"));
        assert!(difference <= CANARY_TOLERANCE, "the same weights moved by {difference}");
    }

    // four bytes deep in the weights (the file is mostly raw initializer data): one of them is a
    // float's exponent byte, whatever the alignment
    let mut bytes = std::fs::read(&model).expect("model");
    let at = bytes.len() * 3 / 4;
    for byte in &mut bytes[at..at + 4] {
        *byte ^= 0x40;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let upset = dir.path().join("upset.onnx");
    std::fs::write(&upset, bytes).expect("write");
    let difference = canary_difference(&reference, &detector(&upset).canary().expect("canary"));
    assert!(difference > 100.0 * CANARY_TOLERANCE, "an upset weight moved the canary only by {difference}");
}
