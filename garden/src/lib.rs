//! garden: the container runtime.
