//! `run` and `attach`: live stdio, signals, terminal size, exit status.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use garden_api::client::{Client, OutputStream, OutputStreams, RemoteProcess, StdinWriter};
use garden_api::types::{ProcessSpec, Signal, TtySpec};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};

use crate::term;

/// What `gardenctl run` takes.
#[derive(Args)]
pub struct RunArgs {
    /// Container handle.
    handle: String,
    /// The process id (default: chosen by the server).
    #[arg(long)]
    id: Option<String>,
    /// The user: a name or UID:GID.
    #[arg(short, long)]
    user: Option<String>,
    /// The working directory.
    #[arg(short, long)]
    dir: Option<String>,
    /// Environment KEY=VALUE (repeatable).
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Run with a terminal (local terminal in raw mode, size followed).
    #[arg(short, long)]
    tty: bool,
    /// Send no stdin.
    #[arg(long)]
    no_stdin: bool,
    /// The program and its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// What `gardenctl attach` takes.
#[derive(Args)]
pub struct AttachArgs {
    /// Container handle.
    handle: String,
    /// The process id.
    process_id: String,
    /// The process has a terminal: raw mode locally, size followed.
    #[arg(short, long)]
    tty: bool,
    /// Send no stdin.
    #[arg(long)]
    no_stdin: bool,
}

pub async fn run(client: &Client, args: RunArgs) -> anyhow::Result<i32> {
    let mut command = args.command.into_iter();
    let path = command.next().unwrap_or_default();
    let spec = ProcessSpec {
        id: args.id.unwrap_or_default(),
        path,
        args: command.collect(),
        env: args.env,
        dir: args.dir.unwrap_or_default(),
        user: args.user.unwrap_or_default(),
        tty: args.tty.then(|| TtySpec {
            window_size: term::window_size(),
        }),
        ..ProcessSpec::default()
    };
    let process = client
        .run(&args.handle, &spec, OutputStreams::BOTH)
        .await
        .with_context(|| format!("running {} in {}", spec.path, args.handle))?;
    drive(process, args.tty, !args.no_stdin).await
}

pub async fn attach(client: &Client, args: AttachArgs) -> anyhow::Result<i32> {
    let process = client
        .attach(&args.handle, &args.process_id, OutputStreams::BOTH)
        .await
        .with_context(|| format!("attaching to {} in {}", args.process_id, args.handle))?;
    if args.tty {
        process
            .set_tty(TtySpec {
                window_size: term::window_size(),
            })
            .await?;
    }
    drive(process, args.tty, !args.no_stdin).await
}

/// Pumps stdio until the process exits; returns its exit status.
async fn drive(mut process: RemoteProcess, tty: bool, forward_stdin: bool) -> anyhow::Result<i32> {
    let raw = if tty && term::stdin_is_terminal() {
        Some(term::RawMode::enter()?)
    } else {
        None
    };
    let outputs: Vec<_> = [
        process
            .take_stdout()
            .map(|stream| tokio::spawn(copy_out(stream, tokio::io::stdout()))),
        process
            .take_stderr()
            .map(|stream| tokio::spawn(copy_out(stream, tokio::io::stderr()))),
    ]
    .into_iter()
    .flatten()
    .collect();
    let stdin = forward_stdin.then(|| tokio::spawn(copy_in(process.stdin())));
    let result = tokio::select! {
        result = process.wait() => result,
        error = forward_signals(&process) => Err(error),
    };
    // The output streams end right after the exit status.
    for output in outputs {
        let _ = tokio::time::timeout(Duration::from_secs(10), output).await;
    }
    if let Some(stdin) = stdin {
        stdin.abort();
    }
    drop(raw);
    Ok(result?)
}

async fn copy_out(mut stream: OutputStream, mut to: impl AsyncWrite + Unpin) {
    let _ = tokio::io::copy(&mut stream, &mut to).await;
    let _ = to.flush().await;
}

async fn copy_in(writer: StdinWriter) {
    let mut stdin = tokio::io::stdin();
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        match stdin.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if writer.write(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = writer.close().await;
}

/// Forwards INT, TERM and HUP as TERM (KILL from the second on), and
/// window size changes. Returns only if that fails.
async fn forward_signals(process: &RemoteProcess) -> garden_api::client::ClientError {
    let streams = (|| {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
            signal(SignalKind::window_change())?,
        ))
    })();
    let Ok((mut interrupt, mut terminate, mut hangup, mut resize)) = streams else {
        return std::future::pending().await;
    };
    let mut sent = 0;
    loop {
        let result = tokio::select! {
            _ = interrupt.recv() => stop(process, &mut sent).await,
            _ = terminate.recv() => stop(process, &mut sent).await,
            _ = hangup.recv() => stop(process, &mut sent).await,
            _ = resize.recv() => process.set_tty(TtySpec { window_size: term::window_size() }).await,
        };
        if let Err(error) = result {
            return error;
        }
    }
}

async fn stop(
    process: &RemoteProcess,
    sent: &mut usize,
) -> Result<(), garden_api::client::ClientError> {
    *sent += 1;
    process
        .signal(if *sent == 1 {
            Signal::Terminate
        } else {
            Signal::Kill
        })
        .await
}
