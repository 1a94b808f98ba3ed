//! Arbitrary bytes as a partition's files must recover to a readable log or an error, never
//! a panic: the first byte picks which files get the input, the rest is their content.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(dir) = tempfile::tempdir() else { return };
    let (log, other) = rest.split_at(rest.len() / 2);
    let log = if mode & 1 == 0 { rest } else { log };
    let _ = std::fs::write(dir.path().join("00000000000000000000.log"), log);
    if mode & 1 == 1 {
        let name = match (mode >> 1) % 5 {
            0 => "00000000000000000000.index",
            1 => "00000000000000000000.timeindex",
            2 => "leader-epoch-checkpoint",
            3 => "00000000000000000000.snapshot",
            _ => "clean-shutdown",
        };
        let _ = std::fs::write(dir.path().join(name), other);
    }
    let config = blumfeld::log::LogConfig::default();
    if let Ok(log) = blumfeld::log::Log::open(dir.path(), config, 0) {
        let end = log.log_end_offset();
        let mut offset = log.log_start_offset();
        while offset < end {
            match log.read(offset, 1 << 16, end, true) {
                Ok(r) if r.next_offset > offset => offset = r.next_offset,
                _ => break,
            }
        }
    }
});
