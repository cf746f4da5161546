//! Many hosts, one catalog: concurrent `qvet scan` processes (2 and 8, over
//! overlapping trees, as different hosts and as one host) lose and double
//! nothing; re-scans hash only what changed; `qvet fleet` shows copies,
//! other names, overlays and audit verdicts; `catalog export/import` moves
//! a catalog between SQLite and PostgreSQL; `catalog migrate`. The same
//! suite runs against SQLite and a throw-away PostgreSQL cluster; on
//! PostgreSQL also the read-only role, passwords never printed and a
//! connection terminated mid-scan.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
#[path = "../../catalog/tests/support/pgcluster.rs"]
mod pgcluster;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;
use pgcluster::PgCluster;
use serde_json::Value;

/// Images under `root`: `t0 … t3` trees of 5 raw images each, every tree
/// also holding `shared/` (a second link to the same directory is not
/// needed: the trees overlap by being given twice), copies under other
/// names, and a qcow2 overlay of `t0/img0.img`.
fn make_tree(root: &Path) -> usize {
    let mut n = 0;
    for t in 0..4 {
        let d = root.join(format!("t{t}"));
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..5 {
            let mut bytes = vec![0u8; 4096 + i * 512];
            for (k, b) in bytes.iter_mut().enumerate() {
                *b = (k * 31 + t * 7 + i * 13) as u8;
            }
            std::fs::write(d.join(format!("img{i}.img")), bytes).unwrap();
            n += 1;
        }
    }
    // Same content as t0/img1.img under another name.
    std::fs::copy(root.join("t0/img1.img"), root.join("t1/copy-of-one.img")).unwrap();
    n += 1;
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        root.join("t0/img0.img").to_str().unwrap(),
        "-F",
        "raw",
        root.join("t2/overlay.qcow2").to_str().unwrap(),
    ]);
    n + 1
}

