//! Waiting for something to happen: look at once, then again every
//! `interval` until it has or the deadline passes. Never a fixed sleep, and
//! a state that is already reached costs no time.

use std::time::{Duration, Instant};

/// Look with `done` until it holds or `deadline` passes; whether it held.
pub fn until(deadline: Instant, interval: Duration, mut done: impl FnMut() -> bool) -> bool {
    matches!(
        for_value(deadline, interval, || Ok::<_, std::convert::Infallible>(
            done().then_some(())
        )),
        Ok(Some(()))
    )
}

/// Look with `look` until it finds a value (`Ok(Some)`) or `deadline`
/// passes (`Ok(None)`); an error from a look ends the wait with it.
pub fn for_value<T, E>(
    deadline: Instant,
    interval: Duration,
    mut look: impl FnMut() -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    loop {
        if let Some(value) = look()? {
            return Ok(Some(value));
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
    fn returns_at_once_when_done_and_looks_once_more_at_the_deadline() {
        let mut looks = 0;
        assert!(until(Instant::now(), Duration::from_secs(60), || {
            looks += 1;
            true
        }));
        assert_eq!(looks, 1);

        let start = Instant::now();
        let mut looks = 0;
        let deadline = start + Duration::from_millis(30);
        assert!(!until(deadline, Duration::from_millis(10), || {
            looks += 1;
            false
        }));
        assert!(Instant::now() >= deadline);
        // Never sleeps past the deadline by more than a look.
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!((2..=8).contains(&looks), "{looks} looks");
    }

    #[test]
    fn a_value_or_an_error_ends_the_wait() {
        let far = Instant::now() + Duration::from_secs(60);
        let mut n = 0;
        let found = for_value(far, Duration::ZERO, || {
            n += 1;
            Ok::<_, String>((n == 3).then_some(n))
        });
        assert_eq!(found, Ok(Some(3)));
        let failed = for_value(far, Duration::ZERO, || Err::<Option<()>, _>("gone"));
        assert_eq!(failed, Err("gone"));
    }
}
