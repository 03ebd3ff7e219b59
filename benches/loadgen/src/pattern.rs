//! The data pattern of the generator's files: a function of (file id, file offset) only, so
//! any byte read back can be checked without remembering what was written.
//!
//! Every 4 KiB block is a fixed pseudo-random template whose first 8 bytes are replaced by a
//! tag encoding the file id and the block's offset. Generating a block is a copy (or, for a
//! buffer that already holds the template, 8 bytes); checking one is a `memcmp`. A block
//! read from the wrong offset or the wrong file fails on its tag; any other corrupted byte
//! fails on the template.

use std::sync::OnceLock;

/// Pattern block size.
pub const BLOCK: usize = 4096;
/// Bytes of each block holding the tag.
pub const TAG: usize = 8;

fn template() -> &'static [u8; BLOCK] {
    static T: OnceLock<Box<[u8; BLOCK]>> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = Box::new([0u8; BLOCK]);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for chunk in t.chunks_mut(8) {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            chunk.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        t
    })
}

/// The tag of the block starting at `block_off` in file `file_id`.
pub fn tag(file_id: u8, block_off: u64) -> [u8; TAG] {
    (block_off ^ ((file_id as u64) << 56) ^ 0x5A0F_C3A5_0000_0000).to_le_bytes()
}

/// The expected byte at `off` of file `file_id`.
pub fn byte_at(file_id: u8, off: u64) -> u8 {
    let in_block = (off % BLOCK as u64) as usize;
    if in_block < TAG {
        tag(file_id, off - in_block as u64)[in_block]
    } else {
        template()[in_block]
    }
}

/// Visit the bytes of file `file_id` in `[off, off+len)` as expected slices:
/// `f(position in the range, expected bytes)`; stops early when `f` returns false.
fn for_each_piece(len: usize, off: u64, file_id: u8, mut f: impl FnMut(usize, &[u8]) -> bool) {
    let t = template();
    let mut pos = 0usize;
    while pos < len {
        let o = off + pos as u64;
        let in_block = (o % BLOCK as u64) as usize;
        let end = BLOCK.min(in_block + (len - pos));
        if in_block < TAG {
            let tg = tag(file_id, o - in_block as u64);
            let tag_end = TAG.min(end);
            if !f(pos, &tg[in_block..tag_end]) {
                return;
            }
            if end > TAG && !f(pos + (TAG - in_block), &t[TAG..end]) {
                return;
            }
        } else if !f(pos, &t[in_block..end]) {
            return;
        }
        pos += end - in_block;
    }
}

/// Fill `buf` with the bytes of file `file_id` from offset `off`.
pub fn fill(buf: &mut [u8], file_id: u8, off: u64) {
    let len = buf.len();
    for_each_piece(len, off, file_id, |pos, exp| {
        buf[pos..pos + exp.len()].copy_from_slice(exp);
        true
    });
}

/// Re-tag a buffer that already holds the pattern of *some* block-aligned offset of
/// `file_id` so that it holds the pattern of `off` (block-aligned): only the tags change.
/// Panics in debug builds if `off` is not block-aligned.
pub fn retag(buf: &mut [u8], file_id: u8, off: u64) {
    debug_assert_eq!(off % BLOCK as u64, 0);
    for (i, blk) in buf.chunks_mut(BLOCK).enumerate() {
        let t = tag(file_id, off + (i * BLOCK) as u64);
        let n = TAG.min(blk.len());
        blk[..n].copy_from_slice(&t[..n]);
    }
}

/// Check `buf` against the bytes of file `file_id` from offset `off`: the index of the
/// first wrong byte, or `None` if all are right.
pub fn verify(buf: &[u8], file_id: u8, off: u64) -> Option<usize> {
    let mut bad = None;
    for_each_piece(buf.len(), off, file_id, |pos, exp| {
        let got = &buf[pos..pos + exp.len()];
        if got != exp {
            let i = got.iter().zip(exp).position(|(a, b)| a != b).unwrap_or(0);
            bad = Some(pos + i);
            return false;
        }
        true
    });
    bad
}

/// Check only the tags of the blocks of a block-aligned `buf` read from offset `off` (block-
/// aligned): catches data from the wrong offset or file at 1/512 of the cost of [`verify`].
pub fn verify_tags(buf: &[u8], file_id: u8, off: u64) -> Option<usize> {
    debug_assert_eq!(off % BLOCK as u64, 0);
    for (i, blk) in buf.chunks(BLOCK).enumerate() {
        let t = tag(file_id, off + (i * BLOCK) as u64);
        let n = TAG.min(blk.len());
        if blk[..n] != t[..n] {
            let j = blk.iter().zip(&t).position(|(a, b)| a != b).unwrap_or(0);
            return Some(i * BLOCK + j);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_matches_byte_at_at_any_offset() {
        for &(off, len) in &[
            (0u64, 3 * BLOCK),
            (5, 100),
            (4090, 20),
            (8191, 4099),
            (12, 1),
        ] {
            let mut b = vec![0u8; len];
            fill(&mut b, 3, off);
            for (i, &x) in b.iter().enumerate() {
                assert_eq!(x, byte_at(3, off + i as u64), "off {off} i {i}");
            }
            assert_eq!(verify(&b, 3, off), None);
        }
    }

    #[test]
    fn verify_finds_any_corrupt_byte_and_wrong_places() {
        let mut b = vec![0u8; 4 * BLOCK];
        fill(&mut b, 1, 8 * BLOCK as u64);
        for i in [0, 7, 8, 4095, 4096, 9000, 4 * BLOCK - 1] {
            let mut c = b.clone();
            c[i] ^= 1;
            assert_eq!(verify(&c, 1, 8 * BLOCK as u64), Some(i));
        }
        // Right data, wrong offset or file.
        assert!(matches!(verify(&b, 1, 9 * BLOCK as u64), Some(i) if i < TAG));
        assert!(matches!(verify(&b, 2, 8 * BLOCK as u64), Some(i) if i < TAG));
    }

    #[test]
    fn tags_only() {
        let mut b = vec![0u8; 3 * BLOCK];
        fill(&mut b, 1, 4 * BLOCK as u64);
        assert_eq!(verify_tags(&b, 1, 4 * BLOCK as u64), None);
        b[BLOCK + 3] ^= 1;
        assert_eq!(verify_tags(&b, 1, 4 * BLOCK as u64), Some(BLOCK + 3));
    }

    #[test]
    fn retag_equals_fill() {
        let mut a = vec![0u8; 2 * BLOCK + 100];
        fill(&mut a, 4, 0);
        retag(&mut a, 4, 40 * BLOCK as u64);
        let mut b = vec![0u8; 2 * BLOCK + 100];
        fill(&mut b, 4, 40 * BLOCK as u64);
        assert_eq!(a, b);
    }
}
