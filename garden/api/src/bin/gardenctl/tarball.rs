//! `stream-in` and `stream-out`: tar archives to and from a local
//! directory, or raw on stdin/stdout.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use futures_util::{StreamExt, TryStreamExt};
use garden_api::backend::{ByteStream, StreamInSpec, StreamOutSpec};
use garden_api::client::Client;
use tokio::io::AsyncWriteExt;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

/// What `gardenctl stream-in` takes.
#[derive(Args)]
pub struct StreamInArgs {
    /// Container handle.
    handle: String,
    /// The directory in the container to unpack into.
    #[arg(long)]
    dst: String,
    /// A local directory to send (default: a tar archive on stdin).
    #[arg(long)]
    src: Option<PathBuf>,
    /// The user owning what is written in the container.
    #[arg(short, long)]
    user: Option<String>,
}

/// What `gardenctl stream-out` takes.
#[derive(Args)]
pub struct StreamOutArgs {
    /// Container handle.
    handle: String,
    /// The path in the container.
    #[arg(long)]
    src: String,
    /// A local directory to unpack into (default: the tar archive to stdout).
    #[arg(long)]
    dst: Option<PathBuf>,
    /// The user reading in the container.
    #[arg(short, long)]
    user: Option<String>,
}

pub async fn stream_in(client: &Client, args: StreamInArgs) -> anyhow::Result<()> {
    let tar: ByteStream = match args.src {
        Some(dir) => {
            anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
            let (reader, writer) = tokio::io::duplex(64 * 1024);
            let writer = SyncIoBridge::new(writer);
            let archiver = tokio::task::spawn_blocking(move || {
                let mut builder = tar::Builder::new(writer);
                builder.follow_symlinks(false);
                builder.append_dir_all(".", &dir)?;
                std::io::Write::flush(&mut builder.into_inner()?)
            });
            // A failed archive ends the stream with an error, so the
            // request is abandoned instead of sending a truncated archive.
            let outcome = futures_util::stream::once(async move {
                match archiver.await {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => {
                        Some(Err(std::io::Error::other(format!("archiving: {error}"))))
                    }
                    Err(error) => Some(Err(std::io::Error::other(error))),
                }
            })
            .filter_map(std::future::ready);
            Box::pin(ReaderStream::new(reader).chain(outcome))
        }
        None => Box::pin(ReaderStream::new(tokio::io::stdin())),
    };
    let spec = StreamInSpec {
        path: args.dst,
        user: args.user.unwrap_or_default(),
    };
    client
        .stream_in(&args.handle, &spec, tar)
        .await
        .with_context(|| format!("streaming into {}", args.handle))
}

pub async fn stream_out(client: &Client, args: StreamOutArgs) -> anyhow::Result<()> {
    let spec = StreamOutSpec {
        path: args.src.clone(),
        user: args.user.unwrap_or_default(),
    };
    let stream = client
        .stream_out(&args.handle, &spec)
        .await
        .with_context(|| format!("streaming {} out", args.src))?;
    let mut reader = StreamReader::new(stream.map_err(std::io::Error::other));
    match args.dst {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let bridge = SyncIoBridge::new(reader);
            tokio::task::spawn_blocking(move || {
                tar::Archive::new(bridge)
                    .unpack(&dir)
                    .with_context(|| format!("unpacking into {}", dir.display()))
            })
            .await
            .context("the unpacking thread failed")?
        }
        None => {
            let mut stdout = tokio::io::stdout();
            tokio::io::copy(&mut reader, &mut stdout)
                .await
                .context("writing to stdout")?;
            stdout.flush().await.context("writing to stdout")
        }
    }
}
