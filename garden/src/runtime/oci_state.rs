//! The OCI state document (`state` output, and hooks' standard input).

use serde::Serialize;

use super::state::{ExitRecord, Record, Status};

/// runc prints these fields; tools read `status` and `pid`. The exit fields
/// are ours: a stopped container says how its process ended.
#[derive(Debug, Serialize)]
pub struct OciState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'static str,
    pub id: &'a str,
    pub status: Status,
    pub pid: i32,
    pub bundle: &'a std::path::Path,
    pub rootfs: &'a std::path::Path,
    pub created: &'a str,
    pub owner: &'a str,
    #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
    pub annotations: &'a std::collections::HashMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitRecord>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
}

pub const OCI_VERSION: &str = "1.2.0";

pub fn build<'a>(
    record: &'a Record,
    status: Status,
    exit: Option<ExitRecord>,
    oom_killed: bool,
) -> OciState<'a> {
    OciState {
        oci_version: OCI_VERSION,
        id: &record.id,
        status,
        // A stopped container has no pid (runc prints 0).
        pid: if status == Status::Stopped {
            0
        } else {
            record.pid
        },
        bundle: &record.bundle,
        rootfs: &record.rootfs,
        created: &record.created,
        owner: &record.owner,
        annotations: &record.annotations,
        exit,
        oom_killed,
    }
}

/// The state as hooks receive it.
pub fn render(record: &Record, status: Status) -> String {
    serde_json::to_string(&build(record, status, None, false)).unwrap_or_default()
}
