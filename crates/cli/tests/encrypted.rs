//! Encrypted qcow2 images (LUKS and legacy AES) against qemu-img 10.0.2.
//!
//! Images are built at test time: `qemu-img create -o encrypt.format=luks,…`
//! with each cipher / mode / IV generator / hash that qemu accepts, data
//! written with `qemu-io --image-opts … encrypt.key-secret=…`, then qvet's
//! `convert -O raw` must be byte-equal to `qemu-img convert --image-opts …`.
//! qemu-img is given its secret with `file=` too (test code could pass
//! `data=`; qvet itself only takes files).
//!
//! The default run covers every mode and IV generator with each cipher
//! family; `QVET_ENCRYPT_FULL=1` runs every combination qemu-img accepts
//! (each `qemu-img create` spends about a second calibrating PBKDF2).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const PASS: &[u8] = b"correct horse battery staple\n";

/// A scratch dir with the passphrase in `key`.
fn scratch(tag: &str) -> (Scratch, String) {
    let s = Scratch::new(tag);
    let key = s.s("key");
    write_file(&key, PASS);
    (s, key)
}

fn secret(key: &str) -> String {
    format!("secret,id=sec0,file={key}")
}

fn image_opts(img: &str) -> String {
    format!("driver=qcow2,file.filename={img},encrypt.key-secret=sec0")
}

/// `qemu-img create -f qcow2` of a LUKS image with extra `-o` options.
fn create_luks(img: &str, key: &str, extra: &str, size: &str) -> Run {
    let mut o = "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10".to_string();
    if !extra.is_empty() {
        o.push(',');
        o.push_str(extra);
    }
    qemu_img_any(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "--object",
        &secret(key),
        "-o",
        &o,
        img,
        size,
    ])
}

/// `qemu-io --image-opts` writes into an encrypted image.
fn qemu_io_enc(img: &str, key: &str, cmds: &[&str]) {
    let mut args = vec![
        "--object".to_string(),
        secret(key),
        "--image-opts".into(),
        image_opts(img),
    ];
    for c in cmds {
        args.push("-c".into());
        args.push((*c).to_string());
    }
    let r = run("qemu-io", &args);
    assert!(
        r.ok() && !r.stdout_str().contains("failed") && !r.stderr.contains("failed"),
        "qemu-io failed\n{}",
        r.describe()
    );
}

/// qemu-img's guest view of an encrypted image.
fn qemu_convert_enc(img: &str, key: &str, out: &str) {
    qemu_img(&[
        "convert",
        "--object",
        &secret(key),
        "--image-opts",
        &image_opts(img),
        "-O",
        "raw",
        out,
    ]);
}

/// qvet's convert equals qemu-img's.
fn check_convert_enc(s: &Scratch, img: &str, key: &str, what: &str) {
    let reference = s.s("qemu.raw");
    let out = s.s("qvet.raw");
    let _ = std::fs::remove_file(&reference);
    let _ = std::fs::remove_file(&out);
    qemu_convert_enc(img, key, &reference);
    let r = qvet(&["convert", "-q", "--key-file", key, img, &out]);
    assert_success(&r);
    assert_files_eq(Path::new(&reference), Path::new(&out), what);
}

/// qvet's compact of an encrypted image is encrypted (every stored cluster
/// encrypted again at its new host offset, or guest offset for legacy AES)
/// and qemu reads the same guest from it with the same passphrase.
fn check_compact_enc(s: &Scratch, img: &str, key: &str, what: &str) {
    let out = s.s("compact.qcow2");
    let _ = std::fs::remove_file(&out);
    let r = qvet(&["compact", "-q", "--key-file", key, img, &out]);
    assert!(r.ok(), "compact {what}\n{}", r.describe());
    let r = qemu_img_any(&[
        "compare",
        "--object",
        &secret(key),
        "--image-opts",
        &image_opts(img),
        &image_opts(&out),
    ]);
    assert_eq!(r.code(), Some(0), "compact {what}\n{}", r.describe());
    let r = qemu_img_any(&["info", "--output=json", &out]);
    assert!(
        r.stdout_str().contains("\"encrypted\": true"),
        "compact {what}\n{}",
        r.describe()
    );
}

