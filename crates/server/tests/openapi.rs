//! The OpenAPI document (`assets/openapi.json`) against the router and the live server:
//! every route in `src/http.rs` is documented (and nothing else is), with the auth scheme,
//! `Idempotency-Key` header and request body its handler actually takes; request bodies are
//! closed (`additionalProperties: false`); and a walk through every operation on both backends
//! checks each real answer against the documented status, content type and schema (unknown
//! response fields and undocumented error codes fail). `/docs` must be self-contained.

mod common;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use webauthn_authenticator_rs::prelude::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

const HTTP_RS: &str = include_str!("../src/http.rs");
const DOC: &str = include_str!("../assets/openapi.json");
const DOCS_HTML: &str = include_str!("../assets/docs.html");

const METHODS: &[&str] = &[
    "get", "post", "put", "delete", "patch", "head", "options", "trace",
];

fn doc() -> Value {
    serde_json::from_str(DOC).expect("assets/openapi.json is not valid JSON")
}

// ------------------------------------------------------------------ router source parsing

/// One `(method, path)` of the router, with the handler function when it is a named one.
#[derive(Debug, Clone)]
struct Route {
    method: String,
    path: String,
    handler: Option<String>,
}

/// The source without comments; string literals are kept as they are.
fn strip_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let end = string_end(b, i);
                out.push_str(&src[i..end]);
                i = end;
            }
            b'\'' if i + 2 < b.len() && b[i + 2] == b'\'' => {
                out.push_str(&src[i..i + 3]);
                i += 3;
            }
            b'\'' if i + 3 < b.len() && b[i + 1] == b'\\' && b[i + 3] == b'\'' => {
                out.push_str(&src[i..i + 4]);
                i += 4;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            _ => {
                let ch = src[i..].chars().next().expect("char");
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    out
}

/// Index just past the string literal starting at `start` (a `"`).
fn string_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Every `(method, path)` routed by `.route("...", get(h).post(h2)...)` in `src`.
fn routes(src: &str) -> Vec<Route> {
    let src = strip_comments(src);
    for unsupported in [".nest(", ".merge(", ".route_service(", ".nest_service("] {
        assert!(
            !src.contains(unsupported),
            "http.rs uses `{unsupported}`: teach tests/openapi.rs to read it"
        );
    }
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(off) = src[from..].find(".route(") {
        let open = from + off + ".route".len();
        from = open + 1;
        let mut i = open + 1;
        while b[i].is_ascii_whitespace() {
            i += 1;
        }
        assert_eq!(
            b[i],
            b'"',
            "route path is not a string literal near `{}`",
            &src[open..open + 40]
        );
        let end = string_end(b, i);
        let path = src[i + 1..end - 1].to_string();
        // The method routers are the calls at depth 1 inside `.route(...)`.
        let mut depth = 1;
        i = end;
        while depth > 0 && i < b.len() {
            match b[i] {
                b'"' => {
                    i = string_end(b, i);
                    continue;
                }
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                c if depth == 1 && is_ident(c) && !is_ident(b[i - 1]) => {
                    let s = i;
                    while is_ident(b[i]) {
                        i += 1;
                    }
                    let name = &src[s..i];
                    let mut j = i;
                    while b[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if b[j] == b'(' {
                        assert!(
                            METHODS.contains(&name),
                            "route {path}: `{name}(...)` is not a method router tests/openapi.rs knows"
                        );
                        // The argument: a handler name, or a closure.
                        let mut k = j + 1;
                        let mut d = 1;
                        while d > 0 {
                            match b[k] {
                                b'"' => {
                                    k = string_end(b, k);
                                    continue;
                                }
                                b'(' | b'[' | b'{' => d += 1,
                                b')' | b']' | b'}' => d -= 1,
                                _ => {}
                            }
                            k += 1;
                        }
                        let arg = src[j + 1..k - 1].trim();
                        let handler =
                            (!arg.is_empty() && arg.bytes().all(is_ident)).then(|| arg.to_string());
                        out.push(Route {
                            method: name.to_string(),
                            path: path.clone(),
                            handler,
                        });
                        i = k;
                    }
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
    out
}

/// The parameter list of `async fn name(` in `src`.
fn signature(src: &str, name: &str) -> String {
    let src = strip_comments(src);
    let start = src
        .find(&format!("async fn {name}("))
        .unwrap_or_else(|| panic!("handler {name} not found in http.rs"));
    // The parameters only: the return type may mention `Json` too.
    let rest = &src[start..];
    let end = start
        + [rest.find("->"), rest.find('{')]
            .into_iter()
            .flatten()
            .min()
            .expect("fn body");
    src[start..end].to_string()
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
    doc["paths"].get(path)?.get(method)
}

/// Resolves local `$ref`s.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..32 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                v = r
                    .strip_prefix('#')
                    .and_then(|p| doc.pointer(p))
                    .unwrap_or_else(|| panic!("unresolvable $ref {r}"));
            }
            None => return v,
        }
    }
    panic!("$ref loop")
}

/// Everything that is wrong between the router source and the document.
fn route_problems(src: &str, doc: &Value) -> Vec<String> {
    let routes = routes(src);
    let mut problems = Vec::new();
    let routed: BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    for r in &routes {
        let m = r.method.to_uppercase();
        let Some(op) = operation(doc, &r.method, &r.path) else {
            if r.path != "/docs" {
                problems.push(format!("{m} {} is routed but not documented", r.path));
            }
            continue;
        };
        let Some(handler) = &r.handler else {
            // Inline closures: the public, body-less endpoints.
            if op["security"] != json!([]) {
                problems.push(format!(
                    "{m} {}: a closure route takes no credentials; document `security: []`",
                    r.path
                ));
            }
            continue;
        };
        let sig = signature(src, handler);
        let want_security = if sig.contains("CustomerAuth") {
            json!([{"customerSession": []}])
        } else if sig.contains("TerminalAuth") || sig.contains("TerminalKey") {
            json!([{"terminalKey": []}])
        } else if sig.contains("StaffAuth") {
            json!([{"staffSession": []}])
        } else {
            json!([])
        };
        if op["security"] != want_security {
            problems.push(format!(
                "{m} {}: security is {}, the handler needs {want_security}",
                r.path, op["security"]
            ));
        }
        let params: Vec<&Value> = op["parameters"]
            .as_array()
            .map(|a| a.iter().map(|p| resolve(doc, p)).collect())
            .unwrap_or_default();
        let idem = params.iter().find(|p| {
            p["in"] == "header"
                && p["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case("idempotency-key"))
        });
        match (sig.contains("IdempotencyKey"), idem) {
            (true, None) => problems.push(format!(
                "{m} {}: the handler requires Idempotency-Key; document the header",
                r.path
            )),
            (true, Some(p)) if p["required"] != true => {
                problems.push(format!("{m} {}: Idempotency-Key must be required", r.path))
            }
            (false, Some(_)) => problems.push(format!(
                "{m} {}: documents Idempotency-Key but the handler ignores it",
                r.path
            )),
            _ => {}
        }
        for seg in r.path.split('/').filter(|s| s.starts_with('{')) {
            let name = seg.trim_matches(|c| c == '{' || c == '}');
            if !params
                .iter()
                .any(|p| p["in"] == "path" && p["name"] == name && p["required"] == true)
            {
                problems.push(format!(
                    "{m} {}: path parameter `{name}` is not documented",
                    r.path
                ));
            }
        }
        let takes_body = sig.contains("Json<") || sig.contains("Bytes");
        if takes_body != op.get("requestBody").is_some() {
            problems.push(format!(
                "{m} {}: request body documented: {}, handler reads one: {takes_body}",
                r.path, !takes_body
            ));
        }
    }
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if METHODS.contains(&method.as_str())
                && !routed.contains(&(method.clone(), path.clone()))
            {
                problems.push(format!(
                    "{} {path} is documented but not routed",
                    method.to_uppercase()
                ));
            }
        }
    }
    problems
}

// ------------------------------------------------------------------ static checks

#[test]
fn document_is_openapi_3_1() {
    let d = doc();
    assert!(
        d["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")),
        "openapi = {}",
        d["openapi"]
    );
    assert!(d["info"]["title"].is_string() && d["info"]["version"].is_string());
    // Every $ref resolves.
    fn walk(doc: &Value, v: &Value) {
        match v {
            Value::Object(m) => {
                if m.contains_key("$ref") {
                    resolve(doc, v);
                }
                m.values().for_each(|x| walk(doc, x));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(doc, x)),
            _ => {}
        }
    }
    walk(&d, &d);
    let mut ids = BTreeSet::new();
    for (path, item) in d["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let at = format!("{} {path}", method.to_uppercase());
            for k in ["summary", "description", "operationId"] {
                assert!(
                    op[k].as_str().is_some_and(|s| !s.is_empty()),
                    "{at}: no {k}"
                );
            }
            assert!(
                ids.insert(op["operationId"].as_str().unwrap_or("").to_string()),
                "{at}: duplicate operationId"
            );
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{at}: no tag"
            );
            assert!(op["security"].is_array(), "{at}: security must be explicit");
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{at}: no success response"
            );
            // Error answers use the shared Error object and list their codes.
            for (status, r) in responses {
                if !path.starts_with("/v1/") || status.starts_with('2') {
                    continue;
                }
                let s = &resolve(&d, r)["content"]["application/json"]["schema"];
                let parts = s["allOf"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{at} {status}: not an Error schema"));
                assert_eq!(
                    parts[0]["$ref"], "#/components/schemas/Error",
                    "{at} {status}"
                );
                let codes =
                    parts[1]["properties"]["error"]["properties"]["code"]["enum"].as_array();
                assert!(
                    codes.is_some_and(|c| !c.is_empty()),
                    "{at} {status}: no error codes listed"
                );
            }
        }
    }
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let routes = routes(HTTP_RS);
    let have = |m: &str, p: &str| routes.iter().any(|r| r.method == m && r.path == p);
    // The parser sees chained method routers and closures.
    assert!(
        have("post", "/v1/cards") && have("get", "/v1/cards"),
        "{routes:?}"
    );
    assert!(
        have("get", "/healthz") && have("delete", "/v1/sessions/current"),
        "{routes:?}"
    );
    assert!(
        routes.len() >= 20,
        "only {} routes parsed: {routes:?}",
        routes.len()
    );
    let problems = route_problems(HTTP_RS, &doc());
    assert!(
        problems.is_empty(),
        "the OpenAPI document and http.rs disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn an_undocumented_route_is_caught() {
    let src = HTTP_RS.replacen(
        "Router::new()",
        "Router::new()\n        .route(\"/v1/fake/{id}\", post(wallet).get(|| async { \"x(\" }))",
        1,
    );
    assert_ne!(src, HTTP_RS);
    let problems = route_problems(&src, &doc());
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("POST /v1/fake/{id} is routed but not documented")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("GET /v1/fake/{id} is routed but not documented")),
        "{problems:?}"
    );
    // A documented operation the router lacks.
    let mut d = doc();
    d["paths"]["/v1/ghost"] = json!({"get": {"responses": {"200": {"description": "x"}}}});
    d["paths"]["/v1/wallet"]["post"] = json!({"responses": {"200": {"description": "x"}}});
    let problems = route_problems(HTTP_RS, &d);
    assert!(
        problems.contains(&"GET /v1/ghost is documented but not routed".to_string()),
        "{problems:?}"
    );
    assert!(
        problems.contains(&"POST /v1/wallet is documented but not routed".to_string()),
        "{problems:?}"
    );
    // A money-moving route documented without its Idempotency-Key.
    let mut d = doc();
    d["paths"]["/v1/topups"]["post"]["parameters"] = json!([]);
    let problems = route_problems(HTTP_RS, &d);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("POST /v1/topups: the handler requires Idempotency-Key")),
        "{problems:?}"
    );
}

