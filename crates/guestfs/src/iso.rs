//! ISO 9660 reader (read-only) with Joliet and Rock Ridge.
//!
//! Tree choice: when the root directory carries the SUSP "SP" marker, the
//! primary tree is read with Rock Ridge (NM names, PX mode/uid/gid/links,
//! SL symlinks, TF times, CL/RE relocated directories); otherwise the
//! Joliet tree (UCS-2 BE names) when a Joliet supplementary descriptor
//! exists; otherwise the plain primary tree (";1" version suffixes and a
//! trailing "." stripped).
//!
//! A [`NodeId`] is the byte offset, within the volume, of the file's
//! directory record; the root is the offset of the root record inside the
//! chosen volume descriptor. Multi-extent files are followed through the
//! records that come after the first (at most [`MAX_EXTENTS`]).
//!
//! Bounds: directories and extents must lie within the volume, SUSP
//! continuation areas are followed at most [`MAX_CE_HOPS`] times, and
//! directories stop at [`MAX_DIR_ENTRIES`] entries.

use crate::bytes::{byte, le16, le32};
use std::sync::Arc;

use qvet_image::ByteSource;

use crate::fat::days_from_civil;
use crate::{
    read_bytes, DirEntry, FileSystem, FileType, FsError, Metadata, NodeId, MAX_DIR_ENTRIES,
};

/// SUSP continuation areas followed per record.
pub const MAX_CE_HOPS: usize = 16;
/// Extents of one multi-extent file.
pub const MAX_EXTENTS: usize = 1024;
/// Volume descriptors scanned.
const MAX_DESCRIPTORS: u64 = 64;

const S_IFMT: u32 = 0o170_000;

/// 7-byte directory record date to Unix seconds.
fn iso_time(d: &[u8]) -> Option<i64> {
    let year = i64::from(*d.first()?) + 1900;
    let month = i64::from(byte(d, 1));
    let day = i64::from(byte(d, 2));
    if month == 0 || day == 0 {
        return None;
    }
    let h = i64::from(byte(d, 3));
    let mi = i64::from(byte(d, 4));
    let s = i64::from(byte(d, 5));
    let off = i64::from(byte(d, 6) as i8);
    Some(days_from_civil(year, month.min(12), day) * 86_400 + h * 3600 + mi * 60 + s - off * 900)
}

/// 17-byte (long form) date to Unix seconds.
fn iso_time_long(d: &[u8]) -> Option<i64> {
    let num = |a: usize, n: usize| -> Option<i64> {
        std::str::from_utf8(d.get(a..a + n)?)
            .ok()?
            .parse::<i64>()
            .ok()
    };
    let year = num(0, 4)?;
    let month = num(4, 2)?;
    let day = num(6, 2)?;
    if month == 0 || day == 0 {
        return None;
    }
    let off = i64::from(byte(d, 16) as i8);
    Some(
        days_from_civil(year, month.min(12), day) * 86_400
            + num(8, 2)? * 3600
            + num(10, 2)? * 60
            + num(12, 2)?
            - off * 900,
    )
}

/// What Rock Ridge says about one record.
#[derive(Debug, Default, Clone)]
struct Rr {
    name: Option<Vec<u8>>,
    mode: Option<u32>,
    nlink: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    link: Option<Vec<u8>>,
    mtime: Option<i64>,
    atime: Option<i64>,
    ctime: Option<i64>,
    crtime: Option<i64>,
    /// Child link: the directory was relocated to this LBA.
    cl: Option<u32>,
    /// This is a relocated directory (hide it in its fake parent).
    re: bool,
}

/// One parsed directory record.
#[derive(Debug, Clone)]
struct Record {
    len: usize,
    lba: u32,
    size: u32,
    flags: u8,
    date: Vec<u8>,
    name: Vec<u8>,
    su: Vec<u8>,
}

fn parse_record(b: &[u8]) -> Option<Record> {
    let len = usize::from(*b.first()?);
    if len < 34 || len > b.len() {
        return None;
    }
    let rec = b.get(..len)?;
    let name_len = usize::from(byte(rec, 32));
    let name = rec.get(33..33 + name_len)?.to_vec();
    let su_start = 33 + name_len + usize::from(name_len.is_multiple_of(2));
    let su = rec.get(su_start.min(len)..).unwrap_or(&[]).to_vec();
    Some(Record {
        len,
        lba: le32(rec, 2),
        size: le32(rec, 10),
        flags: byte(rec, 25),
        date: rec.get(18..25).unwrap_or(&[]).to_vec(),
        name,
        su,
    })
}