/// Data at cluster-aligned, sector-aligned and unaligned offsets, a zero
/// write, and a partial cluster near the end.
const WORKLOAD: &[&str] = &[
    "write -q -P 0x5a 1M 128k",
    "write -q -P 0x33 3000 5000",
    "write -q -P 0x77 200k 64k",
    "write -q -z 1M 4k",
    "write -q -P 0x11 4032k 1000",
];

/// One cipher combination: create, write, compare. `None` when qemu-img
/// refuses the combination.
fn combo(alg: &str, mode: &str, iv: &str, hash: &str) -> Option<()> {
    let (s, key) = scratch("enc-combo");
    let img = s.s("t.qcow2");
    let mut o = format!(
        "encrypt.cipher-alg={alg},encrypt.cipher-mode={mode},encrypt.ivgen-alg={iv},encrypt.hash-alg={hash}"
    );
    if iv == "essiv" {
        o.push_str(",encrypt.ivgen-hash-alg=sha256");
    }
    if !create_luks(&img, &key, &o, "4M").ok() {
        return None;
    }
    qemu_io_enc(&img, &key, WORKLOAD);
    let what = format!("{alg}-{mode}-{iv} {hash}");
    check_convert_enc(&s, &img, &key, &what);
    check_compact_enc(&s, &img, &key, &what);
    Some(())
}

fn full() -> bool {
    std::env::var_os("QVET_ENCRYPT_FULL").is_some()
}

/// Runs `list` (alg, mode, iv, hash); every `must` combination has to be
/// accepted by qemu-img. Prints what was covered.
fn run_combos(list: &[(&str, &str, &str, &str)], must: bool) {
    let mut done = Vec::new();
    for &(alg, mode, iv, hash) in list {
        match combo(alg, mode, iv, hash) {
            Some(()) => done.push(format!("{alg}-{mode}-{iv}/{hash}")),
            None if must => panic!("qemu-img refused {alg}-{mode}-{iv}/{hash}"),
            None => eprintln!("qemu-img refuses {alg}-{mode}-{iv}/{hash}"),
        }
    }
    eprintln!("byte-equal to qemu-img: {}", done.join(", "));
}

fn matrix(
    algs: &[&str],
    modes: &[&str],
) -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    let mut out = Vec::new();
    for a in algs {
        for m in modes {
            for iv in ["plain", "plain64", "essiv"] {
                let a: &'static str = Box::leak(a.to_string().into_boxed_str());
                let m: &'static str = Box::leak(m.to_string().into_boxed_str());
                out.push((a, m, iv, "sha256"));
            }
        }
    }
    out
}

#[test]
fn luks_default_is_aes_256_xts_plain64() {
    let (s, key) = scratch("enc-default");
    let img = s.s("d.qcow2");
    assert!(create_luks(&img, &key, "", "8M").ok());
    qemu_io_enc(&img, &key, WORKLOAD);
    let info = qemu_info(&img, None);
    let e = &info["format-specific"]["data"]["encrypt"];
    assert_eq!(e["cipher-alg"], "aes-256");
    assert_eq!(e["cipher-mode"], "xts");
    assert_eq!(e["ivgen-alg"], "plain64");
    check_convert_enc(&s, &img, &key, "default LUKS");
}

#[test]
fn luks_aes_modes_and_ivs() {
    let list = if full() {
        matrix(
            &["aes-128", "aes-192", "aes-256"],
            &["xts", "cbc", "ecb", "ctr"],
        )
    } else {
        vec![
            ("aes-128", "xts", "plain64", "sha256"),
            ("aes-192", "xts", "plain64", "sha256"),
            ("aes-256", "xts", "plain", "sha256"),
            ("aes-256", "xts", "essiv", "sha256"),
            ("aes-128", "cbc", "plain", "sha256"),
            ("aes-128", "cbc", "plain64", "sha256"),
            ("aes-128", "cbc", "essiv", "sha256"),
            ("aes-256", "cbc", "essiv", "sha256"),
            ("aes-256", "ecb", "plain64", "sha256"),
            ("aes-128", "ctr", "plain64", "sha256"),
        ]
    };
    // aes-192 outside XTS makes qemu-img 10.0.2 abort: not required.
    run_combos(&list, !full());
}

