//! Cisco IOS-style configuration (IOS, IOS-XE, NX-OS and Arista EOS share
//! it): indented blocks, `!` comments, banners between delimiters, as a
//! tree of numbered lines; and the facts an audit asks of it — privileged
//! users and how their secrets are stored, SSH public keys, scheduled and
//! triggered execution, command aliases, logging, exposure and licence
//! settings.
//!
//! Nothing is interpreted beyond parsing. Bounds: [`MAX_LINES`] lines,
//! [`MAX_DEPTH`] levels of nesting, banner bodies of [`MAX_BANNER_LINES`].

use crate::base64;
use crate::ssh;

/// Lines parsed; the rest of a longer file is ignored (and said).
pub const MAX_LINES: usize = 200_000;
/// Nesting levels kept (deeper lines attach to the deepest block).
pub const MAX_DEPTH: usize = 16;
/// Lines a banner may span before its delimiter is taken as missing.
pub const MAX_BANNER_LINES: usize = 1_000;

/// One configuration line and the block it opens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number in the file.
    pub number: usize,
    /// Leading spaces.
    pub indent: usize,
    /// The text, trimmed.
    pub text: String,
    /// Lines of the block this line opens (indented under it).
    pub children: Vec<Line>,
}

impl Line {
    /// The words of the line.
    pub fn words(&self) -> Vec<&str> {
        self.text.split_whitespace().collect()
    }

    /// Whether the line starts with these words (case-insensitive, as IOS
    /// reads keywords).
    pub fn starts(&self, words: &[&str]) -> bool {
        let mine = self.words();
        words.len() <= mine.len()
            && words
                .iter()
                .zip(mine.iter())
                .all(|(w, m)| w.eq_ignore_ascii_case(m))
    }

    /// Every line of the block, depth first.
    pub fn descendants(&self) -> Vec<&Line> {
        let mut out = Vec::new();
        let mut stack: Vec<&Line> = self.children.iter().rev().collect();
        while let Some(l) = stack.pop() {
            out.push(l);
            stack.extend(l.children.iter().rev());
        }
        out
    }
}

/// A banner: its kind, where it starts and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// `motd`, `login`, `exec` …
    pub kind: String,
    /// Line of the `banner` command.
    pub line: usize,
    /// The text between the delimiters.
    pub text: String,
}

/// A parsed configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Top-level lines with their blocks.
    pub lines: Vec<Line>,
    /// Banners (their bodies are not configuration).
    pub banners: Vec<Banner>,
    /// The file had more than [`MAX_LINES`] lines.
    pub truncated: bool,
}

impl Config {
    /// Top-level lines starting with `words`.
    pub fn top(&self, words: &[&str]) -> Vec<&Line> {
        self.lines.iter().filter(|l| l.starts(words)).collect()
    }

    /// Every line, depth first.
    pub fn all(&self) -> Vec<&Line> {
        let mut out = Vec::new();
        for l in &self.lines {
            out.push(l);
            out.extend(l.descendants());
        }
        out
    }
}

/// The delimiter of a banner starting at `rest` (the text after the
/// banner's kind): `^C` as two characters (how configurations are saved),
/// else the first character.
fn banner_delimiter(rest: &str) -> Option<String> {
    if rest.starts_with("^C") {
        return Some("^C".into());
    }
    rest.chars().next().map(String::from)
}