/// An ISO 9660 volume.
#[derive(Debug)]
pub struct Iso {
    src: Arc<dyn ByteSource>,
    block: u64,
    root: NodeId,
    joliet: bool,
    /// Bytes skipped at the start of each system use area (SP), when Rock
    /// Ridge is in use.
    rr_skip: Option<usize>,
    label: Vec<u8>,
    /// The primary volume descriptor.
    pvd: Vec<u8>,
}

impl Iso {
    /// Opens an ISO 9660 volume.
    ///
    /// # Errors
    /// [`FsError::NotThisFs`] ("iso9660") unless "CD001" is at 32769;
    /// [`FsError::Corrupt`] without a primary volume descriptor.
    pub fn open(src: Arc<dyn ByteSource>) -> Result<Self, FsError> {
        let first = read_bytes(src.as_ref(), 16 * 2048, 2048)?;
        if first.get(1..6) != Some(b"CD001".as_slice()) {
            return Err(FsError::NotThisFs("iso9660"));
        }
        let mut pvd: Option<u64> = None;
        let mut svd: Option<u64> = None;
        for i in 16..16 + MAX_DESCRIPTORS {
            let off = i * 2048;
            if off >= src.len() {
                break;
            }
            let d = read_bytes(src.as_ref(), off, 2048)?;
            if d.get(1..6) != Some(b"CD001".as_slice()) {
                break;
            }
            match byte(&d, 0) {
                1 if pvd.is_none() => pvd = Some(off),
                2 if svd.is_none() => {
                    let esc = d.get(88..120).unwrap_or(&[]);
                    if esc
                        .windows(3)
                        .any(|w| w == b"%/@" || w == b"%/C" || w == b"%/E")
                    {
                        svd = Some(off);
                    }
                }
                255 => break,
                _ => {}
            }
        }
        let pvd = pvd.ok_or_else(|| FsError::Corrupt("no primary volume descriptor".into()))?;
        let d = read_bytes(src.as_ref(), pvd, 2048)?;
        let block = u64::from(le16(&d, 128));
        if !matches!(block, 512 | 1024 | 2048) {
            return Err(FsError::Corrupt(format!("logical block size {block}")));
        }
        let label = d.get(40..72).unwrap_or(&[]).trim_ascii_end().to_vec();
        let mut iso = Self {
            src,
            block,
            root: NodeId(pvd + 156),
            joliet: false,
            rr_skip: None,
            label,
            pvd: d,
        };
        // Rock Ridge: SP in the root's "." record.
        let root = iso.record(iso.root)?;
        let dot = read_bytes(iso.src.as_ref(), u64::from(root.lba) * block, 255)?;
        if let Some(r) = parse_record(&dot) {
            let su = r.su.as_slice();
            if su.get(0..2) == Some(b"SP".as_slice())
                && su.get(4..6) == Some([0xBE, 0xEF].as_slice())
            {
                iso.rr_skip = Some(usize::from(byte(su, 6)));
            }
        }
        if iso.rr_skip.is_none() {
            if let Some(s) = svd {
                iso.root = NodeId(s + 156);
                iso.joliet = true;
            }
        }
        Ok(iso)
    }

    /// The volume label of the primary descriptor.
    pub fn label(&self) -> &[u8] {
        &self.label
    }

    /// System identifier of the primary descriptor (e.g. `LINUX`).
    pub fn system_id(&self) -> &[u8] {
        self.pvd.get(8..40).unwrap_or(&[]).trim_ascii_end()
    }

    /// Publisher identifier of the primary descriptor.
    pub fn publisher(&self) -> &[u8] {
        self.pvd.get(318..446).unwrap_or(&[]).trim_ascii_end()
    }

    /// Volume size the primary descriptor declares, in bytes.
    pub fn volume_size(&self) -> u64 {
        u64::from(le32(&self.pvd, 80)) * self.block
    }

    /// Volume creation time (Unix seconds), when set.
    pub fn creation_time(&self) -> Option<i64> {
        iso_time_long(self.pvd.get(813..830)?)
    }

    /// Volume modification time (Unix seconds), when set.
    pub fn modification_time(&self) -> Option<i64> {
        iso_time_long(self.pvd.get(830..847)?)
    }

