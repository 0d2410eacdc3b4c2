//! Output kept while no client is attached: bounded, oldest dropped first,
//! so a process never blocks or gets SIGPIPE because the daemon is down,
//! and what it wrote last survives.

use std::collections::VecDeque;

use super::frame::Frame;

#[derive(Debug)]
pub struct Backlog {
    frames: VecDeque<Frame>,
    bytes: usize,
    limit: usize,
    dropped: u64,
}

impl Backlog {
    pub fn new(limit: usize) -> Self {
        Self {
            frames: VecDeque::new(),
            bytes: 0,
            limit,
            dropped: 0,
        }
    }

    /// Keeps an output frame, dropping the oldest output beyond the limit.
    pub fn push(&mut self, frame: Frame) {
        self.bytes += data_len(&frame);
        self.frames.push_back(frame);
        while self.bytes > self.limit {
            let Some(old) = self.frames.pop_front() else {
                break;
            };
            let n = data_len(&old);
            self.bytes -= n;
            self.dropped += n as u64;
        }
    }

    /// Everything kept, in order, preceded by a note of what was dropped.
    pub fn drain(&mut self) -> Vec<Frame> {
        let mut out = Vec::with_capacity(self.frames.len() + 1);
        if self.dropped > 0 {
            out.push(Frame::Dropped(self.dropped));
        }
        out.extend(self.frames.drain(..));
        self.bytes = 0;
        self.dropped = 0;
        out
    }
}

fn data_len(f: &Frame) -> usize {
    match f {
        Frame::Stdout(d) | Frame::Stderr(d) => d.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_output_within_the_limit() {
        let mut b = Backlog::new(10);
        b.push(Frame::Stdout(b"12345".to_vec()));
        b.push(Frame::Stderr(b"678".to_vec()));
        b.push(Frame::Stdout(b"9abcd".to_vec()));
        let got = b.drain();
        assert_eq!(
            got,
            vec![
                Frame::Dropped(5),
                Frame::Stderr(b"678".to_vec()),
                Frame::Stdout(b"9abcd".to_vec())
            ]
        );
        assert!(b.drain().is_empty());
    }
}
