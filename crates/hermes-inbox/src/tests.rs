use std::fs;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use hermes_testkit::tmpfs::Tmpfs;

use super::*;

fn hook(name: &str) -> HookName {
    HookName::parse(name).unwrap()
}

fn append_wait(
    inbox: &Inbox,
    hook_name: &str,
    key: Option<&str>,
    body: &[u8],
) -> Result<Appended, InboxError> {
    let (tx, rx) = mpsc::channel();
    inbox.append(
        hook(hook_name),
        key.map(str::to_string),
        body.to_vec(),
        move |r| {
            let _ = tx.send(r);
        },
    );
    rx.recv().unwrap()
}

fn ids(page: &Page) -> Vec<u64> {
    page.events.iter().map(|e| e.id).collect()
}

fn segments_of(dir: &Path) -> Vec<std::path::PathBuf> {
    segment::list(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

#[test]
fn ids_are_monotonic_per_hook_and_pages_come_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path(), Options::default()).unwrap();
    for i in 1..=25u64 {
        let a = append_wait(&inbox, "ci", None, format!("ci-{i}").as_bytes()).unwrap();
        assert_eq!(
            a,
            Appended {
                id: i,
                duplicate: false
            }
        );
    }
    assert_eq!(append_wait(&inbox, "chat", None, b"x").unwrap().id, 1);

    let first = inbox.page(&hook("ci"), 0, 10).unwrap();
    assert_eq!(ids(&first), (1..=10).collect::<Vec<_>>());
    assert_eq!((first.first_id, first.last_id), (Some(1), Some(25)));
    assert_eq!(first.events[0].body, b"ci-1");
    let second = inbox.page(&hook("ci"), 10, 10).unwrap();
    assert_eq!(ids(&second), (11..=20).collect::<Vec<_>>());
    let last = inbox.page(&hook("ci"), 20, 10).unwrap();
    assert_eq!(ids(&last), (21..=25).collect::<Vec<_>>());
    assert!(inbox.page(&hook("ci"), 25, 10).unwrap().events.is_empty());
    assert!(inbox.page(&hook("none"), 0, 10).unwrap().events.is_empty());
    // limit 0 returns no event, only where the hook's ids stand; the page size is capped.
    let none = inbox.page(&hook("ci"), 0, 0).unwrap();
    assert!(none.events.is_empty());
    assert_eq!((none.first_id, none.last_id), (Some(1), Some(25)));
    assert_eq!(
        inbox.page(&hook("ci"), 0, 1_000_000).unwrap().events.len(),
        25
    );
}

#[test]
fn ids_continue_after_reopen_and_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        segment_bytes: 200,
        ..Options::default()
    };
    {
        let inbox = Inbox::open(dir.path(), options.clone()).unwrap();
        for i in 0..30 {
            append_wait(&inbox, "ci", None, format!("event {i:03}").as_bytes()).unwrap();
        }
    }
    assert!(segments_of(&dir.path().join("ci")).len() > 3);
    let inbox = Inbox::open(dir.path(), options).unwrap();
    assert_eq!(inbox.recovery().events, 30);
    assert!(inbox.recovery().cuts.is_empty());
    assert_eq!(append_wait(&inbox, "ci", None, b"next").unwrap().id, 31);
    let all = inbox.page(&hook("ci"), 0, 100).unwrap();
    assert_eq!(ids(&all), (1..=31).collect::<Vec<_>>());
    assert_eq!(all.events[29].body, b"event 029");
    // A page that starts inside a later segment.
    assert_eq!(
        ids(&inbox.page(&hook("ci"), 17, 3).unwrap()),
        vec![18, 19, 20]
    );
}

