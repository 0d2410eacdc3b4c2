//! Image URIs: what `image.uri` may name and how it is parsed.
//!
//! - a local rootfs directory or tarball: `/path` (or `file:///path`)
//! - an OCI image layout: `oci:///path[#tag]`, or a plain path to a
//!   directory holding `index.json` and `oci-layout`
//! - a registry image: `docker://host[:port]/repo[:tag|@digest]`, Garden's
//!   `docker://host/repo#tag`, and `docker:///repo[#tag]` for Docker Hub.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// Docker Hub's name in references, and the host its API answers on.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("image uri {uri:?}: unsupported scheme (use a path, file://, oci:// or docker://)")]
    UnsupportedScheme { uri: String },
    #[error("image uri {uri:?}: {path} does not exist")]
    NotFound { uri: String, path: PathBuf },
    #[error("image uri {uri:?}: invalid repository name {name:?}")]
    InvalidRepository { uri: String, name: String },
    #[error("image uri {uri:?}: invalid tag {tag:?}")]
    InvalidTag { uri: String, tag: String },
    #[error("image uri {uri:?}: invalid digest: {source}")]
    InvalidDigest {
        uri: String,
        #[source]
        source: crate::digest::DigestError,
    },
    #[error("image uri {uri:?}: invalid registry host {host:?}")]
    InvalidHost { uri: String, host: String },
}

/// Where an image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A local root filesystem directory, used as one layer.
    Dir(PathBuf),
    /// A local tarball of a root filesystem (plain, gzip or zstd).
    Tarball(PathBuf),
    /// An OCI image layout directory, and the tag to pick from its index.
    Layout { path: PathBuf, tag: Option<String> },
    /// An image in a registry.
    Registry(RegistryRef),
}

/// An image in a registry: `host/repository` and a tag or digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryRef {
    /// `host[:port]` as written (Docker Hub as `docker.io`).
    pub host: String,
    pub repository: String,
    pub reference: Reference,
}

impl RegistryRef {
    /// The host that serves the registry API (`registry-1.docker.io` for
    /// Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.host == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.host
        }
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Reference::Tag(t) => write!(f, "{}/{}:{}", self.host, self.repository, t),
            Reference::Digest(d) => write!(f, "{}/{}@{}", self.host, self.repository, d),
        }
    }
}

/// A tag or a manifest digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// Parses an image URI. Local paths must exist (they decide between a
/// directory, a layout and a tarball).
pub fn parse(uri: &str) -> Result<Source, ReferenceError> {
    if let Some(rest) = uri.strip_prefix("docker://") {
        return parse_docker(uri, rest).map(Source::Registry);
    }
    if let Some(rest) = uri.strip_prefix("oci://") {
        let (path, tag) = match rest.split_once('#') {
            Some((p, t)) => (p, Some(t.to_string())),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            check_tag(uri, t)?;
        }
        let path = existing(uri, Path::new(path))?;
        return Ok(Source::Layout { path, tag });
    }
    let path = match uri.strip_prefix("file://") {
        Some(p) => p,
        None if uri.contains("://") => {
            return Err(ReferenceError::UnsupportedScheme {
                uri: uri.to_string(),
            })
        }
        None => uri,
    };
    let path = existing(uri, Path::new(path))?;
    if path.is_dir() {
        if path.join("index.json").is_file() && path.join("oci-layout").is_file() {
            return Ok(Source::Layout { path, tag: None });
        }
        return Ok(Source::Dir(path));
    }
    Ok(Source::Tarball(path))
}

fn existing(uri: &str, path: &Path) -> Result<PathBuf, ReferenceError> {
    std::fs::canonicalize(path).map_err(|_| ReferenceError::NotFound {
        uri: uri.to_string(),
        path: path.to_path_buf(),
    })
}

