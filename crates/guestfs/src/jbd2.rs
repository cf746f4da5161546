//! jbd2 journal reading for ext3/4 recovery, read-only and in memory.
//!
//! A filesystem whose superblock says `needs_recovery` is, as the kernel
//! mounts it, its on-disk blocks plus the committed transactions of its
//! journal. This module follows the recovery of the kernel and e2fsck (scan,
//! revoke and replay passes, same rules) but writes nothing: it returns,
//! for each filesystem block, the journal block holding its newest
//! committed copy. Journal blocks are read through the caller's closure
//! (logical journal block → bytes), so the journal inode's block map stays
//! with the ext reader.
//!
//! Everything is bounded by the journal: at most its log length is scanned,
//! a descriptor holds at most a block's worth of tags, and the result has at
//! most one entry per scanned block. A broken journal ends the log or voids
//! the replay, with the reason in [`JournalFacts::problems`]; it is never an
//! error.

use crate::bytes::{be16, be32, be64};
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::FsError;

/// `h_magic` of every journal metadata block.
pub(crate) const MAGIC: u32 = 0xC03B_3998;
const DESCRIPTOR: u32 = 1;
const COMMIT: u32 = 2;
const SUPERBLOCK_V1: u32 = 3;
const SUPERBLOCK_V2: u32 = 4;
const REVOKE: u32 = 5;

const COMPAT_CHECKSUM: u32 = 0x1;
const INCOMPAT_64BIT: u32 = 0x2;
const INCOMPAT_CSUM_V2: u32 = 0x8;
const INCOMPAT_CSUM_V3: u32 = 0x10;
const INCOMPAT_FAST_COMMIT: u32 = 0x20;
/// INCOMPAT features whose log format this reader knows.
const INCOMPAT_KNOWN: u32 = 0x3F;

const COMPAT_NAMES: &[(u32, &str)] = &[(0x1, "journal_checksum")];
const INCOMPAT_NAMES: &[(u32, &str)] = &[
    (0x1, "journal_incompat_revoke"),
    (0x2, "journal_64bit"),
    (0x4, "journal_async_commit"),
    (0x8, "journal_checksum_v2"),
    (0x10, "journal_checksum_v3"),
    (0x20, "journal_fast_commit"),
];

const FLAG_ESCAPE: u32 = 1;
const FLAG_SAME_UUID: u32 = 2;
const FLAG_LAST_TAG: u32 = 8;

/// `s_checksum_type` / `h_chksum_type` values.
const CHKSUM_CRC32: u8 = 1;
const CHKSUM_CRC32C: u8 = 4;
/// Smallest log the kernel keeps beside a fast-commit area.
const MIN_JOURNAL_BLOCKS: u64 = 1024;
/// Fast-commit blocks when `s_num_fc_blks` is 0.
const DEFAULT_FC_BLOCKS: u64 = 256;
/// Problems kept per journal.
const MAX_PROBLEMS: usize = 64;

/// What the journal held and what replaying it did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalFacts {
    /// The ext superblock asks for recovery (`needs_recovery`).
    pub needs_recovery: bool,
    /// Journal inode (`s_journal_inum`; 0 for an external journal).
    pub inode: u32,
    /// Journal superblock version (1 or 2), when it was read.
    pub version: Option<u8>,
    /// Journal features ("journal_64bit", "journal_checksum_v3", ...).
    pub features: Vec<String>,
    /// First transaction the log should hold (`s_sequence`).
    pub first_sequence: Option<u32>,
    /// Journal block where the log starts (`s_start`; 0: empty log).
    pub start_block: Option<u32>,
    /// Committed transactions found and replayed.
    pub transactions: u32,
    /// Last committed transaction replayed.
    pub last_sequence: Option<u32>,
    /// Block copies replayed (a later copy of a block replaces an earlier).
    pub blocks_replayed: u64,
    /// Distinct filesystem blocks read from the journal instead of the disk.
    pub blocks_overlaid: u64,
    /// Block copies skipped because a revoke record cancels them.
    pub blocks_revoked: u64,
    /// Revoke records in committed transactions.
    pub revoke_records: u64,
    /// Whether the replayed blocks are part of the view (false when nothing
    /// was replayed or the replayed filesystem was unusable).
    pub applied: bool,
    /// Why the journal was not (fully) replayed; empty when all went well.
    pub problems: Vec<String>,
}

