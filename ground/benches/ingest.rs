//! Ground ingest throughput: `ground decode` alone against the whole path (decode, verify, store,
//! durable before acknowledgement) on `sled` and on PostgreSQL (when KESTREL_TEST_POSTGRES names a
//! server), on the same stream; and the detections API's latency over 100,000 detections.
//! `cargo bench -p kestrel-ground --bench ingest`. Figures go in docs/benchmarks.md.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kestrel_ground::archive::{Archive, PostgresArchive, SledArchive};
use kestrel_ground::ingest::StationIngest;
use kestrel_ground::operators::Operators;
use kestrel_ground::serve::Service;
use kestrel_link::decoder::CaduDecoder;
use kestrel_link::encoder::{CaduEncoder, EncoderState};
use kestrel_link::noise::Rng;
use kestrel_link::packet::SequenceCounters;
use kestrel_link::product::{Body, Chip, Detection, Detections, Product, Thumbnail};
use kestrel_link::profile::{LinkProfile, virtual_channel};
use kestrel_link::security::SecurityAssociation;

fn profile() -> LinkProfile {
    LinkProfile {
        spacecraft_id: Some(42),
        frame_error_control: true,
        security: Some(SecurityAssociation::new(1, &[9; 32], false)),
        ..LinkProfile::plain_ccsds()
    }
}

fn detections(id: u64, n: usize) -> Product {
    Product {
        id,
        created_ms: id as i64,
        body: Body::Detections(Detections {
            frame_id: id,
            frame_time_ms: id as i64 * 1000,
            model: "vessels".into(),
            detections: (0..n)
                .map(|i| Detection {
                    class_id: 0,
                    class_name: "vessel".into(),
                    score: 0.5 + (i % 50) as f32 / 100.0,
                    pixel_box: [i as f32, 2.0, i as f32 + 10.0, 12.0],
                    latitude: 33.0 + (i as f64) / 1000.0,
                    longitude: -7.0 - (id % 100) as f64 / 100.0,
                })
                .collect(),
            oriented: vec![],
        }),
    }
}

/// A downlink of products: detections, chips and thumbnails (incompressible image bytes); and
/// the products' envelopes.
fn downlink(megabytes: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut rng = Rng::new(5);
    let mut encoder = CaduEncoder::new(profile(), EncoderState::default());
    let mut counters = SequenceCounters::default();
    let mut stream = Vec::new();
    let mut envelopes = Vec::new();
    let mut id = 0;
    while stream.len() < megabytes << 20 {
        let body = match id % 3 {
            0 => detections(id, 20).body,
            1 => Body::Chip(Chip {
                frame_id: id,
                detection_index: 0,
                origin: [0, 0],
                size: [96, 96],
                png: (0..20_000).map(|_| rng.next_u64() as u8).collect(),
            }),
            _ => Body::Thumbnail(Thumbnail {
                frame_id: id,
                frame_time_ms: 0,
                footprint: [[0.0; 2]; 4],
                png: (0..60_000).map(|_| rng.next_u64() as u8).collect(),
            }),
        };
        let product = Product { id, created_ms: 0, body };
        let apid = product.body.kind().apid().value();
        let mut packets = Vec::new();
        let envelope = product.encode().bytes;
        counters.segment(apid, &envelope, 4096, &mut packets);
        envelopes.push(envelope);
        encoder.push_packets(virtual_channel(apid), &packets);
        encoder.emit_full_frames(&mut stream);
        id += 1;
    }
    encoder.flush(&mut stream);
    (stream, envelopes)
}

fn mbit_per_s(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 * 8.0 / seconds / 1e6
}

fn ingest(name: &str, archive: Arc<dyn Archive>, stream: &[u8], products: usize) {
    let mut station = StationIngest::new("bench", profile(), archive.clone()).expect("ingest");
    let started = Instant::now();
    let mut acknowledged = 0;
    for chunk in stream.chunks(1 << 20) {
        acknowledged += station.push(chunk, 0).expect("ingest").len();
    }
    acknowledged += station.finish(0).expect("finish").len();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "decode + verify + store ({name}):  {:>7.0} Mbit/s, {acknowledged} of {products} products stored and acknowledgeable",
        mbit_per_s(stream.len(), seconds)
    );
}

