//! How a model meets flight: how a tile's samples become its input (the manifest's preprocessing,
//! or Ultralytics' own for a file Ultralytics exported), what the file says about itself (the
//! export's metadata), and its session's input and output checked against the manifest when it
//! loads, so that a model flight cannot run is refused then, naming the key, never at a tile.

use serde::Deserialize;

use crate::models::{ModelError, VerifiedModel};

/// How a tile other than the model's size is resized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Each output pixel from the four samples around its centre, as training pipelines
    /// (OpenCV's `INTER_LINEAR`, PyTorch's `bilinear`) resize.
    Bilinear,
    /// Each output pixel the sample under its centre.
    Nearest,
}

/// Where a resized tile sits in the model's input; the rest is padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Letterbox {
    /// In the middle, the padding shared out on both sides (Ultralytics' letterbox).
    #[serde(alias = "center")]
    Centre,
    /// In the top left corner, the padding right and below.
    Corner,
    /// Resized to fill the whole input, each axis by its own scale: no padding, the aspect not
    /// kept (how Ultralytics feeds RT-DETR).
    Stretch,
}

/// How a tile's samples become the model's input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    /// Samples from `low` to `high` go linearly onto 0..1 (clamped); `None`: each band between
    /// the mission's per-scene quantiles.
    pub input_range: Option<(f32, f32)>,
    pub resize: Resize,
    pub letterbox: Letterbox,
    /// The input value of the padding (after scaling).
    pub pad: f32,
    /// A model whose input height and width are free gets the smallest input that holds the
    /// resized tile and whose padding is a multiple of this many pixels (Ultralytics' letterbox
    /// for such a model: its metadata's `stride`); `None`: always the model's square.
    pub stride: Option<u32>,
}

impl Preprocess {
    /// Flight's own models': per-scene quantiles, the tile in the corner padded with 0.5.
    pub const FLIGHT: Self =
        Self { input_range: None, resize: Resize::Bilinear, letterbox: Letterbox::Corner, pad: 0.5, stride: None };
    /// Ultralytics': samples divided by 255, resized bilinearly into the middle, padded with 114
    /// (of 255).
    pub const ULTRALYTICS: Self = Self {
        input_range: Some((0.0, 255.0)),
        resize: Resize::Bilinear,
        letterbox: Letterbox::Centre,
        pad: 114.0 / 255.0,
        stride: None,
    };
}

/// Where a `width` x `height` tile lands in a model's input: the input's own size, the tile's
/// extent there and its top left corner, and the scale from tile pixels to input pixels along
/// each axis, which boxes are mapped back by. The arithmetic is Ultralytics' (8.4's `LetterBox`
/// and `scale_boxes`, Python's rounding included), so that a tile lands on the pixels it landed
/// on in training and its boxes come back where Ultralytics puts them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// From tile pixels to input pixels, x and y: the resized sides over the tile's (nearly the
    /// same but for a stretched tile).
    pub scale: (f32, f32),
    pub offset: (f32, f32),
    /// The tile's extent in the input, pixels.
    pub extent: (usize, usize),
    /// The input's width and height: the model's square side, or less along an axis where the
    /// padding is trimmed to the stride.
    pub input: (usize, usize),
}

