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

/// `mke2fs -q ARGS -d TREE` into a fresh `SIZE` image named after `name`.
fn mke2fs_d(name: &str, args: &[&str], tree: &Path, size: &str) -> PathBuf {
    let img = tmp(name).join("fs.img");
    let out = Command::new(MKE2FS)
        .arg("-q")
        .args(args)
        .arg("-d")
        .arg(tree)
        .arg(&img)
        .arg(size)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mke2fs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    img
}

fn mkfs(name: &str, args: &[&str]) -> PathBuf {
    let args = [args, &["-E", "root_owner=1234:5678"]].concat();
    mke2fs_d(name, &args, source(), "64M")
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
    assert!(fs.findings().is_empty(), "{:?}", fs.findings());
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
    assert!(fs.findings().is_empty(), "{:?}", fs.findings());
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
    assert!(fs.findings().is_empty(), "{:?}", fs.findings());
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
    assert!(fs.findings().is_empty(), "{:?}", fs.findings());
    // A bit flipped in the inode body (not its checksum) is a finding.
    drop(fs);
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[inode_at(&img, "/one", 4096) + 8] ^= 1; // atime
    let fs = open_mem(bytes).unwrap();
    let id = lookup(&fs, b"/one", false).unwrap();
    assert_eq!(read_all(&fs, id), b"1");
    let errs = fs.checksum_errors();
    assert!(
        errs.iter()
            .any(|e| e.contains(&format!("inode {} checksum", id.0))),
        "{errs:?}"
    );
    assert_eq!(errs, fs.findings(), "only checksum findings here");
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
    assert!(fs.findings().iter().any(|e| e.contains("superblock")));
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
            fs.findings(),
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
        (fs.read_dir(id).is_err(), fs.findings())
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
            fs.findings(),
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
    assert!(fs.findings().is_empty(), "{:?}", fs.findings());
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

// ---- journal recovery ------------------------------------------------------
//
// Transactions are written with debugfs's journal commands (`jo`, `jw`,
// `jc`), which leave the journal unreplayed (`needs_recovery`). The oracle
// is `e2fsck -fy` on a copy, which replays it: qvet's view of the
// unreplayed image must equal the recovered copy.

const E2FSCK: &str = "/usr/sbin/e2fsck";
const DUMPE2FS: &str = "/usr/sbin/dumpe2fs";

/// A small tree for journal tests: /data.bin (8 blocks of 4 KiB), /keep.txt,
/// /dir/inner.bin.
fn journal_source() -> &'static Path {
    static SRC: OnceLock<PathBuf> = OnceLock::new();
    SRC.get_or_init(|| {
        let d = tmp("jsrc").join("tree");
        std::fs::create_dir_all(d.join("dir")).unwrap();
        std::fs::write(d.join("data.bin"), pattern(8 * 4096, 21)).unwrap();
        std::fs::write(d.join("keep.txt"), b"unchanged\n").unwrap();
        std::fs::write(d.join("dir/inner.bin"), pattern(3 * 4096 + 5, 22)).unwrap();
        d
    })
}

fn mkfs_small(name: &str, args: &[&str]) -> PathBuf {
    mke2fs_d(name, args, journal_source(), "16M")
}

/// Runs debugfs commands (one per line) read-write on `img`.
fn debugfs_script(img: &Path, script: &str) {
    let cmds = img.with_extension("cmds");
    std::fs::write(&cmds, script).unwrap();
    let out = Command::new(DEBUGFS)
        .arg("-w")
        .arg("-f")
        .arg(&cmds)
        .arg(img)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("journal_") && !err.contains("error") && !err.contains("invalid"),
        "{script}: {err}"
    );
}

fn dumpe2fs_h(img: &Path) -> String {
    let out = Command::new(DUMPE2FS).arg("-h").arg(img).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy of `img` recovered by e2fsck (the oracle), and e2fsck's output.
fn recovered(img: &Path) -> (PathBuf, String) {
    let fixed = img.with_extension("recovered");
    std::fs::copy(img, &fixed).unwrap();
    let out = Command::new(E2FSCK)
        .arg("-fy")
        .arg(&fixed)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(matches!(out.status.code(), Some(0 | 1)), "{text}");
    assert!(!dumpe2fs_h(&fixed).contains("needs_recovery"));
    (fixed, text)
}

/// A file's content as debugfs dumps it.
fn debugfs_dump(img: &Path, path: &str) -> Vec<u8> {
    let out = img.with_extension(format!("dump{}", COUNTER.fetch_add(1, Ordering::SeqCst)));
    debugfs(img, &format!("dump {path} {}", out.display()));
    std::fs::read(&out).unwrap()
}

fn bmap(img: &Path, spec: &str) -> u64 {
    debugfs(img, &format!("bmap {spec}"))
        .trim()
        .parse()
        .unwrap()
}

fn read_path(fs: &Ext, path: &str) -> Vec<u8> {
    let id = lookup(fs, path.as_bytes(), true).unwrap();
    read_all(fs, id)
}

fn disk_block(img: &Path, block: u64, bs: u64) -> Vec<u8> {
    let b = std::fs::read(img).unwrap();
    b[(block * bs) as usize..((block + 1) * bs) as usize].to_vec()
}

/// Names, kinds, sizes, modes and contents of every node under the root.
fn tree(fs: &Ext) -> BTreeMap<Vec<u8>, (FileType, u64, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(Vec::new(), fs.root())];
    while let Some((path, id)) = stack.pop() {
        for e in fs.read_dir(id).unwrap() {
            let mut p = path.clone();
            p.push(b'/');
            p.extend_from_slice(&e.name);
            let md = fs.metadata(e.id).unwrap();
            let data = match md.kind {
                FileType::File => read_all(fs, e.id),
                FileType::Symlink => fs.read_link(e.id).unwrap(),
                _ => Vec::new(),
            };
            if md.kind == FileType::Dir {
                stack.push((p.clone(), e.id));
            }
            out.insert(p, (md.kind, md.size, md.mode, data));
        }
    }
    out
}

/// Commit blocks `logdump` finds (transactions in the log).
fn logdump_commits(img: &Path) -> usize {
    debugfs(img, "logdump").matches("(commit block)").count()
}

