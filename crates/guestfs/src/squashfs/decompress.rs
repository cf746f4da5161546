//! The squashfs compressors, each decoding one block (a metadata block of at
//! most 8 KiB, or a data or fragment block of at most the block size) with
//! its output capped at `limit`: a stream that would yield more is an error,
//! so a hostile block never makes the reader allocate more than the
//! superblock's block size.

use liblzma::stream::{Action, Status, Stream};

/// Memory the xz/lzma decoders may use: squashfs dictionaries are at most
/// the block size (1 MiB), so this is far above need and bounds a hostile
/// header's dictionary size.
const LZMA_MEMLIMIT: u64 = 64 << 20;

/// Compression ids of the superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    /// 1: zlib stream (`gzip` in mksquashfs).
    Gzip,
    /// 2: legacy LZMA ("lzma alone" header).
    Lzma,
    /// 3: LZO1X.
    Lzo,
    /// 4: xz stream.
    Xz,
    /// 5: LZ4 block format.
    Lz4,
    /// 6: zstd frame.
    Zstd,
}

impl Compressor {
    /// From the superblock's compression id.
    pub fn from_id(id: u16) -> Option<Self> {
        Some(match id {
            1 => Self::Gzip,
            2 => Self::Lzma,
            3 => Self::Lzo,
            4 => Self::Xz,
            5 => Self::Lz4,
            6 => Self::Zstd,
            _ => return None,
        })
    }

    /// mksquashfs's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Lzma => "lzma",
            Self::Lzo => "lzo",
            Self::Xz => "xz",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    /// Decodes `input` into at most `limit` bytes.
    ///
    /// # Errors
    /// Why the block does not decode within `limit`.
    pub fn decompress(self, input: &[u8], limit: usize) -> Result<Vec<u8>, String> {
        let mut out = vec![0u8; limit];
        let n = match self {
            Self::Gzip => inflate(input, &mut out)?,
            Self::Xz => {
                let s =
                    Stream::new_stream_decoder(LZMA_MEMLIMIT, 0).map_err(|e| format!("xz: {e}"))?;
                lzma(s, input, &mut out)?
            }
            Self::Lzma => {
                let s =
                    Stream::new_lzma_decoder(LZMA_MEMLIMIT).map_err(|e| format!("lzma: {e}"))?;
                lzma(s, input, &mut out)?
            }
            Self::Zstd => zstd::bulk::decompress_to_buffer(input, out.as_mut_slice())
                .map_err(|e| format!("zstd: {e}"))?,
            Self::Lz4 => lz4_flex::block::decompress_into(input, &mut out)
                .map_err(|e| format!("lz4: {e}"))?,
            Self::Lzo => super::lzo::decompress(input, &mut out)?,
        };
        out.truncate(n);
        Ok(out)
    }
}

fn inflate(input: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let mut d = flate2::Decompress::new(true);
    match d.decompress(input, out, flate2::FlushDecompress::Finish) {
        Ok(flate2::Status::StreamEnd) => Ok(usize::try_from(d.total_out()).unwrap_or(usize::MAX)),
        Ok(_) if usize::try_from(d.total_out()).ok() == Some(out.len()) => {
            Err(format!("zlib stream yields more than {} bytes", out.len()))
        }
        Ok(_) => Err("zlib stream ends early".into()),
        Err(e) => Err(format!("zlib: {e}")),
    }
}

fn lzma(mut s: Stream, input: &[u8], out: &mut [u8]) -> Result<usize, String> {
    match s.process(input, out, Action::Finish) {
        Ok(Status::StreamEnd) => Ok(usize::try_from(s.total_out()).unwrap_or(usize::MAX)),
        Ok(_) if usize::try_from(s.total_out()).ok() == Some(out.len()) => Err(format!(
            "xz/lzma stream yields more than {} bytes",
            out.len()
        )),
        Ok(_) => Err("xz/lzma stream ends early".into()),
        Err(e) => Err(format!("xz/lzma: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn output_is_capped_at_the_limit() {
        let data = vec![7u8; 20_000];
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&data).unwrap();
        let gz = z.finish().unwrap();
        assert_eq!(Compressor::Gzip.decompress(&gz, 20_000).unwrap(), data);
        assert!(Compressor::Gzip.decompress(&gz, 8192).is_err());
        assert!(Compressor::Gzip
            .decompress(&gz[..gz.len() / 2], 20_000)
            .is_err());
        let zs = zstd::bulk::compress(&data, 3).unwrap();
        assert_eq!(Compressor::Zstd.decompress(&zs, 20_000).unwrap(), data);
        assert!(Compressor::Zstd.decompress(&zs, 8192).is_err());
        let l4 = lz4_flex::block::compress(&data);
        assert_eq!(Compressor::Lz4.decompress(&l4, 20_000).unwrap(), data);
        assert!(Compressor::Lz4.decompress(&l4, 8192).is_err());
        let mut xz = Vec::new();
        let mut s = Stream::new_easy_encoder(6, liblzma::stream::Check::Crc32).unwrap();
        xz.resize(30_000, 0);
        let st = s.process(&data, &mut xz, Action::Finish).unwrap();
        assert_eq!(st, Status::StreamEnd);
        xz.truncate(s.total_out() as usize);
        assert_eq!(Compressor::Xz.decompress(&xz, 20_000).unwrap(), data);
        assert!(Compressor::Xz.decompress(&xz, 8192).is_err());
        for c in 1..=6 {
            let c = Compressor::from_id(c).unwrap();
            assert!(c.decompress(&[0xff; 64], 8192).is_err(), "{}", c.name());
        }
        assert!(Compressor::from_id(0).is_none() && Compressor::from_id(7).is_none());
    }
}
