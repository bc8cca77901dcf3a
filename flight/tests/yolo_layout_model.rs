//! A user's own detector in the YOLOv8/YOLO11 layout: the test builds a small ONNX graph in that
//! layout (ONNX Runtime's model editor), and the tiling, decoding, NMS and georeferencing run it
//! over a frame. A graph with another layout is refused with what was expected.

use std::path::PathBuf;

use kestrel_flight::detect::{Batching, DetectError, Detector, DetectorSpec};
use kestrel_flight::georef::GeoTransform;
use kestrel_flight::imagery::{Raster, Samples};
use kestrel_flight::model_io::{OutputLayout, Preprocess};
use kestrel_flight::onnx_runtime::OnnxRuntime;
use ort::editor::{Graph, Model, Node, ONNX_DOMAIN, Opset};
use ort::memory::Allocator;
use ort::operator::Attribute;
use ort::value::{Outlet, Shape, SymbolicDimensions, Tensor, TensorElementType, ValueType};

const SIZE: i64 = 64;
const CELL: i64 = 8;
const GRID: i64 = SIZE / CELL;

fn outlet(name: &str, shape: &[i64]) -> Outlet {
    Outlet::new(
        name,
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            shape: Shape::new(shape.iter().copied()),
            dimension_symbols: SymbolicDimensions::empty(shape.len()),
        },
    )
}

fn constant<T: ort::value::PrimitiveTensorElementType + Copy + std::fmt::Debug>(
    shape: &[i64],
    values: &[T],
) -> Tensor<T> {
    let mut tensor = Tensor::<T>::new(&Allocator::default(), shape.to_vec()).expect("tensor");
    tensor.extract_tensor_mut().1.copy_from_slice(values);
    tensor
}

/// How the bright-blob graph gives its cells.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// `[1, 5, 64]`: centre, size and score per cell (YOLOv8/YOLO11).
    Yolo,
    /// The same numbers as `[1, 5, 8, 8]`: a layout no detector export gives.
    Grid,
    /// `[1, 64, 6]`: x1, y1, x2, y2, score and class per cell (end to end).
    EndToEnd,
    /// `[1, 64, 6]`: centre and size as fractions of the input's side, score and class (RT-DETR).
    RtDetr,
    /// `[1, 6, 64]`: centre, size, score and a rotation of 0.3 rad per cell, each box 12 x 4
    /// (oriented boxes).
    Oriented,
}

/// The oriented boxes' rotation, radians, and size.
const ANGLE: f32 = 0.3;
const ORIENTED_SIZE: [f32; 2] = [12.0, 4.0];

