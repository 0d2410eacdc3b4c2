//! systemd's readiness protocol: a datagram of `KEY=value` lines to the
//! unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the
//! abstract namespace). Without the variable, nothing is sent.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (e.g. `READY=1`); returns whether it was sent. Failures
/// are logged: readiness must never stop the agent.
pub fn notify(state: &str) -> bool {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let target = target.to_string_lossy().into_owned();
    let address = match target.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&target),
    };
    let sent = address.and_then(|address| {
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(state.as_bytes(), &address)
    });
    match sent {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(%error, socket = %target, state, "sd_notify failed");
            false
        }
    }
}
