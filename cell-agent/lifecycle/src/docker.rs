//! The docker builder (REFERENCE §4): resolve the image's manifest (an
//! index to its linux/amd64 manifest), fetch its config through
//! `garden-image`'s registry client, and report the start command and the
//! execution metadata.

use std::collections::BTreeMap;

use garden_image::manifest::{self, Document, ManifestError};
use garden_image::reference::{self, Reference, ReferenceError, RegistryRef, Source};
use garden_image::registry::{RegistryClient, RegistryError};
use garden_image::{Credentials, ImageConfig};
use serde::{Deserialize, Serialize};

use crate::archive::{self, ArchiveError};
use crate::args::DockerArgs;
use crate::result::StagingResult;

/// Why the image's config could not be read. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The reference does not parse.
    #[error("invalid docker image reference {given:?}: {source}")]
    Reference {
        /// The reference as given.
        given: String,
        /// Why.
        #[source]
        source: ReferenceError,
    },
    /// Talking to the registry failed (unreachable, 404, refused login).
    #[error("fetching {image}: {source}")]
    Registry {
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: RegistryError,
    },
    /// A manifest or config that is not a usable image.
    #[error("fetching {image}: {source}")]
    Manifest {
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: ManifestError,
    },
    /// An index whose linux/amd64 entry is another index.
    #[error("fetching {image}: the linux/amd64 entry of its index is itself an index")]
    NestedIndex {
        /// The image.
        image: String,
    },
    /// The entrypoint or command holds a NUL byte.
    #[error("the image's entrypoint and command cannot be quoted for a shell: {0:?}")]
    Unquotable(Vec<String>),
    /// The async runtime could not start.
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Writing `result.json` failed.
    #[error(transparent)]
    Output(#[from] ArchiveError),
}

/// One exposed port of the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Port {
    /// The port number.
    #[serde(rename = "Port")]
    pub port: u16,
    /// `tcp` or `udp`.
    #[serde(rename = "Protocol")]
    pub protocol: String,
}

/// `execution_metadata` (as a JSON string in `result.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionMetadata {
    /// The image's `Cmd`.
    pub cmd: Vec<String>,
    /// The image's `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// The image's `WorkingDir`, or "".
    pub workdir: String,
    /// The image's `User`, `root` when unset.
    pub user: String,
    /// `ExposedPorts`, sorted.
    pub ports: Vec<Port>,
}

impl ExecutionMetadata {
    /// The parts of an image config staging keeps.
    pub fn from_config(cfg: &ImageConfig) -> ExecutionMetadata {
        let mut ports: Vec<Port> = cfg
            .exposed_ports
            .iter()
            .filter_map(|p| parse_port(p))
            .collect();
        ports.sort();
        ports.dedup();
        ExecutionMetadata {
            cmd: cfg.cmd.clone(),
            entrypoint: cfg.entrypoint.clone(),
            workdir: cfg.working_dir.clone().unwrap_or_default(),
            user: cfg.user.clone().unwrap_or_else(|| "root".into()),
            ports,
        }
    }

    /// Entrypoint and command as one shell command line, if there is any.
    pub fn start_command(&self) -> Result<Option<String>, DockerError> {
        let words: Vec<String> = self.entrypoint.iter().chain(&self.cmd).cloned().collect();
        if words.is_empty() {
            return Ok(None);
        }
        shlex::try_join(words.iter().map(String::as_str))
            .map(Some)
            .map_err(|_| DockerError::Unquotable(words))
    }
}

/// `8080/tcp` (or just `8080`) as a port; anything else is skipped.
fn parse_port(spec: &str) -> Option<Port> {
    let (port, protocol) = spec.split_once('/').unwrap_or((spec, "tcp"));
    match port.parse() {
        Ok(port) => Some(Port {
            port,
            protocol: protocol.to_ascii_lowercase(),
        }),
        Err(_) => {
            tracing::warn!(spec, "ignoring an exposed port that is not a number");
            None
        }
    }
}

/// The reference as given (without a `docker://` scheme), with `:latest`
/// when it names neither a tag nor a digest.
pub fn normalised_ref(given: &str) -> String {
    let bare = given.strip_prefix("docker://").unwrap_or(given);
    let bare = bare.trim_start_matches('/');
    let last = bare.rsplit('/').next().unwrap_or(bare);
    if bare.contains('@') || last.contains(':') {
        bare.to_string()
    } else {
        format!("{bare}:latest")
    }
}

/// The registry, repository and tag or digest of a docker reference.
pub fn parse_ref(given: &str) -> Result<RegistryRef, DockerError> {
    let bare = given.strip_prefix("docker://").unwrap_or(given);
    let invalid = |source| DockerError::Reference {
        given: given.to_string(),
        source,
    };
    match reference::parse(&format!("docker://{bare}")).map_err(invalid)? {
        Source::Registry(r) => Ok(r),
        _ => Err(invalid(ReferenceError::UnsupportedScheme {
            uri: given.to_string(),
        })),
    }
}

