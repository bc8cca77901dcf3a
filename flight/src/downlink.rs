//! One contact's link: CADUs down a TCP connection to the ground station service (the radio), and
//! whatever it sends up (acknowledgements, telecommands) read on a thread of its own.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Duration;

use kestrel_link::encoder::{CaduEncoder, EncoderState};
use kestrel_link::packet::{self, SequenceCounters};
use kestrel_link::profile::{LinkProfile, virtual_channel};

use crate::checkpoint::QueuedProduct;
use crate::contacts::Contact;

/// Largest space packet data field used for product segments.
const SEGMENT_DATA: usize = 4096;

#[derive(Debug)]
pub struct Session {
    pub contact: Contact,
    socket: TcpStream,
    uplink: Receiver<Vec<u8>>,
    encoder: CaduEncoder,
    counters: SequenceCounters,
    /// CADU bytes sent in this contact.
    pub sent_bytes: u64,
    closed: bool,
}

impl Session {
    /// Connects to the ground for `contact`, resuming the link counters.
    pub fn open(
        address: &str,
        contact: Contact,
        profile: &LinkProfile,
        encoder: EncoderState,
        packet_counts: &[(u16, u16)],
    ) -> std::io::Result<Self> {
        let target = address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing"))?;
        let socket = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
        socket.set_nodelay(true)?;
        socket.set_write_timeout(Some(Duration::from_secs(10)))?;
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

    /// Sends products (whole frames; the last one padded) and returns the CADU bytes written.
    pub fn send(&mut self, products: &[QueuedProduct]) -> std::io::Result<u64> {
        let mut out = Vec::new();
        for product in products {
            let mut packets = Vec::new();
            self.counters.segment(product.apid, &product.envelope, SEGMENT_DATA, &mut packets);
            self.encoder.push_packets(virtual_channel(product.apid), &packets);
            self.encoder.emit_full_frames(&mut out);
        }
        self.encoder.flush(&mut out);
        self.socket.write_all(&out)?;
        self.sent_bytes += out.len() as u64;
        Ok(out.len() as u64)
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

    /// Ends the contact: no more CADUs; the ground's last acknowledgements may still be read.
    pub fn close(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}
