//! Property tests for the record module: built batches validate, any flipped CRC'd byte is
//! caught, truncation is caught, and no input makes anything panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

use super::batch::crc_matches;
use super::*;

fn arb_batch() -> impl Strategy<Value = Vec<u8>> {
    (
        1usize..20,
        0usize..200,
        any::<i64>(),
        prop::option::of((0i64..1000, 0i16..10, 0i32..i32::MAX)),
    )
        .prop_map(|(count, value_len, ts, producer)| {
            let mut b = BatchBuilder::new(0)
                .timestamps(ts / 4)
                .records(count, value_len);
            if let Some((pid, epoch, seq)) = producer {
                b = b.producer(pid, epoch, seq);
            }
            b.build()
        })
}

fn arb_set() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(arb_batch(), 1..5)
}

proptest! {
    #[test]
    fn built_sets_validate_and_count(batches in arb_set()) {
        let buf: Vec<u8> = batches.concat();
        let s = validate_batches(&buf, usize::MAX).unwrap();
        prop_assert_eq!(s.batches.len(), batches.len());
        let expected: i64 = s.batches.iter().map(|h| i64::from(h.records_count)).sum();
        prop_assert_eq!(s.record_count, expected);
    }

    #[test]
    fn any_flip_in_the_checksummed_range_is_corrupt(batch in arb_batch(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut buf = batch.clone();
        let at = 17 + at.index(buf.len() - 17);
        buf[at] ^= 1 << bit;
        let is_corrupt = matches!(validate_batches(&buf, usize::MAX), Err(RecordError::CorruptMessage { .. }));
        prop_assert!(is_corrupt);
    }

    #[test]
    fn truncation_is_an_error_unless_at_a_batch_boundary(batches in arb_set(), cut in any::<prop::sample::Index>()) {
        let buf: Vec<u8> = batches.concat();
        let cut = cut.index(buf.len());
        let boundaries: Vec<usize> = batches.iter().scan(0, |end, b| { *end += b.len(); Some(*end) }).collect();
        let accepted = validate_batches(&buf[..cut], usize::MAX).is_ok();
        prop_assert_eq!(accepted, boundaries.contains(&cut));
    }

    #[test]
    fn offsets_and_append_time_keep_sets_valid(batches in arb_set(), first in 0i64..1 << 40, now in any::<i64>()) {
        let mut buf: Vec<u8> = batches.concat();
        let s = validate_batches(&buf, usize::MAX).unwrap();
        let next = assign_offsets(&mut buf, first, 3);
        prop_assert_eq!(next, first + s.record_count);
        set_log_append_time(&mut buf, now);
        let mut expected = first;
        for (h, range) in BatchIter::with_crc_check(&buf) {
            prop_assert!(crc_matches(&buf[range]));
            prop_assert_eq!(h.base_offset, expected);
            prop_assert_eq!(h.max_timestamp, now);
            expected = h.next_offset();
        }
        prop_assert_eq!(expected, next);
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..400), magic_two in any::<bool>()) {
        if magic_two && bytes.len() > 16 {
            bytes[16] = 2; // get past the magic check more often
        }
        let _ = validate_batches(&bytes, 1000);
        let _ = BatchHeader::parse(&bytes);
        let mut it = BatchIter::with_crc_check(&bytes);
        let n = it.by_ref().count();
        prop_assert!(it.valid_end() <= bytes.len());
        prop_assert!(it.stop().is_some() || n == 0);
        assign_offsets(&mut bytes, 5, 1);
        set_log_append_time(&mut bytes, 7);
    }
}
