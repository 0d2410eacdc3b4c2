//! Message bodies: `Content-Length`, chunked, or until the peer closes.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::conn::BufConn;

use super::HttpError;

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 8 * 1024;
/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 64 * 1024;

/// How a body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the peer closes (responses only).
    UntilClose,
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// Bytes left of a fixed-length body.
    Fixed(u64),
    /// Before a chunk-size line.
    ChunkSize,
    /// Bytes left of the current chunk.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines after the last chunk; the count of trailer bytes so far.
    Trailers(usize),
    UntilClose,
    Done,
}

/// Reads one body from a [`BufConn`], chunk by chunk.
#[derive(Debug)]
pub(crate) struct BodyReader {
    state: State,
}

impl BodyReader {
    pub(crate) fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(length) => State::Fixed(length),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        Self { state }
    }

    /// Whether the whole body was read.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The next piece of the body; `None` at its end.
    pub(crate) async fn next(&mut self, conn: &mut BufConn) -> Result<Option<Bytes>, HttpError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Fixed(left) => {
                    let data = take_some(conn, left, true).await?;
                    let left = left - data.len() as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Fixed(left)
                    };
                    return Ok(Some(data));
                }
                State::UntilClose => {
                    let data = take_some(conn, u64::MAX, false).await?;
                    if data.is_empty() {
                        self.state = State::Done;
                        return Ok(None);
                    }
                    return Ok(Some(data));
                }
                State::ChunkSize => self.state = read_chunk_size(conn).await?,
                State::ChunkData(left) => {
                    let data = take_some(conn, left, true).await?;
                    let left = left - data.len() as u64;
                    self.state = if left == 0 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(left)
                    };
                    return Ok(Some(data));
                }
                State::ChunkEnd => {
                    fill_to(conn, 2).await?;
                    if &conn.buffered()[..2] != b"\r\n" {
                        return Err(HttpError::BadChunk(
                            "chunk data not followed by CRLF".into(),
                        ));
                    }
                    conn.consume(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers(seen) => self.state = read_trailer_line(conn, seen).await?,
            }
        }
    }

    /// Reads the rest of the body into memory, at most `limit` bytes.
    pub(crate) async fn read_to_end(
        &mut self,
        conn: &mut BufConn,
        limit: usize,
    ) -> Result<Bytes, HttpError> {
        let mut body = BytesMut::new();
        while let Some(data) = self.next(conn).await? {
            if body.len() + data.len() > limit {
                return Err(HttpError::BodyTooLarge { limit });
            }
            body.extend_from_slice(&data);
        }
        Ok(body.freeze())
    }
}

/// Takes up to `max` bytes, reading when nothing is buffered. At end of
/// stream: an error when `required`, else an empty piece.
async fn take_some(conn: &mut BufConn, max: u64, required: bool) -> Result<Bytes, HttpError> {
    if conn.buffered().is_empty() && conn.fill().await? == 0 {
        return if required {
            Err(HttpError::UnexpectedEof)
        } else {
            Ok(Bytes::new())
        };
    }
    let n = usize::try_from(max)
        .unwrap_or(usize::MAX)
        .min(conn.buffered().len());
    Ok(conn.take(n))
}

async fn fill_to(conn: &mut BufConn, n: usize) -> Result<(), HttpError> {
    while conn.buffered().len() < n {
        if conn.fill().await? == 0 {
            return Err(HttpError::UnexpectedEof);
        }
    }
    Ok(())
}

/// The index just past the first CRLF-terminated line, reading as needed.
async fn line_end(conn: &mut BufConn) -> Result<usize, HttpError> {
    let mut searched = 0;
    loop {
        if let Some(at) = conn.buffered()[searched..]
            .windows(2)
            .position(|pair| pair == b"\r\n")
        {
            return Ok(searched + at + 2);
        }
        searched = conn.buffered().len().saturating_sub(1);
        if searched > MAX_LINE {
            return Err(HttpError::BadChunk(format!(
                "line longer than {MAX_LINE} bytes"
            )));
        }
        if conn.fill().await? == 0 {
            return Err(HttpError::UnexpectedEof);
        }
    }
}

async fn read_chunk_size(conn: &mut BufConn) -> Result<State, HttpError> {
    let end = line_end(conn).await?;
    match httparse::parse_chunk_size(&conn.buffered()[..end]) {
        Ok(httparse::Status::Complete((consumed, size))) => {
            conn.consume(consumed);
            Ok(if size == 0 {
                State::Trailers(0)
            } else {
                State::ChunkData(size)
            })
        }
        Ok(httparse::Status::Partial) | Err(_) => {
            Err(HttpError::BadChunk("invalid chunk size line".into()))
        }
    }
}

async fn read_trailer_line(conn: &mut BufConn, seen: usize) -> Result<State, HttpError> {
    let end = line_end(conn).await?;
    conn.consume(end);
    if end == 2 {
        return Ok(State::Done);
    }
    let seen = seen + end;
    if seen > MAX_TRAILERS {
        return Err(HttpError::BadChunk(format!(
            "trailers longer than {MAX_TRAILERS} bytes"
        )));
    }
    Ok(State::Trailers(seen))
}

/// Writes one chunk of a chunked body (nothing for empty data, which
/// would end the body).
pub(crate) async fn write_chunk<W: AsyncWrite + Unpin + ?Sized>(
    writer: &mut W,
    data: &[u8],
) -> std::io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    writer
        .write_all(format!("{:x}\r\n", data.len()).as_bytes())
        .await?;
    writer.write_all(data).await?;
    writer.write_all(b"\r\n").await
}

/// Ends a chunked body.
pub(crate) async fn write_last_chunk<W: AsyncWrite + Unpin + ?Sized>(
    writer: &mut W,
) -> std::io::Result<()> {
    writer.write_all(b"0\r\n\r\n").await?;
    writer.flush().await
}