/// Parses configuration text.
pub fn parse(data: &[u8]) -> Config {
    let text = String::from_utf8_lossy(data);
    let mut config = Config::default();
    // Open blocks: (indent, path of child indexes from the top level).
    let mut open: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, raw)) = lines.next() {
        let number = i + 1;
        if number > MAX_LINES {
            config.truncated = true;
            break;
        }
        let raw = raw.trim_end_matches('\r');
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('!') || trimmed.starts_with('#') {
            // `!` lines are comments; at column 0 they also close blocks.
            if raw.starts_with('!') {
                open.clear();
            }
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        let mut words = trimmed.split_whitespace();
        if words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("banner"))
        {
            if let Some(kind) = words.next() {
                let after_kind = trimmed.split_once(kind).map_or("", |(_, r)| r).trim_start();
                if let Some(delim) = banner_delimiter(after_kind) {
                    let body_start = after_kind.get(delim.len()..).unwrap_or("");
                    let mut body = String::new();
                    if let Some(end) = body_start.find(delim.as_str()) {
                        body.push_str(body_start.get(..end).unwrap_or(""));
                    } else {
                        body.push_str(body_start);
                        for _ in 0..MAX_BANNER_LINES {
                            let Some((_, next)) = lines.next() else {
                                break;
                            };
                            body.push('\n');
                            if let Some(end) = next.find(delim.as_str()) {
                                body.push_str(next.get(..end).unwrap_or(""));
                                break;
                            }
                            body.push_str(next);
                        }
                    }
                    config.banners.push(Banner {
                        kind: kind.to_string(),
                        line: number,
                        text: body,
                    });
                    open.clear();
                    continue;
                }
            }
        }
        if trimmed.eq_ignore_ascii_case("end") && indent == 0 {
            open.clear();
            continue;
        }
        let line = Line {
            number,
            indent,
            text: trimmed.to_string(),
            children: Vec::new(),
        };
        while open.last().is_some_and(|(ind, _)| *ind >= indent) {
            open.pop();
        }
        let parent = open.last().map(|(_, p)| p.clone());
        let path = match parent {
            Some(p) if p.len() < MAX_DEPTH => {
                let Some(block) = node_mut(&mut config.lines, &p) else {
                    continue;
                };
                block.children.push(line);
                let mut child = p;
                child.push(block.children.len() - 1);
                child
            }
            Some(p) => {
                // Too deep: attach to the deepest block kept.
                if let Some(block) = node_mut(&mut config.lines, &p) {
                    block.children.push(line);
                }
                continue;
            }
            None => {
                config.lines.push(line);
                vec![config.lines.len() - 1]
            }
        };
        open.push((indent, path));
    }
    config
}

fn node_mut<'a>(lines: &'a mut [Line], path: &[usize]) -> Option<&'a mut Line> {
    let (first, rest) = path.split_first()?;
    let mut node = lines.get_mut(*first)?;
    for &i in rest {
        node = node.children.get_mut(i)?;
    }
    Some(node)
}

/// Whether `data` reads as an IOS-family configuration: several lines that
/// only such a configuration has (so a random `*.cfg` is not taken for one).
pub fn looks_like_config(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data.get(..data.len().min(256 << 10)).unwrap_or(data));
    let markers = [
        "hostname ",
        "interface ",
        "version ",
        "username ",
        "enable secret",
        "enable password",
        "service ",
        "line vty",
        "line con",
        "ip route ",
        "router ",
        "boot system",
        "boot-start-marker",
        "management api",
        "aaa ",
        "snmp-server ",
        "event manager",
        "ip domain",
        "ip ssh",
        "spanning-tree ",
        "vlan ",
        "end",
    ];
    let mut seen = std::collections::HashSet::new();
    let mut bangs = 0;
    for line in text.lines().take(20_000) {
        let t = line.trim_end();
        if t == "!" {
            bangs += 1;
        }
        for m in markers {
            if !line.starts_with(' ') && t.starts_with(m) && (m != "end" || t == "end") {
                seen.insert(m);
            }
        }
    }
    seen.len() >= 3 && (bangs > 0 || seen.contains("hostname ") || seen.contains("interface "))
}

/// How a secret is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// Type 0 or no type: the password itself.
    Plaintext,
    /// Type 7: Vigenère-like, reversible by anyone.
    Type7,
    /// Type 6: AES with the device's master key (reversible on the device).
    Type6,
    /// Type 4: the broken unsalted SHA-256 scheme.
    Type4,
    /// Type 5: MD5-crypt.
    Md5,
    /// Type 8 (PBKDF2-SHA256), 9 (scrypt) or EOS `sha512` (crypt `$6$`).
    StrongHash,
    /// No password at all (`nopassword`).
    None,
    /// A type this parser does not know.
    Other,
}

impl SecretKind {
    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "type 0 (plaintext)",
            Self::Type7 => "type 7 (reversible)",
            Self::Type6 => "type 6 (AES, reversible with the master key)",
            Self::Type4 => "type 4 (broken SHA-256)",
            Self::Md5 => "type 5 (MD5-crypt)",
            Self::StrongHash => "strong hash (type 8/9 or sha512)",
            Self::None => "no password",
            Self::Other => "unknown type",
        }
    }

    /// Whether anyone holding the configuration learns the password.
    pub fn reversible(self) -> bool {
        matches!(self, Self::Plaintext | Self::Type7)
    }
}

