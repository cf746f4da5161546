//! Hostile images: a fresh `qemu-img create` 64 MiB qcow2 (64 KiB clusters,
//! layout of qcow2.md §1.12: reftable 0x10000, refblock 0x20000, L1 0x30000,
//! first L2 0x40000, first data 0x50000) with bytes poked into it.
//!
//! For every case: qvet exits 0 or 1 (never 101, never a signal), stderr has
//! no "panicked", every refusal starts with `qvet: `, and every run finishes
//! within `HOSTILE_TIMEOUT`. Where qemu-img also refuses, that is asserted
//! too (documenting parity). Where qvet accepts an image qemu-img accepts,
//! its output must agree with qemu-img's.

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

// Header field offsets (qcow2.md §1.2).
const VERSION: u64 = 4;
const BACKING_OFFSET: u64 = 8;
const BACKING_SIZE: u64 = 16;
const CLUSTER_BITS: u64 = 20;
const SIZE: u64 = 24;
const L1_SIZE: u64 = 36;
const REFTABLE_CLUSTERS: u64 = 56;
const NB_SNAPSHOTS: u64 = 60;
const SNAPSHOTS_OFFSET: u64 = 64;
const INCOMPATIBLE: u64 = 72;
const COMPATIBLE: u64 = 80;
const AUTOCLEAR: u64 = 88;
const HEADER_LENGTH: u64 = 100;

const L1_OFFSET: u64 = 0x30000;
const L2_OFFSET: u64 = 0x40000;
/// Feature-name table entries start after the 8-byte extension header at 112.
const FEATURE_TABLE: u64 = 120;

const SECRET: &[u8] = b"SECRET-HOST-DATA\n";

/// Fresh 64 MiB qcow2 with data at 0..128k and 1M..1M+64k.
fn base_image(s: &Scratch, name: &str) -> String {
    let img = s.s(name);
    create("qcow2", "", &img, "64M");
    qemu_io(
        "qcow2",
        &img,
        &["write -q -P 0x5a 0 128k", "write -q -P 0x6b 1M 64k"],
    );
    img
}

fn qcow2_flags() -> Vec<&'static str> {
    vec!["-f", "qcow2"]
}

/// Runs `qvet info`, `map`, `convert` (with `flags`) under the hostile
/// deadline; every run must be clean. Returns (info, map, convert, out).
fn run_three(s: &Scratch, img: &str, flags: &[&str]) -> (Run, Run, Run, String) {
    let out = s.s(&format!(
        "out-{}-{}.raw",
        Path::new(img).file_name().unwrap().to_string_lossy(),
        flags.join("")
    ));
    let mut a = vec!["info", "--output", "json"];
    a.extend_from_slice(flags);
    a.push(img);
    let info = qvet_hostile(&a);
    assert_clean(&info);
    let mut a = vec!["map", "--output", "json"];
    a.extend_from_slice(flags);
    a.push(img);
    let map = qvet_hostile(&a);
    assert_clean(&map);
    let mut a = vec!["convert", "-O", "raw"];
    a.extend_from_slice(flags);
    a.push(img);
    a.push(&out);
    let conv = qvet_hostile(&a);
    assert_clean(&conv);
    (info, map, conv, out)
}

/// qvet must refuse info, map and convert (exit 1, `qvet: ` prefix,
/// mentioning one of `needles`), and qemu-img must refuse too.
fn assert_all_refused(s: &Scratch, img: &str, flags: &[&str], needles: &[&str]) {
    let (info, map, conv, _) = run_three(s, img, flags);
    assert_refused(&info, needles);
    assert_refused(&map, needles);
    assert_refused(&conv, needles);
    let mut q = vec!["info", "--output=json"];
    q.extend_from_slice(flags);
    q.push(img);
    let qr = qemu_img_any(&q);
    assert!(!qr.ok(), "parity: qemu-img refuses too\n{}", qr.describe());
}