/// A one-class "bright blob" detector: every 8x8 cell of the 64x64 input is a candidate box whose
/// score rises steeply with the cell's mean brightness, in `layout`.
fn bright_blob_detector(layout: Layout) -> ort::session::Session {
    let runtime = OnnxRuntime::get().expect("ONNX Runtime");
    let mut graph = Graph::new().expect("graph");
    graph.set_inputs([outlet("images", &[1, 3, SIZE, SIZE])]).expect("inputs");
    let cells = GRID * GRID;
    let (output_shape, reshape): (Vec<i64>, Vec<i64>) = match layout {
        Layout::Yolo => (vec![1, 5, cells], vec![1, 5, cells]),
        Layout::Grid => (vec![1, 5, GRID, GRID], vec![1, 5, GRID, GRID]),
        Layout::EndToEnd => (vec![1, cells, 6], vec![1, 6, cells]),
        Layout::RtDetr => (vec![1, cells, 6], vec![1, 6, cells]),
        Layout::Oriented => (vec![1, 6, cells], vec![1, 6, cells]),
    };
    graph.set_outputs([outlet("output0", &output_shape)]).expect("outputs");
    let attrs = |pairs: Vec<(&str, Vec<i64>)>| {
        pairs.into_iter().map(|(n, v)| Attribute::new(n, v).expect("attribute")).collect::<Vec<_>>()
    };
    graph
        .add_node(
            Node::new(
                "AveragePool",
                ONNX_DOMAIN,
                "pool",
                ["images"],
                ["cells"],
                attrs(vec![("kernel_shape", vec![CELL, CELL]), ("strides", vec![CELL, CELL])]),
            )
            .expect("node"),
        )
        .expect("pool");
    graph
        .add_node(Node::new("ReduceMean", ONNX_DOMAIN, "mean", ["cells", "axes"], ["brightness"], []).expect("node"))
        .expect("mean");
    graph
        .add_node(Node::new("Sub", ONNX_DOMAIN, "sub", ["brightness", "half"], ["centred"], []).expect("node"))
        .expect("sub");
    graph
        .add_node(Node::new("Mul", ONNX_DOMAIN, "mul", ["centred", "gain"], ["logit"], []).expect("node"))
        .expect("mul");
    graph
        .add_node(Node::new("Sigmoid", ONNX_DOMAIN, "sigmoid", ["logit"], ["score"], []).expect("node"))
        .expect("sigmoid");
    let concat_axis = Attribute::new("axis", 1i64).expect("axis");
    let transposed = matches!(layout, Layout::EndToEnd | Layout::RtDetr);
    let parts: &[&str] = match layout {
        Layout::EndToEnd | Layout::RtDetr => &["boxes", "score", "class"],
        Layout::Oriented => &["boxes", "score", "angle"],
        _ => &["boxes", "score"],
    };
    graph
        .add_node(Node::new("Concat", ONNX_DOMAIN, "concat", parts, ["grid"], [concat_axis]).expect("node"))
        .expect("concat");
    let reshaped = if transposed { "rows" } else { "output0" };
    graph
        .add_node(Node::new("Reshape", ONNX_DOMAIN, "reshape", ["grid", "shape"], [reshaped], []).expect("node"))
        .expect("reshape");
    if transposed {
        let perm = Attribute::new("perm", vec![0i64, 2, 1]).expect("perm");
        graph
            .add_node(Node::new("Transpose", ONNX_DOMAIN, "transpose", ["rows"], ["output0"], [perm]).expect("node"))
            .expect("transpose");
    }
    if matches!(layout, Layout::EndToEnd | Layout::RtDetr) {
        graph
            .add_initializer("class", constant(&[1, 1, GRID, GRID], &vec![0f32; cells as usize]), false)
            .expect("class");
    }
    if layout == Layout::Oriented {
        graph
            .add_initializer("angle", constant(&[1, 1, GRID, GRID], &vec![ANGLE; cells as usize]), false)
            .expect("angle");
    }

    let mut boxes = vec![0f32; (4 * GRID * GRID) as usize];
    for i in 0..GRID {
        for j in 0..GRID {
            let at = |row: i64| (row * GRID * GRID + i * GRID + j) as usize;
            let (cx, cy, side) = (((j as f32) + 0.5) * CELL as f32, ((i as f32) + 0.5) * CELL as f32, CELL as f32);
            let values = match layout {
                Layout::EndToEnd => [cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0],
                Layout::RtDetr => [cx, cy, side, side].map(|v| v / SIZE as f32),
                Layout::Oriented => [cx, cy, ORIENTED_SIZE[0], ORIENTED_SIZE[1]],
                _ => [cx, cy, side, side],
            };
            for (row, value) in values.into_iter().enumerate() {
                boxes[at(row as i64)] = value;
            }
        }
    }
    graph.add_initializer("boxes", constant(&[1, 4, GRID, GRID], &boxes), false).expect("boxes");
    graph.add_initializer("axes", constant(&[1], &[1i64]), false).expect("axes");
    graph.add_initializer("half", constant(&[1], &[0.5f32]), false).expect("half");
    graph.add_initializer("gain", constant(&[1], &[20f32]), false).expect("gain");
    graph.add_initializer("shape", constant(&[reshape.len() as i64], &reshape), false).expect("shape");

    let mut model = Model::new([Opset::new(ONNX_DOMAIN, 22).expect("opset")]).expect("model");
    model.set_graph(graph).expect("graph");
    model.into_session(&runtime.cpu_session_builder(1).expect("builder")).expect("session")
}

fn spec() -> DetectorSpec {
    DetectorSpec {
        name: "bright-blobs".into(),
        classes: vec!["blob".into()],
        input_size: SIZE as u32,
        bands: vec![0, 1, 2],
        min_score: 0.5,
        max_iou: 0.5,
        tile_overlap: 16,
        preprocess: Preprocess::FLIGHT,
        layout: OutputLayout::Candidates,
    }
}

