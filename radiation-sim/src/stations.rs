//! The real binaries a campaign drives: the mission copy they run on, `ground serve` and what its
//! archive holds (read over its HTTP API), and the spool that frames are handed to.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use toml_edit::{DocumentMut, value};

/// Where `flight` and `ground` are: beside this binary (as cargo and the release bundle put them).
pub fn binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let path = exe.parent().map(|dir| dir.join(name)).unwrap_or_default();
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("`{}` is missing: build the workspace's binaries", path.display()))
    }
}

/// A copy of the mission for one run, written beside the original (so that its relative paths
/// still resolve) and removed when dropped.
#[derive(Debug)]
pub struct MissionCopy {
    pub path: PathBuf,
    document: DocumentMut,
}

impl MissionCopy {
    /// The mission with this run's state, spool and archive under `work`, listening on free ports,
    /// in continuous contact, with the watchdog and restart limit a campaign needs.
    pub fn new(mission: &Path, work: &Path, run: &str, plan: &crate::plan::Plan) -> Result<Self, String> {
        let text = std::fs::read_to_string(mission).map_err(|e| format!("`{}`: {e}", mission.display()))?;
        let mut document: DocumentMut = text.parse().map_err(|e| format!("`{}`: {e}", mission.display()))?;
        let dir = |name: &str| work.join(run).join(name).display().to_string();
        document["flight"]["spool_dir"] = value(dir("flight/spool"));
        document["flight"]["state_dir"] = value(dir("flight/state"));
        document["flight"]["downlink"]["contacts"] = value("continuous");
        document["flight"]["health"]["watchdog_timeout_s"] = value(plan.watchdog_timeout_s);
        document["flight"]["health"]["check_upsets"] = value(plan.check_upsets);
        // the campaign restarts flight far more often than a mission would
        document["flight"]["health"]["max_restarts"] = value(1_000_000);
        document["ground"]["cadu_listen"] = value("127.0.0.1:0");
        document["ground"]["http_listen"] = value("127.0.0.1:0");
        document["ground"]["archive_dir"] = value(dir("ground/archive"));
        let name = format!(".radiation-sim-{}-{run}.toml", std::process::id());
        let path = mission.parent().unwrap_or(Path::new(".")).join(name);
        let copy = Self { path, document };
        copy.write()?;
        Ok(copy)
    }

    pub fn point_flight_at(&mut self, address: &str) -> Result<(), String> {
        self.document["flight"]["downlink"]["ground_address"] = value(address);
        self.write()
    }

    fn write(&self) -> Result<(), String> {
        std::fs::write(&self.path, self.document.to_string()).map_err(|e| format!("`{}`: {e}", self.path.display()))
    }

    pub fn state_dir(&self) -> PathBuf {
        PathBuf::from(self.document["flight"]["state_dir"].as_str().unwrap_or_default())
    }

    pub fn spool_dir(&self) -> PathBuf {
        PathBuf::from(self.document["flight"]["spool_dir"].as_str().unwrap_or_default())
    }
}

impl Drop for MissionCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A running `ground serve`, killed when dropped.
#[derive(Debug)]
pub struct GroundStation {
    child: Child,
    pub cadu: String,
    pub http: String,
}

impl GroundStation {
    pub fn start(mission: &Path) -> Result<Self, String> {
        let mut child = Command::new(binary("ground")?)
            .args(["--log-format", "json", "serve", "--mission"])
            .arg(mission)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start ground: {e}"))?;
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("ground has no stdout")?;
        BufReader::new(stdout).read_line(&mut line).map_err(|e| format!("ground: {e}"))?;
        // "ground: CADUs on 127.0.0.1:P, HTTP on 127.0.0.1:Q"
        let address = |after: &str| {
            line.split(after).nth(1).and_then(|rest| rest.split([',', '\n']).next()).map(|a| a.trim().to_owned())
        };
        match (address("CADUs on "), address("HTTP on ")) {
            (Some(cadu), Some(http)) => Ok(Self { child, cadu, http }),
            _ => Err(format!("ground did not say where it listens: `{}`", line.trim())),
        }
    }

    fn get(&self, path: &str) -> Result<serde_json::Value, String> {
        let mut socket = TcpStream::connect(&self.http).map_err(|e| format!("ground HTTP: {e}"))?;
        socket.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        write!(socket, "GET {path} HTTP/1.1\r\nHost: ground\r\nConnection: close\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        socket.read_to_end(&mut response).map_err(|e| format!("ground HTTP: {e}"))?;
        let text = String::from_utf8_lossy(&response);
        let body = text.split_once("\r\n\r\n").map(|(_, body)| body).ok_or("ground HTTP: no body")?;
        serde_json::from_str(body).map_err(|e| format!("ground HTTP {path}: {e}"))
    }

    /// Every product in the archive: id -> (kind, content CRC).
    pub fn products(&self) -> Result<BTreeMap<u64, (String, u32)>, String> {
        let mut products = BTreeMap::new();
        let mut after = None;
        loop {
            let query = after.map_or(String::new(), |a: u64| format!("&after={a}"));
            let page = self.get(&format!("/api/products?limit=10000{query}"))?;
            let records = page.as_array().ok_or("ground HTTP: products are not a list")?;
            for record in records {
                let id = record["id"].as_u64().ok_or("a product record without an id")?;
                let kind = record["kind"].as_str().unwrap_or_default().to_owned();
                let crc = record["content_crc"].as_u64().unwrap_or_default() as u32;
                if products.insert(id, (kind, crc)).is_some() {
                    return Err(format!("the archive lists product {id:016x} twice"));
                }
                after = Some(id);
            }
            if records.len() < 10_000 {
                return Ok(products);
            }
        }
    }

    /// The stations' ingest counters summed: (products rejected, conflicts).
    pub fn rejections(&self) -> Result<(u64, u64), String> {
        let stats = self.get("/api/stats")?;
        let stations = stats["stations"].as_array().cloned().unwrap_or_default();
        let sum = |key: &str| stations.iter().map(|s| s["ingest"][key].as_u64().unwrap_or(0)).sum();
        Ok((sum("products_rejected"), sum("conflicts")))
    }
}

impl Drop for GroundStation {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Hands frame `index` (an image file or a scene folder) to the spool as the camera driver does:
/// written under a hidden name, stamped with a capture time fixed by its index, renamed.
pub fn spool_frame(spool: &Path, frame: &Path, index: usize) -> Result<(), String> {
    let io = |e: std::io::Error| format!("spooling `{}`: {e}", frame.display());
    std::fs::create_dir_all(spool).map_err(io)?;
    let name = format!("frame-{index:04}-{}", frame.file_name().unwrap_or_default().to_string_lossy());
    let hidden = spool.join(format!(".{name}"));
    let capture = UNIX_EPOCH + Duration::from_secs(1_773_964_800 + 600 * index as u64);
    let stamp = |path: &Path| std::fs::File::options().write(true).open(path)?.set_modified(capture);
    if frame.is_dir() {
        std::fs::create_dir_all(&hidden).map_err(io)?;
        for entry in std::fs::read_dir(frame).map_err(io)? {
            let entry = entry.map_err(io)?;
            if entry.path().is_file() {
                let target = hidden.join(entry.file_name());
                std::fs::copy(entry.path(), &target).map_err(io)?;
                stamp(&target).map_err(io)?;
            }
        }
    } else {
        std::fs::copy(frame, &hidden).map_err(io)?;
        stamp(&hidden).map_err(io)?;
    }
    std::fs::rename(&hidden, spool.join(name)).map_err(io)
}
