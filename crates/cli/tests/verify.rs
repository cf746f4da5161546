//! `qvet catalog`, `qvet verify` and `qvet scan` end to end.
//!
//! Every run uses a catalog database inside its own scratch directory
//! (`--catalog`), never the user's. Images are small files written here or
//! converted with `qemu-img`; registry-style references are imported from
//! hand-written samples in the real formats (.gns3a JSON, GNU and BSD
//! checksum lists, Cisco download-page text, Glance image JSON).
//!
//! Verdicts covered: genuine (imported registry entry, built-in registry
//! name claims, command-line digests, `--sums`), content-identical
//! (`catalog add` of a raw image, then its qcow2 conversions), mismatch
//! (a file named like a built-in GNS3 entry; a one-byte change against a
//! manifest), unknown; `.md5sum` sidecars (consistent, stale, forged,
//! malformed); exit codes; the scan cache (unchanged → `cached: true`,
//! touched or modified → hashed again).

// Test code: panicking on a broken fixture or a mismatch is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::Path;

/// `qvet ARGS…`; asserts no panic and the expected exit code.
fn qv(args: &[&str], code: i32) -> Run {
    let r = run_with(QVET, args, None, Stdout::Capture, ORACLE_TIMEOUT);
    assert!(
        !r.stderr.contains("panicked"),
        "qvet PANICKED\n{}",
        r.describe()
    );
    assert_eq!(
        r.code(),
        Some(code),
        "unexpected exit code\n{}",
        r.describe()
    );
    r
}

fn qv_json(args: &[&str], code: i32) -> Value {
    let r = qv(args, code);
    parse_qvet_json(&r)
}

fn md5_of(path: &str) -> String {
    let r = run_ok("md5sum", &[path]);
    r.stdout_str()[..32].to_string()
}

fn sha256_of(path: &str) -> String {
    let r = run_ok("sha256sum", &[path]);
    r.stdout_str()[..64].to_string()
}

fn sha512_of(path: &str) -> String {
    let r = run_ok("sha512sum", &[path]);
    r.stdout_str()[..128].to_string()
}

/// `verify --output json` of one image: its object.
fn verify1(cat: &str, img: &str, extra: &[&str], code: i32) -> Value {
    let mut args = vec!["verify", "--output", "json", "--catalog", cat];
    args.extend_from_slice(extra);
    args.push(img);
    let v = qv_json(&args, code);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    v[0].clone()
}

fn import(cat: &str, file: &str, extra: &[&str]) -> Value {
    let mut args = vec!["catalog", "import", "--output", "json", "--catalog", cat];
    args.extend_from_slice(extra);
    args.push(file);
    qv_json(&args, 0)
}

const CSR_NAME: &str = "csr1000v-universalk9.17.03.08a-serial.qcow2";
const CSR_MD5: &str = "6abece87d6db99d9fd6917203e253f91";

// ---------------------------------------------------------------------------
// Importers
// ---------------------------------------------------------------------------

fn gns3a(name: &str, md5: &str, size: u64) -> String {
    format!(
        r#"{{
    "appliance_id": "2f5b8a4e-1c7d-4d1e-9a61-0d7c3b6f2a10",
    "name": "Test Router",
    "category": "router",
    "description": "A router appliance for qvet's tests",
    "vendor_name": "Example",
    "vendor_url": "https://example.invalid/",
    "product_name": "Test Router",
    "registry_version": 4,
    "status": "experimental",
    "maintainer": "qvet",
    "maintainer_email": "qvet@example.invalid",
    "usage": "Default login: admin / admin",
    "qemu": {{
        "adapter_type": "virtio-net-pci",
        "adapters": 4,
        "ram": 1024,
        "hda_disk_interface": "virtio",
        "arch": "x86_64",
        "console_type": "telnet",
        "kvm": "allow"
    }},
    "images": [
        {{
            "filename": "{name}",
            "version": "1.2.3",
            "md5sum": "{md5}",
            "filesize": {size},
            "download_url": "https://example.invalid/download"
        }}
    ],
    "versions": [
        {{"name": "1.2.3", "images": {{"hda_disk_image": "{name}"}}}}
    ]
}}
"#
    )
}