impl Placement {
    pub fn of(width: u32, height: u32, size: u32, preprocess: &Preprocess) -> Self {
        let (w, h, side) = (f64::from(width.max(1)), f64::from(height.max(1)), f64::from(size));
        if preprocess.letterbox == Letterbox::Stretch {
            let full = size as usize;
            return Self {
                scale: ((side / w) as f32, (side / h) as f32),
                offset: (0.0, 0.0),
                extent: (full, full),
                input: (full, full),
            };
        }
        let gain = side / w.max(h);
        let extent = ((w * gain).round_ties_even().min(side), (h * gain).round_ties_even().min(side));
        let padding = |along: f64| match preprocess.stride {
            Some(stride) if stride > 0 => (side - along) % f64::from(stride),
            _ => side - along,
        };
        let (pad_x, pad_y) = (padding(extent.0), padding(extent.1));
        let offset = match preprocess.letterbox {
            Letterbox::Corner | Letterbox::Stretch => (0.0, 0.0),
            // Ultralytics' rounding: the odd pixel of padding goes right and below
            Letterbox::Centre => ((pad_x / 2.0 - 0.1).round().max(0.0), (pad_y / 2.0 - 0.1).round().max(0.0)),
        };
        let input = ((extent.0 + pad_x) as usize, (extent.1 + pad_y) as usize);
        Self {
            // each axis by the scale its resize had (the sides were rounded), as Ultralytics maps back
            scale: ((extent.0 / w) as f32, (extent.1 / h) as f32),
            offset: (offset.0 as f32, offset.1 as f32),
            extent: (extent.0 as usize, extent.1 as usize),
            input,
        }
    }

    /// An oriented box in input pixels, in the pixels of the frame whose tile's corner is
    /// `origin`.
    pub fn to_tile_rotated(&self, b: crate::detect::RotatedBox, origin: (f32, f32)) -> crate::detect::RotatedBox {
        let placed = b.placed(self.offset, self.scale);
        crate::detect::RotatedBox { centre: [placed.centre[0] + origin.0, placed.centre[1] + origin.1], ..placed }
    }

    /// A box in input pixels, in tile pixels.
    pub fn to_tile(&self, b: [f32; 4]) -> [f32; 4] {
        let ((dx, dy), (sx, sy)) = (self.offset, self.scale);
        [(b[0] - dx) / sx, (b[1] - dy) / sy, (b[2] - dx) / sx, (b[3] - dy) / sy]
    }
}

/// How a detector's output holds its detections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputLayout {
    /// `[B, 4 + C, N]`: per candidate, the box centre x, y, width and height in input pixels, then
    /// C class scores; suppression is flight's (YOLOv8, YOLO11, YOLO26 with `end2end=False`).
    #[default]
    Candidates,
    /// `[B, K, 6]`: per detection x1, y1, x2, y2 in input pixels, score and class, suppressed
    /// already (YOLO26 and YOLOv10 end to end, YOLO11 with `nms=True`).
    EndToEnd,
    /// `[B, K, 6]`: per query the box centre x, y, width and height as fractions of the input's
    /// side, score and class; suppressed already (RT-DETR as Ultralytics 8.4 exports it).
    RtDetr,
    /// `[B, 4 + C + 1, N]`: as `Candidates`, then each box's rotation in radians (YOLO OBB models).
    Oriented,
}

impl OutputLayout {
    pub fn describe(self) -> String {
        format!("{} ({})", self.shape(), self.family())
    }

    pub fn shape(self) -> &'static str {
        match self {
            Self::Candidates => "[batch, 4 + classes, candidates]",
            Self::EndToEnd => "[batch, detections, 6]",
            Self::RtDetr => "[batch, queries, 6]",
            Self::Oriented => "[batch, 4 + classes + 1, candidates]",
        }
    }

    /// The models that give this layout.
    pub fn family(self) -> &'static str {
        match self {
            Self::Candidates => "a YOLOv8/YOLO11 detector",
            Self::EndToEnd => "an end-to-end detector (x1, y1, x2, y2, score, class)",
            Self::RtDetr => "an RT-DETR detector (centre and size as fractions, score, class)",
            Self::Oriented => "an oriented-box detector (centre, size, class scores, angle)",
        }
    }

    /// The values one detection or candidate takes with `classes` classes.
    pub fn rows(self, classes: usize) -> usize {
        match self {
            Self::Candidates => 4 + classes,
            Self::EndToEnd | Self::RtDetr => 6,
            Self::Oriented => 5 + classes,
        }
    }

    /// Whether the model suppressed overlapping boxes itself.
    pub fn suppressed(self) -> bool {
        matches!(self, Self::EndToEnd | Self::RtDetr)
    }
}

