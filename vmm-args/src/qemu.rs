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

/// `-chardev socket,id=ID,path=SOCK[,OPTS] -device vhost-user-fs-pci,chardev=ID,tag=TAG,queue-size=N`
/// (one request queue).
pub fn fs_device(d: &FsDevice<'_>) -> Vec<String> {
    fs_device_with_queues(d, 1)
}

/// [`fs_device`] with `request_queues` request queues: `num-request-queues=R` is added when
/// R > 1 (QEMU's default is 1). A Linux guest uses more than one from 6.11 on, spread over
/// its CPUs.
pub fn fs_device_with_queues(d: &FsDevice<'_>, request_queues: u32) -> Vec<String> {
    let mut chardev = format!("socket,id={},path={}", d.chardev_id, d.socket.display());
    if !d.chardev_opts.is_empty() {
        chardev.push(',');
        chardev.push_str(d.chardev_opts);
    }
    let mut device = format!(
        "vhost-user-fs-pci,chardev={},tag={},queue-size={}",
        d.chardev_id, d.tag, d.queue_size
    );
    if request_queues > 1 {
        device.push_str(&format!(",num-request-queues={request_queues}"));
    }
    vec!["-chardev".into(), chardev, "-device".into(), device]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_queues_beyond_one_are_named() {
        let d = FsDevice {
            chardev_id: "c",
            socket: Path::new("/s"),
            tag: "t",
            queue_size: 1024,
            chardev_opts: "",
        };
        assert_eq!(
            fs_device(&d)[3],
            "vhost-user-fs-pci,chardev=c,tag=t,queue-size=1024"
        );
        assert_eq!(
            fs_device_with_queues(&d, 4)[3],
            "vhost-user-fs-pci,chardev=c,tag=t,queue-size=1024,num-request-queues=4"
        );
    }
}
