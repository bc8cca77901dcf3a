//! `ground decode`: decodes a recorded CADU stream and reports what the link did: CADUs, Reed-Solomon
//! corrections, uncorrectable blocks, frames and missing frames per virtual channel, packets per
//! APID, sync and authentication counters; and writes the packets, back to back.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use kestrel_link::decoder::{CaduDecoder, DecodeStats};
use kestrel_link::profile::LinkProfile;
use kestrel_link::spacecraft::{KNOWN, Spacecraft};

#[derive(Debug, thiserror::Error)]
pub enum DecodeFileError {
    #[error("cannot read `{path}`: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write `{path}`: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Decodes `input` with `profile`, writing the packets to `packets_out` if given.
pub fn decode_file(
    profile: LinkProfile,
    input: &Path,
    packets_out: Option<&Path>,
) -> Result<DecodeStats, DecodeFileError> {
    let read_error = |source| DecodeFileError::Read { path: input.to_path_buf(), source };
    let mut reader = File::open(input).map_err(read_error)?;
    let mut writer = match packets_out {
        Some(path) => Some((
            BufWriter::new(
                File::create(path).map_err(|source| DecodeFileError::Write { path: path.to_path_buf(), source })?,
            ),
            path,
        )),
        None => None,
    };
    let mut write_failure = None;
    let mut deliver = |delivered: kestrel_link::decoder::Delivered<'_>| {
        if let Some((w, path)) = writer.as_mut().filter(|_| write_failure.is_none())
            && let Err(source) = w.write_all(delivered.packet)
        {
            write_failure = Some(DecodeFileError::Write { path: path.to_path_buf(), source });
        }
    };
    let mut decoder = CaduDecoder::new(profile);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut chunk).map_err(read_error)?;
        if n == 0 {
            break;
        }
        decoder.push(&chunk[..n], &mut deliver);
    }
    decoder.finish(&mut deliver);
    if let Some(e) = write_failure {
        return Err(e);
    }
    if let Some((mut w, path)) = writer {
        w.flush().map_err(|source| DecodeFileError::Write { path: path.to_path_buf(), source })?;
    }
    Ok(decoder.stats())
}

/// The human-readable report.
#[derive(Debug)]
pub struct Report<'a>(pub &'a DecodeStats);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        writeln!(f, "bytes            {}", s.bytes)?;
        writeln!(f, "CADUs            {}", s.cadus)?;
        writeln!(
            f,
            "sync             {} exact ASMs, {} corrupted ASMs accepted, {} flywheel, {} bit slips, {} lock losses, {} bytes searched over",
            s.sync.asm_exact,
            s.sync.asm_corrupted,
            s.sync.flywheel_blocks,
            s.sync.bit_slips,
            s.sync.lock_losses,
            s.sync.bytes_searched_over
        )?;
        writeln!(f, "RS corrected     {} symbols in {} CADUs", s.rs_corrected_symbols, s.rs_corrected_cadus)?;
        writeln!(f, "RS uncorrectable {}", s.rs_uncorrectable)?;
        writeln!(
            f,
            "frames           {} ({} missing, {} idle, {} duplicate)",
            s.frames(),
            s.missing_frames(),
            s.idle_frames,
            s.duplicate_frames
        )?;
        for (vcid, channel) in &s.virtual_channels {
            writeln!(f, "  VCID {vcid:>2}        {} frames, {} missing", channel.frames, channel.missing)?;
        }
        writeln!(
            f,
            "rejected         {} FECF, {} frame version, {} other spacecraft, {} authentication, {} replayed, {} unknown SPI",
            s.fecf_errors,
            s.bad_frame_version,
            s.other_spacecraft,
            s.authentication_failures,
            s.replayed_frames,
            s.unknown_spi
        )?;
        writeln!(
            f,
            "packets          {} ({} partial dropped, {} pointer mismatches, {} idle)",
            s.packets_total(),
            s.extraction.partial_packets_dropped,
            s.extraction.pointer_mismatches,
            s.extraction.idle_packets
        )?;
        for (apid, count) in &s.packets {
            match s.sequence_gaps.get(apid) {
                Some(gaps) => writeln!(f, "  APID {apid:>4}      {count} ({gaps} missing by sequence count)")?,
                None => writeln!(f, "  APID {apid:>4}      {count}")?,
            }
        }
        for issue in &s.issues {
            writeln!(f, "at byte {}: {}", issue.byte_offset, issue.what)?;
        }
        Ok(())
    }
}

