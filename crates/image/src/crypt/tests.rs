//! Images built here from the specifications, with RustCrypto primitives
//! used directly (not through this module's ciphers): a legacy AES qcow2,
//! and a LUKS1 header whose key slot is made by PBKDF2 + AF-split.

use std::path::Path;
use std::sync::Arc;

use ::cipher::{BlockModeEncrypt, KeyInit, KeyIvInit};

use super::*;
use crate::qcow2::Qcow2Image;
use crate::source::MemSource;

const CS: usize = 512;

/// A qcow2 v3 image with 512-byte clusters: header at 0, L1 at 512, L2 at
/// 1024, guest cluster 1 (guest sector 1) stored at host 1536 (host sector
/// 3), so guest and host numbering give different IVs.
fn image(crypt_method: u32, data: &[u8; CS], extra: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 4 * CS];
    f[0..4].copy_from_slice(&qvet_format::header::MAGIC.to_be_bytes());
    f[4..8].copy_from_slice(&3u32.to_be_bytes());
    f[20..24].copy_from_slice(&9u32.to_be_bytes());
    f[24..32].copy_from_slice(&4096u64.to_be_bytes());
    f[32..36].copy_from_slice(&crypt_method.to_be_bytes());
    f[36..40].copy_from_slice(&1u32.to_be_bytes());
    f[40..48].copy_from_slice(&512u64.to_be_bytes());
    f[48..56].copy_from_slice(&(3 * CS as u64).to_be_bytes());
    f[56..60].copy_from_slice(&1u32.to_be_bytes());
    f[96..100].copy_from_slice(&4u32.to_be_bytes());
    f[100..104].copy_from_slice(&112u32.to_be_bytes());
    if !extra.is_empty() {
        // Full-disk-encryption header extension: LUKS area right after the data.
        f[112..116].copy_from_slice(&0x0537_be77u32.to_be_bytes());
        f[116..120].copy_from_slice(&16u32.to_be_bytes());
        f[120..128].copy_from_slice(&(4 * CS as u64).to_be_bytes());
        f[128..136].copy_from_slice(&(extra.len() as u64).to_be_bytes());
    }
    f[512..520].copy_from_slice(&(qvet_format::l2::COPIED | 1024).to_be_bytes());
    f[1032..1040].copy_from_slice(&(qvet_format::l2::COPIED | 1536).to_be_bytes());
    f.extend_from_slice(data);
    f.truncate(4 * CS);
    f[1536..2048].copy_from_slice(data);
    f.extend_from_slice(extra);
    f
}

fn read_guest_cluster(img: &Qcow2Image) -> Vec<u8> {
    let mut out = vec![0u8; CS];
    img.read_data(512, 1536, &mut out).unwrap();
    out
}

fn plain() -> [u8; CS] {
    let mut p = [0u8; CS];
    for (i, b) in p.iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    p
}

#[test]
fn legacy_aes_from_the_spec() {
    // AES-128-CBC, key = passphrase zero-padded to 16 bytes, IV = plain64
    // of the guest sector (1).
    let mut key = [0u8; 16];
    key[..7].copy_from_slice(b"hunter2");
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(&1u64.to_le_bytes());
    let mut enc = plain();
    let (blocks, _) = ::cipher::Block::<aes::Aes128>::slice_as_chunks_mut(&mut enc);
    cbc::Encryptor::<aes::Aes128>::new(&key.into(), &iv.into()).encrypt_blocks(blocks);
    let bytes = image(1, &enc, &[]);
    let mut img = Qcow2Image::open(Arc::new(MemSource(bytes)), Path::new("mem")).unwrap();
    let mut buf = vec![0u8; CS];
    assert!(matches!(
        img.read_data(512, 1536, &mut buf),
        Err(crate::ImageError::Encrypted { .. })
    ));
    img.unlock(&Key::new(b"hunter2".to_vec())).unwrap();
    assert_eq!(read_guest_cluster(&img), plain());
    // Unaligned partial reads decrypt the covering sector.
    let mut part = vec![0u8; 100];
    img.read_data(512 + 37, 1536 + 37, &mut part).unwrap();
    assert_eq!(part, plain()[37..137]);
    // A passphrase longer than 16 bytes uses its first 16.
    let mut long =
        Qcow2Image::open(Arc::new(MemSource(image(1, &enc, &[]))), Path::new("mem")).unwrap();
    long.unlock(&Key::new(b"hunter2\0ignored-tail".to_vec()))
        .unwrap();
    assert_eq!(read_guest_cluster(&long), plain());
}

