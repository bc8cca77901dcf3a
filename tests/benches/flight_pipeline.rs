//! The flight pipeline's speed and memory, with the real `flight run` and `ground serve` binaries
//! of the same profile (build them first: `cargo build --release --workspace --bins`):
//!
//! - frames/s with the checkpoint on against the same pipeline with it off
//!   (`--volatile-checkpoint`: a temporary sled database, never flushed), rounds alternating;
//! - time from a restart after SIGKILL to the first new product;
//! - resident memory of `flight run` over many frames (`--memory-frames N`, off by default).
//!
//! Frames are square crops (`--crop`, 512 px by default; 128 px, one model tile, for the restart
//! and memory runs) of the real Sentinel-2 port scenes, bands
//! B02, B03, B11, written as 16-bit PNGs into the spool as the camera driver does.
//!
//! `cargo bench -p kestrel-e2e --bench flight_pipeline -- [--crop PX] [--frames N] [--rounds N] [--restarts N]
//! [--memory-frames N]`

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use image::{ImageBuffer, Rgb};
use kestrel_e2e::{Ground, Scratch, binary};
use kestrel_flight::imagery::{Raster, Samples};
use kestrel_link::noise::Rng;

const STEP: u32 = 7;
/// Frames of one model tile: the worst case for the checkpoint's share of the work.
const ONE_TILE: u32 = 128;

struct Options {
    /// Side of the square frames of the throughput runs, pixels.
    crop: u32,
    frames: usize,
    rounds: usize,
    restarts: usize,
    memory_frames: usize,
}

fn options() -> Options {
    let mut options = Options { crop: 512, frames: 40, rounds: 3, restarts: 20, memory_frames: 0 };
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<usize>().unwrap_or_else(|_| panic!("{name} takes a count, not `{v}`")))
    };
    options.crop = value("--crop").map_or(options.crop, |v| v as u32);
    options.frames = value("--frames").unwrap_or(options.frames);
    options.rounds = value("--rounds").unwrap_or(options.rounds);
    options.restarts = value("--restarts").unwrap_or(options.restarts);
    options.memory_frames = value("--memory-frames").unwrap_or(options.memory_frames);
    options
}

/// Distinct square crops of the real scenes, as 16-bit PNG files.
struct FrameSource {
    scenes: Vec<Raster>,
    crop: u32,
    next: usize,
}

impl FrameSource {
    fn new(crop: u32) -> Self {
        let scenes = ["sen2ships/busan", "sen2ships-more/genoa", "sen2ships/casablanca"]
            .iter()
            .map(|scene| {
                let folder = kestrel_flight::reference_data::expect("satellite").join(scene);
                // the mission's bands first (the PNG's first two channels); the third is not read
                let bands: Vec<PathBuf> = ["B08.tif", "B11.tif", "B11.tif"].iter().map(|b| folder.join(b)).collect();
                Raster::read_bands(&bands).expect("scene bands")
            })
            .collect();
        Self { scenes, crop, next: 0 }
    }

    /// The next crop's PNG bytes (crop origins walk each scene in 7-pixel steps).
    fn next_png(&mut self) -> Vec<u8> {
        let mut index = self.next;
        self.next += 1;
        let crop = self.crop;
        for scene in self.scenes.iter().filter(|s| s.width >= crop && s.height >= crop).cycle() {
            let (across, down) = ((scene.width - crop) / STEP + 1, (scene.height - crop) / STEP + 1);
            let count = (across * down) as usize;
            if index < count {
                let (x, y) = ((index as u32 % across) * STEP, (index as u32 / across) * STEP);
                return crop_png(scene, x, y, crop);
            }
            index -= count;
        }
        unreachable!("a cycle never ends")
    }
}

