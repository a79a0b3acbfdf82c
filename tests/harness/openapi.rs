//! Every request the GitHub test server receives, judged by GitHub's published REST API
//! description (`api.github.com.deref.json` from npm's `@octokit/openapi`, installed by
//! `npm ci --prefix tests/oracles`), so the test server cannot agree with a misreading of the
//! API that our client shares: the path must be one the description has, with that method;
//! path parameters of their declared types; query parameters declared for the operation, with
//! valid values, and the required ones present; a body only where the operation takes one,
//! valid against its JSON schema.
//!
//! The schema check covers what the description uses for request bodies: `type` (and
//! `nullable`), `enum`, `properties`, `required`, `additionalProperties`, `items`, `oneOf`,
//! `anyOf`, `allOf`, lengths and bounds. GraphQL (`POST /graphql`) is outside the REST
//! description and not judged here.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

/// Where `npm ci --prefix tests/oracles` puts the description.
pub fn github_path() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/oracles/node_modules/@octokit/openapi/generated/api.github.com.deref.json")
}

/// GitHub's REST description, read once per test binary.
pub fn github() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = github_path();
        let text = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (npm ci --prefix tests/oracles installs @octokit/openapi)",
                path.display()
            )
        });
        serde_json::from_slice(&text).expect("GitHub's description is JSON")
    })
}

/// The operation of `doc` for `method` on `path`, and the path's template: the template whose
/// literal segments match the most (`/pulls/comments` before `/pulls/{pull_number}`).
fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> Option<(&'a str, &'a Value)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut best: Option<(usize, &str, &Value)> = None;
    for (template, item) in doc["paths"].as_object()? {
        let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut literal = 0;
        let fits = parts.iter().zip(&segments).all(|(p, s)| {
            if p.starts_with('{') && p.ends_with('}') {
                !s.is_empty()
            } else {
                literal += 1;
                p == s
            }
        });
        if fits && best.is_none_or(|(n, _, _)| literal > n) {
            best = Some((literal, template, item));
        }
    }
    let (_, template, item) = best?;
    item.get(method.to_ascii_lowercase())
        .map(|op| (template, op))
}

/// Why a request is not one the description allows, or `None`.
pub fn violation(
    doc: &Value,
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: &Value,
) -> Option<String> {
    let what = format!("{method} {path}");
    let Some((template, op)) = operation(doc, method, path) else {
        return Some(format!("{what}: no such operation in the description"));
    };
    let parameters: Vec<&Value> = op["parameters"]
        .as_array()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    // Path parameters: their types.
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    for (part, segment) in template.trim_matches('/').split('/').zip(&segments) {
        let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) else {
            continue;
        };
        let declared = parameters
            .iter()
            .find(|p| p["in"] == "path" && p["name"] == name);
        let Some(declared) = declared else {
            return Some(format!("{what}: path parameter {name} is not declared"));
        };
        let decoded = segment.replace("%2F", "/");
        if let Some(why) = check(
            &declared["schema"],
            &scalar(&declared["schema"], &decoded),
            name,
        ) {
            return Some(format!("{what}: {why}"));
        }
    }
    // Query parameters: declared, valid, and the required ones present.
    for (key, value) in query {
        let declared = parameters
            .iter()
            .find(|p| p["in"] == "query" && p["name"] == key.as_str());
        let Some(declared) = declared else {
            return Some(format!("{what}: query parameter {key} is not declared"));
        };
        if let Some(why) = check(
            &declared["schema"],
            &scalar(&declared["schema"], value),
            key,
        ) {
            return Some(format!("{what}: {why}"));
        }
    }
    for required in parameters
        .iter()
        .filter(|p| p["in"] == "query" && p["required"] == true)
    {
        let name = required["name"].as_str().unwrap_or_default();
        if !query.iter().any(|(k, _)| k == name) {
            return Some(format!(
                "{what}: required query parameter {name} is missing"
            ));
        }
    }
    // The body.
    let schema = &op["requestBody"]["content"]["application/json"]["schema"];
    match (body.is_null(), schema.is_null()) {
        (true, _) if op["requestBody"]["required"] == true => Some(format!(
            "{what}: the body the operation requires is missing"
        )),
        (true, _) => None,
        (false, true) => Some(format!("{what}: a body the operation does not take")),
        (false, false) => check(schema, body, "body").map(|why| format!("{what}: {why}")),
    }
}

