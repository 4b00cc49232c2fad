//! `GET /metrics`: the model's Prometheus document, served from the last
//! collection. Collecting runs one `s6-svstat` and up to two HTTP calls per
//! gateway, so a scrape never waits for it: a scrape renders what was
//! collected last (its age is `hermes_scrape_age_seconds`) and, when that is
//! older than [`REFRESH_AFTER`], starts a new collection on its own thread
//! for the next scrape. Only the very first scrape waits for one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hermes_model::metrics::{self, Scrape};
use hermes_model::Environment;

/// Facts older than this are collected again (in the background).
pub const REFRESH_AFTER: Duration = Duration::from_secs(5);

pub struct Metrics {
    last: Mutex<Option<(Instant, Arc<Scrape>)>>,
    collecting: Arc<AtomicBool>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            last: Mutex::new(None),
            collecting: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Metrics {
    /// The exposition document for a scrape now.
    pub fn render(self: &Arc<Self>, env: &Arc<dyn Environment>) -> String {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let scrape = match last {
            Some((at, scrape)) => {
                if at.elapsed() >= REFRESH_AFTER {
                    self.refresh_in_background(env);
                }
                scrape
            }
            None => self.collect(env),
        };
        metrics::render(&scrape, hermes_core::state::now_ms())
    }

    fn collect(&self, env: &Arc<dyn Environment>) -> Arc<Scrape> {
        let scrape = Arc::new(Scrape::collect(&**env));
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), scrape.clone()));
        scrape
    }

    fn refresh_in_background(self: &Arc<Self>, env: &Arc<dyn Environment>) {
        // One collection at a time, however many scrapers there are.
        if self.collecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let (me, env) = (self.clone(), env.clone());
        std::thread::spawn(move || {
            me.collect(&env);
            me.collecting.store(false, Ordering::Release);
        });
    }
}
