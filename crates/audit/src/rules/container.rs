//! The qcow2 container and the disk layout: `check`'s result, header bits,
//! backing file and data file named, internal snapshots, unknown features,
//! the container's fingerprint; partition table findings and data hidden
//! in gaps between partitions.

use qvet_format::header::{incompat, CryptMethod};
use qvet_image::disk::BackingLink;
use qvet_image::Disk;
use qvet_volume::VolumeMap;

use crate::check::CheckReport;
use crate::finding::{Category, Confidence, Finding, Layer, Rule, Severity};

/// Structural corruption.
pub static CORRUPT: Rule = Rule {
    id: "container-corrupt",
    title: "qcow2 structure is corrupt",
    severity: Severity::High,
    confidence: Confidence::High,
    category: Category::Integrity,
    layer: Layer::Container,
    doc: "`qvet check` found corruptions (refcounts below use, overlapping structures, compressed \
          clusters that do not decode, data over metadata): the guest view may not be what any \
          qemu would show, and hostile images use exactly these inconsistencies.",
};
/// Leaked clusters.
pub static LEAKS: Rule = Rule {
    id: "container-leaks",
    title: "qcow2 has leaked clusters",
    severity: Severity::Low,
    confidence: Confidence::High,
    category: Category::Integrity,
    layer: Layer::Container,
    doc: "Clusters counted as used that nothing references: left by a crash or an interrupted \
          write. Medium when leaked clusters still hold data (content outside the guest view).",
};
/// Dirty or corrupt bits.
pub static FLAGS: Rule = Rule {
    id: "container-flags",
    title: "qcow2 dirty or corrupt bit set",
    severity: Severity::Low,
    confidence: Confidence::High,
    category: Category::Integrity,
    layer: Layer::Container,
    doc: "The dirty bit (lazy refcounts, not closed cleanly) means the image was in use when copied; \
          the corrupt bit (medium) means qemu itself found it inconsistent.",
};
/// Unknown feature bits.
pub static UNKNOWN_FEATURES: Rule = Rule {
    id: "container-unknown-features",
    title: "qcow2 header sets unknown feature bits",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Integrity,
    layer: Layer::Container,
    doc: "Incompatible or compatible feature bits no qemu defines: a crafted header.",
};
/// Backing file or external data file named.
pub static EXTERNAL: Rule = Rule {
    id: "container-external-file",
    title: "image depends on a file named inside it",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Provenance,
    layer: Layer::Container,
    doc: "A backing file (an overlay: EVE-NG and GNS3 linked clones) or an external data file. \
          Never opened without --allow-backing / --allow-data-file; without it the audit covers \
          only what the top image holds, and says so.",
};
/// Internal snapshots.
pub static SNAPSHOT: Rule = Rule {
    id: "container-snapshot",
    title: "internal snapshot",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Provenance,
    layer: Layer::Container,
    doc: "Each internal snapshot with its name and date: the image was run and saved. The audit \
          reads the active view; snapshots keep older guest states that can hold what was removed.",
};
/// Legacy qcow2 AES encryption.
pub static LEGACY_AES: Rule = Rule {
    id: "container-legacy-aes-encryption",
    title: "legacy qcow2 AES encryption",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Integrity,
    layer: Layer::Container,
    doc: "qcow2 `encrypt.format=aes` (crypt_method 1): AES-128-CBC keyed directly with the first \
          16 bytes of the passphrase (no key derivation, so passphrases are cheap to guess), \
          predictable plain64 IVs, no integrity and no key check (a wrong passphrase reads as \
          garbage). qemu refuses to run guests on it and deprecated it for LUKS; data protected \
          only by it should be treated as exposed.",
};
/// Container fingerprint.
pub static FINGERPRINT: Rule = Rule {
    id: "container-fingerprint",
    title: "container fingerprint",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Provenance,
    layer: Layer::Container,
    doc: "How the container was written: qcow2 version, cluster size, compression type and the share \
          of compressed clusters, refcount width, lazy refcounts. A vendor image re-written by \
          `qemu-img convert -c` changes this fingerprint, not the guest.",
};
/// Partition table problems.
pub static LAYOUT: Rule = Rule {
    id: "layout-problem",
    title: "partition table problem",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Integrity,
    layer: Layer::Layout,
    doc: "Overlapping partitions, partitions past the end of the disk, EBR loops, GPT header or \
          entry checksum failures, a hybrid MBR: layouts no partitioning tool writes, used to hide \
          data or confuse readers.",
};
/// Data in gaps.
pub static GAP_DATA: Rule = Rule {
    id: "layout-gap-data",
    title: "data outside every partition",
    severity: Severity::Medium,
    confidence: Confidence::Medium,
    category: Category::Content,
    layer: Layer::Layout,
    doc: "Non-zero bytes between or after partitions (beyond the boot area): nothing mounts them, \
          which is why payloads are hidden there. Some bootloaders (GRUB on MBR) use the space right \
          after the table, which is not counted as a gap.",
};

