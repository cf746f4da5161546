//! The LUKS2 on-disk header (cryptsetup's "LUKS2 On-Disk Format
//! Specification", version 1.1): a 4096-byte binary header, then JSON
//! metadata up to `hdr_size`, the whole area written twice (the second copy
//! at `hdr_size`). This module parses one copy into the facts opening needs:
//! keyslots (their KDF, anti-forensic split and key area), the data
//! segment and the master-key digests. Checksums are the caller's (no
//! hashing here); every number is bounded before anything is sized by it.

use crate::error::FormatError;

/// Magic of the primary header (the same bytes as LUKS1's).
pub const MAGIC: &[u8; 6] = b"LUKS\xba\xbe";
/// Magic of the secondary header.
pub const MAGIC_SECONDARY: &[u8; 6] = b"SKUL\xba\xbe";
/// Bytes of the binary header before the JSON area.
pub const BINARY_LEN: usize = 4096;
/// The metadata sizes the specification allows (binary header and JSON).
pub const HDR_SIZES: [u64; 7] = [
    16 << 10,
    32 << 10,
    64 << 10,
    128 << 10,
    256 << 10,
    512 << 10,
    1024 << 10,
];
/// Offset and length of the checksum field in the binary header.
pub const CSUM_FIELD: (usize, usize) = (448, 64);
/// Keyslots considered, at most (the specification's JSON has 32).
pub const MAX_KEYSLOTS: usize = 32;
/// Largest anti-forensic stripe count accepted (cryptsetup writes 4000).
pub const MAX_STRIPES: u64 = 16_000;
/// Largest key accepted, bytes.
pub const MAX_KEY: u64 = 512;

/// A key derivation function of a keyslot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kdf {
    /// PBKDF2 with a hash.
    Pbkdf2 {
        /// Hash name ("sha256").
        hash: String,
        /// Iterations.
        iterations: u32,
        /// Salt.
        salt: Vec<u8>,
    },
    /// Argon2i or Argon2id.
    Argon2 {
        /// Argon2id (else Argon2i).
        id: bool,
        /// Time cost (passes).
        time: u32,
        /// Memory cost, KiB.
        memory_kib: u32,
        /// Lanes.
        cpus: u32,
        /// Salt.
        salt: Vec<u8>,
    },
}

/// One keyslot of type `luks2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyslot {
    /// Its number (the JSON key).
    pub id: u32,
    /// Length of the master key it holds.
    pub key_size: usize,
    /// The KDF turning a passphrase into the area key.
    pub kdf: Kdf,
    /// Anti-forensic stripes.
    pub stripes: usize,
    /// Hash of the anti-forensic diffuser.
    pub af_hash: String,
    /// Where the split key lies, from the start of the device.
    pub area_offset: u64,
    /// Length of that area.
    pub area_size: u64,
    /// Cipher of the area, dm-crypt style ("aes-xts-plain64").
    pub area_encryption: String,
    /// Key length of the area cipher.
    pub area_key_size: usize,
    /// cryptsetup's priority (0 ignore, 1 normal, 2 high).
    pub priority: u32,
}

/// The data segment (type `crypt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// First byte of the encrypted data.
    pub offset: u64,
    /// Its length, or `None` for "dynamic" (to the end of the device).
    pub size: Option<u64>,
    /// Added to the sector number of the IV.
    pub iv_tweak: u64,
    /// Cipher, dm-crypt style ("aes-xts-plain64").
    pub encryption: String,
    /// Encryption sector size: 512 to 4096.
    pub sector_size: u32,
}

/// A PBKDF2 digest of the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDigest {
    /// Keyslots whose key it checks.
    pub keyslots: Vec<u32>,
    /// Hash of the PBKDF2.
    pub hash: String,
    /// Iterations.
    pub iterations: u32,
    /// Salt.
    pub salt: Vec<u8>,
    /// The expected digest.
    pub digest: Vec<u8>,
}

/// One parsed header copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Luks2 {
    /// Bytes of binary header and JSON.
    pub hdr_size: u64,
    /// Header sequence number (the newer copy wins).
    pub seqid: u64,
    /// Checksum algorithm name ("sha256").
    pub checksum_alg: String,
    /// The stored checksum (its first digest-length bytes count).
    pub checksum: Vec<u8>,
    /// Keyslots of type `luks2`, by number.
    pub keyslots: Vec<Keyslot>,
    /// The first `crypt` segment.
    pub segment: Segment,
    /// Master-key digests.
    pub digests: Vec<KeyDigest>,
}

