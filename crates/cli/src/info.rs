//! `qvet info`: the keys and values of `qemu-img info --output=json`, plus
//! qvet's own facts under one extra key, `"qvet"`.

use std::io::Write;

use anyhow::Result;
use qvet_format::header::{CryptMethod, FeatureKind, Header};
use qvet_format::snapshot::Snapshot;
use qvet_image::disk::{full_backing_filename, BackingLink, Driver, Layer};
use qvet_image::qcow2::{DataSource, Qcow2Image};
use qvet_image::Disk;
use serde_json::{json, Map, Value};

/// Snapshots as `qemu-img info` lists them.
fn snapshot_json(s: &Snapshot) -> Value {
    let mut m = Map::new();
    if let Some(ic) = s.icount.filter(|&i| i != u64::MAX) {
        m.insert("icount".into(), json!(ic));
    }
    m.insert(
        "vm-clock-nsec".into(),
        json!(s.vm_clock_nsec % 1_000_000_000),
    );
    m.insert("name".into(), json!(String::from_utf8_lossy(&s.name)));
    m.insert("date-sec".into(), json!(s.date_sec));
    m.insert("date-nsec".into(), json!(s.date_nsec));
    m.insert(
        "vm-clock-sec".into(),
        json!(s.vm_clock_nsec / 1_000_000_000),
    );
    m.insert("id".into(), json!(String::from_utf8_lossy(&s.id)));
    m.insert("vm-state-size".into(), json!(s.vm_state_size));
    Value::Object(m)
}

fn encrypt_json(q: &Qcow2Image) -> Result<Option<Value>> {
    match q.header().crypt_method {
        CryptMethod::Aes => Ok(Some(json!({"format": "aes"}))),
        CryptMethod::Luks => {
            let Some(l) = q.luks()? else {
                return Ok(None);
            };
            let (ivgen, ivhash) = l.ivgen();
            let mut m = Map::new();
            m.insert("ivgen-alg".into(), json!(ivgen));
            if let Some(h) = ivhash {
                m.insert("ivgen-hash-alg".into(), json!(h));
            }
            m.insert("detached-header".into(), json!(false));
            m.insert("hash-alg".into(), json!(l.hash_spec));
            m.insert("cipher-alg".into(), json!(l.cipher_alg()));
            m.insert("uuid".into(), json!(l.uuid));
            m.insert("format".into(), json!("luks"));
            m.insert("cipher-mode".into(), json!(l.mode()));
            let slots: Vec<Value> = l
                .slots
                .iter()
                .map(|s| {
                    if s.active {
                        json!({"active": true, "iters": s.iterations, "key-offset": s.key_offset, "stripes": s.stripes})
                    } else {
                        json!({"active": false, "key-offset": s.key_offset})
                    }
                })
                .collect();
            m.insert("slots".into(), Value::Array(slots));
            m.insert("payload-offset".into(), json!(l.payload_offset));
            m.insert("master-key-iters".into(), json!(l.master_key_iters));
            Ok(Some(Value::Object(m)))
        }
        _ => Ok(None),
    }
}

fn format_specific(q: &Qcow2Image) -> Result<Value> {
    let h = q.header();
    let mut d = Map::new();
    if h.version == 2 {
        d.insert("compat".into(), json!("0.10"));
        d.insert(
            "compression-type".into(),
            json!(h.compression_type().map(|c| c.name()).unwrap_or("zlib")),
        );
        d.insert("refcount-bits".into(), json!(h.refcount_bits()));
    } else {
        d.insert("compat".into(), json!("1.1"));
        d.insert(
            "compression-type".into(),
            json!(h.compression_type().map(|c| c.name()).unwrap_or("zlib")),
        );
        d.insert(
            "lazy-refcounts".into(),
            json!(h.compatible_features & qvet_format::header::compat::LAZY_REFCOUNTS != 0),
        );
        let bitmaps = q.bitmaps()?;
        if !bitmaps.is_empty() {
            let list: Vec<Value> = bitmaps
                .iter()
                .map(|b| {
                    let mut flags = Vec::new();
                    if b.flags & qvet_format::bitmap::FLAG_IN_USE != 0 {
                        flags.push("in-use");
                    }
                    if b.flags & qvet_format::bitmap::FLAG_AUTO != 0 {
                        flags.push("auto");
                    }
                    json!({
                        "flags": flags,
                        "name": String::from_utf8_lossy(&b.name),
                        "granularity": 1u64 << b.granularity_bits,
                    })
                })
                .collect();
            d.insert("bitmaps".into(), Value::Array(list));
        }
        d.insert("refcount-bits".into(), json!(h.refcount_bits()));
        if let Some(name) = h.data_file_name() {
            d.insert("data-file".into(), json!(String::from_utf8_lossy(name)));
        }
        if h.has_data_file() {
            d.insert("data-file-raw".into(), json!(h.data_file_raw()));
        }
        d.insert(
            "corrupt".into(),
            json!(h.incompatible_features & qvet_format::header::incompat::CORRUPT != 0),
        );
        d.insert("extended-l2".into(), json!(h.extended_l2()));
    }
    if let Some(enc) = encrypt_json(q)? {
        d.insert("encrypt".into(), enc);
    }
    Ok(json!({"type": "qcow2", "data": Value::Object(d)}))
}

