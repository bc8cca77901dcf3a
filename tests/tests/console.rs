//! The operator console in a real browser: the real `ground serve` takes, over a station's TCP
//! socket, an archive of 100,000 detections (1,000 frames at five ports, with chips, thumbnails,
//! housekeeping and events); then Playwright drives Debian's headless Chromium through the console
//! (tests/console/drive.mjs): the map clusters every detection, a chip opens from the gallery and
//! from the map, the payload's temperature over its limit is an alarm that the operator
//! acknowledges, the event log filters, and commands made from the dictionary's forms go up the
//! station's socket, where this test, as the spacecraft, reads them and sends down their
//! verification reports: the console shows each command's stages, a refusal on board and its
//! reason, a hazardous command confirmed, and an id past 2^53 sent digit for digit.
//!
//! Needs /usr/bin/chromium (Debian's `chromium`) and `npm ci --prefix tests/console`; scripts/test.sh
//! and .ci/run see to both. Screenshots go to KESTREL_SCREENSHOTS when set (docs/ has them).

#[allow(dead_code)] // shared with ground_serve.rs, which uses the rest
mod station;

use std::io::{Cursor, Read, Write};
use std::time::Duration;

use kestrel_e2e::{Ground, OPERATOR, workspace_root};
use kestrel_link::noise::Rng;
use kestrel_link::product::{
    Body, Chip, CommandReport, CommandStage, Detection, Detections, Event, Housekeeping, OrientedBox, Product,
    Severity, Thumbnail,
};
use kestrel_link::profile::LinkProfile;
use kestrel_link::telecommand::{TcReceiver, UplinkStats};
use kestrel_link::uplink::{self, Mode, Telecommand, UplinkMessage};
use station::{Downlink, connected_stations, envelopes, get, scratch_mission, stream};

const FRAMES: u64 = 1_000;
const DETECTIONS_PER_FRAME: usize = 100;
/// The newest frames carry a chip for every detection (the gallery's first page); the others for
/// their best two, as flight sends them.
const FULLY_CHIPPED_FRAMES: u64 = 10;
/// 2026-03-20T00:00:00Z, the reference mission's epoch.
const START_MS: i64 = 1_773_964_800_000;
const FRAME_INTERVAL_MS: i64 = 10_000;
/// The last housekeeping samples, over the payload's alarm limit.
const PAYLOAD_ALARM_SAMPLES: usize = 3;
/// A product id past 2^53 that the operator types into the Redownlink form.
const REDOWNLINK_ID: u64 = (1 << 62) + 12_345;
/// A frame the spacecraft does not hold: it refuses a tile of it.
const UNKNOWN_FRAME: u64 = 77;
const PORTS: [(f64, f64); 5] = [(33.60, -7.61), (35.10, 129.04), (37.80, -122.40), (51.95, 4.05), (1.26, 103.82)];

fn uniform(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A 40 x 12 px box turned by 0.5 rad, its corners about 0.0003 degrees from its centre.
fn oriented_box(latitude: f64, longitude: f64) -> OrientedBox {
    let (sin, cos) = 0.5f64.sin_cos();
    let corners = [(-1.0, -0.3), (1.0, -0.3), (1.0, 0.3), (-1.0, 0.3)]
        .map(|(x, y)| [latitude - 3e-4 * (x * sin + y * cos), longitude + 3e-4 * (x * cos - y * sin)]);
    OrientedBox { pixel: [20.0, 6.0, 40.0, 12.0, 0.5], corners }
}

fn png(side: u32, seed: u64) -> Vec<u8> {
    let image = image::RgbImage::from_fn(side, side, |x, y| {
        let d = (x as i64 - side as i64 / 2).pow(2) + (y as i64 - side as i64 / 2).pow(2);
        let sea = [20, 40 + (seed % 40) as u8, 90];
        if d < (side as i64 / 6).pow(2) { image::Rgb([230, 230, 220]) } else { image::Rgb(sea) }
    });
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).expect("encode PNG");
    bytes.into_inner()
}

