//! A tiny most-recently-used cache of decoded blocks.

use std::sync::Arc;

/// A tiny most-recently-used cache.
#[derive(Debug)]
pub(super) struct Lru<K, V> {
    cap: usize,
    items: Vec<(K, Arc<V>)>,
}

impl<K: PartialEq + Copy, V> Lru<K, V> {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            cap,
            items: Vec::new(),
        }
    }

    pub(super) fn get(&mut self, k: K) -> Option<Arc<V>> {
        let i = self.items.iter().position(|(key, _)| *key == k)?;
        let item = self.items.remove(i);
        let v = Arc::clone(&item.1);
        self.items.insert(0, item);
        Some(v)
    }

    pub(super) fn put(&mut self, k: K, v: Arc<V>) {
        self.items.retain(|(key, _)| *key != k);
        self.items.insert(0, (k, v));
        self.items.truncate(self.cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_keeps_the_most_recent() {
        let mut l: Lru<u32, u32> = Lru::new(2);
        l.put(1, Arc::new(10));
        l.put(2, Arc::new(20));
        assert_eq!(l.get(1).as_deref(), Some(&10));
        l.put(3, Arc::new(30));
        assert!(l.get(2).is_none());
        assert_eq!(l.get(1).as_deref(), Some(&10));
        assert_eq!(l.get(3).as_deref(), Some(&30));
    }
}
