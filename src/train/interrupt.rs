//! Ctrl-C and SIGTERM: the loop finishes the step it is in, writes checkpoints/last and stops
//! with [`Interrupted`]. A second Ctrl-C exits at once; the previous checkpoint is then kept.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

/// Makes Ctrl-C and SIGTERM ask the training loop to stop (the CLI calls this; a library user
/// who does not is interrupted the usual way).
#[cfg(feature = "native")]
pub fn install() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal set it.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&STOP))?;
        signal_hook::flag::register(signal, Arc::clone(&STOP))?;
    }
    Ok(())
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The run stopped on request after a step, with checkpoints/last written.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted at epoch {epoch} after step {step}; checkpoints/last is saved. Continue with: pac-wgpu train --output-dir {} --resume --device {device}",
    output_dir.display()
)]
pub struct Interrupted {
    pub output_dir: PathBuf,
    pub epoch: usize,
    pub step: u64,
    pub device: String,
}
