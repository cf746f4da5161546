//! systemd unit files (systemd.unit(5)): the settings that start programs
//! (`ExecStart=` and friends), timers' schedules, and where units are
//! enabled (`*.wants/`, `*.requires/` links).

/// Lines read from one unit file.
pub const MAX_LINES: usize = 100_000;

/// Directories units are loaded from, system and user, most specific
/// first (systemd.unit(5) "Unit File Load Path").
pub const SYSTEM_UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];
/// User-unit directories outside homes.
pub const USER_UNIT_DIRS: &[&str] = &[
    "/etc/systemd/user",
    "/usr/local/lib/systemd/user",
    "/usr/lib/systemd/user",
];

/// One setting that runs a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    /// 1-based line.
    pub line: usize,
    /// `ExecStart`, `ExecStartPre`, …
    pub key: String,
    /// The command line, prefixes (`-@:+!`) kept.
    pub command: String,
}

impl Exec {
    /// The program the command runs: the first word with systemd's
    /// special prefixes removed.
    pub fn program(&self) -> &str {
        self.command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_start_matches(['-', '@', ':', '+', '!'])
    }
}

/// What a unit file holds that audit cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unit {
    /// Commands it runs.
    pub execs: Vec<Exec>,
    /// Timer schedules (`OnCalendar=`, `OnBootSec=` …) as `key=value`.
    pub schedules: Vec<String>,
    /// `[Install] WantedBy=`/`RequiredBy=` targets.
    pub wanted_by: Vec<String>,
    /// `Environment=` values mentioning `LD_PRELOAD`/`LD_LIBRARY_PATH`.
    pub loader_env: Vec<(usize, String)>,
}

/// Keys whose value is a command line.
const EXEC_KEYS: &[&str] = &[
    "ExecStart",
    "ExecStartPre",
    "ExecStartPost",
    "ExecStop",
    "ExecStopPost",
    "ExecReload",
    "ExecCondition",
];

/// Parses a unit file or drop-in; continuation lines (`\` at the end) are
/// joined.
pub fn parse(data: &[u8]) -> Unit {
    let mut unit = Unit::default();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in data.split(|&b| b == b'\n').take(MAX_LINES).enumerate() {
        let text = String::from_utf8_lossy(raw)
            .trim_end_matches('\r')
            .to_string();
        let (line, mut logical) = match pending.take() {
            Some((l, mut acc)) => {
                acc.push(' ');
                acc.push_str(text.trim());
                (l, acc)
            }
            None => (i + 1, text.trim().to_string()),
        };
        if logical.ends_with('\\') {
            logical.pop();
            if logical.len() < (1 << 20) {
                pending = Some((line, logical));
            }
            continue;
        }
        if logical.starts_with('#') || logical.starts_with(';') || logical.starts_with('[') {
            continue;
        }
        let Some((key, value)) = logical.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if EXEC_KEYS.contains(&key) && !value.is_empty() {
            unit.execs.push(Exec {
                line,
                key: key.to_string(),
                command: value.to_string(),
            });
        } else if key.starts_with("On") && key != "OnFailure" && key != "OnSuccess" {
            unit.schedules.push(format!("{key}={value}"));
        } else if key == "WantedBy" || key == "RequiredBy" {
            unit.wanted_by
                .extend(value.split_whitespace().map(str::to_string));
        } else if (key == "Environment" || key == "EnvironmentFile")
            && (value.contains("LD_PRELOAD") || value.contains("LD_LIBRARY_PATH"))
        {
            unit.loader_env.push((line, value.to_string()));
        }
    }
    unit
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn exec_lines_timers_and_install() {
        let data = b"[Unit]\nDescription=x\n[Service]\nExecStartPre=-/bin/mkdir /run/x\nExecStart=/usr/local/bin/agent \\\n  --connect http://203.0.113.9/\nEnvironment=LD_PRELOAD=/tmp/x.so\n[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=multi-user.target\n";
        let u = parse(data);
        assert_eq!(u.execs.len(), 2);
        assert_eq!(u.execs[0].program(), "/bin/mkdir");
        assert_eq!(u.execs[1].line, 5);
        assert_eq!(
            u.execs[1].command,
            "/usr/local/bin/agent  --connect http://203.0.113.9/"
        );
        assert_eq!(u.schedules, vec!["OnCalendar=daily"]);
        assert_eq!(u.wanted_by, vec!["multi-user.target"]);
        assert_eq!(u.loader_env.len(), 1);
    }

    #[test]
    fn empty_and_comment_only_units() {
        assert_eq!(parse(b"# ExecStart=/x\n; ExecStart=/y\n"), Unit::default());
        assert_eq!(parse(b""), Unit::default());
    }
}
