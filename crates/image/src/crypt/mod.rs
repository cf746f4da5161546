//! Decryption of encrypted qcow2 data clusters: LUKS1 key-slot opening and
//! the legacy AES scheme, giving a [`Unlocked`] that decrypts sectors.
//!
//! * LUKS (`crypt_method` 2): the LUKS1 header sits in the qcow2 file where
//!   the full-disk-encryption extension points. A key slot opens with
//!   PBKDF2 of the passphrase, decrypts its key material (sectors numbered
//!   from 0), AF-merges it into a candidate master key, and the candidate is
//!   accepted when its PBKDF2 digest matches the header's. qemu encrypts each
//!   data cluster with 512-byte sector numbers taken from the **host** offset
//!   (`crypt_physical_offset`).
//! * Legacy AES (`crypt_method` 1): AES-128-CBC keyed with the passphrase's
//!   first 16 bytes (up to a NUL, zero-padded), plain64 IVs of the **guest**
//!   sector number. There is no key check: a wrong passphrase decrypts to
//!   garbage, in qemu too.
//!
//! Key material (passphrase, split keys, master key) is held in
//! [`Zeroizing`] buffers; the ciphers zeroize their key schedules on drop.

pub mod cipher;
pub mod hash;
pub mod luks;
pub mod luks2;
#[cfg(test)]
mod tests;
pub mod volume;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use qvet_format::header::{CryptMethod, Header};
use qvet_format::luks::LuksSummary;

use rayon::prelude::*;
use thiserror::Error;
use zeroize::Zeroizing;

pub use self::cipher::{Family, IvKind, Mode, SectorCipher, Spec, SECTOR};
pub use self::hash::Hash;
pub use self::luks::{open_luks, spec_of};

use crate::error::ImageError;
use crate::source::ByteSource;

/// A passphrase, and optionally the one key slot to try.
#[derive(Clone)]
pub struct Key {
    passphrase: Arc<Zeroizing<Vec<u8>>>,
    slot: Option<usize>,
}

impl Key {
    /// A key from passphrase bytes (used exactly as given, as qemu's
    /// `secret` objects and cryptsetup's key files are).
    pub fn new(passphrase: Vec<u8>) -> Self {
        Self {
            passphrase: Arc::new(Zeroizing::new(passphrase)),
            slot: None,
        }
    }

    /// Only key slot `slot` is tried.
    #[must_use]
    pub fn with_slot(mut self, slot: Option<usize>) -> Self {
        self.slot = slot;
        self
    }

    /// The passphrase bytes.
    pub fn passphrase(&self) -> &[u8] {
        &self.passphrase
    }

    /// The key slot to try, if one was named.
    pub fn slot(&self) -> Option<usize> {
        self.slot
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("passphrase", &"<redacted>")
            .field("slot", &self.slot)
            .finish()
    }
}

/// Why a key could not be used.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptError {
    /// A buffer that is not a whole number of cipher blocks.
    #[error("encrypted length is not a whole number of cipher blocks")]
    Length,
    /// A key length the cipher does not take.
    #[error("a {0}-byte key does not fit the cipher")]
    KeyLength(usize),
    /// No ESSIV cipher for this hash.
    #[error("no ESSIV cipher with a key the size of a {0} digest")]
    Essiv(&'static str),
    /// A cipher, mode, IV generator or hash qvet does not implement.
    #[error("unsupported {0}")]
    Unsupported(String),
}

/// Which offset numbers the sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectorBase {
    /// Host offset in the file holding the cluster (LUKS).
    Host,
    /// Guest offset (legacy AES).
    Guest,
}

/// An opened key: decrypts data sectors.
pub struct Unlocked {
    cipher: Box<dyn SectorCipher>,
    base: SectorBase,
    slot: Option<usize>,
}

impl fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unlocked")
            .field("base", &self.base)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

/// Below this many bytes, decryption stays on the calling thread.
const PARALLEL_MIN: usize = 256 << 10;
/// Bytes per parallel task.
const PARALLEL_CHUNK: usize = 64 << 10;

impl Unlocked {
    /// Wraps a cipher.
    pub fn new(cipher: Box<dyn SectorCipher>, base: SectorBase, slot: Option<usize>) -> Self {
        Self { cipher, base, slot }
    }

    /// The legacy AES scheme's key: AES-128-CBC, plain64, guest sectors.
    ///
    /// # Errors
    /// None in practice (the key is always 16 bytes).
    pub fn legacy_aes(key: &Key) -> Result<Self, CryptError> {
        let mut k = Zeroizing::new([0u8; 16]);
        let pass = key.passphrase();
        let end = pass
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(pass.len())
            .min(16);
        if let (Some(d), Some(s)) = (k.get_mut(..end), pass.get(..end)) {
            d.copy_from_slice(s);
        }
        let spec = Spec {
            family: Family::Aes,
            mode: Mode::Cbc,
            iv: IvKind::Plain64,
        };
        Ok(Self::new(
            cipher::build(&spec, k.as_slice())?,
            SectorBase::Guest,
            None,
        ))
    }

    /// The key slot that opened (LUKS).
    pub fn slot(&self) -> Option<usize> {
        self.slot
    }

    /// Which offset numbers the sectors.
    pub fn base(&self) -> SectorBase {
        self.base
    }

    /// Decrypts `buf`, which starts at a sector boundary, sector `first` on;
    /// in parallel when it is large.
    ///
    /// # Errors
    /// [`CryptError::Length`] for a length that is not whole cipher blocks.
    pub fn decrypt(&self, first: u64, buf: &mut [u8]) -> Result<(), CryptError> {
        let c = self.cipher.as_ref();
        if buf.len() < PARALLEL_MIN {
            return cipher::decrypt_sectors(c, first, buf);
        }
        let per = (PARALLEL_CHUNK / SECTOR) as u64;
        buf.par_chunks_mut(PARALLEL_CHUNK)
            .enumerate()
            .try_for_each(|(i, chunk)| {
                cipher::decrypt_sectors(c, first.wrapping_add((i as u64).wrapping_mul(per)), chunk)
            })
    }

