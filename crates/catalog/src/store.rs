//! The user catalog: an SQLite database of trusted references and the scan
//! cache.
//!
//! Tables (schema version [`SCHEMA_VERSION`]):
//! * `schema_version(version)`;
//! * `entries`: source, label, filename, version, size, superseded flag,
//!   imported-from, content root / sha256 / virtual size and the chunk
//!   manifest blob, and an `identity` text that makes re-imports idempotent;
//! * `digests(entry_id, algo, hex)`: one row per algorithm;
//! * `scan_cache`: per file path, the size, mtime (ns) and inode it had when
//!   hashed, its digests, content identity, manifest and last verdict;
//! * `baselines(entry_id, json)` (version 2): an entry's file-level
//!   baseline (every file's path, type, mode, owner, size, sha256, link
//!   target per partition), stored as the documented JSON `qvet-audit`
//!   reads and writes.
//!
//! Migrations: a version-1 catalog opened for writing is upgraded in one
//! transaction (the `baselines` table is added); read-only opens of a
//! version-1 catalog work and simply have no baselines.
//!
//! Reading never creates the database: [`Store::open_read_only`] returns
//! `None` when it does not exist.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use crate::{Algo, CatalogError, ContentRef, Entry, EntryId, Reference};

/// Schema version this code writes and reads.
pub const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    label TEXT NOT NULL,
    filename TEXT,
    version TEXT,
    size INTEGER,
    superseded INTEGER NOT NULL DEFAULT 0,
    imported_from TEXT,
    content_root TEXT,
    content_sha256 TEXT,
    virtual_size INTEGER,
    manifest BLOB,
    added_at INTEGER NOT NULL,
    identity TEXT NOT NULL UNIQUE
);
CREATE TABLE digests (
    entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    algo TEXT NOT NULL,
    hex TEXT NOT NULL,
    PRIMARY KEY (entry_id, algo)
);
CREATE INDEX digests_by_value ON digests(algo, hex);
CREATE INDEX entries_by_filename ON entries(filename);
CREATE INDEX entries_by_root ON entries(content_root);
CREATE TABLE scan_cache (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    digests TEXT NOT NULL,
    content_root TEXT,
    content_sha256 TEXT,
    virtual_size INTEGER,
    manifest BLOB,
    verdict TEXT NOT NULL,
    scanned_at INTEGER NOT NULL
);
";

/// Version 1 → 2: file-level baselines.
const MIGRATE_2: &str = "
CREATE TABLE baselines (
    entry_id INTEGER PRIMARY KEY REFERENCES entries(id) ON DELETE CASCADE,
    json TEXT NOT NULL
);
";

/// Whether the `baselines` table exists (schema version ≥ 2).
fn self_version_has_baselines(conn: &Connection) -> bool {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'baselines'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .is_ok_and(|n| n > 0)
}

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

/// One scan cache row to write.
#[derive(Debug, Clone)]
pub struct CacheRow {
    /// Canonical path.
    pub path: String,
    /// The file's state when hashed.
    pub key: FileKey,
    /// Its facts.
    pub facts: CachedFacts,
    /// The verdict JSON of this scan.
    pub verdict: String,
}

/// Whether [`Store::add`] inserted an entry or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// New entry with this ID.
    New(i64),
    /// Identical entry already present with this ID.
    Existing(i64),
}

