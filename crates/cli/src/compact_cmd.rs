//! `qvet compact`: a new, smaller qcow2 holding exactly what the guest
//! needs, planned from metadata, written in parallel and atomically, and
//! proven against the input before it is renamed into place.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use qvet_write::compact::{Category, CompactOptions, Plan};
use qvet_write::compact_write::{compact_to_file, write_plan, WriteOutcome};
use qvet_write::proof::{Proof, RangeProof};
use qvet_write::qcow2_out::{Codec, Sink};
use serde_json::{json, Value};

use crate::{OpenArgs, OutputFormat};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompressionType {
    Zlib,
    Zstd,
}

/// Arguments of `qvet compact`.
#[derive(Debug, Args)]
pub(crate) struct CompactArgs {
    /// Print the plan (output size, bytes dropped by category and partition)
    /// without writing anything.
    #[arg(long)]
    dry_run: bool,
    /// Do not drop filesystem free space (container-level compaction only).
    #[arg(long)]
    keep_free_space: bool,
    /// Compress the output (zlib unless --compression-type says otherwise).
    #[arg(short = 'c', long = "compress")]
    compress: bool,
    /// Compression type for -c.
    #[arg(long, value_enum, requires = "compress")]
    compression_type: Option<CompressionType>,
    /// Output cluster size in bytes (512 to 2M, a power of two; k/M suffixes).
    #[arg(long, default_value = "64k", value_parser = parse_cluster_size)]
    cluster_size: u64,
    /// Write the current state of an image with internal snapshots (they are
    /// refused otherwise).
    #[arg(long)]
    drop_snapshots: bool,
    /// Replace OUT if it exists.
    #[arg(long)]
    overwrite: bool,
    /// No progress bar.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Output format of the report.
    #[arg(long, value_enum, default_value = "human")]
    output: OutputFormat,
    #[command(flatten)]
    open: OpenArgs,
    /// The input image.
    image: PathBuf,
    /// The new qcow2 file.
    out: PathBuf,
}

fn parse_cluster_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (t.get(..i).unwrap_or(""), 1u64 << 10),
        Some((i, 'm' | 'M')) => (t.get(..i).unwrap_or(""), 1u64 << 20),
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size in bytes"))?;
    let v = n.saturating_mul(mult);
    if !v.is_power_of_two() || !(512..=(2 << 20)).contains(&v) {
        return Err(format!("cluster size {v}: a power of two from 512 to 2M"));
    }
    Ok(v)
}

/// Leaked clusters of the top image, in bytes (qemu-img check's leaks).
/// What `qvet check` says of the input's top qcow2 layer that matters to a
/// compaction: the leaked bytes it drops, and any damage, which is said
/// (the output then holds the guest as qemu reads the damaged file, missing
/// bytes as zeros) rather than silently carried over.
#[derive(Default)]
struct InputCheck {
    leaked: u64,
    damage: Vec<String>,
}

fn check_input(disk: &qvet_image::Disk) -> InputCheck {
    let Some(top) = disk.top() else {
        return InputCheck::default();
    };
    let Some(q) = top.qcow2() else {
        return InputCheck::default();
    };
    let cs = 1u64 << q.header().cluster_bits;
    // The streams are not decoded here: writing decodes every kept one.
    let r = match qvet_audit::check_structure(q.file().as_ref(), &top.path) {
        Ok(r) => r,
        Err(e) => {
            return InputCheck {
                leaked: 0,
                damage: vec![format!("qvet check could not read the image: {e}")],
            }
        }
    };
    let mut damage: Vec<String> = r
        .counts
        .iter()
        .filter(|(_, (class, _))| {
            matches!(
                class,
                qvet_audit::Class::Corruption
                    | qvet_audit::Class::CheckError
                    | qvet_audit::Class::Finding
            )
        })
        .map(|(kind, (_, n))| {
            let example = r.problems.iter().find(|p| p.kind == *kind);
            match example {
                Some(p) => format!("{kind} x{n}: {}", p.message),
                None => format!("{kind} x{n}"),
            }
        })
        .collect();
    if let Some(why) = &r.aborted {
        damage.push(format!("the check could not complete: {why}"));
    }
    InputCheck {
        leaked: r.leaks.saturating_mul(cs),
        damage,
    }
}

