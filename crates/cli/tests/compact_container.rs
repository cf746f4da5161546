//! `qvet compact` at the container level, on qcow2 images shaped with
//! `qemu-img` and `qemu-io`: leaked clusters, zero clusters, allocated
//! zeros, metadata preallocation, an overlay, internal snapshots,
//! compression, determinism across thread counts, refusals, and a kill -9
//! in the middle of a write. Each output is checked with `qemu-img check`
//! (clean) and `qemu-img compare` against the input (identical).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;

fn compact_json(args: &[&str]) -> Value {
    let mut a = vec!["compact", "--output", "json", "-q"];
    a.extend_from_slice(args);
    let r = qvet(&a);
    assert_success(&r);
    serde_json::from_slice(&r.stdout).unwrap()
}

fn assert_check_clean(img: &str) {
    let r = qemu_img_any(&["check", "--output=json", "-f", "qcow2", img]);
    assert_eq!(r.code(), Some(0), "qemu-img check\n{}", r.describe());
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    for k in ["check-errors", "corruptions", "leaks"] {
        assert!(v.get(k).is_none_or(|x| x.as_u64() == Some(0)), "{k} in {v}");
    }
}

fn assert_same_guest(a: &str, b: &str) {
    let r = qemu_img_any(&["compare", "-f", "qcow2", "-F", "qcow2", a, b]);
    assert_eq!(r.code(), Some(0), "{}", r.describe());
}

fn size_of(p: &str) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

fn dropped(v: &Value, cat: &str) -> u64 {
    v["dropped"][cat].as_u64().unwrap()
}