/// Clean everywhere; where both qvet and qemu-img succeed, they agree.
fn assert_clean_and_agrees(s: &Scratch, img: &str, flags: &[&str]) {
    let (info, map, conv, out) = run_three(s, img, flags);

    let mut q = vec!["info", "--output=json"];
    q.extend_from_slice(flags);
    q.push(img);
    let qi = qemu_img_any(&q);
    if info.ok() && qi.ok() {
        let qemu: serde_json::Value = serde_json::from_slice(&qi.stdout).expect("qemu json");
        let mut mine = parse_qvet_json(&info);
        strip_qvet(&mut mine);
        let mut diffs = Vec::new();
        json_diff("$", &qemu, &mine, &mut diffs);
        assert!(
            diffs.is_empty(),
            "qvet info accepted the image but differs from qemu-img:\n{}\n{}",
            diffs.join("\n"),
            info.describe()
        );
    }

    let mut q = vec!["map", "--output=json"];
    q.extend_from_slice(flags);
    q.push(img);
    let qm = qemu_img_any(&q);
    if map.ok() && qm.ok() {
        assert_map_text_eq(&qm.stdout, &map, "hostile map");
    }

    let reference = format!("{out}.qemu");
    let mut q = vec!["convert"];
    q.extend_from_slice(flags);
    q.extend(["-O", "raw", img, reference.as_str()]);
    let qc = qemu_img_any(&q);
    if conv.ok() && qc.ok() {
        assert_files_eq(Path::new(&reference), Path::new(&out), "hostile convert");
    }
}

// ---------------------------------------------------------------------------
// Truncation
// ---------------------------------------------------------------------------

#[test]
fn truncated_empty_file() {
    let s = Scratch::new("h-empty");
    let img = s.s("empty.qcow2");
    write_file(&img, b"");
    assert_all_refused(&s, &img, &qcow2_flags(), &[]);
    // Probed: an empty file is an (empty) raw image for qemu-img.
    run_three(&s, &img, &[]);
}

#[test]
fn truncated_50_bytes() {
    let s = Scratch::new("h-50");
    let img = base_image(&s, "t50.qcow2");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(50)
        .unwrap();
    assert_all_refused(&s, &img, &qcow2_flags(), &[]);
    run_three(&s, &img, &[]);
}

fn truncate_case(tag: &str, len: u64) {
    let s = Scratch::new(tag);
    let img = base_image(&s, "trunc.qcow2");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(len)
        .unwrap();
    assert_clean_and_agrees(&s, &img, &qcow2_flags());
}

#[test]
fn truncated_header_only_112_bytes() {
    truncate_case("h-112", 112);
}

#[test]
fn truncated_in_the_middle_of_l1() {
    truncate_case("h-mid-l1", L1_OFFSET + 4);
}

#[test]
fn truncated_in_the_middle_of_l2() {
    truncate_case("h-mid-l2", L2_OFFSET + 100);
}

#[test]
fn truncated_in_the_middle_of_data() {
    truncate_case("h-mid-data", 0x50000 + 1000);
}

// ---------------------------------------------------------------------------
// Header fields
// ---------------------------------------------------------------------------

#[test]
fn l1_size_ffffffff() {
    let s = Scratch::new("h-l1max");
    let img = base_image(&s, "l1.qcow2");
    poke_u32(&img, L1_SIZE, 0xffff_ffff);
    assert_all_refused(&s, &img, &qcow2_flags(), &[]);
}

#[test]
fn l1_size_4194304_on_a_tiny_file() {
    // Within qemu's limit (32 MiB of L1), but the file is only ~400 KiB:
    // qemu reads the missing part as zeros. qvet must not hang or blow up.
    let s = Scratch::new("h-l1big");
    let img = base_image(&s, "l1.qcow2");
    poke_u32(&img, L1_SIZE, 4_194_304);
    assert_clean_and_agrees(&s, &img, &qcow2_flags());
}

#[test]
fn cluster_bits_8() {
    let s = Scratch::new("h-cb8");
    let img = base_image(&s, "cb.qcow2");
    poke_u32(&img, CLUSTER_BITS, 8);
    assert_all_refused(&s, &img, &qcow2_flags(), &["cluster"]);
}