#[test]
fn luks_twofish_serpent_cast5() {
    let list = if full() {
        let mut l = matrix(
            &[
                "twofish-128",
                "twofish-192",
                "twofish-256",
                "serpent-128",
                "serpent-192",
                "serpent-256",
            ],
            &["xts", "cbc", "ecb", "ctr"],
        );
        l.extend(matrix(&["cast5-128"], &["cbc", "ecb", "ctr"]));
        l
    } else {
        vec![
            ("twofish-256", "xts", "plain64", "sha256"),
            ("twofish-128", "cbc", "essiv", "sha256"),
            ("serpent-256", "xts", "plain64", "sha256"),
            ("serpent-128", "cbc", "plain", "sha256"),
            ("cast5-128", "cbc", "plain64", "sha256"),
            ("cast5-128", "ctr", "plain64", "sha256"),
        ]
    };
    run_combos(&list, !full());
}

#[test]
fn luks_hashes() {
    let hashes: &[&str] = if full() {
        &[
            "md5",
            "sha1",
            "sha224",
            "sha256",
            "sha384",
            "sha512",
            "ripemd160",
        ]
    } else {
        &["sha1", "sha512", "ripemd160"]
    };
    let list: Vec<_> = hashes
        .iter()
        .map(|h| ("aes-256", "xts", "plain64", *h))
        .collect();
    run_combos(&list, false);
}

#[test]
fn legacy_aes_against_qemu() {
    let (s, key) = scratch("enc-aes");
    let img = s.s("aes.qcow2");
    let r = qemu_img_any(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "--object",
        &secret(&key),
        "-o",
        "encrypt.format=aes,encrypt.key-secret=sec0",
        &img,
        "4M",
    ]);
    if !r.ok() {
        eprintln!(
            "SKIP: qemu-img no longer creates legacy AES images\n{}",
            r.describe()
        );
        return;
    }
    qemu_io_enc(&img, &key, WORKLOAD);
    check_convert_enc(&s, &img, &key, "legacy AES");
    // compact keeps the scheme: sectors numbered by guest offset.
    check_compact_enc(&s, &img, &key, "legacy AES");
    // The audit names the weak scheme.
    let r = qvet(&["audit", "--output", "json", "--key-file", &key, &img]);
    assert!(
        r.stdout_str().contains("legacy-aes-encryption"),
        "{}",
        r.describe()
    );
}

#[test]
fn key_slots_wrong_passphrase_and_no_key() {
    let (s, key) = scratch("enc-slots");
    let img = s.s("k.qcow2");
    assert!(create_luks(&img, &key, "", "4M").ok());
    qemu_io_enc(&img, &key, WORKLOAD);
    // A second passphrase in slot 3.
    let key2 = s.s("key2");
    write_file(&key2, b"second");
    qemu_img(&[
        "amend",
        "--object",
        &secret(&key),
        "--object",
        &format!("secret,id=sec1,file={key2}"),
        "--image-opts",
        &image_opts(&img),
        "-o",
        "encrypt.state=active,encrypt.new-secret=sec1,encrypt.keyslot=3,encrypt.iter-time=10",
    ]);
    let info = qvet(&["info", &img]);
    assert!(
        info.stdout_str().contains("active key slots:  0, 3"),
        "{}",
        info.describe()
    );
    let info = qvet(&["info", "--key-file", &key2, &img]);
    assert!(
        info.stdout_str().contains("unlocked with key slot 3"),
        "{}",
        info.describe()
    );
    check_convert_enc(&s, &img, &key, "slot 0");
    let reference = s.s("qemu.raw");
    let out = s.s("slot3.raw");
    assert_success(&qvet(&[
        "convert",
        "-q",
        "--key-file",
        &key2,
        "--key-slot",
        "3",
        &img,
        &out,
    ]));
    assert_files_eq(Path::new(&reference), Path::new(&out), "slot 3");
    // The named slot only.
    let r = qvet(&[
        "convert",
        "-q",
        "--key-file",
        &key2,
        "--key-slot",
        "0",
        &img,
        &s.s("x.raw"),
    ]);
    assert_refused(&r, &["no key slot opened", "k.qcow2", "0"]);
    let r = qvet(&[
        "convert",
        "-q",
        "--key-file",
        &key2,
        "--key-slot",
        "5",
        &img,
        &s.s("x.raw"),
    ]);
    assert_refused(&r, &["key slot 5 is not active"]);
    // Wrong passphrase: one clear error naming the image, no output.
    let bad = s.s("bad");
    write_file(&bad, b"correct horse battery staple");
    for cmd in [
        vec!["convert", "-q", "--key-file", &bad, &img, &s.s("w.raw")],
        vec!["digest", "--content", "--key-file", &bad, &img],
        vec!["fs", "--key-file", &bad, &img],
    ] {
        let r = qvet(&cmd);
        assert_refused(&r, &["no key slot opened", "k.qcow2"]);
    }
    assert!(!Path::new(&s.s("w.raw")).exists());
    // No key: headers described, guest reads refused, check still works.
    assert_success(&qvet(&["info", &img]));
    assert_success(&qvet(&["check", &img]));
    let r = qvet(&["convert", "-q", &img, &s.s("n.raw")]);
    assert_refused(&r, &["encrypted", "passphrase"]);
}

