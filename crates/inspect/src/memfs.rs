//! An in-memory [`FileSystem`] built from a list of paths, so rules can be
//! tested (and fuzzed) on a guest tree without building a disk image. The
//! integration tests build real ext4 images; this is for unit tests.

use std::collections::BTreeMap;

use qvet_guestfs::{DirEntry, FileSystem, FileType, FsError, Metadata, NodeId};

/// One node.
#[derive(Debug, Clone)]
struct Node {
    meta: Metadata,
    data: Vec<u8>,
    children: BTreeMap<Vec<u8>, NodeId>,
}

/// An in-memory filesystem.
#[derive(Debug, Clone)]
pub struct MemFs {
    nodes: Vec<Node>,
}

impl Default for MemFs {
    fn default() -> Self {
        Self::new()
    }
}

impl MemFs {
    /// An empty filesystem (just `/`).
    pub fn new() -> Self {
        let mut fs = MemFs { nodes: Vec::new() };
        fs.push(FileType::Dir, 0o40755, Vec::new());
        fs
    }

    fn push(&mut self, kind: FileType, mode: u32, data: Vec<u8>) -> NodeId {
        let id = NodeId(self.nodes.len() as u64);
        self.nodes.push(Node {
            meta: Metadata {
                id,
                kind,
                size: data.len() as u64,
                mode,
                uid: 0,
                gid: 0,
                nlink: 1,
                mtime: 1_700_000_000,
                atime: None,
                ctime: Some(1_700_000_000),
                crtime: None,
            },
            data,
            children: BTreeMap::new(),
        });
        id
    }

    /// The directory `path`, created with its parents.
    fn dir(&mut self, path: &[u8]) -> NodeId {
        let mut cur = NodeId(0);
        for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            let existing = self
                .nodes
                .get(cur.0 as usize)
                .and_then(|n| n.children.get(comp).copied());
            cur = match existing {
                Some(id) => id,
                None => {
                    let id = self.push(FileType::Dir, 0o40755, Vec::new());
                    if let Some(n) = self.nodes.get_mut(cur.0 as usize) {
                        n.children.insert(comp.to_vec(), id);
                    }
                    id
                }
            };
        }
        cur
    }

    fn add(&mut self, path: &[u8], kind: FileType, mode: u32, data: Vec<u8>) -> NodeId {
        let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (
                path.get(..i).unwrap_or_default(),
                path.get(i + 1..).unwrap_or_default(),
            ),
            None => (&b""[..], path),
        };
        let dir = self.dir(parent);
        let id = self.push(kind, mode, data);
        if let Some(n) = self.nodes.get_mut(dir.0 as usize) {
            n.children.insert(name.to_vec(), id);
        }
        id
    }

    /// Adds a regular file with permission bits `perm`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> &mut Self {
        self.add(
            path.as_bytes(),
            FileType::File,
            0o100000 | perm,
            data.to_vec(),
        );
        self
    }

    /// Adds a symlink.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.add(
            path.as_bytes(),
            FileType::Symlink,
            0o120777,
            target.as_bytes().to_vec(),
        );
        self
    }

    /// Adds a character device (an overlayfs whiteout in an upper layer).
    pub fn char_device(&mut self, path: &str) -> &mut Self {
        self.add(path.as_bytes(), FileType::CharDev, 0o020000, Vec::new());
        self
    }

    /// Adds an (empty) directory.
    pub fn mkdir(&mut self, path: &str) -> &mut Self {
        self.dir(path.as_bytes());
        self
    }

    fn node(&self, id: NodeId) -> Result<&Node, FsError> {
        usize::try_from(id.0)
            .ok()
            .and_then(|i| self.nodes.get(i))
            .ok_or_else(|| FsError::NotFound(format!("node {}", id.0)))
    }
}

impl FileSystem for MemFs {
    fn kind(&self) -> &'static str {
        "memfs"
    }
    fn root(&self) -> NodeId {
        NodeId(0)
    }
    fn metadata(&self, id: NodeId) -> Result<Metadata, FsError> {
        Ok(self.node(id)?.meta.clone())
    }
    fn read_dir(&self, id: NodeId) -> Result<Vec<DirEntry>, FsError> {
        let n = self.node(id)?;
        if n.meta.kind != FileType::Dir {
            return Err(FsError::NotADirectory(format!("node {}", id.0)));
        }
        n.children
            .iter()
            .map(|(name, &cid)| {
                Ok(DirEntry {
                    name: name.clone(),
                    id: cid,
                    kind: self.node(cid)?.meta.kind,
                })
            })
            .collect()
    }
    fn read(&self, id: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let n = self.node(id)?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(n.data.len());
        let src = n.data.get(start..).unwrap_or_default();
        let len = src.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..len), src.get(..len)) {
            dst.copy_from_slice(src);
        }
        Ok(len)
    }
    fn read_link(&self, id: NodeId) -> Result<Vec<u8>, FsError> {
        let n = self.node(id)?;
        if n.meta.kind != FileType::Symlink {
            return Err(FsError::Corrupt("not a symlink".into()));
        }
        Ok(n.data.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::tree::Tree;

    #[test]
    fn tree_resolves_symlinks_inside_the_guest() {
        let mut fs = MemFs::new();
        fs.file("/usr/bin/ls", 0o755, b"ELF")
            .symlink("/bin", "usr/bin")
            .symlink("/etc/escape", "../../../../usr/bin/ls")
            .symlink("/etc/loop", "/etc/loop")
            .file("/etc/ssh/sshd_config.d/a.conf", 0o644, b"x")
            .file("/etc/ssh/sshd_config.d/b.txt", 0o644, b"x");
        let t = Tree::walk(&fs).unwrap();
        assert_eq!(t.resolve(b"/bin/ls").unwrap(), b"/usr/bin/ls");
        // `..` never climbs above the root.
        assert_eq!(t.resolve(b"/etc/escape").unwrap(), b"/usr/bin/ls");
        assert_eq!(t.resolve(b"/etc/loop"), None);
        assert_eq!(
            t.read(b"/bin/ls", 10),
            crate::tree::Read::Content(b"ELF".to_vec())
        );
        assert_eq!(t.read(b"/bin/ls", 2), crate::tree::Read::TooLarge(3));
        assert_eq!(
            t.glob(b"/etc/ssh/sshd_config.d/*.conf"),
            vec![b"/etc/ssh/sshd_config.d/a.conf".to_vec()]
        );
        assert_eq!(t.children(b"/etc/ssh/sshd_config.d").len(), 2);
        assert_eq!(t.children(b"/").len(), 3);
    }
}
