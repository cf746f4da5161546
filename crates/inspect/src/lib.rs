//! `qvet-inspect` extracts what is inside a guest filesystem, once, as data:
//! accounts, SSH keys and the effective sshd configuration, sudoers, PAM,
//! cron jobs, systemd units and every other autostart location, setuid
//! files, package databases (dpkg, apk) and the result of checking every
//! packaged file against them.
//!
//! Nothing here judges: `qvet-audit`'s rules read these facts and decide
//! what is a finding. Every parser takes bytes and is bounded (lines, sizes,
//! includes), so a hostile guest costs bounded time and memory; nothing in
//! the guest is executed or interpreted beyond parsing. The walk
//! ([`tree::Tree`]) resolves symlinks inside the guest only.
//!
//! Layout: [`tree`] walks a filesystem once; the parsers ([`accounts`],
//! [`ssh`], [`sudoers`], [`pam`], [`cron`], [`systemd`], [`dpkg`], [`apk`])
//! turn file bytes into records; [`packages`] verifies packaged files;
//! [`linux`] gathers it all into [`linux::LinuxFacts`].
//!
//! Appliances: [`os`] names the operating system of each filesystem with
//! its evidence (Linux distributions, IOS-XE, NX-OS, EOS, VyOS, FortiOS,
//! RouterOS); [`ios_config`] and [`vyos_config`] parse their configuration
//! languages; [`appliance`] gathers what each appliance holds into
//! [`appliance::ApplianceFacts`].

pub mod accounts;
pub mod apk;
pub mod appliance;
pub mod base64;
pub mod cron;
pub mod dpkg;
pub mod ios_config;
pub mod linux;
pub mod memfs;
pub mod os;
pub mod overlay;
pub mod packages;
pub mod pam;
pub mod ssh;
pub mod sudoers;
pub mod systemd;
#[cfg(test)]
mod testing;
pub mod tree;
pub mod vyos_config;
