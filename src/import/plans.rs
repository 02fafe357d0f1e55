//! The plans file that `export` writes at the root of its tree (`plans.json`), so
//! that customers on plans the operator made import into a home that lacks them.
//! Parsing and validation only; what the catalog makes of it is `ops::import`'s.

use serde_json::{Map, Value};

use super::{Problem, UTF8_BOM, kind};
use crate::validate;

/// The plans file's path, relative to the import folder.
pub const PLANS_FILE: &str = "plans.json";

/// The quota values of one plan, every value required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanDoc {
    pub name: String,
    pub max_sites: i64,
    pub max_storage_mb: i64,
    pub max_bandwidth_gb: i64,
    pub max_api_calls: i64,
}

/// Whether a file is the plans file: `plans.json` at the root whose object has a
/// `plans` key. Any other `plans.json` of a legacy tree stays what it was before
/// export wrote one (a site file, or skipped).
pub fn is_plans_file(relative: &str, bytes: &[u8]) -> bool {
    relative == PLANS_FILE
        && matches!(
            serde_json::from_slice::<Value>(bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes)),
            Ok(Value::Object(object)) if object.contains_key("plans")
        )
}

/// Parses `{"plans": [{"name": …, "max_sites": …, …}]}`; a problem names the field
/// as `plans[i].<key>`.
pub fn parse_plans(bytes: &[u8]) -> Result<Vec<PlanDoc>, Problem> {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let document: Value =
        serde_json::from_slice(bytes).map_err(|e| Problem::new("file", format!("not valid JSON: {e}")))?;
    let entries = match document.get("plans") {
        Some(Value::Array(entries)) => entries,
        Some(other) => {
            return Err(Problem::new(
                "plans",
                format!("must be an array, not {}", kind(other)),
            ));
        }
        None => return Err(Problem::new("plans", "is missing")),
    };
    let mut plans: Vec<PlanDoc> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let at = format!("plans[{index}]");
        let Value::Object(object) = entry else {
            return Err(Problem::new(
                &at,
                format!("must be an object, not {}", kind(entry)),
            ));
        };
        let plan = plan(object, &at)?;
        if plans.iter().any(|p| p.name == plan.name) {
            return Err(Problem::new(
                &format!("{at}.name"),
                format!("plan '{}' is listed twice", plan.name),
            ));
        }
        plans.push(plan);
    }
    Ok(plans)
}

fn plan(object: &Map<String, Value>, at: &str) -> Result<PlanDoc, Problem> {
    let name = match object.get("name") {
        Some(Value::String(name)) => validate::plan_name(name)
            .map_err(|e| Problem::new(&format!("{at}.name"), e.to_string()))?
            .to_string(),
        Some(other) => {
            return Err(Problem::new(
                &format!("{at}.name"),
                format!("must be a string, not {}", kind(other)),
            ));
        }
        None => return Err(Problem::new(&format!("{at}.name"), "is missing")),
    };
    let value = |key: &str| -> Result<i64, Problem> {
        let field = format!("{at}.{key}");
        match object.get(key) {
            Some(Value::Number(n)) => n
                .as_i64()
                .filter(|v| *v >= 0)
                .ok_or_else(|| Problem::new(&field, format!("{n} is not a whole number 0 or more"))),
            Some(other) => Err(Problem::new(
                &field,
                format!("must be a number, not {}", kind(other)),
            )),
            None => Err(Problem::new(&field, "is missing")),
        }
    };
    Ok(PlanDoc {
        max_sites: value("max_sites")?,
        max_storage_mb: value("max_storage_mb")?,
        max_bandwidth_gb: value("max_bandwidth_gb")?,
        max_api_calls: value("max_api_calls")?,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_root_plans_json_with_a_plans_key_is_the_plans_file() {
        assert!(is_plans_file("plans.json", br#"{"plans": []}"#));
        assert!(!is_plans_file("acme/plans.json", br#"{"plans": []}"#));
        assert!(!is_plans_file("plans.json", br#"{"domain": "a.test"}"#));
    }

    #[test]
    fn every_value_is_required_and_checked() {
        let problem = |text: &str| parse_plans(text.as_bytes()).unwrap_err();
        assert_eq!(problem(r#"{"plans": {}}"#).field, "plans");
        assert_eq!(
            problem(r#"{"plans": [{"name": "Small!", "max_sites": 1}]}"#).field,
            "plans[0].name"
        );
        assert_eq!(
            problem(r#"{"plans": [{"name": "small", "max_sites": -1}]}"#).field,
            "plans[0].max_sites"
        );
        let ok = r#"{"plans": [{"name": "small", "max_sites": 2, "max_storage_mb": 10,
            "max_bandwidth_gb": 1, "max_api_calls": 100}]}"#;
        assert_eq!(parse_plans(ok.as_bytes()).unwrap()[0].max_storage_mb, 10);
    }
}
