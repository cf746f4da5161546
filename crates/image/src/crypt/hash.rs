//! The hashes a LUKS1 header may name: PBKDF2-HMAC with each, and the
//! anti-forensic merge with its diffuser (LUKS1 specification, "AF-merge").

use digest::Digest;
use rayon::prelude::*;
use zeroize::{Zeroize, Zeroizing};

/// A LUKS hash spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// MD5.
    Md5,
    /// SHA-1.
    Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
    /// RIPEMD-160.
    Ripemd160,
}

macro_rules! with_hash {
    ($h:expr, $D:ident => $body:expr) => {
        match $h {
            Hash::Md5 => {
                type $D = md5::Md5;
                $body
            }
            Hash::Sha1 => {
                type $D = sha1::Sha1;
                $body
            }
            Hash::Sha224 => {
                type $D = sha2::Sha224;
                $body
            }
            Hash::Sha256 => {
                type $D = sha2::Sha256;
                $body
            }
            Hash::Sha384 => {
                type $D = sha2::Sha384;
                $body
            }
            Hash::Sha512 => {
                type $D = sha2::Sha512;
                $body
            }
            Hash::Ripemd160 => {
                type $D = ripemd::Ripemd160;
                $body
            }
        }
    };
}

impl Hash {
    /// From a LUKS hash spec ("sha256").
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "md5" => Some(Self::Md5),
            "sha1" => Some(Self::Sha1),
            "sha224" => Some(Self::Sha224),
            "sha256" => Some(Self::Sha256),
            "sha384" => Some(Self::Sha384),
            "sha512" => Some(Self::Sha512),
            "ripemd160" => Some(Self::Ripemd160),
            _ => None,
        }
    }

    /// The spec name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha224 => "sha224",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
            Self::Ripemd160 => "ripemd160",
        }
    }

    /// The digest of the concatenated `parts`.
    pub fn digest(self, parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
        with_hash!(self, D => {
            let mut h = D::new();
            for p in parts {
                h.update(p);
            }
            Zeroizing::new(h.finalize().to_vec())
        })
    }

    /// PBKDF2-HMAC with this hash, filling `out`.
    ///
    /// Each digest-sized block of the output is an independent chain of
    /// `rounds` HMACs (RFC 8018 §5.2: block `i` starts from salt ‖ be32(i)),
    /// so the blocks run on separate cores: a 64-byte XTS key from SHA-256
    /// is two chains, and opening a key slot that qemu calibrated to two
    /// seconds takes one on two cores.
    pub fn pbkdf2(self, password: &[u8], salt: &[u8], rounds: u32, out: &mut [u8]) {
        with_hash!(self, D => {
            let size = <D as Digest>::output_size();
            let Ok(prf) = <hmac::Hmac<D> as digest::KeyInit>::new_from_slice(password) else {
                // HMAC takes keys of any length; unreachable, but the
                // crate's own loop is the same function.
                pbkdf2::pbkdf2_hmac::<D>(password, salt, rounds, out);
                return;
            };
            let sha256 = (self == Hash::Sha256).then(|| HmacSha256::new(password));
            out.par_chunks_mut(size.max(1))
                .enumerate()
                .for_each(|(i, block)| {
                    let index = u32::try_from(i).unwrap_or(u32::MAX).saturating_add(1);
                    match &sha256 {
                        Some(fast) => fast.pbkdf2_block(&prf, salt, rounds, index, block),
                        None => pbkdf2_block(&prf, salt, rounds, index, block),
                    }
                });
        })
    }

    /// LUKS1 AF-merge: `split` holds `split.len() / block` stripes of
    /// `block` bytes; every stripe but the last is XORed into an
    /// accumulator that is diffused after each, and the last XORed in.
    pub fn af_merge(self, split: &[u8], block: usize) -> Zeroizing<Vec<u8>> {
        let mut acc = Zeroizing::new(vec![0u8; block]);
        if block == 0 {
            return acc;
        }
        let stripes = split.len() / block;
        for (i, stripe) in split.chunks_exact(block).enumerate() {
            for (a, s) in acc.iter_mut().zip(stripe) {
                *a ^= s;
            }
            if i + 1 < stripes {
                self.diffuse(&mut acc);
            }
        }
        acc
    }

    /// The LUKS diffuser: each digest-sized piece `i` of `buf` replaced by
    /// hash(be32(i) ‖ piece), truncated to the piece's length.
    fn diffuse(self, buf: &mut [u8]) {
        with_hash!(self, D => {
            let size = <D as Digest>::output_size();
            for (i, piece) in buf.chunks_mut(size).enumerate() {
                let mut h = D::new();
                h.update((i as u32).to_be_bytes());
                h.update(&*piece);
                let out = h.finalize();
                for (p, o) in piece.iter_mut().zip(out.iter()) {
                    *p = *o;
                }
            }
        })
    }
}

