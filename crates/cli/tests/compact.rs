//! `qvet compact` on images built at test time. Every case checks the
//! output with the external tools: `qemu-img check` clean (no errors, no
//! leaks), the guest bytes of `qemu-img convert -O raw` equal to the input's
//! everywhere except inside space the filesystem's own tools call free
//! (`dumpe2fs` free blocks, FAT data clusters, swap after its header page),
//! files identical (`debugfs rdump`, `mcopy`), `e2fsck -fn` / `fsck.fat -n`
//! clean, the output smaller than `qemu-img convert -O qcow2`'s, and the dry
//! run's figures equal to the real run's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;

fn tools() -> bool {
    let ok = [
        "mke2fs", "debugfs", "dumpe2fs", "e2fsck", "sfdisk", "mkfs.fat", "mcopy", "mdel",
        "fsck.fat",
    ]
    .iter()
    .all(|t| have_tool(t));
    if !ok {
        eprintln!("SKIP: e2fsprogs, fdisk, dosfstools or mtools missing");
    }
    ok
}

fn tool(name: &str) -> String {
    find_tool(name).unwrap()
}

/// `qvet compact --output json -q ARGS IMG OUT`, must succeed.
fn compact(args: &[&str], img: &str, out: &str) -> Value {
    let mut a = vec!["compact", "--output", "json", "-q"];
    a.extend_from_slice(args);
    a.extend_from_slice(&[img, out]);
    let r = qvet(&a);
    assert_success(&r);
    serde_json::from_slice(&r.stdout).unwrap()
}

/// Runs a dry run and the real compaction; checks they agree and that the
/// output is a clean qcow2 of the reported size.
fn compact_checked(args: &[&str], img: &str, out: &str) -> Value {
    let mut dry_args = args.to_vec();
    dry_args.push("--dry-run");
    let dry = compact(&dry_args, img, out);
    assert!(!Path::new(out).exists(), "a dry run wrote {out}");
    let real = compact(args, img, out);
    assert_eq!(
        dry["output-file-size"], real["output-file-size"],
        "dry run vs real"
    );
    assert_eq!(dry["dropped"], real["dropped"], "dry run vs real");
    assert_eq!(dry["kept-bytes"], real["kept-bytes"]);
    let len = std::fs::metadata(out).unwrap().len();
    assert_eq!(real["output-file-size"].as_u64(), Some(len));
    assert_check_clean(out);
    let proof = &real["proof"];
    assert_eq!(proof["kept"]["blake3-in"], proof["kept"]["blake3-out"]);
    real
}

fn assert_check_clean(img: &str) {
    let r = qemu_img_any(&["check", "--output=json", "-f", "qcow2", img]);
    assert_eq!(r.code(), Some(0), "qemu-img check\n{}", r.describe());
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    for k in ["check-errors", "corruptions", "leaks"] {
        assert!(v.get(k).is_none_or(|x| x.as_u64() == Some(0)), "{k} in {v}");
    }
}

fn to_raw(s: &Scratch, img: &str, name: &str) -> String {
    let raw = s.s(name);
    qemu_img(&["convert", "-q", "-O", "raw", img, &raw]);
    raw
}

fn to_qcow2(raw: &str, out: &str, extra: &[&str]) -> String {
    let mut a = vec!["convert", "-q", "-f", "raw", "-O", "qcow2"];
    a.extend_from_slice(extra);
    a.extend_from_slice(&[raw, out]);
    qemu_img(&a);
    out.to_string()
}

fn size_of(p: &str) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

fn dropped(v: &Value, cat: &str) -> u64 {
    v["dropped"][cat].as_u64().unwrap()
}

/// 4 KiB-granular ranges `(offset, len)` where two files differ inside
/// `[start, start + len)`.
fn diff_ranges(a: &str, b: &str, start: u64, len: u64) -> Vec<(u64, u64)> {
    use std::os::unix::fs::FileExt;
    let fa = std::fs::File::open(a).unwrap();
    let fb = std::fs::File::open(b).unwrap();
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut x = vec![0u8; MIB as usize];
    let mut y = vec![0u8; MIB as usize];
    let mut pos = start;
    while pos < start + len {
        let n = MIB.min(start + len - pos) as usize;
        fa.read_exact_at(&mut x[..n], pos).unwrap();
        fb.read_exact_at(&mut y[..n], pos).unwrap();
        for k in (0..n).step_by(4096) {
            let e = (k + 4096).min(n);
            if x[k..e] != y[k..e] {
                let off = pos + k as u64;
                match out.last_mut() {
                    Some((s, l)) if *s + *l == off => *l += (e - k) as u64,
                    _ => out.push((off, (e - k) as u64)),
                }
            }
        }
        pos += n as u64;
    }
    out
}

