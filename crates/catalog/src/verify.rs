//! One image → its digests (one read of the file) → a verdict with the
//! evidence.
//!
//! * **genuine**: a file digest matches a trusted entry (every algorithm the
//!   entry and the image share agrees);
//! * **content-identical**: no file match, but the guest-content root equals
//!   a trusted reference's (a re-converted or re-compressed container);
//! * **mismatch**: something claims the image is a known one — its file
//!   name, a `.md5sum` sidecar holding a known MD5, an expected digest given
//!   on the command line, or an entry sharing one digest but not another —
//!   and the digests differ;
//! * **unknown**: nothing to compare with. A size equal to a known image's
//!   is listed as a weak hint only: qcow2 sizes are cluster-quantised, so
//!   different images share sizes.
//!
//! Only the algorithms some entry records are computed (plus MD5 when a
//! sidecar is present), all in one pass over the file, and only when they
//! can change the report ([`digests_cannot_matter`]): a file whose size and
//! name no entry recording a digest has is not read for them. The guest-content
//! digest is computed only when the file is not genuine and a reference with
//! a content root has the image's virtual size. Backing files are never
//! opened: an overlay is described, not followed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use qvet_digest::Manifest;
use qvet_image::disk::{full_backing_filename, BackingLink};
use qvet_image::{ByteSource, Disk, FileSource, OpenOptions};
use serde_json::{json, Value};

use crate::store::CachedFacts;
use crate::{
    base_name, read_limited, source, Algo, Catalog, CatalogError, ContentRef, Entry, Reference,
};

/// Most size-only hints listed per image.
const MAX_SIZE_HINTS: usize = 10;

/// The verdict on one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// A file digest matches a trusted entry.
    Genuine,
    /// The guest content equals a trusted reference's.
    ContentIdentical,
    /// It claims to be a known image, but the digests differ.
    Mismatch,
    /// Nothing to compare with.
    Unknown,
}

impl Verdict {
    /// `genuine`, `content-identical`, `mismatch`, `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Genuine => "genuine",
            Self::ContentIdentical => "content-identical",
            Self::Mismatch => "mismatch",
            Self::Unknown => "unknown",
        }
    }
}

/// A trusted entry the image matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The entry.
    pub entry: Entry,
    /// Algorithms that agree (empty for a content match).
    pub algorithms: Vec<Algo>,
    /// Matched by guest-content root rather than file digest.
    pub by_content: bool,
}

impl Match {
    /// The strongest algorithm that matched, or `content-root`.
    pub fn algorithm(&self) -> &'static str {
        if self.by_content {
            return "content-root";
        }
        self.algorithms.iter().max().map(|a| a.name()).unwrap_or("")
    }
}

/// What points the image at an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClaimBy {
    /// Its file name is the entry's.
    Name,
    /// Its `.md5sum` sidecar holds the entry's MD5.
    Sidecar,
    /// A digest given on the command line.
    Expected,
    /// One digest equals the entry's while another differs.
    PartialDigest,
    /// Only its size equals the entry's (weak).
    Size,
}

impl ClaimBy {
    /// Name in output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Sidecar => "sidecar",
            Self::Expected => "expected",
            Self::PartialDigest => "partial-digest",
            Self::Size => "size",
        }
    }

    /// Whether this claim alone decides a mismatch.
    pub fn is_strong(self) -> bool {
        self != Self::Size
    }
}

/// An entry the image's name, sidecar, size or an expected digest points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// What makes the claim.
    pub by: ClaimBy,
    /// The entry claimed.
    pub entry: Entry,
    /// The image's digests agree with the entry's (a match).
    pub agrees: bool,
    /// Algorithms whose values differ.
    pub differs: Vec<Algo>,
    /// Differing guest chunks against the entry's manifest, and the count
    /// of chunks, when both manifests are at hand.
    pub content_diff: Option<(u64, u64)>,
}

/// The state of a GNS3 `.md5sum` sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarStatus {
    /// It holds the image's real MD5.
    Consistent,
    /// It holds another MD5: GNS3 would display it without re-hashing.
    StaleOrForged,
    /// Not 32 hex digits.
    Malformed,
    /// Could not be read.
    Unreadable,
}

impl SidecarStatus {
    /// Name in output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Consistent => "consistent",
            Self::StaleOrForged => "stale-or-forged",
            Self::Malformed => "malformed",
            Self::Unreadable => "unreadable",
        }
    }
}

/// A sidecar found next to an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    /// Its path.
    pub path: PathBuf,
    /// Verdict on it.
    pub status: SidecarStatus,
    /// The value it holds (trimmed, at most 64 characters shown).
    pub value: Option<String>,
}

/// A qcow2 overlay's backing file, as named (never opened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// Name stored in the image.
    pub backing_file: String,
    /// Where qemu would look for it.
    pub backing_path: String,
}

