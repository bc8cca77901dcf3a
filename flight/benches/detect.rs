//! Detection speed on the CPU, in one run: the raw ONNX Runtime session on pre-made tensors, in
//! batches of the mission's `max_batch` tiles (the limit for this model on this machine), against
//! the whole `flight-tools detect` path, from the band files on disk to georeferenced detections (read
//! and scale, the next frame while this one runs; tile, letterbox, infer in the same batches,
//! decode, NMS, merge, lat/lon), and from a decoded frame (what the flight pipeline runs); and the
//! raw session one tile per run, which shows what the batches gain. All four use the detector's
//! one session (a second session's idle threads would slow the first), without the cloud screen;
//! its cost per tile is measured after them, on its own, and last the session on weights in
//! flight's memory (what flight runs) against one on ONNX Runtime's own copy; and what resizing a
//! tile costs, nearest neighbour against bilinear.
//! `cargo bench -p kestrel-flight [--features cuda] --bench detect [-- --rounds N] [--max-batch N] [--also NAME]`
//! (`--also`: another detector of the manifest, e.g. the one being replaced, on the same scenes)
//! (`--max-batch` in place of the mission's `flight.inference.max_batch`; a GPU gains from larger
//! batches). Figures go in docs/benchmarks.md.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kestrel_flight::config::{ExecutionProviderKind, LoadedFlightMission};
use kestrel_flight::mission_detector::{MissionDetector, manifest_model};
use kestrel_flight::onnx_runtime::OnnxRuntime;
use ndarray::Array4;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The value of `--name N` in `args`, if given; a value that is not a whole number in `range`
/// stops the bench with a message.
fn flag(args: &[String], name: &str, range: std::ops::RangeInclusive<usize>) -> Option<usize> {
    let at = args.iter().position(|a| a == name)?;
    let value = args.get(at + 1).and_then(|v| v.parse().ok()).filter(|v| range.contains(v));
    if value.is_none() {
        eprintln!("detect bench: {name} takes a whole number from {} to {}", range.start(), range.end());
        std::process::exit(2);
    }
    value
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds = flag(&args, "--rounds", 1..=1000).unwrap_or(5);
    let max_batch = flag(&args, "--max-batch", 1..=kestrel_flight::config::MAX_BATCH);
    // provider fallbacks and the batch check at load are logged: the figures depend on them
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    // the cloud screen is off in the reference mission (its scenes are not calibrated): its cost is
    // measured with it on, the detector's without it
    let mut with_screen = LoadedFlightMission::load(&root().join("mission.toml")).expect("the reference mission");
    if let Some(tiles) = max_batch {
        with_screen.config.flight.inference.max_batch = toml::Spanned::new(0..0, tiles);
    }
    with_screen.config.flight.cloud_screen.iter_mut().for_each(|screen| screen.enabled = true);
    let mut mission = with_screen.clone();
    mission.config.flight.cloud_screen = None;
    let scenes: Vec<PathBuf> = ["sen2ships/casablanca", "sen2ships/busan", "sen2ships-more/genoa"]
        .iter()
        .map(|s| kestrel_flight::reference_data::expect("satellite").join(s))
        .collect();
    measure(&mission, None, &scenes, rounds);
    // another detector of the manifest on the same scenes, side by side (a model being replaced,
    // listed in a manifest of its own for the run)
    if let Some(at) = args.iter().position(|a| a == "--also") {
        let Some(name) = args.get(at + 1) else {
            eprintln!("detect bench: --also takes a model name of the manifest");
            std::process::exit(2);
        };
        measure(&mission, Some(name), &scenes, rounds);
    }
    // a heavier model (256 px tiles, 8-bit RGB files): the path's cost per frame weighs less
    let aerial = ["aerial/OSBS_029.tif", "aerial/2019_YELL_2_541000_4977000_image_crop.png"];
    measure(&mission, Some("trees-neon"), &aerial.map(|f| root().join("testdata").join(f)), rounds);
    cloud_screen_cost(&with_screen, &scenes, rounds);
    resident_weights_cost(&mission, &scenes, rounds);
    resize_cost(&mission, rounds);
}