#[test]
fn idempotent_retry_returns_the_original_id_even_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let inbox = Inbox::open(dir.path(), Options::default()).unwrap();
        let first = append_wait(&inbox, "ci", Some("delivery-1"), b"a").unwrap();
        assert_eq!(
            first,
            Appended {
                id: 1,
                duplicate: false
            }
        );
        let retry = append_wait(&inbox, "ci", Some("delivery-1"), b"a").unwrap();
        assert_eq!(
            retry,
            Appended {
                id: 1,
                duplicate: true
            }
        );
        // Keys are per hook.
        assert_eq!(
            append_wait(&inbox, "other", Some("delivery-1"), b"a").unwrap(),
            Appended {
                id: 1,
                duplicate: false
            }
        );
        assert_eq!(
            append_wait(&inbox, "ci", Some("delivery-2"), b"b")
                .unwrap()
                .id,
            2
        );
    }
    let inbox = Inbox::open(dir.path(), Options::default()).unwrap();
    let retry = append_wait(&inbox, "ci", Some("delivery-1"), b"a").unwrap();
    assert_eq!(
        retry,
        Appended {
            id: 1,
            duplicate: true
        }
    );
    assert_eq!(inbox.page(&hook("ci"), 0, 10).unwrap().events.len(), 2);
    let stored = &inbox.page(&hook("ci"), 0, 10).unwrap().events[0];
    assert_eq!(stored.idempotency_key.as_deref(), Some("delivery-1"));
}

#[test]
fn idempotency_keys_expire_after_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        idempotency_window: Duration::ZERO,
        ..Options::default()
    };
    let inbox = Inbox::open(dir.path(), options).unwrap();
    assert!(
        !append_wait(&inbox, "ci", Some("k"), b"a")
            .unwrap()
            .duplicate
    );
    inbox.enforce_retention().unwrap();
    // Forgotten: the late retry is a new event.
    assert_eq!(
        append_wait(&inbox, "ci", Some("k"), b"a").unwrap(),
        Appended {
            id: 2,
            duplicate: false
        }
    );
}

#[test]
fn bad_keys_and_large_bodies_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        max_body_bytes: 10,
        ..Options::default()
    };
    let inbox = Inbox::open(dir.path(), options).unwrap();
    assert!(matches!(
        append_wait(&inbox, "ci", None, &[0; 11]),
        Err(InboxError::TooLarge { len: 11, max: 10 })
    ));
    for key in ["", "has space", "tab\t", &"k".repeat(256)] {
        assert!(matches!(
            append_wait(&inbox, "ci", Some(key), b"x"),
            Err(InboxError::BadKey)
        ));
    }
    assert!(!dir.path().join("ci").exists());
    assert_eq!(
        append_wait(&inbox, "ci", Some(&"k".repeat(255)), &[1; 10])
            .unwrap()
            .id,
        1
    );
}

#[test]
fn lowering_the_body_limit_keeps_larger_stored_events() {
    let dir = tempfile::tempdir().unwrap();
    {
        let inbox = Inbox::open(dir.path(), Options::default()).unwrap();
        append_wait(&inbox, "ci", None, &[7; 5000]).unwrap();
        append_wait(&inbox, "ci", None, b"small").unwrap();
    }
    let strict = Options {
        max_body_bytes: 10,
        ..Options::default()
    };
    let inbox = Inbox::open(dir.path(), strict).unwrap();
    assert!(inbox.recovery().cuts.is_empty(), "{:?}", inbox.recovery());
    let page = inbox.page(&hook("ci"), 0, 10).unwrap();
    assert_eq!(page.events[0].body.len(), 5000);
    assert_eq!(page.events[1].body, b"small");
}

#[test]
fn concurrent_appends_get_unique_contiguous_ids_in_per_sender_order() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = std::sync::Arc::new(Inbox::open(dir.path(), Options::default()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let inbox = inbox.clone();
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| {
                        let body = format!("{t}:{i}");
                        append_wait(&inbox, "ci", None, body.as_bytes()).unwrap().id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        let ids = t.join().unwrap();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "one sender's ids went backwards"
        );
        all.extend(ids);
    }
    all.sort();
    assert_eq!(all, (1..=800).collect::<Vec<_>>());
    // Group commit: concurrent appends shared syncs.
    let (commits, events) = inbox.commits();
    assert_eq!(events, 800);
    assert!(commits < 800, "every append had its own fsync");
    eprintln!("800 concurrent appends took {commits} commits");
    let page = inbox.page(&hook("ci"), 0, 1000).unwrap();
    assert_eq!(ids(&page), (1..=800).collect::<Vec<_>>());
}

