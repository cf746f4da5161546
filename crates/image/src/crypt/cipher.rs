//! Sector ciphers: a block cipher (aes, twofish, serpent, cast5) in a mode
//! (ecb, cbc, xts) with an IV generator (plain, plain64, essiv), decrypting
//! one 512-byte sector at a time as qemu's `crypto/` layer does. The
//! primitives are RustCrypto's; this module only chooses and wires them.

use aes::{Aes128, Aes192, Aes256};
use cast5::Cast5;
use cipher::array::Array;
use cipher::consts::{U16, U8};
use cipher::{
    Block, BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockSizeUser, InnerIvInit,
    KeyInit,
};
use serpent::Serpent;
use twofish::Twofish;

use super::hash::Hash;
use super::CryptError;

/// Bytes per encryption sector (qemu's `QCRYPTO_BLOCK_LUKS_SECTOR_SIZE`,
/// and the legacy AES scheme's sector).
pub const SECTOR: usize = 512;

/// Decrypts (and, for `compact` of an encrypted image, encrypts) sectors in
/// place.
pub trait SectorCipher: Send + Sync {
    /// Decrypts `buf` (at most one sector, a whole number of cipher blocks)
    /// as sector number `sector`.
    ///
    /// # Errors
    /// [`CryptError::Length`] when `buf` is not a whole number of blocks.
    fn decrypt_sector(&self, sector: u64, buf: &mut [u8]) -> Result<(), CryptError>;

    /// Encrypts `buf` (as [`SectorCipher::decrypt_sector`]) as sector
    /// number `sector`.
    ///
    /// # Errors
    /// [`CryptError::Length`] when `buf` is not a whole number of blocks.
    fn encrypt_sector(&self, sector: u64, buf: &mut [u8]) -> Result<(), CryptError>;
}

/// Decrypts `buf` as consecutive sectors from `first` on (the last one may
/// be short, as in qemu's `qcrypto_block_cipher_decrypt_helper`).
///
/// # Errors
/// As [`SectorCipher::decrypt_sector`].
pub fn decrypt_sectors(c: &dyn SectorCipher, first: u64, buf: &mut [u8]) -> Result<(), CryptError> {
    let mut sector = first;
    for chunk in buf.chunks_mut(SECTOR) {
        c.decrypt_sector(sector, chunk)?;
        sector = sector.wrapping_add(1);
    }
    Ok(())
}

/// How the per-sector IV is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IvKind {
    /// No IV (ECB).
    None,
    /// Low 32 bits of the sector number, little-endian.
    Plain,
    /// The 64-bit sector number, little-endian.
    Plain64,
    /// plain64 encrypted with a cipher keyed by hash(master key).
    Essiv(Hash),
}

/// A cipher algorithm family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// AES (128/192/256).
    Aes,
    /// Twofish (128/192/256).
    Twofish,
    /// Serpent (128/192/256).
    Serpent,
    /// CAST5 (128).
    Cast5,
}

impl Family {
    /// From a LUKS cipher name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "aes" => Some(Self::Aes),
            "twofish" => Some(Self::Twofish),
            "serpent" => Some(Self::Serpent),
            "cast5" => Some(Self::Cast5),
            _ => None,
        }
    }
}

/// A block cipher mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Electronic codebook (no IV).
    Ecb,
    /// Cipher block chaining, IV per sector.
    Cbc,
    /// XTS, the IV is the tweak; the key is two keys.
    Xts,
    /// Counter mode, the IV is the initial big-endian counter block.
    Ctr,
}

impl Mode {
    /// From a LUKS mode name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ecb" => Some(Self::Ecb),
            "cbc" => Some(Self::Cbc),
            "xts" => Some(Self::Xts),
            "ctr" => Some(Self::Ctr),
            _ => None,
        }
    }
}

/// A complete sector cipher description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Cipher family.
    pub family: Family,
    /// Mode.
    pub mode: Mode,
    /// IV generator.
    pub iv: IvKind,
}

/// Encrypts one block in place with a fixed key (the ESSIV cipher).
trait BlockEncrypt: Send + Sync {
    fn encrypt(&self, block: &mut [u8]);
    fn block_len(&self) -> usize;
}

impl<C> BlockEncrypt for C
where
    C: BlockCipherEncrypt + Send + Sync,
{
    fn encrypt(&self, block: &mut [u8]) {
        if let Ok(b) = <&mut Block<C>>::try_from(block) {
            self.encrypt_block(b);
        }
    }
    fn block_len(&self) -> usize {
        <C as BlockSizeUser>::block_size()
    }
}

enum IvGen {
    None,
    Plain,
    Plain64,
    Essiv(Box<dyn BlockEncrypt>),
}