#[test]
fn request_bodies_are_closed() {
    let d = doc();
    // Every object schema reachable from a request body refuses unknown fields, as the serde
    // structs do (`deny_unknown_fields`).
    fn closed(doc: &Value, s: &Value, at: &str, n: &mut usize) {
        let s = resolve(doc, s);
        if s.get("properties").is_some() {
            *n += 1;
            assert_eq!(
                s["additionalProperties"], false,
                "{at}: additionalProperties must be false"
            );
            for (k, p) in s["properties"].as_object().expect("properties") {
                closed(doc, p, &format!("{at}.{k}"), n);
            }
        }
        if let Some(items) = s.get("items") {
            closed(doc, items, &format!("{at}[]"), n);
        }
        for k in ["oneOf", "anyOf", "allOf"] {
            for p in s[k].as_array().into_iter().flatten() {
                closed(doc, p, at, n);
            }
        }
    }
    let mut bodies = 0;
    for (path, item) in d["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let Some(rb) = op.get("requestBody") else {
                continue;
            };
            let rb = resolve(&d, rb);
            let content = rb["content"].as_object().expect("content");
            assert!(content.contains_key("application/json"), "{method} {path}");
            for (ct, media) in content {
                let mut objects = 0;
                closed(
                    &d,
                    &media["schema"],
                    &format!("{} {path} {ct}", method.to_uppercase()),
                    &mut objects,
                );
                assert!(
                    objects > 0,
                    "{method} {path}: the request body is not an object schema"
                );
                bodies += 1;
            }
        }
    }
    assert!(bodies >= 7, "only {bodies} request bodies");
}

// ------------------------------------------------------------------ schema validation

/// Validates `v` against the JSON Schema subset the document uses. `strict`: objects may hold
/// only the properties the schema names (so an undocumented response field fails).
fn validate(doc: &Value, v: &Value, s: &Value, strict: bool, at: &str, errs: &mut Vec<String>) {
    let s = resolve(doc, s);
    if let Some(parts) = s.get("allOf").and_then(Value::as_array) {
        for p in parts {
            validate(doc, v, p, false, at, errs);
        }
        if strict && let Some(obj) = v.as_object() {
            let mut names = BTreeSet::new();
            property_names(doc, s, &mut names);
            for k in obj.keys().filter(|k| !names.contains(*k)) {
                errs.push(format!("{at}: undocumented field `{k}`"));
            }
        }
    }
    for (k, need_one) in [("oneOf", true), ("anyOf", false)] {
        if let Some(alts) = s.get(k).and_then(Value::as_array) {
            let ok = alts
                .iter()
                .filter(|a| {
                    let mut e = Vec::new();
                    validate(doc, v, a, strict, at, &mut e);
                    e.is_empty()
                })
                .count();
            if (need_one && ok != 1) || ok == 0 {
                errs.push(format!("{at}: {v} matches {ok} of the {k} alternatives"));
            }
        }
    }
    if let Some(c) = s.get("const")
        && v != c
    {
        errs.push(format!("{at}: {v} is not the constant {c}"));
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errs.push(format!(
            "{at}: {v} is not one of {}",
            Value::Array(e.clone())
        ));
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(x) => vec![x.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let fits = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !fits {
            errs.push(format!("{at}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(n) = v.as_f64() {
        if s.get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            errs.push(format!("{at}: {v} is below the minimum"));
        }
        if s.get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            errs.push(format!("{at}: {v} is above the maximum"));
        }
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if s.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
            || s.get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
        {
            errs.push(format!("{at}: length {len} is out of bounds"));
        }
    }
    if let Some(obj) = v.as_object() {
        for r in s["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !obj.contains_key(r) {
                errs.push(format!("{at}: required field `{r}` is missing"));
            }
        }
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (k, x) in obj {
                match props.get(k) {
                    Some(p) => validate(doc, x, p, strict, &format!("{at}.{k}"), errs),
                    None if strict
                        && s.get("allOf").is_none()
                        && s.get("additionalProperties") != Some(&Value::Bool(true)) =>
                    {
                        errs.push(format!("{at}: undocumented field `{k}`"));
                    }
                    None => {}
                }
            }
        }
    }
    if let (Some(items), Some(a)) = (s.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            validate(doc, x, items, strict, &format!("{at}[{i}]"), errs);
        }
    }
}

fn property_names(doc: &Value, s: &Value, out: &mut BTreeSet<String>) {
    let s = resolve(doc, s);
    if let Some(p) = s.get("properties").and_then(Value::as_object) {
        out.extend(p.keys().cloned());
    }
    for p in s["allOf"].as_array().into_iter().flatten() {
        property_names(doc, p, out);
    }
}

/// Checks one real answer against the operation's documented responses.
fn conformance(doc: &Value, method: &str, template: &str, r: &Resp) -> Vec<String> {
    let at = format!("{method} {template} -> {}", r.status);
    let Some(op) = operation(doc, &method.to_lowercase(), template) else {
        return vec![format!("{at}: operation not documented")];
    };
    let Some(resp) = op["responses"].get(r.status.to_string()) else {
        return vec![format!("{at}: status not documented (body {})", r.text)];
    };
    let resp = resolve(doc, resp);
    let Some(content) = resp.get("content").and_then(Value::as_object) else {
        return if r.text.is_empty() {
            vec![]
        } else {
            vec![format!("{at}: documented without a body, got {}", r.text)]
        };
    };
    let mime = r.content_type.split(';').next().unwrap_or("").trim();
    let Some(media) = content.get(mime) else {
        return vec![format!("{at}: content type `{mime}` not documented")];
    };
    let mut errs = Vec::new();
    if mime == "application/json" {
        validate(doc, &r.body, &media["schema"], true, &at, &mut errs);
    } else if let Some(c) = media["schema"].get("const")
        && c.as_str() != Some(r.text.as_str())
    {
        errs.push(format!("{at}: body {:?} is not {c}", r.text));
    }
    errs
}

/// One request of the walk: the documented path (`template`) and the real one.
struct Rq {
    method: &'static str,
    template: &'static str,
    path: String,
    bearer: Option<String>,
    idem: Option<String>,
    body: Option<Value>,
}

fn rq(method: &'static str, template: &'static str) -> Rq {
    Rq {
        method,
        template,
        path: template.to_string(),
        bearer: None,
        idem: None,
        body: None,
    }
}

