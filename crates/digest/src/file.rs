//! File digests from one read of the file, the algorithms in parallel.
//!
//! The calling thread reads the file with `pread` into a window of at most
//! [`POOL`] blocks of [`BLOCK`] bytes. Each algorithm is a *lane* that must
//! hash every block in order. One worker thread per CPU (never more than
//! there are lanes) repeatedly takes the free lane with the most work left
//! (its remaining bytes times its measured cost per byte) that has a block
//! to hash, hashes that block outside the lock, and puts the lane back. A
//! block leaves the window, and its buffer is reused, when every lane has
//! hashed it.
//!
//! Every byte is read once, memory is bounded by `POOL * BLOCK` whatever the
//! file size, and the CPUs stay busy until the end: with fewer cores than
//! algorithms, giving the costliest lane (MD5 or SHA-512 on most CPUs)
//! priority finishes all lanes together instead of leaving the slowest one
//! running alone at the end, as one thread per algorithm under a fair
//! scheduler does.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use md5::Digest as _;

use crate::{hex, Algo, DigestError, FileDigests};
use qvet_image::ByteSource;

/// Bytes per read (and per hashing step).
pub(crate) const BLOCK: usize = 4 << 20;
/// Blocks in the window: how far the fastest lane can be ahead of the slowest.
const POOL: usize = 8;

/// One algorithm's running state.
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
        match self {
            Self::Md5(h) => hex(&h.finalize()),
            Self::Sha1(h) => hex(&h.finalize()),
            Self::Sha256(h) => hex(&h.finalize()),
            Self::Sha512(h) => hex(&h.finalize()),
            Self::Blake3(h) => hex(h.finalize().as_bytes()),
        }
    }
}

/// A first guess of the cost (ns per byte, one core with SHA-NI), refined
/// by measurement after each block.
fn initial_cost(a: Algo) -> f64 {
    match a {
        Algo::Md5 => 1.3,
        Algo::Sha512 => 1.1,
        Algo::Sha1 | Algo::Sha256 => 0.5,
        Algo::Blake3 => 0.15,
    }
}

struct Lane {
    algo: Algo,
    /// `None` while a worker is hashing with it.
    hasher: Option<Hasher>,
    /// Next block to hash.
    next: u64,
    /// Measured nanoseconds per byte.
    cost: f64,
}

/// A block of the window: the buffer and how many of its bytes are valid.
type Block = (Arc<Vec<u8>>, usize);

struct State {
    /// The window: `blocks[0]` is block number `base`.
    blocks: VecDeque<Block>,
    base: u64,
    lanes: Vec<Lane>,
    /// Buffers to reuse.
    free: Vec<Vec<u8>>,
    /// Set when reading failed: everyone stops.
    abort: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    total_blocks: u64,
}

