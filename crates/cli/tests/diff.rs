//! `qvet diff` on partitioned disks built at test time (ext4 from a source
//! tree with `mke2fs -d`, FAT with `mkfs.fat` + `mcopy`), edited with
//! `debugfs -w`, `mcopy -o`, `sfdisk` and `dd`, and wrapped in qcow2 with
//! different container options: the change list must be exactly the edits.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write;
use std::path::Path;

use common::*;
use serde_json::Value;

/// p1 (ext4): 2048 + 65536 sectors; gap of 2048 sectors; p2 (FAT) 16384.
const P1_START: u64 = 2048;
const P2_START: u64 = 69632;

fn tools() -> bool {
    ["sfdisk", "mke2fs", "debugfs", "mkfs.fat", "mcopy"]
        .iter()
        .all(|t| have_tool(t))
}

fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
    std::fs::create_dir_all(root.join("root/.ssh")).unwrap();
    std::fs::write(root.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/motd"), b"welcome\n").unwrap();
    std::fs::write(root.join("etc/hostname"), b"router1\n").unwrap();
    std::fs::write(
        root.join("etc/ssh/sshd_config"),
        b"PermitRootLogin no\n".repeat(300),
    )
    .unwrap();
    let big: Vec<u8> = (0..(3 << 20) + 5).map(|i: u32| (i % 251) as u8).collect();
    std::fs::write(root.join("big.bin"), big).unwrap();
    std::os::unix::fs::symlink("etc/passwd", root.join("link")).unwrap();
}

fn base(s: &Scratch) -> String {
    let tree = s.path("tree");
    make_tree(&tree);
    let ext = s.s("ext.img");
    run_ok(
        &find_tool("mke2fs").unwrap(),
        &[
            "-q",
            "-t",
            "ext4",
            "-d",
            &tree.display().to_string(),
            &ext,
            "32M",
        ],
    );
    let fat = s.s("fat.img");
    run_ok(&find_tool("mkfs.fat").unwrap(), &["-C", &fat, "8192"]);
    std::fs::write(s.path("readme.txt"), b"boot partition\n").unwrap();
    run_ok(
        &find_tool("mcopy").unwrap(),
        &["-m", "-i", &fat, &s.s("readme.txt"), "::/README.TXT"],
    );
    raw_disk(s, "a.raw", &ext, &fat)
}

fn raw_disk(s: &Scratch, name: &str, ext: &str, fat: &str) -> String {
    let raw = s.s(name);
    run_ok("truncate", &["-s", "64M", &raw]);
    sfdisk(
        &raw,
        &["-q"],
        &format!(
            "label: dos\nlabel-id: 0x12345678\nstart={P1_START}, size=65536, type=83\nstart={P2_START}, size=16384, type=c\n"
        ),
    );
    dd_into(ext, &raw, P1_START);
    dd_into(fat, &raw, P2_START);
    raw
}

/// Applies debugfs commands to a copy of `ext.img` named `out`.
fn debugfs(s: &Scratch, out: &str, cmds: &str) -> String {
    let img = s.s(out);
    std::fs::copy(s.path("ext.img"), &img).unwrap();
    let mut child = std::process::Command::new(find_tool("debugfs").unwrap())
        .args(["-w", "-f", "-", &img])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cmds.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    img
}

fn qcow2(raw: &str, out: &str, opts: &[&str]) -> String {
    let mut args = vec!["convert", "-q", "-f", "raw", "-O", "qcow2"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[raw, out]);
    qemu_img(&args);
    out.to_string()
}

fn diff_json(a: &str, b: &str, code: i32) -> Value {
    let r = qvet(&["diff", "--output", "json", a, b]);
    assert_eq!(r.code(), Some(code), "{}", r.describe());
    serde_json::from_str(&r.stdout_str()).unwrap()
}

