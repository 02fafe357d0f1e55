//! Shell completions and man pages, generated from the one clap definition.

use std::path::Path;

use clap::Command;
use clap_complete::Shell;

use crate::error::{IoContext, Result};

pub const SHELLS: [Shell; 5] = [
    Shell::Bash,
    Shell::Zsh,
    Shell::Fish,
    Shell::Elvish,
    Shell::PowerShell,
];

/// The completion script for one shell.
pub fn completion(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut super::command(), "tenantctl", &mut out);
    out
}

/// File name of a committed completion script.
pub fn completion_file(shell: Shell) -> String {
    match shell {
        Shell::Bash => "tenantctl.bash".into(),
        Shell::Zsh => "_tenantctl".into(),
        Shell::Fish => "tenantctl.fish".into(),
        Shell::Elvish => "tenantctl.elv".into(),
        Shell::PowerShell => "_tenantctl.ps1".into(),
        other => format!("tenantctl.{other}"),
    }
}

/// Every man page: `tenantctl.1` and `tenantctl-<sub>[-<sub>].1` for each subcommand.
pub fn man_pages() -> Result<Vec<(String, Vec<u8>)>> {
    let mut root = super::command();
    root.build();
    let mut pages = Vec::new();
    collect_pages(&root, "tenantctl", &mut pages)?;
    Ok(pages)
}

fn collect_pages(cmd: &Command, name: &str, pages: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    let mut out = Vec::new();
    let page = cmd
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    clap_mangen::Man::new(page)
        .render(&mut out)
        .io_context(|| format!("rendering the man page {name}"))?;
    pages.push((format!("{name}.1"), out));
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        collect_pages(sub, &format!("{name}-{}", sub.get_name()), pages)?;
    }
    Ok(())
}

/// Writes `completions/` and `man/` under `root`, as committed in the repository.
pub fn write_all(root: &Path) -> Result<()> {
    let completions = root.join("completions");
    let man = root.join("man");
    for dir in [&completions, &man] {
        std::fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    }
    for shell in SHELLS {
        let path = completions.join(completion_file(shell));
        std::fs::write(&path, completion(shell)).io_context(|| format!("writing {}", path.display()))?;
    }
    for (name, bytes) in man_pages()? {
        let path = man.join(name);
        std::fs::write(&path, bytes).io_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
