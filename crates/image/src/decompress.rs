//! Decoding one compressed cluster exactly as qemu does, with the output
//! capped at one cluster.
//!
//! * deflate: raw stream, 4 KiB window; success means the output buffer was
//!   filled, whether or not the stream ended (the input length is only known
//!   to 512-byte precision, so trailing bytes are normal).
//! * zstd: streamed frame by frame until the cluster is full; an error if a
//!   step makes no progress or output is still pending at the end.

use std::cell::RefCell;

use qvet_format::header::CompressionType;
use zstd::stream::raw::{DParameter, Decoder, InBuffer, Operation, OutBuffer};

/// zstd window limit: 32 MiB, far above what a cluster of at most 2 MiB
/// needs, and a bound on what a hostile frame can make the decoder allocate.
const ZSTD_WINDOW_LOG_MAX: u32 = 25;

thread_local! {
    static ZSTD: RefCell<Option<Decoder<'static>>> = const { RefCell::new(None) };
}

/// Decompresses `input` into all of `out` (one cluster); returns how many
/// input bytes the decoder consumed.
///
/// # Errors
/// A description of why the stream does not yield exactly `out.len()` bytes.
pub fn decompress_cluster(
    kind: CompressionType,
    input: &[u8],
    out: &mut [u8],
) -> Result<usize, String> {
    match kind {
        CompressionType::Zlib => inflate(input, out),
        CompressionType::Zstd => unzstd(input, out),
    }
}

fn inflate(input: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let mut d = flate2::Decompress::new_with_window_bits(false, 12);
    match d.decompress(input, out, flate2::FlushDecompress::Finish) {
        Ok(_) if d.total_out() == u64::try_from(out.len()).unwrap_or(u64::MAX) => {
            Ok(usize::try_from(d.total_in()).unwrap_or(usize::MAX))
        }
        Ok(_) => Err(format!(
            "deflate stream yields {} bytes, cluster needs {}",
            d.total_out(),
            out.len()
        )),
        Err(e) => Err(format!("deflate: {e}")),
    }
}

fn unzstd(input: &[u8], out: &mut [u8]) -> Result<usize, String> {
    ZSTD.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let mut d = Decoder::new().map_err(|e| format!("zstd: {e}"))?;
            d.set_parameter(DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX))
                .map_err(|e| format!("zstd: {e}"))?;
            *slot = Some(d);
        }
        let Some(dec) = slot.as_mut() else {
            return Err("zstd: no decoder".to_string());
        };
        dec.reinit().map_err(|e| format!("zstd: {e}"))?;
        let mut inb = InBuffer::around(input);
        let mut outb = OutBuffer::around(out);
        let cap = outb.capacity();
        let mut last_hint = 0usize;
        while outb.pos() < cap {
            let (in_before, out_before) = (inb.pos(), outb.pos());
            last_hint = match dec.run(&mut inb, &mut outb) {
                Ok(h) => h,
                Err(e) => {
                    // Leave the decoder usable for the next cluster.
                    *slot = None;
                    return Err(format!("zstd: {e}"));
                }
            };
            if inb.pos() <= in_before && outb.pos() <= out_before {
                *slot = None;
                return Err(format!(
                    "zstd stream stops after {} of {} bytes",
                    outb.pos(),
                    cap
                ));
            }
        }
        if last_hint > 0 {
            *slot = None;
            return Err("zstd frame holds more than one cluster".to_string());
        }
        Ok(inb.pos())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn inflate_accepts_trailing_bytes_and_checks_length() {
        let data = b"qvet".repeat(1024);
        let mut c = raw_deflate(&data);
        let stream = c.len();
        c.extend_from_slice(&[0xaa; 300]);
        let mut out = vec![0u8; data.len()];
        let used = decompress_cluster(CompressionType::Zlib, &c, &mut out).unwrap();
        assert_eq!(used, stream, "the trailing bytes are not consumed");
        assert_eq!(out, data);
        let mut big = vec![0u8; data.len() * 2];
        assert!(decompress_cluster(CompressionType::Zlib, &c, &mut big).is_err());
        assert!(decompress_cluster(CompressionType::Zlib, &[0xff; 64], &mut out).is_err());
    }

    /// A stream that goes on after the cluster is full is qemu's success
    /// (zlib stops with the output full).
    #[test]
    fn a_stream_longer_than_the_cluster_yields_its_first_cluster() {
        let data: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 253) as u8).collect();
        let c = raw_deflate(&data);
        let mut out = vec![0u8; 4096];
        decompress_cluster(CompressionType::Zlib, &c, &mut out).unwrap();
        assert_eq!(out, &data[..4096]);
    }

    #[test]
    fn zstd_accepts_trailing_bytes_and_multiple_frames() {
        let data = b"cluster ".repeat(512);
        let (a, b) = data.split_at(1000);
        let mut c = zstd::bulk::compress(a, 3).unwrap();
        c.extend(zstd::bulk::compress(b, 3).unwrap());
        let stream = c.len();
        c.extend_from_slice(&[0u8; 100]);
        let mut out = vec![0u8; data.len()];
        let used = decompress_cluster(CompressionType::Zstd, &c, &mut out).unwrap();
        assert_eq!(used, stream, "the trailing bytes are not consumed");
        assert_eq!(out, data);
        let mut short = vec![0u8; 100];
        assert!(decompress_cluster(CompressionType::Zstd, &c, &mut short).is_err());
        assert!(decompress_cluster(CompressionType::Zstd, &[1, 2, 3], &mut out).is_err());
        // The decoder is reusable after an error.
        decompress_cluster(CompressionType::Zstd, &c, &mut out).unwrap();
    }
}
