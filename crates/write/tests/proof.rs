//! The proof must fail, and leave nothing at the destination, when the
//! output lacks data a file needs (a wrong plan) or differs from the input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;
use std::sync::Arc;

use qvet_image::{Disk, Format, OpenOptions};
use qvet_write::compact::{plan, CompactError, CompactOptions};
use qvet_write::compact_write::compact_to_file;

fn mke2fs() -> Option<String> {
    ["/usr/sbin/mke2fs", "/sbin/mke2fs"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
}

/// A whole-disk ext4 image with one 1 MiB file of non-zero bytes; returns
/// the image path and the file's first block's byte offset.
fn image(dir: &std::path::Path) -> Option<(std::path::PathBuf, u64)> {
    let mk = mke2fs()?;
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8 | 1).collect();
    std::fs::write(tree.join("file.bin"), data).unwrap();
    let img = dir.join("fs.img");
    let ok = Command::new(mk)
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-d"])
        .arg(&tree)
        .arg(&img)
        .arg("16M")
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let out = Command::new("/usr/sbin/debugfs")
        .args(["-R", "bmap /file.bin 0"])
        .arg(&img)
        .output()
        .ok()?;
    let block: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    Some((img, block * 4096))
}

fn raw_disk(p: &std::path::Path) -> Arc<Disk> {
    let o = OpenOptions {
        format: Some(Format::Raw),
        ..OpenOptions::default()
    };
    Arc::new(Disk::open(p, &o).unwrap())
}

#[test]
fn a_plan_that_drops_file_data_fails_the_proof_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let Some((img, at)) = image(dir.path()) else {
        eprintln!("SKIP: no mke2fs/debugfs");
        return;
    };
    let disk = raw_disk(&img);
    let opts = CompactOptions::default();
    let out = dir.path().join("out.qcow2");
    // The honest plan proves.
    let mut good = plan(&disk, &opts).unwrap();
    compact_to_file(&disk, &mut good, &opts, &out, false, &|_| {}).unwrap();
    assert!(out.exists());
    std::fs::remove_file(&out).unwrap();
    // A plan that wrongly drops the cluster holding the file's first block.
    let mut bad = plan(&disk, &opts).unwrap();
    let cs = bad.cluster_size;
    let c = at / cs * cs;
    let mut keep = Vec::new();
    for &(s, l) in &bad.keep {
        let e = s + l;
        if c >= s && c < e {
            if c > s {
                keep.push((s, c - s));
            }
            if c + cs < e {
                keep.push((c + cs, e - c - cs));
            }
        } else {
            keep.push((s, l));
        }
    }
    assert_ne!(keep, bad.keep, "the file's cluster was kept by the plan");
    bad.keep = keep;
    let r = compact_to_file(&disk, &mut bad, &opts, &out, false, &|_| {});
    match r {
        Err(CompactError::ProofFailed(why)) => assert!(why.contains("file.bin"), "{why}"),
        other => panic!("expected a proof failure, got {other:?}"),
    }
    assert!(!out.exists(), "a failed proof left the output");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".qvet-tmp"))
        .collect();
    assert!(leftovers.is_empty());
}
