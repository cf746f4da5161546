//! Shared helpers for the differential (qemu-img oracle) and hostile-image
//! integration tests of the `qvet` binary.
//!
//! Every helper panics with a message that shows both sides when something
//! does not match, so a failing test explains itself in `cargo test` output.
//!
//! External tools are always run with an explicit format (`-f qcow2` /
//! `-f raw`) where they accept one, and every child process runs under a
//! deadline so a hang fails the test instead of blocking CI.

// Each integration-test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, FileExt, MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Path of the `qvet` binary built by cargo for this test run.
pub const QVET: &str = env!("CARGO_BIN_EXE_qvet");

/// Deadline for one qvet / qemu-img run in the oracle tests (debug builds
/// are slow; the images are small).
pub const ORACLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Deadline for one qvet run on a hostile image: a hang is a failure.
pub const HOSTILE_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Scratch directories
// ---------------------------------------------------------------------------

/// A temporary directory that is removed when dropped (set
/// `QVET_KEEP_TMP=1` to keep it for debugging).
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
}

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("qvet-{tag}-"))
            .tempdir()
            .expect("create temp dir");
        Scratch { dir: Some(dir) }
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("scratch dir").path()
    }

    /// Absolute path of `name` inside the scratch dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// Same as [`Scratch::path`], as a `String` (for argument lists).
    pub fn s(&self, name: &str) -> String {
        self.path(name)
            .to_str()
            .expect("utf-8 temp path")
            .to_owned()
    }

    pub fn root(&self) -> &Path {
        self.dir()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("QVET_KEEP_TMP").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("QVET_KEEP_TMP: keeping {}", d.path().display());
                let _ = d.keep();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Running processes with a deadline
// ---------------------------------------------------------------------------

/// Result of one child process.
pub struct Run {
    /// Human-readable command line (for messages).
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn ok(&self) -> bool {
        self.status.success()
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Multi-line description used in panic messages.
    pub fn describe(&self) -> String {
        let status = match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "unknown status".to_owned(),
        };
        format!(
            "command: {}\nstatus: {status} (after {:.2?})\n--- stdout ({} bytes) ---\n{}\n--- stderr ---\n{}\n---",
            self.cmdline,
            self.elapsed,
            self.stdout.len(),
            clip(&self.stdout_str(), 4000),
            clip(&self.stderr, 4000),
        )
    }
}

/// Shorten long text for panic messages.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}\n… [{} more bytes]", &s[..cut], s.len() - cut)
}

fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Where a child's stdout goes.
pub enum Stdout<'a> {
    /// Captured through a pipe into [`Run::stdout`].
    Capture,
    /// Redirected into this (new, truncated) file.
    File(&'a Path),
}

