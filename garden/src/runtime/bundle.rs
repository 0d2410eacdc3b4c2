//! Reading and validating an OCI bundle (`config.json` + root filesystem).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Annotation naming read-only lower layers (colon-separated, top first): the
/// runtime mounts an overlay of them at `root.path`, with the upper and work
/// directories named by the two annotations after it.
pub const ANNOTATION_LOWER: &str = "garden.rootfs.lower";
pub const ANNOTATION_UPPER: &str = "garden.rootfs.upper";
pub const ANNOTATION_WORK: &str = "garden.rootfs.work";
/// `default` selects Garden's built-in seccomp allow-list when the spec has
/// no `linux.seccomp` of its own.
pub const ANNOTATION_SECCOMP: &str = "garden.seccomp";
/// `idle` makes init run no program after `start`: it only reaps, ignoring
/// every signal but SIGKILL, like Garden's init. The daemon runs all of a
/// container's processes with `exec`; `process.args` is then not resolved.
pub const ANNOTATION_INIT: &str = "garden.init";

/// Whether the spec asks for an idle init (see [`ANNOTATION_INIT`]).
pub fn idle_init(spec: &Spec) -> bool {
    annotation(spec, ANNOTATION_INIT).is_some_and(|v| v == "idle")
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("seccomp profile: {0}")]
    Seccomp(#[from] garden_seccomp::SeccompError),
    #[error("bundle directory {0} does not exist")]
    NoBundle(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid {path}: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported ociVersion {0:?}: this runtime implements 1.x")]
    Version(String),
    #[error("config.json has no root: the bundle needs a root filesystem")]
    NoRoot,
    #[error("root filesystem {0} does not exist or is not a directory")]
    NoRootfs(PathBuf),
    #[error("config.json has no process")]
    NoProcess,
    #[error("process.args is empty: nothing to run")]
    NoArgs,
    #[error("process.cwd {0:?} must be an absolute path")]
    RelativeCwd(PathBuf),
    #[error("namespace {0} is listed twice")]
    DuplicateNamespace(String),
    #[error("uid/gid mappings are given but there is no user namespace")]
    MappingsWithoutUserNamespace,
    #[error("a new user namespace needs uid and gid mappings")]
    UserNamespaceWithoutMappings,
    #[error("namespace path {path} for {ns}: {source}")]
    NamespacePath {
        ns: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("annotation {0} needs {1} as well")]
    IncompleteOverlay(&'static str, &'static str),
    #[error("annotation {name}={value:?} is not understood")]
    BadAnnotation { name: &'static str, value: String },
}

/// Where the container's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsSource {
    /// The bundle's root directory, bind-mounted.
    Dir(PathBuf),
    /// Read-only lower layers (top first) with a per-container upper and work
    /// directory, mounted as overlayfs at `target`.
    Overlay {
        lower: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
    },
}

impl RootfsSource {
    /// The directory that becomes `/`.
    pub fn target(&self) -> &Path {
        match self {
            RootfsSource::Dir(p) => p,
            RootfsSource::Overlay { target, .. } => target,
        }
    }
}

/// Which seccomp filter the container's processes get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeccompChoice {
    /// None, because the spec has none (runc's behaviour).
    None,
    /// The spec's own `linux.seccomp`.
    Spec,
    /// Garden's built-in allow-list.
    GardenDefault,
}

/// A validated bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub rootfs: RootfsSource,
}

impl Bundle {
    /// Reads `<dir>/config.json` and validates it for `create`.
    pub fn load(dir: &Path) -> Result<Bundle, BundleError> {
        let dir = std::fs::canonicalize(dir).map_err(|_| BundleError::NoBundle(dir.into()))?;
        let path = dir.join("config.json");
        let bytes = std::fs::read(&path).map_err(|source| BundleError::Read {
            path: path.clone(),
            source,
        })?;
        let spec: Spec = serde_json::from_slice(&bytes)
            .map_err(|source| BundleError::Invalid { path, source })?;
        Bundle::from_spec(dir, spec)
    }

