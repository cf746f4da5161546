//! `qvet diff A B`: what changed between two guest disks, per file.
//!
//! Exit codes follow `qemu-img compare`: 0 identical, 1 different, 2 error
//! (this command reports its own errors, so they never take the generic
//! exit 1 of `main`).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use qvet_audit::diff::{Change, ChangeKind, DiffReport};
use serde_json::{json, Map, Value};

use crate::guest_cmd::b64;
use crate::OutputFormat;

/// Arguments of `qvet diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    output: OutputFormat,
    /// How both images are opened.
    #[command(flatten)]
    open: crate::OpenArgs,
    /// The first (reference) image.
    a: PathBuf,
    /// The second image.
    b: PathBuf,
}

/// Runs `qvet diff`: exit 0 identical, 1 different, 2 error.
pub fn run(a: &DiffArgs, out: &mut dyn Write) -> Result<ExitCode> {
    match compare(a, out) {
        Ok(identical) => Ok(ExitCode::from(u8::from(!identical))),
        Err(err) => {
            if !crate::is_broken_pipe(&err) {
                let _ = writeln!(io::stderr(), "qvet: {err:#}");
            }
            Ok(ExitCode::from(2))
        }
    }
}

fn compare(a: &DiffArgs, out: &mut dyn Write) -> Result<bool> {
    let da = Arc::new(a.open.open(&a.a, None)?);
    let db = Arc::new(a.open.open(&a.b, None)?);
    let bar = crate::progress_bar(da.size().max(db.size()), false);
    let report = qvet_audit::diff::diff(&da, &db, &|done| bar.set_position(done));
    bar.finish_and_clear();
    let report = report.context("comparing the images")?;
    match a.output {
        OutputFormat::Json => {
            let v = to_json(&report, &a.a, &a.b);
            serde_json::to_writer_pretty(&mut *out, &crate::with_schema("diff", v))?;
            writeln!(out)?;
        }
        OutputFormat::Human => write_human(out, &report)?,
    }
    out.flush()?;
    Ok(report.identical())
}

/// A text field, plus `<key>_base64` of the raw bytes when not UTF-8.
fn bytes_fields(m: &mut Map<String, Value>, key: &str, bytes: &[u8]) {
    m.insert(key.into(), json!(String::from_utf8_lossy(bytes)));
    if std::str::from_utf8(bytes).is_err() {
        m.insert(format!("{key}_base64"), json!(b64(bytes)));
    }
}

pub(crate) fn change_json(c: &Change) -> Value {
    let mut m = Map::new();
    m.insert("partition".into(), json!(c.partition));
    match &c.path {
        Some(p) => bytes_fields(&mut m, "path", p),
        None => {
            m.insert("path".into(), Value::Null);
        }
    }
    m.insert("change".into(), json!(c.kind.name()));
    if c.path.is_some() {
        m.insert("size_a".into(), json!(c.size_a));
        m.insert("size_b".into(), json!(c.size_b));
        m.insert("sha256_a".into(), json!(c.sha256_a));
        m.insert("sha256_b".into(), json!(c.sha256_b));
        m.insert(
            "fields".into(),
            json!(c.fields.iter().map(|f| f.name).collect::<Vec<_>>()),
        );
        if !c.fields.is_empty() {
            let values: Map<String, Value> = c
                .fields
                .iter()
                .map(|f| (f.name.to_string(), json!({"a": f.a, "b": f.b})))
                .collect();
            m.insert("values".into(), Value::Object(values));
        }
    }
    if let Some(o) = c.offset {
        m.insert("offset".into(), json!(o));
    }
    if let Some(l) = c.length {
        m.insert("length".into(), json!(l));
    }
    if let Some(d) = &c.detail {
        m.insert("detail".into(), json!(d));
    }
    Value::Object(m)
}

fn to_json(r: &DiffReport, a: &std::path::Path, b: &std::path::Path) -> Value {
    json!({
        "a": a.display().to_string(),
        "b": b.display().to_string(),
        "identical": r.identical(),
        "virtual_size_a": r.size_a,
        "virtual_size_b": r.size_b,
        "differing_bytes": r.differing_bytes,
        "atime_only": r.atime_only,
        "scan": {
            "zero_bytes": r.stats.zero_bytes,
            "same_stream_bytes": r.stats.same_stream_bytes,
            "compared_bytes": r.stats.compared_bytes,
        },
        "changes": r.changes.iter().map(change_json).collect::<Vec<_>>(),
    })
}

fn where_(c: &Change) -> String {
    let path = c
        .path
        .as_deref()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    match c.partition {
        Some(n) => format!("p{n}:{path}"),
        None => path,
    }
}

fn span(c: &Change) -> String {
    match (c.offset, c.length) {
        (Some(o), Some(l)) => format!(" at {o:#x} ({l} bytes)"),
        _ => String::new(),
    }
}

fn fields_text(c: &Change) -> String {
    c.fields
        .iter()
        .map(|f| format!("{} {}→{}", f.name, f.a, f.b))
        .collect::<Vec<_>>()
        .join(", ")
}

fn write_human(out: &mut dyn Write, r: &DiffReport) -> Result<()> {
    if r.identical() {
        writeln!(out, "identical")?;
        return Ok(());
    }
    for c in &r.changes {
        let detail = c
            .detail
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        match c.kind {
            ChangeKind::Added => writeln!(
                out,
                "+ {} ({} bytes)",
                where_(c),
                c.size_b.unwrap_or_default()
            )?,
            ChangeKind::Removed => writeln!(
                out,
                "- {} ({} bytes)",
                where_(c),
                c.size_a.unwrap_or_default()
            )?,
            ChangeKind::Modified => {
                let mut what = format!(
                    "content, {} → {} bytes",
                    c.size_a.unwrap_or_default(),
                    c.size_b.unwrap_or_default()
                );
                if !c.fields.is_empty() {
                    what.push_str("; ");
                    what.push_str(&fields_text(c));
                }
                writeln!(out, "~ {} ({what})", where_(c))?;
            }
            ChangeKind::Metadata => writeln!(out, "M {} ({})", where_(c), fields_text(c))?,
            ChangeKind::PartitionTable => {
                writeln!(out, "P partition table{}{detail}", span(c))?;
            }
            ChangeKind::BootSector => writeln!(out, "B boot sector{}", span(c))?,
            ChangeKind::Gap => writeln!(out, "G outside partitions{}{detail}", span(c))?,
            ChangeKind::PartitionData => {
                writeln!(out, "D {}: data{}{detail}", where_(c), span(c))?;
            }
        }
    }
    if r.atime_only > 0 {
        writeln!(
            out,
            "({} entries differ only in access time; not listed)",
            r.atime_only
        )?;
    }
    if r.changes.is_empty() && r.atime_only == 0 {
        writeln!(
            out,
            "guest bytes differ ({} bytes in 4 KiB granules) but no change was attributed",
            r.differing_bytes
        )?;
    }
    Ok(())
}