    /// Decrypts `buf` as consecutive data units of `unit` bytes (a LUKS2
    /// segment's sector size), each with one IV; the first unit's IV is
    /// sector number `first`, and each next one's `unit / 512` more (IVs
    /// count 512-byte sectors whatever the unit, as dm-crypt does without
    /// `iv_large_sectors`, which cryptsetup does not set for LUKS2). In
    /// parallel when `buf` is large.
    ///
    /// # Errors
    /// [`CryptError::Length`] for a length that is not whole cipher blocks.
    pub fn decrypt_units(&self, first: u64, unit: usize, buf: &mut [u8]) -> Result<(), CryptError> {
        if unit == SECTOR {
            return self.decrypt(first, buf);
        }
        let c = self.cipher.as_ref();
        let step = (unit / SECTOR) as u64;
        let one = |(i, chunk): (usize, &mut [u8])| {
            c.decrypt_sector(first.wrapping_add((i as u64).wrapping_mul(step)), chunk)
        };
        if buf.len() < PARALLEL_MIN {
            buf.chunks_mut(unit.max(1)).enumerate().try_for_each(one)
        } else {
            buf.par_chunks_mut(unit.max(1))
                .enumerate()
                .try_for_each(one)
        }
    }

    /// Encrypts `buf` as consecutive sectors from `first` on: what
    /// `compact` stores for an encrypted image (and tests build images with).
    ///
    /// # Errors
    /// [`CryptError::Length`] for a buffer of partial cipher blocks.
    pub fn encrypt(&self, first: u64, buf: &mut [u8]) -> Result<(), CryptError> {
        for (i, chunk) in (0u64..).zip(buf.chunks_mut(SECTOR)) {
            self.cipher.encrypt_sector(first.saturating_add(i), chunk)?;
        }
        Ok(())
    }
}

/// Opens the key of a qcow2 image with `header` (and its LUKS header,
/// when it has one) stored in `file`; `None` for an unencrypted image.
///
/// # Errors
/// [`ImageError::KeyRejected`] when no slot opens,
/// [`ImageError::Crypto`] for an unusable header or cipher,
/// [`ImageError::Format`] for a header out of bounds, I/O errors.
pub(crate) fn unlock(
    header: &Header,
    luks: Option<&LuksSummary>,
    file: &Arc<dyn ByteSource>,
    path: &Path,
    key: &Key,
) -> Result<Option<Unlocked>, ImageError> {
    let crypto = |why: String| ImageError::Crypto {
        path: path.to_path_buf(),
        why,
    };
    match header.crypt_method {
        CryptMethod::None | CryptMethod::Other(_) => Ok(None),
        CryptMethod::Aes => Unlocked::legacy_aes(key)
            .map(Some)
            .map_err(|e| crypto(e.to_string())),
        CryptMethod::Luks => {
            let Some(h) = luks else {
                return Err(crypto("no LUKS header".into()));
            };
            let (offset, ext_len) = header.crypto_header().unwrap_or((0, 0));
            // Key material must lie inside the area the extension reserves
            // and inside the file.
            let area = ext_len.min(file.len().saturating_sub(offset));
            let read = |at: u64, buf: &mut [u8]| -> Result<(), ImageError> {
                let host = offset.saturating_add(at);
                file.read_zero_padded(host, buf)
                    .map_err(|error| ImageError::Io {
                        what: "LUKS key material".into(),
                        offset: host,
                        error,
                    })
            };
            open_luks(h, offset, area, key, &read)
                .map(Some)
                .map_err(|e| map_failure(e, path))
        }
    }
}

/// No key slot of `path` opened; `tried` names them.
fn rejected(path: &Path, tried: &[usize]) -> ImageError {
    ImageError::KeyRejected {
        path: path.to_path_buf(),
        tried: tried
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// [`map_failure`] for a LUKS2 container.
pub(crate) fn map_failure2(e: luks2::Failure, path: &Path) -> ImageError {
    use luks2::Failure as F;
    match e {
        F::Format(error) => ImageError::Format {
            path: path.to_path_buf(),
            error,
        },
        F::Crypt(e) => ImageError::Crypto {
            path: path.to_path_buf(),
            why: e.to_string(),
        },
        F::Read(error) => ImageError::Io {
            what: "LUKS2 header or key material".into(),
            offset: 0,
            error,
        },
        F::Rejected(tried) if tried.is_empty() => ImageError::Crypto {
            path: path.to_path_buf(),
            why: "the LUKS2 header has no usable keyslot".into(),
        },
        F::Rejected(tried) => rejected(path, &tried),
    }
}

/// A LUKS opening failure as an image error naming `path`.
pub(crate) fn map_failure(e: luks::OpenFailure, path: &Path) -> ImageError {
    use luks::OpenFailure as F;
    let crypto = |why: String| ImageError::Crypto {
        path: path.to_path_buf(),
        why,
    };
    match e {
        F::Format(error) => ImageError::Format {
            path: path.to_path_buf(),
            error,
        },
        F::Crypt(e) => crypto(e.to_string()),
        F::Read(e) => e,
        F::Inactive(s) => crypto(format!("key slot {s} is not active")),
        F::Rejected(tried) if tried.is_empty() => {
            crypto("the LUKS header has no active key slot".into())
        }
        F::Rejected(tried) => rejected(path, &tried),
    }
}
