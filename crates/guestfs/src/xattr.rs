//! Extended attributes as the readers return them, and the decoding of
//! `security.capability` (`vfs_cap_data`), which is how file capabilities
//! — a setuid without the bit — are stored. The ext on-disk format is
//! decoded in `ext_xattr`.

/// Entries read from one attribute area (ext: the in-inode area, or the
/// attribute block); more is corrupt.
pub const MAX_ENTRIES: usize = 1024;

/// One extended attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    /// Full name with its namespace (`security.capability`, `user.x`).
    pub name: Vec<u8>,
    /// Value as stored (ext: also when it lives in an EA inode; POSIX ACLs
    /// in the filesystem's own format, not converted to the `getxattr` one).
    pub value: Vec<u8>,
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
    fn capability_v1_v3_and_sizes() {
        let mut v1 = 0x0100_0000u32.to_le_bytes().to_vec();
        v1.extend(0x8000_0001u32.to_le_bytes());
        v1.extend(4u32.to_le_bytes());
        let c = decode_capability(&v1).unwrap();
        assert_eq!(
            (
                c.version,
                c.permitted,
                c.inheritable,
                c.effective,
                c.root_uid
            ),
            (1, 0x8000_0001, 4, false, None)
        );
        let mut v3 = 0x0300_0001u32.to_le_bytes().to_vec();
        for w in [1u32 << 21, 1 << 8, 1 << 8, 3, 100_000] {
            v3.extend(w.to_le_bytes());
        }
        let c = decode_capability(&v3).unwrap();
        assert_eq!(c.version, 3);
        assert_eq!(c.permitted, (1 << 21) | (1u64 << 40));
        assert_eq!(c.inheritable, (1 << 8) | (3u64 << 32));
        assert!(c.effective);
        assert_eq!(c.root_uid, Some(100_000));
        assert_eq!(
            capability_names(c.permitted),
            vec!["cap_sys_admin", "cap_checkpoint_restore"]
        );
        // Each revision has exactly its size, as the kernel requires.
        assert!(decode_capability(&v3[..20]).is_none());
        let mut v2_long = v3.clone();
        v2_long[3] = 2;
        assert!(decode_capability(&v2_long).is_none());
        assert!(decode_capability(&v1[..8]).is_none());
        assert!(decode_capability(&[]).is_none());
        assert_eq!(capability_names(0), Vec::<String>::new());
        assert_eq!(capability_names(u64::MAX).len(), 64);
        assert_eq!(capability_names(1 << 63), vec!["cap_63"]);
    }
}