/// The secret that follows a `secret`/`password` keyword at `words[i]`.
fn secret_after(words: &[&str], i: usize) -> SecretKind {
    let ty = words.get(i + 1).copied();
    let value = words.get(i + 2).copied();
    match (ty, value) {
        (Some("0"), _) => SecretKind::Plaintext,
        (Some("7"), Some(_)) => SecretKind::Type7,
        (Some("6"), Some(_)) => SecretKind::Type6,
        (Some("4"), Some(_)) => SecretKind::Type4,
        (Some("5"), Some(_)) => SecretKind::Md5,
        (Some("8" | "9"), Some(_)) => SecretKind::StrongHash,
        (Some(t), Some(_)) if t.eq_ignore_ascii_case("sha512") => SecretKind::StrongHash,
        (Some(t), Some(_))
            if t.len() == 1 && t.as_bytes().first().is_some_and(u8::is_ascii_digit) =>
        {
            SecretKind::Other
        }
        (Some(v), _) if v.starts_with("$6$") || v.starts_with("$9$") || v.starts_with("$8$") => {
            SecretKind::StrongHash
        }
        (Some(v), _) if v.starts_with("$1$") => SecretKind::Md5,
        (Some(_), _) => SecretKind::Plaintext,
        (None, _) => SecretKind::Plaintext,
    }
}

/// A local user (`username …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The name.
    pub name: String,
    /// Line number.
    pub line: usize,
    /// `privilege N` (IOS defaults to 1).
    pub privilege: Option<u32>,
    /// EOS `role`.
    pub role: Option<String>,
    /// How the secret is stored (`None` when the line sets none).
    pub secret: Option<SecretKind>,
    /// `autocommand …`: a command run at login.
    pub autocommand: Option<String>,
}

/// An SSH public key allowed to log in as a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubKey {
    /// The user.
    pub user: String,
    /// Line number of the key.
    pub line: usize,
    /// `key-hash` (MD5 of the key, as IOS prints it), or the OpenSSH
    /// `SHA256:` fingerprint of a `key-string`/`ssh-key` key.
    pub id: String,
    /// Key type when known.
    pub key_type: Option<String>,
    /// Key size in bits when known.
    pub bits: Option<u32>,
}

/// Users, keys and enable secrets of a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// `username` lines (one user may span several lines; each is kept).
    pub users: Vec<User>,
    /// SSH keys for users (`ip ssh pubkey-chain`, EOS `username … ssh-key`).
    pub keys: Vec<PubKey>,
    /// `enable password`/`enable secret` lines: (line, is `password`, kind).
    pub enable: Vec<(usize, bool, SecretKind)>,
}

