//! Differential tests: `qvet info/map/convert` against `qemu-img` 10.0.2 on
//! images built at test time with `qemu-img create`, `qemu-io` and
//! `qemu-img convert/snapshot/bitmap`.
//!
//! For every image: `qvet info --output json` must equal
//! `qemu-img info --output=json` (minus the `"qvet"` key), `qvet map
//! --output json` must be byte-identical to `qemu-img map --output=json`,
//! and `qvet convert -O raw` must be byte-identical to `qemu-img convert -O
//! raw` with a length equal to the virtual size.

// Test code: panicking on a broken fixture or a mismatch is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use std::path::Path;

const K: u64 = 1024;
const M: u64 = 1024 * 1024;

/// Writes a compressible text pattern file and an incompressible one, each
/// of `len` bytes; returns their paths.
fn pattern_files(s: &Scratch, len: u64) -> (String, String) {
    let text = s.s("text.bin");
    let rand = s.s("random.bin");
    write_file(&text, &text_bytes(len as usize, 7));
    write_file(&rand, &random_bytes(len as usize, 11));
    (text, rand)
}

/// A mixed workload scaled to the cluster size `cs`: full-cluster data,
/// text data, a partial (COW) write, compressed text, compressed fill,
/// zero writes on unallocated and on allocated clusters, data near the end.
fn workload(s: &Scratch, img: &str, cs: u64, vsize: u64) {
    let (text, rand) = pattern_files(s, 4 * cs.max(64 * K));
    let cmds = [
        format!("write -q -P 0x11 0 {}", 2 * cs),
        format!("write -q -s {text} {} {}", 3 * cs, cs),
        format!("write -q -P 0x22 {} 1024", 5 * cs + 512),
        format!("write -q -c -s {text} {} {}", 8 * cs, 2 * cs),
        format!("write -q -c -P 0x44 {} {}", 12 * cs, cs),
        format!("write -q -c -s {rand} {} {}", 13 * cs, cs),
        format!("write -q -z {} {}", 20 * cs, cs),
        format!("write -q -z 0 {cs}"),
        format!("write -q -P 0x55 {} {}", vsize - 2 * cs, cs),
    ];
    let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
    qemu_io("qcow2", img, &refs);
}

fn plain_case(tag: &str, create_opts: &str, cs: u64, vsize: u64) {
    let s = Scratch::new(tag);
    let img = s.s("img.qcow2");
    create("qcow2", create_opts, &img, &vsize.to_string());
    workload(&s, &img, cs, vsize);
    check_all(&s, &img, &Opts::qcow2());
}

// ---------------------------------------------------------------------------
// Versions and cluster sizes
// ---------------------------------------------------------------------------

#[test]
fn v2_cluster_512() {
    plain_case("v2-512", "compat=0.10,cluster_size=512", 512, 16 * M);
}

#[test]
fn v2_cluster_4k() {
    plain_case("v2-4k", "compat=0.10,cluster_size=4096", 4 * K, 64 * M);
}

#[test]
fn v2_cluster_64k() {
    plain_case("v2-64k", "compat=0.10", 64 * K, 64 * M);
}

#[test]
fn v2_cluster_2m() {
    plain_case("v2-2m", "compat=0.10,cluster_size=2M", 2 * M, 64 * M);
}

#[test]
fn v3_cluster_512() {
    plain_case("v3-512", "compat=1.1,cluster_size=512", 512, 16 * M);
}

#[test]
fn v3_cluster_4k() {
    plain_case("v3-4k", "compat=1.1,cluster_size=4096", 4 * K, 64 * M);
}

#[test]
fn v3_cluster_64k() {
    plain_case("v3-64k", "compat=1.1", 64 * K, 64 * M);
}

#[test]
fn v3_cluster_2m() {
    plain_case("v3-2m", "compat=1.1,cluster_size=2M", 2 * M, 64 * M);
}

#[test]
fn v3_zstd_cluster_4k_written_compressed() {
    plain_case(
        "v3-zstd-4k",
        "compat=1.1,cluster_size=4096,compression_type=zstd",
        4 * K,
        64 * M,
    );
}

#[test]
fn v3_zstd_cluster_2m_written_compressed() {
    plain_case(
        "v3-zstd-2m",
        "compat=1.1,cluster_size=2M,compression_type=zstd",
        2 * M,
        64 * M,
    );
}

#[test]
fn probed_qcow2_without_format_flag() {
    let s = Scratch::new("probe-qcow2");
    let img = s.s("img.qcow2");
    create("qcow2", "", &img, "64M");
    workload(&s, &img, 64 * K, 64 * M);
    check_all(&s, &img, &Opts::probe());
}

// ---------------------------------------------------------------------------
// Compression: convert -c (zlib / zstd) mixed with qemu-io writes
// ---------------------------------------------------------------------------

