//! File digests from one read of the file.

use md5::Digest as _;

use crate::{Algo, DigestError, FileDigests};
use qvet_image::ByteSource;

const BLOCK: usize = 4 << 20;

enum Hasher {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    fn new(a: Algo) -> Self {
        match a {
            Algo::Md5 => Self::Md5(md5::Md5::new()),
            Algo::Sha1 => Self::Sha1(sha1::Sha1::new()),
            Algo::Sha256 => Self::Sha256(sha2::Sha256::new()),
            Algo::Sha512 => Self::Sha512(sha2::Sha512::new()),
            Algo::Blake3 => Self::Blake3(Box::new(blake3::Hasher::new())),
        }
    }

    fn update(&mut self, b: &[u8]) {
        match self {
            Self::Md5(h) => h.update(b),
            Self::Sha1(h) => h.update(b),
            Self::Sha256(h) => h.update(b),
            Self::Sha512(h) => h.update(b),
            Self::Blake3(h) => {
                h.update(b);
            }
        }
    }

    fn hex(self) -> String {
        fn to_hex(b: &[u8]) -> String {
            b.iter().map(|x| format!("{x:02x}")).collect()
        }
        match self {
            Self::Md5(h) => to_hex(&h.finalize()),
            Self::Sha1(h) => to_hex(&h.finalize()),
            Self::Sha256(h) => to_hex(&h.finalize()),
            Self::Sha512(h) => to_hex(&h.finalize()),
            Self::Blake3(h) => h.finalize().to_hex().to_string(),
        }
    }
}

/// Computes every algorithm in `algos` over the whole of `src`, reading it
/// once. `progress` receives the bytes done so far.
///
/// # Errors
/// [`DigestError::Io`] when a read fails.
pub fn digest_file(
    src: &dyn ByteSource,
    algos: &[Algo],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<FileDigests, DigestError> {
    let mut hashers: Vec<(Algo, Hasher)> = algos.iter().map(|&a| (a, Hasher::new(a))).collect();
    let size = src.len();
    let mut buf = vec![0u8; BLOCK];
    let mut offset = 0u64;
    while offset < size {
        let n = usize::try_from((size - offset).min(BLOCK as u64)).unwrap_or(BLOCK);
        let chunk = buf.get_mut(..n).unwrap_or_default();
        src.read_zero_padded(offset, chunk)
            .map_err(|error| DigestError::Io { offset, error })?;
        for (_, h) in &mut hashers {
            h.update(chunk);
        }
        offset += n as u64;
        progress(offset);
    }
    Ok(FileDigests {
        size,
        digests: hashers.into_iter().map(|(a, h)| (a, h.hex())).collect(),
    })
}
