//! Sending one request and reading its answer.

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::net::{TcpStream, UnixStream};

use super::{Client, ClientError, Target};
use crate::backend::ByteStream;
use crate::error::Error;
use crate::http1::{
    read_response_head, write_chunk, write_last_chunk, BodyReader, BoxIo, BufConn, ResponseHead,
};
use crate::routes::{Params, Route};

const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest JSON answer read into memory (BulkInfo of many containers).
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

/// A request body.
pub(crate) enum Body {
    Empty,
    Json(Vec<u8>),
    /// Sent chunked.
    Stream(ByteStream),
}

impl Body {
    /// JSON as Go's `json.Encoder` writes it.
    pub(crate) fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, ClientError> {
        let mut json =
            serde_json::to_vec(value).map_err(|error| ClientError::Protocol(error.to_string()))?;
        json.push(b'\n');
        Ok(Self::Json(json))
    }
}

impl Client {
    pub(crate) async fn connect(&self) -> Result<BufConn, ClientError> {
        let connect_error = |source| ClientError::Connect {
            target: self.target.to_string(),
            source,
        };
        let timed_out = || {
            connect_error(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            ))
        };
        let io: BoxIo = match &self.target {
            Target::Unix(path) => {
                let connecting = UnixStream::connect(path);
                Box::new(
                    tokio::time::timeout(self.connect_timeout, connecting)
                        .await
                        .map_err(|_| timed_out())?
                        .map_err(connect_error)?,
                )
            }
            Target::Tcp(address) => {
                let connecting = TcpStream::connect(address.as_str());
                let stream = tokio::time::timeout(self.connect_timeout, connecting)
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(connect_error)?;
                stream.set_nodelay(true).map_err(connect_error)?;
                Box::new(stream)
            }
        };
        Ok(BufConn::new(io))
    }

    /// Sends a request on a new connection and reads the answer's head.
    /// `hijack`: the connection will carry a stream after the answer.
    pub(crate) async fn start(
        &self,
        route: Route,
        params: &Params,
        query: &[(&str, &str)],
        body: Body,
        hijack: bool,
    ) -> Result<(ResponseHead, BufConn), ClientError> {
        let mut conn = self.connect().await?;
        let mut target = route.path(params);
        if !query.is_empty() {
            target.push('?');
            target.push_str(
                &form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(query)
                    .finish(),
            );
        }
        let mut head = format!(
            "{} {target} HTTP/1.1\r\nHost: api\r\nUser-Agent: garden-api\r\n",
            route.method()
        );
        match &body {
            Body::Empty => {}
            Body::Json(json) => {
                head.push_str(&format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n",
                    json.len()
                ));
            }
            Body::Stream(_) => {
                head.push_str("Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n")
            }
        }
        if !hijack {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let sent = match body {
            Body::Empty => conn.write_all(head.as_bytes()).await,
            Body::Json(json) => conn.write_all(&[head.into_bytes(), json].concat()).await,
            Body::Stream(stream) => send_stream(&mut conn, head.into_bytes(), stream).await?,
        };
        // The server may answer (an error) before it read the whole body.
        let answer = read_response_head(&mut conn, MAX_HEAD_BYTES).await;
        match (sent, answer) {
            (_, Ok(head)) => Ok((head, conn)),
            (Err(error), Err(_)) => Err(ClientError::Http(error.into())),
            (Ok(()), Err(error)) => Err(error.into()),
        }
    }

    /// Sends a request and returns the whole body of a 2xx answer.
    pub(crate) async fn send(
        &self,
        route: Route,
        params: &Params,
        query: &[(&str, &str)],
        body: Body,
    ) -> Result<Bytes, ClientError> {
        let (head, mut conn) = self.start(route, params, query, body, false).await?;
        let mut reader = BodyReader::new(head.framing()?);
        let bytes = reader.read_to_end(&mut conn, MAX_ANSWER_BYTES).await?;
        check_status(head.status, &bytes)?;
        Ok(bytes)
    }

    /// Sends a request and streams the body of its 2xx answer.
    pub(crate) async fn send_streaming(
        &self,
        route: Route,
        params: &Params,
        query: &[(&str, &str)],
    ) -> Result<ByteStream, ClientError> {
        let (head, mut conn) = self.start(route, params, query, Body::Empty, false).await?;
        let mut reader = BodyReader::new(head.framing()?);
        if !(200..300).contains(&head.status) {
            let bytes = reader.read_to_end(&mut conn, MAX_ANSWER_BYTES).await?;
            check_status(head.status, &bytes)?;
        }
        let stream = futures_util::stream::unfold(Some((conn, reader)), |state| async move {
            let (mut conn, mut reader) = state?;
            match reader.next(&mut conn).await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some((conn, reader)))),
                Ok(None) => None,
                Err(error) => Some((Err(std::io::Error::other(error)), None)),
            }
        });
        Ok(Box::pin(stream))
    }
}

/// Sends a chunked body. The outer error is the local stream failing (the
/// request is abandoned), the inner one the socket failing.
async fn send_stream(
    conn: &mut BufConn,
    head: Vec<u8>,
    mut stream: ByteStream,
) -> Result<std::io::Result<()>, ClientError> {
    if let Err(error) = conn.write_all(&head).await {
        return Ok(Err(error));
    }
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ClientError::Source)?;
        if let Err(error) = write_chunk(conn.io_mut(), &chunk).await {
            return Ok(Err(error));
        }
    }
    Ok(write_last_chunk(conn.io_mut()).await)
}

/// A non-2xx answer as the server's Garden error.
pub(crate) fn check_status(status: u16, body: &[u8]) -> Result<(), ClientError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    match Error::from_response(status, body) {
        Some(error) => Err(error.into()),
        None => Err(ClientError::Protocol(format!(
            "status {status} without a Garden error: {}",
            String::from_utf8_lossy(body).trim()
        ))),
    }
}