#[test]
fn cluster_bits_22() {
    let s = Scratch::new("h-cb22");
    let img = base_image(&s, "cb.qcow2");
    poke_u32(&img, CLUSTER_BITS, 22);
    assert_all_refused(&s, &img, &qcow2_flags(), &["cluster"]);
}

fn assert_legacy_qcow_refused(r: &Run) {
    assert_refused(r, &["qcow"]);
    let low = r.stderr.to_lowercase();
    assert!(
        low.contains("v1") || low.contains("legacy") || low.contains("version 1"),
        "message should say this is legacy qcow v1\n{}",
        r.describe()
    );
}

#[test]
fn version_1_poked_is_legacy_qcow() {
    let s = Scratch::new("h-v1");
    let img = base_image(&s, "v1.qcow2");
    poke_u32(&img, VERSION, 1);
    for flags in [qcow2_flags(), vec![]] {
        let (info, map, conv, _) = run_three(&s, &img, &flags);
        assert_legacy_qcow_refused(&info);
        assert_legacy_qcow_refused(&map);
        assert_legacy_qcow_refused(&conv);
    }
    let q = qemu_img_any(&["info", "-f", "qcow2", &img]);
    assert!(!q.ok(), "parity: qemu-img -f qcow2 refuses version 1");
}

#[test]
fn real_legacy_qcow_v1_file() {
    let s = Scratch::new("h-qcow1");
    let img = s.s("old.qcow");
    create("qcow", "", &img, "16M");
    qemu_io("qcow", &img, &["write -q -P 0x11 0 64k"]);
    for flags in [qcow2_flags(), vec![]] {
        let (info, map, conv, _) = run_three(&s, &img, &flags);
        assert_legacy_qcow_refused(&info);
        assert_legacy_qcow_refused(&map);
        assert_legacy_qcow_refused(&conv);
    }
}

#[test]
fn version_4() {
    let s = Scratch::new("h-v4");
    let img = base_image(&s, "v4.qcow2");
    poke_u32(&img, VERSION, 4);
    assert_all_refused(&s, &img, &qcow2_flags(), &["version"]);
}

#[test]
fn unknown_incompatible_bit_63_unnamed() {
    let s = Scratch::new("h-inc63");
    let img = base_image(&s, "inc.qcow2");
    poke_u64(&img, INCOMPATIBLE, 1 << 63);
    assert_all_refused(&s, &img, &qcow2_flags(), &["incompatible", "feature"]);
}

#[test]
fn unknown_incompatible_bit_63_named_in_feature_table() {
    let s = Scratch::new("h-inc63n");
    let img = base_image(&s, "inc.qcow2");
    poke_u64(&img, INCOMPATIBLE, 1 << 63);
    // Replace the last (8th) feature-table entry with "incompatible bit 63".
    let mut entry = vec![0u8, 63];
    entry.extend_from_slice(b"Test feature");
    entry.resize(48, 0);
    poke(&img, FEATURE_TABLE + 7 * 48, &entry);
    let q = qemu_img_any(&["info", "-f", "qcow2", &img]);
    assert!(
        q.stderr.contains("Test feature"),
        "qemu-img names the feature\n{}",
        q.describe()
    );
    assert_all_refused(&s, &img, &qcow2_flags(), &["Test feature"]);
}

fn unknown_optional_bits_image(s: &Scratch) -> String {
    let img = base_image(s, "bits.qcow2");
    poke_u64(&img, AUTOCLEAR, 1 << 63);
    poke_u64(&img, COMPATIBLE, 1 << 62);
    img
}

#[test]
fn unknown_autoclear_and_compatible_bits_still_open() {
    let s = Scratch::new("h-autoclear");
    let img = unknown_optional_bits_image(&s);
    check_all(&s, &img, &Opts::qcow2());
    // Read-only: qvet must not clear the bits (qemu does on RW open).
    assert_eq!(peek_u64(&img, AUTOCLEAR), 1 << 63);
    assert_eq!(peek_u64(&img, COMPATIBLE), 1 << 62);
}

