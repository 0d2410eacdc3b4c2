//! The check itself, as `cell-agent healthcheck` runs it inside a container
//! (the container has its own network namespace, so only a process inside
//! reaches its ports): a TCP connect, or an HTTP/1.1 GET wanting 200.
//! Blocking std::net, one attempt, bounded by a timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Why a check failed; the message is what the container's log and
/// failure reason show.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// Nothing listens, or it did not answer in time.
    #[error("failed to make TCP connection to {addr}: {reason}")]
    Connect {
        /// Where.
        addr: String,
        /// The socket error.
        reason: String,
    },
    /// The HTTP exchange failed.
    #[error("failed to make HTTP request to '{path}' on port {port}: {reason}")]
    Http {
        /// The path.
        path: String,
        /// The port.
        port: u16,
        /// What went wrong.
        reason: String,
    },
    /// The server answered something other than 200.
    #[error("received status code {status} in {elapsed:?} from '{path}' on port {port}")]
    Status {
        /// The path.
        path: String,
        /// The port.
        port: u16,
        /// The answer's status.
        status: u16,
        /// How long it took.
        elapsed: Duration,
    },
}

/// One check of a port on `host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// Usually `127.0.0.1` (the container's own loopback).
    pub host: String,
    /// The port.
    pub port: u16,
    /// `Some`: an HTTP GET of this path; `None`: a TCP connect.
    pub http_path: Option<String>,
    /// For the whole attempt.
    pub timeout: Duration,
}

impl Healthcheck {
    /// Runs the check once.
    pub fn run(&self) -> Result<(), HealthcheckError> {
        let started = Instant::now();
        let addr = format!("{}:{}", self.host, self.port);
        let mut stream = connect(&addr, self.timeout)?;
        let Some(path) = &self.http_path else {
            return Ok(());
        };
        let http = |reason: String| HealthcheckError::Http {
            path: path.clone(),
            port: self.port,
            reason,
        };
        let left = self
            .timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| http(e.to_string()))?;
        stream
            .set_write_timeout(Some(left))
            .map_err(|e| http(e.to_string()))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: cell-agent-healthcheck\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| http(e.to_string()))?;
        let status = read_status(&mut stream).map_err(http)?;
        if status == 200 {
            Ok(())
        } else {
            Err(HealthcheckError::Status {
                path: path.clone(),
                port: self.port,
                status,
                elapsed: started.elapsed(),
            })
        }
    }
}

fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, HealthcheckError> {
    let failed = |reason: String| HealthcheckError::Connect {
        addr: addr.to_owned(),
        reason,
    };
    let targets: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| failed(e.to_string()))?
        .collect();
    let mut last = String::from("no address");
    for target in targets {
        match TcpStream::connect_timeout(&target, timeout) {
            Ok(stream) => return Ok(stream),
            Err(error) => last = error.to_string(),
        }
    }
    Err(failed(last))
}

/// The status code of an HTTP/1.x answer's first line.
fn read_status(stream: &mut TcpStream) -> Result<u16, String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        if head.len() > 1024 {
            return Err("status line too long".into());
        }
        match stream.read(&mut byte) {
            Ok(0) => return Err("connection closed before a status line".into()),
            Ok(_) => head.push(byte[0]),
            Err(error) => return Err(error.to_string()),
        }
    }
    parse_status_line(&String::from_utf8_lossy(&head))
}

fn parse_status_line(line: &str) -> Result<u16, String> {
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(version), Some(Ok(status))) if version.starts_with("HTTP/1.") => Ok(status),
        _ => Err(format!("not an HTTP answer: {:?}", line.trim_end())),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn serve_once(answer: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer.as_bytes());
            }
        });
        port
    }

    fn check(port: u16, path: Option<&str>) -> Healthcheck {
        Healthcheck {
            host: "127.0.0.1".into(),
            port,
            http_path: path.map(Into::into),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn port_and_http_checks() {
        let ok = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        check(ok, Some("/health")).run().expect("healthy");
        let bad = serve_once("HTTP/1.0 503 Service Unavailable\r\n\r\n");
        let err = check(bad, Some("/")).run().expect_err("503");
        assert!(
            err.to_string().starts_with("received status code 503 in"),
            "{err}"
        );
        let tcp = serve_once("");
        check(tcp, None).run().expect("tcp");
        let closed = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let err = check(closed, None).run().expect_err("nothing listens");
        assert!(
            err.to_string().starts_with(&format!(
                "failed to make TCP connection to 127.0.0.1:{closed}"
            )),
            "{err}"
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 204 No Content\r\n"), Ok(204));
        assert!(parse_status_line("SSH-2.0-OpenSSH\r\n").is_err());
    }
}