/// This family's rules.
pub static RULES: &[Rule] = &[
    CORRUPT,
    LEAKS,
    FLAGS,
    UNKNOWN_FEATURES,
    EXTERNAL,
    SNAPSHOT,
    LEGACY_AES,
    FINGERPRINT,
    LAYOUT,
    GAP_DATA,
];

/// Findings about the container.
pub fn check(path: &str, disk: &Disk, report: Option<&CheckReport>) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(r) = report {
        if r.corruptions > 0 || r.findings > 0 {
            let kinds: Vec<String> = r
                .counts
                .iter()
                .filter(|(_, (c, _))| !matches!(c.name(), "leak"))
                .map(|(k, (_, n))| format!("{k}×{n}"))
                .collect();
            out.push(
                CORRUPT
                    .finding(format!(
                        "{} corruption(s), {} other problem(s)",
                        r.corruptions, r.findings
                    ))
                    .path(path)
                    .evidence("problems", kinds.join(", ")),
            );
        }
        if r.leaks > 0 {
            let with_data = r.leaked.iter().filter(|l| l.nonzero).count();
            let mut f = LEAKS
                .finding(format!("{} leaked cluster(s)", r.leaks))
                .path(path)
                .evidence("leaks", r.leaks.to_string());
            if with_data > 0 {
                f = f
                    .severity(Severity::Medium)
                    .evidence("holding-data", with_data.to_string());
            }
            out.push(f);
        }
    }
    if let Some(top) = disk.top() {
        if let Some(q) = top.qcow2() {
            let h = q.header();
            if h.incompatible_features & incompat::CORRUPT != 0 {
                out.push(
                    FLAGS
                        .finding("corrupt bit set")
                        .path(path)
                        .severity(Severity::Medium),
                );
            } else if h.incompatible_features & incompat::DIRTY != 0 {
                out.push(
                    FLAGS
                        .finding("dirty bit set (not closed cleanly)")
                        .path(path),
                );
            }
            let unknown_incompat = h.incompatible_features & !incompat::KNOWN;
            let unknown_compat = h.compatible_features & !1;
            if unknown_incompat != 0 || unknown_compat != 0 {
                out.push(
                    UNKNOWN_FEATURES
                        .finding("unknown feature bits")
                        .path(path)
                        .evidence("incompatible", format!("{unknown_incompat:#x}"))
                        .evidence("compatible", format!("{unknown_compat:#x}")),
                );
            }
            if let Some(name) = h.data_file_name() {
                out.push(
                    EXTERNAL
                        .finding(format!(
                            "external data file {}",
                            String::from_utf8_lossy(name)
                        ))
                        .path(path)
                        .evidence("data-file", String::from_utf8_lossy(name)),
                );
            }
            if h.crypt_method == CryptMethod::Aes {
                out.push(
                    LEGACY_AES
                        .finding("encrypted with the legacy qcow2 AES scheme")
                        .path(path)
                        .evidence("crypt-method", "1 (aes)")
                        .evidence(
                            "key-check",
                            if q.unlocked() {
                                "key given, unverifiable"
                            } else {
                                "no key given"
                            },
                        ),
                );
            }
            for s in q.snapshots() {
                out.push(
                    SNAPSHOT
                        .finding(format!(
                            "snapshot '{}' (id {})",
                            String::from_utf8_lossy(&s.name),
                            String::from_utf8_lossy(&s.id)
                        ))
                        .path(path)
                        .evidence("date", s.date_sec.to_string())
                        .evidence("vm-state-size", s.vm_state_size.to_string()),
                );
            }
            let mut f = FINGERPRINT
                .finding(format!(
                    "qcow2 v{}, {} KiB clusters",
                    h.version,
                    h.cluster_size() >> 10
                ))
                .path(path)
                .evidence("version", h.version.to_string())
                .evidence("cluster-size", h.cluster_size().to_string())
                .evidence("refcount-bits", h.refcount_bits().to_string())
                .evidence(
                    "compression-type",
                    if h.compression_type_raw == 1 {
                        "zstd"
                    } else {
                        "zlib"
                    },
                )
                .evidence(
                    "lazy-refcounts",
                    (h.compatible_features & 1 != 0).to_string(),
                )
                .evidence("extended-l2", h.extended_l2().to_string());
            if let Some(r) = report {
                if r.allocated_clusters > 0 {
                    f = f.evidence(
                        "compressed-share",
                        format!(
                            "{:.1}%",
                            100.0 * r.compressed_clusters as f64 / r.allocated_clusters as f64
                        ),
                    );
                }
            }
            out.push(f);
        }
    }
    for layer in disk.layers() {
        if let BackingLink::Missing { name, why } = &layer.backing {
            out.push(
                EXTERNAL
                    .finding(format!("backing file {name} not opened"))
                    .path(&layer.filename)
                    .evidence("backing-file", name)
                    .evidence("why", why),
            );
        } else if let BackingLink::Opened = layer.backing {
            out.push(
                EXTERNAL
                    .finding("backing file opened (--allow-backing)")
                    .path(&layer.filename),
            );
        }
    }
    out
}

