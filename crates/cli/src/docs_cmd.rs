//! `qvet completions SHELL` and `qvet man [SUBCOMMAND]`: shell completion
//! scripts (clap_complete) and man pages (clap_mangen) generated from the
//! same argument definitions the binary parses, printed to stdout so a
//! packager (`scripts/deb.sh`) or a user redirects them where they belong.

use std::io::Write;

use anyhow::{bail, Result};
use clap::{Args, CommandFactory, ValueEnum};

/// Shells with completion scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// bash (install as /usr/share/bash-completion/completions/qvet).
    Bash,
    /// zsh (install as a `_qvet` file on `$fpath`).
    Zsh,
    /// fish (install as ~/.config/fish/completions/qvet.fish).
    Fish,
}

/// `qvet completions` arguments.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: Shell,
}

/// `qvet man` arguments.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The subcommand whose page to print (`audit` gives qvet-audit(1));
    /// none: qvet(1). `--list` names every page.
    subcommand: Option<String>,
    /// Print the names of every page (`qvet`, `qvet-audit` …), one a line.
    #[arg(long, conflicts_with = "subcommand")]
    list: bool,
}

/// Prints a completion script.
pub fn completions(a: &CompletionsArgs, out: &mut dyn Write) -> Result<()> {
    let mut cmd = crate::Cli::command();
    let shell = match a.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "qvet", out);
    Ok(())
}

/// Prints a man page (roff).
pub fn man(a: &ManArgs, out: &mut dyn Write) -> Result<()> {
    let cmd = crate::Cli::command();
    if a.list {
        writeln!(out, "qvet")?;
        for sub in cmd.get_subcommands() {
            writeln!(out, "qvet-{}", sub.get_name())?;
        }
        return Ok(());
    }
    let page = match &a.subcommand {
        None => cmd,
        Some(name) => {
            let Some(sub) = cmd.find_subcommand(name) else {
                bail!("no subcommand '{name}' (see `qvet man --list`)");
            };
            // The page is titled qvet-NAME, as `man qvet-audit` finds it.
            let title = format!("qvet-{name}");
            sub.clone()
                .name(title.clone())
                .bin_name(format!("qvet {name}"))
                .display_name(title)
        }
    };
    clap_mangen::Man::new(page).render(out)?;
    Ok(())
}
