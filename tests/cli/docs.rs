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
    // The binary under test, and scripts/ for the README's throwaway-postgres.
    let path = format!(
        "{}:{}:{}",
        bin_dir.display(),
        repo().join("scripts").display(),
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

/// Splits a command line as a shell would, for the simple quoting the examples use.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, ' ') => {
                if started || !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
                started = false;
            }
            (None, c) => current.push(c),
        }
    }
    if started || !current.is_empty() {
        words.push(current);
    }
    words
}

fn every_command(command: &clap::Command, path: &str, found: &mut Vec<(String, clap::Command)>) {
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("{path} {}", sub.get_name());
        found.push((name.clone(), sub.clone()));
        every_command(sub, &name, found);
    }
}

#[test]
fn every_command_has_an_example_that_parses() {
    let mut root = tenantctl::cli::command();
    root.build();
    let mut commands = Vec::new();
    every_command(&root, "tenantctl", &mut commands);
    assert!(commands.len() > 50, "{} commands", commands.len());
    for (name, command) in commands {
        let help = command
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        assert!(help.contains("Example"), "'{name}' has no example in its --help");
        for line in help
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("tenantctl "))
        {
            let mut words = shell_words(line);
            if let Some(cut) = words.iter().position(|w| w == ">" || w == "<" || w == "|") {
                words.truncate(cut);
            }
            let parsed = tenantctl::cli::command().try_get_matches_from(&words);
            assert!(
                parsed.is_ok(),
                "the example '{line}' of '{name}' does not parse: {:?}",
                parsed.err()
            );
        }
    }
}

#[test]
fn the_main_man_page_renders() {
    let page = repo().join("man/tenantctl.1");
    match Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
    {
        Ok(output) if output.status.success() => {
            let text = String::from_utf8_lossy(&output.stdout);
            assert!(text.contains("tenantctl"), "{text}");
            assert!(text.contains("customer"), "the subcommands are listed");
        }
        // No man on this machine: groff alone must still accept the page.
        _ => {
            let status = Command::new("groff")
                .args(["-man", "-Tutf8", "-z"])
                .arg(&page)
                .status();
            if let Ok(status) = status {
                assert!(status.success());
            }
        }
    }
}
