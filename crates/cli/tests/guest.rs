//! `qvet ls/cat/stat/find` on partitioned disks built at test time: every file
//! of the source tree must be listed and read back as it was written.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use serde_json::Value;

/// Source tree: nested dirs, several sizes, a symlink, a setuid file and a
/// non-UTF-8 name.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
    std::fs::create_dir_all(root.join("root/.ssh")).unwrap();
    std::fs::write(root.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(
        root.join("etc/ssh/sshd_config"),
        b"PermitRootLogin no\n".repeat(300),
    )
    .unwrap();
    std::fs::write(
        root.join("root/.ssh/authorized_keys"),
        b"ssh-ed25519 AAAA test@lab\n",
    )
    .unwrap();
    let big: Vec<u8> = (0..(1 << 20) + 3).map(|i: u32| (i % 251) as u8).collect();
    std::fs::write(root.join("big.bin"), big).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("etc/passwd", root.join("link")).unwrap();
    std::fs::write(root.join("suid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(root.join("suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"caf\xe9")),
        b"latin-1 name",
    )
    .unwrap();
}

/// Every path under `root` (relative, with a leading `/`) and its type letter.
fn source_entries(root: &Path) -> BTreeMap<Vec<u8>, char> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap();
            let mut key = b"/".to_vec();
            key.extend_from_slice(rel.as_os_str().as_bytes());
            let ft = e.file_type().unwrap();
            let t = if ft.is_symlink() {
                'l'
            } else if ft.is_dir() {
                stack.push(p.clone());
                'd'
            } else {
                'f'
            };
            out.insert(key, t);
        }
    }
    out
}

/// A 64 MiB MBR disk: p1 ext4 from the tree, p2 FAT; as a compressed qcow2.
fn disk(s: &Scratch, tree: &Path) -> String {
    let raw = s.s("disk.raw");
    run_ok("truncate", &["-s", "64M", &raw]);
    sfdisk(
        &raw,
        &["-q"],
        "label: dos\nstart=2048, size=65536, type=83\nstart=69632, size=16384, type=c\n",
    );
    let ext = s.s("ext.img");
    let d = tree.display().to_string();
    run_ok(
        &find_tool("mke2fs").unwrap(),
        &["-q", "-t", "ext4", "-d", &d, &ext, "32M"],
    );
    dd_into(&ext, &raw, 2048);
    let fat = s.s("fat.img");
    run_ok(&find_tool("mkfs.fat").unwrap(), &["-C", &fat, "8192"]);
    dd_into(&fat, &raw, 69632);
    let q = s.s("disk.qcow2");
    qemu_img(&["convert", "-q", "-c", "-f", "raw", "-O", "qcow2", &raw, &q]);
    q
}

#[test]
fn ls_lists_every_file_and_cat_reads_it_back() {
    let s = Scratch::new("guest-ls");
    let tree = s.path("tree");
    make_tree(&tree);
    let img = disk(&s, &tree);
    let r = qvet(&["ls", "-R", "--output", "json", &format!("{img}:p1:/")]);
    assert_success(&r);
    let rows: Vec<Value> = serde_json::from_slice(&r.stdout).unwrap();
    let mut listed = BTreeMap::new();
    for row in &rows {
        let path = match row.get("path_base64") {
            Some(b) => b64_decode(b.as_str().unwrap()),
            None => row["path"].as_str().unwrap().as_bytes().to_vec(),
        };
        if path.starts_with(b"/lost+found") {
            continue;
        }
        listed.insert(path, row["type"].as_str().unwrap().chars().next().unwrap());
    }
    assert_eq!(listed, source_entries(&tree));
    for (path, kind) in source_entries(&tree) {
        if kind != 'f' {
            continue;
        }
        let Ok(text) = String::from_utf8(path.clone()) else {
            continue;
        };
        let r = qvet(&["cat", &format!("{img}:p1:{text}")]);
        assert_success(&r);
        let rel = Path::new(std::ffi::OsStr::from_bytes(&path[1..]));
        assert_eq!(r.stdout, std::fs::read(tree.join(rel)).unwrap(), "{text}");
    }
    let link = rows.iter().find(|r| r["path"] == "/link").unwrap();
    assert_eq!(link["link"], "etc/passwd");
}

