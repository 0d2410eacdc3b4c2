//! The command lines of both builders, in Go's flag style as Diego's
//! lifecycle takes them: a single dash, `-name=value` (also `--name=value`
//! and `-name value`). They are normalised to clap's long options.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::Parser;

/// Why a command line was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// An argument that is not valid UTF-8.
    #[error("argument {0:?} is not valid UTF-8")]
    NotUtf8(OsString),
    /// A flag neither builder defines (Go's flag package's message).
    #[error("flag provided but not defined: -{0}")]
    Unknown(String),
    /// Missing or malformed flags (clap's message, or its help).
    #[error("{0}")]
    Usage(#[from] clap::Error),
}

impl ArgsError {
    /// The exit status for this refusal: 0 for `-help`, 2 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ArgsError::NotUtf8(_) | ArgsError::Unknown(_) => 2,
            ArgsError::Usage(e) => e.exit_code(),
        }
    }

    /// Prints the message (or the help) where it belongs.
    pub fn print(&self) {
        match self {
            ArgsError::NotUtf8(_) | ArgsError::Unknown(_) => eprintln!("{self}"),
            ArgsError::Usage(e) => {
                // Nothing to do when stderr is gone.
                let _ = e.print();
            }
        }
    }
}

/// `lifecycle-builder`'s flags (REFERENCE §3).
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "builder",
    about = "Stages an app with buildpacks into a droplet",
    version
)]
pub struct BuilderArgs {
    /// The app's files; they become `./app` of the droplet.
    #[arg(long = "buildDir", default_value = "/tmp/app")]
    pub build_dir: PathBuf,
    /// Holds each buildpack in a directory named by the hash of its key.
    #[arg(long = "buildpacksDir", default_value = "/tmp/buildpacks")]
    pub buildpacks_dir: PathBuf,
    /// The build artifacts cache of the previous staging (may be empty).
    #[arg(long = "buildArtifactsCacheDir", default_value = "/tmp/cache")]
    pub build_artifacts_cache_dir: PathBuf,
    /// Where the droplet tgz is written.
    #[arg(long = "outputDroplet", default_value = "/tmp/droplet")]
    pub output_droplet: PathBuf,
    /// Where the new build artifacts cache tgz is written.
    #[arg(
        long = "outputBuildArtifactsCache",
        default_value = "/tmp/output-cache"
    )]
    pub output_build_artifacts_cache: PathBuf,
    /// Where the staging result JSON is written.
    #[arg(long = "outputMetadata", default_value = "/tmp/result.json")]
    pub output_metadata: PathBuf,
    /// Buildpack keys, comma separated, in order.
    #[arg(long = "buildpackOrder", default_value = "", value_delimiter = ',')]
    pub buildpack_order: Vec<String>,
    /// Run every buildpack in order instead of detecting one.
    #[arg(
        long = "skipDetect",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub skip_detect: bool,
}

impl BuilderArgs {
    /// The buildpack keys without empty entries.
    pub fn keys(&self) -> Vec<String> {
        self.buildpack_order
            .iter()
            .map(|k| k.trim())
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// `lifecycle-docker-builder`'s flags (REFERENCE §4).
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "docker-builder",
    about = "Reads a docker image's config for staging",
    version
)]
pub struct DockerArgs {
    /// The image, e.g. `busybox`, `org/app:v1`, `host:5000/app@sha256:...`.
    #[arg(long = "dockerRef")]
    pub docker_ref: String,
    /// Where the staging result JSON is written.
    #[arg(
        long = "outputMetadataJSONFilename",
        default_value = "/tmp/result.json"
    )]
    pub output_metadata: PathBuf,
    /// Registries (`host:port`) reached over plain HTTP or unverified TLS.
    #[arg(long = "insecureDockerRegistries", value_delimiter = ',')]
    pub insecure_docker_registries: Vec<String>,
    /// The registry user name.
    #[arg(long = "dockerUser", requires = "docker_password")]
    pub docker_user: Option<String>,
    /// The registry password.
    #[arg(long = "dockerPassword", requires = "docker_user")]
    pub docker_password: Option<String>,
}

/// Go's `-name[=value]` as clap's `--name[=value]`; `--` and values after
/// a flag are left alone.
fn normalise(args: impl IntoIterator<Item = OsString>) -> Result<Vec<String>, ArgsError> {
    let mut out = Vec::new();
    for (i, arg) in args.into_iter().enumerate() {
        let arg = arg.into_string().map_err(ArgsError::NotUtf8)?;
        let single_dash = arg.len() > 1 && arg.starts_with('-') && !arg.starts_with("--");
        if i > 0 && single_dash && !looks_negative_number(&arg) {
            out.push(format!("-{arg}"));
        } else {
            out.push(arg);
        }
    }
    Ok(out)
}

