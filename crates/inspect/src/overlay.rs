//! An overlay of two filesystems as the kernel's overlayfs presents them:
//! an upper directory (VyOS's `/boot/<image>/rw`, a live system's changes)
//! over a lower root (the read-only squashfs). A name in the upper layer
//! hides the lower one; directories present in both are merged unless the
//! upper one is opaque (`trusted.overlay.opaque` = `y`); a character device
//! in the upper layer is a whiteout (overlayfs writes them as 0/0 device
//! nodes, and a live system's `/dev` is never in its rw layer) and hides the
//! lower name.
//!
//! Node ids are the overlay's own: an index into a table of (upper, lower)
//! pairs, bounded by [`MAX_NODES`].

use std::collections::HashMap;
use std::sync::Mutex;

use qvet_guestfs::xattr::Xattr;
use qvet_guestfs::{DirEntry, FileSystem, FileType, FsError, Metadata, NodeId};

/// Nodes the overlay hands out (as many as a walk visits at most).
pub const MAX_NODES: usize = 4_000_000;

/// Which layer a node comes from (the upper wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Pair {
    upper: Option<NodeId>,
    lower: Option<NodeId>,
}

/// Two filesystems seen as one.
pub struct OverlayFs<'a> {
    upper: &'a dyn FileSystem,
    lower: &'a dyn FileSystem,
    nodes: Mutex<(Vec<Pair>, HashMap<Pair, u64>)>,
}

impl<'a> OverlayFs<'a> {
    /// `upper_root` of `upper` (a directory) over the root of `lower`.
    pub fn new(upper: &'a dyn FileSystem, upper_root: NodeId, lower: &'a dyn FileSystem) -> Self {
        let root = Pair {
            upper: Some(upper_root),
            lower: Some(lower.root()),
        };
        Self {
            upper,
            lower,
            nodes: Mutex::new((vec![root], HashMap::from([(root, 0)]))),
        }
    }

    fn pair(&self, id: NodeId) -> Result<Pair, FsError> {
        let nodes = self
            .nodes
            .lock()
            .map_err(|_| FsError::Corrupt("overlay node table poisoned".into()))?;
        usize::try_from(id.0)
            .ok()
            .and_then(|i| nodes.0.get(i).copied())
            .ok_or_else(|| FsError::Corrupt(format!("overlay node {} unknown", id.0)))
    }

    fn id_of(&self, p: Pair) -> Result<NodeId, FsError> {
        let mut nodes = self
            .nodes
            .lock()
            .map_err(|_| FsError::Corrupt("overlay node table poisoned".into()))?;
        if let Some(&i) = nodes.1.get(&p) {
            return Ok(NodeId(i));
        }
        if nodes.0.len() >= MAX_NODES {
            return Err(FsError::Corrupt(format!(
                "overlay: more than {MAX_NODES} nodes"
            )));
        }
        let i = nodes.0.len() as u64;
        nodes.0.push(p);
        nodes.1.insert(p, i);
        Ok(NodeId(i))
    }

    fn opaque(&self, upper: NodeId) -> bool {
        self.upper.xattrs(upper).is_ok_and(|x: Vec<Xattr>| {
            x.iter()
                .any(|a| a.name == b"trusted.overlay.opaque" && a.value == b"y")
        })
    }
}

