//! What the binary says about itself, through the real binary: `--version` names the
//! version and the commit it was built from (build.rs), and the hidden
//! `generate man|completions DIR` (used by cross/deb.sh for the .deb) writes a manual
//! page per command and bash/zsh/fish completions that mention every command
//! `--help` lists, so the packaged pages cannot drift from the command line.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::tillrelay;

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The commands `tillrelay --help` lists (without clap's own `help`).
fn commands() -> Vec<String> {
    let help = stdout_of(tillrelay().arg("--help"));
    let listed: Vec<String> = help
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect();
    assert!(
        listed.len() >= 10 && listed.iter().any(|c| c == "run"),
        "could not read the commands from --help:\n{help}"
    );
    listed
}

/// The subcommands `tillrelay COMMAND --help` lists (none for most commands).
fn subcommands(command: &str) -> Vec<String> {
    let help = stdout_of(tillrelay().args([command, "--help"]));
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn version_names_the_version_and_the_commit() {
    let out = stdout_of(tillrelay().arg("--version"));
    let line = out.trim_end();
    let commit = line
        .strip_prefix(&format!("tillrelay {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version output: {out:?}"));
    // In a git checkout (CI clones one) it is HEAD's short hash; outside git, "unknown".
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_string());
    match head {
        Some(head) => assert_eq!(commit, head, "{out:?}"),
        None => assert_eq!(commit, "unknown", "{out:?}"),
    }
}

#[test]
fn generated_man_pages_cover_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man");
    stdout_of(tillrelay().arg("generate").arg("man").arg(&man));
    let main_page = fs::read_to_string(man.join("tillrelay.1")).unwrap();
    assert!(main_page.contains(".TH tillrelay 1"), "{main_page}");
    for command in commands() {
        let page_name = format!("tillrelay-{command}.1");
        assert!(
            // roff escapes every '-' in the name.
            main_page.contains(&format!("tillrelay-{command}(1)").replace('-', "\\-")),
            "tillrelay.1 does not list {command}"
        );
        let page =
            fs::read_to_string(man.join(&page_name)).unwrap_or_else(|e| panic!("{page_name}: {e}"));
        assert!(page.contains(".SH NAME"), "{page_name}:\n{page}");
    }
    // Exactly those pages, and one per subcommand of a command that has them
    // (`config keygen`, `config sign`): the hidden `generate` has none.
    let mut pages: Vec<String> = fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    let mut wanted: Vec<String> = commands()
        .iter()
        .flat_map(|c| {
            let mut v = vec![format!("tillrelay-{c}.1")];
            v.extend(
                subcommands(c)
                    .iter()
                    .map(|s| format!("tillrelay-{c}-{s}.1")),
            );
            v
        })
        .chain(["tillrelay.1".to_string()])
        .collect();
    wanted.sort();
    assert_eq!(pages, wanted);
    assert!(
        wanted.iter().any(|p| p == "tillrelay-config-sign.1"),
        "{wanted:?}"
    );
}

#[test]
fn generated_completions_cover_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("completions");
    stdout_of(tillrelay().arg("generate").arg("completions").arg(&out));
    for file in ["tillrelay.bash", "_tillrelay", "tillrelay.fish"] {
        let text = fs::read_to_string(out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        for command in commands() {
            assert!(text.contains(&command), "{file} does not mention {command}");
        }
        assert!(
            text.contains("--config") || text.contains("-l config"),
            "{file} lacks the global --config"
        );
    }
}

#[test]
fn generate_reports_an_unwritable_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, "x").unwrap();
    let out = tillrelay()
        .args(["generate", "man"])
        .arg(Path::new(&file).join("man"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not-a-dir"), "{err}");
}
