//! The PostgreSQL backend of [`crate::Store`]: one catalog shared by many
//! hosts.
//!
//! * Migrations run in one transaction under an advisory lock, so many
//!   hosts starting at once apply each step once.
//! * Every write is one transaction; scan results are upserted by
//!   (host, path) with `ON CONFLICT`, rows in one order so concurrent
//!   writers cannot deadlock.
//! * A connection lost mid-operation (server restart, a terminated
//!   backend), a deadlock or a serialisation failure rolls the whole
//!   transaction back; it is retried on a new connection a few times, then
//!   reported. A record is never half written.
//! * A role that may only read gets [`CatalogError::ReadOnly`] when it
//!   opens the catalog for writing, before any work is done.
//! * The connection string's password never appears in errors: they name
//!   the catalog by its redacted [`PgUrl`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Config, GenericClient, NoTls, Row};

use crate::location::PgUrl;
use crate::store::{
    derive_from_verdict, digest_key, digests_from_text, digests_text, from_sql, identity, now,
    to_sql, Added, AuditRecord, CacheRow, CachedFacts, FileKey, ScanRecord, SCHEMA_VERSION,
};
use crate::{Algo, CatalogError, ContentRef, Entry, EntryId, Reference};

const SCHEMA_1: &str = "
CREATE TABLE schema_version (version BIGINT NOT NULL);
CREATE TABLE entries (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL,
    label TEXT NOT NULL,
    filename TEXT,
    version TEXT,
    size BIGINT,
    superseded BOOLEAN NOT NULL DEFAULT FALSE,
    imported_from TEXT,
    content_root TEXT,
    content_sha256 TEXT,
    virtual_size BIGINT,
    manifest BYTEA,
    added_at BIGINT NOT NULL,
    identity TEXT NOT NULL UNIQUE
);
CREATE TABLE digests (
    entry_id BIGINT NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    algo TEXT NOT NULL,
    hex TEXT NOT NULL,
    PRIMARY KEY (entry_id, algo)
);
CREATE INDEX digests_by_value ON digests(algo, hex);
CREATE INDEX entries_by_filename ON entries(filename);
CREATE INDEX entries_by_root ON entries(content_root);
CREATE TABLE scan_cache (
    path TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    inode BIGINT NOT NULL,
    digests TEXT NOT NULL,
    content_root TEXT,
    content_sha256 TEXT,
    virtual_size BIGINT,
    manifest BYTEA,
    verdict TEXT NOT NULL,
    scanned_at BIGINT NOT NULL
);
";

const MIGRATE_2: &str = "
CREATE TABLE baselines (
    entry_id BIGINT PRIMARY KEY REFERENCES entries(id) ON DELETE CASCADE,
    json TEXT NOT NULL
);
";

const MIGRATE_3: &str = "
CREATE TABLE scan_results (
    host TEXT NOT NULL,
    path TEXT NOT NULL,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    inode BIGINT NOT NULL,
    digests TEXT NOT NULL,
    content_root TEXT,
    content_sha256 TEXT,
    virtual_size BIGINT,
    manifest BYTEA,
    verdict TEXT NOT NULL,
    verdict_name TEXT NOT NULL,
    digest_key TEXT,
    backing TEXT,
    label TEXT,
    scanned_at BIGINT NOT NULL,
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
    audited_at BIGINT NOT NULL,
    PRIMARY KEY (host, path, digest)
);
";

const STEPS: [(i64, &str); 3] = [(1, SCHEMA_1), (2, MIGRATE_2), (3, MIGRATE_3)];

/// Advisory lock key that serialises migrations ("qvet" in ASCII).
const MIGRATION_LOCK: i64 = 0x7176_6574;

/// Attempts after the first for a lost connection or a transient conflict.
const RETRIES: u32 = 3;

const SCAN_COLUMNS: &str = "host, path, size, mtime_ns, inode, digests, content_root, \
    content_sha256, virtual_size, manifest, verdict, verdict_name, digest_key, backing, label, \
    scanned_at";

/// An open PostgreSQL catalog.
pub(crate) struct PgStore {
    client: RefCell<Client>,
    config: Config,
    url: PgUrl,
    version: i64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({}, v{})", self.url, self.version)
    }
}