/// Journals a new content for one block of /data.bin and checks qvet's view
/// of the unreplayed image against e2fsck's recovery.
fn journal_one_block(mkfs_args: &[&str], jo: &str, features: &[&str]) {
    let img = mkfs_small("jone", mkfs_args);
    let before = open_file(&img);
    let bs = before.block_size();
    assert_eq!(
        before.journal_facts().map(|j| j.needs_recovery),
        Some(false)
    );
    drop(before);
    let block = bmap(&img, "/data.bin 1");
    let new = img.with_extension("new");
    std::fs::write(&new, pattern(bs as usize, 99)).unwrap();
    debugfs_script(
        &img,
        &format!("jo {jo}\njw -b {block} {}\njc\n", new.display()),
    );
    let dump = dumpe2fs_h(&img);
    assert!(dump.contains("needs_recovery"), "{dump}");
    for f in features {
        assert!(dump.contains(f), "{f}: {dump}");
    }
    let (fixed, _) = recovered(&img);
    let want = debugfs_dump(&fixed, "/data.bin");
    let old = std::fs::read(journal_source().join("data.bin")).unwrap();
    assert_ne!(want, old);

    let fs = open_file(&img);
    assert_eq!(read_path(&fs, "/data.bin"), want);
    // The disk still holds the old block: the overlay did the work.
    assert_eq!(
        disk_block(&img, block, bs),
        old[bs as usize..2 * bs as usize]
    );
    let j = fs.journal_facts().unwrap();
    assert!(j.needs_recovery && j.applied, "{j:?}");
    assert!(j.problems.is_empty(), "{j:?}");
    assert_eq!(j.transactions as usize, logdump_commits(&img), "{j:?}");
    assert!(j.blocks_replayed >= 1 && j.blocks_overlaid >= 1, "{j:?}");
    assert_eq!(fs.superblock_facts().journal, Some(j));
    assert!(fs.findings().is_empty(), "{:?}", fs.findings());
    // The replayed block's bytes are in the journal, not at the block.
    let id = lookup(&fs, b"/data.bin", false).unwrap();
    let ranges = fs.byte_ranges(id).unwrap();
    assert!(!ranges
        .iter()
        .any(|&(o, l)| o <= block * bs && block * bs < o + l));
    assert_eq!(ranges.iter().map(|r| r.1).sum::<u64>(), 8 * 4096);
    // The whole tree is the recovered one.
    assert_eq!(tree(&fs), tree(&open_file(&fixed)));
}

#[test]
fn journal_ext4_64bit_no_checksum() {
    journal_one_block(&["-t", "ext4", "-b", "4096"], "", &["journal_64bit"]);
}

#[test]
fn journal_ext4_32bit_tags() {
    journal_one_block(&["-t", "ext4", "-O", "^64bit", "-b", "4096"], "", &[]);
}

#[test]
fn journal_csum_v3_64bit() {
    journal_one_block(
        &["-t", "ext4", "-b", "4096"],
        "-c",
        &["journal_64bit", "journal_checksum_v3"],
    );
}

#[test]
fn journal_csum_v3_32bit_1k() {
    journal_one_block(
        &["-t", "ext4", "-O", "^64bit", "-b", "1024"],
        "-c",
        &["journal_checksum_v3"],
    );
}

#[test]
fn journal_csum_v2_tags() {
    journal_one_block(
        &["-t", "ext4", "-O", "^64bit", "-b", "1024"],
        "-c -v 2",
        &["journal_checksum_v2"],
    );
    journal_one_block(
        &["-t", "ext4", "-b", "4096"],
        "-c -v 2",
        &["journal_64bit", "journal_checksum_v2"],
    );
}

#[test]
fn journal_ext3_indirect_journal_inode() {
    journal_one_block(&["-t", "ext3", "-b", "4096"], "", &[]);
}

/// Several transactions: later copies win; a revoke cancels earlier copies
/// only; an uncommitted transaction is ignored.
#[test]
fn journal_transactions_revoke_and_uncommitted() {
    let img = mkfs_small("jmulti", &["-t", "ext4", "-b", "4096"]);
    let b1 = bmap(&img, "/data.bin 0");
    let b2 = bmap(&img, "/data.bin 5");
    let b3 = bmap(&img, "/dir/inner.bin 2");
    let b4 = bmap(&img, "/data.bin 7");
    let f = |n: u8| {
        let p = img.with_extension(format!("c{n}"));
        std::fs::write(&p, pattern(4096, n)).unwrap();
        p.display().to_string()
    };
    let (c1, c2, c3, c4, c5) = (f(1), f(2), f(3), f(4), f(5));
    let script = format!(
        "jo -c\n\
         jw -b {b1} {c1}\n\
         jw -b {b1} {c2}\n\
         jw -b {b2} {c3}\n\
         jw -r {b2} /dev/null\n\
         jw -b {b3} {c4}\n\
         jw -r {b3} /dev/null\n\
         jw -b {b3} {c5}\n\
         jw -b {b4} -c {c1}\n\
         jc\n"
    );
    debugfs_script(&img, &script);
    assert!(dumpe2fs_h(&img).contains("needs_recovery"));
    let (fixed, _) = recovered(&img);
    let fs = open_file(&img);
    let want = debugfs_dump(&fixed, "/data.bin");
    assert_eq!(read_path(&fs, "/data.bin"), want);
    assert_eq!(
        read_path(&fs, "/dir/inner.bin"),
        debugfs_dump(&fixed, "/dir/inner.bin")
    );
    // What e2fsck did, spelled out.
    assert_eq!(&want[..4096], &pattern(4096, 2)[..]);
    assert_eq!(
        &want[5 * 4096..6 * 4096],
        &journal_source_block("data.bin", 5)[..]
    );
    assert_eq!(&want[7 * 4096..], &journal_source_block("data.bin", 7)[..]);
    let inner = read_path(&fs, "/dir/inner.bin");
    assert_eq!(&inner[2 * 4096..3 * 4096], &pattern(4096, 5)[..]);
    assert_eq!(tree(&fs), tree(&open_file(&fixed)));
    let j = fs.journal_facts().unwrap();
    assert_eq!(j.transactions, 7, "{j:?}");
    assert_eq!(j.last_sequence, Some(7), "{j:?}");
    assert_eq!(j.revoke_records, 2, "{j:?}");
    assert_eq!(j.blocks_revoked, 2, "{j:?}");
    assert_eq!(j.blocks_replayed, 3, "{j:?}");
    assert_eq!(j.blocks_overlaid, 2, "{j:?}");
    // The uncommitted eighth transaction is reported.
    assert!(
        j.problems.len() == 1 && j.problems[0].contains("transaction 8 has no valid commit"),
        "{j:?}"
    );
}

fn journal_source_block(name: &str, n: usize) -> Vec<u8> {
    std::fs::read(journal_source().join(name)).unwrap()[n * 4096..(n + 1) * 4096].to_vec()
}

/// A block whose first bytes are the journal magic is escaped in the log
/// and restored on replay.
#[test]
fn journal_escaped_block() {
    for jo in ["", "-c"] {
        let img = mkfs_small("jesc", &["-t", "ext4", "-b", "4096"]);
        let block = bmap(&img, "/data.bin 3");
        let mut data = pattern(4096, 7);
        data[..4].copy_from_slice(&0xC03B_3998u32.to_be_bytes());
        let p = img.with_extension("esc");
        std::fs::write(&p, &data).unwrap();
        debugfs_script(
            &img,
            &format!("jo {jo}\njw -b {block} {}\njc\n", p.display()),
        );
        assert!(debugfs(&img, "logdump").contains("Found expected sequence 1, type 2"));
        assert!(debugfs(&img, "logdump -a").contains("(flags 0x9)"));
        let (fixed, _) = recovered(&img);
        let fs = open_file(&img);
        let got = read_path(&fs, "/data.bin");
        assert_eq!(got, debugfs_dump(&fixed, "/data.bin"));
        assert_eq!(&got[3 * 4096..4 * 4096], &data[..]);
        assert!(fs.journal_facts().unwrap().problems.is_empty());
    }
}