/// A raw source with compressible text, incompressible random data, zeros
/// and unaligned pieces.
fn mixed_raw_source(s: &Scratch, name: &str, size: u64) -> String {
    let raw = s.s(name);
    let f = std::fs::File::create(&raw).expect("create raw");
    f.set_len(size).expect("set_len");
    drop(f);
    poke(&raw, 0, &text_bytes((2 * M) as usize, 1));
    poke(&raw, 4 * M, &random_bytes(M as usize, 2));
    poke(&raw, 10 * M + 777, &text_bytes(100_000, 3));
    // A cluster that is half text, half random.
    poke(&raw, 12 * M, &text_bytes((32 * K) as usize, 4));
    poke(&raw, 12 * M + 32 * K, &random_bytes((32 * K) as usize, 5));
    poke(&raw, 20 * M, &random_bytes((300 * K) as usize, 6));
    poke(&raw, size - 4 * K, &text_bytes((4 * K) as usize, 8));
    raw
}

fn compressed_convert_case(tag: &str, o_opts: &str, cs: u64) {
    let s = Scratch::new(tag);
    let raw = mixed_raw_source(&s, "src.raw", 32 * M);
    let img = s.s("img.qcow2");
    qemu_img(&[
        "convert", "-f", "raw", "-c", "-O", "qcow2", "-o", o_opts, &raw, &img,
    ]);
    // Mix in uncompressed clusters and more compressed ones afterwards.
    let (text, _) = pattern_files(&s, 4 * cs.max(64 * K));
    let c = |n: u64| n * cs;
    let cmds = [
        format!("write -q -P 0xa5 {} {}", c(1), cs),
        format!("write -q -s {text} {} {}", 16 * M, 2 * cs),
        format!("write -q -c -s {text} {} {}", 24 * M, 2 * cs),
        format!("write -q -P 0x5a {} 512", 4 * M + 1024),
        format!("write -q -z {} {}", c(3), cs),
    ];
    let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
    qemu_io("qcow2", &img, &refs);
    check_all(&s, &img, &Opts::qcow2());
}

#[test]
fn zlib_compressed_mixed_64k() {
    compressed_convert_case("zlib-64k", "compression_type=zlib", 64 * K);
}

#[test]
fn zstd_compressed_mixed_64k() {
    compressed_convert_case("zstd-64k", "compression_type=zstd", 64 * K);
}

#[test]
fn zlib_compressed_mixed_512() {
    compressed_convert_case("zlib-512", "compression_type=zlib,cluster_size=512", 512);
}

#[test]
fn zstd_compressed_mixed_4k() {
    compressed_convert_case("zstd-4k", "compression_type=zstd,cluster_size=4096", 4 * K);
}

#[test]
fn zlib_compressed_mixed_2m() {
    compressed_convert_case("zlib-2m", "compression_type=zlib,cluster_size=2M", 2 * M);
}

#[test]
fn zstd_compressed_mixed_2m() {
    compressed_convert_case("zstd-2m", "compression_type=zstd,cluster_size=2M", 2 * M);
}

#[test]
fn zlib_compressed_v2() {
    compressed_convert_case("zlib-v2", "compat=0.10", 64 * K);
}

// ---------------------------------------------------------------------------
// Extended L2
// ---------------------------------------------------------------------------

fn ext_l2_case(tag: &str, opts: &str, cs: u64) {
    let s = Scratch::new(tag);
    let img = s.s("img.qcow2");
    create("qcow2", opts, &img, "64M");
    let sc = cs / 32;
    let (text, _) = pattern_files(&s, 4 * cs);
    let cmds = [
        // 1 KiB writes at odd subcluster offsets.
        format!("write -q -P 0x41 {} 1024", 3 * sc + 1024),
        format!("write -q -P 0x42 {} 1024", cs + 5 * sc),
        format!("write -q -P 0x43 {} 1024", cs + 17 * sc + 512),
        // A fully written cluster, then zero writes inside it.
        format!("write -q -s {text} {} {}", 2 * cs, cs),
        format!("write -q -z {} {}", 2 * cs + 2 * sc, 3 * sc),
        format!("write -q -z {} 1024", 2 * cs + 9 * sc),
        // Zeroes on unallocated space, whole cluster and partial.
        format!("write -q -z {} {}", 4 * cs, cs),
        format!("write -q -z {} {}", 5 * cs + sc, 2 * sc),
        // Compressed clusters (no subclusters).
        format!("write -q -c -s {text} {} {}", 6 * cs, cs),
        format!("write -q -c -P 0x46 {} {}", 7 * cs, cs),
        // Data after zero.
        format!("write -q -P 0x47 {} {}", 4 * cs + 7 * sc, sc),
    ];
    let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
    qemu_io("qcow2", &img, &refs);
    check_all(&s, &img, &Opts::qcow2());
}

#[test]
fn extended_l2_64k() {
    ext_l2_case("extl2-64k", "extended_l2=on,cluster_size=64k", 64 * K);
}

#[test]
fn extended_l2_2m_zstd() {
    ext_l2_case(
        "extl2-2m",
        "extended_l2=on,cluster_size=2M,compression_type=zstd",
        2 * M,
    );
}

#[test]
fn extended_l2_16k() {
    ext_l2_case("extl2-16k", "extended_l2=on,cluster_size=16k", 16 * K);
}