impl Rq {
    fn at(mut self, path: impl Into<String>) -> Rq {
        self.path = path.into();
        self
    }
    fn auth(mut self, token: &str) -> Rq {
        self.bearer = Some(token.to_string());
        self
    }
    fn idem(mut self, key: &str) -> Rq {
        self.idem = Some(key.to_string());
        self
    }
    fn body(mut self, body: Value) -> Rq {
        self.body = Some(body);
        self
    }
}

/// Drives the live server, checking every answer against the document.
struct Walk<'a> {
    app: &'a TestApp,
    doc: &'a Value,
    covered: BTreeSet<(String, String)>,
    problems: Vec<String>,
}

impl Walk<'_> {
    /// Sends `r`, expects `status`, and checks the answer against the document.
    async fn ok(&mut self, r: Rq, status: u16) -> Resp {
        let (app, m, p) = (self.app, r.method, r.path.clone());
        let resp = app
            .send(m, &p, r.bearer.as_deref(), r.idem.as_deref(), r.body)
            .await;
        assert_eq!(resp.status, status, "{}: {m} {p}: {}", app.label, resp.text);
        for problem in conformance(self.doc, m, r.template, &resp) {
            self.problems.push(format!("{}: {problem}", app.label));
        }
        if (200..300).contains(&resp.status) {
            self.covered
                .insert((m.to_lowercase(), r.template.to_string()));
        }
        resp
    }

    /// Like `ok`, for an error answer with `code`.
    async fn err(&mut self, r: Rq, status: u16, code: &str) {
        let what = format!("{} {}", r.method, r.path);
        let resp = self.ok(r, status).await;
        assert_eq!(
            resp.error_code(),
            code,
            "{}: {what}: {}",
            self.app.label,
            resp.text
        );
    }
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

fn sale(code: &str, amount: i64) -> Value {
    json!({
        "code": code, "amount": amount, "currency": "JPY", "order_ref": "receipt-1",
        "basket": [{"sku": "4901234567894", "category": "onigiri", "quantity": 1, "unit_price": amount}]
    })
}

fn card(number: &str) -> Value {
    json!({"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"})
}

fn top(amount: i64, currency: &str, card: &str) -> Value {
    json!({"amount": amount, "currency": currency, "card_id": card})
}

/// A 6-digit code that is not `code` (its last digit moved on by one).
fn other_code(code: &str) -> String {
    let (head, last) = code.split_at(code.len() - 1);
    let d = last.parse::<u8>().expect("digit");
    format!("{head}{}", (d + 1) % 10)
}

/// The lower-case base32 token that follows `marker` (after any whitespace) in `text`.
fn link_token(text: &str, marker: &str) -> String {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("no `{marker}` in {text}"))
        + marker.len();
    let token: String = text[at..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || ('2'..='7').contains(c))
        .collect();
    assert_eq!(token.len(), 26, "token after `{marker}` in {text}");
    token
}

/// The origin the browser reports for passkeys: the default public URL.
fn origin() -> Url {
    Url::parse("http://localhost:8080").expect("url")
}

/// `key`'s answer to the passkey options in `body` (of a passkey step).
fn sign(key: &mut SoftPasskey, body: &Value) -> Value {
    let options: RequestChallengeResponse =
        serde_json::from_value(body["options"].clone()).expect("request options");
    let answer = key
        .do_authentication(origin(), options)
        .expect("passkey assertion");
    serde_json::to_value(answer).expect("assertion json")
}

/// `base` with the fields of `extra` added.
fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().expect("object") {
        base[k] = v.clone();
    }
    base
}

/// How many SMS to `to` containing `needle` were delivered so far.
fn count_sms(app: &TestApp, to: &str, needle: &str) -> usize {
    app.sms.to(to).iter().filter(|m| m.contains(needle)).count()
}

const SIGNUP: &str = "/v1/signup";
const VERIFY: &str = "/v1/signup/verify";
const RESEND: &str = "/v1/signup/resend";
const SESSIONS: &str = "/v1/sessions";
const SECOND_FACTOR: &str = "/v1/sessions/second-factor";
const LOGIN_SMS: &str = "/v1/sessions/second-factor/sms";
const LOGIN_PASSKEY: &str = "/v1/sessions/second-factor/passkey";
const REAUTH: &str = "/v1/sessions/current/reauthenticate";
const SESSION: &str = "/v1/sessions/{id}";
const PASSWORD: &str = "/v1/password";
const MFA: &str = "/v1/mfa";
const TOTP: &str = "/v1/mfa/totp";
const TOTP_CONFIRM: &str = "/v1/mfa/totp/confirm";
const TOTP_DISABLE: &str = "/v1/mfa/totp/disable";
const RECOVERY_CODES: &str = "/v1/mfa/recovery-codes";
const STEP_UP_SMS: &str = "/v1/mfa/sms";
const PASSKEYS: &str = "/v1/mfa/passkeys";
const PASSKEY_FINISH: &str = "/v1/mfa/passkeys/finish";
const PASSKEY: &str = "/v1/mfa/passkeys/{id}/remove";
const RECOVERY: &str = "/v1/recovery";
const RECOVERY_PASSKEY: &str = "/v1/recovery/passkey";
const RECOVERY_DONE: &str = "/v1/recovery/complete";
const CHANGES: &str = "/v1/contact-changes";
const CHANGE_VERIFY: &str = "/v1/contact-changes/verify";
const REVERT: &str = "/v1/contact-changes/revert";
const DEVICE: &str = "/v1/devices/{id}";
const CARDS: &str = "/v1/cards";
const CARD: &str = "/v1/cards/{id}";
const FUNDING: &str = "/v1/wallet/funding";
const TOPUPS: &str = "/v1/topups";
const HISTORY: &str = "/v1/transactions";
const CODES: &str = "/v1/payment-codes";
const PENDING: &str = "/v1/payments/pending";
const CONFIRM: &str = "/v1/payments/{id}/confirm";
const REJECT: &str = "/v1/payments/{id}/reject";
const PAY: &str = "/v1/pos/payments";
const PAYMENT: &str = "/v1/pos/payments/{id}";
const CANCEL: &str = "/v1/pos/payments/{id}/cancel";
const REFUNDS: &str = "/v1/pos/payments/{id}/refunds";