fn bits_json(h: &Header, kind: FeatureKind, mask: u64, known: u64) -> Value {
    json!({
        "value": mask,
        "names": h.describe_bits(kind, mask & known),
        "unknown": h.describe_bits(kind, mask & !known),
    })
}

/// qvet's own facts about a qcow2 layer.
/// Whether (and with which key slot) the key opened; the active LUKS slots.
fn encryption_json(q: &Qcow2Image) -> Value {
    if q.encryption().is_none() {
        return Value::Null;
    }
    let active = q.luks().ok().flatten().map(|l| l.active_slots());
    json!({
        "unlocked": q.unlocked(),
        "unlocked-key-slot": q.unlocked_slot(),
        "active-key-slots": active,
    })
}

fn qvet_qcow2(q: &Qcow2Image) -> Value {
    use qvet_format::header::{autoclear, compat, incompat};
    let h = q.header();
    let extensions: Vec<Value> = h
        .extensions
        .iter()
        .map(|e| {
            let mut v = json!({
                "type": format!("{:#010x}", e.kind),
                "name": e.kind_name(),
                "offset": e.offset,
                "length": e.len,
            });
            // Unknown extensions are kept verbatim: show their first bytes.
            if let (qvet_format::header::Extension::Unknown(data), Value::Object(m)) =
                (&e.ext, &mut v)
            {
                let hex: String = data.iter().take(64).map(|b| format!("{b:02x}")).collect();
                m.insert("data-hex".into(), json!(hex));
            }
            v
        })
        .collect();
    let data_file = match q.data_source() {
        DataSource::SameFile => Value::Null,
        DataSource::External(s) => json!({"opened": s.path().map(|p| p.display().to_string())}),
        DataSource::Missing { name, why } => json!({"name": name, "not-opened": why}),
    };
    json!({
        "header": {
            "version": h.version,
            "header-length": h.header_length,
            "cluster-bits": h.cluster_bits,
            "size": h.size,
            "crypt-method": match h.crypt_method {
                CryptMethod::None => json!("none"),
                CryptMethod::Aes => json!("aes"),
                CryptMethod::Luks => json!("luks"),
                CryptMethod::Other(n) => json!(n),
            },
            "refcount-order": h.refcount_order,
            "compression-type": h.compression_type_raw,
            "backing-file-offset": h.backing_file_offset,
            "backing-file-size": h.backing_file_size,
        },
        "features": {
            "incompatible": bits_json(h, FeatureKind::Incompatible, h.incompatible_features, incompat::KNOWN),
            "compatible": bits_json(h, FeatureKind::Compatible, h.compatible_features, compat::KNOWN),
            "autoclear": bits_json(h, FeatureKind::Autoclear, h.autoclear_features, autoclear::KNOWN),
        },
        "encryption": encryption_json(q),
        "tables": {
            "l1-table-offset": h.l1_table_offset,
            "l1-size": h.l1_size,
            "refcount-table-offset": h.refcount_table_offset,
            "refcount-table-clusters": h.refcount_table_clusters,
            "snapshots-offset": h.snapshots_offset,
            "nb-snapshots": h.nb_snapshots,
        },
        "extensions": extensions,
        "data-file": data_file,
    })
}

fn file_child(layer: &Layer) -> Value {
    let f = layer.driver.file();
    json!([{
        "name": "file",
        "info": {
            "children": [],
            "virtual-size": f.len().div_ceil(512) * 512,
            "filename": layer.filename,
            "format": "file",
            "actual-size": f.allocated_bytes().unwrap_or(0),
            "format-specific": {"type": "file", "data": {}},
            "dirty-flag": false,
        }
    }])
}