// ---------------------------------------------------------------------------
// Refcounts, lazy refcounts, preallocation
// ---------------------------------------------------------------------------

#[test]
fn lazy_refcounts_on() {
    plain_case("lazy", "lazy_refcounts=on", 64 * K, 64 * M);
}

#[test]
fn lazy_refcounts_dirty_bit() {
    // What a VM crash with lazy refcounts leaves behind: the dirty bit.
    let s = Scratch::new("dirty");
    let img = s.s("img.qcow2");
    create("qcow2", "lazy_refcounts=on", &img, "64M");
    workload(&s, &img, 64 * K, 64 * M);
    let inc = peek_u64(&img, 72);
    poke_u64(&img, 72, inc | 1);
    let info = check_all(&s, &img, &Opts::qcow2());
    assert_eq!(info["dirty-flag"], serde_json::Value::Bool(true));
    // qvet must not have repaired anything: the bit is still set.
    assert_eq!(
        peek_u64(&img, 72) & 1,
        1,
        "qvet must not clear the dirty bit"
    );
}

#[test]
fn refcount_bits_1() {
    plain_case("rc1", "refcount_bits=1", 64 * K, 64 * M);
}

#[test]
fn refcount_bits_64_with_snapshot() {
    let s = Scratch::new("rc64");
    let img = s.s("img.qcow2");
    create("qcow2", "refcount_bits=64", &img, "64M");
    workload(&s, &img, 64 * K, 64 * M);
    qemu_img(&["snapshot", "-f", "qcow2", "-c", "s1", &img]);
    qemu_io("qcow2", &img, &["write -q -P 0x99 0 128k"]);
    check_all(&s, &img, &Opts::qcow2());
}

#[test]
fn refcount_bits_other_widths() {
    for bits in [2, 4, 8, 32] {
        let s = Scratch::new(&format!("rc{bits}"));
        let img = s.s("img.qcow2");
        create(
            "qcow2",
            &format!("refcount_bits={bits},cluster_size=4096"),
            &img,
            "16M",
        );
        qemu_io(
            "qcow2",
            &img,
            &["write -q -P 0x12 0 64k", "write -q -c -P 0x34 1M 4k"],
        );
        check_all(&s, &img, &Opts::qcow2());
    }
}

#[test]
fn preallocation_metadata() {
    let s = Scratch::new("prealloc-meta");
    let img = s.s("img.qcow2");
    create("qcow2", "preallocation=metadata", &img, "64M");
    qemu_io(
        "qcow2",
        &img,
        &[
            "write -q -P 0x61 0 64k",
            "write -q -P 0x62 1M 1k",
            "write -q -z 2M 64k",
        ],
    );
    check_all(&s, &img, &Opts::qcow2());
}

#[test]
fn preallocation_falloc_and_full() {
    for mode in ["falloc", "full"] {
        let s = Scratch::new(&format!("prealloc-{mode}"));
        let img = s.s("img.qcow2");
        create("qcow2", &format!("preallocation={mode}"), &img, "16M");
        qemu_io("qcow2", &img, &["write -q -P 0x63 64k 64k"]);
        check_all(&s, &img, &Opts::qcow2());
    }
}

// ---------------------------------------------------------------------------
// Internal snapshots and bitmaps
// ---------------------------------------------------------------------------

fn snapshot_image(s: &Scratch, opts: &str) -> String {
    let img = s.s("snap.qcow2");
    create("qcow2", opts, &img, "64M");
    let (text, _) = pattern_files(s, 256 * K);
    qemu_io(
        "qcow2",
        &img,
        &[
            "write -q -P 0x01 0 256k",
            &format!("write -q -c -s {text} 1M 128k"),
            "write -q -P 0x02 4M 64k",
        ],
    );
    qemu_img(&["snapshot", "-f", "qcow2", "-c", "before", &img]);
    qemu_io(
        "qcow2",
        &img,
        &[
            "write -q -P 0x03 64k 64k",
            "write -q -z 128k 64k",
            "write -q -P 0x04 8M 128k",
            // Compressed writes need an unallocated cluster.
            "write -q -c -P 0x05 2M 64k",
        ],
    );
    qemu_img(&["snapshot", "-f", "qcow2", "-c", "middle", &img]);
    qemu_io(
        "qcow2",
        &img,
        &[
            "write -q -P 0x06 0 64k",
            "write -q -P 0x07 4M 1k",
            "discard -q 8M 64k",
        ],
    );
    img
}

fn snapshot_case(tag: &str, opts: &str) {
    let s = Scratch::new(tag);
    let img = snapshot_image(&s, opts);
    let info = check_all(&s, &img, &Opts::qcow2());
    assert_eq!(info["snapshots"].as_array().map(Vec::len), Some(2));
    let o = Opts::qcow2();
    for (snap, name, l) in [
        ("before", "before", "snapshot.name=before"),
        ("1", "before", "snapshot.id=1"),
        ("middle", "middle", "snapshot.name=middle"),
        ("2", "middle", "snapshot.id=2"),
    ] {
        check_convert_snapshot(&s, &img, &o, snap, l);
        check_map_snapshot(&s, &img, &o, snap, name);
    }
}

