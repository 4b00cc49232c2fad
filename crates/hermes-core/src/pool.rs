//! One call per item on a few threads at once, for work that waits on the
//! disk rather than the CPU (fsync): calls that wait together are served
//! together, by one journal commit where the file system can.

/// `f` on every item, on at most `threads` scoped threads; one result per
/// item, in the order given.
pub fn map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() < 2 || threads < 2 {
        return items.iter().map(&f).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(per_thread)
            .map(|chunk| scope.spawn(move || chunk.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a pool thread panicked"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_in_order_on_any_number_of_threads() {
        let items: Vec<u32> = (0..103).collect();
        for threads in [0, 1, 2, 16, 200] {
            let got = map(&items, threads, |i| i * 2);
            let want: Vec<u32> = items.iter().map(|i| i * 2).collect();
            assert_eq!(got, want, "{threads} threads");
        }
        assert!(map(&[] as &[u32], 4, |i| *i).is_empty());
    }

    #[test]
    fn runs_at_most_the_threads_asked_for() {
        use std::collections::HashSet;
        use std::sync::Mutex;
        let seen = Mutex::new(HashSet::new());
        let items: Vec<u32> = (0..64).collect();
        map(&items, 4, |_| {
            seen.lock().unwrap().insert(std::thread::current().id());
        });
        assert!(seen.lock().unwrap().len() <= 4);
    }
}
