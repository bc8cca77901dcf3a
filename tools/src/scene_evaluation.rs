//! `flight-tools eval` over many labelled scenes at once: each scene scored on its own (precision,
//! recall, false alarms, AP at IoU 0.5 and 0.3), all of them pooled, and the precision-recall
//! curves. A scene that cannot be scored (no labels, labels naming an image that is not there, a
//! band file missing) is reported with what and where, and the other scenes are still scored.
//!
//! A scene is one labels file (COCO `.json`, `.csv`, Pascal VOC `.xml`) and the folder it lies in:
//! when the folder holds the mission's band files it is one frame, whatever the labels call it;
//! otherwise the labels name image files in that folder.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::evaluate::{
    CurvePoint, LabelError, LabelledBox, ScoredBox, Scores, precision_recall_curve, read_labels, score,
};
use kestrel_flight::mission_detector::{MissionDetector, MissionDetectorError};

/// A labels file and the folder of its images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledScene {
    pub name: String,
    pub folder: PathBuf,
    pub labels: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    #[error("`{0}`: no labels file (COCO .json, .csv or Pascal VOC .xml) in this scene folder")]
    NoLabels(PathBuf),
    #[error("`{0}`: not a folder")]
    NotAFolder(PathBuf),
    #[error("`{path}`: {message}")]
    Folder { path: PathBuf, message: String },
    #[error(transparent)]
    Labels(#[from] LabelError),
    #[error("`{labels}` labels image `{image}`, which is not in `{folder}`")]
    UnknownImage { labels: PathBuf, image: String, folder: PathBuf },
    #[error("`{folder}` is one frame (a folder of band files), but `{labels}` labels {images} images")]
    ImagesInOneFrame { folder: PathBuf, labels: PathBuf, images: usize },
    #[error(transparent)]
    Frame(#[from] MissionDetectorError),
}

fn is_labels_file(path: &Path) -> bool {
    path.is_file()
        && matches!(
            path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(),
            Some("json" | "csv" | "xml")
        )
}

fn sorted_entries(folder: &Path) -> Result<Vec<PathBuf>, SceneError> {
    let listing = std::fs::read_dir(folder)
        .map_err(|e| SceneError::Folder { path: folder.to_path_buf(), message: e.to_string() })?;
    let mut entries: Vec<PathBuf> = listing.filter_map(|entry| entry.ok().map(|e| e.path())).collect();
    entries.sort();
    Ok(entries)
}

fn folder_name(folder: &Path) -> String {
    folder.file_name().map_or_else(|| folder.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// The scenes of one folder that holds labels files itself: the folder's name when it holds one,
/// the folder's name and each file's stem when it holds several.
fn scenes_in(folder: &Path, labels: Vec<PathBuf>) -> Vec<LabelledScene> {
    let single = labels.len() == 1;
    labels
        .into_iter()
        .map(|file| {
            let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let name = if single { folder_name(folder) } else { format!("{}/{stem}", folder_name(folder)) };
            LabelledScene { name, folder: folder.to_path_buf(), labels: file }
        })
        .collect()
}

/// The scenes that `paths` name: each is a scene folder (it holds labels files) or a folder of
/// scene folders. A folder of scene folders whose subfolder holds no labels gives an error for that
/// subfolder, and the others still count.
pub fn find_scenes(paths: &[PathBuf]) -> Vec<Result<LabelledScene, SceneError>> {
    let mut found = Vec::new();
    for path in paths {
        if !path.is_dir() {
            found.push(Err(SceneError::NotAFolder(path.clone())));
            continue;
        }
        let entries = match sorted_entries(path) {
            Ok(entries) => entries,
            Err(e) => {
                found.push(Err(e));
                continue;
            }
        };
        let labels: Vec<PathBuf> = entries.iter().filter(|p| is_labels_file(p)).cloned().collect();
        if !labels.is_empty() {
            found.extend(scenes_in(path, labels).into_iter().map(Ok));
            continue;
        }
        let folders: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
        if folders.is_empty() {
            found.push(Err(SceneError::NoLabels(path.clone())));
        }
        for folder in folders {
            match sorted_entries(folder) {
                Ok(entries) => {
                    let labels: Vec<PathBuf> = entries.into_iter().filter(|p| is_labels_file(p)).collect();
                    if labels.is_empty() {
                        found.push(Err(SceneError::NoLabels(folder.clone())));
                    } else {
                        found.extend(scenes_in(folder, labels).into_iter().map(Ok));
                    }
                }
                Err(e) => found.push(Err(e)),
            }
        }
    }
    found
}

/// One scene's result.
#[derive(Debug, Clone, Serialize)]
pub struct SceneResult {
    pub scene: String,
    #[serde(flatten)]
    pub outcome: SceneOutcome,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SceneOutcome {
    Scored { scores: Scores, curve: Vec<CurvePoint> },
    Failed { error: String },
}

/// A detector on a set of scenes.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub model: String,
    /// The operating threshold the precision, recall and false alarms are counted at.
    pub min_score: f32,
    pub scenes: Vec<SceneResult>,
    /// Every scored scene's labels and detections together.
    pub pooled: Scores,
    pub pooled_curve: Vec<CurvePoint>,
    /// The point of the pooled curve with the best F1 score: on validation scenes, the operating
    /// threshold to write in the manifest (`min_score`).
    pub best_f1: Option<CurvePoint>,
}

impl Evaluation {
    /// The scenes that could not be scored.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &str)> {
        self.scenes.iter().filter_map(|s| match &s.outcome {
            SceneOutcome::Failed { error } => Some((s.scene.as_str(), error.as_str())),
            SceneOutcome::Scored { .. } => None,
        })
    }

    /// The scores of a scene that was scored.
    pub fn scene(&self, name: &str) -> Option<&Scores> {
        self.scenes.iter().find(|s| s.scene == name).and_then(|s| match &s.outcome {
            SceneOutcome::Scored { scores, .. } => Some(scores),
            SceneOutcome::Failed { .. } => None,
        })
    }
}

/// The labels of `scene` and the detector's detections in it, both named by image.
fn run_scene(
    detector: &mut MissionDetector,
    scene: &LabelledScene,
) -> Result<(Vec<LabelledBox>, Vec<ScoredBox>), SceneError> {
    let labels = read_labels(&scene.labels)?;
    let mut names: Vec<String> = labels.iter().map(|l| l.image.clone()).collect();
    names.sort();
    names.dedup();
    let one_frame = detector.is_scene_folder(&scene.folder);
    if one_frame && names.len() > 1 {
        return Err(SceneError::ImagesInOneFrame {
            folder: scene.folder.clone(),
            labels: scene.labels.clone(),
            images: names.len(),
        });
    }
    if !one_frame && let Some(missing) = names.iter().find(|name| !scene.folder.join(name).is_file()) {
        return Err(SceneError::UnknownImage {
            labels: scene.labels.clone(),
            image: missing.clone(),
            folder: scene.folder.clone(),
        });
    }
    // a labelled scene without a single label still has a frame to look at for false alarms
    if names.is_empty() && one_frame {
        names.push(folder_name(&scene.folder));
    }
    let inputs: Vec<PathBuf> =
        names.iter().map(|name| if one_frame { scene.folder.clone() } else { scene.folder.join(name) }).collect();
    let mut detections = Vec::new();
    let mut names_in_order = names.iter();
    detector.detect_each(&inputs, |_, found| {
        let image = names_in_order.next().expect("one input per name");
        detections.extend(found?.into_iter().map(|d| ScoredBox {
            image: image.clone(),
            class: d.class_name,
            score: d.score,
            pixel_box: d.pixel_box,
        }));
        Ok::<_, SceneError>(())
    })?;
    Ok((labels, detections))
}

/// The lowest score an evaluation keeps, so that its curves reach below the operating threshold.
pub const CURVE_FLOOR: f32 = 0.05;

/// Scores `detector` on each scene, and on all of them pooled: precision, recall and false alarms
/// at its manifest threshold, the curves down to `CURVE_FLOOR`.
pub fn evaluate(detector: &mut MissionDetector, scenes: Vec<Result<LabelledScene, SceneError>>) -> Evaluation {
    let min_score = detector.spec().min_score;
    detector.detector().set_min_score(CURVE_FLOOR.min(min_score));
    let mut results = Vec::new();
    let (mut all_labels, mut all_detections) = (Vec::new(), Vec::new());
    for (index, scene) in scenes.into_iter().enumerate() {
        let (name, ran) = match scene {
            Ok(scene) => (scene.name.clone(), run_scene(detector, &scene)),
            Err(e) => {
                let name = match &e {
                    SceneError::NoLabels(path) | SceneError::NotAFolder(path) | SceneError::Folder { path, .. } => {
                        folder_name(path)
                    }
                    _ => format!("#{index}"),
                };
                (name, Err(e))
            }
        };
        let outcome = match ran {
            Ok((labels, detections)) => {
                let scores = score(&labels, &detections, min_score);
                let curve = precision_recall_curve(&labels, &detections);
                // pooled, each image named by its scene so that no two scenes' images meet
                let rename = |image: &str| format!("{name}/{image}");
                all_labels.extend(labels.into_iter().map(|l| LabelledBox { image: rename(&l.image), ..l }));
                all_detections.extend(detections.into_iter().map(|d| ScoredBox { image: rename(&d.image), ..d }));
                SceneOutcome::Scored { scores, curve }
            }
            Err(e) => SceneOutcome::Failed { error: e.to_string() },
        };
        results.push(SceneResult { scene: name, outcome });
    }
    let pooled_curve = precision_recall_curve(&all_labels, &all_detections);
    let f1 = |p: &CurvePoint| {
        if p.precision + p.recall > 0.0 { 2.0 * p.precision * p.recall / (p.precision + p.recall) } else { 0.0 }
    };
    let best_f1 = pooled_curve.iter().copied().max_by(|a, b| f1(a).total_cmp(&f1(b)));
    detector.detector().set_min_score(min_score);
    Evaluation {
        model: detector.spec().name.clone(),
        min_score,
        scenes: results,
        pooled: score(&all_labels, &all_detections, min_score),
        pooled_curve,
        best_f1,
    }
}

/// The precision-recall curves as an SVG plot: each scene a thin line, the pooled curve thick,
/// and the operating threshold marked on it.
pub fn precision_recall_svg(evaluation: &Evaluation) -> String {
    const SIZE: f64 = 400.0;
    const MARGIN: f64 = 50.0;
    let x = |recall: f64| MARGIN + recall * SIZE;
    let y = |precision: f64| MARGIN + (1.0 - precision) * SIZE;
    let polyline = |curve: &[CurvePoint]| -> String {
        // from recall 0 at the first point's precision, so that a curve of one point shows
        let mut points = curve.first().map(|p| format!("{:.1},{:.1} ", x(0.0), y(p.precision))).unwrap_or_default();
        for p in curve {
            points.push_str(&format!("{:.1},{:.1} ", x(p.recall), y(p.precision)));
        }
        points
    };
    let width = SIZE + 2.0 * MARGIN + 160.0;
    let height = SIZE + 2.0 * MARGIN;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{MARGIN}\" y=\"20\" font-size=\"14\">{} precision-recall (IoU 0.5)</text>\n",
        escape(&evaluation.model)
    );
    for tick in 0..=10 {
        let v = f64::from(tick) / 10.0;
        svg.push_str(&format!(
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v:.1}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.1}</text>\n",
            x(v),
            y(0.0),
            x(v),
            y(1.0),
            x(0.0),
            y(v),
            x(1.0),
            y(v),
            x(v),
            y(0.0) + 16.0,
            x(0.0) - 6.0,
            y(v) + 4.0
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">recall</text>\
         <text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">precision</text>\n",
        x(0.5),
        y(0.0) + 34.0,
        y(0.5),
        y(0.5)
    ));
    let colours =
        ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
    let mut legend = 0;
    for (i, result) in evaluation.scenes.iter().enumerate() {
        let SceneOutcome::Scored { curve, .. } = &result.outcome else { continue };
        let colour = colours[i % colours.len()];
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1\" points=\"{}\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\">{}</text>\n",
            polyline(curve),
            x(1.0) + 16.0,
            MARGIN + 16.0 * f64::from(legend + 1),
            escape(&result.scene)
        ));
        legend += 1;
    }
    svg.push_str(&format!(
        "<polyline fill=\"none\" stroke=\"black\" stroke-width=\"3\" points=\"{}\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" font-weight=\"bold\">pooled</text>\n",
        polyline(&evaluation.pooled_curve),
        x(1.0) + 16.0,
        MARGIN
    ));
    let pooled = &evaluation.pooled;
    svg.push_str(&format!(
        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"none\" stroke=\"black\" stroke-width=\"2\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\">score &#8805; {}</text>\n</svg>\n",
        x(pooled.recall),
        y(pooled.precision),
        x(pooled.recall) + 8.0,
        y(pooled.precision) - 8.0,
        evaluation.min_score
    ));
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
