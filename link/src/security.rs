//! Frame authentication in the spirit of CCSDS SDLS (355.0-B): AES-256-GCM over each frame with
//! a security parameter index (SPI) and an anti-replay sequence number (ARSN).
//!
//! ```text
//! security header (10 bytes): SPI (2) | ARSN (8)        security trailer: MAC (16)
//! ```
//! The 96-bit IV is `direction (1) | VCID (1) | SPI (2) | ARSN (8)`: unique for every frame a key
//! protects as long as each sender never reuses an ARSN on a virtual channel. The MAC covers the
//! primary header, the security header and the frame data; with encryption on, the data is also
//! encrypted. A receiver accepts an ARSN only above the last one it accepted on that virtual
//! channel, so a replayed frame is refused.

use std::collections::HashMap;
use std::path::Path;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};

/// Security header bytes: SPI and ARSN.
pub const HEADER_LEN: usize = 10;
/// Security trailer bytes: the GCM tag.
pub const TRAILER_LEN: usize = 16;

/// Which way a frame travels; part of the IV so the two directions never share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Downlink = 0,
    Uplink = 1,
}

/// Why a protected frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    #[error("unknown security parameter index {0}")]
    UnknownSpi(u16),
    #[error("authentication failed (forged, corrupted, or under another key)")]
    Authentication,
    #[error("replayed frame: sequence number {received} was accepted before, or is too far below {last}")]
    Replay { received: u64, last: u64 },
}

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file `{path}`: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("key file `{path}`: expected 64 hexadecimal digits (a 256-bit key), found {found}")]
    Format { path: String, found: String },
}

/// Reads a 256-bit key written as 64 hexadecimal digits (surrounding white space ignored).
pub fn read_key_file(path: &Path) -> Result<[u8; 32], KeyFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read { path: shown.clone(), source })?;
    crate::hex::decode::<32>(text.trim()).ok_or_else(|| {
        let trimmed = text.trim();
        let found = if trimmed.chars().all(|c| c.is_ascii_hexdigit()) {
            format!("{} digits", trimmed.len())
        } else {
            "characters that are not hexadecimal digits".to_owned()
        };
        KeyFileError::Format { path: shown, found }
    })
}

/// One security association: an SPI, its key, and whether data is encrypted as well as authenticated.
#[derive(Clone)]
pub struct SecurityAssociation {
    spi: u16,
    cipher: Aes256Gcm,
    encrypt: bool,
}

impl std::fmt::Debug for SecurityAssociation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityAssociation").field("spi", &self.spi).field("encrypt", &self.encrypt).finish()
    }
}

fn iv(direction: Direction, vcid: u8, spi: u16, arsn: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[0] = direction as u8;
    iv[1] = vcid;
    iv[2..4].copy_from_slice(&spi.to_be_bytes());
    iv[4..].copy_from_slice(&arsn.to_be_bytes());
    iv
}

impl SecurityAssociation {
    pub fn new(spi: u16, key: &[u8; 32], encrypt: bool) -> Self {
        Self { spi, cipher: Aes256Gcm::new(key.into()), encrypt }
    }

    pub fn spi(&self) -> u16 {
        self.spi
    }

    /// Protects `frame[..data_end + TRAILER_LEN]`: writes the security header at `header_at`,
    /// authenticates everything before the data (`header_at + HEADER_LEN`), and the data up to
    /// `data_end`, and writes the MAC at `data_end`.
    pub fn protect(
        &self,
        direction: Direction,
        vcid: u8,
        arsn: u64,
        frame: &mut [u8],
        header_at: usize,
        data_end: usize,
    ) {
        frame[header_at..header_at + 2].copy_from_slice(&self.spi.to_be_bytes());
        frame[header_at + 2..header_at + HEADER_LEN].copy_from_slice(&arsn.to_be_bytes());
        let nonce = iv(direction, vcid, self.spi, arsn);
        let data_start = header_at + HEADER_LEN;
        let (authenticated, rest) = frame.split_at_mut(if self.encrypt { data_start } else { data_end });
        let data = if self.encrypt { &mut rest[..data_end - data_start] } else { &mut rest[..0] };
        // GCM fails only for messages over 64 GiB; a frame is a few kilobytes.
        let tag =
            self.cipher.encrypt_in_place_detached(Nonce::from_slice(&nonce), authenticated, data).unwrap_or_default();
        frame[data_end..data_end + TRAILER_LEN].copy_from_slice(&tag);
    }

