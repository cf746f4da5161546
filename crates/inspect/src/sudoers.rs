//! sudoers(5) facts from a guest: who may run what as whom, with which tags
//! (NOPASSWD above all), plus `Defaults` and alias lines, following
//! `#include`/`@include`/`#includedir`/`@includedir` directives.
//!
//! The input is untrusted: nothing here panics, at most [`MAX_LINES`] lines
//! are read per file, lines over [`MAX_LINE_LEN`] are ignored, and includes
//! are bounded in depth ([`MAX_INCLUDE_DEPTH`]) and count
//! ([`MAX_INCLUDED_FILES`]), with include loops reported, not followed.

/// What an include resolver returns: the (guest path, contents) of every
/// file matching the path or glob it was given, sorted lexically.
pub type ResolvedFiles = Vec<(String, Vec<u8>)>;

/// Most physical lines read from one file, so a huge file costs bounded time.
pub const MAX_LINES: usize = 100_000;
/// Physical lines longer than this (bytes) are ignored and reported.
pub const MAX_LINE_LEN: usize = 64 * 1024;
/// Deepest include nesting followed.
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// Most files included in total while reading one sudoers tree.
pub const MAX_INCLUDED_FILES: usize = 256;

/// Longest excerpt of a bad line quoted in a problem message.
const EXCERPT: usize = 120;

/// Everything read from a sudoers file and the files it includes, in the
/// order sudo reads them, for audit rules to judge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sudoers {
    /// User specifications (privilege grants).
    pub rules: Vec<SudoRule>,
    /// `Defaults…` lines, verbatim (logical lines).
    pub defaults: Vec<SudoLine>,
    /// `User_Alias`, `Runas_Alias`, `Host_Alias`, `Cmnd_Alias` (and
    /// `Cmd_Alias`) lines, verbatim (logical lines).
    pub aliases: Vec<SudoLine>,
    /// Guest paths of the files actually included, in inclusion order.
    pub includes: Vec<String>,
    /// Lines not understood, missing includes, exceeded bounds, loops.
    pub problems: Vec<String>,
}

/// One user specification: a grant of commands to users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SudoRule {
    /// Guest path of the file holding the rule.
    pub file: String,
    /// 1-based number of the rule's first physical line.
    pub line: usize,
    /// The whole logical line (continuations joined, comment removed).
    pub text: String,
    /// The user list as written: users, `%group`, `+netgroup`, `#uid`,
    /// aliases, `ALL`.
    pub who: String,
    /// The host list of the first `host = commands` group, as written.
    pub hosts: String,
    /// Some command carries the NOPASSWD tag (tags carry over to the
    /// following commands of the same group until PASSWD).
    pub nopasswd: bool,
    /// Some command is `ALL` (not negated).
    pub all_commands: bool,
    /// Some `ALL` command carries NOPASSWD: root without a password.
    pub nopasswd_all: bool,
    /// The commands (runas, options and tags removed), groups joined, as
    /// `cmd, cmd, …`.
    pub commands: String,
}

/// A line kept verbatim (Defaults, aliases) with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SudoLine {
    /// Guest path of the file holding the line.
    pub file: String,
    /// 1-based number of its first physical line.
    pub line: usize,
    /// The whole logical line (continuations joined, comment removed).
    pub text: String,
}

/// Tags that may prefix a command (`TAG:`).
const TAGS: &[&str] = &[
    "NOPASSWD",
    "PASSWD",
    "NOEXEC",
    "EXEC",
    "SETENV",
    "NOSETENV",
    "LOG_INPUT",
    "NOLOG_INPUT",
    "LOG_OUTPUT",
    "NOLOG_OUTPUT",
    "MAIL",
    "NOMAIL",
    "FOLLOW",
    "NOFOLLOW",
    "INTERCEPT",
    "NOINTERCEPT",
];

