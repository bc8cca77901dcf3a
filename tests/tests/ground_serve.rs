//! `ground serve`, the real binary, with real TCP stations: each product stored once however many
//! stations deliver it, acknowledgements back up each socket, corrupt products and frames refused
//! and counted, and bad stations (garbage, dropped mid-CADU, slow) harming nobody else.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

mod station;

use kestrel_e2e::{Ground, OPERATOR, Scratch, signed_on_station};
use kestrel_link::noise::Rng;
use kestrel_link::product::{Body, Chip, CommandReport, CommandStage, Event, Product, Severity};
use kestrel_link::security::SecurityAssociation;
use kestrel_link::telecommand::TcReceiver;
use kestrel_link::uplink::{self, UplinkMessage};
use station::{
    Clients, TestDatabase, connected_stations, envelopes, get, operator_bearer, request, scratch_mission,
    settled_stats, stream,
};

/// The `Authorization` header value of the scratch mission's operator token.
fn start_ground(scratch: &Scratch) -> Ground {
    Ground::start(scratch.path(), &[])
}

fn start_ground_with(scratch: &Scratch, extra: &[&str]) -> Ground {
    Ground::start(scratch.path(), extra)
}

/// The same id always makes the same product.
fn products(ids: std::ops::Range<u64>) -> Vec<Product> {
    ids.map(|id| {
        let mut rng = Rng::new(id);
        let body = if id % 3 == 0 {
            // chips big enough to be segmented over several packets
            Body::Chip(Chip {
                frame_id: id,
                detection_index: 0,
                origin: [1, 2],
                size: [64, 64],
                png: (0..9000).map(|_| rng.next_u64() as u8).collect(),
            })
        } else {
            Body::Event(Event {
                time_ms: id as i64,
                severity: Severity::Info,
                source: "test".into(),
                message: format!("event {id}"),
            })
        };
        Product { id, created_ms: id as i64, body }
    })
    .collect()
}

/// Sends `bytes` as a station, in `chunk`-byte writes, and returns the ids acknowledged to it.
fn station(address: &str, bytes: &[u8], chunk: usize, pause: Duration, security: SecurityAssociation) -> Vec<u64> {
    let mut socket = signed_on_station(address);
    for part in bytes.chunks(chunk) {
        socket.write_all(part).expect("send");
        std::thread::sleep(pause);
    }
    socket.shutdown(Shutdown::Write).expect("half-close");
    socket.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut uplink = Vec::new();
    let _ = socket.read_to_end(&mut uplink);
    let mut receiver = TcReceiver::new(security, 42);
    let mut acked = Vec::new();
    for frame in receiver.push(&uplink) {
        if let UplinkMessage::Acknowledge { product_ids } = uplink::decode(&frame).expect("an uplink message") {
            acked.extend(product_ids);
        }
    }
    assert_eq!(receiver.stats().authentication_failures, 0);
    acked
}

#[test]
fn two_stations_one_archive_each_product_once_and_acknowledged() {
    let (scratch, profile) = scratch_mission();
    let ground = start_ground(&scratch);
    let security = profile.security.clone().expect("security");

    let first = products(0..60);
    let second = products(40..100); // 40..60 reach the ground through both stations
    let stream_a = stream(&profile, &envelopes(&first));
    let stream_b = stream(&profile, &envelopes(&second));

    // bad stations, at the same time: garbage, a connection dropped mid-CADU, a slow one
    let cadu = ground.cadu.clone();
    let garbage = std::thread::spawn(move || {
        let mut rng = Rng::new(3);
        let noise: Vec<u8> = (0..500_000).map(|_| rng.next_u64() as u8).collect();
        let mut socket = signed_on_station(&cadu);
        let _ = socket.write_all(&noise);
        // it stays to hear the uplink, as a station does: a socket closed at once would make the
        // service's next uplink write fail, and the noise still unread would go with it
        let _ = socket.shutdown(Shutdown::Write);
        let _ = socket.set_read_timeout(Some(Duration::from_secs(20)));
        let _ = socket.read_to_end(&mut Vec::new());
    });
    let cadu = ground.cadu.clone();
    let cut = stream_a[..stream_a.len() / 2 + 333].to_vec();
    let dropped = std::thread::spawn(move || {
        let mut socket = signed_on_station(&cadu);
        let _ = socket.write_all(&cut);
        drop(socket);
    });
    let (cadu, slow_stream, slow_security) =
        (ground.cadu.clone(), stream(&profile, &envelopes(&products(200..203))), security.clone());
    let slow = std::thread::spawn(move || station(&cadu, &slow_stream, 700, Duration::from_millis(5), slow_security));

    let (cadu, sec) = (ground.cadu.clone(), security.clone());
    let a = std::thread::spawn(move || station(&cadu, &stream_a, 64 * 1024, Duration::ZERO, sec));
    let (cadu, sec) = (ground.cadu.clone(), security.clone());
    let b = std::thread::spawn(move || station(&cadu, &stream_b, 10_000, Duration::ZERO, sec));
    let acked_a = a.join().expect("station a");
    let acked_b = b.join().expect("station b");
    let acked_slow = slow.join().expect("slow station");
    garbage.join().expect("garbage station");
    dropped.join().expect("dropped station");

    // every station relays the whole uplink stream, in ARSN order: its own acknowledgements and
    // the others' (which of those it hears depends on when it was connected)
    let acknowledged_to = |acked: &[u64], own: std::ops::Range<u64>| own.clone().all(|id| acked.contains(&id));
    assert!(acknowledged_to(&acked_a, 0..60), "every product of station a acknowledged: {acked_a:?}");
    assert!(acknowledged_to(&acked_b, 40..100), "duplicates are acknowledged too: {acked_b:?}");
    assert!(acknowledged_to(&acked_slow, 200..203), "{acked_slow:?}");

    let stats = settled_stats(&ground.http, 5);
    assert_eq!(stats["archive"]["products"], 103, "{stats:#}");
    let stations = stats["stations"].as_array().expect("stations");
    let total = |field: &str| stations.iter().map(|s| s["ingest"][field].as_u64().expect("count")).sum::<u64>();
    // 40..60 arrived twice, and the dropped connection may have delivered part of station a's set
    assert_eq!(total("products_stored"), 103);
    assert!(total("duplicates") >= 20, "{stats:#}");
    assert_eq!(total("products_rejected"), 0);
    let searched: u64 = stations.iter().map(|s| s["link"]["sync"]["bytes_searched_over"].as_u64().unwrap_or(0)).sum();
    assert!(searched >= 400_000, "the garbage was searched and dropped: {searched}");

    let (status, product) = get(&ground.http, "/api/products/44");
    assert_eq!(status, 200);
    assert_eq!(product["body"]["Event"]["message"], "event 44");
    let (status, _) = get(&ground.http, "/api/products/999");
    assert_eq!(status, 404);
}

