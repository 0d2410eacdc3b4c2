//! The messages of Run and Attach's hijacked connection (Garden's
//! `transport.ProcessPayload`), one JSON value per line in both directions.

use serde::{Deserialize, Serialize};
use serde_repr::{Deserialize_repr, Serialize_repr};

use super::process::{Signal, TtySpec};

/// Which standard stream a payload's data belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize_repr, Deserialize_repr)]
#[repr(u8)]
pub enum Source {
    /// Standard input (client to server).
    Stdin = 0,
    /// Standard output.
    Stdout = 1,
    /// Standard error.
    Stderr = 2,
}

/// One message on a process stream.
///
/// Server to client: first `{process_id, stream_id}`, last
/// `{process_id, exit_status}` or `{process_id, error}`. Client to server:
/// `{source: 0, data}` (stdin), `{source: 0}` (stdin EOF), `{signal}`,
/// `{tty}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessPayload {
    /// The process.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub process_id: String,
    /// Names the stdout/stderr attach connections of this stream.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stream_id: String,
    /// The stream `data` belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Stream data (a JSON string, so text: invalid UTF-8 does not survive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The process's exit status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// Why waiting for the process failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A new window size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tty: Option<TtySpec>,
    /// A signal to send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<Signal>,
}
