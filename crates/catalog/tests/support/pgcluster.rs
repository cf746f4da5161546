//! A throw-away PostgreSQL cluster for tests: `initdb` in a temporary
//! directory, a server on a free localhost port (and a socket in that
//! directory), one database with an owner role and a read-only role per
//! test, stopped and removed on drop.
//!
//! The server binaries are found on PATH (`pg_ctl` next to `initdb`) or in
//! Debian's `/usr/lib/postgresql/<version>/bin`. PostgreSQL refuses to run
//! as root: as root the cluster belongs to the `postgres` user (Debian's
//! package creates it) and every server command runs through `runuser`.
//!
//! When no cluster can start, [`PgCluster::start_or_skip`] prints why and
//! returns `None`, unless `CI` is set: then it panics, since CI installs
//! PostgreSQL and these tests must run there.

#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running cluster.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    run_as: Option<String>,
    dbs: std::cell::Cell<u32>,
}

/// A database with its two roles.
pub struct PgDb {
    /// Database name.
    pub name: String,
    /// Connection string of the owner role (may migrate and write).
    pub owner_url: String,
    /// Connection string of a role that may only read.
    pub ro_url: String,
    /// The owner's password (tests check it is never printed).
    pub owner_password: String,
    /// The read-only role's password.
    pub ro_password: String,
}

const ADMIN: &str = "qvet_admin";
const ADMIN_PASSWORD: &str = "Adm1n-Pw-never-shown";

fn find_bin() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let pg_ctl = d.join("pg_ctl");
            if let Ok(real) = std::fs::canonicalize(&pg_ctl) {
                if let Some(dir) = real.parent() {
                    if dir.join("initdb").exists() && dir.join("postgres").exists() {
                        return Ok(dir.to_path_buf());
                    }
                }
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!("no pg_ctl on PATH and /usr/lib/postgresql: {e} (apt-get install postgresql)")
        })?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| "no PostgreSQL server binaries (apt-get install postgresql)".into())
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn id_of(user: &str, flag: &str) -> Result<u32, String> {
    let out = Command::new("id")
        .args([flag, user])
        .output()
        .map_err(|e| format!("id: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("running as root and there is no '{user}' user to run the server as"))
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn ok(what: &str, out: std::io::Result<Output>) -> Result<String, String> {
    let out = out.map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl PgCluster {
    /// Starts a cluster, or says why not (see the module documentation).
    pub fn start_or_skip(test: &str) -> Option<Self> {
        match Self::start() {
            Ok(c) => Some(c),
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("{test}: PostgreSQL could not start, and CI must run these tests: {why}")
            }
            Err(why) => {
                eprintln!("skipping {test}: PostgreSQL could not start: {why}");
                None
            }
        }
    }

    fn server_cmd(&self, prog: &str) -> Command {
        let exe = self.bin.join(prog);
        match &self.run_as {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    /// Starts a cluster.
    pub fn start() -> Result<Self, String> {
        let bin = find_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("qvet-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let run_as = if is_root() {
            let (uid, gid) = (id_of("postgres", "-u")?, id_of("postgres", "-g")?);
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown: {e}"))?;
            Some("postgres".to_string())
        } else {
            None
        };
        let port = free_port()?;
        let mut c = Self {
            dir,
            bin,
            port,
            run_as,
            dbs: std::cell::Cell::new(0),
        };
        let pw = c.dir.path().join("pw");
        std::fs::write(&pw, ADMIN_PASSWORD).map_err(|e| e.to_string())?;
        if c.run_as.is_some() {
            let uid = id_of("postgres", "-u")?;
            std::os::unix::fs::chown(&pw, Some(uid), None).map_err(|e| e.to_string())?;
        }
        let data = c.dir.path().join("data");
        ok(
            "initdb",
            c.server_cmd("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", ADMIN, "-E", "UTF8", "--no-sync", "--auth-local=trust"])
                .args(["--auth-host=scram-sha-256"])
                .arg(format!("--pwfile={}", pw.display()))
                .output(),
        )?;
        c.pg_ctl_start()?;
        Ok(c)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl_start(&mut self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let started = ok(
            "pg_ctl start",
            self.server_cmd("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.path().join("log"))
                .args(["-w", "-t", "60", "-o", &opts, "start"])
                .output(),
        );
        started.map_err(|e| {
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
            format!("{e}\nserver log:\n{log}")
        })?;
        Ok(())
    }

    /// Stops the server (fast) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.pg_ctl_start().unwrap();
    }

    /// Stops the server.
    pub fn stop(&self) {
        let _ = self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"])
            .output();
    }

    /// Runs SQL as the superuser in `db`; returns psql's unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql).unwrap()
    }

    /// [`Self::psql`], returning errors.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        ok(
            "psql",
            Command::new(self.bin.join("psql"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", ADMIN])
                .args([
                    "-d",
                    db,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-X",
                    "-q",
                    "-A",
                    "-t",
                    "-c",
                    sql,
                ])
                .env("PGPASSWORD", ADMIN_PASSWORD)
                .output(),
        )
    }

    /// A new database `qvet_<tag>_<n>` owned by a new role, and a read-only
    /// role that can read every table the owner creates.
    pub fn database(&self, tag: &str) -> PgDb {
        let n = self.dbs.get() + 1;
        self.dbs.set(n);
        let name = format!("qvet_{tag}_{n}");
        let owner_password = format!("Own3r-{name}-pw");
        let ro_password = format!("R3ad-{name}-pw");
        self.psql(
            "postgres",
            &format!(
                "CREATE ROLE {name}_owner LOGIN PASSWORD '{owner_password}';
                 CREATE ROLE {name}_ro LOGIN PASSWORD '{ro_password}';"
            ),
        );
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {name} OWNER {name}_owner"),
        );
        self.psql(
            &name,
            &format!(
                "GRANT USAGE ON SCHEMA public TO {name}_ro;
                 ALTER DEFAULT PRIVILEGES FOR ROLE {name}_owner IN SCHEMA public
                     GRANT SELECT ON TABLES TO {name}_ro;"
            ),
        );
        let url = |role: &str, pw: &str| {
            format!(
                "postgres://{name}_{role}:{pw}@127.0.0.1:{}/{name}",
                self.port
            )
        };
        PgDb {
            owner_url: url("owner", &owner_password),
            ro_url: url("ro", &ro_password),
            owner_password,
            ro_password,
            name,
        }
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Directory of the cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