#[test]
fn every_importer_on_real_format_samples() {
    let s = Scratch::new("import");
    let cat = s.s("cat/catalog.sqlite");
    let a = s.s("a.qcow2");
    write_file(&a, &random_bytes(70_000, 1));
    let (md5, sha256, sha512) = (md5_of(&a), sha256_of(&a), sha512_of(&a));

    // A gns3-registry checkout: appliances/*.gns3a.
    let reg = s.path("gns3-registry/appliances");
    fs::create_dir_all(&reg).unwrap();
    fs::write(
        reg.join("test-router.gns3a"),
        gns3a("a.qcow2", &md5, 70_000),
    )
    .unwrap();
    fs::write(
        reg.join("alpine-linux.gns3a"),
        r#"{"name": "Alpine Linux", "registry_version": 4, "docker": {"image": "gns3/alpine"}}"#,
    )
    .unwrap();
    let v = import(&cat, &s.s("gns3-registry"), &[]);
    assert_eq!(v["format"], "gns3a");
    assert_eq!(v["files"], 2);
    assert_eq!(v["added"].as_array().unwrap().len(), 1);
    // Importing again adds nothing.
    let v = import(&cat, &s.s("gns3-registry"), &[]);
    assert_eq!(v["added"].as_array().unwrap().len(), 0);
    assert_eq!(v["already_present"], 1);

    // GNU sha256sum output (text and binary mode, an escaped name).
    let gnu = s.s("SHA256SUMS");
    write_file(
        &gnu,
        format!(
            "{sha256}  a.qcow2\n{} *other.img\n\\{}  we\\\\ird\\nname.img\n",
            "1".repeat(64),
            "2".repeat(64)
        )
        .as_bytes(),
    );
    let v = import(&cat, &gnu, &[]);
    assert_eq!(v["format"], "sums");
    assert_eq!(v["entries"], 3);

    // BSD / `--tag` style with two algorithms for one file.
    let bsd = s.s("CHECKSUMS.txt");
    write_file(
        &bsd,
        format!("MD5 (a.qcow2) = {md5}\nSHA512 (a.qcow2) = {sha512}\n").as_bytes(),
    );
    let v = import(&cat, &bsd, &[]);
    assert_eq!(v["format"], "sums");
    assert_eq!(v["entries"], 1);

    // Cisco download-page text: grouped MD5, SHA512 wrapped over two lines.
    let cisco = s.s("cisco-details.txt");
    let grouped: Vec<String> = md5
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8(c.to_vec()).unwrap().to_uppercase())
        .collect();
    write_file(
        &cisco,
        format!(
            "Details\nDescription : Test Router KVM image\nRelease : 1.2.3\nRelease Date : 01-Jan-2026\n\
             FileName : a.qcow2\nMin Memory : DRAM 1024 Flash 1024\nSize : 0.07 MB ( 70000 bytes)\n\
             MD5 Checksum : {}\nSHA512 Checksum : {}\n{}\n",
            grouped.join(":"),
            &sha512[..64],
            &sha512[64..]
        )
        .as_bytes(),
    );
    let v = import(&cat, &cisco, &[]);
    assert_eq!(v["format"], "cisco");
    assert_eq!(v["entries"], 1);

    // OpenStack Glance: `image show -f json` and `image list --long -f json`.
    let glance = s.s("image-show.json");
    write_file(
        &glance,
        format!(
            r#"{{"checksum": "{md5}", "container_format": "bare", "disk_format": "qcow2",
  "id": "5e2d7c1a-0b3f-4e6d-8a9c-1f2e3d4c5b6a", "min_disk": 0, "min_ram": 0,
  "name": "a.qcow2", "os_hash_algo": "sha512", "os_hash_value": "{sha512}",
  "os_hidden": false, "protected": false, "size": 70000, "status": "active",
  "visibility": "private"}}"#
        )
        .as_bytes(),
    );
    let v = import(&cat, &glance, &[]);
    assert_eq!(v["format"], "glance");
    let list = s.s("image-list.json");
    write_file(
        &list,
        format!(
            r#"[{{"ID": "0a1b", "Name": "cirros", "Disk Format": "qcow2", "Container Format": "bare",
    "Size": 21430272, "Checksum": "{}", "Status": "active"}}]"#,
            "3".repeat(32)
        )
        .as_bytes(),
    );
    assert_eq!(import(&cat, &list, &[])["format"], "glance");

    // --format overrides detection; a wrong format is refused.
    let plain = s.s("published.txt");
    write_file(&plain, format!("{md5}  a.qcow2\n").as_bytes());
    assert_eq!(
        import(&cat, &plain, &["--format", "sums"])["format"],
        "sums"
    );
    let r = qv(
        &[
            "catalog",
            "import",
            "--catalog",
            &cat,
            "--format",
            "glance",
            &plain,
        ],
        1,
    );
    assert!(r.stderr.starts_with("qvet: "), "{}", r.describe());
    let junk = s.s("junk.txt");
    write_file(&junk, b"nothing to see\n");
    qv(&["catalog", "import", "--catalog", &cat, &junk], 1);

    // list / show / remove.
    let l = qv_json(
        &["catalog", "list", "--output", "json", "--catalog", &cat],
        0,
    );
    let entries = l["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 9, "{l:#}");
    assert_eq!(l["builtin"]["current"], 1260);
    let sources: Vec<&str> = entries
        .iter()
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    for src in ["gns3a", "sums", "cisco", "glance"] {
        assert!(sources.contains(&src), "{sources:?}");
    }
    let cisco_entry = entries.iter().find(|e| e["source"] == "cisco").unwrap();
    assert_eq!(cisco_entry["digests"]["md5"], md5.as_str());
    assert_eq!(cisco_entry["digests"]["sha512"], sha512.as_str());
    assert_eq!(cisco_entry["size"], 70000);
    let weird = entries
        .iter()
        .find(|e| e["filename"] == "we\\ird\nname.img")
        .unwrap_or_else(|| panic!("escaped name not decoded: {l:#}"));
    let id = weird["id"].as_str().unwrap().to_string();
    let shown = qv_json(
        &[
            "catalog",
            "show",
            "--output",
            "json",
            "--catalog",
            &cat,
            &id,
        ],
        0,
    );
    assert_eq!(shown["digests"]["sha256"], "2".repeat(64));
    qv(&["catalog", "remove", "--catalog", &cat, &id], 0);
    qv(&["catalog", "show", "--catalog", &cat, &id], 1);
    qv(&["catalog", "remove", "--catalog", &cat, &id], 1);
    // Built-in entries can be shown, not removed.
    let g = qv_json(
        &[
            "catalog",
            "show",
            "--output",
            "json",
            "--catalog",
            &cat,
            "gns3:1",
        ],
        0,
    );
    assert_eq!(g["source"], "gns3-registry");
    let r = qv(&["catalog", "remove", "--catalog", &cat, "gns3:1"], 1);
    assert!(r.stderr.contains("built-in"), "{}", r.describe());
    let all = qv_json(
        &[
            "catalog",
            "list",
            "--all",
            "--output",
            "json",
            "--catalog",
            &cat,
        ],
        0,
    );
    assert_eq!(all["entries"].as_array().unwrap().len(), 8 + 1260 + 587);

    // Every imported digest now recognises the file.
    let v = verify1(&cat, &a, &[], 0);
    assert_eq!(v["verdict"], "genuine");
    let srcs: Vec<&str> = v["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["source"].as_str().unwrap())
        .collect();
    for src in ["gns3a", "sums", "cisco", "glance"] {
        assert!(srcs.contains(&src), "{v:#}");
    }
    // All four algorithms present in the catalog were computed, in one pass.
    for algo in ["md5", "sha256", "sha512"] {
        assert!(v["file"][algo].is_string(), "{v:#}");
    }
}

// ---------------------------------------------------------------------------
// Verdicts
// ---------------------------------------------------------------------------

#[test]
fn genuine_via_an_imported_registry_entry() {
    let s = Scratch::new("genuine");
    let cat = s.s("catalog.sqlite");
    let img = s.s("test-router-1.2.3.qcow2");
    write_file(&img, &random_bytes(100_000, 7));
    let app = s.s("test-router.gns3a");
    write_file(
        &app,
        gns3a("test-router-1.2.3.qcow2", &md5_of(&img), 100_000).as_bytes(),
    );
    import(&cat, &app, &[]);
    let v = verify1(&cat, &img, &[], 0);
    assert_eq!(v["verdict"], "genuine");
    let m = &v["matches"][0];
    assert_eq!(m["source"], "gns3a");
    assert_eq!(m["algorithm"], "md5");
    assert_eq!(m["superseded"], false);
    assert_eq!(m["entry"]["label"], "test-router");
    assert_eq!(m["entry"]["version"], "1.2.3");
    // Only MD5 is recorded anywhere: nothing else was computed.
    assert_eq!(v["file"].as_object().unwrap().len(), 1, "{v:#}");
    assert!(v["content"].is_null());

    // Renamed (as EVE-NG does): still genuine, by digest.
    let renamed = s.s("virtioa.qcow2");
    fs::copy(&img, &renamed).unwrap();
    assert_eq!(verify1(&cat, &renamed, &[], 0)["verdict"], "genuine");

    // Human output names the source and the entry.
    let r = qv(&["verify", "--catalog", &cat, &img], 0);
    let out = r.stdout_str();
    assert!(out.contains("genuine"), "{out}");
    assert!(out.contains("gns3a test-router"), "{out}");
}

#[test]
fn content_identical_after_conversion() {
    let s = Scratch::new("content");
    let cat = s.s("catalog.sqlite");
    let raw = s.s("appliance.raw");
    let mut data = random_bytes(2 << 20, 3);
    data.extend(vec![0u8; 2 << 20]);
    data.extend(text_bytes(1 << 20, 9));
    write_file(&raw, &data);
    let added = qv_json(
        &[
            "catalog",
            "add",
            "--output",
            "json",
            "--catalog",
            &cat,
            "--label",
            "vendor original",
            "--version",
            "7.1",
            &raw,
        ],
        0,
    );
    assert_eq!(added["new"], true);
    assert_eq!(added["version"], "7.1");
    for algo in ["md5", "sha1", "sha256", "sha512"] {
        assert!(added["digests"][algo].is_string(), "{added:#}");
    }
    assert_eq!(added["digests"]["sha256"], sha256_of(&raw).as_str());
    let root = added["content"]["root"].as_str().unwrap().to_string();
    assert!(root.starts_with("qvet-content-v1:"));
    assert_eq!(added["content"]["sha256"], sha256_of(&raw).as_str());

    for (name, extra) in [
        ("plain.qcow2", vec![]),
        ("compressed.qcow2", vec!["-c"]),
        ("small-clusters.qcow2", vec!["-o", "cluster_size=4096"]),
    ] {
        let q = s.s(name);
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
        args.extend(extra);
        args.extend([raw.as_str(), q.as_str()]);
        qemu_img(&args);
        let v = verify1(&cat, &q, &[], 0);
        assert_eq!(v["verdict"], "content-identical", "{name}: {v:#}");
        assert_eq!(v["matches"][0]["algorithm"], "content-root");
        assert_eq!(v["matches"][0]["source"], "user");
        assert_eq!(v["matches"][0]["entry"]["label"], "vendor original");
        assert_eq!(v["content"]["root"], root.as_str());
    }
    // The raw file itself: genuine by sha512, no content pass needed.
    let v = verify1(&cat, &raw, &[], 0);
    assert_eq!(v["verdict"], "genuine");
    assert_eq!(v["matches"][0]["algorithm"], "sha512");
    assert!(v["content"].is_null());

    // Same name, one guest byte changed: mismatch, located by the manifest.
    let dir = s.path("modified");
    fs::create_dir(&dir).unwrap();
    let changed = dir.join("appliance.raw");
    data[(3 << 20) + 17] ^= 0xff;
    fs::write(&changed, &data).unwrap();
    let v = verify1(&cat, changed.to_str().unwrap(), &[], 2);
    assert_eq!(v["verdict"], "mismatch");
    let c = &v["claims"][0];
    assert_eq!(c["by"], "name");
    assert_eq!(c["content_diff"]["differing_chunks"], 1);
    assert_eq!(c["content_diff"]["chunks"], 5);

    // Adding the same image again is idempotent.
    let again = qv_json(
        &[
            "catalog",
            "add",
            "--output",
            "json",
            "--catalog",
            &cat,
            "--label",
            "vendor original",
            "--version",
            "7.1",
            &raw,
        ],
        0,
    );
    assert_eq!(again["new"], false);
    assert_eq!(again["id"], added["id"]);
}

#[test]
fn mismatch_unknown_and_exit_codes() {
    let s = Scratch::new("mismatch");
    let cat = s.s("catalog.sqlite");

    // Named like a built-in GNS3 registry entry, other bytes.
    let fake = s.s(CSR_NAME);
    write_file(&fake, &random_bytes(65_536, 5));
    let v = verify1(&cat, &fake, &[], 2);
    assert_eq!(v["verdict"], "mismatch");
    let c = &v["claims"][0];
    assert_eq!(c["by"], "name");
    assert_eq!(c["strength"], "strong");
    assert_eq!(c["agrees"], false);
    assert_eq!(c["source"], "gns3-registry");
    assert_eq!(c["entry"]["label"], "cisco-csr1000v");
    assert_eq!(c["entry"]["size"], 1_421_410_304u64);
    assert_eq!(c["differs"][0], "md5");
    assert!(v["matches"].as_array().unwrap().is_empty());

    // A name with a vendor re-spin: both the current and the superseded
    // registry rows are claimed, and marked.
    let respin = s.s("csr1000v-universalk9.16.07.01-serial.qcow2");
    write_file(&respin, b"respun?");
    let v = verify1(&cat, &respin, &[], 2);
    let sup: Vec<bool> = v["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["superseded"].as_bool().unwrap())
        .collect();
    assert!(sup.contains(&true) && sup.contains(&false), "{v:#}");

    // Nothing to compare with.
    let unknown = s.s("my-own-build.qcow2");
    write_file(&unknown, &random_bytes(12_345, 6));
    let v = verify1(&cat, &unknown, &[], 3);
    assert_eq!(v["verdict"], "unknown");
    assert!(v["claims"].as_array().unwrap().is_empty());

    // Exit codes over several images: any mismatch → 2; genuine + unknown → 3.
    let ok = s.s("ok.img");
    write_file(&ok, b"fine");
    let md5 = md5_of(&ok);
    let arr = qv_json(
        &[
            "verify",
            "--output",
            "json",
            "--catalog",
            &cat,
            "--md5",
            &md5,
            &ok,
            &unknown,
        ],
        2,
    );
    // --md5 applies to every image: `unknown` now claims it and differs.
    assert_eq!(arr[0]["verdict"], "genuine");
    assert_eq!(arr[0]["matches"][0]["source"], "command-line");
    assert_eq!(arr[1]["verdict"], "mismatch");
    assert_eq!(arr[1]["claims"][0]["by"], "expected");
    let sums = s.s("ok.md5");
    write_file(&sums, format!("{md5}  ok.img\n").as_bytes());
    let arr = qv_json(
        &[
            "verify",
            "--output",
            "json",
            "--catalog",
            &cat,
            "--sums",
            &sums,
            &ok,
            &unknown,
        ],
        3,
    );
    assert_eq!(arr[0]["verdict"], "genuine");
    assert_eq!(arr[0]["matches"][0]["source"], "sums-file");
    assert_eq!(arr[1]["verdict"], "unknown");
    qv(
        &[
            "verify",
            "--catalog",
            &cat,
            "--sha256",
            &sha256_of(&ok),
            &ok,
        ],
        0,
    );
    qv(
        &[
            "verify",
            "--catalog",
            &cat,
            "--sha512",
            &"0".repeat(128),
            &ok,
        ],
        2,
    );
    let r = qv(&["verify", "--catalog", &cat, "--md5", "1234", &ok], 1);
    assert!(r.stderr.contains("not a md5 digest"), "{}", r.describe());
    // A missing file is an error (1), reported in the JSON.
    let arr = qv_json(
        &[
            "verify",
            "--output",
            "json",
            "--catalog",
            &cat,
            &s.s("missing.qcow2"),
        ],
        1,
    );
    assert_eq!(arr[0]["verdict"], "error");

    // Reading commands never create the catalog.
    assert!(!Path::new(&cat).exists(), "verify created {cat}");
    qv(&["catalog", "list", "--catalog", &cat], 0);
    assert!(!Path::new(&cat).exists(), "catalog list created {cat}");
}

#[test]
fn md5sum_sidecars() {
    let s = Scratch::new("sidecar");
    let cat = s.s("catalog.sqlite");
    let img = s.s("router.qcow2");
    write_file(&img, &random_bytes(40_000, 11));
    let sc = format!("{img}.md5sum");

    // As GNS3 writes it: 32 hex digits, no newline.
    write_file(&sc, md5_of(&img).as_bytes());
    let v = verify1(&cat, &img, &[], 3);
    assert_eq!(v["sidecar"]["status"], "consistent");
    assert_eq!(v["sidecar"]["path"], sc.as_str());

    // The image changed after the sidecar was written.
    write_file(&sc, md5_of(&sc).as_bytes());
    let v = verify1(&cat, &img, &[], 3);
    assert_eq!(v["sidecar"]["status"], "stale-or-forged");
    assert_eq!(v["verdict"], "unknown");

    // A sidecar copied from the registry: GNS3 would show the genuine MD5.
    write_file(&sc, format!("{}\n", CSR_MD5.to_uppercase()).as_bytes());
    let v = verify1(&cat, &img, &[], 2);
    assert_eq!(v["sidecar"]["status"], "stale-or-forged");
    assert_eq!(v["verdict"], "mismatch");
    assert_eq!(v["claims"][0]["by"], "sidecar");
    assert_eq!(v["claims"][0]["entry"]["filename"], CSR_NAME);

    for bad in [
        "",
        "abc",
        "zz2c25b6990f99bd05b433ab603bdb4f",
        &"a".repeat(64),
    ] {
        write_file(&sc, bad.as_bytes());
        let v = verify1(&cat, &img, &[], 3);
        assert_eq!(v["sidecar"]["status"], "malformed", "{bad:?}");
    }

    // Human output says it too.
    write_file(&sc, b"0123");
    let r = qv(&["verify", "--catalog", &cat, &img], 3);
    assert!(r.stdout_str().contains("malformed"), "{}", r.describe());
}

#[test]
fn file_digests_only_when_they_can_matter() {
    let s = Scratch::new("nohash");
    let cat = s.s("catalog.sqlite");
    let not_computed = |v: &Value| {
        v["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("file digests not computed"))
    };

    // A 2 GiB + 1 MiB sparse raw image: no catalog entry has its size (2 GiB
    // exactly is vios-1.3.qcow2's) or its name, so it is not read.
    let big = s.s("big.raw");
    let size: u64 = (2 << 30) + (1 << 20);
    fs::File::create(&big).unwrap().set_len(size).unwrap();
    let v = verify1(&cat, &big, &[], 3);
    assert_eq!(v["verdict"], "unknown", "{v:#}");
    assert_eq!(v["size"], size);
    assert_eq!(v["file"], serde_json::json!({}), "{v:#}");
    assert!(not_computed(&v), "{v:#}");
    assert!(v["notes"][0]
        .as_str()
        .unwrap()
        .contains(&format!("({size} bytes)")));
    let r = qv(&["verify", "--catalog", &cat, &big], 3);
    assert!(
        r.stdout_str()
            .contains("note:     file digests not computed"),
        "{}",
        r.describe()
    );

    // A registry name with another size: still a mismatch, hashed, the
    // differing MD5 as evidence.
    let named = s.s(CSR_NAME);
    write_file(&named, &random_bytes(12_346, 31));
    let v = verify1(&cat, &named, &[], 2);
    assert_eq!(v["verdict"], "mismatch");
    assert_eq!(v["claims"][0]["by"], "name");
    assert_eq!(v["claims"][0]["differs"][0], "md5");
    assert_eq!(v["file"]["md5"], md5_of(&named).as_str());
    assert!(!not_computed(&v), "{v:#}");

    // A sidecar needs the MD5: hashed.
    let side = s.s("side.img");
    write_file(&side, &random_bytes(12_347, 32));
    write_file(&format!("{side}.md5sum"), md5_of(&side).as_bytes());
    let v = verify1(&cat, &side, &[], 3);
    assert_eq!(v["sidecar"]["status"], "consistent");
    assert_eq!(v["file"]["md5"], md5_of(&side).as_str());
    assert!(!not_computed(&v), "{v:#}");

    // An expected digest (recorded without a size): hashed.
    let plain = s.s("plain.img");
    write_file(&plain, &random_bytes(12_348, 33));
    let md5 = md5_of(&plain);
    let v = verify1(&cat, &plain, &["--md5", &md5], 0);
    assert_eq!(v["verdict"], "genuine");
    let other = s.s("other.img");
    write_file(&other, &random_bytes(12_349, 34));
    let v = verify1(&cat, &other, &["--md5", &md5], 2);
    assert_eq!(v["verdict"], "mismatch");
    assert_eq!(v["claims"][0]["by"], "expected");
    assert!(!not_computed(&v), "{v:#}");
}

// ---------------------------------------------------------------------------
// Scan
// ---------------------------------------------------------------------------

fn scan(cat: &str, dir: &str, code: i32) -> Value {
    qv_json(&["scan", "--output", "json", "--catalog", cat, dir], code)
}

fn by_name<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"].as_str().unwrap().ends_with(name))
        .unwrap_or_else(|| panic!("{name} not in scan output: {v:#}"))
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        out.push(e.file_name().to_string_lossy().into_owned());
        if e.file_type().unwrap().is_dir() {
            for sub in listing(&e.path()) {
                out.push(format!("{}/{sub}", e.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn scan_finds_verifies_and_caches() {
    let s = Scratch::new("scan");
    let cat = s.s("state/catalog.sqlite");
    let lab = s.path("lab");
    // EVE-NG layout: addons/qemu/<template>-<name>/virtioa.qcow2.
    let eve = lab.join("addons/qemu/testrouter-1.2.3");
    fs::create_dir_all(&eve).unwrap();
    let base = eve.join("virtioa.qcow2");
    let base_s = base.to_str().unwrap().to_string();
    create("qcow2", "", &base_s, "4M");
    qemu_io("qcow2", &base_s, &["write -P 0x5a 0 1M"]);
    // GNS3 layout: images/QEMU/<name> with a sidecar.
    let gns = lab.join("images/QEMU");
    fs::create_dir_all(&gns).unwrap();
    let genuine = gns.join("test-router-1.2.3.qcow2");
    let genuine_s = genuine.to_str().unwrap().to_string();
    write_file(&genuine_s, &random_bytes(50_000, 21));
    write_file(
        &format!("{genuine_s}.md5sum"),
        md5_of(&genuine_s).as_bytes(),
    );
    let app = s.s("test-router.gns3a");
    write_file(
        &app,
        gns3a("test-router-1.2.3.qcow2", &md5_of(&genuine_s), 50_000).as_bytes(),
    );
    import(&cat, &app, &[]);
    // An overlay (never followed), a dotfile and an unrelated file.
    let overlay = lab.join("overlay.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        base_s.as_str(),
        "-F",
        "qcow2",
        overlay.to_str().unwrap(),
    ]);
    write_file(lab.join(".hidden.qcow2").to_str().unwrap(), b"x");
    write_file(lab.join("notes.txt").to_str().unwrap(), b"x");
    let before = listing(&lab);

    let lab_s = lab.to_str().unwrap();
    let v = scan(&cat, lab_s, 3);
    assert_eq!(v["summary"]["images"], 3, "{v:#}");
    assert_eq!(v["summary"]["hashed"], 3);
    assert_eq!(v["summary"]["cached"], 0);
    let g = by_name(&v, "test-router-1.2.3.qcow2");
    assert_eq!(g["verdict"], "genuine");
    assert_eq!(g["sidecar"]["status"], "consistent");
    assert_eq!(g["cached"], false);
    let o = by_name(&v, "overlay.qcow2");
    assert_eq!(o["overlay"]["backing_file"], base_s.as_str());
    assert_eq!(o["overlay"]["backing_scanned"]["verdict"], "unknown");
    assert_eq!(o["found_by"], "extension");
    assert!(v["images"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| !i["path"].as_str().unwrap().contains("hidden")));

    // Unchanged: everything from the cache.
    let v = scan(&cat, lab_s, 3);
    assert_eq!(v["summary"]["cached"], 3, "{v:#}");
    assert_eq!(v["summary"]["hashed"], 0);
    assert_eq!(by_name(&v, "test-router-1.2.3.qcow2")["verdict"], "genuine");
    assert_eq!(by_name(&v, "test-router-1.2.3.qcow2")["cached"], true);

    // Touched (mtime only): hashed again; the others stay cached.
    run_ok("touch", &["-d", "2001-02-03 04:05:06", base_s.as_str()]);
    let v = scan(&cat, lab_s, 3);
    assert_eq!(by_name(&v, "virtioa.qcow2")["cached"], false);
    assert_eq!(by_name(&v, "test-router-1.2.3.qcow2")["cached"], true);
    assert_eq!(by_name(&v, "overlay.qcow2")["cached"], true);
    assert_eq!(v["summary"]["hashed"], 1);

    // Replaced by a modified copy with the same size and the same mtime (as
    // `cp -p` or an editor saving over it would): a new inode → hashed again.
    let mut bytes = fs::read(&genuine).unwrap();
    bytes[100] ^= 1;
    let tmp = gns.join("new.tmp");
    fs::write(&tmp, &bytes).unwrap();
    run_ok("touch", &["-r", genuine_s.as_str(), tmp.to_str().unwrap()]);
    fs::rename(&tmp, &genuine).unwrap();
    let v = scan(&cat, lab_s, 2);
    let g = by_name(&v, "test-router-1.2.3.qcow2");
    assert_eq!(g["cached"], false, "new inode → hashed again");
    assert_eq!(g["verdict"], "mismatch");
    assert_eq!(g["sidecar"]["status"], "stale-or-forged");
    assert_eq!(v["summary"]["hashed"], 1);

    // Modified in place (same inode): new mtime → hashed again.
    let v = scan(&cat, lab_s, 2);
    assert_eq!(v["summary"]["hashed"], 0);
    poke(&genuine_s, 100, &[bytes[100] ^ 1]);
    let v = scan(&cat, lab_s, 3);
    let g = by_name(&v, "test-router-1.2.3.qcow2");
    assert_eq!(g["cached"], false);
    assert_eq!(g["verdict"], "genuine");

    // A newly imported reference changes verdicts of cached files without
    // re-reading them (the verdict is recomputed, the digests are cached).
    let sums = s.s("virtioa.md5");
    write_file(
        &sums,
        format!("{}  virtioa.qcow2\n", md5_of(&base_s)).as_bytes(),
    );
    import(&cat, &sums, &[]);
    let v = scan(&cat, lab_s, 3);
    assert_eq!(by_name(&v, "virtioa.qcow2")["verdict"], "genuine");
    assert_eq!(by_name(&v, "virtioa.qcow2")["cached"], true);
    assert_eq!(
        by_name(&v, "overlay.qcow2")["overlay"]["backing_scanned"]["verdict"],
        "genuine"
    );

    // Human table, and nothing was ever written next to the images.
    let r = qv(&["scan", "--catalog", &cat, lab_s], 3);
    let out = r.stdout_str();
    assert!(out.contains("3 image(s): 2 genuine"), "{out}");
    assert!(out.contains("from cache"), "{out}");
    assert_eq!(listing(&lab), before);
    assert!(Path::new(&cat).exists());
}
