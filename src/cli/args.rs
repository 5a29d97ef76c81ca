//! What every subcommand shares.

use pac_wgpu::util::device::DeviceChoice;

/// Flags every command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Where to compute: auto (best hardware GPU, else cpu), cpu (Burn's CPU backend), or an
    /// adapter index from `pac-wgpu devices` (software adapters such as llvmpipe only by index).
    #[arg(long, global = true, default_value = "auto")]
    pub device: DeviceChoice,
    /// No progress bars (also implied when stdout is not a terminal).
    #[arg(long, global = true)]
    pub quiet: bool,
}
