//! App manifests (`manifest.yml`) as `apply_manifest` receives them: parsing
//! and validation up front, then applying one app per transaction.

use std::collections::BTreeMap;

use rusqlite::Transaction;
use serde::Deserialize;

use crate::db::apps::{self, App};
use crate::db::{orgs, routes, DbError};

/// Errors in a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not YAML, or not the expected shape.
    #[error("manifest is not valid: {0}")]
    Parse(String),
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
    /// Database failure while applying.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A whole manifest.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    /// Apps in the manifest.
    #[serde(default)]
    pub applications: Vec<ManifestApp>,
}

/// A size like `256M`, `1G` or a number of megabytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// Megabytes.
    Number(i64),
    /// With a unit.
    Text(String),
}

impl Size {
    /// The size in megabytes.
    pub fn megabytes(&self, what: &str) -> Result<i64, ManifestError> {
        let bad = || {
            ManifestError::Invalid(format!(
                "{what} must use a supported unit: B, K, KB, M, MB, G, GB, T or TB"
            ))
        };
        let mb = match self {
            Self::Number(n) => *n,
            Self::Text(t) => {
                let t = t.trim().to_ascii_uppercase();
                let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                let unit = &t[digits.len()..];
                let n: i64 = digits.trim().parse().map_err(|_| bad())?;
                match unit {
                    "T" | "TB" => n * 1024 * 1024,
                    "G" | "GB" => n * 1024,
                    "M" | "MB" | "" => n,
                    "K" | "KB" => n / 1024,
                    "B" => n / (1024 * 1024),
                    _ => return Err(bad()),
                }
            }
        };
        if mb <= 0 {
            return Err(ManifestError::Invalid(format!(
                "{what} must be greater than 0MB"
            )));
        }
        Ok(mb)
    }
}

/// Settings of one process in a manifest.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProcessSettings {
    /// Process type (in `processes:`).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Instances.
    pub instances: Option<i64>,
    /// Memory.
    pub memory: Option<Size>,
    /// Disk.
    #[serde(alias = "disk-quota")]
    pub disk_quota: Option<Size>,
    /// Start command.
    pub command: Option<String>,
    /// `port`, `http`, `process` (`none` is `process`).
    #[serde(rename = "health-check-type")]
    pub health_check_type: Option<String>,
    /// HTTP health check endpoint.
    #[serde(rename = "health-check-http-endpoint")]
    pub health_check_http_endpoint: Option<String>,
    /// Startup timeout.
    pub timeout: Option<i64>,
    /// Per-check timeout.
    #[serde(rename = "health-check-invocation-timeout")]
    pub health_check_invocation_timeout: Option<i64>,
}

/// Docker settings.
#[derive(Debug, Clone, Deserialize)]
pub struct DockerSettings {
    /// Image reference.
    pub image: String,
    /// Registry user.
    pub username: Option<String>,
}

/// A route entry.
#[derive(Debug, Clone, Deserialize)]
pub struct RouteEntry {
    /// `host.domain/path`.
    pub route: String,
}

/// One app of a manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestApp {
    /// App name.
    pub name: String,
    /// Buildpacks.
    pub buildpacks: Option<Vec<String>>,
    /// Deprecated single buildpack.
    pub buildpack: Option<String>,
    /// Stack.
    pub stack: Option<String>,
    /// Environment.
    pub env: Option<BTreeMap<String, serde_yaml_ng::Value>>,
    /// Docker image.
    pub docker: Option<DockerSettings>,
    /// Routes.
    pub routes: Option<Vec<RouteEntry>>,
    /// Remove routes / create none.
    #[serde(rename = "no-route", default)]
    pub no_route: bool,
    /// A default route with a random host suffix.
    #[serde(rename = "random-route", default)]
    pub random_route: bool,
    /// `web` process settings given at the top level.
    #[serde(flatten)]
    pub web: ProcessSettings,
    /// Further processes.
    pub processes: Option<Vec<ProcessSettings>>,
}

/// Parses and validates a manifest.
pub fn parse(yaml: &[u8]) -> Result<Manifest, ManifestError> {
    let manifest: Manifest =
        serde_yaml_ng::from_slice(yaml).map_err(|e| ManifestError::Parse(e.to_string()))?;
    if manifest.applications.is_empty() {
        return Err(ManifestError::Invalid(
            "manifest has no applications".into(),
        ));
    }
    for app in &manifest.applications {
        if app.name.trim().is_empty() {
            return Err(ManifestError::Invalid("Name must not be empty".into()));
        }
        validate_process(&app.name, "web", &app.web)?;
        for p in app.processes.iter().flatten() {
            let kind = p
                .kind
                .as_deref()
                .ok_or_else(|| ManifestError::Invalid("process type must not be empty".into()))?;
            validate_process(&app.name, kind, p)?;
        }
        for (k, v) in app.env.iter().flatten() {
            if matches!(
                v,
                serde_yaml_ng::Value::Mapping(_) | serde_yaml_ng::Value::Sequence(_)
            ) {
                return Err(ManifestError::Invalid(format!(
                    "env {k}: values must be strings, numbers or booleans"
                )));
            }
        }
    }
    Ok(manifest)
}

