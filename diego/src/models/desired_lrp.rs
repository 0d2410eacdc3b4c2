//! The desired LRP: what the controller wants running (Diego's DesiredLRP),
//! its validation and the updates it accepts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::action::{Action, EnvVar};
use super::check::{CheckDefinition, HealthCheckKind};
use super::record::ModificationTag;
use super::resource::{PlacementConstraint, Resource};
use super::security_group::{validate_rules, SecurityGroupError, SecurityGroupRule};

/// Start timeout when none is given (Diego's default).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest start timeout accepted.
pub const MAX_START_TIMEOUT: Duration = Duration::from_secs(180);
/// Largest annotation accepted, in bytes (Diego's limit).
pub const MAX_ANNOTATION_BYTES: usize = 10 * 1024;

/// A desired LRP that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesiredLrpError {
    /// A required field is empty.
    #[error("desired LRP {process_guid:?}: {field} must not be empty")]
    Empty {
        /// The LRP.
        process_guid: String,
        /// The empty field.
        field: &'static str,
    },
    /// The start timeout is above [`MAX_START_TIMEOUT`].
    #[error(
        "desired LRP {process_guid:?}: start timeout {timeout_ms} ms is above the maximum of 180 s"
    )]
    StartTimeout {
        /// The LRP.
        process_guid: String,
        /// The timeout given.
        timeout_ms: u64,
    },
    /// The annotation is above [`MAX_ANNOTATION_BYTES`].
    #[error("desired LRP {process_guid:?}: annotation of {bytes} bytes is above 10 KB")]
    Annotation {
        /// The LRP.
        process_guid: String,
        /// Its size.
        bytes: usize,
    },
    /// A route names a port the LRP does not expose.
    #[error("desired LRP {process_guid:?}: route to port {port} not in ports {ports:?}")]
    RoutePort {
        /// The LRP.
        process_guid: String,
        /// The route's port.
        port: u16,
        /// The exposed ports.
        ports: Vec<u16>,
    },
    /// An egress rule is invalid.
    #[error("desired LRP {process_guid:?}: egress rule {index}: {source}")]
    EgressRule {
        /// The LRP.
        process_guid: String,
        /// The rule's position in `egress_rules`.
        index: usize,
        /// What is wrong with it.
        source: SecurityGroupError,
    },
    /// An update was made against an older version of the record.
    #[error("desired LRP {process_guid:?}: stale update (tag {given:?}, current {current:?})")]
    Stale {
        /// The LRP.
        process_guid: String,
        /// The tag the update was based on.
        given: ModificationTag,
        /// The record's tag.
        current: ModificationTag,
    },
}

/// An HTTP route to one container port (Diego's `cf-router` entries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Route {
    /// Host names (`app.example.com`), possibly with a path (`app.example.com/api`).
    pub hostnames: Vec<String>,
    /// The container port the router forwards to.
    pub port: u16,
    /// Route service to pass requests through, if any.
    pub route_service_url: Option<String>,
}

/// What the controller wants running: `instances` copies of one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredLrp {
    /// Unique id (CF: process guid + version).
    pub process_guid: String,
    /// Owner of the LRP (`cf-apps`); convergence works per domain.
    pub domain: String,
    /// How many instances to run.
    pub instances: u32,
    /// Root filesystem (`preloaded:cflinuxfs4`, `docker:///busybox`).
    pub rootfs: String,
    /// Memory limit per instance in MB.
    #[serde(default)]
    pub memory_mb: u64,
    /// Disk limit per instance in MB.
    #[serde(default)]
    pub disk_mb: u64,
    /// Process limit per instance (0: the cell's default).
    #[serde(default)]
    pub max_pids: u32,
    /// Tags the placing cell must offer.
    #[serde(default)]
    pub placement_tags: Vec<String>,
    /// Container ports to expose (each gets a host port).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// HTTP routes to those ports.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Environment of every process in the container.
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// Runs once before `action` (e.g. download the droplet).
    #[serde(default)]
    pub setup: Option<Action>,
    /// The long-running process (run codependently with the health checks).
    pub action: Action,
    /// An older style of health check as a recipe, run when there is no
    /// `check_definition`: success means healthy.
    #[serde(default)]
    pub monitor: Option<Action>,
    /// Health checks; `None` or empty means a `process` health check.
    #[serde(default)]
    pub check_definition: Option<CheckDefinition>,
    /// How long an instance may take to become healthy, in ms (0: 60 s).
    #[serde(default)]
    pub start_timeout_ms: u64,
    /// Log stream of the instances (CF: the app guid).
    #[serde(default)]
    pub log_guid: String,
    /// Metrics source id (CF: the app guid).
    #[serde(default)]
    pub metrics_guid: String,
    /// Opaque data for the controller (at most 10 KB).
    #[serde(default)]
    pub annotation: String,
    /// Outbound flows the instances may open (Cloud Foundry's security
    /// groups); empty: none but replies.
    #[serde(default)]
    pub egress_rules: Vec<SecurityGroupRule>,
    /// Version of this record.
    #[serde(default)]
    pub modification_tag: ModificationTag,
}

