use pac_wgpu::util::device::{DeviceChoice, adapters, auto_choice};

#[derive(clap::Args, Debug)]
pub struct DevicesArgs {
    /// Print {"adapters": [...], "auto": "N" or "cpu"}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &DevicesArgs) -> anyhow::Result<()> {
    let list = adapters();
    let auto = auto_choice();
    if args.json {
        let value = serde_json::json!({ "adapters": list, "auto": auto.to_string() });
        println!("{value}");
        return Ok(());
    }
    println!(
        "{:<6} {:<40} {:<8} {:<11} driver",
        "index", "name", "backend", "type"
    );
    for a in list {
        println!(
            "{:<6} {:<40} {:<8} {:<11} {}",
            a.index, a.name, a.backend, a.kind, a.driver
        );
    }
    println!(
        "{:<6} {:<40} {:<8} {:<11} -",
        "cpu", "Burn flex (pure Rust)", "-", "cpu"
    );
    if list.is_empty() {
        println!(
            "no wgpu adapter: install a Vulkan driver (on Debian: mesa-vulkan-drivers) to use a GPU"
        );
    }
    let note = match auto {
        DeviceChoice::Cpu if !list.is_empty() => {
            " (only software adapters here; pick one by index to use it)"
        }
        _ => "",
    };
    println!("auto: {auto}{note}");
    Ok(())
}