/// A LUKS1 area: header, one key slot (slot 2) for `pass`, aes-256
/// xts-plain64 sha256, 64-byte master key, 40 stripes (small, legal).
fn luks_area(pass: &[u8], mk: &[u8; 64], iters: u32) -> Vec<u8> {
    let hash = Hash::Sha256;
    let stripes = 40usize;
    let key_sector = 8u32;
    let mut h = vec![0u8; 592];
    h[..6].copy_from_slice(qvet_format::luks::MAGIC);
    h[6..8].copy_from_slice(&1u16.to_be_bytes());
    h[8..11].copy_from_slice(b"aes");
    h[40..51].copy_from_slice(b"xts-plain64");
    h[72..78].copy_from_slice(b"sha256");
    h[104..108].copy_from_slice(&4096u32.to_be_bytes());
    h[108..112].copy_from_slice(&64u32.to_be_bytes());
    let mk_salt = [0x42u8; 32];
    let mut digest = [0u8; 20];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(mk, &mk_salt, 10, &mut digest);
    h[112..132].copy_from_slice(&digest);
    h[132..164].copy_from_slice(&mk_salt);
    h[164..168].copy_from_slice(&10u32.to_be_bytes());
    for i in 0..8 {
        let s = 208 + i * 48;
        let state: u32 = if i == 2 { 0x00ac_71f3 } else { 0x0000_dead };
        h[s..s + 4].copy_from_slice(&state.to_be_bytes());
        h[s + 4..s + 8].copy_from_slice(&iters.to_be_bytes());
        h[s + 8..s + 40].copy_from_slice(&[i as u8 + 1; 32]);
        h[s + 40..s + 44].copy_from_slice(&key_sector.to_be_bytes());
        h[s + 44..s + 48].copy_from_slice(&(stripes as u32).to_be_bytes());
    }
    // AF-split: stripes 0..n-1 arbitrary, the last makes the merge give mk.
    let mut split: Vec<u8> = (0..64 * (stripes - 1))
        .map(|i| (i * 13 % 256) as u8)
        .collect();
    let acc = hash.af_merge(&[split.clone(), vec![0u8; 64]].concat(), 64);
    split.extend(acc.iter().zip(mk).map(|(a, m)| a ^ m));
    // Encrypt the split key with the slot key, sectors from 0.
    let mut slot_key = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(pass, &[3u8; 32], iters, &mut slot_key);
    let xts = xts_mode::Xts128::new(
        <aes::Aes256 as KeyInit>::new_from_slice(&slot_key[..32]).unwrap(),
        <aes::Aes256 as KeyInit>::new_from_slice(&slot_key[32..]).unwrap(),
    );
    xts.encrypt_area(&mut split, 512, 0, xts_mode::get_tweak_default);
    let mut area = h;
    area.resize(key_sector as usize * 512, 0);
    area.extend_from_slice(&split);
    area.resize(area.len().div_ceil(512) * 512, 0);
    area
}

#[test]
fn luks_from_the_spec_uses_host_sectors() {
    let mk = [0x17u8; 64];
    let xts = xts_mode::Xts128::new(
        <aes::Aes256 as KeyInit>::new_from_slice(&mk[..32]).unwrap(),
        <aes::Aes256 as KeyInit>::new_from_slice(&mk[32..]).unwrap(),
    );
    let mut enc = plain();
    // Host sector 3.
    xts.encrypt_sector(&mut enc, xts_mode::get_tweak_default(3));
    let area = luks_area(b"pass", &mk, 100);
    let bytes = image(2, &enc, &area);
    let open = || Qcow2Image::open(Arc::new(MemSource(bytes.clone())), Path::new("mem")).unwrap();
    let mut img = open();
    img.unlock(&Key::new(b"pass".to_vec())).unwrap();
    assert_eq!(img.unlocked_slot(), Some(2));
    assert_eq!(read_guest_cluster(&img), plain());
    let mut img = open();
    assert!(matches!(
        img.unlock(&Key::new(b"wrong".to_vec())),
        Err(crate::ImageError::KeyRejected { .. })
    ));
    let mut img = open();
    assert!(img
        .unlock(&Key::new(b"pass".to_vec()).with_slot(Some(1)))
        .is_err());
    // Key material cut short by the end of the file.
    let cut = bytes[..bytes.len() - 512].to_vec();
    let mut img = Qcow2Image::open(Arc::new(MemSource(cut)), Path::new("mem")).unwrap();
    let e = img.unlock(&Key::new(b"pass".to_vec())).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn hostile_iterations_are_refused_before_any_work() {
    let area = luks_area(b"pass", &[1u8; 64], 100);
    let mut bytes = image(2, &plain(), &area);
    // Slot 2's iterations → u32::MAX.
    let at = 4 * CS + 208 + 2 * 48 + 4;
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut img = Qcow2Image::open(Arc::new(MemSource(bytes)), Path::new("mem")).unwrap();
    let t = std::time::Instant::now();
    let e = img.unlock(&Key::new(b"pass".to_vec())).unwrap_err();
    assert!(e.to_string().contains("iterations"), "{e}");
    assert!(t.elapsed().as_secs() < 2);
}
