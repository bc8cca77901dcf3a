//! The weights a CPU session computes from are flight's own memory: a bit flipped there (through
//! /proc/self/mem, as the fault injector flips it in a running flight) changes what the model
//! outputs and is seen by the weights' check; flipped back, both are as before. (Needs
//! scripts/setup.sh: ONNX Runtime.)

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use kestrel_flight::config::ExecutionProviderKind;
use kestrel_flight::onnx_runtime::OnnxRuntime;
use ndarray::Array4;
use ort::session::Session;
use ort::value::Tensor;

fn output(session: &mut Session) -> Vec<f32> {
    let input =
        Array4::from_shape_fn((1, 2, 128, 128), |(_, c, y, x)| ((5 * x + 11 * y + 31 * c) % 256) as f32 / 255.0);
    let outputs = session.run(ort::inputs![Tensor::from_array(input).expect("tensor")]).expect("run");
    outputs[0].try_extract_tensor::<f32>().expect("floats").1.to_vec()
}

fn flip_top_bit(address: usize) {
    let mut memory = std::fs::File::options().read(true).write(true).open("/proc/self/mem").expect("/proc/self/mem");
    let mut byte = [0u8; 1];
    memory.seek(SeekFrom::Start(address as u64)).expect("seek");
    memory.read_exact(&mut byte).expect("read");
    memory.seek(SeekFrom::Start(address as u64)).expect("seek");
    memory.write_all(&[byte[0] ^ 0x80]).expect("write");
}

#[test]
fn a_weight_upset_in_flights_memory_changes_the_output_and_fails_the_check() {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/vessels-s2.onnx");
    let mut loaded =
        OnnxRuntime::get().expect("ONNX Runtime").session(&model, &[ExecutionProviderKind::Cpu], 1).expect("session");
    let weights = loaded.weights.take().expect("a CPU session's weights are in flight's memory");
    let file_bytes = std::fs::metadata(&model).expect("model").len() as usize;
    // nearly the whole file is weights; the optimised layouts pad some of them
    assert!(weights.bytes() > file_bytes * 9 / 10, "{} bytes of weights in a {file_bytes} byte model", weights.bytes());
    assert!(weights.intact());
    let before = output(&mut loaded.session);

    let regions = weights.regions();
    assert!(regions.iter().all(|(address, _)| address % 64 == 0), "aligned as ONNX Runtime aligns: {regions:x?}");
    let (largest, bytes) = regions.iter().copied().max_by_key(|(_, bytes)| *bytes).expect("regions");
    // the sign bit of a float in the middle of the largest tensor
    let address = largest + ((bytes / 2) & !3) + 3;
    flip_top_bit(address);
    assert!(!weights.intact(), "the check missed a flipped sign bit");
    let upset = output(&mut loaded.session);
    assert_ne!(before, upset, "ONNX Runtime did not compute from flight's buffer");

    flip_top_bit(address);
    assert!(weights.intact());
    assert_eq!(output(&mut loaded.session), before);
}
