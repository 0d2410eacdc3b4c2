//! The buildpack builder (REFERENCE §3): detect or take the named
//! buildpacks, run supply, finalize or compile, read the release, and
//! write the droplet, the build artifacts cache and `result.json`.
//!
//! ```text
//! detect ──► supply (all but the last; must exist)
//!            └─► last: supply (if present), then finalize, else compile
//!                 └─► release ─► droplet tgz, cache tgz, result.json
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use crate::archive::{self, ArchiveError, Tgz};
use crate::args::BuilderArgs;
use crate::buildpack::{self, Buildpack, BuildpackError, Script};
use crate::release::{self, ReleaseError, Sources};
use crate::result::{BuildpackInfo, BuildpackMetadata, StagingInfo, StagingResult};
use crate::runner::{self, RunError, Status};

/// Exit status when no buildpack detects the app.
pub const EXIT_DETECT: i32 = 222;
/// Exit status when `bin/compile` fails.
pub const EXIT_COMPILE: i32 = 223;
/// Exit status when `bin/release` fails.
pub const EXIT_RELEASE: i32 = 224;
/// Exit status when `bin/supply` fails.
pub const EXIT_SUPPLY: i32 = 225;
/// Exit status when `bin/finalize` fails.
pub const EXIT_FINALIZE: i32 = 226;
/// Exit status for anything else (directories, outputs).
pub const EXIT_OTHER: i32 = 1;

/// The step of staging that failed; it decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Finding a buildpack.
    Detect,
    /// A supply script.
    Supply,
    /// The finalize script.
    Finalize,
    /// The legacy compile script.
    Compile,
    /// The release script and the process types.
    Release,
}

impl Phase {
    /// The exit status of a failure in this phase.
    pub fn exit_code(self) -> i32 {
        match self {
            Phase::Detect => EXIT_DETECT,
            Phase::Supply => EXIT_SUPPLY,
            Phase::Finalize => EXIT_FINALIZE,
            Phase::Compile => EXIT_COMPILE,
            Phase::Release => EXIT_RELEASE,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Detect => "Failed to detect a buildpack",
            Phase::Supply => "Failed to run all supply scripts",
            Phase::Finalize => "Failed to run finalize script",
            Phase::Compile => "Failed to compile droplet",
            Phase::Release => "Failed to build droplet release",
        })
    }
}

