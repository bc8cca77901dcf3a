//! Decoding the output of any ONNX detector in the YOLOv8/YOLO11 export layout, and class-aware
//! non-maximum suppression, within a tile and across tiles.
//!
//! The layout: one output tensor `[1, 4 + C, N]`: for each of N candidates, the box centre x, y,
//! width and height in input pixels, then C class scores (already sigmoid-ed). Anything else is
//! refused with what was expected and what was found.

/// A detection in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub class_id: usize,
    pub score: f32,
    /// x min, y min, x max, y max.
    pub pixel_box: [f32; 4],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("the model's output is {found:?}; a YOLOv8/YOLO11 detector gives [1, 4 + classes, candidates]{detail}")]
    Shape { found: Vec<i64>, detail: String },
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
