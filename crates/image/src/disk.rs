//! Opening an image and its backing chain under a deny-by-default policy, and
//! the guest view of the whole chain.
//!
//! A path found inside an image (backing file, external data file) is never
//! opened unless the caller allowed it. Then relative names resolve against
//! the naming image's directory, `json:` pseudo-protocol names are never
//! followed, the chain is at most [`limits::MAX_BACKING_DEPTH`] deep, and a
//! file met twice is a loop. Every host path opened is recorded.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use qvet_format::l2::CompressedDescriptor;
use qvet_format::limits;
use qvet_format::probe::{probe, Probed, PROBE_LEN};
use qvet_format::FormatError;

use crate::crypt::Key;
use crate::error::ImageError;
use crate::qcow2::{DataSource, Qcow2Image, RunKind};
use crate::raw::RawImage;
use crate::source::{ByteSource, FileSource, HostExtent};

/// Image formats qvet reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// qcow2 (versions 2 and 3).
    Qcow2,
    /// Raw disk image.
    Raw,
}

impl Format {
    /// qemu's name for the format.
    pub fn name(self) -> &'static str {
        match self {
            Self::Qcow2 => "qcow2",
            Self::Raw => "raw",
        }
    }

    /// Parses a format name as qemu spells it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "qcow2" => Some(Self::Qcow2),
            "raw" => Some(Self::Raw),
            _ => None,
        }
    }
}

/// What qvet may open and how.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Force the top image's format instead of probing.
    pub format: Option<Format>,
    /// Follow backing file names found in images.
    pub allow_backing: bool,
    /// Open external data files named in images.
    pub allow_data_file: bool,
    /// View an internal snapshot of the top image (ID or name).
    pub snapshot: Option<String>,
    /// Maximum backing chain depth.
    pub max_depth: usize,
    /// Passphrase for encrypted layers (every encrypted layer is opened with it).
    pub key: Option<Key>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            format: None,
            allow_backing: false,
            allow_data_file: false,
            snapshot: None,
            max_depth: limits::MAX_BACKING_DEPTH,
            key: None,
        }
    }
}

/// An image driver.
#[derive(Debug)]
pub enum Driver {
    /// qcow2.
    Qcow2(Box<Qcow2Image>),
    /// raw.
    Raw(RawImage),
}

impl Driver {
    /// Guest size of this layer.
    pub fn size(&self) -> u64 {
        match self {
            Self::Qcow2(q) => q.size(),
            Self::Raw(r) => r.size(),
        }
    }

    /// Format of this layer.
    pub fn format(&self) -> Format {
        match self {
            Self::Qcow2(_) => Format::Qcow2,
            Self::Raw(_) => Format::Raw,
        }
    }

    /// The host file of this layer.
    pub fn file(&self) -> &Arc<dyn ByteSource> {
        match self {
            Self::Qcow2(q) => q.file(),
            Self::Raw(r) => r.file(),
        }
    }
}

/// The state of a layer's link to its backing file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackingLink {
    /// No backing file.
    None,
    /// The next layer in [`Disk::layers`] is the backing file.
    Opened,
    /// A backing file is named but was not opened.
    Missing {
        /// Name as stored.
        name: String,
        /// Why it was not opened.
        why: String,
    },
}

/// One image in the chain.
#[derive(Debug)]
pub struct Layer {
    /// Name as given on the command line (top) or as qemu resolves the
    /// backing name (`full-backing-filename`) for lower layers.
    pub filename: String,
    /// Host path opened.
    pub path: PathBuf,
    /// The driver.
    pub driver: Driver,
    /// The link to the next layer.
    pub backing: BackingLink,
}

impl Layer {
    /// The qcow2 driver, if this layer is qcow2.
    pub fn qcow2(&self) -> Option<&Qcow2Image> {
        match &self.driver {
            Driver::Qcow2(q) => Some(q),
            Driver::Raw(_) => None,
        }
    }
}

/// The guest view of an image and its (allowed) backing chain.
#[derive(Debug)]
pub struct Disk {
    layers: Vec<Layer>,
    opened: Vec<PathBuf>,
    /// The passphrase it was opened with, for LUKS containers inside the guest.
    key: Option<Key>,
}