fn looks_negative_number(arg: &str) -> bool {
    arg[1..].bytes().all(|b| b.is_ascii_digit())
}

/// The process's own arguments, or the usage message and the exit status
/// of a Go binary given bad flags (what both lifecycle binaries do first).
pub fn parse_or_exit<P: Parser>() -> P {
    parse(std::env::args_os()).unwrap_or_else(|e| {
        e.print();
        std::process::exit(e.exit_code())
    })
}

/// Parses a Go-style command line (the program name first).
pub fn parse<P: Parser>(args: impl IntoIterator<Item = OsString>) -> Result<P, ArgsError> {
    let args = normalise(args)?;
    P::try_parse_from(args).map_err(|e| {
        let unknown = match (e.kind(), e.get(ContextKind::InvalidArg)) {
            (ErrorKind::UnknownArgument, Some(ContextValue::String(arg))) => Some(arg.clone()),
            _ => None,
        };
        match unknown {
            Some(arg) if arg.starts_with('-') => {
                let name = arg.trim_start_matches('-');
                ArgsError::Unknown(name.split('=').next().unwrap_or(name).to_string())
            }
            _ => ArgsError::Usage(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn builder_command_line_of_the_controller() {
        let a: BuilderArgs = parse(os(&[
            "/tmp/lifecycle/builder",
            "-buildDir=/tmp/app",
            "-buildpacksDir=/tmp/buildpacks",
            "-buildArtifactsCacheDir=/tmp/cache",
            "-outputDroplet=/tmp/droplet",
            "-outputBuildArtifactsCache=/tmp/output-cache",
            "-outputMetadata=/tmp/result.json",
            "-buildpackOrder=go_buildpack,ruby,",
            "-skipDetect=true",
        ]))
        .expect("parse");
        assert_eq!(a.build_dir, PathBuf::from("/tmp/app"));
        assert_eq!(a.output_metadata, PathBuf::from("/tmp/result.json"));
        assert_eq!(a.keys(), ["go_buildpack", "ruby"]);
        assert!(a.skip_detect);
    }

    #[test]
    fn builder_defaults_and_go_spellings() {
        let a: BuilderArgs =
            parse(os(&["b", "--buildpackOrder", "x", "-skipDetect"])).expect("parse");
        assert_eq!(a.build_dir, PathBuf::from("/tmp/app"));
        assert_eq!(a.output_droplet, PathBuf::from("/tmp/droplet"));
        assert_eq!(a.keys(), ["x"]);
        assert!(a.skip_detect);
        let a: BuilderArgs = parse(os(&["b", "-skipDetect=false"])).expect("parse");
        assert!(!a.skip_detect);
        assert!(a.keys().is_empty());
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        for bad in [
            vec!["b", "-nope=1"],
            vec!["b", "-skipDetect=maybe"],
            vec!["b", "stray"],
        ] {
            let err = parse::<BuilderArgs>(os(&bad)).expect_err("refused");
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
        let unknown = parse::<BuilderArgs>(os(&["b", "-nope=1"])).expect_err("unknown");
        assert_eq!(unknown.to_string(), "flag provided but not defined: -nope");
        let help = parse::<BuilderArgs>(os(&["b", "-help"])).expect_err("help");
        assert_eq!(help.exit_code(), 0);
    }

    #[test]
    fn docker_command_line() {
        let a: DockerArgs = parse(os(&[
            "d",
            "-dockerRef=127.0.0.1:5000/app:v1",
            "-outputMetadataJSONFilename=/tmp/r.json",
            "-insecureDockerRegistries=127.0.0.1:5000,reg.local:443",
            "-dockerUser=u",
            "-dockerPassword=p",
        ]))
        .expect("parse");
        assert_eq!(a.docker_ref, "127.0.0.1:5000/app:v1");
        assert_eq!(
            a.insecure_docker_registries,
            ["127.0.0.1:5000", "reg.local:443"]
        );
        assert_eq!(a.docker_user.as_deref(), Some("u"));
        let missing = parse::<DockerArgs>(os(&["d"])).expect_err("no ref");
        assert_eq!(missing.exit_code(), 2);
        let half = parse::<DockerArgs>(os(&["d", "-dockerRef=x", "-dockerUser=u"]))
            .expect_err("user without password");
        assert_eq!(half.exit_code(), 2);
    }
}
