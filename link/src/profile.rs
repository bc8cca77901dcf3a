//! A link profile: everything both ends must agree on to frame, code and protect the link.

use crate::frame::FrameLayout;
use crate::packet::Apid;
use crate::reed_solomon;
use crate::security::{self, SecurityAssociation};
use crate::sync::ASM_LEN;

#[derive(Debug, Clone)]
pub struct LinkProfile {
    /// Spacecraft id written in frames; a decoder with `Some` drops frames of other spacecraft.
    pub spacecraft_id: Option<u8>,
    /// Reed-Solomon interleave depth, 1 to 8.
    pub rs_interleave: usize,
    /// Whether frames end with a CRC-16 frame error control field.
    pub frame_error_control: bool,
    /// Frame authentication (and optionally encryption); `None` for plain CCSDS.
    pub security: Option<SecurityAssociation>,
}

impl LinkProfile {
    /// Plain CCSDS as real spacecraft (Suomi-NPP, NOAA-20, Aqua) send: 1024-byte CADUs, RS
    /// interleave 4, no FECF, no authentication, any spacecraft id.
    pub fn plain_ccsds() -> Self {
        Self { spacecraft_id: None, rs_interleave: 4, frame_error_control: false, security: None }
    }

    pub fn cadu_len(&self) -> usize {
        ASM_LEN + reed_solomon::N * self.rs_interleave
    }

    pub fn layout(&self) -> FrameLayout {
        let secured = self.security.is_some();
        FrameLayout {
            frame_len: reed_solomon::K * self.rs_interleave,
            security_header_len: if secured { security::HEADER_LEN } else { 0 },
            security_trailer_len: if secured { security::TRAILER_LEN } else { 0 },
            fecf: self.frame_error_control,
        }
    }
}

/// The virtual channel each APID travels on (docs/ICD.md): the realtime channel for
/// housekeeping and events, one for detections, one for imagery; anything else (for example
/// foreign packets given to `flight frame`) on the detections channel.
pub fn virtual_channel(apid: u16) -> u8 {
    match apid {
        a if a == Apid::Housekeeping.value() || a == Apid::Event.value() => 0,
        a if a == Apid::Chip.value() || a == Apid::Thumbnail.value() => 2,
        _ => 1,
    }
}
