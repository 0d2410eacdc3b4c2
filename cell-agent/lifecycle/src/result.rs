//! What staging reports: `result.json` (read by controller-lite's
//! `staging::completion`) and the droplet's `staging_info.yml`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `result.json` of a staging task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagingResult {
    /// `buildpack` or `docker`.
    pub lifecycle_type: String,
    /// What the lifecycle found.
    pub lifecycle_metadata: LifecycleMetadata,
    /// Process type → start command.
    pub process_types: BTreeMap<String, String>,
    /// For docker: the image's config as a JSON string; "" for buildpacks.
    pub execution_metadata: String,
}

/// `lifecycle_metadata`, buildpack or docker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LifecycleMetadata {
    /// The buildpack lifecycle's.
    Buildpack(BuildpackMetadata),
    /// The docker lifecycle's.
    Docker(DockerMetadata),
}

/// `lifecycle_metadata` of a buildpack staging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildpackMetadata {
    /// The key of the final buildpack.
    pub buildpack_key: String,
    /// The name of the final (or detected) buildpack.
    pub detected_buildpack: String,
    /// Every buildpack that ran, in order.
    pub buildpacks: Vec<BuildpackInfo>,
}

/// One buildpack that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildpackInfo {
    /// Its key.
    pub key: String,
    /// Its name (config, detect output, or the key).
    pub name: String,
    /// Its version, or "".
    pub version: String,
}

/// `lifecycle_metadata` of a docker staging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerMetadata {
    /// The image reference as given, with `:latest` when it named no tag.
    pub docker_image: String,
}

impl StagingResult {
    /// A buildpack staging's result.
    pub fn buildpack(meta: BuildpackMetadata, process_types: BTreeMap<String, String>) -> Self {
        StagingResult {
            lifecycle_type: "buildpack".into(),
            lifecycle_metadata: LifecycleMetadata::Buildpack(meta),
            process_types,
            execution_metadata: String::new(),
        }
    }

    /// A docker staging's result.
    pub fn docker(
        docker_image: String,
        process_types: BTreeMap<String, String>,
        execution_metadata: String,
    ) -> Self {
        StagingResult {
            lifecycle_type: "docker".into(),
            lifecycle_metadata: LifecycleMetadata::Docker(DockerMetadata { docker_image }),
            process_types,
            execution_metadata,
        }
    }

    /// As JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and maps of strings always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The droplet's `staging_info.yml` (JSON, which YAML readers accept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagingInfo {
    /// The detected (or final) buildpack's name.
    pub detected_buildpack: String,
    /// The `web` command, or "".
    pub start_command: String,
}

impl StagingInfo {
    /// As JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildpack_result_json_has_the_controllers_field_names() {
        let r = StagingResult::buildpack(
            BuildpackMetadata {
                buildpack_key: "go_buildpack".into(),
                detected_buildpack: "go".into(),
                buildpacks: vec![BuildpackInfo {
                    key: "go_buildpack".into(),
                    name: "go".into(),
                    version: "1.2.3".into(),
                }],
            },
            [("web".to_string(), "./app".to_string())].into(),
        );
        let v: serde_json::Value = serde_json::from_slice(&r.to_json()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({
                "lifecycle_type": "buildpack",
                "lifecycle_metadata": {
                    "buildpack_key": "go_buildpack",
                    "detected_buildpack": "go",
                    "buildpacks": [{"key": "go_buildpack", "name": "go", "version": "1.2.3"}]
                },
                "process_types": {"web": "./app"},
                "execution_metadata": ""
            })
        );
        let back: StagingResult = serde_json::from_value(v).expect("back");
        assert_eq!(back, r);
    }

    #[test]
    fn docker_result_and_staging_info_json() {
        let r = StagingResult::docker(
            "busybox:latest".into(),
            [("web".to_string(), "sh".to_string())].into(),
            "{}".into(),
        );
        let v: serde_json::Value = serde_json::from_slice(&r.to_json()).expect("json");
        assert_eq!(v["lifecycle_type"], "docker");
        assert_eq!(v["lifecycle_metadata"]["docker_image"], "busybox:latest");
        assert_eq!(v["execution_metadata"], "{}");
        let info = StagingInfo {
            detected_buildpack: "go".into(),
            start_command: "./app".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&info.to_json()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"detected_buildpack": "go", "start_command": "./app"})
        );
    }
}
