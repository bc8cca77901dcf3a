//! The same ONNX output, decoded through the Rust path and through onnxruntime in Python, agree:
//! models/reference/<model>.json was made once by models/train/reference_outputs.py.

use std::path::PathBuf;

use kestrel_flight::config::ExecutionProviderKind;
use kestrel_flight::detect::decode_layout;
use kestrel_flight::model_io::OutputLayout;
use kestrel_flight::onnx_runtime::OnnxRuntime;
use ndarray::Array4;
use ort::value::Tensor;

#[test]
fn rust_and_python_agree_on_the_vessel_model() {
    agree("vessels-s2", 2, 128);
}

#[test]
fn rust_and_python_agree_on_the_tree_model() {
    agree("trees-neon", 3, 256);
}

/// Runs model `name` (`channels` channels, `size` px) on the reference input and compares its raw
/// output and decoded detections with Python's.
fn agree(name: &str, channels: usize, size: usize) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join(format!("models/reference/{name}.json"))).expect("reference"),
    )
    .expect("JSON");
    let shape: Vec<i64> =
        reference["shape"].as_array().expect("shape").iter().map(|v| v.as_i64().expect("dim")).collect();
    let runtime = OnnxRuntime::get().expect("ONNX Runtime");
    let mut session = runtime
        .session(&root.join(format!("models/{name}.onnx")), &[ExecutionProviderKind::Cpu], 1)
        .expect("session")
        .session;
    let input = Array4::from_shape_fn((1, channels, size, size), |(_, c, y, x)| {
        ((7 * x + 13 * y + 29 * c) % 256) as f32 / 255.0
    });
    let outputs = session.run(ort::inputs![Tensor::from_array(input).expect("tensor")]).expect("run");
    let (got_shape, data) = outputs[0].try_extract_tensor::<f32>().expect("floats");
    assert_eq!(&got_shape[..], &shape[..]);
    let expected: Vec<f64> =
        reference["output"].as_array().expect("output").iter().map(|v| v.as_f64().expect("value")).collect();
    let worst = data.iter().zip(&expected).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-3, "raw outputs differ by up to {worst}");

    let min_score = reference["min_score"].as_f64().expect("min_score") as f32;
    let classes = reference["classes"].as_u64().expect("classes") as usize;
    let ours = decode_layout(OutputLayout::Candidates, data, &shape, classes, (size, size), min_score).expect("layout");
    let theirs = reference["detections"].as_array().expect("detections");
    // a score within rounding of the threshold may fall either side
    let near = |s: f32| (s - min_score).abs() < 1e-4;
    let ours: Vec<_> = ours.into_iter().filter(|d| !near(d.score)).collect();
    let theirs: Vec<_> = theirs.iter().filter(|d| !near(d["score"].as_f64().expect("score") as f32)).collect();
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(theirs) {
        assert_eq!(a.class_id as u64, b["class_id"].as_u64().expect("class"));
        assert!((f64::from(a.score) - b["score"].as_f64().expect("score")).abs() < 1e-4);
        for (x, y) in a.pixel_box.iter().zip(b["box"].as_array().expect("box")) {
            assert!((f64::from(*x) - y.as_f64().expect("coordinate")).abs() < 1e-2, "{a:?} vs {b}");
        }
    }
}
