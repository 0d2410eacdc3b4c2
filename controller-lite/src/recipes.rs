//! The controller's work ([`crate::scheduler`]'s definitions) as Diego
//! recipes: desired LRPs and task definitions with their action trees.
//!
//! - Buildpack apps: download the droplet (internal blob URL, SHA-256
//!   checksum, cache key per process) into `/home/vcap`, then run the
//!   start command as `vcap` through a small launcher script that sources
//!   `profile.d` and `.profile` like Cloud Foundry's launcher (REFERENCE §3).
//! - Docker apps: rootfs `docker:///<image>` (Docker Hub) or
//!   `docker://<registry>/<image>`, the command run as the image's user.
//! - Staging: download the package and the buildpacks (and the previous
//!   cache, if any) in parallel, run `/tmp/lifecycle/builder`, upload the
//!   droplet and the new cache. Docker staging runs
//!   `/tmp/lifecycle/docker-builder` for the image's config.
//!
//! Blob URLs are the controller's internal API: a cell fetches them with
//! its own bearer key.

use diego::models::action::{DownloadAction, RunAction, Steps, TryAction, UploadAction};
use diego::models::{self as d, Action, CheckDefinition};
use sha2::{Digest as _, Sha256};

use crate::bbs::LRP_DOMAIN;
use crate::scheduler::{BlobLocation, DesiredLrp, TaskAction, TaskDefinition};

/// Why a controller definition cannot become a recipe.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// Neither a droplet nor a docker image.
    #[error("{what} {guid} has neither a droplet nor a docker image")]
    NothingToRun {
        /// `process` or `task`.
        what: &'static str,
        /// Its guid.
        guid: String,
    },
    /// A docker app without a command.
    #[error("process {0} has no start command")]
    NoCommand(String),
    /// The result fails diego's validation.
    #[error(transparent)]
    Invalid(#[from] d::DesiredLrpError),
}

/// Where droplets are extracted.
pub const HOME: &str = "/home/vcap";
/// The staging lifecycle binary inside a staging container.
pub const BUILDER: &str = "/tmp/lifecycle/builder";
/// The docker staging lifecycle binary.
pub const DOCKER_BUILDER: &str = "/tmp/lifecycle/docker-builder";
/// User apps and staging run as.
pub const USER: &str = "vcap";