/// Extracts users, keys and enable secrets.
pub fn access(config: &Config) -> Access {
    let mut a = Access::default();
    for l in config.top(&["username"]) {
        let words = l.words();
        let Some(name) = words.get(1) else { continue };
        let mut user = User {
            name: (*name).to_string(),
            line: l.number,
            privilege: None,
            role: None,
            secret: None,
            autocommand: None,
        };
        let mut i = 2;
        while let Some(w) = words.get(i) {
            match w.to_ascii_lowercase().as_str() {
                "privilege" => {
                    user.privilege = words.get(i + 1).and_then(|p| p.parse().ok());
                    i += 2;
                }
                "role" => {
                    user.role = words.get(i + 1).map(|r| (*r).to_string());
                    i += 2;
                }
                "secret" | "password" => {
                    user.secret = Some(secret_after(&words, i));
                    break;
                }
                "nopassword" => {
                    user.secret = Some(SecretKind::None);
                    i += 1;
                }
                "autocommand" => {
                    user.autocommand = Some(words.get(i + 1..).unwrap_or_default().join(" "));
                    break;
                }
                "ssh-key" | "sshkey" => {
                    let rest = words.get(i + 1..).unwrap_or_default().join(" ");
                    if let Some(k) = key_from_openssh(&rest) {
                        a.keys.push(PubKey {
                            user: user.name.clone(),
                            line: l.number,
                            ..k
                        });
                    }
                    break;
                }
                _ => i += 1,
            }
        }
        a.users.push(user);
    }
    for l in config.top(&["enable"]) {
        let words = l.words();
        let Some(pos) = words
            .iter()
            .position(|w| w.eq_ignore_ascii_case("secret") || w.eq_ignore_ascii_case("password"))
        else {
            continue;
        };
        let is_password = words
            .get(pos)
            .is_some_and(|w| w.eq_ignore_ascii_case("password"));
        // `enable secret level 15 5 $1$…`: skip the level.
        let mut w2: Vec<&str> = words.clone();
        if w2
            .get(pos + 1)
            .is_some_and(|w| w.eq_ignore_ascii_case("level"))
        {
            w2.drain(pos + 1..pos + 3.min(w2.len() - pos));
        }
        a.enable
            .push((l.number, is_password, secret_after(&w2, pos)));
    }
    for chain in config
        .lines
        .iter()
        .filter(|l| l.starts(&["ip", "ssh", "pubkey-chain"]))
    {
        for u in chain.children.iter().filter(|c| c.starts(&["username"])) {
            let Some(name) = u.words().get(1).map(|s| (*s).to_string()) else {
                continue;
            };
            for k in u.descendants() {
                if k.starts(&["key-hash"]) {
                    let w = k.words();
                    a.keys.push(PubKey {
                        user: name.clone(),
                        line: k.number,
                        id: w.get(2).map_or_else(String::new, |h| (*h).to_string()),
                        key_type: w.get(1).map(|t| (*t).to_string()),
                        bits: None,
                    });
                } else if k.starts(&["key-string"]) {
                    let b64: String = k
                        .children
                        .iter()
                        .filter(|c| !c.starts(&["exit"]) && !c.starts(&["quit"]))
                        .map(|c| c.text.as_str())
                        .collect::<Vec<_>>()
                        .concat();
                    let key = key_from_blob(&b64).unwrap_or(PubKey {
                        user: String::new(),
                        line: 0,
                        id: "(undecodable key-string)".into(),
                        key_type: None,
                        bits: None,
                    });
                    a.keys.push(PubKey {
                        user: name.clone(),
                        line: k.number,
                        ..key
                    });
                }
            }
        }
    }
    a
}

/// A key from an OpenSSH line (`ssh-rsa AAAA… comment`).
fn key_from_openssh(line: &str) -> Option<PubKey> {
    let parsed = ssh::parse_authorized_keys(line.as_bytes());
    let k = parsed.keys.into_iter().next()?;
    Some(PubKey {
        user: String::new(),
        line: 0,
        id: k.fingerprint?,
        key_type: k.blob_type.or(Some(k.key_type)),
        bits: k.bits,
    })
}

