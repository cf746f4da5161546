//! A catalog as JSON lines, to move it between SQLite and PostgreSQL or to
//! merge two sites' catalogs without a shared server.
//!
//! The first line is `{"schema":"qvet-catalog-export-v1","version":3}`;
//! then one object per line, by `kind`:
//! * `entry`: a user reference (source, label, filename, version, size,
//!   superseded, imported_from, digests, content with the manifest in hex)
//!   and its `baseline` (the baseline JSON, or null);
//! * `scan`: a scan result (host, path, size, mtime_ns, inode, digests,
//!   content, verdict JSON and name, backing, label, scanned_at);
//! * `audit`: an audit verdict (host, path, digest, verdict, counts,
//!   findings, audited_at).
//!
//! Importing merges: an identical entry is not added twice (its baseline
//! is replaced), a scan result replaces the stored one of the same
//! (host, path) only when it is at least as recent, an audit verdict
//! replaces the one of the same (host, path, digest). Lines are bounded
//! ([`MAX_LINE`]) and every field is checked; a bad line is an error naming
//! its number.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use serde_json::{json, Map, Value};

use crate::store::{AuditRecord, CacheRow, CachedFacts, FileKey, ScanRecord};
use crate::{digest_for, Algo, CatalogError, ContentRef, Reference, Store};

/// Schema name on the first line.
pub const SCHEMA: &str = "qvet-catalog-export-v1";

/// Longest line read (a manifest in hex can be large).
pub const MAX_LINE: u64 = 64 << 20;

/// What was exported or imported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// User entries.
    pub entries: usize,
    /// Entries already present (import only).
    pub existing: usize,
    /// Baselines.
    pub baselines: usize,
    /// Scan results.
    pub scans: usize,
    /// Audit verdicts.
    pub audits: usize,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| {
            let t = std::str::from_utf8(p).ok()?;
            u8::from_str_radix(t, 16).ok()
        })
        .collect()
}

fn digests_json(d: &BTreeMap<Algo, String>) -> Value {
    Value::Object(
        d.iter()
            .map(|(a, h)| (a.name().to_string(), Value::String(h.clone())))
            .collect(),
    )
}

fn content_json(c: Option<&ContentRef>) -> Value {
    c.map_or(Value::Null, |c| {
        json!({
            "root": c.root,
            "sha256": c.sha256,
            "virtual_size": c.virtual_size,
            "manifest": c.manifest.as_deref().map(hex),
        })
    })
}

fn write_line(out: &mut dyn Write, v: &Value) -> Result<(), CatalogError> {
    serde_json::to_writer(&mut *out, v)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|error| CatalogError::Io {
            path: "(export)".into(),
            error,
        })
}

/// Writes every user entry (with its baseline), scan result and audit
/// verdict of `store` to `out`.
///
/// # Errors
/// Database or write errors.
pub fn export(store: &Store, out: &mut dyn Write) -> Result<Counts, CatalogError> {
    let mut n = Counts::default();
    write_line(
        out,
        &json!({"schema": SCHEMA, "version": crate::store::SCHEMA_VERSION}),
    )?;
    let baselines: BTreeMap<i64, String> = store.baselines()?.into_iter().collect();
    for e in store.entries()? {
        let r = &e.reference;
        let id = match e.id {
            crate::EntryId::User(id) => id,
            _ => continue,
        };
        let baseline = match baselines.get(&id) {
            Some(b) => {
                n.baselines += 1;
                serde_json::from_str(b).unwrap_or(Value::Null)
            }
            None => Value::Null,
        };
        write_line(
            out,
            &json!({
                "kind": "entry",
                "source": e.source,
                "label": r.label,
                "filename": r.filename,
                "version": r.version,
                "size": r.size,
                "superseded": r.superseded,
                "imported_from": r.imported_from,
                "digests": digests_json(&r.digests),
                "content": content_json(r.content.as_ref()),
                "baseline": baseline,
            }),
        )?;
        n.entries += 1;
    }
    if store.version() >= crate::store::SCHEMA_VERSION {
        for s in store.scans(true)? {
            let row = &s.row;
            write_line(
                out,
                &json!({
                    "kind": "scan",
                    "host": s.host,
                    "path": row.path,
                    "size": row.key.size,
                    "mtime_ns": row.key.mtime_ns,
                    "inode": row.key.inode,
                    "digests": digests_json(&row.facts.digests),
                    "content": content_json(row.facts.content.as_ref()),
                    "verdict": serde_json::from_str::<Value>(&row.verdict).unwrap_or(Value::Null),
                    "verdict_name": row.verdict_name,
                    "backing": row.backing,
                    "label": row.label,
                    "scanned_at": s.scanned_at,
                }),
            )?;
            n.scans += 1;
        }
        for a in store.audits()? {
            write_line(
                out,
                &json!({
                    "kind": "audit",
                    "host": a.host,
                    "path": a.path,
                    "digest": a.digest,
                    "verdict": a.verdict,
                    "counts": serde_json::from_str::<Value>(&a.counts).unwrap_or(Value::Null),
                    "findings": serde_json::from_str::<Value>(&a.findings).unwrap_or(Value::Null),
                    "audited_at": a.audited_at,
                }),
            )?;
            n.audits += 1;
        }
    }
    out.flush().map_err(|error| CatalogError::Io {
        path: "(export)".into(),
        error,
    })?;
    Ok(n)
}

