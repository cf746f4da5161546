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
        dry["output_file_size"], real["output_file_size"],
        "dry run vs real"
    );
    assert_eq!(dry["dropped"], real["dropped"], "dry run vs real");
    assert_eq!(dry["kept_bytes"], real["kept_bytes"]);
    // Kept and dropped guest bytes add up to the virtual size (leaked and
    // snapshot are bytes of the input file, not of the guest).
    let guest_dropped: u64 = [
        "unallocated",
        "zero",
        "zero_data",
        "ext_free",
        "fat_free",
        "swap",
    ]
    .iter()
    .map(|c| dropped(&real, c))
    .sum();
    assert_eq!(
        real["kept_bytes"].as_u64().unwrap() + guest_dropped,
        real["virtual_size"].as_u64().unwrap(),
        "kept + dropped: {real}"
    );
    let len = std::fs::metadata(out).unwrap().len();
    assert_eq!(real["output_file_size"].as_u64(), Some(len));
    assert_check_clean(out);
    let proof = &real["proof"];
    assert_eq!(proof["kept"]["algorithm"], "blake3(xxh3-128 per piece)");
    assert_eq!(proof["kept"]["digest_in"], proof["kept"]["digest_out"]);
    assert_eq!(proof["kept"]["compared"], proof["kept"]["bytes"]);
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

/// 512-byte-granular ranges `(offset, len)` where two files differ inside
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
        for k in (0..n).step_by(512) {
            let e = (k + 512).min(n);
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

/// Free space as `dumpe2fs` shows it (free blocks and unused inode-table
/// blocks), as sorted byte ranges of the filesystem.
fn dumpe2fs_free(img: &str) -> Vec<(u64, u64)> {
    // Exit status 1 with needs_recovery; the listing is complete anyway.
    let out = run(&tool("dumpe2fs"), &[img]).stdout_str();
    let field = |name: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let bs = field("Block size:");
    // Unused inode-table blocks, as `e2fsck -E discard` finds them: the
    // whole blocks of each group's table past its last used inode (all of
    // them with INODE_UNINIT), never read as inodes.
    let (ipg, isz) = (field("Inodes per group:"), field("Inode size:"));
    let per_block = bs / isz;
    let mut tails = Vec::new();
    let groups = out
        .split("\nGroup ")
        .filter(|g| g.starts_with(|c: char| c.is_ascii_digit()));
    for group in groups {
        let table = group
            .lines()
            .find_map(|l| l.trim().strip_prefix("Inode table at "))
            .unwrap();
        let range = table.split_whitespace().next().unwrap();
        let (a, b) = range.split_once('-').unwrap();
        let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
        let unused: u64 = group
            .lines()
            .find(|l| l.contains(" unused inodes"))
            .map_or(0, |l| {
                l.rsplit(", ")
                    .next()
                    .unwrap()
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            });
        let header = group.lines().next().unwrap();
        let used_inodes = if header.contains("INODE_UNINIT") {
            0
        } else {
            ipg - unused
        };
        let first = a + used_inodes.div_ceil(per_block);
        if first <= b {
            tails.push((first * bs, (b - first + 1) * bs));
        }
    }
    // bigalloc: dumpe2fs ends each range at the first block of its last
    // free cluster.
    let ratio: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("Cluster size:"))
        .map_or(bs, |c| c.trim().parse().unwrap())
        / bs;
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
            let b = (b / ratio + 1) * ratio - 1;
            v.push((a * bs, (b - a + 1) * bs));
        }
    }
    v.extend(tails);
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

