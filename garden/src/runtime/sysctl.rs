//! Namespaced sysctls (`linux.sysctl`), written after `pivot_root` into the
//! container's own `/proc/sys`.

use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("sysctl {0} is not namespaced (or its namespace is not private): refusing to change the host's")]
    NotNamespaced(String),
    #[error("sysctl {key}={value}: writing {path}: {source}")]
    Write {
        key: String,
        value: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which namespaces the container has of its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct Private {
    pub ipc: bool,
    pub net: bool,
    pub uts: bool,
}

fn allowed(key: &str, private: Private) -> bool {
    const IPC: [&str; 7] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
    ];
    (private.ipc
        && (IPC.contains(&key) || key == "kernel.shm_rmid_forced" || key.starts_with("fs.mqueue.")))
        || (private.net && key.starts_with("net."))
        || (private.uts && matches!(key, "kernel.hostname" | "kernel.domainname"))
}

/// Checks every key before anything is written.
pub fn validate(sysctls: &HashMap<String, String>, private: Private) -> Result<(), SysctlError> {
    match sysctls.keys().find(|k| !allowed(k, private)) {
        Some(k) => Err(SysctlError::NotNamespaced(k.clone())),
        None => Ok(()),
    }
}

pub fn apply(sysctls: &HashMap<String, String>) -> Result<(), SysctlError> {
    for (key, value) in sysctls {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|source| SysctlError::Write {
            key: key.clone(),
            value: value.clone(),
            path,
            source,
        })?;
    }
    Ok(())
}