#[test]
fn corrupt_products_and_frames_are_refused_and_counted() {
    let (scratch, profile) = scratch_mission();
    let ground = start_ground(&scratch);
    let security = profile.security.clone().expect("security");

    // a product whose content CRC fails, inside perfectly good (authenticated) frames
    let good = products(1..4);
    let mut list = envelopes(&good);
    let mut bad = products(7..8)[0].encode().bytes;
    bad[13] ^= 0x01; // the content CRC field
    list.push((good[0].body.kind().apid().value(), bad));
    let acked = station(&ground.cadu, &stream(&profile, &list), 8192, Duration::ZERO, security.clone());
    assert_eq!(acked, vec![1, 2, 3], "the corrupt product is not acknowledged");
    let (status, _) = get(&ground.http, "/api/products/7");
    assert_eq!(status, 404, "and never stored");

    // a different product under a stored id (one of the two is corrupt): the stored one is kept,
    // the newcomer acknowledged all the same (or flight would send it for ever) and set aside
    let mut twin = products(1..2);
    twin[0].created_ms += 1;
    let acked = station(&ground.cadu, &stream(&profile, &envelopes(&twin)), 8192, Duration::ZERO, security.clone());
    assert_eq!(acked, vec![1], "a conflict is acknowledged");

    // frames under another key, and a replayed frame on a station's stream
    let mut stranger = profile.clone();
    stranger.security = Some(SecurityAssociation::new(1, &[0x77; 32], false));
    let forged = stream(&stranger, &envelopes(&products(20..23)));
    assert!(station(&ground.cadu, &forged, 8192, Duration::ZERO, security.clone()).is_empty());
    let mut replayed = stream(&profile, &envelopes(&products(30..31)));
    let first_cadu = replayed[..profile.cadu_len()].to_vec();
    replayed.extend(first_cadu);
    assert_eq!(station(&ground.cadu, &replayed, 8192, Duration::ZERO, security), vec![30]);

    let stats = settled_stats(&ground.http, 4);
    let stations = stats["stations"].as_array().expect("stations");
    let link = |field: &str| stations.iter().map(|s| s["link"][field].as_u64().unwrap_or(0)).sum::<u64>();
    let ingest = |field: &str| stations.iter().map(|s| s["ingest"][field].as_u64().unwrap_or(0)).sum::<u64>();
    assert!(link("authentication_failures") >= 3, "{stats:#}");
    assert_eq!(link("replayed_frames"), 1, "{stats:#}");
    assert_eq!(ingest("products_rejected"), 1, "{stats:#}");
    assert_eq!(ingest("conflicts"), 1, "{stats:#}");
    assert_eq!(stats["archive"]["products"], 4);

    let (status, metrics) = {
        let mut socket = TcpStream::connect(&ground.http).expect("connect");
        write!(socket, "GET /metrics HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n").expect("request");
        let mut text = String::new();
        socket.read_to_string(&mut text).expect("read");
        (text.split(' ').nth(1).map(str::to_owned), text)
    };
    assert_eq!(status.as_deref(), Some("200"));
    assert!(metrics.contains("kestrel_archive_products 4"), "{metrics}");
}

#[test]
fn two_ground_processes_on_one_postgres_archive_store_each_product_once() {
    let database = TestDatabase::new();
    let (scratch, profile) = scratch_mission();
    let security = profile.security.clone().expect("security");
    let first = start_ground_with(&scratch, &["--store", &database.url]);
    let second = start_ground_with(&scratch, &["--store", &database.url]);

    // two stations of the same spacecraft: the same products, each to its own ground process
    let downlink = stream(&profile, &envelopes(&products(0..90)));
    let (a_address, b_address) = (first.cadu.clone(), second.cadu.clone());
    let (a_stream, a_security) = (downlink.clone(), security.clone());
    let a = std::thread::spawn(move || station(&a_address, &a_stream, 20_000, Duration::ZERO, a_security));
    let b = std::thread::spawn(move || station(&b_address, &downlink, 30_000, Duration::ZERO, security));
    let (acked_a, acked_b) = (a.join().expect("a"), b.join().expect("b"));
    // the archive's anti-replay marks are shared too: a frame one process has accepted is a
    // replay to the other if it arrives there later, so each product is acknowledged by one or both
    let mut acked: Vec<u64> = acked_a.iter().chain(&acked_b).copied().collect();
    acked.sort_unstable();
    acked.dedup();
    assert_eq!(acked, (0..90).collect::<Vec<_>>());

    let stored = |http: &str| {
        let stats = settled_stats(http, 1);
        let stations = stats["stations"].as_array().cloned().unwrap_or_default();
        (
            stats["archive"]["products"].as_u64(),
            stations.iter().map(|s| s["ingest"]["products_stored"].as_u64().unwrap_or(0)).sum::<u64>(),
        )
    };
    let (archive_a, stored_a) = stored(&first.http);
    let (archive_b, stored_b) = stored(&second.http);
    assert_eq!((archive_a, archive_b), (Some(90), Some(90)), "one archive, seen from both");
    assert_eq!(stored_a + stored_b, 90, "each product stored by exactly one process");
}