/// The `qemu-img info` object for one layer.
fn layer_json(layer: &Layer, opened: &[String]) -> Result<Value> {
    let mut m = Map::new();
    let file = layer.driver.file();
    if let Driver::Qcow2(q) = &layer.driver {
        let snaps = q.snapshots();
        if !snaps.is_empty() {
            m.insert(
                "snapshots".into(),
                Value::Array(snaps.iter().map(snapshot_json).collect()),
            );
        }
    }
    let size = match &layer.driver {
        Driver::Qcow2(q) => q.header().virtual_size(),
        Driver::Raw(r) => r.size(),
    };
    m.insert("virtual-size".into(), json!(size));
    m.insert("filename".into(), json!(layer.filename));
    if let Driver::Qcow2(q) = &layer.driver {
        m.insert("cluster-size".into(), json!(q.header().cluster_size()));
    }
    m.insert("format".into(), json!(layer.driver.format().name()));
    m.insert(
        "actual-size".into(),
        json!(file.allocated_bytes().unwrap_or(0)),
    );
    let mut qvet = Map::new();
    if let Driver::Qcow2(q) = &layer.driver {
        let h = q.header();
        if q.encryption().is_some() {
            m.insert("encrypted".into(), json!(true));
        }
        m.insert("format-specific".into(), format_specific(q)?);
        if let Some(b) = h.backing_file.as_ref().filter(|b| !b.is_empty()) {
            let name = String::from_utf8_lossy(b).into_owned();
            m.insert(
                "full-backing-filename".into(),
                json!(full_backing_filename(&layer.filename, &name)),
            );
            m.insert("backing-filename".into(), json!(name));
            if let Some(f) = h.backing_format() {
                m.insert(
                    "backing-filename-format".into(),
                    json!(String::from_utf8_lossy(f)),
                );
            }
        }
        m.insert(
            "dirty-flag".into(),
            json!(h.incompatible_features & qvet_format::header::incompat::DIRTY != 0),
        );
        if let Value::Object(o) = qvet_qcow2(q) {
            qvet.extend(o);
        }
    } else {
        m.insert("dirty-flag".into(), json!(false));
    }
    m.insert("children".into(), file_child(layer));
    qvet.insert(
        "backing".into(),
        match &layer.backing {
            BackingLink::None => Value::Null,
            BackingLink::Opened => json!({"opened": true}),
            BackingLink::Missing { name, why } => json!({"name": name, "not-opened": why}),
        },
    );
    qvet.insert("opened-files".into(), json!(opened));
    m.insert("qvet".into(), Value::Object(qvet));
    Ok(Value::Object(m))
}

