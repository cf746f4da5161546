//! `qvet audit`: is it a repack, and is it dangerous? One verdict per image
//! with its evidence, in human, JSON or SARIF form.
//!
//! Exit codes: 0 no finding at or above `--fail-on` (default high), 2 at
//! least one, 1 error (this command reports its own errors).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use qvet_audit::baseline::Baseline;
use qvet_audit::finding::{Finding, Severity};
use qvet_audit::policy::Policy;
use qvet_audit::rules;
use qvet_audit::run::{audit, Options, Report};

use crate::picture::Picture;
use serde_json::{json, Map, Value};

/// Output formats of `qvet audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditOutput {
    /// For people: verdict, findings by severity, coverage.
    Human,
    /// One object per image.
    Json,
    /// SARIF 2.1.0 (GitHub code scanning).
    Sarif,
}

/// Severities for `--fail-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Any finding above info… and info too.
    Info,
    /// Low and above.
    Low,
    /// Medium and above.
    Medium,
    /// High and above.
    High,
    /// Critical only.
    Critical,
    /// Never fail on findings.
    Never,
}

/// `qvet audit` arguments.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    output: AuditOutput,
    /// Compare with this original, file by file (opened with the same options).
    #[arg(long, value_name = "IMG")]
    reference: Option<PathBuf>,
    /// Compare with a file-level baseline: a catalog entry ID (recorded by
    /// `catalog add`) or a baseline JSON file (`catalog export-baseline`).
    /// Without --reference or --baseline, the baseline of the catalog entry
    /// the image matches or its name claims is used when one is stored.
    #[arg(long, value_name = "ID|FILE", conflicts_with = "reference")]
    baseline: Option<String>,
    /// What your lab adds on purpose (TOML: [allow] users/keys/paths, [[suppress]]).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// User catalog: an SQLite file or postgres://user@host/db [default:
    /// $QVET_CATALOG, else the user catalog]. Read for references and
    /// baselines; when it exists and this connection may write it, each
    /// verdict with its findings is recorded there too (for `qvet fleet`).
    #[arg(long, value_name = "PATH|URL")]
    catalog: Option<PathBuf>,
    /// Name of this host for the verdicts recorded in the catalog
    /// [default: the machine's host name].
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// Exit 2 when a finding is at least this severe.
    #[arg(long, value_enum, default_value = "high")]
    fail_on: FailOn,
    /// Print a rule's documentation (`list` for every rule) and exit.
    #[arg(long, value_name = "RULE")]
    explain: Option<String>,
    /// Show info findings in human output too.
    #[arg(short, long)]
    verbose: bool,
    /// Also write a self-contained HTML report (picture of the disk,
    /// findings, inventory) to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// How images are opened.
    #[command(flatten)]
    open: crate::OpenArgs,
    /// Images to audit.
    #[arg(required_unless_present = "explain")]
    images: Vec<PathBuf>,
}

/// Runs `qvet audit`.
pub fn run(a: &AuditArgs, out: &mut dyn Write) -> Result<ExitCode> {
    if let Some(id) = &a.explain {
        explain(id, out)?;
        return Ok(ExitCode::SUCCESS);
    }
    outcome_code(audit_all(a, out, a.html.as_deref(), true))
}

/// `qvet report` arguments: the audit's, and where the page goes.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The HTML file to write (never one of the images).
    #[arg(short = 'o', long = "out", value_name = "FILE.html")]
    out: PathBuf,
    #[command(flatten)]
    audit: AuditArgs,
}

/// Runs `qvet report`: the audit, written as one HTML page; stdout names
/// each image's verdict and the file written.
pub fn run_report(a: &ReportArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let code = outcome_code(audit_all(&a.audit, out, Some(&a.out), false));
    writeln!(out, "report: {}", a.out.display())?;
    code
}