#[test]
fn unknown_autoclear_and_compatible_bits_are_reported() {
    let s = Scratch::new("h-autoclear-rep");
    let img = unknown_optional_bits_image(&s);
    let json = qvet_hostile(&["info", "--output", "json", "-f", "qcow2", &img]);
    assert_success(&json);
    let mut v = parse_qvet_json(&json);
    let extra = strip_qvet(&mut v);
    let human = qvet_hostile(&["info", "-f", "qcow2", &img]);
    assert_success(&human);
    let all = format!(
        "{}\n{}",
        serde_json::to_string(&extra).unwrap(),
        human.stdout_str()
    )
    .to_lowercase();
    for (bit, mask) in [("63", "8000000000000000"), ("62", "4000000000000000")] {
        assert!(
            all.contains(&format!("bit {bit}")) || all.contains(mask) || all.contains(&format!("\"{bit}\""))
                || all.contains(&format!("[{bit}]")) || all.contains(&format!(": {bit}")),
            "qvet should report unknown feature bit {bit} (in the \"qvet\" JSON object or the human output)\nqvet object: {}\nhuman:\n{}",
            serde_json::to_string_pretty(&extra).unwrap(),
            human.stdout_str()
        );
    }
}

#[test]
fn header_length_ffffffff() {
    let s = Scratch::new("h-hlen");
    let img = base_image(&s, "hlen.qcow2");
    poke_u32(&img, HEADER_LENGTH, 0xffff_ffff);
    assert_all_refused(&s, &img, &qcow2_flags(), &["header"]);
}

#[test]
fn virtual_size_2_pow_62() {
    let s = Scratch::new("h-size62");
    let img = base_image(&s, "big.qcow2");
    poke_u64(&img, SIZE, 1 << 62);
    assert_all_refused(&s, &img, &qcow2_flags(), &[]);
}

#[test]
fn nb_snapshots_65537() {
    let s = Scratch::new("h-snaps");
    let img = base_image(&s, "snaps.qcow2");
    poke_u32(&img, NB_SNAPSHOTS, 65537);
    poke_u64(&img, SNAPSHOTS_OFFSET, 0x50000);
    assert_all_refused(&s, &img, &qcow2_flags(), &["snapshot"]);
}

#[test]
fn snapshot_table_offset_invalid() {
    let s = Scratch::new("h-snapoff");
    let img = base_image(&s, "snapoff.qcow2");
    poke_u32(&img, NB_SNAPSHOTS, 1);
    poke_u64(&img, SNAPSHOTS_OFFSET, 0x1234_5678_90ab_cdef);
    assert_all_refused(&s, &img, &qcow2_flags(), &["snapshot"]);
}

#[test]
fn refcount_table_clusters_huge() {
    let s = Scratch::new("h-rtc");
    let img = base_image(&s, "rtc.qcow2");
    poke_u32(&img, REFTABLE_CLUSTERS, 0xffff_ffff);
    assert_all_refused(&s, &img, &qcow2_flags(), &["refcount", "reference count"]);
}

#[test]
fn backing_file_offset_invalid() {
    let s = Scratch::new("h-bfo");
    let img = base_image(&s, "bfo.qcow2");
    poke_u64(&img, BACKING_OFFSET, u64::MAX);
    poke_u32(&img, BACKING_SIZE, 16);
    assert_all_refused(&s, &img, &qcow2_flags(), &["backing"]);
}

#[test]
fn header_extension_too_large() {
    let s = Scratch::new("h-ext");
    let img = base_image(&s, "ext.qcow2");
    // Unknown extension type with an absurd length right after the header.
    poke_u32(&img, 112, 0x1234_5678);
    poke_u32(&img, 116, 0x7fff_ffff);
    assert_all_refused(&s, &img, &qcow2_flags(), &["extension"]);
}