fn err(offset: u64, why: &'static str) -> FormatError {
    FormatError::Luks { offset, why }
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    Some(u64::from_be_bytes(s.try_into().ok()?))
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(b.get(..end).unwrap_or_default()).into_owned()
}

/// `hdr_size` of the binary header at the start of `head` (at least
/// [`BINARY_LEN`] bytes), with its magic checked against `magic`, for the
/// caller to read the whole area.
///
/// # Errors
/// [`FormatError::Luks`] for a bad magic, version or size.
pub fn header_size(head: &[u8], magic: &[u8; 6], offset: u64) -> Result<u64, FormatError> {
    if head.get(..6) != Some(magic.as_slice()) {
        return Err(err(offset, "no LUKS2 magic"));
    }
    if head.get(6..8) != Some(&[0, 2][..]) {
        return Err(err(offset, "not a LUKS2 header"));
    }
    let size = be_u64(head, 8).ok_or_else(|| err(offset, "LUKS2 header truncated"))?;
    if !HDR_SIZES.contains(&size) {
        return Err(err(
            offset,
            "LUKS2 header size not one the specification allows",
        ));
    }
    Ok(size)
}

/// Parses one header copy: `area` is the whole `hdr_size` bytes from the
/// copy's magic on, `offset` its position (for errors).
///
/// # Errors
/// [`FormatError::Luks`] naming what is missing or out of bounds.
pub fn parse(area: &[u8], offset: u64) -> Result<Luks2, FormatError> {
    let hdr_size =
        header_size(area, MAGIC, offset).or_else(|_| header_size(area, MAGIC_SECONDARY, offset))?;
    if (area.len() as u64) < hdr_size {
        return Err(err(offset, "LUKS2 header area truncated"));
    }
    let seqid = be_u64(area, 16).unwrap_or(0);
    let checksum_alg = c_string(area.get(72..104).unwrap_or_default());
    let (at, len) = CSUM_FIELD;
    let checksum = area.get(at..at + len).unwrap_or_default().to_vec();
    let json_end = usize::try_from(hdr_size).unwrap_or(usize::MAX);
    let json = area
        .get(BINARY_LEN..json_end)
        .ok_or_else(|| err(offset, "LUKS2 JSON area truncated"))?;
    let text_len = json.iter().position(|&c| c == 0).unwrap_or(json.len());
    let v: serde_json::Value = serde_json::from_slice(json.get(..text_len).unwrap_or_default())
        .map_err(|_| err(offset, "LUKS2 JSON metadata does not parse"))?;
    let keyslots = keyslots(&v, offset)?;
    let segment = segment(&v, offset)?;
    let digests = digests(&v, offset)?;
    Ok(Luks2 {
        hdr_size,
        seqid,
        checksum_alg,
        checksum,
        keyslots,
        segment,
        digests,
    })
}

/// A JSON number, or a decimal string (LUKS2 writes 64-bit values as
/// strings).
fn number(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn u32_of(v: &serde_json::Value) -> Option<u32> {
    number(v).and_then(|n| u32::try_from(n).ok())
}

fn text(v: &serde_json::Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn base64(v: &serde_json::Value) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let s = v.as_str()?;
    if s.len() > 1024 {
        return None;
    }
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// The entries of a JSON object keyed by decimal numbers, in number order.
fn numbered(v: &serde_json::Value) -> Vec<(u32, &serde_json::Value)> {
    let mut out: Vec<(u32, &serde_json::Value)> = v
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, x)| k.parse().ok().map(|n| (n, x)))
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|e| e.0);
    out
}

