//! Parser for Alpine's package database, `/lib/apk/db/installed`, so the
//! installed packages and the recorded owner, mode and SHA-1 of each of
//! their files can be checked without running `apk`.
//!
//! The file is a sequence of stanzas separated by blank lines; each line is
//! `X:value` with a one-letter key. Within a stanza `F:` names a directory
//! (relative to `/`), each following `R:` a file in it, and the `a:` and
//! `Z:` lines after an `R:` give that file's `uid:gid:mode` and checksum.
//!
//! Input is untrusted: never panics, at most [`MAX_LINES`] lines, at most
//! [`MAX_PACKAGES`] packages, lines over [`MAX_LINE_LEN`] ignored. Paths stay
//! bytes and are not normalised (a hostile `F:../x` stays as written).

/// Lines read at most, so a huge database costs bounded time.
pub const MAX_LINES: usize = 1_000_000;
/// Packages returned at most, bounding memory.
pub const MAX_PACKAGES: usize = 100_000;
/// Longest line considered; longer lines are ignored.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// One installed package of the apk database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApkPackage {
    /// `P:` package name.
    pub name: String,
    /// `V:` version, if present.
    pub version: Option<String>,
    /// `A:` architecture, if present.
    pub arch: Option<String>,
    /// The package's files (`R:` entries), in database order.
    pub files: Vec<ApkFile>,
}

/// One file recorded for a package, with what apk knows about it, so the
/// file on disk can be compared against the database.
///
/// For a symlink apk records the SHA-1 of the link *target string* (what
/// `readlink` returns), not of the content it points to; the caller decides
/// how to compare (e.g. hash the link text when the entry is a symlink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApkFile {
    /// Absolute path: `/` + last `F:` directory + `/` + `R:` name.
    pub path: Vec<u8>,
    /// SHA-1 from a `Z:Q1<base64>` line that decodes to exactly 20 bytes.
    pub sha1: Option<[u8; 20]>,
    /// A `Z:` value that is not a decodable `Q1` SHA-1 (e.g. `Q2…`), verbatim.
    pub raw_checksum: Option<String>,
    /// Permission bits from `a:uid:gid:mode` (octal in the file).
    pub mode: Option<u32>,
    /// Owner uid from `a:`.
    pub uid: Option<u32>,
    /// Owner gid from `a:`.
    pub gid: Option<u32>,
}

/// Splits `data` into at most [`MAX_LINES`] lines.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n').take(MAX_LINES)
}

/// Parses `/lib/apk/db/installed` into packages with their files.
///
/// Stanzas without `P:` are dropped. `a:`/`Z:` lines with no preceding `R:`
/// in the current directory are ignored; `M:` (directory ownership) is not
/// exposed. An `R:` before any `F:` is taken to be in `/`.
pub fn parse_installed(data: &[u8]) -> Vec<ApkPackage> {
    let mut out = Vec::new();
    let mut cur = Stanza::default();
    for line in lines(data) {
        if out.len() >= MAX_PACKAGES {
            return out;
        }
        if line.len() > MAX_LINE_LEN {
            continue;
        }
        if line.trim_ascii().is_empty() {
            cur.finish(&mut out);
            continue;
        }
        let Some((&key, value)) = line.split_first() else {
            continue;
        };
        let Some(value) = value.strip_prefix(b":") else {
            continue;
        };
        cur.line(key, value);
    }
    if out.len() < MAX_PACKAGES {
        cur.finish(&mut out);
    }
    out
}

/// The package being read, with the parser's position within it.
#[derive(Default)]
struct Stanza {
    name: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    files: Vec<ApkFile>,
    dir: Vec<u8>,
    /// The last `R:` belongs to the current `F:` (so `a:`/`Z:` apply to it).
    file_open: bool,
}

fn text(v: &[u8]) -> Option<String> {
    let v = v.trim_ascii();
    (!v.is_empty()).then(|| String::from_utf8_lossy(v).into_owned())
}