/// Blocks of a second image whose content differs from the first, as
/// `(block, bytes)`.
fn differing_blocks(a: &Path, b: &Path, bs: usize) -> Vec<(usize, Vec<u8>)> {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    x.chunks(bs)
        .zip(y.chunks(bs))
        .enumerate()
        .filter(|(_, (p, q))| p != q)
        .map(|(i, (_, q))| (i, q.to_vec()))
        .collect()
}

/// Metadata replay: every block a debugfs session changed (superblock,
/// group descriptors, bitmaps, inode table, directories, data) is journaled
/// into the unchanged image; qvet must read it as the changed one.
#[test]
fn journal_replays_metadata_and_superblock() {
    for bs in [4096usize, 1024] {
        let bs_arg = bs.to_string();
        let a = mkfs_small("jmeta", &["-t", "ext4", "-L", "before", "-b", &bs_arg]);
        let b = a.with_extension("changed");
        std::fs::copy(&a, &b).unwrap();
        let host = a.with_extension("host");
        std::fs::write(&host, pattern(10_000, 33)).unwrap();
        debugfs_script(
            &b,
            &format!(
                "write {} /added.bin\nmkdir /newdir\nrm /keep.txt\nssv volume_name after\n",
                host.display()
            ),
        );
        let changed = differing_blocks(&a, &b, bs);
        assert!(
            changed.len() > 4 && changed.len() < 100,
            "{}",
            changed.len()
        );
        // Superblock block (0 with 4 KiB blocks, 1 with 1 KiB) is among them.
        assert!(changed.iter().any(|(i, _)| *i == 1024 / bs));
        let mut script = String::from("jo -c\n");
        for (i, bytes) in &changed {
            let p = a.with_extension(format!("blk{i}"));
            std::fs::write(&p, bytes).unwrap();
            script.push_str(&format!("jw -b {i} {}\n", p.display()));
        }
        script.push_str("jc\n");
        debugfs_script(&a, &script);
        assert!(dumpe2fs_h(&a).contains("needs_recovery"));
        let fs = open_file(&a);
        let want = open_file(&b);
        assert_eq!(fs.superblock_facts().label, "after");
        assert_eq!(
            fs.superblock_facts().free_blocks,
            want.superblock_facts().free_blocks
        );
        assert_eq!(tree(&fs), tree(&want));
        assert_eq!(read_path(&fs, "/added.bin"), pattern(10_000, 33));
        assert!(matches!(
            lookup(&fs, b"/keep.txt", false),
            Err(FsError::NotFound(_))
        ));
        assert!(fs.findings().is_empty(), "{:?}", fs.findings());
        let j = fs.journal_facts().unwrap();
        assert_eq!(j.blocks_overlaid as usize, changed.len());
        // e2fsck's recovery agrees.
        let (fixed, _) = recovered(&a);
        assert_eq!(tree(&fs), tree(&open_file(&fixed)));
        assert_eq!(open_file(&fixed).superblock_facts().label, "after");
        // The on-disk image alone still reads as before.
        assert!(dumpe2fs_h(&a).contains("Filesystem volume name:   before"));
    }
}