/// Every operation once or more, on success and on the errors worth pinning down.
async fn walk(app: &TestApp, doc: &Value) {
    let mut w = Walk {
        app,
        doc,
        covered: BTreeSet::new(),
        problems: Vec::new(),
    };
    for p in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/recover",
        "/revert",
    ] {
        w.ok(rq("GET", p), 200).await;
    }

    // Sign-up: codes to the email and the phone, a resend, then the verification that binds
    // the first device.
    let (email, pw) = ("contract@example.com", "correct horse battery staple");
    let phone = "+819012345678";
    let signup = json!({"email": email, "phone": "+81 90-1234-5678", "password": pw});
    let r = w.ok(rq("POST", SIGNUP).body(signup.clone()), 202).await;
    let signup_id = s(&r.body["signup_id"]);
    let first = r.body.clone();
    let bad = json!({"email": "nope", "phone": phone, "password": pw});
    w.err(rq("POST", SIGNUP).body(bad), 400, "invalid_email")
        .await;
    let extra = json!({"email": email, "phone": phone, "password": pw, "name": "x"});
    w.err(rq("POST", SIGNUP).body(extra), 400, "invalid_request")
        .await;
    app.email_code(email, "sign-up code", 0).await;
    app.sms_code(phone, "sign-up code", 0).await;
    let handle = json!({"signup_id": signup_id});
    w.ok(rq("POST", RESEND).body(handle), 202).await;
    // Same answer whatever the handle.
    let bogus = json!({"signup_id": "ksu_nope"});
    w.ok(rq("POST", RESEND).body(bogus), 202).await;
    let email_code = app.email_code(email, "sign-up code", 1).await;
    let phone_code = app.sms_code(phone, "sign-up code", 1).await;
    let verify = |email_code: &str| {
        let b = json!({"signup_id": signup_id, "email_code": email_code, "phone_code": phone_code, "device_name": "contract phone"});
        rq("POST", VERIFY).body(b)
    };
    w.err(verify(&other_code(&email_code)), 400, "invalid_code")
        .await;
    let r = w.ok(verify(&email_code), 201).await;
    assert_eq!(r.body["device"]["new"], true, "{}", r.text);
    let token = s(&r.body["token"]);
    let t = token.as_str();
    let device_a = json!({"id": r.body["device"]["id"], "secret": r.body["device"]["secret"]});
    w.err(verify(&email_code), 400, "invalid_code").await;
    // Signing up again with a registered address answers alike.
    let r = w.ok(rq("POST", SIGNUP).body(signup), 202).await;
    assert_eq!(scrub(&r.body), scrub(&first), "{}", r.text);

    // Log-in: a bound device signs in with its credentials; another device needs a second
    // factor (the SMS code, sent again on request).
    let again = json!({"email": email, "password": pw, "device": device_a});
    let r = w.ok(rq("POST", SESSIONS).body(again), 201).await;
    assert_eq!(r.body["device"]["new"], false, "{}", r.text);
    let second = s(&r.body["token"]);
    let plain = json!({"email": email, "password": pw, "device_name": "tablet"});
    let r = w.ok(rq("POST", SESSIONS).body(plain.clone()), 202).await;
    assert_eq!(r.body["status"], "second_factor_required", "{}", r.text);
    assert_eq!(r.body["sms_sent"], true, "{}", r.text);
    let challenge = s(&r.body["challenge"]);
    // No passkey yet: the passkey step says so (the challenge already proved the password).
    let passkey_step = |challenge: &str| {
        let b = json!({"challenge": challenge});
        rq("POST", LOGIN_PASSKEY).body(b)
    };
    w.err(passkey_step(&challenge), 400, "no_passkey").await;
    let made_up = format!("klc_{}", "0".repeat(64));
    w.err(passkey_step(&made_up), 400, "invalid_code").await;
    app.sms_code(phone, "sign-in code", 0).await;
    let resend = json!({"challenge": challenge});
    w.ok(rq("POST", LOGIN_SMS).body(resend), 202).await;
    let code = app.sms_code(phone, "sign-in code", 1).await;
    let factor = |method: &str, code: &str| {
        let b = json!({"challenge": challenge, "method": method, "code": code});
        rq("POST", SECOND_FACTOR).body(b)
    };
    w.err(factor("sms", &other_code(&code)), 400, "invalid_code")
        .await;
    w.err(factor("totp", "123456"), 400, "invalid_code").await;
    let r = w.ok(factor("sms", &code), 201).await;
    assert_eq!(r.body["device"]["new"], true, "{}", r.text);
    let other = format!("/v1/devices/{}", s(&r.body["device"]["id"]));
    w.err(factor("sms", &code), 400, "invalid_code").await;
    let wrong = json!({"email": email, "password": "not the password"});
    w.err(rq("POST", SESSIONS).body(wrong), 401, "invalid_credentials")
        .await;
    // A sign-up never verified: the password gets fresh sign-up codes, not a session.
    let pending = "pending@example.com";
    app.sign_up(pending, &phone_for(pending), pw).await;
    app.email_code(pending, "sign-up code", 0).await;
    let r = w
        .ok(
            rq("POST", SESSIONS).body(json!({"email": pending, "password": pw})),
            202,
        )
        .await;
    assert_eq!(r.body["status"], "verification_required", "{}", r.text);

    // Sessions and devices.
    let r = w.ok(rq("GET", SESSIONS).auth(t), 200).await;
    let list = r.body["data"].as_array().expect("sessions");
    assert_eq!(list.len(), 3, "{}", r.text);
    let listed = list
        .iter()
        .find(|x| x["device_id"] == device_a["id"] && x["current"] == false)
        .unwrap_or_else(|| panic!("{}", r.text));
    let session = format!("/v1/sessions/{}", s(&listed["id"]));
    w.ok(rq("DELETE", SESSION).at(&session).auth(t), 204).await;
    w.err(
        rq("GET", "/v1/wallet").auth(&second),
        401,
        "unauthenticated",
    )
    .await;
    w.err(
        rq("DELETE", SESSION).at(&session).auth(t),
        404,
        "resource_missing",
    )
    .await;
    w.err(rq("GET", SESSIONS), 401, "unauthenticated").await;
    w.ok(rq("GET", "/v1/devices").auth(t), 200).await;
    w.err(rq("GET", "/v1/devices"), 401, "unauthenticated")
        .await;
    w.ok(rq("DELETE", DEVICE).at(&other).auth(t), 204).await;
    w.err(
        rq("DELETE", DEVICE).at(&other).auth(t),
        404,
        "resource_missing",
    )
    .await;

    // Cards, wallet, top-ups and history.
    let r = w
        .ok(
            rq("POST", CARDS).auth(t).body(card("4242 4242 4242 4242")),
            201,
        )
        .await;
    let good = s(&r.body["id"]);
    let r = w
        .ok(
            rq("POST", CARDS).auth(t).body(card("4000000000000002")),
            201,
        )
        .await;
    let declining = s(&r.body["id"]);
    let invalid = card("4242424242424241");
    w.err(rq("POST", CARDS).auth(t).body(invalid), 402, "invalid_card")
        .await;
    w.ok(rq("GET", CARDS).auth(t), 200).await;
    w.ok(rq("GET", "/v1/wallet").auth(t), 200).await;
    w.ok(
        rq("PUT", FUNDING).auth(t).body(json!({"source": "wallet"})),
        200,
    )
    .await;
    let half = json!({"source": "card"});
    w.err(
        rq("PUT", FUNDING).auth(t).body(half),
        400,
        "invalid_funding",
    )
    .await;
    let unknown = json!({"source": "card", "card_id": "card_nope"});
    w.err(
        rq("PUT", FUNDING).auth(t).body(unknown),
        404,
        "resource_missing",
    )
    .await;
    let topup = |key: &str, body: Value| rq("POST", TOPUPS).auth(t).idem(key).body(body);
    w.ok(topup("t1", top(30_000, "JPY", &good)), 201).await;
    w.ok(topup("t1", top(30_000, "JPY", &good)), 201).await;
    w.err(
        topup("t1", top(100, "JPY", &good)),
        422,
        "idempotency_key_reused",
    )
    .await;
    let no_key = rq("POST", TOPUPS).auth(t).body(top(100, "JPY", &good));
    w.err(no_key, 400, "idempotency_key_missing").await;
    w.err(
        topup("t2", top(30_001, "JPY", &good)),
        402,
        "topup_limit_exceeded",
    )
    .await;
    w.err(
        topup("t3", top(100, "USD", &good)),
        400,
        "currency_not_supported",
    )
    .await;
    w.err(
        topup("t4", top(100, "JPY", &declining)),
        402,
        "card_declined",
    )
    .await;
    w.ok(topup("t5", top(10_000, "JPY", &good)), 201).await;
    let r = w
        .ok(
            rq("GET", HISTORY).at("/v1/transactions?limit=2").auth(t),
            200,
        )
        .await;
    assert_eq!(r.body["has_more"], true, "{}", r.text);
    let next = format!("/v1/transactions?cursor={}", s(&r.body["next_cursor"]));
    w.ok(rq("GET", HISTORY).at(next).auth(t), 200).await;
    for (query, code) in [
        ("limit=0", "invalid_limit"),
        ("cursor=zzz", "invalid_cursor"),
        ("color=red", "invalid_query"),
    ] {
        let path = format!("/v1/transactions?{query}");
        w.err(rq("GET", HISTORY).at(path).auth(t), 400, code).await;
    }

    // A payment at the till, refunded in two parts.
    let (_store, key) = app.store_with_terminal("st_contract").await;
    let k = key.as_str();
    let code = s(&w.ok(rq("POST", CODES).auth(t), 201).await.body["code"]);
    let pay = |idem: &str, body: Value| rq("POST", PAY).auth(k).idem(idem).body(body);
    let r = w.ok(pay("p1", sale(&code, 1_200)), 201).await;
    assert_eq!(r.body["status"], "succeeded", "{}", r.text);
    let paid = s(&r.body["id"]);
    let r = w.ok(pay("p2", sale(&code, 1_200)), 201).await;
    assert_eq!(r.body["decline_code"], "invalid_code", "{}", r.text);
    w.err(pay("p3", sale("123", 1_200)), 400, "invalid_code")
        .await;
    let mut mismatch = sale(&code, 1_200);
    mismatch["amount"] = json!(1_300);
    w.err(pay("p4", mismatch), 400, "basket_amount_mismatch")
        .await;
    let anonymous = rq("POST", PAY).idem("p5").body(sale(&code, 1_200));
    w.err(anonymous, 401, "unauthenticated").await;
    w.ok(rq("GET", PAYMENT).at(format!("{PAY}/{paid}")).auth(k), 200)
        .await;
    let nope = format!("{PAY}/pay_nope");
    w.err(rq("GET", PAYMENT).at(nope).auth(k), 404, "resource_missing")
        .await;
    let refund = |idem: &str| {
        rq("POST", REFUNDS)
            .at(format!("{PAY}/{paid}/refunds"))
            .auth(k)
            .idem(idem)
    };
    w.ok(refund("r1").body(json!({"amount": 200})), 201).await;
    let too_much = refund("r2").body(json!({"amount": 5_000}));
    w.err(too_much, 422, "refund_exceeds_payment").await;
    let cancel = |id: &str, idem: &str| {
        rq("POST", CANCEL)
            .at(format!("{PAY}/{id}/cancel"))
            .auth(k)
            .idem(idem)
    };
    w.err(cancel(&paid, "c1"), 409, "payment_not_cancelable")
        .await;
    w.ok(refund("r3"), 201).await;

    // A payment canceled at the till.
    let code = s(&w.ok(rq("POST", CODES).auth(t), 201).await.body["code"]);
    let r = w.ok(pay("p6", sale(&code, 800)), 201).await;
    let r = w.ok(cancel(&s(&r.body["id"]), "c2"), 200).await;
    assert_eq!(r.body["status"], "canceled", "{}", r.text);

    // Large payments wait for the customer: one confirmed, one rejected.
    let code = s(&w.ok(rq("POST", CODES).auth(t), 201).await.body["code"]);
    let r = w.ok(pay("p7", sale(&code, 6_000)), 201).await;
    assert_eq!(r.body["status"], "pending_confirmation", "{}", r.text);
    let held = s(&r.body["id"]);
    let r = w.ok(rq("GET", PENDING).auth(t), 200).await;
    assert_eq!(
        r.body["data"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.text
    );
    let confirm = || {
        rq("POST", CONFIRM)
            .at(format!("/v1/payments/{held}/confirm"))
            .auth(t)
    };
    w.ok(confirm(), 200).await;
    w.err(confirm(), 409, "payment_not_pending").await;
    let code = s(&w.ok(rq("POST", CODES).auth(t), 201).await.body["code"]);
    let r = w.ok(pay("p8", sale(&code, 6_000)), 201).await;
    let reject = format!("/v1/payments/{}/reject", s(&r.body["id"]));
    let r = w.ok(rq("POST", REJECT).at(reject).auth(t), 200).await;
    assert_eq!(r.body["decline_code"], "rejected_by_customer", "{}", r.text);
    let nope = "/v1/payments/pay_nope/reject";
    w.err(rq("POST", REJECT).at(nope).auth(t), 404, "resource_missing")
        .await;

    // Removing things, and logging out.
    let gone = format!("/v1/cards/{declining}");
    w.ok(rq("DELETE", CARD).at(&gone).auth(t), 204).await;
    w.err(
        rq("DELETE", CARD).at(&gone).auth(t),
        404,
        "resource_missing",
    )
    .await;
    w.ok(rq("DELETE", "/v1/sessions/current").auth(t), 204)
        .await;
    w.err(rq("GET", "/v1/wallet").auth(t), 401, "unauthenticated")
        .await;

    // Step-up: the bound device signs in again; five minutes later the sensitive actions want
    // the password again, and re-authenticating replaces the session token.
    let back = json!({"email": email, "password": pw, "device": device_a});
    let r = w.ok(rq("POST", SESSIONS).body(back), 201).await;
    let stale = s(&r.body["token"]);
    app.clock.advance_ms(6 * 60_000);
    let link = rq("POST", CARDS)
        .auth(&stale)
        .body(card("4242424242424242"));
    w.err(link, 403, "reauthentication_required").await;
    let big = rq("POST", TOPUPS)
        .auth(&stale)
        .idem("t6")
        .body(top(20_000, "JPY", &good));
    w.err(big, 403, "reauthentication_required").await;
    w.err(
        rq("POST", TOTP).auth(&stale),
        403,
        "reauthentication_required",
    )
    .await;
    let reauth = |password: &str| {
        rq("POST", REAUTH)
            .auth(&stale)
            .body(json!({"password": password}))
    };
    w.err(reauth("not the password"), 401, "invalid_credentials")
        .await;
    let r = w.ok(reauth(pw), 201).await;
    let token = s(&r.body["token"]);
    let t = token.as_str();
    w.err(rq("GET", "/v1/wallet").auth(&stale), 401, "unauthenticated")
        .await;

    // The password.
    let pw2 = "violet tram umbrella nineteen";
    let change = |current: &str, new: &str| {
        let b = json!({"current_password": current, "new_password": new});
        rq("PUT", PASSWORD).auth(t).body(b)
    };
    w.err(change("not the password", pw2), 401, "invalid_credentials")
        .await;
    w.err(change(pw, "short"), 400, "invalid_password").await;
    let r = w.ok(change(pw, pw2), 200).await;
    assert_eq!(r.body["status"], "changed", "{}", r.text);

    // An authenticator app, and recovery codes.
    let r = w.ok(rq("GET", MFA).auth(t), 200).await;
    assert_eq!(r.body["totp"]["enabled"], false, "{}", r.text);
    let r = w.ok(rq("POST", TOTP).auth(t), 200).await;
    let key = konbini_core::encoding::unbase32(&s(&r.body["secret"])).expect("base32 secret");
    let totp_now = || konbini_core::totp::code_at(&key, app.clock_ms());
    let confirm = |code: &str| rq("POST", TOTP_CONFIRM).auth(t).body(json!({"code": code}));
    w.err(confirm("not a code"), 400, "invalid_code").await;
    let r = w.ok(confirm(&totp_now()), 200).await;
    assert_eq!(r.body["totp"]["enabled"], true, "{}", r.text);
    w.err(rq("POST", TOTP).auth(t), 409, "totp_already_enabled")
        .await;
    let r = w.ok(rq("POST", RECOVERY_CODES).auth(t), 200).await;
    let mut recovery_codes: Vec<String> = r.body["recovery_codes"]
        .as_array()
        .expect("recovery codes")
        .iter()
        .map(s)
        .collect();
    let r = w.ok(rq("GET", MFA).auth(t), 200).await;
    assert_eq!(r.body["totp"]["enabled"], true, "{}", r.text);
    assert_eq!(r.body["recovery_codes"]["remaining"], 10, "{}", r.text);

    // New devices now offer the app first (no SMS unasked); a recovery code works too.
    app.clock.advance_ms(31_000);
    let plain = json!({"email": email, "password": pw2});
    for (method, code) in [
        ("totp", totp_now()),
        ("recovery_code", recovery_codes.pop().expect("code")),
    ] {
        let r = w.ok(rq("POST", SESSIONS).body(plain.clone()), 202).await;
        assert_eq!(r.body["sms_sent"], false, "{}", r.text);
        assert_eq!(r.body["methods"][0], "totp", "{}", r.text);
        let b = json!({"challenge": r.body["challenge"], "method": method, "code": code});
        w.ok(rq("POST", SECOND_FACTOR).body(b), 201).await;
    }

    // Passkeys: registering one needs a recent authentication; then new devices are offered
    // the passkey first, and its answer binds them.
    let r = w.ok(rq("GET", PASSKEYS).auth(t), 200).await;
    assert_eq!(r.body["data"], json!([]), "{}", r.text);
    app.clock.advance_ms(6 * 60_000);
    w.err(
        rq("POST", PASSKEYS).auth(t),
        403,
        "reauthentication_required",
    )
    .await;
    let nope = rq("POST", PASSKEY)
        .at("/v1/mfa/passkeys/pk_nope/remove")
        .auth(t)
        .body(json!({"method": "totp", "code": totp_now()}));
    w.err(nope, 403, "reauthentication_required").await;
    let again = rq("POST", REAUTH).auth(t).body(json!({"password": pw2}));
    let token = s(&w.ok(again, 201).await.body["token"]);
    let t = token.as_str();
    let r = w.ok(rq("POST", PASSKEYS).auth(t), 200).await;
    let registration_id = s(&r.body["registration_id"]);
    let options: CreationChallengeResponse =
        serde_json::from_value(r.body["options"].clone()).expect("creation options");
    let mut authenticator = SoftPasskey::new(true);
    let created = authenticator
        .do_registration(origin(), options)
        .expect("passkey registration");
    let created = serde_json::to_value(created).expect("registration json");
    let finish = |credential: &Value| {
        let b = json!({"registration_id": registration_id, "credential": credential, "name": "contract key"});
        rq("POST", PASSKEY_FINISH).auth(t).body(b)
    };
    let forged = json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {"attestationObject": "AAAA", "clientDataJSON": "AAAA"}});
    w.err(finish(&forged), 400, "passkey_rejected").await;
    let r = w.ok(finish(&created), 201).await;
    assert_eq!(r.body["name"], "contract key", "{}", r.text);
    // The customer kept recovery codes from the app: none are issued again.
    assert!(r.body.get("recovery_codes").is_none(), "{}", r.text);
    let passkey = format!("/v1/mfa/passkeys/{}/remove", s(&r.body["id"]));
    w.err(finish(&created), 400, "passkey_rejected").await;
    let r = w.ok(rq("GET", MFA).auth(t), 200).await;
    assert_eq!(r.body["passkeys"]["count"], 1, "{}", r.text);
    let r = w.ok(rq("POST", SESSIONS).body(plain.clone()), 202).await;
    let offered = json!(["passkey", "totp", "sms", "recovery_code"]);
    assert_eq!(r.body["methods"], offered, "{}", r.text);
    let challenge = s(&r.body["challenge"]);
    let r = w.ok(passkey_step(&challenge), 200).await;
    let assertion = sign(&mut authenticator, &r.body);
    let by_passkey = |credential: &Value| {
        let b = json!({"challenge": challenge, "method": "passkey", "credential": credential});
        rq("POST", SECOND_FACTOR).body(b)
    };
    let forged = json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA"}});
    w.err(by_passkey(&forged), 400, "invalid_code").await;
    let r = w.ok(by_passkey(&assertion), 201).await;
    assert_eq!(r.body["device"]["new"], true, "{}", r.text);
    w.err(by_passkey(&assertion), 400, "invalid_code").await;
    let r = w.ok(rq("GET", PASSKEYS).auth(t), 200).await;
    assert!(r.body["data"][0]["last_used_ms"].is_i64(), "{}", r.text);

    // A contact change: a step-up SMS code as the factor, a code to the new address, and a
    // revert link to the old one.
    let new_email = "contract.new@example.com";
    let seen = count_sms(app, phone, "confirmation code");
    let r = w.ok(rq("POST", STEP_UP_SMS).auth(t), 202).await;
    assert_eq!(r.body["status"], "sent", "{}", r.text);
    let sms = app.sms_code(phone, "confirmation code", seen).await;
    let begin = |kind: &str, value: &str, factor: Value| {
        let b = json!({"kind": kind, "value": value, "factor": factor});
        rq("POST", CHANGES).auth(t).body(b)
    };
    let by_sms = |code: &str| json!({"method": "sms", "code": code});
    w.err(begin("fax", new_email, by_sms(&sms)), 400, "invalid_kind")
        .await;
    // No passkey ceremony exists for a contact change: refused before anything is checked.
    let by_key = json!({"method": "passkey", "credential": assertion});
    w.err(
        begin("email", new_email, by_key.clone()),
        400,
        "unsupported_factor",
    )
    .await;
    // (A refusal after the factor was checked spends it: ask for another code.)
    w.err(
        begin("email", email, by_sms(&sms)),
        400,
        "contact_unchanged",
    )
    .await;
    w.ok(rq("POST", STEP_UP_SMS).auth(t), 202).await;
    let sms = app.sms_code(phone, "confirmation code", seen + 1).await;
    let wrong = by_sms(&other_code(&sms));
    w.err(begin("email", new_email, wrong), 400, "invalid_code")
        .await;
    let r = w.ok(begin("email", new_email, by_sms(&sms)), 202).await;
    let change_id = s(&r.body["change_id"]);
    let code = app.email_code(new_email, "confirmation code", 0).await;
    let verify = |code: &str| {
        let b = json!({"change_id": change_id, "code": code});
        rq("POST", CHANGE_VERIFY).auth(t).body(b)
    };
    w.err(verify(&other_code(&code)), 400, "invalid_code").await;
    let r = w.ok(verify(&code), 200).await;
    assert_eq!(r.body["kind"], "email", "{}", r.text);
    let mail = app.email(email, "/revert#token=", 0).await;
    let revert_token = link_token(&mail, "/revert#token=");
    // An address another account has cannot be taken.
    let by_code = json!({"method": "recovery_code", "code": recovery_codes.pop()});
    let r = w.ok(begin("email", pending, by_code), 202).await;
    let change_id = s(&r.body["change_id"]);
    let code = app.email_code(pending, "confirmation code", 0).await;
    let b = json!({"change_id": change_id, "code": code});
    w.err(
        rq("POST", CHANGE_VERIFY).auth(t).body(b),
        409,
        "contact_unavailable",
    )
    .await;

    // Recovery: the same answer for any account; with an authenticator app or a passkey
    // enrolled the email token and SMS code are not enough.
    let ask = |identifier: &str| rq("POST", RECOVERY).body(json!({"identifier": identifier}));
    let r = w.ok(ask(new_email), 202).await;
    let recovery_id = s(&r.body["recovery_id"]);
    let nobody = w.ok(ask("nobody@example.com"), 202).await;
    assert_eq!(scrub(&r.body), scrub(&nobody.body), "{}", nobody.text);
    w.err(ask("nope"), 400, "invalid_identifier").await;
    let elsewhere = json!({"identifier": new_email, "email": "attacker@example.com"});
    w.err(rq("POST", RECOVERY).body(elsewhere), 400, "invalid_request")
        .await;
    let mail = app.email(new_email, "recovery token is", 0).await;
    let email_token = link_token(&mail, "recovery token is:");
    let sms = app.sms_code(phone, "account recovery code", 0).await;
    let pw3 = "quiet lantern orchard seventy";
    let complete = |password: &str, proofs: Value| {
        let b = json!({"recovery_id": recovery_id, "new_password": password});
        rq("POST", RECOVERY_DONE).body(with(b, proofs))
    };
    let weak = json!({"email_token": email_token, "sms_code": sms});
    w.err(complete(pw3, weak.clone()), 400, "invalid_proof")
        .await;
    w.err(complete("short", weak), 400, "invalid_password")
        .await;
    let extra = json!({"email_token": email_token, "to": "attacker@example.com"});
    w.err(complete(pw3, extra), 400, "invalid_request").await;
    // The passkey step opens only after a first proof, alike for a made-up recovery.
    let open = |recovery_id: &str, proofs: Value| {
        let b = with(json!({"recovery_id": recovery_id}), proofs);
        rq("POST", RECOVERY_PASSKEY).body(b)
    };
    w.err(open(&recovery_id, json!({})), 400, "invalid_proof")
        .await;
    let token_only = json!({"email_token": email_token});
    let made_up = s(&nobody.body["recovery_id"]);
    w.err(open(&made_up, token_only.clone()), 400, "invalid_proof")
        .await;
    let r = w.ok(open(&recovery_id, token_only), 200).await;
    let assertion = sign(&mut authenticator, &r.body);
    let strong = json!({"email_token": email_token, "passkey": assertion});
    let r = w.ok(complete(pw3, strong.clone()), 200).await;
    assert_eq!(r.body["status"], "recovered", "{}", r.text);
    w.err(complete(pw3, strong), 400, "invalid_proof").await;
    w.err(rq("GET", "/v1/wallet").auth(t), 401, "unauthenticated")
        .await;

    // The recovery hold: a device bound by SMS may not top up, link cards or change
    // contacts, and pays only small amounts; a device bound by the app may.
    let plain = json!({"email": new_email, "password": pw3});
    let r = w.ok(rq("POST", SESSIONS).body(plain.clone()), 202).await;
    let challenge = s(&r.body["challenge"]);
    let seen = count_sms(app, phone, "sign-in code");
    let resend = json!({"challenge": challenge});
    w.ok(rq("POST", LOGIN_SMS).body(resend), 202).await;
    let code = app.sms_code(phone, "sign-in code", seen).await;
    let b = json!({"challenge": challenge, "method": "sms", "code": code});
    let r = w.ok(rq("POST", SECOND_FACTOR).body(b), 201).await;
    let held = s(&r.body["token"]);
    let r = w.ok(rq("GET", MFA).auth(&held), 200).await;
    assert_eq!(r.body["recovery_hold"]["active"], true, "{}", r.text);
    let link = rq("POST", CARDS).auth(&held).body(card("4242424242424242"));
    w.err(link, 403, "recovery_hold").await;
    let small = rq("POST", TOPUPS)
        .auth(&held)
        .idem("t7")
        .body(top(1_000, "JPY", &good));
    w.err(small, 403, "recovery_hold").await;
    let b = json!({"kind": "phone", "value": "+819099990000", "factor": by_sms("123456")});
    w.err(
        rq("POST", CHANGES).auth(&held).body(b),
        403,
        "recovery_hold",
    )
    .await;
    // A factor added from this device would lift the hold.
    w.err(rq("POST", TOTP).auth(&held), 403, "recovery_hold")
        .await;
    w.err(rq("POST", PASSKEYS).auth(&held), 403, "recovery_hold")
        .await;
    let code = s(&w.ok(rq("POST", CODES).auth(&held), 201).await.body["code"]);
    let r = w.ok(pay("p9", sale(&code, 4_000)), 201).await;
    assert_eq!(r.body["decline_code"], "recovery_hold", "{}", r.text);
    app.clock.advance_ms(31_000);
    let r = w.ok(rq("POST", SESSIONS).body(plain.clone()), 202).await;
    let b = json!({"challenge": r.body["challenge"], "method": "totp", "code": totp_now()});
    let r = w.ok(rq("POST", SECOND_FACTOR).body(b), 201).await;
    let token = s(&r.body["token"]);
    let t = token.as_str();
    let small = rq("POST", TOPUPS)
        .auth(t)
        .idem("t8")
        .body(top(1_000, "JPY", &good));
    w.ok(small, 201).await;

    // Removing the app takes a strong factor.
    let disable = |factor: Value| rq("POST", TOTP_DISABLE).auth(t).body(factor);
    w.err(disable(by_sms("123456")), 400, "invalid_code").await;
    // (No passkey ceremony is started for this action, so a passkey is no factor here.)
    w.err(disable(by_key.clone()), 400, "unsupported_factor")
        .await;
    let by_code = json!({"method": "recovery_code", "code": recovery_codes.pop()});
    let r = w.ok(disable(by_code), 200).await;
    assert_eq!(r.body["totp"]["enabled"], false, "{}", r.text);

    // With a passkey but no app, a new device is sent no SMS unasked.
    let r = w.ok(rq("POST", SESSIONS).body(plain), 202).await;
    assert_eq!(r.body["sms_sent"], false, "{}", r.text);
    let offered = json!(["passkey", "sms", "recovery_code"]);
    assert_eq!(r.body["methods"], offered, "{}", r.text);

    // The passkey outlived the recovery; removing it takes a recent authentication and a
    // strong factor (an SMS code is not one, and a passkey is no factor here).
    let remove = |factor: Value| rq("POST", PASSKEY).at(&passkey).auth(t).body(factor);
    w.err(remove(by_sms("123456")), 400, "invalid_code").await;
    w.err(remove(by_key), 400, "unsupported_factor").await;
    let by_code = json!({"method": "recovery_code", "code": recovery_codes.pop()});
    w.ok(remove(by_code), 204).await;
    w.err(remove(by_sms("123456")), 404, "resource_missing")
        .await;
    let r = w.ok(rq("GET", MFA).auth(t), 200).await;
    assert_eq!(r.body["passkeys"]["count"], 0, "{}", r.text);

    // A customer whose first strong factor is a passkey gets recovery codes with it; wrong
    // factors for removing it are limited (5 per 15 minutes), then even a right one waits.
    let keyholder = app.customer("keyholder@example.com").await;
    let k = keyholder.token.as_str();
    let r = w.ok(rq("POST", PASSKEYS).auth(k), 200).await;
    let options: CreationChallengeResponse =
        serde_json::from_value(r.body["options"].clone()).expect("creation options");
    let created = SoftPasskey::new(true)
        .do_registration(origin(), options)
        .expect("passkey registration");
    let b = json!({"registration_id": r.body["registration_id"], "credential": created});
    let r = w.ok(rq("POST", PASSKEY_FINISH).auth(k).body(b), 201).await;
    let codes = r.body["recovery_codes"].as_array().expect("recovery codes");
    assert_eq!(codes.len(), 10, "{}", r.text);
    let real = json!({"method": "recovery_code", "code": codes[0]});
    let key = format!("/v1/mfa/passkeys/{}/remove", s(&r.body["id"]));
    let remove = |factor: Value| rq("POST", PASSKEY).at(&key).auth(k).body(factor);
    for _ in 0..5 {
        let wrong = json!({"method": "recovery_code", "code": "AAAA-AAAA-AAAA-AAAA"});
        w.err(remove(wrong), 400, "invalid_code").await;
    }
    w.err(remove(real), 429, "too_many_attempts").await;
    let r = w.ok(rq("GET", MFA).auth(k), 200).await;
    assert_eq!(r.body["passkeys"]["count"], 1, "{}", r.text);

    // Logging out.
    w.ok(rq("DELETE", "/v1/sessions/current").auth(t), 204)
        .await;
    w.err(rq("GET", "/v1/wallet").auth(t), 401, "unauthenticated")
        .await;

    // The old address undoes the email change: the account is frozen.
    let revert = |token: &str| rq("POST", REVERT).body(json!({"token": token}));
    w.err(revert("abcdefghijklmnopqrstuvwxyz"), 400, "invalid_token")
        .await;
    let r = w.ok(revert(&revert_token), 200).await;
    assert_eq!(r.body["status"], "reverted", "{}", r.text);
    w.err(revert(&revert_token), 400, "invalid_token").await;
    let frozen = json!({"email": email, "password": pw3});
    w.err(rq("POST", SESSIONS).body(frozen), 403, "account_frozen")
        .await;

    // Staff: password + TOTP, then the session.
    let secret = konbini_server::secrets::MasterSecret::new(vec![7u8; 32]).expect("secret");
    let (db, s2, now) = (app.db.clone(), secret.clone(), app.clock_ms());
    let created = tokio::task::spawn_blocking(move || {
        konbini_server::app::staff::create(&db, &s2, "staff@example.com", "Staff", "support", now)
    })
    .await
    .expect("join")
    .expect("staff");
    let code =
        konbini_core::totp::code_at(&secret.staff_totp_secret(&created.id, 1), app.clock_ms());
    let staff_login =
        json!({"email": "staff@example.com", "password": created.password, "totp": code});
    let r = w
        .ok(
            rq("POST", "/v1/admin/sessions").body(staff_login.clone()),
            201,
        )
        .await;
    let staff_token = s(&r.body["token"]);
    w.err(
        rq("POST", "/v1/admin/sessions").body(staff_login),
        401,
        "invalid_credentials",
    )
    .await;
    w.ok(rq("GET", "/v1/admin/me").auth(&staff_token), 200)
        .await;
    w.ok(
        rq("DELETE", "/v1/admin/sessions/current").auth(&staff_token),
        204,
    )
    .await;
    w.err(
        rq("GET", "/v1/admin/me").auth(&staff_token),
        401,
        "unauthenticated",
    )
    .await;
    w.err(
        rq("DELETE", "/v1/admin/sessions/current").auth(&staff_token),
        401,
        "unauthenticated",
    )
    .await;

    walk_risk_admin(&mut w).await;

    assert!(
        w.problems.is_empty(),
        "answers that do not match the document:\n{}",
        w.problems.join("\n")
    );
    let mut missed = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            if !w.covered.contains(&(method.clone(), path.clone())) {
                missed.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    assert!(
        missed.is_empty(),
        "add these operations to the walk in tests/openapi.rs: {missed:?}"
    );
}

