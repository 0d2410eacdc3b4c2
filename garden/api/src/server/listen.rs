//! Binding the unix socket and TCP, and accepting connections.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

use super::{connection, ServerError, State};
use crate::http1::BoxIo;

pub(super) enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Binds `path` mode 0600: the socket is bound under a temporary name,
/// restricted, then renamed over `path`, so it is never reachable with
/// looser permissions and a stale socket is replaced atomically.
pub(super) fn bind_unix(path: &Path) -> Result<Listener, ServerError> {
    let bind_error = |source| ServerError::Bind {
        address: path.display().to_string(),
        source,
    };
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|source| ServerError::CreateDir {
                path: parent.to_owned(),
                source,
            })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ServerError::NotASocket {
                path: path.to_owned(),
            })
        }
        Ok(_) if std::os::unix::net::UnixStream::connect(path).is_ok() => {
            return Err(ServerError::SocketInUse {
                path: path.to_owned(),
            });
        }
        Ok(_) => tracing::info!(path = %path.display(), "replacing a stale socket"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(bind_error(error)),
    }
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let listener = UnixListener::bind(&temporary).map_err(bind_error)?;
    let restricted = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(error) = restricted {
        let _ = std::fs::remove_file(&temporary);
        return Err(bind_error(error));
    }
    tracing::info!(path = %path.display(), "listening on unix socket");
    Ok(Listener::Unix(listener))
}

pub(super) async fn bind_tcp(address: SocketAddr) -> Result<(Listener, SocketAddr), ServerError> {
    let bind_error = |source| ServerError::Bind {
        address: address.to_string(),
        source,
    };
    let listener = TcpListener::bind(address).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "listening on TCP beyond loopback: the Garden API has no authentication");
    }
    tracing::info!(%bound, "listening on TCP");
    Ok((Listener::Tcp(listener), bound))
}

async fn accept(listener: &Listener) -> std::io::Result<(BoxIo, String)> {
    match listener {
        Listener::Unix(listener) => {
            let (stream, _) = listener.accept().await?;
            Ok((Box::new(stream), "unix".to_owned()))
        }
        Listener::Tcp(listener) => {
            let (stream, peer) = listener.accept().await?;
            // Stream messages are small: send them at once.
            stream.set_nodelay(true)?;
            Ok((Box::new(stream), peer.to_string()))
        }
    }
}

pub(super) async fn accept_loop(listener: Listener, state: Arc<State>, permits: Arc<Semaphore>) {
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = state.shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            accepted = accept(&listener) => accepted,
            () = state.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((io, peer)) => {
                let state_for_task = Arc::clone(&state);
                state.tracker.spawn(async move {
                    connection::serve(state_for_task, io, peer).await;
                    drop(permit);
                });
            }
            Err(error) => {
                // EMFILE and friends: wait a little instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
