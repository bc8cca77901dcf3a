//! `flight run`, the real binary, against the real `ground serve` over TCP: every product made
//! arrives in the ground archive exactly once and byte-identical (content CRC), through SIGKILLs
//! at random instants and a corrupt checkpoint; bad frames are quarantined; forged and replayed
//! telecommands are refused and counted.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kestrel_dictionary::EventSource;
use kestrel_e2e::{Ground, STATION_KEY, Scratch, binary, flight, spool, stderr, workspace_root};
use kestrel_flight::models as flight_models;
use kestrel_ground::archive::Archive;
use kestrel_ground::archive::SledArchive;
use kestrel_ground::config::LoadedGroundMission;
use kestrel_link::decoder::{CaduDecoder, Delivered};
use kestrel_link::noise::Rng;
use kestrel_link::packet::SegmentReassembler;
use kestrel_link::product::{Body, CommandReport, CommandStage, Kind, Product, Severity};
use kestrel_link::security::SecurityAssociation;
use kestrel_link::station;
use kestrel_link::telecommand::UPLINK_REPLAY_WINDOW;
use kestrel_link::uplink::{Mode, Telecommand, UplinkSender};
use kestrel_tools::signing;

fn scenes() -> Vec<(&'static str, PathBuf)> {
    let ports = kestrel_flight::reference_data::expect("satellite/sen2ships");
    vec![
        ("casablanca", ports.join("casablanca")),
        ("busan", ports.join("busan")),
        ("osbs.tif", workspace_root().join("testdata/aerial/OSBS_029.tif")),
    ]
}

/// Runs flight until everything is processed and acknowledged; returns its JSON summary.
fn run_until_drained(scratch: &Scratch) -> serde_json::Value {
    let output = flight(scratch, &["--until-drained", "--summary", "summary.json"])
        .stdout(Stdio::null())
        .output()
        .expect("flight runs");
    assert!(output.status.success(), "flight run failed: {}", stderr(&output));
    read_summary(scratch)
}

/// What the ground archive holds: id -> (kind, content CRC).
fn archive(scratch: &Scratch) -> BTreeMap<u64, (Kind, u32)> {
    let archive = SledArchive::open(&scratch.path().join("var/ground/archive")).expect("archive");
    let records = archive.records(None, 1_000_000).expect("records");
    let map: BTreeMap<u64, (Kind, u32)> = records.iter().map(|r| (r.id, (r.kind, r.content_crc))).collect();
    assert_eq!(map.len(), records.len(), "the archive lists a product twice");
    map
}

fn frame_products(archive: &BTreeMap<u64, (Kind, u32)>) -> BTreeMap<u64, (Kind, u32)> {
    archive
        .iter()
        .filter(|(_, (kind, _))| matches!(kind, Kind::Detections | Kind::Chip | Kind::Thumbnail))
        .map(|(id, v)| (*id, *v))
        .collect()
}

fn count(summary: &serde_json::Value, key: &str) -> u64 {
    summary[key].as_u64().unwrap_or_else(|| panic!("summary has no `{key}`: {summary}"))
}

/// A PNG header claiming 100000 x 100000 pixels, and nothing else.
fn huge_png() -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([16, 2, 0, 0, 0]);
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&ihdr);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(ihdr);
    png.extend(crc.to_be_bytes());
    png
}

/// Hands `entry` (made under a hidden name by `make`) over to the spool as `name`.
fn spool_entry(scratch: &Scratch, name: &str, make: impl FnOnce(&Path)) {
    let spool = scratch.path().join("var/flight/spool");
    std::fs::create_dir_all(&spool).expect("spool");
    let hidden = spool.join(format!(".{name}"));
    make(&hidden);
    std::fs::rename(&hidden, spool.join(name)).expect("hand-off");
}

fn fifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn spool_entries_that_never_end_are_quarantined_and_flight_goes_on_across_restarts() {
    let scratch = Scratch::new();
    let ground = Ground::for_flight(&scratch);
    // a FIFO no one writes, a link to a file that never ends, and a real scene behind them
    spool_entry(&scratch, "camera.fifo", fifo);
    spool_entry(&scratch, "endless.png", |hidden| std::os::unix::fs::symlink("/dev/zero", hidden).expect("symlink"));
    spool(&scratch, &scenes()[..1]);
    let summary = run_until_drained(&scratch);
    assert_eq!(count(&summary, "frames"), 1, "the scene: {summary}");
    assert_eq!(count(&summary, "frames_quarantined"), 2, "{summary}");
    assert!(count(&summary, "products_acknowledged") > 0, "{summary}");
    assert_eq!(count(&summary, "products_acknowledged"), count(&summary, "products_made"), "{summary}");
    let quarantine = scratch.path().join("var/flight/state/quarantine");
    assert!(quarantine.join("unexamined-camera.fifo").symlink_metadata().is_ok_and(|m| m.file_type().is_fifo()));

    // the same name again: quarantined beside the first, and flight still starts and drains
    spool_entry(&scratch, "camera.fifo", fifo);
    let summary = run_until_drained(&scratch);
    assert_eq!(count(&summary, "frames_quarantined"), 3, "{summary}");
    assert!(quarantine.join("unexamined-camera.fifo-2").symlink_metadata().is_ok());
    assert_eq!(std::fs::read_dir(scratch.path().join("var/flight/state/incoming")).expect("incoming").count(), 0);
    drop(ground);
}