    /// Volume byte ranges `(offset, length)` holding the node's data (file
    /// extents or the directory extent; none for symlinks and devices).
    ///
    /// # Errors
    /// [`FsError`] for unreadable or corrupt records.
    pub fn byte_ranges_of(&self, id: NodeId) -> Result<Vec<(u64, u64)>, FsError> {
        let md = self.metadata(id)?;
        match md.kind {
            FileType::Dir => {
                let rec = self.record(id)?;
                let rr = if id == self.root {
                    Rr::default()
                } else {
                    self.rock_ridge(&rec)?
                };
                Ok(vec![self.dir_extent(&rec, &rr)?])
            }
            FileType::File => Ok(self.extents(id)?.into_iter().filter(|e| e.1 > 0).collect()),
            _ => Ok(Vec::new()),
        }
    }

    /// Whether names come from the Joliet tree.
    pub fn is_joliet(&self) -> bool {
        self.joliet
    }

    /// Whether Rock Ridge is in use.
    pub fn is_rock_ridge(&self) -> bool {
        self.rr_skip.is_some()
    }

    fn record(&self, id: NodeId) -> Result<Record, FsError> {
        if id.0 >= self.src.len() {
            return Err(FsError::NotFound(format!("no ISO record at {:#x}", id.0)));
        }
        let b = read_bytes(self.src.as_ref(), id.0, 255)?;
        parse_record(&b)
            .ok_or_else(|| FsError::Corrupt(format!("bad directory record at {:#x}", id.0)))
    }

    /// Parses the system use area of `rec` (following CE areas).
    fn rock_ridge(&self, rec: &Record) -> Result<Rr, FsError> {
        let mut rr = Rr::default();
        let Some(skip) = self.rr_skip else {
            return Ok(rr);
        };
        let mut area = rec.su.get(skip..).unwrap_or(&[]).to_vec();
        let mut hops = 0usize;
        let mut name_done = false;
        let mut link: Vec<u8> = Vec::new();
        let mut link_cont = false;
        let mut have_link = false;
        loop {
            let mut ce: Option<(u64, u64, usize)> = None;
            let mut pos = 0usize;
            while pos + 4 <= area.len() {
                let e = area.get(pos..).unwrap_or(&[]);
                let len = usize::from(byte(e, 2));
                if len < 4 || len > e.len() {
                    break;
                }
                let e = e.get(..len).unwrap_or(&[]);
                let data = e.get(4..).unwrap_or(&[]);
                match e.get(0..2).unwrap_or(&[]) {
                    b"ST" => break,
                    b"CE" => {
                        ce = Some((
                            u64::from(le32(e, 4)),
                            u64::from(le32(e, 12)),
                            le32(e, 20) as usize,
                        ));
                    }
                    b"PX" => {
                        rr.mode = Some(le32(e, 4));
                        rr.nlink = Some(le32(e, 12));
                        rr.uid = Some(le32(e, 20));
                        rr.gid = Some(le32(e, 28));
                    }
                    b"NM" if !name_done => {
                        let flags = byte(data, 0);
                        let part = data.get(1..).unwrap_or(&[]);
                        if flags & 0x06 == 0 {
                            rr.name.get_or_insert_with(Vec::new).extend_from_slice(part);
                        }
                        if flags & 1 == 0 {
                            name_done = true;
                        }
                    }
                    b"SL" => {
                        have_link = true;
                        let mut comps = data.get(1..).unwrap_or(&[]);
                        while comps.len() >= 2 {
                            let cf = byte(comps, 0);
                            let cl = usize::from(byte(comps, 1));
                            let text: &[u8] = if cf & 0x02 != 0 {
                                b"."
                            } else if cf & 0x04 != 0 {
                                b".."
                            } else if cf & 0x08 != 0 {
                                b"/"
                            } else {
                                comps.get(2..2 + cl).unwrap_or(&[])
                            };
                            if !link_cont && !link.is_empty() && link.last() != Some(&b'/') {
                                link.push(b'/');
                            }
                            link.extend_from_slice(text);
                            link_cont = cf & 1 != 0;
                            comps = comps.get(2 + cl..).unwrap_or(&[]);
                        }
                    }
                    b"TF" => {
                        let flags = byte(data, 0);
                        let w = if flags & 0x80 != 0 { 17 } else { 7 };
                        let mut at = 1usize;
                        for bit in 0..4 {
                            if flags & (1 << bit) == 0 {
                                continue;
                            }
                            let stamp = data.get(at..at + w).unwrap_or(&[]);
                            let t = if w == 17 {
                                iso_time_long(stamp)
                            } else {
                                iso_time(stamp)
                            };
                            match bit {
                                0 => rr.crtime = t,
                                1 => rr.mtime = t,
                                2 => rr.atime = t,
                                _ => rr.ctime = t,
                            }
                            at += w;
                        }
                    }
                    b"CL" => rr.cl = Some(le32(e, 4)),
                    b"RE" => rr.re = true,
                    _ => {}
                }
                pos += len;
            }
            let Some((lba, off, len)) = ce else { break };
            hops += 1;
            if hops > MAX_CE_HOPS {
                break;
            }
            let at = lba.saturating_mul(self.block).saturating_add(off);
            let len = len.min(usize::try_from(self.block).unwrap_or(2048));
            if at.saturating_add(len as u64) > self.src.len() {
                break;
            }
            area = read_bytes(self.src.as_ref(), at, len)?;
        }
        if have_link {
            rr.link = Some(link);
        }
        Ok(rr)
    }

