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
            Self::Zstd => zstd::bulk::decompress_to_buffer(input, &mut out)
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
