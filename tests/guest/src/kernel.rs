//! A guest kernel: its image, release and modules folder (below the stacks and the
//! initramfs builder, which both name one).

use std::path::{Path, PathBuf};

/// A guest kernel image, its version and its modules folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Kernel {
    /// Path of the bzImage.
    pub path: PathBuf,
    /// Kernel release, e.g. `6.1.0-56-cloud-amd64`.
    pub version: String,
    /// Its modules: `/lib/modules/<version>` for a host kernel. It may lack `modules.dep`
    /// when everything the guest needs is built in (`modules.builtin`).
    pub modules: PathBuf,
}

impl Kernel {
    /// A kernel at `path` whose modules live in `/lib/modules/<version>`.
    pub fn new(path: impl Into<PathBuf>, version: impl Into<String>) -> Self {
        let version = version.into();
        Self {
            path: path.into(),
            modules: Path::new("/lib/modules").join(&version),
            version,
        }
    }

    /// The same kernel with its modules in `dir` (e.g. a kernel package unpacked elsewhere).
    pub fn with_modules_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.modules = dir.into();
        self
    }
}
