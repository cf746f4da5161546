//! The hashes a LUKS1 header may name: PBKDF2-HMAC with each, and the
//! anti-forensic merge with its diffuser (LUKS1 specification, "AF-merge").

use digest::Digest;
use zeroize::Zeroizing;

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
    pub fn pbkdf2(self, password: &[u8], salt: &[u8], rounds: u32, out: &mut [u8]) {
        with_hash!(self, D => pbkdf2::pbkdf2_hmac::<D>(password, salt, rounds, out))
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
