//! Connections per origin, by the protocol each origin's server chose.
//!
//! - **The first connection decides.** Until the first connection to an origin has its ALPN
//!   answer, no second one is opened: requests wait for it. With h2 they then share it.
//! - **HTTP/2:** every request is a stream on a connection with room. A connection's room is the
//!   server's `SETTINGS_MAX_CONCURRENT_STREAMS` once its first answer has come back (by then the
//!   server's SETTINGS have been read), one stream before. A second connection is opened only when
//!   every connection is at the server's limit and requests wait.
//! - **HTTP/1.1:** one request per connection, at most `per_origin` connections (`--concurrency`),
//!   kept idle for the next request. When the first connection says HTTP/1.1 and the caller
//!   expects more requests, that many more are opened at once (bounded by `per_origin`), while the
//!   first request is in flight; a request opens one of its own only when fewer are on their way
//!   than requests wait for them.
//! - **Health:** a connection the server closed is dropped before it is lent; an idle HTTP/1.1
//!   connection older than [`IDLE`] is closed instead of lent; h2 connections are health-checked
//!   with PINGs ([`super::connect`]). A request abandoned before its answer was read (its attempt
//!   timed out) retires its connection: no new request is sent on it, so a dead connection costs
//!   at most one attempt.
//!
//! hyper-util's pool does none of the first three (it opens one connection per waiting request
//! until one says h2, and never a second h2 connection): this is the part written by hand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hyper::header::HeaderValue;
use hyper::http::uri::Authority;
use tokio::sync::Notify;

use super::connect::{self, Conn, H1, H2, Route, StreamLimit};
use super::{Error, Origin, untrusted};

/// An idle HTTP/1.1 connection older than this is closed rather than reused: servers close
/// idle connections after a minute or so, and a request sent as they do fails.
const IDLE: Duration = Duration::from_secs(30);

/// How to open a connection to an origin.
pub(super) struct Dial<'a> {
    pub(super) origin: &'a Origin,
    /// The way there to the origin's authority, asked for only when a connection is opened (a
    /// request on an open connection needs none).
    pub(super) route: &'a (dyn Fn(&Authority) -> Result<Route, Error> + Sync),
    pub(super) tls: Option<&'a tokio_rustls::TlsConnector>,
}

/// Every origin's connections.
pub(super) struct Pool {
    origins: Mutex<HashMap<Origin, Arc<Slot>>>,
    per_origin: usize,
}

/// One origin's connections, and a signal when they change (a connection opened, failed,
/// returned or closed, a stream limit learned).
struct Slot {
    state: Mutex<State>,
    changed: Arc<Notify>,
    /// The origin's authority (`host` or `host:port`) as an h2 request's `:authority`, an
    /// HTTP/1.1 request's `Host` and the proxy's target, parsed once. An origin without a valid
    /// one gets no slot.
    authority: (Authority, HeaderValue),
}

#[derive(Default)]
struct State {
    /// What the latest connection's ALPN said; `None` until the first one has said it.
    h2: Option<bool>,
    /// Connections being opened.
    connecting: usize,
    streams: Vec<Arc<Multiplexed>>,
    idle: Vec<(H1, Instant)>,
    /// HTTP/1.1 connections lent out.
    lent: usize,
    /// Requests waiting for a connection.
    waiting: usize,
}

/// A request counted in [`State::waiting`] while it waits; uncounted when it looks again or is
/// dropped (its attempt timed out).
struct Waiter<'a> {
    slot: &'a Slot,
    counted: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.slot.lock().waiting -= 1;
        }
    }
}

/// An h2 connection and the streams open on it.
struct Multiplexed {
    sender: H2,
    limit: Arc<StreamLimit>,
    open: AtomicUsize,
    /// No new stream goes on it.
    retired: AtomicBool,
}

impl Multiplexed {
    fn usable(&self) -> bool {
        !self.retired.load(Ordering::Acquire) && !self.sender.is_closed()
    }

    fn has_room(&self) -> bool {
        self.usable() && self.open.load(Ordering::Acquire) < self.limit.room()
    }
}

/// A connection lent to one request. Dropped without [`finish`](Lease::finish) (the request
/// failed or was abandoned), its connection takes no further request.
pub(super) struct Lease {
    slot: Arc<Slot>,
    kind: Leased,
    /// The connection served requests before this one (a failure before the answer may be a
    /// connection the server closed meanwhile, and is worth one more try on another).
    pub(super) reused: bool,
    finished: bool,
}