/// `(partition, path, change, fields)` of every change.
fn summary(v: &Value) -> Vec<(Value, String, String, Vec<String>)> {
    v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["partition"].clone(),
                c["path"].as_str().unwrap_or("").to_string(),
                c["change"].as_str().unwrap().to_string(),
                c["fields"]
                    .as_array()
                    .map(|f| f.iter().map(|x| x.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    let s = Scratch::new("sha");
    std::fs::write(s.path("f"), data).unwrap();
    let out = run_ok("sha256sum", &[&s.s("f")]).stdout_str();
    out.split_whitespace().next().unwrap().to_string()
}

#[test]
fn added_authorized_keys_is_exactly_that_file() {
    if !tools() {
        eprintln!("skipping: filesystem tools missing");
        return;
    }
    let s = Scratch::new("diff-add");
    let raw_a = base(&s);
    let key = b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHacked attacker@evil\n";
    std::fs::write(s.path("key"), key).unwrap();
    let ext_b = debugfs(
        &s,
        "ext_b.img",
        &format!("write {} /root/.ssh/authorized_keys\n", s.s("key")),
    );
    let raw_b = raw_disk(&s, "b.raw", &ext_b, &s.s("fat.img"));
    let a = qcow2(&raw_a, &s.s("a.qcow2"), &["-c"]);
    let b = qcow2(&raw_b, &s.s("b.qcow2"), &["-o", "cluster_size=4096"]);
    let v = diff_json(&a, &b, 1);
    assert_eq!(v["identical"], false);
    assert_eq!(
        summary(&v),
        vec![(
            Value::from(1),
            "/root/.ssh/authorized_keys".to_string(),
            "added".to_string(),
            vec![]
        )]
    );
    let c = &v["changes"][0];
    assert_eq!(c["size_b"], key.len() as u64);
    assert_eq!(c["sha256_b"], sha256_hex(key).as_str());
    let human = qvet(&["diff", &a, &b]);
    assert_eq!(human.code(), Some(1), "{}", human.describe());
    assert_eq!(
        human.stdout_str(),
        format!("+ p1:/root/.ssh/authorized_keys ({} bytes)\n", key.len())
    );
}

#[test]
fn identical_guests_in_different_containers() {
    if !tools() {
        eprintln!("skipping: filesystem tools missing");
        return;
    }
    let s = Scratch::new("diff-same");
    let raw = base(&s);
    let a = qcow2(&raw, &s.s("a.qcow2"), &["-c"]);
    let b = qcow2(&raw, &s.s("b.qcow2"), &["-o", "cluster_size=2097152"]);
    for (x, y) in [(&a, &b), (&a, &raw), (&raw, &b)] {
        let v = diff_json(x, y, 0);
        assert_eq!(v["identical"], true);
        assert_eq!(v["changes"], Value::Array(vec![]));
    }
    let human = qvet(&["diff", &a, &b]);
    assert_eq!(human.code(), Some(0), "{}", human.describe());
    assert_eq!(human.stdout_str(), "identical\n");
}

#[test]
fn remove_chmod_chown_modify_fat_gap_and_boot_code() {
    if !tools() {
        eprintln!("skipping: filesystem tools missing");
        return;
    }
    let s = Scratch::new("diff-edits");
    let raw_a = base(&s);
    // Same size and mtime as the original: only the bytes differ.
    std::fs::write(s.path("hostname"), b"router2\n").unwrap();
    run_ok(
        "touch",
        &[
            "-r",
            &s.path("tree/etc/hostname").display().to_string(),
            &s.s("hostname"),
        ],
    );
    // debugfs `write` stamps the current time; put the original back.
    let mtime = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(s.path("tree/etc/hostname"))
            .unwrap()
            .mtime()
    };
    let ext_b = debugfs(
        &s,
        "ext_b.img",
        &format!(
            "rm /etc/motd\nsif /etc/passwd mode 0100666\nsif /etc/ssh/sshd_config uid 1000\nrm /etc/hostname\nwrite {} /etc/hostname\nsif /etc/hostname mtime @{}\n",
            s.s("hostname"),
            mtime
        ),
    );
    let fat_b = s.s("fat_b.img");
    std::fs::copy(s.path("fat.img"), &fat_b).unwrap();
    std::fs::write(s.path("readme2.txt"), b"boot partition, patched\n").unwrap();
    run_ok("touch", &["-r", &s.s("readme.txt"), &s.s("readme2.txt")]);
    run_ok(
        &find_tool("mcopy").unwrap(),
        &[
            "-m",
            "-o",
            "-i",
            &fat_b,
            &s.s("readme2.txt"),
            "::/README.TXT",
        ],
    );
    let raw_b = raw_disk(&s, "b.raw", &ext_b, &fat_b);
    // 7 bytes in the gap between p1 and p2, 4 bytes of MBR boot code.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&raw_b)
        .unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"GAPDATA", 68000 * 512 + 3).unwrap();
    f.write_all_at(b"BOOT", 100).unwrap();
    drop(f);
    let a = qcow2(&raw_a, &s.s("a.qcow2"), &[]);
    let b = qcow2(&raw_b, &s.s("b.qcow2"), &["-c", "-o", "cluster_size=16384"]);
    let v = diff_json(&a, &b, 1);
    let p = |n: u32| Value::from(n);
    let st = |x: &str| x.to_string();
    // The rewritten hostname is a new inode: its ctime, crtime and atime are
    // listed when the rewrite fell in another second than mke2fs.
    let mut got = summary(&v);
    for c in &mut got {
        if c.1 == "/etc/hostname" {
            c.3.retain(|f| !["ctime", "crtime", "atime"].contains(&f.as_str()));
        }
    }
    assert_eq!(
        got,
        vec![
            (Value::Null, st(""), st("boot-sector"), vec![]),
            (Value::Null, st(""), st("gap"), vec![]),
            (p(1), st("/etc/hostname"), st("modified"), vec![]),
            (p(1), st("/etc/motd"), st("removed"), vec![]),
            (p(1), st("/etc/passwd"), st("metadata"), vec![st("mode")]),
            (
                p(1),
                st("/etc/ssh/sshd_config"),
                st("metadata"),
                vec![st("uid")]
            ),
            (p(2), st("/README.TXT"), st("modified"), vec![]),
        ],
        "{v:#}"
    );
    let ch = v["changes"].as_array().unwrap();
    assert_eq!(ch[0]["offset"], 100);
    assert_eq!(ch[0]["length"], 4);
    assert_eq!(ch[1]["offset"], 68000 * 512 + 3);
    assert_eq!(ch[1]["length"], 7);
    assert_eq!(ch[2]["sha256_a"], sha256_hex(b"router1\n").as_str());
    assert_eq!(ch[2]["sha256_b"], sha256_hex(b"router2\n").as_str());
    assert_eq!(ch[3]["size_a"], 8);
    assert_eq!(ch[4]["values"]["mode"]["a"], "644");
    assert_eq!(ch[4]["values"]["mode"]["b"], "666");
    assert_eq!(ch[5]["values"]["uid"]["b"], "1000");
    assert_eq!(ch[6]["size_b"], 24);
    let human = qvet(&["diff", &a, &b]);
    assert_eq!(human.code(), Some(1), "{}", human.describe());
    let text = human.stdout_str();
    assert!(text.contains("- p1:/etc/motd (8 bytes)\n"), "{text}");
    assert!(text.contains("M p1:/etc/passwd (mode 644→666)\n"), "{text}");
    assert!(text.contains("~ p1:/etc/hostname (content"), "{text}");
    assert_eq!(text.lines().count(), 7, "{text}");
}

