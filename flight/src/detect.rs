//! Decoding the output of an ONNX detector in the layouts YOLO exports give, and class-aware
//! non-maximum suppression, within a tile and across tiles.
//!
//! The layouts (`model_io::OutputLayout`), one output tensor per run, its first axis the tiles:
//! - `[1, 4 + C, N]`: for each of N candidates, the box centre x, y, width and height in input
//!   pixels, then C class scores (already sigmoid-ed);
//! - `[1, K, 6]` (end to end): for each of K detections x1, y1, x2, y2, score and class id,
//!   suppressed already (flight's NMS finds nothing more to merge within a tile).
//!
//! Anything else is refused with what was expected and what was found.

use crate::model_io::{OutputLayout, Placement, Preprocess};

/// A detection in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Candidate {
    pub class_id: usize,
    pub score: f32,
    /// x min, y min, x max, y max.
    pub pixel_box: [f32; 4],
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LayoutError {
    #[error("the model's output is {found:?}; a YOLOv8/YOLO11 detector gives [1, 4 + classes, candidates]{detail}")]
    Shape { found: Vec<i64>, detail: String },
    #[error("the model's output is {found:?}; an end-to-end detector gives [1, detections, 6]{detail}")]
    EndToEndShape { found: Vec<i64>, detail: String },
    #[error("the model's scores reach {found}; a detector's are within 0 to 1 (sigmoid-ed)")]
    Scores { found: f32 },
    #[error("the model's output has {found} values for shape {shape:?}")]
    Length { found: usize, shape: Vec<i64> },
}

/// Checks a YOLO output shape against the number of classes the manifest declares; returns the
/// number of candidates.
pub fn check_layout(shape: &[i64], classes: usize) -> Result<usize, LayoutError> {
    let refuse = |detail: String| Err(LayoutError::Shape { found: shape.to_vec(), detail });
    match shape {
        [1, rows, n] if *rows == 4 + classes as i64 && *n > 0 => Ok(*n as usize),
        [1, rows, _] => refuse(format!(": {} rows, expected 4 + {classes}", rows)),
        _ => refuse(String::new()),
    }
}

/// Candidates above `min_score` in one tile's output of `layout`, in the input's pixels.
pub fn decode_layout(
    layout: OutputLayout,
    output: &[f32],
    shape: &[i64],
    classes: usize,
    min_score: f32,
) -> Result<Vec<Candidate>, LayoutError> {
    match layout {
        OutputLayout::Candidates => decode(output, shape, classes, min_score),
        OutputLayout::EndToEnd => decode_end_to_end(output, shape, classes, min_score),
    }
}

/// Detections above `min_score` in a `[1, k, 6]` end-to-end output, in the input's pixels.
pub fn decode_end_to_end(
    output: &[f32],
    shape: &[i64],
    classes: usize,
    min_score: f32,
) -> Result<Vec<Candidate>, LayoutError> {
    let refuse = |detail: String| LayoutError::EndToEndShape { found: shape.to_vec(), detail };
    let &[1, k, 6] = shape else { return Err(refuse(String::new())) };
    if output.len() != k.max(0) as usize * 6 {
        return Err(LayoutError::Length { found: output.len(), shape: shape.to_vec() });
    }
    let mut found = Vec::new();
    for row in output.chunks_exact(6) {
        let (score, class) = (row[4], row[5]);
        if !(score >= min_score && score.is_finite()) {
            continue;
        }
        let class_id = class.round();
        if !(0.0..classes as f32).contains(&class_id) {
            return Err(refuse(format!(": a detection of class {class}, beyond the {classes} classes")));
        }
        if row[2] > row[0] && row[3] > row[1] {
            found.push(Candidate { class_id: class_id as usize, score, pixel_box: [row[0], row[1], row[2], row[3]] });
        }
    }
    Ok(found)
}

