//! A one-line picture of a disk for the terminal: each column is an equal
//! slice of the guest, drawn by how much of it holds data (from the
//! allocation map alone: nothing is read) and coloured by the partition it
//! falls in; a second line names the partitions under their spans. Unicode
//! blocks and colour on a terminal; plain ASCII when `NO_COLOR` is set,
//! `TERM=dumb`, or stdout is not a terminal.

use std::io::IsTerminal;

use qvet_image::{Disk, ImageError};
use qvet_volume::VolumeMap;

/// How to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Unicode block characters (else ASCII).
    pub unicode: bool,
    /// ANSI colours.
    pub color: bool,
}

impl Style {
    /// Unicode and colour only on a terminal that allows them.
    pub fn for_stdout() -> Self {
        let plain = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
            || std::env::var("TERM").is_ok_and(|t| t == "dumb")
            || !std::io::stdout().is_terminal();
        Self {
            unicode: !plain,
            color: !plain,
        }
    }
}

/// Columns drawn.
pub const WIDTH: usize = 64;

const UNICODE_LEVELS: [char; 9] = ['░', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const ASCII_LEVELS: [char; 5] = ['_', '.', ':', '=', '#'];
const COLORS: [&str; 4] = ["36", "33", "35", "32"];

/// The fraction of each of `width` equal slices of `[0, size)` that the
/// ranges cover.
fn density(ranges: &[(u64, u64)], size: u64, width: usize) -> Vec<f64> {
    let mut covered = vec![0u64; width];
    if size == 0 || width == 0 {
        return vec![0.0; width];
    }
    let col = |off: u64| {
        usize::try_from((u128::from(off) * width as u128 / u128::from(size)) as u64)
            .unwrap_or(width)
            .min(width - 1)
    };
    let bounds = |c: usize| -> (u64, u64) {
        let lo = (u128::from(size) * c as u128 / width as u128) as u64;
        let hi = (u128::from(size) * (c as u128 + 1) / width as u128) as u64;
        (lo, hi)
    };
    for &(start, len) in ranges {
        let end = start.saturating_add(len).min(size);
        if start >= end {
            continue;
        }
        for c in col(start)..=col(end - 1) {
            let (lo, hi) = bounds(c);
            let overlap = end.min(hi).saturating_sub(start.max(lo));
            if let Some(slot) = covered.get_mut(c) {
                *slot += overlap;
            }
        }
    }
    (0..width)
        .map(|c| {
            let (lo, hi) = bounds(c);
            let span = hi.saturating_sub(lo).max(1);
            covered.get(c).map_or(0.0, |&v| v as f64 / span as f64)
        })
        .collect()
}

/// The two lines of the picture: the bar and the partition legend.
///
/// # Errors
/// The allocation map cannot be walked.
pub fn render(disk: &Disk, map: &VolumeMap, style: Style) -> Result<[String; 2], ImageError> {
    let size = disk.size();
    let data = disk.non_zero_ranges(0, size)?;
    let dens = density(&data, size, WIDTH);
    let owner = |c: usize| -> Option<(usize, u32)> {
        let mid = (u128::from(size) * (2 * c as u128 + 1) / (2 * WIDTH as u128)) as u64;
        map.partitions
            .iter()
            .enumerate()
            .find(|(_, p)| p.start <= mid && mid < p.start.saturating_add(p.len))
            .map(|(i, p)| (i, p.number))
    };
    let mut bar = String::new();
    let mut legend = vec![' '; WIDTH];
    let mut last: Option<u32> = None;
    for (c, d) in dens.iter().enumerate() {
        let part = owner(c);
        let ch = if style.unicode {
            let i = if *d <= 0.0 {
                0
            } else {
                (1.0 + d * 7.999).floor() as usize
            };
            UNICODE_LEVELS.get(i.min(8)).copied().unwrap_or('█')
        } else {
            let i = if *d <= 0.0 {
                0
            } else {
                (1.0 + d * 3.999).floor() as usize
            };
            ASCII_LEVELS.get(i.min(4)).copied().unwrap_or('#')
        };
        let ch = match (part, style.unicode) {
            (None, true) if *d <= 0.0 => '·',
            (None, false) if *d <= 0.0 => ' ',
            _ => ch,
        };
        match (style.color, part) {
            (true, Some((i, _))) => {
                let color = COLORS.get(i % COLORS.len()).copied().unwrap_or("0");
                bar.push_str(&format!("\x1b[{color}m{ch}\x1b[0m"));
            }
            (true, None) => bar.push_str(&format!("\x1b[2m{ch}\x1b[0m")),
            _ => bar.push(ch),
        }
        // The legend: a boundary mark and the number where a partition starts.
        let n = part.map(|(_, n)| n);
        if n != last {
            if let Some(n) = n {
                for (k, digit) in format!("{}{n}", if style.unicode { '▕' } else { '|' })
                    .chars()
                    .enumerate()
                {
                    if let Some(slot) = legend.get_mut(c + k) {
                        *slot = digit;
                    }
                }
            }
            last = n;
        }
    }
    let data_bytes: u64 = data.iter().map(|(_, l)| l).sum();
    let pct = if size == 0 {
        0.0
    } else {
        100.0 * data_bytes as f64 / size as f64
    };
    let frame = if style.unicode {
        ('▕', '▏')
    } else {
        ('[', ']')
    };
    Ok([
        format!("{}{bar}{} {pct:.1}% allocated", frame.0, frame.1),
        format!(" {}", legend.into_iter().collect::<String>().trim_end()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn density_of_slices() {
        let d = density(&[(0, 50), (150, 50)], 200, 4);
        assert_eq!(d, vec![1.0, 0.0, 0.0, 1.0]);
        let d = density(&[(25, 50)], 100, 2);
        assert_eq!(d, vec![0.5, 0.5]);
        assert_eq!(density(&[(0, 10)], 0, 3), vec![0.0; 3]);
        // Ranges past the end are clipped.
        assert_eq!(density(&[(90, 100)], 100, 1), vec![0.1]);
    }
}