#[test]
fn partition_table_changes_list_nothing_inside() {
    if !tools() {
        eprintln!("skipping: filesystem tools missing");
        return;
    }
    let s = Scratch::new("diff-table");
    let raw_a = base(&s);
    let raw_b = s.s("b.raw");
    std::fs::copy(&raw_a, &raw_b).unwrap();
    run_ok(
        &find_tool("sfdisk").unwrap(),
        &["-q", "--part-type", &raw_b, "2", "b"],
    );
    sfdisk(
        &raw_b,
        &["-q", "--append"],
        "start=86016, size=2048, type=83\n",
    );
    let b = qcow2(&raw_b, &s.s("b.qcow2"), &["-c"]);
    let v = diff_json(&raw_a, &b, 1);
    let ch = v["changes"].as_array().unwrap();
    assert!(!ch.is_empty());
    for c in ch {
        assert_eq!(c["change"], "partition-table", "{v:#}");
        assert_eq!(c["partition"], Value::Null, "{v:#}");
        assert_eq!(c["path"], Value::Null, "{v:#}");
    }
    let details: Vec<&str> = ch.iter().filter_map(|c| c["detail"].as_str()).collect();
    assert_eq!(details.len(), 2, "{v:#}");
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("changed: partition 2")),
        "{v:#}"
    );
    assert!(
        details.iter().any(|d| d.starts_with("added: partition 3")),
        "{v:#}"
    );
}

