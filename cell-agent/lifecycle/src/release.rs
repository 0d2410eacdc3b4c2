//! Process types and the start command: the final buildpack's
//! `bin/release` output, `launch.yml` files of the deps directories, and
//! the app's `Procfile`.
//!
//! Precedence, lowest first: supply buildpacks' `launch.yml` (a later
//! buildpack over an earlier one), the final buildpack's `launch.yml`,
//! its `bin/release` `default_process_types`, then the `Procfile`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Process type → command.
pub type ProcessTypes = BTreeMap<String, String>;

/// Why release information cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// `bin/release` printed something that is not the expected YAML.
    #[error("bin/release output is not valid YAML with default_process_types: {0}")]
    ReleaseYaml(#[source] serde_yaml_ng::Error),
    /// A `launch.yml` that is not valid.
    #[error("{}: not a valid launch.yml: {source}", path.display())]
    LaunchYaml {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A `Procfile` that cannot be read or parsed.
    #[error("{}: {detail}", path.display())]
    Procfile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

#[derive(Debug, Default, Deserialize)]
struct Release {
    #[serde(default)]
    default_process_types: Option<ProcessTypes>,
}

/// `default_process_types` of `bin/release`'s output (empty output is no
/// process types).
pub fn parse_release(output: &str) -> Result<ProcessTypes, ReleaseError> {
    if output.trim().is_empty() {
        return Ok(ProcessTypes::new());
    }
    let r: Option<Release> = serde_yaml_ng::from_str(output).map_err(ReleaseError::ReleaseYaml)?;
    Ok(r.and_then(|r| r.default_process_types).unwrap_or_default())
}

#[derive(Debug, Default, Deserialize)]
struct Launch {
    #[serde(default)]
    processes: Vec<LaunchProcess>,
}

#[derive(Debug, Deserialize)]
struct LaunchProcess {
    #[serde(rename = "type")]
    kind: String,
    command: String,
}

/// The processes of `<deps>/<idx>/launch.yml`, if the file exists.
pub fn read_launch(path: &Path) -> Result<ProcessTypes, ReleaseError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(ProcessTypes::new());
    };
    let launch: Option<Launch> =
        serde_yaml_ng::from_str(&text).map_err(|source| ReleaseError::LaunchYaml {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(launch
        .unwrap_or_default()
        .processes
        .into_iter()
        .map(|p| (p.kind, p.command))
        .collect())
}

/// The app's `Procfile` (`type: command` lines), if it exists. Lines are
/// split at the first colon, as foreman does; blank and `#` lines are
/// skipped.
pub fn read_procfile(path: &Path) -> Result<ProcessTypes, ReleaseError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ProcessTypes::new()),
        Err(e) => {
            return Err(ReleaseError::Procfile {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })
        }
    };
    parse_procfile(&text).map_err(|detail| ReleaseError::Procfile {
        path: path.to_path_buf(),
        detail,
    })
}

fn parse_procfile(text: &str) -> Result<ProcessTypes, String> {
    let mut out = ProcessTypes::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (kind, command) = line
            .split_once(':')
            .ok_or_else(|| format!("line {}: expected `type: command`", n + 1))?;
        let kind = kind.trim();
        let valid = !kind.is_empty()
            && kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(format!("line {}: invalid process type {kind:?}", n + 1));
        }
        out.insert(kind.to_string(), unquote(command.trim()).to_string());
    }
    Ok(out)
}

/// A command written as one quoted YAML string loses its quotes.
fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) && !s[1..s.len() - 1].contains(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

/// Where each kind of process types came from, to be merged.
#[derive(Debug, Default)]
pub struct Sources {
    /// `launch.yml` of the supply buildpacks, in buildpack order.
    pub supply_launch: Vec<ProcessTypes>,
    /// `launch.yml` of the final buildpack.
    pub final_launch: ProcessTypes,
    /// The final buildpack's `bin/release`.
    pub release: ProcessTypes,
    /// The app's `Procfile`.
    pub procfile: ProcessTypes,
}

impl Sources {
    /// All process types, higher precedence overriding lower.
    pub fn merge(self) -> ProcessTypes {
        let mut out = ProcessTypes::new();
        let layers =
            self.supply_launch
                .into_iter()
                .chain([self.final_launch, self.release, self.procfile]);
        for layer in layers {
            out.extend(layer.into_iter().filter(|(_, cmd)| !cmd.trim().is_empty()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(v: &[(&str, &str)]) -> ProcessTypes {
        v.iter()
            .map(|(k, c)| (k.to_string(), c.to_string()))
            .collect()
    }

    #[test]
    fn release_yaml() {
        let out = "---\naddons: []\nconfig_vars: {}\ndefault_process_types:\n  web: ./bin/server -p $PORT\n  worker: ./bin/worker\n";
        assert_eq!(
            parse_release(out).expect("parse"),
            types(&[("web", "./bin/server -p $PORT"), ("worker", "./bin/worker")])
        );
        assert!(parse_release("").expect("empty").is_empty());
        assert!(parse_release("---\n").expect("null").is_empty());
        assert!(parse_release("addons: []\n").expect("none").is_empty());
        let err = parse_release("default_process_types: [a, b]\n").expect_err("bad");
        assert!(err.to_string().contains("bin/release output"), "{err}");
    }

    #[test]
    fn procfile_lines() {
        let p = parse_procfile(
            "# comment\nweb: bundle exec rackup -p $PORT\n\nworker:  echo \"a: b\"\nclock: 'sleep 1'\n",
        )
        .expect("parse");
        assert_eq!(
            p,
            types(&[
                ("web", "bundle exec rackup -p $PORT"),
                ("worker", "echo \"a: b\""),
                ("clock", "sleep 1"),
            ])
        );
        assert!(parse_procfile("no colon here").is_err());
        assert!(parse_procfile("bad type: x").is_err());
    }

    #[test]
    fn launch_yml() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("launch.yml");
        assert!(read_launch(&path).expect("absent").is_empty());
        std::fs::write(
            &path,
            "processes:\n- type: web\n  command: ./web\n- type: task\n  command: ./task\n",
        )
        .expect("write");
        assert_eq!(
            read_launch(&path).expect("read"),
            types(&[("web", "./web"), ("task", "./task")])
        );
        std::fs::write(&path, "processes: 3\n").expect("write");
        assert!(read_launch(&path).is_err());
    }

    #[test]
    fn start_command_precedence() {
        let all = Sources {
            supply_launch: vec![
                types(&[("web", "supply1"), ("a", "a1")]),
                types(&[("web", "supply2"), ("b", "b2")]),
            ],
            final_launch: types(&[("web", "final-launch"), ("c", "c")]),
            release: types(&[("web", "release"), ("worker", "rel-worker")]),
            procfile: types(&[("web", "procfile"), ("clock", "clock")]),
        };
        let merged = all.merge();
        assert_eq!(merged["web"], "procfile");
        assert_eq!(merged["worker"], "rel-worker");
        assert_eq!(merged["clock"], "clock");
        assert_eq!(merged["a"], "a1");
        assert_eq!(merged["b"], "b2");

        let no_procfile = Sources {
            supply_launch: vec![types(&[("web", "supply")])],
            release: types(&[("web", "release")]),
            ..Sources::default()
        };
        assert_eq!(no_procfile.merge()["web"], "release");

        let only_supply = Sources {
            supply_launch: vec![types(&[("web", "supply1")]), types(&[("web", "supply2")])],
            release: types(&[("web", "  ")]),
            ..Sources::default()
        };
        assert_eq!(only_supply.merge()["web"], "supply2");
    }
}
