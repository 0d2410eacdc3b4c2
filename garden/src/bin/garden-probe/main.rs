//! garden-probe: tries one privileged operation and prints what happened.
//!
//! Used by the security tests from inside containers: `garden-probe keyctl`
//! prints `ok` or the errno name, and exits 0 either way so the test reads
//! the verdict from the output.

fn errno_name(e: std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!("{:?}", nix::errno::Errno::from_raw(n)),
        None => e.to_string(),
    }
}

fn verdict(res: nix::Result<()>) -> String {
    match res {
        Ok(()) => "ok".into(),
        Err(e) => format!("{e:?}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let out = match arg(0).as_str() {
        // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)
        "keyctl" => verdict(probe::keyctl()),
        "unshare-user" => verdict(nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)),
        "mount" => verdict(nix::mount::mount(
            Some("tmpfs"),
            "/tmp",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )),
        "ptrace" => verdict(nix::sys::ptrace::attach(nix::unistd::Pid::from_raw(
            arg(1).parse().unwrap_or(1),
        ))),
        "open-write" => match std::fs::OpenOptions::new().write(true).open(arg(1)) {
            Ok(_) => "ok".into(),
            Err(e) => errno_name(e),
        },
        "fds" => {
            let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
                .map(|d| {
                    d.filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            fds.sort();
            fds.join(" ")
        }
        other => {
            eprintln!("garden-probe: unknown probe {other:?}");
            std::process::exit(2);
        }
    };
    println!("{out}");
}

mod probe {
    pub fn keyctl() -> nix::Result<()> {
        const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
        const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
        // SAFETY: keyctl with these integer arguments reads and writes no
        // memory of ours.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_GET_KEYRING_ID,
                KEY_SPEC_SESSION_KEYRING,
                0,
            )
        };
        nix::errno::Errno::result(ret).map(drop)
    }
}
