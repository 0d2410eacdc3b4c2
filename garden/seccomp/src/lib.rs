//! seccomp profiles for garden containers.