fn spawn_scan(catalog: &str, host: &str, dirs: &[&Path]) -> std::process::Child {
    let mut c = Command::new(QVET);
    c.args([
        "scan",
        "-q",
        "--output",
        "json",
        "--host",
        host,
        "--catalog",
        catalog,
    ]);
    for d in dirs {
        c.arg(d);
    }
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finished(o: Output, secret: Option<&str>) -> Value {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    if let Some(s) = secret {
        assert!(
            !out.contains(s) && !err.contains(s),
            "password printed:\n{out}\n{err}"
        );
    }
    // 3: unknown images (no reference matches them); anything else failed.
    assert!(
        matches!(o.status.code(), Some(0 | 3)),
        "{:?}\n{out}\n{err}",
        o.status
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}\n{err}"))
}

fn fleet_json(catalog: &str) -> Value {
    let r = qvet(&["fleet", "--output", "json", "--catalog", catalog]);
    assert_success(&r);
    serde_json::from_str(&r.stdout_str()).unwrap()
}

/// (host, path) of every copy the fleet lists; panics on a duplicate.
fn copies(fleet: &Value) -> BTreeSet<(String, String)> {
    let mut set = BTreeSet::new();
    for img in fleet["images"].as_array().unwrap() {
        for c in img["copies"].as_array().unwrap() {
            let k = (
                c["host"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
            );
            assert!(set.insert(k.clone()), "duplicated row {k:?}");
        }
    }
    set
}

/// The suite both backends pass. `catalog` is a path or URL with `secret`
/// (its password) that must never be printed.
fn suite(catalog: &str, other: &str, secret: Option<&str>, s: &Scratch) {
    let root = s.path("images");
    let images = make_tree(&root);
    let trees: Vec<_> = (0..4).map(|t| root.join(format!("t{t}"))).collect();
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap();

    let r = qvet(&["catalog", "--catalog", catalog, "migrate"]);
    assert_success(&r);
    assert!(
        r.stdout_str().contains("schema version 3"),
        "{}",
        r.describe()
    );

    // Two hosts scanning the same whole tree at once.
    let kids: Vec<_> = (0..2)
        .map(|h| spawn_scan(catalog, &format!("pair-{h}"), &[&root]))
        .collect();
    for k in kids {
        let v = finished(k.wait_with_output().unwrap(), secret);
        assert_eq!(v["summary"]["images"], images, "{v}");
    }
    let f = fleet_json(catalog);
    let seen = copies(&f);
    assert_eq!(seen.len(), 2 * images, "{}", f["summary"]);

    // Eight processes: four hosts, two processes each, over overlapping
    // trees (each gives its tree and the next one).
    let kids: Vec<_> = (0..8)
        .map(|k| {
            let t = k % 4;
            spawn_scan(
                catalog,
                &format!("eight-{}", k / 2),
                &[&trees[t], &trees[(t + 1) % 4]],
            )
        })
        .collect();
    for k in kids {
        finished(k.wait_with_output().unwrap(), secret);
    }
    let f = fleet_json(catalog);
    let seen = copies(&f);
    let mut expected: BTreeSet<(String, String)> = BTreeSet::new();
    for h in 0..2 {
        for walk in walkdir(&root) {
            expected.insert((format!("pair-{h}"), walk));
        }
    }
    for k in 0..8usize {
        let t = k % 4;
        for dir in [&trees[t], &trees[(t + 1) % 4]] {
            for walk in walkdir(dir) {
                expected.insert((format!("eight-{}", k / 2), walk));
            }
        }
    }
    assert_eq!(seen, expected, "lost or extra rows");
    assert_eq!(f["summary"]["copies"], expected.len());
    assert_eq!(f["summary"]["hosts"], 6);

    // Same content under another name, the overlay and its backing file.
    let one = canon(&root.join("t0/img1.img"));
    let img = f["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["copies"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["path"] == one.to_str().unwrap())
        })
        .unwrap();
    assert_eq!(
        img["names"],
        serde_json::json!(["copy-of-one.img", "img1.img"]),
        "{img}"
    );
    let overlay = canon(&root.join("t2/overlay.qcow2"));
    let ov = f["images"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["copies"].as_array().unwrap())
        .find(|c| c["path"] == overlay.to_str().unwrap() && c["host"] == "pair-0")
        .unwrap();
    assert_eq!(ov["backing"]["known"], true, "{ov}");
    assert_eq!(f["summary"]["overlays"], 6, "{}", f["summary"]);

    // A re-scan hashes only what changed.
    std::fs::write(root.join("t3/img4.img"), b"changed").unwrap();
    let v = finished(
        spawn_scan(catalog, "pair-0", &[&root])
            .wait_with_output()
            .unwrap(),
        secret,
    );
    assert_eq!(v["summary"]["hashed"], 1, "{v}");
    assert_eq!(v["summary"]["cached"], images - 1, "{v}");

    // An audit against a writable catalog records its verdict.
    let r = qvet(&[
        "audit",
        "--output",
        "json",
        "--fail-on",
        "never",
        "--host",
        "pair-0",
        "--catalog",
        catalog,
        root.join("t0/img1.img").to_str().unwrap(),
    ]);
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    let f = fleet_json(catalog);
    let img = f["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["names"].as_array().unwrap().len() == 2)
        .unwrap();
    assert!(img["audit"]["verdict"].is_string(), "{img}");

    // Human and HTML fleet views.
    let r = qvet(&["fleet", "--catalog", catalog]);
    assert_success(&r);
    let text = r.stdout_str();
    assert!(text.contains("same content, other name"), "{text}");
    assert!(text.contains("overlay of"), "{text}");
    assert!(text.contains("on 6 host(s)"), "{text}");
    let html = s.path("fleet.html");
    let r = qvet(&[
        "fleet",
        "--catalog",
        catalog,
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_success(&r);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("pair-0:") && page.contains("copy-of-one.img"));
    let r = qvet(&["fleet", "--catalog", catalog, "--output", "html"]);
    assert!(
        r.stdout_str().starts_with("<!DOCTYPE html>")
            || r.stdout_str().starts_with("<!doctype html>"),
        "{}",
        clip(&r.stdout_str(), 200)
    );

    // Export, import into the other backend: the same fleet.
    let file = s.path("export.jsonl");
    let r = qvet(&[
        "catalog",
        "--catalog",
        catalog,
        "export",
        file.to_str().unwrap(),
    ]);
    assert_success(&r);
    let r = qvet(&[
        "catalog",
        "--catalog",
        other,
        "import",
        file.to_str().unwrap(),
    ]);
    assert_success(&r);
    let g = fleet_json(other);
    assert_eq!(copies(&g), copies(&f));
    assert_eq!(g["summary"], f["summary"]);
    // Importing twice merges: no duplicates.
    let r = qvet(&[
        "catalog",
        "--catalog",
        other,
        "import",
        file.to_str().unwrap(),
    ]);
    assert_success(&r);
    assert_eq!(fleet_json(other)["summary"], f["summary"]);

    // QVET_CATALOG names the catalog when --catalog is absent.
    let r = run_with_env(&["fleet", "--output", "json"], catalog);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["summary"], f["summary"]);
    if let Some(secret) = secret {
        for out in [&r.stdout, &r.stderr] {
            assert!(!String::from_utf8_lossy(out).contains(secret));
        }
    }
    stale_copy(other, s);
}

/// A copy last scanned long ago is listed as stale (imported, as a site
/// that stopped scanning would have it).
fn stale_copy(catalog: &str, s: &Scratch) {
    let file = s.path("old.jsonl");
    std::fs::write(
        &file,
        "{\"schema\":\"qvet-catalog-export-v1\",\"version\":3}\n\
         {\"kind\":\"scan\",\"host\":\"gone\",\"path\":\"/srv/old.qcow2\",\"size\":1,\
          \"mtime_ns\":0,\"inode\":1,\"digests\":{\"md5\":\"00112233445566778899aabbccddeeff\"},\
          \"content\":null,\"verdict\":{},\"verdict_name\":\"unknown\",\"backing\":null,\
          \"label\":null,\"scanned_at\":1000}\n",
    )
    .unwrap();
    let r = qvet(&[
        "catalog",
        "--catalog",
        catalog,
        "import",
        file.to_str().unwrap(),
    ]);
    assert_success(&r);
    let r = qvet(&[
        "fleet",
        "--output",
        "json",
        "--stale-days",
        "30",
        "--catalog",
        catalog,
    ]);
    assert_success(&r);
    let v: Value = serde_json::from_str(&r.stdout_str()).unwrap();
    assert_eq!(v["summary"]["stale_copies"], 1, "{}", v["summary"]);
    let r = qvet(&["fleet", "--catalog", catalog]);
    assert!(
        r.stdout_str()
            .contains("gone:/srv/old.qcow2  [stale: not seen for"),
        "{}",
        r.describe()
    );
}

fn run_with_env(args: &[&str], catalog: &str) -> Output {
    Command::new(QVET)
        .args(args)
        .env("QVET_CATALOG", catalog)
        .output()
        .unwrap()
}

/// Canonical paths of the images directly or deeper under `dir`.
fn walkdir(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(std::fs::canonicalize(&p).unwrap().display().to_string());
            }
        }
    }
    out
}