/// Every range of `diffs` lies inside one of `allowed` (both sorted).
fn assert_within(diffs: &[(u64, u64)], allowed: &[(u64, u64)], what: &str) {
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for &(s, l) in allowed {
        match merged.last_mut() {
            Some((ms, ml)) if *ms + *ml == s => *ml += l,
            _ => merged.push((s, l)),
        }
    }
    let allowed = &merged;
    for &(s, l) in diffs {
        let inside = allowed.iter().any(|&(a, al)| s >= a && s + l <= a + al);
        assert!(
            inside,
            "{what}: bytes {s:#x}+{l:#x} changed outside the free space"
        );
    }
}

/// Free block ranges `dumpe2fs` reports, as byte ranges of the filesystem.
fn dumpe2fs_free(img: &str) -> Vec<(u64, u64)> {
    let out = run_ok(&tool("dumpe2fs"), &[img]).stdout_str();
    let bs: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("Block size:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut v = Vec::new();
    for l in out.lines() {
        let Some(list) = l.strip_prefix("  Free blocks: ") else {
            continue;
        };
        for part in list.split(", ").filter(|p| !p.is_empty()) {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()),
                None => (part.parse().unwrap(), part.parse().unwrap()),
            };
            v.push((a * bs, (b - a + 1) * bs));
        }
    }
    v.sort_unstable();
    v
}

/// Extracts `[start, start + len)` of `raw` into a new file.
fn extract(s: &Scratch, raw: &str, start: u64, len: u64, name: &str) -> String {
    let out = s.s(name);
    run_ok(
        "dd",
        &[
            &format!("if={raw}"),
            &format!("of={out}"),
            "bs=512",
            &format!("skip={}", start / 512),
            &format!("count={}", len / 512),
            "status=none",
        ],
    );
    out
}

