//! The notification sender (`hermes container notify-run`, the `notify`
//! static slot). The finish hook and this sender share one durable outbox
//! (`$HERMES_HOME/notify/outbox.jsonl`, [`hermes_core::notify`]); this side:
//!
//! - delivers each event to every target configured for it, in order per
//!   target, over HTTP or HTTPS (rustls, the system's CAs or the target's
//!   `ca_file`), retrying with back-off (1 s doubling to 60 s); a failing
//!   target holds back only its own events;
//! - records every delivery (`notify/targets.json`, fsynced) before the next,
//!   so a restart neither loses an event nor sends one it had delivered (a
//!   crash between a target's 2xx and that record repeats that one event,
//!   with the same `Idempotency-Key`);
//! - adds "recovered" once a parked or crash-looping gateway has served for
//!   10 s, "dead at boot" for gateways wanted running that are not 30 s after
//!   the boot reconcile; "stopping" (with the gateways up) is queued by the
//!   init ([`stopping`]) before it tears the tree down, and delivered by this
//!   sender's last try on SIGTERM;
//! - keeps each target's failures for `doctor`;
//! - compacts the outbox once enough events are delivered everywhere: the
//!   outbox is rewritten first (new file, rename), the delivery records
//!   second, so a crash in between leaves ids of events that are gone, never
//!   an event whose delivery was forgotten.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

mod deliver;
mod run;
mod sender;
#[cfg(test)]
mod testing;
mod tls;

pub use deliver::{body, deliver, Attempt};
pub use run::{run, POLL};
pub use sender::{stopping, Sender, Settings};
