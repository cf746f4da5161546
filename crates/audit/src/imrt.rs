//! The in-memory refcount table: how many references each host cluster has,
//! counted the way qemu's check counts them (saturating at the image's
//! refcount maximum, growing only for references just past the end of file).

use std::collections::HashMap;

/// Reference counts per host cluster, two bytes each with a side table for
/// the rare cluster referenced more than 65534 times.
#[derive(Debug)]
pub(crate) struct Imrt {
    counts: Vec<u16>,
    big: HashMap<u64, u64>,
    /// Clusters holding metadata (bit 0) or guest data (bit 1).
    roles: Vec<u8>,
    max: u64,
}

pub(crate) const ROLE_METADATA: u8 = 1;
pub(crate) const ROLE_DATA: u8 = 2;

impl Imrt {
    pub(crate) fn new(clusters: u64, refcount_bits: u64) -> Self {
        let n = usize::try_from(clusters).unwrap_or(0);
        Self {
            counts: vec![0; n],
            big: HashMap::new(),
            roles: vec![0; n],
            max: if refcount_bits >= 64 {
                u64::MAX
            } else {
                (1u64 << refcount_bits) - 1
            },
        }
    }

    pub(crate) fn len(&self) -> u64 {
        u64::try_from(self.counts.len()).unwrap_or(u64::MAX)
    }

    /// Grows to cover cluster `k` (only ever by the one cluster past EOF
    /// that qemu tolerates).
    pub(crate) fn grow_to(&mut self, k: u64) {
        let want = usize::try_from(k).unwrap_or(usize::MAX).saturating_add(1);
        if want > self.counts.len() && want - self.counts.len() <= 1 << 20 {
            self.counts.resize(want, 0);
            self.roles.resize(want, 0);
        }
    }

    pub(crate) fn get(&self, k: u64) -> u64 {
        let Ok(i) = usize::try_from(k) else { return 0 };
        match self.counts.get(i) {
            Some(&u16::MAX) => self.big.get(&k).copied().unwrap_or(u64::from(u16::MAX)),
            Some(&c) => u64::from(c),
            None => 0,
        }
    }

    /// Adds `n` references; returns how many did not fit under the maximum
    /// (qemu reports each of those as an overflow).
    pub(crate) fn add(&mut self, k: u64, n: u64, role: u8) -> u64 {
        let cur = self.get(k);
        let room = self.max.saturating_sub(cur);
        let added = n.min(room);
        let Ok(i) = usize::try_from(k) else {
            return 0;
        };
        if let Some(r) = self.roles.get_mut(i) {
            *r |= role;
        }
        let next = cur + added;
        if let Some(c) = self.counts.get_mut(i) {
            if next >= u64::from(u16::MAX) {
                *c = u16::MAX;
                self.big.insert(k, next);
            } else {
                *c = u16::try_from(next).unwrap_or(u16::MAX);
            }
        }
        n - added
    }

    pub(crate) fn role(&self, k: u64) -> u8 {
        usize::try_from(k)
            .ok()
            .and_then(|i| self.roles.get(i).copied())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_at_the_refcount_width() {
        let mut t = Imrt::new(4, 1);
        assert_eq!(t.add(0, 1, ROLE_DATA), 0);
        assert_eq!(t.add(0, 3, ROLE_DATA), 3, "1-bit refcounts overflow at 1");
        assert_eq!(t.get(0), 1);
        let mut t = Imrt::new(2, 64);
        assert_eq!(t.add(1, 70_000, ROLE_METADATA), 0);
        assert_eq!(t.get(1), 70_000, "counts beyond u16 live in the side table");
        assert_eq!(t.add(1, 1, ROLE_DATA), 0);
        assert_eq!(t.get(1), 70_001);
        assert_eq!(t.role(1), ROLE_METADATA | ROLE_DATA);
    }

    #[test]
    fn grows_only_by_a_bounded_amount() {
        let mut t = Imrt::new(2, 16);
        t.grow_to(2);
        assert_eq!(t.len(), 3);
        t.grow_to(u64::MAX);
        assert_eq!(t.len(), 3, "a wild index never allocates");
        assert_eq!(t.get(u64::MAX), 0);
    }
}
