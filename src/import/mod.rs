//! The legacy file-based site configs (SPEC section 4): finding the files, parsing and
//! validating them, and checking them against each other. No database access; what
//! the catalog must say about them is decided in `ops::import`.

pub mod plans;
pub mod scan;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::catalog::customers::LimitChanges;
use crate::catalog::states::{CustomerStatus, SiteStatus};
use crate::validate;

/// A customer as the files describe it. `None` (or a limit left out) means the file
/// does not say, so an existing customer keeps what it has.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CustomerDoc {
    pub email: String,
    pub name: Option<String>,
    pub company_name: Option<String>,
    pub plan: Option<String>,
    pub slug: Option<String>,
    /// `active` or `suspended`; applied to a customer the import creates.
    pub status: Option<CustomerStatus>,
    pub status_reason: Option<String>,
    /// Quota overrides: `Some(None)` is an explicit null, the plan's value.
    pub limits: LimitChanges,
    pub metadata: Option<Map<String, Value>>,
}

crate::words::word_enum! {
    /// What `import` did, or in a dry run would do, with one file.
    pub enum ImportAction ("import action") {
        Created = "created",
        Updated = "updated",
        Unchanged = "unchanged",
        Skipped = "skipped",
        Failed = "failed",
    }
}

/// The key `export` adds to a site file, listing the column keys it wrote that the
/// site's config did not hold; `import` drops them (and the key) from the config, so
/// an export imports back to the same config.
pub const EXPORT_ADDED_KEYS: &str = "_tenantctl_added_keys";

/// The keys of a site file that hold its columns, in the spellings `export` writes.
pub const SITE_COLUMN_KEYS: &[&str] = &["siteId", "name", "domain", "port", "businessType", "status"];

/// A site as a file describes it; `config` is the whole document (less what `export`
/// added), until an import's plan lets go of it for its digest.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteDoc {
    /// `siteId` / `site_id`: the site's identity when the file gives one.
    /// The text fields are boxed, not `String`s: a plan of 100,000 files holds one of
    /// these per file, and each `String` would cost 8 bytes more.
    pub legacy_id: Option<Box<str>>,
    pub name: Box<str>,
    pub domain: Box<str>,
    pub port: Option<i64>,
    pub business_type: Option<Box<str>>,
    pub status: Option<SiteStatus>,
    /// Boxed, so that a plan that has let go of it holds a pointer, not a value.
    pub config: Option<Box<Value>>,
}

/// What one file turned out to be.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// A site, with the customer it belongs to.
    /// The customer is shared by the files that describe it alike (see `ops::import`).
    Site(Box<SiteDoc>, Arc<CustomerDoc>),
    /// A `customer.json` of the customer-folder layout.
    Customer(Box<CustomerDoc>),
    /// The `plans.json` that `export` writes at the root.
    Plans(Vec<plans::PlanDoc>),
    Skipped(String),
    /// Boxed: a plan holds one `Parsed` per file, and most are not failures.
    Failed(Box<Problem>),
}

// What a big tree's plan holds per file: keep it from growing unnoticed.
const _: () = assert!(std::mem::size_of::<Parsed>() <= 32);

/// Why a file is invalid: the field (or `file`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub field: String,
    pub reason: String,
}

