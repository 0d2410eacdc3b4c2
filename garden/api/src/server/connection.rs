//! One client connection: a keep-alive loop of requests, until the client
//! closes, a request hijacks the connection, or the server stops.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use tokio::time::timeout;
use tracing::Instrument;

use super::{handlers, process, streams, State};
use crate::backend::ByteStream;
use crate::error::Error;
use crate::http1::{
    read_request_head, response_head, write_chunk, write_last_chunk, BodyReader, BoxIo, BufConn,
    HttpError, RequestHead,
};
use crate::routes::{Params, Route, RouteError};

/// What a handler answers.
pub(crate) enum Reply {
    /// 200 with a JSON body.
    Json(Vec<u8>),
    /// 200 with a chunked tar stream.
    Stream(ByteStream),
}

impl Reply {
    /// A JSON body written as Go's `json.Encoder` writes it (with a newline).
    pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<Self, HandlerError> {
        let mut body =
            serde_json::to_vec(value).map_err(|error| Error::internal(error.to_string()))?;
        body.push(b'\n');
        Ok(Self::Json(body))
    }

    /// Garden's answer for success without data: `{}`.
    pub(crate) fn empty() -> Self {
        Self::Json(b"{}\n".to_vec())
    }
}

/// Why a request failed: the backend's error or a protocol error.
#[derive(Debug)]
pub(crate) enum HandlerError {
    Api(Error),
    Http(HttpError),
}

impl From<Error> for HandlerError {
    fn from(error: Error) -> Self {
        Self::Api(error)
    }
}

impl From<HttpError> for HandlerError {
    fn from(error: HttpError) -> Self {
        Self::Http(error)
    }
}

impl HandlerError {
    /// The status and Garden error JSON of this error: the one place where
    /// errors become HTTP answers ([`Error::status`] maps the kinds).
    pub(crate) fn response(&self) -> (u16, Vec<u8>) {
        let (status, error) = match self {
            Self::Api(error) => (error.status(), error.clone()),
            Self::Http(error) => (error.status(), Error::bad_request(error.to_string())),
        };
        let mut body = serde_json::to_vec(&error).unwrap_or_default();
        body.push(b'\n');
        (status, body)
    }
}

/// A request being handled: its head, route parameters and body.
pub(crate) struct Request<'a> {
    pub(crate) head: &'a RequestHead,
    pub(crate) route: Route,
    pub(crate) params: Params,
    pub(crate) state: &'a State,
    conn: &'a mut BufConn,
    body: &'a mut BodyReader,
    continue_sent: bool,
}

impl Request<'_> {
    /// The next piece of the body (answering `Expect: 100-continue` first).
    pub(crate) async fn body_chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        if !self.continue_sent && !self.body.is_done() {
            self.continue_sent = true;
            let expects = self
                .head
                .header("expect")
                .is_some_and(|value| value.eq_ignore_ascii_case("100-continue"));
            if expects {
                self.conn.write_all(&response_head(100, &[])).await?;
            }
        }
        let limit = self.state.limits.body_timeout;
        timeout(limit, self.body.next(self.conn))
            .await
            .map_err(|_| HttpError::Timeout)?
    }

    /// The whole body as JSON of type `T` (400 when it is not).
    pub(crate) async fn json<T: DeserializeOwned>(&mut self) -> Result<T, HandlerError> {
        let limit = self.state.limits.max_json_bytes;
        let mut body = Vec::new();
        while let Some(chunk) = self.body_chunk().await? {
            if body.len() + chunk.len() > limit {
                return Err(HttpError::BodyTooLarge { limit }.into());
            }
            body.extend_from_slice(&chunk);
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::bad_request("empty request body: expected JSON").into());
        }
        serde_json::from_slice(&body)
            .map_err(|error| Error::bad_request(format!("invalid JSON: {error}")).into())
    }

    /// The query's pairs, decoded.
    pub(crate) fn query(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.head.query().as_bytes())
            .into_owned()
            .collect()
    }

    /// The first value of a query parameter, or "".
    pub(crate) fn query_value(&self, key: &str) -> String {
        self.query()
            .into_iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
            .unwrap_or_default()
    }
}

