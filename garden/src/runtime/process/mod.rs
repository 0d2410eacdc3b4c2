//! The processes of container creation, youki-style by stage: the parent
//! (`create`, `exec`), stage 1 (namespaces), init (pid 1), and the final
//! steps of the container's program (`user`).

pub mod channel;
mod console;
pub mod context;
pub mod create;
pub mod exec;
mod init;
pub mod resume;
mod stage1;
pub mod timings;
pub mod user;