#[test]
fn key_sources() {
    let (s, key) = scratch("enc-src");
    let img = s.s("src.qcow2");
    assert!(create_luks(&img, &key, "", "4M").ok());
    qemu_io_enc(&img, &key, &["write -q -P 0x42 0 64k"]);
    let reference = s.s("ref.raw");
    qemu_convert_enc(&img, &key, &reference);
    // --object secret,id=…,file=…
    let out = s.s("obj.raw");
    assert_success(&qvet(&[
        "convert",
        "-q",
        "--object",
        &secret(&key),
        &img,
        &out,
    ]));
    assert_files_eq(Path::new(&reference), Path::new(&out), "--object");
    // data= would put the passphrase on the command line: refused.
    let r = qvet(&[
        "convert",
        "-q",
        "--object",
        "secret,id=s,data=x",
        &img,
        &s.s("d.raw"),
    ]);
    assert_refused(&r, &["data="]);
    // QVET_PASSPHRASE_FILE.
    let out = s.s("env.raw");
    let st = Command::new(QVET)
        .args(["convert", "-q", &img, &out])
        .env("QVET_PASSPHRASE_FILE", &key)
        .status()
        .unwrap();
    assert!(st.success());
    assert_files_eq(Path::new(&reference), Path::new(&out), "env");
    // --key-file - reads standard input.
    let out = s.s("stdin.raw");
    let mut child = Command::new(QVET)
        .args(["convert", "-q", "--key-file", "-", &img, &out])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(PASS).unwrap();
    assert!(child.wait().unwrap().success());
    assert_files_eq(Path::new(&reference), Path::new(&out), "stdin");
}

/// `mke2fs -t ext4 EXTRA -d ROOT IMAGE SIZE`.
fn mkfs_ext4(mke2fs: &str, root: &Path, image: &str, size: &str, extra: &[&str]) {
    let mut args = vec!["-q", "-F", "-t", "ext4"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-d", root.to_str().unwrap(), image, size]);
    run_ok(mke2fs, &args);
}

/// A tree with `/etc/hostname` (`hostname`) and a random `/blob.bin`.
fn small_tree(root: &Path, hostname: &[u8], blob_len: usize, seed: u64) {
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), hostname).unwrap();
    std::fs::write(root.join("blob.bin"), random_bytes(blob_len, seed)).unwrap();
}

/// ext4 with a few files, made by `mke2fs -d`, as a raw disk and as a LUKS
/// qcow2 converted by qemu-img from it.
fn ext4_pair(s: &Scratch, key: &str) -> Option<(String, String)> {
    let mke2fs = find_tool("mke2fs")?;
    let root = s.path("root");
    std::fs::create_dir_all(root.join("etc/app")).unwrap();
    std::fs::write(root.join("etc/hostname"), b"vault\n").unwrap();
    std::fs::write(root.join("etc/app/secret.conf"), text_bytes(70_000, 3)).unwrap();
    std::fs::write(root.join("blob.bin"), random_bytes(300_000, 5)).unwrap();
    let raw = s.s("plain.raw");
    mkfs_ext4(&mke2fs, &root, &raw, "32M", &[]);
    let enc = s.s("enc.qcow2");
    qemu_img(&[
        "convert",
        "-O",
        "qcow2",
        "--object",
        &secret(key),
        "-o",
        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
        &raw,
        &enc,
    ]);
    Some((raw, enc))
}

