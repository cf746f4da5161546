//! A LUKS container inside the guest (a partition made by cryptsetup or
//! `qemu-img create -f luks`): the header at its start, the payload from
//! the header's payload offset on. LUKS1: 512-byte sectors numbered from
//! the start of the payload (dm-crypt's and qemu's default IV offset of 0).
//! LUKS2: the data segment's offset and length, its sector size (512 to
//! 4096 bytes) as the unit of encryption, IVs counting 512-byte sectors from
//! the segment's `iv_tweak`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use qvet_format::luks::{self, LuksSummary};

use super::{luks2, open_luks, Key, Unlocked, SECTOR};
use crate::error::ImageError;
use crate::source::ByteSource;

/// The decrypted payload of a LUKS1 or LUKS2 container.
#[derive(Debug)]
pub struct LuksVolume {
    inner: Arc<dyn ByteSource>,
    payload: u64,
    len: u64,
    key: Unlocked,
    /// Bytes per encryption unit (512 for LUKS1).
    unit: u64,
    /// IV sector number of the payload's first byte (LUKS2 `iv_tweak`).
    iv_offset: u64,
    name: PathBuf,
}

impl LuksVolume {
    /// Opens the container held by `inner` with `key`; `name` names it in
    /// errors.
    ///
    /// # Errors
    /// As qcow2 LUKS opening: [`ImageError::KeyRejected`],
    /// [`ImageError::Crypto`], [`ImageError::Format`] (a payload offset
    /// outside the container too), I/O errors.
    pub fn open(inner: Arc<dyn ByteSource>, key: &Key, name: &Path) -> Result<Self, ImageError> {
        let mut head = vec![0u8; luks::HEADER_LEN];
        inner
            .read_zero_padded(0, &mut head)
            .map_err(|error| ImageError::Io {
                what: "LUKS header".into(),
                offset: 0,
                error,
            })?;
        let fmt = |error| ImageError::Format {
            path: name.to_path_buf(),
            error,
        };
        if luks2::is_luks2(&head) {
            return Self::open_luks2(inner, key, name);
        }
        let h = LuksSummary::parse(&head, 0).map_err(fmt)?;
        let size = inner.len();
        if h.payload_offset >= size {
            return Err(fmt(qvet_format::FormatError::Luks {
                offset: 0,
                why: "payload offset at or past the end of the container",
            }));
        }
        // Key material lies between the header and the payload.
        let area = h.payload_offset;
        let src = Arc::clone(&inner);
        let read = move |at: u64, buf: &mut [u8]| -> Result<(), ImageError> {
            src.read_zero_padded(at, buf)
                .map_err(|error| ImageError::Io {
                    what: "LUKS key material".into(),
                    offset: at,
                    error,
                })
        };
        let key = open_luks(&h, 0, area, key, &read).map_err(|e| super::map_failure(e, name))?;
        Ok(Self {
            inner,
            payload: h.payload_offset,
            len: size - h.payload_offset,
            key,
            unit: SECTOR as u64,
            iv_offset: 0,
            name: name.to_path_buf(),
        })
    }

    fn open_luks2(inner: Arc<dyn ByteSource>, key: &Key, name: &Path) -> Result<Self, ImageError> {
        let o = luks2::open(inner.as_ref(), key).map_err(|e| super::map_failure2(e, name))?;
        let size = inner.len();
        let seg = &o.segment;
        let unit = u64::from(seg.sector_size);
        let end = match seg.size {
            Some(n) => seg.offset.checked_add(n).filter(|&e| e <= size),
            None => Some(size),
        };
        let Some(end) = end.filter(|&e| seg.offset < e && seg.offset % unit == 0) else {
            return Err(ImageError::Format {
                path: name.to_path_buf(),
                error: qvet_format::FormatError::Luks {
                    offset: 0,
                    why: "LUKS2 data segment outside the container or misaligned",
                },
            });
        };
        Ok(Self {
            inner,
            payload: seg.offset,
            // Whole units only, as dm-crypt maps them.
            len: (end - seg.offset) / unit * unit,
            key: Unlocked::new(
                o.cipher,
                super::SectorBase::Host,
                usize::try_from(o.slot).ok(),
            ),
            unit,
            iv_offset: seg.iv_tweak,
            name: name.to_path_buf(),
        })
    }

    /// The key slot that opened.
    pub fn slot(&self) -> Option<usize> {
        self.key.slot()
    }
}

impl ByteSource for LuksVolume {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let unit = self.unit.max(1);
        let want = u64::try_from(buf.len())
            .unwrap_or(u64::MAX)
            .min(self.len - offset);
        let start = offset - offset % unit;
        let end = (offset + want).div_ceil(unit) * unit;
        let mut tmp = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
        self.inner
            .read_zero_padded(self.payload.saturating_add(start), &mut tmp)?;
        self.key
            .decrypt_units(
                self.iv_offset.wrapping_add(start / SECTOR as u64),
                usize::try_from(unit).unwrap_or(SECTOR),
                &mut tmp,
            )
            .map_err(|e| io::Error::other(format!("{}: {e}", self.name.display())))?;
        let lead = usize::try_from(offset - start).unwrap_or(0);
        let n = usize::try_from(want).unwrap_or(0);
        match (buf.get_mut(..n), tmp.get(lead..lead + n)) {
            (Some(d), Some(s)) => {
                d.copy_from_slice(s);
                Ok(n)
            }
            _ => Ok(0),
        }
    }
}

/// `window` itself, or, when it starts with a LUKS header (either version)
/// and a key is given, its decrypted payload.
///
/// # Errors
/// As [`LuksVolume::open`]; I/O reading the magic.
pub fn open_if_luks(
    window: Arc<dyn ByteSource>,
    key: Option<&Key>,
    name: &Path,
) -> Result<Arc<dyn ByteSource>, ImageError> {
    let Some(key) = key else {
        return Ok(window);
    };
    let mut magic = [0u8; 6];
    window
        .read_zero_padded(0, &mut magic)
        .map_err(|error| ImageError::Io {
            what: "partition start".into(),
            offset: 0,
            error,
        })?;
    if &magic != luks::MAGIC {
        return Ok(window);
    }
    Ok(Arc::new(LuksVolume::open(window, key, name)?))
}