/// Run `program args…` in `cwd` with a deadline. Panics if the process
/// cannot be started or does not finish in time (after killing it).
pub fn run_with<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    cwd: Option<&Path>,
    stdout: Stdout<'_>,
    timeout: Duration,
) -> Run {
    let mut cmdline = quote(program);
    for a in args {
        cmdline.push(' ');
        cmdline.push_str(&quote(&a.as_ref().to_string_lossy()));
    }
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stderr(Stdio::piped());
    // Keep qemu/qvet output stable regardless of the caller's locale.
    cmd.env("LC_ALL", "C");
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    match stdout {
        Stdout::Capture => {
            cmd.stdout(Stdio::piped());
        }
        Stdout::File(p) => {
            let f = File::create(p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
            cmd.stdout(Stdio::from(f));
        }
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{cmdline}`: {e}"));
    let out_reader = child.stdout.take().map(|mut o| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = o.read_to_end(&mut buf);
            buf
        })
    });
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let deadline = start + timeout;
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(st) => break st,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let err =
                    String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
                panic!(
                    "TIMEOUT: `{cmdline}` did not finish within {timeout:?}; killed.\n--- stderr ---\n{}",
                    clip(&err, 4000)
                );
            }
            None => thread::sleep(Duration::from_millis(5)),
        }
    };
    let elapsed = start.elapsed();
    let stdout = out_reader
        .map(|h| h.join().expect("stdout reader thread"))
        .unwrap_or_default();
    let stderr =
        String::from_utf8_lossy(&err_reader.join().expect("stderr reader thread")).into_owned();
    Run {
        cmdline,
        status,
        stdout,
        stderr,
        elapsed,
    }
}

/// Run a command, capture its output, no success check.
pub fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Run {
    run_with(program, args, None, Stdout::Capture, ORACLE_TIMEOUT)
}

/// Run a command and panic unless it exits 0.
pub fn run_ok<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Run {
    let r = run(program, args);
    assert!(r.ok(), "helper command failed\n{}", r.describe());
    r
}

/// Full path of an external tool: on PATH, or in the sbin directories that
/// a non-root user's PATH lacks on Debian (sfdisk, mke2fs, mkfs.fat).
pub fn find_tool(name: &str) -> Option<String> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}

/// Whether an external tool is available (see [`find_tool`]).
pub fn have_tool(name: &str) -> bool {
    find_tool(name).is_some()
}

// ---------------------------------------------------------------------------
// qemu-img / qemu-io
// ---------------------------------------------------------------------------

/// `qemu-img ARGS…`, must succeed.
pub fn qemu_img<S: AsRef<OsStr>>(args: &[S]) -> Run {
    run_ok("qemu-img", args)
}

/// `qemu-img ARGS…`, any exit status.
pub fn qemu_img_any<S: AsRef<OsStr>>(args: &[S]) -> Run {
    run("qemu-img", args)
}

/// `qemu-img create -q -f FMT [-o OPTS] PATH SIZE`.
pub fn create(fmt: &str, opts: &str, path: &str, size: &str) {
    let mut args = vec!["create", "-q", "-f", fmt];
    if !opts.is_empty() {
        args.push("-o");
        args.push(opts);
    }
    args.push(path);
    args.push(size);
    qemu_img(&args);
}

/// `qemu-io -f FMT -c CMD… IMG`; must succeed (qemu-io exits 1 when a
/// command fails).
pub fn qemu_io(fmt: &str, img: &str, cmds: &[&str]) {
    let mut args: Vec<String> = vec!["-f".into(), fmt.into()];
    for c in cmds {
        args.push("-c".into());
        args.push((*c).to_owned());
    }
    args.push(img.to_owned());
    let r = run("qemu-io", &args);
    assert!(
        r.ok() && !r.stdout_str().contains("failed") && !r.stderr.contains("failed"),
        "qemu-io failed\n{}",
        r.describe()
    );
}

/// `qemu-img info --output=json` parsed (panics if qemu-img fails).
pub fn qemu_info(img: &str, fmt: Option<&str>) -> Value {
    let mut args = vec!["info", "--output=json"];
    if let Some(f) = fmt {
        args.extend(["-f", f]);
    }
    args.push(img);
    let r = qemu_img(&args);
    serde_json::from_slice(&r.stdout).expect("qemu-img info JSON")
}

/// Virtual size according to qemu-img.
pub fn qemu_virtual_size(img: &str, fmt: Option<&str>) -> u64 {
    qemu_info(img, fmt)["virtual-size"]
        .as_u64()
        .expect("virtual-size")
}

// ---------------------------------------------------------------------------
// qvet
// ---------------------------------------------------------------------------

/// `qvet ARGS…` with the oracle deadline; any exit status.
pub fn qvet<S: AsRef<OsStr>>(args: &[S]) -> Run {
    let r = run_with(QVET, args, None, Stdout::Capture, ORACLE_TIMEOUT);
    assert_no_panic(&r);
    r
}

/// `qvet ARGS…` with the hostile deadline; any exit status (but never a
/// panic / signal).
pub fn qvet_hostile<S: AsRef<OsStr>>(args: &[S]) -> Run {
    let r = run_with(QVET, args, None, Stdout::Capture, HOSTILE_TIMEOUT);
    assert_no_panic(&r);
    r
}

/// Never a panic, never a signal, exit code 0 or 1.
pub fn assert_no_panic(r: &Run) {
    assert!(
        !r.stderr.contains("panicked") && !r.stderr.contains("RUST_BACKTRACE"),
        "qvet PANICKED\n{}",
        r.describe()
    );
    match r.code() {
        Some(0) | Some(1) => {}
        _ => panic!(
            "qvet must exit with 0 or 1 (never 101 / a signal)\n{}",
            r.describe()
        ),
    }
}

/// Exit 0.
pub fn assert_success(r: &Run) {
    assert!(r.ok(), "qvet was expected to succeed\n{}", r.describe());
}

/// Clean refusal: exit code 1, stderr starts with `qvet: `, and (if given)
/// stderr mentions one of `needles` (case-insensitive).
pub fn assert_refused(r: &Run, needles: &[&str]) {
    assert_eq!(
        r.code(),
        Some(1),
        "qvet was expected to refuse with exit code 1\n{}",
        r.describe()
    );
    assert!(
        r.stderr.starts_with("qvet: "),
        "error message must start with `qvet: `\n{}",
        r.describe()
    );
    if !needles.is_empty() {
        let low = r.stderr.to_lowercase();
        assert!(
            needles.iter().any(|n| low.contains(&n.to_lowercase())),
            "error message should mention one of {needles:?}\n{}",
            r.describe()
        );
    }
}

/// Like [`assert_refused`] but returns the problem instead of panicking,
/// so a test can check several commands and report all failures at once.
pub fn refusal_problem(r: &Run, needles: &[&str]) -> Option<String> {
    if r.code() != Some(1) {
        return Some(format!("expected exit code 1\n{}", r.describe()));
    }
    if !r.stderr.starts_with("qvet: ") {
        return Some(format!(
            "error message must start with `qvet: `\n{}",
            r.describe()
        ));
    }
    let low = r.stderr.to_lowercase();
    if !needles.is_empty() && !needles.iter().any(|n| low.contains(&n.to_lowercase())) {
        return Some(format!(
            "error message should mention one of {needles:?}\n{}",
            r.describe()
        ));
    }
    None
}

/// Panic listing every problem, if any.
pub fn assert_no_problems(problems: &[String]) {
    if !problems.is_empty() {
        panic!(
            "{} command(s) misbehaved:\n\n{}",
            problems.len(),
            problems.join("\n\n")
        );
    }
}

/// Exit 0, or exit 1 with a `qvet: ` message.
pub fn assert_clean(r: &Run) {
    assert_no_panic(r);
    if r.code() == Some(1) {
        assert!(
            r.stderr.starts_with("qvet: "),
            "error message must start with `qvet: `\n{}",
            r.describe()
        );
    }
}

// ---------------------------------------------------------------------------
// Oracle comparisons
// ---------------------------------------------------------------------------

/// Options shared by the qvet invocation and (where meaningful) qemu-img.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// `-f FMT` for both tools; `None` = both probe.
    pub fmt: Option<&'static str>,
    /// `--allow-backing` for qvet.
    pub allow_backing: bool,
    /// `--allow-data-file` for qvet.
    pub allow_data_file: bool,
}

impl Opts {
    pub fn qcow2() -> Self {
        Opts {
            fmt: Some("qcow2"),
            ..Opts::default()
        }
    }
    pub fn raw() -> Self {
        Opts {
            fmt: Some("raw"),
            ..Opts::default()
        }
    }
    pub fn probe() -> Self {
        Opts::default()
    }
    pub fn backing(mut self) -> Self {
        self.allow_backing = true;
        self
    }
    pub fn data_file(mut self) -> Self {
        self.allow_data_file = true;
        self
    }

    fn qvet_flags(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(f) = self.fmt {
            v.push("-f".to_owned());
            v.push(f.to_owned());
        }
        if self.allow_backing {
            v.push("--allow-backing".to_owned());
        }
        if self.allow_data_file {
            v.push("--allow-data-file".to_owned());
        }
        v
    }

    fn qemu_fmt(&self) -> Vec<String> {
        match self.fmt {
            Some(f) => vec!["-f".to_owned(), f.to_owned()],
            None => Vec::new(),
        }
    }
}

/// Build a qvet argument list: `SUBCMD [extra…] [opts…] IMG [tail…]`.
fn qvet_args(sub: &str, extra: &[&str], opts: &Opts, img: &str, tail: &[&str]) -> Vec<String> {
    let mut v = vec![sub.to_owned()];
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v.extend(opts.qvet_flags());
    v.push(img.to_owned());
    v.extend(tail.iter().map(|s| (*s).to_owned()));
    v
}

/// Remove the `"qvet"` key from an object (or from each object of an
/// array) and return what was removed.
pub fn strip_qvet(v: &mut Value) -> Vec<Value> {
    match v {
        Value::Object(m) => m.shift_remove("qvet").into_iter().collect(),
        Value::Array(a) => a.iter_mut().flat_map(strip_qvet).collect(),
        _ => Vec::new(),
    }
}

/// Recursive JSON diff: one line per differing path.
pub fn json_diff(path: &str, qemu: &Value, qvet: &Value, out: &mut Vec<String>) {
    match (qemu, qvet) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(vb) => json_diff(&p, va, vb, out),
                    None => out.push(format!("{p}: missing in qvet (qemu-img: {va})")),
                }
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    out.push(format!("{path}.{k}: extra in qvet (qvet: {vb})"));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                out.push(format!(
                    "{path}: array length qemu-img {} vs qvet {}",
                    a.len(),
                    b.len()
                ));
            }
            for (i, (va, vb)) in a.iter().zip(b.iter()).enumerate() {
                json_diff(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ => {
            if qemu != qvet {
                out.push(format!("{path}: qemu-img {qemu} vs qvet {qvet}"));
            }
        }
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Parse qvet's JSON stdout, panicking with the run description if invalid.
pub fn parse_qvet_json(r: &Run) -> Value {
    serde_json::from_slice(&r.stdout)
        .unwrap_or_else(|e| panic!("qvet printed invalid JSON: {e}\n{}", r.describe()))
}

/// Assert `qvet`'s info JSON (minus `"qvet"`) equals qemu-img's.
fn assert_json_matches(qemu: &Value, mut qvet_v: Value, r: &Run, what: &str) -> Vec<Value> {
    let extras = strip_qvet(&mut qvet_v);
    let mut diffs = Vec::new();
    json_diff("$", qemu, &qvet_v, &mut diffs);
    if !diffs.is_empty() {
        panic!(
            "{what}: qvet JSON differs from qemu-img\ncommand: {}\n=== differences ===\n{}\n=== qemu-img ===\n{}\n=== qvet (without \"qvet\") ===\n{}",
            r.cmdline,
            diffs.join("\n"),
            clip(&pretty(qemu), 6000),
            clip(&pretty(&qvet_v), 6000),
        );
    }
    extras
}

/// `qvet info --output json` vs `qemu-img info --output=json`. Returns
/// qvet's full JSON (with the `"qvet"` key).
pub fn check_info(img: &str, opts: &Opts) -> Value {
    let mut qargs = vec!["info".to_owned(), "--output=json".to_owned()];
    qargs.extend(opts.qemu_fmt());
    qargs.push(img.to_owned());
    let q = qemu_img(&qargs);
    let qemu: Value = serde_json::from_slice(&q.stdout).expect("qemu-img info JSON");

    let r = qvet(&qvet_args("info", &["--output", "json"], opts, img, &[]));
    assert_success(&r);
    let full = parse_qvet_json(&r);
    let extras = assert_json_matches(&qemu, full.clone(), &r, "info");
    assert_eq!(
        extras.len(),
        1,
        "qvet info JSON must carry exactly one \"qvet\" key\n{}",
        r.describe()
    );
    assert!(
        extras[0]["opened-files"].is_array(),
        "qvet[\"opened-files\"] must be an array\n{}",
        r.describe()
    );
    full
}

/// `qvet info --backing-chain --output json --allow-backing` vs
/// `qemu-img info --backing-chain --output=json`. Returns qvet's JSON.
pub fn check_info_chain(img: &str, opts: &Opts) -> Value {
    let mut qargs = vec![
        "info".to_owned(),
        "--backing-chain".to_owned(),
        "--output=json".to_owned(),
    ];
    qargs.extend(opts.qemu_fmt());
    qargs.push(img.to_owned());
    let q = qemu_img(&qargs);
    let qemu: Value = serde_json::from_slice(&q.stdout).expect("qemu-img info JSON");
    assert!(qemu.is_array());

    let r = qvet(&qvet_args(
        "info",
        &["--output", "json", "--backing-chain"],
        opts,
        img,
        &[],
    ));
    assert_success(&r);
    let full = parse_qvet_json(&r);
    assert!(
        full.is_array(),
        "qvet info --backing-chain must print a JSON array\n{}",
        r.describe()
    );
    assert_json_matches(&qemu, full.clone(), &r, "info --backing-chain");
    full
}

/// All paths listed in `qvet["opened-files"]` (object or array of objects),
/// canonicalised where possible.
pub fn opened_files(v: &Value) -> BTreeSet<PathBuf> {
    let mut set = BTreeSet::new();
    let objs: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    for o in objs {
        if let Some(files) = o["qvet"]["opened-files"].as_array() {
            for f in files {
                let s = f.as_str().expect("opened-files entries are strings");
                set.insert(canon(Path::new(s)));
            }
        }
    }
    set
}

pub fn canon(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Assert qvet opened exactly `expected` (compared canonically).
pub fn assert_opened_exactly(v: &Value, expected: &[&str]) {
    let got = opened_files(v);
    let want: BTreeSet<PathBuf> = expected.iter().map(|p| canon(Path::new(p))).collect();
    assert_eq!(
        got,
        want,
        "qvet[\"opened-files\"] mismatch (left = qvet, right = expected)\nqvet JSON:\n{}",
        clip(&pretty(v), 4000)
    );
}

/// Compare two map outputs byte for byte.
pub fn assert_map_text_eq(qemu: &[u8], qvet_run: &Run, what: &str) {
    if qemu == qvet_run.stdout.as_slice() {
        return;
    }
    let a = String::from_utf8_lossy(qemu);
    let b = qvet_run.stdout_str();
    let al: Vec<&str> = a.split_inclusive('\n').collect();
    let bl: Vec<&str> = b.split_inclusive('\n').collect();
    let mut msg = String::new();
    let first = al
        .iter()
        .zip(bl.iter())
        .position(|(x, y)| x != y)
        .unwrap_or(al.len().min(bl.len()));
    let _ = writeln!(
        msg,
        "{what}: qvet map output is not byte-identical to qemu-img map\ncommand: {}\nfirst differing line: {} (qemu-img {} lines, qvet {} lines)",
        qvet_run.cmdline,
        first + 1,
        al.len(),
        bl.len()
    );
    let _ = writeln!(
        msg,
        "  qemu-img: {:?}",
        al.get(first).copied().unwrap_or("<none>")
    );
    let _ = writeln!(
        msg,
        "  qvet    : {:?}",
        bl.get(first).copied().unwrap_or("<none>")
    );
    let _ = writeln!(msg, "=== qemu-img ===\n{}", clip(&a, 5000));
    let _ = writeln!(msg, "=== qvet ===\n{}", clip(&b, 5000));
    let _ = writeln!(msg, "=== qvet stderr ===\n{}", clip(&qvet_run.stderr, 2000));
    panic!("{msg}");
}

/// `qvet map --output json` vs `qemu-img map --output=json` (byte-equal).
pub fn check_map(img: &str, opts: &Opts) {
    let mut qargs = vec!["map".to_owned(), "--output=json".to_owned()];
    qargs.extend(opts.qemu_fmt());
    qargs.push(img.to_owned());
    let q = qemu_img(&qargs);
    let r = qvet(&qvet_args("map", &["--output", "json"], opts, img, &[]));
    assert_success(&r);
    assert_map_text_eq(&q.stdout, &r, "map");
}

/// `qvet map --snapshot SNAP` vs `qemu-img map` of a copy of the image on
/// which the snapshot was applied with `qemu-img snapshot -a NAME`
/// (qemu-img map has no snapshot option; applying a snapshot on a copy
/// keeps every data cluster at its host offset). `snap` is what is passed
/// to qvet (ID or name), `name` the snapshot's name for qemu-img.
pub fn check_map_snapshot(scratch: &Scratch, img: &str, opts: &Opts, snap: &str, name: &str) {
    let copy = scratch.s(&format!("applied-{name}-{snap}.qcow2"));
    // `cp` keeps holes (SEEK_DATA), which qemu-img map reports.
    run_ok("cp", &["--sparse=auto", img, copy.as_str()]);
    // `snapshot -a` refuses while dirty bitmaps exist; they do not affect
    // the mapping, so drop them from the copy.
    let bitmaps = qemu_info(&copy, Some("qcow2"))["format-specific"]["data"]["bitmaps"].clone();
    for b in bitmaps.as_array().into_iter().flatten() {
        let bname = b["name"].as_str().expect("bitmap name");
        qemu_img(&["bitmap", "--remove", "-f", "qcow2", copy.as_str(), bname]);
    }
    qemu_img(&["snapshot", "-f", "qcow2", "-a", name, copy.as_str()]);
    let mut qargs = vec!["map".to_owned(), "--output=json".to_owned()];
    qargs.extend(opts.qemu_fmt());
    qargs.push(copy);
    let q = qemu_img(&qargs);
    let r = qvet(&qvet_args(
        "map",
        &["--output", "json", "--snapshot", snap],
        opts,
        img,
        &[],
    ));
    assert_success(&r);
    assert_map_text_eq(&q.stdout, &r, &format!("map --snapshot {snap}"));
}

/// Reference conversion with qemu-img; returns the output path.
fn qemu_convert(
    scratch: &Scratch,
    img: &str,
    opts: &Opts,
    l_opt: Option<&str>,
    tag: &str,
) -> String {
    let out = scratch.s(&format!("ref-{tag}.raw"));
    let mut qargs = vec!["convert".to_owned()];
    qargs.extend(opts.qemu_fmt());
    if let Some(l) = l_opt {
        qargs.push("-l".to_owned());
        qargs.push(l.to_owned());
    }
    qargs.extend([
        "-O".to_owned(),
        "raw".to_owned(),
        img.to_owned(),
        out.clone(),
    ]);
    qemu_img(&qargs);
    out
}

/// Compare two files chunk-wise; panics with the first differing offset,
/// the bytes there and the differing 64 KiB chunks.
pub fn assert_files_eq(reference: &Path, candidate: &Path, what: &str) {
    let mut a = File::open(reference).expect("open reference");
    let mut b = File::open(candidate).expect("open candidate");
    let la = a.metadata().expect("stat").len();
    let lb = b.metadata().expect("stat").len();
    const CH: usize = 1 << 16;
    let mut ba = vec![0u8; CH];
    let mut bb = vec![0u8; CH];
    let mut off: u64 = 0;
    let mut first: Option<(u64, Vec<u8>, Vec<u8>)> = None;
    let mut bad_chunks: Vec<u64> = Vec::new();
    let common = la.min(lb);
    while off < common {
        let n = CH.min((common - off) as usize);
        a.read_exact(&mut ba[..n]).expect("read reference");
        b.read_exact(&mut bb[..n]).expect("read candidate");
        if ba[..n] != bb[..n] {
            if first.is_none() {
                let i = (0..n).find(|&i| ba[i] != bb[i]).unwrap_or(0);
                let e = (i + 16).min(n);
                first = Some((off + i as u64, ba[i..e].to_vec(), bb[i..e].to_vec()));
            }
            bad_chunks.push(off);
        }
        off += n as u64;
    }
    if la == lb && first.is_none() {
        return;
    }
    let mut msg = format!(
        "{what}: converted output differs from qemu-img's\n  qemu-img output {} : {la} bytes\n  qvet output     {} : {lb} bytes\n",
        reference.display(),
        candidate.display()
    );
    if let Some((o, x, y)) = first {
        let _ = writeln!(
            msg,
            "  first difference at byte {o} (0x{o:x}):\n    qemu-img: {}\n    qvet    : {}",
            hex(&x),
            hex(&y)
        );
        let shown: Vec<String> = bad_chunks
            .iter()
            .take(20)
            .map(|c| format!("0x{c:x}"))
            .collect();
        let _ = writeln!(
            msg,
            "  {} differing 64 KiB chunk(s), first ones at: {}",
            bad_chunks.len(),
            shown.join(", ")
        );
    } else {
        let _ = writeln!(msg, "  common prefix of {common} bytes is identical");
    }
    panic!("{msg}");
}

pub fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `qvet convert -O raw` vs `qemu-img convert -O raw` (byte-equal, and the
/// output length equals the virtual size).
pub fn check_convert(scratch: &Scratch, img: &str, opts: &Opts) {
    let tag = unique_tag(img);
    let reference = qemu_convert(scratch, img, opts, None, &tag);
    let out = scratch.s(&format!("qvet-{tag}.raw"));
    let r = qvet(&qvet_args(
        "convert",
        &["-O", "raw"],
        opts,
        img,
        &[out.as_str()],
    ));
    assert_success(&r);
    assert_files_eq(
        Path::new(&reference),
        Path::new(&out),
        &format!("convert {img}"),
    );
    let vsize = qemu_virtual_size(img, opts.fmt);
    let len = fs::metadata(&out).expect("stat qvet output").len();
    assert_eq!(
        len, vsize,
        "convert output length must equal the virtual size"
    );
}

/// `qvet convert --snapshot SNAP` vs `qemu-img convert -l L_OPT`.
pub fn check_convert_snapshot(scratch: &Scratch, img: &str, opts: &Opts, snap: &str, l_opt: &str) {
    let tag = format!("{}-snap-{snap}", unique_tag(img));
    let reference = qemu_convert(scratch, img, opts, Some(l_opt), &tag);
    let out = scratch.s(&format!("qvet-{tag}.raw"));
    let r = qvet(&qvet_args(
        "convert",
        &["-O", "raw", "--snapshot", snap],
        opts,
        img,
        &[out.as_str()],
    ));
    assert_success(&r);
    assert_files_eq(
        Path::new(&reference),
        Path::new(&out),
        &format!("convert --snapshot {snap} {img}"),
    );
}

fn unique_tag(img: &str) -> String {
    let base = Path::new(img)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{base}-{n}")
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// info + map + convert against qemu-img; returns qvet's info JSON.
pub fn check_all(scratch: &Scratch, img: &str, opts: &Opts) -> Value {
    let info = check_info(img, opts);
    check_map(img, opts);
    check_convert(scratch, img, opts);
    info
}

// ---------------------------------------------------------------------------
// Data and byte poking
// ---------------------------------------------------------------------------

/// Deterministic pseudo-random (incompressible) bytes (xorshift64*).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Compressible text (numbered lines of prose).
pub fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    let words = [
        "qcow2", "cluster", "refcount", "snapshot", "backing", "the", "quick", "brown", "fox",
        "jumps", "over", "lazy", "dog", "guest", "host", "offset", "table", "entry",
    ];
    let mut v = Vec::with_capacity(len + 128);
    let mut i: u64 = 0;
    while v.len() < len {
        let mut line = format!("{:08} ", seed.wrapping_add(i));
        for k in 0..8 {
            line.push_str(words[((i * 7 + k * 3 + seed) % words.len() as u64) as usize]);
            line.push(' ');
        }
        line.push('\n');
        v.extend_from_slice(line.as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

/// Write `data` to a new file.
pub fn write_file(path: &str, data: &[u8]) {
    fs::write(path, data).unwrap_or_else(|e| panic!("write {path}: {e}"));
}

/// Write `data` at `offset` into an existing file (no truncation).
pub fn poke(path: &str, offset: u64, data: &[u8]) {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    f.write_all_at(data, offset)
        .unwrap_or_else(|e| panic!("poke {path}@{offset}: {e}"));
}

pub fn poke_u32(path: &str, offset: u64, v: u32) {
    poke(path, offset, &v.to_be_bytes());
}

pub fn poke_u64(path: &str, offset: u64, v: u64) {
    poke(path, offset, &v.to_be_bytes());
}

pub fn peek(path: &str, offset: u64, len: usize) -> Vec<u8> {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset)
        .unwrap_or_else(|e| panic!("read {path}@{offset}: {e}"));
    buf
}

pub fn peek_u64(path: &str, offset: u64) -> u64 {
    let b = peek(path, offset, 8);
    u64::from_be_bytes(b.try_into().expect("8 bytes"))
}

/// Append bytes to a file.
pub fn append(path: &str, data: &[u8]) {
    let mut f = OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    f.write_all(data).expect("append");
}

/// Allocated bytes of a file (st_blocks * 512).
pub fn allocated_bytes(path: &str) -> u64 {
    fs::metadata(path).expect("stat").blocks() * 512
}

// ---------------------------------------------------------------------------
// Disk building (partition tables and filesystems without root)
// ---------------------------------------------------------------------------

/// Runs `sfdisk ARGS DISK` with `script` on stdin; partitioning a regular
/// file needs no root.
pub fn sfdisk(disk: &str, args: &[&str], script: &str) {
    let tool = find_tool("sfdisk").expect("sfdisk (fdisk package)");
    let mut child = Command::new(tool)
        .args(args)
        .arg(disk)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start sfdisk");
    child
        .stdin
        .take()
        .expect("sfdisk stdin")
        .write_all(script.as_bytes())
        .expect("write sfdisk script");
    assert!(
        child.wait().expect("sfdisk").success(),
        "sfdisk {args:?} {script}"
    );
}

/// Copies the file `img` into `disk` at 512-byte sector `sector`.
pub fn dd_into(img: &str, disk: &str, sector: u64) {
    run_ok(
        "dd",
        &[
            &format!("if={img}"),
            &format!("of={disk}"),
            "bs=512",
            &format!("seek={sector}"),
            "conv=notrunc",
            "status=none",
        ],
    );
}

/// Decodes standard base64, as qvet writes its `*_base64` name fields.
pub fn b64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let n = chunk.iter().filter(|&&c| c != b'=').count();
        let v = chunk
            .iter()
            .take(n)
            .enumerate()
            .fold(0u32, |a, (i, &c)| a | (u32::from(val(c)) << (18 - 6 * i)));
        for i in 0..n.saturating_sub(1) {
            out.push((v >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// The audit findings of the first image above info that the policy did not
/// suppress, as (rule, path).
pub fn serious(v: &Value) -> BTreeSet<(String, String)> {
    v[0]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["severity"] != "info" && f.get("suppressed").is_none())
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_string(),
                f["path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

// --- Debian guests made of this host's own packaged files -------------------

/// Copies one packaged path from the host into `root` at the place the
/// host resolves its directory to (so merged-/usr paths land in /usr).
pub fn copy_packaged(root: &Path, p: &str) -> bool {
    let src = Path::new(p);
    let Ok(meta) = fs::symlink_metadata(src) else {
        return true;
    };
    let parent = src
        .parent()
        .and_then(|d| fs::canonicalize(d).ok())
        .unwrap_or_else(|| PathBuf::from("/"));
    let dst_dir = root.join(parent.strip_prefix("/").unwrap());
    let Some(name) = src.file_name() else {
        return true;
    };
    let dst = dst_dir.join(name);
    fs::create_dir_all(&dst_dir).unwrap();
    if meta.file_type().is_symlink() {
        let target = fs::read_link(src).unwrap();
        let _ = symlink(target, &dst);
        true
    } else if meta.is_dir() {
        fs::create_dir_all(&dst).unwrap();
        true
    } else if meta.is_file() {
        if fs::copy(src, &dst).is_err() {
            return false;
        }
        fs::set_permissions(
            &dst,
            fs::Permissions::from_mode(meta.permissions().mode() & 0o7777),
        )
        .unwrap();
        true
    } else {
        true
    }
}

/// The host's dpkg stanza of each package in `keep`.
pub fn status_stanzas(keep: &[&str]) -> String {
    let status = fs::read_to_string("/var/lib/dpkg/status").unwrap();
    status
        .split("\n\n")
        .filter(|st| {
            st.lines()
                .next()
                .and_then(|l| l.strip_prefix("Package: "))
                .is_some_and(|n| keep.contains(&n))
        })
        .map(|st| format!("{}\n\n", st.trim_end()))
        .collect()
}

/// A Debian-like root under `root` made of this host's files of `packages`
/// (merged /usr, every path `dpkg -L` lists, their `.list`, `.md5sums`,
/// `.conffiles`, the status stanzas and the diversions): real data no one
/// here wrote, which dpkg's own digests verify.
pub fn debian_root(root: &Path, packages: &[&str]) {
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        fs::create_dir_all(root.join(target)).unwrap();
        symlink(target, root.join(link)).unwrap();
    }
    let info = root.join("var/lib/dpkg/info");
    fs::create_dir_all(&info).unwrap();
    for pkg in packages {
        let list = run_ok("dpkg", &["-L", pkg]).stdout_str();
        for p in list.lines().filter(|l| l.starts_with('/')) {
            assert!(
                copy_packaged(root, p),
                "{p} of {pkg} is unreadable on this host"
            );
        }
        for ext in ["list", "md5sums", "conffiles"] {
            for name in [format!("{pkg}.{ext}"), format!("{pkg}:amd64.{ext}")] {
                let src = Path::new("/var/lib/dpkg/info").join(&name);
                if src.is_file() {
                    fs::copy(&src, info.join(&name)).unwrap();
                }
            }
        }
    }
    fs::write(root.join("var/lib/dpkg/status"), status_stanzas(packages)).unwrap();
    if Path::new("/var/lib/dpkg/diversions").is_file() {
        fs::copy(
            "/var/lib/dpkg/diversions",
            root.join("var/lib/dpkg/diversions"),
        )
        .unwrap();
    }
}
