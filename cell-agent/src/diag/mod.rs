//! `cell-agent diag`: the operators' view of a cell. It reads the running
//! agent's loopback admin routes (`/diag/...`), asks gardend directly, and
//! checks the host. Human tables by default; `--json` prints the same data
//! as one JSON document.

pub mod host;
mod render;

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use host::{CgroupMode, HostReport};

use crate::rep::{ContainerDetail, ContainerList, Summary};

/// Why a diagnostic could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(reqwest::Error),
    /// The agent did not answer.
    #[error("the cell agent at {url} did not answer: {source} (is it running?)")]
    Unreachable {
        /// What was asked.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The agent answered with an error.
    #[error("the cell agent answered {status} for {url}: {body}")]
    Status {
        /// What was asked.
        url: String,
        /// The status.
        status: reqwest::StatusCode,
        /// Its body.
        body: String,
    },
    /// JSON output failed.
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// gardend as `diag summary` sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GardenStatus {
    /// Its socket.
    pub socket: String,
    /// It answered a ping.
    pub reachable: bool,
    /// Why not.
    pub error: Option<String>,
    /// Its capacity (when reachable).
    pub capacity: Option<garden_api::types::Capacity>,
    /// Containers it holds (all owners).
    pub containers: Option<usize>,
}

/// `diag summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryReport {
    /// The agent's own view.
    pub agent: Summary,
    /// gardend's.
    pub garden: GardenStatus,
}

/// Asks gardend at `socket` for a ping, its capacity and containers.
pub async fn garden_status(socket: &Path) -> GardenStatus {
    let client = garden_api::client::Client::unix(socket);
    let mut status = GardenStatus {
        socket: socket.display().to_string(),
        ..GardenStatus::default()
    };
    match tokio::time::timeout(Duration::from_secs(5), client.ping()).await {
        Ok(Ok(())) => status.reachable = true,
        Ok(Err(e)) => status.error = Some(e.to_string()),
        Err(_) => status.error = Some("no answer within 5s".into()),
    }
    if status.reachable {
        status.capacity = client.capacity().await.ok();
        status.containers = client
            .list(&garden_api::types::Properties::new())
            .await
            .ok()
            .map(|l| l.len());
    }
    status
}

/// A client of the agent's admin routes.
pub struct AgentClient {
    http: reqwest::Client,
    base: String,
}

impl AgentClient {
    /// A client of the agent at `base` (e.g. `http://127.0.0.1:1800`).
    pub fn new(base: &str) -> Result<Self, DiagError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(DiagError::Client)?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, DiagError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |source| DiagError::Unreachable {
            url: url.clone(),
            source,
        };
        let response = self.http.get(&url).send().await.map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(DiagError::Status { url, status, body });
        }
        response.json().await.map_err(unreachable)
    }

    /// `GET /diag/summary`.
    pub async fn summary(&self) -> Result<Summary, DiagError> {
        self.get("/diag/summary").await
    }

    /// `GET /diag/containers`.
    pub async fn containers(&self) -> Result<ContainerList, DiagError> {
        self.get("/diag/containers").await
    }

    /// `GET /diag/containers/{guid}`.
    pub async fn container(&self, guid: &str) -> Result<ContainerDetail, DiagError> {
        self.get(&format!("/diag/containers/{guid}")).await
    }
}

/// One `diag` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Capacity, allocations, presence, garden.
    Summary,
    /// Every container.
    Containers,
    /// One container with its recent logs.
    Container(String),
    /// Host checks.
    Host,
}

/// Where `diag` looks.
#[derive(Debug, Clone)]
pub struct Target {
    /// The agent's admin base URL.
    pub agent_url: String,
    /// gardend's socket.
    pub garden_socket: std::path::PathBuf,
    /// Usually `/proc`.
    pub proc_root: std::path::PathBuf,
}

/// Runs `command`; returns the text to print and whether all is well
/// (`diag host` is not well when a check failed).
pub async fn run(
    command: &Command,
    target: &Target,
    json: bool,
) -> Result<(String, bool), DiagError> {
    let out = |value: &dyn erased::Json, text: String| -> Result<String, DiagError> {
        if json {
            Ok(value.to_json()?)
        } else {
            Ok(text)
        }
    };
    match command {
        Command::Host => {
            let report = host::check(&target.proc_root, &target.garden_socket).await;
            let text = render::host(&report);
            Ok((out(&report, text)?, report.ok))
        }
        Command::Summary => {
            let agent = AgentClient::new(&target.agent_url)?.summary().await?;
            let garden = garden_status(&target.garden_socket).await;
            let report = SummaryReport { agent, garden };
            let text = render::summary(&report);
            Ok((out(&report, text)?, true))
        }
        Command::Containers => {
            let list = AgentClient::new(&target.agent_url)?.containers().await?;
            let text = render::containers(&list);
            Ok((out(&list, text)?, true))
        }
        Command::Container(guid) => {
            let detail = AgentClient::new(&target.agent_url)?.container(guid).await?;
            let text = render::container(&detail);
            Ok((out(&detail, text)?, true))
        }
    }
}

/// Pretty JSON of any report, through one object-safe trait.
mod erased {
    pub(super) trait Json {
        fn to_json(&self) -> Result<String, serde_json::Error>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<String, serde_json::Error> {
            serde_json::to_string_pretty(self)
        }
    }
}