/// Field accessors that say what is wrong.
struct Obj<'a>(&'a Map<String, Value>);

impl Obj<'_> {
    fn str(&self, k: &str) -> Result<String, String> {
        self.0
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("'{k}' must be a string"))
    }
    fn opt_str(&self, k: &str) -> Result<Option<String>, String> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("'{k}' must be a string or null")),
        }
    }
    fn u64(&self, k: &str) -> Result<u64, String> {
        self.0
            .get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("'{k}' must be a non-negative integer"))
    }
    fn opt_u64(&self, k: &str) -> Result<Option<u64>, String> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("'{k}' must be a non-negative integer or null")),
        }
    }
    fn i64(&self, k: &str) -> Result<i64, String> {
        self.0
            .get(k)
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("'{k}' must be an integer"))
    }
    fn digests(&self) -> Result<BTreeMap<Algo, String>, String> {
        let Some(m) = self.0.get("digests").and_then(Value::as_object) else {
            return Err("'digests' must be an object".into());
        };
        m.iter()
            .map(|(k, v)| {
                let a = Algo::from_name(k).ok_or_else(|| format!("unknown digest '{k}'"))?;
                let h = v
                    .as_str()
                    .and_then(|h| digest_for(a, h))
                    .ok_or_else(|| format!("'{k}' is not a {k} digest"))?;
                Ok((a, h))
            })
            .collect()
    }
    fn content(&self) -> Result<Option<ContentRef>, String> {
        match self.0.get("content") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => {
                let c = Obj(m);
                let manifest = match c.opt_str("manifest")? {
                    Some(h) => Some(unhex(&h).ok_or("'content.manifest' is not hex")?),
                    None => None,
                };
                Ok(Some(ContentRef {
                    root: c.str("root")?,
                    sha256: c.str("sha256")?,
                    virtual_size: c.u64("virtual_size")?,
                    manifest,
                }))
            }
            Some(_) => Err("'content' must be an object or null".into()),
        }
    }
    fn json_text(&self, k: &str) -> String {
        self.0.get(k).map(Value::to_string).unwrap_or_default()
    }
}

fn parse_entry(o: &Obj<'_>) -> Result<(String, Reference, Option<String>), String> {
    let reference = Reference {
        label: o.str("label")?,
        filename: o.opt_str("filename")?,
        version: o.opt_str("version")?,
        size: o.opt_u64("size")?,
        digests: o.digests()?,
        content: o.content()?,
        superseded: o
            .0
            .get("superseded")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        imported_from: o.opt_str("imported_from")?,
    };
    let baseline = match o.0.get("baseline") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.to_string()),
        Some(_) => return Err("'baseline' must be an object or null".into()),
    };
    Ok((o.str("source")?, reference, baseline))
}

