//! Hexadecimal text of keys, digests and signatures, as the project's files and API write them.

/// Lower-case hexadecimal digits of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Exactly `N` bytes from `2 * N` hexadecimal digits (either case, surrounding white space
/// ignored); `None` for anything else.
pub fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    // from_str_radix alone would take a sign ("+f" is 15)
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_go_to_digits_and_back_and_anything_else_is_refused() {
        assert_eq!(encode(&[0x0a, 0xff]), "0aff");
        assert_eq!(decode::<2>(" 0AfF\n"), Some([0x0a, 0xff]));
        assert_eq!(decode::<2>("0af"), None);
        assert_eq!(decode::<2>("0afg"), None);
        assert_eq!(decode::<2>("+1ff"), None, "a sign is no digit");
        assert_eq!(decode::<1>("é"), None);
    }
}