/// Candidates above `min_score` in a `[1, 4 + classes, n]` output, in the input's pixels.
pub fn decode(output: &[f32], shape: &[i64], classes: usize, min_score: f32) -> Result<Vec<Candidate>, LayoutError> {
    let n = check_layout(shape, classes)?;
    if output.len() != (4 + classes) * n {
        return Err(LayoutError::Length { found: output.len(), shape: shape.to_vec() });
    }
    let row = |r: usize| &output[r * n..(r + 1) * n];
    let (cx, cy, w, h) = (row(0), row(1), row(2), row(3));
    let mut found = Vec::new();
    for i in 0..n {
        let (class_id, score) = (0..classes)
            .map(|c| (c, row(4 + c)[i]))
            .fold((0, f32::NEG_INFINITY), |best, (c, s)| if s > best.1 { (c, s) } else { best });
        if score >= min_score && w[i] > 0.0 && h[i] > 0.0 && score.is_finite() {
            let (half_w, half_h) = (w[i] / 2.0, h[i] / 2.0);
            found.push(Candidate {
                class_id,
                score,
                pixel_box: [cx[i] - half_w, cy[i] - half_h, cx[i] + half_w, cy[i] + half_h],
            });
        }
    }
    Ok(found)
}

/// Intersection over union of two boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let intersection = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection;
    if union > 0.0 { intersection / union } else { 0.0 }
}

/// Class-aware non-maximum suppression: the best-scoring box of each cluster of same-class boxes
/// overlapping by more than `max_iou` survives. Merges detections that straddle tiles, too.
pub fn nms(mut candidates: Vec<Candidate>, max_iou: f32) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for candidate in candidates {
        if kept.iter().all(|k| k.class_id != candidate.class_id || iou(&k.pixel_box, &candidate.pixel_box) <= max_iou) {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A [1, 4 + 2, 3] output: candidate 0 class 1, candidate 1 below threshold, candidate 2 class 0.
    fn output() -> (Vec<f32>, Vec<i64>) {
        let rows: [[f32; 3]; 6] = [
            [10.0, 50.0, 100.0],
            [20.0, 50.0, 100.0],
            [4.0, 10.0, 8.0],
            [6.0, 10.0, 8.0],
            [0.1, 0.05, 0.9],
            [0.8, 0.1, 0.2],
        ];
        (rows.concat(), vec![1, 6, 3])
    }

    #[test]
    fn decodes_the_yolo_layout() {
        let (data, shape) = output();
        let found = decode(&data, &shape, 2, 0.25).expect("layout");
        assert_eq!(found.len(), 2);
        assert_eq!(found[0], Candidate { class_id: 1, score: 0.8, pixel_box: [8.0, 17.0, 12.0, 23.0] });
        assert_eq!(found[1].class_id, 0);
        assert_eq!(found[1].pixel_box, [96.0, 96.0, 104.0, 104.0]);
    }

    #[test]
    fn another_layout_is_refused_with_what_was_expected() {
        let (data, _) = output();
        let e = decode(&data, &[1, 3, 6], 2, 0.25).expect_err("rows");
        assert!(e.to_string().contains("[1, 3, 6]") && e.to_string().contains("expected 4 + 2"), "{e}");
        let e = decode(&data, &[1, 3, 6, 1], 2, 0.25).expect_err("rank");
        assert!(e.to_string().contains("[1, 4 + classes, candidates]"), "{e}");
        assert!(matches!(decode(&data[..10], &[1, 6, 3], 2, 0.25), Err(LayoutError::Length { .. })));
    }

    #[test]
    fn nms_keeps_the_best_of_each_class_cluster() {
        let c = |class_id, score, x: f32| Candidate { class_id, score, pixel_box: [x, 0.0, x + 10.0, 10.0] };
        let kept = nms(vec![c(0, 0.6, 1.0), c(0, 0.9, 0.0), c(1, 0.5, 0.0), c(0, 0.7, 50.0)], 0.5);
        assert_eq!(kept, vec![c(0, 0.9, 0.0), c(0, 0.7, 50.0), c(1, 0.5, 0.0)]);
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
    }
}

/// What the model manifest says about a detector.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorSpec {
    pub name: String,
    pub classes: Vec<String>,
    /// Square input side, pixels.
    pub input_size: u32,
    /// Frame bands that feed the model's input channels, in order.
    pub bands: Vec<usize>,
    pub min_score: f32,
    pub max_iou: f32,
    /// Overlap between neighbouring tiles, frame pixels.
    pub tile_overlap: u32,
    /// How a tile becomes the model's input, and how its output holds the detections.
    pub preprocess: Preprocess,
    pub layout: OutputLayout,
}

