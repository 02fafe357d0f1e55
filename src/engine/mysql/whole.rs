//! A MySQL tenant copied whole to another MySQL server for a move: `mariadb-dump`
//! of the source piped into the `mariadb` client on the target's staging database.
//! Both read their login from an options file of their own (0600, in the home,
//! removed after), never from their arguments. Triggers, views and routines the
//! tenant's own user made keep it as their definer (it exists on the target once
//! the tenant is published there); the `DEFINER` clauses naming anyone else (the
//! source's admin, who ran the migrations) are left out on the way, so those belong
//! to the target's admin as they would on a tenant built there.
//! Publishing moves them with the tables.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use super::tools::MyTools;
use crate::engine::DumpSource;
use crate::error::{Error, Result};

/// Pipes the dump of `from` into the client logged in by `to_options` (which names
/// the database to fill), keeping the definers that name `tenant_user`; `Err` with
/// what the tools said when either failed.
pub(super) fn pipe(
    tools: &MyTools,
    from: &DumpSource,
    to_options: &str,
    tenant_user: &str,
    scratch: &Path,
) -> Result<()> {
    let io = |what: &str, e: std::io::Error| Error::io(what.to_string(), e);
    let dump_login = options_file(
        scratch,
        from.options.as_ref().map_or("", |secret| secret.expose()),
    )?;
    let client_login = options_file(scratch, to_options)?;
    let database = from
        .database
        .clone()
        .ok_or_else(|| Error::unexpected("a MySQL dump needs the database's name"))?;
    let mut dump = Command::new(&from.program);
    dump.arg(format!("--defaults-extra-file={}", dump_login.path().display()))
        .args([
            "--single-transaction",
            "--routines",
            "--triggers",
            "--no-create-db",
            "--hex-blob",
            "--default-character-set=utf8mb4",
            "--skip-comments",
        ])
        .arg("--")
        .arg(&database)
        .envs(from.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut dumping = dump
        .spawn()
        .map_err(|e| io(&format!("starting {}", from.program.display()), e))?;
    let mut client = Command::new(&tools.client);
    client
        .arg(format!("--defaults-extra-file={}", client_login.path().display()))
        .args(["--binary-mode", "--default-character-set=utf8mb4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut loading = match client.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = dumping.kill();
            let _ = dumping.wait();
            return Err(io(&format!("starting {}", tools.client.display()), e));
        }
    };
    let output = dumping.stdout.take().expect("piped above");
    let input = loading.stdin.take().expect("piped above");
    let (dump_err, load_err) = (
        dumping.stderr.take().expect("piped above"),
        loading.stderr.take().expect("piped above"),
    );
    let (carried, dump_said, load_said, load_status) = std::thread::scope(|scope| {
        let carry = scope.spawn(move || carry(output, input, tenant_user));
        let dump_said = scope.spawn(move || said(dump_err));
        let load_said = scope.spawn(move || said(load_err));
        let load_status = loading.wait();
        (
            carry.join().unwrap_or(Ok(())),
            dump_said.join().unwrap_or_default(),
            load_said.join().unwrap_or_default(),
            load_status,
        )
    });
    let load_status = load_status.map_err(|e| io("waiting for the mariadb client", e))?;
    if !load_status.success() {
        // The dump may be blocked on a pipe nobody reads any more.
        let _ = dumping.kill();
    }
    let dump_status = dumping
        .wait()
        .map_err(|e| io(&format!("waiting for {}", from.program.display()), e))?;
    if !dump_status.success() {
        return Err(Error::unexpected(format!(
            "{} failed ({dump_status}): {}",
            from.program.display(),
            dump_said.trim()
        )));
    }
    if !load_status.success() {
        return Err(Error::unexpected(format!(
            "{} failed ({load_status}): {}",
            tools.client.display(),
            load_said.trim()
        )));
    }
    carried.map_err(|e| io("carrying the dump to the mariadb client", e))
}

/// An options file holding `text`, readable by its owner only, removed when dropped.
fn options_file(dir: &Path, text: &str) -> Result<tempfile::NamedTempFile> {
    let mut file = tempfile::Builder::new()
        .prefix(".tenantctl-my-")
        .suffix(".cnf")
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("making an options file in {}", dir.display()), e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.flush())
        .map_err(|e| Error::io("writing an options file".to_string(), e))?;
    Ok(file)
}

/// Copies the dump into the client, line by line, leaving out the `DEFINER=…`
/// clauses that do not name `keep`, outside the rows' `INSERT`s.
fn carry(from: impl Read, to: impl Write, keep: &str) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(1 << 20, from);
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, to);
    let mut line = Vec::with_capacity(1 << 16);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        match line.starts_with(b"INSERT INTO ") {
            true => writer.write_all(&line)?,
            false => writer.write_all(&without_definer(&line, keep))?,
        }
    }
    writer.flush()
}

/// `line` without `DEFINER=`user`@`host`` (each part backquoted, `` ` `` doubled)
/// where the user is not `keep`.
fn without_definer(line: &[u8], keep: &str) -> Vec<u8> {
    let kept = format!("DEFINER={}@", super::names::ident(keep));
    const MARK: &[u8] = b"DEFINER=`";
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if line[i..].starts_with(MARK) {
            let mut j = i + MARK.len() - 1;
            let mut quoted_parts = 0;
            // Two quoted names with an @ between them.
            while quoted_parts < 2 && j < line.len() && line[j] == b'`' {
                j += 1;
                while j < line.len() {
                    if line[j] == b'`' {
                        if line.get(j + 1) == Some(&b'`') {
                            j += 2;
                            continue;
                        }
                        j += 1;
                        break;
                    }
                    j += 1;
                }
                quoted_parts += 1;
                if quoted_parts == 1 && line.get(j) == Some(&b'@') {
                    j += 1;
                }
            }
            if quoted_parts == 2 && !line[i..j].starts_with(kept.as_bytes()) {
                i = j;
                continue;
            }
        }
        out.push(line[i]);
        i += 1;
    }
    out
}

fn said(mut from: impl Read) -> String {
    let mut text = String::new();
    let _ = from.read_to_string(&mut text);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definers_are_left_out_and_rows_are_not_touched() {
        let trigger = b"/*!50003 CREATE*/ /*!50017 DEFINER=`ad``min`@`localhost`*/ /*!50003 TRIGGER t\n";
        assert_eq!(
            String::from_utf8(without_definer(trigger, "tenant_a")).unwrap(),
            "/*!50003 CREATE*/ /*!50017 */ /*!50003 TRIGGER t\n"
        );
        let view = b"/*!50013 DEFINER=`a`@`%` SQL SECURITY DEFINER */\n";
        assert_eq!(
            String::from_utf8(without_definer(view, "tenant_a")).unwrap(),
            "/*!50013  SQL SECURITY DEFINER */\n"
        );
        let own = b"CREATE DEFINER=`tenant_a`@`%` PROCEDURE p()\n";
        assert_eq!(without_definer(own, "tenant_a"), own.to_vec());
        let mut out = Vec::new();
        carry(
            &b"INSERT INTO t VALUES ('DEFINER=`a`@`b`');\n"[..],
            &mut out,
            "tenant_a",
        )
        .unwrap();
        assert_eq!(out, b"INSERT INTO t VALUES ('DEFINER=`a`@`b`');\n");
    }
}
