//! Fuzz harnesses for qvet, shared by the `cargo fuzz` targets in
//! `fuzz_targets/` and by the corpus replay test
//! `crates/image/tests/fuzz_corpus.rs`, which includes this file with
//! `#[path]` so that both run exactly the same code.
//!
//! Each harness takes arbitrary bytes, must never panic, and does a bounded
//! amount of work: errors from the libraries are expected and ignored.

use std::sync::Arc;

use qvet_format::Header;
use qvet_image::{ByteSource, Disk, MemSource, OpenOptions};

/// Map extents walked per opened image.
pub const MAX_MAP_ENTRIES: usize = 64;
/// Largest single guest read.
pub const MAX_READ: usize = 64 * 1024;
/// Guest reads per opened image, at offsets taken from the input.
pub const READS: usize = 4;

/// `check` target: the input as a qcow2 file under `qvet check` (refcount
/// rebuild, L1/L2/snapshot/bitmap walks, compressed decoding).
pub fn check(data: &[u8]) {
    let src = MemSource(data.to_vec());
    let _ = qvet_audit::check(&src, std::path::Path::new("fuzz.img"));
}

/// Largest guest compared with itself in the `image` target.
pub const MAX_COMPARE: u64 = 16 << 20;

/// Entries visited per filesystem in the `guest` target.
pub const MAX_GUEST_ENTRIES: usize = 256;

/// `guest` target: the input as a raw disk: partition scan, then every
/// partition's filesystem (ext, FAT, ISO 9660, squashfs) opened and walked
/// (bounded), files read in part; `*.squashfs` files found are opened as
/// nested squashfs images.
pub fn guest(data: &[u8]) {
    let src: Arc<dyn ByteSource> = Arc::new(MemSource(data.to_vec()));
    let Ok(map) = qvet_volume::scan(src.as_ref()) else {
        return;
    };
    for p in map.partitions.iter().take(8) {
        let window: Arc<dyn ByteSource> =
            Arc::new(qvet_volume::Window::new(Arc::clone(&src), p.start, p.len));
        // The compaction readers: free space from allocation metadata.
        if let Ok(e) = qvet_guestfs::ext::Ext::open(Arc::clone(&window)) {
            let _ = e.free_space();
        }
        if let Ok(f) = qvet_guestfs::fat::Fat::open(Arc::clone(&window)) {
            let _ = f.free_space();
        }
        let _ = qvet_guestfs::swap::swap_space(window.as_ref());
        let Ok(fs) = qvet_guestfs::open(window) else {
            continue;
        };
        let mut queue = vec![fs.root()];
        let mut seen = std::collections::HashSet::new();
        let mut visited = 0usize;
        let mut buf = vec![0u8; 4096];
        let mut nested = Vec::new();
        while let Some(dir) = queue.pop() {
            if !seen.insert(dir) {
                continue;
            }
            let Ok(entries) = fs.read_dir(dir) else {
                continue;
            };
            let _ = fs.deleted_entries(dir);
            for e in entries {
                visited += 1;
                if visited > MAX_GUEST_ENTRIES {
                    return;
                }
                match fs.metadata(e.id) {
                    Ok(md) if md.kind == qvet_guestfs::FileType::Dir => queue.push(e.id),
                    Ok(md) if md.kind == qvet_guestfs::FileType::Symlink => {
                        let _ = fs.read_link(e.id);
                    }
                    Ok(_) => {
                        let _ = fs.read(e.id, 0, &mut buf);
                        if e.name.ends_with(b".squashfs") {
                            nested.push(e.id);
                        }
                    }
                    Err(_) => {}
                }
            }
        }
        let _ = qvet_guestfs::lookup(fs.as_ref(), b"/etc/../etc/passwd", true);
        // A squashfs stored as a file (VyOS): opened through NodeSource,
        // its root listed and its first entries read.
        let fs: Arc<dyn qvet_guestfs::FileSystem> = Arc::from(fs);
        for id in nested.into_iter().take(2) {
            let Ok(node) = qvet_guestfs::node_source::NodeSource::new(Arc::clone(&fs), id) else {
                continue;
            };
            let Ok(inner) = qvet_guestfs::squashfs::Squashfs::open(Arc::new(node)) else {
                continue;
            };
            use qvet_guestfs::FileSystem as _;
            if let Ok(entries) = inner.read_dir(inner.root()) {
                for e in entries.into_iter().take(16) {
                    let _ = inner.metadata(e.id);
                    let _ = inner.read(e.id, 0, &mut buf);
                }
            }
        }
    }
}

