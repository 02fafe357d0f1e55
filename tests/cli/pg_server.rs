//! Throwaway PostgreSQL clusters started from the installed binaries, for the tests
//! that need a real server (SPEC section 7). Never a system cluster, never TCP: each
//! cluster is a copy of one `initdb` per test binary, in its own short folder under
//! /tmp with its unix socket inside it, fsync off. A watchdog shell started with the
//! cluster stops it and removes its folder as soon as its stdin closes, which happens
//! when the handle is dropped and also when the test process dies in any way, SIGKILL
//! included. A server that cannot start fails the test: it is never a skip.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The superuser initdb creates; it may connect without a password, everyone else
/// needs one, as on a real server.
const SUPERUSER: &str = "postgres";
/// The port is only part of the socket's file name: every cluster has its own folder.
const PORT: u16 = 5432;

pub struct PgServer {
    folder: PathBuf,
    bin: PathBuf,
    /// Closing it tells the watchdog to stop the cluster.
    watchdog_stdin: Mutex<Option<ChildStdin>>,
    watchdog: Mutex<Child>,
}

/// A login made for a test: name and password.
pub struct Login {
    pub user: String,
    pub password: String,
}

impl PgServer {
    /// A new, running, empty cluster.
    pub fn start() -> PgServer {
        PgServer::start_with("")
    }

    /// The same with `wal_level = logical` and room for a few subscriptions (each
    /// takes a slot and a walsender on its source, an apply worker on its target),
    /// for tests of logical replication. No more than that: each costs memory.
    pub fn start_logical() -> PgServer {
        PgServer::start_with(
            "wal_level = logical\nmax_replication_slots = 4\nmax_wal_senders = 4\n\
             max_logical_replication_workers = 4\nmax_worker_processes = 8\n",
        )
    }

    /// A new cluster with `settings` (postgresql.conf lines) over the tests' own.
    fn start_with(settings: &str) -> PgServer {
        let bin = bin_dir();
        let folder = short_temp_folder("tpg");
        let data = folder.join("data");
        copy_folder(template_cluster(), &data);
        let socket_dir = folder.join("s");
        std::fs::create_dir(&socket_dir).unwrap();
        configure(&data, &socket_dir, settings);
        give_to_server_user(&folder);
        let (watchdog, stdin) = start_with_watchdog(&bin, &folder);
        PgServer {
            folder,
            bin,
            watchdog_stdin: Mutex::new(Some(stdin)),
            watchdog: Mutex::new(watchdog),
        }
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.folder.join("s")
    }

    /// A login role with a random password and the rights `server add` asks for.
    pub fn admin_login(&self) -> Login {
        let login = Login {
            user: format!("admin_{}", random_suffix()),
            password: format!("pw-{}-{}", random_suffix(), random_suffix()),
        };
        self.psql(
            "postgres",
            &format!(
                "CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD '{}'",
                login.user, login.password
            ),
        );
        login
    }

    /// A connection URL for `login` over the unix socket (its folder as the
    /// percent-encoded host, as libpq writes it).
    pub fn url(&self, login: &Login, database: &str) -> String {
        format!(
            "postgresql://{}:{}@{}/{database}",
            login.user,
            login.password,
            self.host()
        )
    }

    /// The same without the password.
    pub fn url_without_password(&self, user: &str, database: &str) -> String {
        format!("postgresql://{user}@{}/{database}", self.host())
    }

    fn host(&self) -> String {
        format!(
            "{}:{PORT}",
            self.socket_dir().display().to_string().replace('/', "%2F")
        )
    }