/// Queries of each kind the latency benchmark makes.
const QUERIES: u64 = 300;

fn api_latency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive: Arc<dyn Archive> = Arc::new(SledArchive::open(dir.path()).expect("sled"));
    for batch in 0..50u64 {
        let products: Vec<(Product, Vec<u8>)> = (0..100)
            .map(|i| {
                let p = detections(1_000_000 + batch * 100 + i, 20);
                let bytes = p.encode().bytes;
                (p, bytes)
            })
            .collect();
        let arrivals: Vec<(&Product, &[u8])> = products.iter().map(|(p, b)| (p, b.as_slice())).collect();
        archive.store_all(&arrivals, "bench", 0).expect("store");
    }
    let detections_stored = archive.detection_count().expect("count");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // no station signs on in this benchmark, and no upload is made
    let (stations, model_key) = (Default::default(), ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key());
    let service = Service::new(
        profile(),
        archive,
        Operators::from_tokens([("bench", "bench-operator-token")]),
        stations,
        model_key.to_bytes(),
    );
    let service = Arc::new(service.expect("service"));
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let address = listener.local_addr().expect("address");
    runtime.spawn(async move { axum::serve(listener, kestrel_ground::http::router(service)).await });
    let queries: [(&str, &dyn Fn(u64) -> String); 3] = [
        ("100 detections by time window and class", &|q| {
            let from = (1_000_000 + (q * 37) % 5000) as i64 * 1000;
            format!("/api/detections?from_ms={from}&to_ms={}&limit=100&class=vessel", from + 5_000)
        }),
        ("detections in a small box (the zoomed-in map)", &|q| {
            let lon = -7.0 - (q % 100) as f64 / 100.0;
            format!("/api/detections?bbox={},33.0,{},33.1&limit=500", lon - 0.005, lon + 0.005)
        }),
        ("all of them in 4-degree cells (the world map)", &|_| "/api/detections/cells?cell_deg=4".to_owned()),
    ];
    for (what, path) in queries {
        let mut latencies = Vec::new();
        for q in 0..QUERIES {
            let started = Instant::now();
            let mut socket = std::net::TcpStream::connect(address).expect("connect");
            write!(socket, "GET {} HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n", path(q)).expect("request");
            let mut response = Vec::new();
            socket.read_to_end(&mut response).expect("response");
            latencies.push(started.elapsed());
            assert!(
                response.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&response[..64.min(response.len())])
            );
        }
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "API over {detections_stored} detections, {QUERIES} queries, {what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(at(0.5)),
            ms(at(0.99)),
            ms(at(1.0))
        );
    }
}

fn main() {
    let megabytes: usize = std::env::var("KESTREL_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(128);
    let (stream, envelopes) = downlink(megabytes);
    let products = envelopes.len();
    println!("stream: {} MB of CADUs carrying {products} products", stream.len() >> 20);

    let mut decoder = CaduDecoder::new(profile());
    let mut packets = 0usize;
    let started = Instant::now();
    for chunk in stream.chunks(1 << 20) {
        decoder.push(chunk, &mut |_| packets += 1);
    }
    decoder.finish(&mut |_| packets += 1);
    println!(
        "ground decode alone:                {:>7.0} Mbit/s, {packets} packets",
        mbit_per_s(stream.len(), started.elapsed().as_secs_f64())
    );

    // the check the station's thread adds to decoding: every envelope decompressed, its content
    // CRC checked and deserialised
    let started = Instant::now();
    for envelope in &envelopes {
        std::hint::black_box(Product::decode(envelope).expect("a product"));
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "product check alone (envelopes):    {:>7.0} Mbit/s of the stream, {seconds:.3} s",
        mbit_per_s(stream.len(), seconds)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    ingest("sled", Arc::new(SledArchive::open(dir.path()).expect("sled")), &stream, products);
    match std::env::var("KESTREL_TEST_POSTGRES") {
        Ok(url) => {
            let schema = format!("bench_{}", std::process::id());
            ingest(
                "PostgreSQL",
                Arc::new(PostgresArchive::connect(&url, Some(&schema)).expect("postgres")),
                &stream,
                products,
            );
        }
        Err(_) => println!("decode + verify + store (PostgreSQL): not measured, KESTREL_TEST_POSTGRES is not set"),
    }
    api_latency();
}