    /// Checks (and decrypts in place) a frame protected by [`Self::protect`]; returns its ARSN.
    /// The anti-replay check is the caller's ([`ReplayGuard`]), after this succeeds.
    pub fn verify(
        &self,
        direction: Direction,
        vcid: u8,
        frame: &mut [u8],
        header_at: usize,
        data_end: usize,
    ) -> Result<u64, SecurityError> {
        let spi = u16::from_be_bytes([frame[header_at], frame[header_at + 1]]);
        if spi != self.spi {
            return Err(SecurityError::UnknownSpi(spi));
        }
        let mut arsn_bytes = [0u8; 8];
        arsn_bytes.copy_from_slice(&frame[header_at + 2..header_at + HEADER_LEN]);
        let arsn = u64::from_be_bytes(arsn_bytes);
        let nonce = iv(direction, vcid, spi, arsn);
        let tag = *Tag::from_slice(&frame[data_end..data_end + TRAILER_LEN]);
        let data_start = header_at + HEADER_LEN;
        let (authenticated, rest) = frame.split_at_mut(if self.encrypt { data_start } else { data_end });
        let data = if self.encrypt { &mut rest[..data_end - data_start] } else { &mut rest[..0] };
        self.cipher
            .decrypt_in_place_detached(Nonce::from_slice(&nonce), authenticated, data, &tag)
            .map_err(|_| SecurityError::Authentication)?;
        Ok(arsn)
    }
}

/// The most a [`ReplayGuard`]'s window can reach below the highest ARSN accepted.
pub const MAX_REPLAY_WINDOW: u64 = 64;

/// What a virtual channel has accepted: its highest ARSN, and which of the `MAX_REPLAY_WINDOW`
/// below it (bit `i`: `last - 1 - i`).
#[derive(Debug, Clone, Copy)]
struct Accepted {
    last: u64,
    below: u64,
}

/// The anti-replay check per virtual channel: an ARSN is accepted once, and only above the highest
/// accepted, or (with a window, RFC 4303's sliding window) among the `window` below it not yet
/// accepted, so that frames of two senders sharing one counter may arrive out of order.
#[derive(Debug, Clone, Default)]
pub struct ReplayGuard {
    accepted: HashMap<u8, Accepted>,
    window: u64,
}

impl ReplayGuard {
    /// A guard that resumes from `last` (per virtual channel), as a receiver must after a restart:
    /// nothing at or below `last` is accepted again, within the window or not (which ARSNs in it
    /// were accepted is not kept).
    pub fn resume(last: impl IntoIterator<Item = (u8, u64)>) -> Self {
        let accepted = last.into_iter().map(|(vcid, last)| (vcid, Accepted { last, below: u64::MAX })).collect();
        Self { accepted, window: 0 }
    }

    /// This guard, accepting an ARSN not yet seen up to `window` (at most [`MAX_REPLAY_WINDOW`])
    /// below the highest accepted.
    pub fn with_window(mut self, window: u64) -> Self {
        self.window = window.min(MAX_REPLAY_WINDOW);
        self
    }

    /// The highest accepted ARSN of each virtual channel.
    pub fn marks(&self) -> Vec<(u8, u64)> {
        let mut marks: Vec<(u8, u64)> = self.accepted.iter().map(|(&vcid, a)| (vcid, a.last)).collect();
        marks.sort_unstable();
        marks
    }

