//! Validation of every name and value that reaches a path, a query or the catalog.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Names that would collide with platform hostnames or routes.
pub const RESERVED_SLUGS: &[&str] = &[
    "admin",
    "api",
    "app",
    "assets",
    "auth",
    "billing",
    "blog",
    "cdn",
    "dashboard",
    "docs",
    "ftp",
    "help",
    "imap",
    "internal",
    "localhost",
    "login",
    "mail",
    "ns1",
    "ns2",
    "pop",
    "portal",
    "root",
    "smtp",
    "static",
    "status",
    "support",
    "system",
    "tenantctl",
    "www",
];

/// A lowercase DNS label: 1-63 of `a-z`, `0-9` and `-`, no hyphen at either end.
pub fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// A customer slug: a lowercase DNS label that is not reserved.
pub fn slug(text: &str) -> Result<&str> {
    if !is_dns_label(text) {
        return Err(
            Error::usage(format!("invalid slug '{}'", printable(text))).with_hint(
                "use 1-63 lowercase letters, digits and hyphens, not starting or ending with a hyphen",
            ),
        );
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // A reference made of digits means a customer id, so a slug needs a letter.
        return Err(Error::usage(format!("slug '{text}' has no letter"))
            .with_hint("numbers name customers by id; add a letter"));
    }
    if RESERVED_SLUGS.contains(&text) {
        return Err(
            Error::usage(format!("slug '{text}' is reserved")).with_hint("choose another slug with --slug")
        );
    }
    Ok(text)
}

/// Turns free text (a company name, an email's local part) into a slug candidate.
/// Letters outside ASCII are transliterated first ("Ünïcödé" → "unicode"), so a
/// name keeps its letters instead of losing them.
pub fn slugify(text: &str) -> String {
    let mut out = String::new();
    for ch in deunicode::deunicode(text).chars().flat_map(char::to_lowercase) {
        if ch.is_ascii_alphanumeric() {
            out.push(ch);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 63 {
            break;
        }
    }
    out.trim_matches('-').to_string()
}

/// An API key scope: `^[a-z][a-z0-9_.:-]{0,63}$`. Scopes belong to the platform's API,
/// so any name of that shape is accepted unless the operator sets `key_scopes`.
pub fn scope(text: &str) -> Result<&str> {
    let bytes = text.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(b));
    if valid {
        Ok(text)
    } else {
        Err(Error::usage(format!("invalid scope '{}'", printable(text)))
            .with_hint("a scope is a lowercase letter, then up to 63 of a-z, 0-9, '_', '.', ':' and '-'"))
    }
}

/// A plan name: same rules as a slug, reserved words allowed.
pub fn plan_name(text: &str) -> Result<&str> {
    if is_dns_label(text) {
        Ok(text)
    } else {
        Err(Error::usage(format!("invalid plan name '{}'", printable(text)))
            .with_hint("use lowercase letters, digits and hyphens"))
    }
}

/// A database server's name: a DNS label, and not `local`, the built-in server.
pub fn server_name(text: &str) -> Result<&str> {
    if !is_dns_label(text) {
        return Err(Error::usage(format!("invalid server name '{}'", printable(text)))
            .with_hint("use 1-63 lowercase letters, digits and hyphens"));
    }
    if text == crate::engine::LOCAL_SERVER {
        return Err(
            Error::usage("'local' is the built-in server (the home's tenants folder)")
                .with_hint("give the database server another name"),
        );
    }
    Ok(text)
}

/// A hostname such as a site domain or the platform domain; returns it lowercased
/// without a trailing dot.
pub fn hostname(text: &str) -> Result<String> {
    let host = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').count() >= 2
        && host.split('.').all(is_dns_label)
        && !host
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
    if valid {
        Ok(host)
    } else {
        Err(Error::usage(format!("invalid hostname '{}'", printable(text)))
            .with_hint("use a fully qualified name such as shop.example.com"))
    }
}

/// An email address; returns it trimmed with the domain lowercased.
pub fn email(text: &str) -> Result<String> {
    let invalid = || {
        Error::usage(format!("invalid email '{}'", printable(text)))
            .with_hint("use an address such as ops@example.com")
    };
    let trimmed = text.trim();
    let (local, domain) = trimmed.rsplit_once('@').ok_or_else(invalid)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_graphic() && !"@<>()[]\\,;:\"".contains(c));
    if !local_ok || trimmed.len() > 254 {
        return Err(invalid());
    }
    let domain = hostname(domain).map_err(|_| invalid())?;
    Ok(format!("{local}@{domain}"))
}

/// A display name or company name: non-empty, one line, bounded.
pub fn display_text(field: &str, text: &str) -> Result<String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(Error::usage(format!("{field} must not be empty")));
    }
    if trimmed.chars().count() > 200 {
        return Err(Error::usage(format!("{field} is longer than 200 characters")));
    }
    if trimmed.chars().any(|c| c.is_control() || is_invisible_format(c)) {
        return Err(Error::usage(format!(
            "{field} must not contain control or invisible formatting characters"
        )));
    }
    Ok(trimmed.to_string())
}

/// Characters that change how text displays without being seen (bidi overrides,
/// zero-width characters, line separators); they could spoof table output.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// Who acts, as recorded in the audit log: one visible line of at most 100 characters.
pub fn actor(text: &str) -> Result<String> {
    if text.chars().count() > 100 {
        return Err(Error::usage("the actor name is longer than 100 characters"));
    }
    display_text("actor", text)
}

