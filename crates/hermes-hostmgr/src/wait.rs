//! Waiting for a service to reach a state: poll with a deadline, never a fixed
//! sleep. The first check happens at once, so a state that is already reached
//! (or a scripted fake) costs no time.

use std::time::{Duration, Instant};

use hermes_core::service::ServiceError;

/// What one look at the service decided.
pub enum Check<T> {
    Done(T),
    Failed(ServiceError),
    Pending,
}

/// Call `check` until it is done or failed, or `timeout` has passed (`Ok(None)`).
pub fn poll<T>(
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Result<Check<T>, ServiceError>,
) -> Result<Option<T>, ServiceError> {
    let deadline = Instant::now() + timeout;
    loop {
        match check()? {
            Check::Done(value) => return Ok(Some(value)),
            Check::Failed(err) => return Err(err),
            Check::Pending => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(interval.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_when_done_and_gives_up_at_the_deadline() {
        let mut n = 0;
        let got = poll(Duration::from_secs(5), Duration::ZERO, || {
            n += 1;
            Ok(if n == 3 {
                Check::Done(n)
            } else {
                Check::Pending
            })
        })
        .unwrap();
        assert_eq!(got, Some(3));
        let never: Option<()> =
            poll(Duration::ZERO, Duration::ZERO, || Ok(Check::Pending)).unwrap();
        assert_eq!(never, None);
    }
}
