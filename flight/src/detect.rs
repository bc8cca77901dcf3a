//! Decoding the output of an ONNX detector in the layouts YOLO exports give, and class-aware
//! non-maximum suppression, within a tile and across tiles.
//!
//! The layouts (`model_io::OutputLayout`), one output tensor per run, its first axis the tiles:
//! - `[1, 4 + C, N]`: for each of N candidates, the box centre x, y, width and height in input
//!   pixels, then C class scores (already sigmoid-ed);
//! - `[1, K, 6]` (end to end): for each of K detections x1, y1, x2, y2, score and class id,
//!   suppressed already;
//! - `[1, K, 6]` (RT-DETR): for each of K queries the box centre and size as fractions of the
//!   input's side, score and class id, suppressed already;
//! - `[1, 4 + C + 1, N]` (oriented boxes): as the first, then the box's rotation in radians.
//!
//! Anything else is refused with what was expected and what was found.

use crate::model_io::{OutputLayout, Placement, Preprocess};

/// An oriented box: its centre and size in pixels and its rotation, radians, clockwise in image
/// axes (x right, y down), as Ultralytics' `xywhr`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RotatedBox {
    pub centre: [f32; 2],
    pub size: [f32; 2],
    pub angle: f32,
}

impl RotatedBox {
    /// The same box with its long side as its width and its angle in 0..π, the one form every
    /// box has (Ultralytics regularizes its boxes so too).
    pub fn regularized(self) -> Self {
        let [w, h] = self.size;
        let (size, angle) =
            if w >= h { ([w, h], self.angle) } else { ([h, w], self.angle + std::f32::consts::FRAC_PI_2) };
        Self { size, angle: angle.rem_euclid(std::f32::consts::PI), ..self }
    }

    /// The four corners, pixels, going round the box.
    pub fn corners(&self) -> [[f32; 2]; 4] {
        let (sin, cos) = self.angle.sin_cos();
        let [cx, cy] = self.centre;
        let (hw, hh) = (self.size[0] / 2.0, self.size[1] / 2.0);
        [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
            .map(|(dx, dy)| [cx + dx * cos - dy * sin, cy + dx * sin + dy * cos])
    }

    /// The smallest axis-aligned box around it: x min, y min, x max, y max.
    pub fn envelope(&self) -> [f32; 4] {
        self.corners().iter().fold([f32::INFINITY, f32::INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY], |e, [x, y]| {
            [e[0].min(*x), e[1].min(*y), e[2].max(*x), e[3].max(*y)]
        })
    }

    /// The box moved by `(-dx, -dy)`, then shrunk by `scale` (x, y) about the origin.
    pub fn placed(&self, (dx, dy): (f32, f32), (scale_x, scale_y): (f32, f32)) -> Self {
        // the width by the x scale and the height by the y one, whatever the angle, as Ultralytics
        // maps oriented boxes back (the two scales differ by under a pixel over the tile)
        Self {
            centre: [(self.centre[0] - dx) / scale_x, (self.centre[1] - dy) / scale_y],
            size: [self.size[0] / scale_x, self.size[1] / scale_y],
            angle: self.angle,
        }
    }

    /// Probabilistic IoU (Llerena et al., 2021): each box as a 2-D Gaussian of its extent's
    /// covariance, 1 minus their Hellinger distance. It is what Ultralytics suppresses oriented
    /// boxes by, so flight keeps the boxes Ultralytics keeps.
    pub fn probiou(&self, other: &Self) -> f32 {
        const EPS: f64 = 1e-7;
        let covariance = |b: &Self| {
            let (a, c) = (f64::from(b.size[0]).powi(2) / 12.0, f64::from(b.size[1]).powi(2) / 12.0);
            let (sin, cos) = f64::from(b.angle).sin_cos();
            (a * cos * cos + c * sin * sin, a * sin * sin + c * cos * cos, (a - c) * cos * sin)
        };
        let ((a1, b1, c1), (a2, b2, c2)) = (covariance(self), covariance(other));
        let (dx, dy) = (f64::from(self.centre[0] - other.centre[0]), f64::from(self.centre[1] - other.centre[1]));
        let (a, b, c) = (a1 + a2, b1 + b2, c1 + c2);
        let det = a * b - c * c;
        // the Bhattacharyya distance: the centres' Mahalanobis part and the shapes' part
        let centres = (a * dy * dy + b * dx * dx - 2.0 * c * dx * dy) / (det + EPS) / 4.0;
        let shapes =
            (det / (4.0 * ((a1 * b1 - c1 * c1).max(0.0) * (a2 * b2 - c2 * c2).max(0.0)).sqrt() + EPS) + EPS).ln() / 2.0;
        let distance = (centres + shapes).clamp(EPS, 100.0);
        (1.0 - (1.0 - (-distance).exp() + EPS).sqrt()) as f32
    }
}

/// A detection in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Candidate {
    pub class_id: usize,
    pub score: f32,
    /// x min, y min, x max, y max (of an oriented box: the axis-aligned box around it).
    pub pixel_box: [f32; 4],
    /// The oriented box, from a model of the oriented layout.
    pub rotated: Option<RotatedBox>,
    /// The top left corner of the tile it was found in, frame pixels: the detections of an
    /// end-to-end model are suppressed within their tile already.
    pub tile: [u32; 2],
}