fn validate_process(app: &str, kind: &str, p: &ProcessSettings) -> Result<(), ManifestError> {
    let what = |f: &str| format!("Process \"{kind}\" of app {app:?}: {f}");
    if let Some(n) = p.instances {
        if n < 0 {
            return Err(ManifestError::Invalid(what(
                "instances must be greater than or equal to 0",
            )));
        }
    }
    if let Some(m) = &p.memory {
        m.megabytes(&what("memory"))?;
    }
    if let Some(d) = &p.disk_quota {
        d.megabytes(&what("disk_quota"))?;
    }
    if let Some(t) = &p.health_check_type {
        if !matches!(t.as_str(), "port" | "http" | "process" | "none") {
            return Err(ManifestError::Invalid(what(
                "health-check-type must be one of port, http, process",
            )));
        }
    }
    Ok(())
}

fn yaml_scalar(v: &serde_yaml_ng::Value) -> String {
    match v {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Null => String::new(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    }
}

fn apply_process(p: &mut apps::Process, s: &ProcessSettings) -> Result<(), ManifestError> {
    if let Some(n) = s.instances {
        p.instances = n;
    }
    if let Some(m) = &s.memory {
        p.memory_in_mb = m.megabytes("memory")?;
    }
    if let Some(d) = &s.disk_quota {
        p.disk_in_mb = d.megabytes("disk_quota")?;
    }
    if let Some(c) = &s.command {
        p.command = (!c.is_empty() && c != "null" && c != "default").then(|| c.clone());
    }
    if let Some(t) = &s.health_check_type {
        p.health_check_type = if t == "none" {
            "process".into()
        } else {
            t.clone()
        };
    }
    if let Some(e) = &s.health_check_http_endpoint {
        p.health_check_endpoint = Some(e.clone());
    }
    if s.timeout.is_some() {
        p.health_check_timeout = s.timeout;
    }
    if s.health_check_invocation_timeout.is_some() {
        p.health_check_invocation_timeout = s.health_check_invocation_timeout;
    }
    Ok(())
}

/// Splits `host.domain/path` against the known domains (longest match wins).
pub fn split_route(route: &str, domains: &[orgs::Domain]) -> Option<(String, String, String)> {
    let route = route
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let (hostpart, path) = match route.find('/') {
        Some(i) => (&route[..i], route[i..].trim_end_matches('/').to_owned()),
        None => (route, String::new()),
    };
    let hostpart = hostpart.split(':').next().unwrap_or(hostpart);
    domains
        .iter()
        .filter_map(|d| {
            if hostpart == d.name {
                Some((String::new(), d.guid.clone(), path.clone(), d.name.len()))
            } else {
                hostpart
                    .strip_suffix(&format!(".{}", d.name))
                    .map(|host| (host.to_owned(), d.guid.clone(), path.clone(), d.name.len()))
            }
        })
        .max_by_key(|(_, _, _, len)| *len)
        .map(|(h, d, p, _)| (h, d, p))
}

/// Platform defaults for apps created by manifests.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Default stack.
    pub stack: String,
    /// Shared domain for default routes.
    pub apps_domain: String,
}

/// Applies one manifest app in `space_guid` inside `tx`; returns the app guid.
pub fn apply_app(
    tx: &Transaction<'_>,
    space_guid: &str,
    m: &ManifestApp,
    defaults: &Defaults,
) -> Result<String, ManifestError> {
    let mut app = match apps::app_by_name(tx, space_guid, &m.name)? {
        Some(app) => app,
        None => {
            let docker = m.docker.is_some();
            let app = App {
                guid: String::new(),
                name: m.name.clone(),
                space_guid: space_guid.to_owned(),
                state: "STOPPED".into(),
                lifecycle_type: if docker { "docker" } else { "buildpack" }.into(),
                buildpacks: Vec::new(),
                stack: (!docker).then(|| defaults.stack.clone()),
                environment: BTreeMap::new(),
                droplet_guid: None,
                created_at: 0,
                updated_at: 0,
            };
            let app = apps::create_app(tx, app)?;
            apps::create_process(tx, apps::default_process(&app.guid, "web", 1024, 1024))?;
            app
        }
    };
    if let Some(bps) = m
        .buildpacks
        .clone()
        .or_else(|| m.buildpack.clone().map(|b| vec![b]))
    {
        app.buildpacks = bps
            .into_iter()
            .filter(|b| b != "default" && b != "null")
            .collect();
    }
    if let Some(stack) = &m.stack {
        if orgs::stack_by_name(tx, stack)?.is_none() {
            return Err(ManifestError::Invalid(format!(
                "Stack {stack:?} does not exist"
            )));
        }
        app.stack = Some(stack.clone());
    }
    for (k, v) in m.env.iter().flatten() {
        app.environment.insert(k.clone(), yaml_scalar(v));
    }
    apps::update_app(tx, &app)?;
    let mut settings = vec![("web".to_owned(), m.web.clone())];
    for p in m.processes.iter().flatten() {
        settings.push((p.kind.clone().unwrap_or_default(), p.clone()));
    }
    for (kind, s) in settings {
        let mut process = match apps::process_by_type(tx, &app.guid, &kind)? {
            Some(p) => p,
            None => apps::create_process(tx, apps::default_process(&app.guid, &kind, 1024, 1024))?,
        };
        apply_process(&mut process, &s)?;
        apps::update_process(tx, &process)?;
    }
    apply_routes(tx, &app, m, defaults)?;
    Ok(app.guid)
}