/// What an Ultralytics export says about itself: its ONNX metadata (every value the Python
/// `str()` of the exporter's own).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportMetadata {
    pub task: Option<String>,
    pub imgsz: Option<Vec<u32>>,
    pub names: Option<Vec<String>>,
    pub channels: Option<usize>,
    /// How many input pixels one cell of the coarsest feature map spans (`stride`).
    pub stride: Option<u32>,
    /// The output's layout: oriented for the `obb` task, RT-DETR's for an RT-DETR model (its
    /// `head` or `description` names it), end to end for YOLO26 and YOLOv10 (`end2end`) or an export
    /// with `nms=True`, else candidates.
    pub layout: OutputLayout,
}

impl ExportMetadata {
    /// The metadata of a file Ultralytics exported (its `author` says so), read with `get`; `None`
    /// for any other file. A value that is there but unreadable is an error naming its key.
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        if !get("author").is_some_and(|a| a.contains("Ultralytics")) {
            return Ok(None);
        }
        let unreadable =
            |key: &str, value: &str| format!("its Ultralytics metadata `{key}` is `{value}`, not readable");
        let imgsz = get("imgsz")
            .map(|v| {
                let inner = v.trim().trim_start_matches('[').trim_end_matches(']');
                inner
                    .split(',')
                    .map(|d| d.trim().parse::<u32>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| unreadable("imgsz", &v))
            })
            .transpose()?;
        let names = get("names").map(|v| python_dict_names(&v).ok_or_else(|| unreadable("names", &v))).transpose()?;
        let channels = get("channels").map(|v| v.trim().parse().map_err(|_| unreadable("channels", &v))).transpose()?;
        let stride = get("stride").map(|v| v.trim().parse().map_err(|_| unreadable("stride", &v))).transpose()?;
        let nms_in_graph = get("args").is_some_and(|args| args.replace(' ', "").contains("'nms':True"));
        let end2end = get("end2end").is_some_and(|v| v.trim() == "True") || nms_in_graph;
        let task = get("task").map(|t| t.trim().to_owned());
        // its head names it (`RTDETRDecoder`); older exports say so only in the description
        let names_rt_detr = |text: String| text.to_lowercase().replace(['-', '_', ' '], "").contains("rtdetr");
        let rt_detr = get("head").is_some_and(names_rt_detr) || get("description").is_some_and(names_rt_detr);
        let layout = match task.as_deref() {
            Some("obb") => OutputLayout::Oriented,
            _ if rt_detr => OutputLayout::RtDetr,
            _ if end2end => OutputLayout::EndToEnd,
            _ => OutputLayout::Candidates,
        };
        Ok(Some(Self { task, imgsz, names, channels, stride, layout }))
    }
}

/// The class names of a Python dict's `str()`, `{0: 'person', 1: "it's"}`, in key order.
fn python_dict_names(text: &str) -> Option<Vec<String>> {
    let mut rest = text.trim().strip_prefix('{')?.trim_start();
    let mut names = Vec::new();
    while !rest.starts_with('}') {
        let (key, after) = rest.split_once(':')?;
        if key.trim().parse::<usize>().ok()? != names.len() {
            return None;
        }
        let after = after.trim_start();
        let quote = after.chars().next().filter(|q| *q == '\'' || *q == '"')?;
        let mut name = String::new();
        let mut chars = after[1..].char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => name.push(chars.next()?.1),
                (i, c) if c == quote => break i + 2,
                (_, c) => name.push(c),
            }
        };
        names.push(name);
        rest = after[end..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Some(names)
}

/// A model as flight runs it: the manifest's entry, filled from and checked against the file's
/// metadata and its session's input and output.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelIo {
    pub classes: Vec<String>,
    pub input_size: u32,
    pub input_channels: usize,
    pub preprocess: Preprocess,
    pub layout: OutputLayout,
}

/// The session's input and output as ONNX Runtime states them (-1 for a free dimension).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionShapes {
    /// The input's element type (ONNX Runtime's name for it), and its shape.
    pub input: Option<(String, Vec<i64>)>,
    pub output: Option<Vec<i64>>,
}

