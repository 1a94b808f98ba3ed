//! Arbitrary bytes as a partition's files must recover to a readable log or an error, never
//! a panic: the first byte picks which files get the input, the rest is their content.
#![no_main]

use blumfeld::log::RecoveryMode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(dir) = tempfile::tempdir() else { return };
    let (log, other) = rest.split_at(rest.len() / 2);
    let log = if mode & 1 == 0 { rest } else { log };
    let _ = std::fs::write(dir.path().join("00000000000000000000.log"), log);
    if mode & 1 == 1 {
        let name = match (mode >> 1) % 6 {
            0 => "00000000000000000000.index",
            1 => "00000000000000000000.timeindex",
            2 => "leader-epoch-checkpoint",
            3 => "00000000000000000000.snapshot",
            4 => "00000000000000000000.txnindex",
            _ => "clean-shutdown",
        };
        let _ = std::fs::write(dir.path().join(name), other);
    }
    let config = blumfeld::log::LogConfig::default();
    // The top bit picks the recovery for a process-only crash (headers walked, last batch
    // checked), which must be as safe against garbage as the full check.
    let recovery = if mode & 0x80 == 0 { RecoveryMode::Full } else { RecoveryMode::PageCacheIntact };
    if let Ok(mut log) = blumfeld::log::Log::open_with(dir.path(), config, 0, recovery) {
        let end = log.log_end_offset();
        let mut offset = log.log_start_offset();
        while offset < end {
            match log.read(offset, 1 << 16, end, true) {
                Ok(r) if r.next_offset > offset => offset = r.next_offset,
                _ => break,
            }
        }
        // The recovered log takes appends at its end.
        let batch = blumfeld::record::BatchBuilder::new(0).records(2, 8).build();
        if let Ok(blumfeld::log::AppendOutcome::Appended(info)) = log.append(&batch, 0, 0) {
            assert_eq!(info.first_offset, end);
            assert!(log.read(end, 1 << 16, end + 2, true).is_ok_and(|r| r.next_offset == end + 2));
        }
    }
});
