//! Throwaway MariaDB servers started from the installed binaries, for the tests that
//! need a real MySQL-family server (SPEC section 7). The same design as pg_server:
//! never a system server, never TCP (`--skip-networking`); each server is a copy of
//! one `mariadb-install-db` per test binary, in its own short folder under /tmp with
//! its unix socket inside it (`s/mysqld.sock`), durability off. A watchdog shell
//! started with the server kills it and removes its folder as soon as its stdin
//! closes, which happens when the handle is dropped and also when the test process
//! dies in any way, SIGKILL included. A server that cannot start fails the test with
//! its log: it is never a skip.
//!
//! Grants are real. MariaDB's `root@localhost` has a random password chosen when the
//! template is made (the other root accounts `mariadb-install-db` makes are dropped);
//! [`MyServer::sql`] gives it to the client through `MYSQL_PWD`, so a test never
//! depends on which OS user it runs as. Every other account needs its own password.
//!
//! As root the server runs as the `mysql` user (mariadbd refuses root without
//! `--user`). Memory stays small so several servers can run at once: a 32 MB buffer
//! pool, small Aria and MyISAM caches, few I/O threads, no
//! performance_schema; about 55 MB resident each.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};

pub use crate::pg_server::Login;
use crate::pg_server::{copy_folder, random_suffix, remove_at_exit, running_as_root, short_temp_folder};

/// The OS user the server runs as when the tests run as root.
const SERVER_USER: &str = "mysql";

/// InnoDB's files, small: given alike when the template is made and at every start
/// (InnoDB refuses a system tablespace of another size than it is told).
const INNODB_FILES: &[&str] = &[
    "--innodb-data-file-path=ibdata1:4M:autoextend",
    "--innodb-autoextend-increment=1",
    "--innodb-log-file-size=4M",
    "--innodb-temp-data-file-path=ibtmp1:1M:autoextend",
];

/// Memory and durability: small caches, nothing synced, and the character set a
/// Debian server has by default (`--no-defaults` would leave latin1).
const SETTINGS: &[&str] = &[
    "--skip-networking",
    "--skip-name-resolve",
    "--skip-log-bin",
    "--performance-schema=OFF",
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-buffer-size=2M",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--innodb-purge-threads=1",
    "--innodb-read-io-threads=1",
    "--innodb-write-io-threads=2",
    "--key-buffer-size=1M",
    "--aria-pagecache-buffer-size=8M",
    "--query-cache-size=0",
    "--max-connections=60",
    "--table-open-cache=200",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
];

pub struct MyServer {
    folder: PathBuf,
    /// `root@localhost`'s password, the template's.
    root_password: &'static str,
    /// Closing it tells the watchdog to kill the server; a line asks it to kill the
    /// server now and answer "stopped".
    watchdog_stdin: Mutex<Option<ChildStdin>>,
    watchdog_stdout: Mutex<BufReader<ChildStdout>>,
    watchdog: Mutex<Child>,
}

impl MyServer {
    /// A new, running server with only MariaDB's own databases.
    pub fn start() -> MyServer {
        let template = template();
        let folder = short_temp_folder("tmy");
        copy_folder(&template.data, &folder.join("data"));
        std::fs::create_dir(folder.join("s")).unwrap();
        give_to_server_user(&folder);
        let (watchdog, stdin, stdout) = start_with_watchdog(&folder);
        MyServer {
            folder,
            root_password: &template.root_password,
            watchdog_stdin: Mutex::new(Some(stdin)),
            watchdog_stdout: Mutex::new(stdout),
            watchdog: Mutex::new(watchdog),
        }
    }

    /// The server's unix socket. After [`MyServer::stop`] the file stays, as after a
    /// crash, and connections to it are refused.
    pub fn socket_path(&self) -> PathBuf {
        self.folder.join("s").join("mysqld.sock")
    }

    /// An account `admin_…@localhost` with a random password and every right with
    /// the grant option (`server add` needs CREATE, CREATE USER and GRANT OPTION).
    pub fn admin_login(&self) -> Login {
        let login = Login {
            user: format!("admin_{}", random_suffix()),
            password: format!("pw-{}-{}", random_suffix(), random_suffix()),
        };
        self.sql(
            "mysql",
            &format!(
                "CREATE USER '{0}'@'localhost' IDENTIFIED BY '{1}';\
                 GRANT ALL PRIVILEGES ON *.* TO '{0}'@'localhost' WITH GRANT OPTION",
                login.user, login.password
            ),
        );
        login
    }