fn outcome_code(outcome: Result<Outcome>) -> Result<ExitCode> {
    match outcome {
        Ok(Outcome::Clean) => Ok(ExitCode::SUCCESS),
        Ok(Outcome::Findings) => Ok(ExitCode::from(2)),
        Ok(Outcome::Error) => Ok(ExitCode::from(1)),
        Err(err) => {
            if !crate::is_broken_pipe(&err) {
                let _ = writeln!(io::stderr(), "qvet: {err:#}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn explain(id: &str, out: &mut dyn Write) -> Result<()> {
    if id == "list" {
        for r in rules::all() {
            writeln!(
                out,
                "{:<30} {:<8} {:<12} {}",
                r.id,
                r.severity.name(),
                r.category.name(),
                r.title
            )?;
        }
        return Ok(());
    }
    let Some(r) = rules::find(id) else {
        bail!("no rule '{id}' (see `qvet audit --explain list`)");
    };
    writeln!(out, "{} — {}", r.id, r.title)?;
    writeln!(
        out,
        "severity {} (default), confidence {}, category {}, layer {}",
        r.severity.name(),
        r.confidence.name(),
        r.category.name(),
        r.layer.name()
    )?;
    writeln!(out)?;
    writeln!(out, "{}", textwrap(r.doc, 78))?;
    Ok(())
}

fn textwrap(s: &str, width: usize) -> String {
    let mut lines = Vec::new();
    let mut line = String::new();
    for w in s.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + w.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.join("\n")
}

fn threshold(f: FailOn) -> Option<Severity> {
    match f {
        FailOn::Info => Some(Severity::Info),
        FailOn::Low => Some(Severity::Low),
        FailOn::Medium => Some(Severity::Medium),
        FailOn::High => Some(Severity::High),
        FailOn::Critical => Some(Severity::Critical),
        FailOn::Never => None,
    }
}

fn audit_all(
    a: &AuditArgs,
    out: &mut dyn Write,
    html: Option<&std::path::Path>,
    print: bool,
) -> Result<Outcome> {
    if let Some(h) = html {
        let target = std::fs::canonicalize(h).ok();
        if a.images.iter().chain(a.reference.iter()).any(|i| {
            std::fs::canonicalize(i)
                .ok()
                .is_some_and(|c| Some(c) == target)
        }) {
            bail!(
                "refusing to write the report over an input image: {}",
                h.display()
            );
        }
    }
    let policy = match &a.policy {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(Policy::parse(&text).with_context(|| format!("in {}", p.display()))?)
        }
        None => None,
    };
    let reference = match &a.reference {
        Some(r) => {
            Some(Arc::new(a.open.open(r, None).with_context(|| {
                format!("opening the reference {}", r.display())
            })?))
        }
        None => None,
    };
    let catalog = crate::catalog_cmd::load_catalog(a.catalog.as_deref())?;
    let location = crate::catalog_cmd::catalog_path(a.catalog.as_deref()).ok();
    let store = location
        .as_ref()
        .and_then(|p| qvet_catalog::store::Store::open_read_only(p).ok().flatten());
    let mut records = Vec::new();
    let explicit_baseline = match &a.baseline {
        Some(b) => Some(load_baseline(b, store.as_ref())?),
        None => None,
    };
    let mut reports = Vec::new();
    let mut pictures = Vec::new();
    let mut drawings = Vec::new();
    let mut errors: Vec<(String, String)> = Vec::new();
    for path in &a.images {
        // One unreadable image is reported and the others still audited.
        let one = || -> Result<Audited> {
            let disk = Arc::new(
                a.open
                    .open(path, None)
                    .with_context(|| format!("opening {}", path.display()))?,
            );
            let bar =
                crate::progress_bar(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0), false);
            let identity =
                qvet_catalog::verify::assess(&catalog, path, None, &|n| bar.set_position(n))
                    .map(|a| a.report)
                    .ok();
            bar.finish_and_clear();
            let baseline = match (&reference, &explicit_baseline) {
                (Some(_), _) => None,
                (None, Some(b)) => Some(b.clone()),
                (None, None) => identity
                    .as_ref()
                    .and_then(|r| claimed_baseline(store.as_ref(), r)),
            };
            let opts = Options {
                reference: reference.as_ref(),
                baseline: baseline.as_ref(),
                policy: policy.as_ref(),
            };
            // The audit proper: a spinner with the elapsed time on a terminal.
            let spin = crate::progress_spinner(false, "{spinner} [{elapsed_precise}] {msg}");
            spin.set_message(format!("auditing {}", path.display()));
            spin.enable_steady_tick(std::time::Duration::from_millis(200));
            let report = audit(path, &disk, identity.as_ref(), &opts);
            spin.finish_and_clear();
            let report = report.with_context(|| format!("auditing {}", path.display()))?;
            // The terminal picture of the disk, for people.
            let picture = (a.output == AuditOutput::Human)
                .then(|| qvet_volume::scan(disk.as_ref()).ok())
                .flatten()
                .and_then(|map| {
                    crate::diskbar::render(&disk, &map, crate::diskbar::Style::for_stdout()).ok()
                });
            let drawing = html.map(|_| crate::picture::build(&disk, &report));
            let digest = identity
                .as_ref()
                .and_then(|r| qvet_catalog::store::digest_key(&r.digests));
            Ok((report, picture, drawing, digest))
        };
        match one() {
            Ok((r, picture, drawing, digest)) => {
                records.push(audit_record(a, path, &r, digest));
                reports.push(r);
                pictures.push(picture);
                drawings.push(drawing.unwrap_or_default());
            }
            Err(e) => {
                let _ = writeln!(io::stderr(), "qvet: {e:#}");
                errors.push((path.display().to_string(), format!("{e:#}")));
            }
        }
    }
    if let (Some(loc), Some(_)) = (&location, &store) {
        record_audits(loc, &records);
    }
    if let Some(h) = html {
        let items: Vec<(Report, Picture)> = reports.iter().cloned().zip(drawings).collect();
        qvet_write::write_file_atomic(h, crate::report_html::report_page(&items).as_bytes())
            .with_context(|| format!("writing the report {}", h.display()))?;
    }
    if !print {
        for r in &reports {
            writeln!(out, "{}: {}", r.filename, r.verdict.name())?;
        }
    }
    match a.output {
        _ if !print => {}
        AuditOutput::Json => {
            let mut v: Vec<Value> = reports.iter().map(report_json).collect();
            v.extend(
                errors
                    .iter()
                    .map(|(f, e)| json!({"filename": f, "error": e})),
            );
            serde_json::to_writer_pretty(&mut *out, &crate::with_schema("audit", Value::Array(v)))?;
            writeln!(out)?;
        }
        AuditOutput::Sarif => {
            serde_json::to_writer_pretty(&mut *out, &sarif(&reports))?;
            writeln!(out)?;
        }
        AuditOutput::Human => {
            for (r, picture) in reports.iter().zip(&pictures) {
                write_human(out, r, picture.as_ref(), a.verbose)?;
            }
            for (f, e) in &errors {
                writeln!(out, "{f}: ERROR\n  {e}\n")?;
            }
        }
    }
    out.flush()?;
    let limit = threshold(a.fail_on);
    let failed = reports
        .iter()
        .any(|r| limit.is_some_and(|l| r.worst().is_some_and(|w| w >= l)));
    Ok(if failed {
        Outcome::Findings
    } else if errors.is_empty() {
        Outcome::Clean
    } else {
        Outcome::Error
    })
}

/// What the catalog keeps of an audit: verdict, counts, the findings'
/// rule, severity and path.
fn audit_record(
    a: &AuditArgs,
    path: &std::path::Path,
    r: &Report,
    digest: Option<String>,
) -> qvet_catalog::store::AuditRecord {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for f in r.findings.iter().filter(|f| f.suppressed.is_none()) {
        *counts.entry(f.severity.name()).or_default() += 1;
    }
    let findings: Vec<Value> = r
        .findings
        .iter()
        .filter(|f| f.suppressed.is_none())
        .map(|f| json!({"rule": f.rule.id, "severity": f.severity.name(), "path": f.path}))
        .collect();
    qvet_catalog::store::AuditRecord {
        host: a
            .host
            .clone()
            .unwrap_or_else(qvet_catalog::store::local_hostname),
        path: std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .to_string_lossy()
            .into_owned(),
        digest: digest.unwrap_or_default(),
        verdict: r.verdict.name().to_string(),
        counts: json!(counts).to_string(),
        findings: Value::Array(findings).to_string(),
        audited_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
    }
}

/// Records audit verdicts in an existing catalog this connection may
/// write; a read-only one is left alone, other failures are a note.
fn record_audits(loc: &qvet_catalog::Location, records: &[qvet_catalog::store::AuditRecord]) {
    if records.is_empty() {
        return;
    }
    let result = qvet_catalog::Store::open_or_create(loc).and_then(|mut s| s.put_audits(records));
    match result {
        Ok(()) | Err(qvet_catalog::CatalogError::ReadOnly { .. }) => {}
        Err(e) => {
            let _ = writeln!(io::stderr(), "qvet: note: audit verdicts not recorded: {e}");
        }
    }
}

/// One image audited: the report, the terminal picture, the HTML drawing
/// and the digest that names its content.
type Audited = (Report, Option<[String; 2]>, Option<Picture>, Option<String>);

/// How a run of `qvet audit` ends.
enum Outcome {
    /// No finding at or above --fail-on, no error: exit 0.
    Clean,
    /// A finding at or above --fail-on: exit 2 (even if another image failed).
    Findings,
    /// An image could not be audited: exit 1.
    Error,
}

/// `--baseline ID|FILE`: a baseline JSON file, else a catalog entry's.
fn load_baseline(arg: &str, store: Option<&qvet_catalog::store::Store>) -> Result<Baseline> {
    let path = std::path::Path::new(arg);
    if path.is_file() {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len > qvet_audit::baseline::MAX_JSON {
            bail!(
                "{arg}: {len} bytes, over the {}-byte baseline bound",
                qvet_audit::baseline::MAX_JSON
            );
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {arg}"))?;
        let v: Value = serde_json::from_str(&text).with_context(|| format!("{arg} is not JSON"))?;
        return Baseline::from_json(&v).with_context(|| format!("in {arg}"));
    }
    let Some(qvet_catalog::EntryId::User(id)) = qvet_catalog::EntryId::parse(arg) else {
        bail!("--baseline {arg}: neither a file nor a user catalog entry ID");
    };
    let Some(store) = store else {
        bail!("--baseline {arg}: there is no user catalog (pass --catalog)");
    };
    let Some(json) = store.baseline(id)? else {
        bail!("catalog entry {id} has no baseline (recorded by `qvet catalog add`)");
    };
    let v: Value = serde_json::from_str(&json).context("the stored baseline is not JSON")?;
    Ok(Baseline::from_json(&v)?)
}

/// The stored baseline of the entry the image matches or claims (user
/// entries only; the built-in registry has none). A genuine file needs no
/// comparison.
fn claimed_baseline(
    store: Option<&qvet_catalog::store::Store>,
    r: &qvet_catalog::verify::Report,
) -> Option<Baseline> {
    use qvet_catalog::verify::Verdict;
    let store = store?;
    if r.verdict == Verdict::Genuine {
        return None;
    }
    let ids = r.matches.iter().map(|m| m.entry.id).chain(
        r.claims
            .iter()
            .filter(|c| c.by.is_strong())
            .map(|c| c.entry.id),
    );
    for id in ids {
        if let qvet_catalog::EntryId::User(n) = id {
            if let Some(json) = store.baseline(n).ok().flatten() {
                let v: Value = serde_json::from_str(&json).ok()?;
                return Baseline::from_json(&v).ok();
            }
        }
    }
    None
}

/// Evidence as a JSON object (repeated keys become arrays).
fn evidence_json(f: &Finding) -> Value {
    let mut m: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in &f.evidence {
        m.entry(k).or_default().push(v);
    }
    let mut o = Map::new();
    for (k, v) in m {
        // One JSON dialect: snake_case keys, whatever a rule calls its evidence.
        o.insert(
            k.replace('-', "_"),
            if v.len() == 1 {
                json!(v.first().copied().unwrap_or_default())
            } else {
                json!(v)
            },
        );
    }
    Value::Object(o)
}

fn finding_json(f: &Finding) -> Value {
    let mut o = json!({
        "rule": f.rule.id,
        "title": f.title,
        "severity": f.severity.name(),
        "confidence": f.confidence.name(),
        "category": f.rule.category.name(),
        "layer": f.rule.layer.name(),
        "partition": f.partition,
        "path": f.path,
        "line": f.line,
        "evidence": evidence_json(f),
    });
    if let Some(obj) = o.as_object_mut() {
        if let Some(u) = &f.user {
            obj.insert("user".into(), json!(u));
        }
        if let Some(k) = &f.key {
            obj.insert("key".into(), json!(k));
        }
        if let Some(s) = &f.suppressed {
            obj.insert("suppressed".into(), json!(s));
        }
        if f.in_reference {
            obj.insert("in_reference".into(), json!(true));
        }
        if let Some(c) = &f.change {
            obj.insert("change".into(), crate::diff_cmd::change_json(c));
        }
    }
    o
}

/// One image's report as JSON.
pub fn report_json(r: &Report) -> Value {
    let mut counts = Map::new();
    for s in Severity::ALL.iter().rev() {
        let n = r
            .findings
            .iter()
            .filter(|f| f.effective() == Some(*s))
            .count();
        counts.insert(s.name().into(), json!(n));
    }
    json!({
        "filename": r.filename,
        "verdict": r.verdict.name(),
        "reason": r.reason,
        "counts": counts,
        "suppressed": r.findings.iter().filter(|f| f.suppressed.is_some()).count(),
        "findings": r.findings.iter().map(finding_json).collect::<Vec<_>>(),
        "coverage": {"read": r.coverage.read, "not_read": r.coverage.not_read},
        "partitions": r.partitions.iter().map(|p| json!({
            "number": p.number,
            "filesystem": p.filesystem,
            "os": p.os,
            "entries": p.entries,
            "package_manager": p.packages.as_ref().map(|(m, _)| m.clone()),
            "packages": p.packages.as_ref().map(|(_, n)| *n),
            "verified_files": p.verified_files,
            "accounts": p.accounts,
            "authorized_keys": p.keys,
            "persistence_entries": p.persistence,
        })).collect::<Vec<_>>(),
        "reference_changes": r.reference_changes,
        "os": r.os.iter().map(crate::inspect_cmd::os_json).collect::<Vec<_>>(),
    })
}

fn location(f: &Finding) -> String {
    let mut s = String::new();
    if let Some(p) = f.partition {
        s.push_str(&format!("p{p}:"));
    }
    if let Some(p) = &f.path {
        s.push_str(p);
    }
    if let Some(l) = f.line {
        s.push_str(&format!(":{l}"));
    }
    s
}

fn write_human(
    out: &mut dyn Write,
    r: &Report,
    picture: Option<&[String; 2]>,
    verbose: bool,
) -> Result<()> {
    writeln!(out, "{}: {}", r.filename, r.verdict.name().to_uppercase())?;
    writeln!(out, "  {}", r.reason)?;
    for line in picture.into_iter().flatten() {
        writeln!(out, "  {line}")?;
    }
    for o in &r.os {
        writeln!(
            out,
            "  os: {} {}{}",
            o.product,
            o.version.as_deref().unwrap_or("(version unknown)"),
            o.partition
                .map(|p| format!(" (partition {p})"))
                .unwrap_or_default()
        )?;
    }
    let shown: Vec<&Finding> = r
        .findings
        .iter()
        .filter(|f| f.suppressed.is_none() && (verbose || f.severity > Severity::Info))
        .collect();
    let hidden_info = r
        .findings
        .iter()
        .filter(|f| f.suppressed.is_none() && f.severity == Severity::Info)
        .count();
    writeln!(out)?;
    if shown.is_empty() {
        writeln!(out, "  no findings above info")?;
    }
    for f in shown {
        writeln!(
            out,
            "  [{:<8}] {:<28} {}",
            f.severity.name(),
            f.rule.id,
            f.title
        )?;
        let loc = location(f);
        if !loc.is_empty() {
            writeln!(out, "             at {loc}")?;
        }
        for (k, v) in f.evidence.iter().take(8) {
            if !v.is_empty() {
                writeln!(out, "             {k}: {}", clip(v, 160))?;
            }
        }
        if let Some(c) = &f.change {
            writeln!(out, "             change vs reference: {}", c.kind.name())?;
        }
    }
    let suppressed = r.findings.iter().filter(|f| f.suppressed.is_some()).count();
    if suppressed > 0 || (!verbose && hidden_info > 0) {
        writeln!(out)?;
    }
    if suppressed > 0 {
        writeln!(
            out,
            "  {suppressed} finding(s) suppressed by the policy (see --output json)"
        )?;
    }
    if !verbose && hidden_info > 0 {
        writeln!(
            out,
            "  {hidden_info} info finding(s) not shown (-v shows them)"
        )?;
    }
    writeln!(out)?;
    writeln!(out, "  coverage:")?;
    for c in &r.coverage.read {
        writeln!(out, "    read      {c}")?;
    }
    for c in r.coverage.not_read.iter().take(20) {
        writeln!(out, "    not read  {}", clip(c, 160))?;
    }
    if r.coverage.not_read.len() > 20 {
        writeln!(
            out,
            "    … and {} more not read (see --output json)",
            r.coverage.not_read.len() - 20
        )?;
    }
    writeln!(out)?;
    Ok(())
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max).collect();
    t.push('…');
    t
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Info => "note",
        Severity::Low | Severity::Medium => "warning",
        Severity::High | Severity::Critical => "error",
    }
}

/// A stable fingerprint of a finding: rule, image name, partition, path
/// and what the finding is about (not line numbers or times), hashed.
fn fingerprint(r: &Report, f: &Finding) -> String {
    use sha2::{Digest, Sha256};
    let image = std::path::Path::new(&r.filename)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut h = Sha256::new();
    for part in [
        f.rule.id,
        &image,
        &f.partition.map(|p| p.to_string()).unwrap_or_default(),
        f.path.as_deref().unwrap_or_default(),
        &f.title,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Percent-encodes what a URI reference may not hold (spaces, `%`, `#`,
/// `?`, controls, non-ASCII), so any image or guest path is a valid
/// `artifactLocation.uri`.
fn uri_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// SARIF 2.1.0 for every report: one run, the rules used as metadata.
pub fn sarif(reports: &[Report]) -> Value {
    let mut used: Vec<&'static qvet_audit::finding::Rule> = Vec::new();
    for r in reports {
        for f in &r.findings {
            if !used.iter().any(|u| u.id == f.rule.id) {
                used.push(f.rule);
            }
        }
    }
    let rules: Vec<Value> = used
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.id.split('-').map(|w| {
                    let mut c = w.chars();
                    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
                }).collect::<String>(),
                "shortDescription": {"text": r.title},
                "fullDescription": {"text": r.doc},
                "help": {"text": r.doc},
                "defaultConfiguration": {"level": level(r.severity)},
                "properties": {
                    "tags": ["security", r.category.name(), format!("layer:{}", r.layer.name())],
                    "security-severity": r.severity.security_severity(),
                    "precision": match r.confidence {
                        qvet_audit::finding::Confidence::High => "high",
                        qvet_audit::finding::Confidence::Medium => "medium",
                        qvet_audit::finding::Confidence::Low => "low",
                    },
                },
            })
        })
        .collect();
    let mut results = Vec::new();
    for r in reports {
        for f in &r.findings {
            let image = r.filename.trim_start_matches("./");
            let uri = match (&f.partition, &f.path) {
                (Some(p), Some(path)) => format!("{image}/p{p}{path}"),
                (_, Some(path)) if path == &r.filename => image.to_string(),
                (_, Some(path)) => format!("{image}/{}", path.trim_start_matches('/')),
                _ => image.to_string(),
            };
            let uri = uri_escape(&uri);
            let mut region = Map::new();
            region.insert("startLine".into(), json!(f.line.unwrap_or(1).max(1)));
            let mut res = json!({
                "ruleId": f.rule.id,
                "level": level(f.severity),
                "message": {"text": format!("{} [{}: {}]", f.title, r.verdict.name(), r.filename)},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": uri},
                    "region": region,
                }}],
                "partialFingerprints": {"primaryLocationLineHash": fingerprint(r, f)},
                "properties": {
                    "severity": f.severity.name(),
                    "confidence": f.confidence.name(),
                    "category": f.rule.category.name(),
                    "evidence": evidence_json(f),
                    "image": r.filename,
                    "verdict": r.verdict.name(),
                },
            });
            if let (Some(reason), Some(obj)) = (&f.suppressed, res.as_object_mut()) {
                obj.insert(
                    "suppressions".into(),
                    json!([{"kind": "external", "justification": reason}]),
                );
            }
            results.push(res);
        }
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "qvet",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://example.invalid/qvet",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_escaped() {
        assert_eq!(
            uri_escape("lab images/csr #1.qcow2/p1/etc/x y"),
            "lab%20images/csr%20%231.qcow2/p1/etc/x%20y"
        );
        assert_eq!(uri_escape("a/é"), "a/%C3%A9");
        assert_eq!(uri_escape("ok/p1/etc/passwd"), "ok/p1/etc/passwd");
    }
}