impl SessionShapes {
    pub fn of(session: &ort::session::Session) -> Self {
        let input = session.inputs().first().and_then(|i| {
            let ty = i.dtype().tensor_type()?;
            Some((format!("{ty:?}"), i.dtype().tensor_shape()?.to_vec()))
        });
        let output = session.outputs().first().and_then(|o| Some(o.dtype().tensor_shape()?.to_vec()));
        Self { input, output }
    }
}

/// What the export tasks flight does not run are, and which export gives a detection model.
fn task_refusal(task: &str) -> Option<String> {
    let what = match task {
        "detect" | "obb" => return None,
        "segment" => "a segmentation model; flight runs detection models",
        "pose" => "a pose model; flight runs detection models",
        "classify" => "a classification model; flight runs detection models",
        _ => "of a task flight does not know; flight runs detection models",
    };
    Some(format!(
        "the file is {what} (its Ultralytics metadata `task` is `{task}`); export a detection model \
         (`yolo export model=yolo11n.pt format=onnx`, a detection checkpoint)"
    ))
}

/// The model `model` as flight runs it in `session`: [`resolve`] with the session's own metadata
/// and shapes.
pub fn resolve_session(model: &VerifiedModel, session: &ort::session::Session) -> Result<ModelIo, ModelError> {
    let metadata = match session.metadata() {
        Ok(metadata) => ExportMetadata::read(|key| metadata.custom(key)),
        Err(e) => Err(e.to_string()),
    }
    .map_err(|message| model.key_error("file", None, message))?;
    resolve(model, metadata.as_ref(), &SessionShapes::of(session))
}

/// The model `model` as flight runs it: what its manifest entry states, what its export's
/// metadata states where the entry is silent (a contradiction is refused, naming the key), and its
/// session's input and output checked against both.
pub fn resolve(
    model: &VerifiedModel,
    metadata: Option<&ExportMetadata>,
    shapes: &SessionShapes,
) -> Result<ModelIo, ModelError> {
    let entry = &model.entry;
    let refuse = |key: &str, span: Option<std::ops::Range<usize>>, message: String| model.key_error(key, span, message);
    if let Some(refusal) = metadata.and_then(|m| m.task.as_deref()).and_then(task_refusal) {
        return Err(refuse("file", None, refusal));
    }
    let stated_size = match metadata.and_then(|m| m.imgsz.as_deref()) {
        None => None,
        Some(sides) if !sides.is_empty() && sides.iter().all(|d| *d == sides[0]) => Some(sides[0]),
        Some(sides) => {
            let message = format!(
                "its input is {sides:?} (Ultralytics metadata `imgsz`); flight's tiles are square: export with one `imgsz`"
            );
            return Err(refuse("file", None, message));
        }
    };
    let input_size = agree(model, "input_size", entry.input_size.as_ref(), stated_size, "imgsz")?;
    let channels =
        agree(model, "input_channels", entry.input_channels.as_ref(), metadata.and_then(|m| m.channels), "channels")?;
    let classes = agree(model, "classes", entry.classes.as_ref(), metadata.and_then(|m| m.names.clone()), "names")?;
    let base = if metadata.is_some() { Preprocess::ULTRALYTICS } else { Preprocess::FLIGHT };
    let range = entry.input_range.as_ref();
    if let Some(&[low, high]) = range.map(toml::Spanned::get_ref)
        && !(low.is_finite() && high.is_finite() && low < high)
    {
        return Err(refuse(
            "input_range",
            range.map(toml::Spanned::span),
            format!("[{low}, {high}] is not a range, low below high"),
        ));
    }
    let pad = entry.letterbox_pad.as_ref();
    if let Some(&value) = pad.map(toml::Spanned::get_ref)
        && !value.is_finite()
    {
        return Err(refuse("letterbox_pad", pad.map(toml::Spanned::span), format!("{value} is not a number")));
    }
    let stated_layout = entry.output_layout.as_ref();
    let layout = match (stated_layout, metadata.map(|m| m.layout)) {
        (None, None) => OutputLayout::Candidates,
        (stated, exported) => agree(model, "output_layout", stated, exported, "task")?,
    };
    // Ultralytics feeds RT-DETR its image stretched to the square, and every other model its
    // image letterboxed: into the square, or for a model whose height and width are free into
    // the smallest input whose padding is a multiple of the stride
    let letterbox = entry.letterbox.unwrap_or(match (metadata, layout) {
        (Some(_), OutputLayout::RtDetr) => Letterbox::Stretch,
        _ => base.letterbox,
    });
    let free_sides = matches!(shapes.input.as_ref().map(|(_, shape)| &shape[..]), Some([_, _, -1, -1]));
    let stated_stride = entry.letterbox_stride.as_ref();
    let stride = match (stated_stride, metadata) {
        (Some(stated), _) if *stated.get_ref() == 0 => None,
        (Some(stated), _) if !free_sides => {
            let input = shapes.input.as_ref().map(|(_, shape)| shape.clone()).unwrap_or_default();
            let message = format!(
                "the model's input {input:?} has a fixed height and width, so it takes the square only (0, or no key)"
            );
            return Err(refuse("letterbox_stride", Some(stated.span()), message));
        }
        (Some(stated), _) => Some(*stated.get_ref()),
        (None, Some(exported)) if free_sides && letterbox != Letterbox::Stretch => Some(exported.stride.unwrap_or(32)),
        (None, _) => None,
    };
    let preprocess = Preprocess {
        input_range: range.map(|r| (r.get_ref()[0], r.get_ref()[1])).or(base.input_range),
        resize: entry.resize.unwrap_or(base.resize),
        letterbox,
        pad: pad.map_or(base.pad, |p| *p.get_ref()),
        stride,
    };
    let io = ModelIo { classes, input_size, input_channels: channels, preprocess, layout };
    check_session(model, &io, shapes)?;
    Ok(io)
}