/// The three measurements for model `name` (the mission's detector when `None`) on `scenes`.
fn measure(mission: &LoadedFlightMission, name: Option<&str>, scenes: &[PathBuf], rounds: usize) {
    let mut detector = MissionDetector::load(mission, name).expect("the detector");

    // the peer: the same session fed the scenes' tiles, made before the clock starts
    let tensors = tile_tensors(&mut detector, scenes);
    let tiles = tensors.len();
    // the raw peer runs the mission's batches even where the batch check refuses them to the path
    // (batches that differ from single tiles would break exactly-once): it is the provider's limit
    let batch = *mission.config.flight.inference.max_batch.get_ref();
    let allowed = detector.detector().max_batch();
    // a short last batch is filled with blank tiles where the path fills its own (on a GPU)
    let blank = Array4::<f32>::zeros(tensors[0].raw_dim());
    let fill = detector.detector().is_accelerated();
    let batches: Vec<Array4<f32>> = tensors
        .chunks(batch)
        .map(|group| {
            let blanks = if fill { batch - group.len() } else { 0 };
            let views: Vec<_> = group.iter().chain(std::iter::repeat_n(&blank, blanks)).map(|t| t.view()).collect();
            ndarray::concatenate(ndarray::Axis(0), &views).expect("a batch")
        })
        .collect();
    let spec = detector.spec();
    let inference = &mission.config.flight.inference;
    println!(
        "model {} ({}x{}) on {} (of {:?}), {} intra-op threads, {batch} tiles per run raw, {allowed} on the path; {} scenes, {tiles} tiles per round, {rounds} rounds",
        spec.name,
        spec.input_size,
        spec.input_size,
        detector.provider().name(),
        inference.execution_providers.get_ref().iter().map(|k| k.name()).collect::<Vec<_>>(),
        inference.intra_threads,
        scenes.len()
    );

    // the flight pipeline reads each frame once, then checkpoints it tile by tile: the path from a
    // decoded frame is what it runs per tile
    let frames: Vec<_> = scenes
        .iter()
        .map(|scene| {
            let (raster, georef) = detector.read_frame(scene).expect("scene");
            let ranges = detector.scaling(&raster);
            (raster, ranges, georef)
        })
        .collect();
    let (mut raw, mut path, mut decoded, mut single) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut detections = 0;
    for round in 0..=rounds {
        // the order turns each round: this machine's speed drifts, and no measurement should
        // always come first
        let mut seconds = [0.0; 4];
        for turn in 0..4 {
            let which = (round + turn) % 4;
            let started = Instant::now();
            match which {
                0 => {
                    for tensor in &batches {
                        std::hint::black_box(detector.detector().run(tensor.clone()).expect("run"));
                    }
                }
                3 => {
                    for tensor in &tensors {
                        std::hint::black_box(detector.detector().run(tensor.clone()).expect("run"));
                    }
                }
                1 => {
                    detections = 0;
                    detector
                        .detect_each(scenes, |_, found| {
                            detections += found?.len();
                            Ok::<_, kestrel_flight::mission_detector::MissionDetectorError>(())
                        })
                        .expect("detect");
                }
                _ => {
                    // the pipeline runs a frame's tiles in the same batches, one checkpoint each
                    for (raster, ranges, georef) in &frames {
                        std::hint::black_box(
                            detector.detector().detect(raster, ranges, georef.as_ref()).expect("detect"),
                        );
                    }
                }
            }
            seconds[which] = started.elapsed().as_secs_f64();
        }
        // the first round warms caches and the arena: not counted
        if round > 0 {
            raw.push(tiles as f64 / seconds[0]);
            path.push(tiles as f64 / seconds[1]);
            decoded.push(tiles as f64 / seconds[2]);
            single.push(tiles as f64 / seconds[3]);
        }
    }
    let (raw, path, decoded, single) = (median(raw), median(path), median(decoded), median(single));
    println!("raw session on pre-made tensors:  {raw:>8.1} tiles/s  {:>6.2} ms/tile", 1000.0 / raw);
    println!(
        "raw session, one tile per run:    {single:>8.1} tiles/s  {:>6.2} ms/tile  ({:+.1} % with {batch} per run)",
        1000.0 / single,
        100.0 * (raw / single - 1.0)
    );
    println!(
        "whole detect path from the files: {path:>8.1} tiles/s  {:>6.2} ms/tile  {:>5.1} % of raw  ({detections} detections)",
        1000.0 / path,
        100.0 * path / raw
    );
    println!(
        "detect path from a decoded frame: {decoded:>8.1} tiles/s  {:>6.2} ms/tile  {:>5.1} % of raw",
        1000.0 / decoded,
        100.0 * decoded / raw
    );
}