impl Stanza {
    fn line(&mut self, key: u8, value: &[u8]) {
        match key {
            b'P' if self.name.is_none() => self.name = text(value),
            b'V' if self.version.is_none() => self.version = text(value),
            b'A' if self.arch.is_none() => self.arch = text(value),
            b'F' => {
                self.dir = value.to_vec();
                self.file_open = false;
            }
            b'R' => {
                let mut path = Vec::with_capacity(self.dir.len() + value.len() + 2);
                path.push(b'/');
                if !self.dir.is_empty() {
                    path.extend_from_slice(&self.dir);
                    path.push(b'/');
                }
                path.extend_from_slice(value);
                self.files.push(ApkFile {
                    path,
                    sha1: None,
                    raw_checksum: None,
                    mode: None,
                    uid: None,
                    gid: None,
                });
                self.file_open = true;
            }
            b'a' if self.file_open => {
                if let (Some(f), Some((uid, gid, mode))) = (self.files.last_mut(), parse_acl(value))
                {
                    f.uid = Some(uid);
                    f.gid = Some(gid);
                    f.mode = Some(mode);
                }
            }
            b'Z' if self.file_open => {
                if let Some(f) = self.files.last_mut() {
                    let v = value.trim_ascii();
                    f.sha1 = v.strip_prefix(b"Q1").and_then(decode_sha1);
                    f.raw_checksum = match f.sha1 {
                        Some(_) => None,
                        None => text(v),
                    };
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<ApkPackage>) {
        let s = std::mem::take(self);
        if let Some(name) = s.name {
            out.push(ApkPackage {
                name,
                version: s.version,
                arch: s.arch,
                files: s.files,
            });
        }
    }
}

/// Parses `uid:gid:mode[:…]` (mode octal, at most `0o7777`); extra fields
/// such as an xattr checksum are ignored.
fn parse_acl(v: &[u8]) -> Option<(u32, u32, u32)> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let mut it = s.split(':');
    let uid = it.next()?.parse().ok()?;
    let gid = it.next()?.parse().ok()?;
    let m = it.next()?;
    if m.is_empty() || !m.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let mode = u32::from_str_radix(m, 8).ok().filter(|&m| m <= 0o7777)?;
    Some((uid, gid, mode))
}

fn decode_sha1(b64: &[u8]) -> Option<[u8; 20]> {
    base64_decode(b64)?.try_into().ok()
}

use crate::base64::decode as base64_decode;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]
    use super::*;
    use sha1::{Digest, Sha1};

