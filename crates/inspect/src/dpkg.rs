//! Parsers for the dpkg database (`/var/lib/dpkg`): the `status` file, the
//! per-package `info/<pkg>.md5sums` and `info/<pkg>.list` files and the
//! `diversions` file, plus the path resolution needed to check packaged
//! files against their recorded checksums.
//!
//! All input comes from an untrusted guest. Every parser takes bytes, never
//! panics, and is bounded: at most [`MAX_LINES`] lines per file, at most
//! [`MAX_PACKAGES`] packages, lines longer than [`MAX_LINE_LEN`] are ignored
//! (or reported as malformed where the format has such a notion) and a
//! single field keeps at most [`MAX_FIELD_LEN`] bytes (whole lines past the
//! limit are dropped). Paths stay bytes because Linux paths are not UTF-8.

/// Lines read from one file at most, so a huge file costs bounded time.
pub const MAX_LINES: usize = 1_000_000;
/// Packages returned by [`parse_status`] at most, bounding memory.
pub const MAX_PACKAGES: usize = 100_000;
/// Longest line considered; longer lines cannot be real dpkg output.
pub const MAX_LINE_LEN: usize = 64 * 1024;
/// Bytes kept of one `status` field (including continuation lines).
pub const MAX_FIELD_LEN: usize = 1024 * 1024;

/// Splits `data` into at most [`MAX_LINES`] lines, numbered from 1.
///
/// The empty piece after a final newline is not a line (so the count equals
/// `wc -l` for newline-terminated files).
fn lines(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let trailing_newline = data.last() == Some(&b'\n');
    let mut pieces = data.split(|&b| b == b'\n').peekable();
    let mut n = 0usize;
    std::iter::from_fn(move || {
        let piece = pieces.next()?;
        if trailing_newline && pieces.peek().is_none() {
            return None;
        }
        n += 1;
        Some((n, piece))
    })
    .take(MAX_LINES)
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One package stanza of `/var/lib/dpkg/status`, reduced to what vetting
/// needs: identity, state and the conffiles dpkg recorded for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// `Package:` field.
    pub name: String,
    /// `Architecture:` field (`amd64`, `all`, …), if present.
    pub architecture: Option<String>,
    /// `Version:` field, if present.
    pub version: Option<String>,
    /// The whole `Status:` field, e.g. `install ok installed`.
    pub status: String,
    /// The third word of `Status:` is `installed` (fully configured).
    pub installed: bool,
    /// The package's files are on disk: state `installed`, `unpacked`,
    /// `half-configured`, `half-installed`, `triggers-awaited` or
    /// `triggers-pending`. (`config-files` keeps only conffiles: false.)
    pub has_files: bool,
    /// Entries of the `Conffiles:` field, in order.
    pub conffiles: Vec<Conffile>,
    /// `Essential: yes`.
    pub essential: bool,
}

/// One line of a package's `Conffiles:` field: a configuration file and the
/// md5 of the version dpkg shipped, so local modifications can be detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conffile {
    /// Absolute path, as bytes (may contain spaces or non-UTF-8).
    pub path: Vec<u8>,
    /// The md5 as lowercase hex, or the word given (e.g. `newconffile`).
    pub md5: String,
    /// The line ended with ` obsolete`: no longer shipped by the package.
    pub obsolete: bool,
    /// The line carried ` remove-on-upgrade`.
    pub remove_on_upgrade: bool,
}

/// The states in which dpkg considers a package's files present on disk.
const STATES_WITH_FILES: &[&str] = &[
    "installed",
    "unpacked",
    "half-configured",
    "half-installed",
    "triggers-awaited",
    "triggers-pending",
];

/// One field of a stanza: lowercase name and raw value (continuation lines
/// joined with `\n`, each still starting with its space or tab).
struct Field {
    name: Vec<u8>,
    value: Vec<u8>,
}