    fn decode_name(&self, rec: &Record, rr: &Rr) -> Vec<u8> {
        if let Some(n) = &rr.name {
            return n.clone();
        }
        let mut name = if self.joliet {
            let units = rec
                .name
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([byte(c, 0), byte(c, 1)]));
            char::decode_utf16(units)
                .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect::<String>()
                .into_bytes()
        } else {
            rec.name.clone()
        };
        if let Some(p) = name.iter().rposition(|&b| b == b';') {
            name.truncate(p);
        }
        if !self.joliet && name.last() == Some(&b'.') {
            name.pop();
        }
        name
    }

    /// Extent location and size of a directory record (following CL).
    fn dir_extent(&self, rec: &Record, rr: &Rr) -> Result<(u64, u64), FsError> {
        if let Some(cl) = rr.cl {
            let at = u64::from(cl) * self.block;
            let b = read_bytes(self.src.as_ref(), at, 255)?;
            let dot = parse_record(&b)
                .ok_or_else(|| FsError::Corrupt(format!("bad relocated directory at {at:#x}")))?;
            return Ok((at, u64::from(dot.size)));
        }
        Ok((u64::from(rec.lba) * self.block, u64::from(rec.size)))
    }

    /// The records of the directory at `id`, with their offsets.
    fn dir_records(&self, id: NodeId) -> Result<Vec<(u64, Record)>, FsError> {
        let rec = self.record(id)?;
        let rr = self.rock_ridge(&rec)?;
        if rec.flags & 0x02 == 0 && rr.cl.is_none() {
            return Err(FsError::NotADirectory(format!("ISO record at {:#x}", id.0)));
        }
        let (at, size) = self.dir_extent(&rec, &rr)?;
        if at.saturating_add(size) > self.src.len() {
            return Err(FsError::Corrupt(format!(
                "directory extent {at:#x}+{size} runs past the volume end"
            )));
        }
        let n = usize::try_from(size).map_err(|_| FsError::Corrupt("directory size".into()))?;
        let buf = read_bytes(self.src.as_ref(), at, n)?;
        let block = usize::try_from(self.block).unwrap_or(2048);
        let mut out = Vec::new();
        let mut pos = 0usize;
        while pos < buf.len() {
            let len = usize::from(byte(&buf, pos));
            if len == 0 {
                pos = (pos / block + 1) * block;
                continue;
            }
            let Some(r) = buf.get(pos..).and_then(parse_record) else {
                return Err(FsError::Corrupt(format!(
                    "bad directory record at {:#x}",
                    at + pos as u64
                )));
            };
            if out.len() >= MAX_DIR_ENTRIES {
                return Err(FsError::Corrupt("directory has too many entries".into()));
            }
            out.push((at + pos as u64, r));
            pos += len;
        }
        Ok(out)
    }

    /// Extents (offset, length) of a file, following multi-extent records.
    fn extents(&self, id: NodeId) -> Result<Vec<(u64, u64)>, FsError> {
        let mut out = Vec::new();
        let mut at = id.0;
        loop {
            let rec = self.record(NodeId(at))?;
            out.push((u64::from(rec.lba) * self.block, u64::from(rec.size)));
            if rec.flags & 0x80 == 0 || out.len() >= MAX_EXTENTS {
                return Ok(out);
            }
            at += rec.len as u64;
            if byte(&read_bytes(self.src.as_ref(), at, 1)?, 0) == 0 {
                at = (at / self.block + 1) * self.block;
            }
        }
    }

    fn meta_of(&self, id: NodeId, rec: &Record, rr: &Rr) -> Result<Metadata, FsError> {
        let is_dir = rec.flags & 0x02 != 0 || rr.cl.is_some();
        let mut mode = if is_dir { 0o040_555 } else { 0o100_444 };
        if let Some(m) = rr.mode {
            mode = m;
        }
        let kind = match mode & S_IFMT {
            0o040_000 => FileType::Dir,
            0o100_000 => FileType::File,
            0o120_000 => FileType::Symlink,
            0o020_000 => FileType::CharDev,
            0o060_000 => FileType::BlockDev,
            0o010_000 => FileType::Fifo,
            0o140_000 => FileType::Socket,
            _ if rr.link.is_some() => FileType::Symlink,
            _ if is_dir => FileType::Dir,
            _ => FileType::File,
        };
        let size = match kind {
            FileType::Symlink => rr.link.as_ref().map_or(0, |l| l.len() as u64),
            FileType::Dir => self.dir_extent(rec, rr)?.1,
            _ => self.extents(id)?.iter().map(|e| e.1).sum(),
        };
        Ok(Metadata {
            id,
            kind,
            size,
            mode,
            uid: rr.uid.unwrap_or(0),
            gid: rr.gid.unwrap_or(0),
            nlink: rr.nlink.unwrap_or(1),
            mtime: rr.mtime.or_else(|| iso_time(&rec.date)).unwrap_or(0),
            atime: rr.atime,
            ctime: rr.ctime,
            crtime: rr.crtime,
        })
    }
}