pub(crate) fn run(a: &CompactArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let codec = a.compress.then_some(match a.compression_type {
        Some(CompressionType::Zstd) => Codec::Zstd,
        _ => Codec::Zlib,
    });
    let opts = CompactOptions {
        keep_free_space: a.keep_free_space,
        cluster_bits: a.cluster_size.trailing_zeros(),
        codec,
        drop_snapshots: a.drop_snapshots,
        key: a.open.key()?,
    };
    if !a.dry_run && a.out.as_os_str() == "-" {
        bail!("compact writes a qcow2 file; '-' (stdout) is not supported");
    }
    let disk = Arc::new(
        a.open
            .open(&a.image, None)
            .with_context(|| format!("opening '{}'", a.image.display()))?,
    );
    let mut plan = qvet_write::compact::plan(&disk, &opts)
        .with_context(|| format!("planning the compaction of '{}'", a.image.display()))?;
    let input_check = check_input(&disk);
    for d in &input_check.damage {
        eprintln!(
            "qvet: warning: '{}' is damaged ({d}); the output holds the guest as qemu reads it",
            a.image.display()
        );
    }
    let input_size = std::fs::metadata(&a.image).map(|m| m.len()).unwrap_or(0);
    // Backing and data files hold part of the guest: the output replaces
    // them all, so sizes are compared with their sum.
    let mut used = disk.opened_files();
    used.sort();
    used.dedup();
    let input_files = used.len().max(1);
    let input_total = used
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum::<u64>()
        .max(input_size);
    let bar = crate::progress_bar(plan.kept_bytes(), a.quiet || a.output == OutputFormat::Json);
    let report = |done: u64| bar.set_position(done);
    let (write, proof) = if a.dry_run {
        let w = write_plan(&disk, &mut plan, &opts, Sink::Count, &report)
            .with_context(|| format!("reading '{}'", a.image.display()))?;
        (w, None)
    } else {
        let r = compact_to_file(&disk, &mut plan, &opts, &a.out, a.overwrite, &report);
        bar.finish_and_clear();
        let r = r.with_context(|| format!("compacting '{}'", a.image.display()))?;
        (r.write, Some(r.proof))
    };
    bar.finish_and_clear();
    let facts = Facts {
        a,
        plan: &plan,
        write: &write,
        proof: proof.as_ref(),
        leaked: input_check.leaked,
        damage: &input_check.damage,
        input_size,
        input_total,
        input_files,
        codec,
    };
    match a.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &crate::with_schema("compact", facts.json()))?;
            writeln!(out)?;
        }
        OutputFormat::Human => facts.human(out)?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

struct Facts<'a> {
    a: &'a CompactArgs,
    plan: &'a Plan,
    write: &'a WriteOutcome,
    proof: Option<&'a Proof>,
    leaked: u64,
    damage: &'a [String],
    input_size: u64,
    /// Every input file's size summed (IMG, backing and data files).
    input_total: u64,
    /// How many files that is.
    input_files: usize,
    codec: Option<Codec>,
}

fn dropped_json(d: &BTreeMap<Category, u64>) -> Value {
    let mut m = serde_json::Map::new();
    for c in Category::ALL {
        m.insert(c.name().into(), json!(d.get(&c).copied().unwrap_or(0)));
    }
    Value::Object(m)
}

fn range_json(r: &RangeProof) -> Value {
    json!({
        "ranges": r.ranges,
        "bytes": r.bytes,
        "compared": r.compared,
        "algorithm": r.algorithm,
        "digest_in": r.digest_in,
        "digest_out": r.digest_out,
    })
}

/// `12345678` as `11.8 MiB (12345678)`.
fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0usize;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    let unit = UNITS.get(u).copied().unwrap_or("B");
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {unit}")
    }
}

