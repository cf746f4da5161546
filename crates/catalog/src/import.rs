//! Readers for the places known-good digests are published.
//!
//! * `.gns3a` appliance files (GNS3 registry JSON, `images[]` with
//!   `filename`, `version`, `md5sum` or `checksum`, `filesize`), one file or
//!   a whole gns3-registry checkout (`appliances/*.gns3a`);
//! * checksum files: GNU `md5sum`/`sha1sum`/`sha256sum`/`sha512sum` output
//!   (`<hex>  name`, `<hex> *name`, `\`-escaped names), BSD / `--tag` style
//!   `SHA256 (name) = <hex>`, openssl's `SHA2-256(name)= <hex>`;
//! * Cisco download-page text: `FileName`, `Release`, `Size … (N bytes)`,
//!   `MD5 Checksum : <hex>`, `SHA512 Checksum : <hex>` (colon- or
//!   space-grouped hex, values wrapped over lines), `verify /md5` output;
//! * OpenStack Glance image JSON: `checksum` (MD5), `os_hash_algo` +
//!   `os_hash_value`, `name`, `size`, `id`; one image, a list
//!   (`openstack image list --long -f json`), or `{"images": […]}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{base_name, digest_for, read_limited, Algo, CatalogError, Reference};

/// Largest file an importer reads.
pub const MAX_IMPORT_FILE: u64 = 64 << 20;
/// Most `.gns3a` files read from one directory.
const MAX_DIR_FILES: usize = 100_000;

/// An import format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// GNS3 appliance files.
    Gns3a,
    /// `md5sum`-style or BSD-style checksum lists.
    Sums,
    /// Cisco download-page text.
    Cisco,
    /// OpenStack Glance image JSON.
    Glance,
}

impl Format {
    /// Name as used by `--format` and in entry sources.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gns3a => crate::source::GNS3A,
            Self::Sums => crate::source::SUMS,
            Self::Cisco => crate::source::CISCO,
            Self::Glance => crate::source::GLANCE,
        }
    }

    /// Parses a format name.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "gns3a" | "gns3" => Some(Self::Gns3a),
            "sums" | "md5sum" | "sha256sum" | "sha512sum" => Some(Self::Sums),
            "cisco" => Some(Self::Cisco),
            "glance" | "openstack" => Some(Self::Glance),
            _ => None,
        }
    }
}

/// What one import read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The format used.
    pub format: Format,
    /// The references found.
    pub references: Vec<Reference>,
    /// Lines or items skipped, and why.
    pub warnings: Vec<String>,
    /// Files read.
    pub files: usize,
}

/// What a parser returns: references and warnings.
pub type Parsed = (Vec<Reference>, Vec<String>);

/// Reads `path` (a file, or a directory of `.gns3a` files / a gns3-registry
/// checkout) in `format`, or the detected format when `None`.
///
/// # Errors
/// The file cannot be read, its format cannot be recognised, or it has no
/// usable entry.
pub fn import_path(path: &Path, format: Option<Format>) -> Result<Imported, CatalogError> {
    let parse_err = |why: String| CatalogError::Parse {
        path: path.to_path_buf(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|error| CatalogError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    if meta.is_dir() {
        if format.is_some_and(|f| f != Format::Gns3a) {
            return Err(parse_err(
                "a directory can only be imported as a gns3-registry checkout (--format gns3a)"
                    .into(),
            ));
        }
        return import_gns3a_dir(path);
    }
    let bytes = read_limited(path, MAX_IMPORT_FILE)?;
    let text = String::from_utf8_lossy(&bytes);
    let format = match format {
        Some(f) => f,
        None => detect(path, &text).ok_or_else(|| {
            parse_err(
                "format not recognised (not .gns3a/Glance JSON, checksum lines or Cisco MD5/SHA512 text); \
                 use --format gns3a|sums|cisco|glance"
                    .into(),
            )
        })?,
    };
    let from = path.display().to_string();
    let (mut references, warnings) = match format {
        Format::Gns3a => parse_gns3a(&text, &appliance_name(path)),
        Format::Sums => parse_sums(&text, &base_name(path)),
        Format::Cisco => parse_cisco(&text),
        Format::Glance => parse_glance(&text),
    }
    .map_err(parse_err)?;
    if references.is_empty() {
        let mut why = format!("no {} entry with a usable digest", format.name());
        if let Some(w) = warnings.first() {
            why.push_str(&format!(" ({w})"));
        }
        return Err(parse_err(why));
    }
    for r in &mut references {
        r.imported_from = Some(from.clone());
    }
    Ok(Imported {
        format,
        references,
        warnings,
        files: 1,
    })
}

fn appliance_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn import_gns3a_dir(dir: &Path) -> Result<Imported, CatalogError> {
    let appliances = dir.join("appliances");
    let dir: PathBuf = if appliances.is_dir() {
        appliances
    } else {
        dir.to_path_buf()
    };
    let rd = std::fs::read_dir(&dir).map_err(|error| CatalogError::Io {
        path: dir.clone(),
        error,
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "gns3a") && p.is_file())
        .take(MAX_DIR_FILES)
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CatalogError::Parse {
            path: dir,
            why: "no .gns3a files here (nor under appliances/)".into(),
        });
    }
    let mut out = Imported {
        format: Format::Gns3a,
        references: Vec::new(),
        warnings: Vec::new(),
        files: 0,
    };
    for f in &files {
        let name = base_name(f);
        let text = match read_limited(f, MAX_IMPORT_FILE) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                out.warnings.push(e.to_string());
                continue;
            }
        };
        match parse_gns3a(&text, &appliance_name(f)) {
            Ok((refs, warns)) => {
                out.files += 1;
                let from = f.display().to_string();
                out.references.extend(refs.into_iter().map(|mut r| {
                    r.imported_from = Some(from.clone());
                    r
                }));
                out.warnings
                    .extend(warns.into_iter().map(|w| format!("{name}: {w}")));
            }
            Err(e) => out.warnings.push(format!("{name}: {e}")),
        }
    }
    if out.references.is_empty() {
        return Err(CatalogError::Parse {
            path: dir,
            why: "no image entry with an MD5 in any .gns3a file".into(),
        });
    }
    Ok(out)
}

