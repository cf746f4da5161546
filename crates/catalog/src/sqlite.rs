//! The SQLite backend of [`crate::Store`]: one file, the zero-setup default.
//!
//! Writers take the database lock before reading the schema version
//! (`BEGIN IMMEDIATE`), so concurrent first uses and migrations of one file
//! do not race; every other wait is SQLite's busy timeout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};

use crate::store::{
    derive_from_verdict, digest_key, digests_from_text, digests_text, from_sql, identity, now,
    to_sql, Added, AuditRecord, CacheRow, CachedFacts, FileKey, ScanRecord, SCHEMA_VERSION,
};
use crate::{Algo, CatalogError, ContentRef, Entry, EntryId, Reference};

/// Version 1: references and the path-keyed scan cache.
const SCHEMA_1: &str = "
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

/// Version 2 → 3: scan results keyed by (host, path), audit verdicts. The
/// old cache rows are kept under the host doing the migration.
const MIGRATE_3: &str = "
CREATE TABLE scan_results (
    host TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    digests TEXT NOT NULL,
    content_root TEXT,
    content_sha256 TEXT,
    virtual_size INTEGER,
    manifest BLOB,
    verdict TEXT NOT NULL,
    verdict_name TEXT NOT NULL,
    digest_key TEXT,
    backing TEXT,
    label TEXT,
    scanned_at INTEGER NOT NULL,
    PRIMARY KEY (host, path)
);
INSERT INTO scan_results (host, path, size, mtime_ns, inode, digests, content_root,
    content_sha256, virtual_size, manifest, verdict, verdict_name, scanned_at)
    SELECT '', path, size, mtime_ns, inode, digests, content_root, content_sha256,
        virtual_size, manifest, verdict, '', scanned_at FROM scan_cache;
DROP TABLE scan_cache;
CREATE INDEX scan_results_by_digest ON scan_results(digest_key);
CREATE TABLE audits (
    host TEXT NOT NULL,
    path TEXT NOT NULL,
    digest TEXT NOT NULL,
    verdict TEXT NOT NULL,
    counts TEXT NOT NULL,
    findings TEXT NOT NULL,
    audited_at INTEGER NOT NULL,
    PRIMARY KEY (host, path, digest)
);
";

/// The migrations, by the version they reach.
const STEPS: [(i64, &str); 3] = [(1, SCHEMA_1), (2, MIGRATE_2), (3, MIGRATE_3)];

const SCAN_COLUMNS: &str = "host, path, size, mtime_ns, inode, digests, content_root, \
    content_sha256, virtual_size, manifest, verdict, verdict_name, digest_key, backing, label, \
    scanned_at";

/// An open SQLite catalog.
#[derive(Debug)]
pub(crate) struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    version: i64,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> CatalogError + '_ {
    move |error| CatalogError::Db {
        path: path.to_path_buf(),
        error,
    }
}

fn not_qvet(path: &Path) -> CatalogError {
    CatalogError::Schema {
        path: path.to_path_buf(),
        why: "not a qvet catalog (no schema_version table)".into(),
    }
}

/// Tables in the database; an error when the file is not SQLite.
fn table_count(conn: &Connection, path: &Path) -> Result<i64, CatalogError> {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|error| match error {
            rusqlite::Error::SqliteFailure(..) => CatalogError::Schema {
                path: path.to_path_buf(),
                why: format!("not an SQLite database ({error})"),
            },
            error => CatalogError::Db {
                path: path.to_path_buf(),
                error,
            },
        })
}

fn read_version(conn: &Connection, path: &Path) -> Result<i64, CatalogError> {
    let v: Option<i64> = conn
        .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
        .map_err(|_| not_qvet(path))?;
    match v {
        Some(v @ 1..=SCHEMA_VERSION) => Ok(v),
        Some(v) => Err(CatalogError::Schema {
            path: path.to_path_buf(),
            why: format!("schema version {v}; this qvet reads versions 1 to {SCHEMA_VERSION}"),
        }),
        None => Err(CatalogError::Schema {
            path: path.to_path_buf(),
            why: "empty schema_version table".into(),
        }),
    }
}

fn set_timeout(conn: &Connection, path: &Path) -> Result<(), CatalogError> {
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(db_err(path))
}