/// Non-zero content of one gap: its start, length, first non-zero offset.
pub struct GapContent {
    /// Gap start.
    pub start: u64,
    /// Gap length.
    pub len: u64,
    /// First non-zero byte, when any.
    pub first_nonzero: Option<u64>,
}

/// Findings about the layout.
pub fn layout(path: &str, map: &VolumeMap, gaps: &[GapContent]) -> Vec<Finding> {
    let mut out = Vec::new();
    for f in &map.findings {
        let sev = if f.kind.contains("hybrid") {
            Severity::Low
        } else {
            Severity::Medium
        };
        let mut x = LAYOUT
            .finding(&f.message)
            .path(path)
            .severity(sev)
            .evidence("kind", f.kind);
        if let Some(o) = f.offset {
            x = x.evidence("offset", o.to_string());
        }
        out.push(x);
    }
    for g in gaps {
        if let Some(first) = g.first_nonzero {
            out.push(
                GAP_DATA
                    .finding(format!(
                        "non-zero bytes in the gap at {:#x} ({} bytes)",
                        g.start, g.len
                    ))
                    .path(path)
                    .evidence("gap-start", g.start.to_string())
                    .evidence("gap-length", g.len.to_string())
                    .evidence("first-nonzero", first.to_string()),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use qvet_image::{MemSource, OpenOptions};
    use std::sync::Arc;

    /// A minimal qcow2 v3 (512-byte clusters, 4 KiB guest) with `crypt_method`.
    fn qcow2(crypt_method: u32) -> Vec<u8> {
        let mut f = vec![0u8; 2048];
        f[0..4].copy_from_slice(&qvet_format::header::MAGIC.to_be_bytes());
        f[4..8].copy_from_slice(&3u32.to_be_bytes());
        f[20..24].copy_from_slice(&9u32.to_be_bytes());
        f[24..32].copy_from_slice(&4096u64.to_be_bytes());
        f[32..36].copy_from_slice(&crypt_method.to_be_bytes());
        f[36..40].copy_from_slice(&1u32.to_be_bytes());
        f[40..48].copy_from_slice(&512u64.to_be_bytes());
        f[48..56].copy_from_slice(&1536u64.to_be_bytes());
        f[56..60].copy_from_slice(&1u32.to_be_bytes());
        f[96..100].copy_from_slice(&4u32.to_be_bytes());
        f[100..104].copy_from_slice(&112u32.to_be_bytes());
        f
    }

    fn findings(crypt_method: u32) -> Vec<Finding> {
        let disk = Disk::from_source(
            Arc::new(MemSource(qcow2(crypt_method))),
            "img.qcow2",
            &OpenOptions::default(),
        )
        .unwrap();
        check("img.qcow2", &disk, None)
    }

    #[test]
    fn legacy_aes_is_a_weakness() {
        let f = findings(1);
        let aes: Vec<_> = f
            .iter()
            .filter(|x| x.rule.id == "container-legacy-aes-encryption")
            .collect();
        assert_eq!(aes.len(), 1);
        assert_eq!(aes[0].severity, Severity::Medium);
        assert!(findings(0)
            .iter()
            .all(|x| x.rule.id != "container-legacy-aes-encryption"));
    }
}
