//! `process.terminal`: a pty created inside the container (its devpts), the
//! master sent to the caller over `--console-socket` as runc does.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::Mode;

use super::super::sys;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{step}: {source}")]
    Pty {
        step: &'static str,
        #[source]
        source: Errno,
    },
    #[error("sending the terminal to the console socket: {0}")]
    Send(#[source] Errno),
}

/// A pty pair inside the container.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    pub slave_path: PathBuf,
}

/// Opens a new pty from the container's `/dev/ptmx`.
pub fn open_pty() -> Result<Pty, ConsoleError> {
    let err = |step| move |source| ConsoleError::Pty { step, source };
    let master = open(
        "/dev/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err("opening /dev/ptmx"))?;
    let n = sys::unlock_pty(master.as_raw_fd()).map_err(err("unlocking the pty"))?;
    Ok(Pty {
        master,
        slave_path: PathBuf::from(format!("/dev/pts/{n}")),
    })
}

/// Opens the pty's peer for the process's stdio.
pub fn open_slave(pty: &Pty) -> Result<OwnedFd, ConsoleError> {
    open(
        &pty.slave_path,
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        Mode::empty(),
    )
    .map_err(|source| ConsoleError::Pty {
        step: "opening the pty peer",
        source,
    })
}

/// Sends `master` over the connected unix socket `socket` (SCM_RIGHTS), with
/// the pty's name as the payload, as runc's console protocol expects.
pub fn send_master(socket: RawFd, master: &OwnedFd, name: &str) -> Result<(), ConsoleError> {
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(socket, &iov, &cmsg, MsgFlags::empty(), None)
        .map(drop)
        .map_err(ConsoleError::Send)
}