#[test]
fn encrypted_ext4_guest_digest_ls_diff() {
    let (s, key) = scratch("enc-ext4");
    let Some((raw, enc)) = ext4_pair(&s, &key) else {
        eprintln!("SKIP: no mke2fs");
        return;
    };
    check_convert_enc(&s, &enc, &key, "ext4 guest");
    // The guest-content digest is layout-independent: raw == encrypted qcow2.
    let digest = |img: &str| {
        let r = qvet(&[
            "digest",
            "-q",
            "--content",
            "--output",
            "json",
            "--key-file",
            &key,
            img,
        ]);
        assert_success(&r);
        let v = parse_qvet_json(&r);
        let text = v.to_string();
        assert!(text.contains("root"), "{text}");
        v
    };
    let (a, b) = (digest(&raw), digest(&enc));
    let pick = |v: &serde_json::Value| {
        let t = v.to_string();
        let i = t.find("root").unwrap();
        t[i..i + 90].to_string()
    };
    assert_eq!(pick(&a), pick(&b));
    // ls sees the files.
    let r = qvet(&["ls", "-R", "--key-file", &key, &format!("{enc}:/")]);
    assert_success(&r);
    for name in ["hostname", "secret.conf", "blob.bin"] {
        assert!(r.stdout_str().contains(name), "{}", r.describe());
    }
    let r = qvet(&["cat", "--key-file", &key, &format!("{enc}:/etc/hostname")]);
    assert_success(&r);
    assert_eq!(r.stdout, b"vault\n");
    // diff: the plain and the encrypted disk hold the same files.
    let r = qvet(&["diff", "--key-file", &key, &raw, &enc]);
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    // fs names the filesystem.
    let r = qvet(&["fs", "--key-file", &key, &enc]);
    assert!(r.stdout_str().contains("ext4"), "{}", r.describe());
}

/// Offset of the LUKS header inside a qcow2 file (cluster aligned).
fn luks_offset(img: &str) -> u64 {
    let data = std::fs::read(img).unwrap();
    (0..data.len())
        .step_by(512)
        .find(|&o| data[o..].starts_with(b"LUKS\xba\xbe"))
        .unwrap() as u64
}

/// Hostile LUKS headers: each is refused quickly with a clear error (never
/// a panic, a hang or garbage output).
#[test]
fn hostile_luks_headers() {
    let (s, key) = scratch("enc-hostile");
    let base = s.s("base.qcow2");
    assert!(create_luks(&base, &key, "", "4M").ok());
    qemu_io_enc(&base, &key, &["write -q -P 0x42 0 64k"]);
    let luks = luks_offset(&base);
    let slot0 = luks + 208;
    type Mutate = Box<dyn Fn(&str)>;
    let cases: Vec<(&str, Mutate, &[&str])> = vec![
        (
            "slot iterations 2^32-1",
            Box::new(move |p| poke_u32(p, slot0 + 4, u32::MAX)),
            &["iterations"],
        ),
        (
            "master key digest iterations 2^32-1",
            Box::new(move |p| poke_u32(p, luks + 164, u32::MAX)),
            &["iterations"],
        ),
        (
            "stripes 2^30 (a 64 GiB AF area)",
            Box::new(move |p| poke_u32(p, slot0 + 44, 1 << 30)),
            &["stripes"],
        ),
        (
            "key material offset far past the area",
            Box::new(move |p| poke_u32(p, slot0 + 40, 0x7fff_ffff)),
            &["truncated"],
        ),
        (
            "key material overlapping the header",
            Box::new(move |p| poke_u32(p, slot0 + 40, 0)),
            &["overlaps"],
        ),
        (
            "key length 4096",
            Box::new(move |p| poke_u32(p, luks + 108, 4096)),
            &["key length"],
        ),
        (
            "unknown hash",
            Box::new(move |p| poke(p, luks + 72, b"whirlpool\0")),
            &["unsupported hash"],
        ),
        (
            "unknown cipher",
            Box::new(move |p| poke(p, luks + 8, b"des\0")),
            &["unsupported cipher"],
        ),
        (
            "no active slot",
            Box::new(move |p| {
                for i in 0..8 {
                    poke_u32(p, luks + 208 + 48 * i, 0xdead);
                }
            }),
            &["no active key slot"],
        ),
        (
            "key material cut by the end of the file",
            Box::new(move |p| {
                let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                f.set_len(luks + 4096 + 1000).unwrap();
            }),
            &["truncated"],
        ),
        (
            "crypto extension pointing past the end of the file",
            Box::new(|p| {
                let data = std::fs::read(p).unwrap();
                let at = (0..data.len() - 8)
                    .find(|&o| data[o..o + 4] == 0x0537_be77u32.to_be_bytes())
                    .unwrap() as u64;
                poke_u64(p, at + 8, 1 << 40);
            }),
            &["LUKS"],
        ),
    ];
    for (what, mutate, needles) in cases {
        let img = s.s("hostile.qcow2");
        std::fs::copy(&base, &img).unwrap();
        mutate(&img);
        let out = s.s("hostile.raw");
        let _ = std::fs::remove_file(&out);
        let r = qvet_hostile(&["convert", "-q", "--key-file", &key, &img, &out]);
        assert!(!r.ok(), "{what}: accepted\n{}", r.describe());
        if let Some(p) = refusal_problem(&r, needles) {
            panic!("{what}: {p}\n{}", r.describe());
        }
        assert!(
            r.stderr.contains("hostile.qcow2"),
            "{what}: image not named\n{}",
            r.describe()
        );
        eprintln!("{what}: {}", r.stderr.trim());
        assert!(!Path::new(&out).exists(), "{what}: output written");
        assert!(r.elapsed.as_secs() < 10, "{what}: took {:?}", r.elapsed);
        // Without a key the header is still described.
        let r = qvet_hostile(&["info", &img]);
        assert_no_panic(&r);
    }
    // A lying payload offset is unused by qcow2: the data still reads right.
    let img = s.s("payload.qcow2");
    std::fs::copy(&base, &img).unwrap();
    poke_u32(&img, luks + 104, u32::MAX);
    let reference = s.s("payload-ref.raw");
    qemu_convert_enc(&base, &key, &reference);
    let out = s.s("payload.raw");
    assert_success(&qvet_hostile(&[
        "convert",
        "-q",
        "--key-file",
        &key,
        &img,
        &out,
    ]));
    assert_files_eq(
        Path::new(&reference),
        Path::new(&out),
        "lying payload offset",
    );
}

