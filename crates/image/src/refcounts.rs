//! Stored refcounts: the refcount table and the refcount blocks it points at,
//! read the way qemu's `qcow2_get_refcount` reads them.

use qvet_format::bytes::usize_from;
use qvet_format::header::Header;
use qvet_format::refcount::{refcount_at, REFTABLE_OFFSET_MASK};

use crate::error::ImageError;
use crate::qcow2::load_table;
use crate::source::ByteSource;

/// The refcount table of an image, with the last refcount block read cached
/// (lookups in cluster order read each block once).
#[derive(Debug)]
pub struct Refcounts {
    table: Vec<u64>,
    entries: u64,
    cluster_size: u64,
    order: u32,
    cached: Option<(u64, Vec<u8>)>,
}

impl Refcounts {
    /// Loads the refcount table `header` describes; entries past the end of
    /// the file read as zero (no refcount block).
    ///
    /// # Errors
    /// [`ImageError::Io`].
    pub fn load(src: &dyn ByteSource, header: &Header) -> Result<Self, ImageError> {
        let cluster_size = header.cluster_size();
        let entries = u64::from(header.refcount_table_clusters) * cluster_size / 8;
        Ok(Self {
            table: load_table(src, "refcount table", header.refcount_table_offset, entries)?,
            entries,
            cluster_size,
            order: header.refcount_order,
            cached: None,
        })
    }

    /// Entries in the refcount table (as the header sizes it).
    pub fn table_len(&self) -> u64 {
        self.entries
    }

    /// Entry `index` of the refcount table (0 past the end of the file).
    pub fn table_entry(&self, index: u64) -> u64 {
        self.table.get(usize_from(index)).copied().unwrap_or(0)
    }

    /// The stored refcount of host cluster `cluster`.
    ///
    /// # Errors
    /// [`ImageError::RefblockUnaligned`] when its refcount block offset is
    /// not cluster aligned (qemu: EIO), [`ImageError::Io`].
    pub fn get(&mut self, src: &dyn ByteSource, cluster: u64) -> Result<u64, ImageError> {
        let per_block = (self.cluster_size * 8) >> self.order;
        let index = cluster / per_block;
        if index >= self.entries {
            return Ok(0);
        }
        let block = self.table_entry(index) & REFTABLE_OFFSET_MASK;
        if block == 0 {
            return Ok(0);
        }
        if !block.is_multiple_of(self.cluster_size) {
            return Err(ImageError::RefblockUnaligned {
                index,
                offset: block,
            });
        }
        if !matches!(&self.cached, Some((o, _)) if *o == block) {
            let mut data = vec![0u8; usize_from(self.cluster_size)];
            src.read_zero_padded(block, &mut data)
                .map_err(|error| ImageError::Io {
                    what: "refcount block".into(),
                    offset: block,
                    error,
                })?;
            self.cached = Some((block, data));
        }
        let data = self
            .cached
            .as_ref()
            .map(|(_, d)| d.as_slice())
            .unwrap_or(&[]);
        Ok(refcount_at(data, self.order, cluster % per_block).unwrap_or(0))
    }
}
