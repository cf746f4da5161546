//! Opening a LUKS2 container (cryptsetup's default since 2.1): the newer
//! valid header copy (checksum verified), then each `luks2` keyslot in
//! cryptsetup's order (high priority first, "ignore" only when named): the
//! passphrase through the slot's KDF (PBKDF2, Argon2i or Argon2id), the
//! split key decrypted from the slot's area and merged (the LUKS1
//! anti-forensic merge), and the candidate checked against the PBKDF2
//! digest that names the slot. The data segment is decrypted in units of
//! its sector size, each unit's IV the number of its first 512-byte sector
//! from the segment's start plus `iv_tweak` (see `Unlocked::decrypt_units`).

use qvet_format::luks2::{self, Kdf, KeyDigest, Keyslot, Luks2, Segment};
use zeroize::Zeroizing;

use super::cipher::{self, Spec};
use super::hash::Hash;
use super::luks::cipher_spec;
use super::{CryptError, Key};
use crate::source::ByteSource;

/// Largest Argon2 memory cost accepted: 1 GiB, cryptsetup's own ceiling
/// when it benchmarks (a header asking more is refused, not allocated).
pub const MAX_ARGON2_KIB: u32 = 1 << 20;
/// Largest Argon2 time cost accepted (cryptsetup benchmarks to 2 s; its
/// costs stay in the tens).
pub const MAX_ARGON2_TIME: u32 = 1000;
/// Largest Argon2 lane count accepted (cryptsetup uses at most 4).
pub const MAX_ARGON2_LANES: u32 = 64;
/// Largest PBKDF2 iteration count accepted per keyslot or digest.
pub const MAX_PBKDF2_ITERATIONS: u32 = qvet_format::luks::MAX_ITERATIONS;
/// Largest Argon2 work (memory KiB × passes) one opening spends over every
/// keyslot tried: 16 GiB-passes, a few times cryptsetup's slowest default
/// (1 GiB for its benchmarked 2 s, a handful of passes). A hostile header
/// asking for 1 GiB × 1000 passes would otherwise run for many minutes.
pub const MAX_ARGON2_WORK: u64 = 16 << 20;