fn opened(disk: &Disk) -> Vec<String> {
    disk.opened_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

/// Writes the JSON object (or, for a chain, the array) qemu-img prints.
pub fn write_json(out: &mut dyn Write, disk: &Disk, chain: bool) -> Result<()> {
    let opened = opened(disk);
    let value = if chain {
        Value::Array(
            disk.layers()
                .iter()
                .map(|l| layer_json(l, &opened))
                .collect::<Result<_>>()?,
        )
    } else {
        match disk.top() {
            Some(l) => layer_json(l, &opened)?,
            None => Value::Null,
        }
    };
    serde_json::to_writer_pretty(&mut *out, &value)?;
    writeln!(out)?;
    Ok(())
}

/// `n` bytes in the largest binary unit that keeps the value at least 1
/// (value, unit); shared by `info` and the HTML report.
pub(crate) fn binary_units(n: u64) -> (f64, &'static str) {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    (v, UNITS.get(u).copied().unwrap_or("B"))
}

fn human_size(n: u64) -> String {
    match binary_units(n) {
        (_, "B") => format!("{n} B"),
        (v, unit) => format!("{v:.3} {unit} ({n} bytes)"),
    }
}

/// Writes a readable, aligned description, most important facts first.
pub fn write_human(out: &mut dyn Write, disk: &Disk, chain: bool) -> Result<()> {
    let layers = if chain {
        disk.layers()
    } else {
        disk.layers().get(..1).unwrap_or(&[])
    };
    let opened = opened(disk);
    for (i, layer) in layers.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let v = layer_json(layer, &opened)?;
        let mut rows: Vec<(String, String)> = Vec::new();
        let get = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
        let s = |x: Value| match x {
            Value::String(s) => s,
            other => other.to_string(),
        };
        rows.push(("image".into(), layer.filename.clone()));
        rows.push(("file format".into(), layer.driver.format().name().into()));
        rows.push((
            "virtual size".into(),
            human_size(get("virtual-size").as_u64().unwrap_or(0)),
        ));
        rows.push((
            "disk size".into(),
            human_size(get("actual-size").as_u64().unwrap_or(0)),
        ));
        if let Some(q) = layer.qcow2() {
            let h = q.header();
            rows.push(("cluster size".into(), h.cluster_size().to_string()));
            rows.push((
                "compat".into(),
                if h.version == 2 {
                    "0.10 (qcow2 v2)"
                } else {
                    "1.1 (qcow2 v3)"
                }
                .into(),
            ));
            if let Some(b) = v.get("backing-filename") {
                rows.push(("backing file".into(), s(b.clone())));
                rows.push((
                    "backing file (resolved)".into(),
                    s(get("full-backing-filename")),
                ));
                if let Some(f) = v.get("backing-filename-format") {
                    rows.push(("backing file format".into(), s(f.clone())));
                }
                let status = match &layer.backing {
                    BackingLink::Opened => "opened".to_string(),
                    BackingLink::Missing { why, .. } => format!("not opened: {why}"),
                    BackingLink::None => String::new(),
                };
                rows.push(("backing status".into(), status));
            }
            if let Some(e) = q.encryption() {
                let state = match (q.unlocked(), q.unlocked_slot()) {
                    (true, Some(slot)) => format!("unlocked with key slot {slot}"),
                    (true, None) => "key given (legacy AES has no key check)".to_string(),
                    (false, _) => "no key given: guest data cannot be read".to_string(),
                };
                rows.push(("encrypted".into(), format!("yes ({e}); {state}")));
                if let Ok(Some(l)) = q.luks() {
                    let active = l.active_slots();
                    let list = if active.is_empty() {
                        "none".to_string()
                    } else {
                        active
                            .iter()
                            .map(usize::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    rows.push(("active key slots".into(), list));
                }
            }
            rows.push((
                "compression type".into(),
                h.compression_type().map(|c| c.name()).unwrap_or("?").into(),
            ));
            rows.push(("refcount bits".into(), h.refcount_bits().to_string()));
            rows.push(("dirty".into(), s(get("dirty-flag"))));
            let fs = v
                .pointer("/format-specific/data")
                .cloned()
                .unwrap_or(Value::Null);
            for key in [
                "corrupt",
                "lazy-refcounts",
                "extended-l2",
                "data-file",
                "data-file-raw",
            ] {
                if let Some(x) = fs.get(key) {
                    rows.push((key.replace('-', " "), s(x.clone())));
                }
            }
            for (label, kind, mask) in [
                (
                    "incompatible features",
                    FeatureKind::Incompatible,
                    h.incompatible_features,
                ),
                (
                    "compatible features",
                    FeatureKind::Compatible,
                    h.compatible_features,
                ),
                (
                    "autoclear features",
                    FeatureKind::Autoclear,
                    h.autoclear_features,
                ),
            ] {
                if mask != 0 {
                    rows.push((
                        label.into(),
                        format!("{mask:#x} ({})", h.describe_bits(kind, mask).join(", ")),
                    ));
                }
            }
            rows.push((
                "L1 table".into(),
                format!("{:#x}, {} entries", h.l1_table_offset, h.l1_size),
            ));
            rows.push((
                "refcount table".into(),
                format!(
                    "{:#x}, {} cluster(s)",
                    h.refcount_table_offset, h.refcount_table_clusters
                ),
            ));
            for e in &h.extensions {
                rows.push((
                    "header extension".into(),
                    format!(
                        "{} ({:#010x}) at {:#x}, {} bytes",
                        e.kind_name(),
                        e.kind,
                        e.offset,
                        e.len
                    ),
                ));
            }
            if let Some(list) = fs.get("bitmaps").and_then(Value::as_array) {
                for b in list {
                    rows.push(("bitmap".into(), b.to_string()));
                }
            }
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, val) in &rows {
            writeln!(
                out,
                "{:<width$}  {}",
                format!("{k}:"),
                val,
                width = width + 1
            )?;
        }
        if let Some(q) = layer.qcow2() {
            let snaps = q.snapshots();
            if !snaps.is_empty() {
                writeln!(out, "snapshots:")?;
                writeln!(
                    out,
                    "  {:<6} {:<24} {:>12} {:>12} {:>14}",
                    "ID", "TAG", "VM SIZE", "DATE (unix)", "VM CLOCK (s)"
                )?;
                for sn in snaps {
                    writeln!(
                        out,
                        "  {:<6} {:<24} {:>12} {:>12} {:>14.3}",
                        String::from_utf8_lossy(&sn.id),
                        String::from_utf8_lossy(&sn.name),
                        sn.vm_state_size,
                        sn.date_sec,
                        sn.vm_clock_nsec as f64 / 1e9
                    )?;
                }
            }
        }
    }
    writeln!(out, "opened files: {}", opened.join(", "))?;
    Ok(())
}
