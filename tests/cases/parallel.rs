//! Independent pieces of one test on threads of their own (issue 14): the rows of a table
//! of worlds, the points of a sweep. Each piece has its own folder, fleet, server and port,
//! so running them side by side changes nothing they assert; their waits (on spawned
//! processes, on a server's clock) overlap instead of adding up.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `work` on every item, at most `width` at once, and returns every result in the
/// items' order. Every item runs, whatever another one does; then the first panic (in the
/// items' order) is the caller's, with its own message.
pub(crate) fn each<T: Send, R: Send>(
    width: usize,
    items: impl IntoIterator<Item = T>,
    work: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let items: Vec<std::sync::Mutex<Option<T>>> = items
        .into_iter()
        .map(|item| std::sync::Mutex::new(Some(item)))
        .collect();
    let next = AtomicUsize::new(0);
    let outcomes: Vec<std::sync::Mutex<Option<std::thread::Result<R>>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..width.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(slot) = items.get(index) else { break };
                    let item = slot
                        .lock()
                        .unwrap()
                        .take()
                        .expect("each item is taken once");
                    let outcome =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(item)));
                    *outcomes[index].lock().unwrap() = Some(outcome);
                }
            });
        }
    });
    outcomes
        .into_iter()
        .map(|outcome| {
            match outcome
                .into_inner()
                .unwrap()
                .expect("every item ran to its end")
            {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
        .collect()
}

#[test]
fn every_item_runs_once_in_order_and_the_first_panic_is_the_callers() {
    let squares = each(3, 0..10u64, |n| n * n);
    assert_eq!(squares, (0..10u64).map(|n| n * n).collect::<Vec<_>>());
    let ran = AtomicUsize::new(0);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        each(2, 0..6, |n| {
            ran.fetch_add(1, Ordering::SeqCst);
            assert!(n != 2 && n != 4, "item {n} fails");
        })
    }))
    .expect_err("a failing item fails the caller");
    assert_eq!(ran.load(Ordering::SeqCst), 6, "every item ran");
    let message = caught.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("item 2 fails"), "{message}");
}
