//! `vmm-args`: the command-line arguments that give a VMM a vhost-user-fs device and the
//! shared guest memory vhost-user needs (the daemon maps guest RAM, so it must be a shared
//! file-backed region of the VM's size).
//!
//! One definition used by `runtime-integration` (which wires the devices Kata would) and the
//! guest test harness `guest-vm` (which boots QEMU against the daemon under test). No
//! dependencies: strings in, strings out.
//!
//! - QEMU: `-object memory-backend-memfd,id=mem,size=<M>M,share=on -numa node,memdev=mem`
//!   and `-chardev socket,id=<id>,path=<sock> -device vhost-user-fs-pci,chardev=<id>,tag=<tag>,queue-size=<N>`
//!   (plus `,num-request-queues=<R>` for R > 1 request queues);
//! - Cloud Hypervisor: `--memory size=<M>M,shared=on` and
//!   `--fs tag=<tag>,socket=<sock>,num_queues=<R>,queue_size=<N>`.

#![deny(missing_docs)]

pub mod clh;
pub mod qemu;
