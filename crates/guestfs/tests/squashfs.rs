//! squashfs reader against images built with mksquashfs (every compressor
//! it has, several block sizes, with and without fragments, stored and
//! compressed tables) from a source tree, checked against the tree itself
//! and against `unsquashfs -lln`; a squashfs of this host's /etc; a squashfs
//! stored as a file in an ext4 image; hostile edits of images.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use qvet_guestfs::node_source::NodeSource;
use qvet_guestfs::squashfs::Squashfs;
use qvet_guestfs::{lookup, FileSystem, FileType, FsError, NodeId};
use qvet_image::source::MemSource;
use qvet_image::ByteSource;

mod common;
use common::{bounded, content, read_all_in, scratch, walk_lenient};

const BS: usize = 4096;

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-version").output().is_ok()
}

/// The source tree: files of many sizes around the 4 KiB and 128 KiB block
/// sizes, sparse and zero files, deep and large directories, symlinks, hard
/// links, odd names, modes and times.
fn build_tree(root: &Path) {
    let w = |p: &str, data: &[u8]| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    };
    w("empty", &[]);
    w("one", &content(1, 1));
    for (i, len) in [
        BS - 1,
        BS,
        BS + 1,
        3 * BS,
        3 * BS + 17,
        131_071,
        131_072,
        131_073,
        400_000,
    ]
    .into_iter()
    .enumerate()
    {
        w(&format!("sizes/f{len}"), &content(10 + i, len));
    }
    // Compressible text.
    let text: Vec<u8> = (0..50_000)
        .flat_map(|i| format!("line {i} of a compressible file\n").into_bytes())
        .collect();
    w("text.txt", &text);
    // Sparse: all zeros, and data / zeros / data.
    w("zeros", &vec![0u8; 5 * BS + 100]);
    let mut holey = content(30, BS);
    holey.extend(vec![0u8; 4 * BS]);
    holey.extend(content(31, BS + 5));
    w("holey", &holey);
    let big_zero = root.join("sparse-big");
    let f = std::fs::File::create(&big_zero).unwrap();
    f.set_len(3 << 20).unwrap();
    // Deep directories.
    let deep: String = (0..40).map(|i| format!("d{i}/")).collect();
    w(&format!("{deep}leaf.txt"), b"deep leaf\n");
    // A large directory: more than 256 entries, so several headers (and
    // an index in the extended directory inode).
    for i in 0..600 {
        w(
            &format!("many/entry-{i:04}-{}", "x".repeat(i % 40)),
            &content(100 + i, i % 50),
        );
    }
    std::fs::create_dir_all(root.join("emptydir")).unwrap();
    // Odd names.
    w("name with spaces", b"s");
    w("unicodé-名前", b"u");
    w("new\nline", b"n");
    let raw = OsStr::from_bytes(b"latin1-\xe9t\xe9");
    std::fs::write(root.join(raw), b"l").unwrap();
    w(&"L".repeat(255), b"long name");
    // Symlinks.
    std::os::unix::fs::symlink("one", root.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../sizes/f4096", root.join("many/up-link")).unwrap();
    std::os::unix::fs::symlink("dangling/target", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("y".repeat(1000), root.join("long-link")).unwrap();
    // Hard link.
    std::fs::hard_link(root.join("sizes/f4095"), root.join("hard")).unwrap();
    // Modes and times.
    let mode = |p: &str, m: u32| {
        std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode("one", 0o4755);
    mode("empty", 0o600);
    mode("text.txt", 0o2640);
    mode("emptydir", 0o1777);
    let f = std::fs::File::options()
        .write(true)
        .open(root.join("one"))
        .unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(1_234_567_890))
        .unwrap();
    // Extended attributes, when python can set them here.
    let _ = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import os; os.setxattr({:?}, 'user.qvet', b'hello'); os.setxattr({:?}, 'user.big', b'v' * 3000)",
            root.join("text.txt").to_str().unwrap(),
            root.join("text.txt").to_str().unwrap()
        ))
        .status();
}

/// Pseudo entries mksquashfs adds without root: devices, a FIFO, a socket,
/// and an owner change.
const PSEUDO: &[&str] = &[
    "dev d 755 0 0",
    "dev/null c 666 0 0 1 3",
    "dev/sda1 b 660 0 6 8 1",
    "dev/fifo i 600 1000 1000 f",
    "dev/sock i 644 33 33 s",
    "sizes/f4096 m 640 1234 5678",
];

