//! What callers get back from the inbox.

/// One stored webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Monotonic per hook, starting at 1.
    pub id: u64,
    /// When the gateway accepted it, ms since the Unix epoch.
    pub received_at_ms: u64,
    pub idempotency_key: Option<String>,
    pub body: Vec<u8>,
}

/// The outcome of a durable append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub id: u64,
    /// The idempotency key was already stored: nothing was written, `id` is the original's.
    pub duplicate: bool,
}

/// A slice of one hook's events, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub events: Vec<Event>,
    /// Oldest id still stored (retention may have removed earlier ones).
    pub first_id: Option<u64>,
    /// Newest durable id.
    pub last_id: Option<u64>,
}

/// Size and span of one hook's log, for health reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookStats {
    pub hook: String,
    pub first_id: Option<u64>,
    pub last_id: Option<u64>,
    pub segments: usize,
    pub bytes: u64,
}