/// `debugfs rdump /` of an ext image into `dir` (checksums not verified:
/// `e2fsck -fn` checks them where it matters).
fn rdump(img: &str, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    run_ok(
        &tool("debugfs"),
        &["-n", "-R", &format!("rdump / {}", dir.display()), img],
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
    // Stale data everywhere first (a disk that held something before), so
    // that free space in never-initialised (BLOCK_UNINIT) groups is not
    // zeros either.
    let mib: usize = size.trim_end_matches('M').parse().unwrap();
    write_file(&img, &random_bytes(mib << 20, 77));
    let mut a = vec!["-q", "-F", "-E", "nodiscard"];
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
    let free = dumpe2fs_free(&ext);
    assert_within(&diffs, &free, name);
    // All free space reads as zeros (dropped, or zero-filled in kept
    // clusters): no stale data survives.
    for &(o, l) in &free {
        assert!(
            peek(&raw, o, l as usize).iter().all(|&b| b == 0),
            "{name}: free bytes at {o:#x}+{l:#x} are not zero"
        );
    }
    // Most of the deleted data was reclaimed, and qemu-img cannot.
    let freed = dropped(&v, "ext_free");
    assert!(
        freed >= delete_mib * MIB * 8 / 10,
        "{name}: only {freed} bytes of free space dropped\n{v:#}"
    );
    // The disk held stale data everywhere: nearly all free space (as
    // dumpe2fs counts it, BLOCK_UNINIT groups included) must go.
    let free_total: u64 = dumpe2fs_free(&ext).iter().map(|r| r.1).sum();
    let all_dropped = freed + dropped(&v, "zero") + dropped(&v, "unallocated");
    assert!(
        all_dropped >= free_total * 9 / 10,
        "{name}: dropped {all_dropped} of {free_total} free bytes\n{v:#}"
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
    assert_eq!(fsp["digest_in"], fsp["digest_out"]);
    // The size target: within 2% of `e2fsck -E discard` (which also zeroes
    // unused inode-table blocks) + `qemu-img convert`. A first `e2fsck -fy`
    // settles what debugfs left, as e2fsck does not discard while repairing.
    let discarded = s.s("discarded.ext");
    std::fs::copy(&ext, &discarded).unwrap();
    run(&tool("e2fsck"), &["-fy", &discarded]);
    let r = run(&tool("e2fsck"), &["-fy", "-E", "discard", &discarded]);
    assert!(matches!(r.code(), Some(0 | 1)), "{}", r.describe());
    let reference = to_qcow2(&discarded, &s.s("discarded.qcow2"), &[]);
    assert!(
        size_of(&out) * 100 <= size_of(&reference) * 102,
        "{name}: {} vs e2fsck -E discard + convert {}",
        size_of(&out),
        size_of(&reference)
    );
}

/// An encrypted (LUKS) image is compacted into an encrypted image: the same
/// LUKS header and key slots, every stored cluster encrypted at its new
/// host offset as qemu expects, free space reclaimed inside. qemu opens
/// the output with the same passphrase, checks it clean, and reads the same
/// files; no plaintext reaches the output file; `-c` and a wrong
/// passphrase are refused and leave nothing.
#[test]
fn luks_input_is_compacted_into_a_luks_output() {
    if !tools() {
        return;
    }
    let s = Scratch::new("compact-luks");
    let key = s.s("key");
    write_file(&key, b"compact passphrase");
    let secret = format!("secret,id=sec0,file={key}");
    let ext = ext_image(&s, "luks", &["-t", "ext4"], "40M", 8);
    let plain_marker = b"compact-test\n";
    assert!(std::fs::read(&ext)
        .unwrap()
        .windows(plain_marker.len())
        .any(|w| w == plain_marker));
    let img = s.s("in.qcow2");
    qemu_img(&[
        "convert",
        "-q",
        "--object",
        &secret,
        "-f",
        "raw",
        "-O",
        "qcow2",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
        &ext,
        &img,
    ]);
    let out = s.s("out.qcow2");
    let r = qvet(&["compact", "-q", "-c", "--key-file", &key, &img, &out]);
    assert_eq!(r.code(), Some(1), "{}", r.describe());
    assert!(r.stderr.contains("compress encrypted"), "{}", r.describe());
    assert!(!Path::new(&out).exists());
    let wrong = s.s("wrong");
    write_file(&wrong, b"not it");
    let r = qvet(&["compact", "-q", "--key-file", &wrong, &img, &out]);
    assert_eq!(r.code(), Some(1), "{}", r.describe());
    assert!(!Path::new(&out).exists());

    let dry = compact(&["--key-file", &key, "--dry-run"], &img, &out);
    assert!(!Path::new(&out).exists());
    let v = compact(&["--key-file", &key], &img, &out);
    assert_eq!(
        dry["output_file_size"], v["output_file_size"],
        "dry run vs real"
    );
    assert_eq!(v["output_file_size"].as_u64(), Some(size_of(&out)));
    assert!(dropped(&v, "ext_free") >= 6 * MIB, "{v:#}");
    assert_eq!(
        v["proof"]["kept"]["digest_in"],
        v["proof"]["kept"]["digest_out"]
    );
    assert!(size_of(&out) + 6 * MIB <= size_of(&img));
    // No plaintext in the file: the hostname file's bytes are in the
    // filesystem, not in the output.
    assert!(!std::fs::read(&out)
        .unwrap()
        .windows(plain_marker.len())
        .any(|w| w == plain_marker));
    // qemu: the same LUKS header, clean, and the same files.
    let info = qemu_img_any(&["info", "--output=json", &out]);
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["encrypted"], true, "{info:#}");
    assert_eq!(info["format-specific"]["data"]["encrypt"]["format"], "luks");
    let opts = |f: &str| format!("driver=qcow2,file.filename={f},encrypt.key-secret=sec0");
    let check = qemu_img_any(&["check", "--object", &secret, "--image-opts", &opts(&out)]);
    assert_eq!(check.code(), Some(0), "{}", check.describe());
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("No errors"),
        "{}",
        check.describe()
    );
    let raw = s.s("out.raw");
    qemu_img(&[
        "convert",
        "-q",
        "--object",
        &secret,
        "--image-opts",
        &opts(&out),
        "-O",
        "raw",
        &raw,
    ]);
    let fsck = run(&tool("e2fsck"), &["-fn", &raw]);
    assert_eq!(fsck.code(), Some(0), "{}", fsck.describe());
    rdump(&ext, &s.path("a"));
    rdump(&raw, &s.path("b"));
    assert_trees_eq(&s.path("a"), &s.path("b"));
    assert_within(
        &diff_ranges(&ext, &raw, 0, size_of(&ext)),
        &dumpe2fs_free(&ext),
        "luks",
    );
    // And qvet reads it back with the same passphrase.
    let r = qvet(&["cat", "--key-file", &key, &format!("{out}:/etc/hostname")]);
    assert_success(&r);
    assert_eq!(r.stdout, b"compact-test\n");
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

// ---- a partitioned disk: ext4, FAT32, stale swap, hibernation swap ------

/// Sector layout: p1 ext4 32 MiB, a 1 MiB gap of data, p2 FAT32 36 MiB,
/// p3 swap 4 MiB, p4 hibernated swap 4 MiB, 4 MiB of data after p4.
const P1: (u64, u64) = (2048, 65536);
const P2: (u64, u64) = (69632, 73728);
const P3: (u64, u64) = (143360, 8192);
const P4: (u64, u64) = (151552, 8192);
const DISK_SECTORS: u64 = 167936;

fn fat_data_offset(img: &str) -> u64 {
    let b = peek(img, 0, 64);
    let u16at = |o: usize| u64::from(u16::from_le_bytes([b[o], b[o + 1]]));
    let bps = u16at(11);
    let rsvd = u16at(14);
    let nfats = u64::from(b[16]);
    let root_sectors = (u16at(17) * 32).div_ceil(bps);
    let fatsz = match u16at(22) {
        0 => u64::from(u32::from_le_bytes([b[36], b[37], b[38], b[39]])),
        n => n,
    };
    (rsvd + nfats * fatsz + root_sectors) * bps
}

fn mtools_dump(img: &str, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    run_ok(
        &tool("mcopy"),
        &["-s", "-n", "-i", img, "::/", &dir.display().to_string()],
    );
}

/// Writes `files` (paths relative to `tree`) and copies every top-level
/// entry of `tree` into the root of the FAT image `fat` with mcopy.
fn fill_fat(tree: &Path, fat: &str, files: &[(&str, Vec<u8>)]) {
    let mut tops = std::collections::BTreeSet::new();
    for (rel, bytes) in files {
        let path = tree.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        tops.insert(rel.split('/').next().unwrap().to_string());
    }
    let mut args = vec!["-s".to_string(), "-i".to_string(), fat.to_string()];
    args.extend(tops.iter().map(|t| tree.join(t).display().to_string()));
    args.push("::/".to_string());
    run_ok(&tool("mcopy"), &args);
}

fn partitioned_disk(s: &Scratch) -> String {
    let ext = ext_image(s, "p1", &["-t", "ext4", "-b", "4096"], "32M", 8);
    // FAT32 with files written, then some deleted.
    let fat = s.s("p2.fat");
    run_ok(
        &tool("mkfs.fat"),
        &["-F", "32", "-S", "512", "-s", "1", "-C", &fat, "36864"],
    );
    fill_fat(
        &s.path("fat.tree"),
        &fat,
        &[
            ("boot/kernel.img", random_bytes(2 * MIB as usize, 41)),
            ("readme.txt", text_bytes(40_000, 42)),
        ],
    );
    for i in 0..8u64 {
        let f = s.s(&format!("fdel{i}"));
        std::fs::write(&f, random_bytes(MIB as usize, 500 + i)).unwrap();
        run_ok(&tool("mcopy"), &["-i", &fat, &f, &format!("::/DEL{i}.BIN")]);
    }
    for i in 0..8u64 {
        run_ok(&tool("mdel"), &["-i", &fat, &format!("::/DEL{i}.BIN")]);
    }
    // Swap areas over stale data.
    let swap = s.s("p3.swap");
    std::fs::write(&swap, random_bytes(4 * MIB as usize, 43)).unwrap();
    run_ok(&tool("mkswap"), &["-q", "-p", "4096", &swap]);
    let hib = s.s("p4.swap");
    std::fs::write(&hib, random_bytes(4 * MIB as usize, 44)).unwrap();
    run_ok(&tool("mkswap"), &["-q", "-p", "4096", &hib]);
    poke(&hib, 4086, b"S1SUSPEND\0");
    let raw = s.s("disk.raw");
    std::fs::write(&raw, random_bytes((DISK_SECTORS * 512) as usize, 45)).unwrap();
    sfdisk(
        &raw,
        &["-q"],
        &format!(
            "label: dos\nlabel-id: 0x5eed0001\nstart={}, size={}, type=83\nstart={}, size={}, type=c\nstart={}, size={}, type=82\nstart={}, size={}, type=82\n",
            P1.0, P1.1, P2.0, P2.1, P3.0, P3.1, P4.0, P4.1
        ),
    );
    dd_into(&ext, &raw, P1.0);
    dd_into(&fat, &raw, P2.0);
    dd_into(&swap, &raw, P3.0);
    dd_into(&hib, &raw, P4.0);
    raw
}

#[test]
fn partitioned_disk_ext_fat_swap_and_boot_code() {
    if !tools() || !have_tool("mkswap") {
        return;
    }
    let s = Scratch::new("compact-disk");
    let raw_in = partitioned_disk(&s);
    let img = to_qcow2(&raw_in, &s.s("in.qcow2"), &[]);
    let out = s.s("out.qcow2");
    let v = compact_checked(&["-f", "qcow2"], &img, &out);
    let raw_out = to_raw(&s, &out, "out.raw");
    let sec = |x: u64| x * 512;
    // Outside the partitions (MBR with boot code, the gap, the tail): same.
    for (start, len) in [
        (0, sec(P1.0)),
        (sec(P1.0 + P1.1), sec(P2.0 - P1.0 - P1.1)),
        (sec(P4.0 + P4.1), sec(DISK_SECTORS - P4.0 - P4.1)),
        (sec(P4.0), sec(P4.1)),
    ] {
        assert!(
            diff_ranges(&raw_in, &raw_out, start, len).is_empty(),
            "bytes at {start:#x} changed"
        );
    }
    // ext4: files equal, clean, only free blocks changed.
    let e_in = extract(&s, &raw_in, sec(P1.0), sec(P1.1), "e_in");
    let e_out = extract(&s, &raw_out, sec(P1.0), sec(P1.1), "e_out");
    assert_eq!(run(&tool("e2fsck"), &["-fn", &e_out]).code(), Some(0));
    rdump(&e_in, &s.path("ea"));
    rdump(&e_out, &s.path("eb"));
    assert_trees_eq(&s.path("ea"), &s.path("eb"));
    assert_within(
        &diff_ranges(&e_in, &e_out, 0, sec(P1.1)),
        &dumpe2fs_free(&e_in),
        "p1",
    );
    // FAT32: files equal, clean, only the data region changed.
    let f_in = extract(&s, &raw_in, sec(P2.0), sec(P2.1), "f_in");
    let f_out = extract(&s, &raw_out, sec(P2.0), sec(P2.1), "f_out");
    let fsck = run(&tool("fsck.fat"), &["-n", &f_out]);
    assert_eq!(fsck.code(), Some(0), "{}", fsck.describe());
    mtools_dump(&f_in, &s.path("fa"));
    mtools_dump(&f_out, &s.path("fb"));
    assert_trees_eq(&s.path("fa"), &s.path("fb"));
    let data = fat_data_offset(&f_in);
    let fdiff = diff_ranges(&f_in, &f_out, 0, sec(P2.1));
    assert!(!fdiff.is_empty());
    assert_within(&fdiff, &[(data, sec(P2.1) - data)], "p2");
    assert!(dropped(&v, "fat_free") >= 7 * MIB, "{v:#}");
    assert!(dropped(&v, "ext_free") >= 6 * MIB, "{v:#}");
    // Swap: the header page kept, the rest dropped (64 KiB clusters).
    let sdiff = diff_ranges(&raw_in, &raw_out, sec(P3.0), sec(P3.1));
    assert_within(&sdiff, &[(sec(P3.0) + 4096, sec(P3.1) - 4096)], "p3");
    assert_eq!(dropped(&v, "swap"), sec(P3.1) - 65536, "{v:#}");
    let notes: Vec<&str> = v["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["note"].as_str().unwrap())
        .collect();
    assert!(notes[3].contains("hibernation"), "{notes:?}");
    // Smaller than qemu-img convert by about the reclaimed space.
    let reference = to_qcow2(&raw_in, &s.s("ref.qcow2"), &[]);
    assert!(
        size_of(&out) + 16 * MIB <= size_of(&reference),
        "{} vs qemu-img {}",
        size_of(&out),
        size_of(&reference)
    );
    // Proof walked both filesystems.
    let fss = v["proof"]["filesystems"].as_array().unwrap();
    assert_eq!(fss.len(), 2, "{v:#}");
    // With --keep-free-space only the container level is compacted: no
    // larger than qemu-img convert.
    let keep = s.s("keep.qcow2");
    let k = compact_checked(&["-f", "qcow2", "--keep-free-space"], &img, &keep);
    assert_eq!(
        dropped(&k, "ext_free") + dropped(&k, "fat_free") + dropped(&k, "swap"),
        0
    );
    assert!(size_of(&keep) <= size_of(&reference));
    let r = qemu_img_any(&["compare", "-f", "qcow2", "-F", "qcow2", &img, &keep]);
    assert_eq!(r.code(), Some(0), "{}", r.describe());
}

/// A block bitmap that calls a block of a live file free: the inode
/// cross-check (or, with metadata_csum, the bitmap checksum) keeps the
/// group, and the file survives.
#[test]
fn a_bitmap_disagreeing_with_the_inodes_keeps_its_group() {
    if !tools() {
        return;
    }
    for (name, mkfs, expect) in [
        (
            "nocsum",
            &[
                "-t",
                "ext4",
                "-b",
                "4096",
                "-g",
                "8192",
                "-O",
                "^metadata_csum,^uninit_bg",
            ][..],
            "referenced by an inode",
        ),
        (
            "csum",
            &["-t", "ext4", "-b", "4096", "-g", "8192"][..],
            "checksum mismatch",
        ),
    ] {
        let s = Scratch::new(&format!("compact-bitmap-{name}"));
        let ext = ext_image(&s, name, mkfs, "64M", 8);
        let bmap = run_ok(&tool("debugfs"), &["-R", "bmap /keep.bin 100", &ext]).stdout_str();
        let block: u64 = bmap.trim().parse().unwrap();
        let group = block / 8192;
        let dump = run_ok(&tool("dumpe2fs"), &[&ext]).stdout_str();
        let bitmap: u64 = dump
            .split(&format!("Group {group}:"))
            .nth(1)
            .unwrap()
            .lines()
            .find_map(|l| l.trim().strip_prefix("Block bitmap at "))
            .unwrap()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let bit = block % 8192;
        let at = bitmap * 4096 + bit / 8;
        let b = peek(&ext, at, 1)[0];
        assert_ne!(b & (1 << (bit % 8)), 0);
        poke(&ext, at, &[b & !(1 << (bit % 8))]);
        let img = to_qcow2(&ext, &s.s("in.qcow2"), &[]);
        let out = s.s("out.qcow2");
        let v = compact_checked(&["-f", "qcow2"], &img, &out);
        let note = v["regions"][0]["note"].as_str().unwrap();
        assert!(
            note.contains(&format!("group {group}:")) && note.contains(expect),
            "{name}: {note}"
        );
        let raw = to_raw(&s, &out, "out.raw");
        assert!(
            diff_ranges(&ext, &raw, block * 4096, 4096).is_empty(),
            "{name}: block {block} lost"
        );
        rdump(&ext, &s.path("a"));
        rdump(&raw, &s.path("b"));
        assert_trees_eq(&s.path("a"), &s.path("b"));
    }
}

/// Whole-disk FAT12 and FAT16 with deleted files: the files survive, the
/// volume checks clean, only the data region changes, the deleted data goes.
#[test]
fn fat12_and_fat16_whole_disk() {
    if !tools() {
        return;
    }
    for (bits, kib, files) in [("12", "3072", 2u64), ("16", "24576", 8)] {
        let s = Scratch::new(&format!("compact-fat{bits}"));
        let fat = s.s("fat.img");
        write_file(&fat, &random_bytes(kib.parse::<usize>().unwrap() << 10, 3));
        run_ok(&tool("mkfs.fat"), &["-F", bits, "-C", &s.s("new.img"), kib]);
        // mkfs.fat -C wants a new file: lay its metadata over the stale data.
        let new = std::fs::read(s.path("new.img")).unwrap();
        let data = fat_data_offset(&s.s("new.img")) as usize;
        poke(&fat, 0, &new[..data]);
        let keep = s.s("keep.txt");
        std::fs::write(&keep, text_bytes(20_000, 5)).unwrap();
        run_ok(&tool("mcopy"), &["-i", &fat, &keep, "::/KEEP.TXT"]);
        for i in 0..files {
            let f = s.s(&format!("d{i}"));
            std::fs::write(&f, random_bytes(256 << 10, 900 + i)).unwrap();
            run_ok(&tool("mcopy"), &["-i", &fat, &f, &format!("::/D{i}.BIN")]);
        }
        for i in 0..files {
            run_ok(&tool("mdel"), &["-i", &fat, &format!("::/D{i}.BIN")]);
        }
        let img = to_qcow2(&fat, &s.s("in.qcow2"), &[]);
        let out = s.s("out.qcow2");
        let v = compact_checked(&["-f", "qcow2", "--cluster-size", "4k"], &img, &out);
        let raw = to_raw(&s, &out, "out.raw");
        let fsck = run(&tool("fsck.fat"), &["-n", &raw]);
        assert_eq!(fsck.code(), Some(0), "{}", fsck.describe());
        mtools_dump(&fat, &s.path("a"));
        mtools_dump(&raw, &s.path("b"));
        assert_trees_eq(&s.path("a"), &s.path("b"));
        let len = size_of(&fat);
        let d = diff_ranges(&fat, &raw, 0, len);
        assert!(!d.is_empty());
        assert_within(&d, &[(data as u64, len - data as u64)], "fat");
        assert!(
            dropped(&v, "fat_free") >= files * (256 << 10),
            "FAT{bits}: {v:#}"
        );
        assert_eq!(v["regions"][0]["content"], "fat", "{v:#}");
    }
}

/// A GPT disk: both partition tables (the backup at the end) and the
/// protective MBR stay byte for byte; the ext4 partition is compacted.
#[test]
fn gpt_disk_keeps_both_tables() {
    if !tools() {
        return;
    }
    let s = Scratch::new("compact-gpt");
    let ext = ext_image(&s, "g", &["-t", "ext4", "-b", "4096"], "24M", 6);
    let raw = s.s("gpt.raw");
    write_file(&raw, &random_bytes(28 << 20, 8));
    sfdisk(
        &raw,
        &["-q"],
        "label: gpt\nstart=2048, size=49152, type=L\n",
    );
    dd_into(&ext, &raw, 2048);
    let img = to_qcow2(&raw, &s.s("in.qcow2"), &[]);
    let out = s.s("out.qcow2");
    let v = compact_checked(&["-f", "qcow2"], &img, &out);
    assert_eq!(v["scheme"], "gpt");
    let raw_out = to_raw(&s, &out, "out.raw");
    let len = size_of(&raw);
    assert!(diff_ranges(&raw, &raw_out, 0, 2048 * 512).is_empty());
    let end = (2048 + 49152) * 512;
    assert!(diff_ranges(&raw, &raw_out, end, len - end).is_empty());
    assert!(dropped(&v, "ext_free") >= 5 * MIB, "{v:#}");
    let p = extract(&s, &raw_out, 2048 * 512, 49152 * 512, "p.ext");
    assert_eq!(run(&tool("e2fsck"), &["-fn", &p]).code(), Some(0));
}

/// `needs_recovery` with an empty log recovers to the on-disk state: the
/// free space is reclaimed. With a log that cannot be read, nothing of the
/// filesystem is dropped.
#[test]
fn needs_recovery_with_an_empty_or_unreadable_log() {
    if !tools() {
        return;
    }
    for broken in [false, true] {
        let s = Scratch::new("compact-recover");
        let ext = ext_image(
            &s,
            "r",
            &["-t", "ext4", "-b", "4096", "-O", "^metadata_csum"],
            "32M",
            6,
        );
        let jblock: u64 = run_ok(&tool("debugfs"), &["-R", "bmap <8> 0", &ext])
            .stdout_str()
            .trim()
            .parse()
            .unwrap();
        // incompat |= needs_recovery (superblock at 1024, field at 0x60).
        let mut inc = peek(&ext, 1024 + 0x60, 4);
        inc[0] |= 0x4;
        poke(&ext, 1024 + 0x60, &inc);
        if broken {
            // A journal superblock that is not one.
            poke(&ext, jblock * 4096, b"garbage!");
        }
        // (dumpe2fs exits 1 on a journal needing recovery; its output is fine.)
        let h = run(&tool("dumpe2fs"), &["-h", &ext]).stdout_str();
        assert!(h.contains("needs_recovery"), "{h}");
        let img = to_qcow2(&ext, &s.s("in.qcow2"), &[]);
        let out = s.s("out.qcow2");
        let v = compact_checked(&["-f", "qcow2"], &img, &out);
        let note = v["regions"][0]["note"].as_str().unwrap().to_string();
        let raw = to_raw(&s, &out, "out.raw");
        if broken {
            assert!(note.contains("kept whole"), "{note}");
            assert_eq!(dropped(&v, "ext_free"), 0, "{v:#}");
            assert!(diff_ranges(&ext, &raw, 0, size_of(&ext)).is_empty());
        } else {
            assert!(dropped(&v, "ext_free") >= 5 * MIB, "{note}\n{v:#}");
            assert_within(
                &diff_ranges(&ext, &raw, 0, size_of(&ext)),
                &dumpe2fs_free(&ext),
                "empty log",
            );
        }
    }
}

/// Whole-disk swap areas made by `mkswap` with a 4 KiB and a 64 KiB page
/// (arm64, ppc64): everything after the header page is dropped, the header
/// page kept byte for byte; a hibernation image at the 64 KiB page's
/// signature place keeps the whole area.
#[test]
fn whole_disk_swap_of_any_page_size() {
    if !have_tool("mkswap") {
        eprintln!("SKIP: mkswap missing");
        return;
    }
    let s = Scratch::new("compact-swap-pages");
    for (page, hibernated) in [(4096u64, false), (65536, false), (65536, true)] {
        let name = format!("swap-{page}-{hibernated}");
        let raw = s.s(&format!("{name}.raw"));
        std::fs::write(&raw, random_bytes(8 * MIB as usize, page + 7)).unwrap();
        run_ok(&tool("mkswap"), &["-q", "-p", &page.to_string(), &raw]);
        if hibernated {
            poke(&raw, page - 10, b"LINHIB0001");
        }
        let img = to_qcow2(&raw, &s.s(&format!("{name}.qcow2")), &[]);
        let out = s.s(&format!("{name}.out.qcow2"));
        let v = compact_checked(&[], &img, &out);
        assert_eq!(v["scheme"], "whole-disk", "{name}: {v}");
        let raw_out = to_raw(&s, &out, &format!("{name}.out.raw"));
        let (a, b) = (
            std::fs::read(&raw).unwrap(),
            std::fs::read(&raw_out).unwrap(),
        );
        assert_eq!(a.len(), b.len());
        if hibernated {
            assert_eq!(dropped(&v, "swap"), 0, "{name}: {v}");
            assert!(a == b, "{name}: a hibernated area changed");
        } else {
            // 64 KiB output clusters: the header's cluster is kept, the
            // stale swap in it after the header page written as zeros.
            assert_eq!(dropped(&v, "swap"), 8 * MIB - 65536, "{name}: {v}");
            let page = page as usize;
            assert!(a[..page] == b[..page], "{name}: header page changed");
            assert!(b[page..].iter().all(|&x| x == 0), "{name}: stale swap kept");
        }
    }
}

/// Inodes hidden from the scan by a descriptor that lies (INODE_UNINIT
/// or `itable_unused`, checksums recomputed so they verify) while their
/// blocks are marked free: the kernel still reads those inodes (the journal
/// through the superblock, a file through its directory entry), so the
/// whole filesystem is kept, with the reason, and nothing is lost.
#[test]
fn inodes_hidden_by_their_descriptor_keep_the_filesystem_whole() {
    if !tools() {
        return;
    }
    let mkfs = ["-t", "ext4", "-b", "4096", "-g", "8192", "-N", "32"];
    for variant in ["journal", "inode_uninit", "itable_unused", "orphan_list"] {
        let s = Scratch::new(&format!("compact-hidden-{variant}"));
        let ext = ext_image(&s, variant, &mkfs, "64M", 4);
        let stat = |what: &str| {
            run_ok(&tool("debugfs"), &["-R", &format!("stat {what}"), &ext]).stdout_str()
        };
        let ipg: u64 = run_ok(&tool("dumpe2fs"), &["-h", &ext])
            .stdout_str()
            .lines()
            .find_map(|l| l.strip_prefix("Inodes per group:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The victim: the journal, or a file whose inode is past group 0.
        let (ino, spec) = if variant == "journal" {
            (8, "<8>".to_string())
        } else {
            [
                "/keep.bin",
                "/small.bin",
                "/etc/sub/text.txt",
                "/etc/hostname",
            ]
            .iter()
            .map(|p| {
                let st = stat(p);
                let n: u64 = st
                    .split("Inode: ")
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                (n, p.to_string())
            })
            .find(|(n, _)| *n > ipg)
            .expect("a file with an inode past group 0")
        };
        let blocks: Vec<u64> = run_ok(&tool("debugfs"), &["-R", &format!("blocks {spec}"), &ext])
            .stdout_str()
            .split_whitespace()
            .map(|b| b.parse().unwrap())
            .collect();
        assert!(!blocks.is_empty(), "{variant}: no blocks");
        let group = (ino - 1) / ipg;
        let mut cmds: Vec<String> = blocks.iter().map(|b| format!("freeb {b}")).collect();
        match variant {
            "itable_unused" => {
                // Every inode from the victim on is hidden and cleared in
                // the inode bitmap (a set bit past the limit is caught
                // earlier), the free count made to agree (e2fsck distrusts
                // more unused than free inodes): only the directory entries
                // still name them.
                let end = (group + 1) * ipg;
                let in_use = |n: u64| {
                    run_ok(&tool("debugfs"), &["-R", &format!("testi <{n}>"), &ext])
                        .stdout_str()
                        .contains("marked in use")
                };
                for n in (ino..=end).filter(|&n| in_use(n)) {
                    cmds.push(format!("freei <{n}>"));
                }
                let unused = ipg - (ino - 1) % ipg;
                cmds.push(format!("set_bg {group} itable_unused {unused}"));
                cmds.push(format!("set_bg {group} free_inodes_count {unused}"));
            }
            // The orphan list's head (lost+found, in group 0) names the
            // victim next, through its i_dtime.
            "orphan_list" => {
                cmds.push("set_super_value last_orphan 11".into());
                cmds.push(format!("set_inode_field <11> dtime {ino}"));
                cmds.push(format!("set_bg {group} flags 1"));
                cmds.push(format!("set_bg {group} free_inodes_count {ipg}"));
            }
            // INODE_UNINIT is believed only with every inode free.
            _ => {
                cmds.push(format!("set_bg {group} flags 1"));
                cmds.push(format!("set_bg {group} free_inodes_count {ipg}"));
            }
        }
        for g in 0..2 {
            cmds.push(format!("set_bg {g} checksum calc"));
        }
        debugfs_w(&ext, &(cmds.join("\n") + "\n"));
        let img = to_qcow2(&ext, &s.s("in.qcow2"), &[]);
        let out = s.s("out.qcow2");
        let v = compact_checked(&["-f", "qcow2"], &img, &out);
        let note = v["regions"][0]["note"].as_str().unwrap();
        let expect = match variant {
            "journal" => "inode 8 (the journal)".to_string(),
            "orphan_list" => format!("inode {ino} is on the orphan list"),
            "inode_uninit" => format!("names inode {ino}"),
            _ => "last".to_string(),
        };
        assert!(
            matches!(variant, "journal" | "orphan_list") || note.contains("names inode"),
            "{variant}: {note}"
        );
        assert!(
            note.contains("kept whole") && note.contains(&expect),
            "{variant}: {note}"
        );
        assert_eq!(dropped(&v, "ext_free"), 0, "{variant}: {v}");
        let raw = to_raw(&s, &out, "out.raw");
        for b in &blocks {
            assert!(
                diff_ranges(&ext, &raw, b * 4096, 4096).is_empty(),
                "{variant}: block {b} of {spec} lost"
            );
        }
    }
}

/// A FAT16 whose subdirectory's cluster is free in both FATs: the plan
/// keeps the volume whole (a directory cannot be read), and the proof,
/// whose side-by-side walk stops at the same damage, says so and relies on
/// the bytes, all kept, instead of failing the compaction.
#[test]
fn a_damaged_fat_kept_whole_is_proven_by_its_bytes() {
    if !tools() {
        return;
    }
    let s = Scratch::new("compact-fat-damaged");
    let fat = s.s("v.fat");
    run_ok(
        &tool("mkfs.fat"),
        &["-F", "16", "-S", "512", "-s", "4", "-C", &fat, "40000"],
    );
    fill_fat(
        &s.path("tree"),
        &fat,
        &[
            ("DIR/a.bin", random_bytes(300_000, 71)),
            ("top.txt", text_bytes(20_000, 72)),
        ],
    );
    // BPB geometry, then DIR's entry in the fixed root directory.
    let bs = peek(&fat, 0, 512);
    let le16 = |o: usize| u64::from(u16::from_le_bytes([bs[o], bs[o + 1]]));
    let (bps, rsv, nfats, fatsz) = (le16(11), le16(14), u64::from(bs[16]), le16(22));
    let root = (rsv + nfats * fatsz) * bps;
    let entries = peek(&fat, root, 512);
    let e = entries
        .chunks(32)
        .find(|e| &e[..11] == b"DIR        " && e[11] & 0x10 != 0)
        .expect("DIR's entry");
    let first = u64::from(u16::from_le_bytes([e[26], e[27]]));
    for copy in 0..nfats {
        poke(&fat, (rsv + copy * fatsz) * bps + first * 2, &[0, 0]);
    }
    let img = to_qcow2(&fat, &s.s("in.qcow2"), &[]);
    let out = s.s("out.qcow2");
    let v = compact_checked(&["-f", "qcow2"], &img, &out);
    let note = v["regions"][0]["note"].as_str().unwrap();
    assert!(
        note.contains("kept whole") && note.contains("directory cannot be read"),
        "{note}"
    );
    let not_walked = v["proof"]["not_walked"].to_string();
    assert!(not_walked.contains("the walk stopped"), "{v}");
    let raw = to_raw(&s, &out, "out.raw");
    assert!(std::fs::read(&fat).unwrap() == std::fs::read(&raw).unwrap()[..size_of(&fat) as usize]);
}

/// Unused inode-table blocks are free space only while nothing else lies
/// in them: a file whose block map points into another group's unused
/// table (set with debugfs) keeps the whole filesystem, and its bytes.
#[test]
fn a_file_in_an_unused_inode_table_keeps_the_filesystem_whole() {
    if !tools() {
        return;
    }
    let s = Scratch::new("compact-itable-tail");
    let mkfs = [
        "-t",
        "ext4",
        "-b",
        "4096",
        "-g",
        "8192",
        "-O",
        "^extent,^64bit",
    ];
    let ext = ext_image(&s, "tail", &mkfs, "64M", 2);
    let dump = run_ok(&tool("dumpe2fs"), &[&ext]).stdout_str();
    let group1 = dump.split("\nGroup 1:").nth(1).unwrap();
    assert!(
        group1.lines().next().unwrap().contains("INODE_UNINIT"),
        "{group1}"
    );
    let table = group1
        .lines()
        .find_map(|l| l.trim().strip_prefix("Inode table at "))
        .unwrap();
    let last: u64 = table
        .split_whitespace()
        .next()
        .unwrap()
        .split_once('-')
        .unwrap()
        .1
        .parse()
        .unwrap();
    debugfs_w(
        &ext,
        &format!("set_inode_field /small.bin block[0] {last}\n"),
    );
    let img = to_qcow2(&ext, &s.s("in.qcow2"), &[]);
    let out = s.s("out.qcow2");
    let v = compact_checked(&["-f", "qcow2"], &img, &out);
    let note = v["regions"][0]["note"].as_str().unwrap();
    assert!(
        note.contains("kept whole") && note.contains(&format!("uses block {last}")),
        "{note}"
    );
    let raw = to_raw(&s, &out, "out.raw");
    assert!(diff_ranges(&ext, &raw, last * 4096, 4096).is_empty());
}

/// Descriptors e2fsck would not believe are not believed either, or the
/// inodes they hide would be zeroed where e2fsck still finds them:
/// * more unused than free inodes in a group (e2fsck resets `itable_unused`
///   and scans the whole table, finding the hidden inodes): that group's
///   table is scanned and kept;
/// * a bitmap pointer out of range (e2fsck reads the backup descriptors,
///   which still count the hidden inodes): the filesystem is kept whole.
#[test]
fn descriptors_e2fsck_distrusts_hide_nothing() {
    if !tools() {
        return;
    }
    for variant in ["unused_above_free", "bad_descriptor"] {
        let s = Scratch::new(&format!("compact-distrust-{variant}"));
        // 1 KiB blocks, 128 inodes per group, over stale bytes with lazy
        // inode-table init; 430 inodes fill groups 0-2.
        let tree = s.path("tree");
        for d in 0..20 {
            std::fs::create_dir_all(tree.join(format!("d{d}"))).unwrap();
            for f in 0..20 {
                let body = text_bytes(700 + f * 13, (d * 100 + f) as u64);
                std::fs::write(tree.join(format!("d{d}/f{f}.txt")), body).unwrap();
            }
        }
        let ext = s.s("v.ext");
        write_file(&ext, &random_bytes(64 << 20, 9));
        let t = tree.display().to_string();
        run_ok(
            &tool("mke2fs"),
            &[
                "-q",
                "-F",
                "-E",
                "nodiscard,lazy_itable_init=1",
                "-t",
                "ext4",
                "-b",
                "1024",
                "-N",
                "1024",
                "-d",
                &t,
                &ext,
                "64M",
            ],
        );
        let dump = run_ok(&tool("dumpe2fs"), &[&ext]).stdout_str();
        let group2 = dump.split("\nGroup 2:").nth(1).unwrap();
        assert!(group2.contains(" 0 free inodes"), "{group2}");
        // Hide inodes 375-384: no names, free in the bitmap, past the limit.
        let mut cmds = Vec::new();
        for ino in 375..=384u64 {
            let names =
                run_ok(&tool("debugfs"), &["-R", &format!("ncheck {ino}"), &ext]).stdout_str();
            for line in names.lines().skip(1) {
                if let Some(path) = line.split('\t').nth(1) {
                    cmds.push(format!("unlink {path}"));
                }
            }
            cmds.push(format!("freei <{ino}>"));
        }
        cmds.push("set_bg 2 itable_unused 10".into());
        cmds.push("set_bg 2 checksum calc".into());
        if variant == "bad_descriptor" {
            // The counts made to agree; a bitmap pointer made impossible.
            cmds.push("set_bg 2 free_inodes_count 10".into());
            cmds.push("set_bg 2 checksum calc".into());
            cmds.push("set_bg 7 inode_bitmap 99999999".into());
            cmds.push("set_bg 7 checksum calc".into());
        }
        debugfs_w(&ext, &(cmds.join("\n") + "\n"));
        let img = to_qcow2(&ext, &s.s("in.qcow2"), &[]);
        let out = s.s("out.qcow2");
        let v = compact_checked(&["-f", "qcow2"], &img, &out);
        let note = v["regions"][0]["note"].as_str().unwrap();
        if variant == "bad_descriptor" {
            assert!(note.contains("fail e2fsck's check"), "{note}");
        }
        // The hidden inodes' table bytes survive.
        let table: u64 = group2
            .lines()
            .find_map(|l| l.trim().strip_prefix("Inode table at "))
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let isz: u64 = dump
            .lines()
            .find_map(|l| l.strip_prefix("Inode size:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let at = table * 1024 + (374 - 256) * isz;
        let raw = to_raw(&s, &out, "out.raw");
        assert!(
            diff_ranges(&ext, &raw, at, 10 * isz).is_empty(),
            "{variant}: hidden inodes zeroed; {note}"
        );
    }
}
