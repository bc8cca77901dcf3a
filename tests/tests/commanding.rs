//! Commanding end to end with the real binaries: `flight run` in continuous contact with the real
//! `ground serve`, frames in its spool so that products flow down and acknowledgements go up,
//! while several clients post commands at once. Every command must run on board exactly once:
//! its stages in the archive (the ground's audit and flight's verification reports) end accepted
//! then completed, once each; flight's own event log names it once; flight counts as many
//! commands executed as were posted, and no uplink frame refused; a command flight refuses shows
//! the refusal and flight's reason. Then the same with two
//! `ground serve` processes on one PostgreSQL archive, the spacecraft's link switched from one to
//! the other and back mid-run (a TCP relay in front of them stands for the antenna's hand-over).

#[allow(dead_code)] // shared with ground_serve.rs, which uses the rest
mod station;

use std::collections::BTreeMap;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kestrel_e2e::{Ground, Scratch, flight, spool, workspace_root};
use station::{Clients, TestDatabase, get, operator_bearer, request};

/// The stages a command ends in: after one of these nothing more is expected.
const ENDINGS: &[&str] = &["completed", "refused", "failed", "timed_out", "cancelled", "not_sent"];

/// Stands for the antenna: flight's radio connects here, and the connection is relayed to the
/// ground process the spacecraft is in contact with. Switching closes the open relay, so flight
/// reconnects, and its next connection goes to the other process.
struct Relay {
    address: String,
    target: Arc<Mutex<String>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay listens");
        let address = listener.local_addr().expect("address").to_string();
        let target = Arc::new(Mutex::new(target.to_owned()));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (to, held) = (target.clone(), open.clone());
        std::thread::spawn(move || {
            for radio in listener.incoming() {
                let Ok(radio) = radio else { continue };
                let address = to.lock().expect("target").clone();
                let Ok(ground) = TcpStream::connect(&address) else { continue };
                let mut sockets = held.lock().expect("open relays");
                sockets.push(radio.try_clone().expect("clone"));
                sockets.push(ground.try_clone().expect("clone"));
                for (from, into) in [(radio.try_clone(), ground.try_clone()), (ground.try_clone(), radio.try_clone())] {
                    let (mut from, mut into) = (from.expect("clone"), into.expect("clone"));
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Self { address, target, open }
    }

    /// New connections go to `target`; the open one is closed.
    fn switch_to(&self, target: &str) {
        *self.target.lock().expect("target") = target.to_owned();
        for socket in self.open.lock().expect("open relays").drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// A running `flight run`, killed when dropped.
struct Flight(Child);

impl Flight {
    fn start(scratch: &Scratch) -> Self {
        let child = flight(scratch, &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("flight starts");
        Self(child)
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Frames for flight to process while it is commanded: products flow down the whole time.
fn spool_frames(scratch: &Scratch) {
    let ports = kestrel_flight::reference_data::expect("satellite/sen2ships");
    let frames = [
        ("casablanca", ports.join("casablanca")),
        ("osbs.tif", workspace_root().join("testdata/aerial/OSBS_029.tif")),
        ("busan", ports.join("busan")),
    ];
    spool(scratch, &frames);
}

/// Waits until `http`'s ground has a station signed on (`in_contact`), or has none.
fn wait_for_contact(http: &str, in_contact: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, stats) = get(http, "/api/stats");
        if stats["stations"].as_array().is_some_and(|s| s.iter().any(|s| s["connected"] == true)) == in_contact {
            return;
        }
        assert!(Instant::now() < deadline, "{http} never came to in_contact={in_contact}: {stats}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the first detections are in the archive: frames' products are coming down.
fn wait_for_detections(http: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while get(http, "/api/stats").1["archive"]["detections"].as_u64().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "no detections came down");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Commands from `clients` at once, `per_client` each, client `c` to `grounds[c % len]`: each
/// sets 10 to 19 s of spacecraft time between housekeeping products. Their ids, as the API gave them.
fn post_from_clients(grounds: &[&str], bearer: &str, clients: usize, per_client: usize) -> Vec<u64> {
    Clients::post(grounds, bearer, clients, per_client, |n| {
        format!(r#"{{"SetParameter": {{"name": "housekeeping_interval_s", "value": {}}}}}"#, 10 + n % 10)
    })
    .ids()
}

fn stages(http: &str, bearer: &str, id: u64) -> Vec<String> {
    let (status, life) = request(http, "GET", &format!("/api/commands/{id}"), &[("Authorization", bearer)], "");
    assert_eq!(status, 200, "{life}");
    let stages = life["stages"].as_array().cloned().unwrap_or_default();
    stages.iter().map(|s| s["stage"].as_str().unwrap_or_default().to_owned()).collect()
}

/// Each command's stages once it has ended (or as they are at the deadline).
fn ended(http: &str, bearer: &str, ids: &[u64]) -> BTreeMap<u64, Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lives: BTreeMap<u64, Vec<String>> = ids.iter().map(|&id| (id, stages(http, bearer, id))).collect();
        let done = lives.values().all(|s| s.iter().any(|stage| ENDINGS.contains(&stage.as_str())));
        if done || Instant::now() > deadline {
            return lives;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Each command ran once: its stages are `expected`, the spacecraft's accepted and completed
/// once each.
fn assert_ran_once(lives: &BTreeMap<u64, Vec<String>>, expected: &[&str]) {
    for (id, stages) in lives {
        assert_eq!(stages, expected, "command {id}");
    }
}

/// The latest housekeeping value of `channel` once it reads `want` (or at the deadline).
fn housekeeping_reaches(http: &str, channel: &str, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, samples) = get(http, "/api/telemetry?limit=1");
        let value = samples[0]["values"][channel].as_f64().unwrap_or(f64::NAN);
        if value == want || Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// How many of flight's `command` events name each command.
fn command_events(http: &str) -> BTreeMap<u64, usize> {
    let (_, events) = get(http, "/api/events?limit=10000");
    let mut named = BTreeMap::new();
    for event in events.as_array().expect("events").iter().filter(|e| e["source"] == "command") {
        let message = event["message"].as_str().unwrap_or_default();
        let id = message.strip_prefix("command ").and_then(|m| m.split([':', ' ']).next()).and_then(|d| d.parse().ok());
        *named.entry(id.expect(message)).or_insert(0) += 1;
    }
    named
}

/// What is true at the end of every run: flight counted every command once (`refused` of them
/// refused) and refused no uplink frame; its event log names each once; acknowledgements went up.
fn assert_flight_ran_each_once(http: &str, ids: &[u64], refused: usize) {
    let executed = (ids.len() - refused) as f64;
    assert_eq!(housekeeping_reaches(http, "commands_executed", executed), executed);
    assert_eq!(housekeeping_reaches(http, "uplink_frames_rejected", 0.0), 0.0);
    assert_eq!(housekeeping_reaches(http, "commands_refused", refused as f64), refused as f64);
    let events = command_events(http);
    for id in ids {
        assert_eq!(events.get(id), Some(&1), "flight's events about command {id}: {events:?}");
    }
    let (_, stats) = get(http, "/api/stats");
    let acknowledged: u64 = stats["stations"]
        .as_array()
        .expect("stations")
        .iter()
        .filter_map(|s| s["acknowledgements_sent"].as_u64())
        .sum();
    assert!(acknowledged > 0, "acknowledgements went up: {stats}");
}

#[test]
fn commands_from_several_clients_run_once_each_while_products_flow() {
    let scratch = Scratch::new();
    let ground = Ground::for_flight(&scratch);
    let bearer = operator_bearer(&scratch);
    let auth = [("Authorization", bearer.as_str())];
    // before any contact: three commands queued, one of them cancelled
    let queued = post_from_clients(&[&ground.http], &bearer, 1, 3);
    let (status, reply) = request(&ground.http, "DELETE", &format!("/api/commands/{}", queued[2]), &auth, "");
    assert_eq!(status, 200, "{reply}");

    spool_frames(&scratch);
    let _flight = Flight::start(&scratch);
    wait_for_contact(&ground.http, true);
    // from four clients at once: as soon as flight is in contact, and again while its frames'
    // products come down
    let mut posted = post_from_clients(&[&ground.http], &bearer, 4, 5);
    wait_for_detections(&ground.http);
    posted.extend(post_from_clients(&[&ground.http], &bearer, 4, 5));

    assert_ran_once(&ended(&ground.http, &bearer, &posted), &["submitted", "released", "accepted", "completed"]);
    assert_ran_once(
        &ended(&ground.http, &bearer, &queued[..2]),
        &["submitted", "queued", "released", "accepted", "completed"],
    );
    assert_eq!(stages(&ground.http, &bearer, queued[2]), ["submitted", "queued", "cancelled"], "never sent");

    // refused on board: a tile of a frame flight does not hold; the reason is flight's
    let tile = r#"{"command": {"RequestTile": {"frame_id": 12345, "x": 0, "y": 0, "width": 64, "height": 64}}}"#;
    let (status, reply) = request(&ground.http, "POST", "/api/commands", &auth, tile);
    assert_eq!(status, 202, "{reply}");
    let refused = reply["id"].as_u64().expect("an id");
    assert_ran_once(&ended(&ground.http, &bearer, &[refused]), &["submitted", "released", "refused"]);
    let (_, life) = request(&ground.http, "GET", &format!("/api/commands/{refused}"), &auth, "");
    assert_eq!(life["stages"][2]["reason"], "frame 12345 is not on board", "{life}");

    let ran: Vec<u64> = posted.iter().chain(&queued[..2]).chain([&refused]).copied().collect();
    assert_flight_ran_each_once(&ground.http, &ran, 1);
    assert!(!command_events(&ground.http).contains_key(&queued[2]), "the cancelled command never reached flight");
}

#[test]
fn two_ground_processes_on_one_postgres_archive_command_one_spacecraft_that_switches_between_them() {
    let database = TestDatabase::new();
    let scratch = Scratch::new();
    scratch.flight_mission("127.0.0.1:9");
    let store = ["--store", database.url.as_str()];
    let (first, second) = (Ground::start(scratch.path(), &store), Ground::start(scratch.path(), &store));
    let relay = Relay::start(&first.cadu);
    scratch.flight_mission(&relay.address);
    let bearer = operator_bearer(&scratch);
    let grounds = [first.http.as_str(), second.http.as_str()];

    spool_frames(&scratch);
    let _flight = Flight::start(&scratch);
    let mut ran = Vec::new();
    // in contact with the first process, then the second, then the first again; every turn the
    // clients post to both (to the one out of contact, a command is queued in the shared archive
    // and goes up through the one in contact)
    for (turn, (contact, other)) in [(&first, &second), (&second, &first), (&first, &second)].into_iter().enumerate() {
        if turn == 1 {
            // the switches from here on happen while frames' products come down
            wait_for_detections(&contact.http);
        }
        relay.switch_to(&contact.cadu);
        wait_for_contact(&other.http, false);
        wait_for_contact(&contact.http, true);
        let posted = post_from_clients(&grounds, &bearer, 4, 6);
        let lives = ended(&contact.http, &bearer, &posted);
        let mut queued_first = 0;
        for (id, stages) in &lives {
            let tail = &stages[stages.len().saturating_sub(3)..];
            assert_eq!(tail, ["released", "accepted", "completed"], "turn {turn}, command {id}: {stages:?}");
            if stages.len() == 5 && stages[1] == "queued" {
                queued_first += 1;
            } else {
                assert_eq!(stages.len(), 4, "turn {turn}, command {id}: {stages:?}");
            }
        }
        // the two clients posting to the process out of contact had their commands queued
        assert_eq!(queued_first, posted.len() / 2, "turn {turn}: {lives:?}");
        ran.extend(posted);
    }
    assert_flight_ran_each_once(&first.http, &ran, 0);
}