/// `journal` target: the input as an ext3/4 journal (1 KiB blocks) whose
/// recovery is planned: superblock, descriptor tags, commit and revoke
/// blocks, wrap-around.
pub fn journal(data: &[u8]) {
    let fs_blocks = 1 << 20;
    let (facts, replayed) = qvet_guestfs::jbd2::plan_bytes(data, 1024, fs_blocks);
    let journal_blocks = data.len().div_ceil(1024) as u64;
    for (fs_block, jblock) in &replayed {
        assert!(
            *fs_block < fs_blocks,
            "replays block {fs_block} past the filesystem"
        );
        assert!(
            *jblock < journal_blocks,
            "copy from journal block {jblock} past the log"
        );
    }
    assert_eq!(facts.blocks_overlaid, replayed.len() as u64, "{facts:?}");
}

/// `header` target: structural parse, then every qemu rule.
pub fn header(data: &[u8]) {
    if let Ok(h) = Header::parse(data) {
        let _ = h.problems();
        let _ = h.validate();
        let _ = h.compression_type();
        let _ = h.describe_bits(qvet_format::header::FeatureKind::Incompatible, u64::MAX);
    }
}

/// `image` target: the input as a whole image file, opened like the CLI opens
/// one (probed format, default policy), then map, guest reads and the
/// metadata `qvet info` looks at. An image with snapshots is opened a second
/// time viewing its first snapshot.
pub fn image(data: &[u8]) {
    let src: Arc<dyn ByteSource> = Arc::new(MemSource(data.to_vec()));
    let Ok(disk) = Disk::from_source(Arc::clone(&src), "fuzz.img", &OpenOptions::default()) else {
        return;
    };
    exercise(&disk, data);

    let first_snapshot = disk
        .top()
        .and_then(|l| l.qcow2())
        .and_then(|q| q.snapshots().first())
        .map(|s| String::from_utf8_lossy(&s.id).into_owned());
    if let Some(id) = first_snapshot {
        let opts = OpenOptions {
            snapshot: Some(id),
            ..OpenOptions::default()
        };
        if let Ok(view) = Disk::from_source(src, "fuzz.img", &opts) {
            exercise(&view, data);
        }
    }
}

fn exercise(disk: &Disk, data: &[u8]) {
    for entry in disk.map().take(MAX_MAP_ENTRIES) {
        if entry.is_err() {
            break;
        }
    }

    if let Some(q) = disk.top().and_then(|l| l.qcow2()) {
        let _ = q.bitmaps();
        let _ = q.luks();
        if let Ok(mut r) = q.refcounts() {
            let _ = r.get(q.file().as_ref(), 0);
        }
        let _ = q.metadata_preallocated();
        let _ = q.encryption();
    }

    let size = disk.size();
    if size == 0 {
        return;
    }
    // The guest against itself: plans from both mappings, compares stored
    // compressed streams; must find nothing (or fail cleanly).
    if size <= MAX_COMPARE {
        if let Ok((ranges, _)) = qvet_image::compare::differing_ranges(disk, disk, &|_| {}) {
            assert!(ranges.is_empty(), "a disk differs from itself: {ranges:?}");
        }
    }
    let mut buf = vec![0u8; MAX_READ];
    for i in 0..READS {
        let (offset, len) = read_window(data, i, size);
        let Some(dst) = buf.get_mut(..len) else {
            continue;
        };
        let _ = disk.read_at(offset, dst);
    }
    // One read that ends exactly at the guest end, and one past it.
    let tail = usize::try_from(size).unwrap_or(MAX_READ).min(MAX_READ);
    if let Some(dst) = buf.get_mut(..tail) {
        let _ = disk.read_at(size - tail as u64, dst);
    }
    if let Some(dst) = buf.get_mut(..1) {
        let _ = disk.read_at(size, dst);
    }
}

/// The `i`-th read: offset and length from 12 input bytes counted from the
/// end of the input (where the image format keeps nothing), kept inside the
/// guest view and at most [`MAX_READ`] long.
pub fn read_window(data: &[u8], i: usize, size: u64) -> (u64, usize) {
    let mut word = [0u8; 12];
    for (k, b) in word.iter_mut().enumerate() {
        let back = i * 12 + k + 1;
        *b = data
            .len()
            .checked_sub(back)
            .and_then(|at| data.get(at))
            .copied()
            .unwrap_or(0);
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3] = word;
    let raw_off = u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]);
    let raw_len = u32::from_le_bytes([l0, l1, l2, l3]);
    let offset = raw_off % size;
    let room = usize::try_from(size - offset).unwrap_or(usize::MAX);
    let len = (usize::try_from(raw_len).unwrap_or(0) % MAX_READ + 1).min(room);
    (offset, len)
}