#[test]
fn sqlite_fleet() {
    let s = Scratch::new("fleet-sqlite");
    let a = s.s("a/catalog.sqlite");
    let b = s.s("b.sqlite");
    suite(&a, &b, None, &s);
}

#[test]
fn postgres_fleet() {
    let Some(pg) = PgCluster::start_or_skip("postgres_fleet") else {
        return;
    };
    let s = Scratch::new("fleet-pg");
    let db = pg.database("fleet");
    // PostgreSQL → SQLite, then SQLite → PostgreSQL.
    suite(
        &db.owner_url,
        &s.s("from-pg.sqlite"),
        Some(&db.owner_password),
        &s,
    );
    let db2 = pg.database("fleet");
    let s2 = Scratch::new("fleet-pg2");
    suite(
        &s2.s("to-pg.sqlite"),
        &db2.owner_url,
        Some(&db2.owner_password),
        &s2,
    );

    // The read-only role: fleet, verify and audit work; scan is refused
    // clearly, before anything is read; nothing is recorded.
    let img = s.path("images/t0/img1.img");
    let before = fleet_json(&db.owner_url);
    let r = qvet(&["fleet", "--output", "json", "--catalog", &db.ro_url]);
    assert_success(&r);
    assert!(!r.stdout_str().contains(&db.ro_password));
    let v: Value = serde_json::from_str(&r.stdout_str()).unwrap();
    assert_eq!(v["summary"], before["summary"]);
    assert!(v["catalog"].as_str().unwrap().contains(":***@"), "{v}");
    let o = Command::new(QVET)
        .args(["verify", "--catalog", &db.ro_url, img.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(matches!(o.status.code(), Some(0 | 3)), "{o:?}");
    let r = qvet(&[
        "audit",
        "--fail-on",
        "never",
        "--host",
        "auditor",
        "--catalog",
        &db.ro_url,
        img.to_str().unwrap(),
    ]);
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    assert!(!r.stderr.contains(&db.ro_password), "{}", r.describe());
    let r = qvet(&[
        "scan",
        "-q",
        "--catalog",
        &db.ro_url,
        s.path("images").to_str().unwrap(),
    ]);
    assert_eq!(r.code(), Some(1), "{}", r.describe());
    assert!(r.stderr.contains("read-only"), "{}", r.describe());
    assert!(r.stderr.contains(":***@"), "{}", r.describe());
    assert!(!r.stderr.contains(&db.ro_password), "{}", r.describe());
    let r = qvet(&["catalog", "--catalog", &db.ro_url, "migrate"]);
    assert_eq!(r.code(), Some(1), "{}", r.describe());
    assert!(r.stderr.contains("read-only"), "{}", r.describe());
    let after = fleet_json(&db.owner_url);
    assert_eq!(after, before, "the read-only role wrote");

    // A connection terminated mid-scan: retried, or reported; never a
    // half-written record.
    let db = pg.database("kill");
    let big = s.path("many");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..300u32 {
        std::fs::write(
            big.join(format!("m{i:03}.img")),
            i.to_le_bytes().repeat(2048),
        )
        .unwrap();
    }
    let r = qvet(&["catalog", "--catalog", &db.owner_url, "migrate"]);
    assert_success(&r);
    let child = spawn_scan(&db.owner_url, "victim", &[&big]);
    let mut killed = 0;
    let start = std::time::Instant::now();
    while killed == 0 && start.elapsed() < std::time::Duration::from_secs(60) {
        let n = pg.psql(
            "postgres",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = '{}' AND application_name = 'qvet'",
                db.name
            ),
        );
        killed = n.trim().parse::<u32>().unwrap();
    }
    assert!(killed > 0, "the scan's connection was never seen");
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains(&db.owner_password));
    let rows = pg.psql(
        &db.name,
        "SELECT count(*) FROM scan_results WHERE host = 'victim'",
    );
    eprintln!(
        "terminated {killed} backend(s) mid-scan: scan exit {:?}, {} rows; stderr: {err}",
        o.status.code(),
        rows.trim()
    );
    match o.status.code() {
        // Retried on a new connection: every row is there.
        Some(0 | 3) => assert_eq!(rows.trim(), "300", "{err}"),
        // Reported: nothing of it written.
        _ => {
            assert_eq!(rows.trim(), "0", "{err}");
            assert!(err.contains("catalog database"), "{err}");
        }
    }
    let half = pg.psql(
        &db.name,
        "SELECT count(*) FROM scan_results WHERE verdict_name = '' OR digest_key IS NULL",
    );
    assert_eq!(half.trim(), "0");
}
