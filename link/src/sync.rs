//! Frame synchronization on a raw bit stream (131.0-B §9): finds the attached sync marker
//! 0x1ACFFC1D at any bit offset, tolerating a few wrong bits, and keeps lock with a flywheel.
//!
//! - **Search**: every bit position is tried; a candidate whose 32 bits are within
//!   [`SEARCH_TOLERANCE`] of the ASM is confirmed by a second ASM one CADU later before locking
//!   (a false lock in random data then needs two coincidences).
//! - **Lock**: the ASM is expected exactly one CADU after the last. Up to [`LOCK_TOLERANCE`] wrong
//!   bits are accepted. Otherwise the neighbouring bit offsets (±[`SLIP_RANGE`]) are tried, which
//!   recovers from bit slips at once; failing that, the flywheel emits the block at the expected
//!   place anyway (Reed-Solomon decides whether it is good) for up to [`FLYWHEEL`] CADUs in a row
//!   before lock is declared lost and the search resumes.

/// The attached sync marker.
pub const ASM: u32 = 0x1ACF_FC1D;
/// ASM bytes.
pub const ASM_LEN: usize = 4;
/// Wrong bits allowed in an ASM while searching.
pub const SEARCH_TOLERANCE: u32 = 3;
/// Wrong bits allowed in an ASM where one is expected.
pub const LOCK_TOLERANCE: u32 = 8;
/// Bits either side of the expected place searched for a slipped ASM.
pub const SLIP_RANGE: i64 = 16;
/// Consecutive missing ASMs bridged before lock is lost.
pub const FLYWHEEL: u32 = 3;

/// How a block was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// ASM where expected, within [`LOCK_TOLERANCE`] (or a confirmed search hit).
    Locked,
    /// ASM a few bits off the expected place: the stream slipped.
    Slipped,
    /// No ASM where expected; emitted by the flywheel.
    Flywheel,
}

/// Counters of the synchronizer.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncStats {
    /// ASMs that matched exactly.
    pub asm_exact: u64,
    /// ASMs accepted with wrong bits.
    pub asm_corrupted: u64,
    /// Blocks emitted by the flywheel with no acceptable ASM.
    pub flywheel_blocks: u64,
    /// Bit slips recovered.
    pub bit_slips: u64,
    /// Times lock was lost and the search restarted.
    pub lock_losses: u64,
    /// Bytes passed over while searching.
    pub bytes_searched_over: u64,
}

/// One code block (the CADU without its ASM) and where it was found.
#[derive(Debug)]
pub struct Block<'a> {
    /// Absolute bit position of the block's ASM in the stream.
    pub bit_offset: u64,
    pub found: Found,
    pub data: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Searching from this absolute bit position.
    Search { from: u64 },
    /// Expecting an ASM at this absolute bit position.
    Locked { at: u64, misses: u32 },
}

/// A push-driven synchronizer: feed bytes as they arrive, take blocks as they complete.
#[derive(Debug)]
pub struct Synchronizer {
    block_len: usize,
    /// The attached sync marker searched for.
    marker: u32,
    buffer: Vec<u8>,
    /// Absolute byte offset of `buffer[0]`.
    base: u64,
    state: State,
    scratch: Vec<u8>,
    searched_bits: u64,
    stats: SyncStats,
}

impl Synchronizer {
    /// A synchronizer for CADUs of `cadu_len` bytes (the standard ASM included).
    pub fn new(cadu_len: usize) -> Self {
        Self::with_marker(cadu_len, ASM)
    }

    /// A synchronizer for CADUs of `cadu_len` bytes that begin with `marker`.
    pub fn with_marker(cadu_len: usize, marker: u32) -> Self {
        Self {
            block_len: cadu_len - ASM_LEN,
            marker,
            buffer: Vec::new(),
            base: 0,
            state: State::Search { from: 0 },
            scratch: vec![0; cadu_len - ASM_LEN],
            searched_bits: 0,
            stats: SyncStats::default(),
        }
    }

    pub fn stats(&self) -> &SyncStats {
        &self.stats
    }

    /// Bytes received so far.
    pub fn bytes_received(&self) -> u64 {
        self.base + self.buffer.len() as u64
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.buffer.extend_from_slice(bytes);
    }

