//! `--policy FILE`: what a lab legitimately adds. Suppressed findings stay
//! in the report, marked with the reason; they no longer count for the
//! verdict or the exit code.
//!
//! ```toml
//! [allow]
//! users = ["lab"]                 # accounts we created
//! keys  = ["SHA256:…"]            # OpenSSH fingerprints of keys we installed
//! paths = ["/etc/default/grub"]   # files we edit (exact, or a glob with *)
//! [[suppress]]
//! rule = "sshd-risky-setting"     # a rule id
//! path = "/etc/ssh/sshd_config"   # optional: only there (glob with *)
//! reason = "lab hosts allow root logins"
//! ```

use serde::Deserialize;

use crate::finding::Finding;

/// A policy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// What the lab added on purpose.
    #[serde(default)]
    pub allow: Allow,
    /// Rules silenced, everywhere or on a path.
    #[serde(default)]
    pub suppress: Vec<Suppress>,
}

/// `[allow]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// Account names.
    #[serde(default)]
    pub users: Vec<String>,
    /// Key fingerprints (`SHA256:…`).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Guest paths.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// `[[suppress]]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Suppress {
    /// Rule id.
    pub rule: String,
    /// Only findings at this path (glob with `*`).
    pub path: Option<String>,
    /// Why (shown with each suppressed finding).
    pub reason: String,
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
#[error("policy: {0}")]
pub struct PolicyError(String);

impl Policy {
    /// Parses a policy, refusing unknown keys and rule ids no rule has.
    ///
    /// # Errors
    /// TOML syntax, unknown keys, unknown rule ids.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let p: Policy = toml::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        for s in &p.suppress {
            if crate::rules::find(&s.rule).is_none() {
                return Err(PolicyError(format!(
                    "unknown rule '{}' in [[suppress]] (see `qvet audit --explain list`)",
                    s.rule
                )));
            }
        }
        Ok(p)
    }

    /// Marks the findings this policy allows or suppresses.
    pub fn apply(&self, findings: &mut [Finding]) {
        for f in findings.iter_mut() {
            if f.suppressed.is_some() {
                continue;
            }
            f.suppressed = self.reason(f);
        }
    }

    fn reason(&self, f: &Finding) -> Option<String> {
        let path = f.path.as_deref().unwrap_or_default();
        for s in &self.suppress {
            if s.rule == f.rule.id && s.path.as_deref().is_none_or(|p| matches(p, path)) {
                return Some(format!("policy: {}", s.reason));
            }
        }
        if let Some(u) = f
            .user
            .as_deref()
            .filter(|u| self.allow.users.iter().any(|a| a == u))
        {
            return Some(format!("policy: allowed user {u}"));
        }
        if let Some(k) = f
            .key
            .as_deref()
            .filter(|k| self.allow.keys.iter().any(|a| a == k))
        {
            return Some(format!("policy: allowed key {k}"));
        }
        if !path.is_empty() && self.allow.paths.iter().any(|p| matches(p, path)) {
            return Some(format!("policy: allowed path {path}"));
        }
        None
    }
}

/// Glob match with `*` (any bytes, `/` included) and `?`.
fn matches(pattern: &str, path: &str) -> bool {
    qvet_inspect::tree::glob_match(pattern.as_bytes(), path.as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::rules::{accounts, remote};

    #[test]
    fn allow_and_suppress() {
        let p = Policy::parse(
            "[allow]\nusers = [\"lab\"]\nkeys = [\"SHA256:abc\"]\npaths = [\"/etc/default/*\"]\n[[suppress]]\nrule = \"sshd-risky-setting\"\npath = \"/etc/ssh/*\"\nreason = \"lab\"\n",
        )
        .unwrap();
        let mut f = vec![
            accounts::LOGIN_USER.finding("x").user("lab"),
            accounts::LOGIN_USER.finding("x").user("eve"),
            remote::AUTHORIZED_KEY.finding("k").key("SHA256:abc"),
            remote::SSHD_SETTING
                .finding("s")
                .path("/etc/ssh/sshd_config"),
            remote::SSHD_SETTING.finding("s").path("/srv/sshd_config"),
            accounts::SUDO_ALL.finding("g").path("/etc/default/grub"),
        ];
        p.apply(&mut f);
        let got: Vec<bool> = f.iter().map(|f| f.suppressed.is_some()).collect();
        assert_eq!(got, vec![true, false, true, true, false, true]);
        assert_eq!(f[3].suppressed.as_deref(), Some("policy: lab"));
    }

    #[test]
    fn unknown_keys_and_rules_are_refused() {
        assert!(Policy::parse("[allow]\nuser = [\"x\"]\n").is_err());
        assert!(Policy::parse("[[suppress]]\nrule = \"no-such-rule\"\nreason = \"x\"\n").is_err());
        assert_eq!(Policy::parse("").unwrap(), Policy::default());
    }
}