/// A dark 3-band frame with one bright 16x16 square at (72, 40).
fn frame() -> Raster {
    let (width, height) = (200u32, 120u32);
    let mut samples = vec![20u8; (width * height * 3) as usize];
    for y in 40..56 {
        for x in 72..88 {
            for b in 0..3 {
                samples[((y * width + x) * 3 + b) as usize] = 250;
            }
        }
    }
    Raster { width, height, bands: 3, samples: Samples::U8(samples) }
}

#[test]
fn a_yolo_layout_graph_finds_the_bright_square_once_and_places_it() {
    finds_the_bright_square_once(Detector::new(bright_blob_detector(Layout::Yolo), spec()));
}

#[test]
fn an_end_to_end_graph_finds_the_bright_square_once_and_places_it() {
    let spec = DetectorSpec { layout: OutputLayout::EndToEnd, ..spec() };
    let mut detector = Detector::new(bright_blob_detector(Layout::EndToEnd), spec);
    detector.check_output().expect("an end-to-end output, scores within 0..1");
    finds_the_bright_square_once(detector);
}

#[test]
fn an_rt_detr_graph_finds_the_bright_square_once_and_places_it() {
    let spec = DetectorSpec { layout: OutputLayout::RtDetr, ..spec() };
    let mut detector = Detector::new(bright_blob_detector(Layout::RtDetr), spec);
    detector.check_output().expect("an RT-DETR output, scores within 0..1");
    finds_the_bright_square_once(detector);
}

#[test]
fn an_oriented_box_graph_finds_the_bright_square_with_its_rotated_boxes_on_the_earth() {
    let spec = DetectorSpec { layout: OutputLayout::Oriented, ..spec() };
    let mut detector = Detector::new(bright_blob_detector(Layout::Oriented), spec);
    detector.check_output().expect("an oriented output, scores within 0..1");
    let neon = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/aerial/OSBS_029.tif");
    let georef = GeoTransform::from_tiff(&neon).expect("tags").expect("georeferenced");
    let found = detector.detect(&frame(), &[(0.0, 255.0); 3], Some(&georef)).expect("detect");
    assert!(!found.is_empty());
    for d in &found {
        let rotated = d.rotated.as_ref().expect("an oriented box");
        assert_eq!(rotated.box_.size, ORIENTED_SIZE);
        assert!((rotated.box_.angle - ANGLE).abs() < 1e-6);
        // the axis-aligned box is the rotated one's envelope, within the tile
        let envelope = rotated.box_.envelope();
        assert!(d.pixel_box.iter().zip(envelope).all(|(a, b)| (a - b).abs() < 1e-3), "{d:?}");
        let outline = rotated.outline.as_ref().expect("georeferenced corners");
        assert_eq!(outline.len(), 4);
        let (lat, lon) = d.lat_lon.expect("georeferenced");
        for (corner_lat, corner_lon) in outline {
            // 0.1 m pixels: corners within a few metres of the centre
            assert!((corner_lat - lat).abs() < 1e-4 && (corner_lon - lon).abs() < 1e-4);
        }
    }
    let centres: Vec<[f32; 2]> = found.iter().map(|d| d.rotated.as_ref().expect("oriented").box_.centre).collect();
    for (i, a) in centres.iter().enumerate() {
        assert!(centres[i + 1..].iter().all(|b| a != b), "a box seen by two tiles is kept twice: {a:?}");
        assert!((64.0..=96.0).contains(&a[0]) && (32.0..=64.0).contains(&a[1]), "off the square: {a:?}");
    }
}

#[test]
fn an_output_of_another_layout_than_the_manifests_is_refused_when_the_model_loads() {
    let mut detector = Detector::new(bright_blob_detector(Layout::EndToEnd), spec());
    let message = detector.check_output().expect_err("an end-to-end output read as candidates").to_string();
    assert!(message.contains("[1, 64, 6]") && message.contains("[batch, 4 + classes, candidates]"), "{message}");
    let spec = DetectorSpec { layout: OutputLayout::EndToEnd, ..spec() };
    let mut detector = Detector::new(bright_blob_detector(Layout::Yolo), spec);
    let message = detector.check_output().expect_err("candidates read as end to end").to_string();
    assert!(message.contains("[1, 5, 64]") && message.contains("[batch, detections, 6]"), "{message}");
}