    /// A connection URL for `login` over the unix socket:
    /// `mysql://USER:PASSWORD@localhost/DATABASE?socket=<percent-encoded path>`.
    pub fn url(&self, login: &Login, database: &str) -> String {
        format!(
            "mysql://{}:{}@localhost/{database}?socket={}",
            login.user,
            login.password,
            self.encoded_socket()
        )
    }

    /// The same without the password.
    pub fn url_without_password(&self, user: &str, database: &str) -> String {
        format!(
            "mysql://{user}@localhost/{database}?socket={}",
            self.encoded_socket()
        )
    }

    fn encoded_socket(&self) -> String {
        percent_encode(&self.socket_path().display().to_string())
    }

    /// Runs SQL (one or more `;`-separated statements) as `root` in `database` and
    /// returns the client's batch output: no column names, tab-separated, trimmed.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let output = self
            .client("root", self.root_password, database)
            .args(["-e", sql])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "mariadb failed on {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim_end().to_string()
    }

    /// Runs SQL as `user` with `password`: Ok(the batch output, trimmed) or Err(the
    /// client's stderr), for tests of what an account may and may not do.
    pub fn sql_as(&self, user: &str, password: &str, database: &str, sql: &str) -> Result<String, String> {
        let output = self
            .client(user, password, database)
            .args(["-e", sql])
            .output()
            .unwrap();
        if output.status.success() {
            Ok(String::from_utf8(output.stdout).unwrap().trim_end().to_string())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// A session of `user` that runs `sql` and stays until it ends, for tests of
    /// what ends sessions; the child's exit tells how it ended.
    pub fn session_as(&self, user: &str, password: &str, database: &str, sql: &str) -> std::process::Child {
        self.client(user, password, database)
            .args(["-e", sql])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Whether `user` can log in to `database` with `password`.
    pub fn can_login(&self, database: &str, user: &str, password: &str) -> bool {
        self.sql_as(user, password, database, "SELECT 1").is_ok()
    }

    /// The `mariadb` client in batch mode over the socket; the password goes through
    /// the environment, never argv.
    fn client(&self, user: &str, password: &str, database: &str) -> Command {
        let mut command = Command::new(program("mariadb"));
        command
            .args(["--no-defaults", "-N", "-B"])
            .arg(format!("--socket={}", self.socket_path().display()))
            .arg(format!("--user={user}"))
            .arg(format!("--database={database}"))
            .env("MYSQL_PWD", password);
        command
    }

    /// Kills the server with SIGKILL, as a crash does: sessions end at once, the
    /// socket file stays behind and refuses connections. Returns once the process is
    /// gone. The handle stays; dropping it still removes the folder.
    pub fn stop(&self) {
        let mut stdin = self.watchdog_stdin.lock().unwrap();
        writeln!(stdin.as_mut().expect("the server's watchdog is gone"), "kill").unwrap();
        let mut line = String::new();
        self.watchdog_stdout.lock().unwrap().read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            "stopped",
            "the watchdog of {} did not answer",
            self.folder.display()
        );
    }
}

impl Drop for MyServer {
    fn drop(&mut self) {
        // EOF on the watchdog's stdin: it kills the server and removes the folder.
        drop(self.watchdog_stdin.lock().unwrap().take());
        let _ = self.watchdog.lock().unwrap().wait();
    }
}

/// An installed MariaDB program: on the PATH, or in /usr/sbin and /usr/bin (where
/// Debian puts them; /usr/sbin is not on a user's PATH).
fn program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "MariaDB is not installed (no {name}): tests that need a server fail \
                 rather than skip; apt-get install mariadb-server"
            )
        })
}

/// Runs `program` as the server's user when the tests run as root, from `folder` (the
/// tests' own working folder may be closed to that user).
fn as_server_user(program: &Path, folder: &Path) -> Command {
    let mut command = if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", SERVER_USER, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    command.current_dir(folder);
    command
}

