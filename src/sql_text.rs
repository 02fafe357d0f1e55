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
            // The body's statements follow; a segment starting with END closes it,
            // but not MySQL's `END IF;`, `END LOOP;` and the like inside it.
            let block_end = words.get(1).is_some_and(|w| is_block_end(w) || w == "CASE");
            in_trigger = first != "END" || block_end;
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

/// The statements of a MySQL script, each with its own text (comments kept inside,
/// `;` inside strings, quoted names and comments left alone), for running them one
/// at a time. A `CREATE TRIGGER|PROCEDURE|FUNCTION|EVENT` whose body is a
/// `BEGIN … END` block is one statement, as a client's `DELIMITER` would make it.
/// MySQL strings take backslash escapes; `#` starts a comment too.
pub fn mysql_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    // Open BEGIN blocks of a routine's body, and the words of the statement so far.
    let (mut depth, mut word, mut words) = (0usize, String::new(), Vec::<String>::new());
    let mut chars = sql.chars().peekable();
    let end_word = |word: &mut String, words: &mut Vec<String>, depth: &mut usize| {
        if word.is_empty() {
            return;
        }
        let upper = word.to_ascii_uppercase();
        let routine = words.first().is_some_and(|w| w == "CREATE")
            && words
                .iter()
                .take(6)
                .any(|w| matches!(w.as_str(), "TRIGGER" | "PROCEDURE" | "FUNCTION" | "EVENT"));
        let after_end = words.last().is_some_and(|w| w == "END");
        if after_end {
            // `END IF`, `END LOOP` and the like close no BEGIN or CASE: only a bare
            // END (or `END CASE`) does, which this next word tells.
            if *depth > 0 && !is_block_end(&upper) {
                *depth -= 1;
            }
        } else if routine && (upper == "BEGIN" || (upper == "CASE" && *depth > 0)) {
            *depth += 1;
        }
        words.push(upper);
        word.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' => {
                end_word(&mut word, &mut words, &mut depth);
                current.push(c);
                while let Some(inner) = chars.next() {
                    current.push(inner);
                    if inner == '\\' && c != '`' {
                        if let Some(escaped) = chars.next() {
                            current.push(escaped);
                        }
                    } else if inner == c {
                        // A doubled quote is one quote inside.
                        if chars.peek() == Some(&c) {
                            current.push(chars.next().unwrap_or(c));
                        } else {
                            break;
                        }
                    }
                }
                words.push("'".to_string());
            }
            '-' if chars.peek() == Some(&'-') => skip_line(&mut chars, &mut current),
            '#' => skip_line(&mut chars, &mut current),
            '/' if chars.peek() == Some(&'*') => {
                current.push(' ');
                chars.next();
                let mut previous = ' ';
                for inner in chars.by_ref() {
                    if previous == '*' && inner == '/' {
                        break;
                    }
                    previous = inner;
                }
            }
            ';' => {
                end_word(&mut word, &mut words, &mut depth);
                if words.last().is_some_and(|w| w == "END") && depth > 0 {
                    depth -= 1;
                    words.push(";".to_string());
                }
                if depth == 0 {
                    push_statement(&mut out, &mut current);
                    words.clear();
                } else {
                    current.push(c);
                }
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' => {
                word.push(c);
                current.push(c);
            }
            other => {
                end_word(&mut word, &mut words, &mut depth);
                current.push(other);
            }
        }
    }
    push_statement(&mut out, &mut current);
    out
}

/// `END IF`, `END LOOP`, `END WHILE`, `END REPEAT`: a block end that is not a
/// `BEGIN`'s or a `CASE`'s.
fn is_block_end(next: &str) -> bool {
    matches!(next, "IF" | "LOOP" | "WHILE" | "REPEAT")
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, current: &mut String) {
    for inner in chars.by_ref() {
        if inner == '\n' {
            break;
        }
    }
    current.push('\n');
}

fn push_statement(out: &mut Vec<String>, current: &mut String) {
    let statement = std::mem::take(current);
    let trimmed = statement.trim();
    if !trimmed.is_empty() {
        out.push(trimmed.to_string());
    }
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

    #[test]
    fn mysql_scripts_split_into_whole_statements() {
        let script = "CREATE TABLE a (x INT, note TEXT DEFAULT 'it\\'s; fine'); -- one; two\n\
            # hash comment;\n\
            CREATE TRIGGER t BEFORE INSERT ON a FOR EACH ROW BEGIN\n\
              IF NEW.x < 0 THEN SET NEW.x = 0; END IF;\n\
              BEGIN SET NEW.note = CASE WHEN NEW.x > 1 THEN 'n;' ELSE 'm' END; END;\n\
            END;\n\
            INSERT INTO `we;ird` VALUES (1);";
        let statements = mysql_statements(script);
        assert_eq!(statements.len(), 3, "{statements:#?}");
        assert!(statements[0].starts_with("CREATE TABLE a") && statements[0].ends_with("fine')"));
        assert!(statements[1].starts_with("CREATE TRIGGER t") && statements[1].ends_with("END"));
        assert_eq!(statements[2], "INSERT INTO `we;ird` VALUES (1)");
        assert_eq!(mysql_statements(" ; -- nothing\n"), Vec::<String>::new());
    }
}
