//! Who may talk to `ground serve`'s CADU port, the real binary over real TCP: only a station the
//! mission declares, once it has proved its key; a recorded downlink replayed on a new connection
//! (or after the ground restarts) is refused; and however many connections come and go, the
//! station table and the ground's memory stay bounded.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

#[allow(dead_code)] // shared with ground_serve.rs, which uses the rest
mod station;

use kestrel_e2e::{Ground, STATION, STATION_KEY, signed_on_station};
use kestrel_link::product::{Body, Event, Product, Severity};
use kestrel_link::station::{CHALLENGE_LEN, Challenge, Hello, SignOnError, StationName, sign_on};
use kestrel_link::telecommand::TcReceiver;
use kestrel_link::uplink::{self, UplinkMessage};
use station::{envelopes, get, request, scratch_mission, settled_stats, stream};

fn events(ids: std::ops::Range<u64>) -> Vec<Product> {
    ids.map(|id| Product {
        id,
        created_ms: id as i64,
        body: Body::Event(Event {
            time_ms: id as i64,
            severity: Severity::Info,
            source: "test".into(),
            message: format!("event {id}"),
        }),
    })
    .collect()
}

/// Everything the ground sends down `socket` until it closes it (or `within` passes).
fn read_until_closed(socket: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    socket.set_read_timeout(Some(within)).expect("timeout");
    let mut received = Vec::new();
    // closed with unread bytes in its buffer, the ground's side resets the connection
    let closed = match socket.read_to_end(&mut received) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    (received, closed)
}

/// Sends `bytes` on a signed-on connection and returns the product ids acknowledged to it.
fn deliver(cadu: &str, bytes: &[u8], security: &kestrel_link::security::SecurityAssociation) -> Vec<u64> {
    let mut socket = signed_on_station(cadu);
    socket.write_all(bytes).expect("send");
    socket.shutdown(Shutdown::Write).expect("half-close");
    let (uplink, closed) = read_until_closed(&mut socket, Duration::from_secs(20));
    assert!(closed, "the ground ends the connection after the stream");
    let mut receiver = TcReceiver::new(security.clone(), 42);
    receiver
        .push(&uplink)
        .iter()
        .filter_map(|frame| match uplink::decode(frame) {
            Ok(UplinkMessage::Acknowledge { product_ids }) => Some(product_ids),
            _ => None,
        })
        .flatten()
        .collect()
}

fn refusals(http: &str) -> serde_json::Value {
    get(http, "/api/stats").1["sign_on_refusals"].clone()
}

