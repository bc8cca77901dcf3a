//! The frame error control field: CRC-16-CCITT (poly 0x1021, init 0xFFFF, no reflection, no final
//! XOR), as CCSDS 132.0-B/732.0-B define it. `crc` calls it CRC-16/IBM-3740.

use crc::{CRC_16_IBM_3740, Crc, Table};

/// Bytes of the field.
pub const FECF_BYTES: usize = 2;

/// Slice-by-16: every byte of the downlink passes through it.
const CRC16: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_IBM_3740);

/// CRC-16 of `bytes`.
pub fn crc16(bytes: &[u8]) -> u16 {
    CRC16.checksum(bytes)
}

/// Writes the CRC of everything before the last two bytes into the last two bytes.
pub fn seal(frame: &mut [u8]) {
    let end = frame.len() - 2;
    let crc = crc16(&frame[..end]);
    frame[end..].copy_from_slice(&crc.to_be_bytes());
}

/// Whether the last two bytes hold the CRC of the bytes before them.
pub fn verify(frame: &[u8]) -> bool {
    frame.len() >= 2 && {
        let end = frame.len() - 2;
        crc16(&frame[..end]).to_be_bytes() == frame[end..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn seal_then_verify_and_detect_a_flip() {
        let mut frame = b"kestrel frame....\0\0".to_vec();
        seal(&mut frame);
        assert!(verify(&frame));
        frame[3] ^= 0x10;
        assert!(!verify(&frame));
        assert!(!verify(&[0x12]));
    }
}
