//! The `[link]` section of the mission file: how the two ends frame, code and protect the link.
//! Flight and ground read the same section, so the two ends cannot disagree.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::mission::{MissionError, MissionFile};
use crate::profile::LinkProfile;
use crate::security::SecurityAssociation;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// AOS spacecraft identifier (8 bits) in every transfer frame.
    pub spacecraft_id: u8,
    /// Reed-Solomon (255,223) interleave depth, 1 to 8; a CADU is 4 + 255 x depth bytes.
    pub rs_interleave: Spanned<u8>,
    /// Downlink rate in bit/s; with a pass's duration it sets the pass's byte budget.
    pub downlink_rate_bps: Spanned<u64>,
    /// Whether frames end with the CRC-16 frame error control field.
    pub frame_error_control: bool,
    pub security: SecurityConfig,
}

/// Authentication of every frame, in the spirit of CCSDS SDLS (355.0-B).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// Security parameter index carried in each frame's security header.
    pub spi: u16,
    /// File holding the 256-bit AES-GCM key, as 64 hexadecimal digits. Never the key itself.
    pub key_file: Spanned<PathBuf>,
    /// Encrypt frame data as well as authenticate it.
    pub encrypt: bool,
}

impl LinkConfig {
    /// The link profile this section describes, with its key read from the key file; also checks
    /// what serde's types cannot (ranges).
    pub fn profile(&self, file: &MissionFile) -> Result<LinkProfile, MissionError> {
        let depth = &self.rs_interleave;
        if !(1..=8).contains(depth.get_ref()) {
            return Err(file.error_at(
                depth.span(),
                "link.rs_interleave",
                format!("must be 1 to 8 (CCSDS 131.0-B), found {}", depth.get_ref()),
            ));
        }
        if *self.downlink_rate_bps.get_ref() == 0 {
            return Err(file.error_at(self.downlink_rate_bps.span(), "link.downlink_rate_bps", "must be above 0"));
        }
        let key = file.key_file("link.security.key_file", &self.security.key_file)?;
        Ok(LinkProfile {
            spacecraft_id: Some(self.spacecraft_id),
            rs_interleave: usize::from(*self.rs_interleave.get_ref()),
            frame_error_control: self.frame_error_control,
            security: Some(SecurityAssociation::new(self.security.spi, &key, self.security.encrypt)),
        })
    }

    /// Bytes in one CADU: the 4-byte attached sync marker and the interleaved code block.
    pub fn cadu_len(&self) -> usize {
        4 + 255 * usize::from(*self.rs_interleave.get_ref())
    }
}
