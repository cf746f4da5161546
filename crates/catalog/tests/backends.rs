//! One test suite for both catalog backends: SQLite (a temporary file) and
//! PostgreSQL (a throw-away cluster, see `support/pgcluster.rs`).
//! References with baselines, scan results keyed by host and path, audit
//! verdicts, export/import between the backends, migrations from empty and
//! from the previous schemas; on PostgreSQL also the read-only role, a
//! dropped connection and a stopped server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "support/pgcluster.rs"]
mod pgcluster;

use std::collections::BTreeMap;
use std::ffi::OsStr;

use pgcluster::PgCluster;
use qvet_catalog::store::{
    create_at_version, local_hostname, Added, AuditRecord, CacheRow, CachedFacts, FileKey,
    SCHEMA_VERSION,
};
use qvet_catalog::{Algo, CatalogError, ContentRef, Location, Reference, Store};

fn loc(s: &str) -> Location {
    Location::parse(OsStr::new(s))
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
            manifest: Some(vec![1, 2, 3, 0xff]),
        }),
        superseded: false,
        imported_from: Some("/x".into()),
    }
}

fn row(path: &str, md5: char, inode: u64) -> CacheRow {
    CacheRow {
        path: path.into(),
        key: FileKey {
            size: 10,
            mtime_ns: 5,
            inode,
        },
        facts: CachedFacts {
            digests: BTreeMap::from([(Algo::Md5, md5.to_string().repeat(32))]),
            content: None,
        },
        verdict: "{\"verdict\":\"unknown\"}".into(),
        verdict_name: "unknown".into(),
        backing: (md5 == 'b').then(|| "/base.qcow2".to_string()),
        label: Some("x".into()),
    }
}

