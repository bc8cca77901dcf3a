//! The physical channels of public missions' direct-broadcast downlinks, each from the public
//! document that describes it, so that the ground can decode their captures
//! (`ground decode --spacecraft NAME`) and tell which one a capture is (`--detect`).

use crate::profile::{LinkProfile, Randomizer};
use crate::sync::ASM;

/// A public mission's downlink as its documents describe it.
#[derive(Debug, Clone, Copy)]
pub struct Spacecraft {
    /// What `--spacecraft` takes.
    pub name: &'static str,
    pub spacecraft_id: u8,
    pub rs_interleave: usize,
    pub randomizer: Randomizer,
    pub insert_zone_len: usize,
    pub operational_control_field: bool,
    pub frame_error_control: bool,
    /// The public document(s) the values come from, and how far they have been checked.
    pub source: &'static str,
}

impl Spacecraft {
    /// The decoder's profile for this downlink: its spacecraft id only, no authentication.
    pub fn profile(&self) -> LinkProfile {
        LinkProfile {
            spacecraft_id: Some(self.spacecraft_id),
            rs_interleave: self.rs_interleave,
            virtual_fill: 0,
            uncoded_frame_len: 0,
            asm: ASM,
            randomizer: self.randomizer,
            insert_zone_len: self.insert_zone_len,
            operational_control_field: self.operational_control_field,
            frame_error_control: self.frame_error_control,
            security: None,
        }
    }
}

/// The JPSS-1 era HRD link (Suomi-NPP and NOAA-20 fly the same one).
const JPSS_HRD: &str = "JPSS HRD to Direct Broadcast Stations RF ICD (NASA GSFC 474-00448-01); \
    checked against a real capture";

/// What most of them fly: 1024-byte CADUs (RS interleave 4), the standard randomizer, nothing
/// between the primary header and the packet zone, no trailer.
const PLAIN_1024: Spacecraft = Spacecraft {
    name: "",
    spacecraft_id: 0,
    rs_interleave: 4,
    randomizer: Randomizer::CodeBlock,
    insert_zone_len: 0,
    operational_control_field: false,
    frame_error_control: false,
    source: "",
};

/// Every mission `--spacecraft` knows. Spacecraft ids are those of the CCSDS SANA spacecraft
/// identifier registry.
pub const KNOWN: &[Spacecraft] = &[
    Spacecraft { name: "suomi-npp", spacecraft_id: 157, source: JPSS_HRD, ..PLAIN_1024 },
    Spacecraft { name: "noaa-20", spacecraft_id: 159, source: JPSS_HRD, ..PLAIN_1024 },
    Spacecraft {
        name: "noaa-21",
        spacecraft_id: 177,
        rs_interleave: 5,
        insert_zone_len: 9,
        operational_control_field: true,
        source: "JPSS-2 HRD to Direct Broadcast Stations RF ICD (NASA GSFC): 1279-byte CADUs, \
            RS interleave 5; the 9-byte insert zone and the 4-byte trailer (taken as an OCF) are \
            the sizes SatDump's JPSS decoder uses; no capture checked",
        ..PLAIN_1024
    },
    Spacecraft {
        name: "metop-b",
        spacecraft_id: 11,
        insert_zone_len: 2,
        source: "EUMETSAT Metop AHRPT space-to-ground interface (2-byte VCDU insert zone: \
            encryption flag and key number); no capture checked",
        ..PLAIN_1024
    },
    Spacecraft {
        name: "metop-c",
        spacecraft_id: 13,
        insert_zone_len: 2,
        source: "EUMETSAT Metop AHRPT space-to-ground interface (as Metop-B); no capture checked",
        ..PLAIN_1024
    },
    Spacecraft {
        name: "aqua",
        spacecraft_id: 154,
        source: "NASA EOS Aqua X-band direct broadcast (CCSDS AOS, 1024-byte CADUs, RS interleave \
            4); checked against a real capture",
        ..PLAIN_1024
    },
    Spacecraft {
        name: "terra",
        spacecraft_id: 42,
        randomizer: Randomizer::FrameData,
        source: "NASA EOS Terra X-band direct broadcast: randomized after the primary header and \
            before Reed-Solomon, as SatDump's Terra pipeline decodes it; no capture checked",
        ..PLAIN_1024
    },
];

/// The known mission called `name` (any case).
pub fn by_name(name: &str) -> Option<&'static Spacecraft> {
    KNOWN.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_profile_is_a_valid_channel_with_its_documented_cadu_length() {
        for spacecraft in KNOWN {
            spacecraft.profile().check().unwrap_or_else(|e| panic!("{}: {e}", spacecraft.name));
            let expected = if spacecraft.name == "noaa-21" { 1279 } else { 1024 };
            assert_eq!(spacecraft.profile().cadu_len(), expected, "{}", spacecraft.name);
        }
        let ids: std::collections::HashSet<u8> = KNOWN.iter().map(|s| s.spacecraft_id).collect();
        assert_eq!(ids.len(), KNOWN.len(), "one profile per spacecraft id");
    }

    #[test]
    fn names_are_found_in_any_case() {
        assert_eq!(by_name("MetOp-B").map(|s| s.spacecraft_id), Some(11));
        assert!(by_name("metop-a").is_none());
    }
}
