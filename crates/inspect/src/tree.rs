//! One bounded walk of a guest filesystem, indexed by path, so every later
//! question ("is there a `/etc/ld.so.preload`?", "which files are setuid?",
//! "what does `/bin/ls` resolve to?") is answered without touching the
//! directories again.
//!
//! Symlinks are resolved against the walked tree only: an absolute target
//! is taken from the guest's root, `..` never climbs above it, and the hops
//! are bounded, so a hostile link can neither leave the guest nor loop.

use std::collections::{HashMap, HashSet};

use qvet_guestfs::{FileSystem, FileType, FsError, Metadata, NodeId};

/// Entries walked before the walk stops (and says so).
pub const MAX_ENTRIES: usize = 2_000_000;
/// Directory depth walked.
pub const MAX_DEPTH: usize = 64;
/// Symlinks followed while resolving one path.
pub const MAX_HOPS: usize = 40;

/// One walked entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Absolute guest path (bytes, `/`-separated, no trailing `/`).
    pub path: Vec<u8>,
    /// Its metadata.
    pub meta: Metadata,
    /// The target, for symlinks.
    pub link: Option<Vec<u8>>,
}

impl Entry {
    /// Whether it is a regular file.
    pub fn is_file(&self) -> bool {
        self.meta.kind == FileType::File
    }

    /// Permission and special bits (`st_mode & 0o7777`).
    pub fn perm(&self) -> u32 {
        self.meta.mode & 0o7777
    }
}

/// What reading a guest file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// The whole content.
    Content(Vec<u8>),
    /// Larger than the bound asked for: not read.
    TooLarge(u64),
    /// No such path (after resolving symlinks), or not a regular file.
    Missing,
    /// The filesystem refused (corrupt, encrypted …).
    Failed(String),
}

impl Read {
    /// The content, when read whole.
    pub fn content(&self) -> Option<&[u8]> {
        match self {
            Self::Content(c) => Some(c),
            _ => None,
        }
    }
}

/// A walked filesystem.
pub struct Tree<'fs> {
    fs: &'fs dyn FileSystem,
    entries: Vec<Entry>,
    index: HashMap<Vec<u8>, usize>,
    /// Why the walk is incomplete (entry bound, depth, unreadable
    /// directories); empty when every directory was read.
    pub incomplete: Vec<String>,
}

