//! The routing table: where each route's traffic goes, from the RUNNING
//! instances that have net info (Diego's route emitter view). A RUNNING
//! record becomes routable the moment its cell reports it; a crash, stop or
//! retirement removes it at once.

use std::collections::HashMap;

use diego::models::DesiredLrp;
use serde::Serialize;

use super::{records, Bbs, BbsError};

/// One routable instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteEndpoint {
    /// The route's hostnames (`host.domain/path`).
    pub hostnames: Vec<String>,
    /// Diego process guid (`<process>-<version>`).
    pub process_guid: String,
    /// Instance index.
    pub index: u32,
    /// Instance guid.
    pub instance_guid: String,
    /// Cell address.
    pub address: String,
    /// Host port of the route's container port.
    pub port: u16,
}

impl Bbs {
    /// Every routable instance, by process guid and index. Blocking.
    pub fn routing_table(&self) -> Result<Vec<RouteEndpoint>, BbsError> {
        let (desired, actual) = self
            .db
            .read_blocking(|c| Ok((records::all_desired(c)?, records::all_actuals(c)?)))?;
        let by_guid: HashMap<&str, &DesiredLrp> = desired
            .iter()
            .map(|d| (d.process_guid.as_str(), d))
            .collect();
        let mut out = Vec::new();
        for a in actual.iter().filter(|a| a.is_routable()) {
            let (Some(d), Some(net), Some(instance)) = (
                by_guid.get(a.key.process_guid.as_str()),
                &a.net_info,
                &a.instance_key,
            ) else {
                continue;
            };
            for route in &d.routes {
                let Some(mapping) = net.ports.iter().find(|p| p.container_port == route.port)
                else {
                    continue;
                };
                out.push(RouteEndpoint {
                    hostnames: route.hostnames.clone(),
                    process_guid: a.key.process_guid.clone(),
                    index: a.key.index,
                    instance_guid: instance.instance_guid.clone(),
                    address: net.address.clone(),
                    port: mapping.host_port,
                });
            }
        }
        out.sort_by(|x, y| (&x.process_guid, x.index).cmp(&(&y.process_guid, y.index)));
        Ok(out)
    }
}
