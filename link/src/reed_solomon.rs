//! CCSDS Reed-Solomon (255,223), E = 16, dual basis, interleave depth 1 to 8 (131.0-B §4).
//!
//! A code block of depth I holds I codewords interleaved symbol by symbol: byte `k * I + j` is
//! symbol `k` of codeword `j`. The first 223 x I bytes are the transfer frame, the rest parity.
//!
//! Correction is `fec`'s (Berlekamp-Massey, Chien, Forney, bit-compatible with libfec). The hot
//! paths are ours, because `fec` allocates and converts per call and runs at about 500 Mbit/s here:
//! a table-driven LFSR encoder that runs the I codewords of a block in lockstep, and a clean-block
//! check that re-encodes and compares the parity, so that only codewords with errors (about one
//! in five at a bit error rate of 1e-4) reach the full decoder.

use std::sync::OnceLock;

use fec::RsDecoder;
use fec::reed_solomon::ccsds::{
    CCSDS_FIRST_CONSECUTIVE_ROOT, CCSDS_GENERATOR_ROOT_GAP, CCSDS_NUM_ROOTS, CCSDS_PRIMITIVE_POLYNOMIAL, conv_to_dual,
    dual_to_conv,
};

/// Symbols per codeword.
pub const N: usize = 255;
/// Data symbols per codeword.
pub const K: usize = 223;
/// Parity symbols per codeword.
pub const PARITY: usize = N - K;
const _: () = assert!(PARITY == CCSDS_NUM_ROOTS);

/// Symbol errors correctable per codeword.
pub const T: usize = PARITY / 2;
/// Deepest interleave the standard allows.
pub const MAX_DEPTH: usize = 8;

/// Per-feedback-value rows of the encoder LFSR, packed as four little-endian u64 words, and the
/// basis conversion tables.
struct Tables {
    rows: [[u64; 4]; 256],
    to_conv: [u8; 256],
    to_dual: [u8; 256],
    exp: [u8; 255],
    log: [u8; 256],
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let (exp, log) = field_tables();
        let mul = |a: u8, b: u8| -> u8 {
            if a == 0 || b == 0 {
                0
            } else {
                exp[(usize::from(log[usize::from(a)]) + usize::from(log[usize::from(b)])) % 255]
            }
        };
        // g(x) = prod (x - alpha^(gap * (fcr + i))), coefficients lowest degree first; g[32] = 1.
        let mut g = [0u8; PARITY + 1];
        g[0] = 1;
        for i in 0..PARITY {
            let power = (usize::from(CCSDS_GENERATOR_ROOT_GAP) * (usize::from(CCSDS_FIRST_CONSECUTIVE_ROOT) + i)) % 255;
            let root = exp[power];
            for d in (1..=i + 1).rev() {
                g[d] = g[d - 1] ^ mul(g[d], root);
            }
            g[0] = mul(g[0], root);
        }
        let mut rows = [[0u64; 4]; 256];
        for (feedback, row) in rows.iter_mut().enumerate() {
            // register byte j holds the coefficient of x^(31 - j)
            let mut bytes = [0u8; PARITY];
            for (j, byte) in bytes.iter_mut().enumerate() {
                *byte = mul(feedback as u8, g[PARITY - 1 - j]);
            }
            *row = pack(&bytes);
        }
        let mut to_conv = [0u8; 256];
        let mut to_dual = [0u8; 256];
        for b in 0..=255u8 {
            to_conv[usize::from(b)] = dual_to_conv(b);
            to_dual[usize::from(b)] = conv_to_dual(b);
        }
        Tables { rows, to_conv, to_dual, exp, log }
    })
}

/// Exponential and logarithm tables of GF(2^8) with the CCSDS field polynomial.
fn field_tables() -> ([u8; 255], [u8; 256]) {
    let mut exp = [0u8; 255];
    let mut log = [0u8; 256];
    let mut x: u16 = 1;
    for (i, e) in exp.iter_mut().enumerate() {
        *e = x as u8;
        log[usize::from(x)] = i as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= CCSDS_PRIMITIVE_POLYNOMIAL;
        }
    }
    (exp, log)
}

fn pack(bytes: &[u8; PARITY]) -> [u64; 4] {
    let mut words = [0u64; 4];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        *word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
    }
    words
}

fn unpack(words: &[u64; 4]) -> [u8; PARITY] {
    let mut bytes = [0u8; PARITY];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    bytes
}