#[test]
fn two_ground_processes_on_one_postgres_archive_command_in_turn_without_refusing_each_other() {
    let database = TestDatabase::new();
    let (scratch, profile) = scratch_mission();
    let security = profile.security.clone().expect("security");
    let bearer = operator_bearer(&scratch);
    let grounds = [
        start_ground_with(&scratch, &["--store", &database.url]),
        start_ground_with(&scratch, &["--store", &database.url]),
    ];
    // the spacecraft's contact moves from one process's station to the other's and back, its
    // anti-replay state carried across (one receiver), products and commands flowing each time
    let mut receiver = TcReceiver::new(security, 42);
    let mut commanded = Vec::new();
    for (turn, ground) in [&grounds[0], &grounds[1], &grounds[0], &grounds[1]].into_iter().enumerate() {
        let first = turn as u64 * 30;
        let downlink = stream(&profile, &envelopes(&products(first..first + 30)));
        let (uplink, posted) = uplink_while_commanding(ground, &downlink, &bearer, 2, 5);
        let mut commands = Vec::new();
        for frame in receiver.push(&uplink) {
            if let UplinkMessage::Command { id, .. } = uplink::decode(&frame).expect("an uplink message") {
                commands.push(id);
            }
        }
        assert_eq!(receiver.stats().replayed_frames, 0, "turn {turn}: {:?}", receiver.stats());
        commands.sort_unstable();
        let mut posted = posted;
        posted.sort_unstable();
        assert_eq!(commands, posted, "turn {turn}: each command up once");
        commanded.extend(commands);
    }
    commanded.sort_unstable();
    commanded.dedup();
    assert_eq!(commanded.len(), 40, "audit ids unique across the processes");
}

#[test]
fn detections_export_as_geojson_over_http_and_from_the_archive() {
    use kestrel_link::product::{Detection, Detections};
    let (scratch, profile) = scratch_mission();
    let security = profile.security.clone().expect("security");
    let detection = |class: &str, lat: f64, lon: f64| Detection {
        class_id: 0,
        class_name: class.into(),
        score: 0.9,
        pixel_box: [1.0, 2.0, 3.0, 4.0],
        latitude: lat,
        longitude: lon,
    };
    let frame = Product {
        id: 500,
        created_ms: 1_000,
        body: Body::Detections(Detections {
            frame_id: 9,
            frame_time_ms: 1_000,
            model: "vessels".into(),
            detections: vec![
                detection("vessel", 33.6, -7.6),
                detection("vessel", 37.8, -122.4),
                detection("buoy", 33.6, -7.61),
            ],
            oriented: vec![],
        }),
    };
    {
        let ground = start_ground(&scratch);
        assert_eq!(
            station(&ground.cadu, &stream(&profile, &envelopes(&[frame])), 4096, Duration::ZERO, security),
            vec![500]
        );
        let (status, geojson) = get(&ground.http, "/api/detections.geojson?class=vessel&bbox=-8,33,-7,34");
        assert_eq!(status, 200);
        assert_eq!(geojson["type"], "FeatureCollection");
        let features = geojson["features"].as_array().expect("features");
        assert_eq!(features.len(), 1, "{geojson:#}");
        assert_eq!(features[0]["geometry"]["coordinates"], serde_json::json!([-7.6, 33.6]));
        assert_eq!(features[0]["properties"]["product_id"], 500);
        let (status, body) = get(&ground.http, "/api/detections?bbox=1,2,3");
        assert_eq!(status, 400, "{body}");
    }
    // the service is stopped: its embedded archive can be opened for export
    let output = kestrel_e2e::run(
        "ground",
        &["export", "--mission", "mission.toml", "--geojson", "out.geojson", "--class", "vessel"],
        scratch.path(),
    );
    assert!(output.status.success(), "{}", kestrel_e2e::stderr(&output));
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.path().join("out.geojson")).expect("written"))
            .expect("GeoJSON");
    assert_eq!(exported["features"].as_array().map(Vec::len), Some(2));
}

