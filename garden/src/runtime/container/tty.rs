//! `run` of a spec with a terminal but no console socket, as runc does it:
//! we are our own console socket, receive the pty master, and copy between
//! it and our stdio (our terminal in raw mode if stdin is one).

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{self, SetArg, Termios};

use super::super::sys;
use super::ContainerError;

/// A console socket of our own, removed when dropped.
pub struct ConsoleListener {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleListener {
    /// Listens on `<dir>/.<id>.console` (in the state root, which we own;
    /// the dot keeps it apart from container directories).
    pub fn bind(dir: &Path, id: &str) -> Result<ConsoleListener, ContainerError> {
        let path = dir.join(format!(".{id}.console"));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|source| ContainerError::Console {
            step: "binding the console socket",
            source,
        })?;
        Ok(ConsoleListener { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pty master init sent during `create` (already queued on the
    /// connection by then).
    pub fn receive_master(&self) -> Result<OwnedFd, ContainerError> {
        let err = |step| {
            move |e: nix::Error| ContainerError::Console {
                step,
                source: e.into(),
            }
        };
        let (conn, _) = self
            .listener
            .accept()
            .map_err(|source| ContainerError::Console {
                step: "accepting the console connection",
                source,
            })?;
        let mut name = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(err("receiving the pty master"))?;
        for cmsg in msg.cmsgs().map_err(err("reading the control message"))? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                if let Some(master) = fds.first().and_then(|&fd| sys::own_fd(fd)) {
                    return Ok(master);
                }
            }
        }
        Err(ContainerError::Console {
            step: "receiving the pty master",
            source: std::io::Error::other("no descriptor in the message"),
        })
    }
}

impl Drop for ConsoleListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copies between our stdio and the pty master until the container's side
/// closes; restores our terminal when dropped.
pub struct Proxy {
    output: Option<JoinHandle<()>>,
    saved: Option<Termios>,
}

impl Proxy {
    pub fn start(master: OwnedFd) -> Result<Proxy, ContainerError> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(orig) = &saved {
            // Our terminal's size, then raw mode: the container's pty does
            // the line discipline.
            if let Some((rows, cols)) = sys::window_size(stdin.as_raw_fd()) {
                let _ = sys::set_window_size(master.as_raw_fd(), rows, cols);
            }
            let mut raw = orig.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        let clone = |f: &OwnedFd| {
            f.try_clone().map_err(|source| ContainerError::Console {
                step: "duplicating the pty master",
                source,
            })
        };
        let mut to_container = std::fs::File::from(clone(&master)?);
        let mut from_container = std::fs::File::from(master);
        // Input runs until our stdin ends; the thread is not joined, as a
        // read of a terminal cannot be interrupted.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_container);
        });
        let output = std::thread::spawn(move || {
            let mut out = std::io::stdout().lock();
            let mut buf = [0u8; 8192];
            // EIO once the program and everything else holding the slave
            // have exited.
            while let Ok(n) = from_container.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = out.flush();
            }
        });
        Ok(Proxy {
            output: Some(output),
            saved,
        })
    }

    /// Waits until the container's output is all copied.
    pub fn finish(mut self) {
        if let Some(h) = self.output.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(orig) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, orig);
        }
    }
}
