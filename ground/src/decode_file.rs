//! `ground decode`: decodes a recorded CADU stream and reports what the link did: CADUs, Reed-Solomon
//! corrections, uncorrectable blocks, frames and missing frames per virtual channel, packets per
//! APID, sync and authentication counters; and writes the packets, back to back.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use kestrel_link::decoder::{CaduDecoder, DecodeStats};
use kestrel_link::profile::LinkProfile;

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
            writeln!(f, "  APID {apid:>4}      {count}")?;
        }
        for issue in &s.issues {
            writeln!(f, "at byte {}: {}", issue.byte_offset, issue.what)?;
        }
        Ok(())
    }
}