/// Parses `/var/lib/dpkg/status` into packages, so installed software and
/// its conffiles can be listed and checked without running dpkg.
///
/// Stanzas without a `Package:` field are skipped; field names are matched
/// case-insensitively; the first occurrence of a repeated field wins.
pub fn parse_status(data: &[u8]) -> Vec<Package> {
    let mut packages = Vec::new();
    let mut fields: Vec<Field> = Vec::new();
    for (_, line) in lines(data) {
        if packages.len() >= MAX_PACKAGES {
            return packages;
        }
        if line.len() > MAX_LINE_LEN {
            continue;
        }
        if trim(line).is_empty() {
            flush_stanza(&mut fields, &mut packages);
            continue;
        }
        match line.first() {
            Some(b' ' | b'\t') => {
                if let Some(last) = fields.last_mut() {
                    if last.value.len() + 1 + line.len() <= MAX_FIELD_LEN {
                        last.value.push(b'\n');
                        last.value.extend_from_slice(line);
                    }
                }
            }
            Some(b'#') => {}
            _ => {
                if let Some((name, value)) = split_once_byte(line, b':') {
                    let name = trim(name).to_ascii_lowercase();
                    if !name.is_empty() {
                        fields.push(Field {
                            name,
                            value: value.to_vec(),
                        });
                    }
                }
            }
        }
    }
    if packages.len() < MAX_PACKAGES {
        flush_stanza(&mut fields, &mut packages);
    }
    packages
}

fn split_once_byte(b: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let pos = b.iter().position(|&c| c == sep)?;
    Some((b.get(..pos)?, b.get(pos + 1..)?))
}

fn flush_stanza(fields: &mut Vec<Field>, packages: &mut Vec<Package>) {
    if fields.is_empty() {
        return;
    }
    let get = |n: &[u8]| fields.iter().find(|f| f.name == n).map(|f| &f.value[..]);
    let simple = |n: &[u8]| get(n).map(|v| lossy(trim(v))).filter(|s| !s.is_empty());
    if let Some(name) = simple(b"package") {
        let status = simple(b"status").unwrap_or_default();
        let state = status.split_ascii_whitespace().nth(2).unwrap_or("");
        packages.push(Package {
            name,
            architecture: simple(b"architecture"),
            version: simple(b"version"),
            installed: state == "installed",
            has_files: STATES_WITH_FILES.contains(&state),
            status,
            conffiles: get(b"conffiles").map(parse_conffiles).unwrap_or_default(),
            essential: simple(b"essential").is_some_and(|e| e.eq_ignore_ascii_case("yes")),
        });
    }
    fields.clear();
}

/// Parses the value of a `Conffiles:` field, one entry per line, reading the
/// flags and the md5 from the right because paths may contain spaces.
fn parse_conffiles(value: &[u8]) -> Vec<Conffile> {
    value
        .split(|&b| b == b'\n')
        .filter_map(parse_conffile_line)
        .collect()
}

fn parse_conffile_line(line: &[u8]) -> Option<Conffile> {
    let mut rest = trim(line);
    let mut obsolete = false;
    let mut remove_on_upgrade = false;
    let md5 = loop {
        let (head, word) = split_last_word(rest)?;
        rest = head;
        match word {
            b"obsolete" if !obsolete => obsolete = true,
            b"remove-on-upgrade" if !remove_on_upgrade => remove_on_upgrade = true,
            _ => break word,
        }
    };
    if rest.is_empty() {
        return None;
    }
    let md5 = if md5.iter().all(u8::is_ascii_hexdigit) {
        lossy(&md5.to_ascii_lowercase())
    } else {
        lossy(md5)
    };
    Some(Conffile {
        path: rest.to_vec(),
        md5,
        obsolete,
        remove_on_upgrade,
    })
}

/// Splits off the last whitespace-separated word; the head is right-trimmed.
fn split_last_word(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let b = b.trim_ascii_end();
    if b.is_empty() {
        return None;
    }
    let start = b
        .iter()
        .rposition(|c| c.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    let (head, word) = b.split_at_checked(start)?;
    Some((head.trim_ascii_end(), word))
}

/// One valid line of a `.md5sums` file: the checksum dpkg recorded for a
/// packaged file, so the file on disk can be compared against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Md5Line {
    /// 1-based line number in the file, for reports.
    pub line: usize,
    /// The md5, 32 lowercase hex digits.
    pub md5: String,
    /// The path made absolute (a `/` prefixed to the recorded path).
    pub path: Vec<u8>,
}

