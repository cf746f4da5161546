//! Extended attributes: the ext on-disk entry format (shared by the
//! in-inode area and the external attribute block) and the decoding of
//! `security.capability` (`vfs_cap_data`), which is how file capabilities
//! — a setuid without the bit — are stored.

use crate::bytes::{byte, le16, le32};

/// Entries read from one attribute area.
pub const MAX_ENTRIES: usize = 1024;

/// One extended attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    /// Full name with its namespace (`security.capability`, `user.x`).
    pub name: Vec<u8>,
    /// Value (empty when it lives in an EA inode, which is not read).
    pub value: Vec<u8>,
}

/// Namespace prefix of an ext name index (fs/ext4/xattr.c).
fn prefix(index: u8) -> &'static [u8] {
    match index {
        1 => b"user.",
        2 => b"system.posix_acl_access",
        3 => b"system.posix_acl_default",
        4 => b"trusted.",
        6 => b"security.",
        7 => b"system.",
        8 => b"system.richacl",
        _ => b"",
    }
}

/// Parses the entries of one ext attribute area: `buf` holds the area,
/// entries start at `first`, value offsets count from `value_base`. Stops
/// at the terminating zero word, at [`MAX_ENTRIES`], or at the first entry
/// that does not fit.
pub(crate) fn parse_entries(buf: &[u8], first: usize, value_base: usize) -> Vec<Xattr> {
    let mut out = Vec::new();
    let mut pos = first;
    while out.len() < MAX_ENTRIES {
        if pos + 16 > buf.len() || le32(buf, pos) == 0 {
            break;
        }
        let name_len = usize::from(byte(buf, pos));
        let index = byte(buf, pos + 1);
        let value_offs = usize::from(le16(buf, pos + 2));
        let value_inum = le32(buf, pos + 4);
        let value_size = le32(buf, pos + 8) as usize;
        let Some(name) = buf.get(pos + 16..pos + 16 + name_len) else {
            break;
        };
        let value = if value_inum != 0 {
            Vec::new()
        } else {
            match buf.get(value_base + value_offs..value_base + value_offs + value_size) {
                Some(v) => v.to_vec(),
                None => break,
            }
        };
        let mut full = prefix(index).to_vec();
        full.extend_from_slice(name);
        out.push(Xattr { name: full, value });
        // Entries are 4-byte aligned; each step moves forward.
        pos += (16 + name_len + 3) & !3;
    }
    out
}

/// A decoded `security.capability`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// `vfs_cap_data` revision (1, 2 or 3).
    pub version: u32,
    /// Permitted set (bit n = capability n).
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
    /// Whether the capabilities become effective at exec.
    pub effective: bool,
    /// Namespace root uid (revision 3).
    pub root_uid: Option<u32>,
}

/// Decodes `vfs_cap_data` (linux/capability.h): a magic word (revision in
/// the top byte, the effective flag in bit 0), then (permitted,
/// inheritable) u32 pairs, one for revision 1 and two (low, high) for 2 and
/// 3, then the root uid for 3.
pub fn decode_capability(v: &[u8]) -> Option<Capability> {
    let magic = u32::from_le_bytes(v.get(0..4)?.try_into().ok()?);
    let word = |i: usize| -> Option<u64> {
        Some(u64::from(u32::from_le_bytes(
            v.get(i..i + 4)?.try_into().ok()?,
        )))
    };
    let version = magic >> 24;
    let (permitted, inheritable, root_uid) = match (version, v.len()) {
        (1, 12) => (word(4)?, word(8)?, None),
        (2, 20) => (word(4)? | word(12)? << 32, word(8)? | word(16)? << 32, None),
        (3, 24) => (
            word(4)? | word(12)? << 32,
            word(8)? | word(16)? << 32,
            u32::try_from(word(20)?).ok(),
        ),
        _ => return None,
    };
    Some(Capability {
        version,
        permitted,
        inheritable,
        effective: magic & 1 != 0,
        root_uid,
    })
}

/// Capability names by bit (linux/capability.h).
const NAMES: [&str; 41] = [
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
];

/// The names of the capabilities in `mask` (unknown bits as `cap_<n>`).
pub fn capability_names(mask: u64) -> Vec<String> {
    (0..64u32)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| {
            NAMES
                .get(b as usize)
                .map_or_else(|| format!("cap_{b}"), |n| (*n).to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn capability_v2_net_raw_ep() {
        // setcap cap_net_raw+ep, as getfattr -e hex prints it.
        let v = [
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let c = decode_capability(&v).unwrap();
        assert_eq!(
            (c.version, c.effective, c.permitted, c.inheritable),
            (2, true, 1 << 13, 0)
        );
        assert_eq!(capability_names(c.permitted), vec!["cap_net_raw"]);
        assert_eq!(
            capability_names(1 << 21 | 1 << 50),
            vec!["cap_sys_admin", "cap_50"]
        );
        assert!(decode_capability(&v[..19]).is_none());
        assert!(decode_capability(&[0, 0, 0, 9]).is_none());
    }

    #[test]
    fn entries_bounded_and_prefixed() {
        // One entry "capability" in index 6 with a 4-byte value at offset 64.
        let mut b = vec![0u8; 96];
        b[0] = 10;
        b[1] = 6;
        b[2..4].copy_from_slice(&64u16.to_le_bytes());
        b[8..12].copy_from_slice(&4u32.to_le_bytes());
        b[16..26].copy_from_slice(b"capability");
        b[64..68].copy_from_slice(b"abcd");
        let x = parse_entries(&b, 0, 0);
        assert_eq!(
            x,
            vec![Xattr {
                name: b"security.capability".to_vec(),
                value: b"abcd".to_vec()
            }]
        );
        // A value past the area ends the list instead of panicking.
        b[2..4].copy_from_slice(&94u16.to_le_bytes());
        assert!(parse_entries(&b, 0, 0).is_empty());
    }
}
