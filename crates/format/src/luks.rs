//! The LUKS1 header that qcow2 LUKS encryption embeds (behind the
//! full-disk-encryption header extension): every field of the 592-byte
//! `phdr`, the eight key slots, and the bounds a key-slot opening must hold.
//! Nothing here decrypts; `qvet-image` opens key slots.
//!
//! Layout (LUKS1 on-disk format specification 1.2.3, all integers big-endian):
//! magic (6) · version u16 · cipher-name (32) · cipher-mode (32) · hash-spec
//! (32) · payload-offset u32 (sectors) · key-bytes u32 · mk-digest (20) ·
//! mk-digest-salt (32) · mk-digest-iter u32 · uuid (40) · 8 × key slot
//! { active u32, iterations u32, salt (32), key-material-offset u32 (sectors),
//! stripes u32 }.

use crate::bytes::{be_u16, be_u32, slice, until_nul};
use crate::error::FormatError;

/// LUKS1 magic.
pub const MAGIC: &[u8; 6] = b"LUKS\xba\xbe";
/// Bytes of the LUKS1 header qvet reads.
pub const HEADER_LEN: usize = 592;
/// LUKS sector size (key material and payload offsets count these).
pub const SECTOR: u64 = 512;
/// Number of key slots.
pub const SLOTS: usize = 8;
/// Salt length.
pub const SALT_LEN: usize = 32;
/// Master key digest length.
pub const DIGEST_LEN: usize = 20;
const SLOT_ENABLED: u32 = 0x00ac_71f3;
const SLOT_DISABLED: u32 = 0x0000_dead;

/// Our bound on PBKDF2 iterations (key slots and the master key digest).
/// qemu and cryptsetup calibrate to about two seconds of their own PBKDF2:
/// `qemu-img create` on the 2-core build machine wrote 10.4 million for a
/// key slot. A header asking for more than six times that is refused rather
/// than left to burn CPU.
pub const MAX_ITERATIONS: u32 = 64_000_000;
/// Our bound on the PBKDF2 iterations one opening may spend over every key
/// slot it tries (each try also recomputes the master key digest): eight
/// slots at qemu's default cost fit.
pub const MAX_TOTAL_ITERATIONS: u64 = 200_000_000;
/// Our bound on anti-forensic stripes: every LUKS1 writer uses 4000.
pub const MAX_STRIPES: u32 = 16_000;
/// Largest master key (aes-256 in XTS mode needs 64 bytes); our bound.
pub const MAX_KEY_BYTES: u32 = 64;

/// One of the eight key slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySlot {
    /// Whether the slot holds a key (`active` = 0x00AC71F3).
    pub active: bool,
    /// The raw `active` word (0x0000DEAD when disabled; anything else is corrupt).
    pub state: u32,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// PBKDF2 salt.
    pub salt: [u8; SALT_LEN],
    /// Key material offset in bytes from the LUKS header.
    pub key_offset: u64,
    /// Anti-forensic stripes.
    pub stripes: u32,
}

impl KeySlot {
    /// Whether the slot's state word is one of the two LUKS defines.
    pub fn state_valid(&self) -> bool {
        self.state == SLOT_ENABLED || self.state == SLOT_DISABLED
    }
}

/// A parsed LUKS1 header.
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
    /// Payload offset in bytes (unused by qcow2, whose payload is the data clusters).
    pub payload_offset: u64,
    /// Master key length in bytes.
    pub key_bytes: u32,
    /// PBKDF2 digest of the master key.
    pub mk_digest: [u8; DIGEST_LEN],
    /// Salt of the master key digest.
    pub mk_digest_salt: [u8; SALT_LEN],
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

fn array<const N: usize>(b: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(s) = slice(b, offset, N) {
        out.copy_from_slice(s);
    }
    out
}

