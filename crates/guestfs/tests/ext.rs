//! ext reader tests against images built at test time with `mke2fs -d`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use qvet_guestfs::ext::Ext;
use qvet_guestfs::{lookup, FileSystem, FileType, FsError, NodeId};
use qvet_image::{ByteSource, FileSource, MemSource};

const MKE2FS: &str = "/usr/sbin/mke2fs";
const DEBUGFS: &str = "/usr/sbin/debugfs";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn tmp(name: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ext-test-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// The source tree, built once.
fn source() -> &'static Path {
    static SRC: OnceLock<PathBuf> = OnceLock::new();
    SRC.get_or_init(|| {
        let d = tmp("src").join("tree");
        std::fs::create_dir_all(d.join("a/b/c")).unwrap();
        std::fs::write(d.join("a/b/c/deep.txt"), b"deep\n").unwrap();
        std::fs::write(d.join("empty"), b"").unwrap();
        std::fs::write(d.join("one"), b"1").unwrap();
        std::fs::write(d.join("f4095"), pattern(4095, 1)).unwrap();
        std::fs::write(d.join("f4097"), pattern(4097, 2)).unwrap();
        std::fs::write(d.join("big"), pattern((1 << 20) + 3, 3)).unwrap();
        std::fs::write(d.join("small.txt"), b"inline me\n").unwrap();
        std::fs::write(d.join("tiny2"), pattern(100, 4)).unwrap();
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::File::create(d.join("sparse")).unwrap();
            f.set_len(10 << 20).unwrap();
            f.seek(SeekFrom::Start((10 << 20) - 5)).unwrap();
            f.write_all(b"tail!").unwrap();
        }
        {
            // Past 12 + 256 + 256² blocks at 1 KiB: a triple-indirect block.
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::File::create(d.join("sparse80")).unwrap();
            f.set_len(80 << 20).unwrap();
            f.seek(SeekFrom::Start((80 << 20) - 3000)).unwrap();
            f.write_all(&pattern(3000, 9)).unwrap();
        }
        {
            // 20 data chunks between holes: more extents than fit in the
            // inode, so an extent tree of depth 1.
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::File::create(d.join("holey")).unwrap();
            for i in 0..20u8 {
                f.seek(SeekFrom::Start(u64::from(i) * 65536 + 100)).unwrap();
                f.write_all(&pattern(5000, i)).unwrap();
            }
        }
        std::os::unix::fs::symlink("a/b/c/deep.txt", d.join("fastlink")).unwrap();
        let long = format!("{}/target", "x".repeat(80));
        std::os::unix::fs::symlink(&long, d.join("slowlink")).unwrap();
        std::fs::write(
            d.join(std::ffi::OsStr::from_bytes(b"bad\xffname")),
            b"nonutf8",
        )
        .unwrap();
        let suid = d.join("suid");
        std::fs::write(&suid, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::create_dir(d.join("large")).unwrap();
        for i in 0..3000 {
            std::fs::write(d.join(format!("large/entry-{i:05}")), format!("{i}")).unwrap();
        }
        d
    })
}

fn mkfs(name: &str, args: &[&str]) -> PathBuf {
    let img = tmp(name).join("fs.img");
    let out = Command::new(MKE2FS)
        .arg("-q")
        .args(args)
        .args(["-E", "root_owner=1234:5678", "-d"])
        .arg(source())
        .arg(&img)
        .arg("64M")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mke2fs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    img
}

fn open_file(img: &Path) -> Ext {
    let src: Arc<dyn ByteSource> = Arc::new(FileSource::open(img).unwrap());
    Ext::open(src).unwrap()
}

fn read_all(fs: &dyn FileSystem, id: NodeId) -> Vec<u8> {
    let size = fs.metadata(id).unwrap().size;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536 + 17];
    loop {
        let n = fs.read(id, out.len() as u64, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out.len() as u64, size);
    out
}