/// Parses `/var/lib/dpkg/info/<pkg>[:<arch>].md5sums`, returning the valid
/// lines and the 1-based numbers of malformed ones (a tampered or damaged
/// file is itself a finding, so malformed lines are reported, not dropped).
///
/// A line is `<32 hex><space><space or '*' or nothing><path>`; empty lines
/// are skipped silently; lines over [`MAX_LINE_LEN`] are malformed.
pub fn parse_md5sums(data: &[u8]) -> (Vec<Md5Line>, Vec<usize>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in lines(data) {
        if line.is_empty() {
            continue;
        }
        if line.len() > MAX_LINE_LEN {
            bad.push(n);
            continue;
        }
        match parse_md5_line(line) {
            Some((md5, path)) => good.push(Md5Line { line: n, md5, path }),
            None => bad.push(n),
        }
    }
    (good, bad)
}

fn parse_md5_line(line: &[u8]) -> Option<(String, Vec<u8>)> {
    let (hex, rest) = line.split_at_checked(32)?;
    if !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    let rest = match rest.first() {
        Some(b' ' | b'*') => rest.get(1..)?,
        _ => rest,
    };
    if rest.is_empty() {
        return None;
    }
    let mut path = Vec::with_capacity(rest.len() + 1);
    if rest.first() != Some(&b'/') {
        path.push(b'/');
    }
    path.extend_from_slice(rest);
    Some((lossy(&hex.to_ascii_lowercase()), path))
}

/// Parses `/var/lib/dpkg/info/<pkg>.list`: the paths (files, directories,
/// symlinks) a package owns, so ownership of a file can be established.
/// The root entry `/.` becomes `/`; empty and over-long lines are skipped.
pub fn parse_list(data: &[u8]) -> Vec<Vec<u8>> {
    lines(data)
        .filter(|(_, l)| !l.is_empty() && l.len() <= MAX_LINE_LEN)
        .map(|(_, l)| {
            if l == b"/." {
                b"/".to_vec()
            } else {
                l.to_vec()
            }
        })
        .collect()
}

/// One dpkg-divert record: files other packages ship at `from` are
/// installed at `to` instead, so checksum checks must look there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diversion {
    /// The original (diverted) path.
    pub from: Vec<u8>,
    /// Where other packages' copies of `from` are put.
    pub to: Vec<u8>,
    /// The package owning the diversion; `None` for a local one (`:`).
    pub package: Option<String>,
}

/// Parses `/var/lib/dpkg/diversions` (groups of three lines: from, to,
/// package or `:`), so [`diverted_path`] can locate diverted files.
///
/// A group with an empty or over-long line is skipped (grouping is kept);
/// an incomplete trailing group is ignored.
pub fn parse_diversions(data: &[u8]) -> Vec<Diversion> {
    let all: Vec<&[u8]> = lines(data).map(|(_, l)| l).collect();
    all.chunks_exact(3)
        .filter_map(|group| {
            let [from, to, pkg] = group else {
                return None;
            };
            if [from, to, pkg]
                .iter()
                .any(|l| l.is_empty() || l.len() > MAX_LINE_LEN)
            {
                return None;
            }
            let package = (*pkg != b":").then(|| lossy(pkg));
            Some(Diversion {
                from: from.to_vec(),
                to: to.to_vec(),
                package,
            })
        })
        .collect()
}