fn keyslots(v: &serde_json::Value, offset: u64) -> Result<Vec<Keyslot>, FormatError> {
    let bad = |why| err(offset, why);
    let mut out = Vec::new();
    for (id, k) in numbered(&v["keyslots"]).into_iter().take(MAX_KEYSLOTS) {
        if k["type"] != "luks2" {
            continue;
        }
        let key_size = number(&k["key_size"])
            .filter(|&n| (1..=MAX_KEY).contains(&n))
            .ok_or_else(|| bad("LUKS2 keyslot key size missing or out of bounds"))?;
        let kdf = &k["kdf"];
        let salt = base64(&kdf["salt"]).ok_or_else(|| bad("LUKS2 keyslot salt missing"))?;
        let kdf = match kdf["type"].as_str() {
            Some("pbkdf2") => Kdf::Pbkdf2 {
                hash: text(&kdf["hash"]).ok_or_else(|| bad("LUKS2 PBKDF2 hash missing"))?,
                iterations: u32_of(&kdf["iterations"])
                    .ok_or_else(|| bad("LUKS2 PBKDF2 iterations missing"))?,
                salt,
            },
            Some(t @ ("argon2i" | "argon2id")) => Kdf::Argon2 {
                id: t == "argon2id",
                time: u32_of(&kdf["time"]).ok_or_else(|| bad("LUKS2 Argon2 time missing"))?,
                memory_kib: u32_of(&kdf["memory"])
                    .ok_or_else(|| bad("LUKS2 Argon2 memory missing"))?,
                cpus: u32_of(&kdf["cpus"]).ok_or_else(|| bad("LUKS2 Argon2 cpus missing"))?,
                salt,
            },
            _ => return Err(bad("LUKS2 keyslot KDF not pbkdf2, argon2i or argon2id")),
        };
        let af = &k["af"];
        if af["type"] != "luks1" {
            return Err(bad("LUKS2 keyslot anti-forensic type not luks1"));
        }
        let stripes = number(&af["stripes"])
            .filter(|&n| (1..=MAX_STRIPES).contains(&n))
            .ok_or_else(|| bad("LUKS2 keyslot stripes missing or out of bounds"))?;
        let area = &k["area"];
        if area["type"] != "raw" {
            return Err(bad("LUKS2 keyslot area type not raw"));
        }
        out.push(Keyslot {
            id,
            key_size: usize::try_from(key_size).unwrap_or(0),
            kdf,
            stripes: usize::try_from(stripes).unwrap_or(0),
            af_hash: text(&af["hash"]).ok_or_else(|| bad("LUKS2 AF hash missing"))?,
            area_offset: number(&area["offset"])
                .ok_or_else(|| bad("LUKS2 keyslot area offset missing"))?,
            area_size: number(&area["size"])
                .ok_or_else(|| bad("LUKS2 keyslot area size missing"))?,
            area_encryption: text(&area["encryption"])
                .ok_or_else(|| bad("LUKS2 keyslot area cipher missing"))?,
            area_key_size: number(&area["key_size"])
                .filter(|&n| (1..=MAX_KEY).contains(&n))
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| bad("LUKS2 keyslot area key size missing or out of bounds"))?,
            priority: u32_of(&k["priority"]).unwrap_or(1),
        });
    }
    Ok(out)
}

fn segment(v: &serde_json::Value, offset: u64) -> Result<Segment, FormatError> {
    let bad = |why| err(offset, why);
    let (_, s) = numbered(&v["segments"])
        .into_iter()
        .find(|(_, s)| s["type"] == "crypt")
        .ok_or_else(|| bad("LUKS2 header has no crypt segment"))?;
    let size = match &s["size"] {
        serde_json::Value::String(d) if d == "dynamic" => None,
        other => Some(number(other).ok_or_else(|| bad("LUKS2 segment size missing"))?),
    };
    let sector_size = u32_of(&s["sector_size"])
        .filter(|n| (512..=4096).contains(n) && n.is_power_of_two())
        .ok_or_else(|| bad("LUKS2 segment sector size not 512 to 4096"))?;
    Ok(Segment {
        offset: number(&s["offset"]).ok_or_else(|| bad("LUKS2 segment offset missing"))?,
        size,
        iv_tweak: number(&s["iv_tweak"]).unwrap_or(0),
        encryption: text(&s["encryption"]).ok_or_else(|| bad("LUKS2 segment cipher missing"))?,
        sector_size,
    })
}

