//! Bridge lifecycle beyond attach and detach: emptied bridges kept for the
//! next container of their subnet (`NetConfig::idle_bridge_seconds`),
//! reaped later, and links left over by a crash adopted at open.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::network::{lock, NetError, Network};
use crate::state::Record;

impl Network {
    /// Deletes (in the background) bridges that have had no container for
    /// `older_than`; `attach` calls this with the configured time.
    pub fn reap_idle_bridges(&self, older_than: Duration) {
        let expired: Vec<(String, Ipv4Addr)> = {
            let mut inner = self.lock();
            let now = Instant::now();
            let names: Vec<String> = inner
                .idle_bridges
                .iter()
                .filter(|(_, (since, _))| now.duration_since(*since) >= older_than)
                .map(|(name, _)| name.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|n| inner.idle_bridges.remove(&n).map(|(_, net)| (n, net)))
                .collect()
        };
        for (bridge, network) in expired {
            let links = self.links.clone();
            let inner = self.inner.clone();
            let subnet_locks: Vec<_> = lock(&self.subnet_locks)
                .iter()
                .filter(|(s, _)| s.network() == network)
                .map(|(_, l)| l.clone())
                .collect();
            let task = tokio::spawn(async move {
                let mut guards = Vec::new();
                for subnet_lock in &subnet_locks {
                    guards.push(subnet_lock.lock().await);
                }
                if lock(&inner).ips.has_network(network) {
                    return;
                }
                if let Err(err) = links.delete(&bridge).await {
                    tracing::warn!(%bridge, %err, "deleting an idle bridge failed");
                }
            });
            let mut removals = lock(&self.removals);
            removals.retain(|t| !t.is_finished());
            removals.push(task);
        }
    }

    /// Links with our prefixes that no record explains (a crash between
    /// making a link and writing its record, or between removing the two): veths are
    /// deleted, bridges are kept as idle ones (reused or reaped later).
    pub(crate) async fn adopt_orphans(&self, restored: &[Record]) -> Result<(), NetError> {
        let bridges: Vec<String> = restored
            .iter()
            .map(|r| self.bridge_name(r.subnet))
            .collect();
        let veths: Vec<String> = restored.iter().map(|r| self.veth_name(r.ip)).collect();
        for name in self
            .links
            .names_with_prefix(&self.config.veth_prefix)
            .await?
        {
            if !veths.contains(&name) {
                tracing::info!(veth = %name, "deleting a veth no record explains");
                self.links.delete(&name).await?;
            }
        }
        for name in self
            .links
            .names_with_prefix(&self.config.bridge_prefix)
            .await?
        {
            let hex = &name[self.config.bridge_prefix.len()..];
            let network = u32::from_str_radix(hex, 16)
                .ok()
                .filter(|_| hex.len() == 8)
                .map(Ipv4Addr::from);
            if let (false, Some(network)) = (bridges.contains(&name), network) {
                self.lock()
                    .idle_bridges
                    .insert(name, (Instant::now(), network));
            }
        }
        Ok(())
    }
}