/// (journal length, first physical block) of a contiguous journal inode.
fn journal_extent(img: &Path) -> (u64, u64) {
    let dump = dumpe2fs_h(img);
    let len: u64 = dump
        .lines()
        .find_map(|l| l.strip_prefix("Total journal blocks:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let first = bmap(img, "<8> 0");
    assert_eq!(bmap(img, &format!("<8> {}", len - 1)), first + len - 1);
    (len, first)
}

/// Journal block numbers of commit blocks, from logdump.
fn commit_blocks(img: &Path) -> Vec<u64> {
    debugfs(img, "logdump")
        .lines()
        .filter(|l| l.contains("(commit block)"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect()
}

/// Rewrites the journal superblock's checksum (v2/v3) after a patch.
fn fix_journal_sb_csum(sb: &mut [u8]) {
    if u32::from_be_bytes(sb[0x28..0x2C].try_into().unwrap()) & 0x18 != 0 {
        sb[0xFC..0x100].fill(0);
        let c = !crc32c::crc32c(&sb[..1024]);
        sb[0xFC..0x100].copy_from_slice(&c.to_be_bytes());
    }
}

/// The log wraps from the journal's end to its first block: the journal
/// blocks are rotated (checksums do not depend on positions) and s_start
/// moved; e2fsck's recovery of the rotated image is the oracle.
#[test]
fn journal_log_wraps_around() {
    for jo in ["", "-c"] {
        let img = mkfs_small("jwrap", &["-t", "ext4", "-b", "1024"]);
        let b1 = bmap(&img, "/data.bin 0");
        let b2 = bmap(&img, "/data.bin 13");
        let mut script = format!("jo {jo}\n");
        for n in 0..4u8 {
            let p = img.with_extension(format!("w{n}"));
            let mut data = pattern(2048, 40 + n);
            if n == 1 {
                data[..4].copy_from_slice(&0xC03B_3998u32.to_be_bytes());
            }
            std::fs::write(&p, data).unwrap();
            script.push_str(&format!("jw -b {b1},{b2} {}\n", p.display()));
        }
        script.push_str("jc\n");
        debugfs_script(&img, &script);
        let (len, first) = journal_extent(&img);
        let used = *commit_blocks(&img).last().unwrap(); // log is 1..=used
        assert!(used > 8 && used < len / 2);
        let mut bytes = std::fs::read(&img).unwrap();
        let bs = 1024usize;
        let at = |j: u64| (first + j) as usize * bs;
        let ring = len - 1; // blocks 1..len
        let shift = ring - 5; // the log starts 5 blocks before the end
        let old: Vec<Vec<u8>> = (1..len)
            .map(|j| bytes[at(j)..at(j) + bs].to_vec())
            .collect();
        for (i, blk) in old.iter().enumerate() {
            let j = 1 + (i as u64 + shift) % ring;
            bytes[at(j)..at(j) + bs].copy_from_slice(blk);
        }
        let sb = &mut bytes[at(0)..at(0) + bs];
        sb[0x1C..0x20].copy_from_slice(&(1 + shift as u32).to_be_bytes());
        fix_journal_sb_csum(sb);
        std::fs::write(&img, &bytes).unwrap();
        assert!(debugfs(&img, "logdump").contains(&format!(
            "Journal starts at block {}, transaction 1",
            1 + shift
        )));
        assert_eq!(logdump_commits(&img), 4);
        let (fixed, _) = recovered(&img);
        let fs = open_file(&img);
        let want = debugfs_dump(&fixed, "/data.bin");
        assert_eq!(read_path(&fs, "/data.bin"), want);
        assert_eq!(&want[..1024], &pattern(2048, 43)[..1024]);
        assert_eq!(&want[13 * 1024..14 * 1024], &pattern(2048, 43)[1024..]);
        let j = fs.journal_facts().unwrap();
        assert_eq!((j.transactions, j.blocks_replayed), (4, 8), "{j:?}");
        assert!(j.problems.is_empty(), "{j:?}");
    }
}

/// A damaged commit block ends the log before its transaction (e2fsck
/// agrees); a damaged journal superblock leaves the on-disk state. Both are
/// findings, neither an error.
#[test]
fn journal_damage_is_a_finding() {
    for (jo, damage) in [("-c", 0x80usize), ("", 0), ("-c", 0)] {
        let img = mkfs_small("jdamage", &["-t", "ext4", "-b", "4096"]);
        let block = bmap(&img, "/data.bin 2");
        let p1 = img.with_extension("d1");
        let p2 = img.with_extension("d2");
        std::fs::write(&p1, pattern(4096, 51)).unwrap();
        std::fs::write(&p2, pattern(4096, 52)).unwrap();
        debugfs_script(
            &img,
            &format!(
                "jo {jo}\njw -b {block} {}\njw -b {block} {}\njc\n",
                p1.display(),
                p2.display()
            ),
        );
        let commits = commit_blocks(&img);
        assert_eq!(commits.len(), 2);
        let mut bytes = std::fs::read(&img).unwrap();
        // Inside the second commit block: past the header (a checksum
        // mismatch with csum v3) or its magic.
        let at = bmap(&img, &format!("<8> {}", commits[1])) as usize * 4096 + damage;
        bytes[at] ^= 0x55;
        std::fs::write(&img, &bytes).unwrap();
        let (fixed, log) = recovered(&img);
        let fs = open_file(&img);
        let want = debugfs_dump(&fixed, "/data.bin");
        assert_eq!(read_path(&fs, "/data.bin"), want);
        assert_eq!(&want[2 * 4096..3 * 4096], &pattern(4096, 51)[..]);
        let j = fs.journal_facts().unwrap();
        assert_eq!(j.transactions, 1, "{j:?}");
        let expect = if damage == 0 {
            "transaction 2 has no valid commit block"
        } else {
            assert!(log.contains("ournal transaction 2 was corrupt"), "{log}");
            "transaction 2: commit block checksum mismatch"
        };
        assert!(
            fs.findings().iter().any(|e| e.contains(expect)),
            "{:?}",
            fs.findings()
        );
    }
    // A bad journal superblock magic: the on-disk content, a finding.
    let img = mkfs_small("jbadsb", &["-t", "ext4", "-b", "4096"]);
    let block = bmap(&img, "/data.bin 2");
    let p = img.with_extension("d1");
    std::fs::write(&p, pattern(4096, 53)).unwrap();
    debugfs_script(&img, &format!("jo -c\njw -b {block} {}\njc\n", p.display()));
    let first = bmap(&img, "<8> 0");
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[first as usize * 4096] ^= 0xFF;
    let fs = bounded(move || open_mem(bytes).unwrap());
    let got = read_path(&fs, "/data.bin");
    assert_eq!(
        got,
        std::fs::read(journal_source().join("data.bin")).unwrap()
    );
    let j = fs.journal_facts().unwrap();
    assert!(!j.applied && j.transactions == 0, "{j:?}");
    assert!(
        fs.findings()
            .iter()
            .any(|e| e.contains("journal: bad journal superblock magic")),
        "{:?}",
        fs.findings()
    );
}

/// Noise over the log of an image needing recovery never panics or hangs,
/// and reads fall back to the disk where the log is broken.
#[test]
fn journal_noise_does_not_panic() {
    for jo in ["", "-c"] {
        let img = mkfs_small("jnoise", &["-t", "ext4", "-b", "1024"]);
        let block = bmap(&img, "/data.bin 2");
        let p = img.with_extension("n");
        std::fs::write(&p, pattern(1024 * 3, 60)).unwrap();
        debugfs_script(
            &img,
            &format!(
                "jo {jo}\njw -b {block},{},{} {}\njc\njo\njw -r {block} /dev/null\njc\n",
                block + 1,
                block + 2,
                p.display()
            ),
        );
        let (len, first) = journal_extent(&img);
        let bytes = std::fs::read(&img).unwrap();
        let mut state = 0x1234_5678_9ABC_DEF1u64 ^ jo.len() as u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..60 {
            let mut b = bytes.clone();
            // Mostly the first journal blocks (superblock, descriptors,
            // revoke and commit blocks), sometimes anywhere in the log.
            let span = if round % 3 == 0 { len * 1024 } else { 8 * 1024 };
            for _ in 0..(1 + round % 6) {
                let at = first as usize * 1024 + (next() % span) as usize;
                b[at] = next() as u8;
            }
            bounded(move || {
                if let Ok(fs) = open_mem(b) {
                    let _ = fs.journal_facts();
                    walk_everything(&fs);
                }
            });
        }
        // Noise over the journal superblock's geometry fields.
        for off in [0xCusize, 0x10, 0x14, 0x18, 0x1C, 0x24, 0x28, 0x50, 0x54] {
            for val in [0u32, 1, 0xFFFF_FFFF, 0x8000_0000, 1023, 1025] {
                let mut b = bytes.clone();
                let at = first as usize * 1024 + off;
                b[at..at + 4].copy_from_slice(&val.to_be_bytes());
                fix_journal_sb_csum(&mut b[first as usize * 1024..first as usize * 1024 + 1024]);
                bounded(move || {
                    if let Ok(fs) = open_mem(b) {
                        walk_everything(&fs);
                    }
                });
            }
        }
    }
}

/// A clean filesystem reads exactly as without journal support.
#[test]
fn journal_clean_image_untouched() {
    let img = mkfs_small("jclean", &["-t", "ext4", "-b", "4096"]);
    let p = img.with_extension("n");
    std::fs::write(&p, pattern(4096, 70)).unwrap();
    let block = bmap(&img, "/data.bin 0");
    debugfs_script(&img, &format!("jo -c\njw -b {block} {}\njc\n", p.display()));
    let (fixed, _) = recovered(&img);
    let fs = open_file(&fixed);
    let j = fs.journal_facts().unwrap();
    assert!(
        !j.needs_recovery && !j.applied && j.problems.is_empty(),
        "{j:?}"
    );
    assert_eq!(j.transactions, 0);
    let id = lookup(&fs, b"/data.bin", false).unwrap();
    let ranges = fs.byte_ranges(id).unwrap();
    assert_eq!(ranges.iter().map(|r| r.1).sum::<u64>(), 8 * 4096);
    assert!(ranges.iter().any(|&(o, _)| o == block * 4096));
    assert_eq!(&read_path(&fs, "/data.bin")[..4096], &pattern(4096, 70)[..]);
    // Without has_journal: no journal facts.
    let img = mkfs_small("jnone", &["-t", "ext4", "-O", "^has_journal"]);
    assert_eq!(open_file(&img).journal_facts(), None);
    assert_eq!(open_file(&img).superblock_facts().journal, None);
}

// ---- casefold and encryption -----------------------------------------------

/// Inode flags of `path`, from debugfs `stat`.
fn inode_flags(img: &Path, path: &str) -> u32 {
    let stat = debugfs(img, &format!("stat {path}"));
    let hex = stat.split("Flags: 0x").nth(1).unwrap();
    let hex: String = hex.chars().take_while(char::is_ascii_hexdigit).collect();
    u32::from_str_radix(&hex, 16).unwrap()
}

fn set_flags(img: &Path, path: &str, add: u32) {
    let flags = inode_flags(img, path) | add;
    debugfs_w(img, &format!("sif {path} flags {flags:#x}"));
    assert_eq!(inode_flags(img, path), flags);
}

fn mkfs_tree(name: &str, args: &[&str], tree: &Path) -> PathBuf {
    mke2fs_d(name, args, tree, "16M")
}

/// Names e2fsck's casefold rules (utf8-12.1) call equal to an earlier name
/// in a casefolded directory holding `names`: the oracle for lookups.
fn e2fsck_casefold_duplicates(names: &[&str]) -> Vec<String> {
    let d = tmp("cfdup").join("tree");
    std::fs::create_dir_all(d.join("ci")).unwrap();
    for n in names {
        std::fs::write(d.join("ci").join(n), n.as_bytes()).unwrap();
    }
    let img = mkfs_tree("cfdupimg", &["-t", "ext4", "-O", "casefold"], &d);
    set_flags(&img, "/ci", 0x4000_0000);
    let out = Command::new(E2FSCK).arg("-fyD").arg(&img).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .filter_map(|l| l.strip_prefix("Rename to "))
        .map(|l| {
            l.trim_end_matches("? yes")
                .rsplit_once('~')
                .unwrap()
                .0
                .to_string()
        })
        .collect()
}

#[test]
fn casefold_lookups_ignore_case() {
    // e2fsck agrees these pairs are one name in a casefolded directory.
    let pairs = [
        ("Hello.TXT", "hello.txt"),
        ("MiXeD-Case_09", "mixed-CASE_09"),
        ("Äpfel", "äPFEL"),
        ("ΣΟΦΊΑ", "σοφία"),
    ];
    let all: Vec<&str> = pairs.iter().flat_map(|p| [p.0, p.1]).collect();
    let dups = e2fsck_casefold_duplicates(&all);
    assert_eq!(dups.len(), pairs.len(), "{dups:?}");
    let d = tmp("cf").join("tree");
    std::fs::create_dir_all(d.join("ci/sub")).unwrap();
    std::fs::create_dir_all(d.join("plain")).unwrap();
    for (stored, _) in pairs {
        std::fs::write(d.join("ci").join(stored), stored.as_bytes()).unwrap();
    }
    std::fs::write(d.join("ci/sub/Deep"), b"deep").unwrap();
    std::fs::write(d.join("plain/Mixed"), b"plain").unwrap();
    std::fs::write(
        d.join(std::ffi::OsStr::from_bytes(b"ci/bad\xffName")),
        b"bad",
    )
    .unwrap();
    let img = mkfs_tree("cfimg", &["-t", "ext4", "-O", "casefold"], &d);
    set_flags(&img, "/ci", 0x4000_0000);
    set_flags(&img, "/ci/sub", 0x4000_0000);
    let fs = open_file(&img);
    let f = fs.superblock_facts();
    assert_eq!(f.casefold_encoding.as_deref(), Some("utf8-12.1"));
    assert!(!f.casefold_strict && !f.encryption);
    assert!(dumpe2fs_h(&img).contains("Character encoding:       utf8-12.1"));
    for (stored, other) in pairs {
        for name in [
            stored,
            other,
            &stored.to_uppercase(),
            &stored.to_lowercase(),
        ] {
            let got = read_path(&fs, &format!("/ci/{name}"));
            assert_eq!(got, stored.as_bytes(), "{name}");
        }
    }
    assert_eq!(read_path(&fs, "/ci/SUB/deep"), b"deep");
    // Invalid UTF-8 matches only exactly; plain directories are exact.
    assert!(lookup(&fs, "/ci/bad\u{FFFD}Name".as_bytes(), true).is_err());
    let bad = b"/ci/bad\xffName";
    assert!(lookup(&fs, bad, true).is_ok());
    assert!(lookup(&fs, b"/ci/bad\xffname", true).is_err());
    assert_eq!(read_path(&fs, "/plain/Mixed"), b"plain");
    assert!(matches!(
        lookup(&fs, b"/plain/mixed", true),
        Err(FsError::NotFound(_))
    ));
    // Listing keeps the stored names.
    let ci = lookup(&fs, b"/ci", true).unwrap();
    let mut names: Vec<Vec<u8>> = fs
        .read_dir(ci)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    assert!(names.contains(&b"Hello.TXT".to_vec()));
    // Without the casefold feature the flag is ignored.
    let img = mkfs_tree("cfnofeat", &["-t", "ext4"], &d);
    set_flags(&img, "/ci", 0x4000_0000);
    let fs = open_file(&img);
    assert_eq!(fs.superblock_facts().casefold_encoding, None);
    assert!(lookup(&fs, b"/ci/hello.txt", true).is_err());
    assert!(lookup(&fs, b"/ci/Hello.TXT", true).is_ok());
}

#[test]
fn encrypted_files_are_errors_not_ciphertext() {
    let d = tmp("enc").join("tree");
    std::fs::create_dir_all(d.join("secret")).unwrap();
    std::fs::write(d.join("secret/one"), b"ciphertext would be here").unwrap();
    std::fs::write(d.join("secret/two"), b"x").unwrap();
    std::fs::write(d.join("file"), pattern(5000, 3)).unwrap();
    std::fs::write(d.join("clear"), b"clear").unwrap();
    std::os::unix::fs::symlink("clear", d.join("link")).unwrap();
    let img = mkfs_tree("encimg", &["-t", "ext4", "-O", "encrypt,inline_data"], &d);
    for p in ["/secret", "/secret/one", "/file", "/link"] {
        set_flags(&img, p, 0x800);
    }
    let fs = open_file(&img);
    assert!(fs.superblock_facts().encryption);
    assert!(fs.findings().is_empty());
    for p in ["/file", "/secret/one"] {
        let id = lookup(&fs, p.as_bytes(), true).unwrap();
        let mut buf = [0u8; 64];
        match fs.read(id, 0, &mut buf) {
            Err(FsError::Encrypted { what }) => {
                assert!(what.contains("file contents"), "{what}")
            }
            other => panic!("{p}: {other:?}"),
        }
        // Size and metadata stay visible.
        assert!(fs.metadata(id).unwrap().size > 0);
    }
    let link = lookup(&fs, b"/link", false).unwrap();
    assert!(matches!(
        fs.read_link(link),
        Err(FsError::Encrypted { what }) if what.contains("symlink")
    ));
    assert!(matches!(
        lookup(&fs, b"/link", true),
        Err(FsError::Encrypted { .. })
    ));
    // An encrypted directory still lists (names as stored), with one
    // finding however often it is read.
    let dir = lookup(&fs, b"/secret", true).unwrap();
    let listed = fs.read_dir(dir).unwrap();
    fs.read_dir(dir).unwrap();
    let mut names: Vec<Vec<u8>> = listed.into_iter().map(|e| e.name).collect();
    names.sort();
    assert_eq!(names, vec![b"one".to_vec(), b"two".to_vec()]);
    let errs = fs.findings();
    let enc: Vec<_> = errs.iter().filter(|e| e.contains("encrypted")).collect();
    assert_eq!(enc.len(), 1, "{errs:?}");
    assert!(enc[0].contains(&format!("directory inode {}", dir.0)));
    // The unencrypted file in it reads.
    assert_eq!(read_path(&fs, "/secret/two"), b"x");
    assert_eq!(read_path(&fs, "/clear"), b"clear");
}

/// CRC-32 MSB first without inversions (the kernel's `crc32_be`).
fn crc32_be(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = (crc << 1)
                ^ if crc & 0x8000_0000 != 0 {
                    0x04C1_1DB7
                } else {
                    0
                };
        }
    }
    crc
}

/// Version 1 journal checksums (`journal_checksum`: a CRC-32 of each
/// transaction in its commit block), which debugfs cannot write: the
/// feature and checksum are patched in, and e2fsck judges them.
#[test]
fn journal_csum_v1_commit_checksum() {
    for good in [true, false] {
        let img = mkfs_small("jv1", &["-t", "ext4", "-b", "1024"]);
        let block = bmap(&img, "/data.bin 4");
        let p = img.with_extension("v1");
        std::fs::write(&p, pattern(1024, 80)).unwrap();
        debugfs_script(&img, &format!("jo\njw -b {block} {}\njc\n", p.display()));
        assert_eq!(commit_blocks(&img), vec![3]); // descriptor 1, data 2
        let phys = |j: u64| bmap(&img, &format!("<8> {j}")) as usize * 1024;
        let (sb, desc, data, commit) = (phys(0), phys(1), phys(2), phys(3));
        let mut bytes = std::fs::read(&img).unwrap();
        bytes[sb + 0x27] |= 1; // s_feature_compat: journal_checksum
        let mut crc = crc32_be(!0, &bytes[desc..desc + 1024]);
        crc = crc32_be(crc, &bytes[data..data + 1024]);
        if !good {
            crc ^= 1;
        }
        bytes[commit + 12] = 1; // CRC-32
        bytes[commit + 13] = 4;
        bytes[commit + 16..commit + 20].copy_from_slice(&crc.to_be_bytes());
        std::fs::write(&img, &bytes).unwrap();
        assert!(dumpe2fs_h(&img).contains("journal_checksum"));
        let (fixed, log) = recovered(&img);
        let want = debugfs_dump(&fixed, "/data.bin");
        let fs = open_file(&img);
        assert_eq!(read_path(&fs, "/data.bin"), want);
        let j = fs.journal_facts().unwrap();
        assert_eq!(&want[4096..5120] == pattern(1024, 80).as_slice(), good);
        if good {
            assert!(j.problems.is_empty() && j.transactions == 1, "{j:?}");
        } else {
            assert!(log.contains("ournal transaction 1 was corrupt"), "{log}");
            assert!(
                j.transactions == 0 && j.problems[0].contains("commit block checksum"),
                "{j:?}"
            );
        }
    }
}

/// Deleted entries vs `debugfs ls -d` (which shows them as `<inode>`):
/// a small linear directory, a multi-block one and an htree directory, with
/// first-in-block, middle, last and consecutive entries removed. Live
/// entries are unaffected and no index bytes are taken for names.
#[test]
fn deleted_entries_match_debugfs_ls_d() {
    let tree = tmp("deleted").join("tree");
    std::fs::create_dir_all(tree.join("small")).unwrap();
    std::fs::create_dir_all(tree.join("big")).unwrap();
    for i in 0..8 {
        std::fs::write(tree.join(format!("small/f{i}")), b"x").unwrap();
    }
    for i in 0..600 {
        std::fs::write(
            tree.join(format!("big/entry-with-a-longer-name-{i:04}")),
            b"y",
        )
        .unwrap();
    }
    for (name, args) in [
        ("deleted-4k", &["-t", "ext4"][..]),
        ("deleted-1k", &["-t", "ext4", "-b", "1024"][..]),
        ("deleted-ext2", &["-t", "ext2", "-O", "^dir_index"][..]),
    ] {
        let img = mkfs_tree(name, args, &tree);
        if name != "deleted-ext2" {
            // Index the directories: /big becomes an htree directory.
            let out = Command::new(E2FSCK).arg("-fyD").arg(&img).output().unwrap();
            assert!(out.status.code().is_some_and(|c| c <= 1), "{out:?}");
            let st = debugfs(&img, "stat /big");
            let flags = st
                .split("Flags: 0x")
                .nth(1)
                .and_then(|t| u32::from_str_radix(t.split_whitespace().next()?, 16).ok())
                .unwrap();
            assert!(flags & 0x1000 != 0, "/big is not an htree: {st}");
        }
        let mut script = String::new();
        for i in [0, 1, 2, 5, 7] {
            script.push_str(&format!("rm /small/f{i}\n"));
        }
        for i in (0..600).step_by(7) {
            script.push_str(&format!("rm /big/entry-with-a-longer-name-{i:04}\n"));
        }
        debugfs_script(&img, &script);
        let fs = open_file(&img);
        for dir in ["/small", "/big"] {
            let listing = debugfs(&img, &format!("ls -d {dir}"));
            // debugfs shows deleted records as `<inode> (rec_len) name`,
            // except a block's first record (inode zeroed), which qvet also
            // finds: every removed name must come back, with debugfs's inode
            // number wherever debugfs shows one.
            let toks: Vec<&str> = listing.split_whitespace().collect();
            let shown: BTreeMap<String, u64> = toks
                .windows(3)
                .filter_map(|w| {
                    let ino = w[0].strip_prefix('<')?.strip_suffix('>')?;
                    Some((w[2].to_string(), ino.parse().ok()?))
                })
                .collect();
            let removed: Vec<String> = if dir == "/small" {
                [0, 1, 2, 5, 7].iter().map(|i| format!("f{i}")).collect()
            } else {
                (0..600)
                    .step_by(7)
                    .map(|i| format!("entry-with-a-longer-name-{i:04}"))
                    .collect()
            };
            let id = lookup(&fs, dir.as_bytes(), true).unwrap();
            let got: BTreeMap<String, Option<u64>> = fs
                .deleted_entries(id)
                .unwrap()
                .into_iter()
                .map(|d| (String::from_utf8(d.name).unwrap(), d.node))
                .collect();
            assert_eq!(
                got.keys().cloned().collect::<Vec<_>>(),
                removed,
                "{name} {dir}"
            );
            assert!(
                !shown.is_empty(),
                "{name} {dir}: debugfs shows no deleted entry\n{listing}"
            );
            for (n, ino) in &shown {
                assert_eq!(got.get(n), Some(&Some(*ino)), "{name} {dir} {n}");
            }
            let live = fs.read_dir(id).unwrap().len();
            assert_eq!(
                live,
                if dir == "/small" { 3 } else { 600 - 86 },
                "{name} {dir}"
            );
        }
    }
}

/// The journal fuzz seeds (journals dumped with `debugfs dump <8>` after
/// `jo`/`jw`/`jc`, cut to their first blocks) plan as `debugfs logdump`
/// described them: `revoke-64bit` holds transactions 1 and 2 (a block of
/// /data.bin and block 5) and 3 revoking the /data.bin block; `ext3-one`
/// one transaction of one block.
#[test]
fn journal_seeds_plan_as_logdump_says() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/journal");
    let j = std::fs::read(dir.join("revoke-64bit")).unwrap();
    let (facts, replayed) = qvet_guestfs::jbd2::plan_bytes(&j, 1024, 1 << 20);
    assert_eq!(facts.transactions, 3, "{facts:?}");
    assert!(facts.problems.is_empty(), "{facts:?}");
    assert_eq!(facts.revoke_records, 1, "{facts:?}");
    assert_eq!(facts.blocks_revoked, 1, "{facts:?}");
    let blocks: Vec<u64> = replayed.iter().map(|r| r.0).collect();
    assert_eq!(blocks, vec![5], "{replayed:?}");
    let j = std::fs::read(dir.join("ext3-one")).unwrap();
    let (facts, replayed) = qvet_guestfs::jbd2::plan_bytes(&j, 1024, 1 << 20);
    assert_eq!((facts.transactions, replayed.len()), (1, 1), "{facts:?}");
}

/// Extended attributes (in the inode body and in the external block)
/// against debugfs: the same names, and each value equal to `ea_get`'s.
#[test]
fn xattrs_match_debugfs() {
    for (tag, inode_size) in [("xattr128", "128"), ("xattr256", "256")] {
        let dir = tmp(tag);
        let tree = dir.join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("ping"), b"\x7fELF").unwrap();
        std::fs::write(tree.join("plain"), b"x").unwrap();
        let img = mke2fs_d(
            tag,
            &["-F", "-t", "ext4", "-I", inode_size, "-b", "4096"],
            &tree,
            "16M",
        );
        let cap = dir.join("cap");
        std::fs::write(
            &cap,
            [
                1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        )
        .unwrap();
        let big = dir.join("big");
        std::fs::write(&big, pattern(3000, 7)).unwrap();
        debugfs_w(
            &img,
            &format!("ea_set -f {} /ping security.capability", cap.display()),
        );
        debugfs_w(&img, "ea_set /ping user.note hello");
        debugfs_w(
            &img,
            &format!("ea_set -f {} /ping trusted.big", big.display()),
        );
        let fs = open_file(&img);
        for name in ["ping", "plain"] {
            let id = qvet_guestfs::lookup(&fs, format!("/{name}").as_bytes(), false).unwrap();
            let mut ours: Vec<(String, Vec<u8>)> = fs
                .xattrs(id)
                .unwrap()
                .into_iter()
                .filter(|x| x.name != b"system.data")
                .map(|x| (String::from_utf8(x.name).unwrap(), x.value))
                .collect();
            ours.sort();
            let listing = debugfs(&img, &format!("ea_list /{name}"));
            let mut theirs: Vec<String> = listing
                .lines()
                .filter_map(|l| l.trim().split_once(" (").map(|(n, _)| n.to_string()))
                .filter(|n| !n.is_empty() && n != "system.data")
                .collect();
            theirs.sort();
            let names: Vec<String> = ours.iter().map(|(n, _)| n.clone()).collect();
            assert_eq!(names, theirs, "{tag} /{name}: {listing}");
            for (n, v) in &ours {
                let out = dir.join("value");
                let _ = std::fs::remove_file(&out);
                debugfs_w(&img, &format!("ea_get -f {} /{name} {n}", out.display()));
                assert_eq!(&std::fs::read(&out).unwrap(), v, "{tag} /{name} {n}");
            }
        }
        let id = qvet_guestfs::lookup(&fs, b"/ping", false).unwrap();
        let caps = fs.xattrs(id).unwrap();
        let c = caps
            .iter()
            .find(|x| x.name == b"security.capability")
            .unwrap();
        let c = qvet_guestfs::xattr::decode_capability(&c.value).unwrap();
        assert_eq!(
            qvet_guestfs::xattr::capability_names(c.permitted),
            vec!["cap_net_raw"]
        );
        assert!(c.effective);

        // A damaged attribute block is an error, never a panic.
        let inode_block = debugfs(&img, "stat /ping");
        if let Some(acl) = inode_block
            .split("File ACL: ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&b| b != 0)
        {
            let mut bytes = std::fs::read(&img).unwrap();
            let at = usize::try_from(acl * 4096).unwrap();
            bytes[at] ^= 0xff;
            for b in &mut bytes[at + 32..at + 96] {
                *b = 0xee;
            }
            let bad = dir.join("bad.img");
            std::fs::write(&bad, &bytes).unwrap();
            let fs = open_file(&bad);
            let id = qvet_guestfs::lookup(&fs, b"/ping", false).unwrap();
            assert!(fs.xattrs(id).is_err());
        }
    }
}

// ---- extended attributes: EA inodes, ACLs, checksums, hostile blocks -------

/// `ea_set -r -f VALUE PATH NAME` (raw: ACLs stay in the on-disk format);
/// debugfs exits 0 on failure, so its stderr must hold only the banner.
fn ea_set(img: &Path, path: &str, name: &str, value: &[u8]) {
    let file = img.with_extension(format!("ea{}", COUNTER.fetch_add(1, Ordering::SeqCst)));
    std::fs::write(&file, value).unwrap();
    let req = format!("ea_set -r -f {} {path} {name}", file.display());
    let out = Command::new(DEBUGFS)
        .arg("-w")
        .arg("-R")
        .arg(&req)
        .arg(img)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.lines().all(|l| l.starts_with("debugfs ")),
        "{req}: {err}"
    );
}

/// The attributes of `path` as debugfs has them: names from `ea_list`,
/// raw values from `ea_get -r -f`, sorted.
fn debugfs_xattrs(img: &Path, path: &str) -> Vec<(String, Vec<u8>)> {
    let listing = debugfs(img, &format!("ea_list {path}"));
    let mut out: Vec<(String, Vec<u8>)> = listing
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| {
            let (name, rest) = l.trim_start().split_once(" (").unwrap();
            let size: usize = rest.split_once(')').unwrap().0.parse().unwrap();
            let file = img.with_extension(format!("get{}", COUNTER.fetch_add(1, Ordering::SeqCst)));
            debugfs(
                img,
                &format!("ea_get -r -f {} {path} {name}", file.display()),
            );
            let value = std::fs::read(&file).unwrap_or_default();
            assert_eq!(value.len(), size, "{path} {name}: {listing}");
            (name.to_string(), value)
        })
        .collect();
    out.sort();
    out
}

