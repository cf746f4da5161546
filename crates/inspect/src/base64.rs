//! Base64 (RFC 4648, standard alphabet), the one implementation the
//! workspace uses: `authorized_keys` blobs and fingerprints, apk `Q1`
//! checksums, and `*_base64` fields for names that are not UTF-8.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Value of one digit, `None` for anything else.
fn value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

fn encode_with(data: &[u8], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b0 = u32::from(chunk.first().copied().unwrap_or(0));
        let b1 = u32::from(chunk.get(1).copied().unwrap_or(0));
        let b2 = u32::from(chunk.get(2).copied().unwrap_or(0));
        let n = (b0 << 16) | (b1 << 8) | b2;
        for k in 0..4 {
            if k <= chunk.len() {
                let idx = ((n >> (18 - 6 * k)) & 0x3f) as usize;
                if let Some(&c) = ALPHABET.get(idx) {
                    out.push(char::from(c));
                }
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Encodes with `=` padding.
pub fn encode(data: &[u8]) -> String {
    encode_with(data, true)
}

/// Encodes without padding (OpenSSH `SHA256:` fingerprints).
pub fn encode_nopad(data: &[u8]) -> String {
    encode_with(data, false)
}

/// Decodes strictly padded base64, as OpenSSH reads key blobs: the length
/// is a multiple of 4 and at most two `=` end it.
pub fn decode_padded(text: &[u8]) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(4) {
        return None;
    }
    decode(text)
}

/// Decodes base64 whose `=` padding is optional (but only at the end);
/// `None` on any other character or an impossible length.
pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
    let pad = text.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 || (pad > 0 && !text.len().is_multiple_of(4)) {
        return None;
    }
    let body = text.get(..text.len() - pad)?;
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in body {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rfc4648_vectors_both_ways() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(encode_nopad(plain.as_bytes()), coded.trim_end_matches('='));
            assert_eq!(decode(coded.as_bytes()).unwrap(), plain.as_bytes());
            assert_eq!(
                decode(coded.trim_end_matches('=').as_bytes()).unwrap(),
                plain.as_bytes()
            );
        }
        assert_eq!(encode(&[0xff, 0xfe]), "//4=");
        assert!(decode_padded(b"Zg").is_none());
        assert!(decode_padded(b"").is_none());
        assert!(decode(b"Zg===").is_none());
        assert!(decode(b"Z").is_none());
        assert!(decode(b"Zg=x").is_none());
        assert!(decode(b"Z*==").is_none());
    }
}