impl<'fs> Tree<'fs> {
    /// Walks `fs` from its root, bounded by [`MAX_ENTRIES`] and
    /// [`MAX_DEPTH`]; a directory reached twice (hostile hard-linked
    /// directories) is listed once.
    ///
    /// # Errors
    /// The root cannot be read.
    pub fn walk(fs: &'fs dyn FileSystem) -> Result<Self, FsError> {
        let root = fs.root();
        let root_meta = fs.metadata(root)?;
        let mut tree = Tree {
            fs,
            entries: vec![Entry {
                path: b"/".to_vec(),
                meta: root_meta,
                link: None,
            }],
            index: HashMap::new(),
            incomplete: Vec::new(),
        };
        let mut seen: HashSet<NodeId> = HashSet::from([root]);
        let mut stack: Vec<(NodeId, Vec<u8>, usize)> = vec![(root, Vec::new(), 0)];
        while let Some((dir, prefix, depth)) = stack.pop() {
            let listing = match fs.read_dir(dir) {
                Ok(l) => l,
                Err(e) => {
                    tree.incomplete
                        .push(format!("{}: {e}", shown(&prefix_or_root(&prefix))));
                    continue;
                }
            };
            for child in listing {
                if tree.entries.len() >= MAX_ENTRIES {
                    tree.incomplete
                        .push(format!("walk stopped after {MAX_ENTRIES} entries"));
                    stack.clear();
                    break;
                }
                if child.name.is_empty() || child.name.contains(&b'/') {
                    continue;
                }
                let mut path = prefix.clone();
                path.push(b'/');
                path.extend_from_slice(&child.name);
                let meta = match fs.metadata(child.id) {
                    Ok(m) => m,
                    Err(e) => {
                        tree.incomplete.push(format!("{}: {e}", shown(&path)));
                        continue;
                    }
                };
                let link = (meta.kind == FileType::Symlink)
                    .then(|| fs.read_link(child.id).ok())
                    .flatten();
                if meta.kind == FileType::Dir {
                    if depth + 1 >= MAX_DEPTH {
                        tree.incomplete
                            .push(format!("{}: deeper than {MAX_DEPTH} levels", shown(&path)));
                    } else if seen.insert(child.id) {
                        stack.push((child.id, path.clone(), depth + 1));
                    }
                }
                tree.entries.push(Entry { path, meta, link });
            }
        }
        tree.entries.sort_by(|a, b| a.path.cmp(&b.path));
        tree.index = tree
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.path.clone(), i))
            .collect();
        Ok(tree)
    }

    /// The filesystem walked.
    pub fn fs(&self) -> &'fs dyn FileSystem {
        self.fs
    }

    /// Every entry, sorted by path.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry at exactly `path` (no symlink resolution).
    pub fn get(&self, path: &[u8]) -> Option<&Entry> {
        self.index.get(path).and_then(|&i| self.entries.get(i))
    }

    /// Entries directly inside directory `dir` (as walked), sorted by name.
    pub fn children(&self, dir: &[u8]) -> Vec<&Entry> {
        let dir = self.resolve(dir).unwrap_or_else(|| dir.to_vec());
        let depth = |p: &[u8]| p.iter().filter(|&&b| b == b'/').count();
        // Direct children have one more `/` than the directory itself
        // (the root, `/`, already has one).
        let want = if dir == b"/" { 1 } else { depth(&dir) + 1 };
        self.under(&dir)
            .into_iter()
            .filter(|e| depth(&e.path) == want)
            .collect()
    }

    /// Every entry under directory `dir` (recursively), sorted by path.
    pub fn under(&self, dir: &[u8]) -> Vec<&Entry> {
        let mut prefix = dir.to_vec();
        if prefix.last() != Some(&b'/') {
            prefix.push(b'/');
        }
        let start = self.entries.partition_point(|e| e.path < prefix);
        self.entries
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|e| e.path.starts_with(&prefix))
            // The root's own entry is "/", the prefix itself: not under it.
            .filter(|e| e.path.len() > prefix.len())
            .collect()
    }

    /// The walked path `path` names once every symlink in it is followed
    /// (the last one too), inside the guest; `None` when it leads nowhere,
    /// loops or exceeds [`MAX_HOPS`].
    pub fn resolve(&self, path: &[u8]) -> Option<Vec<u8>> {
        self.resolve_with(path, true)
    }

    /// As [`Tree::resolve`], following the last component's symlink only
    /// when `follow_last`.
    pub fn resolve_with(&self, path: &[u8], follow_last: bool) -> Option<Vec<u8>> {
        let mut done: Vec<Vec<u8>> = Vec::new();
        let mut pending: Vec<Vec<u8>> = components(path).into_iter().rev().collect();
        let mut hops = 0usize;
        while let Some(comp) = pending.pop() {
            if comp == b"." {
                continue;
            }
            if comp == b".." {
                done.pop();
                continue;
            }
            done.push(comp);
            let here = join(&done);
            let entry = self.get(&here)?;
            let last = pending.is_empty();
            if let (Some(target), true) = (&entry.link, !last || follow_last) {
                hops += 1;
                if hops > MAX_HOPS {
                    return None;
                }
                done.pop();
                if target.first() == Some(&b'/') {
                    done.clear();
                }
                pending.extend(components(target).into_iter().rev());
            }
        }
        Some(join(&done))
    }

    /// The entry `path` resolves to (symlinks followed inside the guest).
    pub fn lookup(&self, path: &[u8]) -> Option<&Entry> {
        self.resolve(path).and_then(|p| self.get(&p))
    }

    /// Reads the regular file `path` resolves to, whole, when it is at most
    /// `max` bytes.
    pub fn read(&self, path: &[u8], max: u64) -> Read {
        match self.lookup(path) {
            Some(e) if e.is_file() => self.read_entry(e, max),
            _ => Read::Missing,
        }
    }

    /// Reads a walked regular file whole, when it is at most `max` bytes.
    pub fn read_entry(&self, entry: &Entry, max: u64) -> Read {
        if entry.meta.size > max {
            return Read::TooLarge(entry.meta.size);
        }
        let Ok(len) = usize::try_from(entry.meta.size) else {
            return Read::TooLarge(entry.meta.size);
        };
        let mut buf = vec![0u8; len];
        let mut filled = 0usize;
        while filled < len {
            let Some(rest) = buf.get_mut(filled..) else {
                break;
            };
            match self.fs.read(entry.meta.id, filled as u64, rest) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return Read::Failed(e.to_string()),
            }
        }
        buf.truncate(filled);
        Read::Content(buf)
    }

    /// Streams a walked regular file through `sink` in pieces (for hashing
    /// large files without holding them).
    ///
    /// # Errors
    /// The filesystem's read error.
    pub fn stream(&self, entry: &Entry, sink: &mut dyn FnMut(&[u8])) -> Result<u64, FsError> {
        let mut buf = vec![0u8; 256 << 10];
        let mut offset = 0u64;
        loop {
            let n = self.fs.read(entry.meta.id, offset, &mut buf)?;
            if n == 0 {
                return Ok(offset);
            }
            sink(buf.get(..n).unwrap_or_default());
            offset += n as u64;
        }
    }

    /// Files matching a simple glob (`*`, `?` within one component; no
    /// `**`), for includes named inside the guest ("/etc/ssh/sshd_config.d/*.conf"),
    /// sorted by path.
    pub fn glob(&self, pattern: &[u8]) -> Vec<Vec<u8>> {
        let comps = components(pattern);
        let mut current: Vec<Vec<u8>> = vec![b"/".to_vec()];
        for (i, comp) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let mut next = Vec::new();
            for dir in &current {
                if !comp.iter().any(|b| matches!(b, b'*' | b'?' | b'[')) {
                    let p = join_under(dir, comp);
                    if self.lookup(&p).is_some() {
                        next.push(p);
                    }
                    continue;
                }
                for child in self.children(dir) {
                    let name = child.path.rsplit(|&b| b == b'/').next().unwrap_or_default();
                    if glob_match(comp, name) && (last || self.lookup(&child.path).is_some()) {
                        next.push(join_under(dir, name));
                    }
                }
            }
            current = next;
            if current.len() > 4096 {
                current.truncate(4096);
            }
        }
        current.sort();
        current.dedup();
        current
    }
}