/// qemu's `bdrv_get_full_backing_filename_from_filename`: the backing name
/// resolved against the directory of the image naming it.
pub fn full_backing_filename(backed: &str, backing: &str) -> String {
    let has_protocol = backing
        .find(':')
        .is_some_and(|colon| !backing[..colon].contains('/'));
    if backing.is_empty() || has_protocol || backing.starts_with('/') {
        return backing.to_string();
    }
    match backed.rfind('/') {
        Some(slash) => format!("{}{}", &backed[..=slash], backing),
        None => backing.to_string(),
    }
}

fn open_source(path: &Path, opened: &mut Vec<PathBuf>) -> Result<Arc<dyn ByteSource>, ImageError> {
    let src = FileSource::open(path).map_err(|source| ImageError::Open {
        path: path.to_path_buf(),
        error: source,
    })?;
    opened.push(path.to_path_buf());
    Ok(Arc::new(src))
}

fn detect(src: &dyn ByteSource, path: &Path) -> Result<Format, ImageError> {
    let mut first = [0u8; PROBE_LEN];
    src.read_zero_padded(0, &mut first)
        .map_err(|source| ImageError::Io {
            what: "image header".into(),
            offset: 0,
            error: source,
        })?;
    let short = src.len() < 8;
    match probe(&first) {
        Probed::Foreign(name) => Err(ImageError::Unsupported {
            path: path.to_path_buf(),
            why: format!(
                "a {name} image, which qvet does not read (it reads qcow2 and raw): convert it \
                 first (qemu-img convert -O qcow2), or pass -f raw to read the file's bytes as a disk"
            ),
        }),
        Probed::Qcow2 => Ok(Format::Qcow2),
        Probed::QcowV1 if !short => Err(ImageError::Format {
            path: path.to_path_buf(),
            error: FormatError::LegacyQcowV1,
        }),
        Probed::QcowUnknownVersion(v) if !short => Err(ImageError::Format {
            path: path.to_path_buf(),
            error: FormatError::UnsupportedVersion(v),
        }),
        _ => Ok(Format::Raw),
    }
}

/// Why a name found inside an image may not be opened, if it may not.
fn refuse_name(name: &str) -> Option<String> {
    if name.starts_with("json:") {
        return Some("json: pseudo-protocol names are never followed".into());
    }
    if let Some(colon) = name.find(':') {
        if !name[..colon].contains('/') {
            return Some(format!(
                "protocol '{}:' is not a local file",
                &name[..colon]
            ));
        }
    }
    if name.as_bytes().contains(&0) {
        return Some("name contains a NUL byte".into());
    }
    None
}

/// Resolves a name found in the image at `backed` to a host path.
fn resolve(backed: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        backed.parent().unwrap_or(Path::new("")).join(p)
    }
}

