//! The squashfs superblock: parsed and checked against the source size.

use crate::bytes::{le16, le32};
use crate::FsError;

use super::{corrupt, le64, Compressor, ABSENT};

/// The superblock fields this reader uses.
#[derive(Debug, Clone)]
pub struct Superblock {
    /// Inode count.
    pub inodes: u32,
    /// Creation time, Unix seconds.
    pub mkfs_time: u32,
    /// Data block size.
    pub block_size: u32,
    /// log2 of the block size.
    pub block_log: u16,
    /// Fragment count.
    pub fragments: u32,
    /// Compressor.
    pub compressor: Compressor,
    /// Flags (`SQUASHFS_NOI` …).
    pub flags: u16,
    /// Entries of the uid/gid table.
    pub no_ids: u16,
    /// Root inode reference.
    pub root_inode: u64,
    /// Bytes of the image in use.
    pub bytes_used: u64,
    /// Table starts (absolute byte offsets; `u64::MAX` when absent).
    pub id_table_start: u64,
    /// Extended attribute id table.
    pub xattr_id_table_start: u64,
    /// Inode table.
    pub inode_table_start: u64,
    /// Directory table.
    pub directory_table_start: u64,
    /// Fragment table (its index of metadata block pointers).
    pub fragment_table_start: u64,
    /// NFS export table.
    pub lookup_table_start: u64,
}

