//! `qvet inspect`: which operating system each partition holds — Linux
//! distributions and network appliances (IOS-XE, NX-OS, IOSv, EOS, VyOS,
//! FortiOS, RouterOS, Junos) — with product, version and the evidence used,
//! like libguestfs's inspector without a VM. Also what the audit prints as
//! its `os` section.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use qvet_guestfs::{ext::Ext, FileSystem, FsError};
use qvet_image::ByteSource;
use qvet_inspect::os::Os;
use qvet_inspect::tree::Tree;
use qvet_volume::{FsKind, Window};
use serde_json::{json, Value};

use crate::OutputFormat;

/// `qvet inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    output: OutputFormat,
    /// How images are opened.
    #[command(flatten)]
    open: crate::OpenArgs,
    /// The image file.
    image: PathBuf,
}

/// One partition's answer.
struct PartitionOs {
    number: u32,
    filesystem: String,
    os: Vec<Os>,
    note: Option<String>,
}

/// Runs `qvet inspect`.
pub fn run(a: &InspectArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let disk = Arc::new(a.open.open(&a.image, None)?);
    let src: Arc<dyn ByteSource> = disk.clone();
    let map = qvet_volume::scan(src.as_ref())
        .with_context(|| format!("reading the partition table of {}", a.image.display()))?;
    let mut parts = Vec::new();
    for p in &map.partitions {
        let window: Arc<dyn ByteSource> = Arc::new(Window::new(src.clone(), p.start, p.len));
        let kind = qvet_volume::detect_filesystem(src.as_ref(), p.start, p.len)
            .ok()
            .flatten();
        let name = std::path::PathBuf::from(format!("{}:p{}", a.image.display(), p.number));
        let window = qvet_image::crypt::volume::open_if_luks(window, disk.key(), &name)?;
        let fs: Result<Box<dyn FileSystem>, FsError> = match Ext::open(window.clone()) {
            Ok(e) => Ok(Box::new(e)),
            Err(FsError::NotThisFs(_)) => qvet_guestfs::open(window),
            Err(e) => Err(e),
        };
        let mut part = PartitionOs {
            number: p.number,
            filesystem: kind.map_or("empty", FsKind::name).to_string(),
            os: Vec::new(),
            note: None,
        };
        match fs {
            Ok(fs) => {
                part.filesystem = fs.kind().to_string();
                match Tree::walk(fs.as_ref()) {
                    Ok(tree) => {
                        let (_, appliance) = qvet_audit::rules::gather(&tree, Some(p.number));
                        part.os = appliance.os;
                        if !tree.incomplete.is_empty() {
                            part.note = Some(format!("walk incomplete: {}", tree.incomplete.len()));
                        }
                    }
                    Err(e) => part.note = Some(format!("root unreadable: {e}")),
                }
            }
            Err(e) => {
                part.note = Some(match kind {
                    Some(FsKind::Ufs) => {
                        part.os.push(qvet_inspect::os::junos_on_ufs(Some(p.number)));
                        "UFS is not readable by qvet".into()
                    }
                    Some(FsKind::Luks) => "LUKS-encrypted".into(),
                    Some(FsKind::Swap) => "swap".into(),
                    None => "empty".into(),
                    Some(_) => format!("not readable: {e}"),
                });
            }
        }
        parts.push(part);
    }
    let all: Vec<&Os> = parts.iter().flat_map(|p| p.os.iter()).collect();
    match a.output {
        OutputFormat::Json => {
            let v = json!({
                "filename": a.image.display().to_string(),
                "partition_table": map.scheme.name(),
                "os": all.iter().map(|o| os_json(o)).collect::<Vec<_>>(),
                "partitions": parts.iter().map(|p| json!({
                    "number": p.number,
                    "filesystem": p.filesystem,
                    "os": p.os.iter().map(|o| o.family.name()).collect::<Vec<_>>(),
                    "note": p.note,
                })).collect::<Vec<_>>(),
            });
            serde_json::to_writer_pretty(&mut *out, &crate::with_schema("inspect", v))?;
            writeln!(out)?;
        }
        OutputFormat::Human => {
            writeln!(
                out,
                "{}: {} partition table",
                a.image.display(),
                map.scheme.name()
            )?;
            for p in &parts {
                writeln!(
                    out,
                    "  partition {} ({}){}",
                    p.number,
                    p.filesystem,
                    p.note
                        .as_ref()
                        .map(|n| format!(": {n}"))
                        .unwrap_or_default()
                )?;
                for o in &p.os {
                    write_os(out, o, "    ")?;
                }
            }
            if all.is_empty() {
                writeln!(out, "  no operating system recognised")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An OS as JSON: `name`, `family`, `product`, `version`, `partition`,
/// `evidence` [{path, value}] and the details (hostname, architecture …).
pub fn os_json(o: &Os) -> Value {
    let mut v = json!({
        "family": o.family.name(),
        "name": o.name,
        "product": o.product,
        "version": o.version,
        "partition": o.partition,
        "evidence": o.evidence.iter().map(|e| json!({"path": e.path, "value": e.value})).collect::<Vec<_>>(),
    });
    if let Some(obj) = v.as_object_mut() {
        for (k, d) in &o.details {
            obj.insert((*k).to_string(), json!(d));
        }
    }
    v
}

/// An OS for people, with its evidence.
pub fn write_os(out: &mut dyn Write, o: &Os, indent: &str) -> Result<()> {
    writeln!(
        out,
        "{indent}{} {}{}",
        o.product,
        o.version.as_deref().unwrap_or("(version unknown)"),
        o.partition
            .map(|p| format!(" on partition {p}"))
            .unwrap_or_default()
    )?;
    for (k, v) in &o.details {
        writeln!(out, "{indent}  {k}: {v}")?;
    }
    for e in o.evidence.iter().take(6) {
        writeln!(out, "{indent}  evidence: {} — {}", e.path, e.value)?;
    }
    Ok(())
}
