//! The `[link]` section of the mission file: how the two ends frame, code and protect the link.
//! Flight and ground read the same section, so the two ends cannot disagree.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::{MissionError, MissionFile};
use kestrel_link::profile::{LinkProfile, ProfileError, Randomizer};
use kestrel_link::security::SecurityAssociation;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// AOS spacecraft identifier (8 bits) in every transfer frame.
    pub spacecraft_id: u8,
    /// Reed-Solomon (255,223) interleave depth, 1 to 8, or 0 for none; a CADU is 4 + 255 x depth
    /// bytes less the virtual fill.
    pub rs_interleave: Spanned<u8>,
    /// Reed-Solomon virtual fill: symbols of each codeword not sent (a shortened code).
    #[serde(default = "zero")]
    pub virtual_fill: Spanned<u8>,
    /// The transfer frame's length: needed without Reed-Solomon, else derived (and, if given,
    /// checked against what the code gives).
    #[serde(default)]
    pub frame_len: Option<Spanned<usize>>,
    /// The attached sync marker, as hexadecimal.
    #[serde(default = "standard_asm")]
    pub asm: Spanned<String>,
    /// Where the CCSDS pseudo-random sequence is applied: `code-block` (the standard),
    /// `frame-data` or `off`.
    #[serde(default = "standard_randomizer")]
    pub randomizer: Randomizer,
    /// Bytes of the transfer frame insert zone.
    #[serde(default = "zero")]
    pub insert_zone_len: Spanned<usize>,
    /// Whether frames carry the operational control field.
    #[serde(default)]
    pub operational_control_field: bool,
    /// Downlink rate in bit/s; with a pass's duration it sets the pass's byte budget (a mission
    /// needs it; a profile of another spacecraft's channel does not).
    #[serde(default)]
    pub downlink_rate_bps: Option<Spanned<u64>>,
    /// Whether frames end with the CRC-16 frame error control field.
    pub frame_error_control: bool,
    /// Frame security (a mission needs it; another spacecraft's channel may have none).
    #[serde(default)]
    pub security: Option<SecurityConfig>,
}

fn standard_asm() -> Spanned<String> {
    Spanned::new(0..0, "1ACFFC1D".to_owned())
}

fn zero<T: Default>() -> Spanned<T> {
    Spanned::new(0..0, T::default())
}

fn standard_randomizer() -> Randomizer {
    Randomizer::CodeBlock
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
    /// The mission's link: the channel this section describes, with its key read from the key
    /// file; a mission's link needs `security` and `downlink_rate_bps`.
    pub fn profile(&self, file: &MissionFile) -> Result<LinkProfile, MissionError> {
        let rate = self.downlink_rate_bps.as_ref().ok_or_else(|| self.missing(file, "downlink_rate_bps"))?;
        if *rate.get_ref() == 0 {
            return Err(file.error_at(rate.span(), "link.downlink_rate_bps", "must be above 0"));
        }
        let security = self.security.as_ref().ok_or_else(|| self.missing(file, "security"))?;
        let key = file.key_file("link.security.key_file", &security.key_file)?;
        let mut profile = self.channel(file, "link")?;
        profile.security = Some(SecurityAssociation::new(security.spi, &key, security.encrypt));
        Ok(profile)
    }

    /// The downlink rate a mission's link states (checked by [`Self::profile`]).
    pub fn downlink_rate_bps(&self) -> u64 {
        self.downlink_rate_bps.as_ref().map_or(0, |r| *r.get_ref())
    }

    fn missing(&self, file: &MissionFile, key: &str) -> MissionError {
        file.error_at(self.rs_interleave.span(), &format!("link.{key}"), format!("a mission's link needs `{key}`"))
    }

    /// The physical channel this section describes, without its security (`table` names the
    /// section in errors): every option checked against the others.
    pub fn channel(&self, file: &MissionFile, table: &str) -> Result<LinkProfile, MissionError> {
        let at = |span: std::ops::Range<usize>, key: &str, message: String| {
            file.error_at(span, &format!("{table}.{key}"), message)
        };
        let depth = usize::from(*self.rs_interleave.get_ref());
        if depth > 8 {
            let message = format!("must be 1 to 8 (CCSDS 131.0-B), or 0 for no Reed-Solomon; found {depth}");
            return Err(at(self.rs_interleave.span(), "rs_interleave", message));
        }
        let asm = u32::from_str_radix(self.asm.get_ref().trim(), 16)
            .ok()
            .filter(|_| self.asm.get_ref().trim().len() == 8)
            .ok_or_else(|| {
                at(self.asm.span(), "asm", format!("`{}` is not 8 hexadecimal digits", self.asm.get_ref()))
            })?;
        let mut profile = LinkProfile {
            spacecraft_id: Some(self.spacecraft_id),
            rs_interleave: depth,
            virtual_fill: usize::from(*self.virtual_fill.get_ref()),
            uncoded_frame_len: if depth == 0 { self.frame_len.as_ref().map_or(0, |f| *f.get_ref()) } else { 0 },
            asm,
            randomizer: self.randomizer,
            insert_zone_len: *self.insert_zone_len.get_ref(),
            operational_control_field: self.operational_control_field,
            frame_error_control: self.frame_error_control,
            security: None,
        };
        if let Some(stated) = &self.frame_len
            && depth > 0
            && *stated.get_ref() != profile.layout().frame_len
        {
            let message = format!(
                "{} bytes, but Reed-Solomon interleave {depth} with a virtual fill of {} gives {}-byte frames",
                stated.get_ref(),
                profile.virtual_fill,
                profile.layout().frame_len
            );
            return Err(at(stated.span(), "frame_len", message));
        }
        // the security header and trailer are part of the frame: check the layout with them
        if self.security.is_some() {
            profile.security = Some(SecurityAssociation::new(0, &[0; 32], false));
        }
        let checked = profile.check();
        profile.security = None;
        checked.map_err(|e| {
            let (span, key) = match e {
                ProfileError::VirtualFill(_) => (self.virtual_fill.span(), "virtual_fill"),
                ProfileError::FrameLength(_) => {
                    (self.frame_len.as_ref().map_or(self.rs_interleave.span(), Spanned::span), "frame_len")
                }
                ProfileError::FrameTooShort { .. } => (self.insert_zone_len.span(), "insert_zone_len"),
                ProfileError::Interleave(_) => (self.rs_interleave.span(), "rs_interleave"),
            };
            at(span, key, e.to_string())
        })?;
        Ok(profile)
    }
}