/// Options that may prefix a command (`OPTION=value`).
const OPTIONS: &[&str] = &[
    "ROLE",
    "TYPE",
    "CWD",
    "CHROOT",
    "NOTBEFORE",
    "NOTAFTER",
    "TIMEOUT",
    "APPARMOR_PROFILE",
    "PRIVS",
    "LIMITPRIVS",
];

/// Digest algorithms that may prefix a command (`sha256:…`).
const DIGESTS: &[&str] = &["sha224", "sha256", "sha384", "sha512"];

/// Alias definition keywords.
const ALIAS_WORDS: &[&str] = &[
    "User_Alias",
    "Runas_Alias",
    "Host_Alias",
    "Cmnd_Alias",
    "Cmd_Alias",
];

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Cuts a physical line at its comment: an unquoted, unescaped `#` at the
/// start of a word that is not followed by a digit (`#0` is a uid) or by
/// `-digit`.
fn strip_comment(s: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    let mut prev: Option<char> = None;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            prev = Some(c);
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '#' if !quoted => {
                let word_start = prev.is_none_or(|p| is_blank(p) || ",=(:!".contains(p));
                let rest = s.get(i + 1..).unwrap_or_default();
                let mut after = rest.chars();
                let uid = match after.next() {
                    Some(d) if d.is_ascii_digit() => true,
                    Some('-') => after.next().is_some_and(|d| d.is_ascii_digit()),
                    _ => false,
                };
                if word_start && !uid {
                    return s.get(..i).unwrap_or_default();
                }
            }
            _ => {}
        }
        prev = Some(c);
    }
    s
}

/// Whether a line (comment already removed) ends in an unescaped `\`.
fn continues(s: &str) -> bool {
    !s.chars()
        .rev()
        .take_while(|&c| c == '\\')
        .count()
        .is_multiple_of(2)
}

/// If a line is an include directive, returns (is_dir, path argument).
fn directive(line: &str) -> Option<(bool, String)> {
    let t = line.trim_start_matches(is_blank);
    let body = t.strip_prefix('#').or_else(|| t.strip_prefix('@'))?;
    let (word, rest) = body.split_once(is_blank)?;
    let is_dir = match word {
        "include" => false,
        "includedir" => true,
        _ => return None,
    };
    Some((is_dir, include_arg(rest)))
}

/// The path argument of an include: double-quoted or up to a blank, with
/// backslash escapes removed.
fn include_arg(rest: &str) -> String {
    let rest = rest.trim_matches(is_blank);
    let mut out = String::new();
    let mut chars = rest.chars();
    let quoted = rest.starts_with('"');
    if quoted {
        chars.next();
    }
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '"' if quoted => break,
            c if !quoted && is_blank(c) => break,
            c => out.push(c),
        }
    }
    out
}

/// Byte offsets of the chars in `want` that are outside quotes,
/// parentheses and backslash escapes.
fn top_level(s: &str, want: &[char]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            c if !quoted && depth == 0 && want.contains(&c) => out.push(i),
            _ => {}
        }
    }
    out
}

/// Splits `s` at the given byte offsets (each separator char is one byte).
fn split_at_offsets<'a>(s: &'a str, cuts: &[usize]) -> Vec<&'a str> {
    let mut parts = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &cut in cuts {
        parts.push(s.get(start..cut).unwrap_or_default());
        start = cut + 1;
    }
    parts.push(s.get(start..).unwrap_or_default());
    parts
}

/// Splits a user spec into (user list, rest): items separated by commas
/// (blanks allowed around them); the list ends at the first blank not
/// followed by a comma. `None` if there is no rest.
fn split_users(s: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    let mut escaped = false;
    let mut in_item = false;
    let mut expecting_item = true;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if in_item {
            match c {
                '\\' => escaped = true,
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    in_item = false;
                    expecting_item = true;
                }
                c if !quoted && is_blank(c) => in_item = false,
                _ => {}
            }
            continue;
        }
        match c {
            c if is_blank(c) => {}
            ',' if expecting_item => return None,
            ',' => expecting_item = true,
            _ if expecting_item => {
                in_item = true;
                expecting_item = false;
                match c {
                    '\\' => escaped = true,
                    '"' => quoted = true,
                    _ => {}
                }
            }
            _ => {
                let who = s.get(..i)?.trim_matches(is_blank);
                return Some((who, s.get(i..)?));
            }
        }
    }
    None
}

