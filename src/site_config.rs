//! A site's config document: parsing it, the limits on its size and depth, `--set`
//! assignments, and the copies of the columns it may hold. Both `ops::sites` and the
//! pure `import` parser need it, so it lives apart from either.

use serde_json::{Map, Value, json};

use crate::catalog::model::NewSite;
use crate::error::{Error, Result};
use crate::validate::{self, printable};

/// The largest config document accepted.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Parses a config document: it must be a JSON object (exit 9 otherwise).
pub fn parse_config(text: &[u8], source: &str) -> Result<Value> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(Error::invalid_input(format!(
            "config {source} is larger than 1 MiB"
        )));
    }
    let value: Value = serde_json::from_slice(text)
        .map_err(|e| Error::invalid_input(format!("config {source} is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Error::invalid_input(format!(
            "config {source} must be a JSON object"
        )));
    }
    check_document(&value).map_err(|e| Error::invalid_input(format!("config {source}: {e}")))?;
    Ok(value)
}

/// A legacy document's copies of the columns (`name`, `domain`, `port`,
/// `businessType`/`business_type`, `status`), brought in line with `site` where the
/// document has them, so the config never contradicts the columns. With `required`,
/// `name` and `domain` are added when missing, as `import` needs them.
pub fn with_columns(config: &Value, site: &NewSite, required: bool) -> Value {
    let Value::Object(map) = config else {
        return config.clone();
    };
    let mut map = map.clone();
    let mut put = |names: &[&str], value: Value, add: bool| match names.iter().find(|n| map.contains_key(**n))
    {
        Some(key) => {
            map.insert(key.to_string(), value);
        }
        None if add => {
            map.insert(names[0].to_string(), value);
        }
        None => {}
    };
    put(&["name"], json!(site.name), required);
    put(&["domain"], json!(site.domain), required);
    put(&["port"], json!(site.port), false);
    put(
        &["businessType", "business_type"],
        json!(site.business_type),
        false,
    );
    put(&["status"], json!(site.status), false);
    Value::Object(map)
}

/// The most `--set` path segments and config nesting accepted: deep enough for any
/// real config, shallow enough that no parser or printer runs out of stack.
pub const MAX_DEPTH: usize = 64;

/// A config document must be an object, at most [`MAX_DEPTH`] deep and 1 MiB as JSON
/// (exit 9 otherwise).
pub fn check_document(config: &Value) -> Result<()> {
    if !config.is_object() {
        return Err(Error::invalid_input("a site config must be a JSON object"));
    }
    if depth(config) > MAX_DEPTH {
        return Err(Error::invalid_input(format!(
            "a site config may nest at most {MAX_DEPTH} levels"
        )));
    }
    if config.to_string().len() > MAX_CONFIG_BYTES {
        return Err(Error::invalid_input("a site config may be at most 1 MiB as JSON"));
    }
    Ok(())
}

fn depth(value: &Value) -> usize {
    // Iterative, so a hostile document cannot overflow the stack here.
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((node, level)) = stack.pop() {
        deepest = deepest.max(level);
        match node {
            Value::Object(map) => stack.extend(map.values().map(|v| (v, level + 1))),
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, level + 1))),
            _ => {}
        }
    }
    deepest
}

/// Applies `a.b.c=value` to a config object: the value is parsed as JSON where it can
/// be, else taken as a string; missing objects on the way are created.
pub fn apply_assignment(config: &mut Value, assignment: &str) -> Result<()> {
    let invalid = |why: &str| {
        Error::usage(format!("invalid --set '{}': {why}", printable(assignment)))
            .with_hint("use a dotted path and a value, such as theme.primary=#0044aa")
    };
    let (path, raw) = assignment.split_once('=').ok_or_else(|| invalid("no '='"))?;
    let segments: Vec<&str> = path.split('.').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(invalid("empty path segment"));
    }
    if segments.len() > MAX_DEPTH {
        return Err(invalid(&format!("more than {MAX_DEPTH} path segments")));
    }
    let (last, parents) = segments.split_last().ok_or_else(|| invalid("empty path"))?;
    let mut node = config;
    for segment in parents {
        node = match node {
            Value::Object(map) => map
                .entry(segment.to_string())
                .or_insert_with(|| Value::Object(Map::new())),
            Value::Array(items) => {
                let index: usize = segment.parse().map_err(|_| invalid("not an array index"))?;
                items
                    .get_mut(index)
                    .ok_or_else(|| invalid("array index out of range"))?
            }
            _ => {
                return Err(invalid(&format!(
                    "'{segment}' is inside a value that is not an object"
                )));
            }
        };
    }
    let value = validate::json_or_string(raw);
    match node {
        Value::Object(map) => {
            map.insert(last.to_string(), value);
        }
        Value::Array(items) => {
            let index: usize = last.parse().map_err(|_| invalid("not an array index"))?;
            *items
                .get_mut(index)
                .ok_or_else(|| invalid("array index out of range"))? = value;
        }
        _ => {
            return Err(invalid(&format!(
                "'{last}' is inside a value that is not an object"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_walk_and_create_objects() {
        let mut config = json!({"theme": {"primary": "#000"}, "pages": [{"title": "Home"}]});
        apply_assignment(&mut config, "theme.primary=#0044aa").unwrap();
        apply_assignment(&mut config, "features.chat.enabled=true").unwrap();
        apply_assignment(&mut config, "pages.0.title=Start").unwrap();
        apply_assignment(&mut config, "limits={\"a\":1}").unwrap();
        assert_eq!(
            config,
            json!({"theme": {"primary": "#0044aa"}, "pages": [{"title": "Start"}],
                   "features": {"chat": {"enabled": true}}, "limits": {"a": 1}})
        );
        let too_deep = format!("{}b=1", "a.".repeat(MAX_DEPTH));
        for bad in [
            "novalue",
            "a..b=1",
            "=1",
            "theme.primary.x=1",
            "pages.9.title=x",
            "pages.x=1",
            &too_deep,
        ] {
            assert!(apply_assignment(&mut config, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deep_documents_are_refused_without_recursion() {
        let mut deep = json!(1);
        for _ in 0..1000 {
            deep = json!([deep]);
        }
        assert_eq!(
            check_document(&json!({ "deep": deep })).unwrap_err().exit_code(),
            9
        );
    }

    #[test]
    fn configs_must_be_json_objects() {
        assert!(parse_config(b"{\"a\":1}", "x").is_ok());
        for bad in [&b"[1]"[..], b"nope", b"\"s\"", b""] {
            assert_eq!(parse_config(bad, "x").unwrap_err().exit_code(), 9);
        }
    }
}
