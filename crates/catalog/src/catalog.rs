//! Every trusted reference in memory, indexed for verdicts.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use crate::{builtin, source, Algo, CatalogError, Entry, EntryId, Location, Reference, Store};

/// The built-in entries, the user catalog's and any given on the command
/// line, with indexes by digest, file name, size and content root.
#[derive(Debug, Default)]
pub struct Catalog {
    entries: Vec<Entry>,
    by_digest: HashMap<(Algo, String), Vec<usize>>,
    by_name: HashMap<String, Vec<usize>>,
    by_size: HashMap<u64, Vec<usize>>,
    by_root: HashMap<String, Vec<usize>>,
    user_location: Option<Location>,
    user_entries: usize,
    adhoc_entries: u32,
}

impl Catalog {
    /// The built-in entries plus every entry of `store` (if any).
    ///
    /// # Errors
    /// Database errors.
    pub fn load(store: Option<&Store>) -> Result<Self, CatalogError> {
        let mut c = Self::default();
        for e in builtin::entries() {
            c.push(e.clone());
        }
        if let Some(s) = store {
            let user = s.entries()?;
            c.user_entries = user.len();
            c.user_location = Some(s.location().clone());
            for e in user {
                c.push(e);
            }
        }
        Ok(c)
    }

    /// Opens the user catalog at `location` read-only if it exists (never
    /// creating it) and loads everything.
    ///
    /// # Errors
    /// The catalog exists but is not usable.
    pub fn open(location: &Location) -> Result<Self, CatalogError> {
        let store = Store::open_read_only(location)?;
        Self::load(store.as_ref())
    }

    /// Adds a reference given on the command line (`--md5 HEX`, `--sums F`).
    /// Returns its ID.
    pub fn add_adhoc(&mut self, source: &str, reference: Reference) -> EntryId {
        let id = EntryId::Adhoc(self.adhoc_entries);
        self.adhoc_entries += 1;
        self.push(Entry {
            id,
            source: source.to_string(),
            reference,
        });
        id
    }

    fn push(&mut self, e: Entry) {
        let i = self.entries.len();
        let r = &e.reference;
        for (a, h) in &r.digests {
            self.by_digest.entry((*a, h.clone())).or_default().push(i);
        }
        if let Some(f) = &r.filename {
            self.by_name.entry(f.clone()).or_default().push(i);
        }
        if let Some(s) = r.size {
            self.by_size.entry(s).or_default().push(i);
        }
        if let Some(c) = &r.content {
            self.by_root.entry(c.root.clone()).or_default().push(i);
        }
        self.entries.push(e);
    }

    fn pick<'a>(&'a self, idx: Option<&'a Vec<usize>>) -> impl Iterator<Item = &'a Entry> + 'a {
        idx.into_iter()
            .flatten()
            .filter_map(move |&i| self.entries.get(i))
    }

    /// Every entry: built-in, then user, then command-line ones.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry with this ID.
    pub fn get(&self, id: EntryId) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Entries recording this digest.
    pub fn by_digest<'a>(&'a self, algo: Algo, hex: &str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.pick(self.by_digest.get(&(algo, hex.to_string())))
    }

    /// Entries naming this file.
    pub fn by_filename<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.pick(self.by_name.get(name))
    }

    /// Entries of this size.
    pub fn by_size(&self, size: u64) -> impl Iterator<Item = &Entry> + '_ {
        self.pick(self.by_size.get(&size))
    }

    /// Entries with this guest-content root.
    pub fn by_root<'a>(&'a self, root: &str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.pick(self.by_root.get(root))
    }

    /// Entries given on the command line without a file name: expected
    /// digests that every image is checked against.
    pub fn expected(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.entries
            .iter()
            .filter(|e| e.source == source::COMMAND_LINE)
    }

    /// Whether some entry names this file.
    pub fn knows_filename(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Every algorithm some entry records: what must be computed to compare.
    pub fn algos(&self) -> BTreeSet<Algo> {
        self.by_digest.keys().map(|(a, _)| *a).collect()
    }

    /// Virtual sizes of the references that carry a content root.
    pub fn content_sizes(&self) -> BTreeSet<u64> {
        self.entries
            .iter()
            .filter_map(|e| e.reference.content.as_ref().map(|c| c.virtual_size))
            .collect()
    }

    /// Path of the user catalog loaded, if one was an SQLite file.
    pub fn user_path(&self) -> Option<&Path> {
        self.user_location.as_ref().and_then(Location::sqlite_path)
    }

    /// Where the user catalog loaded is, if one was.
    pub fn user_location(&self) -> Option<&Location> {
        self.user_location.as_ref()
    }

    /// Number of user catalog entries loaded.
    pub fn user_entries(&self) -> usize {
        self.user_entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn indexes() {
        let mut c = Catalog::load(None).unwrap();
        assert_eq!(c.algos(), BTreeSet::from([Algo::Md5]));
        let hits: Vec<_> = c
            .by_digest(Algo::Md5, "6abece87d6db99d9fd6917203e253f91")
            .collect();
        assert_eq!(hits.len(), 1);
        assert!(c.knows_filename("vyos-1.5.1-kvm-amd64.qcow2"));
        assert!(c.by_size(1_421_410_304).count() >= 1);
        assert!(c.content_sizes().is_empty());
        let id = c.add_adhoc(
            source::COMMAND_LINE,
            Reference {
                label: "--sha256".into(),
                digests: BTreeMap::from([(Algo::Sha256, "a".repeat(64))]),
                ..Reference::default()
            },
        );
        assert_eq!(id, EntryId::Adhoc(0));
        assert!(c.algos().contains(&Algo::Sha256));
        assert_eq!(c.expected().count(), 1);
        assert_eq!(c.get(id).unwrap().reference.label, "--sha256");
        assert!(c.user_path().is_none());
    }
}
