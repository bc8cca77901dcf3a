//! The code block between two attached sync markers (CCSDS 131.0-B): the transfer frame with its
//! Reed-Solomon parity (interleave 1 to 8, shortened by a virtual fill) or uncoded, then XORed
//! with the pseudo-random sequence when the channel is randomized.

use crate::frame::PRIMARY_HEADER_LEN;
use crate::profile::{LinkProfile, Randomizer};
use crate::randomizer;
use crate::reed_solomon::{self, ReedSolomon, Uncorrectable};

#[derive(Debug)]
pub struct Coding {
    rs: Option<ReedSolomon>,
    /// Leading symbols of every codeword that are zero and not sent (bytes: fill x depth).
    fill_bytes: usize,
    randomizer: Randomizer,
    frame_len: usize,
    /// A whole code block (the virtual fill's zeros, then what is sent), for a shortened code.
    scratch: Vec<u8>,
}

impl Coding {
    pub fn new(profile: &LinkProfile) -> Self {
        let rs = (profile.rs_interleave > 0).then(|| ReedSolomon::new(profile.rs_interleave));
        let fill_bytes = profile.virtual_fill * profile.rs_interleave;
        let scratch = rs.as_ref().map_or(0, |_| reed_solomon::N * profile.rs_interleave);
        Self {
            rs,
            fill_bytes,
            randomizer: profile.randomizer,
            frame_len: profile.layout().frame_len,
            scratch: vec![0; if fill_bytes > 0 { scratch } else { 0 }],
        }
    }

    /// Makes a block (its frame written at the start) ready to send: parity and randomizer in
    /// the channel's order.
    pub fn encode(&mut self, block: &mut [u8]) {
        if self.randomizer == Randomizer::FrameData {
            randomizer::apply(&mut block[PRIMARY_HEADER_LEN..self.frame_len]);
        }
        if let Some(rs) = &self.rs {
            if self.fill_bytes == 0 {
                rs.encode(block);
            } else {
                self.scratch[..self.fill_bytes].fill(0);
                self.scratch[self.fill_bytes..].copy_from_slice(block);
                rs.encode(&mut self.scratch);
                block.copy_from_slice(&self.scratch[self.fill_bytes..]);
            }
        }
        if self.randomizer == Randomizer::CodeBlock {
            randomizer::apply(block);
        }
    }

    /// Undoes the randomizer and corrects the block in place; returns the symbols corrected.
    pub fn decode(&mut self, block: &mut [u8]) -> Result<usize, Uncorrectable> {
        if self.randomizer == Randomizer::CodeBlock {
            randomizer::apply(block);
        }
        let corrected = self.correct(block)?;
        if self.randomizer == Randomizer::FrameData {
            randomizer::apply(&mut block[PRIMARY_HEADER_LEN..self.frame_len]);
        }
        Ok(corrected)
    }

    fn correct(&mut self, block: &mut [u8]) -> Result<usize, Uncorrectable> {
        let Some(rs) = &mut self.rs else { return Ok(0) };
        if self.fill_bytes == 0 {
            return rs.decode(block);
        }
        self.scratch[..self.fill_bytes].fill(0);
        self.scratch[self.fill_bytes..].copy_from_slice(block);
        let corrected = rs.decode(&mut self.scratch)?;
        block.copy_from_slice(&self.scratch[self.fill_bytes..]);
        Ok(corrected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coded(randomizer: Randomizer) -> Vec<u8> {
        let profile = LinkProfile { randomizer, ..LinkProfile::plain_ccsds() };
        let mut block: Vec<u8> = (0..profile.block_len()).map(|i| (i * 7) as u8).collect();
        Coding::new(&profile).encode(&mut block);
        block
    }

    #[test]
    fn frame_data_randomizing_leaves_the_primary_header_and_the_parity_in_clear() {
        let (plain, standard, terra) =
            (coded(Randomizer::Off), coded(Randomizer::CodeBlock), coded(Randomizer::FrameData));
        let frame_len = LinkProfile::plain_ccsds().layout().frame_len;
        assert_ne!(standard[..PRIMARY_HEADER_LEN], plain[..PRIMARY_HEADER_LEN]);
        assert_eq!(terra[..PRIMARY_HEADER_LEN], plain[..PRIMARY_HEADER_LEN]);
        assert_ne!(terra[PRIMARY_HEADER_LEN..frame_len], plain[PRIMARY_HEADER_LEN..frame_len]);
        // the parity is computed over the randomized data, and sent as computed
        assert_ne!(terra[frame_len..], plain[frame_len..]);
        let mut decoded = terra.clone();
        let profile = LinkProfile { randomizer: Randomizer::FrameData, ..LinkProfile::plain_ccsds() };
        assert_eq!(Coding::new(&profile).decode(&mut decoded), Ok(0));
        assert_eq!(decoded[..frame_len], plain[..frame_len]);
    }
}