fn give_to_server_user(folder: &Path) {
    if running_as_root() {
        let status = Command::new("chown")
            .args(["-R", &format!("{SERVER_USER}:")])
            .arg(folder)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "chown of {} failed (is there a {SERVER_USER} user? apt-get install mariadb-server)",
            folder.display()
        );
    }
}

struct Template {
    data: PathBuf,
    root_password: String,
}

/// One `mariadb-install-db` per test binary, with root's password set; every server
/// starts as a copy of it.
fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let folder = short_temp_folder("tmyt");
        remove_at_exit(&folder);
        let data = folder.join("data");
        give_to_server_user(&folder);
        let output = as_server_user(&program("mariadb-install-db"), &folder)
            .args([
                "--no-defaults",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", data.display()))
            // Its own temporary folder: servers sharing /tmp have clashed over
            // temporary table names while installing.
            .arg(format!("--tmpdir={}", folder.display()))
            .args(INNODB_FILES)
            .args(SETTINGS)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // `normal` leaves root without a password, on every host name: keep only
        // root@localhost, with a password. In bootstrap mode the grant tables are not
        // loaded until FLUSH PRIVILEGES.
        let root_password = format!("root-{}-{}", random_suffix(), random_suffix());
        let mut bootstrap = as_server_user(&program("mariadbd"), &folder)
            .arg("--no-defaults")
            .arg("--bootstrap")
            .arg(format!("--datadir={}", data.display()))
            // Its own temporary folder: servers sharing /tmp have clashed over
            // temporary table names while installing.
            .arg(format!("--tmpdir={}", folder.display()))
            .args(INNODB_FILES)
            .args(SETTINGS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        write!(
            bootstrap.stdin.take().unwrap(),
            "DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost';\n\
             FLUSH PRIVILEGES;\n\
             ALTER USER root@localhost IDENTIFIED BY '{root_password}';\n"
        )
        .unwrap();
        let output = bootstrap.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "setting root's password (mariadbd --bootstrap) failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Template { data, root_password }
    })
}

/// Starts the server under a shell that polls its socket until it answers (or the
/// server dies, or 30 s pass: then it prints "failed" and the log, and removes the
/// folder), prints "ready", and then waits on its stdin: a line kills the server and
/// is answered "stopped"; EOF kills it and removes its folder.
fn start_with_watchdog(folder: &Path) -> (Child, ChildStdin, BufReader<ChildStdout>) {
    let script = r#"
        dir=$1 admin=$2; shift 2
        "$@" >"$dir/error.log" 2>&1 &
        pid=$!
        tries=0
        # mariadb-admin ping succeeds once the server answers, even with access denied.
        until "$admin" --no-defaults --socket="$dir/s/mysqld.sock" ping >/dev/null 2>&1; do
            if ! kill -0 "$pid" 2>/dev/null || [ "$tries" -ge 3000 ]; then
                kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
                echo failed; cat "$dir/error.log"; rm -rf "$dir"; exit 1
            fi
            tries=$((tries + 1)); sleep 0.01
        done
        echo ready
        while read -r _; do
            kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
            echo stopped
        done
        kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
        rm -rf "$dir"
    "#;
    let mut child = as_server_user(Path::new("/bin/sh"), folder)
        .args(["-c", script, "watchdog"])
        .arg(folder)
        .arg(program("mariadb-admin"))
        .arg(program("mariadbd"))
        .arg("--no-defaults")
        .arg(format!("--datadir={}", folder.join("data").display()))
        .arg(format!("--tmpdir={}", folder.display()))
        .arg(format!("--socket={}", folder.join("s/mysqld.sock").display()))
        .arg(format!("--pid-file={}", folder.join("mysqld.pid").display()))
        .args(INNODB_FILES)
        .args(SETTINGS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    if line.trim() != "ready" {
        let mut log = String::new();
        let _ = stdout.read_to_string(&mut log);
        let _ = child.wait();
        panic!("the MariaDB server in {} did not start:\n{log}", folder.display());
    }
    (child, stdin, stdout)
}

/// `text` with every byte but the unreserved ones (RFC 3986) percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
