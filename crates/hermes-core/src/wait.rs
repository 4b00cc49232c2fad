//! Waiting for something to happen: look at once, then again after a
//! pause (a fixed interval, or one paced by how long the wait has lasted)
//! until it has or the deadline passes. Never a fixed sleep, and
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

/// [`until`], resting `pace(waited so far)` between two looks instead of a
/// fixed interval.
pub fn until_paced(
    deadline: Instant,
    pace: impl FnMut(Duration) -> Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    matches!(
        paced(deadline, pace, || Ok::<_, std::convert::Infallible>(
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
    look: impl FnMut() -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    paced(deadline, |_| interval, look)
}

fn paced<T, E>(
    deadline: Instant,
    mut pace: impl FnMut(Duration) -> Duration,
    mut look: impl FnMut() -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    let start = Instant::now();
    loop {
        if let Some(value) = look()? {
            return Ok(Some(value));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pace(now - start).min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_wait_is_told_how_long_it_has_waited_before_each_rest() {
        let mut told = Vec::new();
        let mut looks = 0;
        let held = until_paced(
            Instant::now() + Duration::from_secs(60),
            |waited| {
                told.push(waited);
                Duration::from_millis(1)
            },
            || {
                looks += 1;
                looks == 3
            },
        );
        assert!(held);
        assert_eq!(told.len(), 2, "one rest between each two looks");
        assert!(told[1] >= told[0] + Duration::from_millis(1), "{told:?}");
    }

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