impl Disk {
    /// Opens the image at `path` under `opts`.
    ///
    /// # Errors
    /// Any error opening or parsing the top image; failures below the top
    /// are recorded as [`BackingLink::Missing`] instead, so that the image
    /// can still be described. Reads that need a missing layer fail.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Self, ImageError> {
        let mut layers: Vec<Layer> = Vec::new();
        let mut opened = Vec::new();
        let mut seen = HashSet::new();
        let mut current = path.to_path_buf();
        let mut filename = path.to_string_lossy().into_owned();
        let mut format = opts.format;
        loop {
            let src = match open_source(&current, &mut opened) {
                Ok(s) => s,
                Err(e) if layers.is_empty() => return Err(e),
                Err(e) => {
                    set_missing(&mut layers, e.to_string());
                    break;
                }
            };
            if let Ok(canon) = std::fs::canonicalize(&current) {
                seen.insert(canon);
            }
            let fmt = match format {
                Some(f) => f,
                None => match detect(src.as_ref(), &current) {
                    Ok(f) => f,
                    Err(e) if layers.is_empty() => return Err(e),
                    Err(e) => {
                        set_missing(&mut layers, e.to_string());
                        break;
                    }
                },
            };
            let depth = layers.len();
            let layer = match Self::open_layer(src, &current, fmt, opts, depth == 0) {
                Ok(l) => l,
                Err(e) if layers.is_empty() => return Err(e),
                Err(e) => {
                    set_missing(&mut layers, e.to_string());
                    break;
                }
            };
            let (driver, backing_name, backing_format) = layer;
            let mut layer = Layer {
                filename: filename.clone(),
                path: current.clone(),
                driver,
                backing: BackingLink::None,
            };
            let Some(name) = backing_name else {
                layers.push(layer);
                break;
            };
            let missing = |why: String| BackingLink::Missing {
                name: name.clone(),
                why,
            };
            let next_path = resolve(&current, &name);
            let next_format = match backing_format.as_deref() {
                None => Ok(None),
                Some(f) => Format::from_name(f)
                    .map(Some)
                    .ok_or_else(|| format!("backing format '{f}' is not supported")),
            };
            let refusal = if !opts.allow_backing {
                Some("backing files are not opened without --allow-backing".to_string())
            } else if let Some(why) = refuse_name(&name) {
                Some(why)
            } else if depth + 1 > opts.max_depth {
                Some(format!("backing chain deeper than {}", opts.max_depth))
            } else if let Err(why) = &next_format {
                Some(why.clone())
            } else {
                match std::fs::canonicalize(&next_path) {
                    Ok(c) if seen.contains(&c) => {
                        Some(format!("backing file '{}' creates an infinite loop", name))
                    }
                    Ok(_) => None,
                    Err(e) => Some(format!("could not open '{}': {e}", next_path.display())),
                }
            };
            if let Some(why) = refusal {
                layer.backing = missing(why);
                layers.push(layer);
                break;
            }
            layer.backing = BackingLink::Opened;
            layers.push(layer);
            filename = full_backing_filename(&filename, &name);
            current = next_path;
            format = next_format.ok().flatten();
        }
        Ok(Self {
            layers,
            opened,
            key: opts.key.clone(),
        })
    }

    /// Opens an image held in a byte source (a buffer, a fuzzer input) as a
    /// single layer. Nothing named inside it is ever opened: a backing file
    /// or data file is reported missing.
    ///
    /// # Errors
    /// As [`Disk::open`] for the top image.
    pub fn from_source(
        src: Arc<dyn ByteSource>,
        name: &str,
        opts: &OpenOptions,
    ) -> Result<Self, ImageError> {
        let path = PathBuf::from(name);
        let fmt = match opts.format {
            Some(f) => f,
            None => detect(src.as_ref(), &path)?,
        };
        let local = OpenOptions {
            allow_backing: false,
            allow_data_file: false,
            ..opts.clone()
        };
        let (driver, backing, _) = Self::open_layer(src, &path, fmt, &local, true)?;
        let backing = match backing {
            Some(name) => BackingLink::Missing {
                name,
                why: "in-memory images never open backing files".into(),
            },
            None => BackingLink::None,
        };
        Ok(Self {
            layers: vec![Layer {
                filename: name.to_string(),
                path,
                driver,
                backing,
            }],
            opened: Vec::new(),
            key: opts.key.clone(),
        })
    }

    /// Opens one layer; returns its driver, backing name and backing format.
    #[allow(clippy::type_complexity)]
    fn open_layer(
        src: Arc<dyn ByteSource>,
        path: &Path,
        fmt: Format,
        opts: &OpenOptions,
        top: bool,
    ) -> Result<(Driver, Option<String>, Option<String>), ImageError> {
        match fmt {
            Format::Raw => {
                if top && opts.snapshot.is_some() {
                    return Err(ImageError::Unsupported {
                        path: path.to_path_buf(),
                        why: "raw images have no snapshots".into(),
                    });
                }
                Ok((Driver::Raw(RawImage::open(src, path)), None, None))
            }
            Format::Qcow2 => {
                let mut q = Qcow2Image::open(src, path)?;
                if let (Some(key), Some(_)) = (&opts.key, q.encryption()) {
                    q.unlock(key)?;
                }
                if top {
                    if let Some(s) = &opts.snapshot {
                        q.select_snapshot(s)?;
                    }
                }
                if q.header().has_data_file() {
                    let name = q
                        .header()
                        .data_file_name()
                        .map(|n| String::from_utf8_lossy(n).into_owned());
                    let data = match name {
                        None => DataSource::Missing {
                            name: String::new(),
                            why: "the image names no data file".into(),
                        },
                        Some(name) if !opts.allow_data_file => DataSource::Missing {
                            name,
                            why: "data files are not opened without --allow-data-file".into(),
                        },
                        Some(name) => match refuse_name(&name) {
                            Some(why) => DataSource::Missing { name, why },
                            None => match FileSource::open(&resolve(path, &name)) {
                                Ok(s) => DataSource::External(Arc::new(s)),
                                Err(e) => DataSource::Missing {
                                    name,
                                    why: e.to_string(),
                                },
                            },
                        },
                    };
                    q.set_data_file(data);
                }
                let h = q.header();
                let backing = h
                    .backing_file
                    .as_ref()
                    .filter(|b| !b.is_empty())
                    .map(|b| String::from_utf8_lossy(b).into_owned());
                let bfmt = h
                    .backing_format()
                    .map(|b| String::from_utf8_lossy(b).into_owned());
                Ok((Driver::Qcow2(Box::new(q)), backing, bfmt))
            }
        }
    }

    /// The passphrase the disk was opened with (also tried on LUKS
    /// containers inside the guest).
    pub fn key(&self) -> Option<&Key> {
        self.key.as_ref()
    }

    /// The layers, top first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The top layer.
    pub fn top(&self) -> Option<&Layer> {
        self.layers.first()
    }

    /// Every host path opened, in order (data files included).
    pub fn opened_files(&self) -> Vec<PathBuf> {
        let mut out = self.opened.clone();
        for l in &self.layers {
            if let Some(q) = l.qcow2() {
                if let DataSource::External(s) = q.data_source() {
                    if let Some(p) = s.path() {
                        out.push(p.to_path_buf());
                    }
                }
            }
        }
        out
    }

    /// Guest size.
    pub fn size(&self) -> u64 {
        self.top().map(|l| l.driver.size()).unwrap_or(0)
    }

    /// Reads guest bytes at `offset` into `buf`.
    ///
    /// # Errors
    /// [`ImageError::OutOfRange`] beyond the virtual size; read errors of any
    /// layer; [`ImageError::Unavailable`] where the bytes would come from a
    /// backing or data file that was not opened.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ImageError> {
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        if offset.checked_add(len).is_none_or(|end| end > self.size()) {
            return Err(ImageError::OutOfRange {
                offset,
                len,
                size: self.size(),
            });
        }
        self.read_layer(0, offset, buf)
    }

    fn read_layer(&self, index: usize, offset: u64, buf: &mut [u8]) -> Result<(), ImageError> {
        let Some(layer) = self.layers.get(index) else {
            buf.fill(0);
            return Ok(());
        };
        let size = layer.driver.size();
        let avail = usize::try_from(size.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let (inside, beyond) = buf.split_at_mut(avail);
        beyond.fill(0);
        match &layer.driver {
            Driver::Raw(r) => r.read(offset, inside),
            Driver::Qcow2(q) => {
                let mut done = 0usize;
                while done < inside.len() {
                    let pos = offset + u64::try_from(done).unwrap_or(0);
                    let want = u64::try_from(inside.len() - done).unwrap_or(u64::MAX);
                    let run = q.block_status(pos, want)?;
                    let n = usize::try_from(run.len.min(want)).unwrap_or(0).max(1);
                    let Some(dst) = inside.get_mut(done..done + n) else {
                        break;
                    };
                    match run.kind {
                        RunKind::Data { host } => q.read_data(pos, host, dst)?,
                        RunKind::Zero { .. } => dst.fill(0),
                        RunKind::Compressed {
                            desc,
                            cluster_start,
                        } => q.read_compressed(desc, cluster_start, pos, dst)?,
                        RunKind::Unallocated { .. } => match &layer.backing {
                            BackingLink::None => dst.fill(0),
                            BackingLink::Opened => self.read_layer(index + 1, pos, dst)?,
                            BackingLink::Missing { name, why } => {
                                return Err(ImageError::Unavailable {
                                    path: layer.path.clone(),
                                    what: "backing file",
                                    name: name.clone(),
                                    start: pos,
                                    end: pos + u64::try_from(n).unwrap_or(0),
                                    why: why.clone(),
                                })
                            }
                        },
                    }
                    done += n;
                }
                Ok(())
            }
        }
    }
}

