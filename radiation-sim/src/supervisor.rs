//! Runs `flight` the way its systemd unit does (deploy/kestrel-flight.service): `Type=notify`
//! with a watchdog over the `NOTIFY_SOCKET` datagram protocol, `Restart=always`. A process that
//! stops sending `WATCHDOG=1` for the watchdog timeout is killed and started again, as systemd
//! would; every start, exit and watchdog kill is recorded with its time for the classifier, and
//! every log line is kept.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Something that happened to the supervised process.
#[derive(Debug, Clone, PartialEq)]
pub enum Happening {
    Started {
        pid: u32,
    },
    /// It exited; `signal` when a signal ended it; `expected` when the campaign ended it.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        expected: bool,
    },
    /// No watchdog notification within the timeout: killed to be restarted.
    WatchdogKill,
}

#[derive(Debug, Default)]
struct Shared {
    happenings: Vec<(Instant, Happening)>,
    log: Vec<(Instant, String)>,
    pid: Option<u32>,
    /// The campaign is about to end the process itself (a kill it injects): not a crash.
    expecting_exit: bool,
    /// Set once the process exited by itself with status 0 (`--until-drained` finished).
    finished: bool,
}

/// A supervised `flight run`.
pub struct Supervisor {
    shared: Arc<Mutex<Shared>>,
    running: Arc<AtomicBool>,
    /// While false, an exited process is not restarted (checkpoint surgery, power off).
    restarting: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Starts `program args` in `dir` under supervision.
    pub fn start(program: PathBuf, args: Vec<String>, dir: PathBuf, watchdog: Duration) -> std::io::Result<Self> {
        let socket_path = dir.join(format!("notify-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket_path);
        let socket = UnixDatagram::bind(&socket_path)?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let running = Arc::new(AtomicBool::new(true));
        let restarting = Arc::new(AtomicBool::new(true));
        let context = Context {
            program,
            args,
            dir,
            socket,
            socket_path,
            watchdog,
            shared: shared.clone(),
            running: running.clone(),
            restarting: restarting.clone(),
        };
        let thread = std::thread::spawn(move || context.supervise());
        Ok(Self { shared, running, restarting, thread: Some(thread) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The process running now, if one is.
    pub fn pid(&self) -> Option<u32> {
        self.lock().pid
    }

    /// Sends `signal` to the running process; `ends_it` marks the exit that follows as ours.
    pub fn signal(&self, signal: i32, ends_it: bool) -> Option<u32> {
        let mut shared = self.lock();
        let pid = shared.pid?;
        if ends_it {
            shared.expecting_exit = true;
        }
        send_signal(pid, signal);
        Some(pid)
    }

    /// Stops restarting, kills the process, and waits until it is gone.
    pub fn power_off(&self) {
        self.restarting.store(false, Ordering::SeqCst);
        self.signal(SIGKILL, true);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.pid().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn power_on(&self) {
        self.restarting.store(true, Ordering::SeqCst);
    }

    /// Waits until the process has exited by itself with success, at most `limit`.
    pub fn wait_finished(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.lock().finished {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn happenings(&self) -> Vec<(Instant, Happening)> {
        self.lock().happenings.clone()
    }

    /// Log lines that arrived at or after `since`.
    pub fn log_since(&self, since: Instant) -> Vec<String> {
        self.lock().log.iter().filter(|(t, _)| *t >= since).map(|(_, l)| l.clone()).collect()
    }

    /// Ends supervision: kills the process if it still runs.
    pub fn stop(mut self) -> Vec<(Instant, Happening)> {
        self.power_off();
        self.running.store(false, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.happenings()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(pid) = self.lock().pid {
            send_signal(pid, SIGKILL);
        }
    }
}

pub const SIGKILL: i32 = 9;
pub const SIGCONT: i32 = 18;
pub const SIGSTOP: i32 = 19;

/// Sends a signal with kill(1), so that the harness needs no unsafe code.
pub fn send_signal(pid: u32, signal: i32) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

struct Context {
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    socket: UnixDatagram,
    socket_path: PathBuf,
    watchdog: Duration,
    shared: Arc<Mutex<Shared>>,
    running: Arc<AtomicBool>,
    restarting: Arc<AtomicBool>,
}

impl Context {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, happening: Happening) {
        self.lock().happenings.push((Instant::now(), happening));
    }

    fn spawn(&self) -> Option<Child> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.dir)
            .env("NOTIFY_SOCKET", &self.socket_path)
            // where flight's critical buffers are, for the upsets aimed at them
            .env("KESTREL_FAULT_MAP", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| tracing::error!("cannot start {}: {e}", self.program.display()))
            .ok()?;
        if let Some(stderr) = child.stderr.take() {
            let shared = self.shared.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    shared.lock().unwrap_or_else(|e| e.into_inner()).log.push((Instant::now(), line));
                }
            });
        }
        self.lock().pid = Some(child.id());
        self.record(Happening::Started { pid: child.id() });
        Some(child)
    }

    fn supervise(self) {
        let mut child: Option<Child> = None;
        let mut last_alive = Instant::now();
        let mut buffer = [0u8; 256];
        while self.running.load(Ordering::SeqCst) {
            if child.is_none() && self.restarting.load(Ordering::SeqCst) && !self.lock().finished {
                child = self.spawn();
                last_alive = Instant::now();
            }
            if let Ok(n) = self.socket.recv(&mut buffer) {
                let message = String::from_utf8_lossy(&buffer[..n]);
                if message.contains("WATCHDOG=1") || message.contains("READY=1") {
                    last_alive = Instant::now();
                }
            }
            let Some(process) = child.as_mut() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            match process.try_wait() {
                Ok(Some(status)) => {
                    let expected = std::mem::take(&mut self.lock().expecting_exit);
                    self.record(Happening::Exited { code: status.code(), signal: status.signal(), expected });
                    let mut shared = self.lock();
                    shared.pid = None;
                    shared.finished = status.success();
                    child = None;
                }
                Ok(None) if last_alive.elapsed() > self.watchdog => {
                    self.record(Happening::WatchdogKill);
                    self.lock().expecting_exit = true;
                    let _ = process.kill();
                    last_alive = Instant::now();
                }
                _ => {}
            }
        }
        if let Some(mut process) = child {
            let _ = process.kill();
            let _ = process.wait();
        }
        let _ = std::fs::remove_file(&self.socket_path);
    }
}
