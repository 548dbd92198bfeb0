//! `device`: the program at the door (see the `facegate_device` library).

use clap::Parser;
use facegate_device::cli::{Cli, Command};
use facegate_device::commands;

#[global_allocator]
static ALLOCATOR: facegate_arena::FrameArenaAllocator = facegate_arena::FrameArenaAllocator;

fn main() -> anyhow::Result<()> {
    facegate_arena::configure_system_heap();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match Cli::parse().command {
        Command::Run(args) => commands::run(args),
        Command::Check { common } => commands::check(&common),
        Command::Release { common } => commands::release(&common),
        Command::Embed { common, images } => commands::embed(&common, &images),
        Command::Unpair { common, all } => commands::unpair(&common, all),
        #[cfg(feature = "tools")]
        Command::Bench { common, runs, save_gallery, threads } => {
            commands::bench(&common, runs, save_gallery.as_deref(), threads)
        }
        #[cfg(feature = "tools")]
        Command::Demo { lfw, models, keep } => commands::demo(&lfw, models, keep.as_deref()),
    }
}
