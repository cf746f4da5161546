//! `/etc/passwd`, `/etc/shadow` and `/etc/group` (passwd(5), shadow(5),
//! group(5)) as records, with their line numbers for evidence.

/// Lines read from one account file.
pub const MAX_LINES: usize = 100_000;

/// One `passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// 1-based line number.
    pub line: usize,
    /// Login name.
    pub name: String,
    /// The password field (`x` when in shadow).
    pub password: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// GECOS.
    pub gecos: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// One `shadow` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadow {
    /// 1-based line number.
    pub line: usize,
    /// Login name.
    pub name: String,
    /// The hash field: empty (no password), `*`/`!…` (locked), or a crypt(3) hash.
    pub hash: String,
}

/// One `group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// 1-based line number.
    pub line: usize,
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Members listed.
    pub members: Vec<String>,
}

/// Lines that could not be parsed, by number.
pub type Malformed = Vec<usize>;

fn lines(data: &[u8]) -> impl Iterator<Item = (usize, String)> + '_ {
    data.split(|&b| b == b'\n')
        .take(MAX_LINES)
        .enumerate()
        .map(|(i, l)| {
            (
                i + 1,
                String::from_utf8_lossy(l)
                    .trim_end_matches('\r')
                    .to_string(),
            )
        })
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
}

/// Parses `passwd`. NIS `+`/`-` compat lines are kept out of the records
/// and reported as malformed.
pub fn parse_passwd(data: &[u8]) -> (Vec<User>, Malformed) {
    let mut users = Vec::new();
    let mut bad = Vec::new();
    for (line, text) in lines(data) {
        let f: Vec<&str> = text.split(':').collect();
        let parsed = match f.as_slice() {
            [name, password, uid, gid, gecos, home, shell] if !name.is_empty() => {
                match (uid.parse::<u32>(), gid.parse::<u32>()) {
                    (Ok(uid), Ok(gid)) => Some(User {
                        line,
                        name: (*name).to_string(),
                        password: (*password).to_string(),
                        uid,
                        gid,
                        gecos: (*gecos).to_string(),
                        home: (*home).to_string(),
                        shell: (*shell).to_string(),
                    }),
                    _ => None,
                }
            }
            _ => None,
        };
        match parsed {
            Some(u) => users.push(u),
            None => bad.push(line),
        }
    }
    (users, bad)
}

/// Parses `shadow` (name and hash; the ageing fields are not judged).
pub fn parse_shadow(data: &[u8]) -> (Vec<Shadow>, Malformed) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (line, text) in lines(data) {
        let mut f = text.split(':');
        match (f.next(), f.next()) {
            (Some(name), Some(hash)) if !name.is_empty() => out.push(Shadow {
                line,
                name: name.to_string(),
                hash: hash.to_string(),
            }),
            _ => bad.push(line),
        }
    }
    (out, bad)
}

/// Parses `group`.
pub fn parse_group(data: &[u8]) -> (Vec<Group>, Malformed) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (line, text) in lines(data) {
        let f: Vec<&str> = text.split(':').collect();
        match f.as_slice() {
            [name, _pw, gid, members] if !name.is_empty() => match gid.parse::<u32>() {
                Ok(gid) => out.push(Group {
                    line,
                    name: (*name).to_string(),
                    gid,
                    members: members
                        .split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect(),
                }),
                Err(_) => bad.push(line),
            },
            _ => bad.push(line),
        }
    }
    (out, bad)
}

/// How a `shadow` (or `passwd`) password field authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    /// Empty: logs in without a password.
    Empty,
    /// `*`, `!`, `!!`, `!<hash>`, `x` and other non-hashes: no password login.
    Locked,
    /// Traditional DES crypt (13 characters): weak.
    Des,
    /// `$1$` MD5-crypt: weak.
    Md5,
    /// `$2*$` bcrypt.
    Bcrypt,
    /// `$5$` SHA-256-crypt.
    Sha256,
    /// `$6$` SHA-512-crypt.
    Sha512,
    /// `$y$` yescrypt / `$gy$` gost-yescrypt / `$7$` scrypt.
    Yescrypt,
    /// Anything else.
    Other,
}

impl HashKind {
    /// Classifies a password field.
    pub fn of(field: &str) -> Self {
        if field.is_empty() {
            return Self::Empty;
        }
        if field.starts_with('!') || field.starts_with('*') || field == "x" {
            return Self::Locked;
        }
        if let Some(rest) = field.strip_prefix('$') {
            let id = rest.split('$').next().unwrap_or_default();
            return match id {
                "1" => Self::Md5,
                "2" | "2a" | "2b" | "2x" | "2y" => Self::Bcrypt,
                "5" => Self::Sha256,
                "6" => Self::Sha512,
                "y" | "gy" | "7" => Self::Yescrypt,
                _ => Self::Other,
            };
        }
        let des_alphabet = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '/';
        if field.len() == 13 && field.chars().all(des_alphabet) {
            return Self::Des;
        }
        // crypt(3) treats any string that is not a valid hash as matching
        // no password: the account is effectively locked.
        Self::Locked
    }

    /// Name for evidence.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Locked => "locked",
            Self::Des => "des",
            Self::Md5 => "md5-crypt",
            Self::Bcrypt => "bcrypt",
            Self::Sha256 => "sha256-crypt",
            Self::Sha512 => "sha512-crypt",
            Self::Yescrypt => "yescrypt",
            Self::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn passwd_records_and_malformed_lines() {
        let data = b"root:x:0:0:root:/root:/bin/bash\n# c\n\nbad line\n+::::::\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n";
        let (users, bad) = parse_passwd(data);
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].name, "daemon");
        assert_eq!(users[1].line, 6);
        assert_eq!(users[1].shell, "/usr/sbin/nologin");
        assert_eq!(bad, vec![4, 5]);
    }

    #[test]
    fn shadow_and_group() {
        let (s, _) = parse_shadow(b"root:$y$j9T$abc:19000:0:99999:7:::\nlab::19000::::::\n");
        assert_eq!(s[1].name, "lab");
        assert_eq!(HashKind::of(&s[1].hash), HashKind::Empty);
        assert_eq!(HashKind::of(&s[0].hash), HashKind::Yescrypt);
        let (g, bad) = parse_group(b"sudo:x:27:alice, bob\nbroken:x:zz:\n");
        assert_eq!(g[0].members, vec!["alice", "bob"]);
        assert_eq!(bad, vec![2]);
    }

    #[test]
    fn hash_kinds() {
        assert_eq!(HashKind::of("*"), HashKind::Locked);
        assert_eq!(HashKind::of("!$6$x$y"), HashKind::Locked);
        assert_eq!(HashKind::of("$1$salt$hash"), HashKind::Md5);
        assert_eq!(HashKind::of("abJnggxhB/yWI"), HashKind::Des);
        assert_eq!(HashKind::of("$6$s$h"), HashKind::Sha512);
        assert_eq!(HashKind::of("nonsense!"), HashKind::Locked);
    }
}