impl Candidate {
    pub fn axis_aligned(class_id: usize, score: f32, pixel_box: [f32; 4]) -> Self {
        Self { class_id, score, pixel_box, rotated: None, tile: [0, 0] }
    }

    fn oriented(class_id: usize, score: f32, rotated: RotatedBox) -> Self {
        let rotated = rotated.regularized();
        Self { class_id, score, pixel_box: rotated.envelope(), rotated: Some(rotated), tile: [0, 0] }
    }

    /// How much two same-class detections overlap: probabilistic IoU for oriented boxes, IoU
    /// otherwise.
    fn overlap(&self, other: &Self) -> f32 {
        match (self.rotated, other.rotated) {
            (Some(a), Some(b)) => a.probiou(&b),
            _ => iou(&self.pixel_box, &other.pixel_box),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LayoutError {
    #[error("the model's output is {found:?}; {} gives {}{detail}", layout.family(), layout.shape())]
    Shape { layout: OutputLayout, found: Vec<i64>, detail: String },
    #[error("the model's scores reach {found}; a detector's are within 0 to 1 (sigmoid-ed)")]
    Scores { found: f32 },
    #[error("the model's output has {found} values for shape {shape:?}")]
    Length { found: usize, shape: Vec<i64> },
}

/// Checks a `[1, rows, n]` output shape against the rows `layout` has with `classes`; returns n.
pub fn check_layout(layout: OutputLayout, shape: &[i64], classes: usize) -> Result<usize, LayoutError> {
    let refuse = |detail: String| Err(LayoutError::Shape { layout, found: shape.to_vec(), detail });
    let rows = layout.rows(classes) as i64;
    match (layout, shape) {
        (OutputLayout::Candidates | OutputLayout::Oriented, [1, r, n]) if *r == rows && *n > 0 => Ok(*n as usize),
        (OutputLayout::EndToEnd | OutputLayout::RtDetr, [1, k, r]) if *r == rows && *k >= 0 => Ok(*k as usize),
        (OutputLayout::Candidates | OutputLayout::Oriented, [1, r, _]) => {
            refuse(format!(": {r} rows, expected {rows}"))
        }
        (OutputLayout::EndToEnd | OutputLayout::RtDetr, [1, _, r]) => {
            refuse(format!(": {r} values a detection, expected {rows}"))
        }
        _ => refuse(String::new()),
    }
}

/// Candidates above `min_score` in one tile's output of `layout` for an input of `size` (width,
/// height) pixels, in the input's pixels.
pub fn decode_layout(
    layout: OutputLayout,
    output: &[f32],
    shape: &[i64],
    classes: usize,
    size: (usize, usize),
    min_score: f32,
) -> Result<Vec<Candidate>, LayoutError> {
    let n = check_layout(layout, shape, classes)?;
    let rows = layout.rows(classes);
    if output.len() != rows * n {
        return Err(LayoutError::Length { found: output.len(), shape: shape.to_vec() });
    }
    let best_class = |scores: &mut dyn Iterator<Item = f32>| {
        scores.enumerate().fold((0, f32::NEG_INFINITY), |best, (c, s)| if s > best.1 { (c, s) } else { best })
    };
    let kept = |score: f32, w: f32, h: f32| score >= min_score && score.is_finite() && w > 0.0 && h > 0.0;
    let mut found = Vec::new();
    match layout {
        OutputLayout::Candidates | OutputLayout::Oriented => {
            // one row a quantity, one column a candidate
            let at = |row: usize, i: usize| output[row * n + i];
            for i in 0..n {
                let (class_id, score) = best_class(&mut (0..classes).map(|c| at(4 + c, i)));
                let (cx, cy, w, h) = (at(0, i), at(1, i), at(2, i), at(3, i));
                if !kept(score, w, h) {
                    continue;
                }
                found.push(if layout == OutputLayout::Oriented {
                    let angle = at(4 + classes, i);
                    Candidate::oriented(class_id, score, RotatedBox { centre: [cx, cy], size: [w, h], angle })
                } else {
                    Candidate::axis_aligned(class_id, score, [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0])
                });
            }
        }
        OutputLayout::EndToEnd | OutputLayout::RtDetr => {
            let (width, height) = (size.0 as f32, size.1 as f32);
            for row in output.chunks_exact(rows) {
                let (score, class) = (row[4], row[5]);
                let pixel_box = if layout == OutputLayout::RtDetr {
                    let [cx, cy, w, h] = [row[0] * width, row[1] * height, row[2] * width, row[3] * height];
                    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
                } else {
                    [row[0], row[1], row[2], row[3]]
                };
                if !kept(score, pixel_box[2] - pixel_box[0], pixel_box[3] - pixel_box[1]) {
                    continue;
                }
                let class_id = class.round();
                if !(0.0..classes as f32).contains(&class_id) {
                    let detail = format!(": a detection of class {class}, beyond the {classes} classes");
                    return Err(LayoutError::Shape { layout, found: shape.to_vec(), detail });
                }
                found.push(Candidate::axis_aligned(class_id as usize, score, pixel_box));
            }
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

/// Class-aware non-maximum suppression, as the model's own tool suppresses:
/// - axis-aligned boxes: the best-scoring box of each cluster of same-class boxes overlapping by
///   more than `max_iou` survives (torchvision's rule);
/// - oriented boxes: a box survives if no better-scoring same-class box overlaps it by
///   `max_iou` or more in probabilistic IoU, kept or not (Ultralytics' "fast NMS" for them).
///
/// With `within_tiles` false two boxes of the same tile never suppress each other: how a frame's
/// tiles, each suppressed already, are merged.
pub fn nms(mut candidates: Vec<Candidate>, max_iou: f32, within_tiles: bool) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let rivals = |a: &Candidate, b: &Candidate| a.class_id == b.class_id && (within_tiles || a.tile != b.tile);
    if candidates.iter().any(|c| c.rotated.is_some()) {
        return (0..candidates.len())
            .filter(|&i| {
                candidates[..i].iter().all(|k| !rivals(k, &candidates[i]) || k.overlap(&candidates[i]) < max_iou)
            })
            .map(|i| candidates[i])
            .collect();
    }
    let mut kept: Vec<Candidate> = Vec::new();
    for candidate in candidates {
        if kept.iter().all(|k| !rivals(k, &candidate) || k.overlap(&candidate) <= max_iou) {
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
        let found = decode_layout(OutputLayout::Candidates, &data, &shape, 2, (128, 128), 0.25).expect("layout");
        assert_eq!(found.len(), 2);
        assert_eq!(found[0], Candidate::axis_aligned(1, 0.8, [8.0, 17.0, 12.0, 23.0]));
        assert_eq!(found[1].class_id, 0);
        assert_eq!(found[1].pixel_box, [96.0, 96.0, 104.0, 104.0]);
    }

    #[test]
    fn another_layout_is_refused_with_what_was_expected() {
        let (data, _) = output();
        let decode =
            |data: &[f32], shape: &[i64]| decode_layout(OutputLayout::Candidates, data, shape, 2, (128, 128), 0.25);
        let e = decode(&data, &[1, 3, 6]).expect_err("rows");
        assert!(e.to_string().contains("[1, 3, 6]") && e.to_string().contains("expected 6"), "{e}");
        let e = decode(&data, &[1, 3, 6, 1]).expect_err("rank");
        assert!(e.to_string().contains("[batch, 4 + classes, candidates]"), "{e}");
        assert!(matches!(decode(&data[..10], &[1, 6, 3]), Err(LayoutError::Length { .. })));
    }

    #[test]
    fn oriented_and_rt_detr_outputs_decode_to_boxes_in_input_pixels() {
        // two candidates, one class: cx, cy, w, h, score, angle; the second taller than wide
        let rows: [[f32; 2]; 6] = [[20.0, 40.0], [30.0, 40.0], [10.0, 4.0], [4.0, 10.0], [0.9, 0.8], [0.5, 0.25]];
        let found =
            decode_layout(OutputLayout::Oriented, &rows.concat(), &[1, 6, 2], 1, (64, 64), 0.5).expect("oriented");
        let r = found[0].rotated.expect("rotated");
        assert_eq!((r.centre, r.size, r.angle), ([20.0, 30.0], [10.0, 4.0], 0.5));
        // regularized: the long side is the width, the angle a quarter turn on, within 0..π
        let r = found[1].rotated.expect("rotated");
        assert_eq!(r.size, [10.0, 4.0]);
        assert!((r.angle - (0.25 + std::f32::consts::FRAC_PI_2)).abs() < 1e-6);
        // RT-DETR: fractions of the side, score, class
        let query = [0.5, 0.25, 0.25, 0.125, 0.7, 1.0];
        let found = decode_layout(OutputLayout::RtDetr, &query, &[1, 1, 6], 2, (64, 64), 0.5).expect("RT-DETR");
        assert_eq!(found, vec![Candidate::axis_aligned(1, 0.7, [24.0, 12.0, 40.0, 20.0])]);
        let e = decode_layout(OutputLayout::RtDetr, &query, &[1, 1, 6], 1, (64, 64), 0.5).expect_err("classes");
        assert!(e.to_string().contains("an RT-DETR detector") && e.to_string().contains("beyond the 1 classes"), "{e}");
        let e = decode_layout(OutputLayout::RtDetr, &query[..5], &[1, 1, 5], 2, (64, 64), 0.5).expect_err("fields");
        assert!(e.to_string().contains("expected 6"), "{e}");
    }

    #[test]
    fn probabilistic_iou_is_one_for_the_same_box_however_written_and_falls_with_distance() {
        let a = RotatedBox { centre: [50.0, 50.0], size: [20.0, 6.0], angle: 0.4 };
        let same = RotatedBox { size: [6.0, 20.0], angle: 0.4 + std::f32::consts::FRAC_PI_2, ..a };
        assert!(a.probiou(&same) > 0.999, "{}", a.probiou(&same));
        assert!(a.probiou(&a.regularized()) > 0.999);
        let near = RotatedBox { centre: [53.0, 51.0], ..a };
        let far = RotatedBox { centre: [90.0, 50.0], ..a };
        let crossed = RotatedBox { angle: 0.4 + std::f32::consts::FRAC_PI_2, ..a };
        assert!(a.probiou(&near) < 0.999 && a.probiou(&near) > a.probiou(&crossed) && a.probiou(&far) < 1e-3);
        assert!((a.probiou(&near) - near.probiou(&a)).abs() < 1e-6);
    }

    #[test]
    fn oriented_boxes_are_suppressed_as_ultralytics_does_by_any_better_box() {
        let at =
            |score, x| Candidate::oriented(0, score, RotatedBox { centre: [x, 0.0], size: [20.0, 4.0], angle: 0.0 });
        // b overlaps a, c overlaps b but not a: fast NMS drops c too (b, though dropped, is better)
        let (a, b, c) = (at(0.9, 0.0), at(0.8, 3.0), at(0.7, 6.0));
        assert!(a.overlap(&b) >= 0.75 && b.overlap(&c) >= 0.75 && a.overlap(&c) < 0.75);
        assert_eq!(nms(vec![c, b, a], 0.75, true), vec![a]);
        let other_class = Candidate { class_id: 1, ..b };
        assert_eq!(nms(vec![a, other_class], 0.75, true), vec![a, other_class]);
    }

    #[test]
    fn an_end_to_end_models_boxes_of_one_tile_are_not_suppressed_again() {
        let a = Candidate::axis_aligned(0, 0.9, [0.0, 0.0, 10.0, 10.0]);
        let b = Candidate::axis_aligned(0, 0.8, [1.0, 0.0, 11.0, 10.0]);
        assert_eq!(nms(vec![a, b], 0.5, false), vec![a, b]);
        let from_the_next_tile = Candidate { tile: [64, 0], ..b };
        assert_eq!(nms(vec![a, from_the_next_tile], 0.5, false), vec![a]);
        assert_eq!(nms(vec![a, b], 0.5, true), vec![a]);
    }

    #[test]
    fn nms_keeps_the_best_of_each_class_cluster() {
        let c = |class_id, score, x: f32| Candidate::axis_aligned(class_id, score, [x, 0.0, x + 10.0, 10.0]);
        let kept = nms(vec![c(0, 0.6, 1.0), c(0, 0.9, 0.0), c(1, 0.5, 0.0), c(0, 0.7, 50.0)], 0.5, true);
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
    /// The oriented box, from a model of the oriented layout.
    pub rotated: Option<OrientedDetection>,
}

/// An oriented detection's box in the frame, and its corners on the Earth.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OrientedDetection {
    pub box_: RotatedBox,
    /// WGS84 latitude and longitude of the four corners, in [`RotatedBox::corners`]' order.
    pub outline: Option<Vec<(f64, f64)>>,
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
        let run_error = |message: String| DetectError::Run { model: self.model.clone(), message };
        let placements: Vec<Placement> =
            windows.iter().map(|w| Placement::of(w.width, w.height, self.input_size, &self.preprocess)).collect();
        // a frame's tiles are all one size, so they share an input size
        let (width, height) =
            placements.first().map_or((self.input_size as usize, self.input_size as usize), |p| p.input);
        if let Some(other) = placements.iter().find(|p| p.input != (width, height)) {
            return Err(run_error(format!("tiles of inputs {:?} and {:?} in one batch", (width, height), other.input)));
        }
        let per_tile = self.bands.len() * width * height;
        let run_tiles = windows.len().max(self.fill_to);
        let mut values = vec![0.0; run_tiles * per_tile];
        for (window, out) in windows.iter().zip(values.chunks_mut(per_tile)) {
            raster.tile_into(*window, &self.bands, ranges, self.input_size, &self.preprocess, out);
        }
        let tensor = ndarray::Array4::from_shape_vec((run_tiles, self.bands.len(), height, width), values)
            .map_err(|e| run_error(e.to_string()))?;
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

    /// Feeds the model with `preprocess` from now on (a benchmark comparing resizes).
    pub fn set_preprocess(&mut self, preprocess: Preprocess) {
        self.spec.preprocess = preprocess;
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
        let layout = self.spec.layout;
        let shape_error = |found: Vec<i64>, detail: String| LayoutError::Shape { layout, found, detail };
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
                let found =
                    decode_layout(spec.layout, output, &shape, spec.classes.len(), placement.input, spec.min_score)
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
        let found = if spec.layout.suppressed() { found } else { nms(found, spec.max_iou, true) };
        for c in found {
            let b = placement.to_tile(c.pixel_box);
            let frame_box = [(x0 + b[0]).max(x0), (y0 + b[1]).max(y0), (x0 + b[2]).min(x1), (y0 + b[3]).min(y1)];
            let rotated = c.rotated.map(|r| placement.to_tile_rotated(r, (x0, y0)));
            if frame_box[2] > frame_box[0] && frame_box[3] > frame_box[1] {
                candidates.push(Candidate { pixel_box: frame_box, rotated, tile: [window.x, window.y], ..c });
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
        let side = spec.input_size as usize;
        let found = decode_layout(spec.layout, &data, &shape, spec.classes.len(), (side, side), f32::NEG_INFINITY)
            .map_err(layout_error)?;
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
        // each tile's boxes were suppressed already (before they were clipped to it): only boxes
        // of different tiles are merged here, so a frame of one tile keeps what its model kept
        nms(candidates, spec.max_iou, false)
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
                    rotated: c
                        .rotated
                        .map(|box_| {
                            let corners = box_.corners();
                            let outline = georef
                                .map(|g| {
                                    corners
                                        .iter()
                                        .map(|[x, y]| g.lat_lon(f64::from(*x), f64::from(*y)))
                                        .collect::<Result<Vec<_>, _>>()
                                })
                                .transpose()?;
                            Ok::<_, DetectError>(OrientedDetection { box_, outline })
                        })
                        .transpose()?,
                })
            })
            .collect()
    }
}