#[test]
fn errors_exit_2() {
    let s = Scratch::new("diff-err");
    std::fs::write(s.path("a.raw"), vec![0u8; 4096]).unwrap();
    let args = ["diff".to_string(), s.s("a.raw"), s.s("missing.raw")];
    let r = run_with(QVET, &args, None, Stdout::Capture, ORACLE_TIMEOUT);
    assert_eq!(r.code(), Some(2), "{}", r.describe());
    assert!(r.stderr.starts_with("qvet: "), "{}", r.describe());
    assert!(!r.stderr.contains("panicked"), "{}", r.describe());
}

#[test]
fn metadata_only_change_and_reverse_direction() {
    if !tools() {
        eprintln!("skipping: filesystem tools missing");
        return;
    }
    let s = Scratch::new("diff-meta");
    let raw_a = base(&s);
    let ext_b = debugfs(&s, "ext_b.img", "sif /etc/passwd gid 42\n");
    let raw_b = raw_disk(&s, "b.raw", &ext_b, &s.s("fat.img"));
    let b = qcow2(&raw_b, &s.s("b.qcow2"), &["-c"]);
    let v = diff_json(&raw_a, &b, 1);
    assert_eq!(
        summary(&v),
        vec![(
            Value::from(1),
            "/etc/passwd".to_string(),
            "metadata".to_string(),
            vec!["gid".to_string()]
        )],
        "{v:#}"
    );
    assert_eq!(v["changes"][0]["values"]["gid"]["b"], "42");

    let key = b"ssh-rsa AAAA reverse@test\n";
    std::fs::write(s.path("key"), key).unwrap();
    let ext_c = debugfs(
        &s,
        "ext_c.img",
        &format!("write {} /root/.ssh/authorized_keys\n", s.s("key")),
    );
    let raw_c = raw_disk(&s, "c.raw", &ext_c, &s.s("fat.img"));
    let v = diff_json(&raw_c, &raw_a, 1);
    assert_eq!(
        summary(&v),
        vec![(
            Value::from(1),
            "/root/.ssh/authorized_keys".to_string(),
            "removed".to_string(),
            vec![]
        )],
        "{v:#}"
    );
    assert_eq!(v["changes"][0]["size_a"], key.len() as u64);
    assert_eq!(v["changes"][0]["sha256_a"], sha256_hex(key).as_str());
}

#[test]
fn unreadable_filesystem_is_partition_data_not_an_error() {
    if !tools() {
        eprintln!("skipping: filesystem tools missing");
        return;
    }
    let s = Scratch::new("diff-broken");
    let raw_a = base(&s);
    let raw_b = s.s("b.raw");
    std::fs::copy(&raw_a, &raw_b).unwrap();
    // Break the ext superblock magic (superblock at 1024, magic at +56).
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&raw_b)
        .unwrap();
    use std::os::unix::fs::FileExt;
    let at = P1_START * 512 + 1024 + 56;
    f.write_all_at(&[0, 0], at).unwrap();
    drop(f);
    let v = diff_json(&raw_a, &raw_b, 1);
    let s = summary(&v);
    assert_eq!(
        s,
        vec![(
            Value::from(1),
            String::new(),
            "partition-data".to_string(),
            vec![]
        )],
        "{v:#}"
    );
    assert_eq!(v["changes"][0]["offset"], at);
    assert_eq!(v["changes"][0]["length"], 2);
}

