//! OpenSSH facts from a guest: `authorized_keys` entries (with fingerprints
//! exactly as `ssh-keygen -lf` prints them), private-key detection, and the
//! effective `sshd_config` with its `Include`s and `Match` blocks.
//!
//! Everything here parses bytes from an untrusted image: it never panics,
//! reads at most [`MAX_LINES`] lines per file, ignores lines longer than
//! [`MAX_LINE_LEN`], and bounds `Include` nesting ([`MAX_INCLUDE_DEPTH`]) and
//! the number of included files ([`MAX_INCLUDED_FILES`]).

use sha2::{Digest, Sha256};

/// What an include resolver returns: the (guest path, contents) of every
/// file matching the path or glob it was given, sorted lexically.
pub type ResolvedFiles = Vec<(String, Vec<u8>)>;

/// Most lines read from one file, so a huge file costs bounded time.
pub const MAX_LINES: usize = 100_000;
/// Lines longer than this (bytes) are ignored, so one line costs bounded memory.
pub const MAX_LINE_LEN: usize = 64 * 1024;
/// Deepest `Include` nesting followed (sshd's own limit is 16 as well).
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// Most files included in total while reading one configuration.
pub const MAX_INCLUDED_FILES: usize = 256;

/// Where sshd resolves relative `Include` paths.
const SSHD_CONFIG_DIR: &str = "/etc/ssh/";

/// Splits `data` into at most [`MAX_LINES`] lines (1-based numbers), `\r\n`
/// tolerated; lines over [`MAX_LINE_LEN`] come back as `None`.
fn bounded_lines(data: &[u8]) -> impl Iterator<Item = (usize, Option<&[u8]>)> {
    data.split(|&b| b == b'\n')
        .take(MAX_LINES)
        .enumerate()
        .map(|(i, raw)| {
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            (i + 1, (line.len() <= MAX_LINE_LEN).then_some(line))
        })
}

use crate::base64::{decode_padded as base64_decode, encode_nopad as base64_encode_nopad};

// ---------------------------------------------------------------------------
// authorized_keys
// ---------------------------------------------------------------------------

/// One public key line of an `authorized_keys` file, as data an audit rule
/// can judge (who may log in, with which key, under which restrictions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    /// 1-based line number in the file.
    pub line: usize,
    /// Options before the key type, split on unquoted commas and kept
    /// verbatim (quotes included), e.g. `command="/bin/echo a, b"`.
    pub options: Vec<String>,
    /// The key type token as written, e.g. `ssh-ed25519`.
    pub key_type: String,
    /// The type string inside the decoded blob; `None` if the blob is not
    /// valid base64 or holds no type string (sshd would ignore such a line).
    pub blob_type: Option<String>,
    /// `SHA256:` + unpadded base64 of SHA-256 of the key, exactly as
    /// `ssh-keygen -lf` prints it; for certificates it is the fingerprint of
    /// the certified plain key (as ssh-keygen and sshd's logs show it).
    /// `None` if the blob does not decode.
    pub fingerprint: Option<String>,
    /// Everything after the blob, trimmed (lossy UTF-8).
    pub comment: String,
    /// Key size as `ssh-keygen -lf` reports it (RSA/DSA modulus bits, 256
    /// for Ed25519, the curve size for ECDSA), when derivable from the blob.
    pub bits: Option<u32>,
}

/// The parsed content of one `authorized_keys` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizedKeys {
    /// The key lines, in file order.
    pub keys: Vec<AuthorizedKey>,
    /// Line numbers (1-based) of non-empty, non-comment lines that are not
    /// keys, including lines ignored for exceeding [`MAX_LINE_LEN`].
    pub malformed: Vec<usize>,
}

/// Key types sshd accepts in `authorized_keys` (plain and certificate).
const KEY_TYPES: &[&str] = &[
    "ssh-rsa",
    "ssh-dss",
    "ssh-ed25519",
    "ssh-xmss@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ssh-dss-cert-v01@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "ssh-xmss-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
];

fn is_key_type(token: &[u8]) -> bool {
    KEY_TYPES.iter().any(|t| t.as_bytes() == token)
}

fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn trim_blank(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&c| !is_blank(c)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&c| !is_blank(c))
        .map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

/// Splits off the first blank-delimited token; returns (token, rest).
fn split_token(s: &[u8]) -> (&[u8], &[u8]) {
    let s = trim_blank(s);
    match s.iter().position(|&c| is_blank(c)) {
        Some(i) => (
            s.get(..i).unwrap_or_default(),
            s.get(i..).unwrap_or_default(),
        ),
        None => (s, &[]),
    }
}

/// Splits the options field (up to the first unquoted blank, as sshd does,
/// `\"` inside quotes not ending them); `None` if a quote is unterminated.
fn split_options(s: &[u8]) -> Option<(Vec<String>, &[u8])> {
    let mut quoted = false;
    let mut end = s.len();
    let mut cuts = Vec::new();
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if !quoted && is_blank(c) {
            end = i;
            break;
        }
        if c == b'\\' && s.get(i + 1) == Some(&b'"') {
            i += 2;
            continue;
        }
        if c == b'"' {
            quoted = !quoted;
        } else if c == b',' && !quoted {
            cuts.push(i);
        }
        i += 1;
    }
    if quoted {
        return None;
    }
    let field = s.get(..end)?;
    let mut options = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain(std::iter::once(end)) {
        let part = field.get(start..cut).unwrap_or_default();
        if !part.is_empty() {
            options.push(String::from_utf8_lossy(part).into_owned());
        }
        start = cut + 1;
    }
    Some((options, s.get(end..).unwrap_or_default()))
}

/// Reads SSH wire-format fields (RFC 4251 `string`/`mpint`) from a blob.
struct Wire<'a> {
    rest: &'a [u8],
}

