//! `qvet ls -R --sha256`: every regular file of an ext4 filesystem built with
//! `mke2fs -d` is read inside the guest and its sha256 must equal what
//! `sha256sum` says of the source file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::*;
use serde_json::Value;

/// A tree with more entries than one hash batch (4096), files spanning
/// several 1 MiB reads, a sparse file, an empty file, a symlink and a
/// non-UTF-8 name.
fn make_tree(root: &Path) {
    for d in 0..50 {
        let dir = root.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..90 {
            let seed = (d * 1000 + f) as u64;
            std::fs::write(
                dir.join(format!("f{f:03}")),
                text_bytes(f * 37 % 3000, seed),
            )
            .unwrap();
        }
    }
    std::fs::write(root.join("big.bin"), random_bytes((3 << 20) + 12345, 7)).unwrap();
    std::fs::write(root.join("exact.bin"), random_bytes(1 << 20, 8)).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    let sparse = std::fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(5 << 20).unwrap();
    drop(sparse);
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("sparse"))
        .unwrap();
    f.write_all_at(b"middle", 2 << 20).unwrap();
    drop(f);
    std::os::unix::fs::symlink("big.bin", root.join("link")).unwrap();
    std::fs::write(root.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1 name").unwrap();
}

/// `sha256sum -z` of every regular file under `root`: path (with a leading
/// `/`, relative to `root`) to hex digest.
fn oracle(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                files.push(e.path());
            }
        }
    }
    let out = std::process::Command::new("sha256sum")
        .arg("-z")
        .arg("--")
        .args(&files)
        .output()
        .unwrap();
    assert!(out.status.success(), "sha256sum failed");
    let mut map = BTreeMap::new();
    for rec in out.stdout.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        let (hash, rest) = rec.split_at(64);
        let path = Path::new(OsStr::from_bytes(&rest[2..]));
        let mut key = b"/".to_vec();
        key.extend_from_slice(path.strip_prefix(root).unwrap().as_os_str().as_bytes());
        map.insert(key, String::from_utf8(hash.to_vec()).unwrap());
    }
    assert_eq!(map.len(), files.len());
    map
}

/// The JSON listing as path -> (type, sha256 or null).
fn listing(img: &str) -> BTreeMap<Vec<u8>, (String, Value)> {
    let r = qvet(&[
        "ls",
        "-R",
        "--sha256",
        "--output",
        "json",
        &format!("{img}:/"),
    ]);
    assert_success(&r);
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let path = match e.get("path_base64") {
                Some(b) => b64_decode(b.as_str().unwrap()),
                None => e["path"].as_str().unwrap().as_bytes().to_vec(),
            };
            let kind = e["type"].as_str().unwrap().to_owned();
            (path, (kind, e["sha256"].clone()))
        })
        .collect()
}

#[test]
fn ls_sha256_matches_sha256sum_on_a_whole_disk_ext4() {
    let s = Scratch::new("ls-hash");
    let tree = s.path("tree");
    make_tree(&tree);
    let expected = oracle(&tree);
    assert!(expected.len() > 4096);

    // Whole-disk ext4 (no partition table), raw and as qcow2.
    let raw = s.s("disk.raw");
    let d = tree.display().to_string();
    run_ok(
        &find_tool("mke2fs").unwrap(),
        &["-q", "-t", "ext4", "-d", &d, &raw, "64M"],
    );
    let q = s.s("disk.qcow2");
    qemu_img(&["convert", "-q", "-f", "raw", "-O", "qcow2", &raw, &q]);

    for img in [&raw, &q] {
        let got = listing(img);
        let mut files = 0usize;
        for (path, (kind, hash)) in &got {
            let shown = String::from_utf8_lossy(path);
            if kind == "f" {
                let want = expected
                    .get(path)
                    .unwrap_or_else(|| panic!("{img}: {shown} listed but not in the source"));
                assert_eq!(hash.as_str(), Some(want.as_str()), "{img}: {shown}");
                files += 1;
            } else {
                assert!(hash.is_null(), "{img}: {shown} ({kind}) has a hash");
            }
        }
        // lost+found is the only entry mke2fs adds; every source file is listed.
        assert_eq!(files, expected.len(), "{img}: file count");
    }

    // Human output: the hash column before the path, `-` for non-files.
    let r = qvet(&["ls", "--sha256", &format!("{raw}:/")]);
    assert_success(&r);
    let text = r.stdout_str();
    let big = format!("{}  /big.bin", expected[b"/big.bin".as_slice()]);
    assert!(text.lines().any(|l| l == big), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with('-') && l.ends_with("  /d00")),
        "{text}"
    );
    let r = qvet(&["ls", "-l", "--sha256", &format!("{raw}:/exact.bin")]);
    assert_success(&r);
    let line = r.stdout_str();
    assert!(
        line.contains(&format!(
            "{}  /exact.bin",
            expected[b"/exact.bin".as_slice()]
        )),
        "{line}"
    );
}
