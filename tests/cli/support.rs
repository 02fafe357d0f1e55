//! A temporary home with a clean environment, and helpers to run the binary in it.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// The signal `Child::kill` sends on Linux.
const SIGKILL: i32 = 9;

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

    /// A run of the binary to describe step by step, then run (just's `Test` is the
    /// model): `env.cmd(&["db", "migrate"]).expect_code(7).stderr_has("failed").run()`.
    pub fn cmd(&self, args: &[&str]) -> Cmd<'_> {
        Cmd {
            env: self,
            args: args.iter().map(OsString::from).collect(),
            vars: Vec::new(),
            stdin: None,
            code: 0,
            stderr: None,
        }
    }

    pub fn run_with(&self, args: &[&str], setup: impl FnOnce(&mut std::process::Command)) -> Run {
        let mut cmd = self.command();
        cmd.args(args);
        setup(&mut cmd);
        Run::from(cmd.output().unwrap())
    }

    /// Runs and checks nothing: for tests that look at the outcome themselves.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, |_| {})
    }

    /// Runs and expects exit 0 with nothing on stderr.
    pub fn ok(&self, args: &[&str]) -> Run {
        self.cmd(args).run()
    }

    /// Runs and expects exit 0 with `warning` on stderr: every word a passing run
    /// writes to stderr is one a test expects.
    pub fn ok_warning(&self, args: &[&str], warning: &str) -> Run {
        self.cmd(args).stderr_has(warning).run()
    }

    /// Runs with `--json`, expects exit 0 and nothing on stderr, returns the parsed document.
    pub fn json(&self, args: &[&str]) -> Value {
        self.cmd(args).json()
    }

    /// Runs and expects `code`, no data on stdout, and one `error:` line on stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> Run {
        let run = self.cmd(args).expect_code(code).run();
        assert!(
            run.stdout.is_empty(),
            "stdout must carry no data on error: {run:?}"
        );
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one error line expected: {run:?}");
        assert!(lines[0].starts_with("error: "), "{run:?}");
        run
    }

    /// A home with one customer a slug, each `SLUG@example.com` named `SLUG`.
    pub fn fleet(slugs: &[&str]) -> Self {
        let env = Self::initialised();
        for slug in slugs {
            env.customer(&format!("{slug}@example.com"), slug, &["--slug", slug]);
        }
        env
    }

    /// Holds the exclusive lock on `HOME/.lock` until the file is dropped, as a
    /// restore or a migrate in another process would.
    pub fn hold_home_lock(&self) -> std::fs::File {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.home.join(".lock"))
            .unwrap();
        lock.lock().unwrap();
        lock
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

/// One described run; see [`TestEnv::cmd`].
pub struct Cmd<'e> {
    env: &'e TestEnv,
    args: Vec<OsString>,
    /// Variables to set (`Some`) or remove (`None`) on top of the clean environment.
    vars: Vec<(OsString, Option<OsString>)>,
    stdin: Option<Vec<u8>>,
    code: i32,
    stderr: Option<String>,
}

