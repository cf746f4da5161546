//! Extended attributes of ext2/3/4 inodes, decoded as `fs/ext4/xattr.c`
//! lays them out:
//!
//! - the in-inode area after `i_extra_isize` (a 4-byte header with the
//!   magic, then entries; values are offsets from the first entry, inside
//!   the inode);
//! - the external block `i_file_acl` (a 32-byte header with the magic and
//!   `h_blocks` = 1, entries from offset 32; values are offsets from the
//!   block start);
//! - values kept in their own inode (`ea_inode`: `e_value_inum` ≠ 0), read
//!   by the caller through [`resolve`].
//!
//! Every entry list is bounded ([`MAX_ENTRIES`]) and advances by at least
//! 16 bytes per entry, names and values are checked against their buffer
//! and against each other as the kernel's `check_xattrs` does; anything
//! else is [`FsError::Corrupt`].

use crate::bytes::{byte, le16, le32};
use crate::xattr::{Xattr, MAX_ENTRIES};
use crate::FsError;

/// Magic of both the in-inode header and the block header.
pub(crate) const MAGIC: u32 = 0xEA02_0000;
/// Largest value read from an EA inode (the VFS `XATTR_SIZE_MAX`).
pub(crate) const MAX_EA_INODE_VALUE: usize = 64 << 10;
/// EA-inode value bytes read for one node in all.
const MAX_EA_INODE_TOTAL: usize = 16 << 20;
/// Size of `struct ext4_xattr_entry` before the name.
const ENTRY: usize = 16;
/// Size of `struct ext4_xattr_header` (block).
const BLOCK_HEADER: usize = 32;

/// Where an entry's value is.
#[derive(Debug)]
pub(crate) enum Value {
    /// In the same buffer (copied out).
    Stored(Vec<u8>),
    /// In EA inode `ino`, `size` bytes (≤ [`MAX_EA_INODE_VALUE`]).
    Inode { ino: u64, size: usize },
}

/// One decoded entry, its value possibly not yet read.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Full name, prefix included.
    pub(crate) name: Vec<u8>,
    pub(crate) value: Value,
}

fn corrupt(msg: String) -> FsError {
    FsError::Corrupt(msg)
}

/// The name prefix of name index `index`, as the kernel's handlers
/// (`ext4_xattr_handler_map`, plus 8 = richacl as e2fsprogs); unknown
/// indexes have none.
pub(crate) fn prefix(index: u8) -> &'static [u8] {
    match index {
        1 => b"user.",
        2 => b"system.posix_acl_access",
        3 => b"system.posix_acl_default",
        4 => b"trusted.",
        6 => b"security.",
        7 => b"system.",
        8 => b"system.richacl",
        10 => b"gnu.",
        _ => b"",
    }
}

/// Entries of the in-inode area. `raw` is the whole on-disk inode
/// (`inode_size` bytes) and `extra_isize` its `i_extra_isize`; `what`
/// names the inode in errors.
///
/// # Errors
/// [`FsError::Corrupt`] for an impossible `i_extra_isize` or a bad entry.
pub(crate) fn ibody(
    raw: &[u8],
    extra_isize: usize,
    ea_inode: bool,
    what: &str,
) -> Result<Vec<Entry>, FsError> {
    if raw.len() <= 128 {
        return Ok(Vec::new());
    }
    let start = 128usize.saturating_add(extra_isize);
    if !extra_isize.is_multiple_of(4) || start > raw.len() {
        return Err(corrupt(format!("{what}: i_extra_isize {extra_isize}")));
    }
    if start.saturating_add(4) > raw.len() || le32(raw, start) != MAGIC {
        return Ok(Vec::new());
    }
    let first = start + 4;
    entries(raw, first, first, ea_inode, what)
}

/// Entries of an external attribute block.
///
/// # Errors
/// [`FsError::Corrupt`] for a bad header (magic, `h_blocks` ≠ 1) or entry.
pub(crate) fn block(data: &[u8], ea_inode: bool, what: &str) -> Result<Vec<Entry>, FsError> {
    if data.len() < BLOCK_HEADER + 4 || le32(data, 0) != MAGIC {
        return Err(corrupt(format!("{what}: bad magic {:#x}", le32(data, 0))));
    }
    let blocks = le32(data, 8);
    if blocks != 1 {
        return Err(corrupt(format!("{what}: h_blocks {blocks}")));
    }
    entries(data, BLOCK_HEADER, 0, ea_inode, what)
}

/// Whether the `metadata_csum` checksum of attribute block number
/// `block` holding `data` matches (`ext4_xattr_block_csum`: the filesystem
/// seed, the block number as le64, the block with `h_checksum` zeroed).
pub(crate) fn block_checksum_ok(seed: u32, block: u64, data: &[u8]) -> bool {
    let crc = crate::ext::crc32c;
    let mut c = crc(seed, &block.to_le_bytes());
    c = crc(c, data.get(..16).unwrap_or_default());
    c = crc(c, &[0; 4]);
    c = crc(c, data.get(20..).unwrap_or_default());
    c == le32(data, 16)
}

