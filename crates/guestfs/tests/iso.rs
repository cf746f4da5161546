//! ISO 9660 reader against images built with xorriso (plain, Joliet, Rock
//! Ridge) from a source tree, and against hostile edits of them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use qvet_guestfs::iso::Iso;
use qvet_guestfs::{lookup, FileSystem, FileType, FsError, NodeId};
use qvet_image::source::MemSource;

mod common;
use common::{bounded, content, read_all_in, scratch, walk_lenient};

fn build_tree(root: &Path, symlinks: bool) {
    let w = |p: &str, seed: usize, len: usize| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content(seed, len)).unwrap();
    };
    w("EMPTY.BIN", 1, 0);
    w("ONE.BIN", 2, 1);
    w("B2047.BIN", 3, 2047);
    w("B2048.BIN", 4, 2048);
    w("B2049.BIN", 5, 2049);
    w("BIG.BIN", 6, (1 << 20) + 3);
    w("Long File Name With Spaces and MixedCase.txt", 7, 100);
    w("a/b/c/d/e/f/g/h/i/j/deep.txt", 8, 13);
    w("dir/sub/file.dat", 9, 5000);
    for i in 0..150 {
        w(&format!("many/file number {i:03}.txt"), 100 + i, i % 9);
    }
    std::fs::create_dir_all(root.join("emptydir")).unwrap();
    let ro = root.join("ONE.BIN");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o640)).unwrap();
    if symlinks {
        std::os::unix::fs::symlink("ONE.BIN", root.join("rel-link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("abs-link")).unwrap();
        std::os::unix::fs::symlink("../dir/sub/./file.dat", root.join("a/up-link")).unwrap();
        let long = "x".repeat(200) + "/" + &"y".repeat(150);
        std::os::unix::fs::symlink(long, root.join("long-link")).unwrap();
    }
}

fn make_iso(tag: &str, flags: &[&str], symlinks: bool) -> (PathBuf, PathBuf) {
    let dir = scratch("iso", tag);
    let src = dir.join("src");
    build_tree(&src, symlinks);
    let out = dir.join("out.iso");
    let st = Command::new("xorriso")
        .args(["-as", "mkisofs"])
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    (out, src)
}

fn open_mem(img: Vec<u8>) -> Result<Iso, FsError> {
    Iso::open(Arc::new(MemSource(img)))
}

#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
    Link(Vec<u8>),
}

fn read_all(fs: &dyn FileSystem, id: NodeId) -> Result<Vec<u8>, qvet_guestfs::FsError> {
    read_all_in(fs, id, 5000)
}

fn walk_fs(fs: &dyn FileSystem) -> BTreeMap<String, (Node, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), fs.root())];
    while let Some((path, id)) = stack.pop() {
        for e in fs.read_dir(id).unwrap() {
            let p = format!("{path}/{}", String::from_utf8(e.name.clone()).unwrap());
            let md = fs.metadata(e.id).unwrap();
            assert_eq!(md.kind, e.kind, "{p}");
            let node = match e.kind {
                FileType::Dir => {
                    stack.push((p.clone(), e.id));
                    Node::Dir
                }
                FileType::Symlink => Node::Link(fs.read_link(e.id).unwrap()),
                _ => {
                    let data = read_all(fs, e.id).unwrap();
                    assert_eq!(data.len() as u64, md.size);
                    Node::File(data)
                }
            };
            out.insert(p, (node, md.mode));
        }
    }
    out
}

fn walk_src(root: &Path) -> BTreeMap<String, (Node, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((path, dir)) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = format!("{path}/{}", e.file_name().to_str().unwrap());
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let node = if md.is_dir() {
                stack.push((p.clone(), e.path()));
                Node::Dir
            } else if md.file_type().is_symlink() {
                use std::os::unix::ffi::OsStrExt;
                Node::Link(
                    std::fs::read_link(e.path())
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                )
            } else {
                Node::File(std::fs::read(e.path()).unwrap())
            };
            out.insert(p, (node, md.mode()));
        }
    }
    out
}

