//! `manifest.yml` for `cfl push`: parsed locally (so a malformed file fails
//! before anything changes), flags laid over it, and the app's `path`
//! resolved; the rest goes to the controller's `apply_manifest` as is.

use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

/// Errors reading a manifest or combining it with flags.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Reading the file.
    #[error("{path}: {source}")]
    Io {
        /// The manifest.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// YAML that does not parse.
    #[error("{path} is not valid YAML: {source}")]
    Yaml {
        /// The manifest.
        path: PathBuf,
        /// The cause.
        source: serde_yaml_ng::Error,
    },
    /// A structural problem (missing `applications`, no `name`, ...).
    #[error("{path}: {what}")]
    Invalid {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The named app is not in the manifest.
    #[error("app {name} is not in {path}")]
    NoSuchApp {
        /// The app.
        name: String,
        /// The manifest.
        path: PathBuf,
    },
    /// Neither a name nor a manifest.
    #[error("push needs an app name or a manifest.yml")]
    NoApp,
    /// App-specific flags with several apps in the manifest.
    #[error("flags like -i, -m or -p apply to one app: name it (cfl push NAME)")]
    FlagsNeedOneApp,
}

/// Flags of `cfl push` that override the manifest.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `-i`.
    pub instances: Option<u32>,
    /// `-m` (e.g. `256M`).
    pub memory: Option<String>,
    /// `-k`.
    pub disk: Option<String>,
    /// `-b` (repeatable).
    pub buildpacks: Vec<String>,
    /// `-s`.
    pub stack: Option<String>,
    /// `-c`.
    pub command: Option<String>,
    /// `--docker-image`.
    pub docker_image: Option<String>,
    /// `-u` / `--health-check-type`.
    pub health_check_type: Option<String>,
    /// `--endpoint`.
    pub health_check_endpoint: Option<String>,
    /// `--route` (repeatable).
    pub routes: Vec<String>,
    /// `--no-route`.
    pub no_route: bool,
    /// `--random-route`.
    pub random_route: bool,
    /// `-p`.
    pub path: Option<PathBuf>,
    /// `--var`-less env additions (`-e KEY=VALUE`).
    pub env: Vec<(String, String)>,
}

impl Overrides {
    fn any(&self) -> bool {
        self.instances.is_some()
            || self.memory.is_some()
            || self.disk.is_some()
            || !self.buildpacks.is_empty()
            || self.stack.is_some()
            || self.command.is_some()
            || self.docker_image.is_some()
            || self.health_check_type.is_some()
            || self.health_check_endpoint.is_some()
            || !self.routes.is_empty()
            || self.no_route
            || self.random_route
            || self.path.is_some()
            || !self.env.is_empty()
    }

    fn apply(&self, app: &mut Mapping) {
        let mut set = |k: &str, v: Value| {
            app.insert(Value::from(k), v);
        };
        if let Some(i) = self.instances {
            set("instances", Value::from(i));
        }
        if let Some(m) = &self.memory {
            set("memory", Value::from(m.as_str()));
        }
        if let Some(d) = &self.disk {
            set("disk_quota", Value::from(d.as_str()));
        }
        if !self.buildpacks.is_empty() {
            let list = self
                .buildpacks
                .iter()
                .map(|b| Value::from(b.as_str()))
                .collect();
            set("buildpacks", Value::Sequence(list));
        }
        if let Some(s) = &self.stack {
            set("stack", Value::from(s.as_str()));
        }
        if let Some(c) = &self.command {
            set("command", Value::from(c.as_str()));
        }
        if let Some(image) = &self.docker_image {
            let mut docker = Mapping::new();
            docker.insert(Value::from("image"), Value::from(image.as_str()));
            set("docker", Value::Mapping(docker));
        }
        if let Some(t) = &self.health_check_type {
            set("health-check-type", Value::from(t.as_str()));
        }
        if let Some(e) = &self.health_check_endpoint {
            set("health-check-http-endpoint", Value::from(e.as_str()));
        }
        if !self.routes.is_empty() {
            let list = self
                .routes
                .iter()
                .map(|r| {
                    let mut m = Mapping::new();
                    m.insert(Value::from("route"), Value::from(r.as_str()));
                    Value::Mapping(m)
                })
                .collect();
            set("routes", Value::Sequence(list));
        }
        if self.no_route {
            set("no-route", Value::from(true));
        }
        if self.random_route {
            set("random-route", Value::from(true));
        }
        if !self.env.is_empty() {
            let key = Value::from("env");
            let mut env = match app.get(&key) {
                Some(Value::Mapping(m)) => m.clone(),
                _ => Mapping::new(),
            };
            for (k, v) in &self.env {
                env.insert(Value::from(k.as_str()), Value::from(v.as_str()));
            }
            app.insert(key, Value::Mapping(env));
        }
    }
}