fn finds_the_bright_square_once(mut detector: Detector) {
    let neon = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/aerial/OSBS_029.tif");
    let georef = GeoTransform::from_tiff(&neon).expect("tags").expect("georeferenced");
    let found = detector.detect(&frame(), &[(0.0, 255.0); 3], Some(&georef)).expect("detect");
    assert!(!found.is_empty(), "the square is found");
    for d in &found {
        let [x0, y0, x1, y1] = d.pixel_box;
        assert!(x0 >= 64.0 && x1 <= 96.0 && y0 >= 32.0 && y1 <= 64.0, "a detection off the square: {d:?}");
        assert_eq!(d.class_name, "blob");
        let (lat, lon) = d.lat_lon.expect("georeferenced");
        assert!((29.6..29.8).contains(&lat) && (-82.1..-81.9).contains(&lon), "{lat}, {lon}");
    }
    // tiles overlap: the same cell seen twice is one detection
    for (i, a) in found.iter().enumerate() {
        for b in &found[i + 1..] {
            assert!(kestrel_flight::detect::iou(&a.pixel_box, &b.pixel_box) <= 0.5, "{a:?} and {b:?} not merged");
        }
    }
    let covered: f32 =
        found.iter().map(|d| (d.pixel_box[2] - d.pixel_box[0]) * (d.pixel_box[3] - d.pixel_box[1])).sum();
    // overlapping tiles see the square on differently aligned cell grids, so a few boxes remain,
    // each on the square; none is repeated
    assert!((64.0..=4.0 * 256.0).contains(&covered), "boxes cover {covered} px² of a 256 px² square");
}

