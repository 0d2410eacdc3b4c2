//! `cfl`: the developer CLI for controller-lite. See `docs/cfl.md`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use cfl::client::{Client, TlsOptions};
use cfl::config::Config;
use cfl::manifest::Overrides;
use cfl::{commands, logs, manifest, push};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

/// The developer CLI for controller-lite (Cloud Foundry v3 API).
#[derive(Parser)]
#[command(name = "cfl", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Log in: stores tokens in ~/.cfl/config.json (0600).
    Login {
        #[arg(short = 'a', long = "api", env = "CFL_API")]
        api: String,
        #[arg(short = 'u', long = "username", env = "CFL_USERNAME")]
        username: String,
        #[arg(short = 'p', long = "password", env = "CFL_PASSWORD")]
        password: String,
        #[arg(short = 'o', long)]
        org: Option<String>,
        #[arg(short = 's', long)]
        space: Option<String>,
        /// Accept any TLS certificate from the API (kept for later commands).
        #[arg(long)]
        skip_ssl_validation: bool,
        /// A PEM file with the CA that signed the API's certificate (kept
        /// for later commands; CFL_CA_CERT overrides it for any command).
        #[arg(long, env = "CFL_CA_CERT")]
        ca_cert: Option<PathBuf>,
    },
    /// Target an org and space (shows the target without flags).
    Target {
        #[arg(short = 'o', long)]
        org: Option<String>,
        #[arg(short = 's', long)]
        space: Option<String>,
    },
    /// Push apps from manifest.yml and flags.
    Push(Box<PushArgs>),
    /// List apps in the targeted space.
    Apps(JsonFlag),
    /// Show one app.
    App {
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Follow an app's logs until ^C or the app is deleted; --recent shows
    /// the newest lines kept and exits.
    Logs {
        name: String,
        #[arg(long)]
        recent: bool,
    },
    /// Scale a process.
    Scale {
        name: String,
        #[arg(short = 'i', long)]
        instances: Option<u32>,
        #[arg(short = 'm', long)]
        memory: Option<String>,
        #[arg(short = 'k', long)]
        disk: Option<String>,
        #[arg(long, default_value = "web")]
        process: String,
    },
    /// Start an app.
    Start { name: String },
    /// Stop an app.
    Stop { name: String },
    /// Restart an app.
    Restart { name: String },
    /// Delete an app.
    Delete {
        name: String,
        /// Accepted for cf compatibility; cfl never prompts.
        #[arg(short = 'f')]
        force: bool,
    },
    /// Show an app's environment.
    Env {
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Set one environment variable.
    SetEnv {
        name: String,
        key: String,
        value: String,
    },
    /// Run a one-off task.
    RunTask {
        name: String,
        command: String,
        #[arg(long)]
        name_of_task: Option<String>,
    },
    /// List an app's tasks.
    Tasks {
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// List routes in the targeted space.
    Routes(JsonFlag),
    /// Map a route to an app.
    MapRoute {
        name: String,
        domain: String,
        #[arg(long, default_value = "")]
        hostname: String,
        #[arg(long, default_value = "")]
        path: String,
    },
    /// List buildpacks.
    Buildpacks(JsonFlag),
    /// Create a buildpack from a zip (admin).
    CreateBuildpack {
        name: String,
        zip: PathBuf,
        position: u32,
        #[arg(short = 's', long)]
        stack: Option<String>,
    },
    /// List stacks.
    Stacks(JsonFlag),
}

#[derive(Args)]
struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct PushArgs {
    /// App name (required without a manifest; picks one app of it otherwise).
    name: Option<String>,
    #[arg(short = 'f', long = "manifest")]
    manifest: Option<PathBuf>,
    #[arg(short = 'i', long)]
    instances: Option<u32>,
    #[arg(short = 'm', long)]
    memory: Option<String>,
    #[arg(short = 'k', long)]
    disk: Option<String>,
    #[arg(short = 'b', long = "buildpack")]
    buildpacks: Vec<String>,
    #[arg(short = 's', long)]
    stack: Option<String>,
    #[arg(short = 'c', long)]
    command: Option<String>,
    /// Extra env vars, KEY=VALUE.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    #[arg(long = "docker-image", short = 'o')]
    docker_image: Option<String>,
    /// port, process or http.
    #[arg(short = 'u', long = "health-check-type")]
    health_check_type: Option<String>,
    #[arg(long = "endpoint")]
    endpoint: Option<String>,
    #[arg(long = "route")]
    routes: Vec<String>,
    #[arg(long = "no-route")]
    no_route: bool,
    #[arg(long = "random-route")]
    random_route: bool,
    #[arg(short = 'p', long)]
    path: Option<PathBuf>,
    #[arg(long = "no-start")]
    no_start: bool,
    /// Seconds staging may take.
    #[arg(long, default_value_t = 900)]
    staging_timeout: u64,
    /// Seconds until an instance must run.
    #[arg(long, short = 't', default_value_t = 300)]
    startup_timeout: u64,
}

fn config_path() -> Result<PathBuf> {
    Ok(Config::default_path()?)
}

fn client() -> Result<Client> {
    Ok(Client::load(config_path()?)?)
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn do_push(args: PushArgs) -> Result<()> {
    let mut env = Vec::new();
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("-e {kv}: expected KEY=VALUE"))?;
        env.push((k.to_owned(), v.to_owned()));
    }
    let flags = Overrides {
        instances: args.instances,
        memory: args.memory,
        disk: args.disk,
        buildpacks: args.buildpacks,
        stack: args.stack,
        command: args.command,
        docker_image: args.docker_image,
        health_check_type: args.health_check_type,
        health_check_endpoint: args.endpoint,
        routes: args.routes,
        no_route: args.no_route,
        random_route: args.random_route,
        path: args.path,
        env,
    };
    let apps = manifest::resolve(args.name.as_deref(), args.manifest.as_deref(), &flags)?;
    let mut c = client()?;
    let opts = push::PushOptions {
        staging_timeout: Duration::from_secs(args.staging_timeout),
        startup_timeout: Duration::from_secs(args.startup_timeout),
        no_start: args.no_start,
    };
    push::push(&mut c, &apps, &opts)?;
    Ok(())
}

fn scale_body(
    instances: Option<u32>,
    memory: Option<String>,
    disk: Option<String>,
) -> Result<Value> {
    let mb = |s: &str| -> Result<u64> {
        let up = s.trim().to_uppercase();
        let (num, mul) = match up.strip_suffix("GB").or(up.strip_suffix('G')) {
            Some(n) => (n, 1024),
            None => (
                up.strip_suffix("MB")
                    .or(up.strip_suffix('M'))
                    .unwrap_or(&up),
                1,
            ),
        };
        Ok(num
            .trim()
            .parse::<u64>()
            .with_context(|| format!("bad size {s:?} (use 256M or 1G)"))?
            * mul)
    };
    let mut body = json!({});
    if let Some(i) = instances {
        body["instances"] = json!(i);
    }
    if let Some(m) = memory {
        body["memory_in_mb"] = json!(mb(&m)?);
    }
    if let Some(d) = disk {
        body["disk_in_mb"] = json!(mb(&d)?);
    }
    Ok(body)
}

fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Login {
            api,
            username,
            password,
            org,
            space,
            skip_ssl_validation,
            ca_cert,
        } => {
            let ca_cert = match ca_cert {
                Some(p) => Some(
                    std::fs::canonicalize(&p)
                        .with_context(|| format!("CA certificate file {}", p.display()))?,
                ),
                None => None,
            };
            let tls = TlsOptions {
                skip_validation: skip_ssl_validation,
                ca_cert,
            };
            let mut c = Client::login(&api, &username, &password, &tls, config_path()?)
                .context("login failed")?;
            println!("Logged in to {api} as {username}.");
            let t = commands::target(
                &mut c,
                Some(org.as_deref().unwrap_or("default")),
                space.as_deref().or(Some("default")),
            );
            if let Ok(t) = t {
                println!("Targeted org {} / space {}.", t.org, t.space);
            }
        }
        Command::Target { org, space } => {
            let mut c = client()?;
            let t = if org.is_none() && space.is_none() {
                c.target()?.clone()
            } else {
                commands::target(&mut c, org.as_deref(), space.as_deref())?
            };
            println!(
                "API endpoint: {}\norg:          {}\nspace:        {}",
                c.config.api, t.org, t.space
            );
        }
        Command::Push(args) => do_push(*args)?,
        Command::Apps(j) => commands::apps(&mut client()?, j.json)?,
        Command::App { name, json } => commands::app(&mut client()?, &name, json.json)?,
        Command::Logs { name, recent } => {
            let mut c = client()?;
            let app = commands::find_app(&mut c, &name)?;
            let guid = app["guid"].as_str().unwrap_or_default().to_owned();
            if recent {
                logs::recent(&mut c, &guid)?;
            } else {
                logs::follow(&mut c, &guid)?;
                println!("App {name} was deleted; stopped following its logs.");
            }
        }
        Command::Scale {
            name,
            instances,
            memory,
            disk,
            process,
        } => {
            let body = scale_body(instances, memory, disk)?;
            let p = commands::scale(&mut client()?, &name, &process, &body)?;
            println!(
                "Scaled {name} ({process}): {} instances, {}M memory, {}M disk",
                p["instances"], p["memory_in_mb"], p["disk_in_mb"]
            );
        }
        Command::Start { name } => report(commands::action(&mut client()?, &name, "start")?, &name),
        Command::Stop { name } => report(commands::action(&mut client()?, &name, "stop")?, &name),
        Command::Restart { name } => {
            report(commands::action(&mut client()?, &name, "restart")?, &name)
        }
        Command::Delete { name, force: _ } => {
            commands::delete(&mut client()?, &name)?;
            println!("Deleted app {name}.");
        }
        Command::Env { name, json } => {
            let env = commands::env(&mut client()?, &name)?;
            if json.json {
                print_json(&env);
            } else {
                for (section, title) in [
                    ("environment_variables", "User-Provided"),
                    ("staging_env_json", "Staging"),
                    ("running_env_json", "Running"),
                    ("system_env_json", "System-Provided"),
                ] {
                    if let Some(vars) = env[section].as_object().filter(|m| !m.is_empty()) {
                        println!("{title}:");
                        for (k, v) in vars {
                            println!(
                                "{k}: {}",
                                v.as_str()
                                    .map(str::to_owned)
                                    .unwrap_or_else(|| v.to_string())
                            );
                        }
                        println!();
                    }
                }
            }
        }
        Command::SetEnv { name, key, value } => {
            commands::set_env(&mut client()?, &name, &key, &value)?;
            println!("Set {key} for {name}. Restart the app to use it.");
        }
        Command::RunTask {
            name,
            command,
            name_of_task,
        } => {
            let t = commands::run_task(&mut client()?, &name, &command, name_of_task.as_deref())?;
            println!(
                "Task {} ({}) submitted: {}",
                t["sequence_id"],
                t["name"].as_str().unwrap_or(""),
                t["state"].as_str().unwrap_or("")
            );
        }
        Command::Tasks { name, json } => commands::tasks(&mut client()?, &name, json.json)?,
        Command::Routes(j) => commands::routes(&mut client()?, j.json)?,
        Command::MapRoute {
            name,
            domain,
            hostname,
            path,
        } => {
            let url = commands::map_route(&mut client()?, &name, &domain, &hostname, &path)?;
            println!("Mapped {url} to {name}.");
        }
        Command::Buildpacks(j) => commands::buildpacks(&mut client()?, j.json)?,
        Command::CreateBuildpack {
            name,
            zip,
            position,
            stack,
        } => {
            let bp = commands::create_buildpack(
                &mut client()?,
                &name,
                &zip,
                position,
                stack.as_deref(),
            )?;
            println!(
                "Created buildpack {name} at position {}: {}",
                bp["position"],
                bp["state"].as_str().unwrap_or("")
            );
        }
        Command::Stacks(j) => commands::stacks(&mut client()?, j.json)?,
    }
    Ok(())
}

fn report(app: Value, name: &str) {
    println!(
        "App {name} is {}.",
        app["state"].as_str().unwrap_or("?").to_lowercase()
    );
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // ^C: the shell's convention, 128 + SIGINT.
        Err(e)
            if matches!(
                e.downcast_ref(),
                Some(cfl::client::ClientError::Interrupted)
            ) =>
        {
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}