#[test]
fn rock_ridge_and_joliet() {
    let (img, src) = make_iso("rrj", &["-J", "-R"], true);
    let fs = open_mem(std::fs::read(&img).unwrap()).unwrap();
    assert!(fs.is_rock_ridge());
    let got = walk_fs(&fs);
    let want = walk_src(&src);
    assert_eq!(got.len(), want.len());
    for (k, (node, mode)) in &want {
        let (g, gmode) = got.get(k).unwrap_or_else(|| panic!("missing {k}"));
        assert_eq!(g, node, "{k}");
        // xorriso -R (not -r) keeps permission bits.
        if !matches!(node, Node::Link(_)) {
            assert_eq!(gmode & 0o7777, mode & 0o7777, "{k}");
        }
    }
    assert_eq!(got["/ONE.BIN"].1, 0o100_640);
    let id = lookup(&fs, b"/a/up-link", true).unwrap();
    assert_eq!(read_all(&fs, id).unwrap(), content(9, 5000));
    let md = fs
        .metadata(lookup(&fs, b"/dir/sub/file.dat", true).unwrap())
        .unwrap();
    let smd = std::fs::metadata(src.join("dir/sub/file.dat")).unwrap();
    assert_eq!(md.mtime, smd.mtime());
    assert_eq!(md.uid, smd.uid());
    let root = fs.metadata(fs.root()).unwrap();
    assert_eq!(root.kind, FileType::Dir);
    let _ = std::fs::remove_dir_all(img.parent().unwrap());
}

#[test]
fn joliet_only() {
    let (img, src) = make_iso("j", &["-J", "--norock"], false);
    let fs = open_mem(std::fs::read(&img).unwrap()).unwrap();
    assert!(fs.is_joliet());
    assert!(!fs.is_rock_ridge());
    let got = walk_fs(&fs);
    let want = walk_src(&src);
    assert_eq!(got.len(), want.len());
    for (k, (node, _)) in &want {
        assert_eq!(got.get(k).map(|g| &g.0), Some(node), "{k}");
    }
    let md = fs
        .metadata(lookup(&fs, b"/dir/sub/file.dat", true).unwrap())
        .unwrap();
    let smd = std::fs::metadata(src.join("dir/sub/file.dat")).unwrap();
    assert!((md.mtime - smd.mtime()).abs() <= 1);
    let _ = std::fs::remove_dir_all(img.parent().unwrap());
}

#[test]
fn plain_iso9660() {
    let (img, src) = make_iso("plain", &["--norock"], false);
    let fs = open_mem(std::fs::read(&img).unwrap()).unwrap();
    assert!(!fs.is_joliet() && !fs.is_rock_ridge());
    let got = walk_fs(&fs);
    let want = walk_src(&src);
    assert_eq!(got.len(), want.len());
    // Names are mangled to d-characters; 8.3 upper-case names survive.
    for n in [
        "EMPTY.BIN",
        "ONE.BIN",
        "B2047.BIN",
        "B2048.BIN",
        "B2049.BIN",
        "BIG.BIN",
    ] {
        let k = format!("/{n}");
        assert_eq!(got.get(&k).map(|g| &g.0), Some(&want[&k].0), "{k}");
    }
    let mut a: Vec<usize> = got
        .values()
        .filter_map(|(n, _)| {
            if let Node::File(d) = n {
                Some(d.len())
            } else {
                None
            }
        })
        .collect();
    let mut b: Vec<usize> = want
        .values()
        .filter_map(|(n, _)| {
            if let Node::File(d) = n {
                Some(d.len())
            } else {
                None
            }
        })
        .collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
    assert!(got.keys().all(|k| !k.contains(';')));
    let _ = std::fs::remove_dir_all(img.parent().unwrap());
}

#[test]
fn not_iso() {
    assert!(matches!(
        open_mem(vec![0u8; 40_000]),
        Err(FsError::NotThisFs("iso9660"))
    ));
}

