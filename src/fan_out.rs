//! The one work queue: runs a job on every item of a list on a bounded pool of threads
//! (backups, migrations, provisioning, fleet SQL, vacuum).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};

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

/// Connections a fan-out holds at once on one database server unless told otherwise.
pub const DEFAULT_JOBS_PER_SERVER: u16 = 4;

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

/// How many items may run at once in each lane, and which lane each item is in: the
/// tenants of one database server share a lane, so a fan-out never holds more of its
/// connections than it may, while the other lanes keep their own pace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lanes {
    capacity: Vec<usize>,
    lane_of: Vec<usize>,
}

impl Lanes {
    /// Every one of `items` items in one lane of `jobs`.
    pub fn single(items: usize, jobs: usize) -> Self {
        Lanes {
            capacity: vec![jobs.max(1)],
            lane_of: vec![0; items],
        }
    }

    /// Lanes of the given capacities (each at least 1), item `i` in lane `lane_of[i]`.
    pub fn new(capacity: Vec<usize>, lane_of: Vec<usize>) -> Self {
        let capacity: Vec<usize> = capacity.into_iter().map(|c| c.max(1)).collect();
        assert!(
            lane_of.iter().all(|lane| *lane < capacity.len()),
            "an item in no lane"
        );
        Lanes { capacity, lane_of }
    }

    /// The most items that can run at once.
    fn workers(&self) -> usize {
        let mut used = vec![false; self.capacity.len()];
        self.lane_of.iter().for_each(|lane| used[*lane] = true);
        self.capacity
            .iter()
            .zip(used)
            .filter(|(_, used)| *used)
            .map(|(capacity, _)| capacity)
            .sum::<usize>()
            .min(self.lane_of.len())
    }
}

/// The items not yet started, per lane, and how many of each lane run now.
struct Queue {
    waiting: Vec<VecDeque<usize>>,
    running: Vec<usize>,
    /// Where the next search for a free lane begins, so lanes take turns.
    turn: usize,
}

impl Queue {
    fn new(lanes: &Lanes) -> Self {
        let mut waiting = vec![VecDeque::new(); lanes.capacity.len()];
        for (index, lane) in lanes.lane_of.iter().enumerate() {
            waiting[*lane].push_back(index);
        }
        Queue {
            running: vec![0; waiting.len()],
            waiting,
            turn: 0,
        }
    }

    /// The next item of a lane that has room, marked running. `None` when every lane
    /// with items left is full: those lanes' own workers will drain them.
    fn take(&mut self, lanes: &Lanes) -> Option<(usize, usize)> {
        let count = self.waiting.len();
        for step in 0..count {
            let lane = (self.turn + step) % count;
            if self.running[lane] < lanes.capacity[lane]
                && let Some(index) = self.waiting[lane].pop_front()
            {
                self.running[lane] += 1;
                self.turn = (lane + 1) % count;
                return Some((lane, index));
            }
        }
        None
    }
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
    arrived: impl FnMut(&[(usize, T)]) -> Flow,
) -> Vec<Option<T>> {
    let lanes = Lanes::single(items.len(), jobs);
    fan_out_in_lanes(items, &lanes, stop, progress, work, arrived)
}

/// [`fan_out`] with the items in `lanes`, each lane running at most its capacity at
/// once; within a lane items start in item order.
pub fn fan_out_in_lanes<I: Sync, T: Send>(
    items: &[I],
    lanes: &Lanes,
    stop: Stop<T>,
    progress: &dyn Progress,
    work: impl Fn(&I) -> T + Sync,
    mut arrived: impl FnMut(&[(usize, T)]) -> Flow,
) -> Vec<Option<T>> {
    assert_eq!(lanes.lane_of.len(), items.len(), "one lane per item");
    let queue = Mutex::new(Queue::new(lanes));
    let stopped = AtomicBool::new(false);
    let (sender, receiver) = mpsc::channel::<(usize, T)>();
    let mut results: Vec<Option<T>> = items.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        for _ in 0..lanes.workers() {
            let sender = sender.clone();
            let (queue, stopped, stop, work) = (&queue, &stopped, &stop, &work);
            scope.spawn(move || {
                while !stopped.load(Ordering::SeqCst) {
                    let Some((lane, index)) = lock(queue).take(lanes) else {
                        break;
                    };
                    let result = work(&items[index]);
                    lock(queue).running[lane] -= 1;
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

/// The queue's lock; a worker that panicked while holding it left it consistent (it
/// only pops and counts), so a poisoned lock is taken as it is.
fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `work` on every item, up to `jobs` at a time, and returns every result in item
/// order: the fan-out that never stops early and reports no progress. Its workers take
/// the next item from a shared counter and keep their results until they are done, so
/// an item costs no lock and no wake-up: this fan-out also serves lists of many tiny
/// items (parsing files).
pub fn fan_out_all<I: Sync, T: Send>(items: &[I], jobs: usize, work: impl Fn(&I) -> T + Sync) -> Vec<T> {
    let workers = jobs.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.iter().map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let finished: Vec<Vec<(usize, T)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        // Items start in item order, as in every fan-out.
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(index) else {
                            return done;
                        };
                        done.push((index, work(item)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut results: Vec<Option<T>> = items.iter().map(|_| None).collect();
    for (index, result) in finished.into_iter().flatten() {
        results[index] = Some(result);
    }
    results.into_iter().flatten().collect()
}

/// [`fan_out_all`] with the items in `lanes`.
pub fn fan_out_all_in_lanes<I: Sync, T: Send>(
    items: &[I],
    lanes: &Lanes,
    work: impl Fn(&I) -> T + Sync,
) -> Vec<T> {
    fan_out_in_lanes(items, lanes, Stop::Never, &crate::ops::NoProgress, work, |_| {
        Flow::Continue
    })
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn no_lane_runs_more_than_its_capacity_and_every_item_runs() {
        let items: Vec<usize> = (0..60).collect();
        let capacity = vec![1, 3, 2];
        let lanes = Lanes::new(capacity.clone(), items.iter().map(|n| n % 3).collect());
        let running: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        let peak: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        let results = fan_out_in_lanes(
            &items,
            &lanes,
            Stop::Never,
            &crate::ops::NoProgress,
            |n| {
                let lane = n % 3;
                let now = running[lane].fetch_add(1, Ordering::SeqCst) + 1;
                peak[lane].fetch_max(now, Ordering::SeqCst);
                std::thread::yield_now();
                running[lane].fetch_sub(1, Ordering::SeqCst);
                *n
            },
            |_| Flow::Continue,
        );
        assert!(results.iter().zip(&items).all(|(r, n)| *r == Some(*n)));
        for (lane, limit) in capacity.iter().enumerate() {
            assert!(
                peak[lane].load(Ordering::SeqCst) <= *limit,
                "lane {lane} ran over"
            );
        }
    }

    #[test]
    fn workers_are_the_capacity_of_the_lanes_in_use() {
        assert_eq!(Lanes::new(vec![8, 4, 4], vec![0, 1, 1, 1, 1, 1]).workers(), 6);
        assert_eq!(Lanes::new(vec![8, 4], vec![1; 10]).workers(), 4);
        assert_eq!(Lanes::single(3, 16).workers(), 3);
    }

    #[test]
    fn default_jobs_give_fsync_bound_work_more_workers() {
        assert!(default_jobs(Load::Fsync) >= 8);
        assert_eq!(default_jobs(Load::Fsync), 4 * default_jobs(Load::Compute));
    }
}