/// A staff member with `role`, signed in: (staff id, session token).
async fn staff_session(app: &TestApp, email: &str, role: &str) -> (String, String) {
    let secret = konbini_server::secrets::MasterSecret::new(vec![7u8; 32]).expect("secret");
    let (db, s2, now) = (app.db.clone(), secret.clone(), app.clock_ms());
    let (e, r) = (email.to_string(), role.to_string());
    let created = tokio::task::spawn_blocking(move || {
        konbini_server::app::staff::create(&db, &s2, &e, "Staff", &r, now)
    })
    .await
    .expect("join")
    .expect("staff");
    let code =
        konbini_core::totp::code_at(&secret.staff_totp_secret(&created.id, 1), app.clock_ms());
    let login = json!({"email": email, "password": created.password, "totp": code});
    let r = app
        .send("POST", "/v1/admin/sessions", None, None, Some(login))
        .await;
    assert_eq!(r.status, 201, "{}: {}", app.label, r.text);
    (created.id, s(&r.body["token"]))
}

const RISK_RULES: &str = "/v1/admin/risk/rules";
const RISK_RULE: &str = "/v1/admin/risk/rules/{name}";
const RISK_ENABLE: &str = "/v1/admin/risk/rules/{name}/enable";
const RISK_DISABLE: &str = "/v1/admin/risk/rules/{name}/disable";
const RISK_BACKTEST: &str = "/v1/admin/risk/backtest";
const RISK_CASES: &str = "/v1/admin/risk/cases";
const RISK_CASE: &str = "/v1/admin/risk/cases/{id}";
const RISK_ASSIGN: &str = "/v1/admin/risk/cases/{id}/assign";
const RISK_RESOLVE: &str = "/v1/admin/risk/cases/{id}/resolve";
const FREEZE: &str = "/v1/admin/customers/{id}/freeze";
const UNFREEZE: &str = "/v1/admin/customers/{id}/unfreeze";

