//! What repeated pulls of a registry image need not ask again: sessions
//! (scheme and token) for a minute, and manifests and configs by digest
//! (content-addressed, so never stale). A cached pull by tag costs one
//! manifest request; by digest, none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::digest::Digest;
use crate::reference::RegistryRef;
use crate::registry::{Credentials, RegistryClient, RegistryError, Session};

const SESSION_TTL: Duration = Duration::from_secs(60);
const MAX_DOCUMENTS: usize = 512;

#[derive(Default)]
pub struct RegistryCache {
    sessions: Mutex<HashMap<String, (Arc<Session>, Instant)>>,
    documents: Mutex<HashMap<Digest, Arc<Vec<u8>>>>,
}

impl RegistryCache {
    /// A session for `r` with `creds`, reused while it is fresh.
    pub async fn session(
        &self,
        client: &RegistryClient,
        r: &RegistryRef,
        creds: Option<&Credentials>,
    ) -> Result<Arc<Session>, RegistryError> {
        let key = session_key(r, creds);
        {
            let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((s, at)) = sessions.get(&key) {
                if at.elapsed() < SESSION_TTL {
                    return Ok(s.clone());
                }
            }
        }
        let session = Arc::new(client.session(r, creds).await?);
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, (_, at)| at.elapsed() < SESSION_TTL);
        sessions.insert(key, (session.clone(), Instant::now()));
        Ok(session)
    }

    /// Forgets the session for `r` (after a failure).
    pub fn drop_session(&self, r: &RegistryRef, creds: Option<&Credentials>) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.remove(&session_key(r, creds));
    }

    /// A verified document (manifest or config) seen before.
    pub fn document(&self, d: &Digest) -> Option<Arc<Vec<u8>>> {
        let docs = self.documents.lock().unwrap_or_else(|p| p.into_inner());
        docs.get(d).cloned()
    }

    /// Remembers a document whose digest was verified.
    pub fn remember(&self, d: Digest, bytes: Vec<u8>) -> Arc<Vec<u8>> {
        let bytes = Arc::new(bytes);
        let mut docs = self.documents.lock().unwrap_or_else(|p| p.into_inner());
        if docs.len() >= MAX_DOCUMENTS {
            docs.clear();
        }
        docs.insert(d, bytes.clone());
        bytes
    }
}

/// Sessions are per registry, repository and credentials (the password
/// only as a digest).
fn session_key(r: &RegistryRef, creds: Option<&Credentials>) -> String {
    let who = creds.map_or(String::new(), |c| {
        format!("{}:{}", c.username, Digest::sha256(c.password.as_bytes()))
    });
    format!("{}/{}|{who}", r.api_host(), r.repository)
}
