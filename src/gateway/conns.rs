//! The connections of one listener, so that one client cannot take them all.
//!
//! Every accepted connection is registered with the listener's [`ConnTracker`] and goes
//! through three stages: *new* (accepted, no complete request yet), *served* (a request
//! arrived, none authenticated) and *authenticated* (a request carried a valid app token).
//!
//! * At most `limits.maxConnections` per listener and `limits.maxConnectionsPerPeer` per
//!   peer address. When a limit is reached, the oldest *new* connection (then the least
//!   recently used *served* one) of that scope is closed to make room; an authenticated
//!   connection is never closed for room, and when only those remain the newcomer is
//!   refused. So unauthenticated sockets (a preface and nothing else, one `/healthz` and
//!   then silence) cannot keep an authenticated app from connecting.
//! * A *new* connection must complete its first request within `limits.headerTimeout`
//!   from the accept: the deadline is fixed, so trickling bytes (an HTTP/2 preface and
//!   SETTINGS, a header a byte at a time) does not extend it.
//! * With an idle limit (the gRPC port), a connection with no request in progress for
//!   `limits.idleTimeout` is closed, whatever the client sends meanwhile (PINGs, SETTINGS,
//!   WINDOW_UPDATEs keep no connection open).
//!
//! Closing is `shutdown(2)` on a duplicate of the socket's descriptor: the server's task
//! reads end-of-file and ends the connection by itself, whatever protocol it speaks.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How often deadlines are checked.
const SWEEP: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    New,
    Served,
    Authenticated,
}

struct Entry {
    peer: IpAddr,
    accepted: Instant,
    stage: Stage,
    /// Requests in progress.
    active: u32,
    /// When the last request started or ended.
    last: Instant,
    /// Served order key (LRU among served connections).
    served_key: u64,
    sock: TcpStream,
}

#[derive(Default)]
struct State {
    entries: HashMap<u64, Entry>,
    per_peer: HashMap<IpAddr, usize>,
    /// New connections, oldest first.
    new: BTreeSet<u64>,
    /// Served (unauthenticated) connections by last use: (served_key, id).
    served: BTreeSet<(u64, u64)>,
    next_id: u64,
    next_key: u64,
    evicted: u64,
    expired: u64,
    refused: u64,
}

impl State {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.entries.remove(&id)?;
        self.new.remove(&id);
        self.served.remove(&(e.served_key, id));
        if let Some(n) = self.per_peer.get_mut(&e.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&e.peer);
            }
        }
        Some(e)
    }

    /// The connection to close for room: the oldest new one, else the least recently used
    /// served one, among those of `peer` (all when `None`).
    fn victim(&self, peer: Option<IpAddr>) -> Option<u64> {
        let of_peer = |id: &u64| peer.is_none_or(|p| self.entries[id].peer == p);
        self.new.iter().copied().find(of_peer).or_else(|| {
            self.served
                .iter()
                .map(|(_, id)| *id)
                .find(|id| of_peer(id) && self.entries[id].active == 0)
        })
    }

    fn close(&mut self, id: u64) {
        if let Some(e) = self.remove(id) {
            let _ = e.sock.shutdown(Shutdown::Both);
        }
    }
}

/// Counts from [`ConnTracker::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnStats {
    /// Open connections.
    pub open: usize,
    /// Of which authenticated.
    pub authenticated: usize,
    /// Closed to make room for another.
    pub evicted: u64,
    /// Closed by the first-request or idle deadline.
    pub expired: u64,
    /// Refused at accept (only authenticated connections were left to close).
    pub refused: u64,
}

/// The open connections of one listener.
pub struct ConnTracker {
    name: &'static str,
    max_total: usize,
    max_per_peer: usize,
    first_request: Duration,
    idle: Option<Duration>,
    state: Mutex<State>,
}

/// One registered connection; unregistered when dropped.
pub struct ConnHandle {
    tracker: Arc<ConnTracker>,
    id: u64,
}

impl std::fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnHandle({}#{})", self.tracker.name, self.id)
    }
}

