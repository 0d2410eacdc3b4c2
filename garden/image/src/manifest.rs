//! Manifests, indexes and image configs (OCI and Docker schema 2): which
//! manifest of an index runs here, and what an image manifest asks us to
//! fetch.

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{what}: not a valid manifest or index: {source}")]
    Invalid {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}: Docker schema 1 manifests are not supported")]
    Schema1 { what: String },
    #[error("{what}: no manifest for linux/amd64 (the index has: {available})")]
    NoPlatform { what: String, available: String },
    #[error("{what}: {field} {value:?} is not a valid digest")]
    BadDigest {
        what: String,
        field: &'static str,
        value: String,
    },
    #[error("{what}: layer {digest} has media type {media_type}, which is not a layer tarball we can unpack")]
    UnsupportedLayer {
        what: String,
        digest: String,
        media_type: String,
    },
    #[error("{what}: config of media type {media_type} is not a container image config")]
    NotAnImage { what: String, media_type: String },
    #[error("{what}: the config lists {diff_ids} diff ids for {layers} layers")]
    DiffIdCount {
        what: String,
        diff_ids: usize,
        layers: usize,
    },
}

/// A manifest document: either an index of per-platform manifests, or one
/// image.
pub enum Document {
    Index(Box<ImageIndex>),
    Image(Box<ImageManifest>),
}

/// One layer to fetch: its blob digest, size, and the digest of its
/// uncompressed tarball (from the config).
#[derive(Clone, Debug)]
pub struct LayerRef {
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
}

/// What an image manifest asks for.
pub struct Plan {
    pub config: Digest,
    pub layers: Vec<(Digest, u64)>,
}

/// The parts of an image config that become a container's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `port/proto`, e.g. `8080/tcp`.
    pub exposed_ports: Vec<String>,
    pub stop_signal: Option<String>,
}

/// Parses a manifest or index, by media type or, without one, by shape.
pub fn parse(
    bytes: &[u8],
    media_type: Option<&str>,
    what: &str,
) -> Result<Document, ManifestError> {
    let invalid = |source| ManifestError::Invalid {
        what: what.to_string(),
        source,
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(invalid)?;
    let media_type = media_type
        .filter(|m| m.starts_with("application/vnd."))
        .or_else(|| value["mediaType"].as_str())
        .unwrap_or_default();
    if media_type.starts_with("application/vnd.docker.distribution.manifest.v1")
        || value["schemaVersion"] == 1
    {
        return Err(ManifestError::Schema1 {
            what: what.to_string(),
        });
    }
    let is_index = media_type.ends_with("image.index.v1+json")
        || media_type.ends_with("manifest.list.v2+json")
        || (media_type.is_empty() && value.get("manifests").is_some());
    if is_index {
        return serde_json::from_value(value)
            .map(|i| Document::Index(Box::new(i)))
            .map_err(invalid);
    }
    serde_json::from_value(value)
        .map(|m| Document::Image(Box::new(m)))
        .map_err(invalid)
}

/// The linux/amd64 manifest of an index (without a variant, or `v1`).
pub fn select_platform(index: &ImageIndex, what: &str) -> Result<Digest, ManifestError> {
    let fits = |d: &&Descriptor| {
        d.platform().as_ref().is_some_and(|p| {
            p.os().to_string() == "linux"
                && p.architecture().to_string() == "amd64"
                && p.variant()
                    .as_deref()
                    .is_none_or(|v| v == "v1" || v.is_empty())
        })
    };
    match index.manifests().iter().find(fits) {
        Some(d) => digest_of(d, what, "manifest digest"),
        None => {
            let available: Vec<String> = index
                .manifests()
                .iter()
                .filter_map(|d| d.platform().as_ref())
                .map(|p| format!("{}/{}", p.os(), p.architecture()))
                .collect();
            Err(ManifestError::NoPlatform {
                what: what.to_string(),
                available: if available.is_empty() {
                    "nothing".into()
                } else {
                    available.join(", ")
                },
            })
        }
    }
}

/// The config and layer blobs an image manifest names, checked for being a
/// container image we can unpack.
pub fn plan(m: &ImageManifest, what: &str) -> Result<Plan, ManifestError> {
    let config_type = m.config().media_type().to_string();
    let config_ok = config_type == "application/vnd.oci.image.config.v1+json"
        || config_type == "application/vnd.docker.container.image.v1+json";
    if !config_ok {
        return Err(ManifestError::NotAnImage {
            what: what.to_string(),
            media_type: config_type,
        });
    }
    let mut layers = Vec::new();
    for l in m.layers() {
        let media_type = l.media_type().to_string();
        let digest = digest_of(l, what, "layer digest")?;
        let unpackable = media_type.contains(".tar") || media_type.contains("rootfs.diff.tar");
        let foreign = media_type.contains("nondistributable") || media_type.contains("foreign");
        if !unpackable || foreign || media_type.contains("encrypted") {
            return Err(ManifestError::UnsupportedLayer {
                what: what.to_string(),
                digest: digest.to_string(),
                media_type,
            });
        }
        layers.push((digest, l.size()));
    }
    Ok(Plan {
        config: digest_of(m.config(), what, "config digest")?,
        layers,
    })
}

/// Parses an image config; returns the container defaults and the layers'
/// diff ids (bottom first), which must match the manifest's layer count.
pub fn parse_config(
    bytes: &[u8],
    plan: &Plan,
    what: &str,
) -> Result<(ImageConfig, Vec<LayerRef>), ManifestError> {
    let cfg: ImageConfiguration =
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Invalid {
            what: format!("{what} config"),
            source,
        })?;
    let diff_ids = cfg.rootfs().diff_ids();
    if diff_ids.len() != plan.layers.len() {
        return Err(ManifestError::DiffIdCount {
            what: what.to_string(),
            diff_ids: diff_ids.len(),
            layers: plan.layers.len(),
        });
    }
    let mut layers = Vec::new();
    for ((digest, size), diff_id) in plan.layers.iter().zip(diff_ids) {
        let diff_id = diff_id.parse().map_err(|_| ManifestError::BadDigest {
            what: what.to_string(),
            field: "diff id",
            value: diff_id.clone(),
        })?;
        layers.push(LayerRef {
            digest: digest.clone(),
            size: *size,
            diff_id,
        });
    }
    Ok((defaults(&cfg), layers))
}