/// The suite every backend passes.
fn suite(l: &Location, other: &Location) {
    assert!(Store::open_read_only(l).unwrap().is_none(), "{l}");
    let (mut s, before) = Store::migrate(l).unwrap();
    assert_eq!(before, None);
    assert_eq!(s.version(), SCHEMA_VERSION);

    // References and baselines.
    let r = sample();
    let added = s.add("user", &[r.clone(), r.clone()]).unwrap();
    let Added::New(id) = added[0] else {
        panic!("{added:?}")
    };
    assert_eq!(added[1], Added::Existing(id));
    let other_ref = Reference {
        label: "other".into(),
        ..Reference::default()
    };
    let Added::New(id2) = s.add("sums", std::slice::from_ref(&other_ref)).unwrap()[0] else {
        panic!()
    };
    s.put_baseline(id, "{\"schema\":1}").unwrap();
    s.put_baseline(id, "{\"schema\":2}").unwrap();
    assert_eq!(s.baseline(id).unwrap().as_deref(), Some("{\"schema\":2}"));
    assert_eq!(s.baseline(id2).unwrap(), None);
    drop(s);
    let ro = Store::open_read_only(l).unwrap().unwrap();
    let all = ro.entries().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].reference, r);
    assert_eq!(all[0].source, "user");
    assert_eq!(all[1].reference, other_ref);
    assert_eq!(ro.entry(id).unwrap().unwrap().reference, r);
    assert!(ro.entry(id2 + 100).unwrap().is_none());
    drop(ro);

    // Scan results by host and path.
    let mut s = Store::open_or_create(l).unwrap();
    let a = row("/img/a.qcow2", 'a', u64::MAX);
    s.cache_put("h1", &[a.clone(), row("/img/b.qcow2", 'b', 2)])
        .unwrap();
    s.cache_put("h2", &[row("/img/a.qcow2", 'a', 7)]).unwrap();
    assert_eq!(s.cache_len().unwrap(), 3);
    assert_eq!(
        s.cache_get("h1", &a.path, &a.key).unwrap(),
        Some(a.facts.clone())
    );
    assert_eq!(
        s.cache_get("h2", &a.path, &a.key).unwrap(),
        None,
        "inode differs"
    );
    assert_eq!(s.cache_get("h3", &a.path, &a.key).unwrap(), None);
    let touched = FileKey {
        mtime_ns: 6,
        ..a.key
    };
    assert_eq!(s.cache_get("h1", &a.path, &touched).unwrap(), None);
    assert_eq!(
        s.cache_get_many(
            "h1",
            &[
                (a.path.clone(), a.key),
                (a.path.clone(), touched),
                ("/none".into(), a.key)
            ]
        )
        .unwrap(),
        [Some(a.facts.clone()), None, None]
    );
    // Upsert: the same (host, path) again replaces the row.
    let mut a2 = a.clone();
    a2.key = touched;
    a2.verdict_name = "mismatch".into();
    s.cache_put("h1", &[a2.clone()]).unwrap();
    assert_eq!(s.cache_len().unwrap(), 3);
    let scans = s.scans(false).unwrap();
    assert_eq!(scans.len(), 3);
    assert_eq!(
        scans
            .iter()
            .map(|x| (
                x.host.as_str(),
                x.row.path.as_str(),
                x.row.verdict_name.as_str()
            ))
            .collect::<Vec<_>>(),
        [
            ("h1", "/img/a.qcow2", "mismatch"),
            ("h1", "/img/b.qcow2", "unknown"),
            ("h2", "/img/a.qcow2", "unknown")
        ]
    );
    assert_eq!(scans[0].row.key, touched);
    assert_eq!(scans[1].row.backing.as_deref(), Some("/base.qcow2"));
    assert_eq!(
        scans[0].digest_key.as_deref(),
        Some(format!("md5:{}", "a".repeat(32)).as_str())
    );

    // Audit verdicts.
    let audit = AuditRecord {
        host: "h1".into(),
        path: "/img/a.qcow2".into(),
        digest: a.digest_key().unwrap(),
        verdict: "modified".into(),
        counts: "{\"high\":1}".into(),
        findings: "[{\"rule\":\"r\",\"severity\":\"high\",\"path\":\"/etc/x\"}]".into(),
        audited_at: 100,
    };
    s.put_audits(std::slice::from_ref(&audit)).unwrap();
    let mut again = audit.clone();
    again.verdict = "tampered".into();
    s.put_audits(&[again.clone()]).unwrap();
    assert_eq!(s.audits().unwrap(), [again.clone()]);

    // Export, then import into the other backend: the same catalog.
    let mut buf = Vec::new();
    let n = qvet_catalog::export::export(&s, &mut buf).unwrap();
    assert_eq!((n.entries, n.baselines, n.scans, n.audits), (2, 1, 3, 1));
    let mut t = Store::open_or_create(other).unwrap();
    let m = qvet_catalog::export::import(&mut t, &mut buf.as_slice(), "x.jsonl").unwrap();
    assert_eq!((m.entries, m.existing, m.scans, m.audits), (2, 0, 3, 1));
    let strip = |v: Vec<qvet_catalog::Entry>| -> Vec<(String, Reference)> {
        v.into_iter().map(|e| (e.source, e.reference)).collect()
    };
    assert_eq!(strip(t.entries().unwrap()), strip(s.entries().unwrap()));
    assert_eq!(t.scans(true).unwrap(), s.scans(true).unwrap());
    assert_eq!(t.audits().unwrap(), [again]);
    let tid = match t.entries().unwrap()[0].id {
        qvet_catalog::EntryId::User(n) => n,
        _ => panic!(),
    };
    assert_eq!(t.baseline(tid).unwrap().as_deref(), Some("{\"schema\":2}"));
    // Importing again merges: nothing new, nothing doubled.
    let m = qvet_catalog::export::import(&mut t, &mut buf.as_slice(), "x.jsonl").unwrap();
    assert_eq!((m.entries, m.existing), (0, 2));
    assert_eq!(t.entries().unwrap().len(), 2);
    assert_eq!(t.cache_len().unwrap(), 3);
    // Hostile lines: clear errors with line numbers, nothing written.
    for (bad, why) in [
        ("{\"schema\":\"nope\"}\n", "line 1"),
        ("{\"schema\":\"qvet-catalog-export-v1\"}\n[1]\n", "line 2: not a JSON object"),
        (
            "{\"schema\":\"qvet-catalog-export-v1\"}\n{\"kind\":\"scan\",\"host\":1}\n",
            "'host' must be a string",
        ),
        (
            "{\"schema\":\"qvet-catalog-export-v1\"}\n{\"kind\":\"entry\",\"source\":\"s\",\"label\":\"l\",\"digests\":{\"md5\":\"zz\"}}\n",
            "not a md5 digest",
        ),
        ("", "empty"),
    ] {
        let e = qvet_catalog::export::import(&mut t, &mut bad.as_bytes(), "bad.jsonl").unwrap_err();
        assert!(e.to_string().contains(why), "{e} / {why}");
    }
    assert_eq!(t.entries().unwrap().len(), 2);

    // Remove drops the baseline.
    assert!(s.remove(id).unwrap());
    assert!(!s.remove(id).unwrap());
    assert_eq!(s.baseline(id).unwrap(), None);
    assert_eq!(s.entries().unwrap().len(), 1);
}

