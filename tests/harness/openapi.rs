//! Every request a forge test server receives, judged by that forge's published API
//! description, so the test server cannot agree with a misreading of the API that our client
//! shares: the path must be one the description has, with that method; path parameters of
//! their declared types; query parameters declared for the operation, with valid values, and
//! the required ones present; a body only where the operation takes one, valid against its
//! JSON schema.
//!
//! The descriptions:
//! - GitHub: `api.github.com.deref.json` from npm's `@octokit/openapi`, installed by
//!   `npm ci --prefix tests/oracles`.
//! - Gitea: `tests/oracles/descriptions/gitea-v1.json`, the operations we call and their body
//!   definitions copied unchanged from Gitea's Swagger 2.0 description (source and commit in
//!   the file), turned into the OpenAPI 3 shape below when read.
//! - GitLab: `tests/oracles/descriptions/gitlab-v4.json`, GitLab's published attribute tables
//!   for those operations transcribed into OpenAPI 3 form (GitLab publishes no machine-readable
//!   description of them; the pages are named in the file).
//!
//! The schema check covers what the descriptions use for request bodies: `type` (and
//! `nullable`), `enum`, `properties`, `required`, `additionalProperties`, `items`, `oneOf`,
//! `anyOf`, `allOf`, lengths and bounds. GraphQL (`POST /graphql`) is outside the REST
//! description and not judged here.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

/// Where `npm ci --prefix tests/oracles` puts GitHub's description.
pub fn github_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/oracles/node_modules/@octokit/openapi/generated/api.github.com.deref.json")
}

fn read_json(path: &Path, hint: &str) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e} ({hint})", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn descriptions(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/oracles/descriptions")
        .join(name)
}

/// GitHub's REST description, read once per test binary.
pub fn github() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        read_json(
            &github_path(),
            "npm ci --prefix tests/oracles installs @octokit/openapi",
        )
    })
}

/// The GitLab operations we call, as GitLab's reference describes them.
pub fn gitlab() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| read_json(&descriptions("gitlab-v4.json"), "kept in the repository"))
}

/// The Gitea operations we call, from Gitea's Swagger 2.0 description, in OpenAPI 3 shape.
pub fn gitea() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        swagger2_to_openapi3(&read_json(
            &descriptions("gitea-v1.json"),
            "kept in the repository",
        ))
    })
}

/// Swagger 2.0's shape in the one [`violation`] reads: a `body` parameter becomes the
/// operation's `requestBody`, the other parameters' types move under `schema`, and every
/// `#/definitions/…` reference is replaced by what it names.
fn swagger2_to_openapi3(doc: &Value) -> Value {
    let definitions = &doc["definitions"];
    let mut paths = Map::new();
    for (template, item) in doc["paths"].as_object().into_iter().flatten() {
        let mut methods = Map::new();
        for (method, op) in item.as_object().into_iter().flatten() {
            let mut parameters = Vec::new();
            let mut out = Map::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "body" {
                    out.insert(
                        "requestBody".into(),
                        json!({
                            "required": p["required"] == true,
                            "content": {"application/json": {
                                "schema": resolve(&p["schema"], definitions, 0)
                            }},
                        }),
                    );
                    continue;
                }
                let mut schema = Map::new();
                for key in ["type", "format", "enum", "items"] {
                    if !p[key].is_null() {
                        schema.insert(key.into(), p[key].clone());
                    }
                }
                parameters.push(json!({
                    "name": p["name"], "in": p["in"], "required": p["required"] == true,
                    "schema": Value::Object(schema),
                }));
            }
            out.insert("parameters".into(), Value::Array(parameters));
            methods.insert(method.clone(), Value::Object(out));
        }
        paths.insert(template.clone(), Value::Object(methods));
    }
    json!({ "paths": paths })
}

/// `schema` with its `$ref`s replaced, to a depth that ends self-referring definitions.
fn resolve(schema: &Value, definitions: &Value, depth: usize) -> Value {
    if depth > 8 {
        return json!({});
    }
    match schema {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/definitions/"))
            {
                return resolve(&definitions[name], definitions, depth + 1);
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), resolve(v, definitions, depth)))
                    .collect(),
            )
        }
        Value::Array(list) => Value::Array(
            list.iter()
                .map(|v| resolve(v, definitions, depth))
                .collect(),
        ),
        other => other.clone(),
    }
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
