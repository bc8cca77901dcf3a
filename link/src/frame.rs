//! AOS transfer frames (CCSDS 732.0-B) carrying a multiplexing PDU (M_PDU) of space packets.
//!
//! ```text
//! | primary header 6 | [insert zone] | [security header] | M_PDU header 2 | packet zone |
//!     [security trailer] | [OCF 4] | [FECF 2] |
//! ```
//! The primary header: version `01` (2 bits), spacecraft id (8), virtual channel id (6), virtual
//! channel frame count (24), signalling field (replay flag, count-usage flag, 2 spare, 4-bit count
//! cycle). The M_PDU header: 5 spare bits and the 11-bit first header pointer.

/// Virtual channel of idle frames.
pub const IDLE_VCID: u8 = 63;
/// First header pointer: no packet starts in this frame's packet zone.
pub const FHP_NO_PACKET_START: u16 = 0x7FF;
/// First header pointer: the packet zone holds only idle data.
pub const FHP_IDLE_DATA: u16 = 0x7FE;
/// The AOS primary header.
pub const PRIMARY_HEADER_LEN: usize = 6;
/// The M_PDU header.
pub const MPDU_HEADER_LEN: usize = 2;
/// The frame error control field.
pub const FECF_LEN: usize = crate::fecf::FECF_BYTES;
/// The operational control field (a CLCW or other report).
pub const OCF_LEN: usize = 4;

/// Frame counts are 24-bit and wrap.
pub const FRAME_COUNT_MODULUS: u32 = 1 << 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryHeader {
    pub spacecraft_id: u8,
    pub vcid: u8,
    /// Virtual channel frame count (24 bits).
    pub frame_count: u32,
    /// Set on frames sent again from the on-board recorder.
    pub replay: bool,
}

/// Why a frame's header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("transfer frame version {0} is not AOS (01)")]
    Version(u8),
    #[error("frame too short: {0} bytes")]
    Short(usize),
}

impl PrimaryHeader {
    pub fn write(&self, out: &mut [u8]) {
        let id = (0b01u16 << 14) | (u16::from(self.spacecraft_id) << 6) | u16::from(self.vcid & 0x3F);
        out[..2].copy_from_slice(&id.to_be_bytes());
        out[2..5].copy_from_slice(&(self.frame_count & 0xFF_FFFF).to_be_bytes()[1..]);
        out[5] = u8::from(self.replay) << 7;
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, HeaderError> {
        if bytes.len() < PRIMARY_HEADER_LEN {
            return Err(HeaderError::Short(bytes.len()));
        }
        let version = bytes[0] >> 6;
        if version != 0b01 {
            return Err(HeaderError::Version(version));
        }
        let id = u16::from_be_bytes([bytes[0], bytes[1]]);
        Ok(Self {
            spacecraft_id: ((id >> 6) & 0xFF) as u8,
            vcid: (id & 0x3F) as u8,
            frame_count: u32::from_be_bytes([0, bytes[2], bytes[3], bytes[4]]),
            replay: bytes[5] & 0x80 != 0,
        })
    }
}

/// Frames lost between two consecutive counts of one virtual channel.
pub fn frames_missing(previous: u32, current: u32) -> u32 {
    current.wrapping_sub(previous).wrapping_sub(1) % FRAME_COUNT_MODULUS
}

/// Where the parts of a frame lie, for one link configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLayout {
    pub frame_len: usize,
    pub insert_zone_len: usize,
    pub security_header_len: usize,
    pub security_trailer_len: usize,
    /// Whether the frame carries the operational control field.
    pub ocf: bool,
    pub fecf: bool,
}

impl FrameLayout {
    /// Offset of the security header (right after the insert zone).
    pub fn security_start(&self) -> usize {
        PRIMARY_HEADER_LEN + self.insert_zone_len
    }

    /// Offset of the M_PDU header.
    pub fn mpdu_start(&self) -> usize {
        self.security_start() + self.security_header_len
    }

    /// End of the M_PDU (start of the security trailer).
    pub fn mpdu_end(&self) -> usize {
        self.frame_len.saturating_sub(self.trailer_len())
    }

    /// Bytes after the M_PDU: security trailer, OCF, FECF.
    fn trailer_len(&self) -> usize {
        self.security_trailer_len + if self.ocf { OCF_LEN } else { 0 } + if self.fecf { FECF_LEN } else { 0 }
    }

    /// Bytes of every frame that are not packet zone.
    pub fn fixed_len(&self) -> usize {
        self.mpdu_start() + MPDU_HEADER_LEN + self.trailer_len()
    }

    /// Bytes of packet zone per frame.
    pub fn packet_zone_len(&self) -> usize {
        self.frame_len.saturating_sub(self.fixed_len())
    }
}

/// The first header pointer of an M_PDU header.
pub fn first_header_pointer(mpdu: &[u8]) -> u16 {
    u16::from_be_bytes([mpdu[0], mpdu[1]]) & 0x7FF
}

pub fn write_mpdu_header(out: &mut [u8], first_header_pointer: u16) {
    out[..2].copy_from_slice(&(first_header_pointer & 0x7FF).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_other_versions() {
        let header = PrimaryHeader { spacecraft_id: 157, vcid: 16, frame_count: 0xABCDEF, replay: true };
        let mut bytes = [0u8; 6];
        header.write(&mut bytes);
        assert_eq!(PrimaryHeader::parse(&bytes), Ok(header));
        bytes[0] &= 0x3F;
        assert_eq!(PrimaryHeader::parse(&bytes), Err(HeaderError::Version(0)));
        assert_eq!(PrimaryHeader::parse(&bytes[..3]), Err(HeaderError::Short(3)));
    }

    #[test]
    fn missing_frames_wrap_at_24_bits() {
        assert_eq!(frames_missing(5, 6), 0);
        assert_eq!(frames_missing(5, 9), 3);
        assert_eq!(frames_missing(0xFF_FFFF, 0), 0);
        assert_eq!(frames_missing(0xFF_FFFE, 1), 2);
    }
}