impl ConnTracker {
    /// A tracker for the listener `name` (for logs), with its limits; `idle` closes
    /// connections without a request in progress for that long. Starts a sweeper thread
    /// that ends with the tracker.
    pub fn new(
        name: &'static str,
        max_total: usize,
        max_per_peer: usize,
        first_request: Duration,
        idle: Option<Duration>,
    ) -> Arc<ConnTracker> {
        let t = Arc::new(ConnTracker {
            name,
            max_total: max_total.max(1),
            max_per_peer: max_per_peer.max(1),
            first_request,
            idle,
            state: Mutex::new(State::default()),
        });
        let weak = Arc::downgrade(&t);
        let _ = std::thread::Builder::new()
            .name(format!("mecha-conns-{name}"))
            .spawn(move || sweeper(weak));
        t
    }

    /// Registers a connection from `peer` on the socket `fd`, closing another to make room
    /// if a limit is reached; `None` if it must be closed (no room: every connection in
    /// the way is authenticated, or the descriptor cannot be duplicated).
    pub fn admit(self: &Arc<Self>, fd: BorrowedFd<'_>, peer: IpAddr) -> Option<ConnHandle> {
        let sock = TcpStream::from(fd.try_clone_to_owned().ok()?);
        let mut s = self.state.lock();
        if s.per_peer.get(&peer).copied().unwrap_or(0) >= self.max_per_peer {
            match s.victim(Some(peer)) {
                Some(id) => {
                    s.close(id);
                    s.evicted += 1;
                }
                None => {
                    s.refused += 1;
                    tracing::debug!(
                        listener = self.name,
                        "connection refused: maxConnectionsPerPeer reached"
                    );
                    return None;
                }
            }
        }
        if s.entries.len() >= self.max_total {
            match s.victim(None) {
                Some(id) => {
                    s.close(id);
                    s.evicted += 1;
                }
                None => {
                    s.refused += 1;
                    tracing::debug!(
                        listener = self.name,
                        "connection refused: maxConnections reached"
                    );
                    return None;
                }
            }
        }
        let id = s.next_id;
        s.next_id += 1;
        let now = Instant::now();
        s.entries.insert(
            id,
            Entry {
                peer,
                accepted: now,
                stage: Stage::New,
                active: 0,
                last: now,
                served_key: 0,
                sock,
            },
        );
        s.new.insert(id);
        *s.per_peer.entry(peer).or_insert(0) += 1;
        Some(ConnHandle {
            tracker: self.clone(),
            id,
        })
    }

    /// Current counts.
    pub fn stats(&self) -> ConnStats {
        let s = self.state.lock();
        ConnStats {
            open: s.entries.len(),
            authenticated: s
                .entries
                .values()
                .filter(|e| e.stage == Stage::Authenticated)
                .count(),
            evicted: s.evicted,
            expired: s.expired,
            refused: s.refused,
        }
    }

    fn sweep(&self) {
        let now = Instant::now();
        let mut s = self.state.lock();
        let late: Vec<u64> = s
            .new
            .iter()
            .copied()
            .take_while(|id| now.duration_since(s.entries[id].accepted) >= self.first_request)
            .collect();
        let idle: Vec<u64> = match self.idle {
            Some(idle) => s
                .entries
                .iter()
                .filter(|(_, e)| {
                    e.stage != Stage::New && e.active == 0 && now.duration_since(e.last) >= idle
                })
                .map(|(id, _)| *id)
                .collect(),
            None => Vec::new(),
        };
        if !late.is_empty() || !idle.is_empty() {
            tracing::debug!(
                listener = self.name,
                no_request_in_time = late.len(),
                idle = idle.len(),
                "closing connections"
            );
        }
        for id in late.into_iter().chain(idle) {
            s.close(id);
            s.expired += 1;
        }
    }
}

fn sweeper(tracker: Weak<ConnTracker>) {
    loop {
        std::thread::sleep(SWEEP);
        match tracker.upgrade() {
            Some(t) => t.sweep(),
            None => return,
        }
    }
}

