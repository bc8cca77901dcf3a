//! `flight-tools model-check`: proves on the target that ONNX Runtime loads, that the mission's execution
//! providers resolve, that a given model runs, and which detector output layout flight reads in
//! what it gives. It feeds zeros of a real tile's size (a free batch axis becomes 1, free sides
//! the export's `imgsz`, else `--size`); it says nothing about the quality of the model's answers.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ndarray::{ArrayD, IxDyn};
use ort::value::{Tensor, TensorElementType, ValueType};

use kestrel_flight::config::InferenceConfig;
use kestrel_flight::detect::decode_layout;
use kestrel_flight::model_io::{ExportMetadata, OutputLayout};
use kestrel_flight::onnx_runtime::{OnnxRuntime, ProviderChoice, RuntimeError};

#[derive(Debug)]
pub struct ModelCheckReport {
    pub library: PathBuf,
    pub runtime_build: &'static str,
    pub model: PathBuf,
    pub providers: ProviderChoice,
    pub inputs: Vec<(String, Vec<usize>)>,
    pub outputs: Vec<(String, Vec<usize>)>,
    pub run_time: Duration,
    /// The detector layout flight reads the first output as, and its classes; or why flight
    /// reads no detections in it (a cloud mask, or another task's output).
    pub layout: Result<(OutputLayout, usize), String>,
}

/// The detector layout flight reads one output in, with its classes, or why it reads none: the
/// output decoded as a tile's (`side` pixels square), its scores within 0..1.
fn detector_layout(
    shape: &[i64],
    data: &[f32],
    metadata: Option<&ExportMetadata>,
    side: usize,
) -> Result<(OutputLayout, usize), String> {
    let (layout, classes) = layout_of(shape, metadata).ok_or_else(|| match metadata {
        Some(m) => format!("{shape:?} is not {}, the layout its Ultralytics metadata gives", m.layout.describe()),
        None => format!(
            "{shape:?} is neither {} nor {}",
            OutputLayout::Candidates.describe(),
            OutputLayout::EndToEnd.describe()
        ),
    })?;
    // an end-to-end or RT-DETR output names its classes by number: any is read here
    let decoded_classes = if layout.suppressed() { usize::MAX } else { classes };
    let tile = data.len() / shape[0].max(1) as usize;
    let tile_shape = [1, shape[1], shape[2]];
    let found = decode_layout(layout, &data[..tile], &tile_shape, decoded_classes, (side, side), f32::NEG_INFINITY)
        .map_err(|e| e.to_string())?;
    match found.iter().map(|c| c.score).find(|s| !(0.0..=1.0 + 1e-6).contains(s)) {
        Some(score) => Err(format!("{shape:?} has a score of {score}; a detector's are within 0 to 1")),
        None => Ok((layout, classes)),
    }
}

/// The layout flight would read `shape` as (the export's own word first), and its classes.
fn layout_of(shape: &[i64], metadata: Option<&ExportMetadata>) -> Option<(OutputLayout, usize)> {
    let &[_, a, b] = shape else { return None };
    let classes = |values: i64, fixed: i64| usize::try_from(values - fixed).ok().filter(|c| *c > 0);
    match metadata.map(|m| m.layout) {
        Some(layout @ OutputLayout::Candidates) => Some((layout, classes(a, 4)?)),
        Some(layout @ OutputLayout::Oriented) => Some((layout, classes(a, 5)?)),
        Some(layout @ (OutputLayout::EndToEnd | OutputLayout::RtDetr)) => (b == 6).then_some((layout, 0)),
        // a [1, K, 6] end-to-end output lists more detections than it has fields
        None if b == 6 && a > 6 => Some((OutputLayout::EndToEnd, 0)),
        None if a > 4 && b > a => Some((OutputLayout::Candidates, classes(a, 4)?)),
        None => None,
    }
}

pub fn run(inference: &InferenceConfig, model: &Path, side: usize) -> Result<ModelCheckReport, RuntimeError> {
    let runtime = OnnxRuntime::get()?;
    let loaded = runtime.session(model, inference.execution_providers.get_ref(), inference.intra_threads)?;
    let (mut session, providers) = (loaded.session, loaded.choice);
    let model_error = |message: String| RuntimeError::Model { path: model.to_path_buf(), message };

    let metadata = session
        .metadata()
        .map_err(|e| e.to_string())
        .and_then(|m| ExportMetadata::read(|key| m.custom(key)))
        .map_err(&model_error)?;
    let side = metadata.as_ref().and_then(|m| m.imgsz.as_ref()?.first().map(|&s| s as usize)).unwrap_or(side);
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
        let dims: Vec<usize> = shape
            .iter()
            .enumerate()
            .map(|(axis, &d)| usize::try_from(d).unwrap_or(if axis >= 2 { side } else { 1 }).max(1))
            .collect();
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
    let layout = results[0]
        .try_extract_tensor::<f32>()
        .map_err(|e| e.to_string())
        .and_then(|(shape, data)| detector_layout(shape, data, metadata.as_ref(), side));

    Ok(ModelCheckReport {
        library: runtime.library().to_path_buf(),
        runtime_build: runtime.build_info(),
        model: model.to_path_buf(),
        providers,
        inputs,
        outputs,
        run_time,
        layout,
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
        match &self.layout {
            Ok((layout @ (OutputLayout::EndToEnd | OutputLayout::RtDetr), _)) => {
                writeln!(f, "detector output: {}", layout.describe())?
            }
            Ok((layout, classes)) => writeln!(f, "detector output: {} with {classes} classes", layout.describe())?,
            Err(why) => writeln!(f, "not a detector output flight reads: {why}")?,
        }
        writeln!(f, "one inference ran in {:.3} ms", self.run_time.as_secs_f64() * 1e3)
    }
}