/// Leaked, zero-flag and allocated-but-zero clusters are dropped; the
/// guest view is unchanged; the dry run says the same.
#[test]
fn leaked_zero_and_zero_data_clusters() {
    let s = Scratch::new("compact-container");
    let img = s.s("c.qcow2");
    create("qcow2", "", &img, "16M");
    qemu_io(
        "qcow2",
        &img,
        &[
            "write -P 0x11 0 4M",
            "write -z 1M 1M",
            "write -P 0 8M 1M",
            "write -P 0x22 12M 64k",
        ],
    );
    // Leak the cluster at 12M: clear its L2 entry.
    let l1 = peek_u64(&img, 40);
    let l2 = peek_u64(&img, l1) & 0x00ff_ffff_ffff_fe00;
    poke_u64(&img, l2 + (12 * MIB / 65536) * 8, 0);
    let chk = qemu_img_any(&["check", "--output=json", "-f", "qcow2", &img]);
    assert_eq!(chk.code(), Some(3), "{}", chk.describe());
    let out = s.s("out.qcow2");
    let dry = compact_json(&["--dry-run", "-f", "qcow2", &img, &out]);
    let v = compact_json(&["-f", "qcow2", &img, &out]);
    assert_eq!(dry["dropped"], v["dropped"]);
    assert_eq!(dry["output_file_size"], v["output_file_size"]);
    assert_check_clean(&out);
    assert_same_guest(&img, &out);
    assert_eq!(dropped(&v, "leaked"), 65536, "{v:#}");
    // A leak is dropped, not damage worth a warning.
    assert_eq!(v["input_damage"], serde_json::json!([]), "{v:#}");
    assert!(dropped(&v, "zero") >= MIB, "{v:#}");
    assert_eq!(dropped(&v, "zero_data"), MIB, "{v:#}");
    // 3 MiB of data and a few metadata clusters.
    assert_eq!(v["data_clusters"].as_u64(), Some(48), "{v:#}");
    let reference = s.s("ref.qcow2");
    qemu_img(&[
        "convert", "-q", "-f", "qcow2", "-O", "qcow2", &img, &reference,
    ]);
    assert!(
        size_of(&out) <= size_of(&reference),
        "{} vs {}",
        size_of(&out),
        size_of(&reference)
    );
    // The human report names the categories and prints the proof with
    // both digests, equal.
    let human = s.s("human.qcow2");
    let r = qvet(&["compact", "-q", "-f", "qcow2", &img, &human]);
    assert_success(&r);
    let text = r.stdout_str();
    for needle in [
        "zero_data 1.0 MiB",
        "leaked 64.0 KiB",
        "proof (OUT re-read",
        "kept guest bytes equal",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let line = text
        .lines()
        .find(|l| l.contains("kept guest bytes equal"))
        .unwrap();
    let digests: Vec<&str> = line.split_whitespace().filter(|w| w.len() == 64).collect();
    assert_eq!(digests.len(), 2, "{line}");
    assert_eq!(digests[0], digests[1], "{line}");
    let never = s.s("never.qcow2");
    let dry = qvet(&["compact", "--dry-run", "-f", "qcow2", &img, &never]);
    assert_success(&dry);
    assert!(dry.stdout_str().contains("dry run: nothing written"));
    assert!(!Path::new(&never).exists());
}

/// A download cut short: the L2 table and the data lie past the end of the
/// file. qemu reads the missing bytes as zeros and so does the output, but
/// the damage is said (stderr warning, JSON `input_damage`), never passed
/// over silently.
#[test]
fn a_truncated_input_is_compacted_with_a_warning() {
    let s = Scratch::new("compact-truncated");
    let full = s.s("full.qcow2");
    create("qcow2", "", &full, "64M");
    qemu_io("qcow2", &full, &["write -P 1 0 1M"]);
    let img = s.s("cut.qcow2");
    let bytes = std::fs::read(&full).unwrap();
    std::fs::write(&img, &bytes[..300_000]).unwrap();
    let chk = qemu_img_any(&["check", "-f", "qcow2", &img]);
    assert_eq!(chk.code(), Some(2), "{}", chk.describe());
    let out = s.s("out.qcow2");
    let r = qvet(&["compact", "-q", "--output", "json", &img, &out]);
    assert_success(&r);
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    let damage = v["input_damage"].as_array().unwrap();
    assert!(!damage.is_empty(), "{v:#}");
    let err = &r.stderr;
    assert!(
        err.contains("warning") && err.contains("is damaged") && err.contains("past the end"),
        "{err}"
    );
    assert_check_clean(&out);
    assert_same_guest(&img, &out);
}

/// A compressed cluster that does not decode: qemu-img convert fails on it,
/// and so does compact (writing decodes every kept cluster; the input check
/// does not decode a second time), leaving nothing at OUT.
#[test]
fn an_undecodable_compressed_cluster_fails_as_qemu_img_does() {
    let s = Scratch::new("compact-undecodable");
    let img = s.s("c.qcow2");
    create("qcow2", "", &img, "64M");
    qemu_io(
        "qcow2",
        &img,
        &["write -q -c -P 0x33 0 64k", "write -q -P 0x44 1M 64k"],
    );
    // A fresh 64 KiB-cluster image puts its first data cluster at 0x50000
    // (qcow2.md §1.12): the compressed stream starts there. 0xff… is the
    // reserved deflate block type.
    poke(&img, 0x50000, &[0xff; 16]);
    let qemu_out = s.s("qemu.qcow2");
    let q = qemu_img_any(&["convert", "-f", "qcow2", "-O", "qcow2", &img, &qemu_out]);
    assert_ne!(
        q.code(),
        Some(0),
        "qemu-img reads the poked stream\n{}",
        q.describe()
    );
    let out = s.s("out.qcow2");
    let r = qvet(&["compact", "-q", "-f", "qcow2", &img, &out]);
    assert_eq!(r.code(), Some(1), "{}", r.describe());
    assert!(r.stderr.contains("deflate"), "{}", r.stderr);
    // Nothing of ours is left: only the input and qemu-img's own output.
    let left: Vec<_> = std::fs::read_dir(s.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "c.qcow2" && n != "qemu.qcow2")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn metadata_preallocation_is_dropped() {
    let s = Scratch::new("compact-prealloc");
    let img = s.s("p.qcow2");
    create("qcow2", "preallocation=metadata", &img, "64M");
    qemu_io("qcow2", &img, &["write -P 5 0 1M"]);
    let out = s.s("out.qcow2");
    let v = compact_json(&["-f", "qcow2", &img, &out]);
    assert_check_clean(&out);
    assert_same_guest(&img, &out);
    assert!(
        dropped(&v, "zero") + dropped(&v, "unallocated") >= 63 * MIB,
        "{v:#}"
    );
    assert!(size_of(&out) < 2 * MIB, "{}", size_of(&out));
}

#[test]
fn an_overlay_is_flattened_only_when_allowed() {
    let s = Scratch::new("compact-overlay");
    let base = s.s("base.qcow2");
    create("qcow2", "", &base, "8M");
    qemu_io("qcow2", &base, &["write -P 1 0 2M", "write -P 3 6M 1M"]);
    let over = s.s("over.qcow2");
    create(
        "qcow2",
        &format!("backing_file={base},backing_fmt=qcow2"),
        &over,
        "8M",
    );
    qemu_io(
        "qcow2",
        &over,
        &["write -P 2 512k 256k", "write -z 6M 512k"],
    );
    let out = s.s("out.qcow2");
    let r = qvet(&["compact", "-q", "-f", "qcow2", &over, &out]);
    assert_refused(&r, &["allow-backing"]);
    assert!(!Path::new(&out).exists());
    let v = compact_json(&["--allow-backing", "-f", "qcow2", &over, &out]);
    assert_check_clean(&out);
    assert_same_guest(&over, &out);
    let info = qemu_info(&out, Some("qcow2"));
    assert!(info.get("backing-filename").is_none(), "{info}");
    assert_eq!(v["data_clusters"].as_u64(), Some(32 + 8), "{v:#}");
    // The output replaces both files: sizes are compared with their sum.
    assert_eq!(v["input_files"].as_u64(), Some(2), "{v:#}");
    assert_eq!(v["input_file_size"].as_u64(), Some(size_of(&over)));
    assert_eq!(
        v["input_total_size"].as_u64(),
        Some(size_of(&over) + size_of(&base)),
        "{v:#}"
    );
}

#[test]
fn internal_snapshots_are_refused_unless_dropped() {
    let s = Scratch::new("compact-snap");
    let img = s.s("s.qcow2");
    create("qcow2", "", &img, "8M");
    qemu_io("qcow2", &img, &["write -P 1 0 1M"]);
    qemu_img(&["snapshot", "-c", "before-upgrade", &img]);
    qemu_io("qcow2", &img, &["write -P 2 0 1M"]);
    let out = s.s("out.qcow2");
    let r = qvet(&["compact", "-q", "-f", "qcow2", &img, &out]);
    assert_refused(&r, &["before-upgrade"]);
    assert!(r.stderr.contains("--drop-snapshots"), "{}", r.describe());
    assert!(!Path::new(&out).exists());
    let v = compact_json(&["--drop-snapshots", "-f", "qcow2", &img, &out]);
    assert_check_clean(&out);
    assert_same_guest(&img, &out);
    assert_eq!(dropped(&v, "snapshot"), MIB, "{v:#}");
    let info = qemu_info(&out, Some("qcow2"));
    assert!(info.get("snapshots").is_none(), "{info}");
}

/// A mix of compressible, incompressible and zero data.
fn mixed_image(s: &Scratch) -> String {
    let raw = s.s("mixed.raw");
    let mut data = Vec::new();
    data.extend(text_bytes(3 * MIB as usize, 1));
    data.extend(random_bytes(MIB as usize, 2));
    data.extend(vec![0u8; MIB as usize]);
    data.extend(text_bytes(MIB as usize + 4321, 3));
    data.resize(8 * MIB as usize, 0);
    write_file(&raw, &data);
    let img = s.s("mixed.qcow2");
    qemu_img(&["convert", "-q", "-f", "raw", "-O", "qcow2", &raw, &img]);
    img
}

#[test]
fn compressed_outputs_are_valid_and_smaller_than_qemu_img() {
    let s = Scratch::new("compact-c");
    let img = mixed_image(&s);
    for kind in ["zlib", "zstd"] {
        let out = s.s(&format!("out-{kind}.qcow2"));
        let v = compact_json(&["-c", "--compression-type", kind, "-f", "qcow2", &img, &out]);
        assert_check_clean(&out);
        assert_same_guest(&img, &out);
        assert!(v["compressed_clusters"].as_u64().unwrap() >= 60, "{v:#}");
        let info = qemu_info(&out, Some("qcow2"));
        assert_eq!(info["format-specific"]["data"]["compression-type"], kind);
        let reference = s.s(&format!("ref-{kind}.qcow2"));
        qemu_img(&[
            "convert",
            "-q",
            "-c",
            "-f",
            "qcow2",
            "-O",
            "qcow2",
            "-o",
            &format!("compression_type={kind}"),
            &img,
            &reference,
        ]);
        // Within one cluster of qemu-img's (same codec, metadata at the end).
        assert!(
            size_of(&out) <= size_of(&reference) + 65536,
            "{kind}: {} vs {}",
            size_of(&out),
            size_of(&reference)
        );
    }
}

/// Real files of this machine (executables and scripts from /usr/bin,
/// 4 KiB-aligned as a filesystem stores them), concatenated up to `limit`
/// bytes: data no one here wrote, where deflate's short matches matter.
fn machine_binaries(limit: usize) -> Vec<u8> {
    let mut names: Vec<_> = std::fs::read_dir("/usr/bin")
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    let mut data = Vec::new();
    for p in names {
        if data.len() >= limit {
            break;
        }
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if let Ok(bytes) = std::fs::read(&p) {
            data.extend_from_slice(&bytes);
            data.resize(data.len().next_multiple_of(4096), 0);
        }
    }
    data.truncate(limit);
    data
}

/// With nothing to reclaim, `-c` must not come out larger than
/// `qemu-img convert -c` (qemu's zlib at its default level): the deflate
/// level is chosen so that zlib-rs matches it on real executables, where
/// zlib-rs's default level makes streams a few percent larger.
#[test]
fn compressed_real_binaries_are_no_larger_than_qemu_img() {
    let s = Scratch::new("compact-c-real");
    let raw = s.s("bin.raw");
    let mut data = machine_binaries(16 * MIB as usize);
    assert!(data.len() >= 8 * MIB as usize, "too few files in /usr/bin");
    data.resize(16 * MIB as usize, 0);
    write_file(&raw, &data);
    let img = s.s("bin.qcow2");
    qemu_img(&["convert", "-q", "-f", "raw", "-O", "qcow2", &raw, &img]);
    let out = s.s("out.qcow2");
    compact_json(&["-c", "--keep-free-space", "-f", "qcow2", &img, &out]);
    assert_same_guest(&img, &out);
    let reference = s.s("ref.qcow2");
    qemu_img(&[
        "convert", "-q", "-c", "-f", "raw", "-O", "qcow2", &raw, &reference,
    ]);
    let (ours, theirs) = (size_of(&out), size_of(&reference));
    assert!(
        ours <= theirs + theirs / 200 + 65536,
        "qvet -c {ours} bytes, qemu-img -c {theirs}"
    );
}

fn compact_with_threads(threads: &str, args: &[&str]) {
    let out = Command::new(QVET)
        .env("RAYON_NUM_THREADS", threads)
        .arg("compact")
        .arg("-q")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn output_is_identical_whatever_the_thread_count() {
    let s = Scratch::new("compact-det");
    let img = mixed_image(&s);
    for extra in [
        &[][..],
        &["-c"][..],
        &["-c", "--compression-type", "zstd", "--cluster-size", "4k"][..],
    ] {
        let a = s.s("t1.qcow2");
        let b = s.s("t4.qcow2");
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["--overwrite", "-f", "qcow2", &img]);
        let mut a1 = args.clone();
        a1.push(&a);
        let mut a4 = args.clone();
        a4.push(&b);
        compact_with_threads("1", &a1);
        compact_with_threads("4", &a4);
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "{extra:?}: outputs differ"
        );
        assert_check_clean(&a);
    }
}

#[test]
fn refuses_to_overwrite_its_input_or_an_existing_file() {
    let s = Scratch::new("compact-refuse");
    let img = mixed_image(&s);
    let before = std::fs::read(&img).unwrap();
    let r = qvet(&["compact", "-q", "--overwrite", "-f", "qcow2", &img, &img]);
    assert_refused(&r, &["input"]);
    assert!(std::fs::read(&img).unwrap() == before);
    let other = s.s("exists.qcow2");
    write_file(&other, b"keep me");
    let r = qvet(&["compact", "-q", "-f", "qcow2", &img, &other]);
    assert_refused(&r, &["exists"]);
    assert_eq!(std::fs::read(&other).unwrap(), b"keep me");
}

/// SIGKILL while the temporary file is being written: no OUT, input
/// intact.
/// OUT's permissions: a new file gets what qemu-img's would (0666 less the
/// umask) but no wider than the input's; a replaced file keeps its own.
#[test]
fn output_permissions_follow_the_umask_the_input_and_a_replaced_file() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let set = |p: &str, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    let s = Scratch::new("compact-mode");
    let img = s.s("in.qcow2");
    create("qcow2", "", &img, "8M");
    qemu_io("qcow2", &img, &["write -q -P 7 0 1M"]);
    // What a new file gets here (the umask of this test process).
    let probe = s.s("probe.qcow2");
    create("qcow2", "", &probe, "1M");
    let fresh = mode(&probe);
    set(&img, 0o644);
    let out = s.s("out.qcow2");
    compact_json(&["-f", "qcow2", &img, &out]);
    assert_eq!(mode(&out), fresh & 0o644, "new OUT from a 0644 input");
    let conv = s.s("out.raw");
    assert_success(&qvet(&["convert", "-f", "qcow2", "-O", "raw", &img, &conv]));
    assert_eq!(
        mode(&conv),
        fresh & 0o644,
        "convert output from a 0644 input"
    );
    set(&img, 0o600);
    let private = s.s("private.qcow2");
    compact_json(&["-f", "qcow2", &img, &private]);
    assert_eq!(
        mode(&private),
        fresh & 0o600,
        "an owner-only input stays owner-only"
    );
    set(&out, 0o640);
    compact_json(&["--overwrite", "-f", "qcow2", &img, &out]);
    assert_eq!(mode(&out), 0o640, "a replaced OUT keeps its bits");
}

