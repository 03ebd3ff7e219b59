//! Unit tests of the split-ring driver.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;
use crate::error::Error;
use crate::memory::GuestMem;

#[test]
fn layout_offsets() {
    let l = QueueLayout::new(0, 256);
    assert_eq!(l.desc, 0);
    assert_eq!(l.avail, 4096);
    assert_eq!(l.used, 8192);
    assert_eq!(l.avail_ring_addr(3), 4096 + 4 + 6);
    assert_eq!(l.used_event_addr(), 4096 + 4 + 512);
    assert_eq!(l.used_elem_addr(1), 8192 + 4 + 8);
    assert_eq!(l.avail_event_addr(), 8192 + 4 + 2048);
    assert_eq!(l.end(), QueueLayout::total_len(256));
    let l = QueueLayout::new(1, 1024);
    assert_eq!(l.desc, 4096);
    assert_eq!(l.avail, 4096 + 16384);
    assert_eq!(std::mem::size_of::<RawDescriptor>(), 16);
}

#[test]
fn need_event_matches_spec() {
    assert!(need_event(0, 1, 0));
    assert!(!need_event(5, 3, 2));
    assert!(need_event(2, 3, 2));
    assert!(need_event(65535, 0, 65535));
}

/// Play the device by hand: the driver's ring writes land where virtio says.
#[test]
fn chain_publish_and_used() {
    let mem = GuestMem::new(1 << 20).unwrap();
    let l = QueueLayout::new(0, 8);
    let mut q = SplitQueue::new(&mem, 1, l, true).unwrap();
    let t = q
        .push_chain(
            &mem,
            &[(0x10000, 40, 0), (0x20000, 16, VIRTQ_DESC_F_WRITE)],
            ChainData::default(),
        )
        .unwrap();
    assert_eq!(
        mem.load_u16(l.avail_idx_addr(), Ordering::Acquire).unwrap(),
        1
    );
    let head = mem
        .load_u16(l.avail_ring_addr(0), Ordering::Acquire)
        .unwrap();
    assert_eq!(head, t.head);
    let d0 = q.read_desc(&mem, head).unwrap();
    assert_eq!(
        (d0.addr, d0.len, d0.flags),
        (0x10000, 40, VIRTQ_DESC_F_NEXT)
    );
    let d1 = q.read_desc(&mem, d0.next).unwrap();
    assert_eq!(
        (d1.addr, d1.len, d1.flags),
        (0x20000, 16, VIRTQ_DESC_F_WRITE)
    );
    assert_eq!(q.free_descriptors(), 6);

    // Kick: avail_event is 0 and we moved 0 -> 1, so a kick is due.
    q.notify(&mem).unwrap();
    assert_eq!(q.kick_fd().read().unwrap(), 1);

    // Nothing used yet: times out quickly and publishes used_event.
    let e = q
        .wait_used(&mem, Instant::now() + Duration::from_millis(20))
        .unwrap_err();
    assert!(e.is_timeout());
    assert_eq!(
        mem.load_u16(l.used_event_addr(), Ordering::Acquire)
            .unwrap(),
        0
    );

    // Device returns it.
    mem.write_obj(l.used_elem_addr(0), head as u32).unwrap();
    mem.write_obj(l.used_elem_addr(0) + 4, 16u32).unwrap();
    mem.store_u16(l.used_idx_addr(), 1, Ordering::Release)
        .unwrap();
    let u = q
        .wait_used(&mem, Instant::now() + Duration::from_secs(1))
        .unwrap();
    assert_eq!(u.token, t);
    assert_eq!(u.len, 16);
    assert_eq!(q.free_descriptors(), 8);

    // A bogus used id is reported, not trusted.
    mem.write_obj(l.used_elem_addr(1), 7u32).unwrap();
    mem.store_u16(l.used_idx_addr(), 2, Ordering::Release)
        .unwrap();
    assert!(matches!(
        q.poll_used(&mem),
        Err(Error::BadUsedId { id: 7, .. })
    ));
}

#[test]
fn queue_full_and_bad_size() {
    let mem = GuestMem::new(1 << 20).unwrap();
    assert!(SplitQueue::new(&mem, 0, QueueLayout::new(0, 100), false).is_err());
    let mut q = SplitQueue::new(&mem, 0, QueueLayout::new(0, 2), false).unwrap();
    let descs = [(0x10000, 1, 0); 3];
    assert!(matches!(
        q.push_chain(&mem, &descs, ChainData::default()),
        Err(Error::QueueFull { .. })
    ));
    assert_eq!(q.free_descriptors(), 2);
}