/// A version-1 or -2 catalog with one entry, one baseline (v2) and one
/// path-keyed cache row, as earlier releases wrote.
fn old_catalog(l: &Location, version: i64, sql: &dyn Fn(&str)) {
    create_at_version(l, version).unwrap();
    sql("INSERT INTO entries (source, label, added_at, identity) VALUES ('user', 'old', 1, 'old-ident')");
    sql("INSERT INTO digests (entry_id, algo, hex) VALUES (1, 'md5', '00000000000000000000000000000000')");
    if version >= 2 {
        sql("INSERT INTO baselines (entry_id, json) VALUES (1, '{\"schema\":\"b\"}')");
    }
    sql(
        "INSERT INTO scan_cache (path, size, mtime_ns, inode, digests, verdict, scanned_at) VALUES \
         ('/old/o.qcow2', 3, 4, 5, '{\"md5\":\"11111111111111111111111111111111\"}', \
          '{\"verdict\":\"genuine\",\"overlay\":{\"backing_file\":\"b\",\"backing_path\":\"/old/b\"},\
            \"matches\":[{\"entry\":{\"label\":\"old\"}}]}', 9)",
    );
}

fn migrations(l: &Location, version: i64, sql: &dyn Fn(&str)) {
    old_catalog(l, version, sql);
    let ro = Store::open_read_only(l).unwrap().unwrap();
    assert_eq!(ro.version(), version);
    assert_eq!(ro.entries().unwrap()[0].reference.label, "old");
    let b = ro.baseline(1).unwrap();
    assert_eq!(b.is_some(), version >= 2);
    let e = ro.scans(false).unwrap_err().to_string();
    assert!(e.contains("qvet catalog migrate"), "{e}");
    assert_eq!(ro.cache_len().unwrap(), 0);
    drop(ro);
    let (s, before) = Store::migrate(l).unwrap();
    assert_eq!(before, Some(version));
    assert_eq!(s.version(), SCHEMA_VERSION);
    assert_eq!(s.entries().unwrap()[0].reference.digests.len(), 1);
    let scans = s.scans(false).unwrap();
    assert_eq!(scans.len(), 1);
    let r = &scans[0];
    assert_eq!(r.host, local_hostname());
    assert_eq!(r.row.path, "/old/o.qcow2");
    assert_eq!(r.row.verdict_name, "genuine");
    assert_eq!(r.row.backing.as_deref(), Some("/old/b"));
    assert_eq!(r.row.label.as_deref(), Some("old"));
    assert_eq!(
        r.digest_key.as_deref(),
        Some("md5:11111111111111111111111111111111")
    );
    drop(s);
    // Opening again does not migrate twice.
    assert_eq!(Store::migrate(l).unwrap().1, Some(SCHEMA_VERSION));
}

fn sqlite_sql(path: &std::path::Path) -> impl Fn(&str) + '_ {
    move |q| {
        rusqlite::Connection::open(path)
            .unwrap()
            .execute_batch(q)
            .unwrap()
    }
}

#[test]
fn sqlite_backend() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("sub").join("catalog.sqlite");
    let other = d.path().join("other.sqlite");
    suite(&Location::Sqlite(p.clone()), &Location::Sqlite(other));
    for v in [1, 2] {
        let p = d.path().join(format!("v{v}.sqlite"));
        migrations(&Location::Sqlite(p.clone()), v, &sqlite_sql(&p));
    }
}