/// Guesses the format of a file from its name and text.
pub fn detect(path: &Path, text: &str) -> Option<Format> {
    if path.extension().is_some_and(|e| e == "gns3a") {
        return Some(Format::Gns3a);
    }
    let t = text.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        let v: Value = serde_json::from_str(t).ok()?;
        let gns3 = v.get("registry_version").is_some()
            || v.get("appliance_id").is_some()
            || v.get("images").and_then(Value::as_array).is_some_and(|a| {
                a.iter().any(|i| {
                    i.get("filename").is_some()
                        && (i.get("md5sum").is_some() || i.get("checksum").is_some())
                })
            });
        return Some(if gns3 { Format::Gns3a } else { Format::Glance });
    }
    if parse_sums(text, &base_name(path)).is_ok_and(|(r, _)| !r.is_empty()) {
        return Some(Format::Sums);
    }
    if parse_cisco(text).is_ok_and(|(r, _)| !r.is_empty()) {
        return Some(Format::Cisco);
    }
    None
}

// ---------------------------------------------------------------------------
// GNS3 appliance files
// ---------------------------------------------------------------------------

/// Parses one `.gns3a` document; `appliance` (the file's stem, as the
/// registry names appliances) labels its entries.
///
/// # Errors
/// Not JSON, or no `images` array.
pub fn parse_gns3a(text: &str, appliance: &str) -> Result<Parsed, String> {
    let v: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| format!("not JSON: {e}"))?;
    let label = if appliance.is_empty() {
        v.get("name")
            .and_then(Value::as_str)
            .unwrap_or("gns3a")
            .to_string()
    } else {
        appliance.to_string()
    };
    let Some(images) = v.get("images").and_then(Value::as_array) else {
        // Docker/IOU-only appliances carry no images.
        return if v.get("registry_version").is_some() {
            Ok((Vec::new(), vec!["appliance has no images".into()]))
        } else {
            Err("no \"images\" array: not a GNS3 appliance file".into())
        };
    };
    let mut refs = Vec::new();
    let mut warnings = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let s = |k: &str| img.get(k).and_then(Value::as_str).map(str::to_string);
        let Some(filename) = s("filename") else {
            warnings.push(format!("images[{i}]: no filename"));
            continue;
        };
        if let Some(t) = s("checksum_type") {
            if !t.eq_ignore_ascii_case("md5") {
                warnings.push(format!("{filename}: checksum_type {t} is not supported"));
                continue;
            }
        }
        let md5 = s("md5sum").or_else(|| s("checksum"));
        let Some(md5) = md5.as_deref().and_then(|h| digest_for(Algo::Md5, h)) else {
            warnings.push(format!("{filename}: no valid md5sum"));
            continue;
        };
        refs.push(Reference {
            label: label.clone(),
            filename: Some(filename),
            version: s("version"),
            size: img.get("filesize").and_then(Value::as_u64),
            digests: BTreeMap::from([(Algo::Md5, md5)]),
            ..Reference::default()
        });
    }
    Ok((refs, warnings))
}

// ---------------------------------------------------------------------------
// Checksum files
// ---------------------------------------------------------------------------

/// The algorithm a checksum file's name suggests (`SHA256SUMS`,
/// `foo.sha512sum`, `MD5SUMS` …). `Err` for algorithms qvet cannot compute.
fn algo_hint(file_name: &str) -> Result<Option<Algo>, String> {
    let n = file_name.to_ascii_lowercase();
    for (pat, a) in [
        ("sha512", Algo::Sha512),
        ("sha256", Algo::Sha256),
        ("sha1", Algo::Sha1),
        ("md5", Algo::Md5),
        ("b3sum", Algo::Blake3),
        ("blake3", Algo::Blake3),
    ] {
        if n.contains(pat) {
            return Ok(Some(a));
        }
    }
    for other in ["sha224", "sha384", "b2sum", "blake2", "sha3"] {
        if n.contains(other) {
            return Err(format!("{other} checksums are not supported"));
        }
    }
    Ok(None)
}