fn pg_err(url: &PgUrl, error: postgres::Error) -> CatalogError {
    if error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        return CatalogError::ReadOnly {
            location: url.to_string(),
            why: format!(
                "this role may not write it ({}); verify, audit and fleet work read-only",
                db_message(&error)
            ),
        };
    }
    CatalogError::Pg {
        location: url.to_string(),
        error: describe(&error),
    }
}

fn db_message(e: &postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// The server's message (with SQLSTATE), or the client error and its causes.
fn describe(e: &postgres::Error) -> String {
    if let Some(d) = e.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            d.severity(),
            d.message(),
            d.code().code()
        );
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}

/// Whether the operation may succeed when run again (on a new connection).
fn transient(e: &postgres::Error, closed: bool) -> bool {
    if closed || e.is_closed() {
        return true;
    }
    let Some(code) = e.code() else {
        // I/O errors on the socket.
        return e.as_db_error().is_none();
    };
    let c = code.code();
    c.starts_with("08")
        || c.starts_with("57P")
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
}

fn connect(config: &Config, url: &PgUrl) -> Result<Client, CatalogError> {
    config.connect(NoTls).map_err(|e| pg_err(url, e))
}

fn config_of(url: &PgUrl) -> Result<Config, CatalogError> {
    let mut config = Config::from_str(url.secret()).map_err(|e| pg_err(url, e))?;
    if config.get_password().is_none() {
        if let Some(p) = std::env::var_os("PGPASSWORD") {
            config.password(p.to_string_lossy().as_bytes());
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(15));
    }
    if config.get_application_name().is_none() {
        config.application_name("qvet");
    }
    Ok(config)
}

fn read_version<C: GenericClient>(c: &mut C, url: &PgUrl) -> Result<Option<i64>, CatalogError> {
    let exists: Option<String> = c
        .query_one("SELECT to_regclass('schema_version')::text", &[])
        .and_then(|r| r.try_get(0))
        .map_err(|e| pg_err(url, e))?;
    if exists.is_none() {
        return Ok(None);
    }
    let v: Option<i64> = c
        .query_one("SELECT max(version) FROM schema_version", &[])
        .and_then(|r| r.try_get(0))
        .map_err(|e| pg_err(url, e))?;
    match v {
        Some(v @ 1..=SCHEMA_VERSION) => Ok(Some(v)),
        Some(v) => Err(CatalogError::Schema {
            path: url.to_string().into(),
            why: format!("schema version {v}; this qvet reads versions 1 to {SCHEMA_VERSION}"),
        }),
        None => Err(CatalogError::Schema {
            path: url.to_string().into(),
            why: "empty schema_version table".into(),
        }),
    }
}

