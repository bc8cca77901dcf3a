//! Helpers for end-to-end tests: find the workspace's real binaries and run them.
//!
//! The binaries are built by `cargo build --workspace --bins` (scripts/test.sh does it first); a
//! test that cannot find one fails and says how to build it. `scheduler_day` is the scheduler's
//! one-day evaluation, shared by its test and its benchmark.

pub mod scheduler_day;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use sha2::Digest;

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Path of one of the workspace's binaries, next to the test executable's profile folder.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe.parent().and_then(Path::parent).expect("test runs from target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(path.is_file(), "{} is missing: run `cargo build --workspace --bins` first", path.display());
    path
}

/// Runs a binary to completion with `args`, in `dir`.
pub fn run(name: &str, args: &[&str], dir: &Path) -> Output {
    Command::new(binary(name))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
}

/// Standard error of a finished process, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Standard output of a finished process, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The station that the reference mission declares, and its key file under the scratch's `keys/`.
pub const STATION: &str = "kestrel-bench";
pub const STATION_KEY_FILE: &str = "station-kestrel-bench.key";
pub const STATION_KEY: [u8; 32] = [0x5a; 32];

/// The name of the scratch mission's operator, whose token is `keys/operator.token`.
pub const OPERATOR: &str = "alice";

/// A connection to a ground's CADU port, signed on as the mission's station.
pub fn signed_on_station(cadu: &str) -> std::net::TcpStream {
    let mut socket = std::net::TcpStream::connect(cadu).expect("connect to the CADU port");
    socket.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let name = kestrel_link::station::StationName::new(STATION).expect("station name");
    kestrel_link::station::sign_on(&mut socket, &name, &STATION_KEY).expect("sign-on");
    socket.set_read_timeout(None).expect("timeout");
    socket
}