/// A detection in a frame, with where it is on the Earth when the frame is georeferenced.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FrameDetection {
    pub class_id: usize,
    pub class_name: String,
    pub score: f32,
    pub pixel_box: [f32; 4],
    /// WGS84 latitude and longitude of the box centre.
    pub lat_lon: Option<(f64, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("model `{model}`: {source}")]
    Layout { model: String, source: LayoutError },
    #[error("model `{model}`: {message}")]
    Run { model: String, message: String },
    #[error(transparent)]
    Image(#[from] crate::imagery::ImageError),
    #[error(transparent)]
    Georef(#[from] crate::georef::GeorefError),
}

/// How far a canary output may move between two runs of the same weights (threads may sum in
/// another order); an upset in a weight moves it far more.
pub const CANARY_TOLERANCE: f32 = 1e-4;

/// The largest difference between two canary outputs, relative to the values' size; infinite if
/// their lengths differ.
pub fn canary_difference(reference: &[f32], now: &[f32]) -> f32 {
    if reference.len() != now.len() {
        return f32::INFINITY;
    }
    reference
        .iter()
        .zip(now)
        .map(|(a, b)| if a.is_nan() != b.is_nan() { f32::INFINITY } else { (a - b).abs() / (1.0 + a.abs()) })
        .fold(0.0, f32::max)
}

/// The raw output (shape, values) of model `name`'s session for one input tensor.
pub fn run_model(
    session: &mut ort::session::Session,
    name: &str,
    tensor: ndarray::Array4<f32>,
) -> Result<(Vec<i64>, Vec<f32>), DetectError> {
    let run_error = |message: String| DetectError::Run { model: name.to_owned(), message };
    let input = ort::value::Tensor::from_array(tensor).map_err(|e| run_error(e.to_string()))?;
    let outputs = session.run(ort::inputs![input]).map_err(|e| run_error(e.to_string()))?;
    let (shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(|e| run_error(e.to_string()))?;
    Ok((shape.to_vec(), data.to_vec()))
}

/// A detector: a session built once, run a few tiles at a time over frames of any size.
#[derive(Debug)]
pub struct Detector {
    session: ort::session::Session,
    spec: DetectorSpec,
    /// The most tiles one run of the session takes (1 until [`Detector::allow_batches`]).
    max_batch: usize,
    /// Whether the session computes on a device other than the CPU (see
    /// [`Detector::set_accelerated`]).
    accelerated: bool,
}

/// What making a batch's input needs, apart from the session: a thread of its own can make the
/// next batch while the session runs this one.
#[derive(Debug, Clone)]
struct BatchMaker {
    model: String,
    bands: Vec<usize>,
    input_size: u32,
    preprocess: Preprocess,
    /// A run of fewer tiles is filled up to this many with blank ones (0: never).
    fill_to: usize,
}

/// A batch's input tensor, and where each of its (non-blank) tiles landed in it.
struct Batch {
    tensor: ndarray::Array4<f32>,
    placements: Vec<Placement>,
}

impl BatchMaker {
    fn make(
        &self,
        raster: &crate::imagery::Raster,
        ranges: &[(f32, f32)],
        windows: &[crate::tile::Window],
    ) -> Result<Batch, DetectError> {
        let side = self.input_size as usize;
        let per_tile = self.bands.len() * side * side;
        let run_tiles = windows.len().max(self.fill_to);
        let mut values = vec![0.0; run_tiles * per_tile];
        let placements = windows
            .iter()
            .zip(values.chunks_mut(per_tile))
            .map(|(window, out)| raster.tile_into(*window, &self.bands, ranges, self.input_size, &self.preprocess, out))
            .collect();
        let tensor = ndarray::Array4::from_shape_vec((run_tiles, self.bands.len(), side, side), values)
            .map_err(|e| DetectError::Run { model: self.model.clone(), message: e.to_string() })?;
        Ok(Batch { tensor, placements })
    }
}

/// What the batch check at load found: how many tiles a run may take, or why only one.
#[derive(Debug, Clone, PartialEq)]
pub enum Batching {
    /// Up to this many tiles per run: their results are bit for bit those of one tile at a time.
    Tiles(usize),
    /// The model's input takes exactly one tile (its first axis is fixed at 1).
    FixedInput,
    /// A batch of `tiles` gave other numbers than its tiles one at a time on this execution
    /// provider (by `by`, relative), so exactly-once would not hold across a restart that batched
    /// otherwise.
    Differs { tiles: usize, by: f32 },
}

impl Detector {
    pub fn new(session: ort::session::Session, spec: DetectorSpec) -> Self {
        Self { session, spec, max_batch: 1, accelerated: false }
    }

    /// Says the session computes on a device other than the CPU (a GPU). Then:
    /// - every run has the full `max_batch` size, the tiles missing filled with blank ones whose
    ///   results are dropped. A run of another shape than the last one costs more than the blank
    ///   tiles: on an H100 a single tile after a batch of 16 took about 6 ms, against 0.7 ms in a
    ///   row of single tiles and 3.4 ms for a whole batch of 16 (docs/benchmarks.md). The batch
    ///   check makes a tile's result independent of its batch-mates, blank ones included;
    /// - a frame's next batch is made on a thread of its own while the device runs this one.
    ///
    /// On a CPU each tile costs its own time, and a thread making batches would take cores from
    /// the session's own threads, so both stay off.
    pub fn set_accelerated(&mut self, accelerated: bool) {
        self.accelerated = accelerated;
    }

    pub fn is_accelerated(&self) -> bool {
        self.accelerated
    }

    fn batch_maker(&self) -> BatchMaker {
        BatchMaker {
            model: self.spec.name.clone(),
            bands: self.spec.bands.clone(),
            input_size: self.spec.input_size,
            preprocess: self.spec.preprocess,
            fill_to: if self.accelerated { self.max_batch } else { 0 },
        }
    }

    /// The most tiles a run takes.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Lets runs take up to `limit` tiles, if the model's input has a free batch axis and a batch
    /// of every size from 2 to `limit` (different tiles) gives, bit for bit, what its tiles give one
    /// at a time (ONNX Runtime may pick other kernels for other batch sizes). A tile's result must
    /// not depend on what it was batched with: a frame resumed after a restart runs its remaining
    /// tiles in other batches, and its products must be the same.
    pub fn allow_batches(&mut self, limit: usize) -> Result<Batching, DetectError> {
        self.max_batch = 1;
        if limit <= 1 {
            return Ok(Batching::Tiles(1));
        }
        let first_axis = self.session.inputs().first().and_then(|input| input.dtype().tensor_shape()?.first().copied());
        if first_axis != Some(-1) {
            return Ok(Batching::FixedInput);
        }
        let tiles: Vec<_> = (0..limit).map(|k| self.pattern(k)).collect();
        let mut alone = Vec::new();
        for tile in &tiles {
            alone.extend(self.run(tile.clone())?.1);
        }
        let per_tile = alone.len() / limit;
        for size in 2..=limit {
            let views: Vec<_> = tiles[..size].iter().map(|tile| tile.view()).collect();
            let batch = ndarray::concatenate(ndarray::Axis(0), &views).map_err(|e| self.run_error(e.to_string()))?;
            let (_, together) = self.run(batch)?;
            let expected = &alone[..size * per_tile];
            if together.iter().map(|v| v.to_bits()).ne(expected.iter().map(|v| v.to_bits())) {
                return Ok(Batching::Differs { tiles: size, by: canary_difference(expected, &together) });
            }
        }
        self.max_batch = limit;
        Ok(Batching::Tiles(limit))
    }

    fn run_error(&self, message: String) -> DetectError {
        DetectError::Run { model: self.spec.name.clone(), message }
    }

    pub fn spec(&self) -> &DetectorSpec {
        &self.spec
    }

    /// Keeps detections down to `min_score` from now on (an evaluation's precision-recall curve
    /// reaches below the operating threshold; the boxes above it are the same, since a box is
    /// suppressed only by better-scoring ones).
    pub fn set_min_score(&mut self, min_score: f32) {
        self.spec.min_score = min_score;
    }

    /// Runs the model over every tile of `raster`, merges what straddles tiles, and places each
    /// detection on the Earth with `georef` when given. `ranges` scale each of the spec's bands.
    pub fn detect(
        &mut self,
        raster: &crate::imagery::Raster,
        ranges: &[(f32, f32)],
        georef: Option<&crate::georef::GeoTransform>,
    ) -> Result<Vec<FrameDetection>, DetectError> {
        self.detect_where(raster, ranges, georef, |_| Ok(true))
    }

    /// As `detect`, over the tiles `run` lets through (a screen before the detector).
    pub fn detect_where(
        &mut self,
        raster: &crate::imagery::Raster,
        ranges: &[(f32, f32)],
        georef: Option<&crate::georef::GeoTransform>,
        mut run: impl FnMut(crate::tile::Window) -> Result<bool, DetectError>,
    ) -> Result<Vec<FrameDetection>, DetectError> {
        let mut kept = Vec::new();
        for window in self.windows(raster) {
            if run(window)? {
                kept.push(window);
            }
        }
        let groups: Vec<_> = kept.chunks(self.max_batch).collect();
        let mut candidates = Vec::new();
        if !self.accelerated {
            for group in groups {
                candidates.extend(self.detect_tiles(raster, ranges, group)?.into_iter().flatten());
            }
            return self.merge(candidates, georef);
        }
        // the device runs one batch while a thread of its own makes the next: the CPU would
        // otherwise stand idle waiting for the device, and the device for the CPU
        let (maker, groups) = (self.batch_maker(), &groups);
        std::thread::scope(|scope| {
            let (sender, batches) = std::sync::mpsc::sync_channel(1);
            scope.spawn(move || {
                for group in groups {
                    // a closed channel: the session failed, and its error is on its way out
                    if sender.send(maker.make(raster, ranges, group)).is_err() {
                        break;
                    }
                }
            });
            for (group, batch) in groups.iter().zip(batches) {
                candidates.extend(self.run_batch(batch?, group)?.into_iter().flatten());
            }
            Ok::<_, DetectError>(())
        })?;
        self.merge(candidates, georef)
    }

    /// The tiles a frame is cut into, in the order the pipeline runs (and checkpoints) them.
    pub fn windows(&self, raster: &crate::imagery::Raster) -> Vec<crate::tile::Window> {
        crate::tile::windows(raster.width, raster.height, self.spec.input_size, self.spec.tile_overlap)
    }

    /// The detections in each of `windows` (in one run of the model: at most
    /// [`Detector::max_batch`] of them), in frame pixels, before merging with the neighbours.
    pub fn detect_tiles(
        &mut self,
        raster: &crate::imagery::Raster,
        ranges: &[(f32, f32)],
        windows: &[crate::tile::Window],
    ) -> Result<Vec<Vec<Candidate>>, DetectError> {
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.batch_maker().make(raster, ranges, windows)?;
        self.run_batch(batch, windows)
    }

    /// Runs `batch`, made of `windows` (and blank tiles after them), and decodes each window's
    /// candidates.
    fn run_batch(&mut self, batch: Batch, windows: &[crate::tile::Window]) -> Result<Vec<Vec<Candidate>>, DetectError> {
        let run_tiles = batch.tensor.shape()[0];
        let (shape, data) = self.run(batch.tensor)?;
        let layout_error = |source| DetectError::Layout { model: self.spec.name.clone(), source };
        let shape_error = |found: Vec<i64>, detail: String| match self.spec.layout {
            OutputLayout::Candidates => LayoutError::Shape { found, detail },
            OutputLayout::EndToEnd => LayoutError::EndToEndShape { found, detail },
        };
        let [tiles, rows, candidates] = shape[..] else {
            return Err(layout_error(shape_error(shape, String::new())));
        };
        if tiles != run_tiles as i64 {
            let detail = format!(" for a batch of {run_tiles} tiles");
            return Err(layout_error(shape_error(shape, detail)));
        }
        // every window gets its own slice of the output (decode refuses an empty or short one),
        // so the results are exactly one per window; the blank tiles' slices are dropped
        let tile_output = data.len() / run_tiles;
        if tile_output * run_tiles != data.len() {
            return Err(layout_error(LayoutError::Length { found: data.len(), shape }));
        }
        let spec = &self.spec;
        windows
            .iter()
            .zip(batch.placements)
            .enumerate()
            .map(|(i, (window, placement))| {
                let output = &data[i * tile_output..(i + 1) * tile_output];
                let shape = [1, rows, candidates];
                let found = decode_layout(spec.layout, output, &shape, spec.classes.len(), spec.min_score)
                    .map_err(layout_error)?;
                Ok(self.in_frame(found, *window, &placement))
            })
            .collect()
    }

    /// A tile's candidates, from the model's input pixels (the tile letterboxed at `placement`) to
    /// the frame's, after non-maximum suppression within the tile.
    fn in_frame(&self, found: Vec<Candidate>, window: crate::tile::Window, placement: &Placement) -> Vec<Candidate> {
        let spec = &self.spec;
        let (x0, y0) = (window.x as f32, window.y as f32);
        let (x1, y1) = (x0 + window.width as f32, y0 + window.height as f32);
        let mut candidates = Vec::new();
        for c in nms(found, spec.max_iou) {
            let b = placement.to_tile(c.pixel_box);
            let frame_box = [(x0 + b[0]).max(x0), (y0 + b[1]).max(y0), (x0 + b[2]).min(x1), (y0 + b[3]).min(y1)];
            if frame_box[2] > frame_box[0] && frame_box[3] > frame_box[1] {
                candidates.push(Candidate { pixel_box: frame_box, ..c });
            }
        }
        candidates
    }

    /// Runs the model once on a fixed input and decodes it as a tile's output: a layout flight
    /// cannot decode, or scores outside 0..1 (logits, or another task's numbers), are refused when
    /// the model loads rather than at the first frame.
    pub fn check_output(&mut self) -> Result<(), DetectError> {
        let (shape, data) = self.run(self.pattern(0))?;
        let layout_error = |source| DetectError::Layout { model: self.spec.name.clone(), source };
        let spec = &self.spec;
        let found =
            decode_layout(spec.layout, &data, &shape, spec.classes.len(), f32::NEG_INFINITY).map_err(layout_error)?;
        match found.iter().map(|c| c.score).find(|score| !(0.0..=1.0 + 1e-6).contains(score)) {
            Some(found) => Err(layout_error(LayoutError::Scores { found })),
            None => Ok(()),
        }
    }

    /// The model's raw output for a fixed input: taken when the model loads and again now and
    /// then, it shows whether the weights in ONNX Runtime's memory are still the ones loaded
    /// (an upset there changes it; the same weights give the same numbers).
    pub fn canary(&mut self) -> Result<Vec<f32>, DetectError> {
        let tensor = self.pattern(0);
        Ok(self.run(tensor)?.1)
    }

    /// A fixed input tile with structure at every scale, so that every filter sees something;
    /// `k` shifts it (different tiles for the batch check).
    fn pattern(&self, k: usize) -> ndarray::Array4<f32> {
        let side = self.spec.input_size as usize;
        ndarray::Array4::from_shape_fn((1, self.spec.bands.len(), side, side), |(_, c, y, x)| {
            (((x * 7 + y * 13 + c * 29 + k * 31) % 97) as f32 / 97.0 + ((x / 8 + y / 8 + k) % 2) as f32) / 2.0
        })
    }

    /// The model's raw output (shape, values) for an input tensor `[tiles, bands, size, size]`.
    pub fn run(&mut self, tensor: ndarray::Array4<f32>) -> Result<(Vec<i64>, Vec<f32>), DetectError> {
        run_model(&mut self.session, &self.spec.name, tensor)
    }

    /// Merges the tiles' candidates (what straddles tiles once) and places them on the Earth.
    pub fn merge(
        &self,
        candidates: Vec<Candidate>,
        georef: Option<&crate::georef::GeoTransform>,
    ) -> Result<Vec<FrameDetection>, DetectError> {
        let spec = &self.spec;
        nms(candidates, spec.max_iou)
            .into_iter()
            .map(|c| {
                let centre = (
                    f64::from(c.pixel_box[0] + c.pixel_box[2]) / 2.0,
                    f64::from(c.pixel_box[1] + c.pixel_box[3]) / 2.0,
                );
                let lat_lon = georef.map(|g| g.lat_lon(centre.0, centre.1)).transpose()?;
                Ok(FrameDetection {
                    class_id: c.class_id,
                    class_name: spec.classes.get(c.class_id).cloned().unwrap_or_default(),
                    score: c.score,
                    pixel_box: c.pixel_box,
                    lat_lon,
                })
            })
            .collect()
    }
}
