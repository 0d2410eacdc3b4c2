//! The controller's side of the rep API (`diego::rep`): `GET /state`,
//! `POST /work`, instance stops and task cancels, each with the cell's
//! `rep_key` and a timeout.

use std::time::Duration;

use diego::auction::CellState;
use diego::models::ActualLrpKey;
use diego::rep::{CellPresence, WorkRequest, WorkResponse};

use super::BbsError;

/// HTTP client for reps.
#[derive(Clone)]
pub struct CellClient {
    http: reqwest::Client,
}

fn cell_err(cell: &CellPresence, what: impl std::fmt::Display) -> BbsError {
    BbsError::Cell {
        cell_id: cell.cell_id.clone(),
        what: what.to_string(),
    }
}

impl CellClient {
    /// A client whose every call ends after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        // rustls with ring (no C toolchain); idempotent.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { http }
    }

    fn url(cell: &CellPresence, path: &str) -> String {
        format!("{}{path}", cell.rep_url.trim_end_matches('/'))
    }

    async fn send(
        &self,
        cell: &CellPresence,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, BbsError> {
        let resp = req
            .bearer_auth(&cell.rep_key)
            .send()
            .await
            .map_err(|e| cell_err(cell, e))?;
        if !resp.status().is_success() {
            return Err(cell_err(cell, format!("answered {}", resp.status())));
        }
        Ok(resp)
    }

    /// The cell's capacity and what it runs.
    pub async fn state(&self, cell: &CellPresence) -> Result<CellState, BbsError> {
        let resp = self
            .send(cell, self.http.get(Self::url(cell, "/state")))
            .await?;
        let mut state: CellState = resp.json().await.map_err(|e| cell_err(cell, e))?;
        // The presence is authoritative for who the cell is.
        state.cell_id.clone_from(&cell.cell_id);
        Ok(state)
    }

    /// Gives the cell its work; answers what it could not take.
    pub async fn work(
        &self,
        cell: &CellPresence,
        work: &WorkRequest,
    ) -> Result<WorkResponse, BbsError> {
        let resp = self
            .send(cell, self.http.post(Self::url(cell, "/work")).json(work))
            .await?;
        resp.json().await.map_err(|e| cell_err(cell, e))
    }

    /// Stops one instance.
    pub async fn stop(
        &self,
        cell: &CellPresence,
        key: &ActualLrpKey,
        instance_guid: &str,
    ) -> Result<(), BbsError> {
        let path = format!(
            "/lrps/{}/{}/{}/stop",
            key.process_guid, key.index, instance_guid
        );
        self.send(cell, self.http.post(Self::url(cell, &path)))
            .await
            .map(drop)
    }

    /// Cancels a task.
    pub async fn cancel_task(&self, cell: &CellPresence, task_guid: &str) -> Result<(), BbsError> {
        let path = format!("/tasks/{task_guid}/cancel");
        self.send(cell, self.http.post(Self::url(cell, &path)))
            .await
            .map(drop)
    }
}