/// Every tile of `scenes` as the detector's input tensor.
fn tile_tensors(detector: &mut MissionDetector, scenes: &[PathBuf]) -> Vec<Array4<f32>> {
    let mut tensors = Vec::new();
    for scene in scenes {
        let (raster, _) = detector.read_frame(scene).expect("scene");
        let ranges = detector.scaling(&raster);
        let spec = detector.spec().clone();
        for window in detector.detector().windows(&raster) {
            tensors.push(raster.tile_tensor(window, &spec.bands, &ranges, spec.input_size, &spec.preprocess).0);
        }
    }
    tensors
}

/// The weights in flight's memory (what flight runs) against ONNX Runtime's own copy (a session
/// of the model file as ONNX Runtime loads it), on the same tiles, in turn; and the time of the
/// weights' check, which flight runs once per frame.
/// What resizing costs a tile that is not at the model's size (a user's model trained at another
/// size than flight's tiles, or a frame smaller than a tile): the whole 400 x 400 NEON tile into
/// 256 and 640 px inputs, nearest neighbour against bilinear (Ultralytics' centred letterbox); and
/// the detect path's share of the raw session when each tile is resized, with either.
fn resize_cost(mission: &LoadedFlightMission, rounds: usize) {
    use kestrel_flight::model_io::{Preprocess, Resize};
    let raster = kestrel_flight::imagery::Raster::read(&root().join("testdata/aerial/OSBS_029.tif")).expect("NEON");
    let window = kestrel_flight::tile::Window { x: 0, y: 0, width: raster.width, height: raster.height };
    for size in [256, 640] {
        let per_tile = |resize| {
            let preprocess = Preprocess { resize, ..Preprocess::ULTRALYTICS };
            let reps = 20 * rounds;
            let started = Instant::now();
            for _ in 0..reps {
                std::hint::black_box(raster.tile_tensor(window, &[0, 1, 2], &[(0.0, 255.0); 3], size, &preprocess));
            }
            started.elapsed().as_secs_f64() * 1e3 / reps as f64
        };
        let (nearest, bilinear) = (per_tile(Resize::Nearest), per_tile(Resize::Bilinear));
        println!(
            "resize a {}x{} tile into {size} px: nearest {nearest:.2} ms, bilinear {bilinear:.2} ms a tile",
            raster.width, raster.height
        );
    }
    // the detect path's share of the raw session where every tile is resized: the tree model
    // (256 px) on frames of 200 x 200 (a corner of the NEON tile), one tile each
    let side = 200;
    let samples: Vec<u8> = match &raster.samples {
        kestrel_flight::imagery::Samples::U8(v) => {
            (0..side).flat_map(|y| v[y * raster.width as usize * 3..][..side * 3].iter().copied()).collect()
        }
        kestrel_flight::imagery::Samples::U16(_) => unreachable!("the NEON tile is 8-bit"),
    };
    let small = kestrel_flight::imagery::Raster {
        width: side as u32,
        height: side as u32,
        bands: 3,
        samples: kestrel_flight::imagery::Samples::U8(samples),
    };
    let mut trees = MissionDetector::load(mission, Some("trees-neon")).expect("the tree model");
    let ranges = trees.scaling(&small);
    let spec = trees.spec().clone();
    let (tensor, _) = small.tile_tensor(
        kestrel_flight::tile::Window { x: 0, y: 0, width: small.width, height: small.height },
        &spec.bands,
        &ranges,
        spec.input_size,
        &spec.preprocess,
    );
    let reps = 20 * rounds;
    let detector = trees.detector();
    let timed = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        for _ in 0..reps {
            f();
        }
        started.elapsed().as_secs_f64() * 1e3 / reps as f64
    };
    let mut figures = Vec::new();
    for resize in [Resize::Nearest, Resize::Bilinear] {
        detector.set_preprocess(Preprocess { resize, ..spec.preprocess });
        let raw = timed(&mut || drop(std::hint::black_box(detector.run(tensor.clone()).expect("raw"))));
        let path = timed(&mut || drop(std::hint::black_box(detector.detect(&small, &ranges, None).expect("detect"))));
        figures.push(format!("{resize:?}: raw {raw:.2} ms, detect {path:.2} ms a tile, {:.1} %", 100.0 * raw / path));
    }
    println!("tree model on {side}x{side} frames resized to {} px: {}", spec.input_size, figures.join("; "));
}

