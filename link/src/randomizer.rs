//! The CCSDS pseudo-randomizer (131.0-B §10): h(x) = x^8 + x^7 + x^5 + x^3 + 1, all-ones seed,
//! restarted at each code block, XORed over everything after the ASM. It guarantees bit
//! transitions for the receiver's clock recovery.

use std::sync::OnceLock;

/// Longest code block: interleave 8 x 255 bytes.
const MAX_LEN: usize = 8 * 255;

/// The randomizer sequence, long enough for any interleave depth.
pub fn sequence() -> &'static [u8; MAX_LEN] {
    static SEQUENCE: OnceLock<[u8; MAX_LEN]> = OnceLock::new();
    SEQUENCE.get_or_init(|| {
        let mut register = [1u8; 8];
        let mut out = [0u8; MAX_LEN];
        for byte in &mut out {
            for _ in 0..8 {
                *byte = (*byte << 1) | register[0];
                let feedback = register[0] ^ register[3] ^ register[5] ^ register[7];
                register.rotate_left(1);
                register[7] = feedback;
            }
        }
        out
    })
}

/// Randomizes or derandomizes (the operation is its own inverse) a code block in place.
pub fn apply(block: &mut [u8]) {
    // the sequence repeats every 255 bytes (its bits every 255), so any length cycles through it
    for (byte, pn) in block.iter_mut().zip(sequence().iter().cycle()) {
        *byte ^= pn;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_starts_with_the_standard_bytes() {
        assert_eq!(sequence()[..8], [0xFF, 0x48, 0x0E, 0xC0, 0x9A, 0x0D, 0x70, 0xBC]);
    }

    #[test]
    fn sequence_has_period_255_bits() {
        let bit = |i: usize| (sequence()[i / 8] >> (7 - i % 8)) & 1;
        assert!((0..1000).all(|i| bit(i) == bit(i + 255)));
        assert!((1..255).all(|p| (0..255).any(|i| bit(i) != bit(i + p))));
    }

    #[test]
    fn apply_twice_is_identity() {
        let original: Vec<u8> = (0..1020u32).map(|i| (i * 31) as u8).collect();
        let mut block = original.clone();
        apply(&mut block);
        assert_ne!(block, original);
        apply(&mut block);
        assert_eq!(block, original);
    }
}
