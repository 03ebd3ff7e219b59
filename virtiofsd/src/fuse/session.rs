//! The FUSE session one device serves: INIT first and once, and the largest READ and WRITE
//! it negotiated, which the request wall checks every READ and WRITE against.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use fuse_backend_rs::abi::fuse_abi::FsOptions;
use fuse_backend_rs::api::server::MAX_REQ_PAGES;

/// FUSE session state shared by every queue of one device: INIT must come first, once; it
/// negotiates the largest READ and WRITE the session may send.
#[derive(Debug, Default)]
pub struct Session {
    initialized: AtomicBool,
    max_read: AtomicU32,
    max_write: AtomicU32,
}

/// The guest kernel's READ limit when INIT did not negotiate MAX_PAGES
/// (`FUSE_DEFAULT_MAX_PAGES_PER_REQ`).
const DEFAULT_MAX_PAGES: u32 = 32;
/// The library's `max_write` reply without BIG_WRITES or MAX_PAGES.
const SMALL_MAX_WRITE: u32 = 4096;

impl Session {
    /// The largest READ and WRITE payloads INIT negotiated with these guest flags, as the
    /// library replies: `max_pages` ([`MAX_REQ_PAGES`], 1 MiB with 4 KiB pages) × page size with
    /// MAX_PAGES, else the kernel's default 32 pages for READ and 4 KiB (1 MiB with BIG_WRITES)
    /// for WRITE. Never more than 1 MiB with 4 KiB pages.
    pub fn negotiated_max(guest_flags: u32) -> (u32, u32) {
        let page = fuse_backend_rs::transport::pagesize() as u32;
        let flags = FsOptions::from_bits_truncate(u64::from(guest_flags));
        let full = u32::from(MAX_REQ_PAGES) * page;
        if flags.contains(FsOptions::MAX_PAGES) {
            (full, full)
        } else if flags.contains(FsOptions::BIG_WRITES) {
            (DEFAULT_MAX_PAGES * page, full)
        } else {
            (DEFAULT_MAX_PAGES * page, SMALL_MAX_WRITE)
        }
    }

    /// The largest READ size and WRITE payload accepted in this session (0 before INIT).
    pub fn max_io(&self) -> (u32, u32) {
        (
            self.max_read.load(Ordering::Acquire),
            self.max_write.load(Ordering::Acquire),
        )
    }

    /// INIT served with these guest flags: the session starts with their limits.
    pub(crate) fn start(&self, guest_flags: u32) {
        let (r, w) = Session::negotiated_max(guest_flags);
        self.max_read.store(r, Ordering::Release);
        self.max_write.store(w, Ordering::Release);
        self.initialized.store(true, Ordering::Release);
    }

    /// Forgets INIT, e.g. after DESTROY or when the frontend stops the rings (guest reboot).
    pub fn reset(&self) {
        self.initialized.store(false, Ordering::Release);
    }

    /// Whether INIT has been served since the last reset.
    pub fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::Acquire)
    }
}