#[test]
fn internal_snapshots_v3() {
    snapshot_case("snap-v3", "compat=1.1");
}

#[test]
fn internal_snapshots_v2() {
    snapshot_case("snap-v2", "compat=0.10");
}

#[test]
fn snapshot_that_does_not_exist_is_refused() {
    let s = Scratch::new("snap-missing");
    let img = snapshot_image(&s, "");
    let out = s.s("out.raw");
    let q = qemu_img_any(&[
        "convert",
        "-f",
        "qcow2",
        "-l",
        "snapshot.name=nope",
        "-O",
        "raw",
        &img,
        &out,
    ]);
    assert!(!q.ok(), "qemu-img also refuses\n{}", q.describe());
    for args in [
        vec![
            "convert",
            "-O",
            "raw",
            "-f",
            "qcow2",
            "--snapshot",
            "nope",
            img.as_str(),
            out.as_str(),
        ],
        vec![
            "map",
            "--output",
            "json",
            "-f",
            "qcow2",
            "--snapshot",
            "nope",
            img.as_str(),
        ],
        vec![
            "convert",
            "-O",
            "raw",
            "-f",
            "qcow2",
            "--snapshot",
            "99",
            img.as_str(),
            out.as_str(),
        ],
    ] {
        let r = qvet(&args);
        assert_refused(&r, &["snapshot"]);
    }
}

#[test]
fn bitmaps_zstd_extended_l2_snapshots() {
    let s = Scratch::new("bitmaps");
    let img = s.s("zx.qcow2");
    create(
        "qcow2",
        "cluster_size=128k,compression_type=zstd,extended_l2=on",
        &img,
        "64M",
    );
    let (text, _) = pattern_files(&s, 512 * K);
    qemu_io(
        "qcow2",
        &img,
        &[
            "write -q -P 0x31 0 128k",
            &format!("write -q -c -s {text} 256k 256k"),
            "write -q -P 0x32 1M 4k",
        ],
    );
    qemu_img(&["snapshot", "-f", "qcow2", "-c", "snap1", &img]);
    qemu_io("qcow2", &img, &["write -q -P 0x33 0 4k"]);
    qemu_img(&["snapshot", "-f", "qcow2", "-c", "snap2", &img]);
    qemu_img(&["bitmap", "--add", "-f", "qcow2", &img, "bm0"]);
    qemu_img(&[
        "bitmap",
        "--add",
        "-f",
        "qcow2",
        "-g",
        "128k",
        "--disable",
        &img,
        "bm1",
    ]);
    qemu_io("qcow2", &img, &["write -q -P 0x34 2M 64k"]);
    let info = check_all(&s, &img, &Opts::qcow2());
    assert_eq!(
        info["format-specific"]["data"]["bitmaps"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let o = Opts::qcow2();
    check_convert_snapshot(&s, &img, &o, "snap1", "snapshot.name=snap1");
    check_map_snapshot(&s, &img, &o, "snap1", "snap1");
}

// ---------------------------------------------------------------------------
// Backing files
// ---------------------------------------------------------------------------

fn qcow2_base(s: &Scratch, size: &str) -> String {
    let base = s.s("base.qcow2");
    create("qcow2", "", &base, size);
    let (text, _) = pattern_files(s, 256 * K);
    qemu_io(
        "qcow2",
        &base,
        &[
            "write -q -P 0xb1 0 128k",
            "write -q -P 0xb2 1M 64k",
            "write -q -z 2M 64k",
            &format!("write -q -c -s {text} 3M 128k"),
            "write -q -P 0xb3 30M 1M",
        ],
    );
    base
}

fn overlay_writes(img: &str) {
    qemu_io(
        "qcow2",
        img,
        &[
            "write -q -P 0xc1 64k 64k",
            // Zero over backing data: must read as zeros, not base data.
            "write -q -z 1M 64k",
            // Partial cluster over backing data: COW from the base.
            "write -q -P 0xc2 3149824 1k", // 3M + 4k
            "write -q -c -P 0xc3 5M 64k",
            // Beyond the end of the (smaller) base.
            "write -q -P 0xc4 40M 64k",
        ],
    );
}

/// Without --allow-backing: info equals qemu-img info (which does not open
/// the backing file) and opened-files is just the image; map and convert
/// refuse.
fn assert_backing_denied(s: &Scratch, img: &str) {
    let info = check_info(img, &Opts::qcow2());
    assert_opened_exactly(&info, &[img]);
    // map either refuses, or succeeds and marks the ranges that would come
    // from the backing file as unavailable (it must not read them).
    let r = qvet(&["map", "--output", "json", "-f", "qcow2", img]);
    if r.ok() {
        assert!(
            r.stdout_str().contains("\"unavailable\": true"),
            "map without --allow-backing must mark backing ranges unavailable\n{}",
            r.describe()
        );
    } else {
        assert_refused(&r, &["backing"]);
    }
    let out = s.s("denied.raw");
    let r = qvet(&["convert", "-O", "raw", "-f", "qcow2", img, out.as_str()]);
    assert_refused(&r, &["backing"]);
}

#[test]
fn backing_qcow2_overlay_larger_than_base() {
    let s = Scratch::new("backing-qcow2");
    let base = qcow2_base(&s, "32M");
    let over = s.s("over.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        &over,
        "64M",
    ]);
    overlay_writes(&over);
    assert_backing_denied(&s, &over);
    let o = Opts::qcow2().backing();
    check_all(&s, &over, &o);
    let chain = check_info_chain(&over, &o);
    assert_opened_exactly(&chain, &[&over, &base]);
}

#[test]
fn backing_raw_overlay_larger_than_base() {
    let s = Scratch::new("backing-raw");
    let base = s.s("base.raw");
    let f = std::fs::File::create(&base).expect("create");
    f.set_len(24 * M).expect("set_len");
    drop(f);
    poke(&base, 0, &text_bytes((256 * K) as usize, 21));
    poke(&base, M + 100, &random_bytes(5000, 22));
    poke(&base, 3 * M, &text_bytes((200 * K) as usize, 23));
    poke(&base, 24 * M - 4 * K, &random_bytes((4 * K) as usize, 24));
    let over = s.s("over.qcow2");
    qemu_img(&[
        "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", &over, "64M",
    ]);
    overlay_writes(&over);
    assert_backing_denied(&s, &over);
    let o = Opts::qcow2().backing();
    check_all(&s, &over, &o);
    let chain = check_info_chain(&over, &o);
    assert_opened_exactly(&chain, &[&over, &base]);
}

#[test]
fn backing_chain_of_three_with_relative_names() {
    let s = Scratch::new("backing-chain3");
    std::fs::create_dir_all(s.path("b")).expect("mkdir");
    std::fs::create_dir_all(s.path("m")).expect("mkdir");
    let base = s.s("b/base.raw");
    let f = std::fs::File::create(&base).expect("create");
    f.set_len(16 * M).expect("set_len");
    drop(f);
    poke(&base, 0, &text_bytes((512 * K) as usize, 31));
    poke(&base, 8 * M, &random_bytes((64 * K) as usize, 32));
    let mid = s.s("m/mid.qcow2");
    // v2 middle layer, name relative to its own directory.
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "compat=0.10",
        "-b",
        "../b/base.raw",
        "-F",
        "raw",
        &mid,
        "32M",
    ]);
    qemu_io(
        "qcow2",
        &mid,
        &["write -q -P 0xd1 128k 64k", "write -q -P 0xd2 20M 64k"],
    );
    let top = s.s("top.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "m/mid.qcow2",
        "-F",
        "qcow2",
        &top,
        "48M",
    ]);
    qemu_io(
        "qcow2",
        &top,
        &[
            "write -q -P 0xe1 0 64k",
            "write -q -z 8M 64k",
            "write -q -P 0xe2 40M 4k",
        ],
    );
    assert_backing_denied(&s, &top);
    let o = Opts::qcow2().backing();
    check_all(&s, &top, &o);
    let chain = check_info_chain(&top, &o);
    assert_opened_exactly(&chain, &[&top, &mid, &base]);
    assert_eq!(chain.as_array().map(Vec::len), Some(3));
}

