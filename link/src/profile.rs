//! A link profile: everything both ends must agree on to frame, code and protect an AOS physical
//! channel (CCSDS 131.0-B coding and synchronisation, 732.0-B frames, 355.0-B security).

use crate::frame::FrameLayout;
use crate::packet::Apid;
use crate::reed_solomon;
use crate::security::{self, SecurityAssociation};
use crate::sync::{ASM, ASM_LEN};

/// The longest transfer frame flight and ground frame or decode.
pub const MAX_FRAME_LEN: usize = 2048;

#[derive(Debug, Clone)]
pub struct LinkProfile {
    /// Spacecraft id written in frames; a decoder with `Some` drops frames of other spacecraft.
    pub spacecraft_id: Option<u8>,
    /// Reed-Solomon (255,223) interleave depth, 1 to 8; 0: no Reed-Solomon (the frame is the
    /// whole code block, `uncoded_frame_len` long).
    pub rs_interleave: usize,
    /// Reed-Solomon virtual fill: symbols of each codeword not sent (a shortened code), 0 to 222.
    pub virtual_fill: usize,
    /// The frame length of an uncoded channel (`rs_interleave` 0).
    pub uncoded_frame_len: usize,
    /// The attached sync marker.
    pub asm: u32,
    /// Where the CCSDS pseudo-random sequence is XORed in, if anywhere.
    pub randomizer: Randomizer,
    /// Bytes of the transfer frame insert zone, between the primary header and the data.
    pub insert_zone_len: usize,
    /// Whether frames carry the 4-byte operational control field (before the FECF).
    pub operational_control_field: bool,
    /// Whether frames end with a CRC-16 frame error control field.
    pub frame_error_control: bool,
    /// Frame authentication (and optionally encryption); `None` for plain CCSDS.
    pub security: Option<SecurityAssociation>,
}

/// Where a channel applies the CCSDS pseudo-random sequence (131.0-B §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Randomizer {
    /// Not randomized.
    Off,
    /// The standard: the whole code block after the ASM, after Reed-Solomon encoding.
    CodeBlock,
    /// The frame after its 6-byte primary header, before Reed-Solomon encoding, so that the
    /// header and the parity go unrandomized (Terra's direct broadcast).
    FrameData,
}

/// Why a described physical channel cannot be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("Reed-Solomon interleave {0} is not 0 (none) or 1 to 8")]
    Interleave(usize),
    #[error("virtual fill {0} leaves no data in a codeword (at most 222)")]
    VirtualFill(usize),
    #[error("a channel without Reed-Solomon needs its frame length, at most 2048 bytes (found {0})")]
    FrameLength(usize),
    #[error("a {frame_len}-byte frame cannot hold its {fixed} bytes of headers and trailers and a packet zone")]
    FrameTooShort { frame_len: usize, fixed: usize },
}

impl LinkProfile {
    /// Plain CCSDS as Suomi-NPP, NOAA-20 and Aqua send it: 1024-byte CADUs, RS interleave 4,
    /// randomized, no insert zone, OCF or FECF, no authentication, any spacecraft id.
    pub fn plain_ccsds() -> Self {
        Self {
            spacecraft_id: None,
            rs_interleave: 4,
            virtual_fill: 0,
            uncoded_frame_len: 0,
            asm: ASM,
            randomizer: Randomizer::CodeBlock,
            insert_zone_len: 0,
            operational_control_field: false,
            frame_error_control: false,
            security: None,
        }
    }

    /// Bytes of the code block after the ASM: Reed-Solomon data and parity less the virtual
    /// fill, or the frame itself.
    pub fn block_len(&self) -> usize {
        match self.rs_interleave {
            0 => self.uncoded_frame_len,
            depth => (reed_solomon::N - self.virtual_fill) * depth,
        }
    }

    pub fn cadu_len(&self) -> usize {
        ASM_LEN + self.block_len()
    }

    /// Checks that the profile describes a channel frames fit in.
    pub fn check(&self) -> Result<(), ProfileError> {
        if self.rs_interleave > reed_solomon::MAX_DEPTH {
            return Err(ProfileError::Interleave(self.rs_interleave));
        }
        if self.rs_interleave > 0 && self.virtual_fill >= reed_solomon::K {
            return Err(ProfileError::VirtualFill(self.virtual_fill));
        }
        // an M_PDU's first header pointer (11 bits) reaches 2047 bytes into a frame at most
        if self.rs_interleave == 0 && !(1..=MAX_FRAME_LEN).contains(&self.uncoded_frame_len) {
            return Err(ProfileError::FrameLength(self.uncoded_frame_len));
        }
        let layout = self.layout();
        let fixed = layout.fixed_len();
        // room for at least a packet header in every frame
        if layout.frame_len < fixed + crate::packet::HEADER_LEN {
            return Err(ProfileError::FrameTooShort { frame_len: layout.frame_len, fixed });
        }
        Ok(())
    }

    pub fn layout(&self) -> FrameLayout {
        let secured = self.security.is_some();
        let frame_len = match self.rs_interleave {
            0 => self.uncoded_frame_len,
            depth => (reed_solomon::K - self.virtual_fill) * depth,
        };
        FrameLayout {
            frame_len,
            insert_zone_len: self.insert_zone_len,
            security_header_len: if secured { security::HEADER_LEN } else { 0 },
            security_trailer_len: if secured { security::TRAILER_LEN } else { 0 },
            ocf: self.operational_control_field,
            fecf: self.frame_error_control,
        }
    }
}

/// The virtual channel each APID travels on (docs/ICD.md): the realtime channel for
/// housekeeping and events, one for detections, one for imagery; anything else (for example
/// foreign packets given to `flight-tools frame`) on the detections channel.
pub fn virtual_channel(apid: u16) -> u8 {
    match apid {
        a if a == Apid::Housekeeping.value() || a == Apid::Event.value() || a == Apid::CommandReport.value() => 0,
        a if a == Apid::Chip.value() || a == Apid::Thumbnail.value() => 2,
        _ => 1,
    }
}
