//! Zig-zag varints, the encoding Kafka uses for every field of a v2 record.

/// Reads a zig-zag varint at `at`: the value and the position after it; `None` when the
/// input ends first or the varint is longer than 64 bits.
pub fn read_varlong(buf: &[u8], mut at: usize) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(at)?;
        at += 1;
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), at));
        }
    }
    None
}

/// Appends `value` as a zig-zag varint.
pub fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
