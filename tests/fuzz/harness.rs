//! Runs a reader on generated inputs and judges each case. A case passes when the reader ends
//! in Ok or in an error whose text (`{:#}`, the whole chain) is one line, within 5 s, with a
//! peak heap of at most [`bound`] above what was live before it; an unmutated seed must read
//! Ok. A panic, a multi-line error, a slow case or a larger peak is a failure.
//!
//! Cases run one at a time (a lock), each on its own thread so that a hang is reported rather
//! than waited for; the heap is counted by this binary's global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::io::Write;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::mutate::{Rng, case_seed, mutate};
use crate::readers::Reader;

/// The stack of a case's thread: a Linux main thread's (`ulimit -s`, 8 MiB), where the command
/// line calls the readers.
const MAIN_STACK: usize = 8 << 20;

/// The slowest a case may be.
pub const TIME_LIMIT: Duration = Duration::from_secs(5);

/// The stated allocation bound: 64 MiB plus 64 bytes per input byte. A reader may hold its
/// input several times over (text, rows, parsed JSON), never a size the input only announces.
pub fn bound(input_len: usize) -> u64 {
    (64 << 20) + 64 * input_len as u64
}

/// Above this much live heap during a case the allocator refuses (the process aborts with a
/// line naming the cap) rather than let a hostile size take the machine's memory.
const HARD_CAP: u64 = 2 << 30;

struct CountingAlloc;

static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);
static CAPPED: AtomicBool = AtomicBool::new(false);

// SAFETY: every call goes to `System` unchanged; only the counters are added, and a request
// past the hard cap gets null, which callers handle as a failed allocation.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !grow(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && !grow(new_size - layout.size()) {
            return std::ptr::null_mut();
        }
        if new_size < layout.size() {
            LIVE.fetch_sub((layout.size() - new_size) as u64, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Counts `bytes` more live heap; false (nothing counted) past the hard cap during a case.
fn grow(bytes: usize) -> bool {
    let bytes = bytes as u64;
    if CAPPED.load(Ordering::Relaxed) && LIVE.load(Ordering::Relaxed) + bytes > HARD_CAP {
        let _ = std::io::stderr()
            .write_all(b"fuzz: a case asked for more heap than the 2 GiB hard cap\n");
        return false;
    }
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
    true
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

thread_local! {
    /// The panic of this thread's case, when it is a case thread.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    static IN_CASE: RefCell<bool> = const { RefCell::new(false) };
}

/// A panic hook that keeps a case's panic (message and place) quiet and recorded, and leaves
/// every other panic to the default hook.
fn quiet_panics_in_cases() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CASE.with(|c| *c.borrow()) {
                return default(info);
            }
            let payload = info.payload();
            let message = (payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text panic".into());
            let place = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()));
            PANIC.with(|p| *p.borrow_mut() = Some(message + &place.unwrap_or_default()));
        }));
    });
}

/// How a case ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Ok,
    Error(String),
    Panic(String),
    /// Still running after [`TIME_LIMIT`] (its thread is left behind).
    Hang,
}

/// One case's outcome, time and peak heap above the heap live before it.
pub struct Case {
    pub outcome: Outcome,
    pub seconds: f64,
    pub peak_bytes: u64,
}

/// Runs `reader` on `bytes` in a fresh temporary folder.
pub fn run_case(reader: &'static Reader, bytes: Vec<u8>) -> Case {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    quiet_panics_in_cases();
    let (send, receive) = mpsc::channel();
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    CAPPED.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let thread = std::thread::Builder::new()
        .stack_size(MAIN_STACK)
        .spawn(move || {
            IN_CASE.with(|c| *c.borrow_mut() = true);
            let dir = tempfile::tempdir().expect("a temporary folder");
            let result = catch_unwind(AssertUnwindSafe(|| (reader.read)(dir.path(), &bytes)));
            let outcome = match result {
                Ok(Ok(())) => Outcome::Ok,
                Ok(Err(e)) => Outcome::Error(format!("{e:#}")),
                Err(_) => Outcome::Panic(PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default()),
            };
            drop(dir);
            let _ = send.send(outcome);
        });
    let thread = thread.expect("a thread for the case");
    let outcome = receive.recv_timeout(TIME_LIMIT).unwrap_or(Outcome::Hang);
    if outcome != Outcome::Hang {
        let _ = thread.join();
    }
    CAPPED.store(false, Ordering::Relaxed);
    Case {
        outcome,
        seconds: start.elapsed().as_secs_f64(),
        peak_bytes: PEAK.load(Ordering::Relaxed).saturating_sub(base),
    }
}