/// The identifier (letters, digits, `_`) that ends `s`, ignoring blanks.
fn trailing_word(s: &str) -> &str {
    let s = s.trim_end_matches(is_blank);
    let start = s
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
        .last()
        .map_or(s.len(), |(i, _)| i);
    s.get(start..).unwrap_or_default()
}

/// The identifier (letters, digits, `_`) that starts `s`.
fn leading_word(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    s.get(..end).unwrap_or_default()
}

/// What the commands of a rule grant, accumulated over its groups.
#[derive(Default)]
struct Grants {
    nopasswd: bool,
    all: bool,
    nopasswd_all: bool,
    commands: Vec<String>,
}

impl Grants {
    /// Reads one `Cmnd_Spec_List` (tags carry over within it).
    fn add_list(&mut self, list: &str) {
        let mut nopasswd = false;
        for item in split_at_offsets(list, &top_level(list, &[','])) {
            let mut rest = item.trim_matches(is_blank);
            if rest.starts_with('(') {
                // Runas list: user and group names cannot hold a bare `)`.
                let end = rest.find(')');
                rest = end
                    .and_then(|e| rest.get(e + 1..))
                    .unwrap_or_default()
                    .trim_start_matches(is_blank);
            }
            loop {
                let word = leading_word(rest);
                let after = rest
                    .get(word.len()..)
                    .unwrap_or_default()
                    .trim_start_matches(is_blank);
                if TAGS.contains(&word) && after.starts_with(':') {
                    match word {
                        "NOPASSWD" => nopasswd = true,
                        "PASSWD" => nopasswd = false,
                        _ => {}
                    }
                    rest = after
                        .get(1..)
                        .unwrap_or_default()
                        .trim_start_matches(is_blank);
                } else if OPTIONS.contains(&word) && after.starts_with('=') {
                    let value = after
                        .get(1..)
                        .unwrap_or_default()
                        .trim_start_matches(is_blank);
                    let end = value.find(is_blank).unwrap_or(value.len());
                    rest = value
                        .get(end..)
                        .unwrap_or_default()
                        .trim_start_matches(is_blank);
                } else {
                    break;
                }
            }
            if rest.is_empty() {
                continue;
            }
            let negations = rest
                .chars()
                .take_while(|&c| c == '!' || is_blank(c))
                .filter(|&c| c == '!')
                .count();
            let base = rest.trim_start_matches(|c: char| c == '!' || is_blank(c));
            if base == "ALL" && negations.is_multiple_of(2) {
                self.all = true;
                self.nopasswd_all |= nopasswd;
            }
            self.nopasswd |= nopasswd;
            self.commands.push(rest.to_string());
        }
    }
}

/// Whether a top-level `:` at `pos` ends a tag (`NOPASSWD:`) or a digest
/// prefix (`sha256:`) rather than separating `host = commands` groups.
fn is_tag_colon(s: &str, pos: usize) -> bool {
    let word = trailing_word(s.get(..pos).unwrap_or_default());
    TAGS.contains(&word) || DIGESTS.contains(&word)
}