/// Everything said about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The path as given.
    pub filename: String,
    /// File size.
    pub size: u64,
    /// `qcow2` or `raw` when the image could be opened.
    pub format: Option<&'static str>,
    /// Guest size.
    pub virtual_size: Option<u64>,
    /// The verdict.
    pub verdict: Verdict,
    /// Trusted entries matched (by file digest, or by content root).
    pub matches: Vec<Match>,
    /// Entries the image's name, sidecar, size or expected digests point at.
    pub claims: Vec<Claim>,
    /// File digests computed.
    pub digests: BTreeMap<Algo, String>,
    /// Guest-content identity, when computed (manifest omitted).
    pub content: Option<ContentRef>,
    /// GNS3 sidecar, when present.
    pub sidecar: Option<Sidecar>,
    /// Backing file, when the image is an overlay.
    pub overlay: Option<Overlay>,
    /// Remarks (e.g. why content was not compared).
    pub notes: Vec<String>,
}

/// A report plus what to cache.
#[derive(Debug, Clone)]
pub struct Assessment {
    /// The report.
    pub report: Report,
    /// Digests and content identity, for the scan cache.
    pub facts: CachedFacts,
    /// Whether the file was read for its digests or guest content (false:
    /// what was needed came from the cache, or nothing needed reading).
    pub hashed: bool,
}

fn entry_json(e: &Entry) -> Value {
    let r = &e.reference;
    json!({
        "id": e.id.to_string(),
        "label": r.label,
        "filename": r.filename,
        "version": r.version,
        "size": r.size,
    })
}

impl Report {
    /// Whether every match is a superseded entry.
    pub fn superseded_only(&self) -> bool {
        !self.matches.is_empty() && self.matches.iter().all(|m| m.entry.reference.superseded)
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        let matches: Vec<Value> = self
            .matches
            .iter()
            .map(|m| {
                json!({
                    "source": m.entry.source,
                    "entry": entry_json(&m.entry),
                    "algorithm": m.algorithm(),
                    "algorithms": m.algorithms.iter().map(|a| a.name()).collect::<Vec<_>>(),
                    "superseded": m.entry.reference.superseded,
                })
            })
            .collect();
        let claims: Vec<Value> = self
            .claims
            .iter()
            .map(|c| {
                let mut v = json!({
                    "by": c.by.name(),
                    "strength": if c.by.is_strong() { "strong" } else { "weak" },
                    "agrees": c.agrees,
                    "source": c.entry.source,
                    "entry": entry_json(&c.entry),
                    "superseded": c.entry.reference.superseded,
                    "differs": c.differs.iter().map(|a| a.name()).collect::<Vec<_>>(),
                });
                if let (Some((n, total)), Some(o)) = (c.content_diff, v.as_object_mut()) {
                    o.insert(
                        "content_diff".into(),
                        json!({"differing_chunks": n, "chunks": total}),
                    );
                }
                v
            })
            .collect();
        let file: serde_json::Map<String, Value> = self
            .digests
            .iter()
            .map(|(a, h)| (a.name().to_string(), Value::String(h.clone())))
            .collect();
        json!({
            "filename": self.filename,
            "size": self.size,
            "format": self.format,
            "virtual_size": self.virtual_size,
            "verdict": self.verdict.name(),
            "superseded": self.superseded_only(),
            "matches": matches,
            "claims": claims,
            "file": file,
            "content": self.content.as_ref().map(|c| json!({
                "root": c.root,
                "sha256": c.sha256,
                "virtual_size": c.virtual_size,
            })),
            "sidecar": self.sidecar.as_ref().map(|s| json!({
                "path": s.path.display().to_string(),
                "status": s.status.name(),
                "value": s.value,
            })),
            "overlay": self.overlay.as_ref().map(|o| json!({
                "backing_file": o.backing_file,
                "backing_path": o.backing_path,
            })),
            "notes": self.notes,
        })
    }
}

/// `<image>.md5sum`.
pub fn sidecar_path(image: &Path) -> PathBuf {
    let mut s = image.as_os_str().to_owned();
    s.push(".md5sum");
    PathBuf::from(s)
}

/// A sidecar as read: its path, its text (trimmed, at most 64 characters
/// kept) and the MD5 it holds, or why it holds none.
type RawSidecar = (PathBuf, Option<String>, Result<String, SidecarStatus>);

/// Reads the sidecar next to `image`, if there is one. Its status is
/// settled once the real MD5 is known.
fn read_sidecar(image: &Path) -> Option<RawSidecar> {
    let path = sidecar_path(image);
    if !path.is_file() {
        return None;
    }
    Some(match read_limited(&path, 4096) {
        Ok(b) => {
            let t = String::from_utf8_lossy(&b).trim().to_string();
            let shown: String = t.chars().take(64).collect();
            let value = if t.len() == 32 && t.chars().all(|c| c.is_ascii_hexdigit()) {
                Ok(t.to_ascii_lowercase())
            } else {
                Err(SidecarStatus::Malformed)
            };
            (path, Some(shown), value)
        }
        Err(_) => (path, None, Err(SidecarStatus::Unreadable)),
    })
}

fn check_sidecar(raw: RawSidecar, md5: Option<&String>) -> Sidecar {
    let (path, shown, value) = raw;
    let status = match (&value, md5) {
        (Ok(v), Some(m)) if v == m => SidecarStatus::Consistent,
        (Ok(_), _) => SidecarStatus::StaleOrForged,
        (Err(s), _) => *s,
    };
    Sidecar {
        path,
        status,
        value: shown,
    }
}