impl ConnHandle {
    /// A request started on this connection (`authenticated`: with a valid app token).
    pub fn request_started(&self, authenticated: bool) {
        let mut s = self.tracker.state.lock();
        let key = s.next_key;
        s.next_key += 1;
        let s = &mut *s;
        let Some(e) = s.entries.get_mut(&self.id) else {
            return;
        };
        e.active += 1;
        e.last = Instant::now();
        match (e.stage, authenticated) {
            (_, true) => {
                s.new.remove(&self.id);
                s.served.remove(&(e.served_key, self.id));
                e.stage = Stage::Authenticated;
            }
            (Stage::New | Stage::Served, false) => {
                s.new.remove(&self.id);
                s.served.remove(&(e.served_key, self.id));
                e.served_key = key;
                s.served.insert((key, self.id));
                e.stage = Stage::Served;
            }
            (Stage::Authenticated, false) => {}
        }
    }

    /// A request of this connection ended.
    pub fn request_ended(&self) {
        let mut s = self.tracker.state.lock();
        if let Some(e) = s.entries.get_mut(&self.id) {
            e.active = e.active.saturating_sub(1);
            e.last = Instant::now();
        }
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        self.tracker.state.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::os::fd::AsFd;

    /// A connected pair: (client side, server side).
    fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    fn closed(c: &mut TcpStream) -> bool {
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        matches!(c.read(&mut [0u8; 1]), Ok(0) | Err(_))
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn full_listener_closes_unproven_connections_never_authenticated_ones() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let t = ConnTracker::new("test", 2, 10, Duration::from_secs(60), None);
        let (mut c1, s1) = pair(&l);
        let (_c2, s2) = pair(&l);
        let h1 = t.admit(s1.as_fd(), A).unwrap();
        let h2 = t.admit(s2.as_fd(), A).unwrap();
        h2.request_started(true);
        h2.request_ended();
        let (_c3, s3) = pair(&l);
        let h3 = t
            .admit(s3.as_fd(), B)
            .expect("room made by closing the new one");
        assert!(closed(&mut c1), "the unproven connection was shut down");
        h3.request_started(true);
        let (_c4, s4) = pair(&l);
        assert!(
            t.admit(s4.as_fd(), B).is_none(),
            "authenticated connections are never closed for room"
        );
        let st = t.stats();
        assert_eq!(
            (st.open, st.authenticated, st.evicted, st.refused),
            (2, 2, 1, 1)
        );
        drop(h1);
        drop(h2);
        assert_eq!(t.stats().open, 1);
    }

    #[test]
    fn per_peer_cap_evicts_within_that_peer_only() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let t = ConnTracker::new("test", 100, 2, Duration::from_secs(60), None);
        let (mut cb, sb) = pair(&l);
        let _hb = t.admit(sb.as_fd(), B).unwrap();
        let (mut ca1, sa1) = pair(&l);
        let _ha1 = t.admit(sa1.as_fd(), A).unwrap();
        let (_ca2, sa2) = pair(&l);
        let ha2 = t.admit(sa2.as_fd(), A).unwrap();
        ha2.request_started(false);
        let (_ca3, sa3) = pair(&l);
        let _ha3 = t.admit(sa3.as_fd(), A).unwrap();
        assert!(closed(&mut ca1), "A's oldest new connection made room");
        cb.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert!(
            cb.read(&mut [0u8; 1]).is_err(),
            "B's connection is untouched (read timed out)"
        );
    }

    #[test]
    fn a_connection_without_a_request_in_time_is_closed_whatever_it_sends() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let t = ConnTracker::new(
            "test",
            10,
            10,
            Duration::from_millis(300),
            Some(Duration::from_millis(400)),
        );
        let (mut c1, s1) = pair(&l);
        let _h1 = t.admit(s1.as_fd(), A).unwrap();
        let (mut c2, s2) = pair(&l);
        let h2 = t.admit(s2.as_fd(), A).unwrap();
        h2.request_started(true);
        std::thread::sleep(Duration::from_millis(500));
        assert!(closed(&mut c1), "no request within the deadline");
        assert_eq!(t.stats().open, 1, "a request in progress is never idle");
        h2.request_ended();
        std::thread::sleep(Duration::from_millis(600));
        assert!(closed(&mut c2), "idle with no request in progress");
        assert_eq!(t.stats().expired, 2);
    }
}
