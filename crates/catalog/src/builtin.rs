//! The built-in catalog: public GNS3 registry facts shipped inside qvet.
//!
//! `data/gns3-registry-images.tsv` lists every image entry of the registry
//! at its snapshot commit (current); `data/gns3-registry-images-history.tsv`
//! lists every (appliance, filename, md5) that ever appeared, with `in_head`.
//! Rows with `in_head=no` are superseded: corrections, vendor re-spins or
//! removed versions. See `data/PROVENANCE.md`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::{digest_for, source, Algo, Entry, EntryId, Reference};

/// The registry commit the data was taken from.
pub const REGISTRY_COMMIT: &str = "eba400be9936ff5b0a3597bd84e5e3952e0aaa32";
/// Its commit date.
pub const REGISTRY_DATE: &str = "2026-08-11";

const CURRENT: &str = include_str!("../data/gns3-registry-images.tsv");
const HISTORY: &str = include_str!("../data/gns3-registry-images-history.tsv");

/// Counts of the built-in data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Rows at the registry snapshot.
    pub current: usize,
    /// Rows seen only in the registry's history.
    pub superseded: usize,
    /// Rows without a valid MD5 (the registry's history has one).
    pub skipped: usize,
}

struct Parsed {
    entries: Vec<Entry>,
    stats: Stats,
}

fn columns(header: &str) -> BTreeMap<&str, usize> {
    header
        .split('\t')
        .enumerate()
        .map(|(i, c)| (c.trim(), i))
        .collect()
}

fn field(cols: &BTreeMap<&str, usize>, fields: &[&str], name: &str) -> Option<String> {
    cols.get(name)
        .and_then(|&i| fields.get(i))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn parse_table(text: &str, history: bool, out: &mut Vec<Entry>, skipped: &mut usize) {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return;
    };
    let cols = columns(header);
    let get = |fields: &[&str], name: &str| field(&cols, fields, name);
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if history && get(&fields, "in_head").as_deref() != Some("no") {
            // Rows still at HEAD are in the current table.
            continue;
        }
        let md5 = get(&fields, "md5sum").and_then(|h| digest_for(Algo::Md5, &h));
        let (Some(label), Some(filename), Some(md5)) =
            (get(&fields, "appliance"), get(&fields, "filename"), md5)
        else {
            *skipped += 1;
            continue;
        };
        let id = u32::try_from(out.len() + 1).unwrap_or(u32::MAX);
        out.push(Entry {
            id: EntryId::Builtin(id),
            source: source::GNS3_BUILTIN.to_string(),
            reference: Reference {
                label,
                filename: Some(filename),
                version: get(&fields, "version"),
                size: get(&fields, "filesize").and_then(|s| s.parse().ok()),
                digests: BTreeMap::from([(Algo::Md5, md5)]),
                content: None,
                superseded: history,
                imported_from: None,
            },
        });
    }
}

fn parsed() -> &'static Parsed {
    static DATA: OnceLock<Parsed> = OnceLock::new();
    DATA.get_or_init(|| {
        let mut entries = Vec::new();
        let mut skipped = 0;
        parse_table(CURRENT, false, &mut entries, &mut skipped);
        let current = entries.len();
        parse_table(HISTORY, true, &mut entries, &mut skipped);
        let superseded = entries.len() - current;
        Parsed {
            entries,
            stats: Stats {
                current,
                superseded,
                skipped,
            },
        }
    })
}

/// Every built-in entry (current first, then superseded).
pub fn entries() -> &'static [Entry] {
    &parsed().entries
}

/// Counts of the built-in data.
pub fn stats() -> Stats {
    parsed().stats
}

/// A built-in entry by ID.
pub fn get(id: EntryId) -> Option<&'static Entry> {
    match id {
        EntryId::Builtin(n) => entries().get(usize::try_from(n).ok()?.checked_sub(1)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_rows_parse() {
        let s = stats();
        assert_eq!(s.current, 1260);
        // 588 history rows are gone from HEAD; one of them recorded an
        // invalid MD5 (`s2022bdb…`, 33 characters, for Rocky 9.2) and is
        // skipped.
        assert_eq!(s.superseded, 587);
        assert_eq!(s.skipped, 1);
        assert!(entries()[..s.current]
            .iter()
            .all(|e| !e.reference.superseded));
        assert!(entries()[s.current..]
            .iter()
            .all(|e| e.reference.superseded));
    }

    #[test]
    fn known_rows() {
        let csr = entries()
            .iter()
            .find(|e| {
                e.reference.filename.as_deref()
                    == Some("csr1000v-universalk9.17.03.08a-serial.qcow2")
            })
            .unwrap();
        assert_eq!(csr.reference.label, "cisco-csr1000v");
        assert_eq!(csr.reference.size, Some(1_421_410_304));
        assert_eq!(
            csr.reference.digests[&Algo::Md5],
            "6abece87d6db99d9fd6917203e253f91"
        );
        assert_eq!(get(csr.id), Some(csr));
        // A vendor re-spin: the old MD5 is superseded, the new one current.
        let name = "csr1000v-universalk9.16.07.01-serial.qcow2";
        let rows: Vec<_> = entries()
            .iter()
            .filter(|e| e.reference.filename.as_deref() == Some(name))
            .collect();
        assert!(rows
            .iter()
            .any(|e| e.reference.superseded
                && e.reference.digests[&Algo::Md5].starts_with("13adbfc2")));
        assert!(rows
            .iter()
            .any(|e| !e.reference.superseded
                && e.reference.digests[&Algo::Md5].starts_with("bad9000d")));
        assert_eq!(get(EntryId::Builtin(0)), None);
        assert_eq!(get(EntryId::User(1)), None);
    }
}
