//! PAM stacks (pam.conf(5) per-service files in `/etc/pam.d`): each rule's
//! type, control and module, with `@include` named, not followed (every
//! file in the directory is read anyway).

/// Lines read from one PAM file.
pub const MAX_LINES: usize = 10_000;

/// One PAM rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// 1-based line.
    pub line: usize,
    /// `auth`, `account`, `password`, `session` (a leading `-` dropped).
    pub kind: String,
    /// `required`, `sufficient`, `[success=1 default=ignore]` …
    pub control: String,
    /// Module path or name (`pam_unix.so`, `/lib/security/pam_x.so`).
    pub module: String,
    /// Arguments.
    pub args: String,
}

impl Rule {
    /// The module's file name (`pam_permit.so` for `/lib/x/pam_permit.so`).
    pub fn module_name(&self) -> &str {
        self.module.rsplit('/').next().unwrap_or(&self.module)
    }

    /// The rule as written.
    pub fn text(&self) -> String {
        format!(
            "{} {} {} {}",
            self.kind, self.control, self.module, self.args
        )
        .trim_end()
        .to_string()
    }
}

/// Parses one `/etc/pam.d` file; `@include` lines are returned as rules of
/// kind `@include` with the file as module.
pub fn parse(data: &[u8]) -> Vec<Rule> {
    let mut rules = Vec::new();
    for (i, raw) in data.split(|&b| b == b'\n').take(MAX_LINES).enumerate() {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if let Some(file) = text.strip_prefix("@include") {
            rules.push(Rule {
                line: i + 1,
                kind: "@include".into(),
                control: String::new(),
                module: file.trim().to_string(),
                args: String::new(),
            });
            continue;
        }
        let Some((kind, rest)) = text.split_once(char::is_whitespace) else {
            continue;
        };
        let rest = rest.trim_start();
        // The control is one word or a bracketed list that may hold spaces.
        let (control, rest) = if rest.starts_with('[') {
            match rest.find(']') {
                Some(end) => (
                    rest.get(..=end).unwrap_or_default(),
                    rest.get(end + 1..).unwrap_or_default(),
                ),
                None => continue,
            }
        } else {
            rest.split_once(char::is_whitespace).unwrap_or((rest, ""))
        };
        let rest = rest.trim_start();
        let (module, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        if module.is_empty() {
            continue;
        }
        rules.push(Rule {
            line: i + 1,
            kind: kind.trim_start_matches('-').to_lowercase(),
            control: control.to_string(),
            module: module.to_string(),
            args: args.trim().to_string(),
        });
    }
    rules
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn debian_common_auth_shape() {
        let data = b"# here are the per-package modules\nauth\t[success=1 default=ignore]\tpam_unix.so nullok\nauth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so\n-auth optional pam_systemd.so\n@include common-account\n";
        let r = parse(data);
        assert_eq!(r.len(), 5);
        assert_eq!(r[0].control, "[success=1 default=ignore]");
        assert_eq!(r[0].module, "pam_unix.so");
        assert_eq!(r[0].args, "nullok");
        assert_eq!(r[2].module_name(), "pam_permit.so");
        assert_eq!(r[3].kind, "auth");
        assert_eq!(r[4].kind, "@include");
        assert_eq!(r[4].module, "common-account");
    }
}