/// The risk admin API: rules in shadow mode, live, disabled and enabled again, a backtest,
/// the case a block opens, and freezing its customer.
async fn walk_risk_admin(w: &mut Walk<'_>) {
    let app = w.app;
    let (_, analyst) = staff_session(app, "analyst@example.com", "analyst").await;
    let (security_id, security) = staff_session(app, "security@example.com", "security").await;
    let (support_id, support) = staff_session(app, "support@example.com", "support").await;
    let (c, _) = app.funded_customer("admin-walk@example.com", 5_000).await;
    let (_, term) = app.store_with_terminal("st_admin_walk").await;
    let from_ms = app.clock_ms();

    let source = "block when event.kind == \"payment\" and payment.amount > 700";
    let new_rule = |name: &str, source: &str| json!({"name": name, "description": "walk", "source": source, "priority": 900, "mode": "shadow"});
    w.err(rq("GET", RISK_RULES), 401, "unauthenticated").await;
    w.ok(rq("GET", RISK_RULES).auth(&support), 200).await;
    let create = |name: &str, source: &str| {
        rq("POST", RISK_RULES)
            .auth(&analyst)
            .body(new_rule(name, source))
    };
    w.err(
        rq("POST", RISK_RULES)
            .auth(&support)
            .body(new_rule("walk_big", source)),
        403,
        "forbidden_role",
    )
    .await;
    let r = w.ok(create("walk_big", source), 201).await;
    assert_eq!(r.body["version"], 1, "{}", r.text);
    w.err(create("walk_big", source), 409, "rule_exists").await;
    w.err(
        create("walk_typo", "block when payment.amont > 1"),
        400,
        "invalid_rule",
    )
    .await;
    let rule = "/v1/admin/risk/rules/walk_big";
    let r = w
        .ok(rq("GET", RISK_RULE).at(rule).auth(&support), 200)
        .await;
    assert_eq!(r.body["versions"][0]["version"], 1, "{}", r.text);
    w.err(
        rq("GET", RISK_RULE)
            .at("/v1/admin/risk/rules/nope")
            .auth(&support),
        404,
        "resource_missing",
    )
    .await;
    let live = json!({"description": "walk", "source": source, "priority": 900, "mode": "live", "expected_version": 1});
    let r = w
        .ok(
            rq("PUT", RISK_RULE)
                .at(rule)
                .auth(&analyst)
                .body(live.clone()),
            200,
        )
        .await;
    assert_eq!(r.body["mode"], "live", "{}", r.text);
    w.err(
        rq("PUT", RISK_RULE).at(rule).auth(&analyst).body(live),
        409,
        "version_conflict",
    )
    .await;
    let r = w
        .ok(
            rq("POST", RISK_DISABLE)
                .at(format!("{rule}/disable"))
                .auth(&analyst),
            200,
        )
        .await;
    assert_eq!(r.body["enabled"], false, "{}", r.text);
    let r = w
        .ok(
            rq("POST", RISK_ENABLE)
                .at(format!("{rule}/enable"))
                .auth(&analyst),
            200,
        )
        .await;
    assert_eq!(r.body["enabled"], true, "{}", r.text);

    // A payment the live rule blocks: a case.
    let p = app
        .pay(&term, &app.offline_code(&c, 0), 800, "walk-big")
        .await;
    assert_eq!(p.body["decline_code"], "do_not_honor", "{}", p.text);
    let to_ms = app.clock_ms() + 1;
    let candidate = new_rule("walk_big", source);
    let r = w
        .ok(
            rq("POST", RISK_BACKTEST)
                .auth(&analyst)
                .body(json!({"rule": candidate, "from_ms": from_ms, "to_ms": to_ms})),
            200,
        )
        .await;
    assert_eq!(r.body["fired"], 1, "{}", r.text);
    w.err(
        rq("POST", RISK_BACKTEST)
            .auth(&analyst)
            .body(json!({"rule": candidate, "from_ms": to_ms, "to_ms": from_ms})),
        400,
        "invalid_window",
    )
    .await;

    let r = w.ok(rq("GET", RISK_CASES).auth(&support), 200).await;
    let case_id = r.body["data"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|k| k["customer_id"] == json!(c.customer_id))
        .map(|k| s(&k["id"]))
        .unwrap_or_else(|| panic!("no case: {}", r.text));
    w.err(
        rq("GET", RISK_CASES)
            .at(format!("{RISK_CASES}?status=maybe"))
            .auth(&support),
        400,
        "invalid_query",
    )
    .await;
    let case = format!("{RISK_CASES}/{case_id}");
    let r = w
        .ok(rq("GET", RISK_CASE).at(&case).auth(&support), 200)
        .await;
    assert_eq!(
        r.body["recent_decisions"][0]["outcome"], "block",
        "{}",
        r.text
    );
    w.err(
        rq("GET", RISK_CASE)
            .at(format!("{RISK_CASES}/case_nope"))
            .auth(&support),
        404,
        "resource_missing",
    )
    .await;
    let r = w
        .ok(
            rq("POST", RISK_ASSIGN)
                .at(format!("{case}/assign"))
                .auth(&security)
                .body(json!({})),
            200,
        )
        .await;
    assert_eq!(r.body["assigned_to"], json!(security_id), "{}", r.text);
    w.err(
        rq("POST", RISK_ASSIGN)
            .at(format!("{case}/assign"))
            .auth(&security)
            .body(json!({"staff_id": support_id})),
        400,
        "invalid_assignee",
    )
    .await;
    let legit = json!({"resolution": "legitimate", "note": "the customer confirmed it by phone"});
    let resolve = || {
        rq("POST", RISK_RESOLVE)
            .at(format!("{case}/resolve"))
            .auth(&security)
            .body(legit.clone())
    };
    let r = w.ok(resolve(), 200).await;
    assert_eq!(r.body["customer_status"], "active", "{}", r.text);
    w.err(resolve(), 409, "case_resolved").await;

    let freeze = format!("/v1/admin/customers/{}/freeze", c.customer_id);
    let unfreeze = format!("/v1/admin/customers/{}/unfreeze", c.customer_id);
    let why = json!({"reason": "walk"});
    w.err(
        rq("POST", FREEZE)
            .at(&freeze)
            .auth(&analyst)
            .body(why.clone()),
        403,
        "forbidden_role",
    )
    .await;
    w.ok(
        rq("POST", FREEZE)
            .at(&freeze)
            .auth(&security)
            .body(why.clone()),
        200,
    )
    .await;
    w.err(
        rq("POST", FREEZE)
            .at(&freeze)
            .auth(&security)
            .body(why.clone()),
        409,
        "already_frozen",
    )
    .await;
    w.ok(
        rq("POST", UNFREEZE)
            .at(&unfreeze)
            .auth(&security)
            .body(why.clone()),
        200,
    )
    .await;
    w.err(
        rq("POST", UNFREEZE).at(&unfreeze).auth(&security).body(why),
        409,
        "not_frozen",
    )
    .await;
}

