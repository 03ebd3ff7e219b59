//! The group file's layout: 64-bit little-endian words, read and written only with atomics.
//!
//! | words | what |
//! |---|---|
//! | 0 | magic `VFSGRP01` (written last by the creator, with release ordering) |
//! | 1 | version ([`VERSION`]) |
//! | 2 | size of the file in bytes ([`FILE_SIZE`]) |
//! | 3 | number of member slots ([`SLOTS`]) |
//! | 4 | epoch: `CLOCK_MONOTONIC` ns at creation; every time below counts from it |
//! | 5..9 | creation budget: bw size, bw burst, ops size, ops burst |
//! | 9..13 | live budget, same order |
//! | 13, 14 | the shared bw and ops buckets: the instant (1/16 ns ticks) they are empty at |
//! | 15 | live-budget generation (bumped by every change) |
//! | 64.. | [`SLOTS`] member slots of [`SLOT_WORDS`] words (see [`Slot`]) |
//!
//! Every word can be written by any member at any time: a reader trusts none of them.

use std::sync::atomic::{AtomicU64, Ordering};

/// `VFSGRP01` as a little-endian word.
pub const MAGIC: u64 = u64::from_le_bytes(*b"VFSGRP01");
/// The layout's version.
pub const VERSION: u64 = 1;
/// Member slots in a group file: at most this many members have demand at once.
pub const SLOTS: usize = 256;
/// Words per member slot.
pub const SLOT_WORDS: usize = 16;
/// Words of header before the first slot.
pub const HEADER_WORDS: usize = 64;
/// Words in the file.
pub const WORDS: usize = HEADER_WORDS + SLOTS * SLOT_WORDS;
/// The file's size in bytes.
pub const FILE_SIZE: usize = WORDS * 8;

/// Header word indices.
pub(crate) mod hdr {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 1;
    pub const SIZE: usize = 2;
    pub const SLOTS: usize = 3;
    pub const EPOCH: usize = 4;
    pub const CREATION: usize = 5;
    pub const LIVE: usize = 9;
    pub const BUCKET: usize = 13;
    pub const GENERATION: usize = 15;
}

/// Word indices inside a slot.
pub mod slot {
    /// Claim: the owner's nonce (0: never claimed).
    pub const CLAIM: usize = 0;
    /// Lease: the slot counts until this instant (ns since the epoch).
    pub const LEASE: usize = 1;
    /// The member's weight.
    pub const WEIGHT: usize = 2;
    /// Demand, bw then ops (units/s; `u64::MAX`: backlogged).
    pub const DEMAND: usize = 3;
    /// Share the member enforces on itself, bw then ops (units/s).
    pub const SHARE: usize = 5;
    /// Bytes admitted (counter).
    pub const BYTES: usize = 7;
    /// Requests admitted (counter).
    pub const OPS: usize = 8;
    /// Requests that waited (counter).
    pub const WAITS: usize = 9;
    /// Nanoseconds waited, summed (counter).
    pub const WAIT_NS: usize = 10;
}

/// The two group buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBucket {
    /// READ + WRITE payload bytes.
    Bw,
    /// Requests on the request queue.
    Ops,
}

impl GroupBucket {
    /// Both, in layout order.
    pub const ALL: [GroupBucket; 2] = [GroupBucket::Bw, GroupBucket::Ops];

    /// `0` or `1`.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// `bw` or `ops`.
    pub const fn name(self) -> &'static str {
        match self {
            GroupBucket::Bw => "bw",
            GroupBucket::Ops => "ops",
        }
    }
}

/// A view of a group's words (a mapping of the file, or plain memory in tests).
#[derive(Clone, Copy)]
pub struct Region(&'static [AtomicU64]);

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("words", &self.0.len())
            .finish()
    }
}

impl Region {
    /// Wraps `words`, which must be [`WORDS`] long.
    pub fn new(words: &'static [AtomicU64]) -> Region {
        assert_eq!(words.len(), WORDS, "a group region is WORDS words");
        Region(words)
    }

    /// A zeroed region in process memory (leaked): for tests and benches.
    pub fn anonymous() -> Region {
        let v: Vec<AtomicU64> = (0..WORDS).map(|_| AtomicU64::new(0)).collect();
        Region::new(Box::leak(v.into_boxed_slice()))
    }

    /// Header word `i`.
    pub(crate) fn hdr(&self, i: usize) -> &AtomicU64 {
        &self.0[i]
    }

    /// Word `w` of slot `s` (both taken modulo their bounds: never out of range).
    pub fn slot(&self, s: usize, w: usize) -> &AtomicU64 {
        &self.0[HEADER_WORDS + (s % SLOTS) * SLOT_WORDS + (w % SLOT_WORDS)]
    }

    /// Every word, for tests that corrupt the state.
    pub fn words(&self) -> &'static [AtomicU64] {
        self.0
    }

    /// Loads header word `i` (relaxed).
    pub(crate) fn load(&self, i: usize) -> u64 {
        self.0[i].load(Ordering::Relaxed)
    }
}
