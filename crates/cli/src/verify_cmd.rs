//! `qvet verify`: is it the vendor's original? One verdict per image, with
//! the evidence.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use qvet_catalog::verify::{assess, expected_reference, Report, Verdict, EXPECTED_SOURCE};
use qvet_catalog::{digest_for, import, source, Algo};
use serde_json::{json, Value};

use crate::OutputFormat;

/// `qvet verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub output: OutputFormat,
    /// Expected MD5 of every image given.
    #[arg(long, value_name = "HEX")]
    pub md5: Option<String>,
    /// Expected SHA-256 of every image given.
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Expected SHA-512 of every image given.
    #[arg(long, value_name = "HEX")]
    pub sha512: Option<String>,
    /// Trusted digests from a file (checksum list, Cisco text, Glance JSON,
    /// .gns3a), used for this run only; repeatable.
    #[arg(long, value_name = "FILE")]
    pub sums: Vec<PathBuf>,
    /// User catalog: an SQLite file or postgres://user@host/db (read only;
    /// never created by verify) [default: $QVET_CATALOG, else the user
    /// catalog].
    #[arg(long, value_name = "PATH|URL")]
    pub catalog: Option<PathBuf>,
    /// No progress bar.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Opening options, accepted as by every command; they have no effect:
    /// verify digests the files themselves (format probed) and never opens
    /// backing or data files.
    #[command(flatten)]
    pub open: crate::OpenArgs,
    /// Images (opened read-only; backing files are never opened).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// Exit status: 2 if any mismatch, else 1 if any error, else 3 if any
/// unknown, else 0 (every image genuine or content-identical).
pub fn exit_code<'a>(verdicts: impl Iterator<Item = Option<Verdict>> + 'a) -> ExitCode {
    let (mut mismatch, mut error, mut unknown) = (false, false, false);
    for v in verdicts {
        match v {
            Some(Verdict::Mismatch) => mismatch = true,
            Some(Verdict::Unknown) => unknown = true,
            None => error = true,
            Some(Verdict::Genuine | Verdict::ContentIdentical) => {}
        }
    }
    ExitCode::from(if mismatch {
        2
    } else if error {
        1
    } else if unknown {
        3
    } else {
        0
    })
}

/// One line on what the verdict rests on.
pub fn evidence(r: &Report) -> String {
    let mut parts = Vec::new();
    match r.verdict {
        Verdict::Genuine | Verdict::ContentIdentical => {
            if let Some(m) = r.matches.first() {
                let mut s = format!(
                    "{} {} [{}] ({})",
                    m.entry.source,
                    m.entry.describe(),
                    m.entry.id,
                    m.algorithm()
                );
                if m.entry.reference.superseded {
                    s.push_str(", superseded entry");
                }
                if r.matches.len() > 1 {
                    s.push_str(&format!(", +{} more", r.matches.len() - 1));
                }
                parts.push(s);
            }
        }
        Verdict::Mismatch => {
            if let Some(c) = r.claims.iter().find(|c| c.by.is_strong() && !c.agrees) {
                let mut s = format!(
                    "{} says {} {} [{}], but {} differs",
                    c.by.name(),
                    c.entry.source,
                    c.entry.describe(),
                    c.entry.id,
                    c.differs
                        .iter()
                        .map(|a| a.name())
                        .collect::<Vec<_>>()
                        .join("/")
                );
                if let Some((n, total)) = c.content_diff {
                    s.push_str(&format!("; guest content differs in {n} of {total} chunks"));
                }
                parts.push(s);
            }
        }
        Verdict::Unknown => {
            let hints = r.claims.iter().filter(|c| !c.by.is_strong()).count();
            if hints > 0 {
                parts.push(format!(
                    "size equals {hints} known image(s) (weak hint only)"
                ));
            }
        }
    }
    if let Some(s) = &r.sidecar {
        parts.push(format!("sidecar {}", s.status.name()));
    }
    if let Some(o) = &r.overlay {
        parts.push(format!("overlay of {}", o.backing_file));
    }
    parts.join("; ")
}

