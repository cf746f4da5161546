//! The compaction allocation readers against e2fsprogs and dosfstools:
//! `Ext::free_space` must equal the free blocks `dumpe2fs` lists on clean
//! filesystems, FAT free space must be what `mkfs.fat` left free, and
//! hostile geometry must keep everything instead of failing or looping.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use qvet_guestfs::ext::Ext;
use qvet_guestfs::fat::Fat;
use qvet_image::{ByteSource, FileSource};

fn tool(name: &str) -> Option<String> {
    ["/usr/sbin/", "/sbin/", "/usr/bin/"]
        .iter()
        .map(|d| format!("{d}{name}"))
        .find(|p| Path::new(p).exists())
}

fn open(p: &Path) -> Arc<dyn ByteSource> {
    Arc::new(FileSource::open(p).unwrap())
}

/// Free space as `dumpe2fs` shows it, as merged byte ranges, and the number
/// of unused inode-table blocks in it: the free blocks it lists, and in
/// each group the whole inode-table blocks past its last used inode (`N
/// unused inodes`; all of the table with INODE_UNINIT), which `e2fsck -E
/// discard` zeroes too.
fn dumpe2fs_free(img: &Path) -> (Vec<(u64, u64)>, u64) {
    let out = Command::new(tool("dumpe2fs").unwrap())
        .arg(img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let bs = field("Block size:");
    let per_block = bs / field("Inode size:");
    let ipg = field("Inodes per group:");
    let range = |r: &str| -> (u64, u64) {
        match r.split_once('-') {
            Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
            None => (r.parse().unwrap(), r.parse().unwrap()),
        }
    };
    let mut blocks: Vec<(u64, u64)> = Vec::new();
    let mut itable_blocks = 0;
    let groups = text
        .split("\nGroup ")
        .filter(|g| g.starts_with(|c: char| c.is_ascii_digit()));
    for group in groups {
        for l in group.lines() {
            if let Some(list) = l.strip_prefix("  Free blocks: ") {
                blocks.extend(list.split(", ").filter(|p| !p.is_empty()).map(range));
            }
        }
        let table = group
            .lines()
            .find_map(|l| l.trim().strip_prefix("Inode table at "))
            .unwrap();
        let (a, b) = range(table.split_whitespace().next().unwrap());
        let unused: u64 = group
            .lines()
            .find(|l| l.contains(" unused inodes"))
            .map_or(0, |l| {
                let last = l.rsplit(", ").next().unwrap();
                last.split_whitespace().next().unwrap().parse().unwrap()
            });
        let uninit = group.lines().next().unwrap().contains("INODE_UNINIT");
        let used = if uninit { 0 } else { ipg - unused };
        let first = a + used.div_ceil(per_block);
        if first <= b {
            blocks.push((first, b));
            itable_blocks += b - first + 1;
        }
    }
    blocks.sort_unstable();
    let mut v: Vec<(u64, u64)> = Vec::new();
    for (a, b) in blocks {
        let (o, n) = (a * bs, (b - a + 1) * bs);
        match v.last_mut() {
            Some((s, l)) if *s + *l == o => *l += n,
            _ => v.push((o, n)),
        }
    }
    (v, itable_blocks)
}

fn mkfs(dir: &Path, name: &str, args: &[&str], size: &str) -> Option<std::path::PathBuf> {
    let mk = tool("mke2fs")?;
    tool("dumpe2fs")?;
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("d")).unwrap();
    std::fs::write(tree.join("a.bin"), vec![7u8; 300_000]).unwrap();
    std::fs::write(tree.join("d/b.txt"), b"hello").unwrap();
    let img = dir.join(name);
    let ok = Command::new(mk)
        .args(["-q", "-F"])
        .args(args)
        .arg("-d")
        .arg(&tree)
        .arg(&img)
        .arg(size)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mke2fs {args:?}");
    Some(img)
}

