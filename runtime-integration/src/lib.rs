//! Runtime integration (in progress).
