//! A model's weights kept in flight's own memory, where they can be checked.
//!
//! ONNX Runtime normally copies a model's weights into memory of its own, which flight cannot
//! read, so an upset there would only show through the canary. Instead, on the CPU provider,
//! flight lets ONNX Runtime optimise the model once (all its graph optimisations, the CPU's own
//! weight layouts included), reads the optimised model's weights back into buffers of its own,
//! and builds the session that runs tiles from the optimised graph with those buffers as its
//! initializers: ONNX Runtime then computes from flight's buffers directly (no copy; a test flips
//! a weight and sees the output move). Their CRC-32C, taken when they are read, is checked before
//! each frame's products are made and while flight is idle (`MissionDetector::weights_intact`).
//!
//! The optimised model is only ever made here, from the verified file, on the CPU that runs it:
//! its weight layouts are specific to that CPU.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crc::{Crc, Table};
use ndarray::{Array1, ArrayD, ArrayView1, IxDyn, s};
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::{DynValue, Tensor};

const CRC32: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&crc::CRC_32_ISCSI);

/// Weights smaller than this stay in the graph (shape constants and the like, which ONNX Runtime
/// reads while it plans the graph).
const MIN_RESIDENT_BYTES: usize = 256;
/// ONNX's `TensorProto.DataType.FLOAT`.
const ONNX_FLOAT: i32 = 1;
/// The alignment ONNX Runtime gives the buffers it allocates (its `kAlloc_Alignment`).
const ALIGNMENT: usize = 64;

/// The parts of ONNX's protobuf messages (onnx/onnx.proto) that hold the initializers.
mod onnx {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Model {
        #[prost(message, optional, tag = "7")]
        pub graph: Option<Graph>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Graph {
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, tag = "1")]
        pub dims: Vec<i64>,
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        #[prost(float, repeated, tag = "4")]
        pub float_data: Vec<f32>,
        #[prost(string, tag = "8")]
        pub name: String,
        #[prost(bytes = "vec", tag = "9")]
        pub raw_data: Vec<u8>,
    }
}

/// The weights a session computes from, in flight's memory, and their CRC when they were read.
#[derive(Debug)]
pub struct ResidentWeights {
    tensors: Vec<Arc<DynValue>>,
    crc: u32,
}

impl ResidentWeights {
    /// The CRC-32C of the weights as they are now.
    fn crc_now(&self) -> u32 {
        let mut digest = CRC32.digest();
        for (_, data) in self.tensors.iter().filter_map(|t| t.try_extract_tensor::<f32>().ok()) {
            digest.update(bytemuck::cast_slice(data));
        }
        digest.finalize()
    }

    /// Whether the weights are as they were read from the verified model.
    pub fn intact(&self) -> bool {
        self.crc_now() == self.crc
    }

    /// Where the weights are: (address, bytes) of each tensor (for the fault injector's map).
    pub fn regions(&self) -> Vec<(usize, usize)> {
        self.tensors
            .iter()
            .filter_map(|t| t.try_extract_tensor::<f32>().ok())
            .map(|(_, data)| (data.as_ptr() as usize, size_of_val(data)))
            .collect()
    }

    /// How many bytes of weights are in flight's memory.
    pub fn bytes(&self) -> usize {
        self.regions().iter().map(|(_, bytes)| bytes).sum()
    }
}

/// A session for `model` whose weights are flight's own: `configure` sets up a builder (threads,
/// provider) the same way for both passes.
pub fn session(
    model: &Path,
    configure: impl Fn(GraphOptimizationLevel) -> ort::Result<SessionBuilder>,
) -> Result<(Session, ResidentWeights), String> {
    let optimised_path = scratch_path(model);
    let optimised = configure(GraphOptimizationLevel::Level3)
        .and_then(|b| b.with_optimized_model_path(&optimised_path).map_err(Into::into))
        .and_then(|mut b| b.commit_from_file(model))
        .map_err(|e| e.to_string())
        .and_then(|session| {
            drop(session);
            std::fs::read(&optimised_path)
                .map_err(|e| format!("the optimised model `{}`: {e}", optimised_path.display()))
        });
    let _ = std::fs::remove_file(&optimised_path);
    let optimised = optimised?;
    let weights = read_weights(&optimised)?;
    let mut builder = configure(GraphOptimizationLevel::Disable).map_err(|e| e.to_string())?;
    let mut tensors = Vec::with_capacity(weights.len());
    for (name, tensor) in weights {
        let tensor: Arc<DynValue> = Arc::new(tensor.into_dyn());
        builder = builder.with_initializer(&name, Arc::clone(&tensor)).map_err(|e| format!("weight `{name}`: {e}"))?;
        tensors.push(tensor);
    }
    let session = builder.commit_from_memory(&optimised).map_err(|e| e.to_string())?;
    let mut resident = ResidentWeights { tensors, crc: 0 };
    resident.crc = resident.crc_now();
    Ok((session, resident))
}

/// The optimised model's float weights of `MIN_RESIDENT_BYTES` or more, as tensors that own
/// their buffers.
fn read_weights(model: &[u8]) -> Result<Vec<(String, Tensor<f32>)>, String> {
    let model: onnx::Model =
        prost::Message::decode(model).map_err(|e| format!("the optimised model does not decode: {e}"))?;
    let initializers = model.graph.map(|g| g.initializer).unwrap_or_default();
    initializers
        .into_iter()
        .filter(|t| t.data_type == ONNX_FLOAT && (t.raw_data.len().max(t.float_data.len() * 4) >= MIN_RESIDENT_BYTES))
        .map(|t| {
            let values: Vec<f32> = if t.raw_data.is_empty() {
                t.float_data
            } else {
                t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
            };
            let expected: i64 = t.dims.iter().product();
            if usize::try_from(expected).ok() != Some(values.len()) {
                return Err(format!("weight `{}`: {} values for dimensions {:?}", t.name, values.len(), t.dims));
            }
            let tensor = aligned(&values, &t.dims)
                .and_then(|weights| Tensor::from_array(weights).map_err(|e| e.to_string()))
                .map_err(|e| format!("weight `{}`: {e}", t.name))?;
            Ok((t.name, tensor))
        })
        .collect()
}

/// `values` in a buffer whose start is aligned to `ALIGNMENT` bytes, shaped `dims`: ONNX Runtime
/// aligns its own buffers so for its kernels (a `Vec`'s start is only aligned to the `f32`).
fn aligned(values: &[f32], dims: &[i64]) -> Result<ArrayD<f32>, String> {
    let slack = ALIGNMENT / size_of::<f32>();
    let buffer = Array1::<f32>::zeros(values.len() + slack);
    let skip = (ALIGNMENT - buffer.as_ptr() as usize % ALIGNMENT) % ALIGNMENT / size_of::<f32>();
    let mut weights = buffer.slice_move(s![skip..skip + values.len()]);
    weights.assign(&ArrayView1::from(values));
    let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    // a contiguous slice: reshaped in place
    weights.into_shape_with_order(IxDyn(&dims)).map_err(|e| format!("dimensions {dims:?}: {e}"))
}

/// A file of its own for each optimisation (several sessions may load at once).
fn scratch_path(model: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let stem = model.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy());
    std::env::temp_dir().join(format!(
        "kestrel-{}-{}-{stem}.optimised.onnx",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}