/// The changes a running LRP accepts without a new process guid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DesiredLrpUpdate {
    /// New instance count.
    pub instances: Option<u32>,
    /// New routes.
    pub routes: Option<Vec<Route>>,
    /// New annotation.
    pub annotation: Option<String>,
}

impl DesiredLrp {
    /// A desired LRP with the given identity and recipe, and defaults for
    /// everything else.
    pub fn new(process_guid: impl Into<String>, domain: impl Into<String>, action: Action) -> Self {
        Self {
            process_guid: process_guid.into(),
            domain: domain.into(),
            instances: 1,
            rootfs: String::new(),
            memory_mb: 0,
            disk_mb: 0,
            max_pids: 0,
            placement_tags: Vec::new(),
            ports: Vec::new(),
            routes: Vec::new(),
            env: Vec::new(),
            setup: None,
            action,
            monitor: None,
            check_definition: None,
            start_timeout_ms: 0,
            log_guid: String::new(),
            metrics_guid: String::new(),
            annotation: String::new(),
            egress_rules: Vec::new(),
            modification_tag: ModificationTag::default(),
        }
    }

    /// Checks what Diego checks before accepting a desired LRP.
    pub fn validate(&self) -> Result<(), DesiredLrpError> {
        let empty = |field| DesiredLrpError::Empty {
            process_guid: self.process_guid.clone(),
            field,
        };
        if self.process_guid.is_empty() {
            return Err(empty("process_guid"));
        }
        if self.domain.is_empty() {
            return Err(empty("domain"));
        }
        if self.rootfs.is_empty() {
            return Err(empty("rootfs"));
        }
        if Duration::from_millis(self.start_timeout_ms) > MAX_START_TIMEOUT {
            return Err(DesiredLrpError::StartTimeout {
                process_guid: self.process_guid.clone(),
                timeout_ms: self.start_timeout_ms,
            });
        }
        self.validate_annotation(&self.annotation)?;
        self.validate_routes(&self.routes)?;
        validate_rules(&self.egress_rules).map_err(|(index, source)| DesiredLrpError::EgressRule {
            process_guid: self.process_guid.clone(),
            index,
            source,
        })
    }

    fn validate_annotation(&self, annotation: &str) -> Result<(), DesiredLrpError> {
        if annotation.len() > MAX_ANNOTATION_BYTES {
            return Err(DesiredLrpError::Annotation {
                process_guid: self.process_guid.clone(),
                bytes: annotation.len(),
            });
        }
        Ok(())
    }