    /// Drops buffered bytes that no state can need any more.
    fn compact(&mut self) {
        let keep_from_bit = match self.state {
            State::Search { from } => from,
            State::Locked { at, .. } => at.saturating_sub(SLIP_RANGE as u64),
        };
        let drop = usize::try_from((keep_from_bit / 8).saturating_sub(self.base)).unwrap_or(usize::MAX);
        if drop > 0 && drop >= self.buffer.len() / 2 {
            let drop = drop.min(self.buffer.len());
            self.buffer.drain(..drop);
            self.base += drop as u64;
        }
    }

    fn end_bit(&self) -> u64 {
        (self.base + self.buffer.len() as u64) * 8
    }

    fn cadu_bits(&self) -> u64 {
        ((self.block_len + ASM_LEN) * 8) as u64
    }

    /// The 32 bits starting at absolute bit `bit`; the caller checks they are buffered.
    fn word_at(&self, bit: u64) -> u32 {
        let byte = (bit / 8 - self.base) as usize;
        let shift = (bit % 8) as u32;
        let mut window = [0u8; 8];
        let available = (self.buffer.len() - byte).min(5);
        window[..available].copy_from_slice(&self.buffer[byte..byte + available]);
        ((u64::from_be_bytes(window) << shift) >> 32) as u32
    }

    fn asm_errors(&self, bit: u64) -> u32 {
        (self.word_at(bit) ^ self.marker).count_ones()
    }

    fn has_bits(&self, bit: u64, count: u64) -> bool {
        bit >= self.base * 8 && bit + count <= self.end_bit()
    }