/// Splits a file name of `/var/lib/dpkg/info` into package, architecture
/// and extension (`libc6:amd64.md5sums` → `libc6`, `amd64`, `md5sums`), so
/// the caller knows which package a control file belongs to.
///
/// Returns `None` for names that are not `<pkg>[:<arch>].<ext>` with a
/// plausible Debian package name (lowercase alphanumerics and `+-.`).
pub fn info_file_package(file_name: &[u8]) -> Option<(String, Option<String>, String)> {
    let name = std::str::from_utf8(file_name).ok()?;
    let (stem, ext) = name.rsplit_once('.')?;
    if ext.is_empty()
        || !ext
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return None;
    }
    let (pkg, arch) = match stem.split_once(':') {
        Some((p, a)) => (p, Some(a)),
        None => (stem, None),
    };
    let pkg_ok = pkg
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && pkg.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
        });
    let arch_ok = arch.is_none_or(|a| {
        !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    if !pkg_ok || !arch_ok {
        return None;
    }
    Some((pkg.to_owned(), arch.map(str::to_owned), ext.to_owned()))
}

/// Where `package`'s copy of `path` actually lives, given the diversions.
///
/// dpkg-divert semantics: if a diversion has `from == path`, the diverting
/// package itself keeps `path`, and every other package's file (and, for a
/// local diversion, every package's) is installed at `to`. A `:<arch>`
/// suffix on `package` is ignored. Comparison is exact; on a merged-/usr
/// system the caller should also try [`merged_usr_alias`] of `path`.
pub fn diverted_path<'a>(path: &'a [u8], diversions: &'a [Diversion], package: &str) -> &'a [u8] {
    let package = package.split_once(':').map_or(package, |(p, _)| p);
    diversions
        .iter()
        .find(|d| d.from == path)
        .filter(|d| d.package.as_deref() != Some(package))
        .map_or(path, |d| &d.to[..])
}

/// Top-level directories Debian's merged-/usr turns into symlinks to `usr/…`.
const MERGED_USR_DIRS: &[&[u8]] = &[
    b"/bin", b"/sbin", b"/lib", b"/lib32", b"/lib64", b"/libx32", b"/libo32",
];

/// The `/usr` equivalent of a path under a merged-/usr symlinked directory
/// (`/bin/ls` → `/usr/bin/ls`), or `None` if `path` is not under one.
///
/// Why: on merged-/usr systems a md5sums line for `/bin/ls` names the same
/// file as `/usr/bin/ls`, and a read-only image reader that does not follow
/// the top-level symlink must look at the `/usr` path.
pub fn merged_usr_alias(path: &[u8]) -> Option<Vec<u8>> {
    MERGED_USR_DIRS.iter().find_map(|dir| {
        let rest = path.strip_prefix(*dir)?;
        if !(rest.is_empty() || rest.first() == Some(&b'/')) {
            return None;
        }
        let mut out = b"/usr".to_vec();
        out.extend_from_slice(path);
        Some(out)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]
    use super::*;
    use md5::{Digest, Md5};
    use std::path::Path;

    const STATUS: &[u8] = b"Package: base-files\n\
Essential: yes\n\
Status: install ok installed\n\
Architecture: amd64\n\
Version: 12.4+deb12u11\n\
Conffiles:\n /etc/debian_version 8031D1483FFA9C819E6BE94C6C77FD2A\n \
/etc/my file with spaces 0123456789abcdef0123456789abcdef obsolete\n \
/etc/gone newconffile remove-on-upgrade\n \
/etc/both 0123456789abcdef0123456789abcdef obsolete remove-on-upgrade\n \
nomd5\n\
Description: base\n multi line\n\
\n\
package: half\n\
STATUS: install reinstreq half-installed\n\
\n\
Package: cfg-only\n\
Status: deinstall ok config-files\n\
Essential: no\n\
\n\
Status: install ok installed\n\
\n\
Package: last\n\
Status: install ok unpacked";

    #[test]
    fn status_fields_and_states() {
        let p = parse_status(STATUS);
        assert_eq!(p.len(), 4, "{p:?}");
        let b = &p[0];
        assert_eq!(b.name, "base-files");
        assert_eq!(b.architecture.as_deref(), Some("amd64"));
        assert_eq!(b.version.as_deref(), Some("12.4+deb12u11"));
        assert_eq!(b.status, "install ok installed");
        assert!(b.installed && b.has_files && b.essential);
        assert_eq!(p[1].name, "half");
        assert!(!p[1].installed && p[1].has_files && !p[1].essential);
        assert_eq!(p[2].name, "cfg-only");
        assert!(!p[2].installed && !p[2].has_files && !p[2].essential);
        assert_eq!(p[3].name, "last");
        assert!(!p[3].installed && p[3].has_files);
        assert!(p[3].version.is_none() && p[3].conffiles.is_empty());
    }

    #[test]
    fn status_conffiles_parsed_from_the_right() {
        let c = &parse_status(STATUS)[0].conffiles;
        assert_eq!(c.len(), 4, "{c:?}");
        assert_eq!(c[0].path, b"/etc/debian_version");
        assert_eq!(c[0].md5, "8031d1483ffa9c819e6be94c6c77fd2a");
        assert!(!c[0].obsolete && !c[0].remove_on_upgrade);
        assert_eq!(c[1].path, b"/etc/my file with spaces");
        assert_eq!(c[1].md5, "0123456789abcdef0123456789abcdef");
        assert!(c[1].obsolete && !c[1].remove_on_upgrade);
        assert_eq!(c[2].path, b"/etc/gone");
        assert_eq!(c[2].md5, "newconffile");
        assert!(!c[2].obsolete && c[2].remove_on_upgrade);
        assert_eq!(c[3].path, b"/etc/both");
        assert!(c[3].obsolete && c[3].remove_on_upgrade);
    }

    #[test]
    fn status_hostile_input() {
        assert!(parse_status(b"").is_empty());
        assert!(parse_status(b"\n\n \n\t\n").is_empty());
        assert!(parse_status(b" continuation without field\nno colon here\n").is_empty());
        let mut junk = b"Package: x\xff\xfe\nStatus: a b installed\n".to_vec();
        junk.extend(std::iter::repeat_n(b'A', MAX_LINE_LEN + 1));
        junk.extend_from_slice(b"\nVersion: 1\n");
        let p = parse_status(&junk);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "x\u{fffd}\u{fffd}");
        assert!(p[0].installed);
        assert_eq!(p[0].version.as_deref(), Some("1"));
        // Field growth is capped.
        let mut big = b"Package: big\nConffiles:\n".to_vec();
        let line = format!(
            " /etc/{} 0123456789abcdef0123456789abcdef\n",
            "a".repeat(1000)
        );
        for _ in 0..2000 {
            big.extend_from_slice(line.as_bytes());
        }
        let p = parse_status(&big);
        let n = p[0].conffiles.len();
        assert!(n > 900 && n < 1100, "{n}");
    }

    #[test]
    fn status_package_cap() {
        let data = b"Package: p\n\n".repeat(MAX_PACKAGES + 10);
        assert_eq!(parse_status(&data).len(), MAX_PACKAGES);
    }

    #[test]
    fn md5sums_lines() {
        let data = b"d41d8cd98f00b204e9800998ecf8427e  usr/bin/empty\n\
D41D8CD98F00B204E9800998ECF8427E usr/share/with space  x\n\
d41d8cd98f00b204e9800998ecf8427e *usr/bin/bin\n\
\n\
nothex8cd98f00b204e9800998ecf8427e  usr/x\n\
d41d8cd98f00b204e9800998ecf8427e\n\
d41d8cd98f00b204e9800998ecf8427e  \n\
d41d8cd98f00b204e9800998ecf842  short\n\
d41d8cd98f00b204e9800998ecf8427eXusr/glued\n\
d41d8cd98f00b204e9800998ecf8427e  usr/bin/\xff\n";
        let (good, bad) = parse_md5sums(data);
        assert_eq!(bad, vec![5, 6, 7, 8, 9]);
        assert_eq!(good.len(), 4);
        assert_eq!(good[0].line, 1);
        assert_eq!(good[0].path, b"/usr/bin/empty");
        assert_eq!(good[0].md5, "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(good[1].path, b"/usr/share/with space  x");
        assert_eq!(good[1].md5, "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(good[2].path, b"/usr/bin/bin");
        assert_eq!(good[3].line, 10);
        assert_eq!(good[3].path, b"/usr/bin/\xff");
    }

    #[test]
    fn md5sums_long_line_is_malformed() {
        let mut data = b"d41d8cd98f00b204e9800998ecf8427e  ".to_vec();
        data.extend(std::iter::repeat_n(b'a', MAX_LINE_LEN));
        let (good, bad) = parse_md5sums(&data);
        assert!(good.is_empty());
        assert_eq!(bad, vec![1]);
    }

    #[test]
    fn list_paths() {
        let l = parse_list(b"/.\n/usr\n/usr/bin/a b\n\n/usr/\xfe");
        let want: Vec<&[u8]> = vec![b"/", b"/usr", b"/usr/bin/a b", b"/usr/\xfe"];
        assert_eq!(l, want);
        assert!(parse_list(b"").is_empty());
    }

    #[test]
    fn diversions_groups() {
        let d = parse_diversions(
            b"/bin/sh\n/bin/sh.distrib\ndash\n/etc/x\n/etc/x.local\n:\n\n/a\nb\n/tail\n/tail.x\n",
        );
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].from, b"/bin/sh");
        assert_eq!(d[0].to, b"/bin/sh.distrib");
        assert_eq!(d[0].package.as_deref(), Some("dash"));
        assert_eq!(d[1].package, None);
        assert!(parse_diversions(b"/a\n/b\n").is_empty());
    }

    #[test]
    fn diverted_path_semantics() {
        let d = parse_diversions(b"/bin/sh\n/bin/sh.distrib\ndash\n/etc/x\n/etc/x.l\n:\n");
        assert_eq!(diverted_path(b"/bin/sh", &d, "dash"), b"/bin/sh");
        assert_eq!(diverted_path(b"/bin/sh", &d, "dash:amd64"), b"/bin/sh");
        assert_eq!(diverted_path(b"/bin/sh", &d, "bash"), b"/bin/sh.distrib");
        assert_eq!(diverted_path(b"/etc/x", &d, "anything"), b"/etc/x.l");
        assert_eq!(diverted_path(b"/usr/bin/sh", &d, "bash"), b"/usr/bin/sh");
    }

    #[test]
    fn merged_usr() {
        assert_eq!(merged_usr_alias(b"/bin/ls").unwrap(), b"/usr/bin/ls");
        assert_eq!(merged_usr_alias(b"/lib64").unwrap(), b"/usr/lib64");
        assert_eq!(
            merged_usr_alias(b"/lib/x86_64-linux-gnu/libc.so.6").unwrap(),
            b"/usr/lib/x86_64-linux-gnu/libc.so.6"
        );
        assert_eq!(merged_usr_alias(b"/binary"), None);
        assert_eq!(merged_usr_alias(b"/libfoo/x"), None);
        assert_eq!(merged_usr_alias(b"/usr/bin/ls"), None);
        assert_eq!(merged_usr_alias(b"/etc/passwd"), None);
    }

    #[test]
    fn info_file_names() {
        let s = |a: &str, b: Option<&str>, c: &str| {
            Some((a.to_owned(), b.map(str::to_owned), c.to_owned()))
        };
        assert_eq!(
            info_file_package(b"libc6:amd64.md5sums"),
            s("libc6", Some("amd64"), "md5sums")
        );
        assert_eq!(
            info_file_package(b"base-files.list"),
            s("base-files", None, "list")
        );
        assert_eq!(
            info_file_package(b"python3.11.postinst"),
            s("python3.11", None, "postinst")
        );
        assert_eq!(
            info_file_package(b"libstdc++6:i386.shlibs"),
            s("libstdc++6", Some("i386"), "shlibs")
        );
        assert_eq!(info_file_package(b"format"), None);
        assert_eq!(info_file_package(b".list"), None);
        assert_eq!(info_file_package(b"pkg."), None);
        assert_eq!(info_file_package(b"pkg:.list"), None);
        assert_eq!(info_file_package(b"Pkg.list"), None);
        assert_eq!(info_file_package(b"../etc.list"), None);
        assert_eq!(info_file_package(b"p\xff.list"), None);
    }

    fn read_host(p: &str) -> Option<Vec<u8>> {
        match std::fs::read(p) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("skip: cannot read {p}: {e}");
                None
            }
        }
    }

    #[test]
    fn host_status() {
        let Some(data) = read_host("/var/lib/dpkg/status") else {
            return;
        };
        let pkgs = parse_status(&data);
        let stanzas = data
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"Package:"))
            .count();
        assert_eq!(pkgs.len(), stanzas);
        let dpkg = pkgs.iter().find(|p| p.name == "dpkg").expect("dpkg");
        assert!(dpkg.installed && dpkg.has_files && dpkg.essential);
        assert!(dpkg.version.is_some());
        let bf = pkgs
            .iter()
            .find(|p| p.name == "base-files")
            .expect("base-files");
        assert!(bf.installed && bf.essential);
        let dv = bf
            .conffiles
            .iter()
            .find(|c| c.path == b"/etc/debian_version")
            .expect("debian_version conffile");
        assert_eq!(dv.md5.len(), 32);
        assert!(dv
            .md5
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        eprintln!(
            "{} packages, base-files has {} conffiles",
            pkgs.len(),
            bf.conffiles.len()
        );
    }

    #[test]
    fn host_md5sums_all() {
        let dir = Path::new("/var/lib/dpkg/info");
        let Ok(entries) = std::fs::read_dir(dir) else {
            eprintln!("skip: no {}", dir.display());
            return;
        };
        let (mut total, mut newlines, mut malformed, mut files) = (0usize, 0usize, 0usize, 0usize);
        for e in entries {
            let e = e.unwrap();
            let name = e.file_name();
            let Some((_, _, ext)) = info_file_package(name.as_encoded_bytes()) else {
                continue;
            };
            if ext != "md5sums" {
                continue;
            }
            let data = std::fs::read(e.path()).unwrap();
            newlines += data.iter().filter(|&&b| b == b'\n').count();
            let (good, bad) = parse_md5sums(&data);
            total += good.len();
            malformed += bad.len();
            files += 1;
        }
        if files == 0 {
            eprintln!("skip: no md5sums files");
            return;
        }
        eprintln!("{files} md5sums files, {total} lines");
        assert_eq!(malformed, 0);
        assert_eq!(total, newlines, "count must equal `cat *.md5sums | wc -l`");
    }

    #[test]
    fn host_md5sums_match_files() {
        let Some(data) = read_host("/var/lib/dpkg/info/dpkg.md5sums") else {
            return;
        };
        let (good, bad) = parse_md5sums(&data);
        assert!(bad.is_empty());
        let diversions = std::fs::read("/var/lib/dpkg/diversions")
            .map(|d| parse_diversions(&d))
            .unwrap_or_default();
        let mut checked = 0;
        for l in good.iter().take(40) {
            let p = diverted_path(&l.path, &diversions, "dpkg");
            let p = std::str::from_utf8(p).unwrap();
            let Ok(content) = std::fs::read(p) else {
                continue; // e.g. excluded docs (path-exclude in dpkg.cfg.d)
            };
            let hex: String = Md5::digest(&content)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(hex, l.md5, "{p}");
            checked += 1;
        }
        eprintln!("{checked} files of dpkg verified by md5");
        assert!(checked >= 5, "only {checked} files checked");
    }

    #[test]
    fn host_diversions() {
        let Some(data) = read_host("/var/lib/dpkg/diversions") else {
            return;
        };
        let d = parse_diversions(&data);
        let n = data.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(d.len(), n / 3);
        assert!(d
            .iter()
            .all(|d| d.from.starts_with(b"/") && d.to.starts_with(b"/")));
        if let Some(sh) = d.iter().find(|d| d.from == b"/usr/share/man/man1/sh.1.gz") {
            assert_eq!(sh.package.as_deref(), Some("dash"));
        }
    }
}
