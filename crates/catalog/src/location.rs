//! Where a catalog lives: an SQLite file or a PostgreSQL database.
//!
//! `postgres://user:password@host:port/db` (or `postgresql://…`) names a
//! PostgreSQL catalog; anything else is an SQLite file path. The password
//! of a connection string is never shown: [`Location`]'s `Display` prints
//! `postgres://user:***@host/db`, and every error of this crate names a
//! PostgreSQL catalog that way.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

/// A catalog's location.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (kept whole; shown redacted).
    Postgres(PgUrl),
}

/// A PostgreSQL connection string whose password is never displayed.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    /// The full connection string, password included: only for connecting.
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({})", redact(&self.0))
    }
}

/// Whether `s` is a PostgreSQL connection URL.
pub fn is_postgres_url(s: &str) -> bool {
    let lower = s.get(..13).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// `scheme://user:secret@host/db` → `scheme://user:***@host/db`; also hides
/// a `password=` query parameter. Anything unparsable is shown as the scheme
/// only.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "postgres://(unparsable connection string)".into();
    };
    // The authority ends at the first '/', '?' or '#'.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|kv| {
                    if kv.to_ascii_lowercase().starts_with("password=") {
                        "password=***".to_string()
                    } else {
                        kv.to_string()
                    }
                })
                .collect();
            format!("{path}?{}", q.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

impl Location {
    /// A `--catalog` argument: a PostgreSQL URL or a file path.
    pub fn parse(arg: &OsStr) -> Self {
        match arg.to_str() {
            Some(s) if is_postgres_url(s) => Self::Postgres(PgUrl(s.to_string())),
            _ => Self::Sqlite(PathBuf::from(arg)),
        }
    }

    /// The SQLite path, if this is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite(p) => Some(p),
            Self::Postgres(_) => None,
        }
    }

    /// Backend name: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

impl From<&Path> for Location {
    fn from(p: &Path) -> Self {
        Self::parse(p.as_os_str())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "{}", p.display()),
            Self::Postgres(u) => u.fmt(f),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "Sqlite({})", p.display()),
            Self::Postgres(u) => write!(f, "Postgres({u})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("postgres://qvet:s3cr@t:x@db.lab:5432/qvet?sslmode=disable&password=zz"),
            "postgres://qvet:***@db.lab:5432/qvet?sslmode=disable&password=***"
        );
        assert_eq!(
            redact("postgresql://qvet@db/qvet"),
            "postgresql://qvet@db/qvet"
        );
        assert_eq!(redact("postgres://h"), "postgres://h");
        let l = Location::parse(OsStr::new("postgres://u:hunter2@h/d"));
        assert!(!format!("{l} {l:?}").contains("hunter2"));
        assert_eq!(l.backend(), "postgres");
        let s = Location::parse(OsStr::new("/tmp/c.sqlite"));
        assert_eq!(s.sqlite_path(), Some(Path::new("/tmp/c.sqlite")));
    }
}