/// Parses a user specification line; `None` if it is not one.
fn parse_rule(file: &str, line: usize, text: &str, problems: &mut Vec<String>) -> Option<SudoRule> {
    let (who, rest) = split_users(text)?;
    let eq = *top_level(rest, &['=']).first()?;
    let hosts = rest.get(..eq)?.trim_matches(is_blank);
    if hosts.is_empty() || who.is_empty() {
        return None;
    }
    let body = rest.get(eq + 1..)?;
    let colons: Vec<usize> = top_level(body, &[':'])
        .into_iter()
        .filter(|&p| !is_tag_colon(body, p))
        .collect();
    // Group the pieces: each piece after a separator must be `hosts = cmds`;
    // a piece without `=` is a stray colon (a sudo syntax error) and is kept
    // with the previous commands.
    let mut lists: Vec<String> = Vec::new();
    for (k, piece) in split_at_offsets(body, &colons).into_iter().enumerate() {
        if k == 0 {
            lists.push(piece.to_string());
            continue;
        }
        match top_level(piece, &['='])
            .first()
            .and_then(|&e| piece.get(e + 1..))
        {
            Some(cmds) => lists.push(cmds.to_string()),
            None => {
                problems.push(format!("{file}:{line}: unescaped ':' in a command"));
                if let Some(last) = lists.last_mut() {
                    last.push(':');
                    last.push_str(piece);
                }
            }
        }
    }
    let mut grants = Grants::default();
    for list in &lists {
        grants.add_list(list);
    }
    if grants.commands.is_empty() {
        return None;
    }
    Some(SudoRule {
        file: file.to_string(),
        line,
        text: text.to_string(),
        who: who.to_string(),
        hosts: hosts.to_string(),
        nopasswd: grants.nopasswd,
        all_commands: grants.all,
        nopasswd_all: grants.nopasswd_all,
        commands: grants.commands.join(", "),
    })
}

/// Whether a logical line is a `Defaults` line (`Defaults`, `Defaults:user`,
/// `Defaults@host`, `Defaults!cmd`, `Defaults>runas`).
fn is_defaults(text: &str) -> bool {
    text.strip_prefix("Defaults").is_some_and(|r| {
        r.chars()
            .next()
            .is_none_or(|c| is_blank(c) || ":@!>".contains(c))
    })
}

/// Whether a logical line defines an alias.
fn is_alias(text: &str) -> bool {
    let word = leading_word(text);
    ALIAS_WORDS.contains(&word)
        && text
            .get(word.len()..)
            .is_some_and(|r| r.starts_with(is_blank))
}

/// The directory of a guest path, for relative includes.
fn parent_dir(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((dir, _)) => dir,
    }
}

/// Whether sudo reads `name` from an includedir: no `~` suffix, no `.`.
fn includedir_accepts(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    !name.is_empty() && !name.ends_with('~') && !name.contains('.')
}

/// State shared across one sudoers read (all includes).
struct Reader<'r> {
    out: Sudoers,
    resolve: &'r mut dyn FnMut(&str) -> ResolvedFiles,
    stack: Vec<String>,
    included: usize,
}

