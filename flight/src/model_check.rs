//! `flight model-check`: proves on the target that ONNX Runtime loads, that the mission's execution
//! providers resolve, and that a given model runs. It feeds zeros (a symbolic dimension becomes 1);
//! it says nothing about the quality of the model's answers.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ndarray::{ArrayD, IxDyn};
use ort::value::{Tensor, TensorElementType, ValueType};

use crate::config::InferenceConfig;
use crate::onnx_runtime::{OnnxRuntime, ProviderChoice, RuntimeError};

#[derive(Debug)]
pub struct ModelCheckReport {
    pub library: PathBuf,
    pub runtime_build: &'static str,
    pub model: PathBuf,
    pub providers: ProviderChoice,
    pub inputs: Vec<(String, Vec<usize>)>,
    pub outputs: Vec<(String, Vec<usize>)>,
    pub run_time: Duration,
}

pub fn run(inference: &InferenceConfig, model: &Path) -> Result<ModelCheckReport, RuntimeError> {
    let runtime = OnnxRuntime::get()?;
    let loaded = runtime.session(model, inference.execution_providers.get_ref(), inference.intra_threads)?;
    let (mut session, providers) = (loaded.session, loaded.choice);
    let model_error = |message: String| RuntimeError::Model { path: model.to_path_buf(), message };

    let mut inputs = Vec::new();
    let mut values = Vec::new();
    for input in session.inputs() {
        let ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } = input.dtype() else {
            return Err(model_error(format!(
                "input `{}` is {:?}; model-check feeds only float32 tensors",
                input.name(),
                input.dtype()
            )));
        };
        let dims: Vec<usize> = shape.iter().map(|&d| usize::try_from(d).unwrap_or(1).max(1)).collect();
        let tensor = Tensor::from_array(ArrayD::<f32>::zeros(IxDyn(&dims))).map_err(|e| model_error(e.to_string()))?;
        inputs.push((input.name().to_owned(), dims));
        values.push((input.name().to_owned(), tensor));
    }

    let started = Instant::now();
    let results = session.run(values).map_err(|e| model_error(e.to_string()))?;
    let run_time = started.elapsed();
    let outputs = results
        .iter()
        .map(|(name, value)| {
            let shape = value.shape().iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
            (name.to_owned(), shape)
        })
        .collect();

    Ok(ModelCheckReport {
        library: runtime.library().to_path_buf(),
        runtime_build: runtime.build_info(),
        model: model.to_path_buf(),
        providers,
        inputs,
        outputs,
        run_time,
    })
}

impl fmt::Display for ModelCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "ONNX Runtime loaded from {} ({})", self.library.display(), self.runtime_build)?;
        for (kind, reason) in &self.providers.passed_over {
            writeln!(f, "execution provider {} passed over: {reason}", kind.name())?;
        }
        writeln!(f, "execution provider: {}", self.providers.chosen.name())?;
        writeln!(f, "model {}", self.model.display())?;
        for (name, shape) in &self.inputs {
            writeln!(f, "  input  {name} {shape:?} (fed zeros)")?;
        }
        for (name, shape) in &self.outputs {
            writeln!(f, "  output {name} {shape:?}")?;
        }
        writeln!(f, "one inference ran in {:.3} ms", self.run_time.as_secs_f64() * 1e3)
    }
}
