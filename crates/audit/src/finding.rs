//! A finding: one claim about an image, with the rule that made it, how bad
//! and how sure it is, where it lives and the evidence behind it.

use crate::diff::Change;

/// How bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Inventory and provenance facts.
    Info,
    /// Worth knowing; not a reason to distrust the image.
    Low,
    /// Needs a look.
    Medium,
    /// Likely a planted access path or a dangerous setting.
    High,
    /// Tampering: a packaged file that fails its manifest, an extra uid 0, a PAM bypass …
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Self; 5] = [
        Self::Info,
        Self::Low,
        Self::Medium,
        Self::High,
        Self::Critical,
    ];

    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// Parses a name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }

    /// SARIF `security-severity` (GitHub maps ≥ 9.0 critical, 7–8.9 high,
    /// 4–6.9 medium, 0.1–3.9 low).
    pub fn security_severity(self) -> &'static str {
        match self {
            Self::Info => "0.0",
            Self::Low => "2.0",
            Self::Medium => "5.0",
            Self::High => "8.0",
            Self::Critical => "9.5",
        }
    }
}

/// How sure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Confidence {
    /// A heuristic.
    Low,
    /// Strong indication.
    Medium,
    /// Established fact (a digest mismatch, a line that says so).
    High,
}

impl Confidence {
    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    /// Bytes not as they should be.
    Integrity,
    /// Where the image comes from and what happened to it.
    Provenance,
    /// Accounts and passwords.
    Account,
    /// SSH keys.
    Key,
    /// sudo, PAM, setuid.
    Privilege,
    /// Things that start by themselves.
    Persistence,
    /// Services and settings that open the system.
    Exposure,
    /// What files and commands contain.
    Content,
    /// Licences and throughput settings: repack tells, not malice.
    Licence,
    /// What could not be read.
    Coverage,
}

impl Category {
    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Integrity => "integrity",
            Self::Provenance => "provenance",
            Self::Account => "account",
            Self::Key => "key",
            Self::Privilege => "privilege",
            Self::Persistence => "persistence",
            Self::Exposure => "exposure",
            Self::Content => "content",
            Self::Licence => "licence",
            Self::Coverage => "coverage",
        }
    }
}

/// Which layer of the audit (the report's sections, in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    /// Is the file a known original?
    Identity,
    /// qcow2 structure and provenance.
    Container,
    /// Partition table, boot code, gaps.
    Layout,
    /// Filesystem superblock provenance.
    Filesystem,
    /// Package manifests.
    Packages,
    /// Accounts and privilege.
    Accounts,
    /// SSH.
    Remote,
    /// Autostart.
    Persistence,
    /// Content of files and commands.
    Content,
    /// Changes against a reference.
    Reference,
}

impl Layer {
    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Container => "container",
            Self::Layout => "layout",
            Self::Filesystem => "filesystem",
            Self::Packages => "packages",
            Self::Accounts => "accounts",
            Self::Remote => "remote-access",
            Self::Persistence => "persistence",
            Self::Content => "content",
            Self::Reference => "reference",
        }
    }
}

/// A rule: its stable id and its documentation (`qvet audit --explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable id (`account-uid0`).
    pub id: &'static str,
    /// One line.
    pub title: &'static str,
    /// Default severity (a finding may say more or less with its reason).
    pub severity: Severity,
    /// Default confidence.
    pub confidence: Confidence,
    /// Category.
    pub category: Category,
    /// Layer.
    pub layer: Layer,
    /// What it checks, why it matters, and what clears it.
    pub doc: &'static str,
}

impl Rule {
    /// A finding of this rule with its defaults.
    pub fn finding(&'static self, title: impl Into<String>) -> Finding {
        Finding {
            rule: self,
            title: title.into(),
            severity: self.severity,
            confidence: self.confidence,
            partition: None,
            path: None,
            line: None,
            evidence: Vec::new(),
            user: None,
            key: None,
            change: None,
            suppressed: None,
            in_reference: false,
        }
    }
}

/// One claim about an image.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The rule.
    pub rule: &'static Rule,
    /// What was found, in one line.
    pub title: String,
    /// How bad.
    pub severity: Severity,
    /// How sure.
    pub confidence: Confidence,
    /// Partition number (as Linux numbers them).
    pub partition: Option<u32>,
    /// Guest path (or the image path for container findings).
    pub path: Option<String>,
    /// Line in that file.
    pub line: Option<usize>,
    /// Evidence: the line, values, expected vs actual.
    pub evidence: Vec<(&'static str, String)>,
    /// The account concerned (policy `allow.users`).
    pub user: Option<String>,
    /// The SSH key concerned, as its OpenSSH fingerprint (policy `allow.keys`).
    pub key: Option<String>,
    /// The change against the reference, when one was used.
    pub change: Option<Change>,
    /// Why the policy suppressed it.
    pub suppressed: Option<String>,
    /// The same file is unchanged in the reference: the vendor shipped it.
    pub in_reference: bool,
}

impl Finding {
    /// Sets the partition.
    pub fn partition(mut self, n: Option<u32>) -> Self {
        self.partition = n;
        self
    }
    /// Sets the path.
    pub fn path(mut self, p: impl Into<String>) -> Self {
        self.path = Some(p.into());
        self
    }
    /// Sets the line.
    pub fn line(mut self, l: Option<usize>) -> Self {
        self.line = l;
        self
    }
    /// Adds one piece of evidence.
    pub fn evidence(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.evidence.push((k, v.into()));
        self
    }
    /// Overrides the severity (with the reason in the evidence).
    pub fn severity(mut self, s: Severity) -> Self {
        self.severity = s;
        self
    }
    /// Overrides the confidence.
    pub fn confidence(mut self, c: Confidence) -> Self {
        self.confidence = c;
        self
    }
    /// Sets the account concerned.
    pub fn user(mut self, u: impl Into<String>) -> Self {
        self.user = Some(u.into());
        self
    }
    /// Sets the key concerned.
    pub fn key(mut self, k: impl Into<String>) -> Self {
        self.key = Some(k.into());
        self
    }

    /// The severity that counts: none when suppressed.
    pub fn effective(&self) -> Option<Severity> {
        self.suppressed.is_none().then_some(self.severity)
    }
}
