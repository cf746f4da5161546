//! The user catalog: trusted references (with file-level baselines), scan
//! results and audit verdicts, in SQLite (the zero-setup default) or in a
//! shared PostgreSQL database. [`Store`] is the one interface; both
//! backends keep the same schema, versioned by [`SCHEMA_VERSION`]:
//!
//! * `schema_version(version)`;
//! * `entries` (source, label, filename, version, size, superseded flag,
//!   imported-from, content root / sha256 / virtual size, chunk manifest,
//!   and an `identity` text that makes re-imports idempotent) and
//!   `digests(entry_id, algo, hex)`;
//! * `baselines(entry_id, json)` (version 2): an entry's file-level
//!   baseline as the documented JSON `qvet-audit` reads and writes;
//! * `scan_results` (version 3, replacing version 1's `scan_cache`): per
//!   (host, path), the size, mtime (ns) and inode the file had when hashed,
//!   its digests, content identity, manifest, verdict (JSON and name), the
//!   digest that identifies its content, its backing file and what it
//!   matched;
//! * `audits` (version 3): per (host, path, digest), the audit verdict,
//!   counts by severity and the findings' rule, severity and path.
//!
//! Migrations run in one transaction when a catalog is opened for writing
//! (and by `qvet catalog migrate`); PostgreSQL serialises concurrent
//! migrations with an advisory lock. Read-only opens never migrate: a
//! version-1 or -2 catalog still gives its references (and baselines), and
//! scan or fleet data asks for `qvet catalog migrate`.
//!
//! Reading never creates a catalog: [`Store::open_read_only`] returns
//! `None` when there is none yet.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::location::Location;
use crate::pg::PgStore;
use crate::sqlite::SqliteStore;
use crate::{Algo, CatalogError, ContentRef, Entry, Reference};

/// Schema version this code writes and reads.
pub const SCHEMA_VERSION: i64 = 3;

/// The identity of a file's state for the scan cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKey {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Inode number.
    pub inode: u64,
}

impl FileKey {
    /// The key of a file's metadata.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            size: meta.len(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            inode: meta.ino(),
        }
    }
}

/// What the scan cache remembers about a file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CachedFacts {
    /// File digests computed.
    pub digests: BTreeMap<Algo, String>,
    /// Guest-content identity, when it was computed.
    pub content: Option<ContentRef>,
}

/// One scan result: what a host saw at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRow {
    /// Canonical path on that host.
    pub path: String,
    /// The file's state when hashed.
    pub key: FileKey,
    /// Its facts.
    pub facts: CachedFacts,
    /// The verdict JSON of this scan (empty when not loaded).
    pub verdict: String,
    /// The verdict's name (`genuine`, `mismatch`, …).
    pub verdict_name: String,
    /// The backing file an overlay names, if any.
    pub backing: Option<String>,
    /// What it matched (or claims to be), in a few words.
    pub label: Option<String>,
}

impl CacheRow {
    /// The digest that identifies the file's content across hosts.
    pub fn digest_key(&self) -> Option<String> {
        digest_key(&self.facts.digests)
    }
}

/// A scan result with its host and time, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRecord {
    /// Host name given to `scan --host`.
    pub host: String,
    /// The row.
    pub row: CacheRow,
    /// When it was last scanned (seconds since the epoch).
    pub scanned_at: i64,
    /// The stored [`digest_key`] (as read; writes compute it from the
    /// row's digests).
    pub digest_key: Option<String>,
}

/// An audit verdict stored for an image on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Host.
    pub host: String,
    /// Canonical path on the host.
    pub path: String,
    /// [`digest_key`] of the image audited (empty when unknown).
    pub digest: String,
    /// The audit verdict (`genuine`, `modified`, `tampered`, …).
    pub verdict: String,
    /// Findings per severity, as a JSON object.
    pub counts: String,
    /// The findings' rule, severity and path, as a JSON array.
    pub findings: String,
    /// When (seconds since the epoch).
    pub audited_at: i64,
}

