//! The qcow2 driver: header, L1 view (active or snapshot), L2 lookups through
//! a bounded cache, refcounts, and guest reads including compressed clusters.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use qvet_format::bitmap::{self, Bitmap};
use qvet_format::bytes::{be_u64_table, u64_from, usize_from};
use qvet_format::header::{CompressionType, CryptMethod, Header};
use qvet_format::l2::{self, CompressedDescriptor, SubclusterType};
use qvet_format::limits;
use qvet_format::luks::{self, LuksSummary};
use qvet_format::snapshot::{self, Snapshot};
use qvet_format::FormatError;

use crate::crypt::{self, Key, SectorBase, Unlocked, SECTOR};
use crate::decompress::decompress_cluster;
use crate::error::ImageError;
use crate::refcounts::Refcounts;
use crate::source::ByteSource;

/// Largest first read: one maximum-size cluster holds the whole header area.
const HEADER_READ: u64 = 1 << limits::MAX_CLUSTER_BITS;
/// Memory budget for cached L2 tables.
const L2_CACHE_BYTES: u64 = 32 << 20;
/// Memory budget for decompressed clusters kept for partial reads: a
/// filesystem walk reads inodes and directory blocks a few KiB at a time,
/// and without this each read would inflate its whole cluster again.
const INFLATED_CACHE_BYTES: u64 = 8 << 20;

/// Where guest data clusters live.
#[derive(Debug, Clone)]
pub enum DataSource {
    /// In the qcow2 file itself.
    SameFile,
    /// In an external data file that was opened.
    External(Arc<dyn ByteSource>),
    /// In an external data file that was not opened.
    Missing {
        /// Name stored in the image.
        name: String,
        /// Why it was not opened.
        why: String,
    },
}

/// How a run of guest bytes maps in one qcow2 layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// Not allocated here: backing file, or zeros. `host` is set when a host
    /// cluster is reserved (extended L2 "unallocated-alloc").
    Unallocated {
        /// Reserved host offset of the run's first byte.
        host: Option<u64>,
    },
    /// Reads as zeros; `host` is set when a host cluster is preallocated.
    Zero {
        /// Preallocated host offset of the run's first byte.
        host: Option<u64>,
    },
    /// Data at a contiguous host range starting at `host`.
    Data {
        /// Host offset of the run's first byte (data file offset if external).
        host: u64,
    },
    /// (Part of) one compressed cluster.
    Compressed {
        /// Where the stream is.
        desc: CompressedDescriptor,
        /// Guest offset of the cluster's first byte.
        cluster_start: u64,
    },
}

/// A run of guest bytes with one mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Length in bytes (> 0).
    pub len: u64,
    /// Mapping.
    pub kind: RunKind,
}

/// The L1 table a view reads through, and the guest size it exposes.
#[derive(Debug)]
struct View {
    l1: Vec<u64>,
    l1_size: u64,
    size: u64,
    snapshot: Option<usize>,
}

/// A bounded cache: when full, the least recently used entry goes (found
/// by a scan: the caches hold at most a thousand entries).
#[derive(Debug)]
struct Lru<K, V> {
    /// Value and last-use tick.
    entries: HashMap<K, (Arc<V>, u64)>,
    tick: u64,
    max: usize,
}

impl<K: std::hash::Hash + Eq + Copy, V> Lru<K, V> {
    fn new(max: usize) -> Self {
        Self {
            entries: HashMap::new(),
            tick: 0,
            max: max.max(1),
        }
    }

    fn get(&mut self, key: &K) -> Option<Arc<V>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|(v, t)| {
            *t = tick;
            Arc::clone(v)
        })
    }

    fn insert(&mut self, key: K, value: Arc<V>) {
        self.tick += 1;
        if self.entries.len() >= self.max {
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (value, self.tick));
    }

    fn clear(&mut self) {
        self.entries.clear();
    }
}

/// A compressed cluster's identity: stream host offset and stored length.
type StreamKey = (u64, u64);

/// The largest LUKS header area (header and key material) `compact`
/// copies: qemu's with 8 slots of 4,000 stripes of a 64-byte key is about
/// 2 MiB.
pub const MAX_CRYPTO_AREA: u64 = 64 << 20;

/// An encrypted image's scheme, as `compact` writes it again
/// ([`Qcow2Image::encryption_to_copy`]).
pub struct EncryptionCopy<'a> {
    /// qcow2 `crypt_method`: 1 legacy AES, 2 LUKS.
    pub method: u32,
    /// The LUKS header area as stored (None for legacy AES).
    pub area: Option<Vec<u8>>,
    /// The opened key; its [`Unlocked::base`] says which offset numbers
    /// the sectors (the output's host offset for LUKS).
    pub key: &'a Unlocked,
}

