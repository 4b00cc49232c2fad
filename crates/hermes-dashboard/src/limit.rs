//! How fast a wrong token may be tried: a token bucket per source (an IPv4
//! address, or an IPv6 /64, which one host usually holds whole) and one
//! shared by all sources, so many addresses together are bounded too. A
//! check takes one unit from both buckets *before* the token is compared
//! and a right token gives it back: concurrent guesses cannot all slip in
//! before the first failure is counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed checks one source may make at once, then one per `PER_SOURCE_EVERY`.
const PER_SOURCE_BURST: f64 = 10.0;
const PER_SOURCE_EVERY: Duration = Duration::from_secs(1);
/// Failed checks all sources together may make at once, then one per `GLOBAL_EVERY`.
const GLOBAL_BURST: f64 = 60.0;
const GLOBAL_EVERY: Duration = Duration::from_millis(200);
/// Sources remembered at most; a full bucket (a source quiet long enough) is forgotten first.
const MAX_SOURCES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    units: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            units: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant, burst: f64, every: Duration) {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() / every.as_secs_f64();
        self.units = (self.units + gained).min(burst);
        self.at = now;
    }

    /// How long until one whole unit is there.
    fn wait(&self, every: Duration) -> Duration {
        every.mul_f64((1.0 - self.units).max(0.0))
    }
}

struct State {
    global: Bucket,
    sources: HashMap<IpAddr, Bucket>,
}

pub struct Limiter {
    state: Mutex<State>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new()
    }
}

impl Limiter {
    pub fn new() -> Limiter {
        Limiter {
            state: Mutex::new(State {
                global: Bucket::full(GLOBAL_BURST, Instant::now()),
                sources: HashMap::new(),
            }),
        }
    }

    /// Take one unit for a credential check from `peer`; `Err` holds how long to wait.
    pub fn reserve(&self, peer: IpAddr) -> Result<(), Duration> {
        self.reserve_at(peer, Instant::now())
    }

    /// Give back the unit of a check that succeeded.
    pub fn refund(&self, peer: IpAddr) {
        self.refund_at(peer, Instant::now());
    }

    fn reserve_at(&self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = source(peer);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.global.refill(now, GLOBAL_BURST, GLOBAL_EVERY);
        if !state.sources.contains_key(&key) && state.sources.len() >= MAX_SOURCES {
            state.sources.retain(|_, b| {
                b.refill(now, PER_SOURCE_BURST, PER_SOURCE_EVERY);
                b.units < PER_SOURCE_BURST
            });
            if state.sources.len() >= MAX_SOURCES {
                // Thousands of sources failing at once: only the global bound is left to apply.
                return Err(state.global.wait(GLOBAL_EVERY).max(PER_SOURCE_EVERY));
            }
        }
        let global = state.global;
        let bucket = state
            .sources
            .entry(key)
            .or_insert_with(|| Bucket::full(PER_SOURCE_BURST, now));
        bucket.refill(now, PER_SOURCE_BURST, PER_SOURCE_EVERY);
        if bucket.units < 1.0 || global.units < 1.0 {
            let wait = bucket.wait(PER_SOURCE_EVERY).max(global.wait(GLOBAL_EVERY));
            return Err(wait);
        }
        bucket.units -= 1.0;
        state.global.units -= 1.0;
        Ok(())
    }

    fn refund_at(&self, peer: IpAddr, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.global.refill(now, GLOBAL_BURST, GLOBAL_EVERY);
        state.global.units = (state.global.units + 1.0).min(GLOBAL_BURST);
        if let Some(bucket) = state.sources.get_mut(&source(peer)) {
            bucket.refill(now, PER_SOURCE_BURST, PER_SOURCE_EVERY);
            bucket.units = (bucket.units + 1.0).min(PER_SOURCE_BURST);
        }
    }
}

/// The unit a source is counted by: an IPv4 address, or an IPv6 /64.
fn source(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// `Retry-After` in whole seconds, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_gets_its_burst_then_one_per_second() {
        let limiter = Limiter::new();
        let t0 = Instant::now();
        for _ in 0..10 {
            limiter.reserve_at(ip("10.0.0.1"), t0).unwrap();
        }
        let wait = limiter.reserve_at(ip("10.0.0.1"), t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= PER_SOURCE_EVERY,
            "{wait:?}"
        );
        // Another source is not held up by this one.
        limiter.reserve_at(ip("10.0.0.2"), t0).unwrap();
        let t1 = t0 + PER_SOURCE_EVERY;
        limiter.reserve_at(ip("10.0.0.1"), t1).unwrap();
        assert!(limiter.reserve_at(ip("10.0.0.1"), t1).is_err());
    }

    #[test]
    fn a_right_token_gives_its_unit_back() {
        let limiter = Limiter::new();
        let t0 = Instant::now();
        for _ in 0..100 {
            limiter.reserve_at(ip("10.0.0.1"), t0).unwrap();
            limiter.refund_at(ip("10.0.0.1"), t0);
        }
    }

    #[test]
    fn many_sources_share_the_global_bound() {
        let limiter = Limiter::new();
        let t0 = Instant::now();
        let allowed = (0..1000u32)
            .filter(|i| {
                let peer = IpAddr::V4((0x0a00_0000 + i).into());
                limiter.reserve_at(peer, t0).is_ok()
            })
            .count();
        assert_eq!(allowed, GLOBAL_BURST as usize);
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_64() {
        let limiter = Limiter::new();
        let t0 = Instant::now();
        for i in 0..10 {
            limiter
                .reserve_at(ip(&format!("2001:db8:1:2::{i:x}")), t0)
                .unwrap();
        }
        assert!(limiter.reserve_at(ip("2001:db8:1:2:ffff::1"), t0).is_err());
        limiter.reserve_at(ip("2001:db8:1:3::1"), t0).unwrap();
        assert_eq!(source(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(200)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1200)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
    }
}