impl Reader<'_> {
    fn read_file(&mut self, path: &str, data: &[u8], depth: usize) {
        self.stack.push(path.to_string());
        let mut pending: Option<(usize, String)> = None;
        for (i, raw) in data.split(|&b| b == b'\n').take(MAX_LINES).enumerate() {
            let n = i + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.len() > MAX_LINE_LEN {
                self.out.problems.push(format!(
                    "{path}:{n}: line longer than {MAX_LINE_LEN} bytes ignored"
                ));
                if let Some((start, text)) = pending.take() {
                    self.logical(path, start, &text);
                }
                continue;
            }
            let s = String::from_utf8_lossy(raw);
            if pending.is_none() {
                if let Some((is_dir, arg)) = directive(&s) {
                    self.include(path, n, is_dir, &arg, depth);
                    continue;
                }
            }
            let body = strip_comment(&s);
            let cont = continues(body);
            let body = if cont {
                body.get(..body.len() - 1).unwrap_or_default()
            } else {
                body
            };
            let (start, mut text) = pending.take().unwrap_or((n, String::new()));
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(body.trim_matches(is_blank));
            if cont {
                pending = Some((start, text));
            } else {
                self.logical(path, start, &text);
            }
        }
        if let Some((start, text)) = pending.take() {
            self.logical(path, start, &text);
        }
        self.stack.pop();
    }

    /// Classifies one logical line.
    fn logical(&mut self, file: &str, line: usize, text: &str) {
        let text = text.trim_matches(is_blank);
        if text.is_empty() {
            return;
        }
        let kept = || SudoLine {
            file: file.to_string(),
            line,
            text: text.to_string(),
        };
        if is_defaults(text) {
            self.out.defaults.push(kept());
        } else if is_alias(text) {
            self.out.aliases.push(kept());
        } else if let Some(rule) = parse_rule(file, line, text, &mut self.out.problems) {
            self.out.rules.push(rule);
        } else {
            let excerpt: String = text.chars().take(EXCERPT).collect();
            self.out
                .problems
                .push(format!("{file}:{line}: not understood: {excerpt}"));
        }
    }

    fn include(&mut self, from: &str, n: usize, is_dir: bool, arg: &str, depth: usize) {
        if arg.is_empty() {
            self.out
                .problems
                .push(format!("{from}:{n}: include without a path"));
            return;
        }
        let full = if arg.starts_with('/') {
            arg.to_string()
        } else {
            format!("{}/{arg}", parent_dir(from).trim_end_matches('/'))
        };
        if depth + 1 > MAX_INCLUDE_DEPTH {
            self.out.problems.push(format!(
                "{from}:{n}: include {full}: nesting deeper than {MAX_INCLUDE_DEPTH}, not followed"
            ));
            return;
        }
        let found: Vec<(String, Vec<u8>)> = if is_dir {
            let glob = format!("{}/*", full.trim_end_matches('/'));
            (self.resolve)(&glob)
                .into_iter()
                .filter(|(p, _)| includedir_accepts(p))
                .collect()
        } else {
            let found = (self.resolve)(&full);
            if found.is_empty() {
                self.out.problems.push(format!(
                    "{from}:{n}: include {full}: not found or unreadable"
                ));
            }
            found
        };
        for (file, contents) in found {
            if self.stack.contains(&file) {
                self.out.problems.push(format!(
                    "{from}:{n}: include {file}: include loop, not followed"
                ));
                continue;
            }
            if self.included >= MAX_INCLUDED_FILES {
                self.out
                    .problems
                    .push(format!("{from}:{n}: include {file}: more than {MAX_INCLUDED_FILES} included files, not followed"));
                return;
            }
            self.included += 1;
            self.out.includes.push(file.clone());
            self.read_file(&file, &contents, depth + 1);
        }
    }
}