enum Leased {
    H1(Option<H1>),
    H2(Arc<Multiplexed>),
}

/// The sender a lease gives.
pub(super) enum Sender<'a> {
    H1(&'a mut H1),
    H2(H2),
}

impl Lease {
    /// The origin's authority, for `:authority` (h2) and `Host` (HTTP/1.1).
    pub(super) fn authority(&self) -> &(Authority, HeaderValue) {
        &self.slot.authority
    }

    pub(super) fn is_h2(&self) -> bool {
        matches!(self.kind, Leased::H2(_))
    }

    pub(super) fn sender(&mut self) -> Sender<'_> {
        match &mut self.kind {
            Leased::H1(Some(sender)) => Sender::H1(sender),
            Leased::H2(conn) => Sender::H2(conn.sender.clone()),
            Leased::H1(None) => unreachable!("an HTTP/1.1 lease holds its sender until dropped"),
        }
    }

    /// The answer's head has arrived: on h2, the connection's stream limit is now the server's.
    pub(super) fn answered(&self) {
        if let Leased::H2(conn) = &self.kind {
            conn.limit.refresh();
        }
    }

    /// The whole answer has been read: the connection may serve the next request.
    pub(super) fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        {
            let mut state = self.slot.lock();
            match &mut self.kind {
                Leased::H1(sender) => {
                    state.lent -= 1;
                    if let Some(sender) = sender.take()
                        && self.finished
                        && !sender.is_closed()
                    {
                        state.idle.push((sender, Instant::now()));
                    }
                }
                Leased::H2(conn) => {
                    conn.open.fetch_sub(1, Ordering::AcqRel);
                    if !self.finished {
                        conn.retired.store(true, Ordering::Release);
                    }
                }
            }
        }
        self.slot.changed.notify_waiters();
    }
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection being opened for a request, counted in [`State::connecting`]. If the request is
/// dropped before the connection is up (its attempt timed out), the count is given back and the
/// waiters are told: someone else may open one.
struct Opening<'a> {
    slot: &'a Slot,
    armed: bool,
}

impl<'a> Opening<'a> {
    /// The opening is over: uncount it, and hold the state for what follows.
    fn done(mut self) -> MutexGuard<'a, State> {
        self.armed = false;
        let mut state = self.slot.lock();
        state.connecting -= 1;
        state
    }
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.slot.lock().connecting -= 1;
            self.slot.changed.notify_waiters();
        }
    }
}

/// What a request does next.
enum Step {
    Lent(Lease),
    Open,
    Wait,
}

impl Pool {
    pub(super) fn new(per_origin: usize) -> Self {
        Self {
            origins: Mutex::default(),
            per_origin: per_origin.max(1),
        }
    }

    /// The origin's slot, made on first use; refused when the origin's authority is one that
    /// `url` accepts and HTTP cannot carry (`{` in a host).
    fn slot(&self, origin: &Origin) -> Result<Arc<Slot>, Error> {
        let mut origins = self.origins.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = origins.get(origin) {
            return Ok(slot.clone());
        }
        let text = origin.authority();
        let authority = Authority::try_from(text.as_str())
            .ok()
            .zip(HeaderValue::try_from(text).ok())
            .ok_or_else(|| {
                Error::Refused(format!("'{}' is not a valid host", untrusted(&origin.host)))
            })?;
        let slot = Arc::new(Slot {
            state: Mutex::default(),
            changed: Arc::new(Notify::new()),
            authority,
        });
        origins.insert(origin.clone(), slot.clone());
        Ok(slot)
    }

    /// A connection for one request to `dial.origin`; `expect` requests (this one included)
    /// are about to go there (see the module docs).
    pub(super) async fn acquire(&self, dial: &Dial<'_>, expect: usize) -> Result<Lease, Error> {
        let slot = self.slot(dial.origin)?;
        let mut waiter = Waiter {
            slot: &slot,
            counted: false,
        };
        loop {
            let changed = slot.changed.clone();
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.step(&slot, &mut waiter) {
                Step::Lent(lease) => return Ok(lease),
                Step::Wait => notified.await,
                Step::Open => return self.open(&slot, dial, expect).await,
            }
        }
    }