fn mksquashfs(src: &Path, out: &Path, args: &[&str]) {
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(src)
        .arg(out)
        .args(["-noappend", "-quiet", "-no-progress"]);
    for p in PSEUDO {
        cmd.args(["-p", p]);
    }
    let st = cmd.args(args).output().unwrap();
    assert!(
        st.status.success(),
        "mksquashfs {args:?}: {}",
        String::from_utf8_lossy(&st.stderr)
    );
}

fn open_file(p: &Path) -> Squashfs {
    Squashfs::open(Arc::new(MemSource(std::fs::read(p).unwrap()))).unwrap()
}

/// What the reader says about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
    Link(Vec<u8>),
    Other(FileType),
}

fn walk_fs(fs: &dyn FileSystem) -> BTreeMap<Vec<u8>, (Node, qvet_guestfs::Metadata)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(Vec::new(), fs.root())];
    while let Some((path, id)) = stack.pop() {
        for e in fs.read_dir(id).unwrap() {
            let mut p = path.clone();
            p.push(b'/');
            p.extend_from_slice(&e.name);
            let md = fs.metadata(e.id).unwrap();
            assert_eq!(md.kind, e.kind, "{}", String::from_utf8_lossy(&p));
            let node = match e.kind {
                FileType::Dir => {
                    stack.push((p.clone(), e.id));
                    Node::Dir
                }
                FileType::Symlink => Node::Link(fs.read_link(e.id).unwrap()),
                FileType::File => {
                    // Odd chunk sizes straddle blocks and fragments.
                    let data = read_all_in(fs, e.id, 5001).unwrap();
                    assert_eq!(data.len() as u64, md.size);
                    Node::File(data)
                }
                k => Node::Other(k),
            };
            out.insert(p, (node, md));
        }
    }
    out
}

/// The source tree (pseudo entries excluded), with lstat metadata.
fn walk_src(root: &Path) -> BTreeMap<Vec<u8>, (Node, std::fs::Metadata)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(Vec::new(), root.to_path_buf())];
    while let Some((path, dir)) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let mut p = path.clone();
            p.push(b'/');
            p.extend_from_slice(e.file_name().as_bytes());
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let node = if md.is_dir() {
                stack.push((p.clone(), e.path()));
                Node::Dir
            } else if md.file_type().is_symlink() {
                Node::Link(
                    std::fs::read_link(e.path())
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                )
            } else if md.is_file() {
                Node::File(std::fs::read(e.path()).unwrap())
            } else {
                continue;
            };
            out.insert(p, (node, md));
        }
    }
    out
}

/// `unsquashfs -lln`: path → (mode string, "uid/gid", size or "maj,min").
fn unsquashfs_listing(img: &Path) -> BTreeMap<Vec<u8>, (String, String, String)> {
    let out = Command::new("unsquashfs")
        .arg("-lln")
        .arg(img)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut m = BTreeMap::new();
    // Names with a newline span two lines; those are checked elsewhere.
    for line in out.stdout.split(|&b| b == b'\n') {
        let Some(pos) = line.windows(14).position(|w| w == b"squashfs-root/") else {
            continue;
        };
        let head = String::from_utf8_lossy(&line[..pos]).to_string();
        let mut path = line[pos + 13..].to_vec();
        if head.starts_with('l') {
            if let Some(a) = path.windows(4).position(|w| w == b" -> ") {
                path.truncate(a);
            }
        }
        let f: Vec<&str> = head.split_whitespace().collect();
        let size = if f[0].starts_with('b') || f[0].starts_with('c') {
            format!("{}{}", f[2], f[3])
        } else {
            f[2].to_string()
        };
        m.insert(path, (f[0].to_string(), f[1].to_string(), size));
    }
    m
}