/// WebAuthn needs a domain: where the public URL is an IP address, every passkey step answers
/// the documented 503 (the log-in and recovery steps only once their challenge or first proof
/// checks out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_without_a_domain_answer_as_documented() {
    let doc = doc();
    for app in apps_with(|c| c.public_url = "http://127.0.0.1:8080".into()).await {
        let mut w = Walk {
            app: &app,
            doc: &doc,
            covered: BTreeSet::new(),
            problems: Vec::new(),
        };
        let c = app.customer("no-domain@example.com").await;
        let t = c.token.as_str();
        w.err(rq("POST", PASSKEYS).auth(t), 503, "passkeys_unavailable")
            .await;
        let b = json!({"registration_id": format!("kpr_{}", "0".repeat(64)), "credential": {}});
        let finish = rq("POST", PASSKEY_FINISH).auth(t).body(b);
        w.err(finish, 503, "passkeys_unavailable").await;
        w.ok(rq("GET", PASSKEYS).auth(t), 200).await;
        let login = json!({"email": c.email, "password": c.password});
        let r = w.ok(rq("POST", SESSIONS).body(login), 202).await;
        assert_eq!(
            r.body["methods"],
            json!(["sms", "recovery_code"]),
            "{}",
            r.text
        );
        let b = json!({"challenge": r.body["challenge"]});
        w.err(
            rq("POST", LOGIN_PASSKEY).body(b),
            503,
            "passkeys_unavailable",
        )
        .await;
        let ask = json!({"identifier": c.email});
        let r = w.ok(rq("POST", RECOVERY).body(ask), 202).await;
        let sms = app.sms_code(&c.phone, "account recovery code", 0).await;
        let b = json!({"recovery_id": r.body["recovery_id"], "sms_code": sms});
        w.err(
            rq("POST", RECOVERY_PASSKEY).body(b),
            503,
            "passkeys_unavailable",
        )
        .await;
        assert!(
            w.problems.is_empty(),
            "answers that do not match the document:\n{}",
            w.problems.join("\n")
        );
    }
}

