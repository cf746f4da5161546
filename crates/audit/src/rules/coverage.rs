//! Coverage: what could not be read, said as findings (category
//! `coverage`, severity info) so a clean result never overstates.

use crate::finding::{Category, Confidence, Layer, Rule, Severity};

/// A partition, filesystem or image part that could not be read.
pub static UNREADABLE: Rule = Rule {
    id: "coverage-unreadable",
    title: "part of the image could not be audited",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Coverage,
    layer: Layer::Layout,
    doc: "A partition whose filesystem qvet does not read (XFS, btrfs, UFS, LVM…), one \
          that is encrypted (LUKS, ext4 encryption), a corrupt filesystem, or a backing file not \
          opened: its content is not covered by this audit.",
};
/// Files not read.
pub static UNREAD_FILE: Rule = Rule {
    id: "coverage-file-not-read",
    title: "file not read (over a bound or unreadable)",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Coverage,
    layer: Layer::Content,
    doc: "Configuration files over the size bound, directories with more entries than are read, \
          walks stopped at their bound, files the filesystem refused: named so that nothing is \
          silently passed.",
};
/// Ownership cannot be decided.
pub static NO_PACKAGE_DB: Rule = Rule {
    id: "coverage-no-package-database",
    title: "no package database: ownership of files cannot be decided",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Coverage,
    layer: Layer::Packages,
    doc:
        "The filesystem looks like a Linux root but has no dpkg or apk database (many appliances): \
          packaged files cannot be verified and persistence entries are inventory unless what they \
          run is risky. Audit against a reference or baseline to cover it.",
};

/// This family's rules.
pub static RULES: &[Rule] = &[UNREADABLE, UNREAD_FILE, NO_PACKAGE_DB];