fn mode_string(mode: u32) -> String {
    let t = match mode & 0o170_000 {
        0o040_000 => 'd',
        0o120_000 => 'l',
        0o020_000 => 'c',
        0o060_000 => 'b',
        0o010_000 => 'p',
        0o140_000 => 's',
        _ => '-',
    };
    let mut s = String::from(t);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        let bit = 0o400 >> i;
        let set = mode & bit != 0;
        let special = match i {
            2 => mode & 0o4000 != 0,
            5 => mode & 0o2000 != 0,
            8 => mode & 0o1000 != 0,
            _ => false,
        };
        s.push(match (set, special) {
            (true, false) => c,
            (false, false) => '-',
            (true, true) if i == 8 => 't',
            (false, true) if i == 8 => 'T',
            (true, true) => 's',
            (false, true) => 'S',
        });
    }
    s
}

/// Builds an image from a fresh tree with `args` and checks every entry
/// against the tree and against unsquashfs.
fn roundtrip(tag: &str, args: &[&str]) -> (Squashfs, PathBuf) {
    let dir = scratch("squashfs", tag);
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    build_tree(&src);
    let img = dir.join("img.sq");
    mksquashfs(&src, &img, args);
    let fs = open_file(&img);
    check_image(&fs, &src, &img);
    (fs, dir)
}

fn check_image(fs: &Squashfs, src: &Path, img: &Path) {
    let got = walk_fs(fs);
    let want = walk_src(src);
    for (p, (node, smd)) in &want {
        let shown = String::from_utf8_lossy(p);
        let (g, md) = got.get(p).unwrap_or_else(|| panic!("missing {shown}"));
        assert_eq!(g, node, "{shown}");
        if p.as_slice() != b"/sizes/f4096" {
            assert_eq!(md.mode, smd.mode(), "{shown}");
            assert_eq!((md.uid, md.gid), (smd.uid(), smd.gid()), "{shown}");
        }
        assert_eq!(md.mtime, smd.mtime(), "{shown}");
        if !smd.is_dir() {
            assert_eq!(md.nlink, smd.nlink() as u32, "{shown}");
        }
    }
    // Pseudo entries.
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert_eq!(extra.len(), 5, "{extra:?}");
    let md = |p: &[u8]| fs.metadata(lookup(fs, p, false).unwrap()).unwrap();
    assert_eq!(md(b"/dev/null").mode, 0o020_666);
    assert_eq!(md(b"/dev/sda1").mode, 0o060_660);
    assert_eq!(md(b"/dev/sda1").gid, 6);
    assert_eq!(md(b"/dev/fifo").kind, FileType::Fifo);
    assert_eq!((md(b"/dev/fifo").uid, md(b"/dev/fifo").gid), (1000, 1000));
    assert_eq!(md(b"/dev/sock").kind, FileType::Socket);
    assert_eq!(md(b"/dev/sock").mode, 0o140_644);
    let f = md(b"/sizes/f4096");
    assert_eq!((f.uid, f.gid, f.mode), (1234, 5678, 0o100_640));
    let null = lookup(fs, b"/dev/null", false).unwrap();
    assert_eq!(fs.rdev(null).unwrap(), 0x103);
    // The kernel-visible sizes, modes and owners unsquashfs lists.
    let listing = unsquashfs_listing(img);
    assert!(listing.len() > 600);
    for (p, (mode, owner, size)) in &listing {
        if p.contains(&b'\n') || p.starts_with(b"/new") {
            continue;
        }
        let shown = String::from_utf8_lossy(p);
        let (_, m) = got.get(p).unwrap_or_else(|| panic!("reader lacks {shown}"));
        assert_eq!(&mode_string(m.mode), mode, "{shown}");
        assert_eq!(owner, &format!("{}/{}", m.uid, m.gid), "{shown}");
        let want_size = match m.kind {
            FileType::CharDev | FileType::BlockDev => {
                let r = fs.rdev(m.id).unwrap();
                format!(
                    "{},{}",
                    (r >> 8) & 0xfff,
                    (r & 0xff) | ((r >> 12) & 0xfff00)
                )
            }
            _ => m.size.to_string(),
        };
        assert_eq!(size, &want_size, "{shown}");
    }
    // Hard links share an inode.
    assert_eq!(
        lookup(fs, b"/hard", false).unwrap(),
        lookup(fs, b"/sizes/f4095", false).unwrap()
    );
    // Symlinks resolve through lookup.
    let id = lookup(fs, b"/many/up-link", true).unwrap();
    assert_eq!(read_all_in(fs, id, 4096).unwrap(), content(11, BS));
    // Positioned reads in the middle of blocks and across them.
    let id = lookup(fs, b"/sizes/f400000", false).unwrap();
    let want_bytes = content(18, 400_000);
    for (off, len) in [
        (0usize, 10usize),
        (4090, 20),
        (131_000, 5000),
        (399_990, 50),
    ] {
        let mut buf = vec![0u8; len];
        let n = fs.read(id, off as u64, &mut buf).unwrap();
        let end = (off + len).min(400_000);
        assert_eq!(&buf[..n], &want_bytes[off..end]);
    }
    let mut buf = [0u8; 4];
    assert_eq!(fs.read(id, 400_000, &mut buf).unwrap(), 0);
    assert_eq!(fs.read(id, u64::MAX, &mut buf).unwrap(), 0);
    // Data ranges lie inside the image.
    let len = std::fs::metadata(img).unwrap().len();
    for (at, n) in fs.byte_ranges(id).unwrap() {
        assert!(at + n <= len);
    }
    // All-zero blocks are stored as sparse (no data at all).
    let zero = lookup(fs, b"/sparse-big", false).unwrap();
    assert!(fs.byte_ranges(zero).unwrap().is_empty());
    assert_eq!(read_all_in(fs, zero, 100_000).unwrap(), vec![0u8; 3 << 20]);
    // Not a directory / not a file.
    assert!(matches!(fs.read_dir(id), Err(FsError::NotADirectory(_))));
    assert!(fs.read(fs.root(), 0, &mut buf).is_err());
    assert!(fs.read_link(id).is_err());
}