/// Which of the entry's digests agree and differ with `digests`.
fn compare(e: &Entry, digests: &BTreeMap<Algo, String>) -> (Vec<Algo>, Vec<Algo>) {
    let mut agree = Vec::new();
    let mut differ = Vec::new();
    for (a, h) in &e.reference.digests {
        match digests.get(a) {
            Some(x) if x == h => agree.push(*a),
            Some(_) => differ.push(*a),
            None => {}
        }
    }
    (agree, differ)
}

/// The header facts of an image, read without following anything.
struct Header {
    disk: Option<Disk>,
    format: Option<&'static str>,
    virtual_size: Option<u64>,
    overlay: Option<Overlay>,
}

fn header(path: &Path, notes: &mut Vec<String>) -> Header {
    match Disk::open(path, &OpenOptions::default()) {
        Ok(disk) => {
            let top = disk.top();
            let overlay = top.and_then(|l| match &l.backing {
                BackingLink::Missing { name, .. } => Some(Overlay {
                    backing_file: name.clone(),
                    backing_path: full_backing_filename(&path.to_string_lossy(), name),
                }),
                _ => None,
            });
            Header {
                format: top.map(|l| l.driver.format().name()),
                virtual_size: Some(disk.size()),
                overlay,
                disk: Some(disk),
            }
        }
        Err(e) => {
            notes.push(format!(
                "guest view not readable, content not compared: {e}"
            ));
            Header {
                disk: None,
                format: None,
                virtual_size: None,
                overlay: None,
            }
        }
    }
}

/// When [`assess_with`] reads the whole file for its digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hashing {
    /// Only when the digests can change the report: see
    /// [`digests_cannot_matter`]. Otherwise the report has no digests and a
    /// note says why.
    #[default]
    WhenUseful,
    /// Always (unless `cached` facts cover them): for the scan cache, so
    /// that a later catalog change is judged without reading the file again.
    Always,
}

/// Whether the file digests cannot change the report on a file named
/// `name` of `size` bytes (`raw`: it is not a qcow2 file): no `.md5sum`
/// sidecar is present (its check needs the MD5), and every entry that
/// records a digest is ruled out: it records a size other than `size` and
/// a file name other than `name`, or (for a raw file) it is a built-in
/// registry `.qcow2` file other than `name` ([`format_rules_out`]).
///
/// Such an entry cannot be matched: its digests are of a file of another
/// size or format (the size and the digests an entry records describe one
/// file; equal digests of different files would be a collision). So with
/// or without the digests there is no file-digest match and no
/// partial-digest claim. Every other use of the digests compares them with
/// an entry's: a name claim (ruled out above), an expected digest from the
/// command line (recorded without a size, so ruled out), a sidecar (ruled
/// out) and a size hint (an entry of this size: one without digests, or a
/// registry `.qcow2` entry whose every digest differs, as the claim then says
/// without hashing). The content comparison does not use the file digests.
/// Hence the verdict, the matches and the claims (`agrees`, `differs`) are
/// the same either way.
pub fn digests_cannot_matter(
    catalog: &Catalog,
    name: &str,
    size: u64,
    sidecar: bool,
    raw: bool,
) -> bool {
    !sidecar
        && catalog.entries().iter().all(|e| {
            let r = &e.reference;
            r.digests.is_empty()
                || (r.size.is_some_and(|s| s != size) && r.filename.as_deref() != Some(name))
                || format_rules_out(e, name, raw)
        })
}

/// Whether entry `e` is one of the built-in GNS3 registry's `.qcow2` files
/// (other than `name`) while the file at hand is not qcow2: the registry's
/// digests are of the vendors' qcow2 files, which start with the qcow2
/// magic, so the two cannot be the same bytes. Raw disks of round sizes
/// (2 GiB, 8 GiB) share their size with registry qcow2 files, and this
/// saves hashing them whole. Entries from users' catalogs are not ruled
/// out by name: a team may well record a raw image under a `.qcow2` name.
fn format_rules_out(e: &Entry, name: &str, raw: bool) -> bool {
    raw && e.source == crate::source::GNS3_BUILTIN
        && e.reference
            .filename
            .as_deref()
            .is_some_and(|f| f != name && f.to_ascii_lowercase().ends_with(".qcow2"))
}