/// One PBKDF2 output block: U1 = PRF(salt ‖ be32(index)), Uj = PRF(Uj-1),
/// the block is U1 ⊕ … ⊕ U`rounds` truncated to `out.len()`. `prf` is the
/// HMAC already keyed with the password; cloning it reuses its padded-key
/// states, two compressions per round as in the `pbkdf2` crate.
fn pbkdf2_block<P>(prf: &P, salt: &[u8], rounds: u32, index: u32, out: &mut [u8])
where
    P: digest::Update + digest::FixedOutput + Clone,
{
    let mut mac = prf.clone();
    mac.update(salt);
    mac.update(&index.to_be_bytes());
    let mut u = mac.finalize_fixed();
    out.fill(0);
    for (o, x) in out.iter_mut().zip(u.iter()) {
        *o ^= x;
    }
    for _ in 1..rounds {
        let mut mac = prf.clone();
        mac.update(&u);
        u = mac.finalize_fixed();
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
}

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// HMAC-SHA256 over 32-byte messages at the cost of two compressions and
/// nothing else: the states after the padded key blocks are kept, and
/// each round's single padded block is built in place. qemu's default
/// LUKS key slot (sha256, calibrated to two seconds) spends millions of
/// rounds here; the generic `Hmac<Sha256>` clones and re-buffers its state
/// every round.
struct HmacSha256 {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl HmacSha256 {
    fn new(password: &[u8]) -> Self {
        let mut key = [0u8; 64];
        if password.len() > 64 {
            let d = sha2::Sha256::digest(password);
            key.iter_mut().zip(d.iter()).for_each(|(k, d)| *k = *d);
        } else {
            key.iter_mut().zip(password).for_each(|(k, p)| *k = *p);
        }
        let pad = |byte: u8| {
            let mut block = [0u8; 64];
            block.iter_mut().zip(&key).for_each(|(b, k)| *b = k ^ byte);
            let mut state = SHA256_IV;
            sha2::block_api::compress256(&mut state, &[block]);
            state
        };
        let out = Self {
            inner: pad(0x36),
            outer: pad(0x5c),
        };
        key.fill(0);
        out
    }

    /// A 64-byte block holding a 32-byte message that follows a 64-byte
    /// key block: the message, 0x80, zeros, the bit length 768.
    fn padded() -> [u8; 64] {
        let mut b = [0u8; 64];
        b[32] = 0x80;
        b[62] = 0x03;
        b
    }

    /// `state` as the 32 big-endian bytes of a digest, into `block[..32]`.
    fn emit(state: &[u32; 8], block: &mut [u8; 64]) {
        for (chunk, word) in block.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
    }

    /// [`pbkdf2_block`] for HMAC-SHA256: U1 from the generic `prf` (its
    /// message is the salt and index), every later round here.
    fn pbkdf2_block<P>(&self, prf: &P, salt: &[u8], rounds: u32, index: u32, out: &mut [u8])
    where
        P: digest::Update + digest::FixedOutput + Clone,
    {
        // U1 whole (the output block may be shorter than a digest).
        let mut first = [0u8; 32];
        pbkdf2_block(prf, salt, 1, index, &mut first);
        let mut u = Self::padded();
        for (d, o) in u.iter_mut().zip(first) {
            *d = o;
        }
        let mut t = [0u32; 8];
        for (w, c) in t.iter_mut().zip(first.chunks_exact(4)) {
            *w = u32::from_be_bytes(c.try_into().unwrap_or_default());
        }
        first.fill(0);
        let mut inner_out = Self::padded();
        for _ in 1..rounds {
            let mut s = self.inner;
            sha2::block_api::compress256(&mut s, &[u]);
            Self::emit(&s, &mut inner_out);
            let mut s = self.outer;
            sha2::block_api::compress256(&mut s, &[inner_out]);
            Self::emit(&s, &mut u);
            for (x, w) in t.iter_mut().zip(s) {
                *x ^= w;
            }
        }
        for (chunk, word) in out.chunks_mut(4).zip(t) {
            let bytes = word.to_be_bytes();
            chunk.iter_mut().zip(bytes).for_each(|(c, b)| *c = b);
        }
        // Key material: the block and the last round's values.
        t.zeroize();
        u.zeroize();
        inner_out.zeroize();
    }
}

impl Drop for HmacSha256 {
    /// The pad states stand for the password: gone with it.
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// The block-parallel PBKDF2 equals the `pbkdf2` crate's sequential one
    /// for every hash, and for output lengths under, at and over a block.
    #[test]
    fn parallel_pbkdf2_matches_the_crate() {
        let all = [
            Hash::Md5,
            Hash::Sha1,
            Hash::Sha224,
            Hash::Sha256,
            Hash::Sha384,
            Hash::Sha512,
            Hash::Ripemd160,
        ];
        // Passwords under and over the 64-byte HMAC block (hashed first).
        let long = [0x61u8; 100];
        for h in all {
            for pass in [&b"passphrase"[..], &long[..]] {
                for rounds in [1u32, 2, 37] {
                    for len in [1usize, 16, 20, 30, 32, 33, 64, 100, 129] {
                        let mut ours = vec![0u8; len];
                        h.pbkdf2(pass, b"salty salt", rounds, &mut ours);
                        let mut theirs = vec![0u8; len];
                        with_hash!(h, D => pbkdf2::pbkdf2_hmac::<D>(pass, b"salty salt", rounds, &mut theirs));
                        assert_eq!(ours, theirs, "{} len {len} rounds {rounds}", h.name());
                    }
                }
            }
        }
    }

    /// RFC 6070's PBKDF2-HMAC-SHA1 vector (c = 4096, dkLen = 25: two blocks).
    #[test]
    fn rfc6070_vector() {
        let mut out = [0u8; 25];
        Hash::Sha1.pbkdf2(
            b"passwordPASSWORDpassword",
            b"saltSALTsaltSALTsaltSALTsaltSALTsalt",
            4096,
            &mut out,
        );
        let want = [
            0x3d, 0x2e, 0xec, 0x4f, 0xe4, 0x1c, 0x84, 0x9b, 0x80, 0xc8, 0xd8, 0x36, 0x62, 0xc0,
            0xe4, 0x4a, 0x8b, 0x29, 0x1a, 0x96, 0x4c, 0xf2, 0xf0, 0x70, 0x38,
        ];
        assert_eq!(out, want);
    }
}