#[test]
fn backing_with_extended_l2_overlay() {
    let s = Scratch::new("backing-extl2");
    let _base = qcow2_base(&s, "64M");
    let over = s.s("over.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "extended_l2=on",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        &over,
        "64M",
    ]);
    qemu_io(
        "qcow2",
        &over,
        &[
            // Subcluster writes: the rest of the cluster still reads from the base.
            "write -q -P 0xf1 6k 1k",
            "write -q -P 0xf2 1058816 2k", // 1M + 10k
            "write -q -z 31459328 2k",     // 30M + 2k
        ],
    );
    let o = Opts::qcow2().backing();
    check_all(&s, &over, &o);
    check_info_chain(&over, &o);
}

#[test]
fn backing_overlay_with_snapshot() {
    let s = Scratch::new("backing-snap");
    let _base = qcow2_base(&s, "64M");
    let over = s.s("over.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        &over,
        "64M",
    ]);
    qemu_io("qcow2", &over, &["write -q -P 0x71 0 64k"]);
    qemu_img(&["snapshot", "-f", "qcow2", "-c", "snapA", &over]);
    qemu_io(
        "qcow2",
        &over,
        &["write -q -P 0x72 0 128k", "write -q -z 1M 64k"],
    );
    let o = Opts::qcow2().backing();
    check_all(&s, &over, &o);
    check_convert_snapshot(&s, &over, &o, "snapA", "snapshot.name=snapA");
    check_map_snapshot(&s, &over, &o, "snapA", "snapA");
}

// ---------------------------------------------------------------------------
// External data files
// ---------------------------------------------------------------------------

