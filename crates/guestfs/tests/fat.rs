//! FAT reader against images built with mkfs.fat + mtools from a source tree.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use qvet_guestfs::fat::{Fat, FatType};
use qvet_guestfs::{lookup, FileSystem, FileType, NodeId};
use qvet_image::source::MemSource;

mod common;
use common::{bounded, content, read_all_in, scratch, walk_lenient};

fn build_tree(root: &Path, cs: usize, many: usize) {
    let w = |p: &str, seed: usize, len: usize| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content(seed, len)).unwrap();
    };
    w("EMPTY.BIN", 1, 0);
    w("ONE.BIN", 2, 1);
    w("CSMINUS.BIN", 3, cs - 1);
    w("CS.BIN", 4, cs);
    w("CSPLUS.BIN", 5, cs + 1);
    w("BIG.BIN", 6, (1 << 20) + 3);
    w("Long File Name With Spaces.txt", 7, 100);
    w("MixedCase.Txt", 8, 10);
    w("lower.txt", 9, 11);
    w("a.very.long.extension.name", 10, 12);
    w("a/b/c/d/e/deep.txt", 11, 13);
    w("a/b/c/d/e/Deep Long Name.dat", 12, 2 * cs + 5);
    for i in 0..many {
        w(&format!("many/file number {i:03}.txt"), 100 + i, i % 7);
    }
    std::fs::create_dir_all(root.join("emptydir")).unwrap();
}

fn make_image(tag: &str, fat: u8, kb: u32, spc: u32, many: usize) -> (PathBuf, PathBuf, usize) {
    let dir = scratch("fat", tag);
    let src = dir.join("src");
    let cs = spc as usize * 512;
    build_tree(&src, cs, many);
    let img = dir.join("fat.img");
    let st = Command::new("/usr/sbin/mkfs.fat")
        .args(["-C", "-F", &fat.to_string(), "-s", &spc.to_string()])
        .arg(&img)
        .arg(kb.to_string())
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let mut cmd = Command::new("mcopy");
    cmd.env("MTOOLS_SKIP_CHECK", "1")
        .arg("-s")
        .arg("-i")
        .arg(&img);
    for e in std::fs::read_dir(&src).unwrap() {
        cmd.arg(e.unwrap().path());
    }
    let st = cmd.arg("::/").output().unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    (img, src, cs)
}

fn open_file(img: &Path) -> Fat {
    let data = std::fs::read(img).unwrap();
    Fat::open(Arc::new(MemSource(data))).unwrap()
}

#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
}

fn read_all(fs: &dyn FileSystem, id: NodeId) -> Result<Vec<u8>, qvet_guestfs::FsError> {
    read_all_in(fs, id, 7000)
}

fn walk_fs(fs: &dyn FileSystem) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), fs.root())];
    while let Some((path, id)) = stack.pop() {
        for e in fs.read_dir(id).unwrap() {
            let p = format!("{path}/{}", String::from_utf8(e.name.clone()).unwrap());
            let md = fs.metadata(e.id).unwrap();
            assert_eq!(md.kind, e.kind);
            match e.kind {
                FileType::Dir => {
                    out.insert(p.clone(), Node::Dir);
                    stack.push((p, e.id));
                }
                _ => {
                    let data = read_all(fs, e.id).unwrap();
                    assert_eq!(data.len() as u64, md.size);
                    out.insert(p, Node::File(data));
                }
            }
        }
    }
    out
}