fn our_xattrs(fs: &Ext, path: &str) -> Vec<(String, Vec<u8>)> {
    let id = lookup(fs, path.as_bytes(), false).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = fs
        .xattrs(id)
        .unwrap()
        .into_iter()
        .map(|x| (String::from_utf8(x.name).unwrap(), x.value))
        .collect();
    out.sort();
    out
}

/// `File ACL:` of `debugfs stat`.
fn xattr_block(img: &Path, path: &str) -> u64 {
    debugfs(img, &format!("stat {path}"))
        .split("File ACL: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Byte offset of `path`'s inode in `img` (`debugfs imap`).
fn inode_at(img: &Path, path: &str, bs: usize) -> usize {
    let out = debugfs(img, &format!("imap {path}"));
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
    block * bs + off
}

const CAP_NET_RAW_EP: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];
/// An ext4 ACL in its on-disk form (version 1; user::rw-, group::r--,
/// other::r--).
const ACL: [u8; 16] = [1, 0, 0, 0, 1, 0, 6, 0, 4, 0, 4, 0, 0x20, 0, 4, 0];

/// A 4 KiB-block ext4 (64bit, metadata_csum, ea_inode) with `inode_size`
/// inodes and attributes in every place they can be: the inode body (256),
/// the block, and an EA inode.
fn xattr_image(tag: &str, inode_size: &str) -> PathBuf {
    let dir = tmp(tag);
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("d")).unwrap();
    std::fs::write(tree.join("f"), b"\x7fELF").unwrap();
    std::fs::write(tree.join("plain"), b"x").unwrap();
    std::os::unix::fs::symlink("f", tree.join("link")).unwrap();
    let img = mke2fs_d(
        tag,
        &[
            "-F",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-I",
            inode_size,
            "-O",
            "ea_inode,64bit,metadata_csum",
        ],
        &tree,
        "16M",
    );
    ea_set(&img, "/f", "user.foo", b"bar");
    ea_set(&img, "/f", "security.capability", &CAP_NET_RAW_EP);
    ea_set(&img, "/f", "trusted.t", b"1");
    ea_set(&img, "/f", "user.empty", b"");
    ea_set(&img, "/f", "user.big", &pattern(3000, 5));
    ea_set(&img, "/f", "user.huge", &pattern(4096, 6));
    ea_set(&img, "/f", "system.posix_acl_access", &ACL);
    ea_set(&img, "/d", "system.posix_acl_default", &ACL);
    ea_set(&img, "/d", "user.dir", b"directory value");
    ea_set(&img, "/link", "user.l", b"on a symlink");
    img
}

