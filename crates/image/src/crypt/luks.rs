//! Opening a LUKS1 key slot (LUKS1 on-disk format specification 1.2.3,
//! "Key-slot recovery", as qemu's `qcrypto_block_luks_load_key` does it).

use qvet_format::luks::LuksSummary;
use zeroize::Zeroizing;

use super::cipher::{self, Family, IvKind, Mode, Spec};
use super::hash::Hash;
use super::{CryptError, Key, SectorBase, Unlocked};

/// The cipher and hash a LUKS header names.
///
/// # Errors
/// [`CryptError::Unsupported`] naming what qvet does not implement.
pub fn spec_of(h: &LuksSummary) -> Result<(Spec, Hash), CryptError> {
    let hash = Hash::from_name(&h.hash_spec)
        .ok_or_else(|| CryptError::Unsupported(format!("hash '{}'", h.hash_spec)))?;
    Ok((cipher_spec(&h.cipher_name, &h.cipher_mode)?, hash))
}

/// The cipher a dm-crypt style name and mode give: `aes` with
/// `xts-plain64`, or `cbc-essiv:sha256`.
///
/// # Errors
/// [`CryptError::Unsupported`] naming what qvet does not implement.
pub fn cipher_spec(name: &str, mode_and_iv: &str) -> Result<Spec, CryptError> {
    let unsupported = |what: &str, name: &str| CryptError::Unsupported(format!("{what} '{name}'"));
    let family = Family::from_name(name).ok_or_else(|| unsupported("cipher", name))?;
    let (mode_name, iv) = mode_and_iv.split_once('-').unwrap_or((mode_and_iv, ""));
    let mode = Mode::from_name(mode_name).ok_or_else(|| unsupported("cipher mode", mode_and_iv))?;
    let (iv, iv_hash) = match iv.split_once(':') {
        Some((alg, hash)) => (alg, Some(hash)),
        None => (iv, None),
    };
    let iv = match (mode, iv, iv_hash) {
        (Mode::Ecb, _, _) => IvKind::None,
        (_, "plain", None) => IvKind::Plain,
        (_, "plain64", None) => IvKind::Plain64,
        (_, "essiv", Some(name)) => {
            IvKind::Essiv(Hash::from_name(name).ok_or_else(|| unsupported("ESSIV hash", name))?)
        }
        _ => return Err(unsupported("IV generator", mode_and_iv)),
    };
    Ok(Spec { family, mode, iv })
}

/// Reads `buf.len()` bytes of the LUKS area at an offset relative to the header.
pub type ReadArea<'a> = &'a dyn Fn(u64, &mut [u8]) -> Result<(), crate::ImageError>;

/// What opening a LUKS header can fail with, before the caller adds the
/// image path.
#[derive(Debug)]
pub enum OpenFailure {
    /// The header or a slot is out of bounds.
    Format(qvet_format::FormatError),
    /// Cipher trouble.
    Crypt(CryptError),
    /// Reading key material failed.
    Read(crate::ImageError),
    /// The named slot is not active.
    Inactive(usize),
    /// No slot accepted the passphrase; the slots tried.
    Rejected(Vec<usize>),
}

/// Opens the header `h` (at host offset `offset`, its area `area_len` bytes
/// long) with `key`: the named slot, or every active slot in order.
/// `read(offset, buf)` reads `buf.len()` bytes of the area at `offset`
/// (relative to the header) and fails when they are not all in the file.
///
/// # Errors
/// See [`OpenFailure`].
pub fn open_luks(
    h: &LuksSummary,
    offset: u64,
    area_len: u64,
    key: &Key,
    read: ReadArea<'_>,
) -> Result<Unlocked, OpenFailure> {
    h.check_openable(offset).map_err(OpenFailure::Format)?;
    let (spec, hash) = spec_of(h).map_err(OpenFailure::Crypt)?;
    let slots = match key.slot() {
        Some(s) => {
            if !h.slots.get(s).is_some_and(|k| k.active) {
                return Err(OpenFailure::Inactive(s));
            }
            vec![s]
        }
        None => h.active_slots(),
    };
    let key_bytes = usize::try_from(h.key_bytes).unwrap_or(usize::MAX);
    // Bounds first, for every slot to be tried, so that a hostile header
    // costs nothing before it is refused.
    let mut work = 0u64;
    for &i in &slots {
        h.key_material(i, offset, area_len)
            .map_err(OpenFailure::Format)?;
        let iters = h.slots.get(i).map_or(0, |s| s.iterations);
        work = work
            .saturating_add(u64::from(iters))
            .saturating_add(u64::from(h.master_key_iters));
    }
    if work > qvet_format::luks::MAX_TOTAL_ITERATIONS {
        return Err(OpenFailure::Format(qvet_format::FormatError::Luks {
            offset,
            why:
                "key slots ask for more PBKDF2 iterations in total than qvet's bound (200,000,000)",
        }));
    }
    for &i in &slots {
        let km = h
            .key_material(i, offset, area_len)
            .map_err(OpenFailure::Format)?;
        let Some(slot) = h.slots.get(i) else {
            continue;
        };
        let len = usize::try_from(km.len).map_err(|_| OpenFailure::Crypt(CryptError::Length))?;
        let mut split = Zeroizing::new(vec![0u8; len]);
        read(km.offset, &mut split).map_err(OpenFailure::Read)?;
        let mut slot_key = Zeroizing::new(vec![0u8; key_bytes]);
        hash.pbkdf2(key.passphrase(), &slot.salt, slot.iterations, &mut slot_key);
        let c = cipher::build(&spec, &slot_key).map_err(OpenFailure::Crypt)?;
        cipher::decrypt_sectors(c.as_ref(), 0, &mut split).map_err(OpenFailure::Crypt)?;
        let candidate = hash.af_merge(&split, key_bytes);
        let mut digest = Zeroizing::new([0u8; qvet_format::luks::DIGEST_LEN]);
        hash.pbkdf2(
            &candidate,
            &h.mk_digest_salt,
            h.master_key_iters,
            digest.as_mut_slice(),
        );
        if *digest == h.mk_digest {
            let c = cipher::build(&spec, &candidate).map_err(OpenFailure::Crypt)?;
            return Ok(Unlocked::new(c, SectorBase::Host, Some(i)));
        }
    }
    Err(OpenFailure::Rejected(slots))
}
