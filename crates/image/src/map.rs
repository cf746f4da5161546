//! Block status of the guest view, computed and merged exactly as
//! `qemu-img map` does (qemu's `get_block_status` and `entry_mergeable`).

use crate::disk::{BackingLink, Disk, Driver};
use crate::error::ImageError;
use crate::qcow2::RunKind;
use crate::source::{ByteSource, HostExtent};

/// qemu-img map probes at most this much per step.
const PROBE: u64 = 1 << 30;

/// One extent of `qemu-img map --output=json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// Guest offset.
    pub start: u64,
    /// Length in bytes.
    pub length: u64,
    /// Chain layer that answered (0 = top).
    pub depth: usize,
    /// Allocated in that layer.
    pub present: bool,
    /// Reads as zeros.
    pub zero: bool,
    /// Holds data.
    pub data: bool,
    /// Compressed.
    pub compressed: bool,
    /// Host offset of the first byte, when the range maps to host bytes.
    pub offset: Option<u64>,
    /// The answer lies in a backing file that was not opened.
    pub unavailable: bool,
}

impl MapEntry {
    fn mergeable(&self, next: &Self) -> bool {
        self.length > 0
            && self.zero == next.zero
            && self.data == next.data
            && self.compressed == next.compressed
            && self.depth == next.depth
            && self.present == next.present
            && self.unavailable == next.unavailable
            && self.offset.is_some() == next.offset.is_some()
            && self
                .offset
                .is_none_or(|o| Some(o.saturating_add(self.length)) == next.offset)
    }
}

/// The block status of one layer for `[offset, offset + bytes)`.
#[derive(Debug, Clone, Copy, Default)]
struct Status {
    pnum: u64,
    data: bool,
    zero: bool,
    allocated: bool,
    compressed: bool,
    offset: Option<u64>,
    unavailable: bool,
}

/// qemu's file-posix block status (`SEEK_DATA`/`SEEK_HOLE`) at `offset`:
/// (data, zero, pnum). `total` is the file length rounded up to sectors.
fn host_status(src: &dyn ByteSource, offset: u64, bytes: u64) -> (bool, bool, u64) {
    match src.extent_at(offset) {
        HostExtent::TrailingHole => (false, true, bytes),
        HostExtent::Unknown => (true, false, bytes),
        HostExtent::Data(end) => (true, false, bytes.min(end - offset)),
        HostExtent::Hole(end) => (false, true, bytes.min(end - offset)),
    }
}

fn rounded_len(src: &dyn ByteSource) -> u64 {
    src.len().div_ceil(512).saturating_mul(512)
}

impl Disk {
    fn layer_status(&self, index: usize, offset: u64, bytes: u64) -> Result<Status, ImageError> {
        let Some(layer) = self.layers().get(index) else {
            return Ok(Status {
                pnum: bytes,
                zero: true,
                ..Status::default()
            });
        };
        let size = layer.driver.size();
        let bytes = bytes.min(size.saturating_sub(offset)).max(1);
        match &layer.driver {
            Driver::Raw(r) => {
                let file = r.file().as_ref();
                let (data, zero, pnum) = host_status(file, offset, bytes);
                Ok(Status {
                    pnum,
                    data,
                    zero,
                    allocated: true,
                    offset: Some(offset),
                    ..Status::default()
                })
            }
            Driver::Qcow2(q) => {
                let run = q.block_status(offset, bytes)?;
                let crypto = q.encryption().is_some();
                let visible = |h: Option<u64>| if crypto { None } else { h };
                let mut st = Status {
                    pnum: run.len,
                    ..Status::default()
                };
                match run.kind {
                    RunKind::Data { host } => {
                        st.data = true;
                        st.offset = visible(Some(host));
                    }
                    RunKind::Zero { host } => {
                        st.zero = true;
                        st.offset = visible(host);
                    }
                    RunKind::Compressed { .. } => {
                        st.data = true;
                        st.compressed = true;
                    }
                    RunKind::Unallocated { host } => st.offset = visible(host),
                }
                if st.data || st.zero {
                    st.allocated = true;
                } else {
                    match &layer.backing {
                        BackingLink::None => st.zero = true,
                        BackingLink::Opened => {
                            let below = self
                                .layers()
                                .get(index + 1)
                                .map(|l| l.driver.size())
                                .unwrap_or(0);
                            if offset >= below {
                                st.zero = true;
                            }
                        }
                        BackingLink::Missing { .. } => st.unavailable = true,
                    }
                }
                // Metadata preallocation: ask the host file where the holes are.
                if st.data && !st.compressed && q.metadata_preallocated() {
                    if let (Some(host), Some(file)) = (st.offset, q.data_host()) {
                        let total = rounded_len(file.as_ref());
                        if host >= total {
                            st.zero = true;
                        } else {
                            let span = st.pnum.min(total - host);
                            let (_, zero, file_pnum) = host_status(file.as_ref(), host, span);
                            let eof = host + file_pnum == total;
                            if eof && (file_pnum == 0 || zero) {
                                st.zero = true;
                            } else {
                                st.pnum = file_pnum;
                                st.zero |= zero;
                            }
                        }
                    }
                }
                Ok(st)
            }
        }
    }

