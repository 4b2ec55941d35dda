//! Work shared between the calling thread and rayon's pool, the caller starting at once.
//!
//! A parallel iterator called from outside the pool hands all of its work to the pool's threads
//! and puts the caller to sleep until they finish, so every call first pays for waking them: on a
//! virtual machine that wake-up alone can take as long as decoding 10M values on one core. Here
//! the caller works from the first microsecond and the pool's threads take what is left when they
//! arrive; a thread that arrives after the last task finds nothing and returns. The caller still
//! waits for every helper it called to run, which on a machine whose cores are all busy (a
//! simulation's workers training) can be a scheduler slice: work below [`SERIAL_BELOW`] elements
//! stays on the calling thread (a 1% add into 10M floats: 0.66 ms alone against 3.0 ms, p90 9.9,
//! waiting for a helper, with four busy loops on the two cores here).

use std::convert::Infallible;
use std::sync::{Mutex, PoisonError};

/// Elements of work (all tasks together) below which the tasks run on the calling thread.
pub(crate) const SERIAL_BELOW: usize = 1 << 18;

/// Runs `work` on every task exactly once, on this thread and on the pool's threads but one (the
/// caller takes a core), each taking the next task from one shared queue; all on this thread when
/// the tasks hold fewer than [`SERIAL_BELOW`] elements of work (`elements`).
pub(crate) fn run_shared<T: Send>(tasks: Vec<T>, elements: usize, work: impl Fn(T) + Sync) {
    let done: Result<(), Infallible> = try_run_shared(tasks, elements, |task| {
        work(task);
        Ok(())
    });
    match done {
        Ok(()) => {}
        Err(never) => match never {},
    }
}

/// [`run_shared`] for fallible work: the first error stops the tasks not yet taken and is
/// returned.
pub(crate) fn try_run_shared<T: Send, E: Send>(
    tasks: Vec<T>,
    elements: usize,
    work: impl Fn(T) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let helpers = if elements < SERIAL_BELOW {
        0
    } else {
        rayon::current_num_threads().saturating_sub(1)
    };
    try_run_with_helpers(tasks, helpers, work)
}

/// [`try_run_shared`] with `helpers` of the pool's threads (at most all of them).
fn try_run_with_helpers<T: Send, E: Send>(
    tasks: Vec<T>,
    helpers: usize,
    work: impl Fn(T) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let count = tasks.len();
    let queue = Mutex::new(tasks.into_iter());
    let failure = Mutex::new(None);
    let next = || queue.lock().unwrap_or_else(PoisonError::into_inner).next();
    let drain = || {
        while let Some(task) = next() {
            if let Err(err) = work(task) {
                failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(err);
                queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .by_ref()
                    .for_each(drop);
            }
        }
    };
    if count < 2 || helpers == 0 {
        drain();
    } else {
        let helpers = helpers.min(rayon::current_num_threads());
        rayon::in_place_scope(|scope| {
            for _ in 0..helpers {
                scope.spawn(|_| drain());
            }
            drain();
        });
    }
    match failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_task_runs_exactly_once() {
        for helpers in [0, 1, 4] {
            let mut out = vec![0u32; 10_000];
            let tasks: Vec<(usize, &mut [u32])> = out.chunks_mut(7).enumerate().collect();
            let calls = AtomicUsize::new(0);
            let done: Result<(), ()> = try_run_with_helpers(tasks, helpers, |(i, chunk)| {
                calls.fetch_add(1, Ordering::Relaxed);
                for (j, v) in chunk.iter_mut().enumerate() {
                    *v += (i * 7 + j) as u32;
                }
                Ok(())
            });
            assert_eq!(done, Ok(()));
            assert_eq!(calls.into_inner(), 10_000usize.div_ceil(7));
            assert!(out.iter().enumerate().all(|(i, &v)| v == i as u32));
        }
    }

    #[test]
    fn the_first_error_stops_the_tasks_not_yet_taken() {
        for helpers in [0, 1, 4] {
            let calls = AtomicUsize::new(0);
            let done = try_run_with_helpers((0..1000).collect(), helpers, |i: u32| {
                calls.fetch_add(1, Ordering::Relaxed);
                if i == 10 {
                    Err(format!("task {i} failed"))
                } else {
                    Ok(())
                }
            });
            assert_eq!(done, Err("task 10 failed".to_string()));
            if helpers == 0 {
                // Alone, this thread takes nothing after the failure.
                assert_eq!(calls.into_inner(), 11);
            }
        }
    }
}
