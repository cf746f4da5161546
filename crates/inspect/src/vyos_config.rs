//! VyOS (and Vyatta) `config.boot`: nested `name { … }` blocks and
//! `name value` leaves, `/* … */` and `//` comments; and what an audit asks
//! of it — login users with their password storage and public keys, task
//! scheduler entries, the release named in the trailing comments.
//!
//! Bounded: [`MAX_LINES`] lines, [`MAX_DEPTH`] levels.

/// Lines parsed.
pub const MAX_LINES: usize = 200_000;
/// Nesting kept.
pub const MAX_DEPTH: usize = 32;

/// One node: `head` is everything before `{` or the leaf's words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// 1-based line.
    pub line: usize,
    /// Words of the node (`user vyos`, `encrypted-password $6$…`), quotes removed.
    pub words: Vec<String>,
    /// Children of a `{ … }` node.
    pub children: Vec<Node>,
}

impl Node {
    /// The child whose words start with `words`.
    pub fn child(&self, words: &[&str]) -> Option<&Node> {
        self.children.iter().find(|c| starts(&c.words, words))
    }

    /// Every child whose words start with `words`.
    pub fn children_named(&self, words: &[&str]) -> Vec<&Node> {
        self.children
            .iter()
            .filter(|c| starts(&c.words, words))
            .collect()
    }

    /// The value of the leaf child `name` (its second word).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.child(&[name])
            .and_then(|c| c.words.get(1))
            .map(String::as_str)
    }

    /// The node at a path of heads (`["system", "login"]`).
    pub fn at(&self, path: &[&[&str]]) -> Option<&Node> {
        let mut n = self;
        for p in path {
            n = n.child(p)?;
        }
        Some(n)
    }
}

fn starts(have: &[String], want: &[&str]) -> bool {
    want.len() <= have.len() && want.iter().zip(have).all(|(w, h)| w == h)
}

/// A parsed `config.boot`: the root's children, and the trailing comments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The root (no words).
    pub root: Node,
    /// `// Release version: 1.3.0` (or `/* Release version: … */`).
    pub release: Option<String>,
    /// Lines that closed more blocks than were open, or were cut.
    pub malformed: Vec<usize>,
}

/// Splits a line into words, honouring double quotes.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Parses `config.boot` text.
pub fn parse(data: &[u8]) -> Config {
    let text = String::from_utf8_lossy(data);
    let mut config = Config::default();
    // Path of open blocks (child indexes from the root).
    let mut path: Vec<usize> = Vec::new();
    let mut in_comment = false;
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        if number > MAX_LINES {
            config.malformed.push(number);
            break;
        }
        let mut line = raw.trim().to_string();
        if in_comment {
            match line.find("*/") {
                Some(end) => {
                    line = line.get(end + 2..).unwrap_or("").trim().to_string();
                    in_comment = false;
                }
                None => continue,
            }
        }
        if let Some(rest) = line.strip_prefix("/*") {
            release_from_comment(rest, &mut config.release);
            if !rest.contains("*/") {
                in_comment = true;
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("//") {
            release_from_comment(rest, &mut config.release);
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if line == "}" {
            if path.pop().is_none() {
                config.malformed.push(number);
            }
            continue;
        }
        let (head, opens) = match line.strip_suffix('{') {
            Some(h) => (h.trim_end(), true),
            None => (line.as_str(), false),
        };
        let node = Node {
            line: number,
            words: words(head),
            children: Vec::new(),
        };
        let Some(parent) = node_mut(&mut config.root, &path) else {
            config.malformed.push(number);
            continue;
        };
        parent.children.push(node);
        if opens {
            if path.len() < MAX_DEPTH {
                path.push(parent.children.len() - 1);
            } else {
                config.malformed.push(number);
            }
        }
    }
    config
}

fn release_from_comment(comment: &str, release: &mut Option<String>) {
    let c = comment.trim().trim_end_matches("*/").trim();
    if let Some(v) = c.strip_prefix("Release version:") {
        *release = Some(v.trim().trim_matches('"').to_string());
    }
}

fn node_mut<'a>(root: &'a mut Node, path: &[usize]) -> Option<&'a mut Node> {
    let mut n = root;
    for &i in path {
        n = n.children.get_mut(i)?;
    }
    Some(n)
}

/// A `system login user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Name.
    pub name: String,
    /// Line of the user node.
    pub line: usize,
    /// `encrypted-password` value (a crypt hash).
    pub encrypted_password: Option<String>,
    /// `plaintext-password` value when non-empty (VyOS clears it on commit).
    pub plaintext_password: bool,
    /// `level` (Vyatta/VyOS 1.1: `admin` or `operator`).
    pub level: Option<String>,
    /// Public keys.
    pub keys: Vec<PublicKey>,
}

/// An `authentication public-keys <id>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// Line of the entry.
    pub line: usize,
    /// Its id (usually `user@host`).
    pub id: String,
    /// `type`.
    pub key_type: Option<String>,
    /// OpenSSH `SHA256:` fingerprint of `key`, when it decodes.
    pub fingerprint: Option<String>,
}

/// A `system task-scheduler task`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Name.
    pub name: String,
    /// Line.
    pub line: usize,
    /// `executable path`.
    pub path: Option<String>,
    /// `executable arguments`.
    pub arguments: Option<String>,
    /// `crontab-spec` or `interval`.
    pub when: Option<String>,
}