/// The archive the console is shown: per frame its detections, chips and thumbnail; housekeeping
/// every minute; events, one a warning.
fn mission_products() -> Vec<Product> {
    let mut rng = Rng::new(2026);
    let mut products = Vec::new();
    let mut next_id = 1u64 << 62; // ids past 2^53, as flight's hashes are: JavaScript must keep them exact
    let mut id = || {
        next_id += 1;
        next_id
    };
    for frame in 0..FRAMES {
        let time = START_MS + frame as i64 * FRAME_INTERVAL_MS;
        let (port_lat, port_lon) = PORTS[frame as usize % PORTS.len()];
        let (south, west) = (port_lat + uniform(&mut rng) - 0.5, port_lon + uniform(&mut rng) - 0.5);
        let side = 0.1;
        let frame_id = (1u64 << 60) + frame;
        let detections: Vec<Detection> = (0..DETECTIONS_PER_FRAME)
            .map(|_| {
                let (u, v) = (uniform(&mut rng), uniform(&mut rng));
                Detection {
                    class_id: 0,
                    class_name: "vessel".into(),
                    score: 0.5 + 0.5 * uniform(&mut rng) as f32,
                    pixel_box: [
                        (u * 990.0) as f32,
                        (v * 990.0) as f32,
                        (u * 990.0 + 10.0) as f32,
                        (v * 990.0 + 10.0) as f32,
                    ],
                    latitude: south + side * (1.0 - v),
                    longitude: west + side * u,
                }
            })
            .collect();
        let chips = if frame >= FRAMES - FULLY_CHIPPED_FRAMES { DETECTIONS_PER_FRAME } else { 2 };
        for index in 0..chips as u32 {
            let body = Body::Chip(Chip {
                frame_id,
                detection_index: index,
                origin: [0, 0],
                size: [32, 32],
                png: png(32, frame),
            });
            products.push(Product { id: id(), created_ms: time, body });
        }
        let footprint = [[south + side, west], [south + side, west + side], [south, west + side], [south, west]];
        let thumbnail = Thumbnail { frame_id, frame_time_ms: time, footprint, png: png(16, frame) };
        products.push(Product { id: id(), created_ms: time, body: Body::Thumbnail(thumbnail) });
        // the newest frames come from a model of oriented boxes
        let oriented = if frame >= FRAMES - FULLY_CHIPPED_FRAMES {
            detections.iter().map(|d| oriented_box(d.latitude, d.longitude)).collect()
        } else {
            Vec::new()
        };
        let set = Detections { frame_id, frame_time_ms: time, model: "vessels-s2".into(), detections, oriented };
        products.push(Product { id: id(), created_ms: time, body: Body::Detections(set) });
    }
    let end = START_MS + FRAMES as i64 * FRAME_INTERVAL_MS;
    let samples = (START_MS..end).step_by(60_000).count();
    for (i, time) in (START_MS..end).step_by(60_000).enumerate() {
        let phase = i as f64 / 10.0;
        // the payload ends over its alarm limit (the mission's max_temperature_c, 80 °C)
        let payload_c = if i + PAYLOAD_ALARM_SAMPLES >= samples { 85.0 } else { 30.0 + 10.0 * phase.sin() };
        let values = vec![
            ("temperature_payload_c".to_owned(), payload_c),
            ("temperature_battery_c".to_owned(), 18.0 + 2.0 * phase.cos()),
            ("battery_soc".to_owned(), 0.7 + 0.2 * phase.sin()),
            ("gpu_duty".to_owned(), 0.75),
            ("queue_depth".to_owned(), (i % 40) as f64),
            ("spool_waiting".to_owned(), 0.0),
            ("mode".to_owned(), 1.0),
            ("frames".to_owned(), (i * 6) as f64),
            ("detections".to_owned(), (i * 600) as f64),
        ];
        products.push(Product {
            id: id(),
            created_ms: time,
            body: Body::Housekeeping(Housekeeping { time_ms: time, values }),
        });
    }
    for (i, time) in (START_MS..end).step_by(600_000).enumerate() {
        let (severity, source, message) = match i {
            3 => (Severity::Warning, "mode", "NOMINAL -> THROTTLED: payload forecast over its limit".to_owned()),
            5 => (Severity::Warning, "command", "command 3 refused: frame 7 is not on board".to_owned()),
            _ => (Severity::Info, "downlink", format!("contact {i} ended")),
        };
        let body = Body::Event(Event { time_ms: time, severity, source: source.into(), message });
        products.push(Product { id: id(), created_ms: time, body });
    }
    products
}