fn fill_derived(tx: &mut postgres::Transaction<'_>) -> Result<(), postgres::Error> {
    tx.execute(
        "UPDATE scan_results SET host = $1 WHERE host = ''",
        &[&crate::store::local_hostname()],
    )?;
    let rows = tx.query(
        "SELECT host, path, digests, verdict FROM scan_results WHERE verdict_name = ''",
        &[],
    )?;
    let upd = tx.prepare(
        "UPDATE scan_results SET verdict_name = $3, digest_key = $4, backing = $5, label = $6
         WHERE host = $1 AND path = $2",
    )?;
    for r in rows {
        let (host, path, digests, verdict): (String, String, String, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        let (name, backing, label) = derive_from_verdict(&verdict);
        let key = digest_key(&digests_from_text(&digests));
        tx.execute(&upd, &[&host, &path, &name, &key, &backing, &label])?;
    }
    Ok(())
}

fn content_of(r: &Row, base: usize) -> Result<Option<ContentRef>, postgres::Error> {
    let root: Option<String> = r.try_get(base)?;
    Ok(match root {
        Some(root) => Some(ContentRef {
            root,
            sha256: r
                .try_get::<_, Option<String>>(base + 1)?
                .unwrap_or_default(),
            virtual_size: r
                .try_get::<_, Option<i64>>(base + 2)?
                .map(from_sql)
                .unwrap_or(0),
            manifest: r.try_get(base + 3)?,
        }),
        None => None,
    })
}

impl PgStore {
    pub(crate) fn open_read_only(url: &PgUrl) -> Result<Option<Self>, CatalogError> {
        let config = config_of(url)?;
        let mut client = connect(&config, url)?;
        let Some(version) = read_version(&mut client, url)? else {
            return Ok(None);
        };
        Ok(Some(Self {
            client: RefCell::new(client),
            config,
            url: url.clone(),
            version,
        }))
    }

    pub(crate) fn open_or_create(url: &PgUrl) -> Result<(Self, Option<i64>), CatalogError> {
        let config = config_of(url)?;
        let mut client = connect(&config, url)?;
        let before = read_version(&mut client, url)?;
        if before != Some(SCHEMA_VERSION) {
            Self::migrate(&mut client, url, before)?;
        }
        let writable: bool = client
            .query_one(
                "SELECT has_table_privilege('scan_results', 'INSERT, UPDATE')
                    AND has_table_privilege('entries', 'INSERT, UPDATE, DELETE')
                    AND has_table_privilege('audits', 'INSERT, UPDATE')",
                &[],
            )
            .and_then(|r| r.try_get(0))
            .map_err(|e| pg_err(url, e))?;
        if !writable {
            return Err(CatalogError::ReadOnly {
                location: url.to_string(),
                why: "this role may only read it (no INSERT/UPDATE privilege on its tables); \
                      verify, audit and fleet work read-only"
                    .into(),
            });
        }
        Ok((
            Self {
                client: RefCell::new(client),
                config,
                url: url.clone(),
                version: SCHEMA_VERSION,
            },
            before,
        ))
    }

    fn migrate(client: &mut Client, url: &PgUrl, seen: Option<i64>) -> Result<(), CatalogError> {
        let refused = |e: postgres::Error| {
            if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
                CatalogError::ReadOnly {
                    location: url.to_string(),
                    why: format!(
                        "schema version {} needs migrating to {SCHEMA_VERSION} and this role may \
                         not alter it ({}); ask the catalog's owner to run `qvet catalog migrate`",
                        seen.map_or_else(|| "none".to_string(), |v| v.to_string()),
                        db_message(&e)
                    ),
                }
            } else {
                pg_err(url, e)
            }
        };
        let mut tx = client.transaction().map_err(&refused)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(&refused)?;
        // Another host may have migrated while this one waited.
        let from = read_version(&mut tx, url)?.unwrap_or(0);
        for (v, sql) in STEPS {
            if v > from {
                tx.batch_execute(sql).map_err(&refused)?;
                if v == 3 {
                    fill_derived(&mut tx).map_err(&refused)?;
                }
            }
        }
        if from < SCHEMA_VERSION {
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
            .map_err(&refused)?;
        }
        tx.commit().map_err(&refused)
    }

    pub(crate) fn version(&self) -> i64 {
        self.version
    }

    /// Runs `f` (one transaction or one statement), retrying on a new
    /// connection when the connection was lost or the transaction hit a
    /// transient conflict.
    fn run<T>(
        &self,
        mut f: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, CatalogError> {
        let mut client = self
            .client
            .try_borrow_mut()
            .map_err(|_| CatalogError::Busy(self.url.to_string()))?;
        let mut attempt = 0;
        loop {
            let e = match f(&mut client) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if attempt >= RETRIES || !transient(&e, client.is_closed()) {
                return Err(pg_err(&self.url, e));
            }
            attempt += 1;
            std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
            if client.is_closed() || e.code().is_none_or(|c| !c.code().starts_with("40")) {
                match self.config.connect(NoTls) {
                    Ok(c) => *client = c,
                    Err(e) if attempt >= RETRIES => return Err(pg_err(&self.url, e)),
                    Err(_) => {}
                }
            }
        }
    }

    pub(crate) fn add(
        &mut self,
        source: &str,
        refs: &[Reference],
    ) -> Result<Vec<Added>, CatalogError> {
        self.run(|c| {
            let mut tx = c.transaction()?;
            let insert = tx.prepare(
                "INSERT INTO entries (source, label, filename, version, size, superseded,
                    imported_from, content_root, content_sha256, virtual_size, manifest,
                    added_at, identity)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (identity) DO NOTHING RETURNING id",
            )?;
            let find = tx.prepare("SELECT id FROM entries WHERE identity = $1")?;
            let digest =
                tx.prepare("INSERT INTO digests (entry_id, algo, hex) VALUES ($1, $2, $3)")?;
            let mut out = Vec::with_capacity(refs.len());
            for r in refs {
                let ident = identity(source, r);
                let c = r.content.as_ref();
                let inserted = tx.query_opt(
                    &insert,
                    &[
                        &source,
                        &r.label,
                        &r.filename,
                        &r.version,
                        &r.size.map(to_sql),
                        &r.superseded,
                        &r.imported_from,
                        &c.map(|c| c.root.clone()),
                        &c.map(|c| c.sha256.clone()),
                        &c.map(|c| to_sql(c.virtual_size)),
                        &c.and_then(|c| c.manifest.clone()),
                        &now(),
                        &ident,
                    ],
                )?;
                match inserted {
                    Some(row) => {
                        let id: i64 = row.try_get(0)?;
                        for (a, h) in &r.digests {
                            tx.execute(&digest, &[&id, &a.name(), h])?;
                        }
                        out.push(Added::New(id));
                    }
                    None => {
                        let id: i64 = tx.query_one(&find, &[&ident])?.try_get(0)?;
                        out.push(Added::Existing(id));
                    }
                }
            }
            tx.commit()?;
            Ok(out)
        })
    }

    pub(crate) fn load(&self, where_id: Option<i64>) -> Result<Vec<Entry>, CatalogError> {
        let (rows, drows) = self.run(|c| {
            let rows = c.query(
                "SELECT id, source, label, filename, version, size, superseded, imported_from,
                    content_root, content_sha256, virtual_size, manifest
                 FROM entries WHERE $1::BIGINT IS NULL OR id = $1 ORDER BY id",
                &[&where_id],
            )?;
            let drows = c.query(
                "SELECT entry_id, algo, hex FROM digests WHERE $1::BIGINT IS NULL OR entry_id = $1",
                &[&where_id],
            )?;
            Ok((rows, drows))
        })?;
        let err = |e| pg_err(&self.url, e);
        let mut digests: BTreeMap<i64, BTreeMap<Algo, String>> = BTreeMap::new();
        for d in drows {
            let (id, algo, hex): (i64, String, String) = (
                d.try_get(0).map_err(err)?,
                d.try_get(1).map_err(err)?,
                d.try_get(2).map_err(err)?,
            );
            if let Some(a) = Algo::from_name(&algo) {
                digests.entry(id).or_default().insert(a, hex);
            }
        }
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get(0)?;
                Ok(Entry {
                    id: EntryId::User(id),
                    source: r.try_get(1)?,
                    reference: Reference {
                        label: r.try_get(2)?,
                        filename: r.try_get(3)?,
                        version: r.try_get(4)?,
                        size: r.try_get::<_, Option<i64>>(5)?.map(from_sql),
                        superseded: r.try_get(6)?,
                        imported_from: r.try_get(7)?,
                        content: content_of(r, 8)?,
                        digests: digests.remove(&id).unwrap_or_default(),
                    },
                })
            })
            .collect::<Result<_, postgres::Error>>()
            .map_err(err)
    }

    pub(crate) fn remove(&mut self, id: i64) -> Result<bool, CatalogError> {
        let has_baselines = self.version >= 2;
        self.run(|c| {
            let mut tx = c.transaction()?;
            tx.execute("DELETE FROM digests WHERE entry_id = $1", &[&id])?;
            if has_baselines {
                tx.execute("DELETE FROM baselines WHERE entry_id = $1", &[&id])?;
            }
            let n = tx.execute("DELETE FROM entries WHERE id = $1", &[&id])?;
            tx.commit()?;
            Ok(n > 0)
        })
    }

    pub(crate) fn put_baseline(&mut self, id: i64, json: &str) -> Result<(), CatalogError> {
        self.run(|c| {
            c.execute(
                "INSERT INTO baselines (entry_id, json) VALUES ($1, $2)
                 ON CONFLICT (entry_id) DO UPDATE SET json = excluded.json",
                &[&id, &json],
            )
            .map(drop)
        })
    }

    pub(crate) fn baseline(&self, id: i64) -> Result<Option<String>, CatalogError> {
        self.run(|c| {
            c.query_opt("SELECT json FROM baselines WHERE entry_id = $1", &[&id])?
                .map(|r| r.try_get(0))
                .transpose()
        })
    }

    pub(crate) fn baselines(&self) -> Result<Vec<(i64, String)>, CatalogError> {
        self.run(|c| {
            c.query(
                "SELECT entry_id, json FROM baselines ORDER BY entry_id",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })
    }

    pub(crate) fn cache_get(
        &self,
        host: &str,
        path: &str,
        key: &FileKey,
    ) -> Result<Option<CachedFacts>, CatalogError> {
        self.run(|c| {
            let Some(r) = c.query_opt(
                "SELECT digests, content_root, content_sha256, virtual_size, manifest
                 FROM scan_results WHERE host = $1 AND path = $2 AND size = $3
                 AND mtime_ns = $4 AND inode = $5",
                &[
                    &host,
                    &path,
                    &to_sql(key.size),
                    &key.mtime_ns,
                    &to_sql(key.inode),
                ],
            )?
            else {
                return Ok(None);
            };
            Ok(Some(CachedFacts {
                digests: digests_from_text(&r.try_get::<_, String>(0)?),
                content: content_of(&r, 1)?,
            }))
        })
    }

    pub(crate) fn cache_get_many(
        &self,
        host: &str,
        files: &[(String, FileKey)],
    ) -> Result<Vec<Option<CachedFacts>>, CatalogError> {
        let mut found: std::collections::HashMap<String, (FileKey, CachedFacts)> =
            std::collections::HashMap::new();
        for chunk in files.chunks(1000) {
            let paths: Vec<&str> = chunk.iter().map(|(p, _)| p.as_str()).collect();
            let rows = self.run(|c| {
                c.query(
                    "SELECT path, size, mtime_ns, inode, digests, content_root, content_sha256,
                        virtual_size, manifest
                     FROM scan_results WHERE host = $1 AND path = ANY($2)",
                    &[&host, &paths],
                )
            })?;
            for r in rows {
                let got = (|| -> Result<_, postgres::Error> {
                    Ok((
                        r.try_get::<_, String>(0)?,
                        FileKey {
                            size: from_sql(r.try_get(1)?),
                            mtime_ns: r.try_get(2)?,
                            inode: from_sql(r.try_get(3)?),
                        },
                        CachedFacts {
                            digests: digests_from_text(&r.try_get::<_, String>(4)?),
                            content: content_of(&r, 5)?,
                        },
                    ))
                })()
                .map_err(|e| pg_err(&self.url, e))?;
                found.insert(got.0, (got.1, got.2));
            }
        }
        Ok(files
            .iter()
            .map(|(p, k)| {
                found
                    .get(p)
                    .filter(|(key, _)| key == k)
                    .map(|(_, f)| f.clone())
            })
            .collect())
    }

    pub(crate) fn put_scans(
        &mut self,
        records: &[ScanRecord],
        only_newer: bool,
    ) -> Result<(), CatalogError> {
        let sql = format!(
            "INSERT INTO scan_results ({SCAN_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
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
        self.run(|c| {
            let mut tx = c.transaction()?;
            let stmt = tx.prepare(&sql)?;
            for rec in records {
                let row = &rec.row;
                let cr = row.facts.content.as_ref();
                tx.execute(
                    &stmt,
                    &[
                        &rec.host,
                        &row.path,
                        &to_sql(row.key.size),
                        &row.key.mtime_ns,
                        &to_sql(row.key.inode),
                        &digests_text(&row.facts.digests),
                        &cr.map(|c| c.root.clone()),
                        &cr.map(|c| c.sha256.clone()),
                        &cr.map(|c| to_sql(c.virtual_size)),
                        &cr.and_then(|c| c.manifest.clone()),
                        &row.verdict,
                        &row.verdict_name,
                        &row.digest_key(),
                        &row.backing,
                        &row.label,
                        &rec.scanned_at,
                    ],
                )?;
            }
            tx.commit()
        })
    }

    pub(crate) fn scans(&self, full: bool) -> Result<Vec<ScanRecord>, CatalogError> {
        let sql = if full {
            format!(
                "SELECT {SCAN_COLUMNS} FROM scan_results \
                 ORDER BY host COLLATE \"C\", path COLLATE \"C\""
            )
        } else {
            "SELECT host, path, size, mtime_ns, inode, '{}', NULL::TEXT, NULL::TEXT, \
             NULL::BIGINT, NULL::BYTEA, '', verdict_name, digest_key, backing, label, scanned_at \
             FROM scan_results ORDER BY host COLLATE \"C\", path COLLATE \"C\""
                .to_string()
        };
        self.run(|c| {
            c.query(&sql, &[])?
                .iter()
                .map(|r| {
                    Ok(ScanRecord {
                        host: r.try_get(0)?,
                        row: CacheRow {
                            path: r.try_get(1)?,
                            key: FileKey {
                                size: from_sql(r.try_get(2)?),
                                mtime_ns: r.try_get(3)?,
                                inode: from_sql(r.try_get(4)?),
                            },
                            facts: CachedFacts {
                                digests: digests_from_text(&r.try_get::<_, String>(5)?),
                                content: content_of(r, 6)?,
                            },
                            verdict: r.try_get(10)?,
                            verdict_name: r.try_get(11)?,
                            backing: r.try_get(13)?,
                            label: r.try_get(14)?,
                        },
                        scanned_at: r.try_get(15)?,
                        digest_key: r.try_get(12)?,
                    })
                })
                .collect()
        })
    }

    pub(crate) fn cache_len(&self) -> Result<u64, CatalogError> {
        self.run(|c| {
            c.query_one("SELECT count(*) FROM scan_results", &[])?
                .try_get::<_, i64>(0)
        })
        .map(from_sql)
    }

    pub(crate) fn put_audits(&mut self, audits: &[AuditRecord]) -> Result<(), CatalogError> {
        self.run(|c| {
            let mut tx = c.transaction()?;
            let stmt = tx.prepare(
                "INSERT INTO audits (host, path, digest, verdict, counts, findings, audited_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (host, path, digest) DO UPDATE SET verdict = excluded.verdict,
                    counts = excluded.counts, findings = excluded.findings,
                    audited_at = excluded.audited_at",
            )?;
            for a in audits {
                tx.execute(
                    &stmt,
                    &[
                        &a.host,
                        &a.path,
                        &a.digest,
                        &a.verdict,
                        &a.counts,
                        &a.findings,
                        &a.audited_at,
                    ],
                )?;
            }
            tx.commit()
        })
    }

    pub(crate) fn audits(&self) -> Result<Vec<AuditRecord>, CatalogError> {
        self.run(|c| {
            c.query(
                "SELECT host, path, digest, verdict, counts, findings, audited_at FROM audits
                 ORDER BY host, path, digest",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(AuditRecord {
                    host: r.try_get(0)?,
                    path: r.try_get(1)?,
                    digest: r.try_get(2)?,
                    verdict: r.try_get(3)?,
                    counts: r.try_get(4)?,
                    findings: r.try_get(5)?,
                    audited_at: r.try_get(6)?,
                })
            })
            .collect()
        })
    }
}

/// Creates a catalog at an older schema version, for migration tests.
pub(crate) fn create_at_version(url: &PgUrl, version: i64) -> Result<(), CatalogError> {
    let config = config_of(url)?;
    let mut client = connect(&config, url)?;
    let mut tx = client.transaction().map_err(|e| pg_err(url, e))?;
    for (v, sql) in STEPS {
        if v <= version {
            tx.batch_execute(sql).map_err(|e| pg_err(url, e))?;
        }
    }
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&version],
    )
    .map_err(|e| pg_err(url, e))?;
    tx.commit().map_err(|e| pg_err(url, e))
}