    /// Accepts `arsn` on `vcid` once: above the highest accepted there, or within the window below
    /// it and not accepted before.
    pub fn accept(&mut self, vcid: u8, arsn: u64) -> Result<(), SecurityError> {
        let Some(accepted) = self.accepted.get_mut(&vcid) else {
            self.accepted.insert(vcid, Accepted { last: arsn, below: 0 });
            return Ok(());
        };
        let last = accepted.last;
        if arsn > last {
            let rise = arsn - last;
            // the old highest moves to bit rise - 1, the bits below it up with it
            let moved = u32::try_from(rise).ok().and_then(|r| accepted.below.checked_shl(r)).unwrap_or(0);
            let old_last = u32::try_from(rise - 1).ok().and_then(|r| 1u64.checked_shl(r)).unwrap_or(0);
            *accepted = Accepted { last: arsn, below: moved | old_last };
            return Ok(());
        }
        let depth = last - arsn;
        if depth == 0 || depth > self.window {
            return Err(SecurityError::Replay { received: arsn, last });
        }
        let bit = 1u64 << (depth - 1);
        if accepted.below & bit != 0 {
            return Err(SecurityError::Replay { received: arsn, last });
        }
        accepted.below |= bit;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn frame() -> Vec<u8> {
        let mut frame = vec![0u8; 6 + HEADER_LEN + 40 + TRAILER_LEN];
        frame[..6].copy_from_slice(&[0x4A, 0x81, 0, 0, 1, 0]);
        for (i, b) in frame[16..56].iter_mut().enumerate() {
            *b = i as u8;
        }
        frame
    }

    #[test]
    fn protect_then_verify_with_and_without_encryption() {
        for encrypt in [false, true] {
            let sa = SecurityAssociation::new(3, &KEY, encrypt);
            let plain = frame();
            let mut protected = plain.clone();
            sa.protect(Direction::Downlink, 1, 41, &mut protected, 6, 56);
            assert_eq!(protected[16..56] != plain[16..56], encrypt, "data encrypted only when asked");
            assert_eq!(sa.verify(Direction::Downlink, 1, &mut protected, 6, 56), Ok(41));
            assert_eq!(protected[16..56], plain[16..56]);
        }
    }

    #[test]
    fn forged_wrong_key_wrong_direction_and_unknown_spi_are_refused() {
        let sa = SecurityAssociation::new(3, &KEY, false);
        let mut protected = frame();
        sa.protect(Direction::Downlink, 1, 1, &mut protected, 6, 56);

        let mut forged = protected.clone();
        forged[30] ^= 1;
        assert_eq!(sa.verify(Direction::Downlink, 1, &mut forged, 6, 56), Err(SecurityError::Authentication));
        let other = SecurityAssociation::new(3, &[8; 32], false);
        assert_eq!(
            other.verify(Direction::Downlink, 1, &mut protected.clone(), 6, 56),
            Err(SecurityError::Authentication)
        );
        assert_eq!(sa.verify(Direction::Uplink, 1, &mut protected.clone(), 6, 56), Err(SecurityError::Authentication));
        let stranger = SecurityAssociation::new(4, &KEY, false);
        assert_eq!(
            stranger.verify(Direction::Downlink, 1, &mut protected.clone(), 6, 56),
            Err(SecurityError::UnknownSpi(3))
        );
    }

    #[test]
    fn replays_are_refused_per_virtual_channel() {
        let mut guard = ReplayGuard::default();
        assert_eq!(guard.accept(1, 5), Ok(()));
        assert_eq!(guard.accept(1, 9), Ok(()));
        assert_eq!(guard.accept(1, 9), Err(SecurityError::Replay { received: 9, last: 9 }));
        assert_eq!(guard.accept(1, 6), Err(SecurityError::Replay { received: 6, last: 9 }));
        assert_eq!(guard.accept(2, 1), Ok(()));
    }

    #[test]
    fn a_window_accepts_each_arsn_below_the_highest_once_and_only_within_it() {
        let mut guard = ReplayGuard::default().with_window(4);
        assert_eq!(guard.accept(1, 10), Ok(()));
        assert_eq!(guard.accept(1, 12), Ok(()));
        assert_eq!(guard.accept(1, 11), Ok(()), "below the highest, in the window, not seen");
        assert_eq!(guard.accept(1, 11), Err(SecurityError::Replay { received: 11, last: 12 }));
        assert_eq!(guard.accept(1, 10), Err(SecurityError::Replay { received: 10, last: 12 }), "seen before the rise");
        assert_eq!(guard.accept(1, 12), Err(SecurityError::Replay { received: 12, last: 12 }));
        assert_eq!(guard.accept(1, 8), Ok(()), "4 below 12");
        assert_eq!(guard.accept(1, 7), Err(SecurityError::Replay { received: 7, last: 12 }), "5 below: outside");
        // a rise past the whole window forgets nothing that could be accepted again
        assert_eq!(guard.accept(1, 1000), Ok(()));
        assert_eq!(guard.accept(1, 999), Ok(()));
        assert_eq!(guard.accept(1, 12), Err(SecurityError::Replay { received: 12, last: 1000 }));
        // every ARSN of the widest window, in reverse, once each
        let mut wide = ReplayGuard::default().with_window(MAX_REPLAY_WINDOW + 10);
        assert_eq!(wide.accept(0, 100), Ok(()));
        for arsn in (100 - MAX_REPLAY_WINDOW..100).rev() {
            assert_eq!(wide.accept(0, arsn), Ok(()), "{arsn}");
            assert!(wide.accept(0, arsn).is_err(), "{arsn} twice");
        }
        assert!(wide.accept(0, 100 - MAX_REPLAY_WINDOW - 1).is_err(), "the window is at most 64");
    }

    #[test]
    fn a_resumed_guard_accepts_nothing_at_or_below_its_marks() {
        let mut guard = ReplayGuard::resume([(1, 50)]).with_window(MAX_REPLAY_WINDOW);
        assert!(guard.accept(1, 49).is_err(), "which ARSNs below the mark were accepted is not known");
        assert!(guard.accept(1, 50).is_err());
        assert_eq!(guard.accept(1, 52), Ok(()));
        assert_eq!(guard.accept(1, 51), Ok(()), "above the mark, never accepted");
        assert!(guard.accept(1, 51).is_err());
        assert!(guard.accept(1, 50).is_err());
        assert_eq!(guard.marks(), [(1, 52)]);
    }

    #[test]
    fn key_files_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good.key");
        std::fs::write(&good, format!("{}\n", "0a".repeat(32))).expect("write");
        assert_eq!(read_key_file(&good).expect("key"), [0x0a; 32]);
        let short = dir.path().join("short.key");
        std::fs::write(&short, "0a".repeat(31)).expect("write");
        let e = read_key_file(&short).expect_err("short").to_string();
        assert!(e.contains("short.key") && e.contains("found 62 digits"), "{e}");
        let junk = dir.path().join("junk.key");
        std::fs::write(&junk, "zz".repeat(32)).expect("write");
        assert!(read_key_file(&junk).expect_err("junk").to_string().contains("not hexadecimal"));
        assert!(read_key_file(&dir.path().join("none.key")).expect_err("none").to_string().contains("cannot read"));
    }
}
