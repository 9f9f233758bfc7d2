//! The body of every request and response the gateway carries: counted into the site's metrics, holding
//! the device's request slot, failing when it stays silent too long.

use super::pages::BodyError;
use crate::infra::metrics::Metrics;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// A body that stayed silent for longer than the gateway's idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("no data for {0:?}")]
pub struct IdleTimeout(Duration);

/// A streamed body that counts its bytes into the site's metrics when done, holds the device's request
/// slot until then, and fails when no data moves for the idle timeout (a stalled device or client must not
/// hold a connection and a slot for ever).
pub struct Counted<B> {
    inner: B,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    metrics: Arc<Metrics>,
    site: Arc<str>,
    direction: &'static str,
    bytes: u64,
    _permit: Option<OwnedSemaphorePermit>,
    /// Run when the body is done (a localtunnel connection returned to its pool).
    on_done: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl<B> Counted<B> {
    pub fn new(
        inner: B,
        idle: Duration,
        metrics: Arc<Metrics>,
        site: Arc<str>,
        direction: &'static str,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            metrics,
            site,
            direction,
            bytes: 0,
            _permit: permit,
            on_done: None,
        }
    }

    /// Runs `done` when the body is finished or dropped.
    pub fn on_done(&mut self, done: Box<dyn FnOnce() + Send + Sync>) {
        self.on_done = Some(done);
    }
}

impl<B> Drop for Counted<B> {
    fn drop(&mut self) {
        if let Some(done) = self.on_done.take() {
            done();
        }
        self.metrics
            .gateway
            .bytes(&self.site, self.direction, self.bytes);
    }
}

impl<B> hyper::body::Body for Counted<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                let next = tokio::time::Instant::now() + self.idle;
                self.deadline.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(IdleTimeout(self.idle).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
