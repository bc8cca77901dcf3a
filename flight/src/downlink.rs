//! One contact's link: CADUs down a TCP connection to the ground station service (the radio), and
//! whatever it sends up (acknowledgements, telecommands). Both directions run on threads of their
//! own, so that a ground that stops reading or writing never holds up flight's main loop: what
//! the radio has not written yet is bounded (`MAX_BACKLOG`), and a write that stalls past
//! `WRITE_TIMEOUT` ends the contact (the products not acknowledged are sent again later).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::Duration;

use kestrel_link::encoder::{CaduEncoder, EncoderState};
use kestrel_link::packet::{self, SequenceCounters};
use kestrel_link::profile::{LinkProfile, virtual_channel};
use kestrel_link::station::{self, SignOnError, StationName};

use crate::checkpoint::QueuedProduct;
use crate::contacts::Contact;

/// Largest space packet data field used for product segments.
const SEGMENT_DATA: usize = 4096;

/// CADU bytes handed to the radio and not yet written, beyond which no more are taken.
const MAX_BACKLOG: u64 = 4 << 20;

/// A write the ground does not take within this ends the contact.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the end of a contact waits for the radio to write what it still holds.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A ground that does not answer the station's sign-on within this is not reached.
const SIGN_ON_TIMEOUT: Duration = Duration::from_secs(5);

/// The radio's side of the downlink: CADU batches written in order on a thread of its own.
#[derive(Debug)]
struct Radio {
    batches: Sender<Vec<u8>>,
    /// Bytes handed over and not yet written.
    backlog: Arc<AtomicU64>,
    /// Set once a write failed or timed out: the connection is gone.
    failed: Arc<AtomicBool>,
}

impl Radio {
    fn start(mut socket: TcpStream) -> Self {
        let (batches, queue) = mpsc::channel::<Vec<u8>>();
        let backlog = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let (left, broken) = (Arc::clone(&backlog), Arc::clone(&failed));
        std::thread::spawn(move || {
            for batch in queue {
                if socket.write_all(&batch).is_err() {
                    broken.store(true, Ordering::SeqCst);
                    let _ = socket.shutdown(Shutdown::Both);
                    break;
                }
                left.fetch_sub(batch.len() as u64, Ordering::SeqCst);
            }
        });
        Self { batches, backlog, failed }
    }
}

/// Why a contact could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Connect(#[from] std::io::Error),
    #[error("station sign-on: {0}")]
    SignOn(#[from] SignOnError),
}

#[derive(Debug)]
pub struct Session {
    pub contact: Contact,
    socket: TcpStream,
    radio: Radio,
    uplink: Receiver<Vec<u8>>,
    encoder: CaduEncoder,
    counters: SequenceCounters,
    /// CADU bytes sent in this contact.
    pub sent_bytes: u64,
    closed: bool,
}

impl Session {
    /// Connects to the ground for `contact`, signs on as `station`, and resumes the link counters.
    pub fn open(
        address: &str,
        station: &(StationName, [u8; 32]),
        contact: Contact,
        profile: &LinkProfile,
        encoder: EncoderState,
        packet_counts: &[(u16, u16)],
    ) -> Result<Self, OpenError> {
        let target = address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing"))?;
        let mut socket = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
        socket.set_nodelay(true)?;
        socket.set_write_timeout(Some(WRITE_TIMEOUT))?;
        socket.set_read_timeout(Some(SIGN_ON_TIMEOUT))?;
        station::sign_on(&mut socket, &station.0, &station.1)?;
        socket.set_read_timeout(None)?;
        let radio = Radio::start(socket.try_clone()?);
        let mut reader = socket.try_clone()?;
        let (sender, uplink) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 16 * 1024];
            while let Ok(n) = reader.read(&mut buffer) {
                if n == 0 || sender.send(buffer[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            contact,
            socket,
            radio,
            uplink,
            encoder: CaduEncoder::new(profile.clone(), encoder),
            counters: SequenceCounters::with_start(packet_counts.iter().copied()),
            sent_bytes: 0,
            closed: false,
        })
    }

    /// Upper bound of the CADU bytes (and frames) `product` needs, padding of its last frame included.
    pub fn cost(&self, product: &QueuedProduct) -> (u64, u64) {
        let packets = product.envelope.len().div_ceil(SEGMENT_DATA).max(1);
        let bytes = product.envelope.len() + packets * packet::HEADER_LEN;
        let zone = self.encoder.cadu_len().saturating_sub(64).max(1);
        let frames = (bytes.div_ceil(zone) + 1) as u64;
        (frames * self.encoder.cadu_len() as u64, frames)
    }

    /// Moves on to the next budget window of the same contact.
    pub fn renew(&mut self, contact: Contact) {
        if contact.start_ms != self.contact.start_ms {
            self.contact = contact;
            self.sent_bytes = 0;
        }
    }

    pub fn remaining_budget(&self) -> u64 {
        self.contact.budget_bytes.saturating_sub(self.sent_bytes)
    }

    pub fn encoder_state(&self) -> &EncoderState {
        self.encoder.state()
    }

    pub fn packet_counts(&self) -> Vec<(u16, u16)> {
        self.counters.snapshot()
    }

    /// Whether the radio takes more: its backlog is within bounds. A stalled ground makes this
    /// false until the write times out and the contact ends.
    pub fn ready(&self) -> bool {
        self.radio.backlog.load(Ordering::SeqCst) < MAX_BACKLOG
    }

    /// Hands products (whole frames; the last one padded) to the radio and returns the CADU bytes
    /// handed over; an error once the connection has failed.
    pub fn send(&mut self, products: &[QueuedProduct]) -> std::io::Result<u64> {
        self.check()?;
        let mut out = Vec::new();
        for product in products {
            let mut packets = Vec::new();
            self.counters.segment(product.apid, &product.envelope, SEGMENT_DATA, &mut packets);
            self.encoder.push_packets(virtual_channel(product.apid), &packets);
            self.encoder.emit_full_frames(&mut out);
        }
        self.encoder.flush(&mut out);
        let bytes = out.len() as u64;
        self.radio.backlog.fetch_add(bytes, Ordering::SeqCst);
        self.radio.batches.send(out).map_err(|_| gone())?;
        self.sent_bytes += bytes;
        Ok(bytes)
    }

    /// An error once a write has failed or timed out.
    pub fn check(&self) -> std::io::Result<()> {
        if self.radio.failed.load(Ordering::SeqCst) { Err(gone()) } else { Ok(()) }
    }

    /// Bytes the ground has sent up since the last call; `None` once the ground has hung up.
    pub fn received(&mut self) -> Option<Vec<u8>> {
        let mut bytes = Vec::new();
        loop {
            match self.uplink.try_recv() {
                Ok(chunk) => bytes.extend(chunk),
                Err(TryRecvError::Empty) => return Some(bytes),
                Err(TryRecvError::Disconnected) if !self.closed => {
                    self.closed = true;
                    return Some(bytes);
                }
                Err(TryRecvError::Disconnected) => return None,
            }
        }
    }

    /// Ends the contact: what the radio still holds gets up to `CLOSE_GRACE` to go out (a ground
    /// that stopped reading does not hold flight up longer), then no more CADUs; the ground's last
    /// acknowledgements may still be read.
    pub fn close(&self) {
        let deadline = std::time::Instant::now() + CLOSE_GRACE;
        while self.radio.backlog.load(Ordering::SeqCst) > 0
            && !self.radio.failed.load(Ordering::SeqCst)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

fn gone() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("the ground took no CADUs for {} s, or the connection failed", WRITE_TIMEOUT.as_secs()),
    )
}