#[test]
fn gzip_default_block_size() {
    let (fs, dir) = roundtrip("gzip", &[]);
    assert_eq!(fs.compressor().name(), "gzip");
    assert_eq!(fs.superblock().block_size, 128 << 10);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn gzip_small_blocks_no_fragments() {
    let (fs, dir) = roundtrip("gzip-nofrag", &["-b", "4096", "-no-fragments"]);
    assert_eq!(fs.superblock().fragments, 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn gzip_always_fragments_uncompressed_tables() {
    let (_, dir) = roundtrip(
        "gzip-raw",
        &[
            "-b",
            "4096",
            "-always-use-fragments",
            "-noI",
            "-noD",
            "-noF",
            "-noX",
            "-no-duplicates",
        ],
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn xz() {
    let (fs, dir) = roundtrip("xz", &["-comp", "xz", "-b", "8192"]);
    assert_eq!(fs.compressor().name(), "xz");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn xz_with_bcj_filter() {
    let (_, dir) = roundtrip("xz-bcj", &["-comp", "xz", "-Xbcj", "x86"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn zstd() {
    let (fs, dir) = roundtrip(
        "zstd",
        &["-comp", "zstd", "-b", "4096", "-Xcompression-level", "19"],
    );
    assert_eq!(fs.compressor().name(), "zstd");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn zstd_one_mib_blocks() {
    let (_, dir) = roundtrip("zstd-1m", &["-comp", "zstd", "-b", "1M"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn lz4() {
    let (fs, dir) = roundtrip("lz4", &["-comp", "lz4", "-b", "4096"]);
    assert_eq!(fs.compressor().name(), "lz4");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn lz4_high_compression() {
    let (_, dir) = roundtrip("lz4hc", &["-comp", "lz4", "-Xhc"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn lzo() {
    let (fs, dir) = roundtrip("lzo", &["-comp", "lzo", "-b", "4096"]);
    assert_eq!(fs.compressor().name(), "lzo");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn lzo_999_default_blocks() {
    let (_, dir) = roundtrip("lzo999", &["-comp", "lzo", "-Xalgorithm", "lzo1x_999"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn lzma() {
    let (fs, dir) = roundtrip("lzma", &["-comp", "lzma"]);
    assert_eq!(fs.compressor().name(), "lzma");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn xattrs_match_the_source() {
    let dir = scratch("squashfs", "xattr");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    build_tree(&src);
    let probe = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import os; print(os.getxattr({:?}, 'user.qvet'))",
            src.join("text.txt").to_str().unwrap()
        ))
        .output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        eprintln!("skipped: cannot set user xattrs here");
        return;
    }
    let img = dir.join("img.sq");
    mksquashfs(&src, &img, &["-comp", "zstd"]);
    let fs = open_file(&img);
    let id = lookup(&fs, b"/text.txt", false).unwrap();
    let mut x = fs.xattrs(id).unwrap();
    x.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(x.len(), 2);
    assert_eq!(x[0].name, b"user.big");
    assert_eq!(x[0].value, vec![b'v'; 3000]);
    assert_eq!(x[1].name, b"user.qvet");
    assert_eq!(x[1].value, b"hello");
    assert!(fs
        .xattrs(lookup(&fs, b"/one", false).unwrap())
        .unwrap()
        .is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn host_files() {
    // Data nobody here wrote: this machine's /etc (a few MiB).
    let dir = scratch("squashfs", "host");
    let img = dir.join("etc.sq");
    let st = Command::new("mksquashfs")
        .args([Path::new("/etc"), &img])
        .args(["-noappend", "-quiet", "-no-progress", "-comp", "zstd"])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let fs = open_file(&img);
    let got = walk_fs(&fs);
    let want = walk_src(Path::new("/etc"));
    assert!(want.len() > 50);
    let mut compared = 0;
    for (p, (node, smd)) in &want {
        let Some((g, md)) = got.get(p) else {
            continue; // created after the image was made
        };
        if smd.mtime() > std::fs::metadata(&img).unwrap().mtime() - 2 {
            continue; // changed while the image was made
        }
        assert_eq!(g, node, "{}", String::from_utf8_lossy(p));
        assert_eq!(md.mode, smd.mode(), "{}", String::from_utf8_lossy(p));
        compared += 1;
    }
    assert!(compared > 50);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn squashfs_file_inside_ext4() {
    if !have("mke2fs") {
        eprintln!("skipped: no mke2fs");
        return;
    }
    let dir = scratch("squashfs", "inext");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    build_tree(&src);
    let root = dir.join("ext");
    std::fs::create_dir_all(root.join("boot/1.3.2")).unwrap();
    let sq = root.join("boot/1.3.2/1.3.2.squashfs");
    mksquashfs(&src, &sq, &["-comp", "xz"]);
    let ext = dir.join("ext.img");
    let st = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-d"])
        .arg(&root)
        .arg(&ext)
        .arg("32M")
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let outer: Arc<dyn FileSystem> =
        Arc::from(qvet_guestfs::open(Arc::new(MemSource(std::fs::read(&ext).unwrap()))).unwrap());
    assert_eq!(outer.kind(), "ext4");
    let node = NodeSource::open_path(outer, b"/boot/1.3.2/1.3.2.squashfs").unwrap();
    assert_eq!(node.len(), std::fs::metadata(&sq).unwrap().len());
    let inner = Squashfs::open(Arc::new(node)).unwrap();
    check_image(&inner, &src, &sq);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn detected_by_guestfs_open() {
    let (_, dir) = roundtrip("open", &["-comp", "zstd"]);
    let img = std::fs::read(dir.join("img.sq")).unwrap();
    let fs = qvet_guestfs::open(Arc::new(MemSource(img))).unwrap();
    assert_eq!(fs.kind(), "squashfs");
    let id = lookup(fs.as_ref(), b"/rel-link", true).unwrap();
    assert_eq!(read_all_in(fs.as_ref(), id, 7).unwrap(), content(1, 1));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn not_squashfs() {
    for img in [vec![0u8; 4096], vec![], b"hsq".to_vec()] {
        assert!(matches!(
            Squashfs::open(Arc::new(MemSource(img))),
            Err(FsError::NotThisFs(_))
        ));
    }
    let mut big_endian = vec![0u8; 4096];
    big_endian[..4].copy_from_slice(b"sqsh");
    assert!(matches!(
        Squashfs::open(Arc::new(MemSource(big_endian))),
        Err(FsError::Unsupported(_))
    ));
}

/// A small image (gzip, 4 KiB blocks) for the hostile tests.
fn small_image(tag: &str, args: &[&str]) -> Vec<u8> {
    let dir = scratch("squashfs", tag);
    let src = dir.join("src");
    let w = |p: &str, data: &[u8]| {
        let path = src.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    };
    w("a", &content(1, 10_000));
    w("b/c", &content(2, 100));
    w("b/d", b"");
    for i in 0..300 {
        w(&format!("many/{i}"), &content(i, i));
    }
    std::os::unix::fs::symlink("a", src.join("l")).unwrap();
    let img = dir.join("img.sq");
    mksquashfs(&src, &img, args);
    let b = std::fs::read(&img).unwrap();
    let _ = std::fs::remove_dir_all(dir);
    b
}

fn lenient(img: Vec<u8>) {
    bounded(move || {
        if let Ok(fs) = Squashfs::open(Arc::new(MemSource(img))) {
            walk_lenient(&fs);
            let _ = fs.xattrs(fs.root());
            let _ = lookup(&fs, b"/b/c", true);
        }
    });
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn hostile_truncations() {
    let img = small_image("trunc", &["-b", "4096"]);
    let used = u64_at(&img, 40) as usize;
    for cut in (0..img.len()).step_by(97).chain([used - 1, 96, 95]) {
        let mut t = img.clone();
        t.truncate(cut);
        let r = Squashfs::open(Arc::new(MemSource(t.clone())));
        if cut < used && cut >= 96 {
            assert!(r.is_err(), "cut {cut} opened");
        }
        lenient(t);
    }
}

#[test]
fn hostile_flipped_bytes_in_each_table() {
    for args in [
        &["-b", "4096"][..],
        &["-b", "4096", "-noI", "-noD", "-noF"][..],
    ] {
        let img = small_image("flip", args);
        // Table starts from the superblock.
        let starts: Vec<usize> = [64usize, 72, 80, 48, 56, 88]
            .iter()
            .map(|&o| u64_at(&img, o) as usize)
            .filter(|&s| s < img.len())
            .collect();
        let mut positions: Vec<usize> = (0..96).collect();
        for s in starts {
            positions.extend((s..(s + 64).min(img.len())).step_by(3));
        }
        positions.extend((96..img.len()).step_by(211));
        for &at in &positions {
            for x in [0xffu8, 0x80, 0x01] {
                let mut m = img.clone();
                m[at] ^= x;
                lenient(m);
            }
        }
    }
}

#[test]
fn hostile_absurd_fields() {
    let img = small_image("absurd", &["-b", "4096"]);
    let set = |at: usize, v: &[u8]| {
        let mut m = img.clone();
        m[at..at + v.len()].copy_from_slice(v);
        m
    };
    let cases = vec![
        set(12, &(1u32 << 31).to_le_bytes()), // block size
        set(22, &31u16.to_le_bytes()),        // block log
        set(16, &u32::MAX.to_le_bytes()),     // fragments
        set(26, &u16::MAX.to_le_bytes()),     // ids
        set(32, &u64::MAX.to_le_bytes()),     // root inode
        set(40, &u64::MAX.to_le_bytes()),     // bytes used
        set(48, &u64::MAX.to_le_bytes()),     // id table
        set(56, &0u64.to_le_bytes()),         // xattr table
        set(64, &0u64.to_le_bytes()),         // inode table
        set(72, &u64::MAX.to_le_bytes()),     // directory table
        set(80, &u64::MAX.to_le_bytes()),     // fragment table
        set(20, &99u16.to_le_bytes()),        // compressor
    ];
    for m in cases {
        let r = Squashfs::open(Arc::new(MemSource(m.clone())));
        assert!(r.is_err() || m[20] == 1);
        lenient(m);
    }
}

#[test]
fn hostile_random_mutations() {
    let img = small_image("rand", &["-comp", "lz4", "-b", "4096"]);
    let mut x = 0x1234_5678_9abc_def0u64;
    for _ in 0..300 {
        let mut m = img.clone();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x % m.len() as u64) as usize;
            m[at] = (x >> 32) as u8;
        }
        lenient(m);
    }
}

#[test]
fn a_node_id_outside_the_inode_table_is_an_error() {
    let img = small_image("ids", &[]);
    let fs = Squashfs::open(Arc::new(MemSource(img))).unwrap();
    for id in [u64::MAX, 1 << 40, 0xffff, 0x7fff_0000] {
        assert!(fs.metadata(NodeId(id)).is_err());
        assert!(fs.read(NodeId(id), 0, &mut [0u8; 4]).is_err());
    }
}
