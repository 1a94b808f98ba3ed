//! Response frames as a list of chunks, so record bytes reach the socket without passing
//! through the encoder: from memory by reference, or from the segment files by `sendfile`.
//!
//! `kafka-protocol` encodes a response into one buffer and would copy every fetched batch
//! into it. [`ChunkedBuf`] is the buffer we hand the encoder instead: it copies the small
//! fields as usual, but when the encoder puts one of the record sets we registered (found
//! by address and length: the encoder passes the very slice of the `Bytes` it was given),
//! it closes the current chunk and keeps the record set as a chunk of its own. A record
//! set still in the file is handed to the encoder as a placeholder of the right length (a
//! slice of a static zero buffer, never read) and becomes file-region chunks.
//!
//! Invariants: the concatenation of a frame's chunks is exactly what the encoder would have
//! written into a `BytesMut` with the real records, preceded by the 4-byte length (a unit
//! test compares the two for every served Fetch version); a placeholder is never copied
//! into a frame (`finish` fails instead, and the connection closes).

// `BufMut` is an unsafe trait; the implementation below only delegates to `BytesMut`.
#![allow(unsafe_code)]

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

use crate::log::FileRegion;
use crate::partition::RecordSet;

/// Record sets shorter than this are copied: a chunk of its own costs more than the copy.
pub const BY_REFERENCE_MIN_BYTES: usize = 1024;

/// The longest record set that can stay in the file; longer ones are read into memory.
pub const PLACEHOLDER_MAX_BYTES: usize = 64 << 20;

/// Placeholders of one response start at distinct addresses (their index modulo this), so
/// one visited out of order is noticed instead of matching another of the same length.
const PLACEHOLDER_STARTS: usize = 1 << 16;

/// Never read: placeholders are slices of it (in .bss, so it costs no memory).
static PLACEHOLDER: [u8; PLACEHOLDER_MAX_BYTES + PLACEHOLDER_STARTS] = [0; PLACEHOLDER_MAX_BYTES + PLACEHOLDER_STARTS];

/// A piece of a response frame.
#[derive(Debug, Clone)]
pub enum Chunk {
    Memory(Bytes),
    File(FileRegion),
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Memory(b) => b.len(),
            Chunk::File(r) => r.len as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A record set the encoder should not copy: what to hand it (`as_field`) and what to send.
#[derive(Debug, Clone)]
pub struct ByReference {
    field: Bytes,
    regions: Option<Vec<FileRegion>>,
}

impl ByReference {
    /// The value to put in the response's `records` field for `set`, and (if worth it) the
    /// reference to register as the response's `index`-th; sets in memory below
    /// [`BY_REFERENCE_MIN_BYTES`] are copied.
    pub fn for_set(set: RecordSet, index: usize) -> std::io::Result<(Bytes, Option<ByReference>)> {
        match set {
            RecordSet::Memory(bytes) if bytes.len() < BY_REFERENCE_MIN_BYTES => Ok((bytes, None)),
            RecordSet::Memory(bytes) => Ok((bytes.clone(), Some(ByReference { field: bytes, regions: None }))),
            RecordSet::Regions { regions, len } if (BY_REFERENCE_MIN_BYTES..=PLACEHOLDER_MAX_BYTES).contains(&len) => {
                let start = index % PLACEHOLDER_STARTS;
                let field = Bytes::from_static(&PLACEHOLDER[start..start + len]);
                Ok((field.clone(), Some(ByReference { field, regions: Some(regions) })))
            }
            RecordSet::Regions { regions, len } => {
                let mut bytes = Vec::with_capacity(len);
                for r in &regions {
                    bytes.extend_from_slice(&r.read_to_vec()?);
                }
                Self::for_set(RecordSet::Memory(Bytes::from(bytes)), index)
            }
        }
    }
}

/// One encoded response, length prefix included, as chunks to write in order.
#[derive(Debug, Default)]
pub struct ResponseFrame {
    chunks: Vec<Chunk>,
}

impl ResponseFrame {
    /// Bytes on the wire, length prefix included.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Chunk::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(Chunk::is_empty)
    }

    pub fn into_chunks(self) -> Vec<Chunk> {
        self.chunks
    }

    /// The frame as one buffer, file regions read (tests and tools; the server sends the
    /// chunks).
    pub fn to_bytes(&self) -> std::io::Result<BytesMut> {
        let mut out = BytesMut::with_capacity(self.len());
        for c in &self.chunks {
            match c {
                Chunk::Memory(b) => out.extend_from_slice(b),
                Chunk::File(r) => out.extend_from_slice(&r.read_to_vec()?),
            }
        }
        Ok(out)
    }
}

/// A placeholder reached the frame as bytes: the response would carry zeros.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("a record-set placeholder was copied into a response")]
pub struct PlaceholderCopied;

/// An encoder buffer that keeps registered record sets by reference; see the module docs.
pub struct ChunkedBuf<'a> {
    head: BytesMut,
    chunks: Vec<Chunk>,
    /// Bytes already moved into `chunks`.
    sealed: usize,
    by_reference: &'a [ByReference],
    /// The next registered set: the encoder visits them in registration order, and
    /// placeholders share an address, so matching is strictly in order.
    cursor: usize,
    placeholder_copied: bool,
}

