//! A temporary home with a clean environment, and helpers to run the binary in it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_tenantctl");

pub struct TestEnv {
    _dir: TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

impl TestEnv {
    /// A home folder that does not exist yet.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        TestEnv {
            home: root.join("home"),
            root,
            _dir: dir,
        }
    }

    /// A home after `tenantctl init`.
    pub fn initialised() -> Self {
        let env = Self::new();
        env.ok(&["init"]);
        env
    }

    /// A command with an empty environment but for the home and a fixed actor.
    pub fn command(&self) -> std::process::Command {
        self.in_env(std::process::Command::new(BIN))
    }

    /// `sh -c script` in the same clean environment; `$TENANTCTL` names the binary.
    pub fn shell(&self, script: &str) -> std::process::Command {
        let mut cmd = self.in_env(std::process::Command::new("sh"));
        cmd.arg("-c").arg(script).env("TENANTCTL", BIN);
        cmd
    }

    fn in_env(&self, mut cmd: std::process::Command) -> std::process::Command {
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TENANTCTL_HOME", &self.home)
            .env("TENANTCTL_ACTOR", "tester")
            .current_dir(&self.root);
        cmd
    }

    pub fn run_with(&self, args: &[&str], setup: impl FnOnce(&mut std::process::Command)) -> Run {
        let mut cmd = self.command();
        cmd.args(args);
        setup(&mut cmd);
        Run::from(cmd.output().unwrap())
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, |_| {})
    }

    /// Runs and expects exit 0 with nothing on stderr.
    pub fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, 0, "tenantctl {args:?} failed: {run:?}");
        run
    }

    /// Runs with `--json`, expects exit 0, returns the parsed document.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let run = self.ok(&all);
        assert!(run.stderr.is_empty(), "unexpected stderr: {run:?}");
        run.json()
    }

    /// Runs and expects `code`, no data on stdout, and one `error:` line on stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, code, "tenantctl {args:?}: {run:?}");
        assert!(
            run.stdout.is_empty(),
            "stdout must carry no data on error: {run:?}"
        );
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one error line expected: {run:?}");
        assert!(lines[0].starts_with("error: "), "{run:?}");
        run
    }

    pub fn catalog(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.home.join("catalog.db")).unwrap()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.catalog().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Creates a customer and returns its JSON.
    pub fn customer(&self, email: &str, name: &str, extra: &[&str]) -> Value {
        let mut args = vec!["customer", "create", email, name];
        args.extend_from_slice(extra);
        self.json(&args)
    }

    /// Files under `dir`, sorted, as names.
    pub fn names_in(&self, dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }
}

pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Asserts that a JSON object has exactly these fields, in this order.
pub fn assert_fields(value: &Value, fields: &[&str]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"));
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(keys, fields, "fields of {value}");
}

pub const CUSTOMER_FIELDS: &[&str] = &[
    "id",
    "slug",
    "email",
    "name",
    "company_name",
    "plan",
    "status",
    "status_reason",
    "max_sites",
    "max_storage_mb",
    "max_bandwidth_gb",
    "max_api_calls",
    "metadata",
    "db_path",
    "schema_version",
    "created_at",
    "updated_at",
    "suspended_at",
    "deleted_at",
];

/// An RFC 3339 UTC timestamp to the second, as every timestamp must be.
pub fn assert_timestamp(value: &Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("not a string: {value}"));
    assert!(chrono::DateTime::parse_from_rfc3339(text).is_ok(), "{text}");
    assert!(text.ends_with('Z') && text.len() == 20, "{text}");
}
