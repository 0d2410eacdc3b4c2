//! cgroup management for garden containers (v1 hybrid and v2).