#[test]
fn find_stat_and_partition_selection() {
    let s = Scratch::new("guest-find");
    let tree = s.path("tree");
    make_tree(&tree);
    let img = disk(&s, &tree);
    let r = qvet(&["find", "--perm", "-4000", &format!("{img}:p1:/")]);
    assert_success(&r);
    assert_eq!(r.stdout_str().trim(), "/suid");
    let r = qvet(&[
        "find",
        "--name",
        "*_keys",
        "--type",
        "f",
        &format!("{img}:p1:/"),
    ]);
    assert_eq!(r.stdout_str().trim(), "/root/.ssh/authorized_keys");
    // find(1) spelling: one dash.
    let r = qvet(&[
        "find",
        &format!("{img}:p1:/"),
        "-name",
        "*_keys",
        "-type",
        "f",
    ]);
    assert_success(&r);
    assert_eq!(r.stdout_str().trim(), "/root/.ssh/authorized_keys");
    let r = qvet(&["find", "-perm", "-4000", &format!("{img}:p1:/")]);
    assert_eq!(r.stdout_str().trim(), "/suid");
    let r = qvet(&["stat", "--output", "json", &format!("{img}:p1:/suid")]);
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["mode"], "4755");
    assert_eq!(v["size"], 10);
    // Two filesystems: a path without pN is refused with the choices.
    let r = qvet(&["ls", &format!("{img}:/")]);
    assert_eq!(r.code(), Some(1));
    assert!(r.stderr.contains("pN"), "{}", r.describe());
    // Missing files and partitions are clean errors.
    let r = qvet(&["cat", &format!("{img}:p1:/nope")]);
    assert_eq!(r.code(), Some(1));
    let r = qvet(&["ls", &format!("{img}:p9:/")]);
    assert_eq!(r.code(), Some(1));
}

/// `ls --deleted` on a FAT partition after `mdel`: the deleted file's long
/// name (as mcopy stored it) comes back, flagged deleted, with its size;
/// live entries are unchanged; a reader without the feature refuses.
#[test]
fn ls_deleted_lists_fat_records_with_long_names() {
    let s = Scratch::new("ls-deleted");
    let fat = s.s("fat.img");
    run_ok(&find_tool("mkfs.fat").unwrap(), &["-C", &fat, "8192"]);
    let f = s.path("Quarterly Report 2026.txt");
    std::fs::write(&f, b"numbers\n".repeat(100)).unwrap();
    std::fs::write(s.path("KEEP.TXT"), b"kept\n").unwrap();
    let mcopy = find_tool("mcopy").unwrap();
    let mdel = find_tool("mdel").unwrap();
    let args = |extra: &[&str]| {
        let mut v = vec!["-i".to_string(), fat.clone()];
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let ok = |prog: &str, a: Vec<String>| {
        run_ok(prog, &a);
    };
    ok(
        &mcopy,
        args(&[&f.display().to_string(), &s.s("KEEP.TXT"), "::/"]),
    );
    ok(&mdel, args(&["::/Quarterly Report 2026.txt"]));
    let r = qvet(&["ls", "--deleted", "--output", "json", &format!("{fat}:/")]);
    assert!(r.ok(), "{}", r.describe());
    let rows: Value = serde_json::from_str(&r.stdout_str()).unwrap();
    let rows = rows.as_array().unwrap();
    let live: Vec<_> = rows.iter().filter(|e| e["deleted"].is_null()).collect();
    assert_eq!(live.len(), 1, "{rows:#?}");
    assert_eq!(live[0]["path"], "/KEEP.TXT");
    let gone: Vec<_> = rows.iter().filter(|e| e["deleted"] == true).collect();
    assert_eq!(gone.len(), 1, "{rows:#?}");
    assert_eq!(gone[0]["path"], "/Quarterly Report 2026.txt");
    assert_eq!(gone[0]["size"], 800);
    assert_eq!(gone[0]["type"], "f");
    // ISO 9660 has no deleted records: refused, nothing listed.
    if let Some(xorriso) = find_tool("xorriso") {
        let iso = s.s("x.iso");
        let d = s.path("isodir");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("a"), b"a").unwrap();
        run_ok(
            &xorriso,
            &[
                "-as",
                "mkisofs",
                "-quiet",
                "-o",
                &iso,
                &d.display().to_string(),
            ],
        );
        let r = qvet(&["ls", "--deleted", &format!("{iso}:/")]);
        assert_eq!(r.code(), Some(1), "{}", r.describe());
        assert!(r.stdout_str().is_empty(), "{}", r.describe());
    }
}

