//! `flight-tools frame`: wraps a file of space packets into a CADU stream as the mission's link section
//! says (frames, security, FECF, Reed-Solomon, randomizer, ASM). Packets go on the virtual channel
//! of their APID (docs/ICD.md).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use kestrel_link::encoder::{CaduEncoder, EncoderState};
use kestrel_link::packet::PacketHeader;
use kestrel_link::profile::{LinkProfile, virtual_channel};

#[derive(Debug, thiserror::Error)]
pub enum FrameFileError {
    #[error("cannot read `{path}`: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write `{path}`: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("`{path}` byte {offset}: {message}")]
    Packet { path: PathBuf, offset: usize, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameReport {
    pub packets: u64,
    pub packet_bytes: u64,
    pub cadus: u64,
    pub stream_bytes: u64,
}

pub fn frame_file(profile: LinkProfile, input: &Path, output: &Path) -> Result<FrameReport, FrameFileError> {
    let bytes = std::fs::read(input).map_err(|source| FrameFileError::Read { path: input.to_path_buf(), source })?;
    let write_error = |source| FrameFileError::Write { path: output.to_path_buf(), source };
    let file = File::create(output).map_err(write_error)?;
    let mut writer = BufWriter::new(file);
    let mut encoder = CaduEncoder::new(profile, EncoderState::default());
    let mut cadus = Vec::new();
    let mut report = FrameReport { packets: 0, packet_bytes: bytes.len() as u64, cadus: 0, stream_bytes: 0 };
    let mut offset = 0;
    while offset < bytes.len() {
        let packet_error = |message: String| FrameFileError::Packet { path: input.to_path_buf(), offset, message };
        let header = PacketHeader::parse(&bytes[offset..]).map_err(|e| packet_error(e.to_string()))?;
        let end = offset + header.packet_len;
        if end > bytes.len() {
            return Err(packet_error(format!(
                "truncated packet: its header says {} bytes, {} remain",
                header.packet_len,
                bytes.len() - offset
            )));
        }
        encoder.push_packets(virtual_channel(header.apid), &bytes[offset..end]);
        report.cadus += encoder.emit_full_frames(&mut cadus) as u64;
        writer.write_all(&cadus).map_err(write_error)?;
        report.stream_bytes += cadus.len() as u64;
        cadus.clear();
        report.packets += 1;
        offset = end;
    }
    report.cadus += encoder.flush(&mut cadus) as u64;
    report.stream_bytes += cadus.len() as u64;
    writer.write_all(&cadus).map_err(write_error)?;
    writer.flush().map_err(write_error)?;
    Ok(report)
}
