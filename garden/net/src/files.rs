//! The `/etc/hosts` and `/etc/resolv.conf` a container gets. The daemon
//! writes these strings into the container's root file system.

use std::fmt::Write;
use std::net::Ipv4Addr;

/// Garden's `/etc/hosts`: localhost, and the container's address under its
/// handle (Garden's hostname).
pub fn hosts_file(container_ip: Ipv4Addr, hostname: &str) -> String {
    format!("127.0.0.1 localhost\n{container_ip} {hostname}\n")
}

/// A `resolv.conf` naming `servers` (see
/// [`crate::NetConfig::effective_dns_servers`]); empty without servers.
pub fn resolv_conf(servers: &[Ipv4Addr]) -> String {
    let mut out = String::new();
    for server in servers {
        let _ = writeln!(out, "nameserver {server}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents() {
        let ip = Ipv4Addr::new(10, 254, 0, 1);
        assert_eq!(
            hosts_file(ip, "app-1"),
            "127.0.0.1 localhost\n10.254.0.1 app-1\n"
        );
        assert_eq!(
            resolv_conf(&[Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(1, 1, 1, 1)]),
            "nameserver 10.0.0.2\nnameserver 1.1.1.1\n"
        );
        assert_eq!(resolv_conf(&[]), "");
    }
}
