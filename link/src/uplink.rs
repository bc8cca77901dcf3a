//! What the ground sends up: product acknowledgements and telecommands, as space packets inside
//! protected telecommand frames (docs/ICD.md §6). Payloads are `postcard`, like products.

use serde::{Deserialize, Serialize};

use crate::packet::{self, Apid, PacketHeader, SequenceCounters};
use crate::security::SecurityAssociation;
use crate::telecommand::{self, TcFrame};

/// Product ids one acknowledgement packet carries at most (it must fit one TC frame).
pub const MAX_ACKS_PER_PACKET: usize = 96;

/// What an uplink packet says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UplinkMessage {
    /// These products are safe in the ground archive: the spacecraft may prune them.
    Acknowledge { product_ids: Vec<u64> },
    /// An operator's command; `id` is the ground's audit-trail id, echoed in the flight's event.
    Command { id: u64, command: Telecommand },
    /// `bytes` of file transfer `transfer` at `offset`; a later `InstallModel` names the transfer.
    UploadSegment { transfer: u64, offset: u64, bytes: Vec<u8> },
}

/// File bytes one upload segment carries (with its header and postcard fields, it fits one frame).
pub const UPLOAD_SEGMENT_LEN: usize = telecommand::MAX_DATA_LEN - packet::HEADER_LEN - 24;

/// Whether command `id` fits one TC frame (a larger id takes more bytes: `u64::MAX` for any id).
pub fn command_fits(id: u64, command: &Telecommand) -> bool {
    let message = UplinkMessage::Command { id, command: command.clone() };
    postcard::to_stdvec(&message).is_ok_and(|p| p.len() + packet::HEADER_LEN <= telecommand::MAX_DATA_LEN)
}

/// Operating modes of the flight software.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    Nominal,
    Throttled,
    Safe,
}

/// What an operator can ask of the spacecraft (docs/ICD.md §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Telecommand {
    SetMode {
        mode: Mode,
    },
    SetParameter {
        name: String,
        value: f64,
    },
    /// Send a product again (it was lost, or the archive wants it back).
    Redownlink {
        product_id: u64,
    },
    /// Downlink a full-resolution tile of a frame.
    RequestTile {
        frame_id: u64,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
    },
    /// Commands to run at the given times (Unix ms, spacecraft clock).
    TimeTagged {
        commands: Vec<(i64, Telecommand)>,
    },
    /// Replace the weights of manifest model `model` with the file uploaded as `transfer`:
    /// `length` bytes whose SHA-256 is `sha256`, signed (ed25519 over the digest) by `signature`.
    InstallModel {
        transfer: u64,
        model: String,
        length: u64,
        sha256: [u8; 32],
        signature: Vec<u8>,
    },
}

impl UplinkMessage {
    fn apid(&self) -> Apid {
        match self {
            Self::Acknowledge { .. } => Apid::Acknowledgement,
            Self::Command { .. } => Apid::Telecommand,
            Self::UploadSegment { .. } => Apid::UploadSegment,
        }
    }
}

/// Why an uplink packet was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UplinkError {
    #[error("uplink packet: {0}")]
    Packet(#[from] packet::PacketError),
    #[error("uplink packet on APID {0:#05x}, which carries no uplink message")]
    Apid(u16),
    #[error("uplink packet of {declared} bytes in a frame of {available}")]
    Truncated { declared: usize, available: usize },
    #[error("uplink message does not decode: {0}")]
    Decode(String),
}

/// Builds the protected TC frames that carry `message` (acknowledgements are split as needed).
#[derive(Debug)]
pub struct UplinkSender {
    security: SecurityAssociation,
    spacecraft_id: u16,
    vcid: u8,
    frame_sequence: u8,
    next_arsn: u64,
    counters: SequenceCounters,
}

impl UplinkSender {
    /// `next_arsn` must never have been used with this key before: persist it (see `next_arsn`).
    pub fn new(security: SecurityAssociation, spacecraft_id: u16, vcid: u8, next_arsn: u64) -> Self {
        Self { security, spacecraft_id, vcid, frame_sequence: 0, next_arsn, counters: SequenceCounters::default() }
    }

    /// The next anti-replay sequence number this sender will use.
    pub fn next_arsn(&self) -> u64 {
        self.next_arsn
    }

    /// TC frames (back to back) acknowledging `product_ids`.
    pub fn acknowledge(&mut self, product_ids: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in product_ids.chunks(MAX_ACKS_PER_PACKET) {
            out.extend(self.frame(&UplinkMessage::Acknowledge { product_ids: chunk.to_vec() }));
        }
        out
    }

    /// The TC frame carrying an operator's command; `None` if the command is too big for one frame.
    pub fn command(&mut self, id: u64, command: &Telecommand) -> Option<Vec<u8>> {
        command_fits(id, command).then(|| self.frame(&UplinkMessage::Command { id, command: command.clone() }))
    }