// ---------------------------------------------------------------------------
// Tables pointing at odd places
// ---------------------------------------------------------------------------

#[test]
fn l2_entry_past_end_of_file() {
    let s = Scratch::new("h-l2eof");
    let img = base_image(&s, "eof.qcow2");
    poke_u64(&img, L2_OFFSET, 0x8000_0000_1000_0000);
    assert_clean_and_agrees(&s, &img, &qcow2_flags());
}

#[test]
fn l1_entry_pointing_at_the_l1_table() {
    let s = Scratch::new("h-l1self");
    let img = base_image(&s, "self.qcow2");
    poke_u64(&img, L1_OFFSET, 0x8000_0000_0003_0000);
    assert_clean_and_agrees(&s, &img, &qcow2_flags());
}

#[test]
fn unaligned_l2_table_offset() {
    let s = Scratch::new("h-l2unal");
    let img = base_image(&s, "unal.qcow2");
    poke_u64(&img, L1_OFFSET, 0x8000_0000_0004_2a00);
    assert_clean_and_agrees(&s, &img, &qcow2_flags());
}

#[test]
fn compressed_cluster_with_garbage_payload() {
    let s = Scratch::new("h-garbage");
    let img = s.s("garbage.qcow2");
    create("qcow2", "", &img, "16M");
    let text = s.s("text.bin");
    write_file(&text, &text_bytes(64 * 1024, 5));
    qemu_io("qcow2", &img, &[&format!("write -q -c -s {text} 0 64k")]);
    let entry = peek_u64(&img, L2_OFFSET);
    assert_eq!(entry >> 62, 1, "entry 0 is compressed");
    let host = entry & ((1u64 << 54) - 1);
    poke(&img, host, &random_bytes(512, 99));
    let q = qemu_img_any(&["convert", "-f", "qcow2", "-O", "raw", &img, &s.s("q.raw")]);
    assert!(!q.ok(), "parity: qemu-img cannot decompress garbage either");
    let (_, _, conv, _) = run_three(&s, &img, &qcow2_flags());
    assert_refused(&conv, &[]);
    assert_clean_and_agrees(&s, &img, &qcow2_flags());
}

#[test]
fn compressed_cluster_bomb_map_finishes_quickly() {
    // 64 GiB image, one compressed cluster, all 8192 L2 entries pointing at
    // it and all 128 L1 entries pointing at one L2 table (qcow2.md §5).
    let s = Scratch::new("h-bomb");
    let img = s.s("bomb.qcow2");
    create("qcow2", "", &img, "64G");
    let text = s.s("text.bin");
    write_file(&text, &text_bytes(64 * 1024, 9));
    qemu_io("qcow2", &img, &[&format!("write -q -c -s {text} 0 64k")]);
    let l1 = peek_u64(&img, L1_OFFSET);
    let l2 = l1 & 0x00ff_ffff_ffff_fe00;
    let entry = peek(&img, l2, 8);
    poke(&img, l2, &entry.repeat(8192));
    poke(&img, L1_OFFSET, &l1.to_be_bytes().repeat(128));

    let r = qvet_hostile(&["map", "--output", "json", "-f", "qcow2", &img]);
    assert_clean(&r);
    let q = qemu_img(&["map", "--output=json", "-f", "qcow2", &img]);
    if r.ok() {
        assert_map_text_eq(&q.stdout, &r, "bomb map");
    }
    assert!(
        r.elapsed < std::time::Duration::from_secs(10),
        "map of the bomb took {:?}",
        r.elapsed
    );
    let i = qvet_hostile(&["info", "--output", "json", "-f", "qcow2", &img]);
    assert_clean(&i);
}

#[test]
fn extended_l2_invalid_subcluster_bitmap() {
    let s = Scratch::new("h-extl2");
    let img = s.s("extl2.qcow2");
    create("qcow2", "extended_l2=on", &img, "16M");
    qemu_io("qcow2", &img, &["write -q -P 0x21 0 64k"]);
    let l1 = peek_u64(&img, L1_OFFSET);
    let l2 = l1 & 0x00ff_ffff_ffff_fe00;
    // Same subcluster both allocated and zero (qcow2.md §1.7: INVALID).
    poke_u64(&img, l2 + 8, 0x0000_0001_0000_0001);
    assert_clean_and_agrees(&s, &img, &qcow2_flags());
}

