//! Cloud Hypervisor's arguments.

use std::path::Path;

/// Guest RAM of `mib` MiB, shared.
pub fn shared_memory(mib: u64) -> Vec<String> {
    vec!["--memory".into(), format!("size={mib}M,shared=on")]
}

/// `--fs tag=TAG,socket=SOCK,num_queues=1,queue_size=N`.
pub fn fs_device(socket: &Path, tag: &str, queue_size: u32) -> Vec<String> {
    fs_device_with_queues(socket, tag, queue_size, 1)
}

/// `--fs tag=TAG,socket=SOCK,num_queues=R,queue_size=N`: Cloud Hypervisor's `num_queues`
/// counts request queues (it adds hiprio itself).
pub fn fs_device_with_queues(
    socket: &Path,
    tag: &str,
    queue_size: u32,
    request_queues: u32,
) -> Vec<String> {
    vec![
        "--fs".into(),
        format!(
            "tag={tag},socket={},num_queues={request_queues},queue_size={queue_size}",
            socket.display()
        ),
    ]
}