/// Decodes the entry list starting at `first` in `buf` (which ends where
/// the location ends); stored values are at `base` + `e_value_offs`.
fn entries(
    buf: &[u8],
    first: usize,
    base: usize,
    ea_inode: bool,
    what: &str,
) -> Result<Vec<Entry>, FsError> {
    let end = buf.len();
    // Names: each entry advances by at least ENTRY bytes, so the walk ends.
    let mut at = Vec::new();
    let mut pos = first;
    loop {
        if pos.saturating_add(4) > end {
            return Err(corrupt(format!(
                "{what}: entry list runs past the end at offset {pos}"
            )));
        }
        if le32(buf, pos) == 0 {
            break;
        }
        if at.len() >= MAX_ENTRIES {
            return Err(corrupt(format!("{what}: more than {MAX_ENTRIES} entries")));
        }
        let name_len = usize::from(byte(buf, pos));
        let next = pos + ((ENTRY + name_len + 3) & !3);
        if next.saturating_add(4) > end {
            return Err(corrupt(format!(
                "{what}: entry at offset {pos} runs past the end"
            )));
        }
        let suffix = buf
            .get(pos + ENTRY..pos + ENTRY + name_len)
            .ok_or_else(|| corrupt(format!("{what}: entry name at offset {pos}")))?;
        if suffix.contains(&0) {
            return Err(corrupt(format!(
                "{what}: entry name at offset {pos} holds a NUL"
            )));
        }
        at.push((pos, suffix));
        pos = next;
    }
    // Values may not overlap the names (nor the terminating word).
    let names_end = pos + 4;
    let mut out = Vec::with_capacity(at.len());
    for (e, suffix) in at {
        let index = byte(buf, e + 1);
        let offs = usize::from(le16(buf, e + 2));
        let inum = le32(buf, e + 4);
        let size = le32(buf, e + 8);
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let mut name = prefix(index).to_vec();
        name.extend_from_slice(suffix);
        let shown = || String::from_utf8_lossy(&name).into_owned();
        let value = if inum != 0 {
            if !ea_inode {
                return Err(corrupt(format!(
                    "{what}: {} names value inode {inum} without the ea_inode feature",
                    shown()
                )));
            }
            if size > MAX_EA_INODE_VALUE {
                return Err(corrupt(format!(
                    "{what}: {} value of {size} bytes in inode {inum}",
                    shown()
                )));
            }
            Value::Inode {
                ino: u64::from(inum),
                size,
            }
        } else if size == 0 {
            Value::Stored(Vec::new())
        } else {
            let from = base.saturating_add(offs);
            let padded = size.saturating_add(3) & !3;
            let value = buf
                .get(from..from.saturating_add(size))
                .filter(|_| from >= names_end && from.saturating_add(padded) <= end)
                .ok_or_else(|| {
                    corrupt(format!(
                        "{what}: {} value of {size} bytes at offset {offs} out of bounds",
                        shown()
                    ))
                })?;
            Value::Stored(value.to_vec())
        };
        out.push(Entry { name, value });
    }
    Ok(out)
}