/// A 40 MiB MBR disk at `disk` whose partition 1 (from sector 2048) holds
/// the bytes of `part`.
fn mbr_disk_holding(part: &str, disk: &str) {
    write_file(disk, &[]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    sfdisk(disk, &["-q"], "label: dos\nstart=2048, type=83\n");
    dd_into(part, disk, 2048);
}

/// A LUKS1 container inside the guest (partition 1 of an MBR disk, made by
/// `qemu-img convert -O luks` from an ext4 image): `ls`/`cat` open it with
/// the same passphrase; the payload read back equals the ext4 image.
#[test]
fn luks_partition_inside_the_guest() {
    let (s, key) = scratch("enc-part");
    let Some(mke2fs) = find_tool("mke2fs") else {
        eprintln!("SKIP: no mke2fs");
        return;
    };
    if !have_tool("sfdisk") {
        eprintln!("SKIP: no sfdisk");
        return;
    }
    let root = s.path("root");
    small_tree(&root, b"inner\n", 200_000, 9);
    let fs = s.s("fs.raw");
    mkfs_ext4(&mke2fs, &root, &fs, "16M", &[]);
    let part = s.s("part.luks");
    qemu_img(&[
        "convert",
        "-O",
        "luks",
        "--object",
        &secret(&key),
        "-o",
        "key-secret=sec0,iter-time=10",
        &fs,
        &part,
    ]);
    // qemu reads the container back as the ext4 image.
    let back = s.s("back.raw");
    qemu_img(&[
        "convert",
        "--object",
        &secret(&key),
        "--image-opts",
        &format!("driver=luks,file.filename={part},key-secret=sec0"),
        "-O",
        "raw",
        &back,
    ]);
    assert_files_eq(Path::new(&fs), Path::new(&back), "qemu luks round trip");
    let disk = s.s("disk.raw");
    mbr_disk_holding(&part, &disk);
    let r = qvet(&["ls", "-R", "--key-file", &key, &format!("{disk}:p1:/")]);
    assert_success(&r);
    assert!(r.stdout_str().contains("blob.bin"), "{}", r.describe());
    let r = qvet(&["cat", "--key-file", &key, &format!("{disk}:/etc/hostname")]);
    assert_success(&r);
    assert_eq!(r.stdout, b"inner\n");
    let r = qvet(&["cat", "--key-file", &key, &format!("{disk}:p1:/blob.bin")]);
    assert_eq!(r.stdout, random_bytes(200_000, 9));
    // fs describes the filesystem inside.
    let r = qvet(&["fs", "--key-file", &key, &disk]);
    assert_success(&r);
    assert!(r.stdout_str().contains("luks/ext"), "{}", r.describe());
    assert!(
        r.stdout_str()
            .contains("LUKS opened (key slot 0): ext inside"),
        "{}",
        r.describe()
    );
    // Wrong passphrase: the partition is named.
    let bad = s.s("bad");
    write_file(&bad, b"nope");
    let r = qvet(&["ls", "--key-file", &bad, &format!("{disk}:p1:/")]);
    assert_refused(&r, &["no key slot opened"]);
    assert!(r.stderr.contains("disk.raw:p1"), "{}", r.describe());
    let r = qvet(&["fs", "--key-file", &bad, &disk]);
    assert_success(&r);
    assert!(
        r.stdout_str().contains("LUKS not opened"),
        "{}",
        r.describe()
    );
    // inspect and audit read the filesystem inside with the key; without
    // one, the audit names the partition as encrypted in its coverage.
    let r = qvet(&["inspect", "--key-file", &key, &disk]);
    assert!(
        r.stdout_str().contains("partition 1 (ext4)"),
        "{}",
        r.describe()
    );
    let with = qvet(&["audit", "--output", "json", "--key-file", &key, &disk]);
    assert!(
        !with.stdout_str().contains("LUKS-encrypted"),
        "{}",
        with.describe()
    );
    let without = qvet(&["audit", "--output", "json", &disk]);
    assert!(
        without.stdout_str().contains("LUKS-encrypted"),
        "{}",
        without.describe()
    );
}

/// A LUKS2 container as cryptsetup makes it (offline `reencrypt
/// --encrypt` of an ext4 image: no device mapper, no root needed for the
/// file), in an MBR partition: Argon2id, Argon2i and PBKDF2 keyslots,
/// aes-xts, aes-cbc-essiv and serpent-xts segments, 512- and 4096-byte
/// sectors. qvet reads the files inside with the passphrase, byte for byte
/// as they went into the ext4 image cryptsetup encrypted. Wrong passphrase
/// and a hostile Argon2 memory cost are refused; without a key the audit
/// names the partition.
#[test]
fn luks2_partition_made_by_cryptsetup() {
    let (s, key) = scratch("enc-luks2");
    let (Some(mke2fs), Some(cryptsetup)) = (find_tool("mke2fs"), find_tool("cryptsetup")) else {
        eprintln!("SKIP: no mke2fs or cryptsetup");
        return;
    };
    if !have_tool("sfdisk") {
        eprintln!("SKIP: no sfdisk");
        return;
    }
    let root = s.path("root");
    small_tree(&root, b"luks2\n", 300_000, 11);
    let cases: &[(&str, &[&str])] = &[
        (
            "argon2id aes-xts 512",
            &[
                "--pbkdf",
                "argon2id",
                "--pbkdf-memory",
                "8192",
                "--pbkdf-force-iterations",
                "4",
            ],
        ),
        (
            "pbkdf2 aes-xts 4096",
            &[
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "--sector-size",
                "4096",
            ],
        ),
        (
            "argon2i aes-cbc-essiv",
            &[
                "--pbkdf",
                "argon2i",
                "--pbkdf-memory",
                "4096",
                "--pbkdf-force-iterations",
                "4",
                "--cipher",
                "aes-cbc-essiv:sha256",
                "--key-size",
                "256",
            ],
        ),
        (
            "argon2id serpent-xts 4096",
            &[
                "--pbkdf",
                "argon2id",
                "--pbkdf-memory",
                "8192",
                "--pbkdf-force-iterations",
                "4",
                "--cipher",
                "serpent-xts-plain64",
                "--sector-size",
                "4096",
            ],
        ),
    ];
    for (i, (what, opts)) in cases.iter().enumerate() {
        let fs = s.s(&format!("fs{i}.raw"));
        mkfs_ext4(&mke2fs, &root, &fs, "16M", &["-b", "4096"]);
        // cryptsetup encrypts in place, the header taking 16 MiB of the file.
        let part = s.s(&format!("part{i}.luks"));
        let mut bytes = std::fs::read(&fs).unwrap();
        bytes.resize(32 << 20, 0);
        write_file(&part, &bytes);
        let mut a = vec![
            "reencrypt",
            "--encrypt",
            "--type",
            "luks2",
            "--key-file",
            &key,
            "--reduce-device-size",
            "16M",
            "--batch-mode",
        ];
        a.extend_from_slice(opts);
        a.push(&part);
        let r = run(&cryptsetup, &a);
        if !r.ok() {
            // Offline encryption uses the kernel's crypto API: a cipher the
            // kernel lacks (serpent in some containers) is skipped.
            eprintln!("SKIP {what}: cryptsetup refused\n{}", r.describe());
            if i == 0 {
                eprintln!("SKIP: cryptsetup cannot encrypt here");
                return;
            }
            continue;
        }
        let disk = s.s(&format!("disk{i}.raw"));
        mbr_disk_holding(&part, &disk);
        let r = qvet(&["cat", "--key-file", &key, &format!("{disk}:p1:/blob.bin")]);
        assert_success(&r);
        assert_eq!(r.stdout, random_bytes(300_000, 11), "{what}");
        let r = qvet(&["cat", "--key-file", &key, &format!("{disk}:/etc/hostname")]);
        assert_eq!(r.stdout, b"luks2\n", "{what}\n{}", r.describe());
    }
    // The first case again for fs, the refusals and the audit.
    let disk = s.s("disk0.raw");
    let r = qvet(&["fs", "--output", "json", "--key-file", &key, &disk]);
    assert_success(&r);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let p = &v["partitions"][0];
    assert_eq!(p["filesystem"], "luks");
    assert_eq!(p["luks"]["opened"], true, "{v:#}");
    assert_eq!(p["luks"]["key_slot"], 0);
    assert_eq!(p["luks"]["filesystem"], "ext");
    assert_eq!(p["superblock"]["type"], "ext4", "{v:#}");
    let bad = s.s("bad");
    write_file(&bad, b"nope");
    let r = qvet(&["ls", "--key-file", &bad, &format!("{disk}:p1:/")]);
    assert_refused(&r, &["no key slot opened"]);
    let with = qvet(&["audit", "--output", "json", "--key-file", &key, &disk]);
    assert!(
        !with.stdout_str().contains("LUKS-encrypted"),
        "{}",
        with.describe()
    );
    let without = qvet(&["audit", "--output", "json", &disk]);
    assert!(
        without.stdout_str().contains("LUKS-encrypted"),
        "{}",
        without.describe()
    );
    // A header asking Argon2 for 4 GiB of memory, or for 9000 passes over
    // its 8 MiB (72 GiB-passes, beyond the work bound), is refused before
    // any work (its checksum is recomputed so that only the cost is hostile).
    let part = s.s("part0.luks");
    let bytes = std::fs::read(&part).unwrap();
    let json_at = 4096;
    let text = String::from_utf8_lossy(&bytes[json_at..16384]).into_owned();
    let end = text.trim_end_matches('\0').len();
    // (field as written, hostile value, what the refusal says)
    let hostile_cases = [
        ("\"memory\":8192", "\"memory\":4194304", "memory cost"),
        ("\"time\":4", "\"time\":9000", "Argon2 work"),
    ];
    for (field, value, says) in hostile_cases {
        let hostile = text.replacen(field, value, 1);
        assert_ne!(text, hostile, "{field} was found");
        let grow = hostile.len() - text.len();
        let mut copy = bytes.clone();
        let mut area = copy[..16384].to_vec();
        area[json_at..json_at + end + grow].copy_from_slice(&hostile.as_bytes()[..end + grow]);
        area[448..512].fill(0);
        use sha2::Digest as _;
        let sum = sha2::Sha256::digest(&area);
        area[448..480].copy_from_slice(&sum);
        copy[..16384].copy_from_slice(&area);
        // The secondary copy would still open: make it unusable.
        copy[16384..16390].fill(0);
        let hostile_part = s.s("hostile.luks");
        write_file(&hostile_part, &copy);
        let t = std::time::Instant::now();
        let r = qvet(&["ls", "--key-file", &key, &format!("{hostile_part}:/")]);
        assert_refused(&r, &[says]);
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "{says}");
    }
}
