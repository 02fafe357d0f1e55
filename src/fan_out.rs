//! The one work queue: runs a job on every item of a list on a bounded pool of threads
//! (backups, migrations, provisioning, fleet SQL, vacuum).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::ops::Progress;

/// What a fan-out's workers mostly wait on, which decides how many of them it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Copies and migrations wait on fsync far more than they compute: eight workers
    /// per core keep the disk busy.
    Fsync,
    /// Statements and VACUUM keep a core and the page cache busy: two per core.
    Compute,
}

/// How many workers a fan-out gets when the operator does not say.
pub fn default_jobs(load: Load) -> usize {
    let per_core = match load {
        Load::Fsync => 8,
        Load::Compute => 2,
    };
    per_core * std::thread::available_parallelism().map(usize::from).unwrap_or(2)
}

/// When a fan-out stops starting new items.
pub enum Stop<T> {
    /// Every item runs, whatever the others did.
    Never,
    /// No new item starts after the first result this says failed; items already
    /// running finish and are reported.
    OnFirstError(fn(&T) -> bool),
}

/// What the caller's thread says after seeing a batch of finished items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Start no new item (say, the results could not be recorded).
    Stop,
}

/// Runs `work` on every item, up to `jobs` at a time. The calling thread receives the
/// finished items in batches as they arrive, advances `progress` and hands each batch
/// to `arrived` (to record it while the rest still run). Results come back in item
/// order; an item that was never started because of `stop` or `arrived` is `None`.
/// A worker that panics takes its item with it, and the panic is raised again here.
pub fn fan_out<I: Sync, T: Send>(
    items: &[I],
    jobs: usize,
    stop: Stop<T>,
    progress: &dyn Progress,
    work: impl Fn(&I) -> T + Sync,
    mut arrived: impl FnMut(&[(usize, T)]) -> Flow,
) -> Vec<Option<T>> {
    let next = AtomicUsize::new(0);
    let stopped = AtomicBool::new(false);
    let (sender, receiver) = mpsc::channel::<(usize, T)>();
    let mut results: Vec<Option<T>> = items.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(items.len()) {
            let sender = sender.clone();
            let (next, stopped, stop, work) = (&next, &stopped, &stop, &work);
            scope.spawn(move || {
                while !stopped.load(Ordering::SeqCst) {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(index) else { break };
                    let result = work(item);
                    if let Stop::OnFirstError(failed) = stop
                        && failed(&result)
                    {
                        stopped.store(true, Ordering::SeqCst);
                    }
                    if sender.send((index, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        let mut batch = Vec::new();
        while let Ok(first) = receiver.recv() {
            batch.push(first);
            batch.extend(receiver.try_iter());
            progress.advance(batch.len() as u64);
            if arrived(&batch) == Flow::Stop {
                stopped.store(true, Ordering::SeqCst);
            }
            for (index, result) in batch.drain(..) {
                results[index] = Some(result);
            }
        }
    });
    results
}

/// Runs `work` on every item, up to `jobs` at a time, and returns every result in item
/// order: the fan-out that never stops early and reports no progress.
pub fn fan_out_all<I: Sync, T: Send>(items: &[I], jobs: usize, work: impl Fn(&I) -> T + Sync) -> Vec<T> {
    // With `Stop::Never` every item runs, so every slot is filled.
    fan_out(items, jobs, Stop::Never, &crate::ops::NoProgress, work, |_| {
        Flow::Continue
    })
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn results_come_back_in_item_order() {
        let items: Vec<u64> = (0..50).collect();
        let squares = fan_out_all(&items, 7, |n| {
            // Later items finish first, so arrival order differs from item order.
            std::thread::yield_now();
            n * n
        });
        assert_eq!(squares, items.iter().map(|n| n * n).collect::<Vec<_>>());
    }

    #[test]
    fn no_item_starts_after_the_first_error() {
        let items: Vec<usize> = (0..100).collect();
        let started = Mutex::new(Vec::new());
        let results = fan_out(
            &items,
            1,
            Stop::OnFirstError(Result::is_err),
            &crate::ops::NoProgress,
            |n| {
                started.lock().unwrap().push(*n);
                if *n == 3 { Err(*n) } else { Ok(*n) }
            },
            |_| Flow::Continue,
        );
        assert_eq!(started.into_inner().unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(results[3], Some(Err(3)));
        assert!(results[4..].iter().all(Option::is_none));
    }

    #[test]
    fn the_caller_sees_every_finished_item_once_and_progress_counts_them() {
        struct Count(AtomicUsize);
        impl Progress for Count {
            fn advance(&self, done: u64) {
                self.0.fetch_add(done as usize, Ordering::SeqCst);
            }
        }
        let items: Vec<usize> = (0..100).collect();
        let progress = Count(AtomicUsize::new(0));
        let mut seen = Vec::new();
        let results = fan_out(
            &items,
            4,
            Stop::Never,
            &progress,
            |n| *n,
            |batch| {
                seen.extend(batch.iter().map(|(index, _)| *index));
                Flow::Continue
            },
        );
        seen.sort_unstable();
        assert_eq!(seen, items);
        assert_eq!(progress.0.load(Ordering::SeqCst), items.len());
        assert!(results.iter().zip(&items).all(|(r, n)| *r == Some(*n)));
    }

    #[test]
    fn default_jobs_give_fsync_bound_work_more_workers() {
        assert!(default_jobs(Load::Fsync) >= 8);
        assert_eq!(default_jobs(Load::Fsync), 4 * default_jobs(Load::Compute));
    }
}
