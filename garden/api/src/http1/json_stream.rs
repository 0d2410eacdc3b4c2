//! A stream of JSON values on a hijacked connection: newline-delimited as
//! Go's `json.Encoder` writes them, or simply concatenated, as Go's
//! `json.Decoder` also accepts.

use bytes::{Buf, BytesMut};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a JSON stream cannot be read on.
#[derive(Debug, thiserror::Error)]
pub enum JsonStreamError {
    /// The socket failed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent something that is not JSON.
    #[error("invalid JSON on the stream: {0}")]
    Syntax(serde_json::Error),
    /// The peer closed the stream in the middle of a value.
    #[error("stream closed in the middle of a message")]
    Truncated,
    /// One value is longer than allowed.
    #[error("message longer than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

/// Reads one JSON value after another.
pub(crate) struct JsonReader<R> {
    io: R,
    buf: BytesMut,
    limit: usize,
}

impl<R: AsyncRead + Unpin> JsonReader<R> {
    /// Reads from `io`, starting with the bytes already read in `buf`.
    pub(crate) fn new(io: R, buf: BytesMut, limit: usize) -> Self {
        Self { io, buf, limit }
    }

    /// The next value: `Ok(None)` at a clean end of stream; `Ok(Some(Err))`
    /// for valid JSON that is not a `T` (the stream can go on). Cancel-safe.
    pub(crate) async fn next<T: DeserializeOwned>(
        &mut self,
    ) -> Result<Option<Result<T, serde_json::Error>>, JsonStreamError> {
        loop {
            let blank = self
                .buf
                .iter()
                .take_while(|byte| byte.is_ascii_whitespace())
                .count();
            self.buf.advance(blank);
            if !self.buf.is_empty() {
                let mut values = serde_json::Deserializer::from_slice(&self.buf)
                    .into_iter::<serde_json::Value>();
                match values.next() {
                    Some(Ok(value)) => {
                        let used = values.byte_offset();
                        if used > self.limit {
                            return Err(JsonStreamError::TooLarge { limit: self.limit });
                        }
                        self.buf.advance(used);
                        return Ok(Some(serde_json::from_value(value)));
                    }
                    Some(Err(error)) if error.is_eof() => {}
                    Some(Err(error)) => return Err(JsonStreamError::Syntax(error)),
                    None => {}
                }
                if self.buf.len() >= self.limit {
                    return Err(JsonStreamError::TooLarge { limit: self.limit });
                }
            }
            self.buf.reserve(16 * 1024);
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(JsonStreamError::Truncated)
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ProcessPayload;

    #[tokio::test]
    async fn reads_lines_concatenated_values_and_split_reads() {
        let (mut writer, reader) = tokio::io::duplex(8);
        let feed = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let text = b"{\"process_id\":\"a\"}\n{\"process_id\":\"b\"}{\"signal\":7}\n  {\"process_id\":\"c\"}";
            writer.write_all(text).await.expect("writes");
        });
        let mut json = JsonReader::new(reader, BytesMut::from(&b"  "[..]), 1024);
        let first: ProcessPayload = json
            .next()
            .await
            .expect("reads")
            .expect("a value")
            .expect("a payload");
        assert_eq!(first.process_id, "a");
        let second: ProcessPayload = json
            .next()
            .await
            .expect("reads")
            .expect("a value")
            .expect("a payload");
        assert_eq!(second.process_id, "b");
        assert!(
            json.next::<ProcessPayload>()
                .await
                .expect("reads")
                .expect("a value")
                .is_err(),
            "signal 7 is not one"
        );
        let third: ProcessPayload = json
            .next()
            .await
            .expect("reads")
            .expect("a value")
            .expect("a payload");
        assert_eq!(third.process_id, "c");
        assert!(json
            .next::<ProcessPayload>()
            .await
            .expect("reads")
            .is_none());
        feed.await.expect("feeder ends");
    }

    #[tokio::test]
    async fn garbage_truncation_and_size_are_errors() {
        let mut json = JsonReader::new(&b"{\"a\": nope}"[..], BytesMut::new(), 1024);
        assert!(matches!(
            json.next::<serde_json::Value>().await,
            Err(JsonStreamError::Syntax(_))
        ));
        let mut json = JsonReader::new(&b"{\"a\": 1"[..], BytesMut::new(), 1024);
        assert!(matches!(
            json.next::<serde_json::Value>().await,
            Err(JsonStreamError::Truncated)
        ));
        let long = format!("\"{}\"", "x".repeat(100));
        let mut json = JsonReader::new(long.as_bytes(), BytesMut::new(), 16);
        assert!(matches!(
            json.next::<serde_json::Value>().await,
            Err(JsonStreamError::TooLarge { .. })
        ));
    }
}