/// A hard link added with debugfs (`ln` + link count), a changed ctime, and
/// an atime-only change: the link is added, `nlink` and `ctime` are listed
/// fields, the atime-only entry is counted and not listed.
#[test]
fn link_count_ctime_and_atime_only() {
    if !tools() {
        eprintln!("skipping: filesystem tools missing");
        return;
    }
    let s = Scratch::new("diff-times");
    let raw_a = base(&s);
    let ext_b = debugfs(
        &s,
        "ext_b.img",
        "ln /etc/passwd /etc/passwd.bak\nsif /etc/passwd links_count 2\n\
         sif /etc/hostname ctime 0x12345678\nsif /etc/motd atime 0x23456789\n",
    );
    let raw_b = raw_disk(&s, "b.raw", &ext_b, &s.s("fat.img"));
    let v = diff_json(&raw_a, &raw_b, 1);
    let got = summary(&v);
    let want = vec![
        (
            Value::from(1),
            "/etc/hostname".to_string(),
            "metadata".to_string(),
            vec!["ctime".to_string()],
        ),
        (
            Value::from(1),
            "/etc/passwd".to_string(),
            "metadata".to_string(),
            vec!["nlink".to_string()],
        ),
        (
            Value::from(1),
            "/etc/passwd.bak".to_string(),
            "added".to_string(),
            vec![],
        ),
    ];
    // debugfs `ln` may or may not touch the directory's times; the rest is exact.
    let got_no_dir: Vec<_> = got.iter().filter(|c| c.1 != "/etc").cloned().collect();
    assert_eq!(got_no_dir, want, "{v:#}");
    assert_eq!(v["changes"].as_array().map(Vec::len), Some(got.len()));
    assert_eq!(v["atime_only"], 1, "{v:#}");
    assert_eq!(
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == "/etc/hostname")
            .unwrap()["values"]["ctime"]["b"],
        0x1234_5678u32.to_string().as_str()
    );
}

/// An encrypted file (ext4 `encrypt` feature, inode flag 0x800) whose
/// ciphertext block was patched in place: plaintext cannot be read, so it is
/// reported `modified` by its blocks, with the reason, and the diff of the
/// rest of the partition still runs. The encrypted file's unchanged
/// neighbour is not reported.
#[test]
fn encrypted_file_changed_in_place_is_modified_by_blocks() {
    if !tools() {
        eprintln!("skipping: filesystem tools missing");
        return;
    }
    let s = Scratch::new("diff-encrypted");
    let tree = s.path("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("secret"), vec![b'c'; 5000]).unwrap();
    std::fs::write(tree.join("other"), vec![b'o'; 5000]).unwrap();
    std::fs::write(tree.join("plain"), b"plain\n").unwrap();
    let a = s.s("a.img");
    run_ok(
        &find_tool("mke2fs").unwrap(),
        &[
            "-q",
            "-t",
            "ext4",
            "-b",
            "1024",
            "-O",
            "encrypt",
            "-d",
            &tree.display().to_string(),
            &a,
            "8M",
        ],
    );
    let debugfs = find_tool("debugfs").unwrap();
    for f in ["/secret", "/other"] {
        run_ok(
            &debugfs,
            &["-w", "-R", &format!("sif {f} flags 0x80800"), &a],
        );
    }
    let b = s.s("b.img");
    std::fs::copy(&a, &b).unwrap();
    let blk = run_ok(&debugfs, &["-R", "bmap /secret 0", &a]);
    let blk: u64 = blk.stdout_str().trim().parse().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&b).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"tampered", blk * 1024).unwrap();
    drop(f);
    let v = diff_json(&a, &b, 1);
    let ch = v["changes"].as_array().unwrap();
    assert_eq!(ch.len(), 1, "{v:#}");
    assert_eq!(ch[0]["path"], "/secret");
    assert_eq!(ch[0]["change"], "modified");
    assert!(ch[0]["sha256_a"].is_null() && ch[0]["sha256_b"].is_null());
    assert!(
        ch[0]["detail"].as_str().unwrap().contains("encrypted"),
        "{v:#}"
    );
    // `fs` names the feature.
    let r = qvet(&["fs", "--output", "json", &a]);
    assert!(r.ok(), "{}", r.describe());
    assert!(
        r.stdout_str().contains("\"encryption\": true"),
        "{}",
        r.stdout_str()
    );
}