/// Names and raw values of every file's attributes equal debugfs's, with
/// 128-byte inodes (all in the block) and 256-byte ones (in the inode
/// first), a 4096-byte value in an EA inode, ACLs and an empty value.
#[test]
fn xattrs_everywhere_match_debugfs() {
    for (tag, size) in [("xa128", "128"), ("xa256", "256")] {
        let img = xattr_image(tag, size);
        let fs = open_file(&img);
        for path in ["/f", "/d", "/plain", "/link", "/"] {
            let ours = our_xattrs(&fs, path);
            assert_eq!(ours, debugfs_xattrs(&img, path), "{tag} {path}");
        }
        let f = our_xattrs(&fs, "/f");
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "security.capability",
                "system.posix_acl_access",
                "trusted.t",
                "user.big",
                "user.empty",
                "user.foo",
                "user.huge"
            ],
            "{tag}"
        );
        let huge = &f.iter().find(|(n, _)| n == "user.huge").unwrap().1;
        assert_eq!(huge, &pattern(4096, 6));
        let cap = &f
            .iter()
            .find(|(n, _)| n == "security.capability")
            .unwrap()
            .1;
        let c = qvet_guestfs::xattr::decode_capability(cap).unwrap();
        assert_eq!((c.version, c.permitted, c.effective), (2, 1 << 13, true));
        assert!(xattr_block(&img, "/f") != 0, "{tag}: the block is used");
        assert!(fs.findings().is_empty(), "{tag}: {:?}", fs.findings());
    }
}

