//! The HTTP/1.1 that Garden speaks, for the server and the client (only
//! its errors are public).
//!
//! Garden answers Run and Attach with `201`/`200` and then takes the
//! connection over for its own stream protocol, which no general HTTP
//! library offers (hyper only hands a connection over after `101`). So
//! both sides use this small codec: request and response heads are parsed
//! by `httparse`; bodies are `Content-Length`, chunked (sizes parsed by
//! `httparse` too) or, for responses, until close; after a hijack the
//! buffered bytes and the socket go to the stream protocol untouched.

mod body;
mod conn;
mod head;
mod json_stream;

pub(crate) use body::{write_chunk, write_last_chunk, BodyReader};
pub(crate) use conn::{BoxIo, BufConn, Prefixed};
pub(crate) use head::{
    read_request_head, read_response_head, response_head, RequestHead, ResponseHead,
};
pub(crate) use json_stream::JsonReader;
pub use json_stream::JsonStreamError;

/// What can go wrong reading or writing HTTP.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The peer's socket failed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection in the middle of a message.
    #[error("connection closed in the middle of a message")]
    UnexpectedEof,
    /// The head is not HTTP/1.x.
    #[error("malformed HTTP head: {0}")]
    MalformedHead(String),
    /// The head is longer than allowed.
    #[error("HTTP head longer than {limit} bytes")]
    HeadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body's framing headers are invalid or contradict each other.
    #[error("invalid body framing: {0}")]
    BadFraming(String),
    /// The chunked body is malformed.
    #[error("malformed chunked body: {0}")]
    BadChunk(String),
    /// The body is longer than allowed.
    #[error("body longer than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The peer sent nothing for too long.
    #[error("timed out waiting for the peer")]
    Timeout,
}

impl HttpError {
    /// The status a server answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            Self::HeadTooLarge { .. } => 431,
            Self::BodyTooLarge { .. } => 413,
            Self::Timeout => 408,
            Self::BadFraming(message) if message.starts_with("unsupported") => 501,
            Self::MalformedHead(_) | Self::BadFraming(_) | Self::BadChunk(_) => 400,
            Self::Io(_) | Self::UnexpectedEof => 400,
        }
    }
}

/// The reason phrase of the statuses this crate uses.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}