impl<'a> Wire<'a> {
    /// One length-prefixed string, `None` if truncated.
    fn string(&mut self) -> Option<&'a [u8]> {
        let len_bytes = self.rest.get(..4)?;
        let mut be = [0u8; 4];
        be.copy_from_slice(len_bytes);
        let len = usize::try_from(u32::from_be_bytes(be)).ok()?;
        let value = self.rest.get(4..4usize.checked_add(len)?)?;
        self.rest = self.rest.get(4 + len..)?;
        Some(value)
    }

    /// Skips `n` strings and returns the raw bytes they occupied.
    fn raw_fields(&mut self, n: usize) -> Option<&'a [u8]> {
        let start = self.rest;
        for _ in 0..n {
            self.string()?;
        }
        start.get(..start.len() - self.rest.len())
    }
}

/// Number of significant bits of an mpint (big-endian, leading zeros ignored).
fn mpint_bits(v: &[u8]) -> Option<u32> {
    let first = v.iter().position(|&b| b != 0)?;
    let lead = v.get(first)?;
    let bytes = u32::try_from(v.len() - first).ok()?;
    Some((bytes - 1) * 8 + (8 - lead.leading_zeros()))
}

/// The plain key type of a certificate type and how many wire fields its
/// public key has after the nonce.
fn plain_layout(blob_type: &str) -> Option<(&str, usize)> {
    let plain = blob_type
        .strip_suffix("-cert-v01@openssh.com")
        .map_or(blob_type, |p| {
            // The sk types keep their "@openssh.com" suffix in plain form.
            match p {
                "sk-ssh-ed25519" => "sk-ssh-ed25519@openssh.com",
                "sk-ecdsa-sha2-nistp256" => "sk-ecdsa-sha2-nistp256@openssh.com",
                "ssh-xmss" => "ssh-xmss@openssh.com",
                other => other,
            }
        });
    let fields = match plain {
        "ssh-rsa" => 2,
        "ssh-dss" => 4,
        "ssh-ed25519" => 1,
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => 2,
        "sk-ssh-ed25519@openssh.com" => 2,
        "sk-ecdsa-sha2-nistp256@openssh.com" => 3,
        "ssh-xmss@openssh.com" => 2,
        _ => return None,
    };
    Some((plain, fields))
}

/// Key size of the plain public key fields, as `ssh-keygen` reports it.
fn key_bits(plain: &str, fields: &[u8]) -> Option<u32> {
    let mut w = Wire { rest: fields };
    match plain {
        "ssh-rsa" => {
            w.string()?; // e
            mpint_bits(w.string()?)
        }
        "ssh-dss" => mpint_bits(w.string()?),
        "ssh-ed25519" | "sk-ssh-ed25519@openssh.com" => (w.string()?.len() == 32).then_some(256),
        _ => match w.string()? {
            b"nistp256" => Some(256),
            b"nistp384" => Some(384),
            b"nistp521" => Some(521),
            _ => None,
        },
    }
}

/// What a decoded blob tells: its type string, the fingerprint (of the plain
/// key for certificates) and the key size.
fn analyse_blob(blob: &[u8]) -> (Option<String>, Option<String>, Option<u32>) {
    let mut w = Wire { rest: blob };
    let Some(type_bytes) = w.string() else {
        return (None, None, None);
    };
    let blob_type = String::from_utf8_lossy(type_bytes).into_owned();
    let plain_fp = || fingerprint_of(blob);
    let Some((plain, nfields)) = plain_layout(&blob_type) else {
        return (Some(blob_type), Some(plain_fp()), None);
    };
    let is_cert = plain != blob_type;
    if is_cert && w.string().is_none() {
        // Certificate without even a nonce: fingerprint the blob as-is.
        return (Some(blob_type), Some(plain_fp()), None);
    }
    let Some(fields) = w.raw_fields(nfields) else {
        return (Some(blob_type), Some(plain_fp()), None);
    };
    let bits = key_bits(plain, fields);
    let fingerprint = if is_cert {
        let mut plain_blob = Vec::with_capacity(4 + plain.len() + fields.len());
        plain_blob.extend_from_slice(&u32::try_from(plain.len()).unwrap_or(0).to_be_bytes());
        plain_blob.extend_from_slice(plain.as_bytes());
        plain_blob.extend_from_slice(fields);
        fingerprint_of(&plain_blob)
    } else {
        plain_fp()
    };
    (Some(blob_type), Some(fingerprint), bits)
}

/// `SHA256:` fingerprint of a key blob, in the form OpenSSH prints.
fn fingerprint_of(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!("SHA256:{}", base64_encode_nopad(digest.as_slice()))
}

/// Parses `type blob [comment]` (no options); `None` if the type is unknown
/// or there is no blob.
fn parse_key_part(line: usize, options: Vec<String>, s: &[u8]) -> Option<AuthorizedKey> {
    let (key_type, rest) = split_token(s);
    if !is_key_type(key_type) {
        return None;
    }
    let (blob_text, rest) = split_token(rest);
    if blob_text.is_empty() {
        return None;
    }
    let (blob_type, fingerprint, bits) = match base64_decode(blob_text) {
        Some(blob) => analyse_blob(&blob),
        None => (None, None, None),
    };
    Some(AuthorizedKey {
        line,
        options,
        key_type: String::from_utf8_lossy(key_type).into_owned(),
        blob_type,
        fingerprint,
        comment: String::from_utf8_lossy(trim_blank(rest)).into_owned(),
        bits,
    })
}

/// Parses an `authorized_keys` file (sshd(8) format) so audit rules can see
/// every key that grants a login, its options and fingerprint.
pub fn parse_authorized_keys(data: &[u8]) -> AuthorizedKeys {
    let mut out = AuthorizedKeys::default();
    for (n, line) in bounded_lines(data) {
        let Some(line) = line else {
            out.malformed.push(n);
            continue;
        };
        let line = trim_blank(line);
        if line.is_empty() || line.first() == Some(&b'#') {
            continue;
        }
        // As sshd: try the line as a bare key first, then as options + key.
        let key = parse_key_part(n, Vec::new(), line).or_else(|| {
            let (options, rest) = split_options(line)?;
            parse_key_part(n, options, rest)
        });
        match key {
            Some(k) => out.keys.push(k),
            None => out.malformed.push(n),
        }
    }
    out
}

