//! A TCP proxy between flight and ground that corrupts the downlink: random bit errors at a bit
//! error rate the campaign sets while it runs (0 passes the bytes untouched), and one-off faults
//! in the next bytes to pass — an error burst, bytes dropped or sent twice, a bit slip (the
//! receiver's clock losing bits: everything after it arrives shifted). The uplink goes through
//! unchanged, and so does the station's sign-on at the start of the downlink (it crosses the
//! station's terrestrial link, not the radio). Each connection from flight gets its own connection
//! to the ground, as a radio pass would.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kestrel_link::noise::{Rng, burst, flip_bits};
use kestrel_link::station::STATION_SIGN_ON_LEN;

/// A one-off fault applied to the next downlink bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFault {
    /// `bytes` consecutive bytes overwritten with random ones.
    Burst { bytes: usize },
    /// `bytes` bytes lost.
    Drop { bytes: usize },
    /// `bytes` bytes sent twice.
    Duplicate { bytes: usize },
    /// `bits` bits lost: the rest of the stream arrives shifted.
    Slip { bits: u32 },
}

/// The proxy's live settings and counters.
#[derive(Debug, Default)]
pub struct LinkState {
    /// The bit error rate, as f64 bits.
    ber: AtomicU64,
    pending: Mutex<Vec<LinkFault>>,
    pub bytes_down: AtomicU64,
    pub bits_flipped: AtomicU64,
    /// One-off faults applied so far.
    pub faults_applied: AtomicU64,
}

impl LinkState {
    pub fn set_ber(&self, ber: f64) {
        self.ber.store(ber.to_bits(), Ordering::SeqCst);
    }
    fn ber(&self) -> f64 {
        f64::from_bits(self.ber.load(Ordering::SeqCst))
    }
    /// Applies `fault` to the next downlink bytes that pass.
    pub fn inject(&self, fault: LinkFault) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(fault);
    }
    /// Drops the one-off faults no bytes came to carry; how many.
    pub fn cancel_pending(&self) -> usize {
        self.take_pending().len()
    }
    fn take_pending(&self) -> Vec<LinkFault> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The downlink's bit slip so far: the stream with `shift` more bits lost, shifted through.
#[derive(Debug, Default)]
struct Slipped {
    shift: u32,
    previous: Option<u8>,
}

impl Slipped {
    fn slip(&mut self, bits: u32) {
        self.shift += bits;
        if self.shift >= 8 {
            // whole bytes lost: the held byte goes, the rest is a shift within a byte
            self.previous = None;
            self.shift %= 8;
        }
    }

    fn pass(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.shift == 0 {
            return bytes.to_vec();
        }
        let mut out = Vec::with_capacity(bytes.len());
        for &byte in bytes {
            if let Some(previous) = self.previous {
                out.push((previous << self.shift) | (byte >> (8 - self.shift)));
            }
            self.previous = Some(byte);
        }
        out
    }
}

/// `bytes` with the one-off `faults` applied at random places.
fn apply(bytes: Vec<u8>, faults: &[LinkFault], slipped: &mut Slipped, rng: &mut Rng) -> Vec<u8> {
    let mut bytes = bytes;
    for fault in faults {
        let at = rng.below(bytes.len().max(1) as u64) as usize;
        match *fault {
            LinkFault::Burst { bytes: len } => burst(&mut bytes, at, len, rng),
            LinkFault::Drop { bytes: len } => {
                bytes.drain(at..(at + len).min(bytes.len()));
            }
            LinkFault::Duplicate { bytes: len } => {
                let copy = bytes[at..(at + len).min(bytes.len())].to_vec();
                bytes.splice(at..at, copy);
            }
            LinkFault::Slip { bits } => slipped.slip(bits),
        }
    }
    slipped.pass(&bytes)
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
    // downlink: bit errors at the current rate, and the one-off faults
    let mut rng = Rng::new(seed);
    let mut slipped = Slipped::default();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut sign_on_left = STATION_SIGN_ON_LEN;
    while running.load(Ordering::SeqCst) {
        match flight_read.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let clean = sign_on_left.min(n);
                sign_on_left -= clean;
                if ground_write.write_all(&buffer[..clean]).is_err() {
                    break;
                }
                let radio = &mut buffer[clean..n];
                if radio.is_empty() {
                    continue;
                }
                let ber = state.ber();
                if ber > 0.0 {
                    let flipped = flip_bits(radio, ber, &mut rng);
                    state.bits_flipped.fetch_add(flipped, Ordering::Relaxed);
                }
                state.bytes_down.fetch_add(radio.len() as u64, Ordering::Relaxed);
                let faults = state.take_pending();
                state.faults_applied.fetch_add(faults.len() as u64, Ordering::Relaxed);
                let out = apply(radio.to_vec(), &faults, &mut slipped, &mut rng);
                if ground_write.write_all(&out).is_err() {
                    break;
                }
            }
        }
    }
    let _ = ground_write.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:08b}")).collect()
    }

    #[test]
    fn a_slip_loses_its_bits_and_shifts_everything_after() {
        let stream: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5A).collect();
        let mut slipped = Slipped::default();
        let mut out = slipped.pass(&stream[..10]);
        slipped.slip(3);
        out.extend(slipped.pass(&stream[10..40]));
        slipped.slip(6);
        out.extend(slipped.pass(&stream[40..]));
        // the first slip comes after 80 bits went through; the second after 80 + 235 bits (the
        // last byte of the middle chunk still held, 5 of its bits unsent)
        let all = bits(&stream);
        let expected = format!("{}{}{}", &all[..80], &all[83..315], &all[321..]);
        let got = bits(&out);
        assert!(expected.starts_with(&got) && expected.len() - got.len() < 16, "{got}\n{expected}");
    }

    #[test]
    fn drops_and_duplicates_change_the_length_by_their_size() {
        let mut rng = Rng::new(3);
        let mut slipped = Slipped::default();
        let stream = vec![7u8; 1000];
        assert_eq!(apply(stream.clone(), &[LinkFault::Drop { bytes: 10 }], &mut slipped, &mut rng).len(), 990);
        let twice = apply(stream.clone(), &[LinkFault::Duplicate { bytes: 10 }], &mut slipped, &mut rng);
        assert!((1000..=1010).contains(&twice.len()));
        let burst = apply(stream, &[LinkFault::Burst { bytes: 5 }], &mut slipped, &mut rng);
        assert_eq!((burst.len(), burst.iter().filter(|b| **b != 7).count()), (1000, 5));
    }
}