fn data_file_case(tag: &str, raw_flag: bool) {
    let s = Scratch::new(tag);
    let img = s.s("img.qcow2");
    let data = s.s("data.raw");
    // Absolute name: qemu resolves a relative data-file name against its
    // current directory (not the image's), so a relative name would make
    // qemu-img and qvet read different files.
    let opts = if raw_flag {
        format!("data_file={data},data_file_raw=on")
    } else {
        format!("data_file={data}")
    };
    create("qcow2", &opts, &img, "16M");
    let (text, _) = pattern_files(&s, 256 * K);
    qemu_io(
        "qcow2",
        &img,
        &[
            "write -q -P 0x81 64k 64k",
            &format!("write -q -s {text} 1M 192k"),
            "write -q -P 0x82 5243392 1k", // 5M + 512
            "write -q -z 1114112 64k",     // 1M + 64k
        ],
    );

    // Deny by default: info works without opening the data file.
    let info = check_info(&img, &Opts::qcow2());
    assert_opened_exactly(&info, &[&img]);
    // map may describe the mapping from the metadata alone, or refuse.
    let r = qvet(&["map", "--output", "json", "-f", "qcow2", &img]);
    if !r.ok() {
        assert_refused(&r, &["data"]);
    }
    let out = s.s("denied.raw");
    let r = qvet(&["convert", "-O", "raw", "-f", "qcow2", &img, &out]);
    assert_refused(&r, &["data"]);

    let o = Opts::qcow2().data_file();
    check_all(&s, &img, &o);
}

#[test]
fn external_data_file() {
    data_file_case("datafile", false);
}

#[test]
fn external_data_file_raw() {
    data_file_case("datafile-raw", true);
}

// ---------------------------------------------------------------------------
// LUKS
// ---------------------------------------------------------------------------

#[test]
fn luks_info_matches_and_data_is_refused() {
    let s = Scratch::new("luks");
    let img = s.s("luks.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "--object",
        "secret,id=s0,data=pw",
        "-f",
        "qcow2",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10",
        &img,
        "16M",
    ]);
    // Put encrypted data into the image (needs the key, so --image-opts).
    let r = run(
        "qemu-io",
        &[
            "--object",
            "secret,id=s0,data=pw",
            "--image-opts",
            "-c",
            "write -q -P 0x42 0 128k",
            "-c",
            "write -q -P 0x43 1M 64k",
            &format!("driver=qcow2,file.filename={img},encrypt.key-secret=s0"),
        ],
    );
    assert!(r.ok(), "qemu-io write to LUKS image\n{}", r.describe());
    let info = check_info(&img, &Opts::qcow2());
    assert_eq!(info["encrypted"], serde_json::Value::Bool(true));
    let q = qemu_img_any(&["map", "--output=json", "-f", "qcow2", &img]);
    assert!(!q.ok(), "qemu-img map also fails without the key");
    let needles = ["encrypt", "luks", "decrypt"];
    let mut problems = Vec::new();
    // Allocation is metadata, which LUKS does not encrypt: qvet maps the image
    // without the key, exactly as qemu-img maps it with the key.
    let r = qvet(&["map", "--output", "json", "-f", "qcow2", &img]);
    assert!(r.ok(), "qvet map of a LUKS image\n{}", r.describe());
    let with_key = run(
        "qemu-img",
        &[
            "map",
            "--output=json",
            "--object",
            "secret,id=s0,data=pw",
            "--image-opts",
            &format!("driver=qcow2,file.filename={img},encrypt.key-secret=s0"),
        ],
    );
    assert!(
        with_key.ok(),
        "qemu-img map with the key\n{}",
        with_key.describe()
    );
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&with_key.stdout),
        "qvet map without the key equals qemu-img map with it"
    );
    let out = s.s("out.raw");
    let r = qvet(&["convert", "-O", "raw", "-f", "qcow2", &img, &out]);
    problems.extend(refusal_problem(&r, &needles));
    let r = qvet(&["convert", "-O", "raw", "-f", "qcow2", &img, "-"]);
    problems.extend(refusal_problem(&r, &needles));
    assert!(
        !r.stdout.windows(16).any(|w| w == [0x42u8; 16]),
        "plaintext can not appear without decryption"
    );
    assert_no_problems(&problems);
}

// ---------------------------------------------------------------------------
// Odd sizes
// ---------------------------------------------------------------------------

#[test]
fn virtual_size_not_multiple_of_512_created() {
    // qemu-img create rounds 100M+100 up to a multiple of 512.
    let s = Scratch::new("odd-create");
    let img = s.s("odd.qcow2");
    let size = 100 * M + 100;
    create("qcow2", "", &img, &size.to_string());
    qemu_io(
        "qcow2",
        &img,
        &["write -q -P 0x91 100M 512", "write -q -P 0x92 0 1k"],
    );
    check_all(&s, &img, &Opts::qcow2());
}

#[test]
fn virtual_size_not_multiple_of_512_poked() {
    // A header size of 64M+100: qemu truncates it to a multiple of 512.
    let s = Scratch::new("odd-poke");
    let img = s.s("odd.qcow2");
    create("qcow2", "", &img, "64M");
    qemu_io(
        "qcow2",
        &img,
        &["write -q -P 0x93 0 64k", "write -q -P 0x94 63M 1M"],
    );
    poke_u64(&img, 24, 64 * M + 100);
    check_all(&s, &img, &Opts::qcow2());
}

