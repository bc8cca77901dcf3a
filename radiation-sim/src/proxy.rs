//! A TCP proxy between flight and ground that corrupts the downlink: random bit errors at a bit
//! error rate the campaign sets while it runs (0 passes the bytes untouched). The uplink goes
//! through unchanged. Each connection from flight gets its own connection to the ground, as a
//! radio pass would.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kestrel_link::noise::{Rng, flip_bits};

/// The proxy's live settings and counters.
#[derive(Debug, Default)]
pub struct LinkState {
    /// The bit error rate, as f64 bits.
    ber: AtomicU64,
    pub bytes_down: AtomicU64,
    pub bits_flipped: AtomicU64,
}

impl LinkState {
    pub fn set_ber(&self, ber: f64) {
        self.ber.store(ber.to_bits(), Ordering::SeqCst);
    }
    fn ber(&self) -> f64 {
        f64::from_bits(self.ber.load(Ordering::SeqCst))
    }
}

#[derive(Debug)]
pub struct Proxy {
    pub address: SocketAddr,
    pub state: Arc<LinkState>,
    running: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on a free local port and forwards each connection to `ground`.
    pub fn start(ground: SocketAddr, seed: u64) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let state = Arc::new(LinkState::default());
        let running = Arc::new(AtomicBool::new(true));
        let (thread_state, thread_running) = (state.clone(), running.clone());
        std::thread::spawn(move || {
            let mut connection = 0u64;
            while thread_running.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((flight, _)) => {
                        connection += 1;
                        let (state, running) = (thread_state.clone(), thread_running.clone());
                        std::thread::spawn(move || relay(flight, ground, state, running, seed ^ connection));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Self { address, state, running })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
    }
}

fn relay(flight: TcpStream, ground: SocketAddr, state: Arc<LinkState>, running: Arc<AtomicBool>, seed: u64) {
    let Ok(ground) = TcpStream::connect(ground) else {
        let _ = flight.shutdown(Shutdown::Both);
        return;
    };
    let (Ok(mut flight_read), Ok(mut ground_write)) = (flight.try_clone(), ground.try_clone()) else { return };
    let (mut ground_read, mut flight_write) = (ground, flight);
    // uplink: untouched
    let up_running = running.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while up_running.load(Ordering::SeqCst) {
            match ground_read.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if flight_write.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = flight_write.shutdown(Shutdown::Both);
    });
    // downlink: bit errors at the current rate
    let mut rng = Rng::new(seed);
    let mut buffer = vec![0u8; 64 * 1024];
    while running.load(Ordering::SeqCst) {
        match flight_read.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let ber = state.ber();
                if ber > 0.0 {
                    let flipped = flip_bits(&mut buffer[..n], ber, &mut rng);
                    state.bits_flipped.fetch_add(flipped, Ordering::Relaxed);
                }
                state.bytes_down.fetch_add(n as u64, Ordering::Relaxed);
                if ground_write.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = ground_write.shutdown(Shutdown::Both);
}
