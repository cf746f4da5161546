//! `qvet-inspect` extracts what is inside a guest filesystem, once, as data:
//! accounts, SSH keys and the effective sshd configuration, sudoers, cron
//! jobs, systemd units, package databases (dpkg, apk) and the results of
//! checking packaged files against them.
//!
//! Nothing here judges: [`qvet-audit`]'s rules read these facts and decide
//! what is a finding. Every parser takes bytes and is bounded (lines, sizes,
//! includes), so a hostile guest costs bounded time and memory; nothing in
//! the guest is executed or interpreted beyond parsing.

pub mod apk;
pub mod dpkg;
pub mod ssh;
pub mod sudoers;
