//! `qvet fs`: the partition table and what each partition holds.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use qvet_image::ByteSource;
use qvet_volume::{detect_filesystem, PartitionType, VolumeMap};
use serde_json::{json, Value};

use crate::{open, ImageArgs, OutputFormat};

/// Arguments of `qvet fs`.
#[derive(Debug, Args)]
pub struct FsArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    output: OutputFormat,
    /// Read an internal snapshot (ID or name) instead of the current state.
    #[arg(short = 's', long)]
    snapshot: Option<String>,
    #[command(flatten)]
    image: ImageArgs,
}

fn type_name(t: &PartitionType) -> String {
    match t {
        PartitionType::Mbr(b) => format!("{b:#04x}"),
        PartitionType::Gpt(g) => g.clone(),
        PartitionType::WholeDisk => "whole disk".into(),
    }
}

type GapData = (Option<u64>, u64, bool);

fn to_json(
    map: &VolumeMap,
    filesystems: &[Option<&'static str>],
    details: &[Option<Value>],
    luks: &[Option<Result<Opened, String>>],
    gap_data: &[GapData],
    path: &Path,
) -> Value {
    let parts: Vec<Value> = map
        .partitions
        .iter()
        .zip(filesystems)
        .zip(details)
        .zip(luks)
        .map(|(((p, fs), detail), l)| {
            let luks = l.as_ref().map(|r| match r {
                Ok(o) => json!({"opened": true, "key_slot": o.slot, "filesystem": o.filesystem}),
                Err(e) => json!({"opened": false, "error": e}),
            });
            json!({
                "number": p.number,
                "start": p.start,
                "length": p.len,
                "type": type_name(&p.kind),
                "bootable": p.bootable,
                "logical": p.logical,
                "name": p.name,
                "guid": p.guid,
                "attributes": p.attributes,
                "filesystem": fs,
                "luks": luks,
                "superblock": detail,
            })
        })
        .collect();
    json!({
        "filename": path.display().to_string(),
        "disk_size": map.disk_size,
        "scheme": map.scheme.name(),
        "mbr": map.mbr.as_ref().map(|m| json!({
            "disk_signature": format!("{:08x}", m.disk_signature),
            "boot_code_present": m.boot_code_present,
        })),
        "gpt": map.gpt.as_ref().map(|g| json!({
            "sector_size": g.sector_size,
            "disk_guid": g.header.disk_guid,
            "from_backup": g.from_backup,
            "first_usable_lba": g.header.first_usable_lba,
            "last_usable_lba": g.header.last_usable_lba,
            "entries": g.header.num_entries,
        })),
        "partitions": parts,
        "gaps": map.gaps.iter().zip(gap_data).map(|(g, (first, count, capped))| json!({
            "start": g.start,
            "length": g.len,
            "non_zero_bytes": count,
            "first_non_zero": first,
            "scan_capped": capped,
        })).collect::<Vec<_>>(),
        "findings": map.findings.iter().map(|f| json!({"kind": f.kind, "message": f.message, "offset": f.offset})).collect::<Vec<_>>(),
    })
}

/// A partition's bytes.
fn window_of(disk: &Arc<qvet_image::Disk>, start: u64, len: u64) -> Arc<dyn ByteSource> {
    let src: Arc<dyn ByteSource> = disk.clone();
    Arc::new(qvet_volume::Window::new(src, start, len))
}

/// A LUKS partition opened with the passphrase given.
struct Opened {
    /// The key slot that opened.
    slot: Option<usize>,
    /// The filesystem inside.
    filesystem: Option<&'static str>,
    /// The decrypted payload.
    payload: Arc<dyn ByteSource>,
}

/// Opens a LUKS partition with the disk's passphrase: `None` without one,
/// else what opened or why not.
fn open_luks(
    disk: &Arc<qvet_image::Disk>,
    start: u64,
    len: u64,
    name: &Path,
) -> Option<Result<Opened, String>> {
    let key = disk.key()?;
    let volume =
        qvet_image::crypt::volume::LuksVolume::open(window_of(disk, start, len), key, name);
    Some(volume.map_err(|e| e.to_string()).and_then(|v| {
        let slot = v.slot();
        let payload: Arc<dyn ByteSource> = Arc::new(v);
        let filesystem = detect_filesystem(payload.as_ref(), 0, payload.len())
            .map_err(|e| e.to_string())?
            .map(|k| k.name());
        Ok(Opened {
            slot,
            filesystem,
            payload,
        })
    }))
}

/// The ext superblock's forensic facts, for an ext filesystem in `window`.
fn ext_facts(window: Arc<dyn ByteSource>) -> Option<Value> {
    let fs = match qvet_guestfs::ext::Ext::open(window) {
        Ok(fs) => fs,
        Err(e) => return Some(json!({"error": e.to_string()})),
    };
    let f = fs.superblock_facts();
    Some(json!({
        "type": f.kind,
        "label": f.label,
        "uuid": f.uuid,
        "last_mounted": f.last_mounted,
        "mount_count": f.mount_count,
        "max_mount_count": f.max_mount_count,
        "last_mount_time": f.last_mount_time,
        "last_write_time": f.last_write_time,
        "creation_time": f.creation_time,
        "last_check_time": f.last_check_time,
        "state": f.state,
        "errors_behaviour": f.errors_behaviour,
        "creator_os": f.creator_os,
        "revision": format!("{}.{}", f.revision, f.minor_revision),
        "features": {
            "compat": f.features_compat,
            "incompat": f.features_incompat,
            "ro_compat": f.features_ro_compat,
        },
        "block_size": f.block_size,
        "blocks": f.blocks_count,
        "free_blocks": f.free_blocks,
        "inodes": f.inodes_count,
        "free_inodes": f.free_inodes,
        "superblock_checksum_ok": f.checksum_ok,
        "encryption": f.encryption,
        "casefold_encoding": f.casefold_encoding,
        "casefold_strict": f.casefold_strict,
        "journal": f.journal.as_ref().map(journal_json),
        "checksum_errors": fs.checksum_errors(),
        "findings": fs.findings(),
    }))
}

/// What journal recovery found and replayed.
fn journal_json(j: &qvet_guestfs::jbd2::JournalFacts) -> Value {
    json!({
        "needs_recovery": j.needs_recovery,
        "inode": j.inode,
        "version": j.version,
        "features": j.features,
        "first_sequence": j.first_sequence,
        "start_block": j.start_block,
        "transactions": j.transactions,
        "last_sequence": j.last_sequence,
        "blocks_replayed": j.blocks_replayed,
        "blocks_overlaid": j.blocks_overlaid,
        "blocks_revoked": j.blocks_revoked,
        "revoke_records": j.revoke_records,
        "applied": j.applied,
        "problems": j.problems,
    })
}

/// Bytes examined per gap for non-zero content.
const GAP_SCAN_LIMIT: u64 = 256 << 20;

/// Non-zero bytes in a gap: (first non-zero offset, non-zero bytes seen,
/// whether the scan stopped at [`GAP_SCAN_LIMIT`]).
fn gap_content(disk: &qvet_image::Disk, start: u64, len: u64) -> Result<GapData> {
    let g = qvet_audit::run::scan_gap(disk, start, len, GAP_SCAN_LIMIT)?;
    Ok((g.first_nonzero, g.nonzero_bytes, g.capped))
}

/// Runs `qvet fs`.
pub fn run(a: &FsArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let disk = Arc::new(open(&a.image, a.snapshot.as_deref())?);
    let map = qvet_volume::scan(disk.as_ref())?;
    let gap_data = map
        .gaps
        .iter()
        .map(|g| gap_content(disk.as_ref(), g.start, g.len))
        .collect::<Result<Vec<_>>>()?;
    let filesystems = map
        .partitions
        .iter()
        .map(|p| detect_filesystem(disk.as_ref(), p.start, p.len).map(|k| k.map(|k| k.name())))
        .collect::<Result<Vec<_>, _>>()?;
    // LUKS partitions are opened when a passphrase is given: the
    // filesystem inside is probed and described.
    let luks: Vec<Option<Result<Opened, String>>> = map
        .partitions
        .iter()
        .zip(&filesystems)
        .map(|(p, fs)| match fs {
            Some("luks") => open_luks(
                &disk,
                p.start,
                p.len,
                Path::new(&format!("{}:p{}", a.image.image.display(), p.number)),
            ),
            _ => None,
        })
        .collect();
    let details: Vec<Option<Value>> = map
        .partitions
        .iter()
        .zip(&filesystems)
        .zip(&luks)
        .map(|((p, fs), l)| match (fs, l) {
            (Some("ext"), _) => ext_facts(window_of(&disk, p.start, p.len)),
            (_, Some(Ok(o))) if o.filesystem == Some("ext") => ext_facts(Arc::clone(&o.payload)),
            _ => None,
        })
        .collect();
    match a.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(
                &mut *out,
                &crate::with_schema(
                    "fs",
                    to_json(
                        &map,
                        &filesystems,
                        &details,
                        &luks,
                        &gap_data,
                        &a.image.image,
                    ),
                ),
            )?;
            writeln!(out)?;
        }
        OutputFormat::Human => {
            writeln!(
                out,
                "disk:   {} ({} bytes), {} partition table",
                a.image.image.display(),
                map.disk_size,
                map.scheme.name()
            )?;
            for line in crate::diskbar::render(&disk, &map, crate::diskbar::Style::for_stdout())? {
                writeln!(out, "        {line}")?;
            }
            if let Some(g) = &map.gpt {
                writeln!(
                    out,
                    "gpt:    disk GUID {}, {}-byte sectors{}",
                    g.header.disk_guid,
                    g.sector_size,
                    if g.from_backup {
                        ", read from the BACKUP header"
                    } else {
                        ""
                    }
                )?;
            }
            writeln!(
                out,
                "{:>4}  {:>14}  {:>14}  {:<38} {:<10} name",
                "#", "start", "length", "type", "fs"
            )?;
            for ((p, fs), l) in map.partitions.iter().zip(&filesystems).zip(&luks) {
                let shown = match l {
                    Some(Ok(o)) => format!("luks/{}", o.filesystem.unwrap_or("-")),
                    _ => fs.unwrap_or("-").to_string(),
                };
                writeln!(
                    out,
                    "{:>4}  {:>14}  {:>14}  {:<38} {:<10} {}{}",
                    p.number,
                    p.start,
                    p.len,
                    type_name(&p.kind),
                    shown,
                    p.name.as_deref().unwrap_or(""),
                    if p.bootable { " (active)" } else { "" }
                )?;
            }
            for (p, l) in map.partitions.iter().zip(&luks) {
                match l {
                    Some(Ok(o)) => writeln!(
                        out,
                        "p{}:     LUKS opened (key slot {}): {} inside",
                        p.number,
                        o.slot.map_or("-".to_string(), |s| s.to_string()),
                        o.filesystem.unwrap_or("no known filesystem")
                    )?,
                    Some(Err(e)) => writeln!(out, "p{}:     LUKS not opened: {e}", p.number)?,
                    None => {}
                }
            }
            for (p, detail) in map.partitions.iter().zip(&details) {
                let Some(d) = detail else { continue };
                let field = |k: &str| match d.get(k) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => "-".into(),
                    Some(v) => v.to_string(),
                };
                if let Some(err) = d.get("error") {
                    writeln!(out, "p{}:     ext superblock unreadable: {err}", p.number)?;
                    continue;
                }
                writeln!(
                    out,
                    "p{}:     {} label '{}' uuid {} state {} created {} last mounted at '{}' (time {}, {} mounts) last write {} by {}",
                    p.number,
                    field("type"),
                    field("label"),
                    field("uuid"),
                    field("state"),
                    field("creation_time"),
                    field("last_mounted"),
                    field("last_mount_time"),
                    field("mount_count"),
                    field("last_write_time"),
                    field("creator_os")
                )?;
                if let Some(j) = d.get("journal").filter(|j| !j.is_null()) {
                    let recovery = if j["needs_recovery"] == true {
                        if j["applied"] == true {
                            format!(
                                "needs recovery: {} transactions replayed in memory ({} blocks, last sequence {})",
                                j["transactions"], j["blocks_overlaid"], j["last_sequence"]
                            )
                        } else {
                            "needs recovery: nothing replayed (on-disk state shown)".to_string()
                        }
                    } else {
                        "clean".to_string()
                    };
                    writeln!(out, "p{}:     journal: {recovery}", p.number)?;
                }
                if d["encryption"] == true {
                    writeln!(
                        out,
                        "p{}:     encryption enabled (encrypted files cannot be read)",
                        p.number
                    )?;
                }
                if let Some(enc) = d["casefold_encoding"].as_str() {
                    writeln!(out, "p{}:     casefold: {enc}", p.number)?;
                }
                if let Some(errs) = d.get("findings").and_then(Value::as_array) {
                    for e in errs.iter().take(5) {
                        writeln!(
                            out,
                            "p{}:     finding: {}",
                            p.number,
                            e.as_str().unwrap_or("")
                        )?;
                    }
                    if errs.len() > 5 {
                        writeln!(out, "p{}:     … {} findings in all", p.number, errs.len())?;
                    }
                }
            }
            for (g, (first, count, capped)) in map.gaps.iter().zip(&gap_data) {
                match first {
                    None => writeln!(out, "gap:    {} bytes at {:#x} outside every partition (all zero)", g.len, g.start)?,
                    Some(f) => writeln!(
                        out,
                        "gap:    {} bytes at {:#x} outside every partition HOLD DATA: {count}{} non-zero bytes, first at {f:#x}",
                        g.len,
                        g.start,
                        if *capped { "+" } else { "" }
                    )?,
                }
            }
            for f in &map.findings {
                writeln!(out, "note:   [{}] {}", f.kind, f.message)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
