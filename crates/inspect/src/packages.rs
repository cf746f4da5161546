//! The package database (dpkg or apk) of a walked guest, and every packaged
//! file checked against it: md5 from `/var/lib/dpkg/info/*.md5sums` and the
//! conffile md5s of `/var/lib/dpkg/status`, sha1 from apk's
//! `/lib/apk/db/installed`. Files are located as the running system would
//! find them: merged-/usr symlinks followed inside the guest, dpkg
//! diversions honoured, `path-exclude` filters from `/etc/dpkg/dpkg.cfg.d`
//! respected (excluded files were never installed). Hashing runs in
//! parallel, each file streamed, so memory stays bounded.

use std::collections::HashMap;

use md5::Md5;
use rayon::prelude::*;
use sha1::Sha1;
use sha2::Digest;

use crate::tree::{glob_match, shown, Tree};
use crate::{apk, dpkg};

/// Largest package-database file read (status, md5sums, installed).
pub const MAX_DB_FILE: u64 = 64 << 20;

/// Which package manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// Debian's dpkg.
    Dpkg,
    /// Alpine's apk.
    Apk,
}

impl Manager {
    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dpkg => "dpkg",
            Self::Apk => "apk",
        }
    }
}

/// A packaged file whose content is not what its package recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Owning package.
    pub package: String,
    /// Path as the package lists it.
    pub path: Vec<u8>,
    /// Where it was found (after symlinks and diversions).
    pub found_at: Vec<u8>,
    /// Digest recorded (hex).
    pub expected: String,
    /// Digest of the file (hex), or what the path is instead of a file.
    pub actual: String,
    /// `md5` or `sha1`.
    pub algorithm: &'static str,
    /// A conffile (administrators edit these).
    pub conffile: bool,
    /// Where the expectation comes from (`/var/lib/dpkg/info/x.md5sums:12`).
    pub source: String,
}

/// A packaged file that is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// Owning package.
    pub package: String,
    /// Path as the package lists it.
    pub path: Vec<u8>,
    /// A conffile.
    pub conffile: bool,
}

/// The package database and the verification of every packaged file.
#[derive(Debug, Clone, Default)]
pub struct Packages {
    /// `dpkg` or `apk`; `None` when the guest has neither.
    pub manager: Option<Manager>,
    /// Installed packages.
    pub count: usize,
    /// Files whose digest was compared.
    pub verified: usize,
    /// Files that differ.
    pub mismatches: Vec<Mismatch>,
    /// Files listed but absent.
    pub missing: Vec<Missing>,
    /// Installed packages that record no digests (`debsums -l`).
    pub without_digests: Vec<String>,
    /// Owner of every path a package lists, keyed by the path the guest
    /// resolves it to.
    pub owners: HashMap<Vec<u8>, String>,
    /// Newest modification time of the package lists (`*.list`): when the
    /// package manager last installed something.
    pub last_install: Option<i64>,
    /// What could not be read or parsed.
    pub problems: Vec<String>,
}

impl Packages {
    /// The package owning the guest path `path` (resolved inside the guest).
    pub fn owner(&self, tree: &Tree<'_>, path: &[u8]) -> Option<&str> {
        let resolved = tree
            .resolve_with(path, false)
            .unwrap_or_else(|| path.to_vec());
        self.owners
            .get(&resolved)
            .or_else(|| self.owners.get(path))
            .map(String::as_str)
    }
}

/// One file to check.
struct Job {
    package: String,
    path: Vec<u8>,
    expected: String,
    algorithm: &'static str,
    conffile: bool,
    source: String,
}

/// Reads the guest's package database and verifies every file it records.
pub fn gather(tree: &Tree<'_>) -> Packages {
    if tree.lookup(b"/var/lib/dpkg/status").is_some() {
        gather_dpkg(tree)
    } else if tree.lookup(b"/lib/apk/db/installed").is_some() {
        gather_apk(tree)
    } else {
        Packages::default()
    }
}

fn read_db(tree: &Tree<'_>, path: &[u8], problems: &mut Vec<String>) -> Option<Vec<u8>> {
    match tree.read(path, MAX_DB_FILE) {
        crate::tree::Read::Content(c) => Some(c),
        crate::tree::Read::Missing => None,
        other => {
            problems.push(format!("{}: not read ({other:?})", shown(path)));
            None
        }
    }
}

