//! What the request being served on this thread may move: the bytes it was charged for.
//!
//! The guest can rewrite a request in its memory between inspection (where it is charged) and
//! serving (where the library reads it again). The FUSE handler (`fuse::handler`) runs the
//! request inside [`serving`] with the charged byte count, and the filesystem's READ and WRITE
//! consult [`allowed`]: a READ moves no more than that, a WRITE asking for more is refused.
//! What they really move is added up with [`moved`], which is what the statistics count.

use std::cell::Cell;

thread_local! {
    /// (bytes allowed, bytes moved) of the request being served; `None` outside [`serving`].
    static CURRENT: Cell<Option<(u32, u64)>> = const { Cell::new(None) };
}

/// Runs `f` as the serving of a request allowed to move `allowed` bytes; returns its result and
/// the bytes it moved.
pub fn serving<R>(allowed: u32, f: impl FnOnce() -> R) -> (R, u64) {
    CURRENT.with(|c| c.set(Some((allowed, 0))));
    let r = f();
    let moved = CURRENT.with(|c| c.take()).map_or(0, |(_, m)| m);
    (r, moved)
}

/// The bytes the current request may still move (no limit outside [`serving`]).
pub fn allowed() -> u32 {
    CURRENT.with(|c| c.get()).map_or(u32::MAX, |(a, _)| a)
}

/// Records `n` bytes moved by the current request.
pub fn moved(n: usize) {
    CURRENT.with(|c| {
        if let Some((a, m)) = c.get() {
            let n32 = u32::try_from(n).unwrap_or(u32::MAX);
            c.set(Some((a.saturating_sub(n32), m.saturating_add(n as u64))));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_inside_serving_only() {
        assert_eq!(allowed(), u32::MAX);
        moved(10);
        let ((), m) = serving(100, || {
            assert_eq!(allowed(), 100);
            moved(30);
            assert_eq!(allowed(), 70);
            moved(70);
            assert_eq!(allowed(), 0);
        });
        assert_eq!(m, 100);
        assert_eq!(allowed(), u32::MAX);
    }
}
