//! The verdict: one word per image, derived from the findings and the
//! identity, explained in one line.

use crate::finding::{Finding, Severity};

/// What the audit concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The file digest equals a trusted entry.
    Genuine,
    /// The guest content equals a trusted reference's; only the container differs.
    RepackContainer,
    /// The guest differs from its reference, with nothing above low.
    Modified,
    /// A medium or high finding.
    Suspicious,
    /// A critical finding.
    Tampered,
    /// No reference, nothing above low.
    Unknown,
}

impl Verdict {
    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Genuine => "genuine",
            Self::RepackContainer => "repack-container",
            Self::Modified => "modified",
            Self::Suspicious => "suspicious",
            Self::Tampered => "tampered",
            Self::Unknown => "unknown",
        }
    }
}

/// What decides the verdict besides the findings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anchors {
    /// A file digest matched a trusted entry.
    pub genuine: bool,
    /// The guest content matched a trusted entry or the reference.
    pub content_identical: bool,
    /// A reference (image or catalog entry) was compared file by file.
    pub compared: bool,
    /// The comparison found differences.
    pub differs: bool,
}

/// The verdict and its one-line reason.
pub fn decide(findings: &[Finding], a: Anchors) -> (Verdict, String) {
    let worst = |s: Severity| {
        findings
            .iter()
            .filter(|f| f.effective() == Some(s))
            .collect::<Vec<_>>()
    };
    let critical = worst(Severity::Critical);
    let high = worst(Severity::High);
    let medium = worst(Severity::Medium);
    let first = |v: &[&Finding]| {
        v.first()
            .map(|f| match &f.path {
                Some(p) => format!("{} ({p})", f.title),
                None => f.title.clone(),
            })
            .unwrap_or_default()
    };
    let more = |v: &[&Finding]| {
        if v.len() > 1 {
            format!(" and {} more", v.len() - 1)
        } else {
            String::new()
        }
    };
    if a.genuine {
        let note = if critical.is_empty() && high.is_empty() {
            String::new()
        } else {
            format!(
                "; the vendor's own content has {} critical/high finding(s)",
                critical.len() + high.len()
            )
        };
        return (
            Verdict::Genuine,
            format!("the file is byte for byte a trusted original{note}"),
        );
    }
    if !critical.is_empty() {
        return (
            Verdict::Tampered,
            format!("critical: {}{}", first(&critical), more(&critical)),
        );
    }
    if !high.is_empty() || !medium.is_empty() {
        let mut v = high.clone();
        v.extend(medium.iter());
        let level = if high.is_empty() { "medium" } else { "high" };
        return (
            Verdict::Suspicious,
            format!("{level}: {}{}", first(&v), more(&v)),
        );
    }
    if a.content_identical {
        return (
            Verdict::RepackContainer,
            "the guest content is identical to a trusted original; only the container differs"
                .into(),
        );
    }
    if a.compared && a.differs {
        return (
            Verdict::Modified,
            "the guest differs from its reference, with nothing above low".into(),
        );
    }
    if a.compared {
        return (
            Verdict::RepackContainer,
            "no file differs from the reference".into(),
        );
    }
    (
        Verdict::Unknown,
        "no trusted reference matched, and nothing above low was found".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{accounts, remote};

    #[test]
    fn verdict_order() {
        let crit = vec![accounts::UID0.finding("x")];
        assert_eq!(decide(&crit, Anchors::default()).0, Verdict::Tampered);
        let genuine = Anchors {
            genuine: true,
            ..Anchors::default()
        };
        assert_eq!(decide(&crit, genuine).0, Verdict::Genuine);
        let high = vec![remote::AUTHORIZED_KEY.finding("k")];
        assert_eq!(decide(&high, Anchors::default()).0, Verdict::Suspicious);
        let low = vec![remote::HOST_KEYS.finding("h")];
        assert_eq!(decide(&low, Anchors::default()).0, Verdict::Unknown);
        let content = Anchors {
            content_identical: true,
            ..Anchors::default()
        };
        assert_eq!(decide(&low, content).0, Verdict::RepackContainer);
        let changed = Anchors {
            compared: true,
            differs: true,
            ..Anchors::default()
        };
        assert_eq!(decide(&low, changed).0, Verdict::Modified);
        let mut suppressed = crit.clone();
        suppressed[0].suppressed = Some("policy".into());
        assert_eq!(decide(&suppressed, Anchors::default()).0, Verdict::Unknown);
    }
}
