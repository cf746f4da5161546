//! `qvet fs` against `sfdisk --json` (util-linux) on partition tables built at
//! test time: MBR with logical partitions, GPT, GPT with a damaged primary,
//! a whole-disk filesystem, data hidden in a gap.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use serde_json::Value;

/// (start, size) in bytes of every partition `sfdisk --json` lists, by node suffix number.
fn sfdisk_parts(disk: &str) -> Vec<(u32, u64, u64)> {
    let r = run_ok(&find_tool("sfdisk").unwrap(), &["--json", disk]);
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    let sector = v["partitiontable"]["sectorsize"].as_u64().unwrap_or(512);
    v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            let n: u32 = node.trim_start_matches(disk).parse().unwrap();
            (
                n,
                p["start"].as_u64().unwrap() * sector,
                p["size"].as_u64().unwrap() * sector,
            )
        })
        .collect()
}

fn qvet_fs(img: &str) -> Value {
    let r = qvet(&["fs", "--output", "json", img]);
    assert_success(&r);
    serde_json::from_slice(&r.stdout).unwrap()
}

fn qvet_parts(v: &Value) -> Vec<(u32, u64, u64)> {
    v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["number"].as_u64().unwrap() as u32,
                p["start"].as_u64().unwrap(),
                p["length"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn mbr_with_logical_partitions_matches_sfdisk() {
    let s = Scratch::new("fs-mbr");
    let disk = s.s("disk.raw");
    run_ok("truncate", &["-s", "64M", &disk]);
    sfdisk(&disk, &["-q"], "label: dos\nstart=2048, size=8192, type=83\nstart=10240, size=100000, type=5\nstart=12288, size=4096, type=83\nstart=18432, size=8192, type=c\n",
    );
    let v = qvet_fs(&disk);
    assert_eq!(v["scheme"], "mbr");
    assert_eq!(qvet_parts(&v), sfdisk_parts(&disk));
    // The same disk inside a compressed qcow2 reads the same.
    let q = s.s("disk.qcow2");
    qemu_img(&["convert", "-q", "-c", "-f", "raw", "-O", "qcow2", &disk, &q]);
    assert_eq!(qvet_parts(&qvet_fs(&q)), sfdisk_parts(&disk));
}

#[test]
fn gpt_matches_sfdisk_and_survives_a_damaged_primary() {
    let s = Scratch::new("fs-gpt");
    let disk = s.s("disk.raw");
    run_ok("truncate", &["-s", "64M", &disk]);
    sfdisk(&disk, &["-q"], "label: gpt\nstart=2048, size=20480, type=L, name=root\nstart=40960, size=8192, type=U, name=efi\n",
    );
    let expected = sfdisk_parts(&disk);
    let v = qvet_fs(&disk);
    assert_eq!(v["scheme"], "gpt");
    assert_eq!(qvet_parts(&v), expected);
    assert_eq!(v["partitions"][0]["name"], "root");
    assert_eq!(v["gpt"]["from_backup"], false);
    // Zero the primary header: the backup gives the same partitions.
    let mut f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    use std::io::{Seek, SeekFrom, Write};
    f.seek(SeekFrom::Start(512)).unwrap();
    f.write_all(&[0u8; 512]).unwrap();
    drop(f);
    let v = qvet_fs(&disk);
    assert_eq!(qvet_parts(&v), expected);
    assert_eq!(v["gpt"]["from_backup"], true);
    let kinds: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"gpt-primary-damaged"), "{kinds:?}");
}

#[test]
fn filesystems_are_recognised_and_gap_data_is_reported() {
    let s = Scratch::new("fs-kinds");
    let disk = s.s("disk.raw");
    run_ok("truncate", &["-s", "64M", &disk]);
    sfdisk(
        &disk,
        &["-q"],
        "label: dos\nstart=2048, size=16384, type=83\nstart=34816, size=16384, type=c\n",
    );
    let ext = s.s("ext.img");
    run_ok(
        &find_tool("mke2fs").unwrap(),
        &["-q", "-t", "ext4", "-L", "bootflash", &ext, "8M"],
    );
    run_ok(
        &find_tool("debugfs").unwrap(),
        &["-w", "-R", "ssv last_mounted /mnt/flash", &ext],
    );
    dd_into(&ext, &disk, 2048);
    let fat = s.s("fat.img");
    run_ok(&find_tool("mkfs.fat").unwrap(), &["-C", &fat, "8192"]);
    dd_into(&fat, &disk, 34816);
    // Something hidden between the partitions (sector 30000).
    run_ok(
        "dd",
        &[
            "if=/dev/urandom",
            &format!("of={disk}"),
            "bs=512",
            "seek=30000",
            "count=2",
            "conv=notrunc",
            "status=none",
        ],
    );
    let q = s.s("disk.qcow2");
    qemu_img(&["convert", "-q", "-f", "raw", "-O", "qcow2", &disk, &q]);
    let v = qvet_fs(&q);
    assert_eq!(v["partitions"][0]["filesystem"], "ext");
    let sb = &v["partitions"][0]["superblock"];
    assert_eq!(sb["label"], "bootflash");
    assert_eq!(sb["last_mounted"], "/mnt/flash");
    assert_eq!(sb["type"], "ext4");
    assert_eq!(v["partitions"][1]["filesystem"], "fat");
    let gaps = v["gaps"].as_array().unwrap();
    let hidden: Vec<&Value> = gaps
        .iter()
        .filter(|g| g["non_zero_bytes"].as_u64().unwrap() > 0)
        .collect();
    assert_eq!(hidden.len(), 1, "{gaps:?}");
    assert_eq!(hidden[0]["first_non_zero"].as_u64().unwrap() / 512, 30000);
}