fn rr_image(tag: &str) -> Vec<u8> {
    let (img, _) = make_iso(tag, &["-J", "-R"], true);
    std::fs::read(img).unwrap()
}

fn id_of(img: &[u8], path: &[u8]) -> u64 {
    let fs = open_mem(img.to_vec()).unwrap();
    lookup(&fs, path, false).unwrap().0
}

#[test]
fn hostile_record_length() {
    let base = rr_image("reclen");
    let off = id_of(&base, b"/ONE.BIN") as usize;
    for bad in [0u8, 1, 20, 33] {
        let mut img = base.clone();
        img[off] = bad;
        bounded(move || {
            let fs = open_mem(img).unwrap();
            walk_lenient(&fs);
        });
    }
}

#[test]
fn hostile_extent_past_end() {
    let mut img = rr_image("extent");
    let off = id_of(&img, b"/BIG.BIN") as usize;
    img[off + 2..off + 6].copy_from_slice(&0x00F0_0000u32.to_le_bytes());
    let dir = id_of(&img, b"/dir") as usize;
    img[dir + 10..dir + 14].copy_from_slice(&u32::MAX.to_le_bytes());
    bounded(move || {
        let fs = open_mem(img).unwrap();
        let id = lookup(&fs, b"/BIG.BIN", true).unwrap();
        assert!(read_all(&fs, id).is_err());
        assert!(fs.read_dir(NodeId(dir as u64)).is_err());
        walk_lenient(&fs);
    });
}

#[test]
fn hostile_ce_loop() {
    let mut img = rr_image("ce");
    for path in [&b"/ONE.BIN"[..], b"/long-link", b"/dir"] {
        let off = id_of(&img, path) as usize;
        let name_len = img[off + 32] as usize;
        let su = off + 33 + name_len + usize::from(name_len.is_multiple_of(2));
        // A CE entry that continues into itself.
        let lba = (su / 2048) as u32;
        let within = (su % 2048) as u32;
        let mut ce = vec![b'C', b'E', 28, 1];
        for v in [lba, within, 28] {
            ce.extend_from_slice(&v.to_le_bytes());
            ce.extend_from_slice(&v.to_be_bytes());
        }
        img[su..su + 28].copy_from_slice(&ce);
    }
    bounded(move || {
        let fs = open_mem(img).unwrap();
        walk_lenient(&fs);
    });
}

#[test]
fn hostile_random_mutations() {
    let base = rr_image("fuzz");
    let mut x = 0x9876_5432_u64;
    for round in 0..200 {
        let mut img = base.clone();
        for _ in 0..(1 + round % 30) {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let limit = if round % 2 == 0 {
                120 * 1024
            } else {
                img.len()
            };
            let at = 16 * 2048 + (x >> 20) as usize % (limit - 16 * 2048);
            img[at] = (x >> 8) as u8;
        }
        bounded(move || {
            if let Ok(fs) = open_mem(img) {
                walk_lenient(&fs);
            }
        });
    }
}

#[test]
fn rock_ridge_relocated_deep_dirs() {
    let (img, src) = make_iso("reloc", &["-R", "-hide-rr-moved"], true);
    let fs = open_mem(std::fs::read(&img).unwrap()).unwrap();
    assert!(fs.is_rock_ridge());
    let mut got = walk_fs(&fs);
    // The relocation directory is a real (if empty-looking) directory.
    got.retain(|k, _| !k.starts_with("/.rr_moved"));
    let want = walk_src(&src);
    assert_eq!(
        got.len(),
        want.len(),
        "{:?}",
        got.keys().collect::<Vec<_>>()
    );
    for (k, (node, _)) in &want {
        assert_eq!(got.get(k).map(|g| &g.0), Some(node), "{k}");
    }
    let id = lookup(&fs, b"/a/b/c/d/e/f/g/h/i/j/deep.txt", true).unwrap();
    assert_eq!(read_all(&fs, id).unwrap(), content(8, 13));
    let _ = std::fs::remove_dir_all(img.parent().unwrap());
}

