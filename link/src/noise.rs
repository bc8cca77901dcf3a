//! A model of what a real radio channel does to a stream, for tests, benchmarks and the
//! fault-injection proxy: random bit errors at a given rate, error bursts, bit slips and dropped
//! or duplicated stretches. Deterministic for a given seed.

/// SplitMix64: small, fast, and good enough to place errors.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Flips each bit of `bytes` independently with probability `ber`; returns how many it flipped.
/// Gaps between errors are drawn from the geometric distribution, so the cost is per error, not per bit.
pub fn flip_bits(bytes: &mut [u8], ber: f64, rng: &mut Rng) -> u64 {
    if ber <= 0.0 {
        return 0;
    }
    let total_bits = bytes.len() as u64 * 8;
    let log_keep = (1.0 - ber.min(0.5)).ln();
    let mut flipped = 0;
    let mut bit = 0u64;
    loop {
        let gap = ((1.0 - rng.unit()).ln() / log_keep).floor() as u64;
        bit = bit.saturating_add(gap);
        if bit >= total_bits {
            return flipped;
        }
        bytes[(bit / 8) as usize] ^= 0x80 >> (bit % 8);
        flipped += 1;
        bit += 1;
    }
}

/// Overwrites `len` bytes from `at` with random bytes (an error burst).
pub fn burst(bytes: &mut [u8], at: usize, len: usize, rng: &mut Rng) {
    let end = (at + len).min(bytes.len());
    for byte in &mut bytes[at.min(end)..end] {
        *byte ^= (rng.next_u64() as u8) | 1;
    }
}

/// The stream with `count` bits removed at bit position `at` (a receiver clock slip).
pub fn slip(bytes: &[u8], at: u64, count: u64) -> Vec<u8> {
    let bit = |i: u64| (bytes[(i / 8) as usize] >> (7 - i % 8)) & 1;
    let total = bytes.len() as u64 * 8;
    let mut out = Vec::with_capacity(bytes.len());
    let mut acc = 0u8;
    let mut n = 0;
    for i in (0..total).filter(|&i| i < at || i >= at + count) {
        acc = (acc << 1) | bit(i);
        n += 1;
        if n == 8 {
            out.push(acc);
            acc = 0;
            n = 0;
        }
    }
    if n > 0 {
        out.push(acc << (8 - n));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_error_rate_is_what_was_asked() {
        let mut rng = Rng::new(7);
        let mut bytes = vec![0u8; 1_000_000];
        let flipped = flip_bits(&mut bytes, 1e-3, &mut rng);
        let counted: u64 = bytes.iter().map(|b| u64::from(b.count_ones())).sum();
        assert_eq!(flipped, counted);
        assert!((7_600..8_400).contains(&flipped), "{flipped} flips in 8e6 bits at 1e-3");
    }

    #[test]
    fn slip_removes_exactly_the_bits() {
        let bytes = [0b1010_1010, 0b1111_0000];
        assert_eq!(slip(&bytes, 2, 3), vec![0b1001_0111, 0b1000_0000]);
        assert_eq!(slip(&bytes, 0, 0), bytes.to_vec());
    }
}