/// Why staging failed. Each message is one line naming the buildpack and
/// script; [`StagingError::exit_code`] is Diego's status for it.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// `-buildpackOrder` named nothing.
    #[error("None of the buildpacks detected a compatible application: no buildpacks were given (-buildpackOrder is empty)")]
    NoBuildpacks,
    /// A named buildpack is not on disk.
    #[error("Failed to detect a buildpack: {0}")]
    Buildpack(#[from] BuildpackError),
    /// Every detect script declined.
    #[error("None of the buildpacks detected a compatible application")]
    NoneDetected,
    /// A buildpack other than the last lacks `bin/supply`.
    #[error("Failed to run all supply scripts: buildpack {key} has no bin/supply, so it can only be the last buildpack")]
    NoSupply {
        /// The buildpack key.
        key: String,
    },
    /// The last buildpack has neither `bin/finalize` nor `bin/compile`.
    #[error("Failed to compile droplet: buildpack {key} has neither bin/finalize nor bin/compile")]
    NoCompile {
        /// The buildpack key.
        key: String,
    },
    /// The last buildpack has no `bin/release`.
    #[error("Failed to build droplet release: buildpack {key} has no bin/release")]
    NoRelease {
        /// The buildpack key.
        key: String,
    },
    /// A script exited unsuccessfully.
    #[error("{phase}: buildpack {key} {script} exited with {status}")]
    ScriptFailed {
        /// Where it happened.
        phase: Phase,
        /// The buildpack key.
        key: String,
        /// `bin/<name>`.
        script: &'static str,
        /// How it ended.
        status: Status,
    },
    /// A script could not be started.
    #[error("{phase}: buildpack {key}: {source}")]
    ScriptSpawn {
        /// Where it happened.
        phase: Phase,
        /// The buildpack key.
        key: String,
        /// Why.
        #[source]
        source: RunError,
    },
    /// Release output, `launch.yml` or `Procfile` unreadable.
    #[error("Failed to build droplet release: {0}")]
    Release(#[from] ReleaseError),
    /// A staging directory could not be made.
    #[error("preparing {}: {source}", path.display())]
    Setup {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The app directory is missing.
    #[error("the app directory {} does not exist", .0.display())]
    NoApp(PathBuf),
    /// Writing an output failed.
    #[error(transparent)]
    Output(#[from] ArchiveError),
}

impl StagingError {
    /// Diego's exit status for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            StagingError::NoBuildpacks
            | StagingError::Buildpack(_)
            | StagingError::NoneDetected => EXIT_DETECT,
            StagingError::NoSupply { .. } => EXIT_SUPPLY,
            StagingError::NoCompile { .. } => EXIT_COMPILE,
            StagingError::NoRelease { .. } | StagingError::Release(_) => EXIT_RELEASE,
            StagingError::ScriptFailed { phase, .. } | StagingError::ScriptSpawn { phase, .. } => {
                phase.exit_code()
            }
            StagingError::Setup { .. } | StagingError::NoApp(_) | StagingError::Output(_) => {
                EXIT_OTHER
            }
        }
    }
}

/// A buildpack chosen to run, with its name.
struct Chosen {
    bp: Buildpack,
    name: String,
}

/// The directories of one staging.
struct Layout {
    build: PathBuf,
    cache: PathBuf,
    /// Holds `deps/` and `profile.d/`; removed when staging ends.
    contents: tempfile::TempDir,
    width: usize,
}

impl Layout {
    fn deps(&self) -> PathBuf {
        self.contents.path().join("deps")
    }

    fn profile_d(&self) -> PathBuf {
        self.contents.path().join("profile.d")
    }

    fn idx(&self, i: usize) -> String {
        format!("{i:0width$}", width = self.width)
    }

    fn cache_of(&self, bp: &Buildpack, last: bool) -> PathBuf {
        if last {
            self.cache.join("final")
        } else {
            self.cache.join(buildpack::dir_name(&bp.key))
        }
    }

    /// Creates every directory the scripts are given.
    fn create(args: &BuilderArgs, chosen: &[Chosen]) -> Result<Layout, StagingError> {
        if !args.build_dir.is_dir() {
            return Err(StagingError::NoApp(args.build_dir.clone()));
        }
        let contents = tempfile::Builder::new()
            .prefix("contents")
            .tempdir()
            .map_err(|source| StagingError::Setup {
                path: std::env::temp_dir(),
                source,
            })?;
        let layout = Layout {
            build: args.build_dir.clone(),
            cache: args.build_artifacts_cache_dir.clone(),
            contents,
            width: idx_width(chosen.len()),
        };
        let mut dirs = vec![layout.profile_d(), layout.cache.clone()];
        for (i, c) in chosen.iter().enumerate() {
            dirs.push(layout.deps().join(layout.idx(i)));
            dirs.push(layout.cache_of(&c.bp, i + 1 == chosen.len()));
        }
        for d in dirs {
            std::fs::create_dir_all(&d)
                .map_err(|source| StagingError::Setup { path: d, source })?;
        }
        Ok(layout)
    }
}

/// Digits of the buildpack count: `idx` is zero-padded to it.
pub fn idx_width(count: usize) -> usize {
    count.max(1).to_string().len()
}

/// Stages the app as `args` say; on success the three outputs exist.
pub fn stage(args: &BuilderArgs) -> Result<StagingResult, StagingError> {
    let keys = args.keys();
    if keys.is_empty() {
        return Err(StagingError::NoBuildpacks);
    }
    let all = keys
        .iter()
        .map(|k| Buildpack::locate(&args.buildpacks_dir, k))
        .collect::<Result<Vec<_>, _>>()?;
    let chosen = if args.skip_detect {
        all.into_iter()
            .map(|bp| {
                let name = bp.configured_name().unwrap_or_else(|| bp.key.clone());
                Chosen { bp, name }
            })
            .collect()
    } else {
        vec![detect(all, &args.build_dir)?]
    };
    let layout = Layout::create(args, &chosen)?;
    run_buildpacks(&layout, &chosen)?;
    let Some(last) = chosen.last() else {
        return Err(StagingError::NoBuildpacks);
    };
    let process_types = process_types(&layout, &chosen)?;
    let info = StagingInfo {
        detected_buildpack: last.name.clone(),
        start_command: process_types.get("web").cloned().unwrap_or_default(),
    };
    write_droplet(&layout, &info, &args.output_droplet)?;
    let mut cache = Tgz::create(&args.output_build_artifacts_cache)?;
    cache.add_tree(".", &layout.cache)?;
    cache.finish()?;
    let meta = BuildpackMetadata {
        buildpack_key: last.bp.key.clone(),
        detected_buildpack: last.name.clone(),
        buildpacks: chosen
            .iter()
            .map(|c| BuildpackInfo {
                key: c.bp.key.clone(),
                name: c.name.clone(),
                version: c.bp.version(),
            })
            .collect(),
    };
    let result = StagingResult::buildpack(meta, process_types);
    archive::write_atomic(&args.output_metadata, &result.to_json())?;
    Ok(result)
}

/// The first buildpack whose `bin/detect` exits 0. A detect script that
/// is missing or cannot start counts as declining (and says so).
fn detect(all: Vec<Buildpack>, build: &Path) -> Result<Chosen, StagingError> {
    for bp in all {
        if !bp.has(Script::Detect) {
            eprintln!("buildpack {}: no bin/detect, skipped", bp.key);
            continue;
        }
        match runner::run_capture(&bp, Script::Detect, &[build]) {
            Ok((status, out)) if status.0.success() => {
                let detected = out.trim();
                let name = bp
                    .configured_name()
                    .or_else(|| (!detected.is_empty()).then(|| detected.to_string()))
                    .unwrap_or_else(|| bp.key.clone());
                tracing::info!(buildpack = %bp.key, %name, "detected");
                return Ok(Chosen { bp, name });
            }
            Ok(_) => {}
            Err(e) => eprintln!("buildpack {}: {e}", bp.key),
        }
    }
    Err(StagingError::NoneDetected)
}

fn check(
    phase: Phase,
    bp: &Buildpack,
    script: Script,
    r: Result<Status, RunError>,
) -> Result<(), StagingError> {
    match r {
        Ok(status) if status.0.success() => Ok(()),
        Ok(status) => Err(StagingError::ScriptFailed {
            phase,
            key: bp.key.clone(),
            script: script.rel_path(),
            status,
        }),
        Err(source) => Err(StagingError::ScriptSpawn {
            phase,
            key: bp.key.clone(),
            source,
        }),
    }
}

/// Supply for all but the last; supply (if any), then finalize or
/// compile for the last.
fn run_buildpacks(layout: &Layout, chosen: &[Chosen]) -> Result<(), StagingError> {
    let deps = layout.deps();
    let profile_d = layout.profile_d();
    for (i, c) in chosen.iter().enumerate() {
        let bp = &c.bp;
        let last = i + 1 == chosen.len();
        let cache = layout.cache_of(bp, last);
        let idx = layout.idx(i);
        let supply_args = [
            layout.build.as_os_str(),
            cache.as_os_str(),
            deps.as_os_str(),
            idx.as_ref(),
        ];
        if !last && !bp.has(Script::Supply) {
            return Err(StagingError::NoSupply {
                key: bp.key.clone(),
            });
        }
        if bp.has(Script::Supply) {
            let r = runner::run(bp, Script::Supply, &supply_args);
            check(Phase::Supply, bp, Script::Supply, r)?;
        }
        if !last {
            continue;
        }
        if bp.has(Script::Finalize) {
            let mut args = supply_args.to_vec();
            args.push(profile_d.as_os_str());
            let r = runner::run(bp, Script::Finalize, &args);
            check(Phase::Finalize, bp, Script::Finalize, r)?;
        } else if bp.has(Script::Compile) {
            let r = runner::run(bp, Script::Compile, &[&layout.build, &cache]);
            check(Phase::Compile, bp, Script::Compile, r)?;
        } else {
            return Err(StagingError::NoCompile {
                key: bp.key.clone(),
            });
        }
    }
    Ok(())
}

/// The final buildpack's release, the `launch.yml` files and the
/// `Procfile`, merged by precedence.
fn process_types(
    layout: &Layout,
    chosen: &[Chosen],
) -> Result<release::ProcessTypes, StagingError> {
    let Some((last, supply)) = chosen.split_last() else {
        return Err(StagingError::NoBuildpacks);
    };
    let bp = &last.bp;
    if !bp.has(Script::Release) {
        return Err(StagingError::NoRelease {
            key: bp.key.clone(),
        });
    }
    let out = match runner::run_capture(bp, Script::Release, &[&layout.build]) {
        Ok((status, out)) => check(Phase::Release, bp, Script::Release, Ok(status)).map(|()| out),
        Err(e) => check(Phase::Release, bp, Script::Release, Err(e)).map(|()| String::new()),
    }?;
    let launch =
        |i: usize| release::read_launch(&layout.deps().join(layout.idx(i)).join("launch.yml"));
    let sources = Sources {
        supply_launch: (0..supply.len()).map(launch).collect::<Result<_, _>>()?,
        final_launch: launch(supply.len())?,
        release: release::parse_release(&out)?,
        procfile: release::read_procfile(&layout.build.join("Procfile"))?,
    };
    Ok(sources.merge())
}

fn write_droplet(layout: &Layout, info: &StagingInfo, out: &Path) -> Result<(), StagingError> {
    let mut tgz = Tgz::create(out)?;
    tgz.add_dir(".")?;
    tgz.add_tree("app", &layout.build)?;
    tgz.add_tree("deps", &layout.deps())?;
    tgz.add_tree("profile.d", &layout.profile_d())?;
    tgz.add_dir("tmp")?;
    tgz.add_dir("logs")?;
    tgz.add_bytes("staging_info.yml", &info.to_json(), 0o644)?;
    tgz.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idx_is_padded_to_the_width_of_the_count() {
        assert_eq!(idx_width(1), 1);
        assert_eq!(idx_width(9), 1);
        assert_eq!(idx_width(10), 2);
        assert_eq!(idx_width(100), 3);
        assert_eq!(format!("{:0w$}", 3, w = idx_width(12)), "03");
    }

    #[test]
    fn failure_messages_name_the_buildpack_and_script() {
        use std::os::unix::process::ExitStatusExt as _;
        let e = StagingError::ScriptFailed {
            phase: Phase::Compile,
            key: "ruby".into(),
            script: Script::Compile.rel_path(),
            status: Status(std::process::ExitStatus::from_raw(1 << 8)),
        };
        assert_eq!(
            e.to_string(),
            "Failed to compile droplet: buildpack ruby bin/compile exited with status 1"
        );
        assert_eq!(e.exit_code(), 223);
        assert_eq!(StagingError::NoneDetected.exit_code(), 222);
        assert_eq!(StagingError::NoSupply { key: "a".into() }.exit_code(), 225);
        assert_eq!(Phase::Finalize.exit_code(), 226);
        assert_eq!(Phase::Release.exit_code(), 224);
    }
}
