//! `qvet check`: qemu-img check's JSON keys, omission rules and exit codes,
//! with qvet's detail under `"qvet"`.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use qvet_audit::check::CheckReport;
use serde_json::{json, Map, Value};

/// Exit code as qemu-img check's: 0 clean, 1 check failed, 2 corruptions,
/// 3 leaks only. qvet-only damage (findings) counts as corruption.
pub fn exit_code(r: &CheckReport) -> u8 {
    if r.aborted.is_some() || r.check_errors > 0 {
        1
    } else if r.corruptions > 0 || r.findings > 0 {
        2
    } else if r.leaks > 0 {
        3
    } else {
        0
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The JSON document.
pub fn to_json(r: &CheckReport, filename: &str, opened: &[String]) -> Value {
    let mut m = Map::new();
    let mut opt = |k: &str, v: u64| {
        if v != 0 {
            m.insert(k.into(), json!(v));
        }
    };
    opt("image-end-offset", r.image_end_offset);
    opt("total-clusters", r.total_clusters);
    opt("corruptions", r.corruptions);
    opt("leaks", r.leaks);
    opt("allocated-clusters", r.allocated_clusters);
    opt("fragmented-clusters", r.fragmented_clusters);
    opt("compressed-clusters", r.compressed_clusters);
    m.insert("check-errors".into(), json!(r.check_errors));
    m.insert("filename".into(), json!(filename));
    m.insert("format".into(), json!("qcow2"));
    let problems: Vec<Value> = r
        .problems
        .iter()
        .map(|p| {
            let mut o = Map::new();
            o.insert("kind".into(), json!(p.kind));
            o.insert("class".into(), json!(p.class.name()));
            o.insert("message".into(), json!(p.message));
            if let Some(h) = p.host_offset {
                o.insert("host-offset".into(), json!(h));
            }
            if let Some(g) = p.guest_offset {
                o.insert("guest-offset".into(), json!(g));
            }
            if let Some(t) = &p.table {
                o.insert("table".into(), json!(t));
            }
            if let Some(i) = p.index {
                o.insert("index".into(), json!(i));
            }
            Value::Object(o)
        })
        .collect();
    let counts: Map<String, Value> = r
        .counts
        .iter()
        .map(|(k, (c, n))| ((*k).to_string(), json!({"class": c.name(), "count": n})))
        .collect();
    let leaked: Vec<Value> = r
        .leaked
        .iter()
        .map(|l| {
            json!({
                "cluster": l.index,
                "refcount": l.refcount,
                "references": l.references,
                "holds-data": l.nonzero,
                "first-bytes-hex": hex(&l.first_bytes),
            })
        })
        .collect();
    m.insert(
        "qvet".into(),
        json!({
            "completed": r.aborted.is_none(),
            "aborted": r.aborted,
            "findings": r.findings,
            "problem-counts": counts,
            "problems": problems,
            "leaked-clusters": leaked,
            "compressed": {
                "unique": r.compressed.unique,
                "decoded": r.compressed.decoded,
                "undecodable": r.compressed.failed,
            },
            "snapshots": r.snapshots.iter().map(|s| json!({
                "id": qvet_audit::check::short(&s.id),
                "name": qvet_audit::check::short(&s.name),
                "date-sec": s.date_sec,
                "vm-clock-nsec": s.vm_clock_nsec,
                "disk-size": s.disk_size,
            })).collect::<Vec<_>>(),
            "opened-files": opened,
        }),
    );
    Value::Object(m)
}

/// Human summary: problems grouped by kind, five examples each.
pub fn write_human(out: &mut dyn Write, r: &CheckReport, path: &Path) -> Result<()> {
    if let Some(why) = &r.aborted {
        writeln!(out, "Check of {} could not complete: {why}", path.display())?;
    }
    let damaged = r.corruptions + r.findings;
    if damaged == 0 && r.leaks == 0 && r.check_errors == 0 && r.aborted.is_none() {
        writeln!(out, "No errors were found on the image.")?;
    }
    if r.corruptions > 0 {
        writeln!(
            out,
            "{} errors were found on the image (as qemu-img counts them).",
            r.corruptions
        )?;
        writeln!(
            out,
            "Data may be corrupted, or further writes to the image may corrupt it."
        )?;
    }
    if r.findings > 0 {
        writeln!(
            out,
            "{} further problems were found by qvet that qemu-img check does not report.",
            r.findings
        )?;
    }
    if r.leaks > 0 {
        writeln!(out, "{} leaked clusters were found on the image.", r.leaks)?;
        writeln!(out, "This means waste of disk space, but no harm to data.")?;
    }
    if r.check_errors > 0 {
        writeln!(
            out,
            "{} internal errors have occurred during the check.",
            r.check_errors
        )?;
    }
    let mut kinds: Vec<_> = r.counts.iter().collect();
    kinds.sort_by_key(|(_, (c, _))| *c);
    for (kind, (class, count)) in kinds {
        writeln!(out, "\n[{}] {kind}: {count}", class.name())?;
        for p in r.problems.iter().filter(|p| p.kind == *kind).take(5) {
            let mut loc = Vec::new();
            if let Some(h) = p.host_offset {
                loc.push(format!("host {h:#x}"));
            }
            if let Some(g) = p.guest_offset {
                loc.push(format!("guest {g:#x}"));
            }
            if let Some(t) = &p.table {
                match p.index {
                    Some(i) => loc.push(format!("{t}[{i}]")),
                    None => loc.push(t.clone()),
                }
            }
            writeln!(
                out,
                "  {}{}",
                p.message,
                if loc.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", loc.join(", "))
                }
            )?;
        }
        if *count > 5 {
            writeln!(out, "  … and {} more", count - 5)?;
        }
    }
    if !r.leaked.is_empty() {
        let with_data = r.leaked.iter().filter(|l| l.nonzero).count();
        writeln!(out, "\nleaked clusters holding data (possible deleted-data remnants): {with_data} of {} listed", r.leaked.len())?;
        for l in r.leaked.iter().filter(|l| l.nonzero).take(5) {
            writeln!(out, "  cluster {} : {}…", l.index, hex(&l.first_bytes))?;
        }
    }
    if r.compressed.unique > 0 {
        writeln!(
            out,
            "\ncompressed clusters decoded: {} of {} distinct ({} undecodable)",
            r.compressed.decoded, r.compressed.unique, r.compressed.failed
        )?;
    }
    if r.total_clusters > 0 && r.allocated_clusters > 0 {
        let pct = |n: u64| n as f64 * 100.0 / r.total_clusters as f64;
        let apct = |n: u64| n as f64 * 100.0 / r.allocated_clusters as f64;
        writeln!(
            out,
            "\n{}/{} = {:.2}% allocated, {:.2}% fragmented, {:.2}% compressed clusters",
            r.allocated_clusters,
            r.total_clusters,
            pct(r.allocated_clusters),
            apct(r.fragmented_clusters),
            apct(r.compressed_clusters)
        )?;
    }
    if r.image_end_offset > 0 {
        writeln!(out, "Image end offset: {}", r.image_end_offset)?;
    }
    Ok(())
}