/// A scratch copy of the reference mission with its own development secrets.
#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
    pub reference: String,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("keys")).expect("keys dir");
        for secret in ["link.key", "operator.token"] {
            std::fs::write(dir.path().join("keys").join(secret), "00".repeat(32)).expect("secret");
        }
        // operator.token is the token of the one operator, `alice`
        let token_sha256: String =
            sha2::Sha256::digest("00".repeat(32).as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let operators = format!("[[operator]]\nname = \"{OPERATOR}\"\ntoken_sha256 = \"{token_sha256}\"\n");
        std::fs::write(dir.path().join("keys/operators.toml"), operators).expect("operators file");
        let station_key: String = STATION_KEY.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(dir.path().join("keys").join(STATION_KEY_FILE), station_key).expect("station key");
        // the files the mission names besides its secrets: the model manifest and its public key,
        std::fs::create_dir(dir.path().join("models")).expect("models dir");
        for file in ["models.toml", "model-signing.pub"] {
            std::fs::copy(workspace_root().join("models").join(file), dir.path().join("models").join(file))
                .expect("model file");
        }
        // and the models themselves, copied (never linked: a test may change its copy)
        for entry in std::fs::read_dir(workspace_root().join("models")).expect("models folder").flatten() {
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| n.ends_with(".onnx") || n.ends_with(".md")) {
                std::fs::copy(entry.path(), dir.path().join("models").join(&name)).expect("model file");
            }
        }
        let reference = std::fs::read_to_string(workspace_root().join("mission.toml")).expect("reference mission");
        Self { dir, reference }
    }

    /// Writes the reference mission with `from` replaced by `to` (which must occur) and returns its path.
    pub fn mission_with(&self, from: &str, to: &str) -> PathBuf {
        assert!(self.reference.contains(from), "the reference mission has no `{from}`");
        let path = self.dir.path().join("mission.toml");
        std::fs::write(&path, self.reference.replacen(from, to, 1)).expect("write mission");
        path
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a flight mission: continuous contact with the ground at `ground`, the models of the
    /// repository.
    pub fn flight_mission(&self, ground: &str) {
        let models = workspace_root().join("models");
        let text = self
            .reference
            .replace("127.0.0.1:5600", "127.0.0.1:0")
            .replace("127.0.0.1:8600", "127.0.0.1:0")
            .replace("ground_address = \"127.0.0.1:0\"", &format!("ground_address = \"{ground}\""))
            .replace("contacts = \"predicted\"", "contacts = \"continuous\"")
            .replace("\"models/models.toml\"", &format!("\"{}\"", models.join("models.toml").display()))
            .replace("\"models/model-signing.pub\"", &format!("\"{}\"", models.join("model-signing.pub").display()));
        std::fs::write(self.path().join("mission.toml"), text).expect("write mission");
    }

    /// Line (1-based) of the first occurrence of `needle` in the broken file.
    pub fn line_of(&self, needle: &str) -> usize {
        let text = std::fs::read_to_string(self.path().join("mission.toml")).expect("read");
        text.lines().position(|l| l.contains(needle)).expect("needle present") + 1
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// A running `ground serve`, stopped when dropped.
#[derive(Debug)]
pub struct Ground {
    child: Child,
    /// Where it takes CADU streams, and where its HTTP API answers.
    pub cadu: String,
    pub http: String,
}

impl Drop for Ground {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Ground {
    /// The process's resident memory, bytes (Linux).
    pub fn resident_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("process status");
        let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).expect("VmRSS");
        kib.trim().trim_end_matches("kB").trim().parse::<u64>().expect("a number of kB") * 1024
    }

    /// Starts the ground for a scratch flight mission and points the mission's radio at it.
    pub fn for_flight(scratch: &Scratch) -> Self {
        scratch.flight_mission("127.0.0.1:9");
        let ground = Self::start(scratch.path(), &[]);
        scratch.flight_mission(&ground.cadu);
        ground
    }

    /// Starts `ground serve --mission mission.toml` (plus `extra`) in `dir`, and waits for the
    /// line that says where it listens.
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::spawn(Command::new(binary("ground")).args(["serve", "--mission", "mission.toml"]).args(extra), dir)
    }

    /// `start`, with the process's soft open-file limit set to `files` (`ulimit -Sn`; systemd's
    /// default for a service is 1,024).
    pub fn start_with_open_files(dir: &Path, files: u64, extra: &[&str]) -> Self {
        let ground = binary("ground");
        let mut command = Command::new("sh");
        command.args(["-c", r#"ulimit -Sn "$0" && exec "$@""#, &files.to_string()]).arg(ground);
        Self::spawn(command.args(["serve", "--mission", "mission.toml"]).args(extra), dir)
    }

    fn spawn(command: &mut Command, dir: &Path) -> Self {
        let mut child =
            command.current_dir(dir).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("ground starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ground says where it listens");
        // "ground: CADUs on 127.0.0.1:P, HTTP on 127.0.0.1:Q"
        let address = |after: &str| {
            line.split(after).nth(1).expect(after).split([',', '\n']).next().expect("address").trim().to_owned()
        };
        Self { cadu: address("CADUs on "), http: address("HTTP on "), child }
    }
}

/// Puts frames into the spool as the camera driver does: written under a hidden name, stamped
/// with their capture time, renamed into place.
pub fn spool(scratch: &Scratch, frames: &[(&str, PathBuf)]) {
    let spool = scratch.path().join("var/flight/spool");
    std::fs::create_dir_all(&spool).expect("spool");
    for (i, (name, source)) in frames.iter().enumerate() {
        let hidden = spool.join(format!(".{name}"));
        let capture = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_773_964_800 + 600 * i as u64);
        if source.is_dir() {
            std::fs::create_dir_all(&hidden).expect("frame folder");
            let bands = std::fs::read_dir(source).expect("scene folder").map(|e| e.expect("entry").path());
            for band in bands.filter(|p| p.extension().is_some_and(|e| e == "tif")) {
                let target = hidden.join(band.file_name().expect("a file name"));
                std::fs::copy(&band, &target).expect("band");
                std::fs::File::options().write(true).open(&target).and_then(|f| f.set_modified(capture)).expect("time");
            }
        } else {
            std::fs::copy(source, &hidden).expect("frame");
            std::fs::File::options().write(true).open(&hidden).and_then(|f| f.set_modified(capture)).expect("time");
        }
        std::fs::rename(&hidden, spool.join(name)).expect("hand-off");
    }
}

/// `flight run` of the scratch mission at 100 times real time, plus `extra`.
pub fn flight(scratch: &Scratch, extra: &[&str]) -> Command {
    let mut command = Command::new(binary("flight"));
    command
        .args(["--log-format", "json", "run", "--mission", "mission.toml", "--speedup", "100"])
        .args(extra)
        .current_dir(scratch.path());
    command
}