/// Conventional-basis parity registers of the `depth` codewords of `block`'s data part.
fn remainders(block: &[u8], depth: usize) -> [[u64; 4]; MAX_DEPTH] {
    let t = tables();
    let mut registers = [[0u64; 4]; MAX_DEPTH];
    for symbols in block[..K * depth].chunks_exact(depth) {
        for (register, &symbol) in registers.iter_mut().zip(symbols) {
            let feedback = t.to_conv[usize::from(symbol)] ^ (register[0] as u8);
            let row = &t.rows[usize::from(feedback)];
            register[0] = ((register[0] >> 8) | (register[1] << 56)) ^ row[0];
            register[1] = ((register[1] >> 8) | (register[2] << 56)) ^ row[1];
            register[2] = ((register[2] >> 8) | (register[3] << 56)) ^ row[2];
            register[3] = (register[3] >> 8) ^ row[3];
        }
    }
    registers
}

/// The position (symbol index in the codeword) and conventional-basis magnitude of the error when
/// exactly one symbol is wrong, the common case on a noisy link, found from the syndromes
/// S_i = rem(alpha^(11 (112 + i))) of the 32-symbol remainder instead of the 255-symbol word.
/// `None` means more than one error: the full decoder takes over.
fn single_error(remainder: &[u8; PARITY]) -> Option<(usize, u8)> {
    let t = tables();
    let log = |v: u8| usize::from(t.log[usize::from(v)]);
    let root =
        |i: usize| (usize::from(CCSDS_GENERATOR_ROOT_GAP) * (usize::from(CCSDS_FIRST_CONSECUTIVE_ROOT) + i)) % 255;
    let syndrome = |i: usize| {
        let b = root(i);
        remainder
            .iter()
            .enumerate()
            .fold(0u8, |acc, (j, &r)| if r == 0 { acc } else { acc ^ t.exp[(log(r) + b * (PARITY - 1 - j)) % 255] })
    };
    let (s0, s1) = (syndrome(0), syndrome(1));
    if s0 == 0 || s1 == 0 {
        return None;
    }
    // S1 / S0 = X^11 for the error locator X = alpha^p; 116 is the inverse of 11 mod 255
    let p = (116 * ((255 + log(s1) - log(s0)) % 255)) % 255;
    let magnitude = t.exp[(255 + log(s0) - (root(0) * p) % 255) % 255];
    let explains = |i: usize| syndrome(i) == t.exp[(log(magnitude) + root(i) * p) % 255];
    if !(2..PARITY).all(explains) {
        return None;
    }
    // degree p counts from the last symbol
    Some((N - 1 - p, magnitude))
}

/// A code block that Reed-Solomon could not correct; it must be dropped, never delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Reed-Solomon codeword {codeword} of the block has more than 16 symbol errors")]
pub struct Uncorrectable {
    pub codeword: usize,
}

/// Encoder and decoder for one interleave depth.
pub struct ReedSolomon {
    depth: usize,
    decoder: RsDecoder,
}

impl std::fmt::Debug for ReedSolomon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReedSolomon").field("depth", &self.depth).finish_non_exhaustive()
    }
}

impl ReedSolomon {
    /// A codec for interleave `depth` (1 to 8; checked where the mission file is read).
    pub fn new(depth: usize) -> Self {
        assert!((1..=MAX_DEPTH).contains(&depth), "interleave depth {depth} is not 1 to 8");
        Self { depth, decoder: RsDecoder::new_ccsds() }
    }

    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Bytes of data (the transfer frame) per block.
    pub fn data_len(&self) -> usize {
        K * self.depth
    }

    /// Bytes per code block, data and parity.
    pub fn block_len(&self) -> usize {
        N * self.depth
    }

    /// Fills the parity part of `block` (length `block_len()`) from its data part.
    pub fn encode(&self, block: &mut [u8]) {
        let depth = self.depth;
        let to_dual = &tables().to_dual;
        let registers = remainders(block, depth);
        for (j, register) in registers[..depth].iter().enumerate() {
            for (k, &parity) in unpack(register).iter().enumerate() {
                block[(K + k) * depth + j] = to_dual[usize::from(parity)];
            }
        }
    }