/// Whether a file holds a private key (PEM `-----BEGIN … PRIVATE KEY-----`,
/// OpenSSH, SSH2 or PuTTY formats), so an audit can flag keys left in images.
pub fn is_private_key(data: &[u8]) -> bool {
    bounded_lines(data).any(|(_, line)| {
        let Some(line) = line else { return false };
        let line = trim_blank(line);
        (line.starts_with(b"-----BEGIN ") && line.ends_with(b"PRIVATE KEY-----"))
            || (line.starts_with(b"---- BEGIN SSH2 ") && line.ends_with(b"PRIVATE KEY ----"))
            || line.starts_with(b"PuTTY-User-Key-File-")
    })
}

// ---------------------------------------------------------------------------
// sshd_config
// ---------------------------------------------------------------------------

/// One `keyword value` line of an sshd configuration, with where it came
/// from, so findings can point at the exact file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The keyword, lowercased (sshd keywords are case-insensitive).
    pub keyword: String,
    /// The arguments, unquoted, joined by single spaces.
    pub value: String,
    /// The arguments one by one, unquoted (quoted values may hold spaces).
    pub args: Vec<String>,
    /// Guest path of the file the line is in.
    pub file: String,
    /// 1-based line number in that file.
    pub line: usize,
}

/// A `Match` block: settings that apply only when its criteria hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchBlock {
    /// The criteria as written after `Match` (`all` for `Match all`). A
    /// `Match` in a file included from inside another Match block gets
    /// both criteria joined by a space (sshd requires both to hold).
    pub criteria: String,
    /// Guest path of the file holding the `Match` line.
    pub file: String,
    /// 1-based line number of the `Match` line.
    pub line: usize,
    /// The block's settings, in order (including those from Includes).
    pub settings: Vec<Setting>,
}

/// The effective sshd configuration: all lines in the order sshd reads
/// them, with Includes expanded, so rules can ask what is in effect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshdConfig {
    /// Settings outside any Match block, in reading order (all occurrences).
    pub settings: Vec<Setting>,
    /// Match blocks in reading order.
    pub matches: Vec<MatchBlock>,
    /// Guest paths of the files actually included, in inclusion order.
    pub includes: Vec<String>,
    /// What could not be read or understood (bad lines, missing includes,
    /// exceeded bounds, include loops), as human-readable text.
    pub problems: Vec<String>,
}

/// Splits a config line into words as sshd's `argv_split` does: blanks
/// separate, double quotes group, backslash escapes `\`, `"`, `'` and
/// blank, and a word starting with `#` ends the line. `Err` on an
/// unterminated quote.
fn split_words(s: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        match chars.peek() {
            None | Some('#') => break,
            Some(_) => {}
        }
        let mut word = String::new();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' if matches!(chars.peek(), Some('\\' | '"' | '\'' | ' ' | '\t')) => {
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                }
                '"' => quoted = !quoted,
                ' ' | '\t' if !quoted => break,
                _ => word.push(c),
            }
        }
        if quoted {
            return Err("unterminated quote");
        }
        words.push(word);
    }
    Ok(words)
}

/// Splits `keyword[ |=]args`: the keyword ends at a blank or `=`, then
/// blanks and at most one `=` separate it from the arguments.
fn split_keyword(line: &str) -> (&str, &str) {
    let line = line.trim_start_matches([' ', '\t']);
    let end = line.find([' ', '\t', '=']).unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start_matches([' ', '\t']);
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    (keyword, rest.trim_start_matches([' ', '\t']))
}

/// Whether an Include pattern holds glob metacharacters.
fn has_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Where settings currently go: the global section or a Match block.
#[derive(Clone, Copy)]
enum Target {
    Global,
    Block(usize),
}

/// Mutable state shared across one configuration read (all includes).
struct SshdReader<'r> {
    config: SshdConfig,
    resolve: &'r mut dyn FnMut(&str) -> ResolvedFiles,
    stack: Vec<String>,
    included: usize,
}

