//! LZO1X decompression (the format liblzo2's `lzo1x_decompress_safe`
//! reads), written from the instruction table in the Linux kernel's
//! `Documentation/staging/lzo.rst`. Every input byte and every output
//! position is checked: a hostile stream yields an error, never a panic, and
//! the output never exceeds the buffer given.

/// Decodes `input` into `out`; returns the bytes written.
///
/// # Errors
/// A description of the first malformed instruction.
pub fn decompress(input: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let mut d = Lzo {
        input,
        ip: 0,
        out,
        op: 0,
    };
    d.run()?;
    Ok(d.op)
}

struct Lzo<'a> {
    input: &'a [u8],
    ip: usize,
    out: &'a mut [u8],
    op: usize,
}

impl Lzo<'_> {
    fn byte(&mut self) -> Result<usize, String> {
        let b = self
            .input
            .get(self.ip)
            .copied()
            .ok_or_else(|| "lzo: input ends inside an instruction".to_string())?;
        self.ip += 1;
        Ok(usize::from(b))
    }

    fn le16(&mut self) -> Result<usize, String> {
        let lo = self.byte()?;
        Ok(lo | self.byte()? << 8)
    }

    /// `base` plus the zero-run length extension: each 0 byte adds 255, the
    /// first non-zero byte ends it.
    fn extended(&mut self, base: usize) -> Result<usize, String> {
        let mut len = base;
        loop {
            let b = self.byte()?;
            if b != 0 {
                return Ok(len + b);
            }
            len += 255;
            if len > self.out.len() {
                return Err("lzo: run longer than the block".into());
            }
        }
    }

    fn literals(&mut self, n: usize) -> Result<(), String> {
        let src = self
            .input
            .get(self.ip..self.ip.saturating_add(n))
            .ok_or_else(|| "lzo: literal run past the input".to_string())?;
        let dst = self
            .out
            .get_mut(self.op..self.op.saturating_add(n))
            .ok_or_else(|| "lzo: output larger than the block".to_string())?;
        dst.copy_from_slice(src);
        self.ip += n;
        self.op += n;
        Ok(())
    }

    fn copy_match(&mut self, dist: usize, len: usize) -> Result<(), String> {
        if dist == 0 || dist > self.op {
            return Err(format!(
                "lzo: match distance {dist} before the output start"
            ));
        }
        if self.op.saturating_add(len) > self.out.len() {
            return Err("lzo: output larger than the block".into());
        }
        for _ in 0..len {
            let b = self.out.get(self.op - dist).copied().unwrap_or(0);
            if let Some(slot) = self.out.get_mut(self.op) {
                *slot = b;
            }
            self.op += 1;
        }
        Ok(())
    }

    fn run(&mut self) -> Result<(), String> {
        // State: literals copied after the previous instruction (0..3), or 4
        // after a literal run of 4 or more.
        let mut state: usize;
        match self.input.first().copied().map(usize::from) {
            None => return Err("lzo: empty input".into()),
            Some(first) if first > 17 => {
                self.ip = 1;
                let n = first - 17;
                self.literals(n)?;
                state = n.min(4);
            }
            Some(_) => state = 0,
        }
        loop {
            let inst = self.byte()?;
            let (dist, len, next);
            if inst < 16 {
                match state {
                    0 => {
                        let n = if inst == 0 {
                            self.extended(18)?
                        } else {
                            inst + 3
                        };
                        self.literals(n)?;
                        state = 4;
                        continue;
                    }
                    4 => {
                        dist = (self.byte()? << 2) + (inst >> 2) + 2049;
                        len = 3;
                    }
                    _ => {
                        dist = (self.byte()? << 2) + (inst >> 2) + 1;
                        len = 2;
                    }
                }
                next = inst & 3;
            } else if inst < 32 {
                len = if inst & 7 == 0 {
                    self.extended(9)?
                } else {
                    (inst & 7) + 2
                };
                let v = self.le16()?;
                let d = 16384 + ((inst & 8) << 11) + (v >> 2);
                if d == 16384 {
                    return Ok(());
                }
                dist = d;
                next = v & 3;
            } else if inst < 64 {
                len = if inst & 31 == 0 {
                    self.extended(33)?
                } else {
                    (inst & 31) + 2
                };
                let v = self.le16()?;
                dist = (v >> 2) + 1;
                next = v & 3;
            } else if inst < 128 {
                len = 3 + ((inst >> 5) & 1);
                dist = (self.byte()? << 3) + ((inst >> 2) & 7) + 1;
                next = inst & 3;
            } else {
                len = 5 + ((inst >> 5) & 3);
                dist = (self.byte()? << 3) + ((inst >> 2) & 7) + 1;
                next = inst & 3;
            }
            self.copy_match(dist, len)?;
            self.literals(next)?;
            state = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_only_stream() {
        // 22 = 5 literals, then the end marker 0x11 0x00 0x00.
        let input = [22u8, b'h', b'e', b'l', b'l', b'o', 0x11, 0, 0];
        let mut out = [0u8; 16];
        assert_eq!(decompress(&input, &mut out), Ok(5));
        assert_eq!(&out[..5], b"hello");
    }

    #[test]
    fn hostile_streams_error() {
        let mut out = [0u8; 8];
        assert!(decompress(&[], &mut out).is_err());
        // Literal run past the input.
        assert!(decompress(&[200], &mut out).is_err());
        // Match before the output start.
        assert!(decompress(&[18, b'a', 0x80, 0xff], &mut out).is_err());
        // Output past the buffer.
        assert!(decompress(&[30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut out).is_err());
        // Endless zero-extension stops at the buffer size.
        let mut long = vec![18u8, b'a', 0];
        long.extend(std::iter::repeat_n(0u8, 100));
        assert!(decompress(&long, &mut out).is_err());
    }
}