impl Facts<'_> {
    fn json(&self) -> Value {
        let p = self.plan;
        let regions: Vec<Value> = p
            .regions
            .iter()
            .map(|r| {
                json!({
                    "partition": r.number,
                    "start": r.start,
                    "length": r.len,
                    "content": r.content,
                    "fs_free": r.fs_free,
                    "zero_filled": r.zeroed,
                    "note": r.note,
                    "dropped": dropped_json(&r.dropped),
                })
            })
            .collect();
        let mut dropped = dropped_json(&p.dropped());
        if let Value::Object(m) = &mut dropped {
            m.insert("leaked".into(), json!(self.leaked));
            m.insert("snapshot".into(), json!(p.snapshot_bytes));
        }
        let proof = self.proof.map(|pr| {
            json!({
                "kept": range_json(&pr.kept),
                "dropped_read_as_zero": pr.dropped_zero,
                "outside_partitions": range_json(&pr.outside),
                "filesystems": pr.filesystems.iter().map(|f| json!({
                    "partition": f.partition,
                    "kind": f.kind,
                    "files": f.files,
                    "directories": f.dirs,
                    "others": f.others,
                    "files_read": f.files_read,
                    "files_by_ranges": f.files_by_ranges,
                    "bytes": f.bytes,
                    "algorithm": "blake3",
                    "digest_in": f.digest_in,
                    "digest_out": f.digest_out,
                })).collect::<Vec<_>>(),
                "not_walked": pr.not_walked,
            })
        });
        json!({
            "image": self.a.image.display().to_string(),
            "output": self.a.out.display().to_string(),
            "dry_run": self.a.dry_run,
            "virtual_size": p.virtual_size,
            "cluster_size": p.cluster_size,
            "compression": self.codec.map(Codec::name),
            "scheme": p.scheme,
            "input_file_size": self.input_size,
            "input_files": self.input_files,
            "input_total_size": self.input_total,
            "output_file_size": self.write.stats.file_size,
            "kept_bytes": p.stored_bytes(),
            "zero_filled_bytes": p.zero_fill.iter().map(|r| r.1).sum::<u64>(),
            "data_clusters": self.write.stats.normal_clusters,
            "compressed_clusters": self.write.stats.compressed_clusters,
            "metadata_clusters": self.write.stats.metadata_clusters,
            "snapshots_dropped": p.snapshots,
            "input_damage": self.damage,
            "dropped": dropped,
            "regions": regions,
            "proof": proof,
        })
    }

    fn human(&self, out: &mut dyn Write) -> Result<()> {
        let p = self.plan;
        let w = self.write;
        let verb = if self.a.dry_run {
            "would write"
        } else {
            "wrote"
        };
        writeln!(
            out,
            "{} -> {} ({verb}): {} instead of {}{} (virtual size {}, {} clusters of {} bytes{})",
            self.a.image.display(),
            self.a.out.display(),
            size(w.stats.file_size),
            size(self.input_total),
            match self.input_files {
                1 => String::new(),
                n => format!(" in {n} files (backing or data files included)"),
            },
            size(p.virtual_size),
            w.stats.normal_clusters + w.stats.compressed_clusters,
            p.cluster_size,
            match self.codec {
                Some(c) => format!(
                    ", {} compressed with {}",
                    w.stats.compressed_clusters,
                    c.name()
                ),
                None => String::new(),
            }
        )?;
        if w.stats.file_size > self.input_total && self.input_total > 0 {
            writeln!(
                out,
                "note: the output is larger than the input; {}-byte clusters store every touched cluster whole (a smaller --cluster-size, or -c, keeps it smaller)",
                p.cluster_size
            )?;
        }
        let line = |d: &BTreeMap<Category, u64>| -> String {
            let parts: Vec<String> = Category::ALL
                .iter()
                .filter_map(|c| {
                    d.get(c)
                        .filter(|&&b| b > 0)
                        .map(|b| format!("{} {}", c.name(), size(*b)))
                })
                .collect();
            if parts.is_empty() {
                "nothing".into()
            } else {
                parts.join(", ")
            }
        };
        writeln!(out, "dropped ({} scheme):", p.scheme)?;
        for r in &p.regions {
            let name = match r.number {
                Some(n) => format!(
                    "partition {n} ({}, {} at {:#x})",
                    r.content,
                    size(r.len),
                    r.start
                ),
                None => "outside partitions".to_string(),
            };
            let zeroed = if r.zeroed > 0 {
                format!(
                    "; {} of free space in kept clusters zero-filled",
                    size(r.zeroed)
                )
            } else {
                String::new()
            };
            writeln!(out, "  {name}: {}{zeroed} - {}", line(&r.dropped), r.note)?;
        }
        let total = p.dropped();
        writeln!(
            out,
            "  total: {}; leaked {}; snapshot-only {}",
            line(&total),
            size(self.leaked),
            size(p.snapshot_bytes)
        )?;
        if !p.snapshots.is_empty() {
            writeln!(out, "  snapshots dropped: {}", p.snapshots.join(", "))?;
        }
        let Some(pr) = self.proof else {
            writeln!(out, "dry run: nothing written")?;
            return Ok(());
        };
        writeln!(out, "proof (OUT re-read through qvet's reader):")?;
        writeln!(
            out,
            "  kept guest bytes equal: {} ranges, {}, {} compared (digested as read for writing, OUT re-read); {} in {} out {}",
            pr.kept.ranges,
            size(pr.kept.bytes),
            size(pr.kept.compared),
            pr.kept.algorithm,
            pr.kept.digest_in,
            pr.kept.digest_out
        )?;
        writeln!(
            out,
            "  dropped bytes read as zeros: {}",
            size(pr.dropped_zero)
        )?;
        writeln!(
            out,
            "  partition table, boot code, gaps equal: {} ranges, {}; {} in {} out {}",
            pr.outside.ranges,
            size(pr.outside.bytes),
            pr.outside.algorithm,
            pr.outside.digest_in,
            pr.outside.digest_out
        )?;
        for f in &pr.filesystems {
            writeln!(
                out,
                "  partition {} {}: {} files ({} read on both sides, {} by data ranges inside equal kept bytes), {} directories, {} other nodes, {} of file data equal in bytes and metadata; blake3 in {} out {}",
                f.partition,
                f.kind,
                f.files,
                f.files_read,
                f.files_by_ranges,
                f.dirs,
                f.others,
                size(f.bytes),
                f.digest_in,
                f.digest_out
            )?;
        }
        for n in &pr.not_walked {
            writeln!(out, "  not walked (bytes compared only): {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cluster_sizes_parse_with_suffixes() {
        assert_eq!(parse_cluster_size("65536").unwrap(), 65536);
        assert_eq!(parse_cluster_size("64k").unwrap(), 65536);
        assert_eq!(parse_cluster_size("2M").unwrap(), 2 << 20);
        assert_eq!(parse_cluster_size("512").unwrap(), 512);
        assert!(parse_cluster_size("4M").is_err());
        assert!(parse_cluster_size("256").is_err());
        assert!(parse_cluster_size("3000").is_err());
        assert!(parse_cluster_size("x").is_err());
    }
}