impl JournalFacts {
    pub(crate) fn problem(&mut self, msg: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(msg);
        }
    }
}

/// The newest committed copy of a filesystem block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Logged {
    /// Logical journal block holding it.
    pub(crate) jblock: u64,
    /// Its first four bytes were the journal magic, zeroed in the log.
    pub(crate) escaped: bool,
}

/// Reads one logical journal block.
pub(crate) type ReadBlock<'a> = dyn FnMut(u64) -> Result<Vec<u8>, FsError> + 'a;

/// Transaction ids wrap: `a` is after `b` (the kernel's `tid_gt`).
fn tid_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// CRC-32 MSB-first, no inversion (the kernel's `crc32_be`), for the v1
/// commit checksum.
fn crc32_be(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn names(bits: u32, table: &[(u32, &str)], unknown_prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut known = 0u32;
    for &(bit, name) in table {
        known |= bit;
        if bits & bit != 0 {
            out.push(name.to_string());
        }
    }
    for i in 0..32 {
        let bit = 1u32 << i;
        if bits & !known & bit != 0 {
            out.push(format!("{unknown_prefix}{bit:#x}"));
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Csum {
    None,
    /// `COMPAT_CHECKSUM`: CRC-32 of each transaction in its commit block.
    V1,
    /// CRC-32C per block, 16 bits in tags.
    V2,
    /// CRC-32C per block, 32 bits in tags.
    V3,
}

/// The log geometry from the journal superblock.
#[derive(Debug, Clone, Copy)]
struct Log {
    block_size: usize,
    first: u64,
    /// One past the last log block (the fast-commit area excluded).
    last: u64,
    start: u64,
    sequence: u32,
    is64: bool,
    csum: Csum,
    seed: u32,
}

impl Log {
    fn v2or3(&self) -> bool {
        matches!(self.csum, Csum::V2 | Csum::V3)
    }

    fn tag_bytes(&self) -> usize {
        if self.csum == Csum::V3 {
            return 16;
        }
        let mut n = 8;
        if self.is64 {
            n += 4;
        }
        if self.csum == Csum::V2 {
            n += 2;
        }
        n
    }

    /// Bytes at the end of descriptor and revoke blocks holding a checksum.
    fn tail(&self) -> usize {
        if self.v2or3() {
            4
        } else {
            0
        }
    }

    fn next(&self, pos: u64) -> u64 {
        let n = pos.saturating_add(1);
        if n >= self.last {
            self.first
        } else {
            n
        }
    }

    /// Checksum of a descriptor or revoke block (in its last 4 bytes).
    fn tail_ok(&self, b: &[u8]) -> bool {
        let Some(t) = b.len().checked_sub(4) else {
            return false;
        };
        let c = crate::ext::crc32c(self.seed, b.get(..t).unwrap_or_default());
        crate::ext::crc32c(c, &[0; 4]) == be32(b, t)
    }

    /// Checksum of a commit block (`h_chksum[0]`, zero while summed).
    fn commit_ok(&self, b: &[u8]) -> bool {
        let c = crate::ext::crc32c(self.seed, b.get(..16).unwrap_or_default());
        let c = crate::ext::crc32c(c, &[0; 4]);
        crate::ext::crc32c(c, b.get(20..).unwrap_or_default()) == be32(b, 16)
    }

    /// Checksum of a logged data block, as its tag records it.
    fn data_ok(&self, sequence: u32, data: &[u8], want: u32) -> bool {
        let c = crate::ext::crc32c(self.seed, &sequence.to_be_bytes());
        let c = crate::ext::crc32c(c, data);
        match self.csum {
            Csum::V3 => c == want,
            Csum::V2 => c & 0xFFFF == want & 0xFFFF,
            Csum::None | Csum::V1 => true,
        }
    }

    /// Tags of a descriptor block: (filesystem block, flags, checksum).
    fn tags(&self, b: &[u8]) -> Vec<(u64, u32, u32)> {
        let size = self.tag_bytes();
        let end = b.len().saturating_sub(self.tail());
        let mut out = Vec::new();
        let mut off = 12usize;
        while off.saturating_add(size) <= end {
            let lo = u64::from(be32(b, off));
            let (flags, csum) = if self.csum == Csum::V3 {
                (be32(b, off + 4), be32(b, off + 12))
            } else {
                (u32::from(be16(b, off + 6)), u32::from(be16(b, off + 4)))
            };
            let hi = if self.is64 {
                u64::from(be32(b, off + 8)) << 32
            } else {
                0
            };
            out.push((lo | hi, flags, csum));
            off = off.saturating_add(size);
            if flags & FLAG_SAME_UUID == 0 {
                off = off.saturating_add(16);
            }
            if flags & FLAG_LAST_TAG != 0 {
                break;
            }
        }
        out
    }
}

/// Reads the journal superblock; `Ok(None)` for an empty log, `Err` with
/// the reason when the journal cannot be used (the kernel refuses it too).
fn superblock(
    sb: &[u8],
    block_size: u64,
    journal_blocks: u64,
    facts: &mut JournalFacts,
) -> Result<Option<Log>, String> {
    if be32(sb, 0) != MAGIC {
        return Err(format!(
            "bad journal superblock magic {:#010x}: not replayed",
            be32(sb, 0)
        ));
    }
    let version = match be32(sb, 4) {
        SUPERBLOCK_V1 => 1u8,
        SUPERBLOCK_V2 => 2u8,
        t => {
            return Err(format!(
                "journal superblock of block type {t}: not replayed"
            ))
        }
    };
    facts.version = Some(version);
    // Version 1 journals have no feature fields.
    let (compat, incompat) = if version == 2 {
        (be32(sb, 0x24), be32(sb, 0x28))
    } else {
        (0, 0)
    };
    let mut features = names(compat, COMPAT_NAMES, "journal_compat_");
    features.extend(names(incompat, INCOMPAT_NAMES, "journal_incompat_"));
    facts.features = features;
    let sequence = be32(sb, 0x18);
    let start = be32(sb, 0x1C);
    facts.first_sequence = Some(sequence);
    facts.start_block = Some(start);
    if incompat & !INCOMPAT_KNOWN != 0 {
        return Err(format!(
            "unknown journal INCOMPAT features {:#x}: not replayed",
            incompat & !INCOMPAT_KNOWN
        ));
    }
    let jbs = u64::from(be32(sb, 0xC));
    if jbs != block_size {
        return Err(format!(
            "journal block size {jbs}, filesystem block size {block_size}: not replayed"
        ));
    }
    let maxlen = u64::from(be32(sb, 0x10));
    if maxlen > journal_blocks {
        return Err(format!(
            "journal superblock says {maxlen} blocks, the journal inode holds {journal_blocks}: not replayed"
        ));
    }
    let first = u64::from(be32(sb, 0x14));
    if first == 0 || first >= maxlen {
        return Err(format!(
            "journal log starts at block {first} of {maxlen}: not replayed"
        ));
    }
    let v1 = compat & COMPAT_CHECKSUM != 0;
    let v2 = incompat & INCOMPAT_CSUM_V2 != 0;
    let v3 = incompat & INCOMPAT_CSUM_V3 != 0;
    let csum = match (v1, v2, v3) {
        (false, false, false) => Csum::None,
        (true, false, false) => Csum::V1,
        (false, true, false) => Csum::V2,
        (false, false, true) => Csum::V3,
        _ => {
            return Err(
                "journal claims several checksum versions at once: not replayed".to_string(),
            )
        }
    };
    let mut seed = 0;
    if matches!(csum, Csum::V2 | Csum::V3) {
        let kind = sb.get(0x50).copied().unwrap_or(0);
        if kind != CHKSUM_CRC32C {
            return Err(format!(
                "journal checksum type {kind} (not CRC-32C): not replayed"
            ));
        }
        let c = crate::ext::crc32c(!0, sb.get(..0xFC).unwrap_or_default());
        let c = crate::ext::crc32c(c, &[0; 4]);
        let c = crate::ext::crc32c(c, sb.get(0x100..0x400).unwrap_or_default());
        if c != be32(sb, 0xFC) {
            return Err("journal superblock checksum mismatch: not replayed".to_string());
        }
        seed = crate::ext::crc32c(!0, sb.get(0x30..0x40).unwrap_or_default());
    }
    let mut last = maxlen;
    if incompat & INCOMPAT_FAST_COMMIT != 0 {
        let n = match u64::from(be32(sb, 0x54)) {
            0 => DEFAULT_FC_BLOCKS,
            n => n,
        };
        // As the kernel: the area exists only if the log keeps its minimum.
        if maxlen.saturating_sub(n) >= MIN_JOURNAL_BLOCKS {
            last = maxlen - n;
        }
    }
    if first >= last {
        return Err(format!(
            "journal log {first}..{last} is empty: not replayed"
        ));
    }
    if start == 0 {
        return Ok(None);
    }
    let start = u64::from(start);
    if start < first || start >= last {
        return Err(format!(
            "journal log start {start} outside blocks {first}..{last}: not replayed"
        ));
    }
    if incompat & INCOMPAT_FAST_COMMIT != 0 {
        facts.problem("fast-commit blocks are not replayed (only the log is)".to_string());
    }
    Ok(Some(Log {
        block_size: usize::try_from(block_size).unwrap_or(usize::MAX),
        first,
        last,
        start,
        sequence,
        is64: incompat & INCOMPAT_64BIT != 0,
        csum,
        seed,
    }))
}

/// One logged block copy.
#[derive(Debug, Clone, Copy)]
struct Tag {
    block: u64,
    jblock: u64,
    escaped: bool,
    csum: u32,
}

/// A transaction found in the log.
#[derive(Debug, Default)]
struct Txn {
    sequence: u32,
    tags: Vec<Tag>,
    /// Journal blocks holding its revoke records.
    revokes: Vec<u64>,
}

/// The scan pass: committed transactions in log order. `Err` when the
/// recovery fails as a whole (the kernel then replays nothing).
fn scan(log: &Log, read: &mut ReadBlock<'_>, facts: &mut JournalFacts) -> Result<Vec<Txn>, String> {
    let log_len = log.last - log.first;
    let mut pos = log.start;
    let mut scanned = 0u64;
    let mut committed = Vec::new();
    let mut cur = Txn {
        sequence: log.sequence,
        ..Txn::default()
    };
    // A descriptor or revoke block of this transaction failed its checksum.
    let mut bad_block = false;
    let mut last_time = 0u64;
    let mut crc = !0u32;
    loop {
        if scanned >= log_len {
            facts.problem(format!(
                "the log runs through all {log_len} journal blocks without ending"
            ));
            break;
        }
        let at = pos;
        let b = match read(at) {
            Ok(b) => b,
            Err(e) => {
                facts.problem(format!("journal block {at}: {e}; the log ends there"));
                break;
            }
        };
        pos = log.next(pos);
        scanned += 1;
        if be32(&b, 0) != MAGIC || be32(&b, 8) != cur.sequence {
            break;
        }
        match be32(&b, 4) {
            DESCRIPTOR => {
                if log.v2or3() && !log.tail_ok(&b) {
                    bad_block = true;
                }
                if log.csum == Csum::V1 {
                    crc = crc32_be(crc, &b);
                }
                for (block, flags, csum) in log.tags(&b) {
                    if scanned >= log_len {
                        break;
                    }
                    let jblock = pos;
                    pos = log.next(pos);
                    scanned += 1;
                    if log.csum == Csum::V1 {
                        match read(jblock) {
                            Ok(d) => crc = crc32_be(crc, &d),
                            Err(e) => {
                                return Err(format!(
                                    "journal block {jblock}: {e}; nothing replayed"
                                ))
                            }
                        }
                    }
                    cur.tags.push(Tag {
                        block,
                        jblock,
                        escaped: flags & FLAG_ESCAPE != 0,
                        csum,
                    });
                }
            }
            REVOKE => {
                if log.v2or3() && !log.tail_ok(&b) {
                    bad_block = true;
                }
                cur.revokes.push(at);
            }
            COMMIT => {
                let time = be64(&b, 0x30);
                if bad_block {
                    // A stale block from an older log ends it quietly; in
                    // this log it fails the recovery.
                    if time < last_time {
                        break;
                    }
                    return Err(format!(
                        "transaction {}: descriptor or revoke block checksum mismatch; nothing replayed",
                        cur.sequence
                    ));
                }
                let mut ok = true;
                if log.csum == Csum::V1 {
                    let kind = b.get(12).copied().unwrap_or(0);
                    let size = b.get(13).copied().unwrap_or(0);
                    let found = be32(&b, 16);
                    let matches = found == crc && kind == CHKSUM_CRC32 && size == 4;
                    let unused = kind == 0 && size == 0 && found == 0;
                    ok = matches || unused;
                    crc = !0;
                }
                if log.v2or3() && !log.commit_ok(&b) {
                    ok = false;
                }
                if !ok {
                    if time >= last_time {
                        facts.problem(format!(
                            "transaction {}: commit block checksum mismatch at journal block {at}; replay stops before it",
                            cur.sequence
                        ));
                    }
                    break;
                }
                last_time = time;
                let next = cur.sequence.wrapping_add(1);
                committed.push(std::mem::replace(
                    &mut cur,
                    Txn {
                        sequence: next,
                        ..Txn::default()
                    },
                ));
            }
            // A superblock or an unknown block type ends the log.
            _ => break,
        }
    }
    if !cur.tags.is_empty() || !cur.revokes.is_empty() {
        facts.problem(format!(
            "transaction {} has no valid commit block: not replayed",
            cur.sequence
        ));
    }
    Ok(committed)
}

/// The revoke pass: for each logged block, the last transaction revoking
/// it. Only blocks some transaction logs are kept, so the map is bounded by
/// the log length. `Err` when a revoke block is unusable (the kernel then
/// replays nothing).
fn revokes(
    log: &Log,
    txns: &[Txn],
    read: &mut ReadBlock<'_>,
    facts: &mut JournalFacts,
) -> Result<HashMap<u64, u32>, String> {
    let logged: HashSet<u64> = txns
        .iter()
        .flat_map(|t| t.tags.iter().map(|g| g.block))
        .collect();
    let mut out: HashMap<u64, u32> = HashMap::new();
    let rec = if log.is64 { 8 } else { 4 };
    for t in txns {
        for &at in &t.revokes {
            let b = read(at).map_err(|e| format!("journal block {at}: {e}; nothing replayed"))?;
            let count = usize::try_from(be32(&b, 12)).unwrap_or(usize::MAX);
            if count > log.block_size.saturating_sub(log.tail()) {
                return Err(format!(
                    "transaction {}: revoke block {at} claims {count} bytes; nothing replayed",
                    t.sequence
                ));
            }
            let mut off = 16usize;
            while off + rec <= count {
                let block = if log.is64 {
                    be64(&b, off)
                } else {
                    u64::from(be32(&b, off))
                };
                facts.revoke_records += 1;
                if logged.contains(&block) {
                    let seq = out.entry(block).or_insert(t.sequence);
                    if tid_gt(t.sequence, *seq) {
                        *seq = t.sequence;
                    }
                }
                off += rec;
            }
        }
    }
    Ok(out)
}

/// Plans the recovery of a journal given whole as bytes (logical block `i`
/// at `i * block_size`; blocks past the end read as zeros) for a filesystem
/// of `fs_blocks` blocks: the facts, and each filesystem block replayed with
/// the logical journal block its copy comes from. The parser's entire input
/// in one value, for fuzzing and tests.
pub fn plan_bytes(
    journal: &[u8],
    block_size: u64,
    fs_blocks: u64,
) -> (JournalFacts, Vec<(u64, u64)>) {
    let mut facts = JournalFacts::default();
    if !(1024..=65536).contains(&block_size) || !block_size.is_power_of_two() {
        facts.problem(format!("block size {block_size}"));
        return (facts, Vec::new());
    }
    let bs = usize::try_from(block_size).unwrap_or(1024);
    let blocks = u64::try_from(journal.len().div_ceil(bs)).unwrap_or(0);
    let mut read = |i: u64| -> Result<Vec<u8>, FsError> {
        let mut b = vec![0u8; bs];
        let start = usize::try_from(i).ok().and_then(|i| i.checked_mul(bs));
        if let Some(src) = start.and_then(|s| journal.get(s..)) {
            let n = src.len().min(bs);
            if let (Some(d), Some(s)) = (b.get_mut(..n), src.get(..n)) {
                d.copy_from_slice(s);
            }
        }
        Ok(b)
    };
    let planned = plan(block_size, fs_blocks, blocks, &mut read, &mut facts);
    let replayed = planned.iter().map(|(&fs, l)| (fs, l.jblock)).collect();
    (facts, replayed)
}

/// Plans the recovery of the journal whose logical blocks `read` returns
/// (`journal_blocks` of them, `block_size` bytes each) for a filesystem of
/// `fs_blocks` blocks: each filesystem block whose newest committed copy is
/// in the journal, and where. Fills `facts`; problems never stop the
/// caller, who keeps the on-disk state for every block not returned.
pub(crate) fn plan(
    block_size: u64,
    fs_blocks: u64,
    journal_blocks: u64,
    read: &mut ReadBlock<'_>,
    facts: &mut JournalFacts,
) -> BTreeMap<u64, Logged> {
    let mut out = BTreeMap::new();
    let sb = match read(0) {
        Ok(b) => b,
        Err(e) => {
            facts.problem(format!("journal superblock: {e}: not replayed"));
            return out;
        }
    };
    let log = match superblock(&sb, block_size, journal_blocks, facts) {
        Ok(Some(log)) => log,
        Ok(None) => return out,
        Err(p) => {
            facts.problem(p);
            return out;
        }
    };
    let txns = match scan(&log, read, facts) {
        Ok(t) => t,
        Err(p) => {
            facts.problem(p);
            return out;
        }
    };
    let revoked = match revokes(&log, &txns, read, facts) {
        Ok(r) => r,
        Err(p) => {
            facts.problem(p);
            return out;
        }
    };
    for t in &txns {
        facts.transactions = facts.transactions.saturating_add(1);
        facts.last_sequence = Some(t.sequence);
        for g in &t.tags {
            if g.block >= fs_blocks {
                facts.problem(format!(
                    "transaction {}: block {} beyond the filesystem; skipped",
                    t.sequence, g.block
                ));
                continue;
            }
            if revoked
                .get(&g.block)
                .is_some_and(|&r| !tid_gt(t.sequence, r))
            {
                facts.blocks_revoked += 1;
                continue;
            }
            if log.v2or3() {
                let ok = read(g.jblock).map(|d| log.data_ok(t.sequence, &d, g.csum));
                match ok {
                    Ok(true) => {}
                    Ok(false) => {
                        facts.problem(format!(
                            "transaction {}: checksum mismatch of block {} logged at journal block {}; skipped",
                            t.sequence, g.block, g.jblock
                        ));
                        continue;
                    }
                    Err(e) => {
                        facts.problem(format!(
                            "transaction {}: journal block {}: {e}; skipped",
                            t.sequence, g.jblock
                        ));
                        continue;
                    }
                }
            }
            facts.blocks_replayed += 1;
            out.insert(
                g.block,
                Logged {
                    jblock: g.jblock,
                    escaped: g.escaped,
                },
            );
        }
    }
    facts.blocks_overlaid = u64::try_from(out.len()).unwrap_or(u64::MAX);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_be_check_value() {
        // CRC-32/MPEG-2 (same polynomial, MSB first, init !0, no xorout).
        assert_eq!(crc32_be(!0, b"123456789"), 0x0376_E6E7);
    }

    #[test]
    fn tid_wraps() {
        assert!(tid_gt(1, u32::MAX));
        assert!(!tid_gt(u32::MAX, 1));
        assert!(!tid_gt(5, 5));
    }
}
