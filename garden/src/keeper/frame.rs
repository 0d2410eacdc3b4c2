//! The keeper's wire format on its unix socket: a kind byte, a big-endian
//! `u32` length, the payload. Small and binary so output bytes cross
//! untouched; decoding works on any buffer, for the keeper's blocking loop
//! and the daemon's async reader alike.

/// The largest payload either side sends or accepts.
pub const MAX_PAYLOAD: usize = 1 << 20;
const HEADER: usize = 5;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame kind {0} is unknown")]
    UnknownKind(u8),
    #[error("frame of {0} bytes is larger than {MAX_PAYLOAD}")]
    TooLarge(usize),
    #[error("frame {kind} has a malformed payload of {len} bytes")]
    Malformed { kind: &'static str, len: usize },
}

/// One message, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// keeper → client: bytes the process wrote to stdout (or its terminal).
    Stdout(Vec<u8>),
    /// keeper → client: bytes the process wrote to stderr.
    Stderr(Vec<u8>),
    /// keeper → client: the process ended and its output is drained.
    Exit(i32),
    /// keeper → client: output was dropped while nobody was attached.
    Dropped(u64),
    /// client → keeper: bytes for the process's stdin.
    Stdin(Vec<u8>),
    /// client → keeper: close the process's stdin.
    StdinEof,
    /// client → keeper: send this signal to the process.
    Signal(i32),
    /// client → keeper: the terminal's new size.
    WindowSize { rows: u16, cols: u16 },
    /// client → keeper, first: whether this client takes output. One that
    /// does not only waits for the status, and output goes on into the
    /// backlog for the next client that does.
    Watch { output: bool },
}

impl Frame {
    fn kind(&self) -> u8 {
        match self {
            Frame::Stdout(_) => 1,
            Frame::Stderr(_) => 2,
            Frame::Exit(_) => 3,
            Frame::Dropped(_) => 4,
            Frame::Stdin(_) => 10,
            Frame::StdinEof => 11,
            Frame::Signal(_) => 12,
            Frame::WindowSize { .. } => 13,
            Frame::Watch { .. } => 14,
        }
    }

    /// Appends the encoded frame to `out`. Data frames longer than
    /// [`MAX_PAYLOAD`] must be split by the caller ([`Frame::data_chunks`]).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let payload: std::borrow::Cow<'_, [u8]> = match self {
            Frame::Stdout(d) | Frame::Stderr(d) | Frame::Stdin(d) => d.as_slice().into(),
            Frame::Exit(c) | Frame::Signal(c) => c.to_be_bytes().to_vec().into(),
            Frame::Dropped(n) => n.to_be_bytes().to_vec().into(),
            Frame::StdinEof => Vec::new().into(),
            Frame::Watch { output } => vec![u8::from(*output)].into(),
            Frame::WindowSize { rows, cols } => {
                let mut v = rows.to_be_bytes().to_vec();
                v.extend_from_slice(&cols.to_be_bytes());
                v.into()
            }
        };
        out.push(self.kind());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }

    /// Decodes one frame from the front of `buf`: `Ok(None)` when more
    /// bytes are needed, else the frame and how many bytes it used.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        if buf.len() < HEADER {
            return Ok(None);
        }
        let kind = buf[0];
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(len));
        }
        if buf.len() < HEADER + len {
            return Ok(None);
        }
        let p = &buf[HEADER..HEADER + len];
        let int = |name| -> Result<i32, FrameError> {
            let b: [u8; 4] = p.try_into().map_err(|_| FrameError::Malformed {
                kind: name,
                len: p.len(),
            })?;
            Ok(i32::from_be_bytes(b))
        };
        let frame = match kind {
            1 => Frame::Stdout(p.to_vec()),
            2 => Frame::Stderr(p.to_vec()),
            3 => Frame::Exit(int("exit")?),
            4 => {
                let b: [u8; 8] = p.try_into().map_err(|_| FrameError::Malformed {
                    kind: "dropped",
                    len: p.len(),
                })?;
                Frame::Dropped(u64::from_be_bytes(b))
            }
            10 => Frame::Stdin(p.to_vec()),
            11 => Frame::StdinEof,
            12 => Frame::Signal(int("signal")?),
            13 => {
                if p.len() != 4 {
                    return Err(FrameError::Malformed {
                        kind: "window size",
                        len: p.len(),
                    });
                }
                Frame::WindowSize {
                    rows: u16::from_be_bytes([p[0], p[1]]),
                    cols: u16::from_be_bytes([p[2], p[3]]),
                }
            }
            14 => match p {
                [b] => Frame::Watch { output: *b != 0 },
                _ => {
                    return Err(FrameError::Malformed {
                        kind: "watch",
                        len: p.len(),
                    })
                }
            },
            other => return Err(FrameError::UnknownKind(other)),
        };
        Ok(Some((frame, HEADER + len)))
    }

    /// Splits `data` into frames no larger than [`MAX_PAYLOAD`].
    pub fn data_chunks(
        data: &[u8],
        make: fn(Vec<u8>) -> Frame,
    ) -> impl Iterator<Item = Frame> + '_ {
        data.chunks(MAX_PAYLOAD).map(move |c| make(c.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_round_trips() {
        let frames = [
            Frame::Stdout(b"hello".to_vec()),
            Frame::Stderr(Vec::new()),
            Frame::Exit(-1),
            Frame::Dropped(1 << 40),
            Frame::Stdin(vec![0, 255]),
            Frame::StdinEof,
            Frame::Signal(15),
            Frame::WindowSize { rows: 24, cols: 80 },
            Frame::Watch { output: false },
        ];
        let mut buf = Vec::new();
        for f in &frames {
            f.encode_into(&mut buf);
        }
        let mut at = 0;
        for f in &frames {
            let (got, used) = Frame::decode(&buf[at..]).expect("valid").expect("whole");
            assert_eq!(&got, f);
            at += used;
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn partial_and_bad_frames() {
        let enc = Frame::Stdout(b"abc".to_vec()).encode();
        for cut in 0..enc.len() {
            assert_eq!(Frame::decode(&enc[..cut]), Ok(None));
        }
        assert_eq!(
            Frame::decode(&[99, 0, 0, 0, 0]),
            Err(FrameError::UnknownKind(99))
        );
        assert_eq!(
            Frame::decode(&[1, 0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLarge(u32::MAX as usize))
        );
        assert!(matches!(
            Frame::decode(&[3, 0, 0, 0, 1, 7]),
            Err(FrameError::Malformed { .. })
        ));
    }
}