/// Reads a sudoers file (`data` is the contents of `path`) and everything it
/// includes through `resolve`, which gets a path (or `DIR/*` for an
/// includedir) and returns every matching (guest path, contents), sorted.
pub fn parse_sudoers(
    path: &str,
    data: &[u8],
    resolve: &mut dyn FnMut(&str) -> ResolvedFiles,
) -> Sudoers {
    let mut reader = Reader {
        out: Sudoers::default(),
        resolve,
        stack: Vec::new(),
        included: 0,
    };
    reader.read_file(path, data, 0);
    reader.out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use std::collections::BTreeMap;

    fn resolver(files: &[(&str, &str)]) -> impl FnMut(&str) -> ResolvedFiles {
        let map: BTreeMap<String, Vec<u8>> = files
            .iter()
            .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
            .collect();
        move |pattern: &str| {
            let hit = |p: &str| match pattern.strip_suffix('*') {
                Some(dir) => p
                    .strip_prefix(dir)
                    .is_some_and(|n| !n.is_empty() && !n.contains('/')),
                None => p == pattern,
            };
            map.iter()
                .filter(|(p, _)| hit(p))
                .map(|(p, c)| (p.clone(), c.clone()))
                .collect()
        }
    }

    fn parse(text: &str) -> Sudoers {
        parse_sudoers("/etc/sudoers", text.as_bytes(), &mut resolver(&[]))
    }

    #[test]
    fn debian_default_file() {
        let s = parse(
            "#\n# This file MUST be edited with the 'visudo' command as root.\n\
             Defaults\tenv_reset\nDefaults\tmail_badpass\n\
             Defaults\tsecure_path=\"/usr/local/sbin:/usr/bin\"\n\
             # User privilege specification\nroot\tALL=(ALL:ALL) ALL\n\n\
             %sudo\tALL=(ALL:ALL) ALL\n",
        );
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(s.defaults.len(), 3);
        assert_eq!(
            s.defaults[2].text,
            "Defaults\tsecure_path=\"/usr/local/sbin:/usr/bin\""
        );
        assert_eq!(s.defaults[0].line, 3);
        assert_eq!(s.rules.len(), 2);
        let r = &s.rules[0];
        assert_eq!(
            (r.who.as_str(), r.hosts.as_str(), r.line),
            ("root", "ALL", 7)
        );
        assert!(r.all_commands && !r.nopasswd && !r.nopasswd_all);
        assert_eq!(r.commands, "ALL");
        assert_eq!(s.rules[1].who, "%sudo");
        assert_eq!(s.rules[1].file, "/etc/sudoers");
    }

    #[test]
    fn tags_carry_over_until_passwd() {
        let s = parse("alice ALL = /bin/ls, NOPASSWD: /bin/cat, /bin/more, PASSWD: ALL\n");
        let r = &s.rules[0];
        assert!(r.nopasswd);
        assert!(r.all_commands);
        assert!(!r.nopasswd_all, "ALL came after PASSWD:");
        assert_eq!(r.commands, "/bin/ls, /bin/cat, /bin/more, ALL");

        let s = parse("bob ALL=(ALL) NOEXEC:NOPASSWD: ALL\n");
        assert!(s.rules[0].nopasswd_all);
        let s = parse("carol ALL=(root) SETENV: /usr/bin/make\n");
        assert!(!s.rules[0].nopasswd && !s.rules[0].all_commands);
        assert_eq!(s.rules[0].commands, "/usr/bin/make");
    }

    #[test]
    fn several_host_groups_and_runas_colons() {
        let s = parse("dave, %ops , +net web1 = (root:adm) NOPASSWD: /bin/a : db1,db2 = ALL\n");
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        let r = &s.rules[0];
        assert_eq!(r.who, "dave, %ops , +net");
        assert_eq!(r.hosts, "web1");
        assert!(r.nopasswd && r.all_commands);
        assert!(!r.nopasswd_all, "tags reset at a new host group");
        assert_eq!(r.commands, "/bin/a, ALL");
    }

    #[test]
    fn uid_specs_are_not_comments_and_trailing_comments_go() {
        let s =
            parse("#0 ALL=(#0) NOPASSWD: ALL # root by uid\n#1000\tALL=ALL\n#not a rule ALL=ALL\n");
        assert_eq!(s.rules.len(), 2);
        assert_eq!(s.rules[0].who, "#0");
        assert_eq!(s.rules[0].text, "#0 ALL=(#0) NOPASSWD: ALL");
        assert!(s.rules[0].nopasswd_all);
        assert_eq!(s.rules[1].who, "#1000");
        assert!(s.problems.is_empty());
    }

    #[test]
    fn negated_all_digest_options_and_escapes() {
        let s = parse("eve ALL = !ALL, sha256:abcd /bin/x, CWD=/tmp TIMEOUT=5 NOPASSWD: /bin/chown root\\:root /x\n");
        let r = &s.rules[0];
        assert!(!r.all_commands, "!ALL is a denial");
        assert!(r.nopasswd);
        assert_eq!(
            r.commands,
            "!ALL, sha256:abcd /bin/x, /bin/chown root\\:root /x"
        );
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert!(parse("x ALL = !!ALL\n").rules[0].all_commands);
    }

    #[test]
    fn continuation_lines_join() {
        let s = parse("User_Alias ADMINS = alice, \\\n    bob\nADMINS ALL = \\\n  NOPASSWD: \\\n  ALL\nz ALL=/bin/a\\\\\n");
        assert_eq!(s.aliases.len(), 1);
        assert_eq!(s.aliases[0].text, "User_Alias ADMINS = alice, bob");
        assert_eq!(s.rules.len(), 2);
        assert_eq!(s.rules[0].line, 3);
        assert_eq!(s.rules[0].text, "ADMINS ALL = NOPASSWD: ALL");
        assert!(s.rules[0].nopasswd_all);
        // An escaped backslash at the end does not continue.
        assert_eq!(s.rules[1].commands, "/bin/a\\\\");
        assert_eq!(s.rules[1].line, 6);
    }

    #[test]
    fn defaults_and_aliases_classified() {
        let s = parse(
            "Defaults:alice !authenticate\nDefaults@host x\nDefaults!/bin/ls noexec\nDefaults>root y\n\
             Cmnd_Alias SHELLS = /bin/sh\nHost_Alias H = a\nRunas_Alias R = b\nDefaultsx = y\n",
        );
        assert_eq!(s.defaults.len(), 4);
        assert_eq!(s.aliases.len(), 3);
        assert_eq!(s.aliases[0].line, 5);
        // "Defaultsx = y" is neither Defaults nor a valid rule.
        assert!(s.rules.is_empty());
        assert_eq!(s.problems.len(), 1);
        assert!(s.problems[0].starts_with("/etc/sudoers:8:"));
    }

    #[test]
    fn garbage_lines_are_problems() {
        let s = parse("just words\n=\n, a ALL=ALL\nbob ALL=\n\u{0}\u{1}\nalice\n");
        assert!(s.rules.is_empty());
        assert_eq!(s.problems.len(), 6, "{:?}", s.problems);
        let mut bytes = b"\xff\xfe ALL=(ALL) ALL\n".to_vec();
        bytes.extend_from_slice(&[b'x'; MAX_LINE_LEN + 1]);
        let s = parse_sudoers("/s", &bytes, &mut resolver(&[]));
        assert_eq!(s.rules[0].who, "\u{fffd}\u{fffd}");
        assert!(s.problems[0].contains("longer than"));
    }

    #[test]
    fn includes_relative_dir_filter_and_forms() {
        let main = "#includedir /etc/sudoers.d\n@include extra\n#include \"/etc/with space\"\nroot ALL=ALL\n";
        let files = [
            ("/etc/sudoers.d/90-cloud", "ubuntu ALL=(ALL) NOPASSWD:ALL\n"),
            ("/etc/sudoers.d/README", "# nothing\n"),
            ("/etc/sudoers.d/old~", "bad1 ALL=ALL\n"),
            ("/etc/sudoers.d/x.bak", "bad2 ALL=ALL\n"),
            ("/etc/extra", "@includedir more\n"),
            ("/etc/more/z", "zed ALL=ALL\n"),
            ("/etc/with space", "spacey ALL=ALL\n"),
        ];
        let s = parse_sudoers("/etc/sudoers", main.as_bytes(), &mut resolver(&files));
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(
            s.includes,
            vec![
                "/etc/sudoers.d/90-cloud",
                "/etc/sudoers.d/README",
                "/etc/extra",
                "/etc/more/z",
                "/etc/with space"
            ]
        );
        let who: Vec<&str> = s.rules.iter().map(|r| r.who.as_str()).collect();
        assert_eq!(who, vec!["ubuntu", "zed", "spacey", "root"]);
        assert!(s.rules[0].nopasswd_all);
        assert_eq!(s.rules[0].file, "/etc/sudoers.d/90-cloud");
        // "#include" needs a blank after it; "#includes" is a comment.
        let s = parse("#includes /x\n# include /y\n");
        assert!(s.includes.is_empty() && s.problems.is_empty() && s.rules.is_empty());
    }

    #[test]
    fn include_problems_loops_depth_and_count() {
        let s = parse("#include /missing\n#includedir /emptydir\n@include\n");
        assert_eq!(s.problems.len(), 2, "{:?}", s.problems);
        assert!(s.problems[0].contains("/missing"));

        let files = [("/etc/sudoers", "a ALL=ALL\n@include /etc/sudoers\n")];
        let s = parse_sudoers("/etc/sudoers", files[0].1.as_bytes(), &mut resolver(&files));
        assert_eq!(s.rules.len(), 1);
        assert!(s.problems[0].contains("loop"));

        let owned: Vec<(String, String)> = (0..30)
            .map(|i| {
                (
                    format!("/d/{i}"),
                    format!("u{i} ALL=ALL\n#include {}\n", i + 1),
                )
            })
            .collect();
        let files: Vec<(&str, &str)> = owned
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let s = parse_sudoers("/main", b"#include d/0\n", &mut resolver(&files));
        assert_eq!(s.includes.len(), MAX_INCLUDE_DEPTH);
        assert_eq!(
            s.includes[1], "/d/1",
            "relative to the including file's directory"
        );
        assert!(s.problems.iter().any(|p| p.contains("nesting")));

        let owned: Vec<(String, String)> = (0..300)
            .map(|i| (format!("/m/f{i:03}"), "u ALL=ALL\n".to_string()))
            .collect();
        let files: Vec<(&str, &str)> = owned
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let s = parse_sudoers("/main", b"#includedir /m/\n", &mut resolver(&files));
        assert_eq!(s.includes.len(), MAX_INCLUDED_FILES);
        assert_eq!(s.rules.len(), MAX_INCLUDED_FILES);
        assert!(s.problems.iter().any(|p| p.contains("more than")));
    }

    #[test]
    fn line_cap() {
        let many = "u ALL=ALL\n".repeat(MAX_LINES + 3);
        assert_eq!(parse(&many).rules.len(), MAX_LINES);
    }

    #[test]
    fn helpers() {
        assert!(includedir_accepts("/etc/sudoers.d/ok_name"));
        assert!(!includedir_accepts("/etc/sudoers.d/a.conf"));
        assert!(!includedir_accepts("/etc/sudoers.d/a~"));
        assert_eq!(parent_dir("/etc/sudoers"), "/etc");
        assert_eq!(parent_dir("/sudoers"), "/");
        assert_eq!(strip_comment("a \"b # c\" # d"), "a \"b # c\" ");
        assert_eq!(strip_comment("x\\# y"), "x\\# y");
        assert_eq!(strip_comment("(#-1) #-x"), "(#-1) ");
        assert_eq!(split_users("a , b c=d"), Some(("a , b", "c=d")));
        assert_eq!(split_users("\"x y\" h=c"), Some(("\"x y\"", "h=c")));
        assert_eq!(split_users("a,,b h=c"), None);
        assert_eq!(split_users("lonely"), None);
    }

    use crate::testing::garbage;

    #[test]
    fn hostile_bytes_never_panic() {
        for seed in 1..200u64 {
            let data = garbage(seed, 2000);
            let lines = data.split(|&b| b == b'\n').count();
            let mut res = |_: &str| vec![("/x".to_string(), garbage(seed + 1, 500))];
            let s = parse_sudoers("/etc/sudoers", &data, &mut res);
            assert!(
                s.rules.len() + s.defaults.len() + s.aliases.len()
                    <= lines + s.includes.len() * 500
            );
            assert!(s.includes.len() <= MAX_INCLUDED_FILES);
        }
    }
}