impl FileSystem for OverlayFs<'_> {
    fn kind(&self) -> &'static str {
        "overlay"
    }

    fn root(&self) -> NodeId {
        NodeId(0)
    }

    fn metadata(&self, id: NodeId) -> Result<Metadata, FsError> {
        let p = self.pair(id)?;
        let mut md = match (p.upper, p.lower) {
            (Some(u), _) => self.upper.metadata(u)?,
            (None, Some(l)) => self.lower.metadata(l)?,
            (None, None) => return Err(FsError::Corrupt("overlay node with no layer".into())),
        };
        md.id = id;
        Ok(md)
    }

    fn read_dir(&self, id: NodeId) -> Result<Vec<DirEntry>, FsError> {
        let p = self.pair(id)?;
        let mut out: Vec<DirEntry> = Vec::new();
        let mut hidden: HashMap<Vec<u8>, ()> = HashMap::new();
        let mut upper_dirs: HashMap<Vec<u8>, NodeId> = HashMap::new();
        let mut lower_skip = false;
        if let Some(u) = p.upper {
            lower_skip = self.opaque(u);
            for e in self.upper.read_dir(u)? {
                if e.kind == FileType::CharDev {
                    hidden.insert(e.name, ());
                    continue;
                }
                hidden.insert(e.name.clone(), ());
                if e.kind == FileType::Dir {
                    upper_dirs.insert(e.name.clone(), e.id);
                    continue;
                }
                out.push(DirEntry {
                    id: self.id_of(Pair {
                        upper: Some(e.id),
                        lower: None,
                    })?,
                    ..e
                });
            }
        }
        let mut lower_dirs: HashMap<Vec<u8>, NodeId> = HashMap::new();
        if let (Some(l), false) = (p.lower, lower_skip) {
            for e in self.lower.read_dir(l)? {
                if e.kind == FileType::Dir {
                    lower_dirs.insert(e.name.clone(), e.id);
                }
                if hidden.contains_key(&e.name) {
                    continue;
                }
                out.push(DirEntry {
                    id: self.id_of(Pair {
                        upper: None,
                        lower: Some(e.id),
                    })?,
                    ..e
                });
            }
        }
        let mut names: Vec<Vec<u8>> = upper_dirs.keys().cloned().collect();
        names.sort();
        for name in names {
            let Some(&u) = upper_dirs.get(&name) else {
                continue;
            };
            let pair = Pair {
                upper: Some(u),
                lower: lower_dirs.get(&name).copied(),
            };
            out.push(DirEntry {
                name,
                id: self.id_of(pair)?,
                kind: FileType::Dir,
            });
        }
        Ok(out)
    }

    fn read(&self, id: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        match self.pair(id)? {
            Pair { upper: Some(u), .. } => self.upper.read(u, offset, buf),
            Pair { lower: Some(l), .. } => self.lower.read(l, offset, buf),
            _ => Ok(0),
        }
    }

    fn read_link(&self, id: NodeId) -> Result<Vec<u8>, FsError> {
        match self.pair(id)? {
            Pair { upper: Some(u), .. } => self.upper.read_link(u),
            Pair { lower: Some(l), .. } => self.lower.read_link(l),
            _ => Err(FsError::Corrupt("overlay node with no layer".into())),
        }
    }

    fn xattrs(&self, id: NodeId) -> Result<Vec<Xattr>, FsError> {
        match self.pair(id)? {
            Pair { upper: Some(u), .. } => self.upper.xattrs(u),
            Pair { lower: Some(l), .. } => self.lower.xattrs(l),
            _ => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memfs::MemFs;
    use crate::tree::Tree;

    #[test]
    fn upper_hides_and_merges() {
        let mut lower = MemFs::new();
        lower
            .file("/etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n")
            .file("/etc/motd", 0o644, b"vendor")
            .file("/usr/bin/ls", 0o755, b"ls")
            .file("/opt/gone/a", 0o644, b"a");
        let mut upper = MemFs::new();
        upper
            .file(
                "/rw/etc/passwd",
                0o644,
                b"root:x:0:0::/root:/bin/sh\nx:x:0:0::/:/bin/sh\n",
            )
            .file("/rw/etc/new", 0o644, b"new")
            .file("/rw/root/.ssh/authorized_keys", 0o600, b"k");
        upper.char_device("/rw/opt/gone");
        let rw = qvet_guestfs::lookup(&upper, b"/rw", true).unwrap();
        let fs = OverlayFs::new(&upper, rw, &lower);
        let tree = Tree::walk(&fs).unwrap();
        let paths: Vec<String> = tree
            .entries()
            .iter()
            .map(|e| String::from_utf8_lossy(&e.path).into_owned())
            .collect();
        assert_eq!(
            paths,
            [
                "/",
                "/etc",
                "/etc/motd",
                "/etc/new",
                "/etc/passwd",
                // /opt/gone is whited out: /opt stays, empty.
                "/opt",
                "/root",
                "/root/.ssh",
                "/root/.ssh/authorized_keys",
                "/usr",
                "/usr/bin",
                "/usr/bin/ls",
            ]
        );
        let passwd = tree.read(b"/etc/passwd", 1 << 20);
        assert!(
            passwd.content().unwrap().ends_with(b"x:x:0:0::/:/bin/sh\n"),
            "the upper copy wins"
        );
        assert_eq!(tree.read(b"/etc/motd", 100).content(), Some(&b"vendor"[..]));
    }
}