impl Shared {
    fn lock(&self) -> Option<MutexGuard<'_, State>> {
        self.state.lock().ok()
    }

    /// One worker: hash blocks for the neediest free lane until every lane
    /// has hashed every block (or the read failed).
    fn work(&self) {
        let Some(mut st) = self.lock() else { return };
        loop {
            if st.abort {
                return;
            }
            let end = st.base + st.blocks.len() as u64;
            let total = self.total_blocks;
            let pick = st
                .lanes
                .iter()
                .enumerate()
                .filter(|(_, l)| l.hasher.is_some() && l.next < end)
                .max_by(|(_, a), (_, b)| {
                    let left = |l: &Lane| (total - l.next) as f64 * l.cost;
                    left(a).total_cmp(&left(b))
                })
                .map(|(i, _)| i);
            let Some(i) = pick else {
                if st
                    .lanes
                    .iter()
                    .all(|l| l.hasher.is_some() && l.next >= total)
                {
                    return;
                }
                st = match self.wake.wait(st) {
                    Ok(g) => g,
                    Err(_) => return,
                };
                continue;
            };
            let base = st.base;
            let taken = st
                .lanes
                .get_mut(i)
                .and_then(|lane| Some((lane.hasher.take()?, lane.next)));
            let block = taken.as_ref().and_then(|(_, seq)| {
                let k = usize::try_from(seq - base).ok()?;
                st.blocks.get(k).map(|(b, n)| (Arc::clone(b), *n))
            });
            let (Some((mut hasher, _)), Some((buf, len))) = (taken, block) else {
                // Cannot happen (the lane was picked as free with its block
                // in the window); stop everyone rather than wait forever.
                st.abort = true;
                self.wake.notify_all();
                return;
            };
            drop(st);
            let t = Instant::now();
            hasher.update(buf.get(..len).unwrap_or_default());
            let ns = t.elapsed().as_nanos() as f64 / len.max(1) as f64;
            drop(buf);
            st = match self.lock() {
                Some(g) => g,
                None => return,
            };
            if let Some(lane) = st.lanes.get_mut(i) {
                lane.hasher = Some(hasher);
                lane.next += 1;
                lane.cost = 0.7 * lane.cost + 0.3 * ns;
            }
            // Retire the blocks every lane is done with.
            while !st.blocks.is_empty() && st.lanes.iter().all(|l| l.next > st.base) {
                if let Some((b, _)) = st.blocks.pop_front() {
                    if let Ok(v) = Arc::try_unwrap(b) {
                        st.free.push(v);
                    }
                }
                st.base += 1;
            }
            self.wake.notify_all();
        }
    }
}

/// Computes every algorithm in `algos` over the whole of `src`, reading it
/// once. `progress` receives the bytes read so far (at most a few blocks
/// ahead of the slowest algorithm).
///
/// Duplicate algorithms are computed once.
///
/// # Errors
/// [`DigestError::Io`] when a read fails.
pub fn digest_file(
    src: &dyn ByteSource,
    algos: &[Algo],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<FileDigests, DigestError> {
    let mut wanted: Vec<Algo> = algos.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let size = src.len();
    if wanted.is_empty() {
        return Ok(FileDigests {
            size,
            digests: Default::default(),
        });
    }
    let shared = Shared {
        state: Mutex::new(State {
            blocks: VecDeque::with_capacity(POOL),
            base: 0,
            lanes: wanted
                .iter()
                .map(|&algo| Lane {
                    algo,
                    hasher: Some(Hasher::new(algo)),
                    next: 0,
                    cost: initial_cost(algo),
                })
                .collect(),
            free: Vec::new(),
            abort: false,
        }),
        wake: Condvar::new(),
        total_blocks: size.div_ceil(BLOCK as u64),
    };
    let workers = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2)
        .clamp(1, wanted.len());
    let read = std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| shared.work());
        }
        let r = read_blocks(src, size, &shared, progress);
        if r.is_err() {
            if let Some(mut st) = shared.lock() {
                st.abort = true;
            }
            shared.wake.notify_all();
        }
        r
    });
    read?;
    let st = shared.state.into_inner().map_err(|_| DigestError::Io {
        offset: 0,
        error: std::io::Error::other("a hashing thread failed"),
    })?;
    let mut digests = std::collections::BTreeMap::new();
    for lane in st.lanes {
        match lane.hasher {
            Some(h) if lane.next == shared.total_blocks => {
                digests.insert(lane.algo, h.hex());
            }
            _ => {
                return Err(DigestError::Io {
                    offset: lane.next.saturating_mul(BLOCK as u64),
                    error: std::io::Error::other(format!("the {} hasher stopped", lane.algo)),
                })
            }
        }
    }
    Ok(FileDigests { size, digests })
}