impl IvGen {
    /// The IV for `sector` in the first `n` bytes of the result.
    fn iv(&self, sector: u64, n: usize) -> [u8; 16] {
        let mut iv = [0u8; 16];
        match self {
            Self::None => {}
            Self::Plain => {
                if let Some(d) = iv.get_mut(..4) {
                    d.copy_from_slice(&(sector as u32).to_le_bytes());
                }
            }
            Self::Plain64 => {
                if let Some(d) = iv.get_mut(..8) {
                    d.copy_from_slice(&sector.to_le_bytes());
                }
            }
            Self::Essiv(c) => {
                let bl = c.block_len().min(16);
                let mut data = [0u8; 16];
                let take = bl.min(8);
                if let (Some(d), Some(s)) = (data.get_mut(..take), sector.to_le_bytes().get(..take))
                {
                    d.copy_from_slice(s);
                }
                if let Some(b) = data.get_mut(..bl) {
                    c.encrypt(b);
                }
                let take = bl.min(n);
                if let (Some(d), Some(s)) = (iv.get_mut(..take), data.get(..take)) {
                    d.copy_from_slice(s);
                }
            }
        }
        iv
    }
}

struct Ecb<C> {
    cipher: C,
}

struct Cbc<C> {
    cipher: C,
    iv: IvGen,
}

/// Counter mode with a block-sized big-endian counter starting at the IV
/// (`Ctr128BE` for 16-byte blocks, `Ctr64BE` for CAST5's 8).
macro_rules! ctr_impl {
    ($name:ident, $bs:ty, $flavor:ident) => {
        struct $name<C> {
            cipher: C,
            iv: IvGen,
        }

        impl<C> SectorCipher for $name<C>
        where
            C: BlockCipherEncrypt + BlockSizeUser<BlockSize = $bs> + Send + Sync,
        {
            fn decrypt_sector(&self, sector: u64, buf: &mut [u8]) -> Result<(), CryptError> {
                use cipher::StreamCipher;
                let bl = C::block_size();
                let iv = self.iv.iv(sector, bl);
                let core = ctr::CtrCore::<&C, ctr::flavors::$flavor>::inner_iv_slice_init(
                    &self.cipher,
                    iv.get(..bl).unwrap_or(&[]),
                )
                .map_err(|_| CryptError::Length)?;
                cipher::StreamCipherCoreWrapper::from_core(core)
                    .try_apply_keystream(buf)
                    .map_err(|_| CryptError::Length)
            }
            fn encrypt_sector(&self, sector: u64, buf: &mut [u8]) -> Result<(), CryptError> {
                // Counter mode: the same keystream both ways.
                self.decrypt_sector(sector, buf)
            }
        }
    };
}

ctr_impl!(Ctr16, U16, Ctr128BE);
ctr_impl!(Ctr8, U8, Ctr64BE);

/// XTS (IEEE 1619) over whole blocks: the tweak is the IV encrypted with
/// the second key, multiplied by α in GF(2^128) from block to block; each
/// block is decrypted as D(C ⊕ T) ⊕ T with the first key. Sectors are whole
/// blocks here (qemu's are), so ciphertext stealing never applies.
///
/// The `xts-mode` crate (the tests' reference) decrypts one block per call,
/// and the `aes` crate's VAES-512 backend pays a round-key broadcast on
/// every call, so this composition hands the cipher a sector's blocks at once.
struct Xts<C> {
    data: C,
    tweak: C,
    iv: IvGen,
}

/// Multiplies an XTS tweak (as a little-endian integer) by α in GF(2^128)
/// (polynomial x^128 + x^7 + x^2 + x + 1).
fn mul_alpha(t: u128) -> u128 {
    let carry = if t >> 127 == 1 { 0x87 } else { 0 };
    (t << 1) ^ carry
}

/// XORs a tweak into a block.
fn xor_tweak(b: &mut Block<Aes128>, t: u128) {
    b.0 = (u128::from_le_bytes(b.0) ^ t).to_le_bytes();
}

/// Blocks per batch: one 512-byte sector.
const XTS_BATCH: usize = SECTOR / 16;