    /// Validates an in-memory spec whose relative paths are relative to `dir`.
    pub fn from_spec(dir: PathBuf, spec: Spec) -> Result<Bundle, BundleError> {
        if !spec.version().starts_with("1.") {
            return Err(BundleError::Version(spec.version().clone()));
        }
        let root = spec.root().as_ref().ok_or(BundleError::NoRoot)?;
        let target = if root.path().is_absolute() {
            root.path().clone()
        } else {
            dir.join(root.path())
        };
        let rootfs = rootfs_source(&spec, target)?;
        if !rootfs.target().is_dir() {
            return Err(BundleError::NoRootfs(rootfs.target().to_path_buf()));
        }
        let process = spec.process().as_ref().ok_or(BundleError::NoProcess)?;
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(BundleError::NoArgs);
        }
        if !process.cwd().is_absolute() {
            return Err(BundleError::RelativeCwd(process.cwd().clone()));
        }
        validate_namespaces(&spec)?;
        // A bad `garden.seccomp` annotation fails here, before anything is
        // created; the profile itself is compiled by `seccomp_profile`.
        seccomp_choice(&spec)?;
        Ok(Bundle { dir, spec, rootfs })
    }
}

fn annotation<'a>(spec: &'a Spec, name: &str) -> Option<&'a String> {
    spec.annotations().as_ref().and_then(|a| a.get(name))
}

fn rootfs_source(spec: &Spec, target: PathBuf) -> Result<RootfsSource, BundleError> {
    let Some(lower) = annotation(spec, ANNOTATION_LOWER) else {
        return Ok(RootfsSource::Dir(target));
    };
    let upper = annotation(spec, ANNOTATION_UPPER).ok_or(BundleError::IncompleteOverlay(
        ANNOTATION_LOWER,
        ANNOTATION_UPPER,
    ))?;
    let work = annotation(spec, ANNOTATION_WORK).ok_or(BundleError::IncompleteOverlay(
        ANNOTATION_LOWER,
        ANNOTATION_WORK,
    ))?;
    let lower: Vec<PathBuf> = lower
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    if lower.is_empty() || lower.iter().any(|p| !p.is_absolute()) {
        return Err(BundleError::BadAnnotation {
            name: ANNOTATION_LOWER,
            value: annotation(spec, ANNOTATION_LOWER)
                .cloned()
                .unwrap_or_default(),
        });
    }
    Ok(RootfsSource::Overlay {
        lower,
        upper: upper.into(),
        work: work.into(),
        target,
    })
}

/// The seccomp profile the spec asks for, compiled: `create` and init's
/// resumption (`process::resume`) must agree on it.
pub fn seccomp_profile(spec: &Spec) -> Result<Option<garden_seccomp::Profile>, BundleError> {
    let oci = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    Ok(match seccomp_choice(spec)? {
        SeccompChoice::None => None,
        SeccompChoice::GardenDefault => Some(garden_seccomp::Profile::garden_default()?),
        SeccompChoice::Spec => oci.map(garden_seccomp::Profile::from_oci).transpose()?,
    })
}

fn seccomp_choice(spec: &Spec) -> Result<SeccompChoice, BundleError> {
    let has_spec = spec.linux().as_ref().is_some_and(|l| l.seccomp().is_some());
    match annotation(spec, ANNOTATION_SECCOMP).map(String::as_str) {
        None | Some("") if has_spec => Ok(SeccompChoice::Spec),
        None | Some("") => Ok(SeccompChoice::None),
        Some("default") if has_spec => Ok(SeccompChoice::Spec),
        Some("default") => Ok(SeccompChoice::GardenDefault),
        Some(other) => Err(BundleError::BadAnnotation {
            name: ANNOTATION_SECCOMP,
            value: other.to_string(),
        }),
    }
}

fn validate_namespaces(spec: &Spec) -> Result<(), BundleError> {
    let linux = spec.linux().as_ref();
    let namespaces = linux.and_then(|l| l.namespaces().as_ref());
    let mut seen = HashSet::new();
    let mut user = None;
    for ns in namespaces.into_iter().flatten() {
        if !seen.insert(ns.typ()) {
            return Err(BundleError::DuplicateNamespace(ns.typ().to_string()));
        }
        if let Some(path) = ns.path() {
            std::fs::metadata(path).map_err(|source| BundleError::NamespacePath {
                ns: ns.typ().to_string(),
                path: path.clone(),
                source,
            })?;
        }
        if ns.typ() == LinuxNamespaceType::User {
            user = Some(ns.path().is_some());
        }
    }
    let has_maps = linux.is_some_and(|l| {
        l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || l.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
    });
    match (user, has_maps) {
        (None, true) => Err(BundleError::MappingsWithoutUserNamespace),
        (Some(false), false) => Err(BundleError::UserNamespaceWithoutMappings),
        _ => Ok(()),
    }
}
