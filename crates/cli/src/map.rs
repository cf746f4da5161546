//! `qvet map`: qemu-img's JSON byte for byte, and a readable table.

use std::io::Write;

use anyhow::Result;
use qvet_image::map::MapEntry;
use qvet_image::Disk;

/// Writes `qemu-img map --output=json` text: one object per line.
pub fn write_json(out: &mut dyn Write, disk: &Disk) -> Result<()> {
    write!(out, "[")?;
    let mut first = true;
    for e in disk.map() {
        let e = e?;
        if !first {
            writeln!(out, ",")?;
        }
        first = false;
        write!(
            out,
            "{{ \"start\": {}, \"length\": {}, \"depth\": {}, \"present\": {}, \"zero\": {}, \"data\": {}, \"compressed\": {}",
            e.start, e.length, e.depth, e.present, e.zero, e.data, e.compressed
        )?;
        if let Some(o) = e.offset {
            write!(out, ", \"offset\": {o}")?;
        }
        if e.unavailable {
            write!(out, ", \"unavailable\": true")?;
        }
        write!(out, "}}")?;
    }
    writeln!(out, "]")?;
    Ok(())
}

fn kind(e: &MapEntry) -> &'static str {
    match (e.unavailable, e.compressed, e.data, e.zero, e.present) {
        (true, ..) => "unavailable (backing not opened)",
        (_, true, ..) => "compressed",
        (_, _, true, true, _) => "data (host hole, reads zero)",
        (_, _, true, false, _) => "data",
        (_, _, false, true, true) => "zero (explicit)",
        (_, _, false, true, false) => "unallocated (reads zero)",
        _ => "unallocated",
    }
}

/// Writes a table of every extent, compressed ones included.
pub fn write_human(out: &mut dyn Write, disk: &Disk) -> Result<()> {
    writeln!(
        out,
        "{:<18} {:<18} {:>5}  {:<18} Kind",
        "Offset", "Length", "Depth", "Mapped to"
    )?;
    for e in disk.map() {
        let e = e?;
        let mapped = e
            .offset
            .map(|o| format!("{o:#x}"))
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{:<18} {:<18} {:>5}  {:<18} {}",
            format!("{:#x}", e.start),
            format!("{:#x}", e.length),
            e.depth,
            mapped,
            kind(&e)
        )?;
    }
    Ok(())
}
