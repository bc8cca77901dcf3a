//! Measuring a detector against labelled images: ground-truth boxes from COCO JSON, CSV
//! (`image_path,xmin,ymin,xmax,ymax,label`) or Pascal VOC XML, and precision, recall, false alarms
//! and average precision (VOC-style all-point interpolated, per class, averaged over classes) at
//! IoU 0.5 and 0.3, and the precision-recall curve.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use kestrel_flight::detect::iou;

/// A labelled box: which image (file name), class, and pixel box (x min, y min, x max, y max).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledBox {
    pub image: String,
    pub class: String,
    pub pixel_box: [f32; 4],
}

/// A detection to score: as `LabelledBox`, with a score.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredBox {
    pub image: String,
    pub class: String,
    pub score: f32,
    pub pixel_box: [f32; 4],
}

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("`{path}`: {message}")]
    Read { path: PathBuf, message: String },
    #[error("`{path}` line {line}: {message}")]
    Line { path: PathBuf, line: usize, message: String },
}

/// Reads labels by the file's kind: `.json` COCO, `.csv`, `.xml` Pascal VOC.
pub fn read_labels(path: &Path) -> Result<Vec<LabelledBox>, LabelError> {
    let read_error = |message: String| LabelError::Read { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|e| read_error(e.to_string()))?;
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("json") => coco(&text).map_err(read_error),
        Some("csv") => csv(path, &text),
        Some("xml") => voc(&text).map_err(read_error),
        _ => Err(read_error("labels must be COCO .json, .csv or Pascal VOC .xml".into())),
    }
}

#[derive(Deserialize)]
struct Coco {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
    categories: Vec<CocoCategory>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    image_id: u64,
    category_id: u64,
    bbox: [f32; 4],
}

#[derive(Deserialize)]
struct CocoCategory {
    id: u64,
    name: String,
}

fn coco(text: &str) -> Result<Vec<LabelledBox>, String> {
    let coco: Coco = serde_json::from_str(text).map_err(|e| format!("not COCO JSON: {e}"))?;
    coco.annotations
        .iter()
        .map(|a| {
            let image = coco
                .images
                .iter()
                .find(|i| i.id == a.image_id)
                .ok_or(format!("annotation on unknown image {}", a.image_id))?;
            let class = coco
                .categories
                .iter()
                .find(|c| c.id == a.category_id)
                .ok_or(format!("unknown category {}", a.category_id))?;
            let [x, y, w, h] = a.bbox;
            Ok(LabelledBox {
                image: image.file_name.clone(),
                class: class.name.clone(),
                pixel_box: [x, y, x + w, y + h],
            })
        })
        .collect()
}

fn csv(path: &Path, text: &str) -> Result<Vec<LabelledBox>, LabelError> {
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l.trim()).unwrap_or_default();
    if header != "image_path,xmin,ymin,xmax,ymax,label" {
        return Err(LabelError::Line {
            path: path.to_path_buf(),
            line: 1,
            message: format!("header `{header}` is not image_path,xmin,ymin,xmax,ymax,label"),
        });
    }
    lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let bad = |message: String| LabelError::Line { path: path.to_path_buf(), line: i + 1, message };
            let [image, x0, y0, x1, y1, class] = fields[..] else {
                return Err(bad(format!("{} fields, expected 6", fields.len())));
            };
            let number = |v: &str| v.parse::<f32>().map_err(|_| bad(format!("`{v}` is not a number")));
            Ok(LabelledBox {
                image: image.into(),
                class: class.into(),
                pixel_box: [number(x0)?, number(y0)?, number(x1)?, number(y1)?],
            })
        })
        .collect()
}

/// The trimmed text of `node`'s first child element called `name`.
fn child_text<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.children().find(|c| c.has_tag_name(name)).and_then(|c| c.text()).map(str::trim)
}