#[test]
fn an_operator_sees_every_detection_opens_a_chip_and_sends_a_command_in_chromium() {
    let driver = workspace_root().join("tests/console");
    assert!(
        driver.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `npm ci --prefix tests/console` (scripts/test.sh does)"
    );
    let chromium = std::env::var("KESTREL_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's `chromium` package (.ci/run does), or set KESTREL_CHROMIUM"
    );

    let (scratch, profile) = scratch_mission();
    let ground = Ground::start(scratch.path(), &[]);
    let products = mission_products();
    let detections = FRAMES as usize * DETECTIONS_PER_FRAME;
    let mut station = connected_stations(&ground, 1).remove(0);
    station.write_all(&stream(&profile, &envelopes(&products))).expect("the station sends the archive");
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while get(&ground.http, "/api/stats").1["archive"]["detections"] != detections {
        assert!(std::time::Instant::now() < deadline, "the archive never held every detection");
        std::thread::sleep(Duration::from_millis(200));
    }
    // what the ground sent so far (acknowledgements) is not what this test is after
    station.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let mut buffer = vec![0u8; 1 << 16];
    while station.read(&mut buffer).is_ok_and(|n| n > 0) {}

    let token = std::fs::read_to_string(scratch.path().join("keys/operator.token")).expect("token");
    let shots = std::env::var("KESTREL_SCREENSHOTS").map_or_else(|_| scratch.path().join("shots"), Into::into);
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let spacecraft = Spacecraft::start(station, profile);
    let output = std::process::Command::new("node")
        .arg(driver.join("drive.mjs"))
        .current_dir(&driver)
        .env("KESTREL_CONSOLE_URL", format!("http://{}/", ground.http))
        .env("KESTREL_OPERATOR_TOKEN", token.trim())
        .env("KESTREL_OPERATOR", OPERATOR)
        .env("KESTREL_EXPECT_DETECTIONS", detections.to_string())
        .env("KESTREL_REDOWNLINK_ID", REDOWNLINK_ID.to_string())
        .env("KESTREL_UNKNOWN_FRAME", UNKNOWN_FRAME.to_string())
        .env("KESTREL_SCREENSHOTS", &shots)
        .env("KESTREL_CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let received = spacecraft.stop();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the console check failed:\n{stderr}\n{stdout}\nthe spacecraft received {:?} ({:?})",
        received.commands,
        received.stats
    );
    println!("console: {stdout}");
    for name in ["console-overview", "console-chip", "console-map-zoomed", "console-alarms", "console-commands"] {
        assert!(shots.join(format!("{name}.png")).is_file(), "screenshot {name}");
    }

    // what the browser sent is what reached the spacecraft, once each, authenticated, in order; the
    // refused forms sent nothing
    let sent: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the driver's JSON summary");
    let id = |name: &str| sent["commands"][name].as_str().and_then(|id| id.parse::<u64>().ok()).expect(name);
    let expected = [
        (id("throttled"), Telecommand::SetMode { mode: Mode::Throttled }),
        (id("redownlink"), Telecommand::Redownlink { product_id: REDOWNLINK_ID }),
        (id("tile"), Telecommand::RequestTile { frame_id: UNKNOWN_FRAME, x: 0, y: 0, width: 64, height: 64 }),
        (id("safe"), Telecommand::SetMode { mode: Mode::Safe }),
    ];
    assert_eq!(received.commands, expected);
    assert_eq!(received.stats.authentication_failures, 0);
}

/// What the spacecraft took from the uplink while the browser worked.
struct Received {
    commands: Vec<(u64, Telecommand)>,
    stats: UplinkStats,
}

/// The test as the spacecraft, at the station's end of the link: it takes the commands off the
/// uplink and sends down the verification reports flight would (a tile of an unknown frame is
/// refused), until stopped.
struct Spacecraft {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Received>,
}

impl Spacecraft {
    fn start(mut station: std::net::TcpStream, profile: LinkProfile) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut receiver = TcReceiver::new(profile.security.clone().expect("security"), 42);
            station.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
            let mut commands = Vec::new();
            let mut buffer = vec![0u8; 1 << 16];
            let mut next_report = 1u64 << 63;
            let mut downlink = Downlink::new(&profile);
            while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                let n = match station.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => n,
                    // the read timed out: look at the stop flag
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        continue;
                    }
                    Err(e) => panic!("the station's socket failed: {e}"),
                };
                for frame in receiver.push(&buffer[..n]) {
                    let Ok(UplinkMessage::Command { id, command }) = uplink::decode(&frame) else { continue };
                    let ending = match &command {
                        Telecommand::RequestTile { frame_id, .. } => {
                            CommandStage::Refused { reason: format!("frame {frame_id} is not on board") }
                        }
                        other => CommandStage::Completed { detail: format!("{other:?} done") },
                    };
                    let stages: &[CommandStage] = match ending {
                        CommandStage::Refused { .. } => &[ending],
                        _ => &[CommandStage::Accepted, ending],
                    };
                    let reports: Vec<Product> = stages
                        .iter()
                        .map(|stage| {
                            next_report += 1;
                            let time_ms = START_MS + FRAMES as i64 * FRAME_INTERVAL_MS;
                            let report =
                                CommandReport { command_id: id, time_ms, tagged_at: None, stage: stage.clone() };
                            Product { id: next_report, created_ms: time_ms, body: Body::CommandReport(report) }
                        })
                        .collect();
                    station.write_all(&downlink.cadus(&envelopes(&reports))).expect("the reports go down");
                    commands.push((id, command));
                }
            }
            Received { commands, stats: receiver.stats().clone() }
        });
        Self { stop, thread }
    }

    fn stop(self) -> Received {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().expect("the spacecraft thread")
    }
}