/// Every regular file under `a` equals the one under `b` and vice versa.
fn assert_trees_eq(a: &Path, b: &Path) {
    fn files(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                files(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    files(a, a, &mut fa);
    files(b, b, &mut fb);
    fa.sort();
    fb.sort();
    assert_eq!(fa, fb, "file lists differ");
    assert!(!fa.is_empty());
    for f in fa {
        assert!(
            std::fs::read(a.join(&f)).unwrap() == std::fs::read(b.join(&f)).unwrap(),
            "{f} differs"
        );
    }
}

/// `debugfs rdump /` of an ext image into `dir`.
fn rdump(img: &str, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    run_ok(
        &tool("debugfs"),
        &["-R", &format!("rdump / {}", dir.display()), img],
    );
}

fn debugfs_w(img: &str, cmds: &str) {
    let script = format!("{img}.cmds");
    std::fs::write(&script, cmds).unwrap();
    let r = run(&tool("debugfs"), &["-w", "-f", &script, img]);
    assert!(r.ok() && !r.stderr.contains("rror"), "{}", r.describe());
}

/// A tree with files to keep (some compressible) and files to delete.
fn make_tree(root: &Path, seed: u64, delete_mib: u64) -> Vec<String> {
    std::fs::create_dir_all(root.join("etc/sub")).unwrap();
    std::fs::write(root.join("etc/hostname"), b"compact-test\n").unwrap();
    std::fs::write(root.join("etc/sub/text.txt"), text_bytes(300_000, seed)).unwrap();
    std::fs::write(
        root.join("keep.bin"),
        random_bytes(3 * MIB as usize + 123, seed),
    )
    .unwrap();
    std::fs::write(root.join("small.bin"), random_bytes(5000, seed + 1)).unwrap();
    std::os::unix::fs::symlink("etc/hostname", root.join("link")).unwrap();
    let mut del = Vec::new();
    for i in 0..delete_mib {
        let name = format!("del{i}.bin");
        std::fs::write(root.join(&name), random_bytes(MIB as usize, seed + 100 + i)).unwrap();
        del.push(name);
    }
    del
}

/// mke2fs -d TREE, then the delete files removed with debugfs.
fn ext_image(s: &Scratch, name: &str, mkfs: &[&str], size: &str, delete_mib: u64) -> String {
    let tree = s.path(&format!("{name}.tree"));
    let del = make_tree(&tree, name.len() as u64, delete_mib);
    let img = s.s(&format!("{name}.ext"));
    let mut a = vec!["-q", "-F"];
    a.extend_from_slice(mkfs);
    let t = tree.display().to_string();
    a.extend_from_slice(&["-d", &t, &img, size]);
    run_ok(&tool("mke2fs"), &a);
    let cmds: String = del.iter().map(|d| format!("rm /{d}\n")).collect();
    debugfs_w(&img, &cmds);
    img
}

/// The checks of one whole-disk ext case: compact, compare, size.
fn ext_case(name: &str, mkfs: &[&str], size: &str, delete_mib: u64) {
    if !tools() {
        return;
    }
    let s = Scratch::new(&format!("compact-{name}"));
    let ext = ext_image(&s, name, mkfs, size, delete_mib);
    let img = to_qcow2(&ext, &s.s("in.qcow2"), &[]);
    let out = s.s("out.qcow2");
    let v = compact_checked(&["-f", "qcow2"], &img, &out);
    let raw = to_raw(&s, &out, "out.raw");
    let fsck = run(&tool("e2fsck"), &["-fn", &raw]);
    assert_eq!(fsck.code(), Some(0), "{}", fsck.describe());
    // Files identical.
    rdump(&ext, &s.path("a"));
    rdump(&raw, &s.path("b"));
    assert_trees_eq(&s.path("a"), &s.path("b"));
    // Only free blocks changed.
    let diffs = diff_ranges(&ext, &raw, 0, size_of(&ext));
    assert!(!diffs.is_empty(), "the deleted data should be gone");
    assert_within(&diffs, &dumpe2fs_free(&ext), name);
    // Most of the deleted data was reclaimed, and qemu-img cannot.
    let freed = dropped(&v, "ext-free");
    assert!(
        freed >= delete_mib * MIB * 8 / 10,
        "{name}: only {freed} bytes of free space dropped\n{v:#}"
    );
    let reference = to_qcow2(&ext, &s.s("ref.qcow2"), &[]);
    assert!(
        size_of(&out) + delete_mib * MIB * 8 / 10 <= size_of(&reference),
        "{name}: {} vs qemu-img {}",
        size_of(&out),
        size_of(&reference)
    );
    let fsp = &v["proof"]["filesystems"][0];
    assert!(fsp["files"].as_u64().unwrap() >= 4, "{v:#}");
    assert_eq!(fsp["blake3-in"], fsp["blake3-out"]);
}

#[test]
fn ext4_default_flex_bg_metadata_csum() {
    ext_case("ext4", &["-t", "ext4", "-b", "4096"], "48M", 12);
}

#[test]
fn ext4_uninit_bg_without_metadata_csum() {
    ext_case(
        "uninit",
        &[
            "-t",
            "ext4",
            "-b",
            "4096",
            "-O",
            "^metadata_csum,uninit_bg",
            "-g",
            "2048",
        ],
        "48M",
        12,
    );
}

#[test]
fn ext4_bigalloc() {
    ext_case(
        "bigalloc",
        &["-t", "ext4", "-b", "4096", "-O", "bigalloc", "-C", "16384"],
        "64M",
        12,
    );
}

#[test]
fn ext4_1k_blocks_and_meta_bg() {
    ext_case("k1", &["-t", "ext4", "-b", "1024"], "40M", 10);
    ext_case(
        "metabg",
        &[
            "-t",
            "ext4",
            "-O",
            "meta_bg,^resize_inode",
            "-g",
            "1024",
            "-b",
            "1024",
        ],
        "40M",
        10,
    );
}

#[test]
fn ext2_and_ext3_without_checksums() {
    ext_case("ext2", &["-t", "ext2", "-b", "4096"], "40M", 10);
    ext_case("ext3", &["-t", "ext3", "-b", "4096"], "40M", 10);
}

/// A journal that needs recovery and whose replay restores the block
/// bitmaps from before the deletions: compaction must follow the replayed
/// view (keep the deleted data) and the output must still recover.
#[test]
fn journal_needing_recovery_uses_the_replayed_bitmaps() {
    if !tools() {
        return;
    }
    let s = Scratch::new("compact-journal");
    let tree = s.path("tree");
    let del = make_tree(&tree, 7, 8);
    let ext = s.s("j.ext");
    let t = tree.display().to_string();
    run_ok(
        &tool("mke2fs"),
        &[
            "-q", "-F", "-t", "ext4", "-b", "4096", "-d", &t, &ext, "48M",
        ],
    );
    // The bitmap blocks as they are with the files present.
    let dump = run_ok(&tool("dumpe2fs"), &[&ext]).stdout_str();
    let bitmaps: Vec<u64> = dump
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("Block bitmap at ")
                .or_else(|| l.strip_prefix("Inode bitmap at "))
        })
        .map(|r| {
            r.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(!bitmaps.is_empty());
    // The descriptor block too, so that the bitmaps' checksums match: the
    // replayed view is the filesystem's allocation before the deletions.
    let mut bitmaps = bitmaps;
    bitmaps.push(1);
    let mut saved = Vec::new();
    for (i, b) in bitmaps.iter().enumerate() {
        let p = s.s(&format!("bm{i}"));
        std::fs::write(&p, peek(&ext, b * 4096, 4096)).unwrap();
        saved.push((b, p));
    }
    let cmds: String = del.iter().map(|d| format!("rm /{d}\n")).collect();
    debugfs_w(&ext, &cmds);
    let mut j = String::from("jo\n");
    for (b, p) in &saved {
        j.push_str(&format!("jw -b {b} {p}\n"));
    }
    j.push_str("jc\n");
    debugfs_w(&ext, &j);
    let h = run_ok(&tool("dumpe2fs"), &["-h", &ext]).stdout_str();
    assert!(h.contains("needs_recovery"), "{h}");
    let img = to_qcow2(&ext, &s.s("in.qcow2"), &[]);
    let out = s.s("out.qcow2");
    let v = compact_checked(&["-f", "qcow2"], &img, &out);
    let raw = to_raw(&s, &out, "out.raw");
    // The replayed view marks the deleted files' blocks in use: kept.
    let recovered_in = s.s("rec_in.ext");
    std::fs::copy(&ext, &recovered_in).unwrap();
    let r = run(&tool("e2fsck"), &["-fy", &recovered_in]);
    assert!(matches!(r.code(), Some(0 | 1)), "{}", r.describe());
    let diffs = diff_ranges(&ext, &raw, 0, size_of(&ext));
    // The replayed view, without e2fsck's repairs (which would free the
    // unowned blocks again).
    let replayed = s.s("replayed.ext");
    std::fs::copy(&ext, &replayed).unwrap();
    let r = run(&tool("e2fsck"), &["-p", "-E", "journal_only", &replayed]);
    assert!(matches!(r.code(), Some(0 | 1)), "{}", r.describe());
    let stale_free = dumpe2fs_free(&ext);
    let replayed_free = dumpe2fs_free(&replayed);
    assert!(
        stale_free.iter().map(|r| r.1).sum::<u64>()
            > replayed_free.iter().map(|r| r.1).sum::<u64>() + 6 * MIB,
        "the journal should hide the deletions"
    );
    assert_within(&diffs, &replayed_free, "journal");
    // The output recovers to the same files.
    let recovered_out = s.s("rec_out.ext");
    std::fs::copy(&raw, &recovered_out).unwrap();
    let r = run(&tool("e2fsck"), &["-fy", &recovered_out]);
    assert!(matches!(r.code(), Some(0 | 1)), "{}", r.describe());
    rdump(&recovered_in, &s.path("a"));
    rdump(&recovered_out, &s.path("b"));
    assert_trees_eq(&s.path("a"), &s.path("b"));
    assert!(
        v["regions"][0]["note"]
            .as_str()
            .unwrap()
            .contains("journal replayed"),
        "{v:#}"
    );
}