fn apply_routes(
    tx: &Transaction<'_>,
    app: &App,
    m: &ManifestApp,
    defaults: &Defaults,
) -> Result<(), ManifestError> {
    if m.no_route {
        let mapped: Vec<String> = tx
            .prepare("SELECT DISTINCT route_guid FROM route_destinations WHERE app_guid = ?")
            .and_then(|mut s| s.query_map([&app.guid], |r| r.get(0))?.collect())
            .map_err(DbError::from)?;
        for r in mapped {
            routes::remove_app(tx, &r, &app.guid)?;
        }
        return Ok(());
    }
    let wanted: Vec<String> = match &m.routes {
        Some(rs) => rs.iter().map(|r| r.route.clone()).collect(),
        None if routes::app_urls(tx, &app.guid)?.is_empty() => {
            // Host names allow letters, digits and dashes only.
            let mut host: String = app
                .name
                .to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            host = host.trim_matches('-').to_owned();
            if m.random_route {
                host = format!("{host}-{}", &crate::db::new_guid()[..8]);
            }
            vec![format!("{host}.{}", defaults.apps_domain)]
        }
        None => Vec::new(),
    };
    let page = crate::db::query::Page {
        per_page: 10_000,
        ..Default::default()
    };
    let domains = orgs::list_domains(tx, &[], &page)?.items;
    for r in wanted {
        let (host, domain_guid, path) = split_route(&r, &domains).ok_or_else(|| {
            ManifestError::Invalid(format!(
                "The route '{r}' did not match any existing domains."
            ))
        })?;
        let route = match routes::find(tx, &host, &domain_guid, &path)? {
            Some(route) if route.space_guid == app.space_guid => route,
            Some(_) => {
                return Err(ManifestError::Invalid(format!(
                    "The route '{r}' is already in use in another space."
                )))
            }
            None => routes::create(tx, &host, &path, &domain_guid, &app.space_guid)?,
        };
        routes::add_destination(
            tx,
            &route.guid,
            &app.guid,
            "web",
            i64::from(crate::lrps::APP_PORT),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(Size::Text("256M".into()).megabytes("m").expect("ok"), 256);
        assert_eq!(Size::Text("1G".into()).megabytes("m").expect("ok"), 1024);
        assert_eq!(Size::Text("512mb".into()).megabytes("m").expect("ok"), 512);
        assert_eq!(Size::Number(64).megabytes("m").expect("ok"), 64);
        assert!(Size::Text("12Q".into()).megabytes("m").is_err());
        assert!(Size::Text("0M".into()).megabytes("m").is_err());
    }

    #[test]
    fn manifests_are_validated() {
        let ok = parse(b"applications:\n- name: a\n  memory: 64M\n  instances: 2\n  env: {A: 1}\n")
            .expect("ok");
        assert_eq!(ok.applications[0].web.instances, Some(2));
        assert!(matches!(
            parse(b"applications: [ {"),
            Err(ManifestError::Parse(_))
        ));
        assert!(parse(b"applications:\n- name: a\n  memory: lots\n").is_err());
        assert!(parse(b"applications:\n- name: a\n  instances: -1\n").is_err());
        assert!(parse(b"applications: []\n").is_err());
    }

    #[test]
    fn routes_split_on_the_longest_domain() {
        let d = |name: &str| orgs::Domain {
            guid: name.into(),
            name: name.into(),
            internal: false,
            created_at: 0,
            updated_at: 0,
        };
        let domains = vec![d("example.com"), d("apps.example.com")];
        assert_eq!(
            split_route("my-app.apps.example.com/api/", &domains),
            Some(("my-app".into(), "apps.example.com".into(), "/api".into()))
        );
        assert_eq!(
            split_route("apps.example.com", &domains),
            Some((String::new(), "apps.example.com".into(), String::new()))
        );
        assert_eq!(split_route("x.other.org", &domains), None);
    }
}