#[test]
fn sqlite_never_created_by_reading_and_foreign_files_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("sub").join("catalog.sqlite");
    assert!(Store::open_read_only(&Location::Sqlite(p.clone()))
        .unwrap()
        .is_none());
    assert!(!p.parent().unwrap().exists());
    let f = d.path().join("not-a-db");
    std::fs::write(&f, b"hello, this is not sqlite at all, really not").unwrap();
    assert!(Store::open_read_only(&Location::Sqlite(f.clone())).is_err());
    assert!(Store::open_or_create(&Location::Sqlite(f)).is_err());
    let q = d.path().join("other.sqlite");
    sqlite_sql(&q)("CREATE TABLE t (x INTEGER);");
    let e = Store::open_or_create(&Location::Sqlite(q)).unwrap_err();
    assert!(e.to_string().contains("not a qvet catalog"), "{e}");
}

#[test]
fn postgres_backend() {
    let Some(mut pg) = PgCluster::start_or_skip("postgres_backend") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();

    // The suite, exporting to SQLite; and SQLite's export into PostgreSQL.
    let db = pg.database("suite");
    suite(
        &loc(&db.owner_url),
        &Location::Sqlite(d.path().join("from-pg.sqlite")),
    );
    let db2 = pg.database("suite");
    suite(
        &Location::Sqlite(d.path().join("to-pg.sqlite")),
        &loc(&db2.owner_url),
    );

    // Migrations from the previous schemas.
    for v in [1, 2] {
        let db = pg.database("mig");
        let name = db.name.clone();
        let sql = |q: &str| {
            pg.psql(&name, &format!("SET ROLE {name}_owner; {q}"));
        };
        migrations(&loc(&db.owner_url), v, &sql);
    }

    // A read-only role reads and is refused writes with a clear error.
    let db = pg.database("ro");
    let mut s = Store::open_or_create(&loc(&db.owner_url)).unwrap();
    s.add("user", &[sample()]).unwrap();
    drop(s);
    let ro = Store::open_read_only(&loc(&db.ro_url)).unwrap().unwrap();
    assert_eq!(ro.entries().unwrap().len(), 1);
    drop(ro);
    let e = Store::open_or_create(&loc(&db.ro_url)).unwrap_err();
    assert!(matches!(e, CatalogError::ReadOnly { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("read-only") && msg.contains(":***@"), "{msg}");
    assert!(!msg.contains(&db.ro_password), "{msg}");
    // … and cannot migrate an old catalog.
    let db = pg.database("romig");
    create_at_version(&loc(&db.owner_url), 2).unwrap();
    let e = Store::open_or_create(&loc(&db.ro_url))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("qvet catalog migrate") && !e.contains(&db.ro_password),
        "{e}"
    );
    // A wrong password: the error names the role, never the password.
    let bad = db.owner_url.replace(&db.owner_password, "Wr0ng-Pass-w0rd");
    let e = Store::open_read_only(&loc(&bad)).unwrap_err().to_string();
    assert!(
        e.contains("password authentication failed") && !e.contains("Wr0ng-Pass-w0rd"),
        "{e}"
    );

    // A connection terminated between operations: retried on a new one.
    let db = pg.database("drop");
    let l = loc(&db.owner_url);
    let mut s = Store::open_or_create(&l).unwrap();
    let killed = pg.psql(
        "postgres",
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{}' AND application_name = 'qvet'",
            db.name
        ),
    );
    assert_eq!(killed.trim(), "1");
    let rows: Vec<CacheRow> = (0..50)
        .map(|i| row(&format!("/r/{i:03}"), 'c', i))
        .collect();
    s.cache_put("h", &rows).unwrap();
    assert_eq!(s.cache_len().unwrap(), 50);
    // The server gone for good: reported, and nothing half written.
    pg.stop();
    let more: Vec<CacheRow> = (0..50)
        .map(|i| row(&format!("/s/{i:03}"), 'd', i))
        .collect();
    let e = s.cache_put("h2", &more).unwrap_err().to_string();
    assert!(
        e.contains(":***@") && !e.contains(&db.owner_password),
        "{e}"
    );
    pg.restart();
    let s = Store::open_read_only(&l).unwrap().unwrap();
    assert_eq!(s.cache_len().unwrap(), 50);
    assert!(s.scans(false).unwrap().iter().all(|r| r.host == "h"));
}