// ------------------------------------------------------------------ live server

/// `http://` and `https://` references in `text` whose host is not `own_host`.
fn foreign_urls(text: &str, own_host: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    for scheme in ["http://", "https://"] {
        for (i, _) in lower.match_indices(scheme) {
            let rest = &text[i + scheme.len()..];
            let host: String = rest
                .chars()
                .take_while(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')
                })
                .collect();
            if host != own_host {
                out.push(format!("{scheme}{host}"));
            }
        }
    }
    // Protocol-relative references load from another host too.
    for pat in [
        "src=\"//",
        "href=\"//",
        "src='//",
        "href='//",
        "url(//",
        "@import",
    ] {
        if lower.contains(pat) {
            out.push(pat.to_string());
        }
    }
    out
}

#[test]
fn foreign_url_check_works() {
    assert_eq!(
        foreign_urls(
            "<script src=\"https://cdn.example.com/x.js\">",
            "127.0.0.1:1"
        )
        .len(),
        1
    );
    assert_eq!(
        foreign_urls("<link href=\"//fonts.example.com/a.css\">", "127.0.0.1:1").len(),
        1
    );
    assert!(foreign_urls("fetch('http://127.0.0.1:1/openapi.json')", "127.0.0.1:1").is_empty());
    assert!(foreign_urls(DOCS_HTML, "127.0.0.1:1").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_document_and_reference_page() {
    let doc = doc();
    for app in apps_with(|c| c.limits.confirm_at_or_above_minor = 5_000).await {
        let r = app.send("GET", "/openapi.json", None, None, None).await;
        assert_eq!(r.status, 200, "{}", app.label);
        assert!(
            r.content_type.starts_with("application/json"),
            "{}",
            r.content_type
        );
        assert_eq!(r.text, DOC, "{}: /openapi.json is not the asset", app.label);
        assert_eq!(r.body, doc);

        let r = app.send("GET", "/docs", None, None, None).await;
        assert_eq!(r.status, 200, "{}", app.label);
        assert!(
            r.content_type.starts_with("text/html"),
            "{}",
            r.content_type
        );
        assert!(
            r.text.contains("/openapi.json"),
            "the page must load /openapi.json"
        );
        let own = app.base.trim_start_matches("http://");
        let foreign = foreign_urls(&r.text, own);
        assert!(
            foreign.is_empty(),
            "/docs references other hosts: {foreign:?}"
        );

        walk(&app, &doc).await;
    }
}