#[test]
fn ext_free_space_equals_dumpe2fs_on_clean_filesystems() {
    let dir = tempfile::tempdir().unwrap();
    for (name, args, size) in [
        (
            "ext4",
            &["-t", "ext4", "-b", "4096", "-g", "4096"][..],
            "64M",
        ),
        ("ext4-1k", &["-t", "ext4", "-b", "1024"][..], "24M"),
        (
            "ext2",
            &["-t", "ext2", "-b", "4096", "-g", "4096"][..],
            "40M",
        ),
        (
            "uninit",
            &[
                "-t",
                "ext4",
                "-O",
                "^metadata_csum,uninit_bg",
                "-g",
                "2048",
                "-b",
                "4096",
            ][..],
            "40M",
        ),
        (
            "metabg",
            &[
                "-t",
                "ext4",
                "-O",
                "meta_bg,^resize_inode",
                "-b",
                "1024",
                "-g",
                "1024",
            ][..],
            "16M",
        ),
        (
            "sparse2",
            &[
                "-t",
                "ext4",
                "-O",
                "sparse_super2",
                "-b",
                "4096",
                "-g",
                "4096",
            ][..],
            "64M",
        ),
        // Without flex_bg, group 3's bitmap sits where sparse_super (but
        // not sparse_super2) would put a superblock backup.
        (
            "sparse2-noflex",
            &[
                "-t",
                "ext4",
                "-O",
                "sparse_super2,^flex_bg",
                "-b",
                "4096",
                "-g",
                "2048",
            ][..],
            "128M",
        ),
    ] {
        let Some(img) = mkfs(dir.path(), name, args, size) else {
            eprintln!("SKIP: no e2fsprogs");
            return;
        };
        let fs = Ext::open(open(&img)).unwrap();
        let free = fs.free_space().unwrap();
        assert_eq!(free.kept_whole, None, "{name}");
        assert!(
            free.kept_groups.is_empty(),
            "{name}: {:?}",
            free.kept_groups
        );
        let (want, itable_blocks) = dumpe2fs_free(&img);
        assert_eq!(free.free, want, "{name}");
        assert_eq!(free.itable_free_blocks, itable_blocks, "{name}");
    }
}

#[test]
fn hostile_ext_geometry_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let Some(img) = mkfs(
        dir.path(),
        "h",
        &["-t", "ext4", "-O", "^metadata_csum", "-b", "4096"],
        "16M",
    ) else {
        return;
    };
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    // s_inodes_count far beyond what the filesystem can hold.
    f.write_all_at(&u32::MAX.to_le_bytes(), 1024).unwrap();
    drop(f);
    let fs = Ext::open(open(&img)).unwrap();
    let free = fs.free_space().unwrap();
    let why = free.kept_whole.clone().unwrap_or_default();
    assert!(
        why.contains("cannot fit") && free.free.is_empty(),
        "{free:?}"
    );
}

#[test]
fn fat_free_space_covers_the_unused_data_region() {
    let dir = tempfile::tempdir().unwrap();
    let (Some(mk), Some(mcopy)) = (tool("mkfs.fat"), tool("mcopy")) else {
        eprintln!("SKIP: no dosfstools/mtools");
        return;
    };
    let img = dir.path().join("f.img");
    assert!(Command::new(mk)
        .args(["-F", "16", "-C"])
        .arg(&img)
        .arg("16384")
        .status()
        .unwrap()
        .success());
    let file = dir.path().join("x.bin");
    std::fs::write(&file, vec![1u8; 100_000]).unwrap();
    assert!(Command::new(mcopy)
        .arg("-i")
        .arg(&img)
        .arg(&file)
        .arg("::/X.BIN")
        .status()
        .unwrap()
        .success());
    let fs = Fat::open(open(&img)).unwrap();
    let free = fs.free_space().unwrap();
    assert_eq!(free.kept_whole, None);
    let cs = fs.cluster_size();
    let used = 100_000u64.div_ceil(cs);
    let total = u64::from(fs.cluster_count()) * cs;
    assert_eq!(free.free_bytes(), total - used * cs);
    // The file's clusters come first; everything after is one free run.
    assert_eq!(
        free.free,
        vec![(fs.data_offset() + used * cs, total - used * cs)]
    );
    // Marking the volume dirty keeps it whole.
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&[1], 37).unwrap();
    drop(f);
    let free = Fat::open(open(&img)).unwrap().free_space().unwrap();
    assert!(free.kept_whole.is_some());
}