// ---------------------------------------------------------------------------
// Backing names that point at the host
// ---------------------------------------------------------------------------

/// Put a backing file name into cluster 0 at 0x1000 (no backing-format
/// extension, so qemu would probe it).
fn set_backing_name(img: &str, name: &str) {
    poke(img, 0x1000, name.as_bytes());
    poke_u64(img, BACKING_OFFSET, 0x1000);
    poke_u32(img, BACKING_SIZE, name.len() as u32);
}

fn sentinel(s: &Scratch) -> String {
    let p = s.s("secret.txt");
    write_file(&p, &SECRET.repeat(1000));
    p
}

/// For `info`/`map` on a chain qvet will not follow (loop, `json:` name):
/// either a clean refusal mentioning one of `needles`, or success that
/// describes the top image only — `info` states why the backing file was not
/// opened (mentioning one of `needles`), `map` marks the backing ranges
/// `"unavailable": true`. `convert` has no such option: it must refuse.
fn refused_or_described(r: &Run, needles: &[&str]) -> Option<String> {
    if !r.ok() {
        return refusal_problem(r, needles);
    }
    let sub = r.cmdline.split(' ').nth(1).unwrap_or("");
    let out = r.stdout_str();
    let low = out.to_lowercase();
    match sub {
        "info" if needles.iter().any(|n| low.contains(n)) => None,
        "map" if out.contains("\"unavailable\": true") => None,
        _ => Some(format!(
            "neither refused (exit 1, mentioning {needles:?}) nor described as not followed\n{}",
            r.describe()
        )),
    }
}

fn assert_no_secret(bytes: &[u8], what: &str) {
    assert!(
        !bytes.windows(SECRET.len()).any(|w| w == SECRET),
        "{what} contains the sentinel host file's content"
    );
}

#[test]
fn backing_absolute_host_path_denied_by_default() {
    let s = Scratch::new("h-secret");
    let secret = sentinel(&s);
    let img = base_image(&s, "bs.qcow2");
    set_backing_name(&img, &secret);

    // info works, equals qemu-img info, and opens only the image.
    let info = check_info(&img, &Opts::qcow2());
    assert_opened_exactly(&info, &[&img]);

    let out = s.s("out.raw");
    let r = qvet_hostile(&["convert", "-O", "raw", "-f", "qcow2", &img, &out]);
    assert_refused(&r, &["backing"]);
    assert_no_secret(&r.stdout, "convert stdout");
    if let Ok(b) = std::fs::read(&out) {
        assert_no_secret(&b, "convert output");
    }
    let r = qvet_hostile(&["map", "--output", "json", "-f", "qcow2", &img]);
    assert_clean(&r);
    let r = qvet_hostile(&["convert", "-O", "raw", "-f", "qcow2", &img, "-"]);
    assert_refused(&r, &["backing"]);
    assert_no_secret(&r.stdout, "convert to stdout");
}

#[test]
fn backing_absolute_host_path_with_allow_backing() {
    // Explicitly allowed: qvet may follow it; if it does, it must agree with
    // qemu-img (which probes the name as raw and leaks the content).
    let s = Scratch::new("h-secret-allow");
    let secret = sentinel(&s);
    let img = base_image(&s, "bs.qcow2");
    set_backing_name(&img, &secret);
    let flags = ["-f", "qcow2", "--allow-backing"];
    assert_clean_and_agrees(&s, &img, &flags);
    let r = qvet_hostile(&[
        "info",
        "--output",
        "json",
        "--backing-chain",
        "-f",
        "qcow2",
        "--allow-backing",
        &img,
    ]);
    assert_clean(&r);
}