    /// TC frames (back to back) carrying `file` as segments of upload `transfer`.
    pub fn upload(&mut self, transfer: u64, file: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, chunk) in file.chunks(UPLOAD_SEGMENT_LEN).enumerate() {
            let offset = (i * UPLOAD_SEGMENT_LEN) as u64;
            out.extend(self.frame(&UplinkMessage::UploadSegment { transfer, offset, bytes: chunk.to_vec() }));
        }
        out
    }

    fn frame(&mut self, message: &UplinkMessage) -> Vec<u8> {
        // every message of this schema serializes
        let payload = postcard::to_stdvec(message).unwrap_or_default();
        let mut packet = Vec::new();
        self.counters.segment(
            message.apid().value(),
            &payload,
            telecommand::MAX_DATA_LEN - packet::HEADER_LEN,
            &mut packet,
        );
        let frame = telecommand::build(
            &self.security,
            self.spacecraft_id,
            self.vcid,
            self.frame_sequence,
            self.next_arsn,
            &packet,
        );
        self.frame_sequence = self.frame_sequence.wrapping_add(1);
        self.next_arsn += 1;
        frame
    }
}

/// The message in a verified TC frame.
pub fn decode(frame: &TcFrame) -> Result<UplinkMessage, UplinkError> {
    let header = PacketHeader::parse(&frame.data)?;
    if header.packet_len > frame.data.len() {
        return Err(UplinkError::Truncated { declared: header.packet_len, available: frame.data.len() });
    }
    let uplink_apids = [Apid::Acknowledgement, Apid::Telecommand, Apid::UploadSegment];
    if !uplink_apids.iter().any(|apid| apid.value() == header.apid) {
        return Err(UplinkError::Apid(header.apid));
    }
    postcard::from_bytes(&frame.data[packet::HEADER_LEN..header.packet_len])
        .map_err(|e| UplinkError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telecommand::TcReceiver;

    #[test]
    fn acknowledgements_travel_in_protected_frames() {
        let sa = SecurityAssociation::new(1, &[4; 32], false);
        let mut sender = UplinkSender::new(sa.clone(), 42, 0, 1000);
        let ids: Vec<u64> = (0..250).map(|i| u64::MAX - i).collect();
        let stream = sender.acknowledge(&ids);
        assert_eq!(sender.next_arsn(), 1003, "250 ids in three frames");
        let mut receiver = TcReceiver::new(sa, 42);
        let frames = receiver.push(&stream);
        let mut acked = Vec::new();
        for frame in &frames {
            let UplinkMessage::Acknowledge { product_ids } = decode(frame).expect("decodes") else { panic!("an ack") };
            acked.extend(product_ids);
        }
        assert_eq!(acked, ids);
    }

    #[test]
    fn commands_travel_in_protected_frames() {
        let sa = SecurityAssociation::new(1, &[4; 32], false);
        let mut sender = UplinkSender::new(sa.clone(), 42, 0, 7);
        let sequence = Telecommand::TimeTagged {
            commands: vec![
                (1_000, Telecommand::SetMode { mode: Mode::Safe }),
                (2_000, Telecommand::Redownlink { product_id: 9 }),
            ],
        };
        let frame = sender.command(3, &sequence).expect("fits one frame");
        let frames = TcReceiver::new(sa, 42).push(&frame);
        assert_eq!(decode(&frames[0]), Ok(UplinkMessage::Command { id: 3, command: sequence }));
        let huge = Telecommand::SetParameter { name: "x".repeat(2000), value: 1.0 };
        assert!(sender.command(4, &huge).is_none());
    }

    #[test]
    fn an_upload_travels_as_segments_that_each_fill_one_frame() {
        let sa = SecurityAssociation::new(1, &[4; 32], false);
        let mut sender = UplinkSender::new(sa.clone(), 42, 1, 1);
        let file: Vec<u8> = (0..3 * UPLOAD_SEGMENT_LEN + 5).map(|i| (i * 7) as u8).collect();
        let stream = sender.upload(u64::MAX, &file);
        assert_eq!(sender.next_arsn(), 5, "four segments, four frames");
        let frames = TcReceiver::new(sa, 42).push(&stream);
        assert_eq!(frames.len(), 4);
        assert!(frames.iter().all(|f| f.data.len() <= telecommand::MAX_DATA_LEN));
        let mut joined = Vec::new();
        for frame in &frames {
            let Ok(UplinkMessage::UploadSegment { transfer: u64::MAX, offset, bytes }) = decode(frame) else {
                panic!("a segment of the transfer")
            };
            assert_eq!(offset, joined.len() as u64);
            joined.extend(bytes);
        }
        assert_eq!(joined, file);
    }
}