#[test]
fn kill_9_mid_write_leaves_no_output() {
    let s = Scratch::new("compact-kill");
    let raw = s.s("big.raw");
    write_file(&raw, &random_bytes(192 * MIB as usize, 9));
    let img = s.s("big.qcow2");
    qemu_img(&["convert", "-q", "-f", "raw", "-O", "qcow2", &raw, &img]);
    let before = std::fs::read(&img).unwrap();
    let out = s.s("out.qcow2");
    let mut child = Command::new(QVET)
        .args(["compact", "-q", "-c", "-f", "qcow2", &img, &out])
        .spawn()
        .unwrap();
    // Wait until the output file is open (an unnamed file in the scratch
    // dir: `/proc/PID/fd` shows it as "DIR/#N (deleted)"), then kill.
    let dir = s.root().to_string_lossy().into_owned();
    let pid = child.id();
    let writing = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|fds| {
                fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .any(|t| {
                        let t = t.to_string_lossy();
                        t.starts_with(&dir)
                            && (t.ends_with("(deleted)") || t.ends_with(".qvet-tmp"))
                    })
            })
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = loop {
        let seen = writing();
        if seen || Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    std::thread::sleep(Duration::from_millis(50));
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert!(started, "the write never started");
    assert!(
        !status.success(),
        "compact finished before the kill; make the image larger"
    );
    assert!(!Path::new(&out).exists(), "OUT exists after kill -9");
    // Nothing at all is left: the output had no name yet.
    let mut left: Vec<String> = std::fs::read_dir(s.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["big.qcow2".to_string(), "big.raw".to_string()]);
    assert!(std::fs::read(&img).unwrap() == before, "input modified");
}

