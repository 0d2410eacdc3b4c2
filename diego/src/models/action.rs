//! Recipes: the step tree a cell's executor interprets (Diego's actions).
//! JSON is externally tagged like Diego's: `{"run": {...}}`,
//! `{"serial": {"actions": [...]}}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One step of a recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Run(RunAction),
    Download(DownloadAction),
    Upload(UploadAction),
    Timeout(TimeoutAction),
    EmitProgress(EmitProgressAction),
    Try(TryAction),
    Serial(Steps),
    Parallel(Steps),
    /// The first to exit cancels the others.
    Codependent(Steps),
}

/// Runs a process in the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunAction {
    pub path: String,
    pub args: Vec<String>,
    pub dir: String,
    pub env: Vec<EnvVar>,
    /// Empty: the image's user.
    pub user: String,
    pub resource_limits: ResourceLimits,
    /// Log source name for its output (e.g. `APP/PROC/WEB/0`, `STG`).
    pub log_source: String,
    pub suppress_log_output: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceLimits {
    pub nofile: Option<u64>,
    pub nproc: Option<u64>,
}

/// Fetches an archive (tgz or zip) over HTTP and extracts it at `to`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DownloadAction {
    /// Human name for progress messages ("droplet", "buildpacks").
    pub artifact: String,
    pub from: String,
    pub to: String,
    /// Non-empty: cached on the cell under this key.
    pub cache_key: String,
    pub user: String,
    pub log_source: String,
    /// `sha1`, `sha256` (or empty for none).
    pub checksum_algorithm: String,
    /// Hex digest of the downloaded bytes.
    pub checksum_value: String,
}

/// Sends one file from the container to `to` (HTTP POST of its bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UploadAction {
    pub artifact: String,
    pub from: String,
    pub to: String,
    pub user: String,
    pub log_source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutAction {
    pub action: Box<Action>,
    pub timeout_ms: u64,
    #[serde(default)]
    pub log_source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmitProgressAction {
    pub action: Box<Action>,
    #[serde(default)]
    pub start_message: String,
    #[serde(default)]
    pub success_message: String,
    #[serde(default)]
    pub failure_message_prefix: String,
    #[serde(default)]
    pub log_source: String,
}

/// Runs the action and succeeds whatever it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TryAction {
    pub action: Box<Action>,
    #[serde(default)]
    pub log_source: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Steps {
    pub actions: Vec<Action>,
}

/// Environment as a map, for building `RunAction::env` in order.
pub fn env(vars: &BTreeMap<String, String>) -> Vec<EnvVar> {
    vars.iter()
        .map(|(name, value)| EnvVar {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_externally_tagged_like_diego() {
        let a = Action::Serial(Steps {
            actions: vec![Action::Run(RunAction {
                path: "/bin/true".into(),
                ..RunAction::default()
            })],
        });
        let v = serde_json::to_value(&a).expect("json");
        assert_eq!(v["serial"]["actions"][0]["run"]["path"], "/bin/true");
        let back: Action = serde_json::from_value(v).expect("parse");
        assert_eq!(back, a);
        let t: Action = serde_json::from_str(
            r#"{"timeout":{"action":{"try":{"action":{"run":{"path":"x"}}}},"timeout_ms":5}}"#,
        )
        .expect("parse");
        assert!(matches!(
            t,
            Action::Timeout(TimeoutAction { timeout_ms: 5, .. })
        ));
    }
}