#[test]
fn a_model_upload_goes_up_as_segments_then_its_install_command_under_one_audit_id() {
    let (scratch, profile) = scratch_mission();
    let security = profile.security.clone().expect("security");
    let bearer = operator_bearer(&scratch);
    // the mission's model verifying key made for the test, and the file signed with it
    let secret = scratch.path().join("test-signing.key");
    let public = kestrel_tools::signing::generate_key_pair(&secret).expect("key pair");
    std::fs::write(scratch.path().join("models/model-signing.pub"), public).expect("verifying key");
    let ground = start_ground(&scratch);
    let file: String = (0..5000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    std::fs::write(scratch.path().join("upload.onnx"), &file).expect("model file");
    let digest = kestrel_flight::models::file_sha256(&scratch.path().join("upload.onnx")).expect("digest");
    let signed = kestrel_tools::signing::sign_digest(&secret, &digest).expect("sign");
    let signature = kestrel_flight::models::hex(&signed);
    let path = format!("/api/models/vessels-s2?signature={signature}");
    assert_eq!(request(&ground.http, "POST", &path, &[], &file).0, 401, "no token");
    let headers = [("Authorization", bearer.as_str())];
    let (status, reply) = request(&ground.http, "POST", "/api/models/vessels-s2?signature=abc", &headers, &file);
    assert_eq!(status, 400, "a short signature: {reply}");
    let (status, _) =
        request(&ground.http, "POST", &format!("/api/models/..%2Fx?signature={signature}"), &headers, &file);
    assert_eq!(status, 400, "a name that is not a model name");

    let mut station = connected_stations(&ground, 1).remove(0);
    // signatures that flight would refuse never go up: all zeros, and another file's
    for refused in [
        "00".repeat(64),
        kestrel_flight::models::hex(&kestrel_tools::signing::sign_digest(&secret, &[7; 32]).expect("sign")),
    ] {
        let (status, reply) =
            request(&ground.http, "POST", &format!("/api/models/vessels-s2?signature={refused}"), &headers, &file);
        assert_eq!(status, 400, "{reply}");
    }
    let (status, reply) = request(&ground.http, "POST", &path, &headers, &file);
    assert_eq!(
        (status, reply["awaiting_confirmation"].as_bool()),
        (202, Some(true)),
        "installing is hazardous: {reply}"
    );
    let id = reply["id"].as_u64().expect("audit id");
    let confirm = format!("/api/commands/{id}/confirm");
    assert_eq!(request(&ground.http, "POST", &confirm, &[], "").0, 401, "confirming needs a token");
    let (status, reply) = request(&ground.http, "POST", &confirm, &headers, "");
    assert_eq!((status, reply["stations"].as_u64()), (202, Some(1)), "{reply}");
    station.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut receiver = TcReceiver::new(security, 42);
    let mut buffer = [0u8; 4096];
    let (mut received, mut install) = (Vec::new(), None);
    while install.is_none() {
        let n = station.read(&mut buffer).expect("frames arrive");
        for frame in receiver.push(&buffer[..n]) {
            match uplink::decode(&frame).expect("decodes") {
                UplinkMessage::UploadSegment { transfer, offset, bytes } => {
                    assert_eq!((transfer, offset), (id, received.len() as u64));
                    received.extend(bytes);
                }
                UplinkMessage::Command { id: command_id, command } => install = Some((command_id, command)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(received, file.as_bytes());
    let Some((command_id, uplink::Telecommand::InstallModel { transfer, model, length, sha256, signature: sent })) =
        install
    else {
        panic!("an InstallModel command follows the segments")
    };
    assert_eq!((command_id, transfer, model.as_str(), length), (id, id, "vessels-s2", 5000));
    assert_eq!(sent, signed.to_vec());
    let digest = kestrel_flight::models::hex(&sha256);
    let (_, trail) = request(&ground.http, "GET", "/api/commands", &headers, "");
    assert!(
        trail.as_array().expect("entries").iter().any(|e| e["id"] == id
            && e["command"].as_str().is_some_and(|c| c.contains("UploadModel") && c.contains(&digest))),
        "{trail}"
    );
}

#[test]
fn commands_need_the_operator_token_are_audited_and_go_up_every_station() {
    let (scratch, profile) = scratch_mission();
    let security = profile.security.clone().expect("security");
    let bearer = operator_bearer(&scratch);
    let ground = start_ground(&scratch);
    let command = r#"{"command": {"SetMode": {"mode": "Throttled"}}}"#;

    let (status, _) = request(&ground.http, "POST", "/api/commands", &[], command);
    assert_eq!(status, 401, "no token");
    let (status, _) =
        request(&ground.http, "POST", "/api/commands", &[("Authorization", "Bearer not-the-token")], command);
    assert_eq!(status, 401, "wrong token");
    let (status, _) = request(&ground.http, "GET", "/api/commands", &[], "");
    assert_eq!(status, 401, "the audit trail needs the token too");

    let (status, reply) = request(&ground.http, "POST", "/api/commands", &[("Authorization", &bearer)], command);
    assert_eq!((status, reply["queued"].as_bool()), (202, Some(true)), "no station: it waits: {reply}");
    // cancelled before any station comes: it never goes up
    let cancel = format!("/api/commands/{}", reply["id"].as_u64().expect("an id"));
    assert_eq!(request(&ground.http, "DELETE", &cancel, &[], "").0, 401, "cancelling needs the token");
    assert_eq!(request(&ground.http, "DELETE", &cancel, &[("Authorization", &bearer)], "").0, 200);
    assert_eq!(request(&ground.http, "DELETE", &cancel, &[("Authorization", &bearer)], "").0, 404, "cancelled already");

    // two stations connected: both relay the same frame
    let mut stations = connected_stations(&ground, 2);
    // the audit names the operator the token belongs to, whatever a header claims
    let headers = [("Authorization", bearer.as_str()), ("X-Operator", "mallory")];
    let (status, reply) = request(&ground.http, "POST", "/api/commands", &headers, command);
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["stations"], 2);
    let id = reply["id"].as_u64().expect("audit id");
    for station in &mut stations {
        station.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut receiver = TcReceiver::new(security.clone(), 42);
        let mut buffer = [0u8; 4096];
        let frames = loop {
            let n = station.read(&mut buffer).expect("a frame arrives");
            let frames = receiver.push(&buffer[..n]);
            if !frames.is_empty() {
                break frames;
            }
        };
        let expected =
            UplinkMessage::Command { id, command: uplink::Telecommand::SetMode { mode: uplink::Mode::Throttled } };
        assert_eq!(uplink::decode(&frames[0]).expect("decodes"), expected);
    }

    let (status, trail) = request(&ground.http, "GET", "/api/commands", &[("Authorization", &bearer)], "");
    assert_eq!(status, 200);
    // the scheme in any case (RFC 7235), and a page over the maximum refused
    let lower = bearer.replacen("Bearer", "bearer", 1);
    assert_eq!(request(&ground.http, "GET", "/api/commands", &[("Authorization", &lower)], "").0, 200, "bearer");
    let over = format!("/api/commands?limit={}", kestrel_ground::http::MAX_PAGE + 1);
    assert_eq!(request(&ground.http, "GET", &over, &[("Authorization", &bearer)], "").0, 400, "{over}");
    let trail = trail.as_array().expect("entries");
    assert!(
        trail.iter().any(|e| e["operator"] == OPERATOR
            && e["outcome"].as_str().is_some_and(|o| o.contains("released through 2 station(s)"))),
        "{trail:?}"
    );
    assert!(
        trail.iter().any(|e| e["outcome"].as_str().is_some_and(|o| o.contains("no station connected"))),
        "{trail:?}"
    );
    assert!(trail.iter().all(|e| e["operator"] == OPERATOR), "{trail:?}");

    let big = format!(r#"{{"command": {{"SetParameter": {{"name": "{}", "value": 1.0}}}}}}"#, "x".repeat(70_000));
    let (status, _) = request(&ground.http, "POST", "/api/commands", &[("Authorization", &bearer)], &big);
    assert_eq!(status, 413, "oversized body refused");
    let (status, _) = request(&ground.http, "POST", "/api/commands", &[("Authorization", &bearer)], "{not json");
    assert!((400..500).contains(&status), "malformed body refused: {status}");
}

#[test]
fn a_command_the_dictionary_refuses_is_answered_400_naming_why_and_nothing_goes_up() {
    let (scratch, _) = scratch_mission();
    let bearer = operator_bearer(&scratch);
    let ground = start_ground(&scratch);
    let (status, dictionary) = get(&ground.http, "/api/dictionary");
    assert_eq!(status, 200);
    let duty = dictionary["parameters"].as_array().expect("parameters").iter().find(|p| p["name"] == "max_duty");
    assert_eq!(duty.map(|p| (p["min"].as_f64(), p["max"].as_f64())), Some((Some(0.0), Some(1.0))), "{dictionary}");

    let _stations = connected_stations(&ground, 1);
    let post = |body: &str| request(&ground.http, "POST", "/api/commands", &[("Authorization", bearer.as_str())], body);
    let set = |name: &str, value: &str| {
        format!(r#"{{"command": {{"SetParameter": {{"name": "{name}", "value": {value}}}}}}}"#)
    };
    for (body, says) in [
        (set("max_dutty", "0.5"), "no parameter `max_dutty`"),
        (set("max_duty", "1.5"), "`max_duty` must be within 0 to 1"),
        (set("chip_size_px", "64.5"), "`chip_size_px` must be a whole number"),
        (
            r#"{"command": {"TimeTagged": {"commands": [[1700000000000, {"SetParameter": {"name": "max_duty", "value": -1}}]]}}}"#
                .to_owned(),
            "the command at 1700000000000",
        ),
    ] {
        let (status, reply) = post(&body);
        assert_eq!(status, 400, "{body}: {reply}");
        assert!(reply["error"].as_str().is_some_and(|e| e.contains(says)), "{body}: {reply}");
    }
    let (_, trail) = request(&ground.http, "GET", "/api/commands", &[("Authorization", bearer.as_str())], "");
    assert_eq!(trail.as_array().map(Vec::len), Some(0), "nothing audited, nothing sent: {trail}");
    let (status, reply) = post(&set("max_duty", "0.5"));
    assert_eq!(status, 202, "{reply}");
}

#[test]
fn a_commands_stages_come_from_the_audit_and_the_spacecrafts_reports_in_either_archive() {
    let database = TestDatabase::new();
    for store in [None, Some(database.url.as_str())] {
        let (scratch, profile) = scratch_mission();
        let bearer = operator_bearer(&scratch);
        let ground = match store {
            None => start_ground(&scratch),
            Some(url) => start_ground_with(&scratch, &["--store", url]),
        };
        let auth = [("Authorization", bearer.as_str())];
        let post = |body: &str| request(&ground.http, "POST", "/api/commands", &auth, body).1["id"].as_u64();
        let ran = post(r#"{"command": {"SetMode": {"mode": "Throttled"}}}"#).expect("an audit id");
        let refused = post(r#"{"command": {"RequestTile": {"frame_id": 5, "x": 0, "y": 0, "width": 8, "height": 8}}}"#)
            .expect("an audit id");
        // the spacecraft's reports come down (the test is the spacecraft)
        let report = |id: u64, command_id: u64, time_ms: i64, stage: CommandStage| Product {
            id,
            created_ms: time_ms,
            body: Body::CommandReport(CommandReport { command_id, time_ms, tagged_at: None, stage }),
        };
        let completed = CommandStage::Completed { detail: "mode set to Throttled".into() };
        let reason = "frame 5 is not on board".to_owned();
        let reports = [
            report(9_001, ran, 1_000, completed),
            report(9_002, ran, 1_000, CommandStage::Accepted),
            report(9_003, refused, 1_001, CommandStage::Refused { reason: reason.clone() }),
        ];
        let security = profile.security.clone().expect("security");
        station(&ground.cadu, &stream(&profile, &envelopes(&reports)), 4096, Duration::ZERO, security);
        settled_stats(&ground.http, 1);

        let stages = |id: u64| {
            let (status, reply) = request(&ground.http, "GET", &format!("/api/commands/{id}"), &auth, "");
            assert_eq!(status, 200, "{reply}");
            let stages = reply["stages"].as_array().cloned().unwrap_or_default();
            stages.iter().map(|s| s["stage"].as_str().unwrap_or_default().to_owned()).collect::<Vec<_>>()
        };
        // queued (no station), sent when the reporting station signed on, then the reports
        assert_eq!(stages(ran), ["submitted", "queued", "released", "accepted", "completed"], "{store:?}");
        assert_eq!(stages(refused), ["submitted", "queued", "released", "refused"], "{store:?}");
        let (_, reply) = request(&ground.http, "GET", &format!("/api/commands/{refused}"), &auth, "");
        let last = &reply["stages"][3];
        assert_eq!((last["reason"].as_str(), last["spacecraft_ms"].as_i64()), (Some(reason.as_str()), Some(1_001)));
        let released = &reply["stages"][2];
        assert_eq!(released["stations"], 1, "{reply}");
        assert!(released["first_arsn"].as_u64().is_some_and(|a| a > 0), "{reply}");
        assert_eq!(released["first_arsn"], released["last_arsn"], "one frame: {reply}");
        assert!(reply["command"].as_str().is_some_and(|c| c.contains("RequestTile")), "{reply}");
        assert_eq!(request(&ground.http, "GET", "/api/commands/987654", &auth, "").0, 404);
        assert_eq!(request(&ground.http, "GET", &format!("/api/commands/{ran}"), &[], "").0, 401);
    }
}

/// The command ids a station hears until `quiet` passes without a byte.
fn commands_heard(station: &mut TcpStream, security: SecurityAssociation, quiet: Duration) -> Vec<u64> {
    station.set_read_timeout(Some(quiet)).expect("timeout");
    let (mut receiver, mut buffer, mut heard) = (TcReceiver::new(security, 42), [0u8; 4096], Vec::new());
    while let Ok(n @ 1..) = station.read(&mut buffer) {
        for frame in receiver.push(&buffer[..n]) {
            if let UplinkMessage::Command { id, .. } = uplink::decode(&frame).expect("an uplink message") {
                heard.push(id);
            }
        }
    }
    heard
}

#[test]
fn a_queued_command_goes_up_at_the_next_contact_once_and_a_cancelled_one_never() {
    let database = TestDatabase::new();
    let (scratch, profile) = scratch_mission();
    let security = profile.security.clone().expect("security");
    let bearer = operator_bearer(&scratch);
    let auth = [("Authorization", bearer.as_str())];
    // two processes on one archive: the queue is the archive's, whichever process the next
    // station signs on to sends it
    let (first, second) = (
        start_ground_with(&scratch, &["--store", &database.url]),
        start_ground_with(&scratch, &["--store", &database.url]),
    );
    let post = |ground: &Ground, body: &str| {
        let (status, reply) = request(&ground.http, "POST", "/api/commands", &auth, body);
        assert_eq!((status, reply["queued"].as_bool()), (202, Some(true)), "{reply}");
        reply["id"].as_u64().expect("an id")
    };
    let kept = post(&first, r#"{"command": {"SetMode": {"mode": "Throttled"}}}"#);
    let cancelled = post(&first, r#"{"command": {"SetParameter": {"name": "max_duty", "value": 0.5}}}"#);
    let (_, queue) = request(&second.http, "GET", "/api/commands/queue", &auth, "");
    let ids: Vec<u64> = queue.as_array().expect("entries").iter().filter_map(|e| e["id"].as_u64()).collect();
    assert_eq!(ids, [kept, cancelled], "the queue, seen from the other process");
    assert_eq!(request(&second.http, "DELETE", &format!("/api/commands/{cancelled}"), &auth, "").0, 200);

    let mut station = connected_stations(&second, 1).remove(0);
    assert_eq!(commands_heard(&mut station, security.clone(), Duration::from_secs(2)), [kept]);
    let (_, queue) = request(&first.http, "GET", "/api/commands/queue", &auth, "");
    assert_eq!(queue.as_array().map(Vec::len), Some(0), "{queue}");
    // the next contact, through the other process, hears nothing more
    let mut later = connected_stations(&first, 1).remove(0);
    assert!(commands_heard(&mut later, security, Duration::from_secs(1)).is_empty());
    let (_, stages) = request(&first.http, "GET", &format!("/api/commands/{cancelled}"), &auth, "");
    assert_eq!(
        (stages["stages"][2]["stage"].as_str(), stages["stages"][2]["by"].as_str()),
        (Some("cancelled"), Some(OPERATOR)),
        "{stages}"
    );
}

/// The stage names of command `id`'s life.
fn stage_names(ground: &Ground, bearer: &str, id: u64) -> Vec<String> {
    let (status, reply) =
        request(&ground.http, "GET", &format!("/api/commands/{id}"), &[("Authorization", bearer)], "");
    assert_eq!(status, 200, "{reply}");
    let stages = reply["stages"].as_array().cloned().unwrap_or_default();
    stages.iter().map(|s| s["stage"].as_str().unwrap_or_default().to_owned()).collect()
}

#[test]
fn a_hazardous_command_goes_up_only_once_an_operator_confirms_it() {
    let (scratch, profile) = scratch_mission();
    let security = profile.security.clone().expect("security");
    let bearer = operator_bearer(&scratch);
    let auth = [("Authorization", bearer.as_str())];
    let ground = start_ground(&scratch);
    let mut station = connected_stations(&ground, 1).remove(0);
    let post = |body: &str| {
        let (status, reply) = request(&ground.http, "POST", "/api/commands", &auth, body);
        assert_eq!((status, reply["awaiting_confirmation"].as_bool()), (202, Some(true)), "{body}: {reply}");
        reply["id"].as_u64().expect("an id")
    };
    let safe = post(r#"{"command": {"SetMode": {"mode": "Safe"}}}"#);
    // hazardous inside a time-tagged sequence too; cancelled, it can no longer be confirmed
    let tagged = post(r#"{"command": {"TimeTagged": {"commands": [[1700000000000, {"SetMode": {"mode": "Safe"}}]]}}}"#);
    let (_, awaiting) = request(&ground.http, "GET", "/api/commands/awaiting", &auth, "");
    let ids: Vec<u64> = awaiting.as_array().expect("entries").iter().filter_map(|e| e["id"].as_u64()).collect();
    assert_eq!(ids, [safe, tagged], "{awaiting}");
    assert!(commands_heard(&mut station, security.clone(), Duration::from_secs(1)).is_empty(), "nothing goes up");
    assert_eq!(request(&ground.http, "DELETE", &format!("/api/commands/{tagged}"), &auth, "").0, 200);
    assert_eq!(request(&ground.http, "POST", &format!("/api/commands/{tagged}/confirm"), &auth, "").0, 404);

    let (status, reply) = request(&ground.http, "POST", &format!("/api/commands/{safe}/confirm"), &auth, "");
    assert_eq!((status, reply["stations"].as_u64()), (202, Some(1)), "{reply}");
    assert_eq!(commands_heard(&mut station, security, Duration::from_secs(2)), [safe], "up once it is confirmed");
    assert_eq!(request(&ground.http, "POST", &format!("/api/commands/{safe}/confirm"), &auth, "").0, 404, "once");
    assert_eq!(stage_names(&ground, &bearer, safe), ["submitted", "awaiting_confirmation", "confirmed", "released"]);
    assert_eq!(stage_names(&ground, &bearer, tagged), ["submitted", "awaiting_confirmation", "cancelled"]);
}

#[test]
fn a_released_command_with_no_report_times_out_after_the_configured_contacts() {
    let (scratch, _) = scratch_mission();
    let text = std::fs::read_to_string(scratch.path().join("mission.toml")).expect("mission");
    let text = text.replace("command_timeout_contacts = 3", "command_timeout_contacts = 2");
    std::fs::write(scratch.path().join("mission.toml"), text).expect("write mission");
    let bearer = operator_bearer(&scratch);
    let ground = start_ground(&scratch);
    let station = connected_stations(&ground, 1).remove(0);
    let body = r#"{"command": {"SetMode": {"mode": "Throttled"}}}"#;
    let (status, reply) = request(&ground.http, "POST", "/api/commands", &[("Authorization", bearer.as_str())], body);
    assert_eq!(status, 202, "{reply}");
    let id = reply["id"].as_u64().expect("an id");
    drop(station);
    // the contact it went up in does not count; the next two do
    let timed_out = || stage_names(&ground, &bearer, id).last().map(String::as_str) == Some("timed_out");
    std::thread::sleep(Duration::from_millis(5));
    drop(connected_stations(&ground, 1));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!timed_out(), "one contact since: {:?}", stage_names(&ground, &bearer, id));
    drop(connected_stations(&ground, 1));
    // the service counts a contact once it has served the sign-on
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !timed_out() {
        assert!(std::time::Instant::now() < deadline, "two contacts since: {:?}", stage_names(&ground, &bearer, id));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The uplink a station hears while it delivers `downlink` in small writes and `clients` post
/// `per_client` commands each to `http`: every uplink byte until the service closes the
/// connection, and the audit ids the posts returned.
fn uplink_while_commanding(
    ground: &Ground,
    downlink: &[u8],
    bearer: &str,
    clients: usize,
    per_client: usize,
) -> (Vec<u8>, Vec<u64>) {
    let mut socket = signed_on_station(&ground.cadu);
    let mut reader = socket.try_clone().expect("a reading half");
    reader.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let heard = std::thread::spawn(move || {
        let mut uplink = Vec::new();
        let _ = reader.read_to_end(&mut uplink);
        uplink
    });
    let posts = Clients::post(&[&ground.http], bearer, clients, per_client, |n| {
        format!(r#"{{"SetParameter": {{"name": "max_duty", "value": {}}}}}"#, n as f64 / 1000.0)
    });
    // products flow down (and acknowledgements up) while the commands are posted
    for part in downlink.chunks(1024) {
        socket.write_all(part).expect("send");
        std::thread::sleep(Duration::from_micros(100));
    }
    let ids = posts.ids();
    socket.shutdown(Shutdown::Write).expect("half-close");
    (heard.join().expect("reader"), ids)
}

/// The commands (ids) and acknowledged products in `uplink`, checking every frame is fresh.
fn commands_and_acknowledgements(uplink: &[u8], security: SecurityAssociation) -> (Vec<u64>, Vec<u64>) {
    let mut receiver = TcReceiver::new(security, 42);
    let (mut commands, mut acked) = (Vec::new(), Vec::new());
    for frame in receiver.push(uplink) {
        match uplink::decode(&frame).expect("an uplink message") {
            UplinkMessage::Command { id, .. } => commands.push(id),
            UplinkMessage::Acknowledge { product_ids } => acked.extend(product_ids),
            other => panic!("unexpected {other:?}"),
        }
    }
    let stats = receiver.stats();
    assert_eq!((stats.replayed_frames, stats.authentication_failures), (0, 0), "every frame fresh: {stats:?}");
    (commands, acked)
}

#[test]
fn commands_and_acknowledgements_leave_in_arsn_order_so_none_is_refused_as_a_replay() {
    let (scratch, profile) = scratch_mission();
    let security = profile.security.clone().expect("security");
    let bearer = operator_bearer(&scratch);
    let ground = start_ground(&scratch);
    let downlink = stream(&profile, &envelopes(&products(0..600)));
    let (uplink, mut posted) = uplink_while_commanding(&ground, &downlink, &bearer, 8, 40);
    let (mut commands, mut acked) = commands_and_acknowledgements(&uplink, security);
    commands.sort_unstable();
    posted.sort_unstable();
    assert_eq!(commands, posted, "each command up once");
    acked.sort_unstable();
    acked.dedup();
    assert_eq!(acked, (0..600).collect::<Vec<_>>());
}

#[test]
fn the_openapi_document_lists_every_path_the_service_answers_and_images_come_back_as_png() {
    let (scratch, profile) = scratch_mission();
    let ground = start_ground(&scratch);
    let security = profile.security.clone().expect("security");
    let chip = products(3..4); // id 3 is a chip
    assert_eq!(station(&ground.cadu, &stream(&profile, &envelopes(&chip)), 4096, Duration::ZERO, security), vec![3]);

    let (status, document) = get(&ground.http, "/api/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    for (path, methods) in kestrel_ground::openapi::PATHS {
        for method in *methods {
            assert!(document["paths"][path][method].is_object(), "{method} {path} is not documented");
        }
        let concrete = path.replace("{id}", "3").replace("{frame_id}", "3").replace("{index}", "0");
        let (status, _) = request(&ground.http, "GET", &concrete, &[], "");
        assert_ne!(status, 404, "GET {concrete} is documented but not served");
    }
    assert_eq!(document["paths"].as_object().map(|p| p.len()), Some(kestrel_ground::openapi::PATHS.len()));

    let mut socket = TcpStream::connect(&ground.http).expect("connect");
    write!(socket, "GET /api/products/3/image HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n").expect("request");
    let mut response = Vec::new();
    socket.read_to_end(&mut response).expect("response");
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("headers") + 4;
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    assert!(head.starts_with("http/1.1 200") && head.contains("content-type: image/png"), "{head}");
    let Body::Chip(sent) = &chip[0].body else { panic!("a chip") };
    assert_eq!(&response[split..], sent.png.as_slice(), "the chip's bytes, unchanged");
    let (status, _) = get(&ground.http, "/api/products/999/image");
    assert_eq!(status, 404);
}

#[test]
fn the_console_is_served_and_its_queries_refuse_bad_parameters() {
    let (scratch, _) = scratch_mission();
    let ground = start_ground(&scratch);
    let page = |path: &str| {
        let mut socket = TcpStream::connect(&ground.http).expect("connect");
        write!(socket, "GET {path} HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n").expect("request");
        let mut response = String::new();
        socket.read_to_string(&mut response).expect("response");
        response
    };
    let index = page("/");
    assert!(index.starts_with("HTTP/1.1 200") && index.contains("/console/console.js"), "{index}");
    assert!(page("/console/console.js").contains("kestrelConsole"));
    assert!(page("/console/land-50m.json").contains("\"Topology\""), "the coastline is bundled");
    for trick in ["/console/..%2F..%2Fmission.toml", "/console/../mission.toml", "/console/mission.toml"] {
        assert!(page(trick).starts_with("HTTP/1.1 404"), "{trick}");
    }
    for bad in [
        "/api/detections/cells?cell_deg=0",
        "/api/detections/cells?cell_deg=1&bbox=1,2,3",
        "/api/passes?from_ms=10&to_ms=5",
        "/api/track?from_ms=0&to_ms=999999999999",
        "/api/passes?from_ms=-9223372036854775808",
        "/api/track?from_ms=-9223372036854775808&to_ms=9223372036854775807",
        // the year 9999, for a day
        "/api/track?from_ms=253370764800000&to_ms=253370851200000",
        "/api/passes?from_ms=253370764800000&to_ms=253370851200000",
        "/api/events?to_ms=253370764800000",
        // not a box on the Earth
        "/api/detections?bbox=NaN,0,10,10",
        "/api/detections?bbox=0,0,inf,10",
        "/api/detections.geojson?bbox=0,0,10,200",
        "/api/detections/cells?cell_deg=1&bbox=0,10,10,-10",
        // above the documented maximum page
        "/api/detections?limit=10001",
        "/api/products?limit=10001",
        "/api/events?limit=10001",
        "/api/telemetry?limit=10001",
        "/api/frames?limit=10001",
    ] {
        let (status, body) = get(&ground.http, bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{bad} says why");
    }
    let (status, passes) = get(&ground.http, "/api/passes?from_ms=1773964800000&to_ms=1774051200000");
    assert_eq!(status, 200);
    let names: std::collections::BTreeSet<_> =
        passes.as_array().expect("passes").iter().filter_map(|p| p["station"].as_str()).collect();
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["Inuvik", "Svalbard"], "a day over both stations");
    let (_, track) = get(&ground.http, "/api/track?from_ms=1773964800000&to_ms=1773971000000&step_ms=60000");
    assert_eq!(track.as_array().map(Vec::len), Some(104), "a point a minute, both ends included");
}

/// The soft limit on this process's open files (`ulimit -Sn`), from `/proc/self/limits`.
fn soft_open_file_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let line = limits.lines().find_map(|l| l.strip_prefix("Max open files")).expect("the open-file limit");
    line.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX)
}

/// The status of `GET path`, if the whole answer came within `bound`.
fn status_within(http: &str, path: &str, bound: Duration) -> Result<u16, String> {
    let address: std::net::SocketAddr = http.parse().expect("address");
    let deadline = std::time::Instant::now() + bound;
    let mut socket = TcpStream::connect_timeout(&address, bound).map_err(|e| format!("connect: {e}"))?;
    let left = deadline.saturating_duration_since(std::time::Instant::now()).max(Duration::from_millis(1));
    socket.set_read_timeout(Some(left)).expect("timeout");
    socket
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: kestrel\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut bytes = Vec::new();
    socket.read_to_end(&mut bytes).map_err(|e| format!("no whole answer within {bound:?}: {e}"))?;
    let answer = String::from_utf8_lossy(&bytes);
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("not an HTTP answer: {answer:?}"))
}

/// Issue 23, item 6: requests that never finish their headers used to stay open for ever, and
/// 1,100 of them made the API unreachable. The ground runs with the open-file limit a systemd
/// service gets (1,024), as in the probe.
#[test]
fn eleven_hundred_connections_that_never_finish_their_headers_leave_the_api_answering() {
    const IDLE: usize = 1_100;
    let files = soft_open_file_limit();
    assert!(files >= 1_300, "this test holds {IDLE} sockets open: raise `ulimit -n` (now {files}) to 1,300 or more");
    let (scratch, _) = scratch_mission();
    let ground = Ground::start_with_open_files(scratch.path(), 1024, &[]);
    assert_eq!(status_within(&ground.http, "/api/stats", Duration::from_secs(15)), Ok(200));
    let address: std::net::SocketAddr = ground.http.parse().expect("address");
    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let mut socket = TcpStream::connect_timeout(&address, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("idle connection {i} could not connect: {e}"));
        let partial: &[u8] =
            if i % 2 == 0 { b"GET /api/sta" } else { b"GET /api/stats HTTP/1.1\r\nHost: kestrel\r\nX-Never-Ends: " };
        // the ground may have closed it already to make room for a newer one
        let _ = socket.write_all(partial);
        idle.push(socket);
    }
    let opened = std::time::Instant::now();
    // the API answers while they are all open on this side (a watchdog, not a speed requirement)
    assert_eq!(
        status_within(&ground.http, "/api/stats", Duration::from_secs(15)),
        Ok(200),
        "the API did not answer with {IDLE} connections waiting"
    );
    // and the ground lets none of them stay: each was closed to make room for a newer one, or at
    // the 10 s header timeout
    let deadline = opened + Duration::from_secs(25);
    for (i, mut socket) in idle.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(std::time::Instant::now()).max(Duration::from_millis(1));
        socket.set_read_timeout(Some(left)).expect("timeout");
        let mut bytes = Vec::new();
        if let Err(e) = socket.read_to_end(&mut bytes) {
            assert!(
                !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
                "idle connection {i} was still open {:?} after the last one was opened",
                opened.elapsed()
            );
        }
    }
    assert_eq!(status_within(&ground.http, "/api/stats", Duration::from_secs(15)), Ok(200));
}
