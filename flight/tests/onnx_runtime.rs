//! ONNX Runtime through `ort` with `load-dynamic` and the library from the PyPI wheel: a real model
//! runs and answers correctly, and bad models give errors, not panics.

use std::path::PathBuf;

use kestrel_flight::config::ExecutionProviderKind;
use kestrel_flight::onnx_runtime::{OnnxRuntime, RuntimeError, cached_runtime_dir};
use ndarray::Array3;
use ort::value::TensorRef;

const CPU: &[ExecutionProviderKind] = &[ExecutionProviderKind::Cpu];

/// The sigmoid model that ships in the onnxruntime wheel (put there by scripts/setup-onnxruntime.sh).
fn sigmoid_model() -> PathBuf {
    let path = cached_runtime_dir().join("models/sigmoid.onnx");
    assert!(path.is_file(), "{} is missing: run scripts/setup.sh", path.display());
    path
}

#[test]
fn a_real_model_runs_and_computes_the_sigmoid() {
    let runtime = OnnxRuntime::get().expect("ONNX Runtime loads");
    assert!(runtime.build_info().contains("git-commit-id"), "{}", runtime.build_info());
    let loaded = runtime.session(&sigmoid_model(), CPU, 1).expect("session");
    let (mut session, choice) = (loaded.session, loaded.choice);
    assert_eq!(choice.chosen, ExecutionProviderKind::Cpu);
    assert_eq!(session.inputs()[0].name(), "x");

    let input = Array3::from_shape_fn((3, 4, 5), |(i, j, k)| (i * 20 + j * 5 + k) as f32 / 6.0 - 5.0);
    let outputs = session.run(ort::inputs![TensorRef::from_array_view(&input).expect("tensor")]).expect("run");
    let output = outputs["y"].try_extract_array::<f32>().expect("float output");
    assert_eq!(output.shape(), &[3, 4, 5]);
    for (x, y) in input.iter().zip(output.iter()) {
        let expected = 1.0 / (1.0 + (-x).exp());
        assert!((y - expected).abs() < 1e-6, "sigmoid({x}) = {y}, expected {expected}");
    }
}

#[test]
fn cuda_first_falls_back_to_cpu_and_says_why() {
    let runtime = OnnxRuntime::get().expect("ONNX Runtime loads");
    let preference = [ExecutionProviderKind::Cuda, ExecutionProviderKind::Cpu];
    let choice = runtime.session(&sigmoid_model(), &preference, 1).expect("session").choice;
    if choice.chosen == ExecutionProviderKind::Cpu {
        assert_eq!(choice.passed_over.len(), 1, "{choice:?}");
        assert_eq!(choice.passed_over[0].0, ExecutionProviderKind::Cuda);
        assert!(!choice.passed_over[0].1.is_empty());
    }
}

#[test]
fn a_missing_or_corrupt_model_is_an_error_naming_the_file() {
    let runtime = OnnxRuntime::get().expect("ONNX Runtime loads");
    let dir = tempfile::tempdir().expect("tempdir");

    let absent = dir.path().join("absent.onnx");
    let error = runtime.session(&absent, CPU, 1).expect_err("absent model");
    assert!(matches!(error, RuntimeError::Model { .. }), "{error}");
    assert!(error.to_string().contains("absent.onnx"), "{error}");

    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"this is not a protobuf").expect("write");
    let error = runtime.session(&garbage, CPU, 1).expect_err("garbage model");
    assert!(error.to_string().contains("garbage.onnx"), "{error}");
    assert!(
        matches!(error, RuntimeError::Model { .. }) && error.to_string().contains("is not an ONNX model"),
        "{error}"
    );

    let truncated = dir.path().join("truncated.onnx");
    let bytes = std::fs::read(sigmoid_model()).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let error = runtime.session(&truncated, CPU, 1).expect_err("truncated model");
    assert!(error.to_string().contains("truncated.onnx"), "{error}");
    assert!(matches!(error, RuntimeError::Model { .. }), "not a missing provider: {error}");
}
