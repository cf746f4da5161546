use super::*;
use qvet_image::MemSource;

fn put_entry(d: &mut [u8], at: usize, slot: usize, kind: u8, lba: u32, sectors: u32) {
    let e = at + 446 + 16 * slot;
    d[e + 4] = kind;
    d[e + 8..e + 12].copy_from_slice(&lba.to_le_bytes());
    d[e + 12..e + 16].copy_from_slice(&sectors.to_le_bytes());
    d[at + 510] = 0x55;
    d[at + 511] = 0xaa;
}

/// 1 MiB disk: p1 at sector 8 (8 sectors), extended at 64 (1000 sectors)
/// holding two logicals.
fn mbr_disk() -> Vec<u8> {
    let mut d = vec![0u8; 1 << 20];
    put_entry(&mut d, 0, 0, 0x83, 8, 8);
    put_entry(&mut d, 0, 1, 0x05, 64, 1000);
    // EBR 1 at sector 64: logical at +2 (4 sectors), next EBR at ext+100.
    put_entry(&mut d, 64 * 512, 0, 0x83, 2, 4);
    put_entry(&mut d, 64 * 512, 1, 0x05, 100, 50);
    // EBR 2 at sector 164: logical at +2 (8 sectors), end of chain.
    put_entry(&mut d, 164 * 512, 0, 0x0c, 2, 8);
    d
}

#[test]
fn mbr_with_logical_partitions() {
    let m = scan(&MemSource(mbr_disk())).unwrap();
    assert_eq!(m.scheme, Scheme::Mbr);
    let nums: Vec<(u32, u64, u64)> = m
        .partitions
        .iter()
        .map(|p| (p.number, p.start, p.len))
        .collect();
    assert_eq!(
        nums,
        vec![
            (1, 4096, 4096),
            (2, 32768, 512000),
            (5, 33792, 2048),
            (6, 84992, 4096)
        ]
    );
    assert!(
        m.findings.iter().all(|f| f.kind != "ebr-loop"),
        "{:?}",
        m.findings
    );
}

#[test]
fn ebr_loop_is_a_finding_not_a_hang() {
    let mut d = mbr_disk();
    // EBR 2 points back at EBR 1.
    put_entry(&mut d, 164 * 512, 1, 0x05, 0, 50);
    let m = scan(&MemSource(d)).unwrap();
    assert!(
        m.findings.iter().any(|f| f.kind == "ebr-loop"),
        "{:?}",
        m.findings
    );
    assert_eq!(m.partitions.len(), 4);
}

#[test]
fn overlaps_and_past_end_are_reported() {
    let mut d = vec![0u8; 1 << 20];
    put_entry(&mut d, 0, 0, 0x83, 8, 100);
    put_entry(&mut d, 0, 1, 0x83, 50, 10_000);
    let m = scan(&MemSource(d)).unwrap();
    let kinds: Vec<&str> = m.findings.iter().map(|f| f.kind).collect();
    assert!(kinds.contains(&"partitions-overlap"), "{kinds:?}");
    assert!(kinds.contains(&"partition-past-end"), "{kinds:?}");
}

#[test]
fn empty_disk_is_unknown_and_garbage_is_harmless() {
    let m = scan(&MemSource(vec![0u8; 4096])).unwrap();
    assert_eq!(m.scheme, Scheme::Unknown);
    let m = scan(&MemSource(vec![0xffu8; 70_000])).unwrap();
    assert!(m.partitions.len() <= 4 + 256);
    let m = scan(&MemSource(Vec::new())).unwrap();
    assert_eq!(m.partitions.len(), 0);
}

#[test]
fn window_is_bounded() {
    let src: std::sync::Arc<dyn ByteSource> = std::sync::Arc::new(MemSource((0u8..100).collect()));
    let w = Window::new(src, 90, 50);
    assert_eq!(w.len(), 10);
    let mut b = [0u8; 20];
    w.read_zero_padded(5, &mut b).unwrap();
    assert_eq!(&b[..5], &[95, 96, 97, 98, 99]);
    assert_eq!(&b[5..], &[0; 15]);
}

#[test]
fn swap_is_recognised_at_every_page_size_and_when_hibernated() {
    for (page, sig) in [
        (4096usize, &b"SWAPSPACE2"[..]),
        (16384, b"SWAPSPACE2"),
        (65536, b"SWAPSPACE2"),
        (4096, b"SWAP-SPACE"),
        (4096, b"S1SUSPEND\0"),
        (65536, b"LINHIB0001"),
    ] {
        let mut d = vec![0x5au8; 1 << 20];
        d[page - 10..page].copy_from_slice(sig);
        let kind = detect_filesystem(&MemSource(d.clone()), 0, 1 << 20).unwrap();
        assert_eq!(kind, Some(FsKind::Swap), "{page} {sig:?}");
        let m = scan(&MemSource(d)).unwrap();
        assert_eq!(m.scheme, Scheme::WholeDisk, "{page} {sig:?}");
    }
    // The signature one byte off its place is not swap.
    let mut d = vec![0x5au8; 1 << 20];
    d[65525..65535].copy_from_slice(b"SWAPSPACE2");
    let kind = detect_filesystem(&MemSource(d), 0, 1 << 20).unwrap();
    assert_eq!(kind, Some(FsKind::Unknown));
}

#[test]
fn a_fat_holding_a_swap_signature_deep_inside_stays_fat() {
    let mut d = vec![0u8; 1 << 20];
    // A FAT16 boot sector: jump, 512-byte sectors, 4 sectors per cluster,
    // 1 reserved sector, 2 FATs, media F8, 55 AA, "FAT16".
    d[0] = 0xeb;
    d[11..13].copy_from_slice(&512u16.to_le_bytes());
    d[13] = 4;
    d[14] = 1;
    d[16] = 2;
    d[21] = 0xf8;
    d[54..59].copy_from_slice(b"FAT16");
    d[510] = 0x55;
    d[511] = 0xaa;
    d[65526..65536].copy_from_slice(b"SWAPSPACE2");
    let kind = detect_filesystem(&MemSource(d), 0, 1 << 20).unwrap();
    assert_eq!(kind, Some(FsKind::Fat));
}