    fn validate_routes(&self, routes: &[Route]) -> Result<(), DesiredLrpError> {
        match routes.iter().find(|r| !self.ports.contains(&r.port)) {
            Some(route) => Err(DesiredLrpError::RoutePort {
                process_guid: self.process_guid.clone(),
                port: route.port,
                ports: self.ports.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Applies `update` made against version `based_on`; refuses a stale
    /// one. Increments the modification tag when something changed.
    pub fn apply(
        &mut self,
        update: &DesiredLrpUpdate,
        based_on: &ModificationTag,
    ) -> Result<(), DesiredLrpError> {
        if *based_on != self.modification_tag {
            return Err(DesiredLrpError::Stale {
                process_guid: self.process_guid.clone(),
                given: based_on.clone(),
                current: self.modification_tag.clone(),
            });
        }
        if let Some(annotation) = &update.annotation {
            self.validate_annotation(annotation)?;
        }
        if let Some(routes) = &update.routes {
            self.validate_routes(routes)?;
        }
        let before = self.clone();
        if let Some(instances) = update.instances {
            self.instances = instances;
        }
        if let Some(routes) = &update.routes {
            self.routes = routes.clone();
        }
        if let Some(annotation) = &update.annotation {
            self.annotation = annotation.clone();
        }
        if *self != before {
            self.modification_tag.increment();
        }
        Ok(())
    }

    /// The start timeout, with the default applied.
    pub fn start_timeout(&self) -> Duration {
        match self.start_timeout_ms {
            0 => DEFAULT_START_TIMEOUT,
            ms => Duration::from_millis(ms),
        }
    }

    /// Which kind of health check the instances get.
    pub fn health_check_kind(&self) -> HealthCheckKind {
        self.check_definition
            .as_ref()
            .map_or(HealthCheckKind::Process, CheckDefinition::kind)
    }

    /// What one instance takes on a cell.
    pub fn resource(&self) -> Resource {
        Resource {
            memory_mb: self.memory_mb,
            disk_mb: self.disk_mb,
            max_pids: self.max_pids,
        }
    }

    /// Where instances may run.
    pub fn placement_constraint(&self) -> PlacementConstraint {
        PlacementConstraint {
            rootfs: self.rootfs.clone(),
            placement_tags: self.placement_tags.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::action::RunAction;
    use crate::models::check::Check;
    use crate::models::security_group::SecurityProtocol;

    fn lrp() -> DesiredLrp {
        let mut lrp = DesiredLrp::new(
            "pg-1",
            "cf-apps",
            Action::Run(RunAction {
                path: "/bin/app".into(),
                ..RunAction::default()
            }),
        );
        lrp.rootfs = "preloaded:cflinuxfs4".into();
        lrp.ports = vec![8080];
        lrp
    }

    #[test]
    fn validation_names_the_problem() {
        assert_eq!(lrp().validate(), Ok(()));
        let mut bad = lrp();
        bad.domain.clear();
        assert_eq!(
            bad.validate().expect_err("empty").to_string(),
            "desired LRP \"pg-1\": domain must not be empty"
        );
        let mut bad = lrp();
        bad.start_timeout_ms = 181_000;
        assert!(matches!(
            bad.validate(),
            Err(DesiredLrpError::StartTimeout { .. })
        ));
        let mut bad = lrp();
        bad.annotation = "x".repeat(MAX_ANNOTATION_BYTES + 1);
        assert!(matches!(
            bad.validate(),
            Err(DesiredLrpError::Annotation { .. })
        ));
        let mut bad = lrp();
        bad.routes = vec![Route {
            hostnames: vec!["a.example.com".into()],
            port: 9090,
            route_service_url: None,
        }];
        assert!(matches!(
            bad.validate(),
            Err(DesiredLrpError::RoutePort { port: 9090, .. })
        ));
        let mut bad = lrp();
        let all = SecurityGroupRule::new(SecurityProtocol::All, &["0.0.0.0/0"]);
        bad.egress_rules = vec![
            all,
            SecurityGroupRule::new(SecurityProtocol::Tcp, &["10.0.0.0/33"]),
        ];
        assert_eq!(
            bad.validate().expect_err("bad rule").to_string(),
            "desired LRP \"pg-1\": egress rule 1: protocol tcp needs ports or port_range"
        );
    }

    #[test]
    fn defaults_and_health_check_kind() {
        let mut l = lrp();
        assert_eq!(l.start_timeout(), DEFAULT_START_TIMEOUT);
        assert_eq!(l.health_check_kind(), HealthCheckKind::Process);
        l.check_definition = Some(CheckDefinition {
            checks: vec![Check::Http {
                port: 8080,
                path: "/health".into(),
                request_timeout_ms: 0,
            }],
            log_source: String::new(),
        });
        l.start_timeout_ms = 5_000;
        assert_eq!(l.start_timeout(), Duration::from_secs(5));
        assert_eq!(l.health_check_kind(), HealthCheckKind::Http);
        assert_eq!(l.placement_constraint().required_stack(), "cflinuxfs4");
    }

    #[test]
    fn updates_bump_the_tag_and_refuse_stale_versions() {
        let mut l = lrp();
        let tag = l.modification_tag.clone();
        let update = DesiredLrpUpdate {
            instances: Some(3),
            ..DesiredLrpUpdate::default()
        };
        l.apply(&update, &tag).expect("apply");
        assert_eq!(l.instances, 3);
        assert_eq!(l.modification_tag.index, 1);
        assert!(matches!(
            l.apply(&update, &tag),
            Err(DesiredLrpError::Stale { .. })
        ));
        let same = l.modification_tag.clone();
        l.apply(&update, &same).expect("no-op");
        assert_eq!(
            l.modification_tag, same,
            "an update changing nothing keeps the tag"
        );
    }

    #[test]
    fn json_round_trip_with_defaults() {
        let l = lrp();
        let json = serde_json::to_string(&l).expect("json");
        assert_eq!(serde_json::from_str::<DesiredLrp>(&json).expect("parse"), l);
        let minimal: DesiredLrp = serde_json::from_str(
            r#"{"process_guid":"p","domain":"d","instances":2,"rootfs":"docker:///x",
                "action":{"run":{"path":"/bin/sh"}}}"#,
        )
        .expect("parse minimal");
        assert_eq!(minimal.instances, 2);
        assert!(minimal.check_definition.is_none());
        assert!(minimal.egress_rules.is_empty(), "stored records parse");
    }
}
