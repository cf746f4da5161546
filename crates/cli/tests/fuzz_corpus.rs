//! Replays the fuzz corpus: every file under `fuzz/corpus/<target>/` and
//! `fuzz/artifacts/<target>/` goes through the same harness the `cargo fuzz`
//! targets run (`fuzz/src/lib.rs`, included here verbatim), and none may
//! panic. A returned error is fine: most inputs are hostile on purpose.
//!
//! This needs no nightly toolchain and no cargo-fuzz, so every crash the
//! fuzzer ever found stays a regression test once its input is saved.

#[path = "../../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Files directly under `fuzz/corpus/<target>/` and `fuzz/artifacts/<target>/`.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = fs::read_dir(fuzz_dir().join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if p.is_file() && !hidden {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let files = inputs(target);
    let mut failed = Vec::new();
    for path in &files {
        match fs::read(path) {
            Ok(data) => {
                if panic::catch_unwind(|| run(&data)).is_err() {
                    failed.push(format!("{}: panicked", path.display()));
                }
            }
            Err(e) => failed.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs failed:\n  {}",
        failed.len(),
        files.len(),
        failed.join("\n  ")
    );
    files.len()
}

#[test]
fn header_corpus_never_panics() {
    let n = replay("header", harness::header);
    assert!(n > 0, "no inputs found under fuzz/corpus/header");
}

#[test]
fn image_corpus_never_panics() {
    let n = replay("image", harness::image);
    assert!(n > 0, "no inputs found under fuzz/corpus/image");
}

#[test]
fn check_corpus_never_panics() {
    // `check` reads the same hostile images as `image`, and its own finds.
    let n = replay("image", harness::check) + replay("check", harness::check);
    assert!(n > 0, "no inputs found under fuzz/corpus/image");
}

#[test]
fn guest_corpus_never_panics() {
    let n = replay("guest", harness::guest);
    assert!(n > 0, "no inputs found under fuzz/corpus/guest");
}

#[test]
fn harness_reads_stay_in_bounds() {
    // The read window taken from the input is always inside the guest view
    // and at most MAX_READ long, whatever the bytes.
    let samples: [&[u8]; 3] = [b"", &[0xff; 64], &[0x01; 5]];
    for data in samples {
        for size in [1u64, 511, 1 << 20, u64::MAX] {
            for i in 0..harness::READS {
                let (off, len) = harness::read_window(data, i, size);
                assert!(off < size);
                assert!((1..=harness::MAX_READ).contains(&len));
                assert!(off + len as u64 <= size);
            }
        }
    }
}

#[test]
fn journal_corpus_never_panics() {
    let n = replay("journal", harness::journal);
    assert!(n > 0, "no inputs found under fuzz/corpus/journal");
}

#[test]
fn facts_corpus_never_panics() {
    let n = replay("facts", harness::facts);
    assert!(n > 0, "no inputs found under fuzz/corpus/facts");
}

#[test]
fn luks_corpus_never_panics() {
    let n = replay("luks", harness::luks);
    assert!(n > 0, "no inputs found under fuzz/corpus/luks");
}
