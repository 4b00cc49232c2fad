//! Waiting for a service to reach a state, through `hermes_core::wait`: the
//! first check happens at once, so a state that is already reached (or a
//! scripted fake) costs no time.

use std::time::{Duration, Instant};

use hermes_core::name::ProfileName;
use hermes_core::service::ServiceError;
use hermes_core::wait;

/// What one look at the service decided.
pub enum Check<T> {
    Done(T),
    Failed(ServiceError),
    Pending,
}

impl<T> Check<T> {
    /// `Done(value)` once `reached`, else `Pending`.
    pub fn done_if(reached: bool, value: T) -> Self {
        if reached {
            Check::Done(value)
        } else {
            Check::Pending
        }
    }
}

/// Call `check` until it is done or failed, or `timeout` has passed (`Ok(None)`).
pub fn poll<T>(
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Result<Check<T>, ServiceError>,
) -> Result<Option<T>, ServiceError> {
    wait::for_value(Instant::now() + timeout, interval, || match check()? {
        Check::Done(value) => Ok(Some(value)),
        Check::Failed(err) => Err(err),
        Check::Pending => Ok(None),
    })
}

/// [`poll`] for a lifecycle call on `profile`'s service: what it reached,
/// or [`ServiceError::Timeout`] naming `action`.
pub fn reached<T>(
    profile: &ProfileName,
    action: &'static str,
    timeout: Duration,
    interval: Duration,
    check: impl FnMut() -> Result<Check<T>, ServiceError>,
) -> Result<T, ServiceError> {
    poll(timeout, interval, check)?.ok_or_else(|| ServiceError::Timeout {
        action,
        profile: profile.clone(),
        waited: timeout,
    })
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