#[test]
fn virtual_size_not_multiple_of_cluster() {
    let s = Scratch::new("odd-cluster");
    let img = s.s("odd.qcow2");
    create(
        "qcow2",
        "cluster_size=2M",
        &img,
        &(64 * M + 3 * 512).to_string(),
    );
    qemu_io(
        "qcow2",
        &img,
        &["write -q -P 0x95 64M 1536", "write -q -P 0x96 1M 64k"],
    );
    check_all(&s, &img, &Opts::qcow2());
}

// ---------------------------------------------------------------------------
// Raw images
// ---------------------------------------------------------------------------

#[test]
fn raw_image_explicit_and_probed() {
    let s = Scratch::new("raw");
    let raw = s.s("disk.img");
    let f = std::fs::File::create(&raw).expect("create");
    f.set_len(64 * M).expect("set_len");
    drop(f);
    poke(&raw, 0, &text_bytes((100 * K) as usize, 41));
    poke(&raw, 5 * M + 3, &random_bytes(10_000, 42));
    poke(&raw, 30 * M, &vec![0u8; (128 * K) as usize]); // allocated zeros
    poke(&raw, 64 * M - 512, &text_bytes(512, 43));
    check_all(&s, &raw, &Opts::raw());
    check_all(&s, &raw, &Opts::probe());
}

#[test]
fn raw_image_fully_sparse() {
    let s = Scratch::new("raw-sparse");
    let raw = s.s("empty.img");
    let f = std::fs::File::create(&raw).expect("create");
    f.set_len(64 * M).expect("set_len");
    drop(f);
    check_all(&s, &raw, &Opts::raw());
}

#[test]
fn raw_image_size_not_multiple_of_512() {
    let s = Scratch::new("raw-odd");
    let raw = s.s("odd.img");
    let f = std::fs::File::create(&raw).expect("create");
    f.set_len(100 * M + 100).expect("set_len");
    drop(f);
    poke(&raw, 100 * M + 50, b"tail bytes");
    poke(&raw, 0, b"head bytes");
    check_all(&s, &raw, &Opts::raw());
}

// ---------------------------------------------------------------------------
// Output properties
// ---------------------------------------------------------------------------

#[test]
fn convert_to_stdout() {
    let s = Scratch::new("stdout");
    let img = s.s("img.qcow2");
    create("qcow2", "", &img, "16M");
    workload(&s, &img, 64 * K, 16 * M);
    let reference = s.s("ref.raw");
    qemu_img(&["convert", "-f", "qcow2", "-O", "raw", &img, &reference]);

    // stdout is a pipe (not seekable).
    let r = qvet(&["convert", "-O", "raw", "-f", "qcow2", &img, "-"]);
    assert_success(&r);
    let piped = s.s("piped.raw");
    write_file(&piped, &r.stdout);
    assert_files_eq(
        Path::new(&reference),
        Path::new(&piped),
        "convert to stdout (pipe)",
    );

    // stdout is a regular file.
    let redirected = s.path("redirected.raw");
    let r = run_with(
        QVET,
        &["convert", "-O", "raw", "-f", "qcow2", &img, "-"],
        None,
        Stdout::File(&redirected),
        ORACLE_TIMEOUT,
    );
    assert_no_panic(&r);
    assert_success(&r);
    assert_files_eq(
        Path::new(&reference),
        &redirected,
        "convert to stdout (file)",
    );
}

#[test]
fn convert_output_is_sparse() {
    let s = Scratch::new("sparse-out");
    let img = s.s("img.qcow2");
    create("qcow2", "", &img, "256M");
    qemu_io(
        "qcow2",
        &img,
        &["write -q -P 0x10 0 64k", "write -q -P 0x20 200M 64k"],
    );
    let out = s.s("out.raw");
    let r = qvet(&["convert", "-O", "raw", "-f", "qcow2", &img, &out]);
    assert_success(&r);
    let len = std::fs::metadata(&out).expect("stat").len();
    assert_eq!(len, 256 * M);
    let alloc = allocated_bytes(&out);
    assert!(
        alloc < 8 * M,
        "convert output should be sparse: {alloc} bytes allocated for a 256 MiB image with 128 KiB of data"
    );
    let reference = s.s("ref.raw");
    qemu_img(&["convert", "-f", "qcow2", "-O", "raw", &img, &reference]);
    assert_files_eq(Path::new(&reference), Path::new(&out), "sparse convert");
}

#[test]
fn info_human_output_smoke() {
    let s = Scratch::new("human");
    let img = s.s("img.qcow2");
    create("qcow2", "", &img, "16M");
    qemu_io("qcow2", &img, &["write -q -P 0x10 0 64k"]);
    qemu_img(&["snapshot", "-f", "qcow2", "-c", "s1", &img]);
    for args in [
        vec!["info", img.as_str()],
        vec!["info", "--output", "human", "-f", "qcow2", img.as_str()],
    ] {
        let r = qvet(&args);
        assert_success(&r);
        assert!(
            !r.stdout.is_empty(),
            "human info prints something\n{}",
            r.describe()
        );
    }
}