fn walk_src(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((path, dir)) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = format!("{path}/{}", e.file_name().to_str().unwrap());
            if e.file_type().unwrap().is_dir() {
                out.insert(p.clone(), Node::Dir);
                stack.push((p, e.path()));
            } else {
                out.insert(p, Node::File(std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

fn check(tag: &str, fat: u8, kb: u32, spc: u32, want: FatType) {
    let (img, src, cs) = make_image(tag, fat, kb, spc, 500);
    let fs = open_file(&img);
    assert_eq!(fs.fat_type(), want);
    assert_eq!(fs.cluster_size() as usize, cs);
    assert!(fs.compare_fat_copies().unwrap());
    let got = walk_fs(&fs);
    let expect = walk_src(&src);
    assert_eq!(got.len(), expect.len());
    for (k, v) in &expect {
        assert_eq!(got.get(k), Some(v), "{k}");
    }
    // The many-file directory needs several clusters.
    let many = lookup(&fs, b"/many", true).unwrap();
    assert_eq!(fs.read_dir(many).unwrap().len(), 500);
    let deep = lookup(&fs, b"/a/b/c/d/e/deep.txt", true).unwrap();
    let md = fs.metadata(deep).unwrap();
    assert_eq!(md.mode, 0o100_644);
    assert_eq!(md.size, 13);
    // mtools stamps the current time.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (md.mtime - now).abs() < 2 * 86_400,
        "mtime {} now {now}",
        md.mtime
    );
    // mdir agrees on the root names.
    let out = Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-/", "-a", "-b", "-i"])
        .arg(&img)
        .arg("::/")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    let n_mdir = listed.lines().filter(|l| !l.trim().is_empty()).count();
    let n_ours = got.keys().filter(|k| !k.ends_with('/')).count();
    assert_eq!(n_mdir, n_ours, "{listed}");
    let _ = std::fs::remove_dir_all(img.parent().unwrap());
}

#[test]
fn fat12_tree() {
    check("f12", 12, 4000, 4, FatType::Fat12);
}

#[test]
fn fat16_tree() {
    check("f16", 16, 20000, 4, FatType::Fat16);
}

#[test]
fn fat32_tree() {
    check("f32", 32, 40000, 1, FatType::Fat32);
}

/// `mkfs.fat -F 32` with 8-sector clusters on 40 MB: about 10,000 clusters,
/// below the specification's FAT32 minimum. Linux and `fsck.fat` read the
/// BPB's FAT32 layout, and so must we (read as FAT16 it looks corrupt).
/// (mtools reads such a volume as FAT16 and cannot write it, so it is empty
/// but for its label; `fsck.fat -v` gives the geometry.)
#[test]
fn fat32_below_65525_clusters() {
    let dir = scratch("fat", "f32small");
    let img = dir.join("small.img");
    let st = Command::new("/usr/sbin/mkfs.fat")
        .args(["-F", "32", "-s", "8", "-n", "QVETSMALL", "-C"])
        .arg(&img)
        .arg("40000")
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    let fsck = Command::new("/usr/sbin/fsck.fat")
        .args(["-n", "-v"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{fsck:?}");
    let report = String::from_utf8_lossy(&fsck.stdout);
    let number_before = |what: &str| -> u64 {
        let line = report.lines().find(|l| l.contains(what)).unwrap();
        line.split_whitespace().next().unwrap().parse().unwrap()
    };
    let clusters = number_before("data clusters");
    assert!(clusters < 65525, "{report}");
    let bytes = std::fs::read(&img).unwrap();
    let fs = Fat::open(Arc::new(MemSource(bytes))).unwrap();
    assert_eq!(fs.fat_type(), FatType::Fat32);
    assert_eq!(u64::from(fs.cluster_count()), clusters);
    assert_eq!(fs.cluster_size(), number_before("bytes per cluster"));
    assert!(report.contains(&format!("Data area starts at byte {}", fs.data_offset())));
    assert_eq!(fs.label().unwrap().as_deref(), Some(&b"QVETSMALL"[..]));
    // Only the root directory's cluster is in use.
    let free = fs.free_space().unwrap();
    assert_eq!(free.kept_whole, None);
    assert_eq!(free.free_bytes(), (clusters - 1) * fs.cluster_size());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn not_fat() {
    let r = Fat::open(Arc::new(MemSource(vec![0u8; 65536])));
    assert!(matches!(r, Err(qvet_guestfs::FsError::NotThisFs("fat"))));
}

fn small_image(tag: &str) -> Vec<u8> {
    let (img, _src, _) = make_image(tag, 16, 8000, 2, 100);
    std::fs::read(img).unwrap()
}

fn set_fat16(img: &mut [u8], cluster: u32, value: u16) {
    let rsvd = u16::from_le_bytes([img[14], img[15]]) as usize;
    let bps = u16::from_le_bytes([img[11], img[12]]) as usize;
    let at = rsvd * bps + cluster as usize * 2;
    img[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn first_cluster_of(img: &[u8], path: &[u8]) -> (u64, u32) {
    let fs = Fat::open(Arc::new(MemSource(img.to_vec()))).unwrap();
    let id = lookup(&fs, path, true).unwrap();
    let o = id.0 as usize;
    let c = u32::from(u16::from_le_bytes([img[o + 26], img[o + 27]]));
    (id.0, c)
}

#[test]
fn hostile_chain_loop() {
    let mut img = small_image("loop");
    let (_, c) = first_cluster_of(&img, b"/BIG.BIN");
    set_fat16(&mut img, c, c as u16);
    bounded(move || {
        let fs = Fat::open(Arc::new(MemSource(img))).unwrap();
        let id = lookup(&fs, b"/BIG.BIN", true).unwrap();
        assert!(read_all(&fs, id).is_err());
    });
}

#[test]
fn hostile_dir_loop() {
    let mut img = small_image("dirloop");
    let (_, c) = first_cluster_of(&img, b"/many");
    // Second cluster of the directory points back to the first.
    let rsvd = u16::from_le_bytes([img[14], img[15]]) as usize;
    let at = rsvd * 512 + c as usize * 2;
    let second = u16::from_le_bytes([img[at], img[at + 1]]);
    set_fat16(&mut img, u32::from(second), c as u16);
    bounded(move || {
        let fs = Fat::open(Arc::new(MemSource(img))).unwrap();
        let id = lookup(&fs, b"/many", true).unwrap();
        assert!(fs.read_dir(id).is_err());
        walk_lenient(&fs);
    });
}

#[test]
fn hostile_bps_zero() {
    let mut img = small_image("bps0");
    img[11] = 0;
    img[12] = 0;
    assert!(Fat::open(Arc::new(MemSource(img))).is_err());
}

#[test]
fn hostile_huge_cluster_count() {
    let mut img = small_image("huge");
    img[19] = 0;
    img[20] = 0;
    img[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
    bounded(move || {
        if let Ok(fs) = Fat::open(Arc::new(MemSource(img))) {
            walk_lenient(&fs);
        }
    });
}

#[test]
fn hostile_random_mutations() {
    let base = small_image("fuzz");
    let mut x = 0x1234_5678_u64;
    for round in 0..200 {
        let mut img = base.clone();
        for _ in 0..(1 + round % 40) {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let limit = if round % 2 == 0 {
                128 * 1024
            } else {
                img.len()
            };
            let at = (x >> 20) as usize % limit;
            img[at] = (x >> 8) as u8;
        }
        bounded(move || {
            if let Ok(fs) = Fat::open(Arc::new(MemSource(img))) {
                walk_lenient(&fs);
                let _ = fs.compare_fat_copies();
                let _ = fs.deleted_entries(fs.root());
            }
        });
    }
}

#[test]
fn deleted_entries_listed() {
    let (img, _src, _) = make_image("del", 16, 8000, 2, 3);
    mdel(&img, "::/ONE.BIN");
    let fs = open_file(&img);
    let del = fs.deleted_entries(fs.root()).unwrap();
    assert!(
        del.iter().any(|d| d.name == b"?NE.BIN" && d.size == 1),
        "{del:?}"
    );
    assert!(lookup(&fs, b"/ONE.BIN", true).is_err());
}

/// `mdel` of long-named files: the long name is rebuilt from the deleted
/// long-name entries and the short name's lost first byte from their
/// checksum (the oracle is the name mcopy stored).
#[test]
fn deleted_long_names_recovered() {
    let (img, _src, _) = make_image("del-lfn", 16, 8000, 2, 3);
    let fs = open_file(&img);
    let live = fs.read_dir(fs.root()).unwrap();
    assert!(live
        .iter()
        .any(|e| e.name == b"Long File Name With Spaces.txt"));
    let dir = lookup(&fs, b"/a/b/c/d/e", true).unwrap();
    let deep = fs.read_dir(dir).unwrap();
    assert!(deep.iter().any(|e| e.name == b"Deep Long Name.dat"));
    for victim in [
        "::/Long File Name With Spaces.txt",
        "::/a/b/c/d/e/Deep Long Name.dat",
    ] {
        mdel(&img, victim);
    }
    let fs = open_file(&img);
    let del = fs.deleted_entries(fs.root()).unwrap();
    let hit = del
        .iter()
        .find(|d| d.long_name.as_deref() == Some(&b"Long File Name With Spaces.txt"[..]))
        .unwrap_or_else(|| panic!("{del:?}"));
    // mcopy's short name for it is LONGFI~1.TXT.
    assert_eq!(hit.name, b"LONGFI~1.TXT", "{hit:?}");
    assert_eq!(hit.size, 100);
    let dir = lookup(&fs, b"/a/b/c/d/e", true).unwrap();
    let del = fs.deleted_entries(dir).unwrap();
    assert!(
        del.iter().any(
            |d| d.long_name.as_deref() == Some(&b"Deep Long Name.dat"[..])
                && d.name.first() == Some(&b'D')
        ),
        "{del:?}"
    );
    // Short-only names keep an unknown first byte.
    mdel(&img, "::/CS.BIN");
    let fs = open_file(&img);
    let del = fs.deleted_entries(fs.root()).unwrap();
    assert!(
        del.iter()
            .any(|d| d.name == b"?S.BIN" && d.long_name.is_none()),
        "{del:?}"
    );
}

/// Deletes `path` (`::/...`) from the FAT image with mtools' `mdel`.
fn mdel(img: &Path, path: &str) {
    let st = Command::new("mdel")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(img)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
}

fn raw_short(img: &[u8], off: usize) -> Vec<u8> {
    let e = &img[off..off + 11];
    let base: Vec<u8> = e[..8].iter().copied().filter(|&b| b != b' ').collect();
    let ext: Vec<u8> = e[8..].iter().copied().filter(|&b| b != b' ').collect();
    [base, b".".to_vec(), ext].concat()
}

#[test]
fn lfn_checksum_and_nt_case_flags() {
    let (path, _src, _) = make_image("lfn", 16, 8000, 2, 3);
    let base = std::fs::read(&path).unwrap();
    let (off, _) = first_cluster_of(&base, b"/Long File Name With Spaces.txt");
    let off = off as usize;
    let short = raw_short(&base, off);
    assert!(
        short.starts_with(b"LONG"),
        "{}",
        String::from_utf8_lossy(&short)
    );
    assert_eq!(
        base[off - 32 + 11],
        0x0F,
        "LFN entry expected before the short entry"
    );
    let names = |img: Vec<u8>| -> Vec<Vec<u8>> {
        let fs = Fat::open(Arc::new(MemSource(img))).unwrap();
        fs.read_dir(fs.root())
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect()
    };
    // A wrong LFN checksum: the 8.3 name is used.
    let mut img = base.clone();
    img[off - 32 + 13] ^= 0x55;
    let n = names(img);
    assert!(n.contains(&short), "{n:?}");
    assert!(!n.iter().any(|x| x == b"Long File Name With Spaces.txt"));
    // LFN entries deleted and NT flags set: lower-case 8.3 name.
    let mut img = base.clone();
    let mut at = off - 32;
    while img[at + 11] == 0x0F {
        img[at] = 0xE5;
        at -= 32;
    }
    img[off + 12] = 0x18;
    let n = names(img);
    assert!(n.contains(&short.to_ascii_lowercase()), "{n:?}");
    // Only the base lower-cased.
    let mut img = base;
    let mut at = off - 32;
    while img[at + 11] == 0x0F {
        img[at] = 0xE5;
        at -= 32;
    }
    img[off + 12] = 0x08;
    let dot = short.iter().position(|&b| b == b'.').unwrap();
    let mut want = short[..dot].to_ascii_lowercase();
    want.extend_from_slice(&short[dot..]);
    let n = names(img);
    assert!(n.contains(&want), "{n:?}");
}

#[test]
fn mtime_preserved_by_mcopy_m() {
    let dir = scratch("fat", "mtime");
    let f = dir.join("stamp.txt");
    std::fs::write(&f, b"x").unwrap();
    let st = Command::new("touch")
        .env("TZ", "UTC")
        .args(["-d", "2021-03-04 05:06:08"])
        .arg(&f)
        .status()
        .unwrap();
    assert!(st.success());
    let img = dir.join("t.img");
    assert!(Command::new("/usr/sbin/mkfs.fat")
        .args(["-C", "-F", "12"])
        .arg(&img)
        .arg("1440")
        .output()
        .unwrap()
        .status
        .success());
    let st = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("TZ", "UTC")
        .args(["-m", "-i"])
        .arg(&img)
        .arg(&f)
        .arg("::/")
        .output()
        .unwrap();
    assert!(st.status.success());
    let fs = open_file(&img);
    let id = lookup(&fs, b"/stamp.txt", true).unwrap();
    assert_eq!(fs.metadata(id).unwrap().mtime, 1_614_834_368);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn read_only_attribute_and_fat_mirror_check() {
    let (path, _src, _) = make_image("attr", 32, 40000, 1, 3);
    let st = Command::new("mattrib")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["+r", "-i"])
        .arg(&path)
        .arg("::/ONE.BIN")
        .output()
        .unwrap();
    assert!(st.status.success());
    let mut img = std::fs::read(&path).unwrap();
    let fs = Fat::open(Arc::new(MemSource(img.clone()))).unwrap();
    let id = lookup(&fs, b"/ONE.BIN", true).unwrap();
    assert_eq!(fs.metadata(id).unwrap().mode, 0o100_444);
    let dir = lookup(&fs, b"/many", true).unwrap();
    assert_eq!(fs.metadata(dir).unwrap().mode, 0o040_755);
    assert!(fs.compare_fat_copies().unwrap());
    // Damage FAT #2: copies differ, reads (from FAT #1) still work.
    let rsvd = u16::from_le_bytes([img[14], img[15]]) as usize;
    let fatsz = u32::from_le_bytes(img[36..40].try_into().unwrap()) as usize;
    let second = (rsvd + fatsz) * 512;
    img[second + 64] ^= 0xFF;
    let fs = Fat::open(Arc::new(MemSource(img))).unwrap();
    assert!(!fs.compare_fat_copies().unwrap());
    assert_eq!(read_all(&fs, id).unwrap(), content(2, 1));
}

#[test]
fn detected_by_guestfs_open() {
    let (img, _src, _) = make_image("detect", 12, 4000, 4, 2);
    let src = qvet_image::source::FileSource::open(&img).unwrap();
    let fs = qvet_guestfs::open(Arc::new(src)).unwrap();
    assert_eq!(fs.kind(), "vfat");
    let id = lookup(fs.as_ref(), b"/a/b/c/d/e/deep.txt", true).unwrap();
    assert_eq!(read_all(fs.as_ref(), id).unwrap(), content(11, 13));
}

#[test]
fn boot_sector_facts() {
    for (fat, kb) in [("12", "1440"), ("16", "20000"), ("32", "40000")] {
        let dir = scratch("fat", "facts");
        let img = dir.join("l.img");
        let st = Command::new("/usr/sbin/mkfs.fat")
            .args([
                "-C", "-F", fat, "-s", "1", "-n", "MYLABEL", "-i", "1234ABCD",
            ])
            .arg(&img)
            .arg(kb)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let fs = open_file(&img);
        assert_eq!(fs.oem_name(), b"mkfs.fat");
        assert_eq!(fs.volume_id(), Some(0x1234_ABCD), "FAT{fat}");
        assert_eq!(
            fs.label().unwrap().as_deref(),
            Some(&b"MYLABEL"[..]),
            "FAT{fat}"
        );
        assert!(
            fs.read_dir(fs.root()).unwrap().is_empty(),
            "label entry listed"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn byte_ranges_cover_file_data() {
    for (fat, kb, spc) in [(12u8, 4000u32, 4u32), (32, 40000, 1)] {
        let (path, _src, cs) = make_image("ranges", fat, kb, spc, 20);
        let img = std::fs::read(&path).unwrap();
        let fs = open_file(&path);
        for p in [&b"/BIG.BIN"[..], b"/CSPLUS.BIN", b"/a/b/c/d/e/deep.txt"] {
            let id = lookup(&fs, p, true).unwrap();
            let size = fs.metadata(id).unwrap().size as usize;
            let ranges = fs.byte_ranges_of(id).unwrap();
            let mut data = Vec::new();
            for (at, len) in &ranges {
                data.extend_from_slice(&img[*at as usize..(*at + *len) as usize]);
            }
            assert_eq!(data.len(), size.div_ceil(cs) * cs);
            data.truncate(size);
            assert_eq!(data, read_all(&fs, id).unwrap());
            let first = ((ranges[0].0 - fs.data_offset()) / cs as u64) as u32 + 2;
            assert!(fs.cluster_in_use(first));
        }
        let many = lookup(&fs, b"/many", true).unwrap();
        assert!(!fs.byte_ranges_of(many).unwrap().is_empty());
        assert!(!fs.byte_ranges_of(fs.root()).unwrap().is_empty());
        assert!(!fs.cluster_in_use(fs.cluster_count() + 1));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}

#[test]
fn unicode_long_names() {
    let dir = scratch("fat", "uni");
    // BMP only: mtools stores UCS-2 (an emoji loses its high bits).
    let name = "café ünï 日本.txt";
    let f = dir.join(name);
    std::fs::write(&f, b"uni").unwrap();
    let img = dir.join("u.img");
    assert!(Command::new("/usr/sbin/mkfs.fat")
        .args(["-C"])
        .arg(&img)
        .arg("1440")
        .output()
        .unwrap()
        .status
        .success());
    let st = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("LC_ALL", "C.UTF-8")
        .arg("-i")
        .arg(&img)
        .arg(&f)
        .arg("::/")
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let fs = open_file(&img);
    let names: Vec<Vec<u8>> = fs
        .read_dir(fs.root())
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec![name.as_bytes().to_vec()]);
    let id = lookup(&fs, name.as_bytes(), true).unwrap();
    assert_eq!(read_all(&fs, id).unwrap(), b"uni");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn hostile_short_chain_and_huge_size() {
    let mut img = small_image("short");
    let (off, _) = first_cluster_of(&img, b"/CSPLUS.BIN");
    // Claim 4 GiB - 1 bytes on a 2-cluster chain.
    img[off as usize + 28..off as usize + 32].copy_from_slice(&u32::MAX.to_le_bytes());
    bounded(move || {
        let fs = Fat::open(Arc::new(MemSource(img))).unwrap();
        let id = lookup(&fs, b"/CSPLUS.BIN", true).unwrap();
        assert_eq!(fs.metadata(id).unwrap().size, u64::from(u32::MAX));
        let mut buf = vec![0u8; 4096];
        let n = fs.read(id, 0, &mut buf).unwrap();
        assert_eq!(n, 2048);
        assert!(matches!(
            fs.read(id, 2048, &mut buf),
            Err(qvet_guestfs::FsError::Corrupt(_))
        ));
        assert!(fs.read(id, 1 << 31, &mut buf).is_err());
    });
}