#[test]
fn every_product_arrives_once_and_bad_frames_are_quarantined() {
    let scratch = Scratch::new();
    let ground = Ground::for_flight(&scratch);
    let bad = scratch.path().join("bad");
    std::fs::create_dir(&bad).expect("bad dir");
    std::fs::write(bad.join("notes.png"), "not an image at all").expect("text");
    let tiff = std::fs::read(workspace_root().join("testdata/aerial/OSBS_029.tif")).expect("tiff");
    std::fs::write(bad.join("truncated.tif"), &tiff[..tiff.len() / 3]).expect("truncated");
    std::fs::write(bad.join("huge.png"), huge_png()).expect("huge");
    let mut frames = scenes();
    frames.extend([
        ("notes.png", bad.join("notes.png")),
        ("truncated.tif", bad.join("truncated.tif")),
        ("huge.png", bad.join("huge.png")),
    ]);
    spool(&scratch, &frames);

    let summary = run_until_drained(&scratch);
    assert_eq!(count(&summary, "frames"), 6, "{summary}");
    assert_eq!(count(&summary, "frames_quarantined"), 3, "{summary}");
    assert_eq!(count(&summary, "products_queued"), 0);
    assert_eq!(count(&summary, "products_acknowledged"), count(&summary, "products_made"), "{summary}");
    assert!(count(&summary, "detections") > 0);
    assert!(summary["reduction_factor"].as_f64().expect("factor") > 1.0, "{summary}");
    // at full duty the detector runs the mission's largest batch (max_batch = 4), and never more
    let runs: Vec<(u64, u64)> = serde_json::from_value(summary["tiles_per_run"].clone()).expect("tiles per run");
    assert!(
        runs.iter().any(|&(tiles, _)| tiles == 4) && runs.iter().all(|&(tiles, _)| (1..=4).contains(&tiles)),
        "{runs:?}"
    );
    for name in ["notes.png", "truncated.tif", "huge.png"] {
        let quarantined = std::fs::read_dir(scratch.path().join("var/flight/state/quarantine"))
            .expect("quarantine")
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().ends_with(name));
        assert!(quarantined, "{name} is not in quarantine");
    }
    drop(ground);
    let archive = archive(&scratch);
    assert_eq!(archive.len() as u64, count(&summary, "products_made"), "every product made is archived, once");
    let detections = archive.values().filter(|(k, _)| *k == Kind::Detections).count();
    assert_eq!(detections, 3, "one detections product per good frame");
    assert!(archive.values().filter(|(k, _)| *k == Kind::Event).count() >= 3, "a quarantine event per bad frame");
    // flight's housekeeping and events are the mission dictionary's channels and sources
    let dictionary = LoadedGroundMission::load(&scratch.path().join("mission.toml")).expect("mission").dictionary;
    let channels: Vec<&str> = dictionary.channels.iter().map(|c| c.name.as_str()).collect();
    let sources: Vec<&str> = dictionary.events.iter().map(|e| e.name).collect();
    let (mut housekeeping, mut events) = (0, 0);
    for product in archived_products(&scratch, &archive) {
        match product.body {
            Body::Housekeeping(report) => {
                let names: Vec<&str> = report.values.iter().map(|(name, _)| name.as_str()).collect();
                assert_eq!(names, channels, "a housekeeping report's channels");
                housekeeping += 1;
            }
            Body::Event(event) => {
                assert!(sources.contains(&event.source.as_str()), "event source `{}`", event.source);
                events += 1;
            }
            _ => {}
        }
    }
    assert!(housekeeping > 0 && events >= 3, "{housekeeping} housekeeping reports, {events} events");
}