fn voc(text: &str) -> Result<Vec<LabelledBox>, String> {
    let document = roxmltree::Document::parse(text).map_err(|e| format!("not XML: {e}"))?;
    let root = document.root_element();
    let image = child_text(root, "filename").ok_or("no <filename>")?.to_owned();
    root.children()
        .filter(|n| n.has_tag_name("object"))
        .map(|object| {
            let class = child_text(object, "name").ok_or("an <object> without <name>")?.to_owned();
            let bndbox = object.children().find(|c| c.has_tag_name("bndbox")).ok_or("an <object> without <bndbox>")?;
            let mut pixel_box = [0f32; 4];
            for (value, tag) in pixel_box.iter_mut().zip(["xmin", "ymin", "xmax", "ymax"]) {
                let text = child_text(bndbox, tag).ok_or(format!("<bndbox> without <{tag}>"))?;
                *value = text.parse().map_err(|_| format!("<{tag}>{text}</{tag}> is not a number"))?;
            }
            Ok(LabelledBox { image: image.clone(), class, pixel_box })
        })
        .collect()
}

/// How a detector did on labelled images: precision, recall and false alarms at a score
/// threshold (matching at IoU 0.5), and average precision over all scores at IoU 0.5 and 0.3 (the
/// looser match counts a hit on a small object whose box is a few pixels off).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    pub map50: f64,
    pub map30: f64,
    pub precision: f64,
    pub recall: f64,
    /// Detections at the threshold that match no label.
    pub false_alarms: usize,
    /// Average precision at IoU 0.5 of each class.
    pub per_class: BTreeMap<String, f64>,
    pub labels: usize,
    /// Every detection scored, whatever its score.
    pub detections: usize,
    /// The detections at the threshold.
    pub kept: usize,
}

/// One point of a precision-recall curve: what keeping the detections scoring `score` or more
/// gives (IoU 0.5, all classes together).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CurvePoint {
    pub score: f32,
    pub precision: f64,
    pub recall: f64,
}

/// The detections ranked by score, best first, each with whether it matched a label (IoU at least
/// `min_iou`, same image and class, each label once).
fn ranked_outcomes<'a>(
    labels: &[LabelledBox],
    detections: &'a [ScoredBox],
    min_iou: f32,
) -> Vec<(&'a ScoredBox, bool)> {
    let mut order: Vec<&ScoredBox> = detections.iter().collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut used = vec![false; labels.len()];
    order
        .into_iter()
        .map(|d| {
            let best = labels
                .iter()
                .enumerate()
                .filter(|(j, l)| !used[*j] && l.image == d.image && l.class == d.class)
                .map(|(j, l)| (j, iou(&l.pixel_box, &d.pixel_box)))
                .filter(|(_, overlap)| *overlap >= min_iou)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((j, _)) = best {
                used[j] = true;
            }
            (d, best.is_some())
        })
        .collect()
}

/// Average precision of each class of `labels`, from outcomes ranked by score.
fn class_precisions(labels: &[LabelledBox], outcomes: &[(&ScoredBox, bool)]) -> BTreeMap<String, f64> {
    let classes: std::collections::BTreeSet<&str> = labels.iter().map(|l| l.class.as_str()).collect();
    classes
        .iter()
        .map(|&class| {
            let positives = labels.iter().filter(|l| l.class == class).count();
            let hits: Vec<bool> = outcomes.iter().filter(|(d, _)| d.class == class).map(|(_, hit)| *hit).collect();
            (class.to_owned(), average_precision(&hits, positives))
        })
        .collect()
}

fn mean(values: &BTreeMap<String, f64>) -> f64 {
    if values.is_empty() { 0.0 } else { values.values().sum::<f64>() / values.len() as f64 }
}

