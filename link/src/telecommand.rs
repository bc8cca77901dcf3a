//! Uplink: telecommand transfer frames (CCSDS 232.0-B) with the same SDLS-style protection as the
//! downlink (direction `Uplink` in the IV, so no IV is shared with the downlink).
//!
//! ```text
//! | header 5 | security header 10 | data | MAC 16 | FECF 2 |
//! header: version 00 (2) | bypass (1) | control command (1) | spare (2) | spacecraft id (10) |
//!         VCID (6) | frame length - 1 (10) | frame sequence number (8)
//! ```
//! A stream of frames is self-delimiting by the length field. A receiver that meets bytes that are
//! not a valid frame (bad version, length, CRC) skips one byte and looks again, so garbage on the
//! line costs only the garbage.

use crate::fecf;
use crate::security::{self, Direction, ReplayGuard, SecurityAssociation, SecurityError};

pub const HEADER_LEN: usize = 5;
/// Longest TC frame the standard allows.
pub const MAX_FRAME_LEN: usize = 1024;
/// Bytes around the data: header, security header and trailer, FECF.
pub const OVERHEAD: usize = HEADER_LEN + security::HEADER_LEN + security::TRAILER_LEN + fecf::FECF_BYTES;
/// Most data one frame carries.
pub const MAX_DATA_LEN: usize = MAX_FRAME_LEN - OVERHEAD;

/// How far below the highest uplink ARSN accepted a frame not yet seen is still accepted on board:
/// ground processes sharing an archive take their ARSNs from one counter, and frames two of them
/// send at the same moment may reach the spacecraft in either order (docs/ICD.md section 6).
pub const UPLINK_REPLAY_WINDOW: u64 = 64;

/// Builds one protected TC frame carrying `data` (at most [`MAX_DATA_LEN`] bytes).
pub fn build(
    security: &SecurityAssociation,
    spacecraft_id: u16,
    vcid: u8,
    sequence: u8,
    arsn: u64,
    data: &[u8],
) -> Vec<u8> {
    assert!(data.len() <= MAX_DATA_LEN, "telecommand data of {} bytes", data.len());
    let len = OVERHEAD + data.len();
    let mut frame = vec![0u8; len];
    // version 00, bypass 0, control command 0
    let id = spacecraft_id & 0x3FF;
    frame[..2].copy_from_slice(&id.to_be_bytes());
    let vc_len = (u16::from(vcid & 0x3F) << 10) | ((len - 1) as u16 & 0x3FF);
    frame[2..4].copy_from_slice(&vc_len.to_be_bytes());
    frame[4] = sequence;
    let data_start = HEADER_LEN + security::HEADER_LEN;
    let data_end = data_start + data.len();
    frame[data_start..data_end].copy_from_slice(data);
    security.protect(Direction::Uplink, vcid, arsn, &mut frame, HEADER_LEN, data_end);
    fecf::seal(&mut frame);
    frame
}

/// A verified telecommand frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcFrame {
    pub spacecraft_id: u16,
    pub vcid: u8,
    pub sequence: u8,
    pub arsn: u64,
    pub data: Vec<u8>,
}

/// Counters of a telecommand receiver.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UplinkStats {
    pub frames_accepted: u64,
    pub bytes_skipped: u64,
    pub fecf_errors: u64,
    pub other_spacecraft: u64,
    pub authentication_failures: u64,
    pub replayed_frames: u64,
    pub unknown_spi: u64,
}

/// Receives a byte stream of TC frames; only authenticated, fresh frames come out.
#[derive(Debug)]
pub struct TcReceiver {
    security: SecurityAssociation,
    spacecraft_id: u16,
    replay: ReplayGuard,
    buffer: Vec<u8>,
    stats: UplinkStats,
}

impl TcReceiver {
    pub fn new(security: SecurityAssociation, spacecraft_id: u16) -> Self {
        Self::resuming(security, spacecraft_id, ReplayGuard::default())
    }

    /// A receiver that refuses everything at or below what `replay` has already accepted.
    pub fn resuming(security: SecurityAssociation, spacecraft_id: u16, replay: ReplayGuard) -> Self {
        Self { security, spacecraft_id, replay, buffer: Vec::new(), stats: UplinkStats::default() }
    }

    pub fn stats(&self) -> &UplinkStats {
        &self.stats
    }