fn resident_weights_cost(mission: &LoadedFlightMission, scenes: &[PathBuf], rounds: usize) {
    let mut detector = MissionDetector::load(mission, None).expect("the detector");
    if detector.provider() != ExecutionProviderKind::Cpu {
        println!(
            "weights in flight's memory: not on {} (its weights are in the device's memory)",
            detector.provider().name()
        );
        return;
    }
    let tensors = tile_tensors(&mut detector, scenes);
    let model = manifest_model(mission, &mission.config.flight.detector.model).expect("the model").path;
    let threads = mission.config.flight.inference.intra_threads;
    let builder = OnnxRuntime::get().expect("ONNX Runtime").cpu_session_builder(threads).expect("a builder");
    let mut plain = builder
        .with_intra_op_spinning(false)
        .map_err(ort::Error::from)
        .and_then(|mut b| b.commit_from_file(&model))
        .expect("a plain session");
    let (mut resident, mut own, mut check) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=rounds {
        let mut seconds = [0.0; 2];
        for turn in 0..2 {
            let which = (round + turn) % 2;
            let started = Instant::now();
            for tensor in &tensors {
                if which == 0 {
                    std::hint::black_box(detector.detector().run(tensor.clone()).expect("run"));
                } else {
                    let input = ort::value::Tensor::from_array(tensor.clone()).expect("tensor");
                    std::hint::black_box(plain.run(ort::inputs![input]).expect("run").len());
                }
            }
            seconds[which] = started.elapsed().as_secs_f64();
        }
        let started = Instant::now();
        assert!(detector.weights_intact());
        if round > 0 {
            check.push(started.elapsed().as_secs_f64() * 1000.0);
            resident.push(tensors.len() as f64 / seconds[0]);
            own.push(tensors.len() as f64 / seconds[1]);
        }
    }
    let (resident, own) = (median(resident), median(own));
    println!(
        "weights in flight's memory:   {resident:>8.1} tiles/s; in ONNX Runtime's own: {own:>8.1} tiles/s ({:+.1} %); \
         the weights' check {:.3} ms a frame",
        100.0 * (resident / own - 1.0),
        median(check)
    );
}

/// The cloud screen's time per tile over the same scenes, its session beside the detector's.
fn cloud_screen_cost(mission: &LoadedFlightMission, scenes: &[PathBuf], rounds: usize) {
    if mission.config.flight.cloud_screen.is_none() {
        println!("the mission has no cloud screen");
        return;
    }
    let mut detector = MissionDetector::load(mission, None).expect("the mission's detector and cloud screen");
    let frames: Vec<_> = scenes.iter().map(|scene| detector.read_frame(scene).expect("scene").0).collect();
    let mut per_tile = Vec::new();
    for round in 0..=rounds {
        let (started, mut tiles) = (Instant::now(), 0);
        for raster in &frames {
            for window in detector.detector().windows(raster) {
                std::hint::black_box(detector.cloud_cover(raster, window).expect("cloud screen"));
                tiles += 1;
            }
        }
        if round > 0 {
            per_tile.push(started.elapsed().as_secs_f64() * 1000.0 / tiles as f64);
        }
    }
    println!("cloud screen (its own session):     {:>6.2} ms/tile", median(per_tile));
}