impl Problem {
    pub fn new(field: &str, reason: impl Into<String>) -> Self {
        Problem {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// A file found under the import folder. Its content is read when it is parsed, and
/// again when its site is written, so that no more than one file is held at a time.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Relative to the import folder, for reports (which share it).
    pub path: Arc<str>,
    /// The import folder, one copy shared by its files: 100,000 absolute paths held
    /// until the writes are megabytes.
    pub root: Arc<Path>,
    /// Where a symlink inside the folder leads; a file is otherwise read at `path`.
    /// Boxed: few files are symlinks, and every file holds this field.
    pub target: Option<Box<PathBuf>>,
    /// Why the file cannot be imported without reading it (a symlink out, too big).
    pub refused: Option<Box<Problem>>,
    /// For `sites/*.json` under a folder with `customer.json`: that customer file.
    pub customer_file: Option<Arc<str>>,
}

/// The SHA-256 of a file's bytes as they were parsed.
pub type Digest = [u8; 32];

impl SourceFile {
    /// The file's bytes, or why they cannot be had.
    pub fn read(&self) -> Result<Vec<u8>, Problem> {
        self.read_with(<[u8]>::to_vec)
    }

    /// What `use_bytes` makes of the file's bytes, read into a buffer this thread
    /// keeps: a tree's files are read twice each, and a fresh buffer per file costs an
    /// allocation and new pages every time. A file over the limit is refused, however
    /// it grew past it.
    pub fn read_with<R>(&self, use_bytes: impl FnOnce(&[u8]) -> R) -> Result<R, Problem> {
        thread_local! {
            static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUFFER.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut buffer) => {
                self.read_into(&mut buffer)?;
                Ok(use_bytes(&buffer))
            }
            // Read from inside `use_bytes`: this read gets its own buffer.
            Err(_) => {
                let mut own = Vec::new();
                self.read_into(&mut own)?;
                Ok(use_bytes(&own))
            }
        })
    }

    fn read_into(&self, buffer: &mut Vec<u8>) -> Result<(), Problem> {
        use std::io::Read;
        if let Some(problem) = &self.refused {
            return Err(Problem::clone(problem));
        }
        let unreadable = |e: std::io::Error| Problem::new("file", format!("cannot be read: {e}"));
        let file = match &self.target {
            Some(target) => std::fs::File::open(&**target),
            None => std::fs::File::open(self.root.join(&*self.path)),
        }
        .map_err(unreadable)?;
        buffer.clear();
        // One byte past the limit tells a file over it; its size is asked only then.
        let mut limited = file.take(scan::MAX_FILE_BYTES + 1);
        limited.read_to_end(buffer).map_err(unreadable)?;
        if buffer.len() as u64 > scan::MAX_FILE_BYTES {
            let len = limited
                .get_ref()
                .metadata()
                .map_or(buffer.len() as u64, |m| m.len());
            buffer.clear();
            return Err(scan::too_big(len));
        }
        Ok(())
    }
}

pub fn digest(bytes: &[u8]) -> Digest {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(bytes).into()
}