fn algo_for_len(len: usize, hint: Option<Algo>) -> Option<Algo> {
    if let Some(h) = hint.filter(|h| h.hex_len() == len) {
        return Some(h);
    }
    match len {
        32 => Some(Algo::Md5),
        40 => Some(Algo::Sha1),
        64 => Some(Algo::Sha256),
        128 => Some(Algo::Sha512),
        _ => None,
    }
}

/// A parsed checksum line.
#[derive(Debug, PartialEq, Eq)]
enum SumLine {
    Entry(Algo, String, String),
    Unsupported(String),
}

/// `SHA256 (name) = hex`, `MD5 (name) = hex`, `SHA2-256(name)= hex`.
fn parse_bsd_line(line: &str) -> Option<SumLine> {
    let open = line.find('(')?;
    let algo_name = line.get(..open)?.trim();
    if algo_name.is_empty()
        || algo_name.len() > 12
        || !algo_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return None;
    }
    let close = line.rfind(')')?;
    let name = line.get(open + 1..close)?;
    let rest = line.get(close + 1..)?.trim_start();
    let hex = rest.strip_prefix('=')?.trim();
    let canonical = algo_name.to_ascii_uppercase().replace("SHA2-", "SHA");
    let Some(algo) = Algo::from_name(&canonical) else {
        return Some(SumLine::Unsupported(algo_name.to_string()));
    };
    let hex = digest_for(algo, hex)?;
    Some(SumLine::Entry(algo, hex, name.to_string()))
}

fn unescape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// `<hex>  name`, `<hex> *name`, `\<hex>  escaped\nname`.
fn parse_gnu_line(line: &str, hint: Option<Algo>) -> Option<SumLine> {
    let (escaped, rest) = match line.strip_prefix('\\') {
        Some(r) => (true, r),
        None => (false, line),
    };
    let sp = rest.find(' ')?;
    let hex = rest.get(..sp)?;
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let after = rest.get(sp + 1..)?;
    let name = after
        .strip_prefix(' ')
        .or_else(|| after.strip_prefix('*'))
        .unwrap_or(after);
    if name.is_empty() {
        return None;
    }
    let algo = algo_for_len(hex.len(), hint)?;
    let name = if escaped {
        unescape(name)
    } else {
        name.to_string()
    };
    Some(SumLine::Entry(algo, hex.to_ascii_lowercase(), name))
}

/// Parses a checksum file; `file_name` (of the checksum file) labels the
/// entries and hints at the algorithm for ambiguous lengths.
///
/// # Errors
/// A line that is neither blank, a `#` comment nor a checksum line.
pub fn parse_sums(text: &str, file_name: &str) -> Result<Parsed, String> {
    let hint = algo_hint(file_name)?;
    let sep = if text.contains('\0') && !text.contains('\n') {
        '\0'
    } else {
        '\n'
    };
    let mut refs: Vec<Reference> = Vec::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    let mut warnings = Vec::new();
    for (i, raw) in text.trim_start_matches('\u{feff}').split(sep).enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let parsed = parse_bsd_line(line).or_else(|| parse_gnu_line(line, hint));
        let (algo, hex, name) = match parsed {
            Some(SumLine::Entry(a, h, n)) => (a, h, n),
            Some(SumLine::Unsupported(a)) => {
                warnings.push(format!("line {}: {a} is not supported", i + 1));
                continue;
            }
            None => return Err(format!("line {}: not a checksum line: {line:?}", i + 1)),
        };
        let base = base_name(Path::new(&name));
        // One entry per file name, several algorithms merged; a second,
        // different value for the same algorithm is a separate entry.
        if let Some(r) = by_name.get(&base).and_then(|&k| refs.get_mut(k)) {
            match r.digests.get(&algo) {
                None => {
                    r.digests.insert(algo, hex);
                    continue;
                }
                Some(h) if *h == hex => continue,
                Some(_) => {}
            }
        }
        by_name.insert(base.clone(), refs.len());
        refs.push(Reference {
            label: file_name.to_string(),
            filename: Some(base),
            digests: BTreeMap::from([(algo, hex)]),
            ..Reference::default()
        });
    }
    Ok((refs, warnings))
}

// ---------------------------------------------------------------------------
// Cisco download-page text
// ---------------------------------------------------------------------------