    /// Runs SQL as the superuser and returns psql's unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", &self.socket_dir().display().to_string()])
            .args([
                "-p",
                &PORT.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ])
            .env_remove("PGPASSWORD")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim_end().to_string()
    }

    /// A session of the superuser, for a test that must hold a lock or poll the
    /// server while a command runs.
    pub fn connect(&self, database: &str) -> postgres::Client {
        postgres::Config::new()
            .host_path(self.socket_dir())
            .port(PORT)
            .user(SUPERUSER)
            .dbname(database)
            .application_name("tenantctl-tests")
            .connect(postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to {database}: {e}"))
    }

    /// The server's unix socket: gone while the server is stopped.
    pub fn socket_file(&self) -> PathBuf {
        self.socket_dir().join(format!(".s.PGSQL.{PORT}"))
    }

    /// Stops the server the way a crash does (`pg_ctl stop -m immediate`): sessions
    /// end at once, nothing is checkpointed. The handle stays; dropping it still
    /// removes the folder.
    pub fn stop(&self) {
        let output = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.folder.join("data"))
            .args(["-m", "immediate", "-w", "-s", "stop"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Whether psql can log in as `user` with `password` (a role's LOGIN and password).
    pub fn can_login(&self, database: &str, user: &str, password: &str) -> bool {
        Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-w"])
            .args(["-h", &self.socket_dir().display().to_string()])
            .args([
                "-p",
                &PORT.to_string(),
                "-U",
                user,
                "-d",
                database,
                "-c",
                "SELECT 1",
            ])
            .env("PGPASSWORD", password)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // EOF on the watchdog's stdin: it stops the cluster and removes the folder.
        drop(self.watchdog_stdin.lock().unwrap().take());
        let _ = self.watchdog.lock().unwrap().wait();
    }
}

/// The folder of the newest installed PostgreSQL's programs.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): \
             tests that need a server fail rather than skip; apt-get install postgresql"
        ),
    }
}

pub(crate) fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs `program` as the server's own user when the tests run as root (PostgreSQL
/// refuses to run as root).
fn as_server_user(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", SUPERUSER, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn give_to_server_user(folder: &Path) {
    if running_as_root() {
        let status = Command::new("chown")
            .args(["-R", &format!("{SUPERUSER}:")])
            .arg(folder)
            .status()
            .unwrap();
        assert!(status.success(), "chown of {} failed", folder.display());
    }
}

/// One `initdb` per test binary; every cluster starts as a copy of it.
fn template_cluster() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let folder = short_temp_folder("tpgt");
        remove_at_exit(&folder);
        let data = folder.join("data");
        give_to_server_user(&folder);
        let output = as_server_user(&bin_dir().join("initdb"))
            .args([
                "--no-sync",
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--auth=trust",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // The superuser keeps trust over the socket (the tests' own psql); every other
        // role must give its password, as on a real server.
        std::fs::write(
            data.join("pg_hba.conf"),
            format!("local all {SUPERUSER} trust\nlocal all all scram-sha-256\n"),
        )
        .unwrap();
        data
    })
}

pub(crate) fn copy_folder(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success(), "copying the template cluster failed");
}

fn configure(data: &Path, socket_dir: &Path, settings: &str) {
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .unwrap();
    writeln!(
        conf,
        "listen_addresses = ''\nport = {PORT}\nunix_socket_directories = '{}'\n\
         fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
         max_connections = 60\nshared_buffers = 16MB\nlog_min_messages = warning\n{settings}",
        socket_dir.display()
    )
    .unwrap();
}

/// Starts the cluster under a shell that waits on its stdin, then stops the cluster
/// and removes its folder. Returns once the server accepts connections (`pg_ctl -w`
/// waits for that; the shell then says "ready").
fn start_with_watchdog(bin: &Path, folder: &Path) -> (Child, ChildStdin) {
    let script = r#"
        "$1/pg_ctl" -D "$2/data" -l "$2/log" -w -s start >&2 || { cat "$2/log" >&2; exit 1; }
        echo ready
        read -r _
        # A test may have stopped it already.
        if "$1/pg_ctl" -D "$2/data" status >/dev/null 2>&1; then
            "$1/pg_ctl" -D "$2/data" -m immediate -s stop >&2
        fi
        rm -rf "$2"
    "#;
    let mut child = as_server_user(Path::new("/bin/sh"))
        .args(["-c", script, "watchdog"])
        .arg(bin)
        .arg(folder)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        "ready",
        "the PostgreSQL server in {} did not start (see its log above)",
        folder.display()
    );
    (child, stdin)
}

/// Removes `folder` when this process ends, however it ends: a shell waits for EOF on
/// a pipe whose only writer is this process.
pub(crate) fn remove_at_exit(folder: &Path) {
    let mut child = Command::new("/bin/sh")
        .args(["-c", r#"read -r _; rm -rf "$1""#, "remove_at_exit"])
        .arg(folder)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    // Held open, unused, until the process exits.
    std::mem::forget(child.stdin.take());
    std::mem::forget(child);
}

/// A new folder under /tmp with a short name: a unix socket path must stay under
/// about 100 bytes.
pub(crate) fn short_temp_folder(prefix: &str) -> PathBuf {
    let folder = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap()
        .keep();
    // The server's user must be able to reach the folder when it is handed over.
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700)).unwrap();
    folder
}

pub(crate) fn random_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..8)
        .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
        .collect::<String>()
        .to_lowercase()
}