#[test]
fn a_graph_with_another_layout_is_refused_with_what_was_expected() {
    let mut detector = Detector::new(bright_blob_detector(Layout::Grid), spec());
    let error = detector.detect(&frame(), &[(0.0, 255.0); 3], None).expect_err("wrong layout");
    assert!(matches!(error, DetectError::Layout { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("bright-blobs")
            && message.contains("[1, 5, 8, 8]")
            && message.contains("[batch, 4 + classes, candidates]"),
        "{message}"
    );
}

#[test]
fn a_graph_with_its_first_axis_fixed_at_one_runs_one_tile_at_a_time() {
    let mut detector = Detector::new(bright_blob_detector(Layout::Yolo), spec());
    assert_eq!(detector.allow_batches(4).expect("check"), Batching::FixedInput);
    assert_eq!(detector.max_batch(), 1);
    assert!(!detector.detect(&frame(), &[(0.0, 255.0); 3], None).expect("detect").is_empty());
}

/// A graph with a free batch axis whose output for a tile depends on the other tiles of its batch
/// (it adds the batch's mean to each): `output0 = images + mean over the batch`.
fn batch_mixing_graph() -> ort::session::Session {
    let runtime = OnnxRuntime::get().expect("ONNX Runtime");
    let mut graph = Graph::new().expect("graph");
    graph.set_inputs([outlet("images", &[-1, 3, SIZE, SIZE])]).expect("inputs");
    graph.set_outputs([outlet("output0", &[-1, 3, SIZE, SIZE])]).expect("outputs");
    graph
        .add_node(Node::new("ReduceMean", ONNX_DOMAIN, "mean", ["images", "axes"], ["mean"], []).expect("node"))
        .expect("mean");
    graph
        .add_node(Node::new("Add", ONNX_DOMAIN, "add", ["images", "mean"], ["output0"], []).expect("node"))
        .expect("add");
    graph.add_initializer("axes", constant(&[1], &[0i64]), false).expect("axes");
    let mut model = Model::new([Opset::new(ONNX_DOMAIN, 22).expect("opset")]).expect("model");
    model.set_graph(graph).expect("graph");
    model.into_session(&runtime.cpu_session_builder(1).expect("builder")).expect("session")
}

#[test]
fn a_graph_whose_tiles_depend_on_their_batch_runs_one_tile_at_a_time() {
    let mut detector = Detector::new(batch_mixing_graph(), spec());
    match detector.allow_batches(4).expect("check") {
        Batching::Differs { tiles, by } => assert!(tiles == 2 && by > 0.0, "{tiles} tiles, by {by}"),
        other => panic!("batches of this graph are not single tiles, yet: {other:?}"),
    }
    assert_eq!(detector.max_batch(), 1);
}

/// A graph with a free height and width that detects one box from its input's own size: x1, y1,
/// x2, y2 = a quarter and a half of (width, height), score 0.9, class 0 (end to end), so where
/// the box lands in the frame tells which input flight fed it.
fn input_size_reporting_graph() -> ort::session::Session {
    let runtime = OnnxRuntime::get().expect("ONNX Runtime");
    let mut graph = Graph::new().expect("graph");
    graph.set_inputs([outlet("images", &[-1, 3, -1, -1])]).expect("inputs");
    graph.set_outputs([outlet("output0", &[1, 1, 6])]).expect("outputs");
    // ONNX's TensorProto.FLOAT
    let cast = Attribute::new("to", 1i64).expect("to");
    let axis = || Attribute::new("axis", 0i64).expect("axis");
    let nodes = [
        Node::new("Shape", ONNX_DOMAIN, "shape", ["images"], ["dims"], []),
        Node::new("Slice", ONNX_DOMAIN, "slice", ["dims", "from", "to"], ["height_width"], []),
        Node::new("Gather", ONNX_DOMAIN, "swap", ["height_width", "swapped"], ["width_height"], [axis()]),
        Node::new("Cast", ONNX_DOMAIN, "cast", ["width_height"], ["sides"], [cast]),
        Node::new("Concat", ONNX_DOMAIN, "twice", ["sides", "sides"], ["sides_twice"], [axis()]),
        Node::new("Mul", ONNX_DOMAIN, "corners", ["sides_twice", "fractions"], ["corners"], []),
        Node::new("Concat", ONNX_DOMAIN, "row", ["corners", "score_class"], ["row"], [axis()]),
        Node::new("Reshape", ONNX_DOMAIN, "reshape", ["row", "shape"], ["output0"], []),
    ];
    for node in nodes {
        graph.add_node(node.expect("node")).expect("add");
    }
    graph.add_initializer("from", constant(&[1], &[2i64]), false).expect("from");
    graph.add_initializer("to", constant(&[1], &[4i64]), false).expect("to");
    graph.add_initializer("swapped", constant(&[2], &[1i64, 0]), false).expect("swapped");
    graph.add_initializer("fractions", constant(&[4], &[0.25f32, 0.25, 0.5, 0.5]), false).expect("fractions");
    graph.add_initializer("score_class", constant(&[2], &[0.9f32, 0.0]), false).expect("score");
    graph.add_initializer("shape", constant(&[3], &[1i64, 1, 6]), false).expect("shape");
    let mut model = Model::new([Opset::new(ONNX_DOMAIN, 22).expect("opset")]).expect("model");
    model.set_graph(graph).expect("graph");
    model.into_session(&runtime.cpu_session_builder(1).expect("builder")).expect("session")
}

#[test]
fn a_model_with_a_free_height_and_width_gets_the_smallest_input_its_stride_allows() {
    // 300 x 250, into 640: resized to 640 x 533, padded to 544 rows (5 above) with a stride of
    // 32, to 640 (53 above) without
    let frame = Raster { width: 300, height: 250, bands: 3, samples: Samples::U8(vec![90; 300 * 250 * 3]) };
    let found = |preprocess: Preprocess| {
        let spec = DetectorSpec { input_size: 640, layout: OutputLayout::EndToEnd, preprocess, ..spec() };
        let mut detector = Detector::new(input_size_reporting_graph(), spec);
        let found = detector.detect(&frame, &[(0.0, 255.0); 3], None).expect("detect");
        assert_eq!(found.len(), 1);
        found[0].pixel_box
    };
    // mapped back along each axis by the scale its resize had: 640 / 300 and 533 / 250
    let (gain_x, gain_y) = (640.0 / 300.0, 533.0 / 250.0);
    let expected = |rows: f32, top: f32| {
        [160.0 / gain_x, (rows / 4.0 - top) / gain_y, 320.0 / gain_x, (rows / 2.0 - top) / gain_y]
    };
    let close = |a: [f32; 4], b: [f32; 4]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-3);
    let trimmed = found(Preprocess { stride: Some(32), ..Preprocess::ULTRALYTICS });
    assert!(close(trimmed, expected(544.0, 5.0)), "{trimmed:?}");
    let square = found(Preprocess::ULTRALYTICS);
    assert!(close(square, expected(640.0, 53.0)), "{square:?}");
}