/// Compares the image tree under `id` with the host directory `dir`.
fn compare(fs: &Ext, id: NodeId, dir: &Path, count: &mut usize) {
    let entries = fs.read_dir(id).unwrap();
    let mut got: BTreeMap<Vec<u8>, (NodeId, FileType)> = BTreeMap::new();
    for e in entries {
        if e.name == b"lost+found" && dir == source() {
            continue;
        }
        assert!(got.insert(e.name.clone(), (e.id, e.kind)).is_none());
    }
    let mut want: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    want.sort();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), want, "{dir:?}");
    for (name, (nid, kind)) in got {
        *count += 1;
        let host = dir.join(std::ffi::OsStr::from_bytes(&name));
        let hm = std::fs::symlink_metadata(&host).unwrap();
        let md = fs.metadata(nid).unwrap();
        assert_eq!(md.kind, kind, "{host:?}");
        assert_eq!(md.mode, hm.mode(), "{host:?} mode");
        assert_eq!(md.uid, hm.uid(), "{host:?}");
        assert_eq!(md.gid, hm.gid(), "{host:?}");
        assert_eq!(md.mtime, hm.mtime(), "{host:?} mtime");
        assert_eq!(Ext::inode_number(nid), nid.0);
        if hm.is_dir() {
            assert_eq!(kind, FileType::Dir);
            compare(fs, nid, &host, count);
        } else if hm.file_type().is_symlink() {
            assert_eq!(kind, FileType::Symlink);
            let t = std::fs::read_link(&host).unwrap();
            assert_eq!(fs.read_link(nid).unwrap(), t.as_os_str().as_bytes());
        } else {
            assert_eq!(kind, FileType::File);
            assert_eq!(md.size, hm.len(), "{host:?}");
            assert_eq!(read_all(fs, nid), std::fs::read(&host).unwrap(), "{host:?}");
        }
    }
}

fn check_image(args: &[&str], kind: &str) -> (PathBuf, Ext) {
    let img = mkfs(&args.join("_").replace(['^', ',', '-', ' '], ""), args);
    let fs = open_file(&img);
    assert_eq!(fs.kind(), kind);
    let mut count = 0;
    compare(&fs, fs.root(), source(), &mut count);
    assert!(count > 3000, "{count}");
    let root = fs.metadata(fs.root()).unwrap();
    assert_eq!((root.uid, root.gid), (1234, 5678));
    assert_eq!(root.kind, FileType::Dir);
    assert!(
        fs.checksum_errors().is_empty(),
        "{:?}",
        fs.checksum_errors()
    );
    // Paths through symlinks.
    let a = lookup(&fs, b"/fastlink", true).unwrap();
    assert_eq!(read_all(&fs, a), b"deep\n");
    let big = lookup(&fs, b"/big", false).unwrap();
    let mut buf = [0u8; 10];
    assert_eq!(fs.read(big, (1 << 20) - 2, &mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], &pattern((1 << 20) + 3, 3)[(1 << 20) - 2..]);
    compare_blocks(&img, &fs, "/big");
    compare_blocks(&img, &fs, "/sparse");
    compare_blocks(&img, &fs, "/sparse80");
    compare_blocks(&img, &fs, "/holey");
    (img, fs)
}

/// Indexes the directories (`e2fsck -fyD`) and compares again.
fn check_htree(args: &[&str], kind: &str) {
    let (img, fs) = check_image(args, kind);
    drop(fs);
    let st = Command::new("/usr/sbin/e2fsck")
        .arg("-fyD")
        .arg(&img)
        .output()
        .unwrap()
        .status;
    assert!(matches!(st.code(), Some(0 | 1)), "{st:?}");
    let htree = debugfs(&img, "htree /large");
    assert!(htree.contains("Root node dump"), "{htree}");
    let fs = open_file(&img);
    let mut count = 0;
    compare(&fs, fs.root(), source(), &mut count);
    assert!(count > 3000);
    assert!(
        fs.checksum_errors().is_empty(),
        "{:?}",
        fs.checksum_errors()
    );
}

#[test]
fn htree_ext4_1k_csum() {
    check_htree(
        &["-t", "ext4", "-O", "64bit,metadata_csum", "-b", "1024"],
        "ext4",
    );
}

#[test]
fn htree_ext3_4k() {
    check_htree(&["-t", "ext3", "-b", "4096"], "ext3");
}

