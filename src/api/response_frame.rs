//! Response frames as a list of byte chunks, so record bytes read from the log reach the
//! socket without passing through the encoder.
//!
//! `kafka-protocol` encodes a response into one buffer and would copy every fetched batch
//! into it. [`ChunkedBuf`] is the buffer we hand the encoder instead: it copies the small
//! fields as usual, but when the encoder puts one of the record sets we registered (found
//! by address and length: the encoder passes the very slice of the `Bytes` it was given),
//! it closes the current chunk and keeps a reference to the record set as a chunk of its
//! own. The connection writes the chunks with one vectored write.
//!
//! Invariant: the concatenation of a frame's chunks is exactly what the encoder would have
//! written into a `BytesMut`, preceded by the 4-byte length (a unit test compares the two
//! for every served Fetch version).

// `BufMut` is an unsafe trait; the implementation below only delegates to `BytesMut`.
#![allow(unsafe_code)]

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Record sets shorter than this are copied: a chunk of its own costs more than the copy.
pub const BY_REFERENCE_MIN_BYTES: usize = 1024;

/// One encoded response, length prefix included, as chunks to write in order.
#[derive(Debug, Default)]
pub struct ResponseFrame {
    chunks: Vec<Bytes>,
}

impl ResponseFrame {
    /// Bytes on the wire, length prefix included.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(Bytes::is_empty)
    }

    pub fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }

    /// The frame as one buffer (tests and tools; the server writes the chunks).
    pub fn to_bytes(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(self.len());
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
        out
    }
}

/// An encoder buffer that keeps registered record sets by reference; see the module docs.
pub struct ChunkedBuf<'a> {
    head: BytesMut,
    chunks: Vec<Bytes>,
    /// Bytes already moved into `chunks`.
    sealed: usize,
    by_reference: &'a [Bytes],
    /// Where the next registered set is expected (the encoder visits them in order).
    cursor: usize,
}

impl<'a> ChunkedBuf<'a> {
    /// `by_reference`: the record sets to keep by reference, in the order the encoder will
    /// visit them (a miss falls back to a search, then to copying).
    pub fn new(by_reference: &'a [Bytes]) -> Self {
        Self { head: BytesMut::with_capacity(256), chunks: Vec::new(), sealed: 0, by_reference, cursor: 0 }
    }

    fn registered(&mut self, src: &[u8]) -> Option<Bytes> {
        if src.len() < BY_REFERENCE_MIN_BYTES {
            return None;
        }
        let same = |b: &Bytes| b.as_ptr() == src.as_ptr() && b.len() == src.len();
        let found = match self.by_reference.get(self.cursor) {
            Some(b) if same(b) => Some(self.cursor),
            _ => self.by_reference.iter().position(same),
        }?;
        self.cursor = found + 1;
        self.by_reference.get(found).cloned()
    }

    fn seal_head(&mut self) {
        if !self.head.is_empty() {
            let chunk = self.head.split().freeze();
            self.sealed += chunk.len();
            self.chunks.push(chunk);
        }
    }

    /// Appends already encoded bytes as a chunk of their own.
    pub fn push_chunk(&mut self, chunk: Bytes) {
        self.seal_head();
        self.sealed += chunk.len();
        self.chunks.push(chunk);
    }

    /// The frame: a 4-byte length chunk, then the chunks in order.
    pub fn finish(mut self) -> ResponseFrame {
        self.seal_head();
        let body_len = self.sealed;
        let mut chunks = Vec::with_capacity(self.chunks.len() + 1);
        chunks.push(Bytes::copy_from_slice(&(body_len as u32).to_be_bytes()));
        chunks.extend(self.chunks);
        ResponseFrame { chunks }
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
        match self.registered(src) {
            Some(records) => self.push_chunk(records),
            None => self.head.extend_from_slice(src),
        }
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
        let registered = [big.clone()];
        let mut buf = ChunkedBuf::new(&registered);
        buf.put_i32(5);
        buf.put_slice(&big);
        buf.put_slice(&small);
        buf.put_slice(&other);
        buf.put_u8(3);
        let frame = buf.finish();
        let chunks = frame.into_chunks();
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0].as_ref(), &((4 + 4096 + 10 + 4096 + 1) as u32).to_be_bytes());
        assert_eq!(chunks[2].as_ptr(), big.as_ptr());
        assert_eq!(chunks[3].len(), 10 + 4096 + 1);
    }
}
