//! Container identity: what `verify` knows — a trusted entry matched by
//! file digest or guest content, a name or sidecar that claims an entry
//! the digests deny, GNS3 `.md5sum` sidecars.

use qvet_catalog::verify::{Report, SidecarStatus, Verdict};

use crate::finding::{Category, Confidence, Finding, Layer, Rule, Severity};

/// A trusted entry matched.
pub static GENUINE: Rule = Rule {
    id: "identity-genuine",
    title: "file digest equals a trusted entry",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Provenance,
    layer: Layer::Identity,
    doc:
        "The image file's digest equals a catalog entry (GNS3 registry, vendor checksum list, your \
          own catalog): it is byte for byte that file. Superseded entries are reported low: the \
          file is genuine but the registry has since replaced it.",
};
/// Same guest content as a trusted entry.
pub static CONTENT_IDENTICAL: Rule = Rule {
    id: "identity-content-identical",
    title: "guest content equals a trusted entry's; only the container differs",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Provenance,
    layer: Layer::Identity,
    doc:
        "The guest bytes (qvet's layout-independent content root) equal a trusted reference's: the \
          image was re-converted or re-compressed, nothing inside changed.",
};
/// Claimed identity denied by the digests.
pub static MISMATCH: Rule = Rule {
    id: "identity-mismatch",
    title: "the image claims to be a known original, but its digests differ",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Integrity,
    layer: Layer::Identity,
    doc: "The file name, GNS3 sidecar or an expected digest points at a catalog entry whose digests \
          are not this file's: a repack (re-converted, licensed, modified) or a corrupted copy. The \
          guest-level findings say which.",
};
/// A GNS3 sidecar that does not hold the file's MD5.
pub static SIDECAR: Rule = Rule {
    id: "identity-sidecar-stale",
    title: "GNS3 .md5sum sidecar does not hold the image's MD5",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Integrity,
    layer: Layer::Identity,
    doc: "GNS3 trusts a `.md5sum` file beside the image without re-hashing. One that differs from \
          the real MD5 was left stale by a modification, or forged to pass as another image.",
};
/// Nothing known about the file.
pub static UNKNOWN: Rule = Rule {
    id: "identity-unknown",
    title: "no trusted entry knows this file",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Provenance,
    layer: Layer::Identity,
    doc: "No catalog entry matches or is claimed. Add the vendor's checksum list (`qvet catalog \
          import`) or audit against a reference (`--reference`).",
};

/// The file name says what it is.
pub static NAME_TELL: Rule = Rule {
    id: "identity-name-tell",
    title: "image file name says it was cracked, patched or repacked",
    severity: Severity::Low,
    confidence: Confidence::Medium,
    category: Category::Provenance,
    layer: Layer::Identity,
    doc: "Words such as REPACK, cracked, unlocked, patched, keygen, nulled, licensed, activated or           unlimited in the image's file name: whoever named it says it is not the vendor's           original. A provenance tell, not proof of malice; the rest of the audit says what           changed.",
};

/// This family's rules.
pub static RULES: &[Rule] = &[
    GENUINE,
    CONTENT_IDENTICAL,
    MISMATCH,
    SIDECAR,
    UNKNOWN,
    NAME_TELL,
];

/// Words in a file name that announce a modified image.
const TELLS: &[&str] = &[
    "repack",
    "repacked",
    "crack",
    "cracked",
    "unlocked",
    "patched",
    "keygen",
    "nulled",
    "licensed",
    "activated",
    "unlimited",
    "jailbreak",
    "jailbroken",
    "modded",
    "hacked",
    "pirate",
    "warez",
];

/// A finding when the file name of `path` carries a tell word (as a whole
/// word between separators, in any case).
pub fn name_tell(path: &str) -> Option<Finding> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let lower = name.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let hits: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| TELLS.contains(w))
        .collect();
    if hits.is_empty() {
        return None;
    }
    Some(
        NAME_TELL
            .finding(format!("file name {name} says: {}", hits.join(", ")))
            .path(path)
            .evidence("words", hits.join(", ")),
    )
}

/// Findings from a verify report.
pub fn check(r: &Report) -> Vec<Finding> {
    let mut out = Vec::new();
    let path = r.filename.clone();
    match r.verdict {
        Verdict::Genuine | Verdict::ContentIdentical => {
            for m in &r.matches {
                let rule = if m.by_content {
                    &CONTENT_IDENTICAL
                } else {
                    &GENUINE
                };
                let mut f = rule
                    .finding(format!("matches {}", m.entry.describe()))
                    .path(&path)
                    .evidence("entry", m.entry.id.to_string())
                    .evidence("source", &m.entry.source)
                    .evidence("algorithm", m.algorithm());
                if m.entry.reference.superseded {
                    f = f.severity(Severity::Low).evidence("superseded", "true");
                }
                out.push(f);
            }
        }
        Verdict::Mismatch => {
            for c in r.claims.iter().filter(|c| !c.agrees && c.by.is_strong()) {
                let differs: Vec<&str> = c.differs.iter().map(|a| a.name()).collect();
                let mut f = MISMATCH
                    .finding(format!(
                        "its {} claims {}, but the digests differ",
                        c.by.name(),
                        c.entry.describe()
                    ))
                    .path(&path)
                    .evidence("claimed-by", c.by.name())
                    .evidence("entry", c.entry.id.to_string())
                    .evidence("differs", differs.join(", "));
                for a in &c.differs {
                    if let (Some(exp), Some(act)) =
                        (c.entry.reference.digests.get(a), r.digests.get(a))
                    {
                        f = f
                            .evidence("expected", format!("{}:{exp}", a.name()))
                            .evidence("actual", format!("{}:{act}", a.name()));
                        break;
                    }
                }
                out.push(f);
            }
        }
        Verdict::Unknown => out.push(
            UNKNOWN
                .finding("no catalog entry matches or is claimed")
                .path(&path),
        ),
    }
    if let Some(s) = &r.sidecar {
        if matches!(
            s.status,
            SidecarStatus::StaleOrForged | SidecarStatus::Malformed
        ) {
            out.push(
                SIDECAR
                    .finding(format!("{} is {}", s.path.display(), s.status.name()))
                    .path(s.path.display().to_string())
                    .evidence("status", s.status.name())
                    .evidence("sidecar", s.value.clone().unwrap_or_default()),
            );
        }
    }
    out
}

#[cfg(test)]
mod name_tests {
    use super::name_tell;

    #[test]
    fn tells_are_whole_words() {
        assert!(name_tell("/labs/csr1000v-universalk9.16.12.01b-REPACK.qcow2").is_some());
        assert!(name_tell("vEOS-lab-4.28.3M_unlocked.qcow2").is_some());
        assert!(name_tell("chr-7.11.2-patched.img").is_some());
        assert!(name_tell("csr1000v-universalk9.16.12.01b-serial.qcow2").is_none());
        // "patch" inside a word (dispatcher) or "mod" inside "model" is not a tell.
        assert!(name_tell("dispatcher-model-7.qcow2").is_none());
    }
}