#[test]
fn sigkill_at_random_instants_loses_nothing_and_duplicates_nothing() {
    let kills: u32 = std::env::var("KESTREL_SIGKILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    // the same frames through a run that nobody disturbs
    let reference = Scratch::new();
    let reference_ground = Ground::for_flight(&reference);
    spool(&reference, &scenes());
    run_until_drained(&reference);
    drop(reference_ground);
    let expected = frame_products(&archive(&reference));
    assert!(expected.len() > 3, "the scenes make chips as well as detections and thumbnails");

    let scratch = Scratch::new();
    let ground = Ground::for_flight(&scratch);
    // this test is about the checkpoint; the restart limit (SAFE mode after 5 quick starts) would
    // stop the processing it checks
    let path = scratch.path().join("mission.toml");
    let text = std::fs::read_to_string(&path).expect("mission");
    std::fs::write(&path, text.replace("max_restarts = 5", "max_restarts = 1000000")).expect("mission");
    spool(&scratch, &scenes());
    let mut rng = Rng::new(0x5EED);
    let started = Instant::now();
    for kill in 1..=kills {
        let mut child = flight(&scratch, &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("flight");
        std::thread::sleep(Duration::from_millis(rng.below(900)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        if kill % 1000 == 0 {
            eprintln!("{kill} SIGKILLs, {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    let summary = run_until_drained(&scratch);
    drop(ground);
    // each start is counted in the checkpoint: most kills must have landed after start-up, in the
    // running pipeline this test is about, not in the process's loading (a third of them at least;
    // 70 % do on a 2-core machine)
    let landed = count(&summary, "starts") - 1;
    assert!(
        landed >= u64::from(kills) / 3,
        "only {landed} of {kills} SIGKILLs came after flight had started: {summary}"
    );
    let archive = archive(&scratch);
    assert_eq!(frame_products(&archive), expected, "frame products differ from the undisturbed run's");
    assert_eq!(count(&summary, "products_queued"), 0);
    assert_eq!(count(&summary, "products_acknowledged"), count(&summary, "products_made"), "{summary}");
    if archive.len() as u64 != count(&summary, "products_made") {
        panic!(
            "lost or extra products: {} archived, {summary}; the archive's events:\n{}",
            archive.len(),
            archived_events(&scratch, &archive).join("\n")
        );
    }
    eprintln!("{kills} SIGKILLs in {:.0} s; {summary}", started.elapsed().as_secs_f64());
}

/// The events in the ground archive, as text: what to read when counts disagree.
fn archived_products(scratch: &Scratch, archive: &BTreeMap<u64, (Kind, u32)>) -> Vec<Product> {
    let store = SledArchive::open(&scratch.path().join("var/ground/archive")).expect("archive");
    archive
        .keys()
        .filter_map(|id| store.product_bytes(*id).ok().flatten())
        .filter_map(|bytes| Product::decode(&bytes).ok())
        .collect()
}

fn archived_events(scratch: &Scratch, archive: &BTreeMap<u64, (Kind, u32)>) -> Vec<String> {
    archived_products(scratch, archive)
        .into_iter()
        .filter(|product| product.body.kind() == Kind::Event)
        .map(|product| format!("{:?}", product.body))
        .collect()
}

/// Runs flight once more on a damaged checkpoint: it must say so, set it aside, and rebuild; the
/// frame processed again makes the same products, which the ground already has.
fn recovers_from(damage: impl Fn(&Path)) {
    let scratch = Scratch::new();
    let ground = Ground::for_flight(&scratch);
    spool(&scratch, &scenes()[..1]);
    run_until_drained(&scratch);
    drop(ground);
    let before = frame_products(&archive(&scratch));
    let state = scratch.path().join("var/flight/state");
    damage(&state.join("checkpoint/db"));

    let ground = Ground::for_flight(&scratch);
    let output = flight(&scratch, &["--until-drained", "--summary", "summary.json"]).output().expect("flight runs");
    assert!(output.status.success(), "{}", stderr(&output));
    let aside = std::fs::read_dir(&state)
        .expect("state")
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("checkpoint.corrupt-"));
    assert!(aside, "the corrupt checkpoint was not kept aside");
    let summary = read_summary(&scratch);
    assert_eq!(count(&summary, "starts"), 1, "a fresh checkpoint: {summary}");
    assert_eq!(count(&summary, "frames"), 1, "the frame on board is processed again: {summary}");
    assert_eq!(count(&summary, "products_queued"), 0);
    drop(ground);
    let archive = archive(&scratch);
    assert_eq!(frame_products(&archive), before, "the same products, stored once");
    let products = archived_products(&scratch, &archive);
    assert!(checkpoint_error_among(&products), "the damage went unnoticed: {}", stderr(&output));
}

/// Whether flight reported an unusable checkpoint: an Error event from the checkpoint.
fn checkpoint_error_among(products: &[Product]) -> bool {
    products.iter().any(|p| {
        matches!(&p.body, Body::Event(e) if e.source == EventSource::Checkpoint.name() && e.severity == Severity::Error)
    })
}

#[test]
fn a_truncated_checkpoint_is_detected_and_never_used() {
    recovers_from(|db| {
        let length = std::fs::metadata(db).expect("db").len();
        std::fs::File::options().write(true).open(db).and_then(|f| f.set_len(length / 2)).expect("truncate");
    });
}

#[test]
fn a_checkpoint_with_flipped_bits_is_detected_and_never_used() {
    recovers_from(|db| {
        let mut bytes = std::fs::read(db).expect("db");
        let mut rng = Rng::new(11);
        // flips in the part of the file that holds data (sled writes from the start)
        let used = bytes.iter().rposition(|&b| b != 0).unwrap_or(0) + 1;
        for _ in 0..64 {
            let at = rng.below(used as u64) as usize;
            bytes[at] ^= 1 << rng.below(8);
        }
        std::fs::write(db, bytes).expect("write");
    });
}

#[test]
fn telecommands_run_once_and_forged_or_replayed_ones_are_refused() {
    let scratch = Scratch::new();
    // the test is the ground: it takes the CADUs and sends telecommand frames up
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    scratch.flight_mission(&listener.local_addr().expect("address").to_string());
    let key = [0u8; 32];
    let good = SecurityAssociation::new(1, &key, false);
    let mut sender = UplinkSender::new(good, 42, 1, 1);
    let safe = sender.command(7, &Telecommand::SetMode { mode: Mode::Safe }).expect("fits");
    let parameter = sender
        .command(8, &Telecommand::SetParameter { name: "housekeeping_interval_s".into(), value: 5.0 })
        .expect("fits");
    let unknown =
        sender.command(9, &Telecommand::SetParameter { name: "warp_drive".into(), value: 1.0 }).expect("fits");
    // a time-tagged sequence, both due at once: each runs and reports under the sequence's id
    let duty = Telecommand::SetParameter { name: "max_duty".into(), value: 0.9 };
    let interval = Telecommand::SetParameter { name: "housekeeping_interval_s".into(), value: 7.0 };
    let tagged =
        sender.command(11, &Telecommand::TimeTagged { commands: vec![(0, duty), (1, interval)] }).expect("fits");
    let mut forger = UplinkSender::new(SecurityAssociation::new(1, &[9u8; 32], false), 42, 1, 100);
    let forged = forger.command(10, &Telecommand::SetMode { mode: Mode::Nominal }).expect("fits");
    let mut uplink = Vec::new();
    for frame in [&safe, &parameter, &unknown, &tagged, &forged, &safe] {
        uplink.extend_from_slice(frame);
    }
    let flown = fly_with_uplink(&scratch, listener, uplink);
    let summary = &flown.summary;
    assert_eq!(summary["mode"], "SAFE", "{summary}");
    // SetMode, SetParameter, the sequence stored, and its two commands
    assert_eq!(count(summary, "commands_executed"), 5, "{summary}");
    assert_eq!(count(summary, "commands_refused"), 1, "the unknown parameter: {summary}");
    assert_eq!(count(summary, "uplink_frames_rejected"), 2, "the forged and the replayed frame: {summary}");
    // a verification report for every command received, refused ones included, under its id
    let reports: Vec<(u64, Option<i64>, CommandStage)> =
        flown.command_reports().into_iter().map(|r| (r.command_id, r.tagged_at, r.stage)).collect();
    let stages = |id: u64| -> Vec<(Option<i64>, CommandStage)> {
        reports.iter().filter(|r| r.0 == id).map(|r| (r.1, r.2.clone())).collect()
    };
    let completed = |detail: &str| CommandStage::Completed { detail: detail.to_owned() };
    assert_eq!(stages(7), [(None, CommandStage::Accepted), (None, completed("mode set to Safe"))]);
    assert_eq!(stages(8), [(None, CommandStage::Accepted), (None, completed("`housekeeping_interval_s` set to 5"))]);
    assert!(
        matches!(&stages(9)[..], [(None, CommandStage::Refused { reason })] if reason.contains("no parameter `warp_drive`")),
        "{:?}",
        stages(9)
    );
    assert_eq!(
        stages(11),
        [
            (None, CommandStage::Accepted),
            (None, completed("2 commands stored to run at their times")),
            (Some(0), completed("`max_duty` set to 0.9")),
            (Some(1), completed("`housekeeping_interval_s` set to 7")),
        ]
    );
    assert!(stages(10).is_empty(), "a forged frame is no command: nothing reported under its id");

    // the replay guard survives a restart: the same frames again are all refused
    let listener = TcpListener::bind(scratch_address(&scratch)).expect("listen again");
    let again = [safe, parameter].concat();
    let Flown { summary, .. } = fly_with_uplink(&scratch, listener, again.clone());
    assert_eq!(count(&summary, "commands_executed"), 5, "nothing ran twice: {summary}");
    assert_eq!(count(&summary, "uplink_frames_rejected"), 4, "{summary}");

    // nor does a checkpoint rebuilt after damage forget them: the guard beside it remembers
    let db = scratch.path().join("var/flight/state/checkpoint/db");
    std::fs::write(&db, b"not a sled database").expect("damage");
    let listener = TcpListener::bind(scratch_address(&scratch)).expect("listen again");
    let flown = fly_with_uplink(&scratch, listener, again);
    assert!(flown.reported_checkpoint_error(), "the damage went unnoticed: {}", stderr(&flown.output));
    let summary = flown.summary;
    assert_eq!(count(&summary, "starts"), 1, "a rebuilt checkpoint: {summary}");
    assert_eq!(count(&summary, "commands_executed"), 0, "{summary}");
    assert_eq!(count(&summary, "uplink_frames_rejected"), 2, "{summary}");
    assert_eq!(summary["mode"], "NOMINAL", "the replayed SetMode Safe did not run: {summary}");
}

/// Frames of two ground processes on one archive, sent at the same moment, can reach the
/// spacecraft in either order: each runs once as long as it is within the window.
#[test]
fn uplink_frames_out_of_order_within_the_replay_window_each_run_once() {
    let scratch = Scratch::new();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    scratch.flight_mission(&listener.local_addr().expect("address").to_string());
    let mut sender = UplinkSender::new(SecurityAssociation::new(1, &[0u8; 32], false), 42, 1, 1);
    let mut duty = |id: u64, value: f64| {
        sender.command(id, &Telecommand::SetParameter { name: "max_duty".into(), value }).expect("fits")
    };
    let (too_late, second, first) = (duty(1, 0.9), duty(2, 0.8), duty(3, 0.7));
    for id in 4..=UPLINK_REPLAY_WINDOW + 2 {
        duty(id, 0.6); // never sent: ARSNs taken by the other process
    }
    let latest = duty(100, 0.5); // ARSN 67: 66 above too_late's
    let uplink = [&first, &second, &second, &latest, &too_late].map(|f| f.as_slice()).concat();
    let flown = fly_with_uplink(&scratch, listener, uplink);
    assert_eq!(count(&flown.summary, "commands_executed"), 3, "{}", flown.summary);
    assert_eq!(
        count(&flown.summary, "uplink_frames_rejected"),
        2,
        "a copy, and one below the window: {}",
        flown.summary
    );
    let mut completed: Vec<u64> = flown
        .command_reports()
        .iter()
        .filter(|r| matches!(r.stage, CommandStage::Completed { .. }))
        .map(|r| r.command_id)
        .collect();
    completed.sort_unstable();
    assert_eq!(completed, [2, 3, 100], "each once");
}

#[test]
fn a_ground_that_never_reads_holds_up_neither_processing_nor_commands() {
    let scratch = Scratch::new();
    // a station that takes the connection and sends one command up, but reads nothing: its small
    // receive buffer fills within the first products, and flight's writes would block
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().expect("address").into()).expect("bind");
    socket.listen(1).expect("listen");
    let listener: TcpListener = socket.into();
    scratch.flight_mission(&listener.local_addr().expect("address").to_string());
    // a watchdog shorter than a blocked write's timeout: a main loop held up by the link is killed
    let path = scratch.path().join("mission.toml");
    let text = std::fs::read_to_string(&path).expect("mission");
    std::fs::write(&path, text.replacen("watchdog_timeout_s = 30.0", "watchdog_timeout_s = 3.0", 1)).expect("write");
    let mut sender = UplinkSender::new(SecurityAssociation::new(1, &[0u8; 32], false), 42, 1, 1);
    let command = sender
        .command(5, &Telecommand::SetParameter { name: "housekeeping_interval_s".into(), value: 5.0 })
        .expect("fits");
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let ground = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().expect("flight connects");
        // sign-on is the one exchange this station reads
        answer_sign_on(&mut socket);
        std::thread::sleep(Duration::from_secs(1));
        socket.write_all(&command).expect("uplink");
        // held open, never read, until flight is done
        let _ = stopped.recv();
    });
    let ports = kestrel_flight::reference_data::expect("satellite");
    spool(
        &scratch,
        &[
            ("casablanca", ports.join("sen2ships/casablanca")),
            ("busan", ports.join("sen2ships/busan")),
            ("genoa", ports.join("sen2ships-more/genoa")),
        ],
    );
    let output = flight(&scratch, &["--for", "10m", "--summary", "summary.json"]).output().expect("flight runs");
    drop(stop);
    ground.join().expect("ground thread");
    assert!(output.status.success(), "flight was held up: {}", stderr(&output));
    let summary = read_summary(&scratch);
    assert_eq!(count(&summary, "frames"), 3, "{summary}");
    assert!(count(&summary, "products_made") > 3, "{summary}");
    assert_eq!(count(&summary, "products_acknowledged"), 0, "the station read nothing: {summary}");
    assert_eq!(count(&summary, "commands_executed"), 1, "{summary}");
}

/// Gives a scratch mission its own copy of the model manifest, signed with a key pair made for
/// the test; returns the signing key's path.
fn own_signing_key(scratch: &Scratch) -> PathBuf {
    let models = scratch.path().join("models");
    std::fs::create_dir_all(&models).expect("models folder");
    for file in ["models.toml", "vessels-s2.onnx", "vessels-s2.md"] {
        std::fs::copy(workspace_root().join("models").join(file), models.join(file)).expect("copy model");
    }
    let secret = scratch.path().join("test-signing.key");
    let public = signing::generate_key_pair(&secret).expect("key pair");
    std::fs::write(models.join("model-signing.pub"), public).expect("verifying key");
    signing::sign(&models.join("models.toml"), "vessels-s2", &secret, &models.join("model-signing.pub")).expect("sign");
    let path = scratch.path().join("mission.toml");
    let repository_models = workspace_root().join("models");
    let text =
        std::fs::read_to_string(&path).expect("mission").replace(&repository_models.display().to_string(), "models");
    std::fs::write(&path, text).expect("mission");
    secret
}

/// TC frames uploading the first `sent` bytes of `file` as transfer `transfer`, and the command
/// to install the whole file, signed with `secret`.
fn upload(sender: &mut UplinkSender, transfer: u64, file: &[u8], sent: usize, secret: &Path) -> Vec<u8> {
    let digest: [u8; 32] = {
        let temporary = tempfile::NamedTempFile::new().expect("temporary");
        std::fs::write(temporary.path(), file).expect("write");
        flight_models::file_sha256(temporary.path()).expect("digest")
    };
    let signature = signing::sign_digest(secret, &digest).expect("signature").to_vec();
    let install = Telecommand::InstallModel {
        transfer,
        model: "vessels-s2".into(),
        length: file.len() as u64,
        sha256: digest,
        signature,
    };
    let mut frames = sender.upload(transfer, &file[..sent]);
    frames.extend(sender.command(transfer, &install).expect("fits"));
    frames
}

#[test]
fn an_uploaded_model_replaces_the_running_one_only_once_verified_and_loaded() {
    let scratch = Scratch::new();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    scratch.flight_mission(&listener.local_addr().expect("address").to_string());
    let secret = own_signing_key(&scratch);
    let someone_else = scratch.path().join("other-signing.key");
    signing::generate_key_pair(&someone_else).expect("other key pair");
    let weights = std::fs::read(workspace_root().join("models/vessels-s2.onnx")).expect("model");
    // the same network with a new doc_string (ModelProto field 6; the last one read wins): a
    // different file that loads
    let mut retrained = weights.clone();
    retrained.extend([0x32, 7]);
    retrained.extend(b"upload2");
    let mut sender = UplinkSender::new(SecurityAssociation::new(1, &[0u8; 32], false), 42, 1, 1);
    let garbage = b"not an ONNX model, but signed";
    let mut uplink = upload(&mut sender, 11, garbage, garbage.len(), &secret);
    uplink.extend(upload(&mut sender, 12, &retrained, retrained.len(), &someone_else));
    uplink.extend(upload(&mut sender, 13, &retrained, retrained.len() / 2, &secret));
    uplink.extend(upload(&mut sender, 14, &retrained, retrained.len(), &secret));
    // two more unfinished uploads: the second of them makes room by dropping the oldest (13)
    uplink.extend(upload(&mut sender, 15, &retrained, 1000, &secret));
    uplink.extend(upload(&mut sender, 16, &retrained, 1000, &secret));
    let flown = fly_with_uplink(&scratch, listener, uplink);
    // each InstallModel's verification report (under its transfer id) says what became of it
    let reports = flown.command_reports();
    let ending = |id: u64| match reports.iter().rev().find(|r| r.command_id == id).map(|r| &r.stage) {
        Some(CommandStage::Refused { reason } | CommandStage::Failed { reason }) => Err(reason.clone()),
        Some(CommandStage::Completed { detail }) => Ok(detail.clone()),
        other => panic!("command {id} ended {other:?}"),
    };
    assert!(ending(11).is_err_and(|why| why.contains("does not load")), "{:?}", ending(11));
    assert!(ending(12).is_err_and(|why| why.contains("signature does not verify")), "{:?}", ending(12));
    assert!(ending(13).is_err_and(|why| why.contains("incomplete")), "{:?}", ending(13));
    assert!(ending(14).is_ok(), "{:?}", ending(14));
    let dropped = flown.products.iter().any(|p| {
        matches!(&p.body, Body::Event(e) if e.source == EventSource::Upload.name() && e.message.contains("upload 13 dropped"))
    });
    assert!(dropped, "the oldest unfinished upload (13) is dropped to make room for upload 16, with an event");
    let summary = flown.summary;
    assert_eq!(count(&summary, "commands_refused"), 5, "{summary}");
    assert_eq!(count(&summary, "commands_executed"), 1, "{summary}");
    assert_eq!(summary["model"], "model `vessels-s2` from upload 14", "{summary}");
    assert_eq!(summary["mode"], "NOMINAL", "a refused upload leaves the running model: {summary}");

    // the installed model is verified again and runs after a restart
    spool(&scratch, &scenes()[..1]);
    let listener = TcpListener::bind(scratch_address(&scratch)).expect("listen again");
    let Flown { summary, .. } = fly_with_uplink(&scratch, listener, Vec::new());
    assert_eq!(summary["model"], "model `vessels-s2` from upload 14", "{summary}");
    assert!(count(&summary, "detections") > 0, "{summary}");

    // a damaged installed file is caught at the next start; the manifest's model takes over
    let installed = std::fs::read_dir(scratch.path().join("var/flight/state/models")).expect("models").next();
    let installed = installed.expect("an installed file").expect("entry").path();
    let mut bytes = std::fs::read(&installed).expect("read");
    bytes[100] ^= 0x10;
    std::fs::write(&installed, bytes).expect("damage");
    let listener = TcpListener::bind(scratch_address(&scratch)).expect("listen again");
    let flown = fly_with_uplink(&scratch, listener, Vec::new());
    let refused = flown.products.iter().any(
        |p| matches!(&p.body, Body::Event(e) if e.source == EventSource::Model.name() && e.severity == Severity::Error),
    );
    assert!(refused, "no Error event from the model source: {}", stderr(&flown.output));
    assert_eq!(flown.summary["model"], "the manifest's model `vessels-s2`", "{}", flown.summary);
}

/// Flies the scratch mission for ten simulated minutes against a stand-in ground that sends
/// `uplink` and keeps what comes down: flight's output, its summary and the downlinked products.
fn fly_with_uplink(scratch: &Scratch, listener: TcpListener, uplink: Vec<u8>) -> Flown {
    let ground = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().expect("flight connects");
        answer_sign_on(&mut socket);
        socket.write_all(&uplink).expect("uplink");
        // everything until flight hangs up at its end: a loaded machine may hold a report back
        // for seconds (a model upload is verified and loaded before its report); the timeout only
        // keeps a broken flight from hanging the test
        socket.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        let (mut downlink, mut buffer) = (Vec::new(), vec![0u8; 1 << 16]);
        while let Ok(n @ 1..) = socket.read(&mut buffer) {
            downlink.extend_from_slice(&buffer[..n]);
        }
        downlink
    });
    let output = flight(scratch, &["--for", "10m", "--summary", "summary.json"]).output().expect("flight runs");
    assert!(output.status.success(), "{}", stderr(&output));
    let downlink = ground.join().expect("ground thread");
    let products = downlinked_products(scratch, &downlink);
    Flown { output, summary: read_summary(scratch), products }
}

struct Flown {
    output: std::process::Output,
    summary: serde_json::Value,
    products: Vec<Product>,
}

impl Flown {
    fn reported_checkpoint_error(&self) -> bool {
        checkpoint_error_among(&self.products)
    }

    /// The verification reports that came down, in their order.
    fn command_reports(&self) -> Vec<CommandReport> {
        let mut reports: Vec<CommandReport> = self
            .products
            .iter()
            .filter_map(|p| match &p.body {
                Body::CommandReport(report) => Some(report.clone()),
                _ => None,
            })
            .collect();
        reports.sort_by_key(CommandReport::order);
        reports
    }
}

/// The products in a CADU stream of the scratch mission's link, each once.
fn downlinked_products(scratch: &Scratch, downlink: &[u8]) -> Vec<Product> {
    let profile = LoadedGroundMission::load(&scratch.path().join("mission.toml")).expect("mission").link;
    let mut decoder = CaduDecoder::new(profile);
    let mut reassembler = SegmentReassembler::default();
    let mut products = Vec::new();
    let mut deliver = |delivered: Delivered<'_>| {
        if let Some((_, envelope)) = reassembler.push(delivered.packet)
            && let Ok(product) = Product::decode(&envelope)
            && !products.iter().any(|p: &Product| p.id == product.id)
        {
            products.push(product);
        }
    };
    decoder.push(downlink, &mut deliver);
    decoder.finish(&mut deliver);
    products
}