impl FileSystem for Iso {
    fn kind(&self) -> &'static str {
        "iso9660"
    }

    fn byte_ranges(&self, id: NodeId) -> Result<Vec<(u64, u64)>, FsError> {
        self.byte_ranges_of(id)
    }

    fn root(&self) -> NodeId {
        self.root
    }

    fn metadata(&self, id: NodeId) -> Result<Metadata, FsError> {
        let rec = self.record(id)?;
        let rr = if id == self.root {
            // Rock Ridge data of the root lives in its "." record.
            let at = u64::from(rec.lba) * self.block;
            let b = read_bytes(self.src.as_ref(), at, 255)?;
            match parse_record(&b) {
                Some(dot) => self.rock_ridge(&dot)?,
                None => Rr::default(),
            }
        } else {
            self.rock_ridge(&rec)?
        };
        self.meta_of(id, &rec, &rr)
    }

    fn read_dir(&self, id: NodeId) -> Result<Vec<DirEntry>, FsError> {
        let mut out: Vec<DirEntry> = Vec::new();
        let mut prev_multi = false;
        for (off, rec) in self.dir_records(id)? {
            let continuation = prev_multi;
            prev_multi = rec.flags & 0x80 != 0;
            if continuation {
                continue; // later extent of a multi-extent file
            }
            if rec.name == [0] || rec.name == [1] {
                continue;
            }
            let rr = self.rock_ridge(&rec)?;
            if rr.re {
                continue;
            }
            let name = self.decode_name(&rec, &rr);
            let md = self.meta_of(NodeId(off), &rec, &rr);
            let kind = match md {
                Ok(m) => m.kind,
                Err(_) if rec.flags & 0x02 != 0 => FileType::Dir,
                Err(_) => FileType::File,
            };
            out.push(DirEntry {
                name,
                id: NodeId(off),
                kind,
            });
        }
        Ok(out)
    }

    fn read(&self, id: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let md = self.metadata(id)?;
        if md.kind != FileType::File {
            return Err(FsError::Unsupported("read of a non-file".into()));
        }
        let mut done = 0usize;
        let mut base = 0u64;
        for (at, len) in self.extents(id)? {
            if at.saturating_add(len) > self.src.len() {
                return Err(FsError::Corrupt(format!(
                    "file extent {at:#x}+{len} runs past the volume end"
                )));
            }
            let end = base + len;
            let pos = offset + done as u64;
            if pos < end && done < buf.len() {
                let within = pos - base;
                let n = (len - within).min((buf.len() - done) as u64) as usize;
                let Some(dst) = buf.get_mut(done..done + n) else {
                    break;
                };
                self.src
                    .read_zero_padded(at + within, dst)
                    .map_err(|error| FsError::Io {
                        offset: at + within,
                        error,
                    })?;
                done += n;
            }
            base = end;
        }
        Ok(done)
    }

    fn read_link(&self, id: NodeId) -> Result<Vec<u8>, FsError> {
        let rec = self.record(id)?;
        self.rock_ridge(&rec)?
            .link
            .ok_or_else(|| FsError::Unsupported("not a symbolic link".into()))
    }
}