/// Fills the columns version 3 added for rows carried over from the
/// version-1 cache.
fn fill_derived(tx: &Connection, path: &Path) -> Result<(), CatalogError> {
    let err = db_err(path);
    tx.execute(
        "UPDATE scan_results SET host = ?1 WHERE host = ''",
        params![crate::store::local_hostname()],
    )
    .map_err(&err)?;
    let rows: Vec<(String, String, String, String)> = {
        let mut stmt = tx
            .prepare(
                "SELECT host, path, digests, verdict FROM scan_results WHERE verdict_name = ''",
            )
            .map_err(&err)?;
        let it = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(&err)?;
        it.collect::<Result<_, _>>().map_err(&err)?
    };
    let mut upd = tx
        .prepare(
            "UPDATE scan_results SET verdict_name = ?3, digest_key = ?4, backing = ?5, label = ?6
             WHERE host = ?1 AND path = ?2",
        )
        .map_err(&err)?;
    for (host, p, digests, verdict) in rows {
        let (name, backing, label) = derive_from_verdict(&verdict);
        let key = digest_key(&digests_from_text(&digests));
        upd.execute(params![host, p, name, key, backing, label])
            .map_err(&err)?;
    }
    Ok(())
}

impl SqliteStore {
    pub(crate) fn open_read_only(path: &Path) -> Result<Option<Self>, CatalogError> {
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
        .map_err(db_err(path))?;
        set_timeout(&conn, path)?;
        if table_count(&conn, path)? == 0 {
            return Ok(None);
        }
        let version = read_version(&conn, path)?;
        Ok(Some(Self {
            conn,
            path: path.to_path_buf(),
            version,
        }))
    }