/// The config a site file gives, as `parse` makes it: the whole document less what
/// `export` added. For the writes, which read a file again once it was validated.
pub fn site_config(bytes: &[u8]) -> Result<Value, Problem> {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let document: Value =
        serde_json::from_slice(bytes).map_err(|e| Problem::new("file", format!("not valid JSON: {e}")))?;
    without_export_keys(document)
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A site file's columns and config, as [`parse`] reads them, without its customer:
/// what an import's writes take from a file they read again.
pub fn site_from_bytes(bytes: &[u8]) -> Result<SiteDoc, Problem> {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let document: Value =
        serde_json::from_slice(bytes).map_err(|e| Problem::new("file", format!("not valid JSON: {e}")))?;
    let Value::Object(object) = &document else {
        return Err(Problem::new(
            "file",
            format!("must be a JSON object, not {}", kind(&document)),
        ));
    };
    let mut site = site(object, &document)?;
    site.config = Some(Box::new(without_export_keys(document)?));
    Ok(site)
}

/// The first of several spellings of a key that the object has.
fn field<'a>(object: &'a Map<String, Value>, names: &[&'static str]) -> Option<(&'static str, &'a Value)> {
    names
        .iter()
        .find_map(|name| object.get(*name).map(|value| (*name, value)))
}

fn optional_text(object: &Map<String, Value>, names: &[&'static str]) -> Result<Option<String>, Problem> {
    match field(object, names) {
        None | Some((_, Value::Null)) => Ok(None),
        Some((key, Value::String(text))) => validate::display_text(key, text)
            .map(Some)
            .map_err(|e| Problem::new(key, e.to_string())),
        Some((key, other)) => Err(Problem::new(
            key,
            format!("must be a string, not {}", kind(other)),
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses a customer object (inline `customer` or a `customer.json`).
pub fn customer(object: &Map<String, Value>, prefix: &str) -> Result<CustomerDoc, Problem> {
    let named = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    let email = match object.get("email") {
        Some(Value::String(text)) => {
            validate::email(text).map_err(|e| Problem::new(&named("email"), e.to_string()))?
        }
        Some(other) => {
            return Err(Problem::new(
                &named("email"),
                format!("must be a string, not {}", kind(other)),
            ));
        }
        None => return Err(Problem::new(&named("email"), "is missing")),
    };
    let with_prefix = |p: Problem| Problem::new(&named(&p.field), p.reason);
    let plan = optional_text(object, &["plan", "plan_type", "planType"]).map_err(with_prefix)?;
    if let Some(plan) = &plan {
        validate::plan_name(plan).map_err(|e| Problem::new(&named("plan"), e.to_string()))?;
    }
    let slug = optional_text(object, &["slug"]).map_err(with_prefix)?;
    if let Some(slug) = &slug {
        validate::slug(slug).map_err(|e| Problem::new(&named("slug"), e.to_string()))?;
    }
    let status = optional_text(object, &["status"])
        .map_err(with_prefix)?
        .map(|status| match status.parse::<CustomerStatus>() {
            Ok(status @ (CustomerStatus::Active | CustomerStatus::Suspended)) => Ok(status),
            _ => Err(Problem::new(
                &named("status"),
                format!("'{}' is not active or suspended", validate::printable(&status)),
            )),
        })
        .transpose()?;
    Ok(CustomerDoc {
        email,
        name: optional_text(object, &["name"]).map_err(with_prefix)?,
        company_name: optional_text(object, &["company", "company_name", "companyName"])
            .map_err(with_prefix)?,
        plan,
        slug,
        status,
        status_reason: optional_text(object, &["status_reason", "statusReason"]).map_err(with_prefix)?,
        limits: LimitChanges {
            max_sites: limit(object, &["max_sites", "maxSites"]).map_err(with_prefix)?,
            max_storage_mb: limit(object, &["max_storage_mb", "maxStorageMb"]).map_err(with_prefix)?,
            max_bandwidth_gb: limit(object, &["max_bandwidth_gb", "maxBandwidthGb"]).map_err(with_prefix)?,
            max_api_calls: limit(object, &["max_api_calls", "maxApiCalls"]).map_err(with_prefix)?,
        },
        metadata: match field(object, &["metadata"]) {
            None | Some((_, Value::Null)) => None,
            Some((_, Value::Object(map))) => Some(map.clone()),
            Some((key, other)) => {
                return Err(Problem::new(
                    &named(key),
                    format!("must be an object, not {}", kind(other)),
                ));
            }
        },
    })
}

/// A quota override: left out (`None`), null for the plan's value, or a whole number.
fn limit(object: &Map<String, Value>, names: &[&'static str]) -> Result<Option<Option<i64>>, Problem> {
    match field(object, names) {
        None => Ok(None),
        Some((_, Value::Null)) => Ok(Some(None)),
        Some((key, Value::Number(n))) => match n.as_i64() {
            Some(value) if value >= 0 => Ok(Some(Some(value))),
            _ => Err(Problem::new(key, format!("{n} is not a whole number 0 or more"))),
        },
        Some((key, other)) => Err(Problem::new(
            key,
            format!("must be a number or null, not {}", kind(other)),
        )),
    }
}

/// Parses one file. `owner` is the folder's customer for `sites/*.json`.
pub fn parse(bytes: &[u8], is_customer_file: bool, owner: Option<&CustomerDoc>) -> Parsed {
    // Editors on Windows save UTF-8 with a byte-order mark; JSON itself has none.
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let document: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(e) => return Parsed::Failed(Box::new(Problem::new("file", format!("not valid JSON: {e}")))),
    };
    // Every legacy config is an object; other JSON in the tree is a mistake worth a look.
    let Value::Object(object) = &document else {
        return Parsed::Failed(Box::new(Problem::new(
            "file",
            format!("must be a JSON object, not {}", kind(&document)),
        )));
    };
    if is_customer_file {
        return match customer(object, "") {
            Ok(doc) => Parsed::Customer(Box::new(doc)),
            Err(problem) => Parsed::Failed(Box::new(problem)),
        };
    }
    if field(object, &["domain", "siteId", "site_id"]).is_none() {
        return Parsed::Skipped("no domain or siteId: not a site file".to_string());
    }
    let site = match site(object, &document) {
        Ok(site) => site,
        Err(problem) => return Parsed::Failed(Box::new(problem)),
    };
    let owner = match (owner, object.get("customer")) {
        (Some(owner), _) => owner.clone(),
        (None, Some(Value::Object(inline))) => match customer(inline, "customer") {
            Ok(doc) => doc,
            Err(problem) => return Parsed::Failed(Box::new(problem)),
        },
        (None, Some(other)) => {
            return Parsed::Failed(Box::new(Problem::new(
                "customer",
                format!("must be an object, not {}", kind(other)),
            )));
        }
        (None, None) => {
            return Parsed::Failed(Box::new(Problem::new(
                "customer",
                "is missing (no inline customer and no customer.json)",
            )));
        }
    };
    let mut site = site;
    match without_export_keys(document) {
        Ok(config) => site.config = Some(Box::new(config)),
        Err(problem) => return Parsed::Failed(Box::new(problem)),
    }
    Parsed::Site(Box::new(site), Arc::new(owner))
}

fn site(object: &Map<String, Value>, document: &Value) -> Result<SiteDoc, Problem> {
    let name = optional_text(object, &["name"])?.ok_or_else(|| Problem::new("name", "is missing"))?;
    let domain = match object.get("domain") {
        Some(Value::String(text)) => {
            validate::hostname(text).map_err(|e| Problem::new("domain", e.to_string()))?
        }
        Some(other) => {
            return Err(Problem::new(
                "domain",
                format!("must be a string, not {}", kind(other)),
            ));
        }
        None => return Err(Problem::new("domain", "is missing")),
    };
    let port = match object.get("port") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(port) if (1..=65535).contains(&port) => Some(port),
            _ => return Err(Problem::new("port", format!("{n} is not a port in 1-65535"))),
        },
        Some(other) => {
            return Err(Problem::new(
                "port",
                format!("must be a number, not {}", kind(other)),
            ));
        }
    };
    let status = optional_text(object, &["status"])?
        .map(|status| {
            status.parse::<SiteStatus>().map_err(|_| {
                Problem::new(
                    "status",
                    format!(
                        "'{}' is not draft, deployed, stopped or failed",
                        validate::printable(&status)
                    ),
                )
            })
        })
        .transpose()?;
    crate::site_config::check_document(document).map_err(|e| Problem::new("file", e.to_string()))?;
    Ok(SiteDoc {
        legacy_id: legacy_id(object)?.map(Into::into),
        // Checked here, in the order of the checks; taken out by `parse`, which owns it.
        config: export_added_keys(object).map(|_| None)?,
        name: name.into(),
        domain: domain.into(),
        port,
        business_type: optional_text(object, &["businessType", "business_type"])?.map(Into::into),
        status,
    })
}

/// `siteId` / `site_id`: text, or a whole number taken as its digits.
fn legacy_id(object: &Map<String, Value>) -> Result<Option<String>, Problem> {
    match field(object, &["siteId", "site_id"]) {
        None | Some((_, Value::Null)) => Ok(None),
        Some((_, Value::Number(n))) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some((key, Value::String(text))) => validate::display_text(key, text)
            .map(Some)
            .map_err(|e| Problem::new(key, e.to_string())),
        Some((key, other)) => Err(Problem::new(
            key,
            format!("must be a string or a whole number, not {}", kind(other)),
        )),
    }
}

/// The document without what `export` added to it (see [`EXPORT_ADDED_KEYS`]). It
/// takes the document: a copy of every config would double the parse's work.
fn without_export_keys(document: Value) -> Result<Value, Problem> {
    let Value::Object(mut object) = document else {
        return Ok(document);
    };
    let Some(keys) = export_added_keys(&object)? else {
        return Ok(Value::Object(object));
    };
    object.remove(EXPORT_ADDED_KEYS);
    for key in keys {
        object.remove(key);
    }
    Ok(Value::Object(object))
}

/// The column keys `export` says it added, or `None` when it added none.
fn export_added_keys(object: &Map<String, Value>) -> Result<Option<Vec<&'static str>>, Problem> {
    let Some(added) = object.get(EXPORT_ADDED_KEYS) else {
        return Ok(None);
    };
    let keys: Vec<&'static str> = match added {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|k| SITE_COLUMN_KEYS.iter().copied().find(|c| *c == k))
            .collect(),
        _ => Vec::new(),
    };
    if !matches!(added, Value::Array(items) if items.len() == keys.len()) {
        return Err(Problem::new(
            EXPORT_ADDED_KEYS,
            format!("must list column keys ({})", SITE_COLUMN_KEYS.join(", ")),
        ));
    }
    Ok(Some(keys))
}

/// Checks parsed files against each other: a domain or port in two files, one
/// customer described two ways, a slug given to two customers. Marks the later file
/// of each clash as failed, naming the earlier one by `path_of` its index.
pub fn cross_check<'p>(files: &mut [Parsed], path_of: impl Fn(usize) -> &'p str) {
    for (index, problem) in clashes(files, &path_of) {
        files[index] = Parsed::Failed(Box::new(problem));
    }
}

/// The files that clash with an earlier one, with why. What it remembers of the first
/// files borrows from them: a big tree's domains are not copied again.
fn clashes<'p>(files: &[Parsed], path_of: &dyn Fn(usize) -> &'p str) -> Vec<(usize, Problem)> {
    let mut seen = SeenSites::default();
    let mut customers = SeenCustomers::default();
    let mut found = Vec::new();
    for (index, parsed) in files.iter().enumerate() {
        let problem = match parsed {
            Parsed::Site(site, owner) => seen
                .check(site, index, path_of)
                .or_else(|| customers.check(owner, index, path_of)),
            Parsed::Customer(owner) => customers.check(owner, index, path_of),
            _ => None,
        };
        if let Some(problem) = problem {
            found.push((index, problem));
        }
    }
    found
}

