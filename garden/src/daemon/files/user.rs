//! Garden's user strings resolved against the container's own /etc/passwd
//! and /etc/group (never the host's), with runc's rules: a name must exist;
//! a number need not, and takes its group and home from its passwd entry if
//! there is one; supplementary groups are those that list the user's name.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::resolve::{self, IN_ROOT};
use super::FilesError;

/// A user inside the container, in container ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    /// Supplementary groups (from /etc/group), without `gid`.
    pub additional_gids: Vec<u32>,
}

/// Resolves Garden's user string `spec` inside the container whose root is
/// `root` (`/proc/<pid>/root`): `""` (root), a name (`"vcap"`), `"uid"`, or
/// `"uid:gid"`; either part may also be a name (`"vcap:staff"`).
///
/// A missing /etc/passwd only matters for names. An unknown name is
/// [`FilesError::UnknownUser`] (or `UnknownGroup`).
pub fn lookup_user(root: &Path, spec: &str) -> Result<User, FilesError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if group == Some("") || (user.is_empty() && group.is_some()) || spec.contains('\n') {
        return Err(FilesError::InvalidUser {
            spec: spec.to_string(),
        });
    }
    let root_fd = resolve::open_root(root)?;
    let passwd = read_etc(root_fd.as_fd(), "etc/passwd")?;
    let users: Vec<PasswdEntry<'_>> = passwd.lines().filter_map(PasswdEntry::parse).collect();
    let entry =
        match user.parse::<u32>() {
            Ok(uid) => users.iter().find(|u| u.uid == uid),
            Err(_) if user.is_empty() => users.iter().find(|u| u.uid == 0),
            Err(_) => Some(users.iter().find(|u| u.name == user).ok_or_else(|| {
                FilesError::UnknownUser {
                    name: user.to_string(),
                }
            })?),
        };
    let uid = entry.map_or_else(|| user.parse().unwrap_or(0), |e| e.uid);
    let groups_file = read_etc(root_fd.as_fd(), "etc/group")?;
    let groups: Vec<GroupEntry<'_>> = groups_file.lines().filter_map(GroupEntry::parse).collect();
    let gid = match group {
        None => entry.map_or(0, |e| e.gid),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| FilesError::UnknownGroup {
                    name: g.to_string(),
                })?,
        },
    };
    let home = match entry {
        Some(e) => e.home.to_string(),
        None if uid == 0 => "/root".to_string(),
        None => "/".to_string(),
    };
    let mut additional_gids = Vec::new();
    if let Some(e) = entry {
        for g in &groups {
            if g.gid != gid && g.members.contains(&e.name) && !additional_gids.contains(&g.gid) {
                additional_gids.push(g.gid);
            }
        }
    }
    Ok(User {
        uid,
        gid,
        home,
        additional_gids,
    })
}

/// A line of /etc/passwd: `name:password:uid:gid:gecos:home:shell`.
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

impl<'a> PasswdEntry<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let mut f = line.split(':');
        let name = f.next().filter(|n| !n.is_empty() && !n.starts_with('#'))?;
        let _password = f.next()?;
        let uid = f.next()?.trim().parse().ok()?;
        let gid = f.next()?.trim().parse().ok()?;
        let _gecos = f.next();
        let home = f.next().unwrap_or("");
        Some(PasswdEntry {
            name,
            uid,
            gid,
            home,
        })
    }
}

/// A line of /etc/group: `name:password:gid:member,member`.
struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

impl<'a> GroupEntry<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let mut f = line.split(':');
        let name = f.next().filter(|n| !n.is_empty() && !n.starts_with('#'))?;
        let _password = f.next()?;
        let gid = f.next()?.trim().parse().ok()?;
        let members = f
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect();
        Some(GroupEntry { name, gid, members })
    }
}

/// Bigger account files are refused rather than read into memory.
const MAX_ETC_FILE: u64 = 16 << 20;