/// Whether [`Store::add`] inserted an entry or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// New entry with this ID.
    New(i64),
    /// Identical entry already present with this ID.
    Existing(i64),
}

/// `strongest-algo:hex`: the digest that names a file's content.
pub fn digest_key(d: &BTreeMap<Algo, String>) -> Option<String> {
    [Algo::Sha256, Algo::Sha512, Algo::Sha1, Algo::Md5]
        .into_iter()
        .find_map(|a| d.get(&a).map(|h| format!("{}:{h}", a.name())))
        .or_else(|| d.iter().next().map(|(a, h)| format!("{}:{h}", a.name())))
}

/// Verdict name, backing file and label from a stored verdict JSON (for
/// rows written before these had columns).
pub(crate) fn derive_from_verdict(verdict: &str) -> (String, Option<String>, Option<String>) {
    let v: serde_json::Value = serde_json::from_str(verdict).unwrap_or_default();
    let name = v
        .get("verdict")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let backing = v
        .pointer("/overlay/backing_path")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string);
    let label = v
        .pointer("/matches/0/entry/label")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string);
    (name, backing, label)
}

/// `u64` → SQL integer, bit for bit (inodes may use the top bit).
pub(crate) fn to_sql(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

pub(crate) fn from_sql(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn digests_text(d: &BTreeMap<Algo, String>) -> String {
    serde_json::Value::Object(
        d.iter()
            .map(|(a, h)| (a.name().to_string(), serde_json::Value::String(h.clone())))
            .collect(),
    )
    .to_string()
}

pub(crate) fn digests_from_text(s: &str) -> BTreeMap<Algo, String> {
    let v: serde_json::Value = serde_json::from_str(s).unwrap_or_default();
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((Algo::from_name(k)?, v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn identity(source: &str, r: &Reference) -> String {
    serde_json::json!([
        source,
        r.label,
        r.filename,
        r.version,
        r.size,
        digests_text(&r.digests),
        r.content.as_ref().map(|c| c.root.clone()),
        r.superseded,
    ])
    .to_string()
}

/// This machine's host name (`/proc/sys/kernel/hostname`, `/etc/hostname`,
/// else `localhost`).
pub fn local_hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            let s = std::fs::read_to_string(p).ok()?;
            let s = s.trim();
            (!s.is_empty() && s.len() <= 255).then(|| s.to_string())
        })
        .unwrap_or_else(|| "localhost".into())
}

/// The backends.
#[derive(Debug)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(Box<PgStore>),
}

/// An open user catalog.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
    location: Location,
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match &$self.backend {
            Backend::Sqlite($s) => $e,
            Backend::Postgres($s) => $e,
        }
    };
}

macro_rules! each_mut {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.backend {
            Backend::Sqlite($s) => $e,
            Backend::Postgres($s) => $e,
        }
    };
}

impl Store {
    /// Opens an existing catalog read-only; `None` when there is none yet
    /// (no file, an empty file, or a database without qvet's tables).
    /// Never creates nor migrates anything.
    ///
    /// # Errors
    /// Not a qvet catalog, a newer schema, or the server cannot be reached.
    pub fn open_read_only(location: &Location) -> Result<Option<Self>, CatalogError> {
        let backend = match location {
            Location::Sqlite(p) => SqliteStore::open_read_only(p)?.map(Backend::Sqlite),
            Location::Postgres(u) => {
                PgStore::open_read_only(u)?.map(|s| Backend::Postgres(Box::new(s)))
            }
        };
        Ok(backend.map(|backend| Self {
            backend,
            location: location.clone(),
        }))
    }

    /// Opens the catalog for writing: creates it (an SQLite file and its
    /// directory) and applies pending migrations.
    ///
    /// # Errors
    /// The catalog cannot be created or migrated, is not a qvet catalog,
    /// or (PostgreSQL) the role may only read it ([`CatalogError::ReadOnly`]).
    pub fn open_or_create(location: &Location) -> Result<Self, CatalogError> {
        Ok(Self::migrate(location)?.0)
    }