/// The first file of each domain, port and siteId, by index.
#[derive(Default)]
struct SeenSites<'a> {
    domains: HashMap<&'a str, usize>,
    ports: HashMap<i64, usize>,
    legacy_ids: HashMap<&'a str, usize>,
}

impl<'a> SeenSites<'a> {
    fn check<'p>(
        &mut self,
        site: &'a SiteDoc,
        index: usize,
        path: &dyn Fn(usize) -> &'p str,
    ) -> Option<Problem> {
        if let Some(id) = &site.legacy_id
            && let Some(&first) = self.legacy_ids.get(&**id)
        {
            return Some(Problem::new(
                "siteId",
                format!("'{id}' is also in {}", path(first)),
            ));
        }
        if let Some(&first) = self.domains.get(&*site.domain) {
            return Some(Problem::new(
                "domain",
                format!("{} is also in {}", site.domain, path(first)),
            ));
        }
        if let Some(port) = site.port
            && let Some(&first) = self.ports.get(&port)
        {
            return Some(Problem::new("port", format!("{port} is also in {}", path(first))));
        }
        self.domains.insert(&site.domain, index);
        if let Some(port) = site.port {
            self.ports.insert(port, index);
        }
        if let Some(id) = &site.legacy_id {
            self.legacy_ids.insert(id, index);
        }
        None
    }
}