/// The ground's side of station sign-on, for a stand-in ground: flight's radio must sign on as the
/// mission's station.
fn answer_sign_on(socket: &mut std::net::TcpStream) {
    let mut hello = [0u8; station::HELLO_LEN];
    socket.read_exact(&mut hello).expect("hello");
    let hello = station::Hello::decode(&hello).expect("a sign-on");
    let challenge = station::Challenge::answer(&hello, &STATION_KEY).expect("challenge");
    socket.write_all(&challenge.encode()).expect("challenge");
    let mut proof = [0u8; station::PROOF_LEN];
    socket.read_exact(&mut proof).expect("proof");
    challenge.verify(&hello, &STATION_KEY, &proof).expect("flight signs on as the mission's station");
}

fn read_summary(scratch: &Scratch) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(scratch.path().join("summary.json")).expect("summary")).expect("summary JSON")
}

/// The ground address the scratch mission names.
fn scratch_address(scratch: &Scratch) -> String {
    let text = std::fs::read_to_string(scratch.path().join("mission.toml")).expect("mission");
    let line = text.lines().find(|l| l.starts_with("ground_address")).expect("ground_address");
    line.split('"').nth(1).expect("quoted").to_owned()
}

/// The payload's peak temperature in a flight summary.
fn payload_peak_c(summary: &serde_json::Value) -> f64 {
    let peaks = summary["peak_temperatures_c"].as_array().expect("peaks");
    let payload = peaks.iter().find(|p| p[0] == "payload").expect("a payload peak");
    payload[1].as_f64().expect("a temperature")
}