/// Where a key slot's key material lies, relative to the LUKS header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMaterial {
    /// Offset in bytes from the LUKS header.
    pub offset: u64,
    /// Bytes of split key: `key_bytes × stripes`.
    pub len: u64,
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
        let slots = (0..SLOTS)
            .map(|i| {
                let s = slice(b, 208 + i * 48, 48).unwrap_or(&[]);
                let state = be_u32(s, 0).unwrap_or(0);
                KeySlot {
                    active: state == SLOT_ENABLED,
                    state,
                    iterations: be_u32(s, 4).unwrap_or(0),
                    salt: array(s, 8),
                    key_offset: u64::from(be_u32(s, 40).unwrap_or(0)) * SECTOR,
                    stripes: be_u32(s, 44).unwrap_or(0),
                }
            })
            .collect();
        Ok(Self {
            version: be_u16(b, 6).unwrap_or(0),
            cipher_name: text(slice(b, 8, 32).unwrap_or(&[])),
            cipher_mode: text(slice(b, 40, 32).unwrap_or(&[])),
            hash_spec: text(slice(b, 72, 32).unwrap_or(&[])),
            payload_offset: u64::from(be_u32(b, 104).unwrap_or(0)) * SECTOR,
            key_bytes: be_u32(b, 108).unwrap_or(0),
            mk_digest: array(b, 112),
            mk_digest_salt: array(b, 132),
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
            // The header's key length is unchecked here (check_openable
            // bounds it): a hostile value must not overflow the bit count.
            name => format!("{name}-{}", u64::from(key) * 8),
        }
    }

    /// Indexes of the active key slots, in order.
    pub fn active_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots.get(i).is_some_and(|s| s.active))
            .collect()
    }

    /// The header-wide bounds an opening needs: version 1, a key length in
    /// 1..=[`MAX_KEY_BYTES`], master-key digest iterations in
    /// 1..=[`MAX_ITERATIONS`].
    ///
    /// # Errors
    /// [`FormatError::Luks`] naming the first field out of bounds.
    pub fn check_openable(&self, offset: u64) -> Result<(), FormatError> {
        let err = |why| Err(FormatError::Luks { offset, why });
        if self.version != 1 {
            return err("only LUKS version 1 is supported inside qcow2");
        }
        if self.key_bytes == 0 || self.key_bytes > MAX_KEY_BYTES {
            return err("master key length out of bounds (1..=64 bytes)");
        }
        if self.master_key_iters == 0 {
            return err("master key digest has zero iterations");
        }
        if self.master_key_iters > MAX_ITERATIONS {
            return err("master key digest iterations above qvet's bound (64,000,000)");
        }
        Ok(())
    }

    /// Where key slot `index`'s key material lies, once its iterations and
    /// stripes are within bounds and the material ends inside `area_len`
    /// bytes (the LUKS area the qcow2 crypto extension reserves).
    ///
    /// # Errors
    /// [`FormatError::Luks`]: no such slot, zero or too many iterations or
    /// stripes, key material past the end of the area (truncated).
    pub fn key_material(
        &self,
        index: usize,
        offset: u64,
        area_len: u64,
    ) -> Result<KeyMaterial, FormatError> {
        let err = |why| Err(FormatError::Luks { offset, why });
        let Some(slot) = self.slots.get(index) else {
            return err("no such key slot");
        };
        if slot.iterations == 0 {
            return err("key slot has zero PBKDF2 iterations");
        }
        if slot.iterations > MAX_ITERATIONS {
            return err("key slot PBKDF2 iterations above qvet's bound (64,000,000)");
        }
        if slot.stripes == 0 {
            return err("key slot has zero anti-forensic stripes");
        }
        if slot.stripes > MAX_STRIPES {
            return err("key slot anti-forensic stripes above qvet's bound (16,000)");
        }
        if slot.key_offset < u64::try_from(HEADER_LEN).unwrap_or(u64::MAX) {
            return err("key material overlaps the LUKS header");
        }
        let len = u64::from(self.key_bytes) * u64::from(slot.stripes);
        let end = slot
            .key_offset
            .saturating_add(len.div_ceil(SECTOR) * SECTOR);
        if end > area_len {
            return err("key material truncated: it ends past the LUKS area");
        }
        Ok(KeyMaterial {
            offset: slot.key_offset,
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header: aes xts-plain64 sha256, 64-byte key, slot 0 active at
    /// sector 8 with 4000 stripes, slot 1 disabled.
    pub(crate) fn sample() -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[..6].copy_from_slice(MAGIC);
        b[6..8].copy_from_slice(&1u16.to_be_bytes());
        b[8..11].copy_from_slice(b"aes");
        b[40..51].copy_from_slice(b"xts-plain64");
        b[72..78].copy_from_slice(b"sha256");
        b[104..108].copy_from_slice(&4040u32.to_be_bytes());
        b[108..112].copy_from_slice(&64u32.to_be_bytes());
        b[112..132].copy_from_slice(&[7u8; 20]);
        b[164..168].copy_from_slice(&1000u32.to_be_bytes());
        for i in 0..SLOTS {
            let s = 208 + i * 48;
            let state = if i == 0 { SLOT_ENABLED } else { SLOT_DISABLED };
            b[s..s + 4].copy_from_slice(&state.to_be_bytes());
            b[s + 4..s + 8].copy_from_slice(&2000u32.to_be_bytes());
            b[s + 8..s + 40].copy_from_slice(&[i as u8; 32]);
            let sector = 8 + 504 * i as u32;
            b[s + 40..s + 44].copy_from_slice(&sector.to_be_bytes());
            b[s + 44..s + 48].copy_from_slice(&4000u32.to_be_bytes());
        }
        b
    }

    #[test]
    fn parses_every_field() {
        let h = LuksSummary::parse(&sample(), 0x40000).unwrap();
        assert_eq!(h.cipher_alg(), "aes-256");
        assert_eq!(h.ivgen(), ("plain64".into(), None));
        assert_eq!(h.mk_digest, [7u8; 20]);
        assert_eq!(h.active_slots(), vec![0]);
        assert_eq!(h.slots[3].salt, [3u8; 32]);
        assert!(h.slots.iter().all(KeySlot::state_valid));
        h.check_openable(0).unwrap();
        let km = h.key_material(0, 0, 1 << 20).unwrap();
        assert_eq!(
            km,
            KeyMaterial {
                offset: 4096,
                len: 256_000
            }
        );
    }

    #[test]
    fn hostile_slots_are_refused() {
        let mut b = sample();
        b[212..216].copy_from_slice(&(MAX_ITERATIONS + 1).to_be_bytes());
        let h = LuksSummary::parse(&b, 0).unwrap();
        assert!(h.key_material(0, 0, 1 << 20).is_err());
        let mut b = sample();
        b[252..256].copy_from_slice(&(1u32 << 24).to_be_bytes());
        let h = LuksSummary::parse(&b, 0).unwrap();
        assert!(h.key_material(0, 0, 1 << 30).is_err());
        // Key material ends past the area.
        let h = LuksSummary::parse(&sample(), 0).unwrap();
        assert!(h.key_material(0, 0, 4096 + 1000).is_err());
        // Offsets that would wrap.
        let mut b = sample();
        b[248..252].copy_from_slice(&u32::MAX.to_be_bytes());
        let h = LuksSummary::parse(&b, 0).unwrap();
        assert!(h.key_material(0, 0, u64::MAX).is_ok());
        assert!(h.key_material(0, 0, 1 << 40).is_err());
        assert!(h.key_material(9, 0, 1 << 40).is_err());
        let mut b = sample();
        b[108..112].copy_from_slice(&1000u32.to_be_bytes());
        assert!(LuksSummary::parse(&b, 0)
            .unwrap()
            .check_openable(0)
            .is_err());
    }
}