    /// The next block, or `None` until more bytes are pushed. With `end_of_stream`, a search hit
    /// that cannot be confirmed (no data after it) is still accepted if its ASM is exact.
    pub fn next_block(&mut self, end_of_stream: bool) -> Option<Block<'_>> {
        let cadu_bits = self.cadu_bits();
        loop {
            match self.state {
                State::Search { from } => {
                    let mut bit = from;
                    let hit = loop {
                        if !self.has_bits(bit, 32) {
                            break None;
                        }
                        if self.asm_errors(bit) <= SEARCH_TOLERANCE {
                            let confirm = bit + cadu_bits;
                            if self.has_bits(confirm, 32) {
                                if self.asm_errors(confirm) <= SEARCH_TOLERANCE {
                                    break Some(bit);
                                }
                            } else if !end_of_stream {
                                // wait for the confirming ASM before deciding
                                self.searched_over(bit - from);
                                self.state = State::Search { from: bit };
                                return None;
                            } else if self.asm_errors(bit) == 0 {
                                break Some(bit);
                            }
                        }
                        bit += 1;
                    };
                    match hit {
                        Some(at) => {
                            self.searched_over(at - from);
                            self.state = State::Locked { at, misses: 0 };
                        }
                        None => {
                            // keep the last 31 bits: an ASM may straddle the next push
                            let resume = bit.max(from);
                            self.searched_over(resume - from);
                            self.state = State::Search { from: resume };
                            return None;
                        }
                    }
                }
                State::Locked { at, misses } => {
                    if !self.has_bits(at, cadu_bits) {
                        return None;
                    }
                    let errors = self.asm_errors(at);
                    let (asm_at, found) = if errors <= LOCK_TOLERANCE {
                        if errors == 0 {
                            self.stats.asm_exact += 1;
                        } else {
                            self.stats.asm_corrupted += 1;
                        }
                        (at, Found::Locked)
                    } else if let Some(slipped) = self.slipped_asm(at) {
                        if !self.has_bits(slipped, cadu_bits) {
                            return None;
                        }
                        self.stats.bit_slips += 1;
                        (slipped, Found::Slipped)
                    } else if misses < FLYWHEEL {
                        self.stats.flywheel_blocks += 1;
                        (at, Found::Flywheel)
                    } else {
                        self.stats.lock_losses += 1;
                        self.state = State::Search { from: at.saturating_sub(SLIP_RANGE as u64).max(self.base * 8) };
                        continue;
                    };
                    let misses = if found == Found::Flywheel { misses + 1 } else { 0 };
                    self.state = State::Locked { at: asm_at + cadu_bits, misses };
                    return Some(self.block_at(asm_at, found));
                }
            }
        }
    }

    fn searched_over(&mut self, bits: u64) {
        self.searched_bits += bits;
        self.stats.bytes_searched_over = self.searched_bits / 8;
    }

    /// The nearest bit offset around `at` with an ASM within [`SEARCH_TOLERANCE`].
    fn slipped_asm(&self, at: u64) -> Option<u64> {
        (1..=SLIP_RANGE).flat_map(|d| [at as i64 - d, at as i64 + d]).find_map(|candidate| {
            let candidate = u64::try_from(candidate).ok()?;
            (self.has_bits(candidate, 32) && self.asm_errors(candidate) <= SEARCH_TOLERANCE).then_some(candidate)
        })
    }

    fn block_at(&mut self, asm_at: u64, found: Found) -> Block<'_> {
        let start_bit = asm_at + (ASM_LEN * 8) as u64;
        let byte = (start_bit / 8 - self.base) as usize;
        let shift = (start_bit % 8) as u32;
        let data: &[u8] = if shift == 0 {
            &self.buffer[byte..byte + self.block_len]
        } else {
            let source = &self.buffer[byte..];
            for (i, out) in self.scratch.iter_mut().enumerate() {
                let high = source[i] << shift;
                let low = source.get(i + 1).map_or(0, |b| b >> (8 - shift));
                *out = high | low;
            }
            &self.scratch
        };
        Block { bit_offset: asm_at, found, data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CADU: usize = 64;

    fn stream(blocks: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for b in 0..blocks {
            out.extend_from_slice(&ASM.to_be_bytes());
            out.extend((0..CADU - ASM_LEN).map(|i| (b * 7 + i * 13) as u8));
        }
        out
    }

    fn collect(sync: &mut Synchronizer, end: bool) -> Vec<(u64, Found, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(block) = sync.next_block(end) {
            out.push((block.bit_offset, block.found, block.data.to_vec()));
        }
        out
    }

    #[test]
    fn finds_blocks_after_garbage_in_small_pushes() {
        let mut data = vec![0x55; 37];
        data.extend(stream(5));
        let mut sync = Synchronizer::new(CADU);
        let mut blocks = Vec::new();
        for chunk in data.chunks(7) {
            sync.push(chunk);
            blocks.extend(collect(&mut sync, false));
        }
        blocks.extend(collect(&mut sync, true));
        assert_eq!(blocks.len(), 5);
        assert_eq!(blocks[0].0, 37 * 8);
        assert_eq!(blocks[4].2, stream(5)[4 * CADU + 4..].to_vec());
        assert_eq!(sync.stats().bytes_searched_over, 37);
    }

    #[test]
    fn flywheel_keeps_lock_through_a_destroyed_asm() {
        let mut data = stream(6);
        data[2 * CADU..2 * CADU + 4].copy_from_slice(&[0, 0, 0, 0]);
        data[3 * CADU] ^= 0x03; // two wrong bits: still accepted in lock
        let mut sync = Synchronizer::new(CADU);
        sync.push(&data);
        let blocks = collect(&mut sync, true);
        assert_eq!(blocks.len(), 6);
        assert_eq!(blocks[2].1, Found::Flywheel);
        assert_eq!(blocks[2].2, data[2 * CADU + 4..3 * CADU].to_vec());
        assert_eq!(sync.stats().asm_corrupted, 1);
        assert_eq!(sync.stats().flywheel_blocks, 1);
    }

    #[test]
    fn recovers_a_bit_slip_at_once() {
        let clean = stream(6);
        // drop 3 bits after the second CADU: everything after it shifts left by 3 bits
        let split = 2 * CADU * 8 + 100;
        let bits: Vec<u8> = (0..clean.len() * 8).map(|i| (clean[i / 8] >> (7 - i % 8)) & 1).collect();
        let slipped: Vec<u8> = bits[..split].iter().chain(&bits[split + 3..]).copied().collect();
        let bytes: Vec<u8> =
            slipped.chunks(8).map(|c| c.iter().fold(0, |acc, b| (acc << 1) | b) << (8 - c.len())).collect();
        let mut sync = Synchronizer::new(CADU);
        sync.push(&bytes);
        let blocks = collect(&mut sync, true);
        assert_eq!(sync.stats().bit_slips, 1);
        assert_eq!(blocks[3].1, Found::Slipped);
        assert_eq!(blocks[3].2, clean[3 * CADU + 4..4 * CADU].to_vec());
        assert_eq!(blocks[5].2, clean[5 * CADU + 4..6 * CADU].to_vec());
    }

    #[test]
    fn garbage_yields_nothing_and_memory_stays_bounded() {
        let mut sync = Synchronizer::new(1024);
        let mut state = 1u64;
        for _ in 0..200 {
            let chunk: Vec<u8> = (0..4096)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            sync.push(&chunk);
            assert!(sync.next_block(false).is_none());
        }
        assert!(sync.buffer.len() < 3 * 4096, "buffer grew to {}", sync.buffer.len());
    }
}