impl Cmd<'_> {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.vars
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.vars.push((key.as_ref().to_owned(), None));
        self
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// The exit code to expect (0 unless told).
    pub fn expect_code(mut self, code: i32) -> Self {
        self.code = code;
        self
    }

    /// Expects stderr to hold `text`; without this, a run that exits 0 must leave
    /// stderr empty (a failing run's stderr is the test's to check).
    pub fn stderr_has(mut self, text: &str) -> Self {
        self.stderr = Some(text.to_string());
        self
    }

    /// Runs, checks the exit code and stderr, returns what it produced.
    pub fn run(self) -> Run {
        let (code, expected, args) = (self.code, self.stderr.clone(), self.args.clone());
        let run = Run::from(self.spawn().wait_with_output().unwrap());
        assert_eq!(run.code, code, "tenantctl {args:?}: {run:?}");
        match expected {
            Some(text) => assert!(
                run.stderr.contains(&text),
                "tenantctl {args:?}: stderr lacks {text:?}: {run:?}"
            ),
            None if code == 0 => assert!(
                run.stderr.is_empty(),
                "tenantctl {args:?}: unexpected stderr: {run:?}"
            ),
            None => {}
        }
        run
    }

    /// Runs with `--json` and returns the parsed stdout.
    pub fn json(self) -> Value {
        self.arg("--json").run().json()
    }

    /// Starts the run with stdout and stderr captured; stdin, if given, is fed from
    /// a thread so a command that writes before it reads cannot block the test.
    pub fn spawn(self) -> Child {
        let mut command = self.command();
        let stdin = if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        command.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        if let Some(input) = self.stdin {
            let mut pipe = child.stdin.take().unwrap();
            // A command may exit before reading all of it; that is its business.
            std::thread::spawn(move || pipe.write_all(&input));
        }
        child
    }

    fn command(&self) -> std::process::Command {
        let mut command = self.env.command();
        command.args(&self.args);
        for (key, value) in &self.vars {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
    }

    /// Starts the run, kills it (SIGKILL) as soon as `during()` sees it mid-operation,
    /// and says whether the kill landed there: `during()` was seen, the process died of
    /// the kill rather than exiting, and `left_behind()` still finds the unfinished
    /// work afterwards. A kill that misses proves nothing, so callers count landings
    /// (see [`land_kills`]). Polls without sleeping, for at most a minute.
    pub fn kill_when(self, during: impl Fn() -> bool, left_behind: impl Fn() -> bool) -> bool {
        let mut command = self.command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = command.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !during() {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("tenantctl {:?} neither finished nor showed its work", self.args);
            }
            std::thread::yield_now();
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        status.signal() == Some(SIGKILL) && left_behind()
    }

    /// Runs with `TENANTCTL_CRASH_AT=step`, so that the debug build kills itself with
    /// SIGKILL on reaching that step, and asserts that it did.
    pub fn killed_at_step(self, step: &str) {
        let args = self.args.clone();
        let output = self
            .env("TENANTCTL_CRASH_AT", step)
            .spawn()
            .wait_with_output()
            .unwrap();
        assert_eq!(
            output.status.signal(),
            Some(SIGKILL),
            "tenantctl {args:?} did not die at {step}: {:?}",
            Run::from(output)
        );
    }

    /// [`Cmd::kill_when`] a new name in `dir` that `unfinished` recognises (a staging
    /// file or folder) shows, and landed if that name is still there after the kill.
    pub fn kill_on_new(self, dir: &Path, unfinished: impl Fn(&str) -> bool) -> bool {
        let before = names_matching(dir, &unfinished);
        let appeared = || {
            names_matching(dir, &unfinished)
                .difference(&before)
                .next()
                .is_some()
        };
        self.kill_when(appeared, appeared)
    }
}

/// Starts every command at once and waits for them all: a crowd of writers.
pub fn all_at_once<'e>(crowd: impl IntoIterator<Item = Cmd<'e>>) -> Vec<Run> {
    let children: Vec<_> = crowd.into_iter().map(Cmd::spawn).collect();
    children
        .into_iter()
        .map(|child| Run::from(child.wait_with_output().unwrap()))
        .collect()
}

/// Repeats `attempt(n)` until `landings` of its kills have landed mid-operation,
/// failing after five times as many tries: a kill test whose kills all miss (the
/// command finished first) would pass without testing anything.
pub fn land_kills(landings: usize, mut attempt: impl FnMut(usize) -> bool) {
    let mut landed = 0;
    let tries = landings * 5;
    for n in 0..tries {
        if landed == landings {
            return;
        }
        if attempt(n) {
            landed += 1;
        }
    }
    assert_eq!(
        landed, landings,
        "only {landed} of {tries} kills landed mid-operation"
    );
}

/// Names in `dir` that `wanted` accepts; none when `dir` is missing.
pub fn names_matching(dir: &Path, wanted: impl Fn(&str) -> bool) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| wanted(name))
                .collect()
        })
        .unwrap_or_default()
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