impl std::fmt::Debug for EncryptionCopy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionCopy")
            .field("method", &self.method)
            .field("area_len", &self.area.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// An open qcow2 image (read-only).
#[derive(Debug)]
pub struct Qcow2Image {
    file: Arc<dyn ByteSource>,
    path: PathBuf,
    header: Header,
    data: DataSource,
    view: View,
    snapshots: Result<Vec<Snapshot>, FormatError>,
    /// L2 tables by host offset.
    l2_cache: Mutex<Lru<u64, Vec<u64>>>,
    /// Decompressed clusters by (host offset, stored length), for partial reads.
    inflated: Mutex<Lru<StreamKey, Vec<u8>>>,
    metadata_prealloc: OnceLock<bool>,
    /// Sorted host offsets of every compressed stream the view maps.
    stream_starts: OnceLock<Vec<u64>>,
    /// The opened key of an encrypted image.
    crypt: Option<Unlocked>,
}

thread_local! {
    static COMPRESSED_IN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn io_err(what: &str, offset: u64, source: std::io::Error) -> ImageError {
    ImageError::Io {
        what: what.to_string(),
        offset,
        error: source,
    }
}

impl Qcow2Image {
    /// Opens the qcow2 image in `file`, refusing what qemu refuses.
    ///
    /// An external data file starts as [`DataSource::Missing`]; the caller
    /// decides (by policy) whether to attach one with [`Self::set_data_file`].
    ///
    /// # Errors
    /// [`ImageError::Format`] for a refused header, [`ImageError::Io`].
    pub fn open(file: Arc<dyn ByteSource>, path: &Path) -> Result<Self, ImageError> {
        let fmt = |source| ImageError::Format {
            path: path.to_path_buf(),
            error: source,
        };
        let head_len = file.len().min(HEADER_READ);
        let mut head = vec![0u8; usize_from(head_len)];
        file.read_zero_padded(0, &mut head)
            .map_err(|e| io_err("qcow2 header", 0, e))?;
        let header = Header::parse(&head).map_err(fmt)?;
        header.validate().map_err(fmt)?;
        let cluster_size = header.cluster_size();
        let data = if header.has_data_file() {
            DataSource::Missing {
                name: header
                    .data_file_name()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .unwrap_or_default(),
                why: "no data file attached".into(),
            }
        } else {
            DataSource::SameFile
        };
        let size = header.virtual_size();
        let l1 = load_table(
            file.as_ref(),
            "active L1 table",
            header.l1_table_offset,
            u64::from(header.l1_size).min(header.l1_entries_for(size)),
        )?;
        let snapshots = if header.nb_snapshots == 0 {
            Ok(Vec::new())
        } else {
            let want = snapshot::max_table_bytes(header.nb_snapshots)
                .min(file.len().saturating_sub(header.snapshots_offset));
            let mut buf = vec![0u8; usize_from(want)];
            file.read_zero_padded(header.snapshots_offset, &mut buf)
                .map_err(|e| io_err("snapshot table", header.snapshots_offset, e))?;
            snapshot::parse_table(&buf, header.snapshots_offset, header.nb_snapshots)
        };
        // qemu refuses to open an image whose snapshot table it cannot parse.
        if let Err(e) = &snapshots {
            return Err(fmt(e.clone()));
        }
        // Bounded in bytes and in entries (eviction scans the entries).
        let l2_cache_max = usize_from((L2_CACHE_BYTES / cluster_size).clamp(16, 1024));
        Ok(Self {
            file,
            path: path.to_path_buf(),
            view: View {
                l1,
                l1_size: u64::from(header.l1_size),
                size,
                snapshot: None,
            },
            header,
            data,
            snapshots,
            l2_cache: Mutex::new(Lru::new(l2_cache_max)),
            inflated: Mutex::new(Lru::new(usize_from(
                (INFLATED_CACHE_BYTES / cluster_size).clamp(4, 256),
            ))),
            metadata_prealloc: OnceLock::new(),
            stream_starts: OnceLock::new(),
            crypt: None,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The image path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The qcow2 host file.
    pub fn file(&self) -> &Arc<dyn ByteSource> {
        &self.file
    }

    /// Where data clusters are read from.
    pub fn data_source(&self) -> &DataSource {
        &self.data
    }

    /// Attaches (or marks missing) the external data file.
    pub fn set_data_file(&mut self, data: DataSource) {
        self.data = data;
    }

    /// The guest size of the current view.
    pub fn size(&self) -> u64 {
        self.view.size
    }

    /// Internal snapshots.
    pub fn snapshots(&self) -> &[Snapshot] {
        self.snapshots.as_deref().unwrap_or(&[])
    }

    /// Index of the snapshot being viewed, if any.
    pub fn viewed_snapshot(&self) -> Option<&Snapshot> {
        self.view.snapshot.and_then(|i| self.snapshots().get(i))
    }

    /// Whether data clusters are encrypted.
    pub fn encryption(&self) -> Option<&'static str> {
        match self.header.crypt_method {
            CryptMethod::Aes => Some("AES"),
            CryptMethod::Luks => Some("LUKS"),
            _ => None,
        }
    }

    /// The encryption `compact` writes again: the scheme, the opened key,
    /// and (LUKS) the header area exactly as stored, key material included,
    /// so that every passphrase that opens this image opens the copy.
    /// `None` for an unencrypted or not unlocked image.
    ///
    /// # Errors
    /// [`ImageError::Format`] for a LUKS area larger than
    /// [`MAX_CRYPTO_AREA`]; I/O errors.
    pub fn encryption_to_copy(&self) -> Result<Option<EncryptionCopy<'_>>, ImageError> {
        let Some(key) = &self.crypt else {
            return Ok(None);
        };
        let (method, area) = match self.header.crypt_method {
            CryptMethod::Aes => (1, None),
            CryptMethod::Luks => {
                let Some((offset, len)) = self.header.crypto_header() else {
                    return Ok(None);
                };
                if len > MAX_CRYPTO_AREA {
                    return Err(ImageError::Format {
                        path: self.path.clone(),
                        error: qvet_format::FormatError::Luks {
                            offset,
                            why: "encryption header area larger than 64 MiB",
                        },
                    });
                }
                let mut area = vec![0u8; usize_from(len)];
                self.file
                    .read_zero_padded(offset, &mut area)
                    .map_err(|e| io_err("LUKS header area", offset, e))?;
                (2, Some(area))
            }
            _ => return Ok(None),
        };
        Ok(Some(EncryptionCopy { method, area, key }))
    }

    /// Switches the view to an internal snapshot, found by ID first and then
    /// by name (as `qemu-img convert -l` does).
    ///
    /// # Errors
    /// [`ImageError::NoSuchSnapshot`], or [`ImageError::Format`] when the
    /// snapshot's L1 table is invalid.
    pub fn select_snapshot(&mut self, id_or_name: &str) -> Result<(), ImageError> {
        let key = id_or_name.as_bytes();
        let snaps = self.snapshots();
        let index = snaps
            .iter()
            .position(|s| s.id == key)
            .or_else(|| snaps.iter().position(|s| s.name == key))
            .ok_or_else(|| ImageError::NoSuchSnapshot(id_or_name.to_string()))?;
        let snap = snaps
            .get(index)
            .cloned()
            .ok_or_else(|| ImageError::NoSuchSnapshot(id_or_name.to_string()))?;
        let fmt = |source| ImageError::Format {
            path: self.path.clone(),
            error: source,
        };
        if u64::from(snap.l1_size) > limits::MAX_L1_ENTRIES {
            return Err(fmt(FormatError::TableTooLarge {
                what: "snapshot L1 table (entries)",
                size: u64::from(snap.l1_size),
                limit: limits::MAX_L1_ENTRIES,
            }));
        }
        qvet_format::header::validate_table(
            "snapshot L1 table",
            snap.l1_table_offset,
            u64::from(snap.l1_size),
            8,
            limits::MAX_L1_BYTES,
            self.header.cluster_size(),
        )
        .map_err(fmt)?;
        // Like `qemu-img convert -l`, keep the current virtual size: qemu
        // switches only the L1 table (the recorded disk_size is in `info`).
        let size = self.header.virtual_size();
        let l1 = load_table(
            self.file.as_ref(),
            "snapshot L1 table",
            snap.l1_table_offset,
            u64::from(snap.l1_size).min(self.header.l1_entries_for(size)),
        )?;
        self.view = View {
            l1,
            l1_size: u64::from(snap.l1_size),
            size,
            snapshot: Some(index),
        };
        if let Ok(mut c) = self.l2_cache.lock() {
            c.clear();
        }
        Ok(())
    }

    /// The persistent bitmaps, as qemu lists them (empty when the extension
    /// is absent or not in effect).
    ///
    /// # Errors
    /// [`ImageError::Format`] for a directory qemu would refuse.
    pub fn bitmaps(&self) -> Result<Vec<Bitmap>, ImageError> {
        let Some(ext) = self.header.bitmaps_ext() else {
            return Ok(Vec::new());
        };
        if !self.header.bitmaps_in_effect() {
            return Ok(Vec::new());
        }
        let len = ext.directory_size.min(limits::MAX_BITMAP_DIRECTORY_BYTES);
        // A directory running past the end of the file reads as zeros there,
        // which no valid entry is; refuse before allocating for it.
        if len > self.file.len().saturating_sub(ext.directory_offset) + 4096 {
            return Err(ImageError::Format {
                path: self.path.clone(),
                error: FormatError::Bitmap {
                    index: 0,
                    why: "bitmap directory extends past the end of the file".into(),
                },
            });
        }
        let mut dir = vec![0u8; usize_from(len)];
        self.file
            .read_zero_padded(ext.directory_offset, &mut dir)
            .map_err(|e| io_err("bitmap directory", ext.directory_offset, e))?;
        bitmap::parse_directory(
            &dir,
            ext.nb_bitmaps,
            self.header.cluster_size(),
            self.header.virtual_size(),
        )
        .map_err(|source| ImageError::Format {
            path: self.path.clone(),
            error: source,
        })
    }

    /// The LUKS header summary, for LUKS-encrypted images.
    ///
    /// # Errors
    /// [`ImageError::Format`] when the LUKS header cannot be parsed.
    pub fn luks(&self) -> Result<Option<LuksSummary>, ImageError> {
        let Some((offset, _len)) = self.header.crypto_header() else {
            return Ok(None);
        };
        let mut buf = vec![0u8; luks::HEADER_LEN];
        self.file
            .read_zero_padded(offset, &mut buf)
            .map_err(|e| io_err("LUKS header", offset, e))?;
        LuksSummary::parse(&buf, offset)
            .map(Some)
            .map_err(|source| ImageError::Format {
                path: self.path.clone(),
                error: source,
            })
    }

    /// Fetches an L2 table (as u64 words; pairs for extended L2).
    fn l2_table(&self, l2_offset: u64) -> Result<Arc<Vec<u64>>, ImageError> {
        if let Some(t) = self
            .l2_cache
            .lock()
            .ok()
            .and_then(|mut c| c.get(&l2_offset))
        {
            return Ok(t);
        }
        let mut buf = vec![0u8; usize_from(self.header.cluster_size())];
        self.file
            .read_zero_padded(l2_offset, &mut buf)
            .map_err(|e| io_err("L2 table", l2_offset, e))?;
        let table = Arc::new(be_u64_table(&buf));
        if let Ok(mut cache) = self.l2_cache.lock() {
            cache.insert(l2_offset, Arc::clone(&table));
        }
        Ok(table)
    }

    /// Classifies the (sub)cluster holding guest byte `pos` in `table`.
    fn classify(
        &self,
        table: &[u64],
        l2_offset: u64,
        pos: u64,
    ) -> Result<(SubclusterType, u64, Option<u64>), ImageError> {
        let h = &self.header;
        let cb = h.cluster_bits;
        let cs = h.cluster_size();
        let ext = h.extended_l2();
        let l2_index = (pos >> cb) % h.l2_entries();
        let (word0, bitmap) = if ext {
            let i = usize_from(l2_index * 2);
            (
                table.get(i).copied().unwrap_or(0),
                Some(table.get(i + 1).copied().unwrap_or(0)),
            )
        } else {
            (table.get(usize_from(l2_index)).copied().unwrap_or(0), None)
        };
        let sc = u32::try_from((pos & (cs - 1)) >> (cb - 5)).unwrap_or(0);
        let t = l2::subcluster_type(word0, bitmap, sc, h.has_data_file());
        match t {
            SubclusterType::Invalid => Err(ImageError::InvalidEntry {
                l2_offset,
                l2_index,
            }),
            SubclusterType::Normal
            | SubclusterType::ZeroAlloc
            | SubclusterType::UnallocatedAlloc => {
                let host_cluster = word0 & l2::OFFSET_MASK;
                if !host_cluster.is_multiple_of(cs) {
                    return Err(ImageError::ClusterUnaligned {
                        host: host_cluster,
                        l2_offset,
                        l2_index,
                    });
                }
                let host = host_cluster + (pos & (cs - 1));
                if h.has_data_file() && host != pos {
                    return Err(ImageError::DataFileMismatch {
                        host: host_cluster,
                        guest: pos & !(cs - 1),
                    });
                }
                Ok((t, word0, Some(host)))
            }
            SubclusterType::Compressed => {
                if h.has_data_file() {
                    return Err(ImageError::CompressedWithDataFile { guest: pos });
                }
                Ok((t, word0, None))
            }
            _ => Ok((t, word0, None)),
        }
    }

    /// How guest bytes from `guest` (at most `max` of them) map in this layer.
    ///
    /// The run stops at the end of an L2 table's range, at a change of
    /// mapping, at a host discontinuity, and after one compressed cluster.
    /// `guest` must be below [`Self::size`] and `max` non-zero.
    ///
    /// # Errors
    /// Broken entries met at `guest` ([`ImageError::L2Unaligned`],
    /// [`ImageError::ClusterUnaligned`], [`ImageError::InvalidEntry`], …).
    pub fn block_status(&self, guest: u64, max: u64) -> Result<Run, ImageError> {
        let h = &self.header;
        let cb = h.cluster_bits;
        let cs = h.cluster_size();
        let l2_entries = h.l2_entries();
        let l1_index = (guest >> cb) / l2_entries;
        let span = l2_entries << cb;
        let span_end = (l1_index + 1).saturating_mul(span);
        let end = guest.saturating_add(max.max(1)).min(span_end);
        let l1e = if l1_index < self.view.l1_size {
            self.view.l1.get(usize_from(l1_index)).copied().unwrap_or(0)
        } else {
            0
        };
        let l2_offset = l1e & l2::OFFSET_MASK;
        if l2_offset == 0 {
            return Ok(Run {
                len: end - guest,
                kind: RunKind::Unallocated { host: None },
            });
        }
        if !l2_offset.is_multiple_of(cs) {
            return Err(ImageError::L2Unaligned {
                l1_index,
                l2_offset,
            });
        }
        let table = self.l2_table(l2_offset)?;
        let (t, word0, host) = self.classify(&table, l2_offset, guest)?;
        let unit_bits = if h.extended_l2() { cb - 5 } else { cb };
        let unit = 1u64 << unit_bits;
        let mut next = (guest | (unit - 1)).saturating_add(1);
        if t == SubclusterType::Compressed {
            let cluster_start = guest & !(cs - 1);
            return Ok(Run {
                len: end.min(cluster_start + cs) - guest,
                kind: RunKind::Compressed {
                    desc: CompressedDescriptor::decode(word0, cb),
                    cluster_start,
                },
            });
        }
        while next < end {
            let Ok((t2, _, host2)) = self.classify(&table, l2_offset, next) else {
                break;
            };
            if t2 != t {
                break;
            }
            if let (Some(h0), Some(h2)) = (host, host2) {
                if h2 != h0 + (next - guest) {
                    break;
                }
            }
            next += unit;
        }
        let len = next.min(end) - guest;
        let kind = match t {
            SubclusterType::Normal => RunKind::Data {
                host: host.unwrap_or(0),
            },
            SubclusterType::ZeroAlloc => RunKind::Zero { host },
            SubclusterType::ZeroPlain => RunKind::Zero { host: None },
            SubclusterType::UnallocatedAlloc => RunKind::Unallocated { host },
            _ => RunKind::Unallocated { host: None },
        };
        Ok(Run { len, kind })
    }

    /// The source holding data clusters, or why there is none.
    fn data_file(&self, guest: u64, len: u64) -> Result<&Arc<dyn ByteSource>, ImageError> {
        match &self.data {
            DataSource::SameFile => Ok(&self.file),
            DataSource::External(s) => Ok(s),
            DataSource::Missing { name, why } => Err(ImageError::Unavailable {
                path: self.path.clone(),
                what: "data file",
                name: name.clone(),
                start: guest,
                end: guest.saturating_add(len),
                why: why.clone(),
            }),
        }
    }

    /// The host source `map` reports data offsets in (data file if external).
    pub fn data_host(&self) -> Option<&Arc<dyn ByteSource>> {
        match &self.data {
            DataSource::SameFile => Some(&self.file),
            DataSource::External(s) => Some(s),
            DataSource::Missing { .. } => None,
        }
    }

    /// Reads a data run into `dst`, decrypting it when the image is
    /// encrypted (and unlocked).
    ///
    /// # Errors
    /// [`ImageError::Encrypted`] without a key, [`ImageError::Unavailable`],
    /// I/O errors.
    pub fn read_data(&self, guest: u64, host: u64, dst: &mut [u8]) -> Result<(), ImageError> {
        self.refuse_encrypted()?;
        let src = self.data_file(guest, u64_from(dst.len()))?;
        let Some(key) = &self.crypt else {
            return src
                .read_zero_padded(host, dst)
                .map_err(|e| io_err("data cluster", host, e));
        };
        // The guest and host offsets of a data run share their position
        // within the cluster, hence within a sector.
        let sector = u64_from(SECTOR);
        let lead = host % sector;
        let first = match key.base() {
            SectorBase::Host => host / sector,
            SectorBase::Guest => guest / sector,
        };
        let fail = |e: crypt::CryptError| ImageError::Crypto {
            path: self.path.clone(),
            why: e.to_string(),
        };
        if lead == 0 && dst.len().is_multiple_of(SECTOR) {
            src.read_zero_padded(host, dst)
                .map_err(|e| io_err("data cluster", host, e))?;
            return key.decrypt(first, dst).map_err(fail);
        }
        let start = host - lead;
        let len = (lead + u64_from(dst.len())).div_ceil(sector) * sector;
        let mut buf = vec![0u8; usize_from(len)];
        src.read_zero_padded(start, &mut buf)
            .map_err(|e| io_err("data cluster", start, e))?;
        key.decrypt(first, &mut buf).map_err(fail)?;
        let lead = usize_from(lead);
        let part = buf
            .get(lead..lead + dst.len())
            .ok_or_else(|| fail(crypt::CryptError::Length))?;
        dst.copy_from_slice(part);
        Ok(())
    }

    fn refuse_encrypted(&self) -> Result<(), ImageError> {
        match (self.encryption(), &self.crypt) {
            (Some(method), None) => Err(ImageError::Encrypted {
                path: self.path.clone(),
                method,
            }),
            _ => Ok(()),
        }
    }

    /// Opens the image's key with `key`: a LUKS key slot (the one named, or
    /// every active one in order), or the legacy AES key. Unencrypted
    /// images ignore it.
    ///
    /// # Errors
    /// [`ImageError::KeyRejected`] when no slot opens,
    /// [`ImageError::Crypto`] for an unusable header or cipher,
    /// [`ImageError::Format`] for a header out of bounds, I/O errors.
    pub fn unlock(&mut self, key: &Key) -> Result<(), ImageError> {
        let luks = match self.header.crypt_method {
            CryptMethod::Luks => self.luks()?,
            _ => None,
        };
        self.crypt = crypt::unlock(&self.header, luks.as_ref(), &self.file, &self.path, key)?;
        Ok(())
    }

    /// Whether guest data can be read: not encrypted, or unlocked.
    pub fn readable(&self) -> bool {
        self.encryption().is_none() || self.crypt.is_some()
    }

    /// The LUKS key slot that opened, if any.
    pub fn unlocked_slot(&self) -> Option<usize> {
        self.crypt.as_ref().and_then(Unlocked::slot)
    }

    /// Whether a key was opened for this encrypted image.
    pub fn unlocked(&self) -> bool {
        self.crypt.is_some()
    }

    /// Reads part of a compressed cluster: `dst` receives the cluster's bytes
    /// from `guest` on.
    ///
    /// # Errors
    /// [`ImageError::Decompress`] when the stream does not yield exactly one
    /// cluster; I/O errors.
    pub fn read_compressed(
        &self,
        desc: CompressedDescriptor,
        cluster_start: u64,
        guest: u64,
        dst: &mut [u8],
    ) -> Result<(), ImageError> {
        self.refuse_encrypted()?;
        let cs = usize_from(self.header.cluster_size());
        let kind = self
            .header
            .compression_type()
            .unwrap_or(CompressionType::Zlib);
        let in_len = usize_from(desc.read_len);
        let skip = usize_from(guest - cluster_start);
        let whole = skip == 0 && dst.len() == cs;
        let key = (desc.host_offset, desc.read_len);
        if !whole {
            let hit = self.inflated.lock().ok().and_then(|mut c| c.get(&key));
            if let Some(out) = hit {
                let src =
                    out.get(skip..skip + dst.len())
                        .ok_or_else(|| ImageError::Decompress {
                            guest: cluster_start,
                            host: desc.host_offset,
                            len: desc.read_len,
                            why: "read beyond the cluster".into(),
                        })?;
                dst.copy_from_slice(src);
                return Ok(());
            }
        }
        COMPRESSED_IN.with(|input| {
            let mut input = input.borrow_mut();
            input.resize(in_len, 0);
            self.file
                .read_zero_padded(desc.host_offset, &mut input)
                .map_err(|e| io_err("compressed cluster", desc.host_offset, e))?;
            let fail = |why| ImageError::Decompress {
                guest: cluster_start,
                host: desc.host_offset,
                len: desc.read_len,
                why,
            };
            if whole {
                return decompress_cluster(kind, &input, dst)
                    .map(|_| ())
                    .map_err(fail);
            }
            let mut out = vec![0u8; cs];
            decompress_cluster(kind, &input, &mut out).map_err(fail)?;
            let out = Arc::new(out);
            self.remember_inflated(key, Arc::clone(&out));
            let src = out
                .get(skip..skip + dst.len())
                .ok_or_else(|| fail("read beyond the cluster".into()))?;
            dst.copy_from_slice(src);
            Ok(())
        })
    }

    fn remember_inflated(&self, key: StreamKey, cluster: Arc<Vec<u8>>) {
        if let Ok(mut cache) = self.inflated.lock() {
            cache.insert(key, cluster);
        }
    }

    /// The stored (still compressed) bytes of a compressed cluster, into
    /// `dst`: from the stream's start up to the start of the next stream in
    /// the file or the descriptor's `read_len`, whichever comes first.
    ///
    /// qemu packs compressed streams back to back, so this is the stream
    /// itself (plus, at most, padding before the next host cluster) rather
    /// than the sector-rounded window, whose tail holds the next stream's
    /// first bytes. Two clusters whose streams compare equal this way
    /// decompress to equal bytes as long as neither stream runs past the
    /// next one's start, which never happens in an image qemu wrote and which
    /// `check` reports (it decodes every stream).
    ///
    /// # Errors
    /// I/O errors.
    pub fn read_compressed_stream(
        &self,
        desc: CompressedDescriptor,
        dst: &mut Vec<u8>,
    ) -> Result<(), ImageError> {
        let starts = self.stream_starts.get_or_init(|| self.scan_stream_starts());
        let next = starts.partition_point(|&s| s <= desc.host_offset);
        let len = starts.get(next).map_or(desc.read_len, |&n| {
            (n - desc.host_offset).min(desc.read_len)
        });
        dst.resize(usize_from(len), 0);
        self.file
            .read_zero_padded(desc.host_offset, dst)
            .map_err(|e| io_err("compressed cluster", desc.host_offset, e))
    }

    /// Host offsets of the compressed streams the viewed L1 table maps,
    /// sorted and distinct; empty when a table cannot be read (callers then
    /// fall back to whole `read_len` windows).
    fn scan_stream_starts(&self) -> Vec<u64> {
        let cb = self.header.cluster_bits;
        let cs = self.header.cluster_size();
        let step = if self.header.extended_l2() { 2 } else { 1 };
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for &l1e in self.view.l1.iter().take(usize_from(self.view.l1_size)) {
            let l2_offset = l1e & l2::OFFSET_MASK;
            if l2_offset == 0 || !l2_offset.is_multiple_of(cs) || !seen.insert(l2_offset) {
                continue;
            }
            let Ok(table) = self.l2_table(l2_offset) else {
                return Vec::new();
            };
            for &e in table.iter().step_by(step) {
                if e & l2::COMPRESSED != 0 {
                    out.push(CompressedDescriptor::decode(e, cb).host_offset);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The image's stored refcounts.
    ///
    /// # Errors
    /// [`ImageError::Io`] reading the refcount table.
    pub fn refcounts(&self) -> Result<Refcounts, ImageError> {
        Refcounts::load(self.file.as_ref(), &self.header)
    }

    /// qemu's `qcow2_detect_metadata_preallocation`: whether (nearly) every
    /// host cluster has a refcount although the host file is sparse. When it
    /// is, `map` asks the host file which data ranges are holes.
    pub fn metadata_preallocated(&self) -> bool {
        *self.metadata_prealloc.get_or_init(|| {
            let cs = self.header.cluster_size();
            let file_len = self.file.len();
            let Some(alloc) = self.file.allocated_bytes() else {
                return false;
            };
            let real = alloc / cs;
            let threshold = (real * 10 / 9).max(real + 2);
            let end = file_len.div_ceil(cs);
            let Ok(mut refcounts) = self.refcounts() else {
                return false;
            };
            let mut count = 0u64;
            let mut i = 0u64;
            while i < end && count < threshold {
                match refcounts.get(self.file.as_ref(), i) {
                    Ok(r) => count += u64::from(r != 0),
                    // qemu treats a failed refcount lookup as "not preallocated".
                    Err(_) => return false,
                }
                i += 1;
            }
            count >= threshold
        })
    }
}

/// Loads `entries` big-endian u64s at `offset` (at most 4 Mi); entries past
/// the end of the file read as zero and are not stored (callers treat a
/// missing entry as zero), so the allocation never exceeds the file.
///
/// # Errors
/// [`ImageError::Io`].
pub fn load_table(
    file: &dyn ByteSource,
    what: &str,
    offset: u64,
    entries: u64,
) -> Result<Vec<u64>, ImageError> {
    let avail = file.len().saturating_sub(offset) / 8;
    let n = entries
        .min(avail)
        .min(limits::MAX_L1_ENTRIES.max(limits::MAX_REFTABLE_BYTES / 8));
    let mut buf = vec![0u8; usize_from(n * 8)];
    file.read_zero_padded(offset, &mut buf)
        .map_err(|e| io_err(what, offset, e))?;
    Ok(be_u64_table(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemSource;

    const CS: usize = 512;

    /// A 4-cluster qcow2 v3 image with 512-byte clusters: header at 0,
    /// L1 at 512, L2 at 1024, data at 1536 (guest cluster 1), 4 KiB guest.
    fn tiny(l2: &[u64]) -> Vec<u8> {
        let mut f = vec![0u8; 4 * CS];
        f[0..4].copy_from_slice(&qvet_format::header::MAGIC.to_be_bytes());
        f[4..8].copy_from_slice(&3u32.to_be_bytes());
        f[20..24].copy_from_slice(&9u32.to_be_bytes());
        f[24..32].copy_from_slice(&4096u64.to_be_bytes());
        f[36..40].copy_from_slice(&1u32.to_be_bytes());
        f[40..48].copy_from_slice(&512u64.to_be_bytes());
        f[48..56].copy_from_slice(&(3 * CS as u64).to_be_bytes());
        f[56..60].copy_from_slice(&1u32.to_be_bytes());
        f[96..100].copy_from_slice(&4u32.to_be_bytes());
        f[100..104].copy_from_slice(&112u32.to_be_bytes());
        f[512..520].copy_from_slice(&(l2::COPIED | 1024).to_be_bytes());
        for (i, e) in l2.iter().enumerate() {
            f[1024 + 8 * i..1032 + 8 * i].copy_from_slice(&e.to_be_bytes());
        }
        f.extend(std::iter::repeat_n(0x5a, CS));
        f
    }

    fn open(bytes: Vec<u8>) -> Qcow2Image {
        Qcow2Image::open(Arc::new(MemSource(bytes)), Path::new("mem")).unwrap()
    }

    #[test]
    fn maps_and_merges_runs() {
        let img = open(tiny(&[0, l2::COPIED | 2048, 1, 0]));
        assert_eq!(img.size(), 4096);
        let r = img.block_status(0, 4096).unwrap();
        assert_eq!(
            r,
            Run {
                len: 512,
                kind: RunKind::Unallocated { host: None }
            }
        );
        let r = img.block_status(600, 4096).unwrap();
        assert_eq!(
            r,
            Run {
                len: 424,
                kind: RunKind::Data { host: 2048 + 88 }
            }
        );
        let r = img.block_status(1024, 4096).unwrap();
        assert_eq!(
            r,
            Run {
                len: 512,
                kind: RunKind::Zero { host: None }
            }
        );
        let mut buf = [0u8; 8];
        img.read_data(512, 2048, &mut buf).unwrap();
        assert_eq!(buf, [0x5a; 8]);
    }

    #[test]
    fn reserved_bits_are_masked_like_qemu() {
        // 512-byte clusters: an offset can never be unaligned after masking,
        // and reserved low bits (1..8) do not change the mapping.
        let img = open(tiny(&[l2::COPIED | 2048 | 0x1fe]));
        let r = img.block_status(0, 512).unwrap();
        assert_eq!(r.kind, RunKind::Data { host: 2048 });
    }

    #[test]
    fn garbage_compressed_cluster_is_a_decode_error() {
        // Compressed descriptor: host 2048, one sector.
        let img = open(tiny(&[l2::COMPRESSED | 2048]));
        let r = img.block_status(0, 512).unwrap();
        let RunKind::Compressed {
            desc,
            cluster_start,
        } = r.kind
        else {
            panic!("{r:?}")
        };
        let mut buf = [0u8; 512];
        assert!(matches!(
            img.read_compressed(desc, cluster_start, 0, &mut buf),
            Err(ImageError::Decompress { .. })
        ));
    }

    #[test]
    fn l1_beyond_file_reads_as_unallocated() {
        let mut f = tiny(&[]);
        // L1 of 1 entry placed past the end of the file.
        f[40..48].copy_from_slice(&(1u64 << 40).to_be_bytes());
        let img = open(f);
        let r = img.block_status(0, 4096).unwrap();
        assert_eq!(r.kind, RunKind::Unallocated { host: None });
    }
}
