//! Generated completions and man pages match the code; README examples run.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Set TENANTCTL_REGENERATE=1 to rewrite completions/ and man/ from the code.
#[test]
fn committed_completions_and_man_pages_are_current() {
    if std::env::var_os("TENANTCTL_REGENERATE").is_some() {
        tenantctl::cli::docs::write_all(&repo()).unwrap();
    }
    let stale = |path: &Path, expected: &[u8]| {
        let committed = std::fs::read(path).unwrap_or_default();
        assert!(
            committed == expected,
            "{} is out of date; regenerate with: TENANTCTL_REGENERATE=1 cargo test --test cli docs",
            path.display()
        );
    };
    for shell in tenantctl::cli::docs::SHELLS {
        let path = repo()
            .join("completions")
            .join(tenantctl::cli::docs::completion_file(shell));
        stale(&path, &tenantctl::cli::docs::completion(shell));
    }
    let pages = tenantctl::cli::docs::man_pages().unwrap();
    for (name, bytes) in &pages {
        stale(&repo().join("man").join(name), bytes);
    }
    let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"tenantctl.1") && names.contains(&"tenantctl-customer-create.1"),
        "{names:?}"
    );
    let mut committed = TestEnv::new().names_in(&repo().join("man"));
    committed.retain(|n| !names.contains(&n.as_str()));
    assert!(
        committed.is_empty(),
        "man pages for commands that no longer exist: {committed:?}"
    );
}

#[test]
fn completions_print_without_a_home_and_bash_accepts_them() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = env.ok(&["completions", shell]);
        assert!(run.stdout.contains("tenantctl"), "{shell}");
    }
    env.fails(&["completions", "tcsh"], 2);
    assert!(!env.home.exists());
    let script = env.root.join("c.bash");
    std::fs::write(&script, env.ok(&["completions", "bash"]).stdout).unwrap();
    if let Ok(status) = Command::new("bash").arg("-n").arg(&script).status() {
        assert!(status.success(), "bash -n rejects the completion script");
    }
}

/// Runs every README block fenced as ```sh tested, in order, against a fresh home.
#[test]
fn readme_examples_run() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match &mut current {
            None if line.trim_start().starts_with("```sh tested") => current = Some(String::new()),
            Some(block) if line.trim_start().starts_with("```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    assert!(blocks.len() >= 2, "README has no tested examples");
    let env = TestEnv::new();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for block in blocks {
        let output = env
            .shell(&format!("set -eu\n{block}"))
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "README block failed:\n{block}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
