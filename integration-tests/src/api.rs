//! Small helpers for the JSON API, so a test body reads as its scenario.

use serde_json::Value;

use crate::TestServer;

/// Sends `method path` (with a JSON body if given) and returns the status
/// and the body as JSON (a string when it is not JSON).
pub async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method: reqwest::Method = method.parse().expect("a valid HTTP method");
    let mut request = server.client().request(method, server.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("the body is readable");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The `code` and `field` of an error body `{"error":{"code","message","field"?}}`.
pub fn error_of(body: &Value) -> (&str, Option<&str>) {
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"));
    assert!(
        body["error"]["message"].is_string(),
        "an error has a message: {body}"
    );
    (code, body["error"]["field"].as_str())
}

/// A client that speaks HTTP/2 from the first byte (prior knowledge), on
/// one connection: many requests share it as streams.
pub fn http2_client() -> reqwest::Client {
    http2_builder().build().expect("an HTTP/2 client builds")
}

/// [`http2_client`] with HTTP/2's smallest flow-control windows, so an
/// answer it does not read stops the server after 64 KiB.
pub fn stingy_http2_client() -> reqwest::Client {
    http2_builder()
        .http2_initial_stream_window_size(65_535)
        .http2_initial_connection_window_size(65_535)
        .build()
        .expect("an HTTP/2 client builds")
}

fn http2_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(std::time::Duration::from_secs(120))
}

/// The operation of the OpenAPI `document` that serves `method path`: its
/// path template's segments match, a `{param}` matching one segment, or
/// the rest of the path when it is the template's last (a key holds `/`).
pub fn openapi_operation<'a>(document: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
    let path = path.split('?').next().unwrap_or(path);
    let actual: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let matches = |template: &str| {
        let wanted: Vec<&str> = template.trim_start_matches('/').split('/').collect();
        let is_param = |segment: &str| segment.starts_with('{');
        match wanted.split_last() {
            Some((last, init)) if is_param(last) => {
                actual.len() > init.len()
                    && init
                        .iter()
                        .zip(&actual)
                        .all(|(want, got)| is_param(want) || want == got)
            }
            _ => {
                wanted.len() == actual.len()
                    && wanted
                        .iter()
                        .zip(&actual)
                        .all(|(want, got)| is_param(want) || want == got)
            }
        }
    };
    let paths = document["paths"].as_object()?;
    // A literal route wins over a template that would match it too.
    let mut candidates: Vec<&String> = paths.keys().filter(|template| matches(template)).collect();
    candidates.sort_by_key(|template| template.matches('{').count());
    let operation = &paths[candidates.first()?.as_str()][method.to_ascii_lowercase()];
    (!operation.is_null()).then_some(operation)
}

/// Checks that the OpenAPI `document` lists error `code` under `status` for
/// the operation serving `method path`; an unknown route or method has no
/// operation to list it.
pub fn assert_openapi_lists(document: &Value, method: &str, path: &str, status: u16, code: &str) {
    let Some(operation) = openapi_operation(document, method, path) else {
        return;
    };
    let listed = operation["responses"][status.to_string()]["description"]
        .as_str()
        .unwrap_or_default();
    // Whole codes: `duplicate` is not listed by `duplicate_key`.
    let mut codes = listed.split(|c: char| !(c.is_ascii_lowercase() || c == '_'));
    assert!(
        codes.any(|listed| listed == code),
        "{method} {path}: the OpenAPI document does not list {code} under {status}: {listed:?}"
    );
}