#[test]
fn the_scheduler_holds_a_hot_payload_under_its_limit_and_every_frame_is_still_processed() {
    let scratch = Scratch::new();
    let ground = Ground::for_flight(&scratch);
    // a payload limit 2 K above where it starts (1 K above, with the margin): a minute of full duty
    // would heat it about 2 K, so the scheduler's forecast limits the duty from its first slot,
    // however fast this machine runs the model (the plant heats by the inference time measured)
    let path = scratch.path().join("mission.toml");
    let text = std::fs::read_to_string(&path).expect("mission");
    std::fs::write(&path, text.replacen("max_temperature_c = 80.0", "max_temperature_c = 22.0", 1)).expect("write");
    spool(&scratch, &scenes());
    let output = flight(&scratch, &["--until-drained", "--summary", "summary.json"]).output().expect("flight runs");
    assert!(output.status.success(), "flight run failed: {}", stderr(&output));
    let summary = read_summary(&scratch);
    let peak = payload_peak_c(&summary);
    println!("payload peak {peak} C");
    assert!(peak <= 22.0, "the payload reached {peak} C (limit 22)");
    assert_eq!(count(&summary, "frames"), 3);
    assert_eq!(count(&summary, "tiles_late"), 0, "late tiles are detected with the reference's `detect`");
    assert_eq!(count(&summary, "products_acknowledged"), count(&summary, "products_made"), "{summary}");
    drop(ground);
    let archive = archive(&scratch);
    assert_eq!(archive.values().filter(|(k, _)| *k == Kind::Detections).count(), 3, "every frame was processed");
    // the scheduler said so: a Warning from the mode source, and housekeeping in THROTTLED
    let products = archived_products(&scratch, &archive);
    let mode_warning = products.iter().any(|p| {
        matches!(&p.body, Body::Event(e) if e.source == EventSource::Mode.name() && e.severity == Severity::Warning)
    });
    let throttled = products.iter().any(
        |p| matches!(&p.body, Body::Housekeeping(h) if h.values.iter().any(|(name, v)| name == "mode" && *v == 1.0)),
    );
    assert!(mode_warning && throttled, "no THROTTLED event ({mode_warning}) or housekeeping ({throttled})");
}