fn crop_png(scene: &Raster, x0: u32, y0: u32, crop: u32) -> Vec<u8> {
    let Samples::U16(samples) = &scene.samples else { panic!("band files are 16-bit") };
    let image = ImageBuffer::from_fn(crop, crop, |x, y| {
        let at = (((y0 + y) * scene.width + x0 + x) as usize) * 3;
        Rgb([samples[at], samples[at + 1], samples[at + 2]])
    });
    let mut bytes = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).expect("PNG");
    bytes
}

/// Hands `count` frames to the spool: written under a hidden name, stamped, renamed into place.
fn spool(scratch: &Scratch, source: &mut FrameSource, count: usize) {
    let spool = scratch.path().join("var/flight/spool");
    std::fs::create_dir_all(&spool).expect("spool");
    for _ in 0..count {
        let n = source.next;
        let hidden = spool.join(format!(".frame-{n:06}.png"));
        std::fs::write(&hidden, source.next_png()).expect("frame");
        let capture = UNIX_EPOCH + Duration::from_secs(1_773_964_800 + n as u64);
        std::fs::File::options().write(true).open(&hidden).and_then(|f| f.set_modified(capture)).expect("time");
        std::fs::rename(&hidden, spool.join(format!("frame-{n:06}.png"))).expect("hand-off");
    }
}

fn flight(scratch: &Scratch, extra: &[&str]) -> Command {
    let mut command = Command::new(binary("flight"));
    command
        .args(["--log-format", "json", "run", "--mission", "mission.toml", "--speedup", "100"])
        .args(extra)
        .current_dir(scratch.path())
        .stdout(Stdio::null());
    command
}

fn summary(scratch: &Scratch) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(scratch.path().join("summary.json")).expect("summary")).expect("JSON")
}

/// One run over `frames` fresh frames: (frames/s, seconds spent in the checkpoint).
fn throughput(crop: u32, frames: usize, volatile: bool) -> (f64, f64) {
    let scratch = Scratch::new();
    let _ground = Ground::for_flight(&scratch);
    spool(&scratch, &mut FrameSource::new(crop), frames);
    let mut args = vec!["--until-drained", "--summary", "summary.json"];
    if volatile {
        args.push("--volatile-checkpoint");
    }
    let started = Instant::now();
    let status = flight(&scratch, &args).stderr(Stdio::null()).status().expect("flight");
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.success(), "flight run failed");
    let summary = summary(&scratch);
    assert_eq!(summary["frames"].as_u64(), Some(frames as u64), "{summary}");
    (frames as f64 / seconds, summary["checkpoint_s"].as_f64().unwrap_or(f64::NAN))
}