    /// Opens for writing and migrates; also returns the schema version
    /// found before (`None`: a new catalog).
    ///
    /// # Errors
    /// As [`Store::open_or_create`].
    pub fn migrate(location: &Location) -> Result<(Self, Option<i64>), CatalogError> {
        let (backend, before) = match location {
            Location::Sqlite(p) => {
                let (s, v) = SqliteStore::open_or_create(p)?;
                (Backend::Sqlite(s), v)
            }
            Location::Postgres(u) => {
                let (s, v) = PgStore::open_or_create(u)?;
                (Backend::Postgres(Box::new(s)), v)
            }
        };
        Ok((
            Self {
                backend,
                location: location.clone(),
            },
            before,
        ))
    }

    /// Where the catalog is (displays without a password).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The schema version of the open catalog.
    pub fn version(&self) -> i64 {
        each!(self, s => s.version())
    }

    /// Adds references from `source` in one transaction; an identical entry
    /// (same source, label, name, version, size, digests, content root) is
    /// not added twice.
    ///
    /// # Errors
    /// Database errors.
    pub fn add(&mut self, source: &str, refs: &[Reference]) -> Result<Vec<Added>, CatalogError> {
        each_mut!(self, s => s.add(source, refs))
    }

    /// Every entry, by ID.
    ///
    /// # Errors
    /// Database errors.
    pub fn entries(&self) -> Result<Vec<Entry>, CatalogError> {
        each!(self, s => s.load(None))
    }

    /// One entry.
    ///
    /// # Errors
    /// Database errors.
    pub fn entry(&self, id: i64) -> Result<Option<Entry>, CatalogError> {
        Ok(each!(self, s => s.load(Some(id)))?.into_iter().next())
    }

    /// Removes an entry (and its baseline); `false` when there was none.
    ///
    /// # Errors
    /// Database errors.
    pub fn remove(&mut self, id: i64) -> Result<bool, CatalogError> {
        each_mut!(self, s => s.remove(id))
    }

    /// Stores (or replaces) the file-level baseline of entry `id`.
    ///
    /// # Errors
    /// Database errors.
    pub fn put_baseline(&mut self, id: i64, json: &str) -> Result<(), CatalogError> {
        each_mut!(self, s => s.put_baseline(id, json))
    }

    /// The file-level baseline of entry `id`, when one was recorded (a
    /// version-1 catalog has none).
    ///
    /// # Errors
    /// Database errors.
    pub fn baseline(&self, id: i64) -> Result<Option<String>, CatalogError> {
        if self.version() < 2 {
            return Ok(None);
        }
        each!(self, s => s.baseline(id))
    }

    /// Every stored baseline, by entry ID.
    ///
    /// # Errors
    /// Database errors.
    pub fn baselines(&self) -> Result<Vec<(i64, String)>, CatalogError> {
        if self.version() < 2 {
            return Ok(Vec::new());
        }
        each!(self, s => s.baselines())
    }

    fn need_v3(&self, what: &str) -> Result<(), CatalogError> {
        let v = self.version();
        if v < SCHEMA_VERSION {
            return Err(CatalogError::Schema {
                path: self.location.to_string().into(),
                why: format!(
                    "schema version {v} has no {what} (version {SCHEMA_VERSION} does); \
                     run `qvet catalog migrate` with a role that may alter the catalog"
                ),
            });
        }
        Ok(())
    }

    /// Cached facts for `path` on `host` if the file still has the cached
    /// `key`.
    ///
    /// # Errors
    /// Database errors.
    pub fn cache_get(
        &self,
        host: &str,
        path: &str,
        key: &FileKey,
    ) -> Result<Option<CachedFacts>, CatalogError> {
        if self.version() < SCHEMA_VERSION {
            return Ok(None);
        }
        each!(self, s => s.cache_get(host, path, key))
    }

