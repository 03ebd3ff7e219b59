//! The identity of one submitted chain (below the queues and the errors that name it).

/// Identifies one submitted chain. Unique for the lifetime of a `SplitQueue`
/// (the serial never repeats even though head indices are recycled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    /// Queue index.
    pub queue: u16,
    /// Head descriptor index.
    pub head: u16,
    /// Submission serial number.
    pub serial: u64,
}