#[test]
fn detected_by_guestfs_open() {
    let (img, _) = make_iso("detect", &["-J", "-R"], true);
    let src = qvet_image::source::FileSource::open(&img).unwrap();
    let fs = qvet_guestfs::open(Arc::new(src)).unwrap();
    assert_eq!(fs.kind(), "iso9660");
    let id = lookup(fs.as_ref(), b"/a/b/c/d/e/f/g/h/i/j/deep.txt", true).unwrap();
    assert_eq!(read_all(fs.as_ref(), id).unwrap(), content(8, 13));
    let link = lookup(fs.as_ref(), b"/long-link", false).unwrap();
    assert_eq!(fs.read_link(link).unwrap().len(), 351);
}

#[test]
fn multi_extent_file() {
    // Mark B2047.BIN's record multi-extent: the next record (B2048.BIN)
    // becomes its second extent.
    let (path, _) = make_iso("multi", &["--norock"], false);
    let mut img = std::fs::read(&path).unwrap();
    let first = id_of(&img, b"/B2047.BIN") as usize;
    let next = first + img[first] as usize;
    assert_eq!(&img[next + 33..next + 42], b"B2048.BIN");
    img[first + 25] |= 0x80;
    let fs = open_mem(img).unwrap();
    let names: Vec<Vec<u8>> = fs
        .read_dir(fs.root())
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains(&b"B2047.BIN".to_vec()));
    assert!(!names.contains(&b"B2048.BIN".to_vec()));
    let id = lookup(&fs, b"/B2047.BIN", true).unwrap();
    assert_eq!(fs.metadata(id).unwrap().size, 2047 + 2048);
    let mut want = content(3, 2047);
    want.extend_from_slice(&content(4, 2048));
    assert_eq!(read_all(&fs, id).unwrap(), want);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn volume_descriptor_facts() {
    let (path, _) = make_iso(
        "facts",
        &["-R", "-V", "MY_VOLUME", "-publisher", "QVET TESTS"],
        false,
    );
    let fs = open_mem(std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(fs.label(), b"MY_VOLUME");
    assert_eq!(fs.publisher(), b"QVET TESTS");
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(fs.volume_size() > 0 && fs.volume_size() <= len);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = fs.creation_time().unwrap();
    assert!((t - now).abs() < 86_400, "{t} vs {now}");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn byte_ranges_cover_file_data() {
    let (path, _) = make_iso("ranges", &["-J", "-R"], true);
    let img = std::fs::read(&path).unwrap();
    let fs = open_mem(img.clone()).unwrap();
    for p in [&b"/BIG.BIN"[..], b"/B2049.BIN", b"/dir/sub/file.dat"] {
        let id = lookup(&fs, p, true).unwrap();
        let mut data = Vec::new();
        for (at, len) in fs.byte_ranges_of(id).unwrap() {
            data.extend_from_slice(&img[at as usize..(at + len) as usize]);
        }
        assert_eq!(data, read_all(&fs, id).unwrap());
    }
    assert_eq!(fs.byte_ranges_of(fs.root()).unwrap().len(), 1);
    let link = lookup(&fs, b"/rel-link", false).unwrap();
    assert!(fs.byte_ranges_of(link).unwrap().is_empty());
    let empty = lookup(&fs, b"/EMPTY.BIN", false).unwrap();
    assert!(fs.byte_ranges_of(empty).unwrap().is_empty());
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn unicode_names_joliet_and_rock_ridge() {
    let name = "café ünï 日本.txt";
    for flags in [&["-J", "--norock"][..], &["-R"][..]] {
        let dir = scratch("iso", "uni");
        let src = dir.join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join(name), b"uni").unwrap();
        let out = dir.join("u.iso");
        let st = Command::new("xorriso")
            .env("LC_ALL", "C.UTF-8")
            .args(["-as", "mkisofs"])
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let fs = open_mem(std::fs::read(&out).unwrap()).unwrap();
        let names: Vec<Vec<u8>> = fs
            .read_dir(fs.root())
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, vec![name.as_bytes().to_vec()], "{flags:?}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