// ---------------------------------------------------------------------------
// Appliance-like disk: MBR + ext4 + FAT with sparse gaps
// ---------------------------------------------------------------------------

fn build_appliance_raw(s: &Scratch) -> String {
    for tool in ["sfdisk", "mke2fs"] {
        assert!(
            have_tool(tool),
            "`{tool}` is required for this test (scripts/test.sh installs fdisk and e2fsprogs)"
        );
    }
    // Files for the ext4 partition.
    let root = s.path("root");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::create_dir_all(root.join("usr/share/doc")).expect("mkdir");
    std::fs::write(root.join("etc/app.conf"), text_bytes(12_000, 51)).expect("write");
    std::fs::write(root.join("usr/share/blob.bin"), random_bytes(700_000, 52)).expect("write");
    std::fs::write(root.join("usr/share/doc/README"), text_bytes(2_500_000, 53)).expect("write");
    std::fs::write(root.join("usr/share/zeros"), vec![0u8; 200_000]).expect("write");
    std::os::unix::fs::symlink("../etc/app.conf", root.join("usr/link")).expect("symlink");

    let disk = s.s("disk.raw");
    let f = std::fs::File::create(&disk).expect("create");
    f.set_len(160 * M).expect("set_len");
    drop(f);
    // p1: 1 MiB .. 49 MiB (ext4), p2: 96 MiB .. 129 MiB (FAT16); gaps stay sparse.
    let table = "label: dos\nstart=2048, size=98304, type=83\nstart=196608, size=67584, type=c\n";
    let tfile = s.s("table.sfdisk");
    write_file(&tfile, table.as_bytes());
    let sfdisk = find_tool("sfdisk").unwrap();
    let r = run_ok(
        "sh",
        &["-c", &format!("'{sfdisk}' -q '{disk}' < '{tfile}'")],
    );
    drop(r);
    run_ok(
        &find_tool("mke2fs").unwrap(),
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-d",
            root.to_str().expect("utf-8"),
            "-E",
            "offset=1048576",
            &disk,
            "12288",
        ],
    );
    if have_tool("mkfs.fat") && have_tool("mcopy") {
        run_ok(
            &find_tool("mkfs.fat").unwrap(),
            &["-F", "16", "-n", "APPL", "--offset=196608", &disk, "33792"],
        );
        let conf = s.s("CONFIG.TXT");
        write_file(&conf, &text_bytes(11_000, 54));
        let bin = s.s("RANDOM.BIN");
        write_file(&bin, &random_bytes(300_000, 55));
        let img_arg = format!("{disk}@@{}", 196608 * 512);
        run_ok(
            &find_tool("mcopy").unwrap(),
            &["-i", &img_arg, &conf, &bin, "::/"],
        );
    } else {
        eprintln!("note: mkfs.fat/mcopy not found; appliance disk has no FAT partition");
    }
    disk
}

#[test]
fn appliance_disk_raw_compressed_and_partly_compressed() {
    let s = Scratch::new("appliance");
    let disk = build_appliance_raw(&s);

    let cz = s.s("appliance-zlib.qcow2");
    qemu_img(&["convert", "-f", "raw", "-c", "-O", "qcow2", &disk, &cz]);
    let cs = s.s("appliance-zstd.qcow2");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-c",
        "-O",
        "qcow2",
        "-o",
        "compression_type=zstd",
        &disk,
        &cs,
    ]);

    // Partly compressed: copy every non-zero 64 KiB cluster into a fresh
    // qcow2 with qemu-io, every other one as a compressed cluster
    // (compressed writes need unallocated clusters).
    let part = s.s("appliance-part.qcow2");
    create("qcow2", "", &part, &(160 * M).to_string());
    let raw_bytes = std::fs::read(&disk).expect("read disk");
    let mut cmds = Vec::new();
    let mut nonzero = 0u64;
    for (i, chunk) in raw_bytes.chunks((64 * K) as usize).enumerate() {
        if chunk.iter().all(|&b| b == 0) {
            continue;
        }
        nonzero += 1;
        let file = s.s(&format!("chunk-{i}.bin"));
        write_file(&file, chunk);
        let c = if nonzero.is_multiple_of(2) { "-c " } else { "" };
        cmds.push(format!(
            "write -q {c}-s {file} {} {}",
            i as u64 * 64 * K,
            chunk.len()
        ));
    }
    assert!(cmds.len() > 4, "appliance disk should have data clusters");
    let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
    qemu_io("qcow2", &part, &refs);

    check_all(&s, &disk, &Opts::raw());
    for img in [&cz, &cs, &part] {
        check_all(&s, img, &Opts::qcow2());
        // The guest view of every variant is the raw disk itself.
        let name = Path::new(img.as_str())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let out = s.s(&format!("guest-view-{name}.raw"));
        let r = qvet(&[
            "convert",
            "-O",
            "raw",
            "-f",
            "qcow2",
            img.as_str(),
            out.as_str(),
        ]);
        assert_success(&r);
        assert_files_eq(
            Path::new(&disk),
            Path::new(&out),
            &format!("guest view of {img}"),
        );
    }
}
