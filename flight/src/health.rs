//! Health: the watchdogs (systemd's through sd_notify, and one inside the process that turns a hung
//! main loop into a crash a supervisor restarts), the restart limit, and Prometheus metrics as a
//! text file for node_exporter's textfile collector (no HTTP server on the payload computer).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::checkpoint::FlightState;

/// Tells systemd (when it started us with `Type=notify`) that we are ready, and that we live.
#[derive(Debug)]
pub struct Systemd {
    socket: Option<(std::os::unix::net::UnixDatagram, std::os::unix::net::SocketAddr)>,
    last: Option<Instant>,
    every: Duration,
}

impl Systemd {
    pub fn from_env(watchdog_timeout: Duration) -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            use std::os::linux::net::SocketAddrExt;
            let path = path.to_string_lossy().into_owned();
            let address = match path.strip_prefix('@') {
                Some(abstract_name) => std::os::unix::net::SocketAddr::from_abstract_name(abstract_name).ok()?,
                None => std::os::unix::net::SocketAddr::from_pathname(&path).ok()?,
            };
            Some((std::os::unix::net::UnixDatagram::unbound().ok()?, address))
        });
        Self { socket, last: None, every: watchdog_timeout / 4 }
    }

    fn notify(&self, message: &str) {
        if let Some((socket, address)) = &self.socket {
            let _ = socket.send_to_addr(message.as_bytes(), address);
        }
    }

    pub fn ready(&self) {
        self.notify("READY=1");
    }

    /// Shows life, at most four times per watchdog period.
    pub fn alive(&mut self) {
        if self.last.is_none_or(|t| t.elapsed() >= self.every) {
            self.notify("WATCHDOG=1");
            self.last = Some(Instant::now());
        }
    }
}

/// Aborts the process when the main loop has not shown life for `timeout` (wall time).
#[derive(Debug, Clone)]
pub struct Watchdog {
    started: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Watchdog {
    pub fn start(timeout: Duration) -> Self {
        let this = Self { started: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) };
        let watched = this.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(timeout / 8);
                let last = Duration::from_millis(watched.last_ms.load(Ordering::Relaxed));
                let silent = watched.started.elapsed().saturating_sub(last);
                if silent > timeout {
                    tracing::error!(silent_s = silent.as_secs_f64(), "watchdog: the main loop hangs; aborting");
                    std::process::abort();
                }
            }
        });
        this
    }

    pub fn pet(&self) {
        self.last_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Records a start at `now_ms`; true when the starts within `window_ms` exceed `max_starts`.
pub fn too_many_restarts(state: &mut FlightState, now_ms: i64, window_ms: i64, max_starts: u32) -> bool {
    state.recent_starts.retain(|&t| now_ms - t < window_ms && t <= now_ms);
    state.recent_starts.push(now_ms);
    state.recent_starts.len() > max_starts as usize
}

/// Writes the Prometheus text exposition of `values` to `path` (atomically, by rename).
pub fn write_metrics(path: &Path, values: &[(String, f64)]) -> std::io::Result<()> {
    let mut text = String::new();
    for (name, value) in values {
        let metric: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        text.push_str(&format!("kestrel_flight_{metric} {value}\n"));
    }
    let temporary = path.with_extension("prom.new");
    std::fs::write(&temporary, text)?;
    std::fs::rename(temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restart_limit_counts_starts_within_the_window_only() {
        let mut state = FlightState::new(0);
        for i in 0..3 {
            assert!(!too_many_restarts(&mut state, i * 1000, 10_000, 3));
        }
        assert!(too_many_restarts(&mut state, 3000, 10_000, 3), "the fourth start within 10 s");
        // long after, the old starts no longer count
        assert!(!too_many_restarts(&mut state, 100_000, 10_000, 3));
        assert_eq!(state.recent_starts, [100_000]);
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("flight.prom");
        write_metrics(&path, &[("queue.depth".into(), 3.0), ("temperature_payload_c".into(), 21.5)]).expect("write");
        let text = std::fs::read_to_string(path).expect("read");
        assert_eq!(text, "kestrel_flight_queue_depth 3\nkestrel_flight_temperature_payload_c 21.5\n");
    }
}
