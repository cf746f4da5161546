//! `qvet digest` against coreutils and qemu-img.
//!
//! * File digests equal `md5sum`/`sha1sum`/`sha256sum`/`sha512sum` on many
//!   sizes (0, 1, odd, around and above the 4 MiB read block); blake3 is
//!   checked against the `blake3` crate in the digest crate's unit tests
//!   (`b3sum` is usually not installed).
//! * `--output sums` is accepted by `md5sum -c`, `sha256sum -c` and
//!   `sha512sum -c`, including names that coreutils escapes.
//! * The content sha256 equals `sha256sum` of `qemu-img convert -O raw` for
//!   every container variant of one guest (raw, sparse raw, qcow2 v2/v3,
//!   512 B / 64 KiB / 2 MiB clusters, extended L2, zlib and zstd
//!   compression, metadata preallocation, an overlay over a backing file),
//!   and for images written with qemu-io (zero clusters, compressed
//!   clusters, partial writes); the manifest root is the same for all of
//!   them and changes after a one-byte guest change, which the stored
//!   manifests locate.

// Test code: panicking on a broken fixture or a mismatch is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;

const K: u64 = 1024;
const M: u64 = 1024 * 1024;

/// `TOOL FILE` → the hex digest.
fn tool_digest(tool: &str, file: &str) -> String {
    let r = run_ok(tool, &[file]);
    let out = r.stdout_str();
    let hex = out.split_whitespace().next().unwrap_or_default();
    // Escaped names make coreutils start the line with a backslash.
    hex.trim_start_matches('\\').to_owned()
}

fn digest_json(args: &[&str]) -> Vec<Value> {
    let mut v = vec!["digest", "-q", "--output", "json"];
    v.extend_from_slice(args);
    let r = qvet(&v);
    assert_success(&r);
    let j: Value = serde_json::from_slice(&r.stdout)
        .unwrap_or_else(|e| panic!("qvet digest JSON: {e}\n{}", r.describe()));
    j.as_array().expect("a JSON array").clone()
}

// ---------------------------------------------------------------------------
// File digests
// ---------------------------------------------------------------------------

#[test]
fn file_digests_match_coreutils_on_many_sizes() {
    let s = Scratch::new("digest-sizes");
    let sizes: [u64; 9] = [0, 1, 3, 511, 4097, 4 * M - 1, 4 * M, 4 * M + 1, 9 * M + 3];
    let mut files = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let f = s.s(&format!("f{n}.bin"));
        write_file(&f, &random_bytes(n as usize, i as u64 + 1));
        files.push(f);
    }
    let mut args = vec!["--algo", "all"];
    args.extend(files.iter().map(String::as_str));
    let j = digest_json(&args);
    assert_eq!(j.len(), files.len());
    let mut problems = Vec::new();
    for ((obj, f), &n) in j.iter().zip(&files).zip(&sizes) {
        assert_eq!(obj["filename"], f.as_str());
        assert_eq!(obj["size"], n);
        for (algo, tool) in [
            ("md5", "md5sum"),
            ("sha1", "sha1sum"),
            ("sha256", "sha256sum"),
            ("sha512", "sha512sum"),
        ] {
            let want = tool_digest(tool, f);
            let got = obj["file"][algo].as_str().unwrap_or_default();
            if got != want {
                problems.push(format!(
                    "{f} ({n} bytes) {algo}: qvet {got} vs {tool} {want}"
                ));
            }
        }
        let b3 = obj["file"]["blake3"].as_str().unwrap_or_default();
        assert_eq!(b3.len(), 64, "blake3 hex of {f}");
        assert!(obj.get("content").is_none());
    }
    assert_no_problems(&problems);
}

