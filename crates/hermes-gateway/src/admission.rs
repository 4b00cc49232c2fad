//! How much any client, signed or not, can make the gateway hold: a cap on
//! open connections and on request body bytes buffered at once.
//!
//! A connection is *waiting* while it is idle or still sending a request
//! head or body, and *busy* once its request is authenticated and being
//! handled. When a cap is reached, the waiting connection that has waited
//! longest (and at least [`GRACE`]) is closed to make room: a sender that
//! sends its request at once is never the one waiting longest, so slow or
//! stalled clients cannot hold the gateway for longer than the grace. Only
//! when nothing can be shed does the newcomer get `503` with `Retry-After`,
//! at once: nobody queues, so waiting requests cannot pile up either.
//!
//! A shed connection's body budget counts as free the moment it is told to
//! close: its task drops it, with what it had buffered, at the next turn of
//! the event loop, before the newcomer's body can have arrived.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// A waiting connection younger than this is never shed: a client sending at
/// full speed gets this long for its whole request.
pub const GRACE: Duration = Duration::from_secs(1);

pub struct Admission {
    max_connections: usize,
    max_body_bytes: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    slots: HashMap<u64, Slot>,
    /// Connections told to close that have not yet gone.
    shedding: usize,
    reserved: u64,
}

struct Slot {
    since: Instant,
    busy: bool,
    reserved: u64,
    /// `None` once the connection has been told to close.
    shed: Option<oneshot::Sender<()>>,
}

/// A connection's place; dropping it frees the place.
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
}

/// Body bytes a request may buffer; dropping it returns them.
pub struct BodyBudget {
    admission: Arc<Admission>,
    id: u64,
    bytes: u64,
}

impl State {
    /// Tell the longest-waiting connection (past the grace, other than `except`,
    /// holding body budget if `holding`) to close, and free its budget; returns
    /// the budget freed, `None` when there is no such connection.
    fn shed_one(&mut self, except: Option<u64>, holding: bool) -> Option<u64> {
        let now = Instant::now();
        let victim = self
            .slots
            .iter()
            .filter(|(id, s)| {
                Some(**id) != except
                    && !s.busy
                    && s.shed.is_some()
                    && (!holding || s.reserved > 0)
                    && now.duration_since(s.since) >= GRACE
            })
            .min_by_key(|(_, s)| s.since)
            .map(|(id, _)| *id);
        let slot = self.slots.get_mut(&victim?).expect("just found");
        if let Some(tx) = slot.shed.take() {
            let _ = tx.send(());
        }
        let freed = std::mem::take(&mut slot.reserved);
        self.reserved -= freed;
        self.shedding += 1;
        Some(freed)
    }
}