/// Scores detections against labels. Precision, recall and false alarms count detections scoring
/// at least `min_score`.
pub fn score(labels: &[LabelledBox], detections: &[ScoredBox], min_score: f32) -> Scores {
    let outcomes = ranked_outcomes(labels, detections, 0.5);
    let per_class = class_precisions(labels, &outcomes);
    let map30 = mean(&class_precisions(labels, &ranked_outcomes(labels, detections, 0.3)));
    let kept: Vec<bool> = outcomes.iter().filter(|(d, _)| d.score >= min_score).map(|(_, hit)| *hit).collect();
    let true_positives = kept.iter().filter(|hit| **hit).count();
    Scores {
        map50: mean(&per_class),
        map30,
        precision: if kept.is_empty() { 0.0 } else { true_positives as f64 / kept.len() as f64 },
        recall: if labels.is_empty() { 0.0 } else { true_positives as f64 / labels.len() as f64 },
        false_alarms: kept.len() - true_positives,
        per_class,
        labels: labels.len(),
        detections: detections.len(),
        kept: kept.len(),
    }
}

/// The precision-recall curve at IoU 0.5: one point per distinct score, highest score first.
pub fn precision_recall_curve(labels: &[LabelledBox], detections: &[ScoredBox]) -> Vec<CurvePoint> {
    let outcomes = ranked_outcomes(labels, detections, 0.5);
    let mut curve: Vec<CurvePoint> = Vec::new();
    let mut true_positives = 0usize;
    for (rank, (detection, hit)) in outcomes.iter().enumerate() {
        true_positives += usize::from(*hit);
        let point = CurvePoint {
            score: detection.score,
            precision: true_positives as f64 / (rank + 1) as f64,
            recall: if labels.is_empty() { 0.0 } else { true_positives as f64 / labels.len() as f64 },
        };
        // detections of equal score are kept or dropped together: one point for them
        match curve.last_mut() {
            Some(last) if last.score == point.score => *last = point,
            _ => curve.push(point),
        }
    }
    curve
}