/// The reader: fills the window in file order.
fn read_blocks(
    src: &dyn ByteSource,
    size: u64,
    shared: &Shared,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), DigestError> {
    let lost = || DigestError::Io {
        offset: 0,
        error: std::io::Error::other("a hashing thread failed"),
    };
    let mut offset = 0u64;
    while offset < size {
        let n = usize::try_from((size - offset).min(BLOCK as u64)).unwrap_or(BLOCK);
        let mut data = {
            let mut st = shared.lock().ok_or_else(lost)?;
            while st.blocks.len() >= POOL && !st.abort {
                st = shared.wake.wait(st).map_err(|_| lost())?;
            }
            if st.abort {
                return Err(lost());
            }
            st.free.pop().unwrap_or_default()
        };
        if data.len() < n {
            data.resize(n, 0);
        }
        let chunk = data.get_mut(..n).unwrap_or_default();
        src.read_zero_padded(offset, chunk)
            .map_err(|error| DigestError::Io { offset, error })?;
        {
            let mut st = shared.lock().ok_or_else(lost)?;
            st.blocks.push_back((Arc::new(data), n));
        }
        shared.wake.notify_all();
        offset += n as u64;
        progress(offset);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use qvet_image::MemSource;

    fn data(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn one_shot(algo: Algo, b: &[u8]) -> String {
        match algo {
            Algo::Md5 => hex(&md5::Md5::digest(b)),
            Algo::Sha1 => hex(&sha1::Sha1::digest(b)),
            Algo::Sha256 => hex(&sha2::Sha256::digest(b)),
            Algo::Sha512 => hex(&sha2::Sha512::digest(b)),
            Algo::Blake3 => blake3::hash(b).to_hex().to_string(),
        }
    }

    #[test]
    fn every_algorithm_matches_one_shot_hashing_on_many_sizes() {
        for len in [
            0,
            1,
            63,
            64,
            65,
            4097,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            9 * (1 << 20) + 3,
        ] {
            let d = data(len);
            let src = MemSource(d.clone());
            let got = digest_file(&src, &Algo::ALL, &|_| {}).unwrap();
            assert_eq!(got.size, len as u64);
            for a in Algo::ALL {
                assert_eq!(got.digests[&a], one_shot(a, &d), "{a} of {len} bytes");
            }
        }
    }

    #[test]
    fn known_answers() {
        let got = digest_file(&MemSource(b"abc".to_vec()), &Algo::ALL, &|_| {}).unwrap();
        assert_eq!(got.digests[&Algo::Md5], "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            got.digests[&Algo::Sha1],
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            got.digests[&Algo::Sha256],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            got.digests[&Algo::Blake3],
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert!(got.digests[&Algo::Sha512].starts_with("ddaf35a193617aba"));
    }

    #[test]
    fn subsets_duplicates_and_none() {
        let d = data(3 * BLOCK + 17);
        let src = MemSource(d.clone());
        let got = digest_file(&src, &[Algo::Sha512, Algo::Md5, Algo::Md5], &|_| {}).unwrap();
        assert_eq!(got.digests.len(), 2);
        assert_eq!(got.digests[&Algo::Md5], one_shot(Algo::Md5, &d));
        let none = digest_file(&src, &[], &|_| {}).unwrap();
        assert!(none.digests.is_empty());
        assert_eq!(none.size, d.len() as u64);
    }

    #[test]
    fn progress_reaches_the_size() {
        let src = MemSource(data(2 * BLOCK + 5));
        let last = std::sync::atomic::AtomicU64::new(0);
        digest_file(&src, &[Algo::Sha1], &|n| {
            last.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(last.into_inner(), 2 * BLOCK as u64 + 5);
    }

    #[derive(Debug)]
    struct Failing;
    impl ByteSource for Failing {
        fn len(&self) -> u64 {
            20 << 20
        }
        fn read_at(&self, offset: u64, _buf: &mut [u8]) -> std::io::Result<usize> {
            if offset >= 8 << 20 {
                Err(std::io::Error::other("boom"))
            } else {
                Ok(_buf.len())
            }
        }
    }

    #[test]
    fn read_errors_name_the_offset() {
        let e = digest_file(&Failing, &Algo::ALL, &|_| {}).unwrap_err();
        assert!(
            matches!(e, DigestError::Io { offset, .. } if offset == 8 << 20),
            "{e}"
        );
    }
}