/// Build a hook with three records and return the segment path and the offset of the last.
fn three_records(dir: &Path) -> (std::path::PathBuf, u64, u64) {
    let inbox = Inbox::open(dir, Options::default()).unwrap();
    append_wait(&inbox, "ci", None, b"first").unwrap();
    append_wait(&inbox, "ci", Some("k2"), b"second").unwrap();
    inbox.close();
    let seg = segments_of(&dir.join("ci")).remove(0);
    let last_start = fs::metadata(&seg).unwrap().len();
    drop(inbox);
    let inbox = Inbox::open(dir, Options::default()).unwrap();
    append_wait(&inbox, "ci", Some("k3"), b"third, the one to tear").unwrap();
    inbox.close();
    let end = fs::metadata(&seg).unwrap().len();
    (seg, last_start, end)
}

#[test]
fn torn_tail_is_cut_at_every_byte_offset_of_the_last_record() {
    let base = tempfile::tempdir().unwrap();
    let (seg, last_start, end) = three_records(base.path());
    let original = fs::read(&seg).unwrap();
    for cut_at in last_start..end {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("ci")).unwrap();
        let copy = dir.path().join("ci").join(seg.file_name().unwrap());
        fs::write(&copy, &original[..cut_at as usize]).unwrap();
        let inbox = Inbox::open(dir.path(), Options::default()).unwrap();
        let report = inbox.recovery();
        assert_eq!(report.events, 2, "cut at {cut_at}");
        if cut_at == last_start {
            assert!(report.cuts.is_empty(), "a clean end was reported as torn");
        } else {
            assert_eq!(report.cuts.len(), 1, "cut at {cut_at}");
            assert_eq!(report.cuts[0].cut_bytes, cut_at - last_start);
            assert_eq!(report.cuts[0].kept_records, 2);
        }
        assert_eq!(fs::metadata(&copy).unwrap().len(), last_start);
        let page = inbox.page(&hook("ci"), 0, 10).unwrap();
        assert_eq!(ids(&page), vec![1, 2]);
        // The torn event was never acknowledged, so its key and id are free again.
        let again = append_wait(&inbox, "ci", Some("k3"), b"third").unwrap();
        assert_eq!(
            again,
            Appended {
                id: 3,
                duplicate: false
            },
            "cut at {cut_at}"
        );
        assert!(
            append_wait(&inbox, "ci", Some("k2"), b"x")
                .unwrap()
                .duplicate
        );
    }
}

#[test]
fn a_corrupt_byte_in_the_last_record_is_cut_and_reported() {
    let base = tempfile::tempdir().unwrap();
    let (seg, last_start, end) = three_records(base.path());
    for at in [last_start, last_start + 5, end - 1] {
        let mut bytes = fs::read(&seg).unwrap();
        bytes[at as usize] ^= 0x40;
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("ci")).unwrap();
        fs::write(dir.path().join("ci").join(seg.file_name().unwrap()), bytes).unwrap();
        let inbox = Inbox::open(dir.path(), Options::default()).unwrap();
        assert_eq!(inbox.recovery().events, 2);
        assert_eq!(inbox.recovery().cuts[0].cut_bytes, end - last_start);
    }
}

#[test]
fn a_new_segment_with_no_whole_record_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        segment_bytes: 1,
        ..Options::default()
    };
    {
        let inbox = Inbox::open(dir.path(), options.clone()).unwrap();
        append_wait(&inbox, "ci", None, b"one").unwrap();
        append_wait(&inbox, "ci", None, b"two").unwrap();
    }
    let segs = segments_of(&dir.path().join("ci"));
    assert_eq!(segs.len(), 2);
    fs::OpenOptions::new()
        .write(true)
        .open(&segs[1])
        .unwrap()
        .set_len(3)
        .unwrap();
    let inbox = Inbox::open(dir.path(), options).unwrap();
    assert_eq!(inbox.recovery().removed_empty, vec![segs[1].clone()]);
    assert!(!segs[1].exists());
    assert_eq!(append_wait(&inbox, "ci", None, b"two again").unwrap().id, 2);
}

