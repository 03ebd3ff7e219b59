//! A node-wide budget shared by several processes: the group.
//!
//! Each member maps one shared file ([`file`]) and keeps no descriptor. The file holds the
//! group's budget, two shared token buckets ([`shared`]) and a fixed array of member slots
//! ([`layout`]). A member with demand holds a slot and renews its lease every [`TICK`]; it
//! publishes its weight and demand there and computes, from the live slots, its weighted
//! max-min share ([`share`]), which it enforces on itself with a local bucket; the shared
//! buckets are the hard cap for all. Nothing is locked: a killed member's slot stops counting
//! when its lease expires ([`LEASE`]), and an idle member renews nothing and wakes no one.

pub mod file;
pub mod layout;
mod member;
pub mod share;
pub mod shared;

pub use layout::{GroupBucket, Region, FILE_SIZE, SLOTS};
pub use member::{live, Budget, Member, LEASE, LIVE_FACTOR, MIN_DEMAND, TICK};