/// Finds a digest keyword (`MD5`, `SHA512`, `SHA-512`, `SHA256`, `SHA1`) as
/// a word; returns the algorithm and the text after it.
fn find_algo_keyword(line: &str) -> Option<(Algo, &str)> {
    let lower = line.to_ascii_lowercase();
    let pats: [(&str, Algo); 7] = [
        ("sha-512", Algo::Sha512),
        ("sha512", Algo::Sha512),
        ("sha-256", Algo::Sha256),
        ("sha256", Algo::Sha256),
        ("sha-1", Algo::Sha1),
        ("sha1", Algo::Sha1),
        ("md5", Algo::Md5),
    ];
    let mut best: Option<(usize, usize, Algo)> = None;
    for (p, a) in pats {
        let mut from = 0;
        while let Some(k) = lower.get(from..).and_then(|s| s.find(p)) {
            let at = from + k;
            let end = at + p.len();
            let before_ok = at == 0
                || lower
                    .as_bytes()
                    .get(at - 1)
                    .is_some_and(|b| !b.is_ascii_alphanumeric());
            let after_ok = lower
                .as_bytes()
                .get(end)
                .is_none_or(|b| !b.is_ascii_alphanumeric());
            if before_ok && after_ok {
                if best.is_none_or(|(b, _, _)| at < b) {
                    best = Some((at, end, a));
                }
                break;
            }
            from = end;
        }
    }
    let (_, end, algo) = best?;
    Some((algo, line.get(end..)?))
}

/// Hex digits of the leading hex-looking tokens of `s` (separators `:` `-`
/// and spaces allowed); `None` when a non-hex token comes first after some
/// hex. Tokens before the first hex token that are not hex are skipped
/// (`Checksum`, `:`, `=`, `(file)`).
fn hex_tokens(s: &str, started: bool) -> (String, bool) {
    let mut hex = String::new();
    let mut started = started;
    for tok in s.split(|c: char| c.is_whitespace()) {
        let t: String = tok.chars().filter(|c| !matches!(c, ':' | '-')).collect();
        if t.is_empty() {
            continue;
        }
        let is_hex = t.chars().all(|c| c.is_ascii_hexdigit());
        if is_hex && (started || t.len() >= 2) {
            started = true;
            hex.push_str(&t.to_ascii_lowercase());
        } else if started {
            break;
        }
    }
    (hex, started)
}

fn value_after_key<'a>(line: &'a str, keys: &[&str]) -> Option<&'a str> {
    let t = line.trim();
    let sep = t.find([':', '='])?;
    let key = t.get(..sep)?.trim().to_ascii_lowercase();
    let key: String = key.chars().filter(|c| !c.is_whitespace()).collect();
    keys.contains(&key.as_str())
        .then(|| t.get(sep + 1..))
        .flatten()
        .map(str::trim)
}

fn parse_size(v: &str) -> Option<u64> {
    let words: Vec<&str> = v
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    if let Some(i) = words.iter().position(|w| w.eq_ignore_ascii_case("bytes")) {
        return i
            .checked_sub(1)
            .and_then(|j| words.get(j))
            .and_then(|w| w.parse().ok());
    }
    match words.as_slice() {
        [n] => n.parse().ok(),
        _ => None,
    }
}

/// Parses text copied from Cisco's software download page (image details:
/// `Description`, `Release`, `FileName`, `Size`, `MD5 Checksum`,
/// `SHA512 Checksum`) or `verify` output. A `FileName` line starts a new
/// entry once the current one has a name.
///
/// # Errors
/// Never fails as a whole; unusable values are warnings.
pub fn parse_cisco(text: &str) -> Result<Parsed, String> {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut refs = Vec::new();
    let mut warnings = Vec::new();
    let mut cur = Reference::default();
    let mut description: Option<String> = None;
    let finish = |cur: &mut Reference, description: &mut Option<String>, refs: &mut Vec<_>| {
        let mut r = std::mem::take(cur);
        if !r.digests.is_empty() {
            r.label = description
                .take()
                .or_else(|| r.filename.clone())
                .unwrap_or_else(|| "cisco".into());
            refs.push(r);
        }
        *description = None;
    };
    let mut i = 0;
    while let Some(line) = lines.get(i) {
        i += 1;
        if let Some(v) = value_after_key(line, &["filename", "file", "imagename"]) {
            if cur.filename.is_some() || !cur.digests.is_empty() {
                finish(&mut cur, &mut description, &mut refs);
            }
            cur.filename = v.split_whitespace().next().map(str::to_string);
            continue;
        }
        if let Some(v) = value_after_key(line, &["description"]) {
            description = Some(v.to_string()).filter(|s| !s.is_empty());
            continue;
        }
        if let Some(v) = value_after_key(line, &["release", "version"]) {
            cur.version = Some(v.to_string()).filter(|s| !s.is_empty());
            continue;
        }
        if let Some(v) = value_after_key(line, &["size", "filesize"]) {
            cur.size = parse_size(v);
            continue;
        }
        let lower = line.to_ascii_lowercase();
        let Some((algo, rest)) = find_algo_keyword(line) else {
            continue;
        };
        if lower.contains("embedded") || lower.contains("computed") {
            warnings.push(format!(
                "line {i}: skipped (an embedded or on-box computed hash, not the published file digest)"
            ));
            continue;
        }
        // `verify /md5 (bootflash:name) = hex`: the name is in parentheses.
        if let (Some(o), Some(c)) = (rest.find('('), rest.rfind(')')) {
            if let Some(inner) = rest.get(o + 1..c) {
                let name = inner.rsplit(':').next().unwrap_or(inner);
                let name = base_name(Path::new(name.trim()));
                if cur.filename.as_deref() != Some(name.as_str())
                    && (cur.filename.is_some() || !cur.digests.is_empty())
                {
                    finish(&mut cur, &mut description, &mut refs);
                }
                cur.filename = Some(name);
            }
        }
        let after_paren = rest
            .rfind(')')
            .and_then(|c| rest.get(c + 1..))
            .unwrap_or(rest);
        let (mut hex, mut started) = hex_tokens(after_paren, false);
        // Long values wrap: keep reading lines of bare hex.
        while hex.len() < algo.hex_len() {
            let Some(next) = lines.get(i) else { break };
            let t = next.trim();
            if t.is_empty()
                || !t
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '-' | ' ' | '\t'))
            {
                break;
            }
            let (more, s) = hex_tokens(t, started);
            started = s;
            hex.push_str(&more);
            i += 1;
        }
        if hex.len() != algo.hex_len() {
            warnings.push(format!(
                "line {i}: {algo} value has {} hex digits, expected {}",
                hex.len(),
                algo.hex_len()
            ));
            continue;
        }
        if cur.digests.get(&algo).is_some_and(|h| *h != hex) {
            finish(&mut cur, &mut description, &mut refs);
        }
        cur.digests.insert(algo, hex);
    }
    finish(&mut cur, &mut description, &mut refs);
    Ok((refs, warnings))
}