/// Waits until the refusal counter `reason` reaches `count`.
fn await_refusals(http: &str, reason: &str, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while refusals(http)[reason].as_u64() < Some(count) {
        assert!(Instant::now() < deadline, "{reason} never reached {count}: {}", refusals(http));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn only_a_declared_station_that_proves_its_key_delivers_cadus_or_hears_a_telecommand() {
    let (scratch, profile) = scratch_mission();
    let security = profile.security.clone().expect("security");
    let ground = Ground::start(scratch.path(), &[]);
    let downlink = stream(&profile, &envelopes(&events(1..6)));

    // a valid, authenticated CADU stream from a client that never signs on: closed, nothing stored
    let mut stranger = TcpStream::connect(&ground.cadu).expect("connect");
    let _ = stranger.write_all(&downlink);
    let (answer, closed) = read_until_closed(&mut stranger, Duration::from_secs(10));
    assert!(closed && answer.is_empty(), "a stranger is closed without a byte ({} bytes)", answer.len());
    await_refusals(&ground.http, "malformed", 1);

    // a hello naming no declared station: closed without a byte
    let mut unknown = TcpStream::connect(&ground.cadu).expect("connect");
    let hello = Hello::new(StationName::new("not-a-station").expect("name")).expect("hello");
    unknown.write_all(&hello.encode()).expect("hello");
    let (answer, closed) = read_until_closed(&mut unknown, Duration::from_secs(10));
    assert!(closed && answer.is_empty(), "an unknown station gets no challenge");
    await_refusals(&ground.http, "unknown_station", 1);

    // the declared name under another key: the station sees the ground's answer does not verify
    let mut wrong_key = TcpStream::connect(&ground.cadu).expect("connect");
    wrong_key.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let name = StationName::new(STATION).expect("name");
    assert!(matches!(sign_on(&mut wrong_key, &name, &[0x33; 32]), Err(SignOnError::GroundNotAuthentic)));
    // and a proof made without the key is refused by the ground
    let mut forger = TcpStream::connect(&ground.cadu).expect("connect");
    let hello = Hello::new(name.clone()).expect("hello");
    forger.write_all(&hello.encode()).expect("hello");
    let mut challenge = [0u8; CHALLENGE_LEN];
    forger.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    forger.read_exact(&mut challenge).expect("a challenge");
    let proof = Challenge::decode(&challenge).prove(&hello, &STATION_KEY).expect("the ground is authentic");
    let mut forged = proof;
    forged[0] ^= 1;
    forger.write_all(&forged).expect("proof");
    let _ = forger.write_all(&downlink);
    let (answer, closed) = read_until_closed(&mut forger, Duration::from_secs(10));
    assert!(closed && answer.is_empty(), "a forged proof is closed without a byte");
    await_refusals(&ground.http, "not_authentic", 1);

    // a client that connects and says nothing is closed when its sign-on time runs out
    let mut silent = TcpStream::connect(&ground.cadu).expect("connect");
    let (answer, closed) = read_until_closed(&mut silent, Duration::from_secs(15));
    assert!(closed && answer.is_empty(), "a silent client is closed");
    await_refusals(&ground.http, "timed_out", 1);

    // with none of them listed as a station, a command has no station to go through: it waits
    let stats = get(&ground.http, "/api/stats").1;
    assert_eq!((stats["archive"]["products"].as_u64(), stats["stations"].as_array().map(Vec::len)), (Some(0), Some(0)));
    let token = std::fs::read_to_string(scratch.path().join("keys/operator.token")).expect("token");
    let bearer = format!("Bearer {}", token.trim());
    let command = r#"{"command": {"SetMode": {"mode": "Throttled"}}}"#;
    let mut lurker = TcpStream::connect(&ground.cadu).expect("connect");
    let (status, reply) = request(&ground.http, "POST", "/api/commands", &[("Authorization", &bearer)], command);
    assert_eq!(
        (status, reply["queued"].as_bool()),
        (202, Some(true)),
        "a connection that has not signed on is no station"
    );
    let (answer, _) = read_until_closed(&mut lurker, Duration::from_secs(15));
    assert!(answer.is_empty(), "and hears no telecommand");

    // the real station: stored and acknowledged
    assert_eq!(deliver(&ground.cadu, &downlink, &security), vec![1, 2, 3, 4, 5]);
    let stats = settled_stats(&ground.http, 1);
    assert_eq!(stats["archive"]["products"], 5);
    assert_eq!(stats["stations"][0]["station"], STATION);
}

#[test]
fn a_recorded_downlink_replayed_on_a_new_connection_or_after_a_restart_is_refused() {
    let (scratch, profile) = scratch_mission();
    let security = profile.security.clone().expect("security");
    let recorded = stream(&profile, &envelopes(&events(10..20)));
    {
        let ground = Ground::start(scratch.path(), &[]);
        assert_eq!(deliver(&ground.cadu, &recorded, &security), (10..20).collect::<Vec<_>>());
        // the same bytes again, on a connection of their own
        assert!(deliver(&ground.cadu, &recorded, &security).is_empty(), "a replay is acknowledged");
        let stats = settled_stats(&ground.http, 2);
        let replayed = stats["stations"][1]["link"]["replayed_frames"].as_u64().expect("count");
        assert!(replayed > 0, "{stats:#}");
        assert_eq!(stats["stations"][1]["ingest"]["products_stored"], 0);
        // the downlink going on is taken as before
        let next = stream(&profile, &envelopes(&events(20..22)));
        assert_eq!(deliver(&ground.cadu, &next, &security), vec![20, 21]);
    }
    // the marks are the archive's: a ground started again refuses the recording too
    let ground = Ground::start(scratch.path(), &[]);
    assert!(deliver(&ground.cadu, &recorded, &security).is_empty());
    let stats = settled_stats(&ground.http, 1);
    assert!(stats["stations"][0]["link"]["replayed_frames"].as_u64() > Some(0), "{stats:#}");
    assert_eq!(stats["archive"]["products"], 12);
}

#[test]
fn twenty_thousand_station_connections_leave_the_station_table_and_the_memory_bounded() {
    const CONNECTIONS: usize = 20_000;
    const CLIENTS: usize = 4;
    let (scratch, _) = scratch_mission();
    let ground = Ground::start(scratch.path(), &[]);
    // warm: the first connections set up what every later one reuses
    for _ in 0..200 {
        let mut socket = signed_on_station(&ground.cadu);
        socket.shutdown(Shutdown::Write).expect("half-close");
        let _ = read_until_closed(&mut socket, Duration::from_secs(10));
    }
    let before = ground.resident_bytes();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let cadu = ground.cadu.clone();
            std::thread::spawn(move || {
                for _ in 0..CONNECTIONS / CLIENTS {
                    let mut socket = signed_on_station(&cadu);
                    socket.shutdown(Shutdown::Write).expect("half-close");
                    // the ground closes first: its side keeps the TIME_WAIT, not our ports
                    let (_, closed) = read_until_closed(&mut socket, Duration::from_secs(10));
                    assert!(closed, "the ground ends each connection");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client");
    }
    let after = ground.resident_bytes();
    let stats = settled_stats(&ground.http, kestrel_ground::serve::STATION_HISTORY);
    let listed = stats["stations"].as_array().expect("stations");
    assert_eq!(
        listed.len(),
        kestrel_ground::serve::STATION_HISTORY,
        "closed connections beyond the history are pruned"
    );
    let newest = listed.iter().filter_map(|s| s["connection"].as_u64()).max();
    assert_eq!(newest, Some((CONNECTIONS + 200) as u64), "the newest are the ones kept");
    let stats_size = serde_json::to_vec(&stats).expect("json").len();
    assert!(stats_size < 256 << 10, "/api/stats is {stats_size} bytes");
    let (status, metrics) = {
        let mut socket = TcpStream::connect(&ground.http).expect("connect");
        write!(socket, "GET /metrics HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n").expect("request");
        let mut text = String::new();
        socket.read_to_string(&mut text).expect("read");
        (text.split(' ').nth(1).map(str::to_owned), text)
    };
    assert_eq!(status.as_deref(), Some("200"));
    assert!(metrics.len() < 256 << 10, "/metrics is {} bytes", metrics.len());
    let grown = after.saturating_sub(before);
    assert!(grown < 32 << 20, "the ground grew by {} MB over {CONNECTIONS} connections", grown >> 20);
}