fn gather_dpkg(tree: &Tree<'_>) -> Packages {
    let mut p = Packages {
        manager: Some(Manager::Dpkg),
        ..Packages::default()
    };
    let Some(status) = read_db(tree, b"/var/lib/dpkg/status", &mut p.problems) else {
        return p;
    };
    let packages: Vec<dpkg::Package> = dpkg::parse_status(&status)
        .into_iter()
        .filter(|pkg| pkg.has_files)
        .collect();
    p.count = packages.iter().filter(|pkg| pkg.installed).count();
    let diversions = read_db(tree, b"/var/lib/dpkg/diversions", &mut p.problems)
        .map(|d| dpkg::parse_diversions(&d))
        .unwrap_or_default();
    let excludes = path_excludes(tree);
    let mut jobs = Vec::new();
    let info_dir = tree.resolve(b"/var/lib/dpkg/info").unwrap_or_default();
    // package -> (its md5sums file, its list file)
    type InfoFiles = (Option<Vec<u8>>, Option<Vec<u8>>);
    let mut listed: HashMap<String, InfoFiles> = HashMap::new();
    for e in tree.children(b"/var/lib/dpkg/info") {
        let name = e.path.get(info_dir.len() + 1..).unwrap_or_default();
        let Some((package, _arch, ext)) = dpkg::info_file_package(name) else {
            continue;
        };
        let slot = listed.entry(package).or_default();
        match ext.as_str() {
            "md5sums" => slot.0 = Some(e.path.clone()),
            "list" => {
                slot.1 = Some(e.path.clone());
                p.last_install = p.last_install.max(Some(e.meta.mtime));
            }
            _ => {}
        }
    }
    for pkg in &packages {
        let (md5sums, list) = listed.remove(&pkg.name).unwrap_or_default();
        if let Some(list) = list.and_then(|l| read_db(tree, &l, &mut p.problems)) {
            for path in dpkg::parse_list(&list) {
                let at = locate(tree, &path, &diversions, &pkg.name);
                p.owners.insert(at, pkg.name.clone());
            }
        }
        match md5sums.and_then(|m| {
            let data = read_db(tree, &m, &mut p.problems)?;
            Some((m, data))
        }) {
            Some((file, data)) => {
                let (lines, bad) = dpkg::parse_md5sums(&data);
                if !bad.is_empty() {
                    p.problems.push(format!(
                        "{}: {} malformed line(s), first line {}",
                        shown(&file),
                        bad.len(),
                        bad.first().copied().unwrap_or(0)
                    ));
                }
                for l in lines {
                    jobs.push(Job {
                        package: pkg.name.clone(),
                        path: l.path,
                        expected: l.md5,
                        algorithm: "md5",
                        conffile: false,
                        source: format!("{}:{}", shown(&file), l.line),
                    });
                }
            }
            None if pkg.installed => p.without_digests.push(pkg.name.clone()),
            None => {}
        }
        for c in &pkg.conffiles {
            if c.obsolete || c.expected_hex().is_none() {
                continue;
            }
            jobs.push(Job {
                package: pkg.name.clone(),
                path: c.path.clone(),
                expected: c.md5.clone(),
                algorithm: "md5",
                conffile: true,
                source: "/var/lib/dpkg/status (Conffiles)".into(),
            });
        }
    }
    // A conffile is also listed in md5sums by some packages; check it once, as a conffile.
    let conffiles: std::collections::HashSet<Vec<u8>> = jobs
        .iter()
        .filter(|j| j.conffile)
        .map(|j| j.path.clone())
        .collect();
    jobs.retain(|j| j.conffile || !conffiles.contains(&j.path));
    jobs.retain(|j| !excluded(&excludes, &j.path));
    run_jobs(tree, jobs, &diversions, &mut p);
    p
}

