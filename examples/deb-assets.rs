//! Writes the man pages and shell completions the Debian package ships,
//! generated from the real command line definition (`ordersync::cli::Cli`),
//! so they can never drift from the binary:
//!
//! ```sh
//! cargo run --example deb-assets -- target/assets
//! ```
//!
//! `contrib/deb/build` runs this before `cargo deb`. (An example rather than a
//! build script: the CLI types live in the library, which a build script
//! cannot use, and the generators stay out of the shipped binary.)

use std::path::PathBuf;

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .context("usage: deb-assets OUT_DIR")?,
    );
    let man = out.join("man");
    let completions = out.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let cmd = ordersync::cli::Cli::command();
    // ordersync.1 plus one page per subcommand (ordersync-run.1, …).
    clap_mangen::generate_to(cmd.clone(), &man)
        .with_context(|| format!("writing man pages into {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "ordersync", &completions)
            .with_context(|| format!("writing {shell} completions"))?;
    }
    println!("wrote {} and {}", man.display(), completions.display());
    Ok(())
}
