//! `kill`: a signal to the container's init (which forwards it to the
//! program), or with `all` to every process in its cgroup.

use nix::unistd::Pid;

use super::super::state::Status;
use super::super::sys;
use super::{ContainerError, Runtime};

impl Runtime {
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), ContainerError> {
        let c = self.inspect(id)?;
        if c.status == Status::Stopped {
            return Err(ContainerError::WrongStatus {
                id: id.into(),
                status: c.status,
                wanted: "there is nothing to signal",
            });
        }
        let err = |source| ContainerError::Signal {
            id: id.into(),
            signal,
            source,
        };
        if all {
            for pid in self.pids(id)? {
                match sys::kill_raw(Pid::from_raw(pid), signal) {
                    Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                    Err(e) => return Err(err(e)),
                }
            }
            return Ok(());
        }
        sys::kill_raw(Pid::from_raw(c.record.pid), signal).map_err(err)
    }
}

/// Parses `TERM`, `SIGTERM`, `sigterm` or `15`.
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

#[cfg(test)]
mod tests {
    use super::parse_signal;

    #[test]
    fn signal_names_and_numbers() {
        assert_eq!(parse_signal("TERM"), Some(15));
        assert_eq!(parse_signal("SIGKILL"), Some(9));
        assert_eq!(parse_signal("hup"), Some(1));
        assert_eq!(parse_signal("10"), Some(10));
        assert_eq!(parse_signal("NOPE"), None);
        assert_eq!(parse_signal("0"), None);
    }
}