/// A query or path value as the JSON its schema describes.
fn scalar(schema: &Value, text: &str) -> Value {
    let kinds = types(schema);
    if (kinds.contains(&"integer") || kinds.contains(&"number"))
        && let Ok(n) = text.parse::<i64>()
    {
        return Value::from(n);
    }
    if kinds.contains(&"boolean") && (text == "true" || text == "false") {
        return Value::from(text == "true");
    }
    Value::from(text)
}

fn types(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Why `value` does not meet `schema`, or `None`.
pub fn check(schema: &Value, value: &Value, at: &str) -> Option<String> {
    if !schema.is_object() {
        return None;
    }
    if value.is_null() && schema["nullable"] == true {
        return None;
    }
    if let Some(why) = schema["allOf"]
        .as_array()
        .and_then(|all| all.iter().find_map(|s| check(s, value, at)))
    {
        return Some(why);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(any) = schema[key].as_array() {
            let whys: Vec<String> = any.iter().filter_map(|s| check(s, value, at)).collect();
            if whys.len() == any.len() {
                return Some(format!("{at}: matches none of {key}: {}", whys.join(" | ")));
            }
        }
    }
    let kinds = types(schema);
    if !kinds.is_empty() {
        let fits = kinds.iter().any(|t| match *t {
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            "null" => value.is_null(),
            _ => true,
        });
        if !fits {
            return Some(format!("{at}: {value} is not {}", kinds.join(" or ")));
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Some(format!("{at}: {value} is not one of {}", schema["enum"]));
    }
    if let (Some(text), Some(max)) = (value.as_str(), schema["maxLength"].as_u64())
        && text.chars().count() as u64 > max
    {
        return Some(format!("{at}: longer than {max}"));
    }
    if let (Some(n), Some(min)) = (value.as_f64(), schema["minimum"].as_f64())
        && n < min
    {
        return Some(format!("{at}: {n} is below {min}"));
    }
    if let (Some(n), Some(max)) = (value.as_f64(), schema["maximum"].as_f64())
        && n > max
    {
        return Some(format!("{at}: {n} is above {max}"));
    }
    if let Some(items) = value.as_array() {
        if let Some(max) = schema["maxItems"].as_u64()
            && items.len() as u64 > max
        {
            return Some(format!("{at}: more than {max} items"));
        }
        if let Some(min) = schema["minItems"].as_u64()
            && (items.len() as u64) < min
        {
            return Some(format!("{at}: fewer than {min} items"));
        }
        for (i, item) in items.iter().enumerate() {
            if let Some(why) = check(&schema["items"], item, &format!("{at}[{i}]")) {
                return Some(why);
            }
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema["properties"].as_object();
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                return Some(format!("{at}: required field {name} is missing"));
            }
        }
        for (key, field) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(s) => {
                    if let Some(why) = check(s, field, &format!("{at}.{key}")) {
                        return Some(why);
                    }
                }
                // Stricter than JSON Schema's default: a field the description does not name
                // is one GitHub would ignore, which is a misreading on our side.
                None if properties.is_some()
                    && !schema["additionalProperties"].is_object()
                    && schema["additionalProperties"] != true =>
                {
                    return Some(format!("{at}: field {key} is not in the schema"));
                }
                None => {
                    if let Some(why) = check(
                        &schema["additionalProperties"],
                        field,
                        &format!("{at}.{key}"),
                    ) {
                        return Some(why);
                    }
                }
            }
        }
    }
    None
}
