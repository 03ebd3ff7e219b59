//! Cloud Hypervisor's arguments.

use std::path::Path;

/// Guest RAM of `mib` MiB, shared.
pub fn shared_memory(mib: u64) -> Vec<String> {
    vec!["--memory".into(), format!("size={mib}M,shared=on")]
}

/// `--fs tag=TAG,socket=SOCK,num_queues=1,queue_size=N`.
pub fn fs_device(socket: &Path, tag: &str, queue_size: u32) -> Vec<String> {
    vec![
        "--fs".into(),
        format!(
            "tag={tag},socket={},num_queues=1,queue_size={queue_size}",
            socket.display()
        ),
    ]
}