    /// qemu-img's `get_block_status`: walks down the chain until a layer
    /// knows the answer.
    fn chain_status(&self, offset: u64, bytes: u64) -> Result<MapEntry, ImageError> {
        let mut bytes = bytes;
        let mut index = 0usize;
        let st = loop {
            let st = self.layer_status(index, offset, bytes)?;
            bytes = st.pnum;
            if st.data || st.zero || st.unavailable {
                break st;
            }
            match self.layers().get(index).map(|l| &l.backing) {
                Some(BackingLink::Opened) => index += 1,
                _ => break st,
            }
        };
        Ok(MapEntry {
            start: offset,
            length: st.pnum,
            depth: index,
            present: st.allocated,
            zero: st.zero,
            data: st.data,
            compressed: st.compressed,
            offset: st.offset,
            unavailable: st.unavailable,
        })
    }

    /// Guest ranges inside `[start, start + len)` that are not known to read
    /// as zeros (data, compressed, or unavailable), from the block status
    /// alone: nothing is read.
    ///
    /// # Errors
    /// Broken mapping entries met on the way.
    pub fn non_zero_ranges(&self, start: u64, len: u64) -> Result<Vec<(u64, u64)>, ImageError> {
        let end = start.saturating_add(len).min(self.size());
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut pos = start;
        while pos < end {
            let e = self.chain_status(pos, (end - pos).min(PROBE))?;
            let len = e.length.max(1).min(end - pos);
            if !e.zero {
                match out.last_mut() {
                    Some((s, l)) if *s + *l == pos => *l += len,
                    _ => out.push((pos, len)),
                }
            }
            pos += len;
        }
        Ok(out)
    }

    /// The merged extents of the whole guest view, as `qemu-img map` lists them.
    pub fn map(&self) -> MapWalker<'_> {
        MapWalker {
            disk: self,
            pos: 0,
            pending: None,
            failed: false,
        }
    }
}

/// Iterator over merged map extents.
#[derive(Debug)]
pub struct MapWalker<'a> {
    disk: &'a Disk,
    pos: u64,
    pending: Option<MapEntry>,
    failed: bool,
}

impl Iterator for MapWalker<'_> {
    type Item = Result<MapEntry, ImageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let size = self.disk.size();
        loop {
            if self.pos >= size {
                return self.pending.take().map(Ok);
            }
            let n = PROBE.min(size - self.pos);
            let next = match self.disk.chain_status(self.pos, n) {
                Ok(e) => e,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            };
            self.pos += next.length.max(1);
            match &mut self.pending {
                Some(cur) if cur.mergeable(&next) => cur.length += next.length,
                Some(_) => return self.pending.replace(next).map(Ok),
                None => self.pending = Some(next),
            }
        }
    }
}
