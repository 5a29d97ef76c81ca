//! Flags several subcommands share.

use pac_wgpu::util::device::DeviceChoice;

/// `--device`, for the commands that compute.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArg {
    /// Where to compute: auto (best hardware GPU, else cpu), cpu (Burn's CPU backend), or an
    /// adapter index from `pac-wgpu devices` (software adapters such as llvmpipe only by index).
    #[arg(long = "device", value_name = "DEVICE", default_value = "auto")]
    pub choice: DeviceChoice,
}