/// How a run of guest bytes is stored, resolved down the backing chain:
/// what a comparison needs to know before reading anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// Reads as zeros, known from the mapping alone.
    Zero,
    /// Stored as plain bytes (qcow2 data cluster, raw layer, or bytes that
    /// cannot be read without an error, which reading will report).
    Plain,
    /// (Part of) one compressed cluster of a qcow2 layer.
    Compressed {
        /// Index of the layer in [`Disk::layers`].
        layer: usize,
        /// Where the stored stream is.
        desc: CompressedDescriptor,
        /// Guest offset of the cluster's first byte.
        cluster_start: u64,
    },
}

/// A run of guest bytes with one [`StorageKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storage {
    /// Length in bytes (> 0).
    pub len: u64,
    /// How the run is stored.
    pub kind: StorageKind,
}

impl Disk {
    /// How the guest bytes from `offset` (up to `max` of them) are stored.
    /// Beyond the virtual size everything is [`StorageKind::Zero`].
    ///
    /// # Errors
    /// Broken mapping entries met at `offset`.
    pub fn storage(&self, offset: u64, max: u64) -> Result<Storage, ImageError> {
        let mut len = max.max(1);
        let mut index = 0usize;
        loop {
            let Some(layer) = self.layers.get(index) else {
                return Ok(Storage {
                    len,
                    kind: StorageKind::Zero,
                });
            };
            let size = layer.driver.size();
            if offset >= size {
                return Ok(Storage {
                    len,
                    kind: StorageKind::Zero,
                });
            }
            len = len.min(size - offset);
            match &layer.driver {
                Driver::Raw(r) => {
                    let kind = match r.file().extent_at(offset) {
                        HostExtent::Hole(end) if end > offset => {
                            len = len.min(end - offset);
                            StorageKind::Zero
                        }
                        HostExtent::TrailingHole => StorageKind::Zero,
                        HostExtent::Data(end) if end > offset => {
                            len = len.min(end - offset);
                            StorageKind::Plain
                        }
                        _ => StorageKind::Plain,
                    };
                    return Ok(Storage { len, kind });
                }
                Driver::Qcow2(q) => {
                    let run = q.block_status(offset, len)?;
                    len = len.min(run.len).max(1);
                    let kind = match run.kind {
                        RunKind::Data { .. } => StorageKind::Plain,
                        RunKind::Zero { .. } => StorageKind::Zero,
                        RunKind::Compressed {
                            desc,
                            cluster_start,
                        } => StorageKind::Compressed {
                            layer: index,
                            desc,
                            cluster_start,
                        },
                        RunKind::Unallocated { .. } => match &layer.backing {
                            BackingLink::None => StorageKind::Zero,
                            BackingLink::Opened => {
                                index += 1;
                                continue;
                            }
                            BackingLink::Missing { .. } => StorageKind::Plain,
                        },
                    };
                    return Ok(Storage { len, kind });
                }
            }
        }
    }
}

