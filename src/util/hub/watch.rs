//! What a download reports as it goes, for the thread that watches it.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

/// What a download reports as it goes: when data last moved, whether the body has started
/// (before that, the etag timeout applies), and the size the hub announced.
#[derive(Clone)]
pub struct Watch {
    pub(super) start: Instant,
    pub(super) last_ms: Arc<AtomicU64>,
    pub(super) body: Arc<AtomicBool>,
    pub(super) size: Arc<AtomicU64>,
    pub(super) bar: Option<ProgressBar>,
}

impl Watch {
    /// A watch on the download of `file`, with a progress bar when stderr is a terminal.
    pub fn new(file: &str) -> Watch {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::hidden().with_message(file.to_string());
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar
        });
        Watch {
            start: Instant::now(),
            last_ms: Arc::default(),
            body: Arc::default(),
            size: Arc::default(),
            bar,
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    pub(super) fn idle(&self) -> Duration {
        self.start.elapsed() - Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// The body of `size` bytes starts arriving, `from` of them already in the cache.
    pub(super) fn started(&self, size: u64, from: u64) {
        self.size.store(size, Ordering::Relaxed);
        self.body.store(true, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(size);
            bar.set_position(from);
        }
        self.touch();
    }

    pub(super) fn advanced(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
        self.touch();
    }
}