/// Verifies one image against `catalog`, reading the file for its digests
/// only when they can change the report ([`Hashing::WhenUseful`]). `cached`
/// facts (from the scan cache, for the file as it is now) are used where
/// they cover what is needed; `progress` receives the bytes of the file
/// read so far.
///
/// # Errors
/// The file cannot be opened or read.
pub fn assess(
    catalog: &Catalog,
    path: &Path,
    cached: Option<&CachedFacts>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Assessment, CatalogError> {
    assess_with(catalog, path, cached, Hashing::WhenUseful, progress)
}

/// [`assess`], choosing when the file is hashed.
///
/// # Errors
/// The file cannot be opened or read.
pub fn assess_with(
    catalog: &Catalog,
    path: &Path,
    cached: Option<&CachedFacts>,
    hashing: Hashing,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Assessment, CatalogError> {
    let src = FileSource::open(path).map_err(|error| CatalogError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let size = src.len();
    let mut notes = Vec::new();
    let head = header(path, &mut notes);
    let sidecar = read_sidecar(path);

    let name = base_name(path);
    let raw = head.format == Some("raw");

    let mut needed = catalog.algos();
    if sidecar.is_some() {
        needed.insert(Algo::Md5);
    }
    let mut hashed = false;
    // Digests worth caching even when this report does without them.
    let mut known_digests: Option<BTreeMap<Algo, String>> = None;
    let digests = match cached {
        Some(c) if needed.iter().all(|a| c.digests.contains_key(a)) => c.digests.clone(),
        _ if hashing == Hashing::WhenUseful
            && digests_cannot_matter(catalog, &name, size, sidecar.is_some(), raw) =>
        {
            notes.push(format!(
                "file digests not computed: no catalog entry recording a digest has this \
                 file size ({size} bytes), an unrecorded size or this file name (or it names \
                 a qcow2 file, and this one is raw), so none can match"
            ));
            known_digests = cached.map(|c| c.digests.clone());
            BTreeMap::new()
        }
        _ => {
            let algos: Vec<Algo> = needed.iter().copied().collect();
            hashed = true;
            qvet_digest::digest_file(&src, &algos, progress)?.digests
        }
    };

    // File-digest matches, and entries that share one digest but not another.
    let mut matches: Vec<Match> = Vec::new();
    let mut claims: Vec<Claim> = Vec::new();
    let mut seen = BTreeSet::new();
    for (a, h) in &digests {
        for e in catalog.by_digest(*a, h) {
            if !seen.insert(e.id) {
                continue;
            }
            let (agree, differ) = compare(e, &digests);
            if differ.is_empty() {
                matches.push(Match {
                    entry: e.clone(),
                    algorithms: agree,
                    by_content: false,
                });
            } else {
                claims.push(Claim {
                    by: ClaimBy::PartialDigest,
                    entry: e.clone(),
                    agrees: false,
                    differs: differ,
                    content_diff: None,
                });
            }
        }
    }
    let matched: BTreeSet<_> = matches.iter().map(|m| m.entry.id).collect();
    let claim = |by: ClaimBy, e: &Entry, claims: &mut Vec<Claim>| {
        if claims.iter().any(|c| c.entry.id == e.id) {
            return;
        }
        let (agree, mut differ) = compare(e, &digests);
        if digests.is_empty() && format_rules_out(e, &name, raw) {
            // Not hashed: every digest of another file's bytes differs.
            differ = e.reference.digests.keys().copied().collect();
        }
        claims.push(Claim {
            by,
            entry: e.clone(),
            agrees: !agree.is_empty() && differ.is_empty(),
            differs: differ,
            content_diff: None,
        });
    };
    for e in catalog.by_filename(&name) {
        claim(ClaimBy::Name, e, &mut claims);
    }
    for e in catalog.expected() {
        claim(ClaimBy::Expected, e, &mut claims);
    }
    let sidecar = sidecar.map(|raw| check_sidecar(raw, digests.get(&Algo::Md5)));
    if let Some(s) = &sidecar {
        if s.status == SidecarStatus::StaleOrForged {
            let v = s.value.as_deref().unwrap_or_default().to_ascii_lowercase();
            for e in catalog.by_digest(Algo::Md5, &v) {
                claim(ClaimBy::Sidecar, e, &mut claims);
            }
        }
    }
    let strong_claim = claims.iter().any(|c| c.by.is_strong());
    if matched.is_empty() && !strong_claim {
        let hints: Vec<&Entry> = catalog.by_size(size).collect();
        if hints.len() > MAX_SIZE_HINTS {
            notes.push(format!(
                "{} known images have this size; the first {MAX_SIZE_HINTS} are listed",
                hints.len()
            ));
        }
        for e in hints.into_iter().take(MAX_SIZE_HINTS) {
            claim(ClaimBy::Size, e, &mut claims);
        }
    }

    // Guest content: only when it can decide or explain something.
    let mut content: Option<ContentRef> = None;
    let mut manifest: Option<Manifest> = None;
    let wants_content = matches.is_empty()
        && head
            .virtual_size
            .is_some_and(|v| catalog.content_sizes().contains(&v));
    if wants_content {
        if let Some(o) = &head.overlay {
            notes.push(format!(
                "overlay of '{}': guest content not compared (backing files are never opened)",
                o.backing_file
            ));
        } else if let Some(disk) = &head.disk {
            let from_cache = cached
                .and_then(|c| c.content.as_ref())
                .filter(|c| Some(c.virtual_size) == head.virtual_size);
            match from_cache {
                Some(c) => {
                    manifest = c
                        .manifest
                        .as_deref()
                        .and_then(|b| Manifest::from_bytes(b).ok());
                    content = Some(c.clone());
                }
                None => match qvet_digest::content_digest(disk, &|_| {}) {
                    Ok(cd) => {
                        hashed = true;
                        content = Some(ContentRef {
                            root: cd.root,
                            sha256: cd.sha256,
                            virtual_size: cd.manifest.virtual_size,
                            manifest: Some(cd.manifest.to_bytes()),
                        });
                        manifest = Some(cd.manifest);
                    }
                    Err(e) => notes.push(format!("guest content not readable: {e}")),
                },
            }
        }
    }
    if let Some(c) = &content {
        for e in catalog.by_root(&c.root) {
            matches.push(Match {
                entry: e.clone(),
                algorithms: Vec::new(),
                by_content: true,
            });
        }
        if let Some(m) = &manifest {
            for cl in &mut claims {
                let theirs = cl
                    .entry
                    .reference
                    .content
                    .as_ref()
                    .and_then(|r| r.manifest.as_deref())
                    .and_then(|b| Manifest::from_bytes(b).ok());
                if let Some(t) = theirs.filter(|t| t.virtual_size == m.virtual_size) {
                    let total = m.chunks.len().max(t.chunks.len()) as u64;
                    cl.content_diff = Some((m.differing_chunks(&t).len() as u64, total));
                }
            }
        }
    }

    let verdict = if matches.iter().any(|m| !m.by_content) {
        Verdict::Genuine
    } else if !matches.is_empty() {
        Verdict::ContentIdentical
    } else if claims.iter().any(|c| c.by.is_strong() && !c.agrees) {
        Verdict::Mismatch
    } else {
        Verdict::Unknown
    };
    if head.overlay.is_some() && verdict != Verdict::Genuine {
        notes.push(
            "an overlay holds only the guest's changes; vendor digests describe base images".into(),
        );
    }
    let facts = CachedFacts {
        digests: known_digests.unwrap_or_else(|| digests.clone()),
        content: content.clone(),
    };
    let report = Report {
        filename: path.display().to_string(),
        size,
        format: head.format,
        virtual_size: head.virtual_size,
        verdict,
        matches,
        claims,
        digests,
        content: content.map(|c| ContentRef {
            manifest: None,
            ..c
        }),
        sidecar,
        overlay: head.overlay,
        notes,
    };
    Ok(Assessment {
        report,
        facts,
        hashed,
    })
}

/// Builds a trusted reference from an image: md5, sha1, sha256, sha512 in
/// one pass, then the guest-content digest and manifest. Returns notes on
/// what could not be recorded (an overlay's content needs its backing file,
/// which is never opened). `progress` receives (bytes done, bytes to do)
/// over both passes.
///
/// # Errors
/// The file cannot be read.
pub fn reference_for_image(
    path: &Path,
    label: &str,
    version: Option<&str>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<(Reference, Vec<String>), CatalogError> {
    let src = FileSource::open(path).map_err(|error| CatalogError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let mut notes = Vec::new();
    let head = header(path, &mut notes);
    let size = src.len();
    let content_len = match (&head.overlay, &head.disk) {
        (None, Some(d)) => d.size(),
        _ => 0,
    };
    let total = size.saturating_add(content_len);
    let fd = qvet_digest::digest_file(
        &src,
        &[Algo::Md5, Algo::Sha1, Algo::Sha256, Algo::Sha512],
        &|x| progress(x, total),
    )?;
    let content = match (&head.overlay, &head.disk) {
        (Some(o), _) => {
            notes.push(format!(
                "overlay of '{}': no content digest recorded (backing files are never opened)",
                o.backing_file
            ));
            None
        }
        (None, Some(disk)) => {
            let cd =
                qvet_digest::content_digest(disk, &|x| progress(size.saturating_add(x), total))?;
            Some(ContentRef {
                root: cd.root,
                sha256: cd.sha256,
                virtual_size: cd.manifest.virtual_size,
                manifest: Some(cd.manifest.to_bytes()),
            })
        }
        (None, None) => None,
    };
    let reference = Reference {
        label: label.to_string(),
        filename: Some(base_name(path)),
        version: version.map(str::to_string),
        size: Some(fd.size),
        digests: fd.digests,
        content,
        superseded: false,
        imported_from: Some(
            std::path::absolute(path)
                .unwrap_or_else(|_| path.to_path_buf())
                .display()
                .to_string(),
        ),
    };
    Ok((reference, notes))
}

/// Expected digests given on the command line, as one reference.
pub fn expected_reference(digests: BTreeMap<Algo, String>) -> Reference {
    let label = digests
        .keys()
        .map(|a| format!("--{a}"))
        .collect::<Vec<_>>()
        .join(" ");
    Reference {
        label,
        digests,
        ..Reference::default()
    }
}

/// Source name for a reference given on the command line.
pub const EXPECTED_SOURCE: &str = source::COMMAND_LINE;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EntryId;

    fn md5_hex(data: &[u8]) -> String {
        let src = qvet_image::MemSource(data.to_vec());
        qvet_digest::digest_file(&src, &[Algo::Md5], &|_| {})
            .unwrap()
            .digests[&Algo::Md5]
            .clone()
    }

    fn catalog_with(name: &str, md5: &str, size: u64) -> Catalog {
        let mut c = Catalog::load(None).unwrap();
        c.add_adhoc(
            source::SUMS_ARG,
            Reference {
                label: "test".into(),
                filename: Some(name.into()),
                size: Some(size),
                digests: BTreeMap::from([(Algo::Md5, md5.into())]),
                ..Reference::default()
            },
        );
        c
    }

    #[test]
    fn verdicts() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"appliance bytes".repeat(100);
        let good = dir.path().join("good.img");
        std::fs::write(&good, &data).unwrap();
        let c = catalog_with("good.img", &md5_hex(&data), data.len() as u64);

        let a = assess(&c, &good, None, &|_| {}).unwrap();
        assert_eq!(a.report.verdict, Verdict::Genuine);
        assert!(a.hashed);
        assert_eq!(a.report.matches[0].entry.id, EntryId::Adhoc(0));
        assert_eq!(a.report.matches[0].algorithm(), "md5");
        assert!(a.report.claims[0].agrees, "the name agrees");
        assert_eq!(a.report.format, Some("raw"));

        // From the cache: nothing read.
        let b = assess(&c, &good, Some(&a.facts), &|_| {}).unwrap();
        assert!(!b.hashed);
        assert_eq!(b.report, a.report);

        // Same name, other bytes: mismatch.
        std::fs::write(&good, b"tampered").unwrap();
        let m = assess(&c, &good, None, &|_| {}).unwrap();
        assert_eq!(m.report.verdict, Verdict::Mismatch);
        assert_eq!(m.report.claims[0].by, ClaimBy::Name);
        assert_eq!(m.report.claims[0].differs, vec![Algo::Md5]);

        // Another name, same size as the reference: only a weak hint.
        let other = dir.path().join("other.img");
        std::fs::write(&other, vec![7u8; data.len()]).unwrap();
        let u = assess(&c, &other, None, &|_| {}).unwrap();
        assert_eq!(u.report.verdict, Verdict::Unknown);
        assert_eq!(u.report.claims.len(), 1);
        assert_eq!(u.report.claims[0].by, ClaimBy::Size);
        let j = u.report.to_json();
        assert_eq!(j["verdict"], "unknown");
        assert_eq!(j["claims"][0]["strength"], "weak");
    }

    #[test]
    fn builtin_superseded_and_expected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir
            .path()
            .join("csr1000v-universalk9.16.07.01-serial.qcow2");
        std::fs::write(&p, b"not the vendor file").unwrap();
        let mut c = Catalog::load(None).unwrap();
        let a = assess(&c, &p, None, &|_| {}).unwrap();
        assert_eq!(a.report.verdict, Verdict::Mismatch);
        // Both the current and the superseded registry rows are claimed.
        assert!(a.report.claims.iter().any(|c| c.entry.reference.superseded));
        assert!(a
            .report
            .claims
            .iter()
            .any(|c| !c.entry.reference.superseded));
        assert!(a
            .report
            .claims
            .iter()
            .all(|c| c.entry.source == source::GNS3_BUILTIN));

        let md5 = md5_hex(b"not the vendor file");
        c.add_adhoc(
            EXPECTED_SOURCE,
            expected_reference(BTreeMap::from([(Algo::Md5, md5)])),
        );
        let g = assess(&c, &p, None, &|_| {}).unwrap();
        assert_eq!(g.report.verdict, Verdict::Genuine);
        assert_eq!(g.report.matches[0].entry.source, EXPECTED_SOURCE);
    }

    #[test]
    fn sidecars() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"some image".to_vec();
        let img = dir.path().join("x.qcow2");
        std::fs::write(&img, &data).unwrap();
        let c = Catalog::load(None).unwrap();
        let sc = sidecar_path(&img);

        std::fs::write(&sc, md5_hex(&data)).unwrap();
        let r = assess(&c, &img, None, &|_| {}).unwrap().report;
        assert_eq!(r.sidecar.unwrap().status, SidecarStatus::Consistent);

        // A registry MD5 in the sidecar: stale or forged, and a claim.
        std::fs::write(&sc, "6abece87d6db99d9fd6917203e253f91\n").unwrap();
        let r = assess(&c, &img, None, &|_| {}).unwrap().report;
        assert_eq!(
            r.sidecar.as_ref().unwrap().status,
            SidecarStatus::StaleOrForged
        );
        assert_eq!(r.verdict, Verdict::Mismatch);
        assert_eq!(r.claims[0].by, ClaimBy::Sidecar);

        std::fs::write(&sc, "xyz").unwrap();
        let r = assess(&c, &img, None, &|_| {}).unwrap().report;
        assert_eq!(r.sidecar.unwrap().status, SidecarStatus::Malformed);
        assert_eq!(r.verdict, Verdict::Unknown);
    }

    /// The report with and without the file digests: everything but the
    /// digests and the note must agree.
    fn same_but_digests(c: &Catalog, p: &Path) -> Assessment {
        let lazy = assess(c, p, None, &|_| {}).unwrap();
        let full = assess_with(c, p, None, Hashing::Always, &|_| {}).unwrap();
        assert!(full.hashed);
        assert_eq!(lazy.report.verdict, full.report.verdict);
        assert_eq!(lazy.report.matches, full.report.matches);
        assert_eq!(lazy.report.claims, full.report.claims);
        assert_eq!(lazy.report.content, full.report.content);
        assert_eq!(lazy.report.sidecar, full.report.sidecar);
        lazy
    }

    fn skipped(a: &Assessment) -> bool {
        a.report
            .notes
            .iter()
            .any(|n| n.starts_with("file digests not computed"))
    }

    #[test]
    fn large_sparse_file_of_no_known_size_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.raw");
        // 2 GiB + 1 MiB, sparse: no registry entry has this size (2 GiB
        // exactly is vios-1.3.qcow2's).
        let size = (2u64 << 30) + (1 << 20);
        std::fs::File::create(&p).unwrap().set_len(size).unwrap();
        let c = Catalog::load(None).unwrap();
        assert!(c.by_size(size).next().is_none());
        let read = std::sync::atomic::AtomicU64::new(0);
        let a = assess(&c, &p, None, &|x| {
            read.fetch_max(x, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(a.report.verdict, Verdict::Unknown);
        assert!(!a.hashed);
        assert_eq!(read.into_inner(), 0);
        assert!(a.report.digests.is_empty());
        assert!(a.facts.digests.is_empty(), "nothing cached as computed");
        assert!(skipped(&a), "{:?}", a.report.notes);
        assert!(a.report.notes[0].contains(&format!("({size} bytes)")));
        let j = a.report.to_json();
        assert_eq!(j["file"], json!({}));
        assert_eq!(j["verdict"], "unknown");
    }

    #[test]
    fn digests_skipped_only_when_they_cannot_matter() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"some other bytes".repeat(10);
        let len = data.len() as u64;
        let p = dir.path().join("image.img");
        std::fs::write(&p, &data).unwrap();
        let builtin = Catalog::load(None).unwrap();
        assert!(builtin.by_size(len).next().is_none());

        // Nothing of this size or name: not hashed, unknown.
        let a = same_but_digests(&builtin, &p);
        assert!(!a.hashed && skipped(&a));
        assert_eq!(a.report.verdict, Verdict::Unknown);

        // An entry of another size but this name: a name claim; hashed, the
        // differing digest is the evidence.
        let c = catalog_with("image.img", &"0".repeat(32), len + 1);
        let a = same_but_digests(&c, &p);
        assert!(a.hashed && !skipped(&a));
        assert_eq!(a.report.verdict, Verdict::Mismatch);
        assert_eq!(a.report.claims[0].by, ClaimBy::Name);
        assert_eq!(a.report.claims[0].differs, vec![Algo::Md5]);

        // A registry name, another size (the built-in rows record sizes).
        let csr = dir
            .path()
            .join("csr1000v-universalk9.16.07.01-serial.qcow2");
        std::fs::write(&csr, &data).unwrap();
        let a = same_but_digests(&builtin, &csr);
        assert!(a.hashed);
        assert_eq!(a.report.verdict, Verdict::Mismatch);

        // An entry of this size: hashed (it could match).
        let c = catalog_with("other.img", &md5_hex(&data), len);
        let a = same_but_digests(&c, &p);
        assert!(a.hashed);
        assert_eq!(a.report.verdict, Verdict::Genuine);

        // A built-in registry .qcow2 entry of this size, while this file is
        // raw: its bytes cannot be that file's; not hashed, and the size
        // claim says every recorded digest differs, as hashing would.
        // The smallest such entry whose size only .qcow2 entries share.
        let qcow2_only = |size: u64| {
            builtin.by_size(size).all(|e| {
                e.reference
                    .filename
                    .as_deref()
                    .is_some_and(|f| f.ends_with(".qcow2"))
            })
        };
        let vios = builtin
            .entries()
            .iter()
            .filter(|e| e.reference.size.is_some_and(qcow2_only))
            .min_by_key(|e| e.reference.size)
            .unwrap()
            .clone();
        let vios_size = vios.reference.size.unwrap();
        let big = dir.path().join("disk.raw");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(vios_size)
            .unwrap();
        let a = same_but_digests(&builtin, &big);
        assert!(!a.hashed && skipped(&a), "{:?}", a.report.notes);
        let claim = a
            .report
            .claims
            .iter()
            .find(|c| c.entry.id == vios.id)
            .unwrap();
        assert_eq!(claim.by, ClaimBy::Size);
        assert_eq!(claim.differs, vec![Algo::Md5]);
        // A user's entry of that size and a .qcow2 name: hashed (a raw
        // image may be recorded under any name).
        let c = catalog_with("vendor.qcow2", &md5_hex(b"qcow2 bytes"), len);
        let a = same_but_digests(&c, &p);
        assert!(a.hashed);

        // An entry of this size without digests: only a size hint; not hashed.
        let mut c = Catalog::load(None).unwrap();
        c.add_adhoc(
            source::SUMS_ARG,
            Reference {
                label: "size only".into(),
                size: Some(len),
                ..Reference::default()
            },
        );
        let a = same_but_digests(&c, &p);
        assert!(!a.hashed && skipped(&a));
        assert_eq!(a.report.claims[0].by, ClaimBy::Size);

        // An entry without a size (a checksum list): hashed.
        let mut c = Catalog::load(None).unwrap();
        c.add_adhoc(
            source::SUMS_ARG,
            Reference {
                label: "sums".into(),
                filename: Some("elsewhere.img".into()),
                digests: BTreeMap::from([(Algo::Sha256, "a".repeat(64))]),
                ..Reference::default()
            },
        );
        let a = same_but_digests(&c, &p);
        assert!(a.hashed);
        assert!(a.report.digests.contains_key(&Algo::Sha256));

        // Expected digests from the command line: hashed, genuine or not.
        let mut c = Catalog::load(None).unwrap();
        c.add_adhoc(
            EXPECTED_SOURCE,
            expected_reference(BTreeMap::from([(Algo::Md5, md5_hex(&data))])),
        );
        let a = same_but_digests(&c, &p);
        assert!(a.hashed);
        assert_eq!(a.report.verdict, Verdict::Genuine);

        // A sidecar needs the MD5: hashed.
        std::fs::write(sidecar_path(&p), md5_hex(&data)).unwrap();
        let a = same_but_digests(&builtin, &p);
        assert!(a.hashed && !skipped(&a));
        assert_eq!(
            a.report.sidecar.as_ref().unwrap().status,
            SidecarStatus::Consistent
        );
    }

    #[test]
    fn cached_digests_are_used_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"cached".repeat(7);
        let p = dir.path().join("c.img");
        std::fs::write(&p, &data).unwrap();
        let c = Catalog::load(None).unwrap();
        // Covering cache: the report is the full one, nothing read.
        let full = assess_with(&c, &p, None, Hashing::Always, &|_| {}).unwrap();
        let a = assess(&c, &p, Some(&full.facts), &|_| {}).unwrap();
        assert!(!a.hashed && !skipped(&a));
        assert_eq!(a.report, full.report);
        // A cache lacking an algorithm now recorded: skipped, but what was
        // cached stays in the facts.
        let mut c2 = Catalog::load(None).unwrap();
        c2.add_adhoc(
            source::SUMS_ARG,
            Reference {
                label: "sized".into(),
                size: Some(1),
                digests: BTreeMap::from([(Algo::Sha256, "b".repeat(64))]),
                ..Reference::default()
            },
        );
        let a = assess(&c2, &p, Some(&full.facts), &|_| {}).unwrap();
        assert!(!a.hashed && skipped(&a));
        assert!(a.report.digests.is_empty());
        assert_eq!(a.facts.digests, full.facts.digests);
    }

    #[test]
    fn content_identical_without_file_digests() {
        let dir = tempfile::tempdir().unwrap();
        // Not 2 MiB: OVMF-20160813.fd has that size.
        let mut data = vec![0u8; (2 << 20) + 512];
        for (i, b) in data.iter_mut().enumerate().take(1 << 20) {
            *b = (i % 241) as u8;
        }
        let p = dir.path().join("converted.raw");
        std::fs::write(&p, &data).unwrap();
        let (mut r, _) = reference_for_image(&p, "mine", None, &|_, _| {}).unwrap();
        // The same guest recorded from another container: another file size
        // and other file digests.
        r.size = Some(r.size.unwrap() + 4096);
        r.filename = Some("original.qcow2".into());
        r.digests = BTreeMap::from([(Algo::Md5, "1".repeat(32))]);
        let mut c = Catalog::load(None).unwrap();
        assert!(c.by_size(data.len() as u64).next().is_none());
        c.add_adhoc(source::SUMS_ARG, r);
        let a = same_but_digests(&c, &p);
        assert!(skipped(&a), "{:?}", a.report.notes);
        assert!(a.hashed, "the guest content was read");
        assert_eq!(a.report.verdict, Verdict::ContentIdentical);
    }

    #[test]
    fn content_identical_and_diff() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 3 << 20];
        for (i, b) in data.iter_mut().enumerate().take(1 << 20) {
            *b = (i % 251) as u8;
        }
        let reference = dir.path().join("ref.raw");
        std::fs::write(&reference, &data).unwrap();
        let (r, notes) = reference_for_image(&reference, "mine", Some("1"), &|_, _| {}).unwrap();
        assert!(notes.is_empty());
        assert_eq!(r.digests.len(), 4);
        assert!(r
            .content
            .as_ref()
            .unwrap()
            .root
            .starts_with("qvet-content-v1:"));
        let mut c = Catalog::load(None).unwrap();
        c.add_adhoc(source::SUMS_ARG, r);

        let a = assess(&c, &reference, None, &|_| {}).unwrap();
        assert_eq!(a.report.verdict, Verdict::Genuine);
        assert!(
            a.report.content.is_none(),
            "no content pass for a genuine file"
        );

        // One changed byte in the third chunk, under the reference's name.
        data[(2 << 20) + 5] = 1;
        let changed = dir.path().join("ref.raw");
        std::fs::write(&changed, &data).unwrap();
        let a = assess(&c, &changed, None, &|_| {}).unwrap();
        assert_eq!(a.report.verdict, Verdict::Mismatch);
        assert_eq!(a.report.claims[0].content_diff, Some((1, 3)));
    }
}