/// The guest view as a byte source, so that partition and filesystem readers
/// can sit on top of it. Reads past the virtual size return nothing.
impl ByteSource for Disk {
    fn len(&self) -> u64 {
        self.size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.size();
        if offset >= size {
            return Ok(0);
        }
        let n = usize::try_from(size - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let dst = buf.get_mut(..n).unwrap_or_default();
        self.read_layer(0, offset, dst)
            .map_err(std::io::Error::other)?;
        Ok(n)
    }
}

fn set_missing(layers: &mut [Layer], why: String) {
    if let Some(last) = layers.last_mut() {
        if let BackingLink::Opened = last.backing {
            let name = last
                .qcow2()
                .and_then(|q| q.header().backing_file.clone())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            last.backing = BackingLink::Missing { name, why };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_backing_filename_follows_qemu() {
        assert_eq!(
            full_backing_filename("over.qcow2", "base.qcow2"),
            "base.qcow2"
        );
        assert_eq!(
            full_backing_filename("/d/over.qcow2", "base.qcow2"),
            "/d/base.qcow2"
        );
        assert_eq!(full_backing_filename("d/over.qcow2", "/abs"), "/abs");
        assert_eq!(full_backing_filename("d/o", "json:{}"), "json:{}");
    }

    #[test]
    fn names_inside_images_are_refused_when_not_files() {
        assert!(refuse_name("json:{\"file\":{}}").is_some());
        assert!(refuse_name("nbd:localhost:10809").is_some());
        assert!(refuse_name("./a:b").is_none());
        assert!(refuse_name("base.qcow2").is_none());
    }
}