impl SshdReader<'_> {
    fn push(&mut self, target: Target, setting: Setting) {
        match target {
            Target::Global => self.config.settings.push(setting),
            Target::Block(i) => {
                if let Some(b) = self.config.matches.get_mut(i) {
                    b.settings.push(setting);
                }
            }
        }
    }

    fn criteria_of(&self, target: Target) -> Option<String> {
        match target {
            Target::Global => None,
            Target::Block(i) => self.config.matches.get(i).map(|b| b.criteria.clone()),
        }
    }

    /// Reads one file; `start` is where its lines go until its first Match.
    fn read_file(&mut self, path: &str, data: &[u8], start: Target, depth: usize) {
        self.stack.push(path.to_string());
        let outer = self.criteria_of(start);
        let mut target = start;
        for (n, line) in bounded_lines(data) {
            let Some(line) = line else {
                self.config.problems.push(format!(
                    "{path}:{n}: line longer than {MAX_LINE_LEN} bytes ignored"
                ));
                continue;
            };
            let text = String::from_utf8_lossy(line);
            let (keyword, rest) = split_keyword(&text);
            if keyword.is_empty() || keyword.starts_with('#') {
                continue;
            }
            let args = match split_words(rest) {
                Ok(a) => a,
                Err(why) => {
                    self.config.problems.push(format!("{path}:{n}: {why}"));
                    continue;
                }
            };
            let keyword = keyword.to_ascii_lowercase();
            if keyword == "match" {
                if args.is_empty() {
                    self.config
                        .problems
                        .push(format!("{path}:{n}: Match without criteria"));
                }
                let own = args.join(" ");
                let criteria = match outer.as_deref() {
                    None | Some("all") => own,
                    Some(o) if own == "all" => o.to_string(),
                    Some(o) => format!("{o} {own}"),
                };
                self.config.matches.push(MatchBlock {
                    criteria,
                    file: path.to_string(),
                    line: n,
                    settings: Vec::new(),
                });
                target = Target::Block(self.config.matches.len() - 1);
                continue;
            }
            if args.is_empty() {
                self.config.problems.push(format!(
                    "{path}:{n}: no argument after keyword \"{keyword}\""
                ));
                continue;
            }
            let patterns = if keyword == "include" {
                args.clone()
            } else {
                Vec::new()
            };
            self.push(
                target,
                Setting {
                    keyword,
                    value: args.join(" "),
                    args,
                    file: path.to_string(),
                    line: n,
                },
            );
            for pattern in &patterns {
                self.include(path, n, pattern, target, depth);
            }
        }
        self.stack.pop();
    }

    fn include(&mut self, from: &str, n: usize, pattern: &str, target: Target, depth: usize) {
        let full = if pattern.starts_with('/') {
            pattern.to_string()
        } else {
            format!("{SSHD_CONFIG_DIR}{pattern}")
        };
        if depth + 1 > MAX_INCLUDE_DEPTH {
            self.config.problems.push(format!(
                "{from}:{n}: Include {full}: nesting deeper than {MAX_INCLUDE_DEPTH}, not followed"
            ));
            return;
        }
        let found = (self.resolve)(&full);
        if found.is_empty() && !has_glob(&full) {
            self.config.problems.push(format!(
                "{from}:{n}: Include {full}: not found or unreadable"
            ));
        }
        for (file, contents) in found {
            if self.stack.contains(&file) {
                self.config.problems.push(format!(
                    "{from}:{n}: Include {file}: include loop, not followed"
                ));
                continue;
            }
            if self.included >= MAX_INCLUDED_FILES {
                self.config
                    .problems
                    .push(format!("{from}:{n}: Include {file}: more than {MAX_INCLUDED_FILES} included files, not followed"));
                return;
            }
            self.included += 1;
            self.config.includes.push(file.clone());
            self.read_file(&file, &contents, target, depth + 1);
        }
    }
}

/// Reads the effective sshd configuration starting from `main` (the
/// contents of `main_path`), expanding `Include`s through `resolve`, which
/// gets an absolute path or glob and returns every matching (guest path,
/// contents), sorted lexically as sshd reads them.
pub fn parse_sshd_config(
    main_path: &str,
    main: &[u8],
    resolve: &mut dyn FnMut(&str) -> ResolvedFiles,
) -> SshdConfig {
    let mut reader = SshdReader {
        config: SshdConfig::default(),
        resolve,
        stack: Vec::new(),
        included: 0,
    };
    reader.read_file(main_path, main, Target::Global, 0);
    reader.config
}

/// sshd's AuthorizedKeysFile when the keyword is not set.
const DEFAULT_AUTHORIZED_KEYS: &[&str] = &[".ssh/authorized_keys", ".ssh/authorized_keys2"];

impl SshdConfig {
    /// The setting in effect outside Match blocks: sshd keeps the first
    /// value it reads for most keywords. `keyword` is case-insensitive.
    pub fn get(&self, keyword: &str) -> Option<&Setting> {
        self.settings
            .iter()
            .find(|s| s.keyword.eq_ignore_ascii_case(keyword))
    }

    /// Every occurrence outside Match blocks, for keywords sshd accumulates
    /// (Port, ListenAddress, HostKey, …). `keyword` is case-insensitive.
    pub fn all(&self, keyword: &str) -> Vec<&Setting> {
        self.settings
            .iter()
            .filter(|s| s.keyword.eq_ignore_ascii_case(keyword))
            .collect()
    }

    /// The AuthorizedKeysFile patterns sshd consults, unexpanded: first the
    /// global ones (`(pattern, None)`; sshd's default when unset, nothing
    /// for `none`), then each Match block's own first AuthorizedKeysFile
    /// (`(pattern, Some(criteria))`), which replaces the global list when
    /// that block matches.
    pub fn authorized_keys_files(&self) -> Vec<(String, Option<String>)> {
        let tokens = |s: &Setting| -> Vec<String> {
            s.args
                .iter()
                .filter(|a| !a.eq_ignore_ascii_case("none"))
                .cloned()
                .collect()
        };
        let mut out: Vec<(String, Option<String>)> = match self.get("authorizedkeysfile") {
            Some(s) => tokens(s).into_iter().map(|t| (t, None)).collect(),
            None => DEFAULT_AUTHORIZED_KEYS
                .iter()
                .map(|t| (t.to_string(), None))
                .collect(),
        };
        for block in &self.matches {
            if let Some(s) = block
                .settings
                .iter()
                .find(|s| s.keyword == "authorizedkeysfile")
            {
                out.extend(
                    tokens(s)
                        .into_iter()
                        .map(|t| (t, Some(block.criteria.clone()))),
                );
            }
        }
        out
    }
}