/// With nothing to reclaim beyond zeros, the uncompressed output is the
/// file `qemu-img convert -O qcow2` writes, byte for byte (same layout:
/// header, refcount table, refcount block, L1, each L2 table before its
/// first data cluster, data in guest order).
#[test]
fn uncompressed_output_is_qemu_img_convert_layout() {
    let s = Scratch::new("compact-layout");
    let img = mixed_image(&s);
    let raw = s.s("mixed.raw");
    let ours = s.s("ours.qcow2");
    compact_json(&["-f", "raw", &raw, &ours]);
    let theirs = s.s("theirs.qcow2");
    qemu_img(&["convert", "-q", "-f", "raw", "-O", "qcow2", &raw, &theirs]);
    assert!(
        std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap(),
        "output differs from qemu-img convert's"
    );
    // From the qcow2 input as well.
    let ours2 = s.s("ours2.qcow2");
    compact_json(&["-f", "qcow2", &img, &ours2]);
    assert!(std::fs::read(&ours2).unwrap() == std::fs::read(&theirs).unwrap());
}

/// Degenerate inputs: an empty image, a raw image whose size is not a
/// multiple of 512 (rounded up as qemu-img does), tiny and huge clusters.
#[test]
fn degenerate_sizes_and_cluster_sizes() {
    let s = Scratch::new("compact-sizes");
    let empty = s.s("empty.raw");
    write_file(&empty, b"");
    let out = s.s("empty.qcow2");
    compact_json(&["-f", "raw", &empty, &out]);
    assert_check_clean(&out);
    assert_eq!(qemu_virtual_size(&out, Some("qcow2")), 0);
    let odd = s.s("odd.raw");
    write_file(&odd, &random_bytes(1_000_001, 4));
    let out = s.s("odd.qcow2");
    compact_json(&["-f", "raw", &odd, &out]);
    assert_check_clean(&out);
    assert_eq!(qemu_virtual_size(&out, Some("qcow2")), 1_000_448);
    let back = s.s("odd.back");
    qemu_img(&["convert", "-q", "-O", "raw", &out, &back]);
    let b = std::fs::read(&back).unwrap();
    assert!(
        b[..1_000_001] == std::fs::read(&odd).unwrap()[..]
            && b[1_000_001..].iter().all(|&x| x == 0)
    );
    let img = mixed_image(&s);
    for (cs, c) in [("512", false), ("2M", true), ("4k", true)] {
        let out = s.s(&format!("cs{cs}.qcow2"));
        let mut a = vec!["--cluster-size", cs, "-f", "qcow2", &img, &out];
        if c {
            a.insert(0, "-c");
        }
        compact_json(&a);
        assert_check_clean(&out);
        assert_same_guest(&img, &out);
    }
    // Two 4 KiB writes become two 2 MiB clusters plus 2 MiB metadata
    // clusters: bigger than the input, which the report says.
    let small = s.s("small.qcow2");
    create("qcow2", "cluster_size=4096", &small, "64M");
    qemu_io("qcow2", &small, &["write -P 1 0 4k", "write -P 2 8M 4k"]);
    let big = s.s("big.qcow2");
    let r = qvet(&["compact", "-q", "--cluster-size", "2M", &small, &big]);
    assert_success(&r);
    assert!(size_of(&big) > size_of(&small));
    assert!(
        r.stdout_str()
            .contains("note: the output is larger than the input"),
        "{}",
        r.stdout_str()
    );
    assert_same_guest(&small, &big);
}

/// An encrypted backing file under an unencrypted overlay: flattening
/// would store its content in plaintext, so compact refuses (the encrypted
/// image alone is compacted encrypted: `compact.rs`).
#[test]
fn encrypted_backing_under_a_plain_overlay_is_refused() {
    let s = Scratch::new("compact-enc");
    let key = s.s("key");
    write_file(&key, b"sesame");
    let base = s.s("enc.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "--object",
        &format!("secret,id=sec0,file={key}"),
        "-f",
        "qcow2",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
        &base,
        "4M",
    ]);
    let top = s.s("top.qcow2");
    qemu_img(&[
        "create", "-q", "-f", "qcow2", "-b", &base, "-F", "qcow2", &top,
    ]);
    let out = s.s("out.qcow2");
    let r = qvet(&[
        "compact",
        "-q",
        "--allow-backing",
        "--key-file",
        &key,
        &top,
        &out,
    ]);
    assert_eq!(r.code(), Some(1), "{}", r.describe());
    assert!(r.stderr.contains("plaintext"), "{}", r.describe());
    assert!(!Path::new(&out).exists());
}