/// Inline-data files keep their tail in `system.data`, listed like any
/// other attribute.
#[test]
fn inline_data_is_an_xattr() {
    let img = mke2fs_d(
        "xainline",
        &["-F", "-t", "ext4", "-O", "inline_data", "-I", "256"],
        source(),
        "64M",
    );
    let fs = open_file(&img);
    let ours = our_xattrs(&fs, "/tiny2");
    assert!(ours.iter().any(|(n, _)| n == "system.data"), "{ours:?}");
    assert_eq!(ours, debugfs_xattrs(&img, "/tiny2"));
}

/// A changed byte in the attribute block is a checksum finding; the
/// attributes are still listed as stored.
#[test]
fn xattr_block_checksum_mismatch_is_a_finding() {
    let img = xattr_image("xacsum", "128");
    let block = xattr_block(&img, "/f") as usize;
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[block * 4096 + 4095] ^= 0x55;
    let fs = open_mem(bytes).unwrap();
    let id = lookup(&fs, b"/f", false).unwrap();
    assert_eq!(fs.xattrs(id).unwrap().len(), 7);
    let errs = fs.checksum_errors();
    assert!(
        errs.iter()
            .any(|e| e.contains(&format!("extended attribute block {block} checksum"))),
        "{errs:?}"
    );
}