    /// Independent test-side encoder, so expected values come from bytes.
    fn b64(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in data.chunks(3) {
            let n = c.len();
            let mut buf = [0u8; 3];
            buf[..n].copy_from_slice(c);
            let v = (u32::from(buf[0]) << 16) | (u32::from(buf[1]) << 8) | u32::from(buf[2]);
            for i in 0..4 {
                if i <= n {
                    s.push(A[((v >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }

    fn sha1(data: &[u8]) -> [u8; 20] {
        Sha1::digest(data).as_slice().try_into().unwrap()
    }

    #[test]
    fn base64_roundtrip_and_known_vector() {
        // sha1("abc") = a9993e36…d89d
        assert_eq!(b64(&sha1(b"abc")), "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let enc = b64(&data);
            assert_eq!(base64_decode(enc.as_bytes()).unwrap(), data, "{enc}");
            assert_eq!(
                base64_decode(enc.trim_end_matches('=').as_bytes()).unwrap(),
                data
            );
        }
        assert_eq!(base64_decode(b"Zg=="), Some(b"f".to_vec()));
        assert_eq!(base64_decode(b"Zm9v"), Some(b"foo".to_vec()));
        assert_eq!(base64_decode(b"Z"), None);
        assert_eq!(base64_decode(b"Zm9v!"), None);
        assert_eq!(base64_decode(b"Zm=v"), None);
        assert_eq!(base64_decode(b"Zg="), None);
        assert_eq!(base64_decode(b"==="), None);
    }

    #[test]
    fn busybox_stanza() {
        let (bb, link) = (sha1(b"busybox binary bytes"), sha1(b"/bin/busybox"));
        let db = format!(
            "C:Q1pcdUpHfUp6Kc2wR2hKz2s+mmHb4=\nP:busybox\nV:1.36.1-r29\nA:x86_64\n\
             S:509328\nI:924672\nT:Size optimized toolbox\nU:https://busybox.net/\n\
             L:GPL-2.0-only\no:busybox\nm:Sören Tempel <soeren+alpine@soeren-tempel.net>\n\
             F:bin\nR:busybox\na:0:0:755\nZ:Q1{bb}\nR:sh\na:0:0:777\nZ:Q1{link}\n\
             F:etc\nM:0:0:755\nR:securetty\nZ:Q2abcdef\n\
             F:usr/share/udhcpc\nR:default.script\na:0:0:4755:Q1junk\nZ:Q1AAAA\n\
             F:var\nM:0:0:755\na:0:0:777\nZ:Q1{link}\n\n\
             P:second\nV:2\nR:rootfile\nZ:Q1{bb}\n",
            bb = b64(&bb),
            link = b64(&link),
        );
        let p = parse_installed(db.as_bytes());
        assert_eq!(p.len(), 2);
        let b = &p[0];
        assert_eq!(b.name, "busybox");
        assert_eq!(b.version.as_deref(), Some("1.36.1-r29"));
        assert_eq!(b.arch.as_deref(), Some("x86_64"));
        assert_eq!(b.files.len(), 4, "{:?}", b.files);
        let f = &b.files[0];
        assert_eq!(f.path, b"/bin/busybox");
        assert_eq!(f.sha1, Some(bb));
        assert_eq!(f.raw_checksum, None);
        assert_eq!((f.uid, f.gid, f.mode), (Some(0), Some(0), Some(0o755)));
        assert_eq!(b.files[1].path, b"/bin/sh");
        assert_eq!(b.files[1].sha1, Some(link));
        assert_eq!(b.files[1].mode, Some(0o777));
        let s = &b.files[2];
        assert_eq!(s.path, b"/etc/securetty");
        assert_eq!(
            (s.sha1, s.raw_checksum.as_deref()),
            (None, Some("Q2abcdef"))
        );
        assert_eq!(s.mode, None, "M: is the directory's, not the file's");
        let d = &b.files[3];
        assert_eq!(d.path, b"/usr/share/udhcpc/default.script");
        assert_eq!(d.mode, Some(0o4755));
        assert_eq!((d.sha1, d.raw_checksum.as_deref()), (None, Some("Q1AAAA")));
        // a:/Z: under F:var with no R: were not attached anywhere.
        let q = &p[1];
        assert_eq!((q.name.as_str(), q.arch.as_deref()), ("second", None));
        assert_eq!(q.files[0].path, b"/rootfile");
        assert_eq!(q.files[0].sha1, Some(bb));
    }

    #[test]
    fn hostile_input() {
        assert!(parse_installed(b"").is_empty());
        assert!(parse_installed(b"\n\n  \n").is_empty());
        // No P: -> dropped; junk lines ignored; bad acl ignored.
        assert!(parse_installed(b"V:1\nF:bin\nR:x\n").is_empty());
        let mut data =
            b"P:x\xff\nnonsense\n:\nR\nF:\xfe\nR:f\xfd\na:0:0:999\na:-1:0:755\n".to_vec();
        data.extend(std::iter::repeat_n(b'Z', MAX_LINE_LEN + 5));
        data.extend_from_slice(b"\nP:ignored-second-name\n");
        let p = parse_installed(&data);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "x\u{fffd}");
        assert_eq!(p[0].files.len(), 1);
        let f = &p[0].files[0];
        assert_eq!(f.path, b"/\xfe/f\xfd");
        assert_eq!((f.mode, f.uid, f.sha1), (None, None, None));
        assert_eq!(f.raw_checksum, None);
        let many = b"P:p\n\n".repeat(MAX_PACKAGES + 3);
        assert_eq!(parse_installed(&many).len(), MAX_PACKAGES);
    }

    #[test]
    fn acl_parsing() {
        assert_eq!(parse_acl(b"0:0:755"), Some((0, 0, 0o755)));
        assert_eq!(parse_acl(b"100:101:0640:Q1xattr"), Some((100, 101, 0o640)));
        assert_eq!(parse_acl(b"0:0:8"), None);
        assert_eq!(parse_acl(b"0:0:17777"), None);
        assert_eq!(parse_acl(b"0:0"), None);
        assert_eq!(parse_acl(b"x:0:755"), None);
    }

    #[test]
    fn host_db_if_alpine() {
        let Ok(data) = std::fs::read("/lib/apk/db/installed") else {
            eprintln!("skip: /lib/apk/db/installed absent (not Alpine)");
            return;
        };
        let p = parse_installed(&data);
        assert!(!p.is_empty());
        assert!(p.iter().flat_map(|p| &p.files).any(|f| f.sha1.is_some()));
    }
}