#[test]
fn retention_deletes_whole_old_segments_and_never_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        segment_bytes: 100,
        retention_bytes: Some(250),
        ..Options::default()
    };
    let inbox = Inbox::open(dir.path(), options).unwrap();
    for i in 0..40 {
        append_wait(&inbox, "ci", Some(&format!("key-{i}")), &[b'x'; 40]).unwrap();
    }
    inbox.enforce_retention().unwrap();
    let stats = &inbox.stats()[0];
    assert!(stats.bytes <= 250, "{stats:?}");
    assert_eq!(stats.last_id, Some(40));
    let first = stats.first_id.unwrap();
    assert!(first > 1);
    // Whole records only: every remaining segment still decodes from its start.
    let page = inbox.page(&hook("ci"), 0, 100).unwrap();
    assert_eq!(ids(&page), (first..=40).collect::<Vec<_>>());
    for seg in segments_of(&dir.path().join("ci")) {
        let bytes = fs::read(&seg).unwrap();
        let mut pos = 0;
        while pos < bytes.len() {
            pos += record::decode(&bytes[pos..], record::max_payload(1 << 20))
                .unwrap()
                .1;
        }
    }
    // A key whose event was deleted is forgotten: the delivery is stored anew.
    assert!(
        !append_wait(&inbox, "ci", Some("key-0"), b"y")
            .unwrap()
            .duplicate
    );

    // Age: everything but the tail is older than zero seconds.
    drop(inbox);
    let aged = Options {
        segment_bytes: 100,
        retention_age: Some(Duration::ZERO),
        ..Options::default()
    };
    let inbox = Inbox::open(dir.path(), aged).unwrap();
    inbox.enforce_retention().unwrap();
    assert_eq!(inbox.stats()[0].segments, 1);
    assert_eq!(inbox.stats()[0].last_id, Some(41));
}

#[test]
#[ignore = "needs root to mount a tmpfs; scripts/test runs it as root"]
fn a_full_disk_fails_the_batch_and_leaves_no_partial_record() {
    let dir = tempfile::tempdir().unwrap();
    let fs_ = Tmpfs::mount(dir.path(), "size=64k").unwrap();
    let root = fs_.path().join("inbox");
    let mut acked = 0u64;
    let mut full = None;
    {
        let inbox = Inbox::open(&root, Options::default()).unwrap();
        for i in 0..200 {
            match append_wait(&inbox, "ci", None, &vec![b'a' + (i % 26) as u8; 1500]) {
                Ok(a) => {
                    acked += 1;
                    assert_eq!(a.id, acked);
                }
                Err(e) => {
                    full = Some(e);
                    break;
                }
            }
        }
        let err = full.expect("a 64 KiB tmpfs never filled up");
        assert!(err.is_disk_full(), "{err}");
        assert!(err.to_string().contains("disk full"), "{err}");
        // Still refusing, still consistent.
        assert!(append_wait(&inbox, "ci", None, &[b'z'; 1500]).is_err());
        assert_eq!(
            inbox.page(&hook("ci"), 0, 1000).unwrap().events.len() as u64,
            acked
        );
    }
    let inbox = Inbox::open(&root, Options::default()).unwrap();
    assert!(inbox.recovery().cuts.is_empty(), "{:?}", inbox.recovery());
    assert_eq!(inbox.recovery().events, acked);
}

#[test]
fn a_symlinked_inbox_or_hook_dir_is_refused_at_open_and_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let inbox = tmp.path().join("inbox");
    std::os::unix::fs::symlink(&outside, &inbox).unwrap();
    let err = Inbox::open(&inbox, Options::default())
        .err()
        .expect("a linked inbox opened");
    assert!(
        matches!(&err, InboxError::NotADirectory { path, what: "a symbolic link" } if *path == inbox),
        "{err}"
    );
    assert!(err.to_string().contains("symbolic link"), "{err}");

    fs::remove_file(&inbox).unwrap();
    fs::create_dir_all(&inbox).unwrap();
    std::os::unix::fs::symlink(&outside, inbox.join("ci")).unwrap();
    let err = Inbox::open(&inbox, Options::default())
        .err()
        .expect("a linked hook dir opened");
    assert!(
        matches!(&err, InboxError::NotADirectory { path, .. } if *path == inbox.join("ci")),
        "{err}"
    );
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "wrote through the link"
    );
}