/// `$1` is the start command.
const LAUNCHER: &str = r#"cd /home/vcap/app 2>/dev/null || cd /home/vcap
for f in /home/vcap/profile.d/*.sh /home/vcap/app/.profile.d/*.sh; do [ -r "$f" ] && . "$f"; done
[ -r /home/vcap/app/.profile ] && . /home/vcap/app/.profile
if [ -x /bin/bash ]; then exec /bin/bash -c "$1"; else exec /bin/sh -c "$1"; fi"#;

/// The diego process guid of one version of a process (as Cloud
/// Controller names them): a new version is a new desired LRP.
pub fn diego_process_guid(process_guid: &str, version: &str) -> String {
    format!("{process_guid}-{version}")
}

/// `docker://host/repo:tag` when the image names a registry host (its
/// first component has a `.` or `:`, or is `localhost`), else Docker Hub's
/// `docker:///repo:tag`.
fn docker_rootfs(image: &str) -> String {
    let image = image.trim_start_matches('/');
    let first = image.split('/').next().unwrap_or_default();
    let has_host =
        image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_host {
        format!("docker://{image}")
    } else {
        format!("docker:///{image}")
    }
}

fn rootfs(stack: Option<&str>, image: Option<&str>, default_stack: &str) -> String {
    match (image, stack) {
        (Some(image), _) => docker_rootfs(image),
        (None, Some(stack)) => format!("preloaded:{stack}"),
        (None, None) => format!("preloaded:{default_stack}"),
    }
}

fn mb(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn download(artifact: &str, blob: &BlobLocation, to: &str, cache_key: String) -> Action {
    Action::Download(DownloadAction {
        artifact: artifact.into(),
        from: blob.url.clone(),
        to: to.into(),
        cache_key,
        user: USER.into(),
        checksum_algorithm: "sha256".into(),
        checksum_value: blob.sha256.clone(),
        ..DownloadAction::default()
    })
}

fn launch(command: &str, log_source: &str) -> Action {
    Action::Run(RunAction {
        path: "/bin/sh".into(),
        args: vec![
            "-c".into(),
            LAUNCHER.into(),
            "launcher".into(),
            command.into(),
        ],
        dir: HOME.into(),
        user: USER.into(),
        log_source: log_source.into(),
        ..RunAction::default()
    })
}

fn run_image_command(command: &str, log_source: &str) -> Action {
    Action::Run(RunAction {
        path: "/bin/sh".into(),
        args: vec!["-c".into(), command.into()],
        log_source: log_source.into(),
        ..RunAction::default()
    })
}

fn app_env(
    env: &std::collections::BTreeMap<String, String>,
    buildpack: bool,
) -> Vec<d::action::EnvVar> {
    let mut env = env.clone();
    env.entry("PORT".into())
        .or_insert_with(|| crate::lrps::APP_PORT.to_string());
    if buildpack {
        for (k, v) in [
            ("HOME", "/home/vcap/app"),
            ("TMPDIR", "/home/vcap/tmp"),
            ("DEPS_DIR", "/home/vcap/deps"),
        ] {
            env.entry(k.into()).or_insert_with(|| v.into());
        }
    }
    d::action::env(&env)
}

fn check(lrp: &DesiredLrp, port: u16) -> Option<CheckDefinition> {
    let timeout_ms = lrp
        .health_check
        .invocation_timeout_secs
        .map_or(0, |s| mb(s).saturating_mul(1000));
    let mut def = match lrp.health_check.kind.as_str() {
        "process" | "none" => return None,
        "http" => CheckDefinition::http(
            port,
            lrp.health_check
                .endpoint
                .clone()
                .unwrap_or_else(|| "/".into()),
        ),
        _ => CheckDefinition::port(port),
    };
    for c in &mut def.checks {
        match c {
            d::Check::Tcp {
                connect_timeout_ms, ..
            } => *connect_timeout_ms = timeout_ms,
            d::Check::Http {
                request_timeout_ms, ..
            } => *request_timeout_ms = timeout_ms,
        }
    }
    def.log_source = "HEALTH".into();
    Some(def)
}

/// The diego desired LRP of a controller process (one version of it).
pub fn desired_lrp(lrp: &DesiredLrp, default_stack: &str) -> Result<d::DesiredLrp, RecipeError> {
    let guid = diego_process_guid(&lrp.process_guid, &lrp.version);
    let port = lrp.ports.first().copied().unwrap_or(crate::lrps::APP_PORT);
    let (setup, action) = match (&lrp.droplet, &lrp.docker_image) {
        (Some(droplet), _) => (
            Some(download(
                "droplet",
                droplet,
                HOME,
                format!("droplets-{}", lrp.process_guid),
            )),
            launch(&lrp.start_command, "APP/PROC/WEB"),
        ),
        (None, Some(_)) if lrp.start_command.is_empty() => {
            return Err(RecipeError::NoCommand(lrp.process_guid.clone()))
        }
        (None, Some(_)) => (None, run_image_command(&lrp.start_command, "APP/PROC/WEB")),
        (None, None) => {
            return Err(RecipeError::NothingToRun {
                what: "process",
                guid: lrp.process_guid.clone(),
            })
        }
    };
    let mut out = d::DesiredLrp::new(guid, LRP_DOMAIN, action);
    out.instances = u32::try_from(lrp.instances.max(0)).unwrap_or(u32::MAX);
    out.rootfs = rootfs(
        lrp.stack.as_deref(),
        lrp.docker_image.as_deref(),
        default_stack,
    );
    out.memory_mb = mb(lrp.memory_mb);
    out.disk_mb = mb(lrp.disk_mb);
    out.ports = lrp.ports.clone();
    if out.ports.is_empty() {
        out.ports.push(port);
    }
    if !lrp.routes.is_empty() {
        out.routes = vec![d::Route {
            hostnames: lrp.routes.clone(),
            port,
            route_service_url: None,
        }];
    }
    out.env = app_env(&lrp.env, lrp.droplet.is_some());
    out.setup = setup;
    out.check_definition = check(lrp, port);
    out.start_timeout_ms = lrp
        .health_check
        .timeout_secs
        .map_or(0, |s| mb(s).saturating_mul(1000).min(180_000));
    out.log_guid.clone_from(&lrp.log_source_id);
    out.metrics_guid.clone_from(&lrp.app_guid);
    out.annotation = serde_json::json!({"app_guid": lrp.app_guid, "process_type": lrp.process_type, "version": lrp.version}).to_string();
    out.egress_rules.clone_from(&lrp.egress_rules);
    out.validate()?;
    Ok(out)
}

fn buildpack_dir(key: &str) -> String {
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    format!("/tmp/buildpacks/{}", &hash[..32])
}

fn parallel(actions: Vec<Action>) -> Action {
    Action::Parallel(Steps { actions })
}

fn serial(actions: Vec<Action>) -> Action {
    Action::Serial(Steps { actions })
}

fn try_(action: Action) -> Action {
    Action::Try(TryAction {
        action: Box::new(action),
        log_source: String::new(),
    })
}

fn upload(artifact: &str, from: &str, to: &str) -> Action {
    Action::Upload(UploadAction {
        artifact: artifact.into(),
        from: from.into(),
        to: to.into(),
        user: USER.into(),
        log_source: String::new(),
    })
}

/// Where staging lifecycles are extracted.
pub const LIFECYCLE_DIR: &str = "/tmp/lifecycle";

/// The lifecycle bundle into [`LIFECYCLE_DIR`], cached on the cell by its
/// checksum (a new lifecycle is a new key).
fn lifecycle_download(blob: &BlobLocation) -> Action {
    let cache_key = if blob.sha256.is_empty() {
        String::new()
    } else {
        format!("lifecycle-{}", blob.sha256)
    };
    let mut action = download("lifecycle", blob, LIFECYCLE_DIR, cache_key);
    if let Action::Download(d) = &mut action {
        if blob.sha256.is_empty() {
            d.checksum_algorithm.clear();
        }
    }
    action
}

fn docker_staging(image: &str, lifecycle: Option<&BlobLocation>, insecure: &[String]) -> Action {
    let mut args = vec![
        format!("-dockerRef={image}"),
        "-outputMetadataJSONFilename=/tmp/result.json".into(),
    ];
    if !insecure.is_empty() {
        args.push(format!("-insecureDockerRegistries={}", insecure.join(",")));
    }
    let run = Action::Run(RunAction {
        path: DOCKER_BUILDER.into(),
        args,
        log_source: "STG".into(),
        ..RunAction::default()
    });
    match lifecycle {
        Some(l) => serial(vec![lifecycle_download(l), run]),
        None => run,
    }
}

fn buildpack_staging(action: &TaskAction) -> Option<Action> {
    let TaskAction::BuildpackStaging {
        package,
        buildpacks,
        buildpack_cache,
        droplet_upload_url,
        buildpack_cache_upload_url,
        lifecycle,
    } = action
    else {
        return None;
    };
    let mut downloads = vec![download("app package", package, "/tmp/app", String::new())];
    downloads.extend(lifecycle.as_ref().map(lifecycle_download));
    for bp in buildpacks {
        if let Some(blob) = &bp.blob {
            let cache_key = format!("buildpack-{}", bp.key);
            downloads.push(download(&bp.name, blob, &buildpack_dir(&bp.key), cache_key));
        }
    }
    if let Some(cache) = buildpack_cache {
        downloads.push(try_(download(
            "build artifacts cache",
            cache,
            "/tmp/cache",
            String::new(),
        )));
    }
    let order: Vec<&str> = buildpacks.iter().map(|b| b.key.as_str()).collect();
    let skip_detect = buildpacks.iter().any(|b| b.skip_detect);
    let builder = Action::Run(RunAction {
        path: BUILDER.into(),
        args: vec![
            "-buildDir=/tmp/app".into(),
            "-buildpacksDir=/tmp/buildpacks".into(),
            "-buildArtifactsCacheDir=/tmp/cache".into(),
            "-outputDroplet=/tmp/droplet".into(),
            "-outputBuildArtifactsCache=/tmp/output-cache".into(),
            "-outputMetadata=/tmp/result.json".into(),
            format!("-buildpackOrder={}", order.join(",")),
            format!("-skipDetect={skip_detect}"),
        ],
        user: USER.into(),
        log_source: "STG".into(),
        ..RunAction::default()
    });
    let uploads = parallel(vec![
        upload("droplet", "/tmp/droplet", droplet_upload_url),
        try_(upload(
            "build artifacts cache",
            "/tmp/output-cache",
            buildpack_cache_upload_url,
        )),
    ]);
    Some(serial(vec![parallel(downloads), builder, uploads]))
}

/// The diego definition of a controller task (staging or `run-task`).
pub fn task_definition(
    task: &TaskDefinition,
    default_stack: &str,
) -> Result<d::TaskDefinition, RecipeError> {
    let (rootfs_value, action, launch_env) = match &task.action {
        TaskAction::BuildpackStaging { .. } => (
            rootfs(task.stack.as_deref(), None, default_stack),
            buildpack_staging(&task.action).unwrap_or_else(|| serial(Vec::new())),
            // Staging is not a launch: HOME, TMPDIR and DEPS_DIR of a
            // droplet do not exist yet.
            false,
        ),
        TaskAction::DockerStaging {
            image,
            lifecycle,
            insecure_registries,
        } => (
            rootfs(task.stack.as_deref(), None, default_stack),
            docker_staging(image, lifecycle.as_ref(), insecure_registries),
            false,
        ),
        TaskAction::Run {
            droplet: Some(droplet),
            command,
            ..
        } => (
            rootfs(task.stack.as_deref(), None, default_stack),
            serial(vec![
                download(
                    "droplet",
                    droplet,
                    HOME,
                    format!("droplets-{}", task.app_guid),
                ),
                launch(command, &task.log_source_type),
            ]),
            true,
        ),
        TaskAction::Run {
            docker_image: Some(image),
            command,
            ..
        } => (
            rootfs(None, Some(image), default_stack),
            run_image_command(command, &task.log_source_type),
            false,
        ),
        TaskAction::Run { .. } => {
            return Err(RecipeError::NothingToRun {
                what: "task",
                guid: task.task_guid.clone(),
            })
        }
    };
    let mut env = task.env.clone();
    if let Some(stack) = &task.stack {
        env.entry("CF_STACK".into())
            .or_insert_with(|| stack.clone());
    }
    let mut out = d::TaskDefinition::new(rootfs_value, action);
    out.memory_mb = mb(task.memory_mb);
    out.disk_mb = mb(task.disk_mb);
    out.env = app_env(&env, launch_env);
    out.result_file = task.result_file.clone().unwrap_or_default();
    out.log_guid.clone_from(&task.log_source_id);
    out.log_source.clone_from(&task.log_source_type);
    out.metrics_guid.clone_from(&task.app_guid);
    out.egress_rules.clone_from(&task.egress_rules);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::default_egress_rules;
    use crate::scheduler::{BuildpackSpec, HealthCheck};

    fn blob(name: &str) -> BlobLocation {
        BlobLocation {
            url: format!("http://ctl/internal/v1/blobs/{name}/aa"),
            sha256: format!("{name}-sha256"),
            sha1: "x".into(),
            size: 1,
        }
    }

    fn lrp(kind: &str) -> DesiredLrp {
        DesiredLrp {
            process_guid: "pg".into(),
            app_guid: "app".into(),
            process_type: "web".into(),
            version: "v7".into(),
            instances: 2,
            memory_mb: 256,
            disk_mb: 1024,
            stack: Some("cflinuxfs4".into()),
            droplet: Some(blob("droplets")),
            docker_image: None,
            start_command: "bundle exec rackup".into(),
            env: BTreeMap::from([("A".to_owned(), "1".to_owned())]),
            ports: vec![8080],
            health_check: HealthCheck {
                kind: kind.into(),
                endpoint: Some("/health".into()),
                timeout_secs: Some(90),
                invocation_timeout_secs: Some(2),
            },
            routes: vec!["a.example.com".into()],
            log_source_id: "app".into(),
            egress_rules: default_egress_rules(),
        }
    }

    #[test]
    fn buildpack_apps_download_the_droplet_and_launch_as_vcap() {
        let d = desired_lrp(&lrp("http"), "cflinuxfs4").expect("recipe");
        assert_eq!(d.process_guid, "pg-v7");
        assert_eq!(d.rootfs, "preloaded:cflinuxfs4");
        assert_eq!((d.instances, d.memory_mb, d.disk_mb), (2, 256, 1024));
        assert_eq!(d.start_timeout_ms, 90_000);
        let Some(Action::Download(dl)) = &d.setup else {
            panic!("setup downloads the droplet: {:?}", d.setup)
        };
        assert_eq!(
            (dl.to.as_str(), dl.checksum_algorithm.as_str()),
            (HOME, "sha256")
        );
        assert_eq!(dl.checksum_value, "droplets-sha256");
        assert_eq!(dl.cache_key, "droplets-pg");
        let Action::Run(run) = &d.action else {
            panic!("runs the command")
        };
        assert_eq!(run.user, USER);
        assert_eq!(
            run.args.last().map(String::as_str),
            Some("bundle exec rackup")
        );
        let env: BTreeMap<_, _> = d
            .env
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(env.get("PORT"), Some(&"8080"));
        assert_eq!(env.get("HOME"), Some(&"/home/vcap/app"));
        assert_eq!(env.get("A"), Some(&"1"));
        assert_eq!(
            d.check_definition.expect("http check").checks,
            vec![d::Check::Http {
                port: 8080,
                path: "/health".into(),
                request_timeout_ms: 2000
            }]
        );
        assert_eq!(d.routes[0].hostnames, vec!["a.example.com".to_owned()]);
        assert_eq!(d.egress_rules, default_egress_rules());
    }

    #[test]
    fn a_process_with_a_bad_egress_rule_has_no_recipe() {
        let mut bad = lrp("port");
        bad.egress_rules = vec![d::SecurityGroupRule::new(
            d::SecurityProtocol::Udp,
            &["0.0.0.0/0"],
        )];
        let err = desired_lrp(&bad, "s").expect_err("no ports");
        assert!(
            matches!(
                err,
                RecipeError::Invalid(d::DesiredLrpError::EgressRule { index: 0, .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn health_check_kinds_and_docker_apps() {
        let port = desired_lrp(&lrp("port"), "s").expect("port");
        assert_eq!(port.health_check_kind(), d::HealthCheckKind::Port);
        let process = desired_lrp(&lrp("process"), "s").expect("process");
        assert!(process.check_definition.is_none());
        let mut docker = lrp("port");
        docker.droplet = None;
        docker.stack = None;
        docker.docker_image = Some("library/nginx:1.27".into());
        let d = desired_lrp(&docker, "s").expect("docker");
        assert_eq!(d.rootfs, "docker:///library/nginx:1.27");
        assert_eq!(docker_rootfs("busybox"), "docker:///busybox");
        assert_eq!(
            docker_rootfs("registry.local:5000/team/app:2"),
            "docker://registry.local:5000/team/app:2"
        );
        assert_eq!(docker_rootfs("localhost/app"), "docker://localhost/app");
        assert!(d.setup.is_none());
        docker.start_command.clear();
        assert!(matches!(
            desired_lrp(&docker, "s"),
            Err(RecipeError::NoCommand(_))
        ));
        docker.docker_image = None;
        assert!(matches!(
            desired_lrp(&docker, "s"),
            Err(RecipeError::NothingToRun { .. })
        ));
    }

    #[test]
    fn staging_runs_the_builder_between_downloads_and_uploads() {
        let task = TaskDefinition {
            task_guid: "build-1".into(),
            domain: crate::scheduler::STAGING_DOMAIN.into(),
            app_guid: "app".into(),
            stack: Some("cflinuxfs4".into()),
            memory_mb: 1024,
            disk_mb: 4096,
            env: BTreeMap::new(),
            log_source_id: "app".into(),
            log_source_type: "STG".into(),
            result_file: Some("/tmp/result.json".into()),
            action: TaskAction::BuildpackStaging {
                package: blob("packages"),
                buildpacks: vec![BuildpackSpec {
                    name: "ruby_buildpack".into(),
                    key: "ruby_buildpack".into(),
                    blob: Some(blob("buildpacks")),
                    skip_detect: true,
                }],
                buildpack_cache: Some(blob("buildpack_cache")),
                droplet_upload_url: "http://ctl/internal/v1/staging/build-1/droplet".into(),
                buildpack_cache_upload_url:
                    "http://ctl/internal/v1/staging/build-1/buildpack_cache".into(),
                lifecycle: Some(blob("lifecycles")),
            },
            deadline: 0,
            egress_rules: default_egress_rules(),
        };
        let t = task_definition(&task, "cflinuxfs4").expect("recipe");
        assert_eq!(t.egress_rules, default_egress_rules());
        assert_eq!(t.rootfs, "preloaded:cflinuxfs4");
        assert_eq!(t.result_file, "/tmp/result.json");
        assert!(t
            .env
            .iter()
            .any(|e| e.name == "CF_STACK" && e.value == "cflinuxfs4"));
        assert!(
            !t.env.iter().any(|e| e.name == "TMPDIR" || e.name == "HOME"),
            "no launch env in staging: {:?}",
            t.env
        );
        let Action::Serial(steps) = &t.action else {
            panic!("serial")
        };
        let [Action::Parallel(downloads), Action::Run(builder), Action::Parallel(uploads)] =
            steps.actions.as_slice()
        else {
            panic!("downloads, builder, uploads: {:?}", steps.actions)
        };
        assert_eq!(downloads.actions.len(), 4);
        let lifecycle = downloads
            .actions
            .iter()
            .find_map(|a| match a {
                Action::Download(d) if d.to == LIFECYCLE_DIR => Some(d),
                _ => None,
            })
            .expect("the lifecycle is downloaded");
        assert_eq!(lifecycle.cache_key, "lifecycle-lifecycles-sha256");
        assert_eq!(lifecycle.checksum_value, "lifecycles-sha256");
        assert_eq!(builder.path, BUILDER);
        assert!(builder
            .args
            .contains(&"-buildpackOrder=ruby_buildpack".to_owned()));
        assert!(builder.args.contains(&"-skipDetect=true".to_owned()));
        let Action::Upload(droplet) = &uploads.actions[0] else {
            panic!("droplet upload")
        };
        assert_eq!(droplet.from, "/tmp/droplet");
        assert!(droplet.to.ends_with("/droplet"));
    }

    #[test]
    fn docker_staging_fetches_the_lifecycle_then_runs_it() {
        let action = docker_staging(
            "registry.local:5000/app:1",
            Some(&blob("lifecycles")),
            &["registry.local:5000".into()],
        );
        let Action::Serial(steps) = action else {
            panic!("serial")
        };
        let [Action::Download(get), Action::Run(run)] = steps.actions.as_slice() else {
            panic!("download, run: {:?}", steps.actions)
        };
        assert_eq!(get.to, LIFECYCLE_DIR);
        assert_eq!(run.path, DOCKER_BUILDER);
        assert_eq!(
            run.args,
            [
                "-dockerRef=registry.local:5000/app:1",
                "-outputMetadataJSONFilename=/tmp/result.json",
                "-insecureDockerRegistries=registry.local:5000",
            ]
        );
        let mut missing = blob("lifecycles");
        missing.sha256.clear();
        let Action::Download(d) = lifecycle_download(&missing) else {
            panic!("download")
        };
        assert!(d.checksum_algorithm.is_empty() && d.cache_key.is_empty());
    }
}
