//! Guest memory shared with the daemon, and a buffer allocator inside it.
//!
//! The "guest" RAM is one memfd mapped `MAP_SHARED` at guest physical address 0. The
//! daemon receives the memfd with `SET_MEM_TABLE` and maps it too, so whatever we
//! write is visible to it and vice versa.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::Ordering;

use vhost::VhostUserMemoryRegionInfo;
use vm_memory::{
    ByteValued, Bytes, FileOffset, GuestAddress, GuestMemory, GuestMemoryMmap, GuestMemoryRegion,
};

use crate::error::{Error, Result};

/// A fresh memfd of `len` bytes (a backing file for a memory region, maybe a hostile one).
pub fn memfd(len: u64) -> Result<File> {
    // SAFETY: memfd_create with a valid NUL-terminated name; the result is checked.
    let fd = unsafe { libc::memfd_create(c"vufs-frontend-guest".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::Memory(format!(
            "memfd_create: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: fd is a freshly created descriptor we own exclusively.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(len)
        .map_err(|e| Error::Memory(format!("ftruncate memfd: {e}")))?;
    Ok(file)
}

/// Alignment of every buffer handed out by [`BufferPool`].
pub const BUF_ALIGN: u64 = 64;

/// memfd-backed guest memory, one region starting at guest address 0.
pub struct GuestMem {
    mem: GuestMemoryMmap<()>,
    file: File,
    size: usize,
    host_base: u64,
}

impl std::fmt::Debug for GuestMem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestMem")
            .field("size", &self.size)
            .field("host_base", &format_args!("{:#x}", self.host_base))
            .finish()
    }
}

impl GuestMem {
    /// Create `size` bytes of guest memory (rounded up to 4 KiB) backed by a fresh memfd.
    pub fn new(size: usize) -> Result<Self> {
        if size == 0 {
            return Err(Error::InvalidArgument("guest memory size 0".into()));
        }
        let size = size.div_ceil(4096) * 4096;
        let file = memfd(size as u64)?;
        let backing = file
            .try_clone()
            .map_err(|e| Error::Memory(format!("dup memfd: {e}")))?;
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files([(
            GuestAddress(0),
            size,
            Some(FileOffset::new(backing, 0)),
        )])
        .map_err(|e| Error::Memory(format!("mmap guest memory: {e}")))?;
        let host_base =
            mem.get_host_address(GuestAddress(0))
                .map_err(|e| Error::Memory(format!("host address: {e}")))? as u64;
        Ok(GuestMem {
            mem,
            file,
            size,
            host_base,
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The underlying vm-memory object.
    pub fn mmap(&self) -> &GuestMemoryMmap<()> {
        &self.mem
    }

    /// The memfd backing guest memory.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Frontend virtual address of guest address `gpa` (what vring addresses are given in).
    pub fn host_addr(&self, gpa: u64) -> u64 {
        self.host_base.wrapping_add(gpa)
    }

    /// The region description for `SET_MEM_TABLE`.
    pub fn region_info(&self) -> VhostUserMemoryRegionInfo {
        let region = self.mem.iter().next();
        let size = region.map(|r| r.len()).unwrap_or(self.size as u64);
        VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: size,
            userspace_addr: self.host_base,
            mmap_offset: 0,
            mmap_handle: self.file.as_raw_fd(),
        }
    }

    /// Whether `[addr, addr+len)` lies inside guest memory.
    pub fn contains(&self, addr: u64, len: usize) -> bool {
        addr.checked_add(len as u64)
            .is_some_and(|end| end <= self.size as u64)
    }

    fn check(&self, addr: u64, len: usize) -> Result<()> {
        if self.contains(addr, len) {
            Ok(())
        } else {
            Err(Error::GuestAccess { addr, len })
        }
    }

    /// Copy `data` to guest address `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<()> {
        self.check(addr, data.len())?;
        self.mem
            .write_slice(data, GuestAddress(addr))
            .map_err(|_| Error::GuestAccess {
                addr,
                len: data.len(),
            })
    }

    /// Copy from guest address `addr` into `buf`.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        self.check(addr, buf.len())?;
        self.mem
            .read_slice(buf, GuestAddress(addr))
            .map_err(|_| Error::GuestAccess {
                addr,
                len: buf.len(),
            })
    }

    /// Fill `[addr, addr+len)` with `byte`.
    pub fn fill(&self, addr: u64, len: usize, byte: u8) -> Result<()> {
        self.check(addr, len)?;
        let slice = self
            .mem
            .get_slice(GuestAddress(addr), len)
            .map_err(|_| Error::GuestAccess { addr, len })?;
        // Chunked writes keep this allocation-free for large buffers.
        let chunk = [byte; 4096];
        let mut off = 0;
        while off < len {
            let n = (len - off).min(chunk.len());
            slice
                .write_slice(&chunk[..n], off)
                .map_err(|_| Error::GuestAccess { addr, len })?;
            off += n;
        }
        Ok(())
    }

    /// Write a plain-old-data object at `addr`.
    pub fn write_obj<T: ByteValued>(&self, addr: u64, val: T) -> Result<()> {
        self.write(addr, val.as_slice())
    }

    /// Read a plain-old-data object from `addr`.
    pub fn read_obj<T: ByteValued + Default>(&self, addr: u64) -> Result<T> {
        let mut v = T::default();
        self.read(addr, v.as_mut_slice())?;
        Ok(v)
    }

    /// Atomic 16-bit store (ring indices).
    pub fn store_u16(&self, addr: u64, val: u16, order: Ordering) -> Result<()> {
        self.mem
            .store(val, GuestAddress(addr), order)
            .map_err(|_| Error::GuestAccess { addr, len: 2 })
    }

    /// Atomic 16-bit load (ring indices).
    pub fn load_u16(&self, addr: u64, order: Ordering) -> Result<u16> {
        self.mem
            .load(GuestAddress(addr), order)
            .map_err(|_| Error::GuestAccess { addr, len: 2 })
    }
}

/// A buffer allocated from a [`BufferPool`]: guest address and capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestBuf {
    /// Guest address (64-byte aligned).
    pub addr: u64,
    /// Usable length in bytes (at least what was asked for).
    pub len: u64,
}

/// First-fit allocator with coalescing over a fixed range of guest memory.
///
/// All guest memory is mapped once at start-up; this only does bookkeeping, so
/// allocating per request is cheap (a `BTreeMap` walk over a handful of free ranges).
#[derive(Debug)]
pub struct BufferPool {
    start: u64,
    end: u64,
    /// start -> len of free ranges; never adjacent (always coalesced).
    free: BTreeMap<u64, u64>,
    in_use: u64,
}

impl BufferPool {
    /// Manage `[start, end)`; `start` is rounded up to [`BUF_ALIGN`].
    pub fn new(start: u64, end: u64) -> Self {
        let start = start.div_ceil(BUF_ALIGN) * BUF_ALIGN;
        let mut free = BTreeMap::new();
        if end > start {
            free.insert(start, end - start);
        }
        BufferPool {
            start,
            end,
            free,
            in_use: 0,
        }
    }

    /// Bytes currently allocated.
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    /// Total bytes managed.
    pub fn capacity(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Allocate at least `len` bytes (a zero-length request still gets [`BUF_ALIGN`]).
    pub fn alloc(&mut self, len: usize) -> Result<GuestBuf> {
        let want = (len.max(1) as u64).div_ceil(BUF_ALIGN) * BUF_ALIGN;
        let found = self
            .free
            .iter()
            .find(|(_, &flen)| flen >= want)
            .map(|(&s, &l)| (s, l));
        let (s, l) = found.ok_or(Error::OutOfGuestMemory { wanted: len })?;
        self.free.remove(&s);
        if l > want {
            self.free.insert(s + want, l - want);
        }
        self.in_use += want;
        Ok(GuestBuf { addr: s, len: want })
    }

    /// Return a buffer. Buffers not from this pool (or double frees) are ignored.
    pub fn free(&mut self, buf: GuestBuf) {
        let (mut s, mut l) = (buf.addr, buf.len);
        if l == 0 || s < self.start || s.saturating_add(l) > self.end {
            return;
        }
        // Reject overlap with a free range (double free).
        if let Some((&ps, &pl)) = self.free.range(..=s).next_back() {
            if ps + pl > s {
                return;
            }
        }
        if let Some((&ns, _)) = self.free.range(s..).next() {
            if ns < s + l {
                return;
            }
        }
        self.in_use = self.in_use.saturating_sub(l);
        if let Some((&ps, &pl)) = self.free.range(..s).next_back() {
            if ps + pl == s {
                self.free.remove(&ps);
                s = ps;
                l += pl;
            }
        }
        if let Some(&nl) = self.free.get(&(s + l)) {
            self.free.remove(&(s + l));
            l += nl;
        }
        self.free.insert(s, l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_alloc_free_coalesce() {
        let mut p = BufferPool::new(100, 128 + 64 * 1024);
        let a = p.alloc(10).unwrap();
        assert_eq!(a.addr % BUF_ALIGN, 0);
        assert_eq!(a.len, 64);
        let b = p.alloc(4096).unwrap();
        let c = p.alloc(1).unwrap();
        assert!(b.addr >= a.addr + a.len && c.addr >= b.addr + b.len);
        p.free(b);
        // Reuses the hole.
        let d = p.alloc(4000).unwrap();
        assert_eq!(d.addr, b.addr);
        p.free(d);
        p.free(a);
        p.free(c);
        p.free(c); // double free ignored
        assert_eq!(p.in_use(), 0);
        assert_eq!(p.free.len(), 1);
        let all = p.alloc(p.capacity() as usize).unwrap();
        assert!(p.alloc(1).is_err());
        p.free(all);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn guest_mem_roundtrip() {
        let m = GuestMem::new(1 << 20).unwrap();
        m.write(4096, b"hello").unwrap();
        let mut b = [0u8; 5];
        m.read(4096, &mut b).unwrap();
        assert_eq!(&b, b"hello");
        assert!(m.write((1 << 20) - 2, b"abc").is_err());
        m.store_u16(10, 0xbeef, Ordering::Release).unwrap();
        assert_eq!(m.load_u16(10, Ordering::Acquire).unwrap(), 0xbeef);
        let info = m.region_info();
        assert_eq!(info.memory_size, 1 << 20);
        assert_eq!(m.host_addr(16), info.userspace_addr + 16);
    }
}