fn parse_scan(o: &Obj<'_>) -> Result<ScanRecord, String> {
    Ok(ScanRecord {
        host: o.str("host")?,
        row: CacheRow {
            path: o.str("path")?,
            key: FileKey {
                size: o.u64("size")?,
                mtime_ns: o.i64("mtime_ns")?,
                inode: o.u64("inode")?,
            },
            facts: CachedFacts {
                digests: o.digests()?,
                content: o.content()?,
            },
            verdict: o.json_text("verdict"),
            verdict_name: o.str("verdict_name")?,
            backing: o.opt_str("backing")?,
            label: o.opt_str("label")?,
        },
        scanned_at: o.i64("scanned_at")?,
        digest_key: None,
    })
}

fn parse_audit(o: &Obj<'_>) -> Result<AuditRecord, String> {
    Ok(AuditRecord {
        host: o.str("host")?,
        path: o.str("path")?,
        digest: o.str("digest")?,
        verdict: o.str("verdict")?,
        counts: o.json_text("counts"),
        findings: o.json_text("findings"),
        audited_at: o.i64("audited_at")?,
    })
}

/// Reads one line of at most [`MAX_LINE`] bytes; `None` at the end.
fn read_line(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    use std::io::Read;
    buf.clear();
    let n = input.take(MAX_LINE + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(
        buf.len() as u64 <= MAX_LINE || buf.last() == Some(&b'\n'),
    ))
}

/// Merges an export read from `input` (named `name` in errors) into
/// `store`.
///
/// # Errors
/// [`CatalogError::Parse`] naming the line for anything malformed (nothing
/// of a malformed file is written: every line is checked first), database
/// errors.
pub fn import(
    store: &mut Store,
    input: &mut dyn BufRead,
    name: &str,
) -> Result<Counts, CatalogError> {
    let bad = |line: usize, why: String| CatalogError::Parse {
        path: name.into(),
        why: format!("line {line}: {why}"),
    };
    let mut entries = Vec::new();
    let mut scans = Vec::new();
    let mut audits = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        let ok = read_line(input, &mut buf).map_err(|error| CatalogError::Io {
            path: name.into(),
            error,
        })?;
        let Some(ok) = ok else { break };
        line += 1;
        if !ok {
            return Err(bad(line, format!("longer than {MAX_LINE} bytes")));
        }
        let text = std::str::from_utf8(&buf).map_err(|_| bad(line, "not UTF-8".into()))?;
        if text.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(text).map_err(|e| bad(line, e.to_string()))?;
        let Some(m) = v.as_object() else {
            return Err(bad(line, "not a JSON object".into()));
        };
        let o = Obj(m);
        if line == 1 {
            if m.get("schema").and_then(Value::as_str) != Some(SCHEMA) {
                return Err(bad(line, format!("not a qvet catalog export ({SCHEMA})")));
            }
            continue;
        }
        match m.get("kind").and_then(Value::as_str) {
            Some("entry") => entries.push(parse_entry(&o).map_err(|w| bad(line, w))?),
            Some("scan") => scans.push(parse_scan(&o).map_err(|w| bad(line, w))?),
            Some("audit") => audits.push(parse_audit(&o).map_err(|w| bad(line, w))?),
            _ => return Err(bad(line, "'kind' must be entry, scan or audit".into())),
        }
    }
    if line == 0 {
        return Err(bad(1, "empty file".into()));
    }
    let mut n = Counts::default();
    for (source, reference, baseline) in &entries {
        let added = store.add(source, std::slice::from_ref(reference))?;
        let id = match added.first() {
            Some(crate::store::Added::New(id)) => {
                n.entries += 1;
                *id
            }
            Some(crate::store::Added::Existing(id)) => {
                n.existing += 1;
                *id
            }
            None => continue,
        };
        if let Some(b) = baseline {
            store.put_baseline(id, b)?;
            n.baselines += 1;
        }
    }
    if !scans.is_empty() {
        store.merge_scans(&scans)?;
        n.scans = scans.len();
    }
    if !audits.is_empty() {
        store.put_audits(&audits)?;
        n.audits = audits.len();
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(
            unhex(&hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