/// A key from a bare base64 blob (IOS `key-string`).
fn key_from_blob(b64: &str) -> Option<PubKey> {
    let blob = base64::decode(b64.as_bytes())?;
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let ty = std::str::from_utf8(blob.get(4..4 + len)?).ok()?;
    key_from_openssh(&format!("{ty} {b64}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
!
! Last configuration change at 10:01:02 UTC Mon Jan 6 2020
!
version 16.12
service timestamps debug datetime msec
hostname csr1
!
boot-start-marker
boot system bootflash:packages.conf
boot-end-marker
!
enable secret 9 $9$2MJBozw/9R3UsU$Cj3vmuCOGA3UvVgQnxa8vZFK6cQ1rZ0sS4YhS0VCrLg
!
username admin privilege 15 secret 9 $9$nhEmQVczB7dqsO$X.HsgL6x1il0RxkOSSvyQYwucySCt7qFm4v7pqCxkKM
username lab password 7 0822455D0A16
!
banner motd ^C
username evil privilege 15 password 0 insideabanner
^C
!
interface GigabitEthernet1
 ip address dhcp
 negotiation auto
!
ip ssh pubkey-chain
  username admin
   key-hash ssh-rsa 5E3A2F8B0C6D41E2A7F9B3C5D7E1F2A4 admin@laptop
  username ops
   key-string
    AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g
   exit
!
event manager applet WATCH
 event timer watchdog time 3600
 action 1.0 cli command \"enable\"
!
end
";

    #[test]
    fn blocks_comments_and_banners() {
        let c = parse(CONFIG.as_bytes());
        assert_eq!(c.top(&["hostname"]).len(), 1);
        assert_eq!(c.banners.len(), 1);
        assert!(c.banners[0].text.contains("insideabanner"));
        let iface = c.top(&["interface"]);
        assert_eq!(iface[0].children.len(), 2);
        let applet = c.top(&["event", "manager", "applet"]);
        assert_eq!(applet[0].children.len(), 2);
        assert_eq!(applet[0].children[1].number, 35);
        assert!(looks_like_config(CONFIG.as_bytes()));
    }

    #[test]
    fn users_secrets_and_keys() {
        let c = parse(CONFIG.as_bytes());
        let a = access(&c);
        let names: Vec<_> = a.users.iter().map(|u| u.name.as_str()).collect();
        // The user inside the banner is banner text, not configuration.
        assert_eq!(names, ["admin", "lab"]);
        assert_eq!(a.users[0].privilege, Some(15));
        assert_eq!(a.users[0].secret, Some(SecretKind::StrongHash));
        assert_eq!(a.users[1].secret, Some(SecretKind::Type7));
        assert_eq!(a.enable, vec![(12, false, SecretKind::StrongHash)]);
        assert_eq!(a.keys.len(), 2);
        assert_eq!(a.keys[0].user, "admin");
        assert_eq!(a.keys[0].id, "5E3A2F8B0C6D41E2A7F9B3C5D7E1F2A4");
        assert_eq!(a.keys[1].user, "ops");
        assert!(a.keys[1].id.starts_with("SHA256:"), "{:?}", a.keys[1]);
        assert_eq!(a.keys[1].key_type.as_deref(), Some("ssh-ed25519"));
    }

    #[test]
    fn secret_types() {
        let cases = [
            ("username a secret 5 $1$abc$def", SecretKind::Md5),
            ("username a password cleartext", SecretKind::Plaintext),
            ("username a password 0 cleartext", SecretKind::Plaintext),
            ("username a privilege 15 nopassword", SecretKind::None),
            (
                "username a privilege 15 role network-admin secret sha512 $6$x$y",
                SecretKind::StrongHash,
            ),
            (
                "username a secret 4 tnhtc92DXBhelxjYk8LWJrPV36S2i4ntXrpb4RFmfqY",
                SecretKind::Type4,
            ),
            (
                "username a algorithm-type scrypt secret plain",
                SecretKind::Plaintext,
            ),
        ];
        for (line, want) in cases {
            let a = access(&parse(line.as_bytes()));
            assert_eq!(a.users[0].secret, Some(want), "{line}");
        }
        let a = access(&parse(
            b"enable password 7 060506324F41\nenable secret level 15 5 $1$x$y\n",
        ));
        assert_eq!(
            a.enable,
            vec![(1, true, SecretKind::Type7), (2, false, SecretKind::Md5)]
        );
    }

    #[test]
    fn eos_ssh_key() {
        let line = "username admin ssh-key ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g me@x";
        let a = access(&parse(line.as_bytes()));
        assert_eq!(a.keys.len(), 1);
        assert_eq!(a.keys[0].user, "admin");
        assert!(a.keys[0].id.starts_with("SHA256:"));
    }

    #[test]
    fn not_a_config() {
        assert!(!looks_like_config(b"[section]\nkey=value\n"));
        assert!(!looks_like_config(b"set default=0\nmenuentry 'x' {\n}\n"));
    }

    #[test]
    fn hostile_input_is_bounded() {
        let mut deep = String::new();
        for i in 0..500 {
            deep.push_str(&" ".repeat(i));
            deep.push_str("x\n");
        }
        let c = parse(deep.as_bytes());
        assert_eq!(c.all().len(), 500);
        let banner = "banner motd #\n".to_string() + &"line\n".repeat(5000);
        let c = parse(banner.as_bytes());
        assert_eq!(c.banners.len(), 1);
        assert!(
            c.lines.len() > 3000,
            "lines after an unterminated banner are parsed again"
        );
        let _ = parse(&[0xff, b'\n', b' ', 0, b'!', b'\r']);
        let _ = access(&parse(b"username\nenable\nenable secret level\nip ssh pubkey-chain\n username\n  key-string\n   !!!\n"));
    }
}