/// Parses repeated `--meta k=v` flags into a JSON object; values are parsed as JSON
/// where they can be (numbers, booleans, objects), otherwise kept as strings.
/// An empty value removes the key.
pub fn apply_meta(target: &mut Map<String, Value>, pairs: &[String]) -> Result<()> {
    for pair in pairs {
        let (key, raw) = pair.split_once('=').ok_or_else(|| {
            Error::usage(format!("invalid --meta '{}'", printable(pair))).with_hint("use key=value")
        })?;
        let key_ok = !key.is_empty()
            && key.len() <= 64
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !key_ok {
            return Err(Error::usage(format!("invalid metadata key '{}'", printable(key)))
                .with_hint("use letters, digits, '_', '-' and '.'"));
        }
        if raw.is_empty() {
            target.remove(key);
        } else {
            target.insert(key.to_string(), json_or_string(raw));
        }
    }
    Ok(())
}

/// A command-line value parsed as JSON where possible, else taken as a string.
pub fn json_or_string(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}

/// Shortens and escapes user input before it is echoed in an error message.
pub fn printable(text: &str) -> String {
    let escaped: String = text.chars().flat_map(char::escape_debug).collect();
    if escaped.chars().count() > 80 {
        let short: String = escaped.chars().take(77).collect();
        format!("{short}...")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_dns_label_rules() {
        for good in ["a", "acme", "acme-corp", "a1", "0abc", &"x".repeat(63)] {
            assert!(slug(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "123",
            "-a",
            "a-",
            "Acme",
            "a_b",
            "a.b",
            "../etc",
            &"x".repeat(64),
            "www",
            "api",
            "admin",
        ] {
            assert!(slug(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_are_lowercase_names() {
        for good in ["read", "sites:read", "db.write", "a", "x_y-z:1", &"a".repeat(64)] {
            assert!(scope(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Read",
            "1read",
            ":read",
            "re ad",
            "read,write",
            "räd",
            &"a".repeat(65),
        ] {
            assert!(scope(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slugify_makes_labels() {
        assert_eq!(slugify("Acme Corp, Inc."), "acme-corp-inc");
        assert_eq!(slugify("  --Über GmbH--"), "uber-gmbh");
        assert_eq!(slugify("Ünïcödé GmbH"), "unicode-gmbh");
        assert_eq!(slugify("Łódź Café"), "lodz-cafe");
        assert_eq!(slugify("john.doe"), "john-doe");
        assert!(slugify(&"long name ".repeat(20)).len() <= 63);
    }

    #[test]
    fn emails_are_checked_and_normalised() {
        assert_eq!(email("John@Example.COM").unwrap(), "John@example.com");
        for bad in [
            "",
            "john",
            "@example.com",
            "john@",
            "john@localhost",
            "jo hn@example.com",
            "a@b@c",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostnames_are_lowercased_without_trailing_dot() {
        assert_eq!(hostname("Shop.Example.com.").unwrap(), "shop.example.com");
        for bad in ["example", "-a.com", "a..com", "a_b.com", "1.2.3.4", ""] {
            assert!(hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_text_refuses_invisible_formatting() {
        assert!(display_text("name", "Évil Ñame 名前").is_ok());
        for bad in [
            "Evil\u{202e}name",
            "zero\u{200b}width",
            "line\u{2028}sep",
            "tab\there",
        ] {
            assert!(display_text("name", bad).is_err(), "{bad:?}");
        }
        assert!(actor(&"a".repeat(101)).is_err());
        assert!(actor("ops bot").is_ok());
    }

    #[test]
    fn meta_pairs_parse_json_values() {
        let mut map = Map::new();
        apply_meta(
            &mut map,
            &["tier=gold".into(), "seats=5".into(), "vip=true".into()],
        )
        .unwrap();
        assert_eq!(
            Value::Object(map.clone()),
            serde_json::json!({"tier":"gold","seats":5,"vip":true})
        );
        apply_meta(&mut map, &["tier=".into()]).unwrap();
        assert!(!map.contains_key("tier"));
        assert!(apply_meta(&mut map, &["novalue".into()]).is_err());
        assert!(apply_meta(&mut map, &["bad key=1".into()]).is_err());
    }

    #[test]
    fn printable_escapes_and_shortens() {
        assert_eq!(printable("a\nb"), "a\\nb");
        assert!(printable(&"x".repeat(200)).ends_with("..."));
    }

    proptest::proptest! {
        #[test]
        fn validators_never_panic_on_any_text(text in "\\PC{0,80}|[a-z0-9.@=-]{0,80}") {
            let _ = slug(&text);
            let _ = slugify(&text);
            let _ = plan_name(&text);
            let _ = hostname(&text);
            let _ = email(&text);
            let _ = display_text("name", &text);
            let _ = actor(&text);
            let _ = printable(&text);
            let _ = crate::time::parse_duration(&text);
            let _ = crate::time::parse_moment(&text);
            let _ = crate::ops::usage::check_month(&text);
            let mut map = Map::new();
            let _ = apply_meta(&mut map, std::slice::from_ref(&text));
            let mut config = serde_json::json!({"a": {"b": [1, {"c": 2}]}});
            let _ = crate::site_config::apply_assignment(&mut config, &text);
        }

        #[test]
        fn what_passes_as_a_slug_is_a_safe_file_name(text in "[a-z0-9-]{1,70}") {
            if slug(&text).is_ok() {
                proptest::prop_assert!(!text.contains('/') && !text.starts_with('-') && !text.contains(".."));
                proptest::prop_assert!(text.len() <= 63);
            }
        }
    }
}