#[test]
fn with_late_tiles_screened_a_frame_past_its_pass_gets_the_screen_only_and_still_goes_down() {
    let scratch = Scratch::new();
    let ground = Ground::for_flight(&scratch);
    let path = scratch.path().join("mission.toml");
    let text = std::fs::read_to_string(&path)
        .expect("mission")
        .replacen("contacts = \"continuous\"", "contacts = \"predicted\"", 1)
        .replacen("deadline_lead_s = 600.0", "deadline_lead_s = 0.0", 1)
        .replacen("late_tiles = \"detect\"", "late_tiles = \"screen\"", 1);
    std::fs::write(&path, text).expect("write");
    spool(&scratch, &scenes());
    // a clock so fast that a pass (every 100 minutes) comes while a frame's tiles are still running
    let output = Command::new(binary("flight"))
        .args(["--log-format", "json", "run", "--mission", "mission.toml", "--speedup", "20000"])
        .args(["--until-drained", "--summary", "summary.json"])
        .current_dir(scratch.path())
        .output()
        .expect("flight runs");
    assert!(output.status.success(), "flight run failed: {}", stderr(&output));
    let summary = read_summary(&scratch);
    assert!(count(&summary, "tiles_late") > 0, "{summary}");
    assert_eq!(count(&summary, "frames"), 3);
    assert_eq!(count(&summary, "products_acknowledged"), count(&summary, "products_made"), "{summary}");
    drop(ground);
    let archive = archive(&scratch);
    let thumbnails = archive.values().filter(|(k, _)| *k == Kind::Thumbnail).count();
    assert_eq!(thumbnails, 3, "every frame still gets its thumbnail");
}