/// Users of `system login`.
pub fn users(config: &Config) -> Vec<User> {
    let Some(login) = config.root.at(&[&["system"], &["login"]]) else {
        return Vec::new();
    };
    login
        .children_named(&["user"])
        .into_iter()
        .filter_map(|u| {
            let name = u.words.get(1)?.clone();
            let auth = u.child(&["authentication"]);
            Some(User {
                name,
                line: u.line,
                encrypted_password: auth
                    .and_then(|a| a.value("encrypted-password"))
                    .map(str::to_string),
                plaintext_password: auth
                    .and_then(|a| a.value("plaintext-password"))
                    .is_some_and(|p| !p.is_empty()),
                level: u.value("level").map(str::to_string),
                keys: auth
                    .map(|a| {
                        a.children_named(&["public-keys"])
                            .into_iter()
                            .map(|k| {
                                let key_type = k.value("type").map(str::to_string);
                                let line = format!(
                                    "{} {}",
                                    key_type.as_deref().unwrap_or("ssh-rsa"),
                                    k.value("key").unwrap_or_default()
                                );
                                PublicKey {
                                    line: k.line,
                                    id: k.words.get(1).cloned().unwrap_or_default(),
                                    key_type,
                                    fingerprint: crate::ssh::parse_authorized_keys(line.as_bytes())
                                        .keys
                                        .into_iter()
                                        .next()
                                        .and_then(|k| k.fingerprint),
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Tasks of `system task-scheduler`.
pub fn tasks(config: &Config) -> Vec<Task> {
    let Some(ts) = config.root.at(&[&["system"], &["task-scheduler"]]) else {
        return Vec::new();
    };
    ts.children_named(&["task"])
        .into_iter()
        .map(|t| {
            let exe = t.child(&["executable"]);
            Task {
                name: t.words.get(1).cloned().unwrap_or_default(),
                line: t.line,
                path: exe.and_then(|e| e.value("path")).map(str::to_string),
                arguments: exe.and_then(|e| e.value("arguments")).map(str::to_string),
                when: t
                    .value("crontab-spec")
                    .or_else(|| t.value("interval"))
                    .map(str::to_string),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"interfaces {
    ethernet eth0 {
        address dhcp
        hw-id 52:54:00:12:34:56
    }
    loopback lo {
    }
}
service {
    ssh {
        port 22
    }
}
system {
    config-management {
        commit-revisions 100
    }
    host-name vyos
    login {
        user vyos {
            authentication {
                encrypted-password $6$QxPS.uk6mfo$9QBSo8u1FkH16gMyAVhus6fU3LOzvLR9Z9.82m3tiHFAxTtIkhaZSWssSgzt4v4dGAL8rhVQxTg0oAG9/q11h/
                plaintext-password ""
                public-keys admin@laptop {
                    key AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g
                    type ssh-ed25519
                }
            }
        }
    }
    task-scheduler {
        task beacon {
            executable {
                path /config/scripts/beacon.sh
                arguments "-q now"
            }
            interval 5m
        }
    }
}
/* Warning: Do not remove the following line. */
/* === vyatta-config-version: "system@10:ssh@1" === */
/* Release version: 1.2.9-S1 */
"#;

    #[test]
    fn users_keys_tasks_release() {
        let c = parse(CONFIG.as_bytes());
        assert!(c.malformed.is_empty(), "{:?}", c.malformed);
        assert_eq!(c.release.as_deref(), Some("1.2.9-S1"));
        let u = users(&c);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].name, "vyos");
        assert!(u[0]
            .encrypted_password
            .as_deref()
            .is_some_and(|p| p.starts_with("$6$")));
        assert!(!u[0].plaintext_password);
        assert_eq!(u[0].keys.len(), 1);
        assert_eq!(u[0].keys[0].id, "admin@laptop");
        assert_eq!(u[0].keys[0].key_type.as_deref(), Some("ssh-ed25519"));
        assert!(u[0].keys[0]
            .fingerprint
            .as_deref()
            .is_some_and(|f| f.starts_with("SHA256:")));
        let t = tasks(&c);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].path.as_deref(), Some("/config/scripts/beacon.sh"));
        assert_eq!(t[0].arguments.as_deref(), Some("-q now"));
        assert_eq!(t[0].when.as_deref(), Some("5m"));
        assert_eq!(
            c.root
                .at(&[&["system"], &["host-name"]])
                .map(|n| n.words.clone()),
            Some(vec!["host-name".to_string(), "vyos".to_string()])
        );
    }

    #[test]
    fn old_style_comments_and_hostile_input() {
        let c = parse(b"system {\n    host-name r1\n}\n// vyos-config-version: \"x\"\n// Release version: 1.4.0\n");
        assert_eq!(c.release.as_deref(), Some("1.4.0"));
        let c = parse(b"}\n}\n{\n");
        assert_eq!(c.malformed, vec![1, 2]);
        let deep = "a {\n".repeat(1000);
        let c = parse(deep.as_bytes());
        assert!(!c.malformed.is_empty());
        let _ = users(&parse(&[0xff, b'{', b'\n', b'"', b'}']));
    }
}