/// A report in lines for people.
pub fn write_report_human(out: &mut dyn Write, r: &Report) -> Result<()> {
    let mut head = format!("{}: {}", r.filename, r.verdict.name());
    if r.superseded_only() {
        head.push_str(" (superseded entry)");
    }
    writeln!(out, "{head}")?;
    for m in &r.matches {
        writeln!(
            out,
            "  match:    {} {} [{}] by {}{}",
            m.entry.source,
            m.entry.describe(),
            m.entry.id,
            m.algorithm(),
            if m.entry.reference.superseded {
                " (superseded entry)"
            } else {
                ""
            }
        )?;
    }
    for c in &r.claims {
        let state = if c.agrees {
            "digests agree".to_string()
        } else {
            format!(
                "{} differs",
                c.differs
                    .iter()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join("/")
            )
        };
        let mut line = format!(
            "  claim:    by {} ({}): {} {} [{}]{}: {state}",
            c.by.name(),
            if c.by.is_strong() { "strong" } else { "weak" },
            c.entry.source,
            c.entry.describe(),
            c.entry.id,
            if c.entry.reference.superseded {
                " (superseded)"
            } else {
                ""
            }
        );
        if let Some((n, total)) = c.content_diff {
            line.push_str(&format!("; guest content differs in {n} of {total} chunks"));
        }
        writeln!(out, "{line}")?;
    }
    if let Some(s) = &r.sidecar {
        writeln!(
            out,
            "  sidecar:  {}: {} ({})",
            s.path.display(),
            s.status.name(),
            s.value.as_deref().unwrap_or("unreadable")
        )?;
    }
    if let Some(o) = &r.overlay {
        writeln!(
            out,
            "  overlay:  backing file '{}' ({}), not opened",
            o.backing_file, o.backing_path
        )?;
    }
    writeln!(
        out,
        "  file:     {} bytes{}",
        r.size,
        r.format
            .map(|f| format!(", {f}, virtual size {}", r.virtual_size.unwrap_or(0)))
            .unwrap_or_default()
    )?;
    for (a, h) in &r.digests {
        writeln!(out, "  {:<9} {h}", format!("{a}:"))?;
    }
    if let Some(c) = &r.content {
        writeln!(out, "  content:  {}", c.root)?;
    }
    for n in &r.notes {
        writeln!(out, "  note:     {n}")?;
    }
    Ok(())
}

fn expected(args: &VerifyArgs) -> Result<BTreeMap<Algo, String>> {
    let mut d = BTreeMap::new();
    for (algo, v) in [
        (Algo::Md5, &args.md5),
        (Algo::Sha256, &args.sha256),
        (Algo::Sha512, &args.sha512),
    ] {
        if let Some(v) = v {
            let h = digest_for(algo, v).with_context(|| {
                format!(
                    "--{algo} {v}: not a {algo} digest ({} hex digits)",
                    algo.hex_len()
                )
            })?;
            d.insert(algo, h);
        }
    }
    Ok(d)
}

/// Runs `qvet verify`.
pub fn run(args: &VerifyArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let mut catalog = crate::catalog_cmd::load_catalog(args.catalog.as_deref())?;
    let exp = expected(args)?;
    if !exp.is_empty() {
        catalog.add_adhoc(EXPECTED_SOURCE, expected_reference(exp));
    }
    for f in &args.sums {
        let imported = import::import_path(f, None)?;
        for w in &imported.warnings {
            let _ = writeln!(io::stderr(), "qvet: {}: warning: {w}", f.display());
        }
        for r in imported.references {
            catalog.add_adhoc(source::SUMS_ARG, r);
        }
    }
    let mut verdicts = Vec::new();
    let mut json_out = Vec::new();
    for img in &args.images {
        let size = std::fs::metadata(img).map(|m| m.len()).unwrap_or(0);
        let bar = crate::progress_bar(size, args.quiet);
        let result = assess(&catalog, img, None, &|x| bar.set_position(x));
        bar.finish_and_clear();
        match result {
            Ok(a) => {
                verdicts.push(Some(a.report.verdict));
                match args.output {
                    OutputFormat::Json => json_out.push(a.report.to_json()),
                    OutputFormat::Human => {
                        write_report_human(out, &a.report)?;
                        out.flush()?;
                    }
                }
            }
            Err(e) => {
                verdicts.push(None);
                let msg = format!("{:#}", anyhow::Error::from(e));
                match args.output {
                    OutputFormat::Json => json_out.push(json!({
                        "filename": img.display().to_string(),
                        "verdict": "error",
                        "error": msg,
                    })),
                    OutputFormat::Human => {
                        let _ = writeln!(io::stderr(), "qvet: {msg}");
                    }
                }
            }
        }
    }
    if args.output == OutputFormat::Json {
        serde_json::to_writer_pretty(
            &mut *out,
            &crate::with_schema("verify", Value::Array(json_out)),
        )?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(exit_code(verdicts.into_iter()))
}