#[test]
fn backing_json_pseudo_protocol_is_never_opened() {
    let s = Scratch::new("h-json");
    let secret = sentinel(&s);
    let img = base_image(&s, "bj.qcow2");
    let name =
        format!(r#"json:{{"driver":"raw","file":{{"driver":"file","filename":"{secret}"}}}}"#);
    set_backing_name(&img, &name);

    // Without --allow-backing: info works and opens only the image.
    let info = check_info(&img, &Opts::qcow2());
    assert_opened_exactly(&info, &[&img]);
    let out = s.s("out.raw");
    let r = qvet_hostile(&["convert", "-O", "raw", "-f", "qcow2", &img, &out]);
    assert_refused(&r, &["backing"]);

    // With --allow-backing a json: name is still refused (qemu-img, by
    // contrast, parses it and leaks the file).
    let q = qemu_img(&[
        "info",
        "--backing-chain",
        "--output=json",
        "-f",
        "qcow2",
        &img,
    ]);
    assert!(q.stdout_str().contains("secret.txt"));
    let out2 = s.s("out2.raw");
    let mut problems = Vec::new();
    for args in [
        vec![
            "info",
            "--output",
            "json",
            "--backing-chain",
            "-f",
            "qcow2",
            "--allow-backing",
            img.as_str(),
        ],
        vec![
            "map",
            "--output",
            "json",
            "-f",
            "qcow2",
            "--allow-backing",
            img.as_str(),
        ],
        vec![
            "convert",
            "-O",
            "raw",
            "-f",
            "qcow2",
            "--allow-backing",
            img.as_str(),
            out2.as_str(),
        ],
        vec![
            "convert",
            "-O",
            "raw",
            "-f",
            "qcow2",
            "--allow-backing",
            img.as_str(),
            "-",
        ],
    ] {
        let r = qvet_hostile(&args);
        assert_no_secret(&r.stdout, "stdout");
        if r.ok() && r.stdout.starts_with(b"[") {
            // Whatever info prints, the json: target must not be opened.
            let v = parse_qvet_json(&r);
            assert!(
                !opened_files(&v).contains(&canon(Path::new(&secret))),
                "the json: target was opened\n{}",
                r.describe()
            );
        }
        problems.extend(refused_or_described(&r, &["json"]));
    }
    if let Ok(b) = std::fs::read(&out2) {
        assert_no_secret(&b, "convert output");
    }
    assert_no_problems(&problems);
}

#[test]
fn backing_loop_two_files() {
    let s = Scratch::new("h-loop");
    let a = s.s("a.qcow2");
    let b = s.s("b.qcow2");
    create("qcow2", "", &a, "16M");
    qemu_img(&[
        "create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", &b, "16M",
    ]);
    qemu_img(&[
        "rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", &a,
    ]);
    let q = qemu_img_any(&["info", "--backing-chain", "-f", "qcow2", &a]);
    assert!(
        !q.ok() && q.stderr.contains("infinite loop"),
        "parity\n{}",
        q.describe()
    );

    let out = s.s("out.raw");
    let mut problems = Vec::new();
    for args in [
        vec![
            "info",
            "--output",
            "json",
            "--backing-chain",
            "-f",
            "qcow2",
            "--allow-backing",
            a.as_str(),
        ],
        vec![
            "map",
            "--output",
            "json",
            "-f",
            "qcow2",
            "--allow-backing",
            a.as_str(),
        ],
        vec![
            "convert",
            "-O",
            "raw",
            "-f",
            "qcow2",
            "--allow-backing",
            a.as_str(),
            out.as_str(),
        ],
    ] {
        let r = qvet_hostile(&args);
        problems.extend(refused_or_described(&r, &["loop"]));
    }
    assert_no_problems(&problems);
}

#[test]
fn backing_loop_self() {
    let s = Scratch::new("h-loop-self");
    let a = s.s("a.qcow2");
    create("qcow2", "", &a, "16M");
    qemu_img(&[
        "rebase", "-u", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", &a,
    ]);
    let out = s.s("out.raw");
    let mut problems = Vec::new();
    for args in [
        vec![
            "info",
            "--output",
            "json",
            "--backing-chain",
            "-f",
            "qcow2",
            "--allow-backing",
            a.as_str(),
        ],
        vec![
            "map",
            "--output",
            "json",
            "-f",
            "qcow2",
            "--allow-backing",
            a.as_str(),
        ],
        vec![
            "convert",
            "-O",
            "raw",
            "-f",
            "qcow2",
            "--allow-backing",
            a.as_str(),
            out.as_str(),
        ],
    ] {
        let r = qvet_hostile(&args);
        problems.extend(refused_or_described(&r, &["loop"]));
    }
    assert_no_problems(&problems);
}

#[test]
fn data_file_name_pointing_at_host_file_denied_by_default() {
    let s = Scratch::new("h-datafile");
    let secret = sentinel(&s);
    let img = s.s("df.qcow2");
    let data = s.s("data.raw");
    create("qcow2", &format!("data_file={data}"), &img, "16M");
    qemu_io("qcow2", &img, &["write -q -P 0x44 0 64k"]);
    // Re-point the data file at the sentinel.
    qemu_img(&[
        "amend",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={secret}"),
        &img,
    ]);
    let info = check_info(&img, &Opts::qcow2());
    assert_opened_exactly(&info, &[&img]);
    let out = s.s("out.raw");
    let r = qvet_hostile(&["convert", "-O", "raw", "-f", "qcow2", &img, &out]);
    assert_refused(&r, &["data"]);
    if let Ok(b) = std::fs::read(&out) {
        assert_no_secret(&b, "convert output");
    }
}

#[test]
fn many_small_hostile_variants_never_panic() {
    // A sweep of single-field pokes over the header: every run must be
    // clean (0, or 1 with `qvet: `) and finish in time.
    let s = Scratch::new("h-sweep");
    let pristine = base_image(&s, "pristine.qcow2");
    let cases: Vec<(&str, u64, Vec<u8>)> = vec![
        ("refcount_order=7", 96, 7u32.to_be_bytes().to_vec()),
        ("compression_type=5", 104, vec![5]),
        ("crypt_method=7", 32, 7u32.to_be_bytes().to_vec()),
        ("l1_offset unaligned", 40, 0x30001u64.to_be_bytes().to_vec()),
        (
            "l1_offset huge",
            40,
            0x7fff_ffff_ffff_0000u64.to_be_bytes().to_vec(),
        ),
        (
            "reftable_offset huge",
            48,
            0x1234_5678_90ab_cdefu64.to_be_bytes().to_vec(),
        ),
        ("header_length 104", 100, 104u32.to_be_bytes().to_vec()),
        ("header_length 50", 100, 50u32.to_be_bytes().to_vec()),
        (
            "incompat data-file bit without name",
            72,
            4u64.to_be_bytes().to_vec(),
        ),
        ("incompat ext-l2 bit", 72, 16u64.to_be_bytes().to_vec()),
        ("l1_size 0", 36, 0u32.to_be_bytes().to_vec()),
        (
            "L2 entry all ones",
            L2_OFFSET,
            u64::MAX.to_be_bytes().to_vec(),
        ),
        (
            "L2 entry compressed huge",
            L2_OFFSET,
            0x7fff_ffff_ffff_ffffu64.to_be_bytes().to_vec(),
        ),
        (
            "L1 entry huge",
            L1_OFFSET,
            0x80ff_ffff_ffff_0000u64.to_be_bytes().to_vec(),
        ),
        (
            "feature table len huge",
            116,
            0xffff_fff0u32.to_be_bytes().to_vec(),
        ),
    ];
    for (i, (what, off, bytes)) in cases.iter().enumerate() {
        let img = s.s(&format!("v{i}.qcow2"));
        std::fs::copy(&pristine, &img).unwrap();
        poke(&img, *off, bytes);
        eprintln!("variant {i}: {what}");
        let (_, _, _, _) = run_three(&s, &img, &qcow2_flags());
    }
}