/// The value of key `key`: the entry's, or the metadata's (`meta_key`) where the entry has none;
/// both, and different, is a refusal.
fn agree<T: Clone + PartialEq + std::fmt::Debug>(
    model: &VerifiedModel,
    key: &str,
    stated: Option<&toml::Spanned<T>>,
    exported: Option<T>,
    meta_key: &str,
) -> Result<T, ModelError> {
    match (stated, exported) {
        (Some(stated), Some(exported)) if *stated.get_ref() != exported => Err(model.key_error(
            key,
            Some(stated.span()),
            format!(
                "the manifest says {:?}, the file's Ultralytics metadata `{meta_key}` says {exported:?}",
                stated.get_ref()
            ),
        )),
        (Some(stated), _) => Ok(stated.get_ref().clone()),
        (None, Some(exported)) => Ok(exported),
        (None, None) => {
            Err(model.key_error(key, None, format!("the manifest needs `{key}` (the file does not state it)")))
        }
    }
}

/// The session's input (`[batch, channels, size, size]` of float32, the batch 1 or free) and its
/// output's rank and fixed dimensions against what flight will feed it and decode.
fn check_session(model: &VerifiedModel, io: &ModelIo, shapes: &SessionShapes) -> Result<(), ModelError> {
    let refuse = |message: String| model.key_error("file", None, message);
    let Some((ty, input)) = &shapes.input else {
        return Err(refuse("its input is not a tensor".into()));
    };
    if ty != "Float32" {
        return Err(refuse(format!("its input is of {ty}; flight feeds float32 (export without `half=True`)")));
    }
    let side = i64::from(io.input_size);
    match input[..] {
        [batch, _, _, _] if batch != 1 && batch != -1 => {
            return Err(refuse(format!(
                "its input {input:?} has a fixed batch of {batch}; export with `batch=1` or `dynamic=True`"
            )));
        }
        [_, c, _, _] if c != -1 && c != io.input_channels as i64 => {
            return Err(model.key_error(
                "input_channels",
                model.entry.input_channels.as_ref().map(toml::Spanned::span),
                format!("its input {input:?} takes {c} channels, not {}", io.input_channels),
            ));
        }
        [_, _, h, w] if (h != -1 && h != side) || (w != -1 && w != side) => {
            return Err(model.key_error(
                "input_size",
                model.entry.input_size.as_ref().map(toml::Spanned::span),
                format!("its input {input:?} is not {side} x {side}"),
            ));
        }
        [_, _, _, _] => {}
        _ => return Err(refuse(format!("its input is {input:?}; flight feeds [batch, channels, height, width]"))),
    }
    // a cloud mask's output is the cloud screen's to check
    let detector = model.entry.kind == crate::models::ModelKind::Detector;
    if let Some(output) = shapes.output.as_ref().filter(|_| detector) {
        let classes = io.classes.len();
        let rows = io.layout.rows(classes) as i64;
        let fits = match (io.layout, &output[..]) {
            (OutputLayout::Candidates | OutputLayout::Oriented, [_, r, _]) => *r == -1 || *r == rows,
            (OutputLayout::EndToEnd | OutputLayout::RtDetr, [_, _, r]) => *r == -1 || *r == rows,
            _ => false,
        };
        if !fits {
            let c = classes as i64;
            let hint = match &output[..] {
                [_, r, _] if *r == 5 + c => {
                    " (one row more than 4 + classes: an oriented-box model gives that; `output_layout = \"oriented\"`)"
                }
                [_, _, 6] => {
                    " (6 values a detection: an end-to-end model, `output_layout = \"end-to-end\"`, or an RT-DETR one, `output_layout = \"rt-detr\"`)"
                }
                [_, r, _] if *r > 5 + c => " (more rows than classes: a pose or segmentation model gives more)",
                _ => "",
            };
            return Err(refuse(format!(
                "its output is {output:?}; flight decodes {} here, with {classes} classes{hint}",
                io.layout.describe()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ultralytics(pairs: &[(&str, &str)]) -> Result<Option<ExportMetadata>, String> {
        let mut map: BTreeMap<&str, &str> = pairs.iter().copied().collect();
        map.insert("author", "Ultralytics");
        ExportMetadata::read(|k| map.get(k).map(|v| (*v).to_owned()))
    }

    #[test]
    fn an_ultralytics_export_states_its_task_size_classes_and_layout() {
        let meta = ultralytics(&[
            ("task", "detect"),
            ("imgsz", "[640, 640]"),
            ("names", r#"{0: 'person', 1: "it's", 2: 'a, b'}"#),
            ("channels", "4"),
            ("args", "{'batch': 1, 'nms': True, 'dynamic': False}"),
        ])
        .expect("readable")
        .expect("an Ultralytics export");
        assert_eq!(meta.imgsz, Some(vec![640, 640]));
        assert_eq!(meta.names, Some(vec!["person".to_owned(), "it's".to_owned(), "a, b".to_owned()]));
        assert_eq!(
            (meta.channels, meta.layout, meta.task.as_deref()),
            (Some(4), OutputLayout::EndToEnd, Some("detect"))
        );
        let layout = |pairs: &[(&str, &str)]| ultralytics(pairs).expect("readable").expect("Ultralytics").layout;
        assert_eq!(layout(&[("task", "obb")]), OutputLayout::Oriented);
        assert_eq!(layout(&[("task", "detect"), ("description", "Ultralytics rtdetr-l model")]), OutputLayout::RtDetr);
        assert_eq!(layout(&[("task", "detect"), ("head", "RTDETRDecoder")]), OutputLayout::RtDetr);
        // YOLO26 exported as 8.4.190 does by default (`nms` unset): candidates; with `nms=False`: end to end
        assert_eq!(layout(&[("end2end", "False"), ("args", "{'nms': None}")]), OutputLayout::Candidates);
        assert_eq!(layout(&[("end2end", "True"), ("args", "{'nms': False}")]), OutputLayout::EndToEnd);
        assert_eq!(layout(&[("task", "detect"), ("end2end", "True")]), OutputLayout::EndToEnd);
        assert_eq!(layout(&[("task", "detect")]), OutputLayout::Candidates);
        assert_eq!(ExportMetadata::read(|_| None), Ok(None), "another exporter's file");
        assert!(ultralytics(&[("imgsz", "big")]).is_err());
        assert!(ultralytics(&[("names", "{1: 'skips zero'}")]).is_err());
    }

    #[test]
    fn a_centred_letterbox_places_a_tile_as_ultralytics_does() {
        // 400 x 300 into 640: scale 1.6, 640 x 480, 80 rows of padding above and below
        let centre = Preprocess::ULTRALYTICS;
        let p = Placement::of(400, 300, 640, &centre);
        assert_eq!((p.scale, p.offset, p.extent, p.input), ((1.6, 1.6), (0.0, 80.0), (640, 480), (640, 640)));
        assert_eq!(p.to_tile([0.0, 80.0, 640.0, 560.0]), [0.0, 0.0, 400.0, 300.0]);
        let corner = Placement::of(400, 300, 640, &Preprocess { letterbox: Letterbox::Corner, ..centre });
        assert_eq!(corner.offset, (0.0, 0.0));
        // an odd pixel of padding goes below
        assert_eq!(Placement::of(10, 7, 10, &centre).offset, (0.0, 1.0));
        // Python's rounding of the resized side, 266.5 to 266, and each axis mapped back by its own
        let rounded = Placement::of(1280, 533, 640, &centre);
        assert_eq!((rounded.extent, rounded.scale), ((640, 266), (0.5, 266.0 / 533.0)));
        // the padding trimmed to a multiple of the stride: 640 x 300 needs 320 rows, 10 above
        let trimmed = Placement::of(640, 300, 640, &Preprocess { stride: Some(32), ..centre });
        assert_eq!((trimmed.input, trimmed.offset, trimmed.scale), ((640, 320), (0.0, 10.0), (1.0, 1.0)));
    }

    /// A model whose manifest entry has `keys` besides the ones every entry needs.
    fn model(keys: &str) -> VerifiedModel {
        #[derive(serde::Deserialize)]
        struct Manifest {
            models: Vec<crate::models::ModelEntry>,
        }
        let text = format!(
            "[[models]]\nname = \"m\"\nfile = \"m.onnx\"\n{keys}\nmin_score = 0.5\nmax_iou = 0.5\ncard = \"m.md\"\n"
        );
        let manifest = kestrel_mission::MissionFile::from_text("models.toml", text);
        let entry = manifest.parse_document::<Manifest>().expect("manifest").models.remove(0);
        VerifiedModel { entry, path: "m.onnx".into(), manifest, index: 0 }
    }

    fn shapes(ty: &str, input: &[i64], output: &[i64]) -> SessionShapes {
        SessionShapes { input: Some((ty.to_owned(), input.to_vec())), output: Some(output.to_vec()) }
    }

    #[test]
    fn a_session_flight_cannot_feed_or_decode_is_refused_at_load_naming_why() {
        let m = model("classes = [\"a\", \"b\"]\ninput_size = 64\ninput_channels = 3");
        let ok = resolve(&m, None, &shapes("Float32", &[-1, 3, 64, 64], &[-1, 6, 84])).expect("runs");
        assert_eq!((ok.preprocess, ok.layout), (Preprocess::FLIGHT, OutputLayout::Candidates));
        let refusal = |input: &[i64], output: &[i64], ty: &str| {
            resolve(&m, None, &shapes(ty, input, output)).expect_err("refused").to_string()
        };
        let e = refusal(&[4, 3, 64, 64], &[4, 6, 84], "Float32");
        assert!(e.contains("fixed batch of 4") && e.contains("dynamic=True"), "{e}");
        let e = refusal(&[1, 3, 64, 64], &[1, 6, 84], "Float16");
        assert!(e.contains("Float16") && e.contains("half=True"), "{e}");
        let e = refusal(&[1, 4, 64, 64], &[1, 6, 84], "Float32");
        assert!(e.contains("models[0].input_channels") && e.contains("models.toml:"), "{e}");
        let e = refusal(&[1, 3, 384, 640], &[1, 6, 84], "Float32");
        assert!(e.contains("models[0].input_size") && e.contains("not 64 x 64"), "{e}");
        // an oriented-box output (one more row: the angle) with the detector's class count
        let e = refusal(&[1, 3, 64, 64], &[1, 7, 84], "Float32");
        assert!(e.contains("an oriented-box model") && e.contains("output_layout"), "{e}");
        let e = refusal(&[1, 3, 64, 64], &[1, 300, 6], "Float32");
        assert!(e.contains("an end-to-end model") && e.contains("an RT-DETR one"), "{e}");
        let oriented =
            model("classes = [\"a\", \"b\"]\ninput_size = 64\ninput_channels = 3\noutput_layout = \"oriented\"");
        let io = resolve(&oriented, None, &shapes("Float32", &[1, 3, 64, 64], &[1, 7, 84])).expect("oriented");
        assert_eq!(io.layout, OutputLayout::Oriented);
        let e = refusal(&[1, 3, 64, 64], &[1, 300, 7], "Float32");
        assert!(e.contains("[1, 300, 7]") && e.contains("with 2 classes"), "{e}");
    }

    #[test]
    fn tasks_flight_does_not_run_say_which_export_gives_one_it_does() {
        assert_eq!(task_refusal("detect"), None);
        assert_eq!(task_refusal("obb"), None);
        for task in ["segment", "pose", "classify"] {
            let message = task_refusal(task).expect("refused");
            assert!(message.contains(task) && message.contains("export a detection model"), "{message}");
        }
    }

    #[test]
    fn an_ultralytics_export_is_fed_as_ultralytics_feeds_it() {
        let export = |pairs: &[(&str, &str)]| ultralytics(pairs).expect("readable").expect("Ultralytics");
        let detector = export(&[("imgsz", "[64, 64]"), ("names", "{0: 'a'}"), ("channels", "3"), ("stride", "32")]);
        let m = model("");
        let io = |metadata: &ExportMetadata, input: &[i64], output: &[i64]| {
            resolve(&m, Some(metadata), &shapes("Float32", input, output)).expect("runs").preprocess
        };
        // a fixed input: the square; a free height and width: the padding trimmed to the stride
        assert_eq!(io(&detector, &[1, 3, 64, 64], &[1, 5, 84]), Preprocess::ULTRALYTICS);
        let free = io(&detector, &[-1, 3, -1, -1], &[-1, 5, -1]);
        assert_eq!(free, Preprocess { stride: Some(32), ..Preprocess::ULTRALYTICS });
        // RT-DETR: stretched to the square, never trimmed
        let rt_detr = ExportMetadata { layout: OutputLayout::RtDetr, ..detector.clone() };
        let stretched = io(&rt_detr, &[-1, 3, -1, -1], &[-1, 300, 6]);
        assert_eq!((stretched.letterbox, stretched.stride), (Letterbox::Stretch, None));
        // the manifest's word wins; a stride for a fixed input is refused, naming the key
        let square = model("letterbox_stride = 0");
        let preprocess = resolve(&square, Some(&detector), &shapes("Float32", &[-1, 3, -1, -1], &[-1, 5, -1]));
        assert_eq!(preprocess.expect("runs").preprocess.stride, None);
        let fixed = model("letterbox_stride = 32");
        let e = resolve(&fixed, Some(&detector), &shapes("Float32", &[1, 3, 64, 64], &[1, 5, 84])).expect_err("fixed");
        assert!(
            e.to_string().contains("models[0].letterbox_stride") && e.to_string().contains("fixed height and width"),
            "{e}"
        );
    }
}
