//! The parent <-> child protocol during container set-up.
//!
//! One `SOCK_SEQPACKET` socket pair: each message is one JSON datagram, so the
//! children report failures to the parent as data (which step, which path,
//! which errno) instead of a bare exit code. Both ends are close-on-exec, so
//! a successful `execve` in a child reads as end-of-file in the parent.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use super::timings::Timings;

/// Largest message we expect; errors and timings are far smaller.
const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("creating the set-up socket pair: {0}")]
    Create(#[source] nix::Error),
    #[error("sending {what} over the set-up channel: {source}")]
    Send {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("receiving from the set-up channel: {0}")]
    Receive(#[source] nix::Error),
    #[error("malformed message on the set-up channel: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("the container's set-up process exited without saying why (while waiting for {0})")]
    Closed(&'static str),
    #[error("unexpected message {got:?} while waiting for {wanted}")]
    Unexpected { wanted: &'static str, got: Message },
}

/// Everything the parent and its children say to each other.
#[derive(Debug, Serialize, Deserialize)]
pub enum Message {
    /// Stage 1 created the user namespace: the parent writes the id maps.
    UserNamespaceReady,
    /// The parent has done its part (cgroup joined, id maps written).
    Proceed,
    /// The container's init, as seen from the parent's pid namespace.
    InitPid(i32),
    /// Init mounted everything but has not pivoted: time for the
    /// prestart/createRuntime hooks, run by the parent.
    RuntimeHooks,
    /// The parent ran its hooks; carries the OCI state for the container's
    /// own hooks.
    HooksDone(String),
    /// Init finished set-up and waits for `start`.
    Ready(Timings),
    /// A child failed; the text names the step, the path and the errno.
    Failed(String),
}

impl Message {
    fn name(&self) -> &'static str {
        match self {
            Message::UserNamespaceReady => "user-namespace-ready",
            Message::Proceed => "proceed",
            Message::InitPid(_) => "init-pid",
            Message::RuntimeHooks => "runtime-hooks",
            Message::HooksDone(_) => "hooks-done",
            Message::Ready(_) => "ready",
            Message::Failed(_) => "failed",
        }
    }
}

/// One end of the set-up channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// Creates the pair: (parent end, child end).
pub fn pair() -> Result<(Channel, Channel), ChannelError> {
    let (a, b) = socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(ChannelError::Create)?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, msg: &Message) -> Result<(), ChannelError> {
        // Serialising these plain enums cannot fail.
        let bytes = serde_json::to_vec(msg).unwrap_or_default();
        socket::send(self.fd.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL)
            .map(drop)
            .map_err(|source| ChannelError::Send {
                what: msg.name(),
                source,
            })
    }

    /// Receives one message; `None` at end-of-file (every peer closed or
    /// exec'd).
    pub fn recv(&self) -> Result<Option<Message>, ChannelError> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = loop {
            match socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other.map_err(ChannelError::Receive)?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n])
            .map(Some)
            .map_err(ChannelError::Decode)
    }

    /// Receives a message, turning end-of-file into an error that says what
    /// the parent was waiting for.
    pub fn expect(&self, wanted: &'static str) -> Result<Message, ChannelError> {
        self.recv()?.ok_or(ChannelError::Closed(wanted))
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