fn prefix_or_root(prefix: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        b"/".to_vec()
    } else {
        prefix.to_vec()
    }
}

/// A guest path for messages.
pub fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn join(comps: &[Vec<u8>]) -> Vec<u8> {
    if comps.is_empty() {
        return b"/".to_vec();
    }
    let mut out = Vec::new();
    for c in comps {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    out
}

fn join_under(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = if dir == b"/" {
        Vec::new()
    } else {
        dir.to_vec()
    };
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// Shell-style match of one path component: `*`, `?`, `[abc]`, `[a-z]`,
/// `[!x]`; iterative with backtracking to the last `*`, so no pattern is
/// exponential.
pub fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let c = name.get(n).copied().unwrap_or(0);
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some(b'?') => {
                p += 1;
                n += 1;
                continue;
            }
            Some(b'[') => {
                if let Some((matched, len)) = class(pattern.get(p..).unwrap_or_default(), c) {
                    if matched {
                        p += len;
                        n += 1;
                        continue;
                    }
                } else if c == b'[' {
                    p += 1;
                    n += 1;
                    continue;
                }
            }
            Some(&lit) if lit == c => {
                p += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|&b| b == b'*')
}

/// A `[...]` class at the start of `pat`: whether `c` matches, and the
/// class's length; `None` when unterminated.
fn class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1usize;
    let negate = matches!(pat.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let b = *pat.get(i)?;
        if b == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pat.get(i + 1) == Some(&b'-') && pat.get(i + 2).is_some_and(|&e| e != b']') {
            let e = *pat.get(i + 2)?;
            matched |= (b..=e).contains(&c);
            i += 3;
        } else {
            matched |= b == c;
            i += 1;
        }
    }
}

/// A directory of a filesystem seen as a filesystem of its own (its root
/// is that directory), so a layer such as VyOS's `/boot/<image>/rw` can be
/// walked and judged like a root filesystem. Symlinks then resolve inside
/// the directory, as they do in the overlay the layer belongs to.
pub struct SubFs<'a> {
    fs: &'a dyn FileSystem,
    root: NodeId,
}

impl<'a> SubFs<'a> {
    /// The directory `root` of `fs` as a filesystem.
    pub fn new(fs: &'a dyn FileSystem, root: NodeId) -> Self {
        Self { fs, root }
    }
}

impl FileSystem for SubFs<'_> {
    fn kind(&self) -> &'static str {
        self.fs.kind()
    }
    fn root(&self) -> NodeId {
        self.root
    }
    fn metadata(&self, id: NodeId) -> Result<Metadata, FsError> {
        self.fs.metadata(id)
    }
    fn read_dir(&self, id: NodeId) -> Result<Vec<qvet_guestfs::DirEntry>, FsError> {
        self.fs.read_dir(id)
    }
    fn read(&self, id: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        self.fs.read(id, offset, buf)
    }
    fn read_link(&self, id: NodeId) -> Result<Vec<u8>, FsError> {
        self.fs.read_link(id)
    }
    fn find_entry(
        &self,
        dir: NodeId,
        name: &[u8],
    ) -> Result<Option<qvet_guestfs::DirEntry>, FsError> {
        self.fs.find_entry(dir, name)
    }
    fn xattrs(&self, id: NodeId) -> Result<Vec<qvet_guestfs::xattr::Xattr>, FsError> {
        self.fs.xattrs(id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn glob_matches_like_the_shell() {
        assert!(glob_match(b"*.conf", b"a.conf"));
        assert!(!glob_match(b"*.conf", b"a.conf~"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(glob_match(b"[0-9]*", b"10-x"));
        assert!(!glob_match(b"[!0-9]*", b"10-x"));
        assert!(glob_match(b"*", b""));
        assert!(!glob_match(b"x", b""));
        // No exponential blow-up on many stars.
        let name = vec![b'a'; 200];
        assert!(!glob_match(b"*a*a*a*a*a*a*a*a*a*b", &name));
    }
}