#[test]
fn whole_disk_filesystem() {
    let s = Scratch::new("fs-whole");
    let fat = s.s("fat.img");
    run_ok(&find_tool("mkfs.fat").unwrap(), &["-C", &fat, "8192"]);
    let v = qvet_fs(&fat);
    assert_eq!(v["scheme"], "whole-disk");
    assert_eq!(v["partitions"][0]["filesystem"], "fat");
}

/// An ext4 disk with a committed but unreplayed journal transaction
/// (debugfs `jo`/`jw`/`jc`): `fs` reports the recovery, `cat` shows the
/// file as the kernel would after replay (oracle: `e2fsck -fy` on a copy,
/// then `debugfs cat`), and the image file is left untouched.
#[test]
fn journal_needing_recovery_is_replayed_in_memory() {
    let s = Scratch::new("fs-journal");
    let tree = s.path("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("config.txt"), b"enable secret old\n".repeat(300)).unwrap();
    let img = s.s("ext.img");
    run_ok(
        &find_tool("mke2fs").unwrap(),
        &[
            "-q",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-d",
            &tree.display().to_string(),
            &img,
            "16M",
        ],
    );
    let debugfs = find_tool("debugfs").unwrap();
    let blk: u64 = run_ok(&debugfs, &["-R", "bmap /config.txt 0", &img])
        .stdout_str()
        .trim()
        .parse()
        .unwrap();
    let mut new = b"enable secret NEW\n".repeat(227);
    new.resize(4096, b'\n');
    std::fs::write(s.path("new.blk"), &new).unwrap();
    std::fs::write(
        s.path("cmds"),
        format!("jo\njw -b {blk} {}\njc\n", s.s("new.blk")),
    )
    .unwrap();
    run_ok(&debugfs, &["-w", "-f", &s.s("cmds"), &img]);
    let before = std::fs::read(&img).unwrap();

    let r = qvet(&["fs", "--output", "json", &img]);
    assert!(r.ok(), "{}", r.describe());
    let v: Value = serde_json::from_str(&r.stdout_str()).unwrap();
    let j = &v["partitions"][0]["superblock"]["journal"];
    assert_eq!(j["needs_recovery"], true, "{v:#}");
    assert_eq!(j["applied"], true, "{v:#}");
    assert_eq!(j["transactions"], 1, "{v:#}");
    let human = qvet(&["fs", &img]);
    assert!(
        human
            .stdout_str()
            .contains("needs recovery: 1 transactions replayed"),
        "{}",
        human.stdout_str()
    );

    let fixed = s.s("fixed.img");
    std::fs::copy(&img, &fixed).unwrap();
    let fsck = run(&find_tool("e2fsck").unwrap(), &["-fy", &fixed]);
    assert!(matches!(fsck.code(), Some(0..=1)), "{}", fsck.describe());
    let want = run_ok(&debugfs, &["-R", "cat /config.txt", &fixed])
        .stdout
        .clone();
    let got = qvet(&["cat", &format!("{img}:/config.txt")]);
    assert!(got.ok(), "{}", got.describe());
    assert!(
        got.stdout == want,
        "qvet cat differs from e2fsck's recovery"
    );
    assert!(got.stdout.starts_with(b"enable secret NEW"));
    assert_eq!(
        std::fs::read(&img).unwrap(),
        before,
        "the image was written"
    );
}

/// The terminal picture of the disk: ASCII when stdout is not a terminal,
/// 64 columns between brackets, the partitions named under their starts, and
/// the allocated share equal to what `qemu-img map` says is not zero.
#[test]
fn disk_picture_matches_qemu_map() {
    let img = concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/appliance.qcow2");
    let r = qvet(&["fs", img]);
    assert_success(&r);
    let text = r.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    let bar = lines[1].trim_start();
    assert!(bar.starts_with('[') && bar.is_ascii(), "{text}");
    let inner = &bar[1..bar.find(']').unwrap()];
    assert_eq!(inner.chars().count(), 64, "{bar}");
    let legend = lines[2];
    assert!(legend.contains("|1") && legend.contains("|2"), "{text}");
    // Partition 1 starts at 1 MiB of 64 MiB: column 1; partition 2 at 33 MiB: column 33.
    let col = |s: &str| legend.find(s).unwrap() - (lines[1].find('[').unwrap() + 1);
    assert_eq!((col("|1"), col("|2")), (1, 33), "{text}");
    let map: Value =
        serde_json::from_slice(&qemu_img(&["map", "--output=json", img]).stdout).unwrap();
    let (mut nonzero, mut total) = (0u64, 0u64);
    for e in map.as_array().unwrap() {
        let len = e["length"].as_u64().unwrap();
        total += len;
        if !e["zero"].as_bool().unwrap() {
            nonzero += len;
        }
    }
    let want = format!("{:.1}% allocated", 100.0 * nonzero as f64 / total as f64);
    assert!(bar.ends_with(&want), "{bar} vs {want}");
}
