//! Mount options as OCI writes them (`"ro"`, `"nosuid"`, `"rbind"`, ...)
//! turned into mount flags, propagation flags and filesystem data.

use nix::mount::MsFlags;

/// A parsed option list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the mount call itself.
    pub flags: MsFlags,
    /// Flags cleared by their negative form (`rw`, `suid`, ...), which matter
    /// when remounting a bind mount.
    pub cleared: MsFlags,
    /// Propagation to apply afterwards (`rprivate`, `shared`, ...).
    pub propagation: MsFlags,
    /// Everything else, for the filesystem (`mode=755`, `size=65536k`).
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: MsFlags::empty(),
            data: Vec::new(),
            bind: false,
            recursive: false,
        }
    }
}

impl MountOptions {
    pub fn parse(options: &[String]) -> MountOptions {
        let mut o = MountOptions::default();
        for opt in options {
            let (set, clear): (MsFlags, MsFlags) = match opt.as_str() {
                "bind" => {
                    o.bind = true;
                    continue;
                }
                "rbind" => {
                    o.bind = true;
                    o.recursive = true;
                    continue;
                }
                "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
                "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
                "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
                "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
                "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
                "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
                "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
                "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
                "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
                "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
                "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
                "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
                "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
                "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
                "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
                "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
                "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
                "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
                "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
                "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
                "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
                "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
                "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
                | "unbindable" | "runbindable" => {
                    o.propagation |= propagation(opt);
                    continue;
                }
                // Docker's tmpfs copy-up hint; the directory starts empty here.
                "tmpcopyup" => continue,
                _ => {
                    o.data.push(opt.clone());
                    continue;
                }
            };
            o.flags = (o.flags | set) & !clear;
            o.cleared = (o.cleared | clear) & !set;
        }
        o
    }

    pub fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }
}

fn propagation(opt: &str) -> MsFlags {
    let rec = if opt.starts_with('r') && opt != "rw" {
        MsFlags::MS_REC
    } else {
        MsFlags::empty()
    };
    let kind = match opt.trim_start_matches('r') {
        "private" => MsFlags::MS_PRIVATE,
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        _ => MsFlags::MS_UNBINDABLE,
    };
    kind | rec
}

/// Parses a `rootfsPropagation` value; `None` for an unknown one.
pub fn parse_propagation(value: &str) -> Option<MsFlags> {
    match value {
        "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
        | "runbindable" => Some(propagation(value)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        MountOptions::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_data_and_bind_are_separated() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data_string().as_deref(), Some("mode=755,size=65536k"));
        let b = opts(&["rbind", "ro", "rprivate"]);
        assert!(b.bind && b.recursive);
        assert_eq!(b.flags, MsFlags::MS_RDONLY);
        assert_eq!(b.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
    }

    #[test]
    fn later_options_win() {
        let o = opts(&["ro", "rw"]);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.cleared.contains(MsFlags::MS_RDONLY));
    }
}