/// The first description of each customer (by email in lower case) and the first
/// customer given each slug.
#[derive(Default)]
struct SeenCustomers<'a> {
    by_email: HashMap<String, (&'a CustomerDoc, usize)>,
    by_slug: HashMap<&'a str, (&'a str, usize)>,
}

impl<'a> SeenCustomers<'a> {
    fn check<'p>(
        &mut self,
        doc: &'a CustomerDoc,
        index: usize,
        path: &dyn Fn(usize) -> &'p str,
    ) -> Option<Problem> {
        let key = doc.email.to_ascii_lowercase();
        if let Some(&(first, first_index)) = self.by_email.get(&key) {
            if first != doc {
                return Some(Problem::new(
                    "customer",
                    format!("{} is described differently in {}", doc.email, path(first_index)),
                ));
            }
            return None;
        }
        if let Some(slug) = &doc.slug
            && let Some(&(email, first_index)) = self.by_slug.get(slug.as_str())
            && !email.eq_ignore_ascii_case(&key)
        {
            return Some(Problem::new(
                "slug",
                format!(
                    "'{slug}' is also given to {} in {}",
                    email.to_ascii_lowercase(),
                    path(first_index)
                ),
            ));
        }
        if let Some(slug) = &doc.slug {
            self.by_slug.insert(slug, (&doc.email, index));
        }
        self.by_email.insert(key, (doc, index));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_value(value: Value) -> Parsed {
        parse(value.to_string().as_bytes(), false, None)
    }

    fn failed_field(parsed: Parsed) -> String {
        match parsed {
            Parsed::Failed(problem) => problem.field,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_site_file_with_an_inline_customer_in_either_spelling() {
        let doc = json!({"siteId": "acme-main", "name": "Acme", "businessType": "translation",
            "domain": "Acme.TEST", "port": 3005, "status": "deployed",
            "customer": {"email": "john@acme.test", "name": "John", "companyName": "Acme Corp", "plan_type": "pro"},
            "theme": {"primary": "#0044aa"}});
        let Parsed::Site(site, owner) = parse_value(doc.clone()) else {
            panic!()
        };
        assert_eq!(&*site.domain, "acme.test");
        assert_eq!(site.port, Some(3005));
        assert_eq!(site.business_type.as_deref(), Some("translation"));
        assert_eq!(
            site.config.as_deref(),
            Some(&doc),
            "the whole document is the config"
        );
        assert_eq!(owner.company_name.as_deref(), Some("Acme Corp"));
        assert_eq!(owner.plan.as_deref(), Some("pro"));
        let snake = json!({"site_id": "x", "name": "X", "business_type": "shop", "domain": "x.test",
            "customer": {"email": "x@x.test", "company_name": "X Ltd", "plan": "starter"}});
        assert!(matches!(parse_value(snake), Parsed::Site(..)));
    }

    #[test]
    fn every_kind_of_bad_file_names_its_field() {
        let base = json!({"name": "S", "domain": "s.test", "customer": {"email": "a@b.test"}});
        let with = |key: &str, value: Value| {
            let mut doc = base.clone();
            doc[key] = value;
            doc
        };
        assert_eq!(failed_field(parse(b"{not json", false, None)), "file");
        assert_eq!(
            failed_field(parse_value(
                json!({"domain": "s.test", "customer": {"email": "a@b.test"}})
            )),
            "name"
        );
        assert_eq!(
            failed_field(parse_value(
                json!({"siteId": "x", "name": "S", "customer": {"email": "a@b.test"}})
            )),
            "domain"
        );
        assert_eq!(
            failed_field(parse_value(
                json!({"name": "S", "domain": "s.test", "customer": {"name": "A"}})
            )),
            "customer.email"
        );
        assert_eq!(failed_field(parse_value(with("port", json!("3005")))), "port");
        assert_eq!(failed_field(parse_value(with("port", json!(70000)))), "port");
        assert_eq!(
            failed_field(parse_value(with("domain", json!("not a domain")))),
            "domain"
        );
        assert_eq!(failed_field(parse_value(with("name", json!(5)))), "name");
        assert_eq!(
            failed_field(parse_value(with("status", json!("exploded")))),
            "status"
        );
        assert_eq!(
            failed_field(parse_value(with("customer", json!({"email": "nope"})))),
            "customer.email"
        );
        assert_eq!(
            failed_field(parse_value(with(
                "customer",
                json!({"email": "a@b.test", "slug": "../../etc"})
            ))),
            "customer.slug"
        );
        assert_eq!(
            failed_field(parse_value(with("customer", json!("a@b.test")))),
            "customer"
        );
        assert_eq!(failed_field(parse(b"{\"email\": 5}", true, None)), "email");
        assert_eq!(failed_field(parse(b"[1, 2]", false, None)), "file");
        assert!(matches!(
            parse_value(json!({"title": "not a site"})),
            Parsed::Skipped(_)
        ));
    }

    #[test]
    fn clashes_between_files_fail_the_later_file() {
        let owner = CustomerDoc {
            email: "a@b.test".into(),
            ..Default::default()
        };
        let site = |domain: &str, port: Option<i64>| SiteDoc {
            legacy_id: None,
            name: "S".into(),
            domain: domain.into(),
            port,
            business_type: None,
            status: None,
            config: Some(Box::new(json!({}))),
        };
        let names = ["one.json", "two.json", "three.json", "four.json"];
        let mut files = vec![
            Parsed::Site(Box::new(site("a.test", Some(1))), Arc::new(owner.clone())),
            Parsed::Site(Box::new(site("a.test", None)), Arc::new(owner.clone())),
            Parsed::Site(Box::new(site("c.test", Some(1))), Arc::new(owner.clone())),
            Parsed::Site(
                Box::new(site("d.test", None)),
                Arc::new(CustomerDoc {
                    plan: Some("pro".into()),
                    ..owner.clone()
                }),
            ),
        ];
        cross_check(&mut files, |i| names[i]);
        let fields: Vec<String> = files
            .into_iter()
            .map(|p| match p {
                Parsed::Failed(problem) => problem.field,
                _ => "ok".into(),
            })
            .collect();
        assert_eq!(fields, ["ok", "domain", "port", "customer"]);
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,40}".prop_map(Value::String),
            prop_oneof![
                Just("domain"),
                Just("name"),
                Just("port"),
                Just("customer"),
                Just("email"),
                Just("siteId")
            ]
            .prop_map(|s| Value::String(s.to_string())),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("domain".to_string()),
                        Just("siteId".to_string()),
                        Just("name".to_string()),
                        Just("port".to_string()),
                        Just("status".to_string()),
                        Just("customer".to_string()),
                        Just("email".to_string()),
                        Just("plan".to_string()),
                        Just("slug".to_string()),
                        ".{0,12}",
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse(&bytes, false, None);
            let _ = parse(&bytes, true, None);
        }

        #[test]
        fn arbitrary_json_never_panics(value in json_value()) {
            let text = value.to_string();
            let owner = CustomerDoc { email: "a@b.test".into(), ..Default::default() };
            for parsed in [parse(text.as_bytes(), false, None), parse(text.as_bytes(), true, None), parse(text.as_bytes(), false, Some(&owner))] {
                cross_check(&mut [parsed], |_| "x.json");
            }
        }
    }
}
