//! The kernel launches a thread issues on a wgpu device, cubecl's own (matrix products,
//! reductions, element-wise ops) and this project's; and the distinct kernels a run launches,
//! each of which cubecl compiled into one pipeline.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;

use burn::cubecl::launched::LaunchedKernels;
use burn::cubecl::logging::{LaunchObservation, LaunchObserver};

struct Tally {
    thread: ThreadId,
    by_kernel: Mutex<BTreeMap<&'static str, u64>>,
}

impl LaunchObserver for Tally {
    /// Called on the thread that launches.
    fn launched(&self, kernel: &'static str) {
        if std::thread::current().id() != self.thread {
            return;
        }
        let mut by_kernel = self
            .by_kernel
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *by_kernel.entry(kernel).or_default() += 1;
    }
}

/// Counts the launches this thread issues from [`LaunchCount::start`] until it drops. cubecl
/// has one observer per process, so one counts at a time: a second `start`, on any thread,
/// waits until the first drops (on the same thread it would never return).
pub struct LaunchCount {
    tally: Arc<Tally>,
    /// Dropped before `_turn`, so that the next count starts once this one has let go.
    _observation: LaunchObservation,
    _turn: MutexGuard<'static, ()>,
}

/// Held by the live [`LaunchCount`].
static COUNTING: Mutex<()> = Mutex::new(());

impl LaunchCount {
    pub fn start() -> Self {
        let turn = COUNTING.lock().unwrap_or_else(PoisonError::into_inner);
        let tally = Arc::new(Tally {
            thread: std::thread::current().id(),
            by_kernel: Mutex::default(),
        });
        LaunchCount {
            _observation: LaunchObservation::new(tally.clone()),
            _turn: turn,
            tally,
        }
    }

    /// Launches so far.
    pub fn total(&self) -> u64 {
        self.by_kernel().values().sum()
    }

    /// Launches so far per kernel type, as cubecl names it (one type can have several
    /// pipelines, one per shape class or vector width).
    pub fn by_kernel(&self) -> BTreeMap<&'static str, u64> {
        let by_kernel = self.tally.by_kernel.lock();
        by_kernel.unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The distinct kernels launched between [`Pipelines::start`] and [`Pipelines::count`], on every
/// thread of the process. A kernel is compiled once per process, so on a fresh process this is the number of
/// pipelines the work compiled, autotune's candidates included.
pub struct Pipelines(LaunchedKernels);

impl Pipelines {
    pub fn start() -> Self {
        Pipelines(LaunchedKernels::new())
    }

    pub fn count(self) -> usize {
        self.0.finish().len()
    }
}