/// An open user catalog.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// `u64` → SQLite integer, bit for bit (inodes may use the top bit).
fn to_sql(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

fn from_sql(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn digests_text(d: &BTreeMap<Algo, String>) -> String {
    serde_json::Value::Object(
        d.iter()
            .map(|(a, h)| (a.name().to_string(), serde_json::Value::String(h.clone())))
            .collect(),
    )
    .to_string()
}

fn digests_from_text(s: &str) -> BTreeMap<Algo, String> {
    let v: serde_json::Value = serde_json::from_str(s).unwrap_or_default();
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((Algo::from_name(k)?, v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn identity(source: &str, r: &Reference) -> String {
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

impl Store {
    fn db_err(&self, error: rusqlite::Error) -> CatalogError {
        CatalogError::Db {
            path: self.path.clone(),
            error,
        }
    }

    /// Opens an existing catalog read-only; `None` when there is no file
    /// (or an empty one). Never creates anything.
    ///
    /// # Errors
    /// The file is not a qvet catalog, or has a newer schema.
    pub fn open_read_only(path: &Path) -> Result<Option<Self>, CatalogError> {
        match std::fs::metadata(path) {
            Ok(m) if m.len() == 0 => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(CatalogError::Io {
                    path: path.to_path_buf(),
                    error,
                })
            }
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| CatalogError::Db {
            path: path.to_path_buf(),
            error,
        })?;
        let store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store.set_timeout()?;
        if store.table_count()? == 0 {
            return Ok(None);
        }
        store.check_version()?;
        Ok(Some(store))
    }

    /// Opens the catalog for writing, creating the file (and its directory)
    /// and the schema when needed.
    ///
    /// # Errors
    /// The directory or database cannot be created, or the file is not a
    /// qvet catalog.
    pub fn open_or_create(path: &Path) -> Result<Self, CatalogError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| CatalogError::Io {
                path: dir.to_path_buf(),
                error,
            })?;
        }
        let conn = Connection::open(path).map_err(|error| CatalogError::Db {
            path: path.to_path_buf(),
            error,
        })?;
        let mut store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store.set_timeout()?;
        if store.table_count()? == 0 {
            let tx = store.conn.transaction().map_err(|e| CatalogError::Db {
                path: path.to_path_buf(),
                error: e,
            })?;
            tx.execute_batch(SCHEMA)
                .and_then(|()| tx.execute_batch(MIGRATE_2))
                .and_then(|()| {
                    tx.execute(
                        "INSERT INTO schema_version (version) VALUES (?1)",
                        params![SCHEMA_VERSION],
                    )
                })
                .and_then(|_| tx.commit())
                .map_err(|error| CatalogError::Db {
                    path: path.to_path_buf(),
                    error,
                })?;
        }
        if store.version()? == Some(1) {
            let tx = store.conn.transaction().map_err(|e| CatalogError::Db {
                path: path.to_path_buf(),
                error: e,
            })?;
            tx.execute_batch(MIGRATE_2)
                .and_then(|()| tx.execute("INSERT INTO schema_version (version) VALUES (2)", []))
                .and_then(|_| tx.commit())
                .map_err(|error| CatalogError::Db {
                    path: path.to_path_buf(),
                    error,
                })?;
        }
        store.check_version()?;
        Ok(store)
    }

    /// The schema version recorded.
    fn version(&self) -> Result<Option<i64>, CatalogError> {
        self.conn
            .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
            .map_err(|_| CatalogError::Schema {
                path: self.path.clone(),
                why: "not a qvet catalog (no schema_version table)".into(),
            })
    }

    /// Stores (or replaces) the file-level baseline of entry `id`.
    ///
    /// # Errors
    /// Database errors.
    pub fn put_baseline(&mut self, id: i64, json: &str) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "INSERT INTO baselines (entry_id, json) VALUES (?1, ?2)
                 ON CONFLICT(entry_id) DO UPDATE SET json = excluded.json",
                params![id, json],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// The file-level baseline of entry `id`, when one was recorded (a
    /// version-1 catalog has none).
    ///
    /// # Errors
    /// Database errors.
    pub fn baseline(&self, id: i64) -> Result<Option<String>, CatalogError> {
        if self.version()? == Some(1) {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT json FROM baselines WHERE entry_id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db_err(e))
    }

    fn set_timeout(&self) -> Result<(), CatalogError> {
        self.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| self.db_err(e))
    }

    fn table_count(&self) -> Result<i64, CatalogError> {
        self.conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|error| match error {
                rusqlite::Error::SqliteFailure(..) => CatalogError::Schema {
                    path: self.path.clone(),
                    why: format!("not an SQLite database ({error})"),
                },
                error => self.db_err(error),
            })
    }

    fn check_version(&self) -> Result<(), CatalogError> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
            .map_err(|_| CatalogError::Schema {
                path: self.path.clone(),
                why: "not a qvet catalog (no schema_version table)".into(),
            })?;
        match v {
            Some(SCHEMA_VERSION) => Ok(()),
            // Readable as is: it only lacks baselines.
            Some(1) => Ok(()),
            Some(v) => Err(CatalogError::Schema {
                path: self.path.clone(),
                why: format!("schema version {v}; this qvet reads version {SCHEMA_VERSION}"),
            }),
            None => Err(CatalogError::Schema {
                path: self.path.clone(),
                why: "empty schema_version table".into(),
            }),
        }
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds references from `source` in one transaction; an identical entry
    /// (same source, label, name, version, size, digests, content root) is
    /// not added twice.
    ///
    /// # Errors
    /// Database errors.
    pub fn add(&mut self, source: &str, refs: &[Reference]) -> Result<Vec<Added>, CatalogError> {
        let path = self.path.clone();
        let err = |error| CatalogError::Db {
            path: path.clone(),
            error,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let mut out = Vec::with_capacity(refs.len());
        {
            let mut find = tx
                .prepare("SELECT id FROM entries WHERE identity = ?1")
                .map_err(err)?;
            let mut insert = tx
                .prepare(
                    "INSERT INTO entries (source, label, filename, version, size, superseded,
                        imported_from, content_root, content_sha256, virtual_size, manifest,
                        added_at, identity)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .map_err(err)?;
            let mut digest = tx
                .prepare("INSERT INTO digests (entry_id, algo, hex) VALUES (?1, ?2, ?3)")
                .map_err(err)?;
            for r in refs {
                let ident = identity(source, r);
                if let Some(id) = find
                    .query_row(params![ident], |row| row.get::<_, i64>(0))
                    .optional()
                    .map_err(err)?
                {
                    out.push(Added::Existing(id));
                    continue;
                }
                let c = r.content.as_ref();
                insert
                    .execute(params![
                        source,
                        r.label,
                        r.filename,
                        r.version,
                        r.size.map(to_sql),
                        r.superseded,
                        r.imported_from,
                        c.map(|c| c.root.clone()),
                        c.map(|c| c.sha256.clone()),
                        c.map(|c| to_sql(c.virtual_size)),
                        c.and_then(|c| c.manifest.clone()),
                        now(),
                        ident,
                    ])
                    .map_err(err)?;
                let id = tx.last_insert_rowid();
                for (a, h) in &r.digests {
                    digest.execute(params![id, a.name(), h]).map_err(err)?;
                }
                out.push(Added::New(id));
            }
        }
        tx.commit().map_err(err)?;
        Ok(out)
    }

    fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<(i64, String, Reference)> {
        let root: Option<String> = row.get("content_root")?;
        let content = match root {
            Some(root) => Some(ContentRef {
                root,
                sha256: row
                    .get::<_, Option<String>>("content_sha256")?
                    .unwrap_or_default(),
                virtual_size: row
                    .get::<_, Option<i64>>("virtual_size")?
                    .map(from_sql)
                    .unwrap_or(0),
                manifest: row.get("manifest")?,
            }),
            None => None,
        };
        Ok((
            row.get("id")?,
            row.get("source")?,
            Reference {
                label: row.get("label")?,
                filename: row.get("filename")?,
                version: row.get("version")?,
                size: row.get::<_, Option<i64>>("size")?.map(from_sql),
                digests: BTreeMap::new(),
                content,
                superseded: row.get("superseded")?,
                imported_from: row.get("imported_from")?,
            },
        ))
    }

    fn load(&self, where_id: Option<i64>) -> Result<Vec<Entry>, CatalogError> {
        let err = |e| self.db_err(e);
        let sql = match where_id {
            Some(_) => "SELECT * FROM entries WHERE id = ?1",
            None => "SELECT * FROM entries WHERE ?1 IS NULL ORDER BY id",
        };
        let mut stmt = self.conn.prepare(sql).map_err(err)?;
        let rows: Vec<(i64, String, Reference)> = stmt
            .query_map(params![where_id], Self::entry_from_row)
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let mut dstmt = self
            .conn
            .prepare("SELECT entry_id, algo, hex FROM digests WHERE ?1 IS NULL OR entry_id = ?1")
            .map_err(err)?;
        let mut digests: BTreeMap<i64, BTreeMap<Algo, String>> = BTreeMap::new();
        let drows = dstmt
            .query_map(params![where_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(err)?;
        for d in drows {
            let (id, algo, hex) = d.map_err(err)?;
            if let Some(a) = Algo::from_name(&algo) {
                digests.entry(id).or_default().insert(a, hex);
            }
        }
        Ok(rows
            .into_iter()
            .map(|(id, source, mut reference)| {
                reference.digests = digests.remove(&id).unwrap_or_default();
                Entry {
                    id: EntryId::User(id),
                    source,
                    reference,
                }
            })
            .collect())
    }

    /// Every entry, by ID.
    ///
    /// # Errors
    /// Database errors.
    pub fn entries(&self) -> Result<Vec<Entry>, CatalogError> {
        self.load(None)
    }

    /// One entry.
    ///
    /// # Errors
    /// Database errors.
    pub fn entry(&self, id: i64) -> Result<Option<Entry>, CatalogError> {
        Ok(self.load(Some(id))?.into_iter().next())
    }

    /// Removes an entry; `false` when there was none.
    ///
    /// # Errors
    /// Database errors.
    pub fn remove(&mut self, id: i64) -> Result<bool, CatalogError> {
        let path = self.path.clone();
        let err = |error| CatalogError::Db {
            path: path.clone(),
            error,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute("DELETE FROM digests WHERE entry_id = ?1", params![id])
            .map_err(err)?;
        if self_version_has_baselines(&tx) {
            tx.execute("DELETE FROM baselines WHERE entry_id = ?1", params![id])
                .map_err(err)?;
        }
        let n = tx
            .execute("DELETE FROM entries WHERE id = ?1", params![id])
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(n > 0)
    }

    /// Cached facts for `path` if the file still has the cached `key`.
    ///
    /// # Errors
    /// Database errors.
    pub fn cache_get(
        &self,
        path: &str,
        key: &FileKey,
    ) -> Result<Option<CachedFacts>, CatalogError> {
        self.conn
            .query_row(
                "SELECT digests, content_root, content_sha256, virtual_size, manifest
                 FROM scan_cache WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3 AND inode = ?4",
                params![path, to_sql(key.size), key.mtime_ns, to_sql(key.inode)],
                |r| {
                    let root: Option<String> = r.get(1)?;
                    let content = match root {
                        Some(root) => Some(ContentRef {
                            root,
                            sha256: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                            virtual_size: r.get::<_, Option<i64>>(3)?.map(from_sql).unwrap_or(0),
                            manifest: r.get(4)?,
                        }),
                        None => None,
                    };
                    Ok(CachedFacts {
                        digests: digests_from_text(&r.get::<_, String>(0)?),
                        content,
                    })
                },
            )
            .optional()
            .map_err(|e| self.db_err(e))
    }

    /// Writes scan results, replacing older rows of the same paths, in one
    /// transaction.
    ///
    /// # Errors
    /// Database errors.
    pub fn cache_put(&mut self, rows: &[CacheRow]) -> Result<(), CatalogError> {
        let path = self.path.clone();
        let err = |error| CatalogError::Db {
            path: path.clone(),
            error,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT OR REPLACE INTO scan_cache (path, size, mtime_ns, inode, digests,
                        content_root, content_sha256, virtual_size, manifest, verdict, scanned_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(err)?;
            let t = now();
            for row in rows {
                let c = row.facts.content.as_ref();
                stmt.execute(params![
                    row.path,
                    to_sql(row.key.size),
                    row.key.mtime_ns,
                    to_sql(row.key.inode),
                    digests_text(&row.facts.digests),
                    c.map(|c| c.root.clone()),
                    c.map(|c| c.sha256.clone()),
                    c.map(|c| to_sql(c.virtual_size)),
                    c.and_then(|c| c.manifest.clone()),
                    row.verdict,
                    t,
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Number of scan cache rows.
    ///
    /// # Errors
    /// Database errors.
    pub fn cache_len(&self) -> Result<u64, CatalogError> {
        self.conn
            .query_row("SELECT count(*) FROM scan_cache", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(from_sql)
            .map_err(|e| self.db_err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_catalog_is_read_then_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute("INSERT INTO schema_version (version) VALUES (1)", [])
                .unwrap();
        }
        let ro = Store::open_read_only(&path).unwrap().unwrap();
        assert_eq!(ro.baseline(1).unwrap(), None);
        drop(ro);
        let mut rw = Store::open_or_create(&path).unwrap();
        assert_eq!(rw.version().unwrap(), Some(2));
        let added = rw
            .add(
                "user",
                &[Reference {
                    label: "x".into(),
                    ..Reference::default()
                }],
            )
            .unwrap();
        let Some(Added::New(id)) = added.first().cloned() else {
            panic!("{added:?}")
        };
        rw.put_baseline(id, "{\"schema\":1}").unwrap();
        rw.put_baseline(id, "{\"schema\":2}").unwrap();
        assert_eq!(rw.baseline(id).unwrap().as_deref(), Some("{\"schema\":2}"));
        assert!(rw.remove(id).unwrap());
        assert_eq!(rw.baseline(id).unwrap(), None);
        // Opening again does not migrate twice.
        drop(rw);
        assert_eq!(
            Store::open_or_create(&path).unwrap().version().unwrap(),
            Some(2)
        );
    }

    fn sample() -> Reference {
        Reference {
            label: "lab".into(),
            filename: Some("a.qcow2".into()),
            version: Some("1.0".into()),
            size: Some(1234),
            digests: BTreeMap::from([(Algo::Md5, "0".repeat(32)), (Algo::Sha256, "1".repeat(64))]),
            content: Some(ContentRef {
                root: "qvet-content-v1:ab".into(),
                sha256: "2".repeat(64),
                virtual_size: 1 << 20,
                manifest: Some(vec![1, 2, 3]),
            }),
            superseded: false,
            imported_from: Some("/x".into()),
        }
    }

    #[test]
    fn read_only_never_creates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("catalog.sqlite");
        assert!(Store::open_read_only(&p).unwrap().is_none());
        assert!(!p.exists());
        assert!(!p.parent().unwrap().exists());
    }

    #[test]
    fn add_list_show_remove() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("catalog.sqlite");
        let mut s = Store::open_or_create(&p).unwrap();
        let r = sample();
        let added = s.add("user", &[r.clone(), r.clone()]).unwrap();
        let Added::New(id) = added[0] else {
            panic!("{added:?}")
        };
        assert_eq!(added[1], Added::Existing(id));
        drop(s);
        let s = Store::open_read_only(&p).unwrap().unwrap();
        let all = s.entries().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].reference, r);
        assert_eq!(all[0].source, "user");
        assert_eq!(s.entry(id).unwrap().unwrap().reference, r);
        assert!(s.entry(id + 1).unwrap().is_none());
        drop(s);
        let mut s = Store::open_or_create(&p).unwrap();
        assert!(s.remove(id).unwrap());
        assert!(!s.remove(id).unwrap());
        assert!(s.entries().unwrap().is_empty());
    }

    #[test]
    fn scan_cache_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("catalog.sqlite");
        let mut s = Store::open_or_create(&p).unwrap();
        let key = FileKey {
            size: 10,
            mtime_ns: 5,
            inode: u64::MAX,
        };
        let facts = CachedFacts {
            digests: BTreeMap::from([(Algo::Md5, "0".repeat(32))]),
            content: None,
        };
        s.cache_put(&[CacheRow {
            path: "/a".into(),
            key,
            facts: facts.clone(),
            verdict: "{}".into(),
        }])
        .unwrap();
        assert_eq!(s.cache_get("/a", &key).unwrap(), Some(facts));
        let touched = FileKey { mtime_ns: 6, ..key };
        assert_eq!(s.cache_get("/a", &touched).unwrap(), None);
        assert_eq!(s.cache_get("/b", &key).unwrap(), None);
        assert_eq!(s.cache_len().unwrap(), 1);
    }

    #[test]
    fn foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("not-a-db");
        std::fs::write(&p, b"hello, this is not sqlite at all, really not").unwrap();
        assert!(Store::open_read_only(&p).is_err());
        assert!(Store::open_or_create(&p).is_err());
        let q = dir.path().join("other.sqlite");
        let c = Connection::open(&q).unwrap();
        c.execute_batch("CREATE TABLE t (x INTEGER);").unwrap();
        drop(c);
        let e = Store::open_or_create(&q).unwrap_err();
        assert!(e.to_string().contains("not a qvet catalog"), "{e}");
    }
}
