//! A summary of the LUKS1 header that qcow2 LUKS encryption embeds, enough to
//! describe it the way `qemu-img info` does. Nothing here decrypts.

use crate::bytes::{be_u16, be_u32, slice, until_nul};
use crate::error::FormatError;

/// LUKS1 magic.
pub const MAGIC: &[u8; 6] = b"LUKS\xba\xbe";
/// Bytes of the LUKS1 header qvet reads.
pub const HEADER_LEN: usize = 592;
const SLOT_ENABLED: u32 = 0x00ac_71f3;

/// One of the eight key slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySlot {
    /// Whether the slot holds a key.
    pub active: bool,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Key material offset in bytes from the LUKS header.
    pub key_offset: u64,
    /// Anti-forensic stripes.
    pub stripes: u32,
}

/// The fields `qemu-img info` prints for a LUKS payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksSummary {
    /// LUKS version (1).
    pub version: u16,
    /// Cipher name as stored ("aes").
    pub cipher_name: String,
    /// Cipher mode as stored ("xts-plain64").
    pub cipher_mode: String,
    /// Hash spec ("sha256").
    pub hash_spec: String,
    /// Payload offset in bytes.
    pub payload_offset: u64,
    /// Master key length in bytes.
    pub key_bytes: u32,
    /// Master key digest iterations.
    pub master_key_iters: u32,
    /// UUID text.
    pub uuid: String,
    /// Key slots.
    pub slots: Vec<KeySlot>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(until_nul(b)).into_owned()
}

impl LuksSummary {
    /// Parses a LUKS1 header found at host offset `offset`.
    ///
    /// # Errors
    /// [`FormatError::Luks`] on a short buffer or a bad magic.
    pub fn parse(b: &[u8], offset: u64) -> Result<Self, FormatError> {
        let err = |why| FormatError::Luks { offset, why };
        if b.len() < HEADER_LEN {
            return Err(err("header truncated"));
        }
        if b.get(..6) != Some(MAGIC.as_slice()) {
            return Err(err("bad LUKS magic"));
        }
        let slots = (0..8usize)
            .map(|i| {
                let s = slice(b, 208 + i * 48, 48).unwrap_or(&[]);
                KeySlot {
                    active: be_u32(s, 0) == Some(SLOT_ENABLED),
                    iterations: be_u32(s, 4).unwrap_or(0),
                    key_offset: u64::from(be_u32(s, 40).unwrap_or(0)) * 512,
                    stripes: be_u32(s, 44).unwrap_or(0),
                }
            })
            .collect();
        Ok(Self {
            version: be_u16(b, 6).unwrap_or(0),
            cipher_name: text(slice(b, 8, 32).unwrap_or(&[])),
            cipher_mode: text(slice(b, 40, 32).unwrap_or(&[])),
            hash_spec: text(slice(b, 72, 32).unwrap_or(&[])),
            payload_offset: u64::from(be_u32(b, 104).unwrap_or(0)) * 512,
            key_bytes: be_u32(b, 108).unwrap_or(0),
            master_key_iters: be_u32(b, 164).unwrap_or(0),
            uuid: text(slice(b, 168, 40).unwrap_or(&[])),
            slots,
        })
    }

    /// Cipher mode without the IV generator ("xts").
    pub fn mode(&self) -> &str {
        self.cipher_mode.split('-').next().unwrap_or("")
    }

    /// IV generator ("plain64", "essiv"), and its hash for ESSIV.
    pub fn ivgen(&self) -> (String, Option<String>) {
        let iv = self.cipher_mode.split_once('-').map(|x| x.1).unwrap_or("");
        match iv.split_once(':') {
            Some((alg, hash)) => (alg.to_string(), Some(hash.to_string())),
            None => (iv.to_string(), None),
        }
    }

    /// qemu's cipher algorithm name ("aes-256"): the key is halved for XTS.
    pub fn cipher_alg(&self) -> String {
        let key = if self.mode() == "xts" {
            self.key_bytes / 2
        } else {
            self.key_bytes
        };
        match self.cipher_name.as_str() {
            "sm4" => "sm4".to_string(),
            name => format!("{name}-{}", key * 8),
        }
    }
}
