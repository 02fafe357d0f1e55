//! Finding the `*.json` files under an import folder: never following a symlink out of
//! it, never reading more than 1 MiB of a file.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Problem, SourceFile};
use crate::error::{Error, Result};

pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Every `*.json` file under `dir`, in a stable order, read or with why not.
pub fn scan(dir: &Path) -> Result<Vec<SourceFile>> {
    let root = dir
        .canonicalize()
        .map_err(|e| Error::usage(format!("cannot read import folder {}: {e}", dir.display())))?;
    if !root.is_dir() {
        return Err(Error::usage(format!("{} is not a folder", dir.display())));
    }
    let mut found = Vec::new();
    let shared: Arc<Path> = Arc::from(root.as_path());
    walk(&shared, &root, &mut found)?;
    found.shrink_to_fit();
    let customer_files: std::collections::HashSet<Arc<str>> = found
        .iter()
        .filter(|f| is_customer_file(&f.path))
        .map(|f| Arc::clone(&f.path))
        .collect();
    for file in &mut found {
        file.customer_file = owner_of(&file.path).and_then(|c| customer_files.get(c.as_str()).cloned());
    }
    Ok(found)
}

pub fn is_customer_file(relative: &str) -> bool {
    relative == "customer.json" || relative.ends_with("/customer.json")
}

/// For `<folder>/sites/<file>.json`, the path `<folder>/customer.json`.
fn owner_of(relative: &str) -> Option<String> {
    let (parent, _) = relative.rsplit_once('/')?;
    let folder = match parent.rsplit_once('/') {
        Some((folder, "sites")) => format!("{folder}/"),
        None if parent == "sites" => String::new(),
        _ => return None,
    };
    Some(format!("{folder}customer.json"))
}

fn walk(root: &Arc<Path>, dir: &Path, found: &mut Vec<SourceFile>) -> Result<()> {
    // The entry's type comes with the folder listing: no stat per file.
    let mut entries: Vec<(PathBuf, fs::FileType)> = fs::read_dir(dir)
        .map_err(|e| Error::usage(format!("cannot read folder {}: {e}", dir.display())))?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            Some((entry.path(), entry.file_type().ok()?))
        })
        .collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (path, file_type) in entries {
        let relative = path
            .strip_prefix(&**root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        let is_json = relative.ends_with(".json");
        if file_type.is_symlink() {
            match fs::canonicalize(&path) {
                Ok(target) if target.starts_with(root) && target.is_file() && is_json => {
                    found.push(to_read(root, relative, Some(target)));
                }
                Ok(target) if !target.starts_with(root) && is_json => found.push(failed(
                    root,
                    relative,
                    "is a symlink that leads out of the import folder",
                )),
                Err(_) if is_json => found.push(failed(root, relative, "is a broken symlink")),
                // Linked folders are not entered: they could loop or lead out.
                _ => {}
            }
        } else if file_type.is_dir() {
            walk(root, &path, found)?;
        } else if file_type.is_file() && is_json {
            found.push(to_read(root, relative, None));
        } else if is_json {
            found.push(failed(root, relative, "is not a regular file"));
        }
    }
    Ok(())
}

fn failed(root: &Arc<Path>, relative: String, reason: &str) -> SourceFile {
    SourceFile {
        path: relative.into(),
        root: Arc::clone(root),
        target: None,
        refused: Some(Box::new(Problem::new("file", reason))),
        customer_file: None,
    }
}

pub(super) fn too_big(len: u64) -> Problem {
    Problem::new("file", format!("is {len} bytes, over the 1 MiB limit"))
}

/// A file to read later; its size is checked when it is read.
fn to_read(root: &Arc<Path>, relative: String, target: Option<PathBuf>) -> SourceFile {
    SourceFile {
        path: relative.into(),
        root: Arc::clone(root),
        target: target.map(Box::new),
        refused: None,
        customer_file: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_of_a_customer_folder_know_their_customer_file() {
        assert_eq!(
            owner_of("acme/sites/main.json").as_deref(),
            Some("acme/customer.json")
        );
        assert_eq!(owner_of("sites/main.json").as_deref(), Some("customer.json"));
        assert_eq!(owner_of("acme/main.json"), None);
        assert!(is_customer_file("acme/customer.json") && !is_customer_file("acme/my-customer.json"));
    }

    #[test]
    fn symlinks_out_and_big_files_are_refused_without_reading() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.json"), b"{}").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("big.json"),
            vec![b' '; (MAX_FILE_BYTES + 1) as usize],
        )
        .unwrap();
        std::fs::write(dir.path().join("ok.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.json"), dir.path().join("escape.json"))
            .unwrap();
        std::os::unix::fs::symlink(dir.path().join("ok.json"), dir.path().join("inside.json")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linked-folder")).unwrap();
        let found = scan(dir.path()).unwrap();
        let names: Vec<(&str, bool)> = found.iter().map(|f| (&*f.path, f.read().is_ok())).collect();
        assert_eq!(
            names,
            [
                ("big.json", false),
                ("escape.json", false),
                ("inside.json", true),
                ("ok.json", true)
            ]
        );
    }
}