impl Admission {
    pub fn new(max_connections: usize, max_body_bytes: u64) -> Arc<Admission> {
        Arc::new(Admission {
            max_connections: max_connections.max(1),
            max_body_bytes,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection, and the signal that tells it to close;
    /// `None` when every place is taken by a connection that cannot be shed.
    pub fn admit(self: &Arc<Self>) -> Option<(Ticket, oneshot::Receiver<()>)> {
        let mut state = self.lock();
        if state.slots.len() - state.shedding >= self.max_connections
            && state.shed_one(None, false).is_none()
        {
            return None;
        }
        let id = state.next_id;
        state.next_id += 1;
        let (tx, rx) = oneshot::channel();
        state.slots.insert(
            id,
            Slot {
                since: Instant::now(),
                busy: false,
                reserved: 0,
                shed: Some(tx),
            },
        );
        Some((
            Ticket {
                admission: self.clone(),
                id,
            },
            rx,
        ))
    }

    pub fn open_connections(&self) -> usize {
        let state = self.lock();
        state.slots.len() - state.shedding
    }

    pub fn reserved_bytes(&self) -> u64 {
        self.lock().reserved
    }
}

impl Ticket {
    /// A request head arrived (`busy == false`: its body is awaited) or it was
    /// authenticated (`busy == true`: it may no longer be shed); or its
    /// answer went out (`busy == false`: idle until the next request).
    pub fn set_busy(&self, busy: bool) {
        let mut state = self.admission.lock();
        if let Some(slot) = state.slots.get_mut(&self.id) {
            slot.busy = busy;
            if !busy {
                slot.since = Instant::now();
            }
        }
    }

    /// Reserve `bytes` of the body budget, shedding the longest-waiting
    /// connections that hold some when it is spent; `None` when it stays spent.
    pub fn reserve(&self, bytes: u64) -> Option<BodyBudget> {
        let admission = &self.admission;
        if bytes > admission.max_body_bytes {
            return None;
        }
        let mut state = admission.lock();
        while state.reserved + bytes > admission.max_body_bytes {
            state.shed_one(Some(self.id), true)?;
        }
        state.reserved += bytes;
        if let Some(slot) = state.slots.get_mut(&self.id) {
            slot.reserved += bytes;
        }
        Some(BodyBudget {
            admission: admission.clone(),
            id: self.id,
            bytes,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        if let Some(slot) = state.slots.remove(&self.id) {
            if slot.shed.is_none() {
                state.shedding -= 1;
            }
            // Normally zero: a request's budget goes before its connection does.
            state.reserved -= slot.reserved;
        }
    }
}

impl Drop for BodyBudget {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        // A shed connection's budget was freed when it was shed.
        if let Some(slot) = state.slots.get_mut(&self.id).filter(|s| s.shed.is_some()) {
            slot.reserved -= self.bytes;
            state.reserved -= self.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(admission: &Admission, ticket: &Ticket, by: Duration) {
        let mut state = admission.lock();
        let slot = state.slots.get_mut(&ticket.id).unwrap();
        slot.since -= by;
    }

    #[test]
    fn a_full_table_sheds_the_longest_waiting_connection_past_the_grace() {
        let admission = Admission::new(2, 100);
        let (old, mut old_rx) = admission.admit().unwrap();
        let (young, mut young_rx) = admission.admit().unwrap();
        // Both younger than the grace: the newcomer is refused.
        assert!(admission.admit().is_none());
        age(&admission, &old, GRACE * 3);
        age(&admission, &young, GRACE * 2);
        let (_third, _) = admission.admit().expect("the oldest waiting one is shed");
        assert!(
            old_rx.try_recv().is_ok(),
            "the oldest was not told to close"
        );
        assert!(young_rx.try_recv().is_err());
        assert_eq!(admission.open_connections(), 2);
        // A busy connection is never shed, however old.
        young.set_busy(true);
        assert!(admission.admit().is_none());
        drop(old);
        assert_eq!(admission.open_connections(), 2);
    }

    #[test]
    fn body_budget_is_capped_and_hoarders_are_shed_for_a_newcomer() {
        let admission = Admission::new(10, 100);
        let (hoarder, mut hoarder_rx) = admission.admit().unwrap();
        let held = hoarder.reserve(80).unwrap();
        let (late, _) = admission.admit().unwrap();
        assert!(late.reserve(101).is_none(), "over the whole budget");
        // The hoarder is within its grace: nothing can be shed.
        assert!(late.reserve(30).is_none());
        assert_eq!(admission.reserved_bytes(), 80);
        age(&admission, &hoarder, GRACE * 2);
        let got = late.reserve(30).expect("the hoarder is shed");
        assert!(hoarder_rx.try_recv().is_ok(), "not told to close");
        assert_eq!(admission.reserved_bytes(), 30);
        // Its budget and place going later change nothing more.
        drop(held);
        drop(hoarder);
        assert_eq!(admission.reserved_bytes(), 30);
        assert_eq!(admission.open_connections(), 1);
        drop(got);
        assert_eq!(admission.reserved_bytes(), 0);
    }
}
