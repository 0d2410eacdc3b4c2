//! The crate's only raw system call (its only `unsafe`).

use std::io;
use std::os::fd::AsRawFd;

use nix::libc;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

/// `ETHTOOL_GLINK` from `<linux/ethtool.h>`: get the link state.
const ETHTOOL_GLINK: u32 = 0x0000_000a;

/// `struct ethtool_value` from `<linux/ethtool.h>`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Asks for `name`'s link state (ethtool's `ETHTOOL_GLINK`). The kernel
/// handles a device's pending carrier event right then, instead of up to a
/// second later from its rate-limited linkwatch work: a new bridge passes
/// no packets (its queue discipline is not attached) until that event is
/// handled. Returns whether the link is up.
pub fn sync_link_state(name: &str) -> io::Result<bool> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?}"),
        ));
    }
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut value = EthtoolValue {
        cmd: ETHTOOL_GLINK,
        data: 0,
    };
    let mut request = libc::ifreq {
        ifr_name: [0; libc::IFNAMSIZ],
        ifr_ifru: libc::__c_anonymous_ifr_ifru {
            ifru_data: (&raw mut value).cast(),
        },
    };
    for (dst, src) in request.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `fd` is an open socket for the whole call; `request` is a
    // valid, NUL-terminated `struct ifreq` whose `ifru_data` points to
    // `value`, a `struct ethtool_value` that outlives the call; for
    // ETHTOOL_GLINK the kernel reads `cmd` and writes only `data`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &raw mut request) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.data != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused_and_loopback_answers() {
        assert_eq!(
            sync_link_state("").map_err(|e| e.kind()),
            Err(io::ErrorKind::InvalidInput)
        );
        assert!(sync_link_state(&"x".repeat(16)).is_err());
        assert!(sync_link_state("no-such-if0").is_err());
        assert_eq!(sync_link_state("lo").ok(), Some(true));
    }
}