/// Expands an AuthorizedKeysFile-style pattern for one account, as sshd
/// does: `%h` home, `%u` user, `%U` uid, `%%` a literal `%` (unknown tokens
/// kept as written), then a relative result is taken relative to `home`.
pub fn expand_tokens(pattern: &str, user: &str, home: &str, uid: u32) -> String {
    let mut out = String::with_capacity(pattern.len() + home.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(home),
            Some('u') => out.push_str(user),
            Some('U') => out.push_str(&uid.to_string()),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    if out.starts_with('/') {
        out
    } else {
        format!("{}/{out}", home.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]
    use super::*;
    use std::collections::BTreeMap;
    use std::process::Command;

    const ED_PUB: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJNKqKZP/W+10X80aPT+FwXe1No7VgDbS8chnZeodIF6 fixed@vector";
    const ED_FP: &str = "SHA256:Tzq206uhDvGufHyssBQwkiB6Yx4I0boO4mibbwMbfoY";
    const ED_CERT: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIGB4k+VTq7QVn1R9hg6wWb3NOlpXE9/AZ7poE368eEUgAAAAIJNKqKZP/W+10X80aPT+FwXe1No7VgDbS8chnZeodIF6AAAAAAAAAAAAAAABAAAABWlkZW50AAAACQAAAAVhbGljZQAAAAAAAAAA//////////8AAAAAAAAAggAAABVwZXJtaXQtWDExLWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1hZ2VudC1mb3J3YXJkaW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YXJkaW5nAAAAAAAAAApwZXJtaXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci1yYwAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACA938hv84CsofBzmL5DXEBxi5EDWfF2XQpzPm+PrK5y8wAAAFMAAAALc3NoLWVkMjU1MTkAAABA5Ur1fKaz6rvUTi+/v0fn3vmGBlF1eY/fttZUs9ke5RYQr89D6huSBxjKEshXl4b8lDYqbgqfcdWJ9mizdX3FAA== fixed@vector";

    fn wire_string(v: &[u8]) -> Vec<u8> {
        let mut out = (v.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(v);
        out
    }

    fn b64_padded(data: &[u8]) -> String {
        let mut s = base64_encode_nopad(data);
        while !s.len().is_multiple_of(4) {
            s.push('=');
        }
        s
    }

    #[test]
    fn base64_round_trips_and_rejects_garbage() {
        for input in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            let enc = b64_padded(input);
            if input.is_empty() {
                assert_eq!(base64_decode(enc.as_bytes()), None);
            } else {
                assert_eq!(base64_decode(enc.as_bytes()).unwrap(), input);
            }
        }
        assert_eq!(base64_encode_nopad(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode_nopad(b"fo"), "Zm8");
        assert_eq!(base64_decode(b"Zm8="), Some(b"fo".to_vec()));
        assert_eq!(base64_decode(b"Zm8"), None, "missing padding");
        assert_eq!(base64_decode(b"Zm!="), None, "bad character");
        assert_eq!(base64_decode(b"Z==="), None, "too much padding");
        assert_eq!(base64_decode(b"Zm=8"), None, "padding in the middle");
    }

    #[test]
    fn fixed_vector_ed25519_and_certificate() {
        let keys = parse_authorized_keys(format!("{ED_PUB}\n{ED_CERT}\n").as_bytes());
        assert!(keys.malformed.is_empty());
        assert_eq!(keys.keys.len(), 2);
        let k = &keys.keys[0];
        assert_eq!(k.line, 1);
        assert_eq!(k.key_type, "ssh-ed25519");
        assert_eq!(k.blob_type.as_deref(), Some("ssh-ed25519"));
        assert_eq!(k.fingerprint.as_deref(), Some(ED_FP));
        assert_eq!(k.bits, Some(256));
        assert_eq!(k.comment, "fixed@vector");
        assert!(k.options.is_empty());
        let c = &keys.keys[1];
        assert_eq!(c.line, 2);
        assert_eq!(
            c.blob_type.as_deref(),
            Some("ssh-ed25519-cert-v01@openssh.com")
        );
        // ssh-keygen -lf prints the certified key's fingerprint for a cert.
        assert_eq!(c.fingerprint.as_deref(), Some(ED_FP));
        assert_eq!(c.bits, Some(256));
    }

    #[test]
    fn options_with_quotes_commas_and_spaces() {
        let line = format!("command=\"/bin/echo a, b\",no-pty,from=\"10.0.0.0/8\" {ED_PUB}");
        let keys = parse_authorized_keys(line.as_bytes());
        assert_eq!(keys.keys.len(), 1);
        let k = &keys.keys[0];
        assert_eq!(
            k.options,
            vec![
                "command=\"/bin/echo a, b\"",
                "no-pty",
                "from=\"10.0.0.0/8\""
            ]
        );
        assert_eq!(k.fingerprint.as_deref(), Some(ED_FP));
        let escaped = format!("command=\"echo \\\"x y\\\"\",restrict {ED_PUB}");
        let keys = parse_authorized_keys(escaped.as_bytes());
        assert_eq!(
            keys.keys[0].options,
            vec!["command=\"echo \\\"x y\\\"\"", "restrict"]
        );
    }

    #[test]
    fn comments_blank_and_malformed_lines() {
        let data = format!(
            "# comment\n\n   \n{ED_PUB}\r\nnot a key\ncommand=\"unterminated {ED_PUB}\nssh-ed25519\nssh-foo AAAA x\n\t# indented comment\n"
        );
        let keys = parse_authorized_keys(data.as_bytes());
        assert_eq!(keys.keys.len(), 1);
        assert_eq!(keys.keys[0].line, 4);
        assert_eq!(keys.keys[0].comment, "fixed@vector", "CR stripped");
        assert_eq!(keys.malformed, vec![5, 6, 7, 8]);
    }

    #[test]
    fn undecodable_blob_is_kept_without_fingerprint() {
        let keys = parse_authorized_keys(b"ssh-rsa !!notbase64!! who\nssh-rsa AAAA\n");
        assert_eq!(keys.keys.len(), 2);
        assert_eq!(keys.keys[0].blob_type, None);
        assert_eq!(keys.keys[0].fingerprint, None);
        assert_eq!(keys.keys[0].comment, "who");
        // "AAAA" decodes to three zero bytes: not even a length prefix.
        assert_eq!(keys.keys[1].blob_type, None);
        assert_eq!(keys.keys[1].bits, None);
    }

    #[test]
    fn constructed_blobs_give_bits_and_types() {
        // RSA with a 2049-bit-wide modulus buffer whose top byte is 0x01.
        let mut n = vec![0u8, 0x01];
        n.extend(std::iter::repeat_n(0xffu8, 255));
        let mut blob = wire_string(b"ssh-rsa");
        blob.extend(wire_string(&[1, 0, 1]));
        blob.extend(wire_string(&n));
        let line = format!("ssh-rsa {} r", b64_padded(&blob));
        let k = &parse_authorized_keys(line.as_bytes()).keys[0];
        assert_eq!(k.bits, Some(2041));
        assert_eq!(
            k.fingerprint.as_deref(),
            Some(fingerprint_of(&blob).as_str())
        );

        let mut sk = wire_string(b"sk-ecdsa-sha2-nistp256@openssh.com");
        sk.extend(wire_string(b"nistp256"));
        sk.extend(wire_string(&[4u8; 65]));
        sk.extend(wire_string(b"ssh:"));
        let line = format!("sk-ecdsa-sha2-nistp256@openssh.com {}", b64_padded(&sk));
        let k = &parse_authorized_keys(line.as_bytes()).keys[0];
        assert_eq!(k.bits, Some(256));
        assert_eq!(k.comment, "");

        // Truncated: length prefix claims more than present.
        let mut bad = wire_string(b"ssh-ed25519");
        bad.extend_from_slice(&[0, 0, 0, 32, 1, 2]);
        let line = format!("ssh-ed25519 {}", b64_padded(&bad));
        let k = &parse_authorized_keys(line.as_bytes()).keys[0];
        assert_eq!(k.blob_type.as_deref(), Some("ssh-ed25519"));
        assert_eq!(k.bits, None);
        // Huge length prefix must not overflow.
        let line = format!("ssh-ed25519 {}", b64_padded(&[0xff, 0xff, 0xff, 0xff, 1]));
        assert_eq!(
            parse_authorized_keys(line.as_bytes()).keys[0].blob_type,
            None
        );
    }

    #[test]
    fn overlong_lines_and_line_cap() {
        let mut data = "x".repeat(MAX_LINE_LEN + 1).into_bytes();
        data.push(b'\n');
        data.extend_from_slice(ED_PUB.as_bytes());
        let keys = parse_authorized_keys(&data);
        assert_eq!(keys.malformed, vec![1]);
        assert_eq!(keys.keys[0].line, 2);
        let many = format!("{ED_PUB}\n").repeat(MAX_LINES + 5);
        assert_eq!(parse_authorized_keys(many.as_bytes()).keys.len(), MAX_LINES);
    }

    #[test]
    fn non_utf8_comment_is_lossy() {
        let mut data = ED_PUB.as_bytes().to_vec();
        data.extend_from_slice(b" \xff\xfe");
        let k = &parse_authorized_keys(&data).keys[0];
        assert_eq!(k.comment, "fixed@vector \u{fffd}\u{fffd}");
    }

    #[test]
    fn private_key_detection() {
        assert!(is_private_key(
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n"
        ));
        assert!(is_private_key(b"-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(is_private_key(
            b"junk\n-----BEGIN ENCRYPTED PRIVATE KEY-----\r\n"
        ));
        assert!(is_private_key(b"PuTTY-User-Key-File-3: ssh-ed25519\n"));
        assert!(!is_private_key(ED_PUB.as_bytes()));
        assert!(!is_private_key(b"-----BEGIN PUBLIC KEY-----\n"));
        assert!(!is_private_key(b"-----BEGIN CERTIFICATE-----\n"));
        assert!(!is_private_key(b""));
    }

    /// Runs ssh-keygen; `None` (with a message) when it is not installed.
    fn keygen(args: &[&str]) -> Option<std::process::Output> {
        match Command::new("ssh-keygen").args(args).output() {
            Ok(o) => Some(o),
            Err(e) => {
                eprintln!("SKIP: ssh-keygen not runnable ({e}); real-key comparison skipped");
                None
            }
        }
    }

    #[test]
    fn fingerprints_match_real_ssh_keygen() {
        let dir = tempfile::tempdir().unwrap();
        let mut checked = 0;
        for (name, args) in [
            ("ed", &["-t", "ed25519"][..]),
            ("rsa", &["-t", "rsa", "-b", "2048"]),
            ("rsa3", &["-t", "rsa", "-b", "3072"]),
            ("ec256", &["-t", "ecdsa", "-b", "256"]),
            ("ec384", &["-t", "ecdsa", "-b", "384"]),
            ("ec521", &["-t", "ecdsa", "-b", "521"]),
            ("dsa", &["-t", "dsa"]),
        ] {
            let path = dir.path().join(name);
            let path_s = path.to_str().unwrap();
            let mut gen = vec!["-q", "-N", "", "-C", "test comment", "-f", path_s];
            gen.extend_from_slice(args);
            let Some(out) = keygen(&gen) else { return };
            if !out.status.success() {
                assert_eq!(name, "dsa", "ssh-keygen failed for {name}");
                eprintln!("SKIP: this ssh-keygen cannot make dsa keys");
                continue;
            }
            let pub_path = format!("{path_s}.pub");
            let listed = keygen(&["-lf", &pub_path]).unwrap();
            let listed = String::from_utf8(listed.stdout).unwrap();
            // "256 SHA256:xxxx test comment (ED25519)"
            let mut words = listed.split_whitespace();
            let bits: u32 = words.next().unwrap().parse().unwrap();
            let fp = words.next().unwrap();
            let keys = parse_authorized_keys(&std::fs::read(&pub_path).unwrap());
            assert!(keys.malformed.is_empty());
            assert_eq!(keys.keys.len(), 1);
            let k = &keys.keys[0];
            assert_eq!(k.fingerprint.as_deref(), Some(fp), "{name}");
            assert_eq!(k.bits, Some(bits), "{name}");
            assert_eq!(k.comment, "test comment");
            assert_eq!(k.blob_type.as_deref(), Some(k.key_type.as_str()));
            checked += 1;

            // A certificate of the same key lists with the plain fingerprint.
            if name == "ed" {
                let ca = dir.path().join("ca");
                let ca_s = ca.to_str().unwrap();
                let made = keygen(&["-q", "-t", "ed25519", "-N", "", "-f", ca_s]).unwrap();
                assert!(made.status.success());
                let signed =
                    keygen(&["-q", "-s", ca_s, "-I", "id", "-n", "alice", &pub_path]).unwrap();
                assert!(signed.status.success());
                let cert_path = format!("{path_s}-cert.pub");
                let listed = keygen(&["-lf", &cert_path]).unwrap();
                let listed = String::from_utf8(listed.stdout).unwrap();
                let cert_fp = listed.split_whitespace().nth(1).unwrap().to_string();
                let keys = parse_authorized_keys(&std::fs::read(&cert_path).unwrap());
                assert_eq!(keys.keys[0].key_type, "ssh-ed25519-cert-v01@openssh.com");
                assert_eq!(keys.keys[0].fingerprint.as_deref(), Some(cert_fp.as_str()));
                assert_eq!(keys.keys[0].bits, Some(256));
            }
        }
        assert!(checked >= 6);
    }

    fn resolver(files: &[(&str, &str)]) -> impl FnMut(&str) -> ResolvedFiles {
        let map: BTreeMap<String, Vec<u8>> = files
            .iter()
            .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
            .collect();
        move |pattern: &str| {
            let matches = |p: &str| match pattern.split_once('*') {
                Some((pre, post)) => {
                    p.starts_with(pre) && p.ends_with(post) && p.len() >= pre.len() + post.len()
                }
                None => p == pattern,
            };
            map.iter()
                .filter(|(p, _)| matches(p))
                .map(|(p, c)| (p.clone(), c.clone()))
                .collect()
        }
    }

    #[test]
    fn sshd_keywords_first_wins_and_forms() {
        let main = "# comment\nPermitRootLogin no\npermitrootlogin yes\nPort 22\nPort=2222\n  PasswordAuthentication = no # trailing\nBanner \"/etc/my banner\"\nListenAddress\n";
        let cfg = parse_sshd_config("/etc/ssh/sshd_config", main.as_bytes(), &mut resolver(&[]));
        let root = cfg.get("PermitRootLogin").unwrap();
        assert_eq!((root.value.as_str(), root.line), ("no", 2));
        assert_eq!(root.keyword, "permitrootlogin");
        assert_eq!(root.file, "/etc/ssh/sshd_config");
        let ports: Vec<&str> = cfg.all("port").iter().map(|s| s.value.as_str()).collect();
        assert_eq!(ports, vec!["22", "2222"]);
        assert_eq!(cfg.get("passwordauthentication").unwrap().value, "no");
        let banner = cfg.get("banner").unwrap();
        assert_eq!(banner.args, vec!["/etc/my banner"]);
        assert_eq!(cfg.get("listenaddress"), None);
        assert_eq!(cfg.problems.len(), 1);
        assert!(cfg.problems[0].contains(":8:"));
        assert_eq!(cfg.get("nosuch"), None);
    }

    #[test]
    fn sshd_match_blocks_and_all() {
        let main = "PasswordAuthentication no\nMatch User bob Address 10.0.0.*\n  PasswordAuthentication yes\n  AuthorizedKeysFile /etc/keys/%u\nMatch all\nX11Forwarding yes\n";
        let cfg = parse_sshd_config("/etc/ssh/sshd_config", main.as_bytes(), &mut resolver(&[]));
        assert_eq!(cfg.settings.len(), 1);
        assert_eq!(cfg.matches.len(), 2);
        assert_eq!(cfg.matches[0].criteria, "User bob Address 10.0.0.*");
        assert_eq!(cfg.matches[0].line, 2);
        assert_eq!(cfg.matches[0].settings.len(), 2);
        assert_eq!(cfg.matches[1].criteria, "all");
        assert_eq!(cfg.matches[1].settings[0].keyword, "x11forwarding");
        assert_eq!(cfg.get("x11forwarding"), None);
        assert_eq!(
            cfg.authorized_keys_files(),
            vec![
                (".ssh/authorized_keys".to_string(), None),
                (".ssh/authorized_keys2".to_string(), None),
                (
                    "/etc/keys/%u".to_string(),
                    Some("User bob Address 10.0.0.*".to_string())
                ),
            ]
        );
    }

    #[test]
    fn sshd_includes_relative_glob_and_match_scope() {
        let main = "Include sshd_config.d/*.conf\nPermitRootLogin no\nMatch Group admins\nInclude /etc/ssh/admins.conf\n";
        let files = [
            (
                "/etc/ssh/sshd_config.d/10-a.conf",
                "PermitRootLogin yes\nMatch User x\nBanner x\n",
            ),
            (
                "/etc/ssh/sshd_config.d/20-b.conf",
                "AuthorizedKeysFile .ssh/k none\n",
            ),
            (
                "/etc/ssh/admins.conf",
                "AllowTcpForwarding yes\nMatch Address 1.2.3.4\nPermitTTY no\n",
            ),
        ];
        let cfg = parse_sshd_config(
            "/etc/ssh/sshd_config",
            main.as_bytes(),
            &mut resolver(&files),
        );
        assert_eq!(
            cfg.includes,
            vec![
                "/etc/ssh/sshd_config.d/10-a.conf",
                "/etc/ssh/sshd_config.d/20-b.conf",
                "/etc/ssh/admins.conf"
            ]
        );
        assert!(cfg.problems.is_empty(), "{:?}", cfg.problems);
        // The included file's value came first, so it wins.
        let root = cfg.get("permitrootlogin").unwrap();
        assert_eq!(
            (root.value.as_str(), root.file.as_str()),
            ("yes", "/etc/ssh/sshd_config.d/10-a.conf")
        );
        // Match in 10-a.conf ended at the end of that file: 20-b's line is global.
        assert_eq!(
            cfg.get("authorizedkeysfile").unwrap().file,
            "/etc/ssh/sshd_config.d/20-b.conf"
        );
        assert_eq!(cfg.all("permitrootlogin").len(), 2);
        let crit: Vec<&str> = cfg.matches.iter().map(|m| m.criteria.as_str()).collect();
        assert_eq!(
            crit,
            vec!["User x", "Group admins", "Group admins Address 1.2.3.4"]
        );
        assert_eq!(cfg.matches[1].settings[0].keyword, "include");
        assert_eq!(cfg.matches[1].settings[1].keyword, "allowtcpforwarding");
        assert_eq!(cfg.matches[2].settings[0].keyword, "permittty");
        assert_eq!(
            cfg.authorized_keys_files(),
            vec![(".ssh/k".to_string(), None)]
        );
    }

    #[test]
    fn sshd_authorized_keys_none_is_empty() {
        let cfg = parse_sshd_config("/c", b"AuthorizedKeysFile none\n", &mut resolver(&[]));
        assert!(cfg.authorized_keys_files().is_empty());
    }

    #[test]
    fn sshd_include_problems_loops_depth_and_count() {
        // Missing literal include is a problem; an empty glob is not.
        let cfg = parse_sshd_config(
            "/etc/ssh/sshd_config",
            b"Include /nope\nInclude /none/*.conf\n",
            &mut resolver(&[]),
        );
        assert_eq!(cfg.problems.len(), 1);
        assert!(cfg.problems[0].contains("/nope"));

        // Self-include loop.
        let files = [(
            "/etc/ssh/sshd_config",
            "Port 1\nInclude /etc/ssh/sshd_config\n",
        )];
        let cfg = parse_sshd_config(
            "/etc/ssh/sshd_config",
            files[0].1.as_bytes(),
            &mut resolver(&files),
        );
        assert!(cfg.includes.is_empty());
        assert_eq!(cfg.all("port").len(), 1);
        assert!(cfg.problems[0].contains("loop"), "{:?}", cfg.problems);

        // A chain deeper than the limit stops at depth 16.
        let owned: Vec<(String, String)> = (0..30)
            .map(|i| {
                (
                    format!("/d/{i}"),
                    format!("Port {i}\nInclude /d/{}\n", i + 1),
                )
            })
            .collect();
        let files: Vec<(&str, &str)> = owned
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let cfg = parse_sshd_config("/main", b"Include /d/0\n", &mut resolver(&files));
        assert_eq!(cfg.includes.len(), MAX_INCLUDE_DEPTH);
        assert!(cfg.problems.iter().any(|p| p.contains("nesting")));

        // Many files through one glob stop at the total limit.
        let owned: Vec<(String, String)> = (0..300)
            .map(|i| (format!("/m/{i:03}.conf"), "Port 1\n".to_string()))
            .collect();
        let files: Vec<(&str, &str)> = owned
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let cfg = parse_sshd_config("/main", b"Include /m/*.conf\n", &mut resolver(&files));
        assert_eq!(cfg.includes.len(), MAX_INCLUDED_FILES);
        assert_eq!(cfg.all("port").len(), MAX_INCLUDED_FILES);
        assert!(cfg.problems.iter().any(|p| p.contains("more than")));
    }

    #[test]
    fn sshd_bad_lines_are_problems_not_panics() {
        let data = b"Banner \"unterminated\nMatch\nPort 1\n\xff\xfe value\n=\n";
        let cfg = parse_sshd_config("/c", data, &mut resolver(&[]));
        assert_eq!(cfg.problems.len(), 2, "{:?}", cfg.problems);
        assert_eq!(cfg.matches.len(), 1);
        assert_eq!(cfg.matches[0].criteria, "");
        assert_eq!(cfg.matches[0].settings[0].value, "1");
        assert_eq!(cfg.matches[0].settings[1].keyword, "\u{fffd}\u{fffd}");
    }

    #[test]
    fn split_words_handles_quotes_escapes_and_comments() {
        assert_eq!(
            split_words("a \"b c\" d\\ e # x").unwrap(),
            vec!["a", "b c", "d e"]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_words("a#b").unwrap(), vec!["a#b"]);
        assert!(split_words("\"open").is_err());
        assert_eq!(split_keyword("Key=val"), ("Key", "val"));
        assert_eq!(split_keyword("  Key = = val"), ("Key", "= val"));
    }

    #[test]
    fn expand_tokens_cases() {
        assert_eq!(
            expand_tokens("%h/.ssh/authorized_keys", "bob", "/home/bob", 1000),
            "/home/bob/.ssh/authorized_keys"
        );
        assert_eq!(
            expand_tokens(".ssh/authorized_keys", "bob", "/home/bob/", 1000),
            "/home/bob/.ssh/authorized_keys"
        );
        assert_eq!(
            expand_tokens("/etc/keys/%u.%U", "bob", "/home/bob", 1000),
            "/etc/keys/bob.1000"
        );
        assert_eq!(expand_tokens("/k/100%%/%x%", "bob", "/h", 0), "/k/100%/%x%");
        assert_eq!(expand_tokens("%u/keys", "bob", "/", 0), "/bob/keys");
    }

    use crate::testing::garbage;

    #[test]
    fn hostile_bytes_never_panic() {
        for seed in 1..200u64 {
            let data = garbage(seed, 2000);
            let lines = data.split(|&b| b == b'\n').count();
            let keys = parse_authorized_keys(&data);
            assert!(keys.keys.len() + keys.malformed.len() <= lines);
            let _ = is_private_key(&data);
            let mut res = |_: &str| vec![("/x".to_string(), garbage(seed + 1, 500))];
            let cfg = parse_sshd_config("/etc/ssh/sshd_config", &data, &mut res);
            assert!(cfg.includes.len() <= MAX_INCLUDED_FILES);
            let _ = cfg.authorized_keys_files();
        }
    }
}
