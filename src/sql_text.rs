//! Reading SQL text without a parser: where its statements end and whether it holds
//! transaction control, outside strings, quoted names, comments and trigger bodies.

/// The first transaction-control statement (BEGIN, COMMIT, END, ROLLBACK, SAVEPOINT,
/// RELEASE) in a script, outside trigger bodies, strings and comments.
pub fn transaction_control(sql: &str) -> Option<String> {
    top_level_statements(sql).into_iter().find_map(|statement| {
        let first = statement.split_whitespace().next()?.to_ascii_uppercase();
        ["BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"]
            .contains(&first.as_str())
            .then_some(first)
    })
}

/// How many statements SQL text holds, a trigger with its body counting as one.
pub fn statement_count(sql: &str) -> usize {
    top_level_statements(sql).len()
}

/// The statements of a script without comments and empty pieces; a CREATE TRIGGER
/// is one statement, whose body's own statements are not listed.
fn top_level_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_trigger = false;
    for statement in statements(sql) {
        let words: Vec<String> = statement
            .split_whitespace()
            .take(4)
            .map(str::to_ascii_uppercase)
            .collect();
        let Some(first) = words.first() else { continue };
        if in_trigger {
            // The body's statements follow; a segment starting with END closes it.
            in_trigger = first != "END";
            continue;
        }
        in_trigger = first == "CREATE" && words.iter().skip(1).any(|w| w == "TRIGGER");
        out.push(statement);
    }
    out
}

/// Splits SQL text at semicolons that are not inside strings, quoted names or comments;
/// comments are dropped.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' | '[' => {
                let close = if c == '[' { ']' } else { c };
                current.push(' ');
                for inner in chars.by_ref() {
                    if inner == close {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for inner in chars.by_ref() {
                    if inner == '\n' {
                        break;
                    }
                }
                current.push(' ');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = ' ';
                for inner in chars.by_ref() {
                    if previous == '*' && inner == '/' {
                        break;
                    }
                    previous = inner;
                }
                current.push(' ');
            }
            ';' => out.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    out.push(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_control_is_found_outside_triggers_strings_and_comments() {
        assert_eq!(
            transaction_control("CREATE TABLE a (x); COMMIT; CREATE TABLE b (x);").as_deref(),
            Some("COMMIT")
        );
        assert_eq!(
            transaction_control("begin transaction; CREATE TABLE a (x);").as_deref(),
            Some("BEGIN")
        );
        assert_eq!(
            transaction_control("SAVEPOINT s; RELEASE s;").as_deref(),
            Some("SAVEPOINT")
        );
        let fine = "CREATE TABLE a (x, note TEXT DEFAULT 'commit; rollback');
            -- COMMIT; in a comment
            /* BEGIN; END; */
            CREATE TRIGGER t AFTER INSERT ON a BEGIN
                UPDATE a SET x = CASE WHEN x IS NULL THEN 0 ELSE x END;
                DELETE FROM a WHERE x < 0;
            END;
            CREATE TABLE \"end\" (x);";
        assert_eq!(transaction_control(fine), None);
        assert_eq!(
            transaction_control("CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; END; COMMIT;").as_deref(),
            Some("COMMIT")
        );
        assert_eq!(statement_count(fine), 3);
        assert_eq!(statement_count("SELECT 1; -- done\n ;"), 1);
        assert_eq!(
            statement_count("CREATE TABLE t9 (x); INSERT INTO t9 VALUES (1)"),
            2
        );
    }
}