impl<C> SectorCipher for Xts<C>
where
    C: BlockCipherDecrypt + BlockCipherEncrypt + BlockSizeUser<BlockSize = U16> + Send + Sync,
{
    fn decrypt_sector(&self, sector: u64, buf: &mut [u8]) -> Result<(), CryptError> {
        let blocks = blocks::<C>(buf)?;
        if blocks.is_empty() {
            return Err(CryptError::Length);
        }
        let mut first: Block<C> = Array(self.iv.iv(sector, 16));
        self.tweak.encrypt_block(&mut first);
        let mut t = u128::from_le_bytes(first.0);
        let mut tweaks = [0u128; XTS_BATCH];
        for chunk in blocks.chunks_mut(XTS_BATCH) {
            for (b, tw) in chunk.iter_mut().zip(tweaks.iter_mut()) {
                *tw = t;
                xor_tweak(b, t);
                t = mul_alpha(t);
            }
            self.data.decrypt_blocks(chunk);
            for (b, tw) in chunk.iter_mut().zip(tweaks.iter()) {
                xor_tweak(b, *tw);
            }
        }
        Ok(())
    }
    fn encrypt_sector(&self, sector: u64, buf: &mut [u8]) -> Result<(), CryptError> {
        let mut first: Block<C> = Array(self.iv.iv(sector, 16));
        self.tweak.encrypt_block(&mut first);
        let mut t = u128::from_le_bytes(first.0);
        for b in blocks::<C>(buf)? {
            xor_tweak(b, t);
            self.data.encrypt_block(b);
            xor_tweak(b, t);
            t = mul_alpha(t);
        }
        Ok(())
    }
}

fn blocks<C: BlockSizeUser>(buf: &mut [u8]) -> Result<&mut [Block<C>], CryptError> {
    let (blocks, rest) = Block::<C>::slice_as_chunks_mut(buf);
    if rest.is_empty() {
        Ok(blocks)
    } else {
        Err(CryptError::Length)
    }
}

impl<C> SectorCipher for Ecb<C>
where
    C: BlockCipherDecrypt + BlockCipherEncrypt + Send + Sync,
{
    fn decrypt_sector(&self, _sector: u64, buf: &mut [u8]) -> Result<(), CryptError> {
        self.cipher.decrypt_blocks(blocks::<C>(buf)?);
        Ok(())
    }
    fn encrypt_sector(&self, _sector: u64, buf: &mut [u8]) -> Result<(), CryptError> {
        self.cipher.encrypt_blocks(blocks::<C>(buf)?);
        Ok(())
    }
}

impl<C> SectorCipher for Cbc<C>
where
    C: BlockCipherDecrypt + BlockCipherEncrypt + Send + Sync,
{
    fn decrypt_sector(&self, sector: u64, buf: &mut [u8]) -> Result<(), CryptError> {
        let bl = C::block_size();
        let iv = self.iv.iv(sector, bl);
        let mut dec =
            cbc::Decryptor::<&C>::inner_iv_slice_init(&self.cipher, iv.get(..bl).unwrap_or(&[]))
                .map_err(|_| CryptError::Length)?;
        dec.decrypt_blocks(blocks::<C>(buf)?);
        Ok(())
    }
    fn encrypt_sector(&self, sector: u64, buf: &mut [u8]) -> Result<(), CryptError> {
        use cipher::BlockModeEncrypt;
        let bl = C::block_size();
        let iv = self.iv.iv(sector, bl);
        let mut enc =
            cbc::Encryptor::<&C>::inner_iv_slice_init(&self.cipher, iv.get(..bl).unwrap_or(&[]))
                .map_err(|_| CryptError::Length)?;
        enc.encrypt_blocks(blocks::<C>(buf)?);
        Ok(())
    }
}

fn key_init<C: KeyInit>(key: &[u8]) -> Result<C, CryptError> {
    C::new_from_slice(key).map_err(|_| CryptError::KeyLength(key.len()))
}

/// Builds the ESSIV cipher: the same family keyed with hash(master key),
/// whose key size is the hash's digest size (qemu's
/// `qcrypto_block_luks_essiv_cipher`).
fn essiv(family: Family, hash: Hash, key: &[u8]) -> Result<IvGen, CryptError> {
    let salt = hash.digest(&[key]);
    let k = salt.as_slice();
    let c: Box<dyn BlockEncrypt> = match (family, k.len()) {
        (Family::Aes, 16) => Box::new(key_init::<Aes128>(k)?),
        (Family::Aes, 24) => Box::new(key_init::<Aes192>(k)?),
        (Family::Aes, 32) => Box::new(key_init::<Aes256>(k)?),
        (Family::Twofish, 16 | 24 | 32) => Box::new(key_init::<Twofish>(k)?),
        (Family::Serpent, 16 | 24 | 32) => Box::new(key_init::<Serpent>(k)?),
        (Family::Cast5, 16) => Box::new(key_init::<Cast5>(k)?),
        _ => return Err(CryptError::Essiv(hash.name())),
    };
    Ok(IvGen::Essiv(c))
}

fn ivgen(spec: &Spec, key: &[u8]) -> Result<IvGen, CryptError> {
    Ok(match spec.iv {
        IvKind::None => IvGen::None,
        IvKind::Plain => IvGen::Plain,
        IvKind::Plain64 => IvGen::Plain64,
        IvKind::Essiv(h) => essiv(spec.family, h, key)?,
    })
}