impl dpkg::Conffile {
    /// The recorded md5 when it is one (not `newconffile`).
    fn expected_hex(&self) -> Option<&str> {
        (self.md5.len() == 32 && self.md5.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some(self.md5.as_str())
    }
}

/// Where the guest finds a packaged path: diverted when another package
/// diverted it, then resolved through symlinks (merged /usr); the path
/// itself when it does not resolve.
fn locate(tree: &Tree<'_>, path: &[u8], diversions: &[dpkg::Diversion], package: &str) -> Vec<u8> {
    let at = dpkg::diverted_path(path, diversions, package);
    tree.resolve_with(at, false).unwrap_or_else(|| at.to_vec())
}

/// `path-exclude`/`path-include` filters (dpkg.cfg(5)), in order.
fn path_excludes(tree: &Tree<'_>) -> Vec<(bool, Vec<u8>)> {
    let mut rules = Vec::new();
    let mut files = vec![b"/etc/dpkg/dpkg.cfg".to_vec()];
    files.extend(
        tree.children(b"/etc/dpkg/dpkg.cfg.d")
            .into_iter()
            .map(|e| e.path.clone()),
    );
    for f in files {
        let Some(data) = tree.read(&f, 1 << 20).content().map(<[u8]>::to_vec) else {
            continue;
        };
        for line in data.split(|&b| b == b'\n') {
            let text = String::from_utf8_lossy(line);
            let text = text.trim();
            if let Some(pat) = text.strip_prefix("path-exclude") {
                rules.push((true, pat.trim_start_matches([' ', '=']).as_bytes().to_vec()));
            } else if let Some(pat) = text.strip_prefix("path-include") {
                rules.push((
                    false,
                    pat.trim_start_matches([' ', '=']).as_bytes().to_vec(),
                ));
            }
        }
    }
    rules
}

/// Whether dpkg's filters kept `path` from being installed (the last
/// matching rule wins).
fn excluded(rules: &[(bool, Vec<u8>)], path: &[u8]) -> bool {
    rules
        .iter()
        .rev()
        .find(|(_, pat)| glob_match(pat, path))
        .is_some_and(|(exclude, _)| *exclude)
}

fn gather_apk(tree: &Tree<'_>) -> Packages {
    let mut p = Packages {
        manager: Some(Manager::Apk),
        ..Packages::default()
    };
    let Some(db) = read_db(tree, b"/lib/apk/db/installed", &mut p.problems) else {
        return p;
    };
    let packages = apk::parse_installed(&db);
    p.count = packages.len();
    if let Some(e) = tree.lookup(b"/lib/apk/db/installed") {
        p.last_install = Some(e.meta.mtime);
    }
    let mut jobs = Vec::new();
    for pkg in &packages {
        for f in &pkg.files {
            let at = tree
                .resolve_with(&f.path, false)
                .unwrap_or_else(|| f.path.clone());
            p.owners.insert(at, pkg.name.clone());
            let Some(sha1) = f.sha1 else { continue };
            // apk records a symlink's checksum over its target string.
            if tree
                .lookup(&f.path)
                .is_some_and(|_| tree.get(&f.path).is_some_and(|e| e.link.is_some()))
            {
                continue;
            }
            jobs.push(Job {
                package: pkg.name.clone(),
                path: f.path.clone(),
                expected: hex(&sha1),
                algorithm: "sha1",
                conffile: f.path.starts_with(b"/etc/"),
                source: "/lib/apk/db/installed".into(),
            });
        }
    }
    run_jobs(tree, jobs, &[], &mut p);
    p
}

/// Hashes every job's file in parallel and records mismatches and
/// missing files.
fn run_jobs(tree: &Tree<'_>, jobs: Vec<Job>, diversions: &[dpkg::Diversion], p: &mut Packages) {
    enum Outcome {
        Same,
        Differs(Vec<u8>, String),
        Missing,
    }
    let outcomes: Vec<(Job, Outcome)> = jobs
        .into_par_iter()
        .map(|job| {
            let at = dpkg::diverted_path(&job.path, diversions, &job.package);
            let Some(resolved) = tree.resolve(at) else {
                return (job, Outcome::Missing);
            };
            let Some(entry) = tree.get(&resolved) else {
                return (job, Outcome::Missing);
            };
            if !entry.is_file() {
                let what = format!("not a regular file ({:?})", entry.meta.kind);
                return (job, Outcome::Differs(resolved, what));
            }
            let actual = match job.algorithm {
                "sha1" => {
                    let mut h = Sha1::new();
                    tree.stream(entry, &mut |b| h.update(b))
                        .map(|_| hex(&h.finalize()))
                }
                _ => {
                    let mut h = Md5::new();
                    tree.stream(entry, &mut |b| h.update(b))
                        .map(|_| hex(&h.finalize()))
                }
            };
            match actual {
                Ok(a) if a.eq_ignore_ascii_case(&job.expected) => (job, Outcome::Same),
                Ok(a) => (job, Outcome::Differs(resolved, a)),
                Err(e) => (job, Outcome::Differs(resolved, format!("unreadable: {e}"))),
            }
        })
        .collect();
    for (job, outcome) in outcomes {
        match outcome {
            Outcome::Same => p.verified += 1,
            Outcome::Differs(found_at, actual) => {
                p.verified += 1;
                p.mismatches.push(Mismatch {
                    package: job.package,
                    path: job.path,
                    found_at,
                    expected: job.expected.to_ascii_lowercase(),
                    actual,
                    algorithm: job.algorithm,
                    conffile: job.conffile,
                    source: job.source,
                });
            }
            Outcome::Missing => p.missing.push(Missing {
                package: job.package,
                path: job.path,
                conffile: job.conffile,
            }),
        }
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_filters_last_match_wins() {
        let rules = vec![
            (true, b"/usr/share/doc/*".to_vec()),
            (false, b"/usr/share/doc/*/copyright".to_vec()),
        ];
        assert!(excluded(&rules, b"/usr/share/doc/bash/README"));
        assert!(!excluded(&rules, b"/usr/share/doc/bash/copyright"));
        assert!(!excluded(&rules, b"/usr/bin/bash"));
    }
}