/// Starts flight with its log lines sent to a channel as they come.
fn flight_with_log(scratch: &Scratch) -> (Child, mpsc::Receiver<String>) {
    let mut child = flight(scratch, &[]).stderr(Stdio::piped()).spawn().expect("flight");
    let stderr = child.stderr.take().expect("stderr");
    let (lines, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (child, receiver)
}

/// Waits for a "frame done" line; the time it took.
fn first_frame_done(lines: &mpsc::Receiver<String>, started: Instant) -> Duration {
    loop {
        let line = lines.recv_timeout(Duration::from_secs(60)).expect("a frame is done within a minute");
        if line.contains("frame done") {
            return started.elapsed();
        }
    }
}

/// Restart to first new product after SIGKILLs at random instants of a busy pipeline.
fn restart_latencies(restarts: usize) -> Vec<Duration> {
    let scratch = Scratch::new();
    let _ground = Ground::for_flight(&scratch);
    let path = scratch.path().join("mission.toml");
    let text = std::fs::read_to_string(&path).expect("mission");
    std::fs::write(&path, text.replace("max_restarts = 5", "max_restarts = 1000000")).expect("mission");
    spool(&scratch, &mut FrameSource::new(ONE_TILE), 100 + restarts * 100);
    let mut rng = Rng::new(0xB0075);
    let (mut child, mut lines) = flight_with_log(&scratch);
    first_frame_done(&lines, Instant::now());
    let mut latencies = Vec::new();
    for _ in 0..restarts {
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let started = Instant::now();
        (child, lines) = flight_with_log(&scratch);
        latencies.push(first_frame_done(&lines, started));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    latencies
}

fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn metric(state_dir: &Path, name: &str) -> Option<f64> {
    let text = std::fs::read_to_string(state_dir.join("metrics.prom")).ok()?;
    let line = text.lines().find(|l| l.starts_with(&format!("kestrel_flight_{name} ")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident memory of one `flight run` over `frames` frames fed as it goes: (frames done, KiB).
fn memory_over(frames: usize) -> Vec<(u64, u64)> {
    let scratch = Scratch::new();
    let _ground = Ground::for_flight(&scratch);
    let spool_dir = scratch.path().join("var/flight/spool");
    let state_dir = scratch.path().join("var/flight/state");
    let mut source = FrameSource::new(ONE_TILE);
    spool(&scratch, &mut source, 200.min(frames));
    let mut child = flight(&scratch, &["--for", "1000d"]).stderr(Stdio::null()).spawn().expect("flight");
    let mut samples = Vec::new();
    let mut next_report = 1000;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let waiting = std::fs::read_dir(&spool_dir).map_or(0, |d| d.count());
        if source.next < frames && waiting < 100 {
            let count = (200 - waiting).min(frames - source.next);
            spool(&scratch, &mut source, count);
        }
        let done = metric(&state_dir, "frames").unwrap_or(0.0) as u64;
        let Some(kib) = resident_kib(child.id()) else { panic!("flight exited") };
        samples.push((done, kib));
        if done >= next_report {
            eprintln!("  {done} frames: RSS {:.1} MiB", kib as f64 / 1024.0);
            next_report += 1000;
        }
        if done >= frames as u64 && metric(&state_dir, "queue_depth").unwrap_or(1.0) == 0.0 {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    samples
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would too: only run when benchmarking
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let options = options();
    let crop = options.crop;
    println!(
        "flight pipeline, {} frames of {crop}x{crop}x3 (16-bit) per run, {} rounds",
        options.frames, options.rounds
    );
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..options.rounds {
        let durable = throughput(crop, options.frames, false);
        let volatile = throughput(crop, options.frames, true);
        println!(
            "round {}: checkpoint on {:.1} frames/s ({:.2} s in the checkpoint), off {:.1} frames/s ({:.2} s)",
            round + 1,
            durable.0,
            durable.1,
            volatile.0,
            volatile.1
        );
        on.push(durable.0);
        off.push(volatile.0);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (on, off) = (mean(&on), mean(&off));
    println!(
        "mean: checkpoint on {on:.1} frames/s, off {off:.1} frames/s: overhead {:.1}% (target at most 3%)",
        (off - on) / off * 100.0
    );

    if options.restarts > 0 {
        let mut latencies = restart_latencies(options.restarts);
        latencies.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "restart after SIGKILL to the first new product, {} restarts: median {:.0} ms, p90 {:.0} ms, max {:.0} ms (target under 1 s)",
            latencies.len(),
            ms(latencies[latencies.len() / 2]),
            ms(latencies[latencies.len() * 9 / 10]),
            ms(latencies[latencies.len() - 1])
        );
    }

    if options.memory_frames > 0 {
        println!("resident memory of flight run over {} frames:", options.memory_frames);
        let samples = memory_over(options.memory_frames);
        let at = |fraction: f64| {
            let target = (options.memory_frames as f64 * fraction) as u64;
            samples.iter().find(|(done, _)| *done >= target).map_or(0, |s| s.1)
        };
        let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
        println!(
            "RSS at 10% of the frames {:.1} MiB, 50% {:.1} MiB, 100% {:.1} MiB, peak {:.1} MiB",
            at(0.1) as f64 / 1024.0,
            at(0.5) as f64 / 1024.0,
            at(1.0) as f64 / 1024.0,
            peak as f64 / 1024.0
        );
    }
}