/// Fetches the linux/amd64 image config of `r`.
pub async fn fetch_config(
    client: &RegistryClient,
    r: &RegistryRef,
    creds: Option<&Credentials>,
) -> Result<ImageConfig, DockerError> {
    let image = r.to_string();
    let registry = |source| DockerError::Registry {
        image: image.clone(),
        source,
    };
    let bad = |source| DockerError::Manifest {
        image: image.clone(),
        source,
    };
    let session = client.session(r, creds).await.map_err(registry)?;
    let top = session.manifest(&r.reference).await.map_err(registry)?;
    let m = match manifest::parse(&top.bytes, top.media_type.as_deref(), &image).map_err(bad)? {
        Document::Image(m) => m,
        Document::Index(index) => {
            let digest = manifest::select_platform(&index, &image).map_err(bad)?;
            let one = session
                .manifest(&Reference::Digest(digest))
                .await
                .map_err(registry)?;
            match manifest::parse(&one.bytes, one.media_type.as_deref(), &image).map_err(bad)? {
                Document::Image(m) => m,
                Document::Index(_) => return Err(DockerError::NestedIndex { image }),
            }
        }
    };
    let plan = manifest::plan(&m, &image).map_err(bad)?;
    let config = session.blob_bytes(&plan.config).await.map_err(registry)?;
    let (cfg, _layers) = manifest::parse_config(&config, &plan, &image).map_err(bad)?;
    Ok(cfg)
}

/// The staging result of an image config.
pub fn result_of(docker_image: String, cfg: &ImageConfig) -> Result<StagingResult, DockerError> {
    let meta = ExecutionMetadata::from_config(cfg);
    let mut process_types = BTreeMap::new();
    match meta.start_command()? {
        Some(cmd) => {
            process_types.insert("web".to_string(), cmd);
        }
        None => eprintln!(
            "warning: the image has neither an entrypoint nor a command; the app needs a start command"
        ),
    }
    let execution_metadata = serde_json::to_string(&meta).unwrap_or_default();
    Ok(StagingResult::docker(
        docker_image,
        process_types,
        execution_metadata,
    ))
}

/// Stages a docker app as `args` say: on success `result.json` exists.
pub fn stage(args: &DockerArgs) -> Result<StagingResult, DockerError> {
    let r = parse_ref(&args.docker_ref)?;
    let insecure = args
        .insecure_docker_registries
        .iter()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .collect();
    let creds = match (&args.docker_user, &args.docker_password) {
        (Some(username), Some(password)) => Some(Credentials {
            username: username.clone(),
            password: password.clone(),
        }),
        _ => None,
    };
    let client = RegistryClient::new(&[], insecure).map_err(|source| DockerError::Registry {
        image: r.to_string(),
        source,
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DockerError::Runtime)?;
    let cfg = rt.block_on(fetch_config(&client, &r, creds.as_ref()))?;
    let result = result_of(normalised_ref(&args.docker_ref), &cfg)?;
    archive::write_atomic(&args.output_metadata, &result.to_json())?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalised_with_a_tag() {
        assert_eq!(normalised_ref("busybox"), "busybox:latest");
        assert_eq!(normalised_ref("org/app:v1"), "org/app:v1");
        assert_eq!(
            normalised_ref("127.0.0.1:5000/app"),
            "127.0.0.1:5000/app:latest"
        );
        assert_eq!(
            normalised_ref("docker:///library/busybox"),
            "library/busybox:latest"
        );
        let d = format!("reg.io/app@sha256:{}", "a".repeat(64));
        assert_eq!(normalised_ref(&d), d);

        let r = parse_ref("127.0.0.1:5000/org/app").expect("parse");
        assert_eq!(r.host, "127.0.0.1:5000");
        assert_eq!(r.repository, "org/app");
        assert_eq!(r.reference, Reference::Tag("latest".into()));
        let hub = parse_ref("busybox:1.36").expect("hub");
        assert_eq!(hub.repository, "library/busybox");
        let err = parse_ref("UPPER/case").expect_err("invalid");
        assert!(err.to_string().contains("UPPER/case"), "{err}");
    }

    #[test]
    fn execution_metadata_from_a_config() {
        let cfg = ImageConfig {
            entrypoint: vec!["/bin/sh".into(), "-c".into()],
            cmd: vec!["echo 'hi there' && sleep 1".into()],
            working_dir: Some("/srv".into()),
            exposed_ports: vec!["9090/tcp".into(), "53/udp".into(), "8080/tcp".into()],
            ..ImageConfig::default()
        };
        let meta = ExecutionMetadata::from_config(&cfg);
        assert_eq!(meta.user, "root");
        let ports: Vec<(u16, &str)> = meta
            .ports
            .iter()
            .map(|p| (p.port, p.protocol.as_str()))
            .collect();
        assert_eq!(ports, [(53, "udp"), (8080, "tcp"), (9090, "tcp")]);
        let cmd = meta.start_command().expect("quote").expect("some");
        assert_eq!(
            shlex::split(&cmd).expect("split"),
            ["/bin/sh", "-c", "echo 'hi there' && sleep 1"]
        );

        // The shell sees exactly the image's words, even with quotes and `$`.
        let nasty = ExecutionMetadata {
            cmd: vec!["a b".into(), "it's".into(), "$HOME `x` \\ \"q\"".into()],
            ..meta.clone()
        };
        let line = nasty.start_command().expect("quote").expect("some");
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {line}"))
            .output()
            .expect("sh");
        let words: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        let expected: Vec<String> = nasty.entrypoint.iter().chain(&nasty.cmd).cloned().collect();
        assert_eq!(words, expected);

        let r = result_of("app:latest".into(), &cfg).expect("result");
        assert_eq!(r.process_types["web"], cmd);
        let v: serde_json::Value = serde_json::from_str(&r.execution_metadata).expect("json");
        assert_eq!(v["workdir"], "/srv");
        assert_eq!(
            v["ports"][0],
            serde_json::json!({"Port": 53, "Protocol": "udp"})
        );

        let empty = result_of("x:latest".into(), &ImageConfig::default()).expect("result");
        assert!(empty.process_types.is_empty());
        let nul = ImageConfig {
            cmd: vec!["a\0b".into()],
            ..ImageConfig::default()
        };
        assert!(ExecutionMetadata::from_config(&nul)
            .start_command()
            .is_err());
    }
}