    /// Takes the next bytes; returns the frames they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<TcFrame> {
        self.buffer.extend_from_slice(bytes);
        let mut frames = Vec::new();
        let mut at = 0;
        while self.buffer.len() - at >= HEADER_LEN {
            let candidate = &self.buffer[at..];
            let version = candidate[0] >> 6;
            let len = usize::from(u16::from_be_bytes([candidate[2], candidate[3]]) & 0x3FF) + 1;
            if version != 0 || len < OVERHEAD {
                at += 1;
                self.stats.bytes_skipped += 1;
                continue;
            }
            if candidate.len() < len {
                // a header whose frame is not all here yet may be a false one: a whole frame
                // further on is taken now rather than held up behind it
                match self.next_whole_frame(at + 1) {
                    Some(next) => {
                        self.stats.bytes_skipped += (next - at) as u64;
                        at = next;
                        continue;
                    }
                    None => break,
                }
            }
            let mut frame = candidate[..len].to_vec();
            if !fecf::verify(&frame) {
                // not a frame boundary, or a damaged frame: look again one byte on
                self.stats.fecf_errors += 1;
                at += 1;
                self.stats.bytes_skipped += 1;
                continue;
            }
            at += len;
            if let Some(tc) = self.verify(&mut frame) {
                frames.push(tc);
            }
        }
        self.buffer.drain(..at);
        frames
    }

    /// The offset (from `from` on) of the first frame that lies whole in the buffer with a good
    /// frame error control field.
    fn next_whole_frame(&self, from: usize) -> Option<usize> {
        (from..self.buffer.len().saturating_sub(HEADER_LEN - 1)).find(|&at| {
            let candidate = &self.buffer[at..];
            let len = usize::from(u16::from_be_bytes([candidate[2], candidate[3]]) & 0x3FF) + 1;
            candidate[0] >> 6 == 0 && len >= OVERHEAD && len <= candidate.len() && fecf::verify(&candidate[..len])
        })
    }

    fn verify(&mut self, frame: &mut [u8]) -> Option<TcFrame> {
        let spacecraft_id = u16::from_be_bytes([frame[0], frame[1]]) & 0x3FF;
        if spacecraft_id != self.spacecraft_id {
            self.stats.other_spacecraft += 1;
            return None;
        }
        let vcid = frame[2] >> 2;
        let data_end = frame.len() - fecf::FECF_BYTES - security::TRAILER_LEN;
        let verified = self
            .security
            .verify(Direction::Uplink, vcid, frame, HEADER_LEN, data_end)
            .and_then(|arsn| self.replay.accept(vcid, arsn).map(|()| arsn));
        match verified {
            Ok(arsn) => {
                self.stats.frames_accepted += 1;
                Some(TcFrame {
                    spacecraft_id,
                    vcid,
                    sequence: frame[4],
                    arsn,
                    data: frame[HEADER_LEN + security::HEADER_LEN..data_end].to_vec(),
                })
            }
            Err(SecurityError::UnknownSpi(_)) => {
                self.stats.unknown_spi += 1;
                None
            }
            Err(SecurityError::Authentication) => {
                self.stats.authentication_failures += 1;
                None
            }
            Err(SecurityError::Replay { .. }) => {
                self.stats.replayed_frames += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(key: u8) -> SecurityAssociation {
        SecurityAssociation::new(2, &[key; 32], false)
    }

    #[test]
    fn frames_survive_garbage_and_splits() {
        let mut stream = vec![0xEE; 13];
        let a = build(&sa(1), 42, 0, 0, 1, b"set mode SAFE");
        let b = build(&sa(1), 42, 1, 1, 2, &[7u8; MAX_DATA_LEN]);
        stream.extend(&a);
        stream.extend([0x00, 0x01, 0x02]);
        stream.extend(&b);
        let mut rx = TcReceiver::new(sa(1), 42);
        let mut got = Vec::new();
        for chunk in stream.chunks(100) {
            got.extend(rx.push(chunk));
        }
        assert_eq!(got.len(), 2, "{:?}", rx.stats());
        assert_eq!(got[0].data, b"set mode SAFE");
        assert_eq!((got[1].vcid, got[1].arsn, got[1].data.len()), (1, 2, MAX_DATA_LEN));
        assert_eq!(b.len(), MAX_FRAME_LEN);
    }

    #[test]
    fn forged_replayed_wrong_key_and_foreign_frames_are_refused_and_counted() {
        let mut rx = TcReceiver::new(sa(1), 42);
        let good = build(&sa(1), 42, 0, 0, 10, b"go");
        assert_eq!(rx.push(&good).len(), 1);
        assert!(rx.push(&good).is_empty(), "replay");
        assert!(rx.push(&build(&sa(9), 42, 0, 1, 11, b"go")).is_empty(), "wrong key");
        let mut forged = build(&sa(1), 42, 0, 2, 12, b"go");
        forged[HEADER_LEN + security::HEADER_LEN] ^= 1;
        fecf::seal(&mut forged);
        assert!(rx.push(&forged).is_empty(), "forged");
        assert!(rx.push(&build(&sa(1), 43, 0, 3, 13, b"go")).is_empty(), "other spacecraft");
        let s = rx.stats();
        assert_eq!((s.frames_accepted, s.replayed_frames, s.authentication_failures, s.other_spacecraft), (1, 1, 2, 1));
        assert_eq!(rx.push(&build(&sa(1), 42, 0, 4, 14, b"go")).len(), 1, "a fresh frame still passes");
    }

    #[test]
    fn a_false_header_does_not_hold_up_the_frame_behind_it() {
        let mut rx = TcReceiver::new(sa(1), 42);
        // five bytes that read as the header of a 1024-byte frame, then a real command
        let false_header = [0x00, 42, 0x03, 0xFF, 0x00];
        let mut stream = false_header.to_vec();
        stream.extend(build(&sa(1), 42, 0, 0, 1, b"go"));
        let got = rx.push(&stream);
        assert_eq!(got.len(), 1, "{:?}", rx.stats());
        assert_eq!(got[0].data, b"go");
        assert_eq!(rx.stats().bytes_skipped, 5);
        // a real frame split across pushes still waits for its end
        let whole = build(&sa(1), 42, 0, 1, 2, b"later");
        assert!(rx.push(&whole[..10]).is_empty());
        assert_eq!(rx.push(&whole[10..]).len(), 1);
    }
}
