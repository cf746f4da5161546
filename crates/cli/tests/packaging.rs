//! What a lab host installs: man pages for qvet and every subcommand,
//! completions for bash, zsh and fish, and the Debian package that carries
//! them (`scripts/deb.sh`), built here from the test binary and unpacked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;

use common::*;

#[test]
fn man_pages_for_every_subcommand() {
    let list = qvet(&["man", "--list"]);
    assert_success(&list);
    let pages: Vec<String> = list.stdout_str().lines().map(str::to_string).collect();
    for want in [
        "qvet",
        "qvet-audit",
        "qvet-inspect",
        "qvet-check",
        "qvet-completions",
    ] {
        assert!(pages.iter().any(|p| p == want), "{want} not in {pages:?}");
    }
    for page in &pages {
        let sub = page.strip_prefix("qvet-");
        let r = match sub {
            Some(s) => qvet(&["man", s]),
            None => qvet(&["man"]),
        };
        assert_success(&r);
        let roff = r.stdout_str();
        assert!(
            roff.contains(&format!(".TH {page} 1")),
            "{page}: {}",
            clip(&roff, 300)
        );
        assert!(roff.contains(".SH SYNOPSIS"), "{page}");
    }
    let audit = qvet(&["man", "audit"]).stdout_str();
    assert!(audit.contains("fail\\-on"), "options are documented");
    let r = qvet(&["man", "no-such-command"]);
    assert_eq!(r.code(), Some(1));
}

#[test]
fn completions_parse_in_their_shells() {
    for (shell, needle) in [
        ("bash", "_qvet()"),
        ("zsh", "#compdef qvet"),
        ("fish", "complete -c qvet"),
    ] {
        let r = qvet(&["completions", shell]);
        assert_success(&r);
        let text = r.stdout_str();
        assert!(text.contains(needle), "{shell}: {}", clip(&text, 200));
        assert!(
            text.contains("inspect") && text.contains("audit"),
            "{shell} completes subcommands"
        );
    }
    // bash itself accepts the script and defines the function.
    if have_tool("bash") {
        let s = Scratch::new("completions");
        let script = s.path("qvet.bash");
        std::fs::write(&script, qvet(&["completions", "bash"]).stdout).unwrap();
        let r = run(
            "bash",
            &[
                "-c",
                &format!("source {} && declare -F _qvet", script.display()),
            ],
        );
        assert!(r.ok(), "{}", r.describe());
    }
}

#[test]
fn debian_package_installs_binary_man_pages_and_completions() {
    if !have_tool("dpkg-deb") {
        eprintln!("SKIP: dpkg-deb not found (not a Debian system)");
        return;
    }
    let s = Scratch::new("deb");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/deb.sh");
    let out = s.s("out");
    let r = run_with(
        "env",
        &[
            &format!("QVET_BIN={QVET}"),
            &format!("DEB_OUT={out}"),
            "bash",
            script.to_str().unwrap(),
        ],
        None,
        Stdout::Capture,
        ORACLE_TIMEOUT,
    );
    assert!(r.ok(), "{}", r.describe());
    let deb = r.stdout_str().trim().to_string();
    assert!(deb.ends_with(".deb"), "{}", r.describe());
    let info = run("dpkg-deb", &["--field", &deb, "Package", "Version"]);
    assert!(
        info.stdout_str().contains("Package: qvet"),
        "{}",
        info.describe()
    );
    let root = s.s("root");
    let x = run("dpkg-deb", &["-x", &deb, &root]);
    assert!(x.ok(), "{}", x.describe());
    for f in [
        "usr/bin/qvet",
        "usr/share/man/man1/qvet.1.gz",
        "usr/share/man/man1/qvet-audit.1.gz",
        "usr/share/man/man1/qvet-inspect.1.gz",
        "usr/share/bash-completion/completions/qvet",
        "usr/share/zsh/vendor-completions/_qvet",
        "usr/share/fish/vendor_completions.d/qvet.fish",
        "usr/share/doc/qvet/copyright",
    ] {
        assert!(
            Path::new(&root).join(f).is_file(),
            "{f} missing from the package"
        );
    }
    let installed = run(&format!("{root}/usr/bin/qvet"), &["--version"]);
    assert!(
        installed.stdout_str().starts_with("qvet "),
        "{}",
        installed.describe()
    );
}