/// Damaged entries, headers, EA-inode references and `i_extra_isize` are
/// errors; random damage never panics or hangs.
#[test]
fn hostile_xattrs() {
    for (tag, size) in [("xah128", "128"), ("xah256", "256")] {
        let img = xattr_image(tag, size);
        let base = std::fs::read(&img).unwrap();
        let block = xattr_block(&img, "/f") as usize * 4096;
        let inode = inode_at(&img, "/f", 4096);
        let ino = lookup(&open_file(&img), b"/f", false).unwrap().0 as u32;
        let first = block + 32;
        let mut patches: Vec<(&str, usize, Vec<u8>)> = vec![
            ("magic", block, vec![0, 0, 0, 0]),
            ("h_blocks", block + 8, 2u32.to_le_bytes().to_vec()),
            ("name_len", first, vec![255]),
            ("value_offs", first + 2, 0xFFFFu16.to_le_bytes().to_vec()),
            (
                "value_offs into names",
                first + 2,
                32u16.to_le_bytes().to_vec(),
            ),
            ("value_size", first + 8, u32::MAX.to_le_bytes().to_vec()),
            ("value_inum self", first + 4, ino.to_le_bytes().to_vec()),
            ("value_inum root", first + 4, 2u32.to_le_bytes().to_vec()),
            (
                "value_inum far",
                first + 4,
                0x7FFF_FFFFu32.to_le_bytes().to_vec(),
            ),
            ("no terminator", first, vec![0xEE; 4064]),
        ];
        if size == "256" {
            let start = inode + 128 + 32;
            patches.push(("extra_isize odd", inode + 128, 30u16.to_le_bytes().to_vec()));
            patches.push((
                "extra_isize big",
                inode + 128,
                200u16.to_le_bytes().to_vec(),
            ));
            patches.push(("ibody name_len", start + 4, vec![250]));
            patches.push((
                "ibody value_size",
                start + 12,
                200u32.to_le_bytes().to_vec(),
            ));
        }
        for (what, at, val) in patches {
            let mut b = base.clone();
            b[at..at + val.len()].copy_from_slice(&val);
            let r = bounded(move || {
                let fs = open_mem(b)?;
                let id = lookup(&fs, b"/f", false)?;
                fs.xattrs(id)
            });
            assert!(r.is_err(), "{tag} {what}: {r:?}");
        }
        // Random bytes in the block's entries and the inode's attribute area.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..200 {
            let mut b = base.clone();
            for _ in 0..1 + round % 8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = if size == "256" && x.is_multiple_of(2) {
                    inode + 128 + (x >> 8) as usize % 128
                } else {
                    block + (x >> 8) as usize % 256
                };
                b[at] = (x >> 40) as u8;
            }
            bounded(move || {
                if let Ok(fs) = open_mem(b) {
                    if let Ok(id) = lookup(&fs, b"/f", false) {
                        if let Ok(list) = fs.xattrs(id) {
                            assert!(list.len() <= 2 * qvet_guestfs::xattr::MAX_ENTRIES);
                        }
                    }
                }
            });
        }
    }
}