    /// Corrects `block` in place and returns how many symbols it corrected. On error the data part
    /// may be partly corrected and must not be used.
    pub fn decode(&mut self, block: &mut [u8]) -> Result<usize, Uncorrectable> {
        let depth = self.depth;
        let to_conv = &tables().to_conv;
        let registers = remainders(block, depth);
        let mut corrected = 0;
        for (j, register) in registers[..depth].iter().enumerate() {
            // r(x) mod g(x): the parity the data implies minus the parity received
            let mut remainder = unpack(register);
            for (k, r) in remainder.iter_mut().enumerate() {
                *r ^= to_conv[usize::from(block[(K + k) * depth + j])];
            }
            if remainder.iter().all(|&r| r == 0) {
                continue;
            }
            if let Some((symbol, magnitude)) = single_error(&remainder) {
                let at = symbol * depth + j;
                block[at] = tables().to_dual[usize::from(to_conv[usize::from(block[at])] ^ magnitude)];
                corrected += 1;
                continue;
            }
            let mut codeword = [0u8; N];
            for (k, symbol) in codeword.iter_mut().enumerate() {
                *symbol = block[k * depth + j];
            }
            let mut message = [0u8; K];
            let fixed =
                self.decoder.decode_ccsds_dual(&codeword, &mut message).map_err(|_| Uncorrectable { codeword: j })?;
            for (k, &symbol) in message.iter().enumerate() {
                block[k * depth + j] = symbol;
            }
            corrected += fixed;
        }
        Ok(corrected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_block(depth: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..N * depth)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn parity_matches_fecs_reference_encoder() {
        let mut reference = fec::RsEncoder::new_ccsds();
        for depth in [1, 4, 5, 8] {
            let mut block = random_block(depth, depth as u64);
            ReedSolomon::new(depth).encode(&mut block);
            for j in 0..depth {
                let message: Vec<u8> = (0..K).map(|k| block[k * depth + j]).collect();
                let mut parity = [0u8; PARITY];
                reference.encode_ccsds_dual(&message, &mut parity).expect("encode");
                let ours: Vec<u8> = (0..PARITY).map(|k| block[(K + k) * depth + j]).collect();
                assert_eq!(ours, parity, "depth {depth} codeword {j}");
            }
        }
    }

    #[test]
    fn corrects_16_errors_in_every_codeword_and_refuses_17() {
        for depth in [1, 4, 8] {
            let mut rs = ReedSolomon::new(depth);
            let mut block = random_block(depth, 99);
            rs.encode(&mut block);
            let clean = block.clone();
            assert_eq!(rs.decode(&mut block.clone()), Ok(0));

            let mut noisy = block.clone();
            for j in 0..depth {
                for e in 0..T {
                    noisy[(e * 15 + j) * depth + j] ^= (e as u8) | 0x01;
                }
            }
            assert_eq!(rs.decode(&mut noisy), Ok(T * depth));
            assert_eq!(noisy[..K * depth], clean[..K * depth]);

            let mut hopeless = block.clone();
            for e in 0..=T {
                hopeless[(e * 13) * depth + depth - 1] ^= 0xA5;
            }
            assert_eq!(rs.decode(&mut hopeless), Err(Uncorrectable { codeword: depth - 1 }));
        }
    }

    #[test]
    fn a_single_error_anywhere_is_corrected_by_the_fast_path() {
        let depth = 2;
        let mut rs = ReedSolomon::new(depth);
        let mut block = random_block(depth, 5);
        rs.encode(&mut block);
        for symbol in 0..N {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut noisy = block.clone();
                noisy[symbol * depth + 1] ^= flip;
                assert_eq!(rs.decode(&mut noisy), Ok(1), "symbol {symbol}");
                assert_eq!(noisy, block, "symbol {symbol} flip {flip:#x}");
            }
        }
        let mut two = block.clone();
        two[3 * depth] ^= 1;
        two[200 * depth] ^= 7;
        assert_eq!(rs.decode(&mut two), Ok(2));
        assert_eq!(two[..K * depth], block[..K * depth]);
    }

    #[test]
    fn field_and_basis_tables_are_consistent() {
        let (exp, log) = field_tables();
        assert_eq!(exp[0], 1);
        assert!((1..=255u16).all(|b| exp[usize::from(log[usize::from(b)])] == b as u8));
        let t = tables();
        assert!((0..=255u8).all(|b| t.to_dual[usize::from(t.to_conv[usize::from(b)])] == b));
    }
}