fn digests(v: &serde_json::Value, offset: u64) -> Result<Vec<KeyDigest>, FormatError> {
    let bad = |why| err(offset, why);
    let mut out = Vec::new();
    for (_, d) in numbered(&v["digests"]).into_iter().take(MAX_KEYSLOTS) {
        if d["type"] != "pbkdf2" {
            continue;
        }
        let ids = |k: &str| -> Vec<u32> {
            d[k].as_array()
                .map(|a| a.iter().filter_map(u32_of).take(MAX_KEYSLOTS).collect())
                .unwrap_or_default()
        };
        out.push(KeyDigest {
            keyslots: ids("keyslots"),
            hash: text(&d["hash"]).ok_or_else(|| bad("LUKS2 digest hash missing"))?,
            iterations: u32_of(&d["iterations"])
                .ok_or_else(|| bad("LUKS2 digest iterations missing"))?,
            salt: base64(&d["salt"]).ok_or_else(|| bad("LUKS2 digest salt missing"))?,
            digest: base64(&d["digest"])
                .filter(|x| !x.is_empty() && x.len() <= 64)
                .ok_or_else(|| bad("LUKS2 digest missing"))?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn area(json: &str) -> Vec<u8> {
        let mut a = vec![0u8; 16 << 10];
        a[..6].copy_from_slice(MAGIC);
        a[6..8].copy_from_slice(&[0, 2]);
        a[8..16].copy_from_slice(&(16u64 << 10).to_be_bytes());
        a[72..78].copy_from_slice(b"sha256");
        a[BINARY_LEN..BINARY_LEN + json.len()].copy_from_slice(json.as_bytes());
        a
    }

    const JSON: &str = r#"{"keyslots":{"0":{"type":"luks2","key_size":64,"af":{"type":"luks1","stripes":4000,"hash":"sha256"},"area":{"type":"raw","offset":"32768","size":"258048","encryption":"aes-xts-plain64","key_size":64},"kdf":{"type":"argon2id","time":4,"memory":8192,"cpus":2,"salt":"CDAkVLeysAnVv56i50uKNp+Fa1TKR8HgKzCkZmOnsjA="}}},"tokens":{},"segments":{"0":{"type":"crypt","offset":"8388608","size":"dynamic","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":512}},"digests":{"0":{"type":"pbkdf2","keyslots":["0"],"segments":["0"],"hash":"sha256","iterations":1000,"salt":"/q+btbTD8ZHOI72rrBWjUcz116sF6U2aY4Pza/P1A1Y=","digest":"ZRbPs8t7sTRAWWuGD/163hFPn5RfiYM8cC3kHEX/rPc="}},"config":{"json_size":"12288","keyslots_size":"8355840"}}"#;

    #[test]
    fn a_cryptsetup_header_parses() {
        let h = parse(&area(JSON), 0).unwrap();
        assert_eq!(h.keyslots.len(), 1);
        let k = &h.keyslots[0];
        assert_eq!((k.key_size, k.stripes, k.area_offset), (64, 4000, 32768));
        assert!(matches!(
            k.kdf,
            Kdf::Argon2 {
                id: true,
                time: 4,
                memory_kib: 8192,
                cpus: 2,
                ..
            }
        ));
        assert_eq!(h.segment.offset, 8 << 20);
        assert_eq!(h.segment.size, None);
        assert_eq!(h.segment.sector_size, 512);
        assert_eq!(h.digests[0].keyslots, vec![0]);
        assert_eq!(h.digests[0].iterations, 1000);
    }

    #[test]
    fn hostile_headers_are_refused() {
        let mut a = area(JSON);
        a[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(parse(&a, 0).is_err(), "header size");
        assert!(parse(&area("{not json"), 0).is_err());
        assert!(
            parse(&area(r#"{"keyslots":{},"segments":{}}"#), 0).is_err(),
            "no segment"
        );
        let many = JSON.replace("\"stripes\":4000", "\"stripes\":4000000000");
        assert!(parse(&area(&many), 0).is_err(), "stripes");
        let key = JSON.replace("\"key_size\":64,\"af\"", "\"key_size\":1000000,\"af\"");
        assert!(parse(&area(&key), 0).is_err(), "key size");
        let sector = JSON.replace("\"sector_size\":512", "\"sector_size\":3000");
        assert!(parse(&area(&sector), 0).is_err(), "sector size");
        assert!(parse(&area(JSON)[..5000], 0).is_err(), "truncated");
    }
}
