//! Connection hygiene on both listeners: a bound on open connections, a
//! deadline for a new connection's first bytes, and room for newcomers.
//!
//! Every accepted TCP connection is wrapped in [`Tracked`] and registered
//! with its listener's [`Connections`]:
//! - a connection that sends nothing within the first-bytes deadline
//!   (`connections.header_read_timeout_ms`) is closed — for HTTP/1.1, hyper's
//!   header read timeout then bounds the rest of the head and every wait
//!   between keep-alive requests; for gRPC the HTTP/2 keep-alive pings find
//!   dead peers;
//! - at most `connections.max_connections` are open per listener; when a new
//!   one arrives at the bound, the oldest *idle* connection is closed to make
//!   room (HTTP: no request in progress; gRPC: nothing received yet), and only
//!   when none is idle is the newcomer turned away. So idle or silent
//!   connections, however many, never lock out a real client.
//!
//! [`raise_open_file_limit`] lifts the process's soft open-file limit to its
//! hard limit at start, and the connection bound is kept under it.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Which connections may be closed to make room for a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evict {
    /// Those with no request in progress (HTTP/1.1: the server knows).
    Idle,
    /// Those that have sent nothing yet (gRPC: an HTTP/2 connection that
    /// is open is in use as far as the server can tell).
    Silent,
}

/// The open connections of one listener.
pub struct Connections {
    name: &'static str,
    max: usize,
    first_bytes: Duration,
    evict: Evict,
    open: Mutex<BTreeMap<u64, Arc<ConnState>>>,
    next: AtomicUsize,
}

/// What the listener knows of one connection.
#[derive(Default)]
pub struct ConnState {
    /// Requests being served (maintained by the HTTP service wrapper).
    pub in_flight: AtomicUsize,
    received: AtomicBool,
    closed: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl ConnState {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            w.wake();
        }
    }

    fn idle(&self, evict: Evict) -> bool {
        match evict {
            Evict::Idle => self.in_flight.load(Ordering::Acquire) == 0,
            Evict::Silent => !self.received.load(Ordering::Acquire),
        }
    }
}

impl Connections {
    pub fn new(name: &'static str, max: usize, first_bytes: Duration, evict: Evict) -> Arc<Connections> {
        Arc::new(Connections {
            name,
            max: max.max(1),
            first_bytes,
            evict,
            open: Mutex::new(BTreeMap::new()),
            next: AtomicUsize::new(0),
        })
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers a new connection; at the bound, closes the oldest idle one
    /// for it, or answers `None` (the caller drops the newcomer) when every
    /// open connection is busy.
    pub fn admit<T>(self: &Arc<Self>, io: T) -> Option<Tracked<T>> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) as u64;
        let state = Arc::new(ConnState::default());
        {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            if open.len() >= self.max {
                let oldest_idle = open.iter().find(|(_, c)| c.idle(self.evict)).map(|(k, _)| *k);
                match oldest_idle.and_then(|k| open.remove(&k)) {
                    Some(old) => {
                        old.close();
                        tracing::debug!(listener = self.name, "closed the oldest idle connection to make room");
                    }
                    None => {
                        tracing::warn!(
                            listener = self.name,
                            max = self.max,
                            "connection refused: every connection is busy (connections.max_connections)"
                        );
                        return None;
                    }
                }
            }
            open.insert(id, state.clone());
        }
        let deadline = Box::pin(tokio::time::sleep(self.first_bytes));
        Some(Tracked { io, state, id, connections: self.clone(), first_bytes: Some(deadline) })
    }

    fn remove(&self, id: u64) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
}

/// An accepted connection, counted while it is open (see the module doc).
pub struct Tracked<T> {
    io: T,
    state: Arc<ConnState>,
    id: u64,
    connections: Arc<Connections>,
    /// Until the first bytes arrive.
    first_bytes: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> Tracked<T> {
    /// The state the HTTP service wrapper counts requests in.
    pub fn state(&self) -> Arc<ConnState> {
        self.state.clone()
    }
}

impl<T> Drop for Tracked<T> {
    fn drop(&mut self) {
        self.connections.remove(self.id);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.state.closed.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "closed to make room")));
        }
        {
            let mut w = this.state.waker.lock().unwrap_or_else(|p| p.into_inner());
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.first_bytes = None;
                    this.state.received.store(true, Ordering::Release);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = this.first_bytes.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    tracing::debug!(listener = this.connections.name, "closed a connection that sent nothing");
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "nothing received in time")));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Tracked<tokio::net::TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Lifts the soft open-file limit to the hard limit; returns the limit in
/// force (`None` where it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "raising the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
        }
    }
}

/// The per-listener bound that fits under an open-file limit: two
/// listeners, and room kept for the stores, the log and outgoing requests.
pub fn bound_under(max: usize, open_files: Option<u64>) -> usize {
    const RESERVED: u64 = 256;
    match open_files {
        Some(n) => max.min(usize::try_from(n.saturating_sub(RESERVED) / 2).unwrap_or(usize::MAX)).max(16),
        None => max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_stays_under_the_open_file_limit() {
        assert_eq!(bound_under(10_000, Some(1024)), 384);
        assert_eq!(bound_under(10_000, Some(1 << 20)), 10_000);
        assert_eq!(bound_under(100, None), 100);
        assert_eq!(bound_under(10_000, Some(10)), 16);
    }

    #[tokio::test]
    async fn at_the_bound_the_oldest_idle_connection_makes_room_and_busy_ones_stay() {
        let c = Connections::new("test", 2, Duration::from_secs(60), Evict::Idle);
        let a = c.admit(()).unwrap();
        let b = c.admit(()).unwrap();
        b.state().in_flight.store(1, Ordering::Release);
        // A third: `a` is idle and oldest, so it is closed for it.
        let third = c.admit(()).unwrap();
        assert!(a.state.closed.load(Ordering::Acquire));
        assert!(!b.state.closed.load(Ordering::Acquire));
        assert_eq!(c.len(), 2);
        // Every connection busy: the newcomer is turned away.
        third.state().in_flight.store(1, Ordering::Release);
        assert!(c.admit(()).is_none());
        drop((a, b, third));
        assert!(c.is_empty());
    }
}
