//! The cell's calls to the controller's internal API (`diego::rep`), each
//! with the cell key as a bearer token.

use std::time::Duration;

use diego::rep::{
    CellPresence, ContainerMetricsBatch, LrpEvents, PresenceAck, TaskCompleted, TaskStarted,
};
use serde::Serialize;

/// Why a call to the controller failed.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The HTTP client could not be built.
    #[error("building the controller client: {0}")]
    Client(reqwest::Error),
    /// No answer (connection refused, timeout, bad body).
    #[error("{what} to {url}: {source}")]
    Transport {
        /// The call.
        what: &'static str,
        /// Where.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The controller answered with an error status.
    #[error("{what} to {url}: the controller answered {status}: {body}")]
    Status {
        /// The call.
        what: &'static str,
        /// Where.
        url: String,
        /// The status.
        status: reqwest::StatusCode,
        /// The start of its body.
        body: String,
    },
}

impl ControllerError {
    /// The controller refused the content for good (4xx other than 401,
    /// 408, 429): retrying the same body cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Status { status, .. } => {
                status.is_client_error() && ![401, 408, 429].contains(&status.as_u16())
            }
            _ => false,
        }
    }
}

/// One log line in controller-lite's envelope (`POST /internal/v1/logs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEnvelope {
    /// The app (the LRP's or task's log guid).
    pub source_id: String,
    /// `APP/PROC/WEB`, `CELL`, `STG`, ...
    pub source_type: String,
    /// Instance index.
    pub instance_id: String,
    /// The text.
    pub line: String,
    /// Written to stderr.
    pub stderr: bool,
}

/// A client of the controller's cell-facing routes.
#[derive(Clone)]
pub struct ControllerClient {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl ControllerClient {
    /// A client of `base` (e.g. `https://controller:8443`) with `key`,
    /// trusting the certificates of `ca_pem` beside the system's roots.
    pub fn new(
        base: &str,
        key: &str,
        ca_pem: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Self, ControllerError> {
        // The rustls provider must be chosen before the first client.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(pem) = ca_pem {
            let certs =
                reqwest::Certificate::from_pem_bundle(pem).map_err(ControllerError::Client)?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(ControllerError::Client)?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        })
    }

    async fn send(
        &self,
        what: &'static str,
        request: reqwest::RequestBuilder,
        url: String,
    ) -> Result<reqwest::Response, ControllerError> {
        let response = request
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|source| ControllerError::Transport {
                what,
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let mut body = response.text().await.unwrap_or_default();
        if body.len() > 200 {
            let mut cut = 200;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
        }
        Err(ControllerError::Status {
            what,
            url,
            status,
            body,
        })
    }

    async fn post<T: Serialize + ?Sized>(
        &self,
        what: &'static str,
        path: &str,
        body: &T,
    ) -> Result<(), ControllerError> {
        let url = format!("{}{path}", self.base);
        self.send(what, self.http.post(&url).json(body), url)
            .await
            .map(drop)
    }

    /// `PUT /internal/v1/cells/{id}/presence`.
    pub async fn put_presence(
        &self,
        presence: &CellPresence,
    ) -> Result<PresenceAck, ControllerError> {
        let url = format!(
            "{}/internal/v1/cells/{}/presence",
            self.base, presence.cell_id
        );
        let response = self
            .send("presence", self.http.put(&url).json(presence), url.clone())
            .await?;
        response
            .json()
            .await
            .map_err(|source| ControllerError::Transport {
                what: "presence",
                url,
                source,
            })
    }

    /// `DELETE /internal/v1/cells/{id}/presence`.
    pub async fn delete_presence(&self, cell_id: &str) -> Result<(), ControllerError> {
        let url = format!("{}/internal/v1/cells/{cell_id}/presence", self.base);
        self.send("presence removal", self.http.delete(&url), url)
            .await
            .map(drop)
    }

    /// `POST /internal/v1/actual_lrps/events`.
    pub async fn lrp_events(&self, events: &LrpEvents) -> Result<(), ControllerError> {
        self.post("LRP events", "/internal/v1/actual_lrps/events", events)
            .await
    }

    /// `POST /internal/v1/tasks/{guid}/started`.
    pub async fn task_started(
        &self,
        guid: &str,
        started: &TaskStarted,
    ) -> Result<(), ControllerError> {
        self.post(
            "task start",
            &format!("/internal/v1/tasks/{guid}/started"),
            started,
        )
        .await
    }

    /// `POST /internal/v1/tasks/{guid}/completed`.
    pub async fn task_completed(
        &self,
        guid: &str,
        completed: &TaskCompleted,
    ) -> Result<(), ControllerError> {
        self.post(
            "task completion",
            &format!("/internal/v1/tasks/{guid}/completed"),
            completed,
        )
        .await
    }

    /// `POST /internal/v1/logs`.
    pub async fn logs(&self, lines: &[LogEnvelope]) -> Result<(), ControllerError> {
        self.post("logs", "/internal/v1/logs", lines).await
    }

    /// `POST /internal/v1/cells/{id}/metrics`.
    pub async fn metrics(
        &self,
        cell_id: &str,
        batch: &ContainerMetricsBatch,
    ) -> Result<(), ControllerError> {
        self.post(
            "metrics",
            &format!("/internal/v1/cells/{cell_id}/metrics"),
            batch,
        )
        .await
    }
}
