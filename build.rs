//! Build script: records the commit the binary is built from, for `tillrelay --version`
//! (`TILLRELAY_COMMIT`, the short hash of `git rev-parse --short HEAD`).
//!
//! Invariant: the build never fails because of git. Outside a git checkout (a source
//! tarball, a vendored copy) or without git installed the commit is "unknown".

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TILLRELAY_COMMIT={commit}");
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the ref it points at (a
    // commit on the branch). --git-path resolves both for worktrees too. Without git,
    // only this script's own change triggers a rerun.
    println!("cargo:rerun-if-changed=build.rs");
    for path in [
        Some("HEAD".to_string()),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(p) = git(&["rev-parse", "--git-path", &path]) {
            let p = PathBuf::from(p);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
}
