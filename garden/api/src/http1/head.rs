//! Request and response heads.

use super::body::Framing;
use super::conn::BufConn;
use super::{reason, HttpError};

const MAX_HEADERS: usize = 100;

/// A request line and its headers.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) method: String,
    /// The request target as sent: path and query.
    pub(crate) target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor_version: u8,
    headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The first value of a header (names are case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether the client keeps the connection open after this request.
    pub(crate) fn keep_alive(&self) -> bool {
        let connection = self
            .header("connection")
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let tokens = || connection.split(',').map(str::trim);
        if self.minor_version == 0 {
            tokens().any(|token| token == "keep-alive")
        } else {
            !tokens().any(|token| token == "close")
        }
    }

    /// How the body is delimited.
    pub(crate) fn framing(&self) -> Result<Framing, HttpError> {
        body_framing(&self.headers, false)
    }

    /// The path, without the query.
    pub(crate) fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(&self.target, |(path, _)| path)
    }

    /// The raw query string.
    pub(crate) fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, query)| query)
    }
}

/// A status line and its headers.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// How the body is delimited (`no_body` for answers to HEAD, 1xx, 204, 304).
    pub(crate) fn framing(&self) -> Result<Framing, HttpError> {
        if matches!(self.status, 100..=199 | 204 | 304) {
            return Ok(Framing::Length(0));
        }
        body_framing(&self.headers, true)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

fn body_framing(headers: &[(String, String)], response: bool) -> Result<Framing, HttpError> {
    let encodings: Vec<&str> = headers
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .filter(|encoding| !encoding.is_empty())
        .collect();
    let lengths: Vec<&str> = headers
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case("content-length"))
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .collect();
    if !encodings.is_empty() {
        if !lengths.is_empty() {
            return Err(HttpError::BadFraming(
                "both Transfer-Encoding and Content-Length".into(),
            ));
        }
        return match encodings.as_slice() {
            [only] if only.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            _ => Err(HttpError::BadFraming(format!(
                "unsupported Transfer-Encoding {}",
                encodings.join(", ")
            ))),
        };
    }
    let Some(first) = lengths.first() else {
        return Ok(if response {
            Framing::UntilClose
        } else {
            Framing::Length(0)
        });
    };
    if lengths.iter().any(|length| length != first) {
        return Err(HttpError::BadFraming(
            "conflicting Content-Length values".into(),
        ));
    }
    if first.is_empty() || !first.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(HttpError::BadFraming(format!(
            "invalid Content-Length {first:?}"
        )));
    }
    first
        .parse()
        .map(Framing::Length)
        .map_err(|_| HttpError::BadFraming(format!("invalid Content-Length {first:?}")))
}

fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|header| {
            (
                header.name.to_owned(),
                String::from_utf8_lossy(header.value).into_owned(),
            )
        })
        .collect()
}

/// Reads a request head. `None`: the peer closed the connection cleanly
/// before sending anything.
pub(crate) async fn read_request_head(
    conn: &mut BufConn,
    limit: usize,
) -> Result<Option<RequestHead>, HttpError> {
    loop {
        // Tolerate blank lines before a request line (RFC 9112 section 2.2).
        let blank = conn
            .buffered()
            .iter()
            .take_while(|byte| matches!(byte, b'\r' | b'\n'))
            .count();
        conn.consume(blank);
        if !conn.buffered().is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(conn.buffered()) {
                Ok(httparse::Status::Complete(length)) => {
                    let head = RequestHead {
                        method: request.method.unwrap_or_default().to_owned(),
                        target: request.path.unwrap_or_default().to_owned(),
                        minor_version: request.version.unwrap_or(1),
                        headers: owned_headers(request.headers),
                    };
                    conn.consume(length);
                    return Ok(Some(head));
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(HttpError::HeadTooLarge { limit })
                }
                Err(error) => return Err(HttpError::MalformedHead(error.to_string())),
            }
            if conn.buffered().len() >= limit {
                return Err(HttpError::HeadTooLarge { limit });
            }
        }
        let was_empty = conn.buffered().is_empty();
        if conn.fill().await? == 0 {
            return if was_empty {
                Ok(None)
            } else {
                Err(HttpError::UnexpectedEof)
            };
        }
    }
}

/// Reads a response head, skipping `100 Continue` answers.
pub(crate) async fn read_response_head(
    conn: &mut BufConn,
    limit: usize,
) -> Result<ResponseHead, HttpError> {
    loop {
        if !conn.buffered().is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(conn.buffered()) {
                Ok(httparse::Status::Complete(length)) => {
                    let head = ResponseHead {
                        status: response.code.unwrap_or_default(),
                        headers: owned_headers(response.headers),
                    };
                    conn.consume(length);
                    if head.status == 100 {
                        continue;
                    }
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(HttpError::HeadTooLarge { limit })
                }
                Err(error) => return Err(HttpError::MalformedHead(error.to_string())),
            }
            if conn.buffered().len() >= limit {
                return Err(HttpError::HeadTooLarge { limit });
            }
        }
        if conn.fill().await? == 0 {
            return Err(HttpError::UnexpectedEof);
        }
    }
}

/// A response head: status line, headers, blank line.
pub(crate) fn response_head(status: u16, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}
