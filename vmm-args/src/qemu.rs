//! QEMU's arguments.

use std::path::Path;

/// Guest RAM of `mib` MiB as a shared memfd backend bound to NUMA node 0.
pub fn shared_memory(mib: u64) -> Vec<String> {
    vec![
        "-object".into(),
        format!("memory-backend-memfd,id=mem,size={mib}M,share=on"),
        "-numa".into(),
        "node,memdev=mem".into(),
    ]
}

/// One vhost-user-fs device on a daemon's socket.
#[derive(Clone, Copy, Debug)]
pub struct FsDevice<'a> {
    /// The chardev id (unique per device on a command line).
    pub chardev_id: &'a str,
    /// The daemon's vhost-user socket.
    pub socket: &'a Path,
    /// The mount tag the guest sees.
    pub tag: &'a str,
    /// Virtqueue size.
    pub queue_size: u32,
    /// Extra `-chardev socket` options (e.g. `reconnect=1`); empty for none.
    pub chardev_opts: &'a str,
}

/// `-chardev socket,id=ID,path=SOCK[,OPTS] -device vhost-user-fs-pci,chardev=ID,tag=TAG,queue-size=N`.
pub fn fs_device(d: &FsDevice<'_>) -> Vec<String> {
    let mut chardev = format!("socket,id={},path={}", d.chardev_id, d.socket.display());
    if !d.chardev_opts.is_empty() {
        chardev.push(',');
        chardev.push_str(d.chardev_opts);
    }
    vec![
        "-chardev".into(),
        chardev,
        "-device".into(),
        format!(
            "vhost-user-fs-pci,chardev={},tag={},queue-size={}",
            d.chardev_id, d.tag, d.queue_size
        ),
    ]
}