/// One app to push: its manifest entry (flags applied, `path` removed)
/// and the directory of its files.
#[derive(Debug, Clone)]
pub struct PushApp {
    /// App name.
    pub name: String,
    /// The manifest entry sent to `apply_manifest`.
    pub entry: Mapping,
    /// Where the app's files are.
    pub dir: PathBuf,
    /// A docker image instead of files.
    pub docker_image: Option<String>,
}

impl PushApp {
    /// The single-app manifest YAML for `apply_manifest`.
    pub fn manifest_yaml(&self) -> String {
        let mut root = Mapping::new();
        root.insert(
            Value::from("applications"),
            Value::Sequence(vec![Value::Mapping(self.entry.clone())]),
        );
        serde_yaml_ng::to_string(&Value::Mapping(root)).unwrap_or_default()
    }
}

fn read_apps(path: &Path) -> Result<Vec<Mapping>, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.to_owned(),
        source,
    })?;
    let doc: Value = serde_yaml_ng::from_str(&text).map_err(|source| ManifestError::Yaml {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |what: &str| ManifestError::Invalid {
        path: path.to_owned(),
        what: what.to_owned(),
    };
    let apps = doc
        .get("applications")
        .and_then(Value::as_sequence)
        .ok_or_else(|| invalid("no `applications:` list"))?;
    apps.iter()
        .map(|a| {
            let m = a
                .as_mapping()
                .ok_or_else(|| invalid("an application is not a mapping"))?;
            if !m.get("name").is_some_and(Value::is_string) {
                return Err(invalid("an application has no `name`"));
            }
            Ok(m.clone())
        })
        .collect()
}

fn finish(mut entry: Mapping, base: &Path, flags: &Overrides) -> PushApp {
    flags.apply(&mut entry);
    let path = entry
        .remove("path")
        .and_then(|p| p.as_str().map(PathBuf::from));
    let dir = match (&flags.path, path) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => base.join(p),
        (None, None) => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    let name = entry
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let docker_image = entry
        .get("docker")
        .and_then(|d| d.get("image"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    PushApp {
        name,
        entry,
        dir,
        docker_image,
    }
}

/// The apps `cfl push [NAME]` pushes: from `manifest` if given (or
/// `./manifest.yml` if present), else one app from the name and flags.
pub fn resolve(
    name: Option<&str>,
    manifest: Option<&Path>,
    flags: &Overrides,
) -> Result<Vec<PushApp>, ManifestError> {
    let default = PathBuf::from("manifest.yml");
    let file = manifest.or_else(|| default.is_file().then_some(default.as_path()));
    let Some(file) = file else {
        let name = name.ok_or(ManifestError::NoApp)?;
        let mut entry = Mapping::new();
        entry.insert(Value::from("name"), Value::from(name));
        return Ok(vec![finish(entry, Path::new("."), flags)]);
    };
    let base = file.parent().unwrap_or(Path::new(".")).to_owned();
    let apps = read_apps(file)?;
    let chosen: Vec<Mapping> = match name {
        Some(n) => {
            let found = apps
                .into_iter()
                .find(|a| a.get("name").and_then(Value::as_str) == Some(n));
            let entry = found.ok_or_else(|| ManifestError::NoSuchApp {
                name: n.to_owned(),
                path: file.to_owned(),
            })?;
            vec![entry]
        }
        None => apps,
    };
    if chosen.len() > 1 && flags.any() {
        return Err(ManifestError::FlagsNeedOneApp);
    }
    Ok(chosen
        .into_iter()
        .map(|e| finish(e, &base, flags))
        .collect())
}