fn defaults(cfg: &ImageConfiguration) -> ImageConfig {
    let Some(c) = cfg.config() else {
        return ImageConfig::default();
    };
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    ImageConfig {
        env: c.env().clone().unwrap_or_default(),
        working_dir: non_empty(c.working_dir()),
        user: non_empty(c.user()),
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        exposed_ports: c.exposed_ports().clone().unwrap_or_default(),
        stop_signal: non_empty(c.stop_signal()),
    }
}

fn digest_of(d: &Descriptor, what: &str, field: &'static str) -> Result<Digest, ManifestError> {
    let s = d.digest().to_string();
    s.parse().map_err(|_| ManifestError::BadDigest {
        what: what.to_string(),
        field,
        value: s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(
        media: &str,
        d: &Digest,
        size: u64,
        platform: Option<(&str, &str)>,
    ) -> serde_json::Value {
        let mut v = serde_json::json!({"mediaType": media, "digest": d.to_string(), "size": size});
        if let Some((os, arch)) = platform {
            v["platform"] = serde_json::json!({"os": os, "architecture": arch});
        }
        v
    }

    #[test]
    fn index_selects_linux_amd64() {
        let arm = Digest::sha256(b"arm");
        let amd = Digest::sha256(b"amd");
        let m = "application/vnd.oci.image.manifest.v1+json";
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [desc(m, &arm, 1, Some(("linux", "arm64"))), desc(m, &amd, 1, Some(("linux", "amd64")))]
        });
        let bytes = serde_json::to_vec(&index).expect("json");
        let Document::Index(i) = parse(&bytes, None, "t").expect("parse") else {
            panic!("not an index")
        };
        assert_eq!(select_platform(&i, "t").expect("select"), amd);

        let only_arm = serde_json::json!({"schemaVersion": 2, "manifests": [desc(m, &arm, 1, Some(("linux", "arm64")))]});
        let bytes = serde_json::to_vec(&only_arm).expect("json");
        let Document::Index(i) = parse(
            &bytes,
            Some("application/vnd.docker.distribution.manifest.list.v2+json"),
            "t",
        )
        .expect("parse") else {
            panic!("not an index")
        };
        let err = select_platform(&i, "t").expect_err("no amd64").to_string();
        assert!(err.contains("linux/arm64"), "{err}");
    }

    #[test]
    fn docker_manifest_plans_layers() {
        let cfg = Digest::sha256(b"cfg");
        let l = Digest::sha256(b"layer");
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": desc("application/vnd.docker.container.image.v1+json", &cfg, 3, None),
            "layers": [desc("application/vnd.docker.image.rootfs.diff.tar.gzip", &l, 5, None)]
        });
        let bytes = serde_json::to_vec(&manifest).expect("json");
        let Document::Image(m) = parse(&bytes, None, "t").expect("parse") else {
            panic!("not an image")
        };
        let p = plan(&m, "t").expect("plan");
        assert_eq!(p.config, cfg);
        assert_eq!(p.layers, vec![(l.clone(), 5)]);

        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "WorkingDir": "/app", "User": "vcap", "Cmd": ["sh"], "ExposedPorts": {"8080/tcp": {}}},
            "rootfs": {"type": "layers", "diff_ids": [Digest::sha256(b"d").to_string()]}
        });
        let (c, layers) =
            parse_config(&serde_json::to_vec(&config).expect("json"), &p, "t").expect("config");
        assert_eq!(c.env, ["PATH=/bin"]);
        assert_eq!(c.working_dir.as_deref(), Some("/app"));
        assert_eq!(c.user.as_deref(), Some("vcap"));
        assert_eq!(c.exposed_ports, ["8080/tcp"]);
        assert_eq!(layers[0].diff_id, Digest::sha256(b"d"));
    }

    #[test]
    fn refuses_schema1_and_artifacts() {
        let s1 = br#"{"schemaVersion": 1, "name": "x", "fsLayers": []}"#;
        assert!(matches!(
            parse(s1, None, "t"),
            Err(ManifestError::Schema1 { .. })
        ));
        let cfg = Digest::sha256(b"cfg");
        let artifact = serde_json::json!({
            "schemaVersion": 2,
            "config": desc("application/vnd.cncf.helm.config.v1+json", &cfg, 3, None),
            "layers": []
        });
        let Document::Image(m) =
            parse(&serde_json::to_vec(&artifact).expect("json"), None, "t").expect("parse")
        else {
            panic!("not an image")
        };
        assert!(matches!(
            plan(&m, "t"),
            Err(ManifestError::NotAnImage { .. })
        ));
    }
}
