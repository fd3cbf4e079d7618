//! `tillrelay generate man|completions DIR` (a hidden command): the manual pages and
//! the shell completions, generated from the clap definitions in `cli` so that they can
//! never drift from `--help`. cross/deb.sh runs it with the host binary and packs the
//! output; nothing of it is kept in the repository.
//!
//! Output: `tillrelay.1` and `tillrelay-<command>.1` for every visible command
//! (clap_mangen), and `tillrelay.bash`, `_tillrelay` (zsh), `tillrelay.fish`
//! (clap_complete). Hidden commands (this one) are left out of both.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Writes `tillrelay.1` and one page per visible command into `dir` (created).
pub fn man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing manual pages into {}", dir.display()))
}

/// Writes the bash, zsh and fish completions into `dir` (created).
pub fn completions(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "tillrelay", dir)
            .with_context(|| format!("writing {shell} completions into {}", dir.display()))?;
    }
    Ok(())
}