fn debugfs(img: &Path, req: &str) -> String {
    let out = Command::new(DEBUGFS)
        .arg("-R")
        .arg(req)
        .arg(img)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every data block debugfs names belongs to the file and is in use; the
/// rest of what `blocks_of` returns is map metadata (a few blocks).
fn compare_blocks(img: &Path, fs: &Ext, path: &str) {
    let id = lookup(fs, path.as_bytes(), false).unwrap();
    let ours: Vec<u64> = fs
        .blocks_of(id)
        .unwrap()
        .iter()
        .flat_map(|&(s, n)| s..s + n)
        .collect();
    let theirs: Vec<u64> = debugfs(img, &format!("blocks {path}"))
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    assert!(!theirs.is_empty());
    let set: std::collections::HashSet<u64> = ours.iter().copied().collect();
    for b in &theirs {
        assert!(set.contains(b), "{path}: block {b} missing");
    }
    assert!(
        ours.len() >= theirs.len() && ours.len() - theirs.len() <= 8,
        "{path}"
    );
    for &b in ours.iter().take(50) {
        assert!(fs.block_in_use(b).unwrap(), "{path}: block {b} free");
    }
}

#[test]
fn zeros_are_not_ext() {
    let src = Arc::new(MemSource(vec![0u8; 4096]));
    assert!(matches!(Ext::open(src), Err(FsError::NotThisFs(_))));
}

#[test]
fn ext2_1k_block_maps() {
    check_image(&["-t", "ext2", "-b", "1024"], "ext2");
}

#[test]
fn ext2_without_filetype() {
    check_image(&["-t", "ext2", "-O", "^filetype", "-b", "4096"], "ext2");
}

#[test]
fn ext3_4k() {
    check_image(&["-t", "ext3", "-b", "4096"], "ext3");
}

#[test]
fn ext4_default_with_facts() {
    let (img, fs) = check_image(&["-t", "ext4", "-L", "rootfs", "-b", "4096"], "ext4");
    let f = fs.superblock_facts();
    assert_eq!(f.label, "rootfs");
    assert_eq!(f.block_size, 4096);
    assert_eq!(f.creator_os, "Linux");
    assert_eq!(f.state, "clean");
    assert_eq!(f.checksum_ok, Some(true));
    assert!(f.features_incompat.iter().any(|x| x == "extent"));
    assert!(f.features_ro_compat.iter().any(|x| x == "metadata_csum"));
    let stats = debugfs(&img, "stats");
    assert!(
        stats.contains(&format!("Filesystem UUID:          {}", f.uuid)),
        "{stats}"
    );
    assert!(stats.contains(&format!("Block count:              {}", f.blocks_count)));
    assert!(stats.contains(&format!("Free blocks:              {}", f.free_blocks)));
    assert!(stats.contains(&format!("Free inodes:              {}", f.free_inodes)));
    assert!(f.creation_time.is_some());
    // A block past the end is an error; block 0 region is in use.
    assert!(fs.block_in_use(f.blocks_count).is_err());
    assert!(fs.block_in_use(0).unwrap());
}

#[test]
fn ext4_64bit_csum_1k() {
    check_image(
        &["-t", "ext4", "-O", "64bit,metadata_csum", "-b", "1024"],
        "ext4",
    );
}

#[test]
fn ext4_no_csum_no_64bit() {
    check_image(
        &[
            "-t",
            "ext4",
            "-O",
            "^metadata_csum,^64bit,^has_journal",
            "-b",
            "4096",
        ],
        "ext4",
    );
}

#[test]
fn ext4_inline_data() {
    let (_img, fs) = check_image(&["-t", "ext4", "-O", "inline_data", "-b", "4096"], "ext4");
    let small = lookup(&fs, b"/small.txt", false).unwrap();
    assert!(fs.blocks_of(small).unwrap().is_empty());
}

#[test]
fn ext4_meta_bg() {
    check_image(
        &["-t", "ext4", "-O", "meta_bg,^resize_inode", "-b", "1024"],
        "ext4",
    );
}

#[test]
fn ext4_uninitialized_extents_read_as_zeros() {
    let img = mkfs("uninit", &["-t", "ext4", "-b", "4096"]);
    debugfs_w(&img, "fallocate /empty 0 19");
    debugfs_w(&img, "sif /empty size 81920");
    assert!(debugfs(&img, "stat /empty").contains("[u]"));
    let fs = open_file(&img);
    let id = lookup(&fs, b"/empty", false).unwrap();
    let data = read_all(&fs, id);
    assert_eq!(data.len(), 81920);
    assert!(data.iter().all(|&b| b == 0));
    let runs = fs.blocks_of(id).unwrap();
    assert_eq!(runs.iter().map(|r| r.1).sum::<u64>(), 20);
    assert!(
        fs.checksum_errors().is_empty(),
        "{:?}",
        fs.checksum_errors()
    );
}

fn debugfs_w(img: &Path, req: &str) {
    let out = Command::new(DEBUGFS)
        .arg("-w")
        .arg("-R")
        .arg(req)
        .arg(img)
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn ext2_revision_0() {
    check_image(&["-t", "ext2", "-r", "0", "-b", "1024"], "ext2");
}

#[test]
fn ext4_bigalloc() {
    check_image(
        &["-t", "ext4", "-O", "bigalloc", "-C", "16384", "-b", "4096"],
        "ext4",
    );
}

#[test]
fn times_past_2038_use_the_epoch_bits() {
    let img = mkfs("epoch", &["-t", "ext4", "-b", "4096"]);
    debugfs_w(&img, "sif /one mtime 21000101000000");
    let fs = open_file(&img);
    let id = lookup(&fs, b"/one", false).unwrap();
    assert_eq!(fs.metadata(id).unwrap().mtime, 4_102_444_800);
    assert!(
        fs.checksum_errors().is_empty(),
        "{:?}",
        fs.checksum_errors()
    );
    // A bit flipped in the inode body (not its checksum) is a finding.
    drop(fs);
    let mut bytes = std::fs::read(&img).unwrap();
    let out = debugfs(&img, "imap /one");
    let block: usize = out
        .split("located at block ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let off = usize::from_str_radix(out.split("offset 0x").nth(1).unwrap().trim(), 16).unwrap();
    bytes[block * 4096 + off + 8] ^= 1; // atime
    let fs = open_mem(bytes).unwrap();
    let id = lookup(&fs, b"/one", false).unwrap();
    assert_eq!(read_all(&fs, id), b"1");
    let errs = fs.checksum_errors();
    assert!(
        errs.iter()
            .any(|e| e.contains(&format!("inode {} checksum", id.0))),
        "{errs:?}"
    );
}

// ---- hostile images -------------------------------------------------------

fn base_image() -> &'static (PathBuf, Vec<u8>) {
    static IMG: OnceLock<(PathBuf, Vec<u8>)> = OnceLock::new();
    IMG.get_or_init(|| {
        let img = mkfs("hostile", &["-t", "ext4", "-b", "4096"]);
        let bytes = std::fs::read(&img).unwrap();
        (img, bytes)
    })
}

/// Runs `f` on a thread; fails when it panics or takes over 20 s.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("hung or panicked")
}

fn open_mem(bytes: Vec<u8>) -> Result<Ext, FsError> {
    Ext::open(Arc::new(MemSource(bytes)))
}

fn patch_sb(off: usize, val: &[u8]) -> Result<Ext, FsError> {
    let mut b = base_image().1.clone();
    b[1024 + off..1024 + off + val.len()].copy_from_slice(val);
    bounded(move || open_mem(b))
}

#[test]
fn hostile_superblocks() {
    assert!(matches!(
        patch_sb(32, &0u32.to_le_bytes()),
        Err(FsError::Corrupt(_))
    ));
    assert!(matches!(
        patch_sb(88, &0x8000u16.to_le_bytes()),
        Err(FsError::Corrupt(_))
    ));
    assert!(matches!(
        patch_sb(24, &20u32.to_le_bytes()),
        Err(FsError::Corrupt(_))
    ));
    assert!(matches!(
        patch_sb(40, &0u32.to_le_bytes()),
        Err(FsError::Corrupt(_))
    ));
    // Unknown INCOMPAT feature.
    let incompat = u32::from_le_bytes(base_image().1[1024 + 96..1024 + 100].try_into().unwrap());
    match patch_sb(96, &(incompat | 0x1000).to_le_bytes()) {
        Err(FsError::Unsupported(m)) => assert!(m.contains("dirdata"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // blocks_count * block_size beyond u64 (64bit high word).
    assert!(matches!(
        patch_sb(336, &u32::MAX.to_le_bytes()),
        Err(FsError::Corrupt(_))
    ));
    assert!(matches!(
        patch_sb(254, &3u16.to_le_bytes()),
        Err(FsError::Corrupt(_))
    ));
    // A flipped label byte: still opens, checksum finding.
    let fs = patch_sb(120, b"X").unwrap();
    assert!(fs
        .checksum_errors()
        .iter()
        .any(|e| e.contains("superblock")));
    assert_eq!(fs.superblock_facts().checksum_ok, Some(false));
}

/// Byte offset of an inode in the image, from `debugfs imap`.
fn inode_offset(path: &str) -> usize {
    let out = debugfs(&base_image().0, &format!("imap {path}"));
    // "Inode 12 is part of block group 0\n\tlocated at block 1059, offset 0x0b00"
    let block: usize = out
        .split("located at block ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let off = out.split("offset 0x").nth(1).unwrap().trim();
    block * 4096 + usize::from_str_radix(off, 16).unwrap()
}

fn with_inode_patch(path: &'static str, patch: impl FnOnce(&mut [u8])) -> Ext {
    let mut b = base_image().1.clone();
    let off = inode_offset(path);
    patch(&mut b[off..off + 256]);
    open_mem(b).unwrap()
}

#[test]
fn hostile_extent_headers() {
    // Depth 6.
    let fs = with_inode_patch("/big", |i| i[46..48].copy_from_slice(&6u16.to_le_bytes()));
    let r = bounded(move || {
        let id = lookup(&fs, b"/big", false).unwrap();
        let mut buf = [0u8; 16];
        (
            fs.read(id, 0, &mut buf).is_err(),
            fs.blocks_of(id).is_err(),
            fs.checksum_errors(),
        )
    });
    assert!(r.0 && r.1);
    assert!(r.2.iter().any(|e| e.contains("inode")), "{:?}", r.2);
    // Entries above max.
    let fs = with_inode_patch("/big", |i| i[42..44].copy_from_slice(&9u16.to_le_bytes()));
    let r = bounded(move || {
        let id = lookup(&fs, b"/big", false).unwrap();
        let mut buf = [0u8; 16];
        (fs.read(id, 0, &mut buf).is_err(), fs.blocks_of(id).is_err())
    });
    assert!(r.0 && r.1);
    // Extent pointing past the end of the filesystem.
    let fs = with_inode_patch("/big", |i| {
        i[40 + 20..40 + 24].copy_from_slice(&u32::MAX.to_le_bytes())
    });
    let r = bounded(move || {
        let id = lookup(&fs, b"/big", false).unwrap();
        let mut buf = [0u8; 16];
        fs.read(id, 0, &mut buf).is_err()
    });
    assert!(r);
    // Huge size on a directory: bounded, no allocation from the size.
    let fs = with_inode_patch("/a", |i| {
        i[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        i[108..112].copy_from_slice(&u32::MAX.to_le_bytes());
    });
    let r = bounded(move || {
        let id = lookup(&fs, b"/a", false).unwrap();
        fs.read_dir(id).map(|v| v.len())
    });
    assert_eq!(r.unwrap(), 1);
}

#[test]
fn hostile_directory_rec_len_zero() {
    let (_, bytes) = base_image();
    let fs = open_mem(bytes.clone()).unwrap();
    let a = lookup(&fs, b"/a", false).unwrap();
    let runs = fs.blocks_of(a).unwrap();
    let block = runs[0].0 as usize;
    let mut b = bytes.clone();
    // First entry is "."; zero its rec_len.
    b[block * 4096 + 4..block * 4096 + 6].copy_from_slice(&0u16.to_le_bytes());
    let r = bounded(move || {
        let fs = open_mem(b).unwrap();
        let id = lookup(&fs, b"/a", false).unwrap();
        (fs.read_dir(id).is_err(), fs.checksum_errors())
    });
    assert!(r.0);
    assert!(r.1.iter().any(|e| e.contains("directory")), "{:?}", r.1);
}

#[test]
fn truncated_and_garbage_images_do_not_panic() {
    let (_, bytes) = base_image();
    for cut in [1500usize, 4096, 8192, 70_000, 1 << 20] {
        let b = bytes[..cut].to_vec();
        bounded(move || {
            if let Ok(fs) = open_mem(b) {
                let _ = fs.read_dir(fs.root());
            }
        });
    }
    // Random-ish bytes over the metadata area (after the superblock).
    for seed in 0..8u8 {
        let mut b = bytes.clone();
        let noise = pattern(64 * 1024, seed);
        b[8192..8192 + noise.len()].copy_from_slice(&noise);
        bounded(move || {
            if let Ok(fs) = open_mem(b) {
                if let Ok(entries) = fs.read_dir(fs.root()) {
                    for e in entries.iter().take(50) {
                        let mut buf = [0u8; 4096];
                        let _ = fs.read(e.id, 0, &mut buf);
                        let _ = fs.read_dir(e.id);
                        let _ = fs.blocks_of(e.id);
                    }
                }
            }
        });
    }
}

/// Walks the whole tree, reading every file, bounded in nodes.
fn walk_everything(fs: &Ext) {
    let mut stack = vec![fs.root()];
    let mut seen = std::collections::HashSet::new();
    let mut buf = vec![0u8; 1 << 16];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) || seen.len() > 5000 {
            continue;
        }
        let _ = fs.metadata(id);
        let _ = fs.blocks_of(id);
        let _ = fs.read_link(id);
        let _ = fs.read(id, 0, &mut buf);
        let _ = fs.read(id, 1 << 20, &mut buf);
        if let Ok(entries) = fs.read_dir(id) {
            stack.extend(entries.iter().map(|e| e.id));
        }
    }
    let _ = fs.superblock_facts();
    for b in [0u64, 1, 100, 5000, 1 << 40] {
        let _ = fs.block_in_use(b);
    }
}

#[test]
fn random_metadata_mutations_do_not_panic_or_hang() {
    let (_, bytes) = base_image();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut cases = Vec::new();
    for _ in 0..40 {
        let mut b = bytes.clone();
        for _ in 0..24 {
            let at = 1024 + (next() % (3 << 20)) as usize;
            b[at] = next() as u8;
        }
        cases.push(b);
    }
    for b in cases {
        bounded(move || {
            if let Ok(fs) = open_mem(b) {
                walk_everything(&fs);
            }
        });
    }
    // The clean image walks too.
    let fs = open_mem(bytes.clone()).unwrap();
    walk_everything(&fs);
}

#[test]
fn hostile_self_referencing_extent_block() {
    let (img, bytes) = base_image();
    let stat = debugfs(img, "stat /holey");
    let etb: usize = stat
        .split("(ETB0):")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut b = bytes.clone();
    let at = etb * 4096;
    // Make the leaf an index node whose first entry points to itself.
    b[at + 6..at + 8].copy_from_slice(&1u16.to_le_bytes());
    b[at + 16..at + 20].copy_from_slice(&(etb as u32).to_le_bytes());
    b[at + 20..at + 22].copy_from_slice(&0u16.to_le_bytes());
    let r = bounded(move || {
        let fs = open_mem(b).unwrap();
        let id = lookup(&fs, b"/holey", false).unwrap();
        let mut buf = [0u8; 4096];
        (
            fs.read(id, 0, &mut buf).is_err(),
            fs.blocks_of(id).is_err(),
            fs.checksum_errors(),
        )
    });
    assert!(r.0 && r.1);
    assert!(r.2.iter().any(|e| e.contains("extent block")), "{:?}", r.2);
}

#[test]
fn superblock_forensic_fields() {
    let img = mkfs("facts", &["-t", "ext4", "-L", "appliance", "-b", "4096"]);
    for cmd in [
        "ssv last_mounted /mnt/sysroot",
        "ssv mnt_count 7",
        "ssv max_mnt_count 20",
        "ssv mtime 20240102030405",
        "ssv state 3",
        "ssv errors 2",
        "ssv creator_os 3",
    ] {
        debugfs_w(&img, cmd);
    }
    let fs = open_file(&img);
    let f = fs.superblock_facts();
    assert_eq!(f.last_mounted, "/mnt/sysroot");
    assert_eq!(f.mount_count, 7);
    assert_eq!(f.max_mount_count, 20);
    assert_eq!(f.last_mount_time, Some(1_704_164_645));
    assert_eq!(f.state, "clean, errors");
    assert_eq!(f.errors_behaviour, "remount-ro");
    assert_eq!(f.creator_os, "FreeBSD");
    assert_eq!(f.label, "appliance");
    assert_eq!(f.checksum_ok, Some(true));
    assert!(
        fs.checksum_errors().is_empty(),
        "{:?}",
        fs.checksum_errors()
    );
    let dump = Command::new("/usr/sbin/dumpe2fs")
        .arg("-h")
        .arg(&img)
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains(&format!("Filesystem UUID:          {}", f.uuid)));
    assert!(dump.contains(&format!("Inode count:              {}", f.inodes_count)));
    assert!(
        dump.contains(&format!("Inode size:\t          {}", f.inode_size))
            || dump.contains(&format!("Inode size:               {}", f.inode_size)),
        "{dump}"
    );
}