/// An opened LUKS2 container: its data segment and key.
pub struct Opened {
    /// The segment's cipher.
    pub cipher: Box<dyn cipher::SectorCipher>,
    /// The data segment.
    pub segment: Segment,
    /// The keyslot that opened.
    pub slot: u32,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("segment", &self.segment)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

/// Why a container did not open.
#[derive(Debug)]
pub enum Failure {
    /// No valid header copy, or metadata out of bounds.
    Format(qvet_format::FormatError),
    /// Cipher, hash or KDF trouble.
    Crypt(CryptError),
    /// Reading failed.
    Read(std::io::Error),
    /// No keyslot accepted the passphrase; the slots tried.
    Rejected(Vec<usize>),
}

fn fmt_err(why: &'static str) -> Failure {
    Failure::Format(qvet_format::FormatError::Luks { offset: 0, why })
}

/// Whether `inner` starts with a LUKS2 header (either magic, version 2).
pub fn is_luks2(head: &[u8]) -> bool {
    luks2::header_size(head, luks2::MAGIC, 0).is_ok()
}

/// Reads and checks one header copy at `offset`.
fn copy_at(inner: &dyn ByteSource, offset: u64) -> Result<Luks2, Failure> {
    let mut head = vec![0u8; luks2::BINARY_LEN];
    inner
        .read_zero_padded(offset, &mut head)
        .map_err(Failure::Read)?;
    let size = luks2::header_size(&head, luks2::MAGIC, offset)
        .or_else(|_| luks2::header_size(&head, luks2::MAGIC_SECONDARY, offset))
        .map_err(Failure::Format)?;
    if offset.saturating_add(size) > inner.len() {
        return Err(fmt_err("LUKS2 header past the end of the container"));
    }
    let mut area = vec![0u8; usize::try_from(size).unwrap_or(0)];
    inner
        .read_zero_padded(offset, &mut area)
        .map_err(Failure::Read)?;
    let h = luks2::parse(&area, offset).map_err(Failure::Format)?;
    // The checksum covers the whole area with its own field zeroed.
    let hash = Hash::from_name(&h.checksum_alg).ok_or_else(|| {
        Failure::Crypt(CryptError::Unsupported(format!(
            "LUKS2 checksum '{}'",
            h.checksum_alg
        )))
    })?;
    let (at, len) = luks2::CSUM_FIELD;
    if let Some(field) = area.get_mut(at..at + len) {
        field.fill(0);
    }
    let sum = hash.digest(&[&area]);
    if h.checksum.get(..sum.len()) != Some(&sum[..]) {
        return Err(fmt_err("LUKS2 header checksum does not match"));
    }
    Ok(h)
}

/// The newer valid header copy: the primary at 0, else the secondary
/// wherever the specification allows it.
fn header(inner: &dyn ByteSource) -> Result<Luks2, Failure> {
    let mut best: Option<Luks2> = None;
    let mut first_err = None;
    for offset in std::iter::once(0).chain(luks2::HDR_SIZES) {
        match copy_at(inner, offset) {
            Ok(h) => {
                if best.as_ref().is_none_or(|b| h.seqid > b.seqid) {
                    best = Some(h);
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    best.ok_or_else(|| first_err.unwrap_or_else(|| fmt_err("no LUKS2 header")))
}

/// The cipher named dm-crypt style ("aes-xts-plain64").
fn spec(name: &str) -> Result<Spec, CryptError> {
    let (cipher, mode) = name.split_once('-').unwrap_or((name, ""));
    cipher_spec(cipher, mode)
}

fn hash_named(name: &str) -> Result<Hash, CryptError> {
    Hash::from_name(name).ok_or_else(|| CryptError::Unsupported(format!("hash '{name}'")))
}

/// The area key of `slot` from the passphrase.
fn derive(slot: &Keyslot, passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut out = Zeroizing::new(vec![0u8; slot.area_key_size]);
    match &slot.kdf {
        Kdf::Pbkdf2 {
            hash,
            iterations,
            salt,
        } => {
            if *iterations > MAX_PBKDF2_ITERATIONS || *iterations == 0 {
                return Err(fmt_err("LUKS2 PBKDF2 iterations out of bounds"));
            }
            hash_named(hash).map_err(Failure::Crypt)?.pbkdf2(
                passphrase,
                salt,
                *iterations,
                &mut out,
            );
        }
        Kdf::Argon2 {
            id,
            time,
            memory_kib,
            cpus,
            salt,
        } => {
            if *memory_kib > MAX_ARGON2_KIB {
                return Err(fmt_err(
                    "LUKS2 Argon2 memory cost above qvet's bound (1 GiB)",
                ));
            }
            if *time > MAX_ARGON2_TIME || *cpus > MAX_ARGON2_LANES {
                return Err(fmt_err("LUKS2 Argon2 time or lane count out of bounds"));
            }
            let params = argon2::Params::new(*memory_kib, *time, *cpus, Some(out.len()))
                .map_err(|e| Failure::Crypt(CryptError::Unsupported(format!("Argon2: {e}"))))?;
            let algorithm = if *id {
                argon2::Algorithm::Argon2id
            } else {
                argon2::Algorithm::Argon2i
            };
            argon2::Argon2::new(algorithm, argon2::Version::V0x13, params)
                .hash_password_into(passphrase, salt, &mut out)
                .map_err(|e| Failure::Crypt(CryptError::Unsupported(format!("Argon2: {e}"))))?;
        }
    }
    Ok(out)
}

/// The master key in `slot` if the passphrase opens it.
fn try_slot(
    inner: &dyn ByteSource,
    slot: &Keyslot,
    digest: &KeyDigest,
    passphrase: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, Failure> {
    let split_len = slot.key_size.saturating_mul(slot.stripes);
    let split_end = slot.area_offset.saturating_add(split_len as u64);
    if split_len as u64 > slot.area_size || split_end > inner.len() {
        return Err(fmt_err(
            "LUKS2 keyslot area too small or past the container",
        ));
    }
    let area_key = derive(slot, passphrase)?;
    let mut split = Zeroizing::new(vec![0u8; split_len]);
    inner
        .read_zero_padded(slot.area_offset, &mut split)
        .map_err(Failure::Read)?;
    let c = cipher::build(
        &spec(&slot.area_encryption).map_err(Failure::Crypt)?,
        &area_key,
    )
    .map_err(Failure::Crypt)?;
    cipher::decrypt_sectors(c.as_ref(), 0, &mut split).map_err(Failure::Crypt)?;
    let candidate = hash_named(&slot.af_hash)
        .map_err(Failure::Crypt)?
        .af_merge(&split, slot.key_size);
    if digest.iterations > MAX_PBKDF2_ITERATIONS || digest.iterations == 0 {
        return Err(fmt_err("LUKS2 digest iterations out of bounds"));
    }
    let mut check = Zeroizing::new(vec![0u8; digest.digest.len()]);
    hash_named(&digest.hash).map_err(Failure::Crypt)?.pbkdf2(
        &candidate,
        &digest.salt,
        digest.iterations,
        &mut check,
    );
    Ok((check.as_slice() == digest.digest.as_slice()).then_some(candidate))
}

/// Opens the LUKS2 container in `inner` with `key` (see the module docs).
///
/// # Errors
/// See [`Failure`].
pub fn open(inner: &dyn ByteSource, key: &Key) -> Result<Opened, Failure> {
    let h = header(inner)?;
    let mut order: Vec<&Keyslot> = h
        .keyslots
        .iter()
        .filter(|k| match key.slot() {
            Some(s) => usize::try_from(k.id).is_ok_and(|id| id == s),
            None => k.priority > 0,
        })
        .collect();
    // High priority first, then by number (stable).
    order.sort_by_key(|k| std::cmp::Reverse(k.priority.min(2)));
    // Bounds first, over every slot to be tried, so that a hostile header
    // costs nothing before it is refused.
    let (mut argon2_work, mut iterations) = (0u64, 0u64);
    for slot in &order {
        match &slot.kdf {
            Kdf::Argon2 {
                time, memory_kib, ..
            } => {
                argon2_work = argon2_work
                    .saturating_add(u64::from(*memory_kib).saturating_mul(u64::from(*time)));
            }
            Kdf::Pbkdf2 { iterations: n, .. } => {
                iterations = iterations.saturating_add(u64::from(*n));
            }
        }
        if let Some(d) = h.digests.iter().find(|d| d.keyslots.contains(&slot.id)) {
            iterations = iterations.saturating_add(u64::from(d.iterations));
        }
    }
    if argon2_work > MAX_ARGON2_WORK {
        return Err(fmt_err(
            "LUKS2 keyslots ask for more Argon2 work (memory cost × time cost) than qvet's bound (16 GiB-passes)",
        ));
    }
    if iterations > qvet_format::luks::MAX_TOTAL_ITERATIONS {
        return Err(fmt_err(
            "LUKS2 keyslots ask for more PBKDF2 iterations in total than qvet's bound (200,000,000)",
        ));
    }
    let mut tried = Vec::new();
    for slot in order {
        let Some(digest) = h.digests.iter().find(|d| d.keyslots.contains(&slot.id)) else {
            continue;
        };
        tried.push(usize::try_from(slot.id).unwrap_or(usize::MAX));
        if let Some(master) = try_slot(inner, slot, digest, key.passphrase())? {
            let cipher = cipher::build(
                &spec(&h.segment.encryption).map_err(Failure::Crypt)?,
                &master,
            )
            .map_err(Failure::Crypt)?;
            return Ok(Opened {
                cipher,
                segment: h.segment.clone(),
                slot: slot.id,
            });
        }
    }
    Err(Failure::Rejected(tried))
}