    fn step(&self, slot: &Arc<Slot>, waiter: &mut Waiter<'_>) -> Step {
        let mut state = slot.lock();
        if std::mem::take(&mut waiter.counted) {
            state.waiting -= 1;
        }
        state
            .streams
            .retain(|c| c.usable() || c.open.load(Ordering::Acquire) > 0);
        if let Some(conn) = state.streams.iter().find(|c| c.has_room()) {
            conn.open.fetch_add(1, Ordering::AcqRel);
            return Step::Lent(Lease {
                slot: slot.clone(),
                kind: Leased::H2(conn.clone()),
                reused: true,
                finished: false,
            });
        }
        while let Some((sender, since)) = state.idle.pop() {
            if since.elapsed() < IDLE && !sender.is_closed() {
                state.lent += 1;
                return Step::Lent(Lease {
                    slot: slot.clone(),
                    kind: Leased::H1(Some(sender)),
                    reused: true,
                    finished: false,
                });
            }
        }
        let may_open = match state.h2 {
            None => state.connecting == 0,
            // Only when every connection is at the server's limit.
            Some(true) => {
                state.connecting == 0
                    && state
                        .streams
                        .iter()
                        .filter(|c| c.usable())
                        .all(|c| c.limit.settled())
            }
            // Only when fewer connections are on their way than requests wait for them (this
            // one included), within `per_origin`.
            Some(false) => {
                state.connecting <= state.waiting && state.lent + state.connecting < self.per_origin
            }
        };
        if may_open {
            state.connecting += 1;
            Step::Open
        } else {
            state.waiting += 1;
            waiter.counted = true;
            Step::Wait
        }
    }

    /// Open a connection for the caller (counted in `connecting` already).
    async fn open(&self, slot: &Arc<Slot>, dial: &Dial<'_>, expect: usize) -> Result<Lease, Error> {
        let opening = Opening { slot, armed: true };
        // Dropping `opening` on an error gives the count back and tells the waiters.
        let route = (dial.route)(&slot.authority.0)?;
        // Boxed: a connection's set-up (tunnel, TLS, handshake) is most of a request's future.
        let opened = Box::pin(connect::open(
            dial.origin,
            &route,
            dial.tls,
            slot.changed.clone(),
        ))
        .await;
        let mut state = opening.done();
        let first = state.h2.is_none();
        let lease = match opened {
            Err(e) => {
                drop(state);
                slot.changed.notify_waiters();
                return Err(e);
            }
            Ok(Conn::H2(sender, limit)) => {
                state.h2 = Some(true);
                let conn = Arc::new(Multiplexed {
                    sender,
                    limit,
                    open: AtomicUsize::new(1),
                    retired: AtomicBool::new(false),
                });
                state.streams.push(conn.clone());
                Leased::H2(conn)
            }
            Ok(Conn::H1(sender)) => {
                state.h2 = Some(false);
                state.lent += 1;
                if first {
                    // Now that the server has said HTTP/1.1, the requests expected after this one
                    // get their connections while it is in flight.
                    let more = expect
                        .min(self.per_origin)
                        .saturating_sub(state.lent + state.connecting);
                    state.connecting += more;
                    for _ in 0..more {
                        tokio::spawn(warm(slot.clone(), owned(dial, &route)));
                    }
                }
                Leased::H1(Some(sender))
            }
        };
        drop(state);
        slot.changed.notify_waiters();
        Ok(Lease {
            slot: slot.clone(),
            kind: lease,
            reused: false,
            finished: false,
        })
    }
}

/// What a background opening needs, owned.
struct OwnedDial {
    origin: Origin,
    route: Route,
    tls: Option<tokio_rustls::TlsConnector>,
}

fn owned(dial: &Dial<'_>, route: &Route) -> OwnedDial {
    OwnedDial {
        origin: dial.origin.clone(),
        route: route.clone(),
        tls: dial.tls.cloned(),
    }
}

/// Open one HTTP/1.1 connection ahead of need and put it with the idle ones.
async fn warm(slot: Arc<Slot>, dial: OwnedDial) {
    let opened = Box::pin(connect::open(
        &dial.origin,
        &dial.route,
        dial.tls.as_ref(),
        slot.changed.clone(),
    ))
    .await;
    {
        let mut state = slot.lock();
        state.connecting -= 1;
        match opened {
            Ok(Conn::H1(sender)) => state.idle.push((sender, Instant::now())),
            Ok(Conn::H2(sender, limit)) => {
                // The server changed its mind: use what it offers.
                state.h2 = Some(true);
                state.streams.push(Arc::new(Multiplexed {
                    sender,
                    limit,
                    open: AtomicUsize::new(0),
                    retired: AtomicBool::new(false),
                }));
            }
            Err(e) => {
                tracing::debug!(origin = %dial.origin.authority(), error = %e, "a connection opened ahead of need failed");
            }
        }
    }
    slot.changed.notify_waiters();
}
