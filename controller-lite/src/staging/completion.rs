//! The completion of a staging task: `result.json` in, a droplet record and
//! a STAGED build out (or a FAILED build with the reason), in the caller's
//! transaction.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Completion, TaskOutcome};
use crate::db::builds::{self, Build, Droplet};
use crate::db::{buildpacks, packages, DbError};

/// `result.json` of a staging task (REFERENCE §3, §4).
#[derive(Debug, Deserialize)]
struct StagingResult {
    #[serde(default)]
    lifecycle_metadata: LifecycleMetadata,
    #[serde(default)]
    process_types: BTreeMap<String, String>,
    #[serde(default)]
    execution_metadata: String,
}

#[derive(Debug, Default, Deserialize)]
struct LifecycleMetadata {
    #[serde(default)]
    detected_buildpack: String,
    #[serde(default)]
    buildpacks: Vec<ResultBuildpack>,
    #[serde(default)]
    docker_image: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ResultBuildpack {
    #[serde(default)]
    key: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
}

/// The build error of a failed staging task: the buildpack lifecycle's
/// exit codes (REFERENCE §3) as Cloud Controller names them, anything else
/// as a staging error with the cell's reason.
fn staging_error(reason: &str) -> String {
    let status = reason
        .rsplit_once("Exited with status ")
        .and_then(|(_, s)| s.trim().parse::<i32>().ok());
    match status {
        Some(222) => {
            "NoAppDetectedError - An app was not successfully detected by any available buildpack"
                .into()
        }
        Some(223) => {
            "BuildpackCompileFailed - App staging failed in the buildpack compile phase".into()
        }
        Some(224) => {
            "BuildpackReleaseFailed - App staging failed in the buildpack release phase".into()
        }
        Some(225) => {
            "BuildpackCompileFailed - App staging failed in the buildpack supply phase".into()
        }
        Some(226) => {
            "BuildpackCompileFailed - App staging failed in the buildpack finalize phase".into()
        }
        _ => format!("StagingError - Staging error: {reason}"),
    }
}

/// Moves a build to STAGED or FAILED inside the completion transaction.
pub(super) fn complete_build(
    tx: &rusqlite::Transaction<'_>,
    build: &Build,
    outcome: &TaskOutcome,
) -> Result<Completion, DbError> {
    let fail = |tx: &rusqlite::Transaction<'_>, error: String| -> Result<Completion, DbError> {
        builds::mark_failed(tx, &build.guid, &error)?;
        Ok(Completion::BuildFailed { error })
    };
    let result = match outcome {
        TaskOutcome::Failed { reason } => return fail(tx, staging_error(reason)),
        TaskOutcome::Succeeded { result } => result,
    };
    let parsed: StagingResult = match serde_json::from_str(result) {
        Ok(r) => r,
        Err(e) => return fail(tx, format!("StagingError - invalid staging result: {e}")),
    };
    let upload = builds::take_staging_upload(tx, &build.guid)?;
    let docker = build.lifecycle_type == "docker";
    if !docker && upload.is_none() {
        return fail(
            tx,
            "StagingError - staging finished without uploading a droplet".into(),
        );
    }
    let docker_image = if docker {
        let package = packages::get(tx, &build.package_guid)?;
        parsed
            .lifecycle_metadata
            .docker_image
            .clone()
            .or(package.and_then(|p| p.docker_image))
    } else {
        None
    };
    let buildpacks: Vec<serde_json::Value> = parsed
        .lifecycle_metadata
        .buildpacks
        .iter()
        .map(|b| {
            // An admin buildpack's key is its guid: show its name.
            let admin = buildpacks::get(tx, &b.key).ok().flatten().map(|bp| bp.name);
            let name = admin
                .as_deref()
                .unwrap_or(if b.key.is_empty() { &b.name } else { &b.key });
            serde_json::json!({
                "name": name,
                "buildpack_name": b.name,
                "detect_output": parsed.lifecycle_metadata.detected_buildpack,
                "version": b.version,
            })
        })
        .collect();
    let now = crate::db::now();
    let droplet = Droplet {
        guid: crate::db::new_guid(),
        app_guid: build.app_guid.clone(),
        build_guid: Some(build.guid.clone()),
        package_guid: Some(build.package_guid.clone()),
        state: "STAGED".into(),
        lifecycle_type: build.lifecycle_type.clone(),
        process_types: parsed.process_types,
        execution_metadata: parsed.execution_metadata,
        buildpacks: serde_json::Value::Array(buildpacks),
        stack: build.stack.clone(),
        docker_image,
        blob: upload,
        created_at: now,
        updated_at: now,
    };
    builds::create_droplet(tx, &droplet)?;
    if !builds::mark_staged(tx, &build.guid, &droplet.guid)? {
        return Err(DbError::Conflict(format!(
            "build {} changed state during completion",
            build.guid
        )));
    }
    Ok(Completion::BuildStaged {
        droplet_guid: droplet.guid,
    })
}

#[cfg(test)]
mod tests {
    use super::staging_error;

    #[test]
    fn lifecycle_exit_codes_name_the_phase() {
        assert!(staging_error("Exited with status 222").starts_with("NoAppDetectedError"));
        assert!(staging_error("Exited with status 226").contains("finalize phase"));
        assert_eq!(
            staging_error("Exited with status 1"),
            "StagingError - Staging error: Exited with status 1"
        );
        assert_eq!(
            staging_error("insufficient resources: memory"),
            "StagingError - Staging error: insufficient resources: memory"
        );
    }
}
