//! Helpers for garden-net's privileged tests: network namespaces made by
//! the test (held open by a file descriptor, so they vanish with the test
//! process), TCP servers and clients inside them, an "outside" namespace
//! wired to the host by a veth, and a guard that removes the test's nft
//! table and links even when the test panics.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use garden_net::{NetConfig, Netns};
use nix::sched::CloneFlags;

/// How long a client waits before calling a destination unreachable.
pub const BLOCKED_AFTER: Duration = Duration::from_millis(400);
/// How long a client waits when it expects an answer: a new veth may pass
/// no traffic for up to a second (the kernel's linkwatch delays carrier
/// events under churn, and the bridge port waits for them).
pub const REACHED_WITHIN: Duration = Duration::from_secs(3);

/// Fails the test loudly when not root (these tests need CAP_NET_ADMIN).
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "garden-net tests need root (CAP_NET_ADMIN)"
    );
    assert!(
        Command::new("nft")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "nft is missing: install nftables (scripts/deps.sh)"
    );
}

/// A config whose names, address pool and NetIn ports belong to this test
/// only: NetIn rules apply to every local address of the host, so tests
/// running at the same time must not map the same host ports.
pub fn test_config(tag: &str, pool: &str, first_port: u16) -> NetConfig {
    NetConfig {
        pool: pool.parse().expect("test pool"),
        port_pool_start: first_port,
        port_pool_size: 100,
        dns_servers: vec![Ipv4Addr::new(10, 0, 0, 2)],
        mtu: 1500,
        table: format!("gt_{tag}"),
        bridge_prefix: format!("{tag}b"),
        veth_prefix: format!("{tag}v"),
        ip_forward: false,
        ..NetConfig::default()
    }
}

/// A network namespace made by the test, alive while this value is.
pub struct TestNs {
    file: File,
}

impl TestNs {
    /// A fresh namespace with only `lo` (down).
    pub fn new() -> Result<Self> {
        let file = std::thread::spawn(|| -> Result<File> {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
            File::open("/proc/thread-self/ns/net").context("open own netns")
        })
        .join()
        .map_err(|_| anyhow::anyhow!("netns thread panicked"))??;
        Ok(Self { file })
    }

    /// The namespace of another process (kept alive by the opened file).
    pub fn of_pid(pid: u32) -> Result<Self> {
        let file = File::open(format!("/proc/{pid}/ns/net")).context("open /proc/<pid>/ns/net")?;
        Ok(Self { file })
    }

    /// A path other processes (and `Network::attach`) can open.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.file.as_raw_fd()
        ))
    }

    /// The namespace as `attach` takes it.
    pub fn netns(&self) -> Netns {
        Netns::Path(self.path())
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let ns = self.file.try_clone()?;
        std::thread::spawn(move || -> Result<T> {
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).context("setns")?;
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread in netns panicked"))?
    }

    /// `ip args...` inside the namespace (a child forked by a thread in
    /// the namespace starts in it).
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        self.run(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run("ip", &args)
        })?
    }
}

/// Runs a command, failing with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Output of a command.
pub fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A TCP server answering every connection with `<name>@<peer address>`.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on 0.0.0.0:`port` inside `ns` (None: the host).
    pub fn start(ns: Option<&TestNs>, port: u16, name: &str) -> Result<Self> {
        let bind = move || -> Result<TcpListener> {
            let listener = TcpListener::bind(("0.0.0.0", port)).context("bind")?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        };
        let listener = match ns {
            Some(ns) => ns.run(bind)??,
            None => bind()?,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let name = name.to_owned();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, peer)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.write_all(format!("{name}@{}", peer.ip()).as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A UDP server echoing every datagram, inside `ns`.
pub struct UdpEcho {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpEcho {
    pub fn start(ns: &TestNs, port: u16) -> Result<Self> {
        let socket = ns.run(move || -> Result<UdpSocket> {
            let socket = UdpSocket::bind(("0.0.0.0", port)).context("bind udp")?;
            socket.set_read_timeout(Some(Duration::from_millis(20)))?;
            Ok(socket)
        })??;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], peer);
                }
            }
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether a datagram from `ns` to `ip:port` is echoed; `expect` says
/// which answer the caller expects, and so how long to keep trying.
pub fn udp_echoed(ns: &TestNs, ip: Ipv4Addr, port: u16, expect: bool) -> bool {
    let attempts = if expect { 10 } else { 1 };
    let probe = move || -> Result<bool> {
        let socket = UdpSocket::bind(("0.0.0.0", 0))?;
        socket.set_read_timeout(Some(if expect {
            Duration::from_millis(300)
        } else {
            BLOCKED_AFTER
        }))?;
        let mut buf = [0u8; 16];
        for _ in 0..attempts {
            socket.send_to(b"ping", (ip, port))?;
            if matches!(socket.recv_from(&mut buf), Ok((4, _))) {
                return Ok(true);
            }
        }
        Ok(false)
    };
    matches!(ns.run(probe), Ok(Ok(true)))
}

/// Connects from `ns` (None: the host) to `ip:port` and returns the
/// server's answer; an error when nothing answered within `timeout`.
pub fn fetch_within(
    ns: Option<&TestNs>,
    ip: Ipv4Addr,
    port: u16,
    timeout: Duration,
) -> Result<String> {
    let connect = move || -> Result<String> {
        let addr = SocketAddr::V4(SocketAddrV4::new(ip, port));
        let mut stream = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("connect {addr}"))?;
        stream.set_read_timeout(Some(REACHED_WITHIN))?;
        let mut reply = String::new();
        stream
            .read_to_string(&mut reply)
            .with_context(|| format!("read from {addr}"))?;
        Ok(reply)
    };
    match ns {
        Some(ns) => ns.run(connect)?,
        None => connect(),
    }
}

