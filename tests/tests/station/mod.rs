//! What the ground station's end-to-end tests share: a scratch mission, CADU streams carrying
//! products, station connections, and HTTP requests to the service.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kestrel_e2e::{Ground, Scratch, signed_on_station};
use kestrel_ground::config::LoadedGroundMission;
use kestrel_link::encoder::{CaduEncoder, EncoderState};
use kestrel_link::packet::SequenceCounters;
use kestrel_link::product::Product;
use kestrel_link::profile::{LinkProfile, virtual_channel};

pub fn scratch_mission() -> (Scratch, LinkProfile) {
    let scratch = Scratch::new();
    let text = scratch.reference.replace("127.0.0.1:5600", "127.0.0.1:0").replace("127.0.0.1:8600", "127.0.0.1:0");
    std::fs::write(scratch.path().join("mission.toml"), text).expect("write mission");
    let profile = LoadedGroundMission::load(&scratch.path().join("mission.toml")).expect("mission").link;
    (scratch, profile)
}

/// The CADU stream carrying products, their envelopes as given (so a test can corrupt one). Each
/// stream goes on with the frame sequence numbers where the last one left off, as one spacecraft's
/// downlink does: the ground refuses a number it has accepted before as a replay.
pub fn stream(profile: &LinkProfile, envelopes: &[(u16, Vec<u8>)]) -> Vec<u8> {
    Downlink::new(profile).cadus(envelopes)
}

/// One spacecraft's downlink on one connection: its frame and packet counts go on from one batch
/// of products to the next.
pub struct Downlink {
    encoder: CaduEncoder,
    counters: SequenceCounters,
}

impl Downlink {
    pub fn new(profile: &LinkProfile) -> Self {
        static NEXT_ARSN: AtomicU64 = AtomicU64::new(1);
        let state =
            EncoderState { next_arsn: NEXT_ARSN.fetch_add(1 << 20, Ordering::SeqCst), ..EncoderState::default() };
        Self { encoder: CaduEncoder::new(profile.clone(), state), counters: SequenceCounters::default() }
    }

    /// The CADUs carrying `envelopes`, the last one filled out.
    pub fn cadus(&mut self, envelopes: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (apid, envelope) in envelopes {
            let mut packets = Vec::new();
            self.counters.segment(*apid, envelope, 4096, &mut packets);
            self.encoder.push_packets(virtual_channel(*apid), &packets);
            self.encoder.emit_full_frames(&mut out);
        }
        self.encoder.flush(&mut out);
        out
    }
}

pub fn envelopes(products: &[Product]) -> Vec<(u16, Vec<u8>)> {
    products.iter().map(|p| (p.body.kind().apid().value(), p.encode().bytes)).collect()
}

/// The service's statistics once `stations` connections have all been served to their end (a
/// station's socket closing on our side does not mean the service has read everything yet).
pub fn settled_stats(http: &str, stations: usize) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, stats) = get(http, "/api/stats");
        assert_eq!(status, 200);
        let list = stats["stations"].as_array().cloned().unwrap_or_default();
        if list.len() >= stations && list.iter().all(|s| s["connected"] == false) {
            return stats;
        }
        assert!(std::time::Instant::now() < deadline, "stations never finished: {stats:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An HTTP GET; returns the status and the body as JSON.
pub fn get(http: &str, path: &str) -> (u16, serde_json::Value) {
    request(http, "GET", path, &[], "")
}

/// An HTTP request with headers and a body; returns the status and the body as JSON.
pub fn request(http: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, serde_json::Value) {
    let mut socket = TcpStream::connect(http).expect("connect http");
    let mut text = format!(
        "{method} {path} HTTP/1.1\r\nHost: kestrel\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    socket.write_all(text.as_bytes()).expect("request");
    socket.write_all(body.as_bytes()).expect("body");
    let mut bytes = Vec::new();
    let _ = socket.read_to_end(&mut bytes);
    let response = String::from_utf8_lossy(&bytes);
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("null");
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

/// `count` station connections, signed on, once the service lists them.
pub fn connected_stations(ground: &Ground, count: usize) -> Vec<TcpStream> {
    let stations: Vec<TcpStream> = (0..count).map(|_| signed_on_station(&ground.cadu)).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get(&ground.http, "/api/stats").1["stations"].as_array().map_or(0, Vec::len) < count {
        assert!(std::time::Instant::now() < deadline, "stations never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    stations
}

/// A database of its own for one test run, dropped at the end.
pub struct TestDatabase {
    admin: postgres::Client,
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn new() -> Self {
        let base =
            std::env::var("KESTREL_TEST_POSTGRES").expect("KESTREL_TEST_POSTGRES: run the tests with scripts/test.sh");
        let mut admin = postgres::Client::connect(&base, postgres::NoTls).expect("PostgreSQL");
        let name = format!(
            "kestrel_e2e_{}_{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
        );
        admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create database");
        let url = format!("{}/{name}", base.rsplit_once('/').expect("database in URL").0);
        Self { admin, name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = self.admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// Operators posting commands at once: client `c` posts `per_client` commands to
/// `grounds[c % len]`, the `n`th of all (`c * per_client + k`) being `command(n)`'s JSON.
pub struct Clients(Vec<std::thread::JoinHandle<Vec<u64>>>);

impl Clients {
    pub fn post(
        grounds: &[&str],
        bearer: &str,
        clients: usize,
        per_client: usize,
        command: fn(usize) -> String,
    ) -> Self {
        let threads = (0..clients)
            .map(|client| {
                let (http, bearer) = (grounds[client % grounds.len()].to_owned(), bearer.to_owned());
                std::thread::spawn(move || {
                    (0..per_client)
                        .map(|k| {
                            let body = format!(r#"{{"command": {}}}"#, command(client * per_client + k));
                            let (status, reply) =
                                request(&http, "POST", "/api/commands", &[("Authorization", bearer.as_str())], &body);
                            assert_eq!(status, 202, "{reply}");
                            reply["id"].as_u64().expect("an audit id")
                        })
                        .collect()
                })
            })
            .collect();
        Self(threads)
    }

    /// The ids the API gave, once every client is done.
    pub fn ids(self) -> Vec<u64> {
        self.0.into_iter().flat_map(|t| t.join().expect("client")).collect()
    }
}

/// The `Authorization` value of the scratch mission's operator.
pub fn operator_bearer(scratch: &Scratch) -> String {
    let token = std::fs::read_to_string(scratch.path().join("keys/operator.token")).expect("token");
    format!("Bearer {}", token.trim())
}