// ---------------------------------------------------------------------------
// OpenStack Glance
// ---------------------------------------------------------------------------

fn norm_key(k: &str) -> String {
    k.trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == ' ' || c == '-' { '_' } else { c })
        .collect()
}

/// `key='value', key2='value2'` (how older clients print `properties`).
fn parse_property_string(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',') {
        if let Some((k, v)) = part.split_once('=') {
            let v = v.trim().trim_matches(|c| c == '\'' || c == '"');
            out.insert(norm_key(k), v.to_string());
        }
    }
    out
}

fn glance_fields(obj: &serde_json::Map<String, Value>) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    if let Some(p) = obj.get("properties").or_else(|| obj.get("Properties")) {
        match p {
            Value::Object(m) => {
                for (k, v) in m {
                    if let Some(t) = text(v) {
                        f.insert(norm_key(k), t);
                    }
                }
            }
            Value::String(s) => f.extend(parse_property_string(s)),
            _ => {}
        }
    }
    for (k, v) in obj {
        if let Some(t) = text(v) {
            f.insert(norm_key(k), t);
        }
    }
    f
}

/// Parses Glance image JSON (one image, a list, or `{"images": […]}`).
///
/// # Errors
/// Not JSON, or no image object in it.
pub fn parse_glance(text: &str) -> Result<Parsed, String> {
    let v: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| format!("not JSON: {e}"))?;
    let items: Vec<&serde_json::Map<String, Value>> = match &v {
        Value::Array(a) => a.iter().filter_map(Value::as_object).collect(),
        Value::Object(o) => match o.get("images").and_then(Value::as_array) {
            Some(a) => a.iter().filter_map(Value::as_object).collect(),
            None => vec![o],
        },
        _ => Vec::new(),
    };
    if items.is_empty() {
        return Err("no image object in the JSON".into());
    }
    let mut refs = Vec::new();
    let mut warnings = Vec::new();
    for (i, obj) in items.into_iter().enumerate() {
        let f = glance_fields(obj);
        let name = f.get("name").cloned().filter(|s| !s.is_empty());
        let id = f.get("id").cloned().filter(|s| !s.is_empty());
        let what = name
            .clone()
            .or_else(|| id.clone())
            .unwrap_or_else(|| format!("image {i}"));
        let mut digests = BTreeMap::new();
        if let Some(md5) = f.get("checksum").and_then(|h| digest_for(Algo::Md5, h)) {
            digests.insert(Algo::Md5, md5);
        }
        if let Some(value) = f.get("os_hash_value").filter(|s| !s.is_empty()) {
            let algo_name = f
                .get("os_hash_algo")
                .map(String::as_str)
                .unwrap_or("sha512");
            match Algo::from_name(algo_name) {
                Some(a) => match digest_for(a, value) {
                    Some(h) => {
                        digests.insert(a, h);
                    }
                    None => {
                        warnings.push(format!("{what}: os_hash_value is not a {algo_name} digest"))
                    }
                },
                None => warnings.push(format!("{what}: os_hash_algo {algo_name} is not supported")),
            }
        }
        if digests.is_empty() {
            warnings.push(format!("{what}: no checksum (image not uploaded yet?)"));
            continue;
        }
        let label = match (&name, &id) {
            (Some(n), Some(id)) => format!("{n} [{id}]"),
            _ => what.clone(),
        };
        refs.push(Reference {
            label,
            filename: name,
            version: None,
            size: f.get("size").and_then(|s| s.parse().ok()),
            digests,
            ..Reference::default()
        });
    }
    Ok((refs, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5_A: &str = "6abece87d6db99d9fd6917203e253f91";

    fn sha512_of(c: char) -> String {
        std::iter::repeat_n(c, 128).collect()
    }

    const GNS3A: &str = r#"{
    "appliance_id": "39c6b8db-8dc3-4b04-8727-7d0b414be7c8",
    "name": "Cisco CSR1000v",
    "category": "router",
    "description": "Cisco CSR1000V",
    "vendor_name": "Cisco",
    "vendor_url": "http://www.cisco.com/",
    "product_name": "CSR1000v",
    "registry_version": 4,
    "status": "stable",
    "maintainer": "GNS3 Team",
    "maintainer_email": "developers@gns3.net",
    "qemu": {"adapter_type": "vmxnet3", "adapters": 4, "ram": 4096, "hda_disk_interface": "virtio",
             "arch": "x86_64", "console_type": "telnet", "kvm": "require"},
    "images": [
        {
            "filename": "csr1000v-universalk9.17.03.08a-serial.qcow2",
            "version": "17.03.08a",
            "md5sum": "6abece87d6db99d9fd6917203e253f91",
            "filesize": 1421410304,
            "download_url": "https://software.cisco.com/download/home/284364978/type/282046477/release/Bengaluru-17.3.8a"
        },
        {
            "filename": "csr1000v-universalk9.16.12.03-serial.qcow2",
            "version": "16.12.3",
            "checksum": "1FC380569AD3CC145FB9CBC993B2EB32",
            "checksum_type": "md5",
            "filesize": 986775552
        },
        {
            "filename": "broken.qcow2",
            "version": "1",
            "md5sum": "not-a-digest",
            "filesize": 1
        }
    ],
    "versions": [
        {"name": "17.03.08a", "images": {"hda_disk_image": "csr1000v-universalk9.17.03.08a-serial.qcow2"}},
        {"name": "16.12.3", "images": {"hda_disk_image": "csr1000v-universalk9.16.12.03-serial.qcow2"}}
    ]
}"#;

    #[test]
    fn gns3a_file() {
        let (refs, warns) = parse_gns3a(GNS3A, "cisco-csr1000v").unwrap();
        assert_eq!(refs.len(), 2);
        let a = &refs[0];
        assert_eq!(a.label, "cisco-csr1000v");
        assert_eq!(
            a.filename.as_deref(),
            Some("csr1000v-universalk9.17.03.08a-serial.qcow2")
        );
        assert_eq!(a.version.as_deref(), Some("17.03.08a"));
        assert_eq!(a.size, Some(1_421_410_304));
        assert_eq!(a.digests[&Algo::Md5], MD5_A);
        // v8 `checksum`, upper case, normalised.
        assert_eq!(
            refs[1].digests[&Algo::Md5],
            "1fc380569ad3cc145fb9cbc993b2eb32"
        );
        assert_eq!(warns.len(), 1, "{warns:?}");
        assert!(warns[0].contains("broken.qcow2"));
        assert_eq!(detect(Path::new("x.json"), GNS3A), Some(Format::Gns3a));
        // Without a file stem the appliance name labels the entries.
        assert_eq!(parse_gns3a(GNS3A, "").unwrap().0[0].label, "Cisco CSR1000v");
        assert!(parse_gns3a("{\"name\": 1}", "x").is_err());
        assert!(parse_gns3a("nope", "x").is_err());
    }

    #[test]
    fn gns3_registry_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("appliances");
        std::fs::create_dir(&app).unwrap();
        std::fs::write(app.join("cisco-csr1000v.gns3a"), GNS3A).unwrap();
        std::fs::write(
            app.join("alpine.gns3a"),
            r#"{"name": "Alpine", "registry_version": 4, "docker": {"image": "alpine"}}"#,
        )
        .unwrap();
        std::fs::write(app.join("README.md"), "not an appliance").unwrap();
        let imp = import_path(dir.path(), None).unwrap();
        assert_eq!(imp.format, Format::Gns3a);
        assert_eq!(imp.files, 2);
        assert_eq!(imp.references.len(), 2);
        assert!(imp.references[0]
            .imported_from
            .as_deref()
            .unwrap()
            .ends_with("cisco-csr1000v.gns3a"));
        assert!(import_path(dir.path(), Some(Format::Sums)).is_err());
        let empty = tempfile::tempdir().unwrap();
        assert!(import_path(empty.path(), None).is_err());
    }

    #[test]
    fn gnu_sums() {
        let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let text = format!(
            "# generated by sha256sum\n{sha}  vyos-1.5.1-kvm-amd64.qcow2\n{sha} *images/bin.img\r\n\\{sha}  new\\nline\\\\x.img\n\n"
        );
        let (refs, warns) = parse_sums(&text, "SHA256SUMS").unwrap();
        assert!(warns.is_empty());
        assert_eq!(refs.len(), 3);
        assert_eq!(
            refs[0].filename.as_deref(),
            Some("vyos-1.5.1-kvm-amd64.qcow2")
        );
        assert_eq!(refs[0].digests[&Algo::Sha256], sha);
        assert_eq!(refs[0].label, "SHA256SUMS");
        assert_eq!(refs[1].filename.as_deref(), Some("bin.img"));
        assert_eq!(refs[2].filename.as_deref(), Some("new\nline\\x.img"));
        assert_eq!(detect(Path::new("SHA256SUMS"), &text), Some(Format::Sums));
        // md5sum output, 32 hex.
        let (refs, _) = parse_sums(&format!("{MD5_A}  csr.qcow2\n"), "MD5SUMS").unwrap();
        assert_eq!(refs[0].digests[&Algo::Md5], MD5_A);
        // sha512sum output.
        let s = sha512_of('a');
        let (refs, _) = parse_sums(&format!("{s}  x.qcow2\n"), "x.qcow2.sha512").unwrap();
        assert_eq!(refs[0].digests[&Algo::Sha512], s);
        // A 64-hex file named like b3sum output is BLAKE3.
        let (refs, _) = parse_sums(&format!("{sha}  x\n"), "B3SUMS").unwrap();
        assert!(refs[0].digests.contains_key(&Algo::Blake3));
        assert!(parse_sums(&format!("{sha}  x\n"), "B2SUMS").is_err());
        assert!(parse_sums("hello world\n", "SUMS").is_err());
    }

    #[test]
    fn bsd_sums() {
        let s512 = sha512_of('b');
        let text = format!(
            "MD5 (csr1000v-universalk9.17.03.08a-serial.qcow2) = {MD5_A}\n\
             SHA512 (csr1000v-universalk9.17.03.08a-serial.qcow2) = {s512}\n\
             SHA256 (odd (name).img) = {}\n\
             SHA2-256(other.img)= {}\n\
             SHA384 (x.img) = {}\n",
            "c".repeat(64),
            "d".repeat(64),
            "e".repeat(96)
        );
        let (refs, warns) = parse_sums(&text, "CHECKSUMS").unwrap();
        assert_eq!(refs.len(), 3, "{refs:?}");
        assert_eq!(refs[0].digests.len(), 2, "MD5 and SHA512 lines merge");
        assert_eq!(refs[0].digests[&Algo::Sha512], s512);
        assert_eq!(refs[1].filename.as_deref(), Some("odd (name).img"));
        assert_eq!(refs[2].filename.as_deref(), Some("other.img"));
        assert_eq!(refs[2].digests[&Algo::Sha256], "d".repeat(64));
        assert_eq!(warns.len(), 1);
        assert!(warns[0].contains("SHA384"));
        assert_eq!(detect(Path::new("CHECKSUMS"), &text), Some(Format::Sums));
        // Two different values for one file become two entries.
        let t2 = format!("MD5 (a) = {MD5_A}\nMD5 (a) = {}\n", "0".repeat(32));
        assert_eq!(parse_sums(&t2, "x").unwrap().0.len(), 2);
    }

    #[test]
    fn cisco_text() {
        let s512 = "7a1c3fb1f3a5d0c0b5f3b1b5d0e5a3c2b4f2c8d1e6a7b3c9d5e1f0a2b4c6d8e07a1c3fb1f3a5d0c0b5f3b1b5d0e5a3c2b4f2c8d1e6a7b3c9d5e1f0a2b4c6d8e0";
        let (a, b) = s512.split_at(64);
        let text = format!(
            "Details\n\
             Description :\tCisco CSR1000V IOS XE UNIVERSAL - CRYPTO QCOW2 IMAGE\n\
             Release :\t17.3.8a\n\
             Release Date :\t18-Aug-2023\n\
             FileName :\tcsr1000v-universalk9.17.03.08a-serial.qcow2\n\
             Min Memory :\tDRAM 4096 Flash 8192\n\
             Size :\t1355.55 MB ( 1421410304 bytes)\n\
             MD5 Checksum :\t6A:BE:CE:87:D6:DB:99:D9:FD:69:17:20:3E:25:3F:91\n\
             SHA512 Checksum :\t{a}\n\
             {b}\n\
             \n\
             FileName : c8000v-universalk9.17.09.04a.SPA.qcow2\n\
             Release : 17.9.4a\n\
             Size : 1858142208\n\
             MD5 Checksum : d5dc ba52 b522 f416 4853 8737 af80 cdf9\n\
             \n\
             Embedded Hash   MD5 : 11111111111111111111111111111111\n\
             verify /md5 (bootflash:asav9-16-2.qcow2) = c3aa2b73b029146ec345bf888dd54eab\n"
        );
        let (refs, warns) = parse_cisco(&text).unwrap();
        assert_eq!(refs.len(), 3, "{refs:#?}");
        let r = &refs[0];
        assert_eq!(
            r.filename.as_deref(),
            Some("csr1000v-universalk9.17.03.08a-serial.qcow2")
        );
        assert_eq!(
            r.label,
            "Cisco CSR1000V IOS XE UNIVERSAL - CRYPTO QCOW2 IMAGE"
        );
        assert_eq!(r.version.as_deref(), Some("17.3.8a"));
        assert_eq!(r.size, Some(1_421_410_304));
        assert_eq!(r.digests[&Algo::Md5], MD5_A);
        assert_eq!(r.digests[&Algo::Sha512], s512);
        let r = &refs[1];
        assert_eq!(r.size, Some(1_858_142_208));
        assert_eq!(r.digests[&Algo::Md5], "d5dcba52b522f41648538737af80cdf9");
        assert_eq!(r.label, "c8000v-universalk9.17.09.04a.SPA.qcow2");
        // The `verify` line: a new entry named from the parentheses.
        assert_eq!(
            refs[2].digests[&Algo::Md5],
            "c3aa2b73b029146ec345bf888dd54eab"
        );
        assert_eq!(refs[2].filename.as_deref(), Some("asav9-16-2.qcow2"));
        assert_eq!(warns.len(), 1, "{warns:?}");
        assert!(warns[0].contains("embedded"));
        assert_eq!(detect(Path::new("cisco.txt"), &text), Some(Format::Cisco));
        assert_eq!(detect(Path::new("x.txt"), "hello\n"), None);
        // A truncated value is a warning, not an entry.
        let (refs, warns) = parse_cisco("FileName: x.bin\nMD5 Checksum : abcdef\n").unwrap();
        assert!(refs.is_empty());
        assert_eq!(warns.len(), 1);
    }

    #[test]
    fn glance_json() {
        let s512 = sha512_of('f');
        let show = format!(
            r#"{{
  "checksum": "{MD5_A}",
  "container_format": "bare",
  "created_at": "2025-01-02T03:04:05Z",
  "disk_format": "qcow2",
  "file": "/v2/images/7c1d0a4e-6a5b-4f0e-9a0e-2b8f5d1c3e4f/file",
  "id": "7c1d0a4e-6a5b-4f0e-9a0e-2b8f5d1c3e4f",
  "min_disk": 0,
  "min_ram": 0,
  "name": "csr1000v-17.03.08a",
  "owner": "0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a",
  "properties": {{"os_hash_algo": "sha512", "os_hash_value": "{s512}", "os_hidden": false}},
  "protected": false,
  "size": 1421410304,
  "status": "active",
  "virtual_size": 8589934592,
  "visibility": "private"
}}"#
        );
        let (refs, _) = parse_glance(&show).unwrap();
        assert_eq!(refs.len(), 1);
        let r = &refs[0];
        assert_eq!(r.filename.as_deref(), Some("csr1000v-17.03.08a"));
        assert_eq!(
            r.label,
            "csr1000v-17.03.08a [7c1d0a4e-6a5b-4f0e-9a0e-2b8f5d1c3e4f]"
        );
        assert_eq!(r.size, Some(1_421_410_304));
        assert_eq!(r.digests[&Algo::Md5], MD5_A);
        assert_eq!(r.digests[&Algo::Sha512], s512);
        assert_eq!(detect(Path::new("img.json"), &show), Some(Format::Glance));

        // `image list --long -f json`, and a properties string from older clients.
        let list = format!(
            r#"[
  {{"ID": "a1", "Name": "cirros", "Disk Format": "qcow2", "Container Format": "bare",
    "Size": 21430272, "Checksum": "{}", "Status": "active", "Visibility": "public",
    "Protected": false, "Project": "p", "Tags": []}},
  {{"ID": "a2", "Name": "queued", "Size": null, "Checksum": null, "Status": "queued"}},
  {{"id": "a3", "name": "vyos", "properties": "os_hash_algo='sha256', os_hash_value='{}', os_hidden='False'"}}
]"#,
            "1".repeat(32),
            "2".repeat(64)
        );
        let (refs, warns) = parse_glance(&list).unwrap();
        assert_eq!(refs.len(), 2, "{refs:?}");
        assert_eq!(refs[0].size, Some(21_430_272));
        assert_eq!(refs[0].digests[&Algo::Md5], "1".repeat(32));
        assert_eq!(refs[1].digests[&Algo::Sha256], "2".repeat(64));
        assert_eq!(warns.len(), 1);
        // The Glance API's own list response.
        let api = format!(r#"{{"images": [{{"name": "x", "checksum": "{MD5_A}"}}]}}"#);
        assert_eq!(parse_glance(&api).unwrap().0.len(), 1);
        assert!(parse_glance("[]").is_err());
    }

    #[test]
    fn import_files_and_formats() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("csr.gns3a");
        std::fs::write(&p, GNS3A).unwrap();
        let imp = import_path(&p, None).unwrap();
        assert_eq!(imp.format, Format::Gns3a);
        assert_eq!(imp.references[0].label, "csr");
        assert_eq!(
            imp.references[0].imported_from.as_deref(),
            Some(p.display().to_string().as_str())
        );
        let s = dir.path().join("notes.txt");
        std::fs::write(&s, "nothing here\n").unwrap();
        assert!(import_path(&s, None).is_err());
        assert!(import_path(&s, Some(Format::Cisco)).is_err());
        assert!(import_path(&dir.path().join("missing"), None).is_err());
        assert_eq!(Format::from_name("glance"), Some(Format::Glance));
        assert_eq!(Format::from_name("x"), None);
    }
}