fn parse_docker(uri: &str, rest: &str) -> Result<RegistryRef, ReferenceError> {
    let (rest, fragment_tag) = match rest.split_once('#') {
        Some((r, t)) => (r, Some(t)),
        None => (rest, None),
    };
    let (host, path) = match rest.strip_prefix('/') {
        Some(path) => (DOCKER_HUB.to_string(), path),
        None => match rest.split_once('/') {
            Some((first, path)) if looks_like_host(first) => (first.to_string(), path),
            _ => (DOCKER_HUB.to_string(), rest),
        },
    };
    check_host(uri, &host)?;
    let (name, reference) = if let Some((name, digest)) = path.split_once('@') {
        let digest = digest
            .parse()
            .map_err(|source| ReferenceError::InvalidDigest {
                uri: uri.to_string(),
                source,
            })?;
        (name, Some(Reference::Digest(digest)))
    } else {
        // A colon after the last slash starts a tag.
        let last = path.rfind('/').map_or(0, |i| i + 1);
        match path[last..].find(':') {
            Some(i) => {
                let (name, tag) = path.split_at(last + i);
                (name, Some(Reference::Tag(tag[1..].to_string())))
            }
            None => (path, None),
        }
    };
    let reference = match (fragment_tag, reference) {
        (Some(t), None) => Reference::Tag(t.to_string()),
        (None, Some(r)) => r,
        (None, None) => Reference::Tag("latest".to_string()),
        (Some(t), Some(_)) => {
            return Err(ReferenceError::InvalidTag {
                uri: uri.to_string(),
                tag: t.to_string(),
            })
        }
    };
    if let Reference::Tag(t) = &reference {
        check_tag(uri, t)?;
    }
    let mut repository = name.to_string();
    if !valid_repository(&repository) {
        return Err(ReferenceError::InvalidRepository {
            uri: uri.to_string(),
            name: repository,
        });
    }
    if host == DOCKER_HUB && !repository.contains('/') {
        repository = format!("library/{repository}");
    }
    Ok(RegistryRef {
        host,
        repository,
        reference,
    })
}

/// Docker's rule: a first component with a dot or a port, or `localhost`,
/// is a registry host; otherwise the name is on Docker Hub.
fn looks_like_host(s: &str) -> bool {
    s.contains('.') || s.contains(':') || s == "localhost"
}

fn check_host(uri: &str, host: &str) -> Result<(), ReferenceError> {
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::InvalidHost {
            uri: uri.to_string(),
            host: host.to_string(),
        })
    }
}

fn check_tag(uri: &str, tag: &str) -> Result<(), ReferenceError> {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if first_ok && rest_ok && tag.len() <= 128 {
        Ok(())
    } else {
        Err(ReferenceError::InvalidTag {
            uri: uri.to_string(),
            tag: tag.to_string(),
        })
    }
}

/// Path components of lowercase letters and digits, joined by `.`, `_`,
/// `__` or dashes (the distribution spec's grammar).
fn valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|c| {
            let b = c.as_bytes();
            let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
            !b.is_empty()
                && b.first().is_some_and(alnum)
                && b.last().is_some_and(alnum)
                && b.iter().all(|x| alnum(x) || b"._-".contains(x))
                && !c.contains("..")
                && !c.contains("___")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(uri: &str) -> RegistryRef {
        match parse(uri).expect(uri) {
            Source::Registry(r) => r,
            other => panic!("{uri}: {other:?}"),
        }
    }

    #[test]
    fn docker_forms() {
        let r = registry("docker://127.0.0.1:5000/garden/busybox:1.36");
        assert_eq!(r.host, "127.0.0.1:5000");
        assert_eq!(r.repository, "garden/busybox");
        assert_eq!(r.reference, Reference::Tag("1.36".into()));

        let r = registry("docker://registry.example.com/app#v2");
        assert_eq!(r.host, "registry.example.com");
        assert_eq!(r.reference, Reference::Tag("v2".into()));

        let r = registry("docker:///cloudfoundry/cflinuxfs4");
        assert_eq!(r.host, DOCKER_HUB);
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.repository, "cloudfoundry/cflinuxfs4");
        assert_eq!(r.reference, Reference::Tag("latest".into()));

        let r = registry("docker://busybox");
        assert_eq!(r.repository, "library/busybox");

        let d = Digest::sha256(b"m");
        let r = registry(&format!("docker://localhost:5000/a/b@{d}"));
        assert_eq!(r.host, "localhost:5000");
        assert_eq!(r.reference, Reference::Digest(d));
    }

    #[test]
    fn bad_docker_uris() {
        for bad in [
            "docker://host.example/UPPER",
            "docker://host.example/a/../b",
            "docker://host.example/a:bad tag",
            "docker://host.example/a@sha256:xyz",
            "docker://host.example/a:t1#t2",
            "docker://host.example/",
            "docker://ho$t.example/a",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse("http://x/y"),
            Err(ReferenceError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            parse("/does/not/exist"),
            Err(ReferenceError::NotFound { .. })
        ));
    }

    #[test]
    fn local_forms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().canonicalize().expect("canonicalize");
        assert_eq!(
            parse(p.to_str().expect("utf-8")).expect("dir"),
            Source::Dir(p.clone())
        );
        std::fs::write(p.join("index.json"), "{}").expect("write");
        std::fs::write(p.join("oci-layout"), "{}").expect("write");
        assert_eq!(
            parse(&format!("oci://{}#v1", p.display())).expect("layout"),
            Source::Layout {
                path: p.clone(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            parse(&format!("file://{}", p.join("index.json").display())).expect("tar"),
            Source::Tarball(p.join("index.json"))
        );
    }
}
