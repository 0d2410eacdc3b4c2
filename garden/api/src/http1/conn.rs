//! A socket with a read buffer that can be handed over whole.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// A bidirectional byte stream: a unix or TCP socket, or a test pipe.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed [`Io`].
pub(crate) type BoxIo = Box<dyn Io>;

const READ_SIZE: usize = 16 * 1024;

/// A socket and the bytes read from it but not consumed yet.
pub(crate) struct BufConn {
    io: BoxIo,
    buf: BytesMut,
}

impl BufConn {
    pub(crate) fn new(io: BoxIo) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(READ_SIZE),
        }
    }

    /// Reads more into the buffer; 0 at end of stream.
    pub(crate) async fn fill(&mut self) -> std::io::Result<usize> {
        self.buf.reserve(READ_SIZE);
        self.io.read_buf(&mut self.buf).await
    }

    /// The bytes read and not consumed.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Takes `n` buffered bytes.
    pub(crate) fn take(&mut self, n: usize) -> bytes::Bytes {
        self.buf.split_to(n).freeze()
    }

    /// Drops `n` buffered bytes.
    pub(crate) fn consume(&mut self, n: usize) {
        self.buf.advance(n);
    }

    /// Writes all of `data` and flushes.
    pub(crate) async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.io.write_all(data).await?;
        self.io.flush().await
    }

    /// The socket, for writing.
    pub(crate) fn io_mut(&mut self) -> &mut BoxIo {
        &mut self.io
    }

    /// Hands the socket over with what was buffered.
    pub(crate) fn into_parts(self) -> (BoxIo, BytesMut) {
        (self.io, self.buf)
    }
}

/// A reader that yields some bytes already read before reading on.
pub(crate) struct Prefixed<R> {
    prefix: BytesMut,
    inner: R,
}

impl<R> Prefixed<R> {
    pub(crate) fn new(prefix: BytesMut, inner: R) -> Self {
        Self { prefix, inner }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Prefixed<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}