#[test]
fn the_cloud_screen_keeps_a_clouded_frame_from_the_detector_and_it_still_goes_down() {
    let scratch = Scratch::new();
    let ground = Ground::for_flight(&scratch);
    let path = scratch.path().join("mission.toml");
    let text = std::fs::read_to_string(&path).expect("mission");
    std::fs::write(
        &path,
        text.replacen("enabled = false\nmodel = \"clouds-s2\"", "enabled = true\nmodel = \"clouds-s2\"", 1),
    )
    .expect("write");
    // real Sentinel-2 reflectance of one place: date 0 under cloud, date 3 clear (one tile each)
    let dates = kestrel_flight::reference_data::cloudy_clear_dates().unwrap_or_else(|e| panic!("{e}"));
    spool(&scratch, &[("cloudy", dates.join("date-0")), ("clear", dates.join("date-3"))]);
    let summary = run_until_drained(&scratch);
    assert_eq!(count(&summary, "frames"), 2);
    assert_eq!(count(&summary, "tiles"), 2);
    assert_eq!(count(&summary, "tiles_clouded"), 1, "{summary}");
    assert_eq!(count(&summary, "products_acknowledged"), count(&summary, "products_made"), "{summary}");
    drop(ground);
    let archive = archive(&scratch);
    let of_kind = |kind: Kind| archive.values().filter(|(k, _)| *k == kind).count();
    assert_eq!(of_kind(Kind::Detections), 2, "both frames are reported");
    assert_eq!(of_kind(Kind::Thumbnail), 2, "the clouded frame is thumbnailed too");
}

