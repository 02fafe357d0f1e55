//! Moving a tenant's contents between databases on one MySQL server. MySQL cannot
//! rename a database; `RENAME TABLE a.t TO b.t, …` moves any number of tables in one
//! atomic statement, which is what publishing, retiring and swapping in a restored
//! copy are made of. Views, triggers and routines do not move with it (a table with
//! triggers cannot move at all), so they are read first, dropped, and made again in
//! the database the tables went to, with the old database's name in their text
//! replaced by the new one's.

use mysql::Conn;
use mysql::prelude::Queryable;

use super::names::{ident, literal};

/// A view, trigger or routine as `SHOW CREATE` gives it.
struct Object {
    kind: &'static str,
    name: String,
    create: String,
}

/// Moves every table of each `(from, to)` pair in one `RENAME TABLE`, and the views,
/// triggers and routines after them. The `to` databases must exist and hold none of
/// the names.
pub fn move_contents(conn: &mut Conn, pairs: &[(&str, &str)]) -> Result<(), mysql::Error> {
    let mut renames = Vec::new();
    let mut remade = Vec::new();
    for (from, to) in pairs {
        let objects = objects_of(conn, from)?;
        for object in &objects {
            conn.query_drop(format!(
                "DROP {} IF EXISTS {}.{}",
                object.kind,
                ident(from),
                ident(&object.name)
            ))?;
        }
        remade.push((*from, *to, objects));
        for table in base_tables(conn, from)? {
            renames.push(format!(
                "{}.{} TO {}.{}",
                ident(from),
                ident(&table),
                ident(to),
                ident(&table)
            ));
        }
    }
    crate::ops::recovery::crash_point("tables:objects-dropped");
    if !renames.is_empty() {
        conn.query_drop(format!("RENAME TABLE {}", renames.join(", ")))?;
    }
    for (from, to, objects) in remade {
        make_again(conn, from, to, objects)?;
    }
    Ok(())
}

/// The statements that make the views, triggers and routines of `from` again in
/// `to` (the name of `from` in their text made that of `to`), to be run in `to`.
pub fn definitions_for(conn: &mut Conn, from: &str, to: &str) -> Result<Vec<String>, mysql::Error> {
    Ok(objects_of(conn, from)?
        .into_iter()
        .filter(|object| !object.create.is_empty())
        .map(|object| {
            object
                .create
                .replace(&format!("{}.", ident(from)), &format!("{}.", ident(to)))
        })
        .collect())
}

pub fn base_tables(conn: &mut Conn, database: &str) -> Result<Vec<String>, mysql::Error> {
    conn.exec(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND table_type = 'BASE TABLE' \
         ORDER BY table_name",
        (database,),
    )
}

fn objects_of(conn: &mut Conn, database: &str) -> Result<Vec<Object>, mysql::Error> {
    let db = literal(database);
    let mut found: Vec<(String, String)> = conn.query(format!(
        "SELECT 'TRIGGER', trigger_name FROM information_schema.triggers WHERE trigger_schema = {db}
         UNION ALL SELECT 'VIEW', table_name FROM information_schema.views WHERE table_schema = {db}
         UNION ALL SELECT routine_type, routine_name FROM information_schema.routines WHERE routine_schema = {db}"
    ))?;
    found.sort();
    let mut objects = Vec::with_capacity(found.len());
    for (kind, name) in found {
        let kind = match kind.as_str() {
            "TRIGGER" => "TRIGGER",
            "VIEW" => "VIEW",
            "PROCEDURE" => "PROCEDURE",
            _ => "FUNCTION",
        };
        // The statement is the column named "Create …": the second of a view's, the
        // third of the others'.
        let row: Option<mysql::Row> =
            conn.query_first(format!("SHOW CREATE {kind} {}.{}", ident(database), ident(&name)))?;
        let at = if kind == "VIEW" { 1 } else { 2 };
        let create = row
            .and_then(|row| {
                row.get_opt::<Option<String>, _>(at)
                    .and_then(Result::ok)
                    .flatten()
            })
            .unwrap_or_default();
        objects.push(Object { kind, name, create });
    }
    Ok(objects)
}

/// Makes the objects again in `to`; views that name views not made yet wait for a
/// later pass.
fn make_again(conn: &mut Conn, from: &str, to: &str, objects: Vec<Object>) -> Result<(), mysql::Error> {
    if objects.is_empty() {
        return Ok(());
    }
    conn.query_drop(format!("USE {}", ident(to)))?;
    let mut waiting: Vec<Object> = objects;
    loop {
        let mut failed = Vec::new();
        let mut last_error = None;
        let before = waiting.len();
        for object in waiting {
            let create = object
                .create
                .replace(&format!("{}.", ident(from)), &format!("{}.", ident(to)));
            if object.create.is_empty() {
                continue;
            }
            match conn.query_drop(&create) {
                Ok(()) => {}
                Err(err) => {
                    last_error = Some(err);
                    failed.push(object);
                }
            }
        }
        match last_error {
            None => return Ok(()),
            Some(err) if failed.len() == before => return Err(err),
            Some(_) => waiting = failed,
        }
    }
}
