//! One set of opening options serves every command that opens images
//! (`-f`, `--allow-backing`, `--allow-data-file`), so a script can pass the
//! same options to all of them, even where an option has no effect.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use std::path::Path;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/appliance.qcow2");

#[test]
fn every_image_command_takes_the_opening_options() {
    let s = Scratch::new("options");
    let cat = s.s("c.sqlite");
    let out = s.s("out.raw");
    let html = s.s("r.html");
    let p1 = format!("{SAMPLE}:p1:/packages.conf");
    let p1dir = format!("{SAMPLE}:p1:/");
    let commands: Vec<Vec<&str>> = vec![
        vec!["info", SAMPLE],
        vec!["map", SAMPLE],
        vec!["check", SAMPLE],
        vec!["convert", "-O", "raw", SAMPLE, &out],
        vec!["digest", SAMPLE],
        vec!["fs", SAMPLE],
        vec!["inspect", SAMPLE],
        vec!["ls", &p1dir],
        vec!["cat", &p1],
        vec!["stat", &p1],
        vec!["find", &p1dir],
        vec!["diff", SAMPLE, SAMPLE],
        vec!["verify", "--catalog", &cat, SAMPLE],
        vec!["audit", "--catalog", &cat, SAMPLE],
        vec!["report", "--catalog", &cat, "-o", &html, SAMPLE],
        vec![
            "catalog",
            "--catalog",
            &cat,
            "add",
            "--label",
            "sample",
            SAMPLE,
        ],
    ];
    for c in commands {
        let (name, rest) = c.split_first().unwrap();
        let mut args = vec![*name];
        // catalog's subcommand comes before its options.
        let split = if *name == "catalog" { 3 } else { 0 };
        args.extend_from_slice(&rest[..split]);
        args.extend_from_slice(&["-f", "qcow2", "--allow-backing", "--allow-data-file"]);
        args.extend_from_slice(&rest[split..]);
        let r = run_with(QVET, &args, None, Stdout::Capture, ORACLE_TIMEOUT);
        assert!(
            !r.stderr.contains("unexpected argument") && !r.stderr.contains("Usage:"),
            "{name} refuses the opening options\n{}",
            r.describe()
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.describe());
        assert!(matches!(r.code(), Some(0..=3)), "{name}: {}", r.describe());
    }
}

/// Progress bars go to stderr and only to a terminal: piped, the long
/// commands print nothing there, and stdout carries only the result.
#[test]
fn progress_stays_off_pipes() {
    let s = Scratch::new("progress");
    let out = s.s("out.raw");
    let tree = format!("{SAMPLE}:p1:/");
    for args in [
        vec!["digest", SAMPLE],
        vec!["convert", "-O", "raw", SAMPLE, out.as_str()],
        vec!["ls", "-R", "--sha256", tree.as_str()],
        vec!["diff", SAMPLE, SAMPLE],
    ] {
        let r = run_with(QVET, &args, None, Stdout::Capture, ORACLE_TIMEOUT);
        assert_eq!(r.code(), Some(0), "{}", r.describe());
        assert!(
            r.stderr.is_empty(),
            "{args:?} wrote to a piped stderr: {}",
            r.describe()
        );
    }
}

/// Images of formats qvet does not read (made by qemu-img itself) are
/// refused with their name, not read as raw, where their container bytes
/// would pass for a guest disk: `compact` would write a "compacted" VMDK
/// file as the guest. `-f raw` still reads the bytes when that is wanted;
/// `check` says "not supported" with qemu-img's exit code 63.
#[test]
fn foreign_image_formats_are_named_not_read_as_raw() {
    let s = Scratch::new("foreign-formats");
    let out = s.s("out.qcow2");
    for (fmt, name) in [
        ("vmdk", "VMDK"),
        ("vdi", "VDI"),
        ("vhdx", "VHDX"),
        ("vpc", "VHD"),
        ("qed", "QED"),
    ] {
        let img = s.s(&format!("disk.{fmt}"));
        create(fmt, "", &img, "64M");
        // qemu-img agrees on what the file is.
        assert_eq!(qemu_info(&img, None)["format"], fmt, "{fmt}");
        for cmd in [
            vec!["info", img.as_str()],
            vec!["map", img.as_str()],
            vec!["audit", img.as_str()],
            vec!["compact", img.as_str(), out.as_str()],
        ] {
            let r = qvet(&cmd);
            assert_eq!(r.code(), Some(1), "{cmd:?}\n{}", r.describe());
            assert!(
                r.stderr
                    .contains(&format!("a {name} image, which qvet does not read")),
                "{cmd:?}: {}",
                r.stderr
            );
        }
        let chk = run(QVET, &["check", img.as_str()]);
        assert_eq!(chk.code(), Some(63), "{}", chk.describe());
        let raw = qvet(&["info", "--output", "json", "-f", "raw", &img]);
        assert_success(&raw);
    }
    assert!(!Path::new(&out).exists());
}