    /// [`Store::cache_get`] for many files at once (one query per thousand
    /// on PostgreSQL), in the order given.
    ///
    /// # Errors
    /// Database errors.
    pub fn cache_get_many(
        &self,
        host: &str,
        files: &[(String, FileKey)],
    ) -> Result<Vec<Option<CachedFacts>>, CatalogError> {
        if self.version() < SCHEMA_VERSION {
            return Ok(vec![None; files.len()]);
        }
        match &self.backend {
            Backend::Sqlite(s) => files.iter().map(|(p, k)| s.cache_get(host, p, k)).collect(),
            Backend::Postgres(s) => s.cache_get_many(host, files),
        }
    }

    /// Upserts scan results of `host` by (host, path), in one transaction.
    ///
    /// # Errors
    /// Database errors; nothing is written then.
    pub fn cache_put(&mut self, host: &str, rows: &[CacheRow]) -> Result<(), CatalogError> {
        self.need_v3("scan results")?;
        let mut sorted: Vec<&CacheRow> = rows.iter().collect();
        // One lock order for every writer: concurrent upserts cannot deadlock.
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        let records: Vec<ScanRecord> = sorted
            .into_iter()
            .map(|r| ScanRecord {
                host: host.to_string(),
                row: r.clone(),
                scanned_at: now(),
                digest_key: r.digest_key(),
            })
            .collect();
        each_mut!(self, s => s.put_scans(&records, false))
    }

    /// Merges scan records (an import): a row replaces the stored one of
    /// the same (host, path) only when it is at least as recent.
    ///
    /// # Errors
    /// Database errors; nothing is written then.
    pub fn merge_scans(&mut self, records: &[ScanRecord]) -> Result<(), CatalogError> {
        self.need_v3("scan results")?;
        let mut sorted = records.to_vec();
        sorted.sort_by(|a, b| (&a.host, &a.row.path).cmp(&(&b.host, &b.row.path)));
        each_mut!(self, s => s.put_scans(&sorted, true))
    }

    /// Every scan result, by host and path; with `full`, everything (for
    /// export), else only what the fleet view needs (no digests, content
    /// identity or verdict JSON: the digest key names the content).
    ///
    /// # Errors
    /// Database errors, or a catalog older than version 3.
    pub fn scans(&self, full: bool) -> Result<Vec<ScanRecord>, CatalogError> {
        self.need_v3("scan results")?;
        each!(self, s => s.scans(full))
    }

    /// Number of scan results.
    ///
    /// # Errors
    /// Database errors.
    pub fn cache_len(&self) -> Result<u64, CatalogError> {
        if self.version() < SCHEMA_VERSION {
            return Ok(0);
        }
        each!(self, s => s.cache_len())
    }

    /// Stores audit verdicts (upsert by host, path, digest), in one
    /// transaction.
    ///
    /// # Errors
    /// Database errors.
    pub fn put_audits(&mut self, audits: &[AuditRecord]) -> Result<(), CatalogError> {
        self.need_v3("audit verdicts")?;
        let mut sorted = audits.to_vec();
        sorted.sort_by(|a, b| (&a.host, &a.path, &a.digest).cmp(&(&b.host, &b.path, &b.digest)));
        each_mut!(self, s => s.put_audits(&sorted))
    }

    /// Every stored audit verdict.
    ///
    /// # Errors
    /// Database errors, or a catalog older than version 3.
    pub fn audits(&self) -> Result<Vec<AuditRecord>, CatalogError> {
        self.need_v3("audit verdicts")?;
        each!(self, s => s.audits())
    }
}

/// Creates an empty catalog at an older schema version `version` (1 or 2),
/// as earlier qvet releases did: for migration tests.
///
/// # Errors
/// Database errors.
#[doc(hidden)]
pub fn create_at_version(location: &Location, version: i64) -> Result<(), CatalogError> {
    match location {
        Location::Sqlite(p) => crate::sqlite::create_at_version(p, version),
        Location::Postgres(u) => crate::pg::create_at_version(u, version),
    }
}