/// The attributes of `entries`, EA-inode values read by `read(ino, size)`
/// (which checks the inode), at most [`MAX_EA_INODE_TOTAL`] such bytes.
///
/// # Errors
/// `read`'s errors; [`FsError::Corrupt`] past the bound.
pub(crate) fn resolve(
    entries: Vec<Entry>,
    mut read: impl FnMut(u64, usize) -> Result<Vec<u8>, FsError>,
) -> Result<Vec<Xattr>, FsError> {
    let mut total = 0usize;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let value = match e.value {
            Value::Stored(v) => v,
            Value::Inode { ino, size } => {
                total = total.saturating_add(size);
                if total > MAX_EA_INODE_TOTAL {
                    return Err(corrupt(format!(
                        "more than {MAX_EA_INODE_TOTAL} bytes of xattr values in EA inodes"
                    )));
                }
                read(ino, size)?
            }
        };
        out.push(Xattr {
            name: e.name,
            value,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    /// An entry record: name index, name, value offset, inode, size.
    fn entry(index: u8, name: &[u8], offs: u16, inum: u32, size: u32) -> Vec<u8> {
        let mut e = vec![name.len() as u8, index];
        e.extend(offs.to_le_bytes());
        e.extend(inum.to_le_bytes());
        e.extend(size.to_le_bytes());
        e.extend(0u32.to_le_bytes());
        e.extend(name);
        while e.len() % 4 != 0 {
            e.push(0);
        }
        e
    }

    fn block_with(entries: &[Vec<u8>], values: &[(usize, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; 1024];
        b[..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        let mut pos = 32;
        for e in entries {
            b[pos..pos + e.len()].copy_from_slice(e);
            pos += e.len();
        }
        for (at, v) in values {
            b[*at..*at + v.len()].copy_from_slice(v);
        }
        b
    }

    #[test]
    fn decodes_a_block() {
        let b = block_with(
            &[
                entry(1, b"foo", 1000, 0, 3),
                entry(6, b"capability", 900, 0, 20),
            ],
            &[(1000, b"bar"), (900, &[7u8; 20])],
        );
        let list = resolve(block(&b, false, "t").unwrap(), |_, _| panic!()).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, b"user.foo");
        assert_eq!(list[0].value, b"bar");
        assert_eq!(list[1].name, b"security.capability");
        assert_eq!(list[1].value, [7u8; 20]);
    }

    #[test]
    fn unknown_index_keeps_the_raw_name_and_acl_names_are_whole() {
        let b = block_with(
            &[entry(42, b"odd", 0, 0, 0), entry(2, b"", 1000, 0, 4)],
            &[(1000, &[1, 0, 0, 0])],
        );
        let list = resolve(block(&b, false, "t").unwrap(), |_, _| panic!()).unwrap();
        assert_eq!(list[0].name, b"odd");
        assert_eq!(list[1].name, b"system.posix_acl_access");
    }

    #[test]
    fn rejects_bad_blocks() {
        let good = block_with(&[entry(1, b"a", 1000, 0, 3)], &[(1000, b"xyz")]);
        assert!(block(&good, false, "t").is_ok());
        let mut b = good.clone();
        b[0] ^= 1;
        assert!(block(&b, false, "t").is_err(), "magic");
        let mut b = good.clone();
        b[8] = 2;
        assert!(block(&b, false, "t").is_err(), "h_blocks");
        // Value past the end, overlapping the names, too large.
        for (offs, size) in [(1022u16, 3u32), (32, 3), (1000, 5000), (1000, u32::MAX)] {
            let b = block_with(&[entry(1, b"a", offs, 0, size)], &[]);
            assert!(block(&b, false, "t").is_err(), "{offs} {size}");
        }
        // EA inode without the feature, or too large.
        let b = block_with(&[entry(1, b"a", 0, 12, 3)], &[]);
        assert!(block(&b, false, "t").is_err());
        let b = block_with(&[entry(1, b"a", 0, 12, 65537)], &[]);
        assert!(block(&b, true, "t").is_err());
        // Names running off the end; a name with a NUL.
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[8] = 1;
        b[32] = 200;
        b[33] = 1;
        assert!(block(&b, false, "t").is_err());
        let b = block_with(&[entry(1, b"a\0b", 1000, 0, 0)], &[]);
        assert!(block(&b, false, "t").is_err());
        // No terminator: the list runs to the end of the block.
        let mut b = vec![0xFFu8; 1024];
        b[..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert!(block(&b, false, "t").is_err());
        // Too many entries in a large block.
        let e = entry(1, b"", 0, 0, 0);
        let mut b = vec![0u8; 65536];
        b[..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[8] = 1;
        for i in 0..2000 {
            b[32 + 16 * i..48 + 16 * i].copy_from_slice(&e);
        }
        assert!(block(&b, false, "t").is_err());
    }

    #[test]
    fn in_inode_values_are_relative_to_the_first_entry() {
        let mut raw = vec![0u8; 256];
        raw[128..130].copy_from_slice(&32u16.to_le_bytes());
        raw[160..164].copy_from_slice(&MAGIC.to_le_bytes());
        let e = entry(7, b"data", 60, 0, 4);
        raw[164..164 + e.len()].copy_from_slice(&e);
        raw[224..228].copy_from_slice(b"abcd");
        let list = resolve(ibody(&raw, 32, false, "t").unwrap(), |_, _| panic!()).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].name, b"system.data");
        assert_eq!(list[0].value, b"abcd");
        // No magic: none; odd or oversized i_extra_isize: corrupt.
        assert!(ibody(&raw, 28, false, "t").unwrap().is_empty());
        assert!(ibody(&raw, 30, false, "t").is_err());
        assert!(ibody(&raw, 200, false, "t").is_err());
        assert!(ibody(&raw[..128], 0, false, "t").unwrap().is_empty());
    }

    #[test]
    fn ea_inode_values_are_read_and_bounded() {
        let b = block_with(&[entry(1, b"big", 0, 13, 5)], &[]);
        let list = resolve(block(&b, true, "t").unwrap(), |ino, size| {
            assert_eq!((ino, size), (13, 5));
            Ok(b"hello".to_vec())
        })
        .unwrap();
        assert_eq!(list[0].value, b"hello");
        let many: Vec<Entry> = (0..300)
            .map(|i| Entry {
                name: vec![b'a'],
                value: Value::Inode {
                    ino: 20 + i,
                    size: MAX_EA_INODE_VALUE,
                },
            })
            .collect();
        assert!(resolve(many, |_, size| Ok(vec![0; size])).is_err());
    }
}