impl Superblock {
    /// Parses and checks the 96-byte superblock against a source of `len`
    /// bytes.
    ///
    /// # Errors
    /// [`FsError::NotThisFs`] without the `hsqs` magic;
    /// [`FsError::Unsupported`] for other versions or an unknown compressor;
    /// [`FsError::Corrupt`] for inconsistent fields.
    pub fn parse(b: &[u8], len: u64) -> Result<Self, FsError> {
        match b.get(0..4) {
            Some(b"hsqs") => {}
            Some(b"sqsh") => {
                return Err(FsError::Unsupported(
                    "big-endian squashfs (version 3 or older)".into(),
                ))
            }
            _ => return Err(FsError::NotThisFs("squashfs")),
        }
        let (major, minor) = (le16(b, 28), le16(b, 30));
        if (major, minor) != (4, 0) {
            return Err(FsError::Unsupported(format!(
                "squashfs version {major}.{minor} (only 4.0 is read)"
            )));
        }
        let comp_id = le16(b, 20);
        let compressor = Compressor::from_id(comp_id)
            .ok_or_else(|| FsError::Unsupported(format!("squashfs compression id {comp_id}")))?;
        let sb = Self {
            inodes: le32(b, 4),
            mkfs_time: le32(b, 8),
            block_size: le32(b, 12),
            fragments: le32(b, 16),
            compressor,
            block_log: le16(b, 22),
            flags: le16(b, 24),
            no_ids: le16(b, 26),
            root_inode: le64(b, 32),
            bytes_used: le64(b, 40),
            id_table_start: le64(b, 48),
            xattr_id_table_start: le64(b, 56),
            inode_table_start: le64(b, 64),
            directory_table_start: le64(b, 72),
            fragment_table_start: le64(b, 80),
            lookup_table_start: le64(b, 88),
        };
        if !(12..=20).contains(&sb.block_log) || sb.block_size != 1 << sb.block_log {
            return Err(corrupt(format!(
                "squashfs block size {} (log {})",
                sb.block_size, sb.block_log
            )));
        }
        if sb.bytes_used > len {
            return Err(corrupt(format!(
                "squashfs says it uses {} bytes; the volume has {len} (truncated image?)",
                sb.bytes_used
            )));
        }
        if sb.no_ids == 0 {
            return Err(corrupt("squashfs has an empty uid/gid table"));
        }
        let used = sb.bytes_used;
        if sb.inode_table_start < 96
            || sb.inode_table_start >= sb.directory_table_start
            || sb.directory_table_start >= used
        {
            return Err(corrupt(format!(
                "squashfs inode table {:#x} / directory table {:#x} outside the image ({used} bytes)",
                sb.inode_table_start, sb.directory_table_start
            )));
        }
        if sb.id_table_start >= used || sb.id_table_start < sb.directory_table_start {
            return Err(corrupt(format!(
                "squashfs id table at {:#x} outside the image",
                sb.id_table_start
            )));
        }
        if sb.fragments > 0 && sb.fragment_table_start >= used {
            return Err(corrupt(format!(
                "squashfs fragment table at {:#x} outside the image",
                sb.fragment_table_start
            )));
        }
        if sb.xattr_id_table_start != ABSENT && sb.xattr_id_table_start >= used {
            return Err(corrupt(format!(
                "squashfs xattr table at {:#x} outside the image",
                sb.xattr_id_table_start
            )));
        }
        if (sb.root_inode >> 16) >= sb.directory_table_start - sb.inode_table_start {
            return Err(corrupt("squashfs root inode outside the inode table"));
        }
        Ok(sb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A superblock laid out as mksquashfs writes one for a tiny image.
    fn sb() -> Vec<u8> {
        let mut b = vec![0u8; 96];
        b[0..4].copy_from_slice(b"hsqs");
        b[4..8].copy_from_slice(&3u32.to_le_bytes()); // inodes
        b[12..16].copy_from_slice(&4096u32.to_le_bytes());
        b[20..22].copy_from_slice(&1u16.to_le_bytes()); // gzip
        b[22..24].copy_from_slice(&12u16.to_le_bytes());
        b[26..28].copy_from_slice(&1u16.to_le_bytes()); // ids
        b[28..30].copy_from_slice(&4u16.to_le_bytes());
        b[40..48].copy_from_slice(&1000u64.to_le_bytes()); // bytes used
        b[48..56].copy_from_slice(&900u64.to_le_bytes()); // id table
        b[56..64].copy_from_slice(&u64::MAX.to_le_bytes()); // no xattrs
        b[64..72].copy_from_slice(&200u64.to_le_bytes()); // inodes
        b[72..80].copy_from_slice(&400u64.to_le_bytes()); // directories
        b[80..88].copy_from_slice(&u64::MAX.to_le_bytes());
        b[88..96].copy_from_slice(&u64::MAX.to_le_bytes());
        b
    }

    #[test]
    fn superblock_checks() {
        let ok = Superblock::parse(&sb(), 1000).unwrap();
        assert_eq!((ok.block_size, ok.compressor), (4096, Compressor::Gzip));
        let bad = |at: usize, v: &[u8], len: u64| {
            let mut b = sb();
            b[at..at + v.len()].copy_from_slice(v);
            Superblock::parse(&b, len)
        };
        assert!(matches!(bad(0, b"hsqt", 1000), Err(FsError::NotThisFs(_))));
        assert!(matches!(
            bad(28, &3u16.to_le_bytes(), 1000),
            Err(FsError::Unsupported(_))
        ));
        assert!(matches!(
            bad(20, &9u16.to_le_bytes(), 1000),
            Err(FsError::Unsupported(_))
        ));
        assert!(matches!(
            bad(12, &4097u32.to_le_bytes(), 1000),
            Err(FsError::Corrupt(_))
        ));
        assert!(matches!(
            bad(22, &13u16.to_le_bytes(), 1000),
            Err(FsError::Corrupt(_))
        ));
        assert!(matches!(bad(0, b"hsqs", 999), Err(FsError::Corrupt(_))));
        assert!(matches!(
            bad(26, &0u16.to_le_bytes(), 1000),
            Err(FsError::Corrupt(_))
        ));
        assert!(matches!(
            bad(64, &500u64.to_le_bytes(), 1000),
            Err(FsError::Corrupt(_))
        ));
        assert!(matches!(
            bad(48, &100u64.to_le_bytes(), 1000),
            Err(FsError::Corrupt(_))
        ));
        assert!(matches!(
            bad(16, &1u32.to_le_bytes(), 1000),
            Err(FsError::Corrupt(_))
        ));
        assert!(matches!(
            bad(56, &5000u64.to_le_bytes(), 1000),
            Err(FsError::Corrupt(_))
        ));
        assert!(matches!(
            bad(32, &(200u64 << 16).to_le_bytes(), 1000),
            Err(FsError::Corrupt(_))
        ));
    }
}