fn with_cipher<C>(spec: &Spec, key: &[u8]) -> Result<Box<dyn SectorCipher>, CryptError>
where
    C: BlockCipherDecrypt + BlockCipherEncrypt + KeyInit + Send + Sync + 'static,
{
    match spec.mode {
        Mode::Ecb => Ok(Box::new(Ecb {
            cipher: key_init::<C>(key)?,
        })),
        Mode::Cbc => Ok(Box::new(Cbc {
            cipher: key_init::<C>(key)?,
            iv: ivgen(spec, key)?,
        })),
        Mode::Ctr | Mode::Xts => Err(CryptError::Unsupported(
            "this mode with a 64-bit block cipher".into(),
        )),
    }
}

fn with_xts<C>(spec: &Spec, key: &[u8]) -> Result<Box<dyn SectorCipher>, CryptError>
where
    C: BlockCipherDecrypt
        + BlockCipherEncrypt
        + BlockSizeUser<BlockSize = U16>
        + KeyInit
        + Send
        + Sync
        + 'static,
{
    if spec.mode == Mode::Ctr {
        return Ok(Box::new(Ctr16::<C> {
            cipher: key_init::<C>(key)?,
            iv: ivgen(spec, key)?,
        }));
    }
    if spec.mode != Mode::Xts {
        return with_cipher::<C>(spec, key);
    }
    if !key.len().is_multiple_of(2) {
        return Err(CryptError::KeyLength(key.len()));
    }
    let (k1, k2) = key.split_at(key.len() / 2);
    Ok(Box::new(Xts {
        data: key_init::<C>(k1)?,
        tweak: key_init::<C>(k2)?,
        iv: ivgen(spec, key)?,
    }))
}

/// Builds a sector cipher for `spec` keyed with `key` (both halves for XTS).
///
/// # Errors
/// [`CryptError::KeyLength`] for a key the cipher does not take,
/// [`CryptError::Unsupported`], [`CryptError::Essiv`].
pub fn build(spec: &Spec, key: &[u8]) -> Result<Box<dyn SectorCipher>, CryptError> {
    let per_cipher = if spec.mode == Mode::Xts {
        key.len() / 2
    } else {
        key.len()
    };
    match (spec.family, per_cipher) {
        (Family::Aes, 16) => with_xts::<Aes128>(spec, key),
        (Family::Aes, 24) => with_xts::<Aes192>(spec, key),
        (Family::Aes, 32) => with_xts::<Aes256>(spec, key),
        (Family::Twofish, 16 | 24 | 32) => with_xts::<Twofish>(spec, key),
        (Family::Serpent, 16 | 24 | 32) => with_xts::<Serpent>(spec, key),
        (Family::Cast5, 16) if spec.mode == Mode::Ctr => Ok(Box::new(Ctr8::<Cast5> {
            cipher: key_init::<Cast5>(key)?,
            iv: ivgen(spec, key)?,
        })),
        (Family::Cast5, 16) => with_cipher::<Cast5>(spec, key),
        _ => Err(CryptError::KeyLength(key.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batched XTS equals the `xts-mode` crate on every key size,
    /// sector numbers across the 32-bit boundary, short and long buffers.
    #[test]
    fn xts_matches_the_xts_mode_crate() {
        fn check<C>(key: &[u8])
        where
            C: BlockCipherDecrypt
                + BlockCipherEncrypt
                + BlockSizeUser<BlockSize = U16>
                + KeyInit
                + Send
                + Sync
                + 'static,
        {
            let spec = Spec {
                family: Family::Aes,
                mode: Mode::Xts,
                iv: IvKind::Plain64,
            };
            let ours = with_xts::<C>(&spec, key).unwrap();
            let (k1, k2) = key.split_at(key.len() / 2);
            let reference = xts_mode::Xts128::new(
                C::new_from_slice(k1).unwrap(),
                C::new_from_slice(k2).unwrap(),
            );
            for (sector, len) in [
                (0u64, 512usize),
                (7, 16),
                (0xffff_ffff, 512),
                (1 << 40, 1024),
                (3, 48),
            ] {
                let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 256) as u8).collect();
                let mut a = plain.clone();
                reference.encrypt_sector(&mut a, xts_mode::get_tweak_default(u128::from(sector)));
                let mut b = plain.clone();
                ours.encrypt_sector(sector, &mut b).unwrap();
                assert_eq!(a, b, "encrypt sector {sector} len {len}");
                ours.decrypt_sector(sector, &mut b).unwrap();
                assert_eq!(b, plain, "decrypt sector {sector} len {len}");
            }
        }
        let key: Vec<u8> = (0..64u8).collect();
        check::<Aes128>(&key[..32]);
        check::<Aes256>(&key);
        check::<Serpent>(&key);
        check::<Twofish>(&key[..48]);
    }
}