/// A failed case: what went wrong and the exact input.
pub struct Failure {
    pub case: usize,
    pub problem: String,
    pub input: Vec<u8>,
}

/// What `cases` cases of one reader gave.
#[derive(Default)]
pub struct Counts {
    pub cases: usize,
    pub ok: usize,
    pub errors: usize,
    /// Errors whose text does not contain the name of the file read.
    pub unnamed: usize,
    pub panics: usize,
    pub max_seconds: f64,
    pub peak_bytes: u64,
    pub failures: Vec<Failure>,
}

/// Case `case` of `reader` from `base_seed`: every eighth the valid seed itself, the others
/// mutated.
pub fn input(reader: &Reader, base_seed: u64, case: usize) -> Vec<u8> {
    let mut rng = Rng::new(case_seed(base_seed, reader.name, case));
    let seed = (reader.seed)(&mut rng);
    match case % 8 {
        0 => seed,
        _ => mutate(&mut rng, &seed),
    }
}

/// Runs cases `cases` of `reader`; stops early after a hang.
pub fn fuzz(reader: &'static Reader, base_seed: u64, cases: Range<usize>) -> Counts {
    let mut counts = Counts::default();
    for case in cases {
        let bytes = input(reader, base_seed, case);
        let result = run_case(reader, bytes.clone());
        counts.cases += 1;
        counts.max_seconds = counts.max_seconds.max(result.seconds);
        counts.peak_bytes = counts.peak_bytes.max(result.peak_bytes);
        if let Some(problem) = judge(&result, &bytes, case % 8 == 0, &mut counts) {
            counts.failures.push(Failure {
                case,
                problem,
                input: bytes,
            });
        }
        if result.outcome == Outcome::Hang {
            break;
        }
    }
    counts
}

/// Counts a case's outcome; returns what is wrong with it, if anything.
fn judge(case: &Case, bytes: &[u8], is_seed: bool, counts: &mut Counts) -> Option<String> {
    let problem = match &case.outcome {
        Outcome::Ok => {
            counts.ok += 1;
            None
        }
        Outcome::Error(e) => {
            counts.errors += 1;
            counts.unnamed += usize::from(!names_a_file(e));
            match (e.contains(['\n', '\r']), is_seed) {
                (true, _) => Some(format!("an error of several lines: {e:?}")),
                (false, true) => Some(format!("the valid seed was refused: {e}")),
                (false, false) => None,
            }
        }
        Outcome::Panic(message) => {
            counts.panics += 1;
            Some(format!("panic: {message}"))
        }
        Outcome::Hang => Some(format!("still running after {TIME_LIMIT:?}")),
    };
    let over = case.peak_bytes > bound(bytes.len());
    let slow = case.seconds > TIME_LIMIT.as_secs_f64();
    problem
        .or_else(|| {
            over.then(|| {
                format!(
                    "peak heap {} B, over the bound {} B",
                    case.peak_bytes,
                    bound(bytes.len())
                )
            })
        })
        .or_else(|| slow.then(|| format!("took {:.1} s", case.seconds)))
}

/// Whether an error names the temporary folder the case's files are in.
fn names_a_file(error: &str) -> bool {
    error.contains(&std::env::temp_dir().display().to_string())
}

/// A short printable form of an input: its bytes escaped, cut to `max` characters.
pub fn preview(bytes: &[u8], max: usize) -> String {
    let text = bytes.escape_ascii().to_string();
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}... ({} bytes)", &text[..end], bytes.len()),
        None => text,
    }
}