/// The server's answer when an answer is expected.
pub fn fetch(ns: Option<&TestNs>, ip: Ipv4Addr, port: u16) -> Result<String> {
    fetch_within(ns, ip, port, REACHED_WITHIN)
}

/// Whether `ns` (None: the host) gets an answer from `ip:port` within
/// [`BLOCKED_AFTER`] (for asserting that something is blocked).
pub fn reaches(ns: Option<&TestNs>, ip: Ipv4Addr, port: u16) -> bool {
    fetch_within(ns, ip, port, BLOCKED_AFTER).is_ok()
}

/// The name of the server reached (the part before `@`).
pub fn server_name(ns: Option<&TestNs>, ip: Ipv4Addr, port: u16) -> Result<String> {
    let reply = fetch(ns, ip, port)?;
    Ok(reply.split('@').next().unwrap_or_default().to_owned())
}

/// A namespace standing for a machine outside the host, wired to the host
/// by a veth: host side `<tag>o0` with `.1`, outside `.2`, of `subnet` /30.
pub struct Outside {
    pub ns: TestNs,
    pub host_ip: Ipv4Addr,
    pub ip: Ipv4Addr,
    host_iface: String,
}

impl Outside {
    pub fn new(tag: &str, base: Ipv4Addr) -> Result<Self> {
        let ns = TestNs::new()?;
        let host_iface = format!("{tag}o0");
        let host_ip = Ipv4Addr::from(u32::from(base) + 1);
        let ip = Ipv4Addr::from(u32::from(base) + 2);
        let path = ns.path();
        run(
            "ip",
            &[
                "link",
                "add",
                &host_iface,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                path.to_str().expect("path"),
            ],
        )?;
        let outside = Self {
            ns,
            host_ip,
            ip,
            host_iface,
        };
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{host_ip}/30"),
                "dev",
                &outside.host_iface,
            ],
        )?;
        run("ip", &["link", "set", &outside.host_iface, "up"])?;
        // Forwarding decided by the input interface: only on ours.
        std::fs::write(
            format!("/proc/sys/net/ipv4/conf/{}/forwarding", outside.host_iface),
            "1",
        )?;
        outside
            .ns
            .ip(&["addr", "add", &format!("{ip}/30"), "dev", "eth0"])?;
        outside.ns.ip(&["link", "set", "eth0", "up"])?;
        outside.ns.ip(&["link", "set", "lo", "up"])?;
        outside
            .ns
            .ip(&["route", "add", "default", "via", &host_ip.to_string()])?;
        Ok(outside)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.host_iface]);
    }
}

/// A process in its own network namespace (`unshare --net sleep`), killed
/// on drop: a container as the daemon sees it, by pid.
pub struct NsProcess {
    child: std::process::Child,
}

impl NsProcess {
    pub fn start() -> Result<Self> {
        let own = std::fs::read_link("/proc/self/ns/net")?;
        let child = Command::new("unshare")
            .args(["--net", "sleep", "120"])
            .spawn()
            .context("unshare")?;
        let process = Self { child };
        let path = format!("/proc/{}/ns/net", process.pid());
        for _ in 0..200 {
            if std::fs::read_link(&path).is_ok_and(|ns| ns != own) {
                return Ok(process);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        bail!("unshare --net did not get its own namespace")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes the test's nft table and every link with its prefixes on drop.
pub struct Cleanup {
    pub table: String,
    pub prefixes: Vec<String>,
}

impl Cleanup {
    pub fn new(config: &NetConfig) -> Self {
        let cleanup = Self {
            table: config.table.clone(),
            prefixes: vec![config.bridge_prefix.clone(), config.veth_prefix.clone()],
        };
        cleanup.sweep();
        cleanup
    }

    fn sweep(&self) {
        let _ = run("nft", &["delete", "table", "inet", &self.table]);
        for name in links_with_prefixes(&self.prefixes) {
            let _ = run("ip", &["link", "del", &name]);
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.sweep();
    }
}

/// Host links whose names start with any of `prefixes`.
pub fn links_with_prefixes(prefixes: &[String]) -> Vec<String> {
    let listing = output("ip", &["-o", "link", "show"]).unwrap_or_default();
    listing
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .filter(|name| prefixes.iter().any(|p| name.starts_with(p.as_str())))
        .collect()
}

/// Counts of what garden's nft table holds: (chains, egress elements,
/// netin elements, rules).
pub fn table_counts(table: &str) -> Result<(usize, usize, usize, usize)> {
    let listing = output("nft", &["-j", "list", "table", "inet", table])?;
    let json: serde_json::Value = serde_json::from_str(&listing)?;
    let (mut chains, mut egress, mut netin, mut rules) = (0, 0, 0, 0);
    for object in json["nftables"].as_array().context("nftables array")? {
        if object.get("chain").is_some() {
            chains += 1;
        }
        if object.get("rule").is_some() {
            rules += 1;
        }
        if let Some(map) = object.get("map") {
            let count = map
                .get("elem")
                .and_then(|e| e.as_array())
                .map_or(0, Vec::len);
            match map["name"].as_str() {
                Some("egress") => egress = count,
                Some("netin_ip") => netin = count,
                _ => {}
            }
        }
    }
    Ok((chains, egress, netin, rules))
}