/// Guest paths the `facts` target writes its chunks to: every file the
/// fact gatherers parse.
const FACT_PATHS: &[&str] = &[
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/ssh/sshd_config",
    "/etc/ssh/sshd_config.d/a.conf",
    "/root/.ssh/authorized_keys",
    "/etc/sudoers",
    "/etc/sudoers.d/x",
    "/etc/pam.d/common-auth",
    "/etc/crontab",
    "/etc/cron.d/job",
    "/var/spool/cron/crontabs/root",
    "/etc/anacrontab",
    "/etc/systemd/system/x.service",
    "/etc/systemd/system/multi-user.target.wants/x.service",
    "/var/lib/dpkg/status",
    "/var/lib/dpkg/info/x.md5sums",
    "/var/lib/dpkg/info/x.list",
    "/var/lib/dpkg/diversions",
    "/lib/apk/db/installed",
    "/etc/ld.so.preload",
    "/etc/rc.local",
    "/etc/udev/rules.d/99.rules",
    "/etc/os-release",
    "/usr/bin/x",
    "/tmp/.x/y",
    "/packages.conf",
    "/csr1000v-rpboot.17.03.01.SPA.pkg",
    "/nvram_00001",
    "/startup-config",
    "/boot-config",
    "/boot-extensions",
    "/rc.eos",
    "/boot/1.3/rw/config/config.boot",
    "/boot/1.3/rw/config/scripts/vyos-postconfig-bootup.script",
    "/flatkc",
    "/rootfs.gz",
    "/var/pdb/option-7.1.npk",
];

/// `facts` target: chunks separated by two NUL bytes, each a file (its
/// first byte picks the path; from 0xf0 up, a symlink to the rest) of an
/// in-memory guest; the guest is walked, every fact gathered and every
/// guest rule run.
pub fn facts(data: &[u8]) {
    let mut fs = qvet_inspect::memfs::MemFs::new();
    for chunk in data.split(|&b| b == 0).filter(|c| !c.is_empty()).take(64) {
        let (sel, body) = match chunk.split_first() {
            Some((s, b)) => (*s, b),
            None => continue,
        };
        let Some(path) = FACT_PATHS.get(usize::from(sel) % FACT_PATHS.len()) else {
            continue;
        };
        if sel >= 0xf0 {
            fs.symlink(path, &String::from_utf8_lossy(body));
        } else {
            fs.file(path, 0o100755 & 0o7777 | u32::from(sel & 0x0f) << 8, body);
        }
    }
    let Ok(tree) = qvet_inspect::tree::Tree::walk(&fs) else {
        return;
    };
    let (facts, appliance) = qvet_audit::rules::gather(&tree, Some(1));
    let guest = qvet_audit::rules::Guest {
        partition: Some(1),
        tree: &tree,
        facts: &facts,
        appliance: &appliance,
    };
    let _ = qvet_audit::rules::guest(&guest);
}

/// Largest PBKDF2 iteration count the `luks` target runs (the parser's own
/// bound is far higher; fuzzing wants many inputs per second).
pub const MAX_FUZZ_ITERATIONS: u32 = 1000;

/// `luks` target: the input as a LUKS2 header copy (parsed), then as a
/// LUKS1 area (header at 0, key material
/// after it): every field parsed, every slot's bounds checked, the cipher
/// resolved, and, when the iteration counts are small, every active slot
/// tried with a fixed passphrase (PBKDF2, key material decryption, AF-merge,
/// digest check).
pub fn luks(data: &[u8]) {
    use qvet_format::luks::LuksSummary;
    // The same bytes as a LUKS2 header copy (binary header and JSON), and
    // as the JSON metadata behind a valid 16 KiB binary header.
    let _ = qvet_format::luks2::parse(data, 0);
    let mut area = vec![0u8; 16 << 10];
    if let Some(m) = area.get_mut(..16) {
        m.copy_from_slice(b"LUKS\xba\xbe\x00\x02\x00\x00\x00\x00\x00\x00\x40\x00");
    }
    let n = data.len().min(12 << 10);
    if let (Some(d), Some(s)) = (area.get_mut(4096..4096 + n), data.get(..n)) {
        d.copy_from_slice(s);
    }
    let _ = qvet_format::luks2::parse(&area, 0);
    let Ok(h) = LuksSummary::parse(data, 0) else {
        return;
    };
    let area = u64::try_from(data.len()).unwrap_or(u64::MAX);
    let _ = h.check_openable(0);
    for i in 0..=h.slots.len() {
        let _ = h.key_material(i, 0, area);
    }
    let _ = (h.cipher_alg(), h.ivgen(), h.active_slots());
    let _ = qvet_image::crypt::spec_of(&h);
    let cheap = h.master_key_iters <= MAX_FUZZ_ITERATIONS
        && h.slots
            .iter()
            .all(|s| !s.active || s.iterations <= MAX_FUZZ_ITERATIONS);
    if cheap {
        let read = |at: u64, buf: &mut [u8]| -> Result<(), qvet_image::ImageError> {
            buf.fill(0);
            let start = usize::try_from(at).unwrap_or(usize::MAX);
            if let Some(src) = data.get(start..) {
                let n = src.len().min(buf.len());
                if let (Some(d), Some(s)) = (buf.get_mut(..n), src.get(..n)) {
                    d.copy_from_slice(s);
                }
            }
            Ok(())
        };
        let key = qvet_image::Key::new(b"fuzz".to_vec());
        let _ = qvet_image::crypt::open_luks(&h, 0, area, &key, &read);
    }
}