/// Serves one connection until it closes, is hijacked or the server stops.
pub(super) async fn serve(state: Arc<State>, io: BoxIo, peer: String) {
    let mut conn = BufConn::new(io);
    loop {
        let head = tokio::select! {
            head = next_head(&state, &mut conn) => head,
            () = state.shutdown.cancelled() => return,
        };
        let head = match head {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(%peer, %error, "bad request head");
                let _ = write_json(&mut conn, &HandlerError::from(error).response(), false).await;
                return;
            }
        };
        let keep_going = tokio::select! {
            keep_going = serve_request(&state, conn, &head, &peer) => keep_going,
            () = state.abort.cancelled() => return,
        };
        match keep_going {
            Some(next) if !state.shutdown.is_cancelled() => conn = next,
            _ => return,
        }
    }
}

async fn next_head(state: &State, conn: &mut BufConn) -> Result<Option<RequestHead>, HttpError> {
    if conn.buffered().is_empty() {
        match timeout(state.limits.idle_timeout, conn.fill()).await {
            Err(_) | Ok(Ok(0)) => return Ok(None),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(error.into()),
        }
    }
    timeout(
        state.limits.head_timeout,
        read_request_head(conn, state.limits.max_head_bytes),
    )
    .await
    .map_err(|_| HttpError::Timeout)?
}

/// Serves one request; gives the connection back when it may carry another.
async fn serve_request(
    state: &State,
    mut conn: BufConn,
    head: &RequestHead,
    peer: &str,
) -> Option<BufConn> {
    let started = Instant::now();
    let keep_alive = head.keep_alive();
    let mut body = match head.framing() {
        Ok(framing) => BodyReader::new(framing),
        Err(error) => {
            let _ = write_json(&mut conn, &HandlerError::from(error).response(), false).await;
            return None;
        }
    };
    if head.method == "GET" && head.path() == "/metrics" {
        return serve_metrics(state, conn, keep_alive).await;
    }
    let (route, params) = match Route::match_request(&head.method, head.path()) {
        Ok(matched) => matched,
        Err(error) => {
            let reusable = keep_alive && body.is_done();
            return answer_no_route(state, conn, error, reusable, started).await;
        }
    };
    let span = tracing::info_span!("request", route = route.name(), handle = params.handle.as_str(), %peer);
    async move {
        let mut request = Request {
            head,
            route,
            params,
            state,
            conn: &mut conn,
            body: &mut body,
            continue_sent: false,
        };
        match route {
            Route::Run | Route::Attach => match process::start(&mut request).await {
                Ok(started_process) => {
                    let status = if route == Route::Run { 201 } else { 200 };
                    state
                        .metrics
                        .record(route.name(), status, started.elapsed());
                    process::stream(state, conn, started_process).await;
                    None
                }
                Err(error) => {
                    finish(
                        state,
                        conn,
                        body.is_done() && keep_alive,
                        route,
                        started,
                        Err(error),
                    )
                    .await
                }
            },
            Route::Stdout | Route::Stderr => {
                let params = request.params;
                state.metrics.record(route.name(), 200, started.elapsed());
                streams::serve_output(state, conn, route, &params).await;
                None
            }
            _ => {
                let result = handlers::handle(&mut request).await;
                let reusable = keep_alive && body.is_done();
                finish(state, conn, reusable, route, started, result).await
            }
        }
    }
    .instrument(span)
    .await
}

async fn serve_metrics(state: &State, mut conn: BufConn, keep_alive: bool) -> Option<BufConn> {
    let text = state.metrics.render();
    let length = text.len().to_string();
    let head = response_head(
        200,
        &[
            ("Content-Type", "text/plain; version=0.0.4"),
            ("Content-Length", &length),
        ],
    );
    conn.write_all(&[head, text.into_bytes()].concat())
        .await
        .ok()?;
    keep_alive.then_some(conn)
}

