//! The `pac-wgpu` command line: a thin layer that parses arguments into the library.

mod cli;

use std::process::ExitCode;
use std::sync::Mutex;

use pac_wgpu::train::interrupt::Interrupted;

/// The first panic's message and location, printed by `main` as one line once it unwinds.
static PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    quiet_vulkan_probe();
    pac_wgpu::util::device::keep_freed_memory();
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut first) = PANIC.lock() {
            first.get_or_insert((one_line(&message), location));
        }
    }));
    match std::panic::catch_unwind(cli::run) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) if e.is::<Interrupted>() => {
            eprintln!("{e}");
            ExitCode::from(130)
        }
        Ok(Err(e)) => {
            eprintln!("error: {}", one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
        Err(_) => {
            let (message, location) = PANIC
                .lock()
                .ok()
                .and_then(|p| p.clone())
                .unwrap_or_else(|| ("unknown cause".into(), String::new()));
            eprintln!("error: {}", panic_line(&message, &location));
            ExitCode::FAILURE
        }
    }
}

/// `pac-wgpu … | head` ends as other command-line tools do when `head` stops reading: killed by
/// SIGPIPE (status 141 in a shell), without a message. Rust ignores SIGPIPE by default, which
/// turns the write into a panic. Sockets are unaffected (std sends with MSG_NOSIGNAL).
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: first thing in main, before any thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Mesa's device-select Vulkan layer looks for a Wayland display to order the GPUs and prints
/// "error: XDG_RUNTIME_DIR is invalid…" where there is no session (ssh, containers, CI). We pick
/// adapters ourselves, so without a runtime folder the layer is turned off.
fn quiet_vulkan_probe() {
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR");
    if runtime_dir.is_none_or(|dir| !std::path::Path::new(&dir).is_dir()) {
        // SAFETY: first thing in main, before any thread exists to read the environment.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

/// A panic from the GPU stack (out of memory, a lost or refused device) gets what to try;
/// anything else is a bug of ours.
fn panic_line(message: &str, location: &str) -> String {
    let lower = message.to_lowercase();
    let device_words = [
        "out of memory",
        "outofmemory",
        "allocat",
        "device lost",
        "devicelost",
        "request_device",
        "requestdevice",
    ];
    if device_words.iter().any(|w| lower.contains(w)) {
        format!(
            "the device failed: {message}. Try a smaller --batch-size or --eval-batch-size, --grad-accum 2 or more, or another --device (`pac-wgpu devices` lists them); checkpoints already written are intact"
        )
    } else {
        format!("internal error{location}: {message}; please report it")
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::panic_line;

    #[test]
    fn device_failures_say_what_to_try_and_bugs_say_report() {
        let oom = panic_line("Failed to allocate buffer: Out of Memory", " at x.rs:1");
        assert!(oom.starts_with("the device failed"), "{oom}");
        assert!(
            oom.contains("--batch-size") && oom.contains("--device"),
            "{oom}"
        );
        let lost = panic_line("wgpu error: Device lost", "");
        assert!(lost.starts_with("the device failed"), "{lost}");
        let bug = panic_line("index out of bounds: the len is 3", " at src/x.rs:9");
        assert_eq!(
            bug,
            "internal error at src/x.rs:9: index out of bounds: the len is 3; please report it"
        );
    }
}