/// All-point interpolated average precision of a ranked list of hits against `positives` labels.
fn average_precision(hits: &[bool], positives: usize) -> f64 {
    if positives == 0 {
        return 0.0;
    }
    let mut points = Vec::with_capacity(hits.len());
    let mut true_positives = 0;
    for (rank, &hit) in hits.iter().enumerate() {
        true_positives += usize::from(hit);
        points.push((true_positives as f64 / positives as f64, true_positives as f64 / (rank + 1) as f64));
    }
    // precision envelope from the right, then the area under it
    for i in (0..points.len().saturating_sub(1)).rev() {
        points[i].1 = points[i].1.max(points[i + 1].1);
    }
    let mut area = 0.0;
    let mut last_recall = 0.0;
    for (recall, precision) in points {
        area += (recall - last_recall) * precision;
        last_recall = recall;
    }
    area
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata").join(path)
    }

    #[test]
    fn reads_the_three_label_formats_of_the_real_data() {
        let coco =
            read_labels(&kestrel_flight::reference_data::expect("satellite/sen2ships/casablanca/casablanca_coco.json"))
                .expect("COCO");
        assert_eq!(coco.len(), 15);
        assert!(coco.iter().all(|l| l.class == "vessel" && l.image == "2023-04-26_SH_Casablanca_True_color.png"));
        assert_eq!(coco[0].pixel_box, [182.0, 281.0, 196.0, 286.0]);
        let csv = read_labels(&testdata("aerial/OSBS_029.csv")).expect("CSV");
        assert_eq!(csv.len(), 61);
        assert_eq!(
            csv[0],
            LabelledBox { image: "OSBS_029.tif".into(), class: "Tree".into(), pixel_box: [203.0, 67.0, 227.0, 90.0] }
        );
        let voc = read_labels(&testdata("aerial/2019_YELL_2_541000_4977000_image_crop.xml")).expect("VOC");
        assert_eq!(voc.len(), 279);
        assert_eq!(voc[0].pixel_box, [1012.0, 161.0, 1041.0, 196.0]);
    }

    #[test]
    fn bad_label_files_are_errors_naming_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let csv = dir.path().join("labels.csv");
        std::fs::write(&csv, "image_path,xmin,ymin,xmax,ymax,label\na.tif,1,2,3,4,Tree\na.tif,1,two,3,4,Tree\n")
            .expect("write");
        let e = read_labels(&csv).expect_err("bad number").to_string();
        assert!(e.contains("labels.csv` line 3") && e.contains("`two`"), "{e}");
        let xml = dir.path().join("l.xml");
        std::fs::write(&xml, "<annotation><filename>a</filename><object><name>x</name></object>").expect("write");
        assert!(read_labels(&xml).expect_err("bad xml").to_string().contains("l.xml"));
        assert!(read_labels(&dir.path().join("l.txt")).is_err());
    }

    #[test]
    fn perfect_partial_and_wrong_detections_score_as_they_should() {
        let labels = read_labels(&testdata("aerial/OSBS_029.csv")).expect("CSV");
        let as_detections = |boxes: &[LabelledBox], shift: f32| -> Vec<ScoredBox> {
            boxes
                .iter()
                .enumerate()
                .map(|(i, l)| ScoredBox {
                    image: l.image.clone(),
                    class: l.class.clone(),
                    score: 1.0 - i as f32 / 1000.0,
                    pixel_box: [l.pixel_box[0] + shift, l.pixel_box[1], l.pixel_box[2] + shift, l.pixel_box[3]],
                })
                .collect()
        };
        let perfect = score(&labels, &as_detections(&labels, 0.0), 0.5);
        assert_eq!((perfect.map50, perfect.precision, perfect.recall), (1.0, 1.0, 1.0));

        let half = score(&labels, &as_detections(&labels[..30], 0.0), 0.5);
        assert!((half.recall - 30.0 / 61.0).abs() < 1e-9 && half.precision == 1.0);
        assert!((half.map50 - 30.0 / 61.0).abs() < 1e-9);

        let mut twice = as_detections(&labels, 0.0);
        twice.extend(as_detections(&labels, 0.0).into_iter().map(|d| ScoredBox { score: d.score / 2.0, ..d }));
        let duplicated = score(&labels, &twice, 0.0);
        assert_eq!(duplicated.map50, 1.0, "duplicates ranked after every true hit do not lower AP");
        assert!((duplicated.precision - 0.5).abs() < 1e-9, "but they are false positives");

        let off = score(&labels, &as_detections(&labels, 1000.0), 0.0);
        assert_eq!((off.map50, off.recall), (0.0, 0.0));
        assert_eq!(off.false_alarms, 61);
    }

    #[test]
    fn a_box_a_few_pixels_off_counts_at_iou_0_3_but_not_at_0_5_and_thresholds_count_false_alarms() {
        let label =
            |x: f32| LabelledBox { image: "a".into(), class: "vessel".into(), pixel_box: [x, 0.0, x + 10.0, 10.0] };
        let detection = |x: f32, score: f32| ScoredBox {
            image: "a".into(),
            class: "vessel".into(),
            score,
            pixel_box: [x, 0.0, x + 10.0, 10.0],
        };
        let labels = [label(0.0), label(100.0)];
        // IoU of a 10 px box shifted by 4 px: 6 / 14 = 0.43
        let detections = [detection(0.0, 0.9), detection(104.0, 0.8), detection(300.0, 0.7), detection(500.0, 0.2)];
        let scores = score(&labels, &detections, 0.5);
        assert_eq!((scores.kept, scores.false_alarms), (3, 2));
        assert!((scores.precision - 1.0 / 3.0).abs() < 1e-9 && (scores.recall - 0.5).abs() < 1e-9);
        assert!((scores.map50 - 0.5).abs() < 1e-9, "{scores:?}");
        assert!((scores.map30 - 1.0).abs() < 1e-9, "{scores:?}");

        let curve = precision_recall_curve(&labels, &detections);
        let points: Vec<(f32, f64, f64)> = curve.iter().map(|p| (p.score, p.precision, p.recall)).collect();
        assert_eq!(points, [(0.9, 1.0, 0.5), (0.8, 0.5, 0.5), (0.7, 1.0 / 3.0, 0.5), (0.2, 0.25, 0.5)]);
        // detections of one score are one point
        let tied = precision_recall_curve(&labels, &[detection(0.0, 0.5), detection(100.0, 0.5)]);
        assert_eq!(tied.len(), 1);
        assert_eq!((tied[0].precision, tied[0].recall), (1.0, 1.0));
    }
}