#[test]
fn default_algorithms_and_selection() {
    let s = Scratch::new("digest-algos");
    let f = s.s("a.bin");
    write_file(&f, b"abc");
    let j = digest_json(&[&f]);
    let keys: Vec<&String> = j[0]["file"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["md5", "sha256", "sha512"], "default algorithms");
    let j = digest_json(&["--algo", "sha1,SHA-256", &f]);
    assert_eq!(
        j[0]["file"],
        serde_json::json!({
            "sha1": "a9993e364706816aba3e25717850c26c9cd0d89d",
            "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        })
    );
    let j = digest_json(&["--algo", "blake3", &f]);
    assert_eq!(
        j[0]["file"]["blake3"],
        "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    );
    // Human output names every digest.
    let r = qvet(&["digest", &f]);
    assert_success(&r);
    let out = r.stdout_str();
    assert!(
        out.contains("md5             900150983cd24fb0d6963f7d28e17f72"),
        "{out}"
    );
    // Unknown algorithm: a usage error from the argument parser.
    let r = run(QVET, &["digest", "--algo", "crc32", &f]);
    assert_eq!(r.code(), Some(2), "{}", r.describe());
    // Nothing to compute.
    assert_refused(&qvet(&["digest", "--algo", "none", &f]), &["nothing"]);
}

#[test]
fn sums_output_is_accepted_by_coreutils_check() {
    let s = Scratch::new("digest-sums");
    let names = [
        "plain.img",
        "with space.img",
        "back\\slash.img",
        "new\nline.img",
    ];
    let mut files = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let f = s.s(n);
        write_file(&f, &random_bytes(5000 + i * 777, 40 + i as u64));
        files.push(f);
    }
    let mut args = vec!["digest", "-q", "--output", "sums"];
    args.extend(files.iter().map(String::as_str));
    let r = qvet(&args);
    assert_success(&r);
    let sums = s.s("SUMS");
    fs::write(&sums, &r.stdout).unwrap();
    let text = r.stdout_str();
    for algo in ["# md5", "# sha256", "# sha512"] {
        assert!(text.lines().any(|l| l == algo), "block {algo}\n{text}");
    }
    // Each tool checks its own block and skips the comments; the other
    // blocks only draw a warning.
    for tool in ["md5sum", "sha256sum", "sha512sum"] {
        let c = run(tool, &["-c", &sums]);
        assert!(c.ok(), "{tool} -c\n{}", c.describe());
        let oks = c
            .stdout_str()
            .lines()
            .filter(|l| l.ends_with(": OK"))
            .count();
        assert_eq!(oks, files.len(), "{tool} -c\n{}", c.describe());
    }
    // One algorithm: a strict sums file, identical to sha256sum's.
    let r = qvet(&[
        "digest", "-q", "--algo", "sha256", "--output", "sums", &files[0], &files[3],
    ]);
    assert_success(&r);
    let ours: Vec<String> = r
        .stdout_str()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let theirs = run_ok("sha256sum", &[files[0].as_str(), files[3].as_str()]).stdout_str();
    assert_eq!(ours.join("\n") + "\n", theirs, "same lines as sha256sum");
    let strict = s.s("SHA256SUMS");
    fs::write(&strict, &r.stdout).unwrap();
    let c = run("sha256sum", &["-c", "--strict", &strict]);
    assert!(c.ok(), "{}", c.describe());
    // A changed file fails the check.
    poke(&files[0], 10, b"X");
    let c = run("sha256sum", &["-c", &strict]);
    assert_eq!(c.code(), Some(1), "{}", c.describe());
}

#[test]
fn errors_exit_1_and_other_images_are_still_digested() {
    let s = Scratch::new("digest-errors");
    let f = s.s("a.bin");
    write_file(&f, b"abc");
    let missing = s.s("missing.img");
    let r = qvet(&["digest", "--output", "json", &missing, &f]);
    assert_eq!(r.code(), Some(1), "{}", r.describe());
    assert!(r.stderr.starts_with("qvet: "), "{}", r.describe());
    assert!(r.stderr.contains("missing.img"), "{}", r.describe());
    let j: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert!(j[0]["error"].as_str().unwrap().contains("could not open"));
    assert_eq!(
        j[1]["file"]["md5"], "900150983cd24fb0d6963f7d28e17f72",
        "the readable image is still digested"
    );
    // Not a regular file.
    assert_refused(
        &qvet(&["digest", s.root().to_str().unwrap()]),
        &["not a regular file", "directory"],
    );
    // --manifest-out takes one image, and never overwrites it.
    assert_refused(
        &qvet(&["digest", "--manifest-out", &s.s("m"), &f, &f]),
        &["exactly one image"],
    );
    assert_refused(
        &qvet(&["digest", "--manifest-out", &f, &f]),
        &["over the image"],
    );
    assert_eq!(fs::read(&f).unwrap(), b"abc");
}

#[test]
fn a_broken_guest_view_still_gets_its_file_digests() {
    let s = Scratch::new("digest-broken");
    let img = s.s("broken.qcow2");
    create("qcow2", "", &img, "8M");
    qemu_io("qcow2", &img, &["write -q -P 0x61 0 64k"]);
    // Point the first L1 entry at an unaligned L2 table.
    let l1 = peek_u64(&img, 40);
    poke_u64(&img, l1, (1 << 63) | 0x1_0200);
    let r = qvet(&["digest", "--content", "--output", "json", &img]);
    assert_eq!(r.code(), Some(1), "{}", r.describe());
    assert!(r.stderr.starts_with("qvet: "), "{}", r.describe());
    assert!(r.stderr.contains("content digest"), "{}", r.describe());
    let j: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(j[0]["file"]["md5"], tool_digest("md5sum", &img).as_str());
    assert!(j[0]["content"]["error"]
        .as_str()
        .unwrap()
        .contains("unaligned"));
    // Human output says so too.
    let r = qvet(&["digest", "--content", &img]);
    assert_eq!(r.code(), Some(1), "{}", r.describe());
    assert!(
        r.stdout_str().contains("content         not computed"),
        "{}",
        r.describe()
    );
}

// ---------------------------------------------------------------------------
// Content digest
// ---------------------------------------------------------------------------

/// Guest size of the content tests: not a multiple of the chunk size (a
/// short last chunk), a multiple of 512 (raw images keep it exactly).
const VSIZE: u64 = 21 * M + 3 * 512;

/// Guest bytes: random data, text, long zero stretches (whole zero chunks
/// and zeros inside data chunks), data in the short last chunk.
fn guest_bytes() -> Vec<u8> {
    let mut g = vec![0u8; VSIZE as usize];
    let put = |g: &mut Vec<u8>, at: u64, data: &[u8]| {
        g[at as usize..at as usize + data.len()].copy_from_slice(data);
    };
    put(&mut g, 0, &random_bytes(3 * M as usize + 4096, 1));
    put(&mut g, 5 * M + 512, &text_bytes(2 * M as usize, 2));
    put(&mut g, 9 * M, &random_bytes(64 * K as usize, 3));
    put(&mut g, 13 * M - 100, &text_bytes(300, 4));
    put(&mut g, 16 * M, &[0x5a; 2 * M as usize]);
    put(&mut g, VSIZE - 1000, &random_bytes(1000, 5));
    g
}

/// A raw file with the guest bytes, written sparsely (zero runs are holes).
fn write_sparse_raw(path: &str, g: &[u8]) {
    let f = fs::File::create(path).unwrap();
    f.set_len(g.len() as u64).unwrap();
    use std::os::unix::fs::FileExt;
    for (i, block) in g.chunks(64 * K as usize).enumerate() {
        if block.iter().any(|&b| b != 0) {
            f.write_all_at(block, i as u64 * 64 * K).unwrap();
        }
    }
}

struct ContentResult {
    sha256: String,
    root: String,
    zero_chunks: u64,
}

/// `qvet digest --content` on IMG: checks the sha256 against qemu-img
/// convert + sha256sum, and the root-only mode against the full one.
fn content_of(s: &Scratch, img: &str, fmt: &str, extra: &[&str]) -> ContentResult {
    let mut args = vec!["--algo", "none", "--content", "-f", fmt];
    args.extend_from_slice(extra);
    args.push(img);
    let j = digest_json(&args);
    let c = &j[0]["content"];
    let sha = c["sha256"].as_str().unwrap().to_owned();
    let root = c["root"].as_str().unwrap().to_owned();
    assert!(root.starts_with("qvet-content-v1:"), "{c}");
    assert_eq!(
        c["virtual_size"],
        qemu_virtual_size(img, Some(fmt)),
        "{img}"
    );
    assert_eq!(c["chunk_size"], M);
    assert_eq!(c["chunks"], qemu_virtual_size(img, Some(fmt)).div_ceil(M));
    assert_eq!(c["format"], fmt);
    // The reference: qemu-img's guest view, hashed by sha256sum.
    let out = s.s(&format!(
        "ref-{}.raw",
        std::path::Path::new(img)
            .file_name()
            .unwrap()
            .to_string_lossy()
    ));
    qemu_img(&["convert", "-f", fmt, "-O", "raw", img, &out]);
    let want = tool_digest("sha256sum", &out);
    fs::remove_file(&out).unwrap();
    assert_eq!(
        sha, want,
        "content sha256 of {img} vs qemu-img convert | sha256sum"
    );
    // Root only: same root, no sha256.
    let mut args = vec!["--algo", "none", "--content=root", "-f", fmt];
    args.extend_from_slice(extra);
    args.push(img);
    let r = digest_json(&args);
    assert_eq!(
        r[0]["content"]["root"],
        root.as_str(),
        "--content=root of {img}"
    );
    assert!(r[0]["content"]["sha256"].is_null());
    ContentResult {
        sha256: sha,
        root,
        zero_chunks: c["zero_chunks"].as_u64().unwrap(),
    }
}

#[test]
fn content_digest_is_layout_independent_and_matches_qemu_img() {
    let s = Scratch::new("digest-content");
    let g = guest_bytes();
    let raw = s.s("guest.raw");
    write_file(&raw, &g);
    let sparse = s.s("sparse.raw");
    write_sparse_raw(&sparse, &g);
    let mut variants: Vec<(String, &str)> = vec![(raw.clone(), "raw"), (sparse.clone(), "raw")];
    let qcow2 = |name: &str, args: &[&str]| -> String {
        let out = s.s(name);
        let mut a = vec!["convert", "-f", "raw", "-O", "qcow2"];
        a.extend_from_slice(args);
        a.push(&raw);
        a.push(&out);
        qemu_img(&a);
        out
    };
    for (name, args) in [
        ("v3-64k.qcow2", vec![]),
        ("v2-64k.qcow2", vec!["-o", "compat=0.10"]),
        ("v3-512.qcow2", vec!["-o", "cluster_size=512"]),
        ("v2-512.qcow2", vec!["-o", "compat=0.10,cluster_size=512"]),
        ("v3-2m.qcow2", vec!["-o", "cluster_size=2M"]),
        (
            "extl2.qcow2",
            vec!["-o", "extended_l2=on,cluster_size=128k"],
        ),
        ("zlib.qcow2", vec!["-c"]),
        ("zlib-2m.qcow2", vec!["-c", "-o", "cluster_size=2M"]),
        ("zstd.qcow2", vec!["-c", "-o", "compression_type=zstd"]),
        (
            "zstd-4k.qcow2",
            vec!["-c", "-o", "compression_type=zstd,cluster_size=4096"],
        ),
        ("prealloc.qcow2", vec!["-o", "preallocation=metadata"]),
        ("falloc.qcow2", vec!["-o", "preallocation=falloc"]),
    ] {
        variants.push((qcow2(name, &args), "qcow2"));
    }
    let mut results = Vec::new();
    for (img, fmt) in &variants {
        results.push((img.clone(), content_of(&s, img, fmt, &[])));
    }
    // An overlay with no writes over the v3 image: the same guest.
    let base = s.s("v3-64k.qcow2");
    let overlay = s.s("overlay.qcow2");
    qemu_img(&[
        "create", "-q", "-f", "qcow2", "-b", &base, "-F", "qcow2", &overlay,
    ]);
    results.push((
        overlay.clone(),
        content_of(&s, &overlay, "qcow2", &["--allow-backing"]),
    ));
    // Every variant: one sha256, one root, one zero-chunk count.
    let roots: BTreeSet<&str> = results.iter().map(|(_, r)| r.root.as_str()).collect();
    let shas: BTreeSet<&str> = results.iter().map(|(_, r)| r.sha256.as_str()).collect();
    let zeros: BTreeSet<u64> = results.iter().map(|(_, r)| r.zero_chunks).collect();
    let table: Vec<String> = results
        .iter()
        .map(|(i, r)| format!("{i}: {} {} zero={}", r.sha256, r.root, r.zero_chunks))
        .collect();
    assert_eq!(
        roots.len(),
        1,
        "one root for all variants:\n{}",
        table.join("\n")
    );
    assert_eq!(
        shas.len(),
        1,
        "one sha256 for all variants:\n{}",
        table.join("\n")
    );
    assert_eq!(zeros.len(), 1, "{}", table.join("\n"));
    // The guest has 9 whole zero chunks (4, 8, 10, 11, 14, 15, 18, 19, 20).
    let all_zero = g
        .chunks(M as usize)
        .filter(|c| c.iter().all(|&b| b == 0))
        .count() as u64;
    assert_eq!(zeros.first().copied(), Some(all_zero));
    // sha256 of the guest itself.
    assert_eq!(
        shas.first().copied(),
        Some(tool_digest("sha256sum", &raw).as_str())
    );

    // Without --allow-backing the overlay's guest cannot be read: a clean
    // refusal naming the backing file.
    let r = qvet(&["digest", "--algo", "none", "--content", &overlay]);
    assert_refused(&r, &["backing"]);
}

#[test]
fn one_byte_guest_change_changes_the_root_and_the_manifest_locates_it() {
    let s = Scratch::new("digest-change");
    let g = guest_bytes();
    let raw = s.s("guest.raw");
    write_file(&raw, &g);
    let a = s.s("a.qcow2");
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", "-c", &raw, &a]);
    // The same guest with one byte changed, in an overlay (so the change
    // lives in another file than the rest of the guest) ...
    let b = s.s("b.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-b", &a, "-F", "qcow2", &b]);
    let at = 13 * M + 7;
    qemu_io("qcow2", &b, &[&format!("write -q -P 0x77 {at} 1")]);
    // ... and in a raw copy: a byte inside a whole zero chunk.
    let c = s.s("c.raw");
    let mut g2 = g.clone();
    g2[(19 * M + 5) as usize] = 1;
    write_file(&c, &g2);

    let ma = s.s("a.manifest");
    let mb = s.s("b.manifest");
    let mc = s.s("c.manifest");
    let ra = digest_json(&["--algo", "none", "--content", "--manifest-out", &ma, &a]);
    let rb = digest_json(&[
        "--algo",
        "none",
        "--content",
        "--allow-backing",
        "--manifest-out",
        &mb,
        &b,
    ]);
    // --manifest-out alone implies --content=root.
    let rc = digest_json(&["--algo", "none", "--manifest-out", &mc, &c]);
    assert!(rc[0]["content"]["sha256"].is_null());
    assert_eq!(rc[0]["content"]["manifest_file"], mc.as_str());
    let root = |r: &Vec<Value>| r[0]["content"]["root"].as_str().unwrap().to_owned();
    assert_ne!(root(&ra), root(&rb));
    assert_ne!(root(&ra), root(&rc));
    assert_ne!(root(&rb), root(&rc));
    assert_ne!(ra[0]["content"]["sha256"], rb[0]["content"]["sha256"]);

    let load = |p: &str| qvet_digest::Manifest::from_bytes(&fs::read(p).unwrap()).unwrap();
    let (a_m, b_m, c_m) = (load(&ma), load(&mb), load(&mc));
    // Stored manifests reproduce the printed roots.
    assert_eq!(a_m.root(), root(&ra));
    assert_eq!(b_m.root(), root(&rb));
    assert_eq!(c_m.root(), root(&rc));
    assert_eq!(a_m.differing_chunks(&b_m), vec![at / M]);
    assert_eq!(a_m.differing_chunks(&c_m), vec![19]);
    assert_eq!(a_m.zero_chunks(), c_m.zero_chunks() + 1);
    // The manifest file is replaced atomically on a second run.
    let again = digest_json(&["--algo", "none", "--manifest-out", &ma, &c]);
    assert_eq!(load(&ma).root(), root(&again));
    let leftovers: Vec<_> = fs::read_dir(s.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".qvet-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn content_of_qemu_io_written_images_matches_qemu_img() {
    // Zero clusters, unallocated clusters, compressed clusters among plain
    // ones, partial-cluster writes, data near the end.
    let s = Scratch::new("digest-qemu-io");
    let (text, rand) = (s.s("text.bin"), s.s("rand.bin"));
    write_file(&text, &text_bytes(4 * M as usize, 7));
    write_file(&rand, &random_bytes(4 * M as usize, 8));
    for (name, opts, cs) in [
        ("v3-64k.qcow2", "compat=1.1", 64 * K),
        ("v2-4k.qcow2", "compat=0.10,cluster_size=4096", 4 * K),
        ("extl2.qcow2", "extended_l2=on", 64 * K),
        (
            "zstd-2m.qcow2",
            "cluster_size=2M,compression_type=zstd",
            2 * M,
        ),
    ] {
        let img = s.s(name);
        let vsize = (24 * cs).max(40 * M);
        create("qcow2", opts, &img, &vsize.to_string());
        let cmds = [
            format!("write -q -P 0x11 0 {}", 2 * cs),
            format!("write -q -s {text} {} {}", 3 * cs, cs),
            format!("write -q -P 0x22 {} 1024", 5 * cs + 512),
            format!("write -q -c -s {text} {} {}", 8 * cs, 2 * cs),
            format!("write -q -c -s {rand} {} {}", 12 * cs, cs),
            format!("write -q -z {} {}", 20 * cs, cs),
            format!("write -q -z 0 {cs}"),
            format!("write -q -P 0x55 {} {}", vsize - 2 * cs, cs),
        ];
        let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
        qemu_io("qcow2", &img, &refs);
        content_of(&s, &img, "qcow2", &[]);
    }
}

#[test]
fn file_and_content_digests_together() {
    // For a raw image the content sha256 is the file's sha256.
    let s = Scratch::new("digest-both");
    let raw = s.s("g.raw");
    write_file(&raw, &random_bytes(3 * M as usize + 512, 9));
    let j = digest_json(&["--algo", "sha256", "--content", &raw]);
    assert_eq!(j[0]["file"]["sha256"], j[0]["content"]["sha256"]);
    assert_eq!(j[0]["size"], 3 * M + 512);
    // Human output shows both identities.
    let r = qvet(&["digest", "--content", &raw]);
    assert_success(&r);
    let out = r.stdout_str();
    for needle in [
        "content sha256",
        "content root    qvet-content-v1:",
        "4 of 1 MiB, 0 all zero",
    ] {
        assert!(out.contains(needle), "{needle}\n{out}");
    }
    // Sums output carries the content digests as comments only.
    let r = qvet(&["digest", "--content", "--output", "sums", &raw]);
    assert_success(&r);
    let out = r.stdout_str();
    assert!(
        out.lines()
            .any(|l| l.starts_with("# content-root qvet-content-v1:")),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| !l.starts_with('#')).count(),
        3,
        "one line per default algorithm\n{out}"
    );
}
