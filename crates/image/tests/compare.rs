//! `compare::differing_ranges` against an oracle: both images converted to
//! raw by `qemu-img convert` and compared granule by granule, over images
//! built with qemu-img and qemu-io (compressed, plain, zero clusters,
//! backing chains, different cluster sizes and virtual sizes).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use qvet_image::compare::{differing_ranges, CompareStats, GRANULE};
use qvet_image::{Disk, OpenOptions};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("qvet-compare-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A raw disk of `mib` MiB: text-like (compressible) data with zero holes.
fn raw_pattern(path: &Path, mib: usize, seed: u32) {
    let mut b = vec![0u8; mib << 20];
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    for (i, chunk) in b.chunks_mut(64 << 10).enumerate() {
        if i % 5 == 3 {
            continue; // a 64 KiB hole
        }
        for (j, v) in chunk.iter_mut().enumerate() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *v = if j % 7 == 0 {
                b'a' + (x % 26) as u8
            } else {
                b' ' + (j % 60) as u8
            };
        }
    }
    std::fs::write(path, b).unwrap();
}

fn poke(path: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

fn open(path: &Path) -> Disk {
    let opts = OpenOptions {
        allow_backing: true,
        ..OpenOptions::default()
    };
    Disk::open(path, &opts).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Differing granules of two raw files, the shorter padded with zeros and
/// the last range cut at the longer size.
fn oracle(a: &Path, b: &Path) -> Vec<(u64, u64)> {
    let (mut x, mut y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let size = x.len().max(y.len());
    x.resize(size, 0);
    y.resize(size, 0);
    let g = GRANULE as usize;
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (i, (ca, cb)) in x.chunks(g).zip(y.chunks(g)).enumerate() {
        if ca != cb {
            let (st, en) = ((i * g) as u64, ((i * g + ca.len()) as u64));
            match out.last_mut() {
                Some((_, e)) if *e == st => *e = en,
                _ => out.push((st, en)),
            }
        }
    }
    out
}

/// Compares `a` and `b` with qvet and with the oracle; returns qvet's stats.
fn check(sc: &Scratch, a: &Path, b: &Path) -> CompareStats {
    let (ra, rb) = (sc.path("oracle-a.raw"), sc.path("oracle-b.raw"));
    run("qemu-img", &["convert", "-U", "-O", "raw", s(a), s(&ra)]);
    run("qemu-img", &["convert", "-U", "-O", "raw", s(b), s(&rb)]);
    let want = oracle(&ra, &rb);
    let (got, stats) = differing_ranges(&open(a), &open(b), &|_| {}).unwrap();
    assert_eq!(got, want, "{} vs {}", a.display(), b.display());
    let total = stats.zero_bytes + stats.same_stream_bytes + stats.compared_bytes;
    let size = std::fs::metadata(&ra)
        .unwrap()
        .len()
        .max(std::fs::metadata(&rb).unwrap().len());
    assert_eq!(total, size, "every byte accounted for once");
    stats
}

#[test]
fn compressed_pairs_skip_identical_streams_and_find_every_change() {
    let sc = Scratch::new("zlib");
    let (r, r2) = (sc.path("r.raw"), sc.path("r2.raw"));
    raw_pattern(&r, 6, 1);
    std::fs::copy(&r, &r2).unwrap();
    poke(&r2, 70_000, b"X");
    poke(&r2, (3 << 20) + 4095, b"YZ"); // straddles two granules
    poke(&r2, 5 * 65536 + 10, b"in a hole");
    let (a, b) = (sc.path("a.qcow2"), sc.path("b.qcow2"));
    for (src, dst) in [(&r, &a), (&r2, &b)] {
        run(
            "qemu-img",
            &["convert", "-c", "-O", "qcow2", s(src), s(dst)],
        );
    }
    let st = check(&sc, &a, &b);
    assert!(st.same_stream_bytes >= 4 << 20, "{st:?}");
    assert!(st.compared_bytes <= 4 * 65536, "{st:?}");
    // Identical images: nothing inflated, nothing compared.
    let c = sc.path("a-again.qcow2");
    run("qemu-img", &["convert", "-c", "-O", "qcow2", s(&r), s(&c)]);
    let st = check(&sc, &a, &c);
    assert_eq!(st.compared_bytes, 0, "{st:?}");
    // zstd against zlib: different streams, compared by content.
    let z = sc.path("a-zstd.qcow2");
    run(
        "qemu-img",
        &[
            "convert",
            "-c",
            "-O",
            "qcow2",
            "-o",
            "compression_type=zstd",
            s(&r2),
            s(&z),
        ],
    );
    let st = check(&sc, &a, &z);
    assert_eq!(st.same_stream_bytes, 0, "{st:?}");
}

#[test]
fn mixed_containers_cluster_sizes_and_sizes_match_the_oracle() {
    let sc = Scratch::new("mixed");
    let (r, r2) = (sc.path("r.raw"), sc.path("r2.raw"));
    raw_pattern(&r, 5, 2);
    std::fs::copy(&r, &r2).unwrap();
    poke(&r2, 2 << 20, b"changed");
    let plain4k = sc.path("plain4k.qcow2");
    run(
        "qemu-img",
        &[
            "convert",
            "-O",
            "qcow2",
            "-o",
            "cluster_size=4096",
            s(&r),
            s(&plain4k),
        ],
    );
    let z64k = sc.path("z64k.qcow2");
    run(
        "qemu-img",
        &["convert", "-c", "-O", "qcow2", s(&r2), s(&z64k)],
    );
    let z2m = sc.path("z2m.qcow2");
    run(
        "qemu-img",
        &[
            "convert",
            "-c",
            "-O",
            "qcow2",
            "-o",
            "cluster_size=2M",
            s(&r),
            s(&z2m),
        ],
    );
    check(&sc, &plain4k, &z64k);
    check(&sc, &z2m, &z64k);
    check(&sc, &r, &z2m);
    check(&sc, &r2, &plain4k);
    // A longer disk whose tail is zero differs only where B wrote data.
    let longer = sc.path("longer.qcow2");
    run("qemu-img", &["convert", "-O", "qcow2", s(&r), s(&longer)]);
    run("qemu-img", &["resize", "-q", s(&longer), "9M"]);
    run("qemu-io", &["-c", "write -P 0x33 8M 3000", s(&longer)]);
    check(&sc, &r, &longer);
    check(&sc, &longer, &z64k);
}

#[test]
fn backing_chains_and_zero_clusters_match_the_oracle() {
    let sc = Scratch::new("chain");
    let r = sc.path("base.raw");
    raw_pattern(&r, 4, 3);
    let base = sc.path("base.qcow2");
    run(
        "qemu-img",
        &["convert", "-c", "-O", "qcow2", s(&r), s(&base)],
    );
    let over = sc.path("over.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            s(&base),
            "-F",
            "qcow2",
            s(&over),
        ],
    );
    // Unchanged overlay: equal to its base without reading the shared part twice.
    let st = check(&sc, &base, &over);
    assert!(st.same_stream_bytes > 0, "{st:?}");
    run("qemu-io", &["-c", "write -P 0x5a 1M 4k", s(&over)]);
    run("qemu-io", &["-c", "write -z 2M 128k", s(&over)]);
    run("qemu-io", &["-c", "write -z 3M 64k", s(&base)]);
    check(&sc, &base, &over);
    check(&sc, &r, &over);
    // Extended L2 with subclusters: zeroes and writes below a cluster.
    let ext = sc.path("ext.qcow2");
    run(
        "qemu-img",
        &[
            "convert",
            "-O",
            "qcow2",
            "-o",
            "extended_l2=on,cluster_size=64k",
            s(&r),
            s(&ext),
        ],
    );
    run("qemu-io", &["-c", "write -z 4k 2k", s(&ext)]);
    run("qemu-io", &["-c", "write -P 1 70k 1k", s(&ext)]);
    check(&sc, &ext, &r);
    check(&sc, &ext, &over);
}

/// Partial reads of compressed clusters (served from the inflated-cluster
/// cache after the first) equal the bytes `qemu-img convert` produces, in
/// an order that revisits and evicts clusters.
#[test]
fn partial_compressed_reads_match_the_oracle() {
    let sc = Scratch::new("partial");
    let r = sc.path("r.raw");
    raw_pattern(&r, 3, 4);
    let want = std::fs::read(&r).unwrap();
    for opts in [
        "cluster_size=4096",
        "cluster_size=65536",
        "compression_type=zstd",
    ] {
        let img = sc.path("p.qcow2");
        run(
            "qemu-img",
            &["convert", "-c", "-O", "qcow2", "-o", opts, s(&r), s(&img)],
        );
        let disk = open(&img);
        let mut x = 12345u64;
        for _ in 0..3000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let off = (x >> 20) % (want.len() as u64 - 1);
            let len = ((x >> 8) % 9000 + 1).min(want.len() as u64 - off) as usize;
            let mut buf = vec![0u8; len];
            disk.read_at(off, &mut buf).unwrap();
            assert!(
                buf == want[off as usize..off as usize + len],
                "{opts}: {off:#x}+{len}"
            );
        }
    }
}

/// A 1 PiB, unallocated qcow2 against itself and against a small raw disk:
/// the work follows the allocation, not the virtual size (guarded against a
/// hang by a generous deadline, not timed).
#[test]
fn huge_unallocated_disks_compare_by_their_mappings() {
    let sc = Scratch::new("huge");
    let big = sc.path("big.qcow2");
    run("qemu-img", &["create", "-q", "-f", "qcow2", s(&big), "1P"]);
    run("qemu-io", &["-c", "write -P 0x41 512G 4k", s(&big)]);
    let small = sc.path("small.raw");
    std::fs::write(&small, vec![0u8; 1 << 20]).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (b2, s2) = (big.clone(), small.clone());
    std::thread::spawn(move || {
        let same = differing_ranges(&open(&b2), &open(&b2), &|_| {}).map(|r| r.0);
        let other = differing_ranges(&open(&b2), &open(&s2), &|_| {}).map(|r| r.0);
        let _ = tx.send((same, other));
    });
    let (same, other) = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("comparing a 1 PiB unallocated disk must not scan its virtual size");
    assert_eq!(same.unwrap(), vec![]);
    assert_eq!(other.unwrap(), vec![(512 << 30, (512 << 30) + 4096)]);
}