impl<'a> ChunkedBuf<'a> {
    /// `by_reference`: the record sets to keep by reference, in the order the encoder will
    /// visit them.
    pub fn new(by_reference: &'a [ByReference]) -> Self {
        Self {
            head: BytesMut::with_capacity(256),
            chunks: Vec::new(),
            sealed: 0,
            by_reference,
            cursor: 0,
            placeholder_copied: false,
        }
    }

    fn seal_head(&mut self) {
        if !self.head.is_empty() {
            let chunk = self.head.split().freeze();
            self.sealed += chunk.len();
            self.chunks.push(Chunk::Memory(chunk));
        }
    }

    fn push(&mut self, chunk: Chunk) {
        self.seal_head();
        self.sealed += chunk.len();
        self.chunks.push(chunk);
    }

    /// Appends already encoded bytes as a chunk of their own.
    pub fn push_chunk(&mut self, chunk: Bytes) {
        self.push(Chunk::Memory(chunk));
    }

    /// The frame: a 4-byte length chunk, then the chunks in order.
    pub fn finish(mut self) -> Result<ResponseFrame, PlaceholderCopied> {
        if self.placeholder_copied {
            return Err(PlaceholderCopied);
        }
        self.seal_head();
        let body_len = self.sealed;
        let mut chunks = Vec::with_capacity(self.chunks.len() + 1);
        chunks.push(Chunk::Memory(Bytes::copy_from_slice(&(body_len as u32).to_be_bytes())));
        chunks.extend(self.chunks);
        Ok(ResponseFrame { chunks })
    }

    fn put_slice_inner(&mut self, src: &[u8]) {
        if src.len() >= BY_REFERENCE_MIN_BYTES {
            if let Some(r) = self.by_reference.get(self.cursor) {
                if r.field.as_ptr() == src.as_ptr() && r.field.len() == src.len() {
                    self.cursor += 1;
                    match &r.regions {
                        Some(regions) => {
                            for region in regions {
                                self.push(Chunk::File(region.clone()));
                            }
                        }
                        None => self.push(Chunk::Memory(r.field.clone())),
                    }
                    return;
                }
            }
        }
        let placeholder = PLACEHOLDER.as_ptr_range();
        if !src.is_empty() && placeholder.contains(&src.as_ptr()) {
            self.placeholder_copied = true;
        }
        self.head.extend_from_slice(src);
    }
}

// SAFETY: every method delegates to the `BytesMut` head, which upholds `BufMut`'s contract;
// `put_slice` only appends to the head or pushes whole chunks, never touching the head's
// uninitialised capacity.
unsafe impl BufMut for ChunkedBuf<'_> {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of the head's `chunk_mut`.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        self.put_slice_inner(src);
    }
}

// The encoder seeks and rewrites only within what it wrote since the last record set (gaps
// are used inside record batches, which responses carry as opaque bytes), so offsets are
// translated into the head. A position inside a sealed chunk is clamped to the head's start.
impl ByteBufMut for ChunkedBuf<'_> {
    fn offset(&self) -> usize {
        self.sealed + self.head.len()
    }

    fn seek(&mut self, offset: usize) {
        self.head.resize(offset.saturating_sub(self.sealed), 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let start = r.start.saturating_sub(self.sealed).min(self.head.len());
        let end = r.end.saturating_sub(self.sealed).clamp(start, self.head.len());
        &mut self.head[start..end]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn registered_slices_become_chunks_and_the_rest_is_copied() {
        let big = Bytes::from(vec![7u8; 4096]);
        let small = Bytes::from(vec![1u8; 10]);
        let other = Bytes::from(vec![9u8; 4096]);
        let (field, reference) = ByReference::for_set(RecordSet::Memory(big.clone()), 0).unwrap();
        let registered = [reference.unwrap()];
        let mut buf = ChunkedBuf::new(&registered);
        buf.put_i32(5);
        buf.put_slice(&field);
        buf.put_slice(&small);
        buf.put_slice(&other);
        buf.put_u8(3);
        let chunks = buf.finish().unwrap().into_chunks();
        assert_eq!(chunks.len(), 4);
        let Chunk::Memory(len) = &chunks[0] else { panic!() };
        assert_eq!(len.as_ref(), &((4 + 4096 + 10 + 4096 + 1) as u32).to_be_bytes());
        let Chunk::Memory(shared) = &chunks[2] else { panic!() };
        assert_eq!(shared.as_ptr(), big.as_ptr());
        assert_eq!(chunks[3].len(), 10 + 4096 + 1);
    }

    #[test]
    fn a_placeholder_out_of_order_is_refused_not_sent_as_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![5u8; 8192]).unwrap();
        let file = std::sync::Arc::new(std::fs::File::open(&path).unwrap());
        let region = |position| FileRegion { file: file.clone(), position, len: 4096 };
        let (a, ra) = ByReference::for_set(RecordSet::Regions { regions: vec![region(0)], len: 4096 }, 0).unwrap();
        let (b, rb) = ByReference::for_set(RecordSet::Regions { regions: vec![region(4096)], len: 4096 }, 1).unwrap();
        let registered = [ra.unwrap(), rb.unwrap()];
        let mut buf = ChunkedBuf::new(&registered);
        buf.put_slice(&a);
        buf.put_slice(&b);
        let frame = buf.finish().unwrap();
        assert_eq!(frame.to_bytes().unwrap()[4..], vec![5u8; 8192][..]);
        // Registered but never visited in order: the second placeholder would be copied.
        let mut buf = ChunkedBuf::new(&registered[1..]);
        buf.put_slice(&a);
        assert!(buf.finish().is_err());
    }
}