/// How much of a capture `--detect` reads: enough CADUs of any length to judge a profile by.
const DETECT_BYTES: u64 = 8 << 20;

/// How one known profile fits a capture.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fit {
    pub spacecraft: &'static str,
    pub source: &'static str,
    pub cadu_len: usize,
    /// The sync marker was found at this CADU length, repeating.
    pub sync_found: bool,
    pub cadus: u64,
    /// Share of CADUs Reed-Solomon could not correct.
    pub rs_uncorrectable_share: f64,
    /// Frames of this spacecraft, and of others (a header that does not match).
    pub frames: u64,
    pub other_spacecraft: u64,
    pub bad_frame_version: u64,
    /// First header pointers that did not match where the packets lie.
    pub pointer_mismatches: u64,
    pub packets: u64,
    /// Every check passed: sync, Reed-Solomon clean, frame headers consistent, pointers consistent.
    pub fits: bool,
}

impl Fit {
    fn of(spacecraft: &'static Spacecraft, stats: &DecodeStats) -> Self {
        let cadus = stats.cadus;
        let share = |n: u64| if cadus == 0 { 1.0 } else { n as f64 / cadus as f64 };
        let sync_found = stats.sync.asm_exact >= 2;
        let frames = stats.frames();
        let fits = sync_found
            && share(stats.rs_uncorrectable) <= 0.1
            && frames > 0
            && stats.other_spacecraft == 0
            && stats.bad_frame_version == 0
            && stats.extraction.pointer_mismatches * 20 <= frames;
        Self {
            spacecraft: spacecraft.name,
            source: spacecraft.source,
            cadu_len: spacecraft.profile().cadu_len(),
            sync_found,
            cadus,
            rs_uncorrectable_share: share(stats.rs_uncorrectable),
            frames,
            other_spacecraft: stats.other_spacecraft,
            bad_frame_version: stats.bad_frame_version,
            pointer_mismatches: stats.extraction.pointer_mismatches,
            packets: stats.packets_total(),
            fits,
        }
    }
}

/// Every known profile tried on the first few MiB of `input`, best fitting first.
pub fn detect(input: &Path) -> Result<Vec<Fit>, DecodeFileError> {
    let read_error = |source| DecodeFileError::Read { path: input.to_path_buf(), source };
    let mut head = Vec::new();
    File::open(input).map_err(read_error)?.take(DETECT_BYTES).read_to_end(&mut head).map_err(read_error)?;
    let mut fits: Vec<Fit> = KNOWN
        .iter()
        .map(|spacecraft| {
            let mut decoder = CaduDecoder::new(spacecraft.profile());
            decoder.push(&head, &mut |_| {});
            decoder.finish(&mut |_| {});
            Fit::of(spacecraft, &decoder.stats())
        })
        .collect();
    fits.sort_by_key(|f| (std::cmp::Reverse(f.fits), std::cmp::Reverse(f.packets)));
    Ok(fits)
}

/// The human-readable `--detect` report.
#[derive(Debug)]
pub struct Detection<'a>(pub &'a [Fit]);

impl fmt::Display for Detection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.iter().any(|fit| fit.sync_found) {
            return writeln!(f, "no CADU stream found: no sync marker repeats at any known CADU length");
        }
        writeln!(
            f,
            "{:<12} {:>5} {:>6} {:>8} {:>7} {:>6} {:>9} {:>8}  fits",
            "spacecraft", "CADU", "CADUs", "RS bad", "frames", "other", "pointers", "packets"
        )?;
        for fit in self.0.iter().filter(|fit| fit.sync_found) {
            writeln!(
                f,
                "{:<12} {:>5} {:>6} {:>7.1}% {:>7} {:>6} {:>9} {:>8}  {}",
                fit.spacecraft,
                fit.cadu_len,
                fit.cadus,
                fit.rs_uncorrectable_share * 100.0,
                fit.frames,
                fit.other_spacecraft,
                fit.pointer_mismatches,
                fit.packets,
                if fit.fits { "yes" } else { "no" }
            )?;
        }
        match self.0.iter().find(|fit| fit.fits) {
            Some(best) => writeln!(f, "the capture is {} ({})", best.spacecraft, best.source),
            None => writeln!(f, "a CADU stream, but no known profile fits it: describe it with --profile FILE"),
        }
    }
}