/// `qvet ls/cat/stat/find` on a squashfs: a whole-disk squashfs (as raw)
/// and a squashfs partition of an MBR disk (as compressed qcow2), built by
/// mksquashfs from the same tree.
#[test]
fn squashfs_whole_disk_and_partition() {
    if !have_tool("mksquashfs") {
        eprintln!("skipped: no mksquashfs");
        return;
    }
    let s = Scratch::new("guest-squashfs");
    let tree = s.path("tree");
    make_tree(&tree);
    let sq = s.s("root.squashfs");
    let t = tree.display().to_string();
    run_ok(
        "mksquashfs",
        &[
            &t,
            &sq,
            "-noappend",
            "-quiet",
            "-no-progress",
            "-comp",
            "xz",
        ],
    );
    let raw = s.s("disk.raw");
    run_ok("truncate", &["-s", "16M", &raw]);
    sfdisk(
        &raw,
        &["-q"],
        "label: dos\nstart=2048, size=16384, type=83\n",
    );
    dd_into(&sq, &raw, 2048);
    let q = s.s("disk.qcow2");
    qemu_img(&["convert", "-q", "-c", "-f", "raw", "-O", "qcow2", &raw, &q]);
    for img in [sq.clone(), format!("{q}:p1")] {
        let r = qvet(&["ls", "-R", "--output", "json", &format!("{img}:/")]);
        assert_success(&r);
        let rows: Vec<Value> = serde_json::from_slice(&r.stdout).unwrap();
        let mut listed = BTreeMap::new();
        for row in &rows {
            let path = match row.get("path_base64") {
                Some(b) => b64_decode(b.as_str().unwrap()),
                None => row["path"].as_str().unwrap().as_bytes().to_vec(),
            };
            listed.insert(path, row["type"].as_str().unwrap().chars().next().unwrap());
        }
        assert_eq!(listed, source_entries(&tree), "{img}");
        let r = qvet(&["cat", &format!("{img}:/big.bin")]);
        assert_success(&r);
        assert_eq!(r.stdout, std::fs::read(tree.join("big.bin")).unwrap());
        let r = qvet(&["cat", &format!("{img}:/link")]);
        assert_eq!(r.stdout, b"root:x:0:0::/root:/bin/sh\n");
        let r = qvet(&["stat", "--output", "json", &format!("{img}:/suid")]);
        assert_success(&r);
        let v: Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(v["mode"], "4755");
        assert_eq!(v["size"], 10);
        assert_eq!(v["filesystem"], "squashfs");
        let r = qvet(&["find", "--perm", "-4000", &format!("{img}:/")]);
        assert_eq!(r.stdout_str().trim(), "/suid");
        let r = qvet(&["cat", &format!("{img}:/nope")]);
        assert_eq!(r.code(), Some(1));
    }
}