#[test]
fn frames_of_identical_content_are_each_reported_as_the_duplicate_of_the_first() {
    let scratch = Scratch::new();
    let ground = Ground::for_flight(&scratch);
    let osbs = workspace_root().join("testdata/aerial/OSBS_029.tif");
    // queued together: the second and third come while the first is still to be processed
    spool(&scratch, &[("first.tif", osbs.clone()), ("second.tif", osbs.clone()), ("third.tif", osbs)]);
    let summary = run_until_drained(&scratch);
    assert_eq!(count(&summary, "frames"), 1, "{summary}");
    assert_eq!(count(&summary, "frames_duplicate"), 2, "{summary}");
    assert_eq!(count(&summary, "frames_quarantined"), 0, "{summary}");
    assert_eq!(count(&summary, "products_acknowledged"), count(&summary, "products_made"), "{summary}");
    drop(ground);
    let archive = archive(&scratch);
    let duplicates: Vec<String> =
        archived_events(&scratch, &archive).into_iter().filter(|e| e.contains("dropped as its duplicate")).collect();
    assert_eq!(duplicates.len(), 2, "an event per duplicate: {duplicates:?}");
    for name in ["second.tif", "third.tif"] {
        assert!(
            duplicates.iter().any(|e| e.contains(&format!("`{name}`")) && e.contains("(`first.tif`)")),
            "{name} is named as the duplicate of first.tif: {duplicates:?}"
        );
    }
}
