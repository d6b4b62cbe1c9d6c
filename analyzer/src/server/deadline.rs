//! A deadline on writes that make no progress: the connection to a
//! client that never reads its response is closed once its writes have
//! waited `timeout`.
//!
//! Hand-written rather than `tokio-io-timeout`: that crate restarts its
//! write timer on every flush that returns, and a socket's flush always
//! returns at once, so a connection that hyper flushes between paced
//! requests never reached its deadline. Here only bytes written restart
//! it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub(super) struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Running while writes wait; `None` once a write makes progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub(super) fn new(inner: S, timeout: Duration) -> Self {
        WriteDeadline {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// On a write that waits: starts the deadline, or fails once it has
    /// passed.
    fn waiting(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing of the response for the write timeout",
            )),
            Poll::Pending => Ok(()),
        }
    }

    /// Restarts the deadline on progress, or runs it on a wait.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) if n > 0 => {
                self.stalled = None;
                Poll::Ready(Ok(n))
            }
            Poll::Pending => match self.waiting(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            other => other,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => match self.waiting(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            // A flush that returns wrote nothing: the deadline runs on.
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn writes_that_wait_past_the_deadline_fail_and_flushes_do_not_restart_it() {
        // A pipe whose reader never reads: 64 bytes fit, then writes wait.
        let (mut never_read, w) = tokio::io::duplex(64);
        let started = tokio::time::Instant::now();
        let mut w = WriteDeadline::new(w, Duration::from_millis(300));
        w.write_all(&[0; 64]).await.unwrap();
        let stalled = tokio::spawn(async move {
            loop {
                // A flush between writes, as hyper does between requests.
                w.flush().await?;
                let t = tokio::time::timeout(Duration::from_millis(50), w.write_all(&[0; 8])).await;
                if let Ok(r) = t {
                    return r.map(|()| tokio::time::Instant::now());
                }
            }
        });
        let err = stalled.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(300));
        let _ = &mut never_read;
    }
}