async fn answer_no_route(
    state: &State,
    mut conn: BufConn,
    error: RouteError,
    reusable: bool,
    started: Instant,
) -> Option<BufConn> {
    let status = match error {
        RouteError::NotFound { .. } => 404,
        RouteError::MethodNotAllowed { .. } => 405,
        RouteError::BadEncoding(_) => 400,
    };
    let (_, json) = HandlerError::from(Error::bad_request(error.to_string())).response();
    tracing::debug!(%error, status, "no such route");
    state.metrics.record("unknown", status, started.elapsed());
    write_json(&mut conn, &(status, json), reusable)
        .await
        .ok()?;
    reusable.then_some(conn)
}

/// Writes a handler's answer; gives the connection back when reusable.
async fn finish(
    state: &State,
    mut conn: BufConn,
    keep_alive: bool,
    route: Route,
    started: Instant,
    result: Result<Reply, HandlerError>,
) -> Option<BufConn> {
    let (status, reusable) = match result {
        Ok(Reply::Json(json)) => {
            write_json(&mut conn, &(200, json), keep_alive).await.ok()?;
            (200, keep_alive)
        }
        Ok(Reply::Stream(stream)) => (
            200,
            write_stream(&mut conn, stream, keep_alive).await && keep_alive,
        ),
        Err(error) => {
            let (status, json) = error.response();
            if status >= 500 {
                tracing::warn!(status, error = %String::from_utf8_lossy(&json).trim_end(), "request failed");
            } else {
                tracing::debug!(status, error = %String::from_utf8_lossy(&json).trim_end(), "request refused");
            }
            let reusable = keep_alive && !matches!(error, HandlerError::Http(_));
            write_json(&mut conn, &(status, json), reusable)
                .await
                .ok()?;
            (status, reusable)
        }
    };
    state
        .metrics
        .record(route.name(), status, started.elapsed());
    tracing::debug!(
        status,
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "served"
    );
    reusable.then_some(conn)
}

async fn write_json(
    conn: &mut BufConn,
    (status, body): &(u16, Vec<u8>),
    keep_alive: bool,
) -> std::io::Result<()> {
    let length = body.len().to_string();
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Content-Length", length.as_str()),
    ];
    if !keep_alive {
        headers.push(("Connection", "close"));
    }
    conn.write_all(&[response_head(*status, &headers), body.clone()].concat())
        .await
}

/// Streams a tar body chunked; an error before the first byte is answered
/// as an error, one later cuts the body short (no last chunk), so the
/// client sees a truncated stream. Returns whether the body was complete.
async fn write_stream(conn: &mut BufConn, mut stream: ByteStream, keep_alive: bool) -> bool {
    let first = loop {
        match stream.next().await {
            Some(Ok(chunk)) if chunk.is_empty() => continue,
            other => break other,
        }
    };
    if let Some(Err(error)) = first {
        let (status, json) =
            HandlerError::from(Error::internal(format!("streaming out: {error}"))).response();
        return write_json(conn, &(status, json), keep_alive).await.is_ok();
    }
    let mut headers = vec![
        ("Content-Type", "application/x-tar"),
        ("Transfer-Encoding", "chunked"),
    ];
    if !keep_alive {
        headers.push(("Connection", "close"));
    }
    if conn.write_all(&response_head(200, &headers)).await.is_err() {
        return false;
    }
    let mut next = first;
    while let Some(item) = next {
        match item {
            Ok(chunk) => {
                if write_chunk(conn.io_mut(), &chunk).await.is_err() {
                    return false;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "stream out failed midway: cutting the body short");
                return false;
            }
        }
        next = stream.next().await;
    }
    write_last_chunk(conn.io_mut()).await.is_ok()
}