/// The text of `path` below the container's root, or "" if it is missing.
/// Only a regular file is read (a FIFO there must not block the daemon).
fn read_etc(root: BorrowedFd<'_>, path: &'static str) -> Result<String, FilesError> {
    let fail = |source| FilesError::ReadConfig { file: path, source };
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = match resolve::openat2(root, Path::new(path), flags, Mode::empty(), IN_ROOT) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(String::new()),
        Err(e) => return Err(fail(e.into())),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| fail(e.into()))?;
    if !FileType::from_raw_mode(st.st_mode).is_file() {
        return Err(fail(std::io::Error::other("not a regular file")));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_ETC_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() as u64 > MAX_ETC_FILE {
        return Err(fail(std::io::Error::other("larger than 16 MiB")));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(passwd: Option<&str>, group: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("etc")).expect("etc");
        if let Some(p) = passwd {
            std::fs::write(dir.path().join("etc/passwd"), p).expect("passwd");
        }
        if let Some(g) = group {
            std::fs::write(dir.path().join("etc/group"), g).expect("group");
        }
        dir
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken line\nvcap:x:2000:2001:vcap:/home/vcap:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nvcap:x:2001:\nstaff:x:50:vcap,other\nadm:x:4: vcap \n";

    #[test]
    fn names_numbers_and_groups() {
        let d = root_with(Some(PASSWD), Some(GROUP));
        let vcap = lookup_user(d.path(), "vcap").expect("vcap");
        assert_eq!(
            (vcap.uid, vcap.gid, vcap.home.as_str()),
            (2000, 2001, "/home/vcap")
        );
        assert_eq!(vcap.additional_gids, [50, 4]);
        let root = lookup_user(d.path(), "").expect("root");
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        assert_eq!(lookup_user(d.path(), "2000").expect("uid").gid, 2001);
        let both = lookup_user(d.path(), "2000:7").expect("uid:gid");
        assert_eq!(
            (both.uid, both.gid, both.home.as_str()),
            (2000, 7, "/home/vcap")
        );
        let stranger = lookup_user(d.path(), "4321").expect("unlisted uid");
        assert_eq!(
            (stranger.uid, stranger.gid, stranger.home.as_str()),
            (4321, 0, "/")
        );
        assert_eq!(
            lookup_user(d.path(), "vcap:staff")
                .expect("named group")
                .gid,
            50
        );
    }

    #[test]
    fn unknown_names_and_bad_specs_are_bad_input() {
        let d = root_with(Some(PASSWD), Some(GROUP));
        for (spec, msg) in [
            ("nobody", "unknown user \"nobody\""),
            ("vcap:nogroup", "unknown group \"nogroup\""),
            ("vcap:", "invalid user"),
            (":5", "invalid user"),
        ] {
            let err = lookup_user(d.path(), spec).expect_err(spec);
            assert!(err.is_bad_input(), "{spec}: {err}");
            assert!(err.to_string().contains(msg), "{spec}: {err}");
        }
    }

    #[test]
    fn missing_passwd_only_matters_for_names() {
        let d = root_with(None, None);
        let root = lookup_user(d.path(), "").expect("root without passwd");
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let n = lookup_user(d.path(), "1000:1000").expect("numbers without passwd");
        assert_eq!((n.uid, n.gid, n.home.as_str()), (1000, 1000, "/"));
        let err = lookup_user(d.path(), "vcap").expect_err("name without passwd");
        assert!(matches!(err, FilesError::UnknownUser { .. }), "{err}");
    }

    #[test]
    fn passwd_symlinks_stay_in_the_root() {
        let d = root_with(None, None);
        // An absolute symlink resolves inside the root, not on the host.
        std::os::unix::fs::symlink("/etc/real", d.path().join("etc/passwd")).expect("symlink");
        std::fs::write(d.path().join("etc/real"), PASSWD).expect("real");
        assert_eq!(lookup_user(d.path(), "vcap").expect("vcap").uid, 2000);
    }
}