    /// Opens for writing, creating and migrating; returns the version found
    /// before (`None`: created now).
    pub(crate) fn open_or_create(path: &Path) -> Result<(Self, Option<i64>), CatalogError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| CatalogError::Io {
                path: dir.to_path_buf(),
                error,
            })?;
        }
        let mut conn = Connection::open(path).map_err(db_err(path))?;
        set_timeout(&conn, path)?;
        // Foreign files are refused before anything is written.
        table_count(&conn, path)?;
        let err = db_err(path);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let before = if table_count(&tx, path)? == 0 {
            None
        } else {
            Some(read_version(&tx, path)?)
        };
        let from = before.unwrap_or(0);
        for (v, sql) in STEPS {
            if v > from {
                tx.execute_batch(sql).map_err(&err)?;
                if v == 3 {
                    fill_derived(&tx, path)?;
                }
            }
        }
        if from < SCHEMA_VERSION {
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                params![SCHEMA_VERSION],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        Ok((
            Self {
                conn,
                path: path.to_path_buf(),
                version: SCHEMA_VERSION,
            },
            before,
        ))
    }

    pub(crate) fn version(&self) -> i64 {
        self.version
    }

    pub(crate) fn put_baseline(&mut self, id: i64, json: &str) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "INSERT INTO baselines (entry_id, json) VALUES (?1, ?2)
                 ON CONFLICT(entry_id) DO UPDATE SET json = excluded.json",
                params![id, json],
            )
            .map_err(db_err(&self.path))?;
        Ok(())
    }

    pub(crate) fn baseline(&self, id: i64) -> Result<Option<String>, CatalogError> {
        self.conn
            .query_row(
                "SELECT json FROM baselines WHERE entry_id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err(&self.path))
    }

    pub(crate) fn baselines(&self) -> Result<Vec<(i64, String)>, CatalogError> {
        let err = db_err(&self.path);
        let mut stmt = self
            .conn
            .prepare("SELECT entry_id, json FROM baselines ORDER BY entry_id")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(&err)?;
        rows.collect::<Result<_, _>>().map_err(&err)
    }

    pub(crate) fn add(
        &mut self,
        source: &str,
        refs: &[Reference],
    ) -> Result<Vec<Added>, CatalogError> {
        let err = db_err(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let mut out = Vec::with_capacity(refs.len());
        {
            let mut find = tx
                .prepare("SELECT id FROM entries WHERE identity = ?1")
                .map_err(&err)?;
            let mut insert = tx
                .prepare(
                    "INSERT INTO entries (source, label, filename, version, size, superseded,
                        imported_from, content_root, content_sha256, virtual_size, manifest,
                        added_at, identity)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .map_err(&err)?;
            let mut digest = tx
                .prepare("INSERT INTO digests (entry_id, algo, hex) VALUES (?1, ?2, ?3)")
                .map_err(&err)?;
            for r in refs {
                let ident = identity(source, r);
                if let Some(id) = find
                    .query_row(params![ident], |row| row.get::<_, i64>(0))
                    .optional()
                    .map_err(&err)?
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
                    .map_err(&err)?;
                let id = tx.last_insert_rowid();
                for (a, h) in &r.digests {
                    digest.execute(params![id, a.name(), h]).map_err(&err)?;
                }
                out.push(Added::New(id));
            }
        }
        tx.commit().map_err(&err)?;
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

    pub(crate) fn load(&self, where_id: Option<i64>) -> Result<Vec<Entry>, CatalogError> {
        let err = db_err(&self.path);
        let sql = match where_id {
            Some(_) => "SELECT * FROM entries WHERE id = ?1",
            None => "SELECT * FROM entries WHERE ?1 IS NULL ORDER BY id",
        };
        let mut stmt = self.conn.prepare(sql).map_err(&err)?;
        let rows: Vec<(i64, String, Reference)> = stmt
            .query_map(params![where_id], Self::entry_from_row)
            .map_err(&err)?
            .collect::<Result<_, _>>()
            .map_err(&err)?;
        let mut dstmt = self
            .conn
            .prepare("SELECT entry_id, algo, hex FROM digests WHERE ?1 IS NULL OR entry_id = ?1")
            .map_err(&err)?;
        let mut digests: BTreeMap<i64, BTreeMap<Algo, String>> = BTreeMap::new();
        let drows = dstmt
            .query_map(params![where_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(&err)?;
        for d in drows {
            let (id, algo, hex) = d.map_err(&err)?;
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

    pub(crate) fn remove(&mut self, id: i64) -> Result<bool, CatalogError> {
        let err = db_err(&self.path);
        let has_baselines = self.version >= 2;
        let tx = self.conn.transaction().map_err(&err)?;
        tx.execute("DELETE FROM digests WHERE entry_id = ?1", params![id])
            .map_err(&err)?;
        if has_baselines {
            tx.execute("DELETE FROM baselines WHERE entry_id = ?1", params![id])
                .map_err(&err)?;
        }
        let n = tx
            .execute("DELETE FROM entries WHERE id = ?1", params![id])
            .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(n > 0)
    }

    pub(crate) fn cache_get(
        &self,
        host: &str,
        path: &str,
        key: &FileKey,
    ) -> Result<Option<CachedFacts>, CatalogError> {
        self.conn
            .query_row(
                "SELECT digests, content_root, content_sha256, virtual_size, manifest
                 FROM scan_results WHERE host = ?1 AND path = ?2 AND size = ?3
                 AND mtime_ns = ?4 AND inode = ?5",
                params![
                    host,
                    path,
                    to_sql(key.size),
                    key.mtime_ns,
                    to_sql(key.inode)
                ],
                |r| {
                    Ok(CachedFacts {
                        digests: digests_from_text(&r.get::<_, String>(0)?),
                        content: content_at(r, 1)?,
                    })
                },
            )
            .optional()
            .map_err(db_err(&self.path))
    }

    /// Upserts scan records by (host, path); with `only_newer`, an older
    /// record does not replace a newer one.
    pub(crate) fn put_scans(
        &mut self,
        records: &[ScanRecord],
        only_newer: bool,
    ) -> Result<(), CatalogError> {
        let err = db_err(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        {
            let sql = format!(
                "INSERT INTO scan_results ({SCAN_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                 ON CONFLICT (host, path) DO UPDATE SET size = excluded.size,
                    mtime_ns = excluded.mtime_ns, inode = excluded.inode,
                    digests = excluded.digests, content_root = excluded.content_root,
                    content_sha256 = excluded.content_sha256,
                    virtual_size = excluded.virtual_size, manifest = excluded.manifest,
                    verdict = excluded.verdict, verdict_name = excluded.verdict_name,
                    digest_key = excluded.digest_key, backing = excluded.backing,
                    label = excluded.label, scanned_at = excluded.scanned_at
                 {}",
                if only_newer {
                    "WHERE excluded.scanned_at >= scan_results.scanned_at"
                } else {
                    ""
                }
            );
            let mut stmt = tx.prepare(&sql).map_err(&err)?;
            for rec in records {
                let row = &rec.row;
                let c = row.facts.content.as_ref();
                stmt.execute(params![
                    rec.host,
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
                    row.verdict_name,
                    row.digest_key(),
                    row.backing,
                    row.label,
                    rec.scanned_at,
                ])
                .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    pub(crate) fn scans(&self, full: bool) -> Result<Vec<ScanRecord>, CatalogError> {
        let err = db_err(&self.path);
        let sql = if full {
            format!("SELECT {SCAN_COLUMNS} FROM scan_results ORDER BY host, path")
        } else {
            "SELECT host, path, size, mtime_ns, inode, '{}', NULL, NULL, NULL, NULL, '', \
             verdict_name, digest_key, backing, label, scanned_at \
             FROM scan_results ORDER BY host, path"
                .to_string()
        };
        let mut stmt = self.conn.prepare(&sql).map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                let content = content_at(r, 6)?;
                Ok(ScanRecord {
                    host: r.get(0)?,
                    row: CacheRow {
                        path: r.get(1)?,
                        key: FileKey {
                            size: from_sql(r.get(2)?),
                            mtime_ns: r.get(3)?,
                            inode: from_sql(r.get(4)?),
                        },
                        facts: CachedFacts {
                            digests: digests_from_text(&r.get::<_, String>(5)?),
                            content,
                        },
                        verdict: r.get(10)?,
                        verdict_name: r.get(11)?,
                        backing: r.get(13)?,
                        label: r.get(14)?,
                    },
                    scanned_at: r.get(15)?,
                    digest_key: r.get(12)?,
                })
            })
            .map_err(&err)?;
        rows.collect::<Result<_, _>>().map_err(&err)
    }

    pub(crate) fn cache_len(&self) -> Result<u64, CatalogError> {
        self.conn
            .query_row("SELECT count(*) FROM scan_results", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(from_sql)
            .map_err(db_err(&self.path))
    }

    pub(crate) fn put_audits(&mut self, audits: &[AuditRecord]) -> Result<(), CatalogError> {
        let err = db_err(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO audits (host, path, digest, verdict, counts, findings, audited_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (host, path, digest) DO UPDATE SET verdict = excluded.verdict,
                        counts = excluded.counts, findings = excluded.findings,
                        audited_at = excluded.audited_at",
                )
                .map_err(&err)?;
            for a in audits {
                stmt.execute(params![
                    a.host,
                    a.path,
                    a.digest,
                    a.verdict,
                    a.counts,
                    a.findings,
                    a.audited_at
                ])
                .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    pub(crate) fn audits(&self) -> Result<Vec<AuditRecord>, CatalogError> {
        let err = db_err(&self.path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT host, path, digest, verdict, counts, findings, audited_at FROM audits
                 ORDER BY host, path, digest",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(AuditRecord {
                    host: r.get(0)?,
                    path: r.get(1)?,
                    digest: r.get(2)?,
                    verdict: r.get(3)?,
                    counts: r.get(4)?,
                    findings: r.get(5)?,
                    audited_at: r.get(6)?,
                })
            })
            .map_err(&err)?;
        rows.collect::<Result<_, _>>().map_err(&err)
    }
}

/// Creates a catalog at an older schema version, for migration tests.
pub(crate) fn create_at_version(path: &Path, version: i64) -> Result<(), CatalogError> {
    let conn = Connection::open(path).map_err(db_err(path))?;
    for (v, sql) in STEPS {
        if v <= version {
            conn.execute_batch(sql).map_err(db_err(path))?;
        }
    }
    conn.execute(
        "INSERT INTO schema_version (version) VALUES (?1)",
        params![version],
    )
    .map_err(db_err(path))?;
    Ok(())
}

/// The content reference stored in four columns from `at`: root, sha256,
/// virtual size, chunk manifest (none when the root is NULL).
fn content_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Option<ContentRef>> {
    let Some(root) = r.get::<_, Option<String>>(at)? else {
        return Ok(None);
    };
    Ok(Some(ContentRef {
        root,
        sha256: r.get::<_, Option<String>>(at + 1)?.unwrap_or_default(),
        virtual_size: r.get::<_, Option<i64>>(at + 2)?.map(from_sql).unwrap_or(0),
        manifest: r.get(at + 3)?,
    }))
}
