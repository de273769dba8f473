//! The web console at `/ui`: one page and its script and style, compiled
//! into the binary, plus the JSON Schema files its forms check against.
//!
//! The console is a client of the public API like any other: it holds no
//! data and needs no token to load (the API it calls does). Its answers
//! forbid the page to reach any host but this node, or to be framed.

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use schemas::api::ErrorCode;

use crate::api::error::ApiError;
use crate::api::params::path_capture;
use crate::api::AppState;

/// Where the console is served.
pub const UI_PATH: &str = "/ui/";

/// Scripts, styles and requests from this node only; no frames, no
/// plugins, no form posted elsewhere.
const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// A module of the console's script, from `kv-server/ui/`.
macro_rules! script {
    ($file:literal) => {
        (
            $file,
            "text/javascript; charset=utf-8",
            include_str!(concat!("../../ui/", $file)),
        )
    };
}

/// The console's files: path under `/ui/`, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "",
        "text/html; charset=utf-8",
        include_str!("../../ui/index.html"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../ui/app.css"),
    ),
    script!("app.js"),
    script!("api.js"),
    script!("dom.js"),
    script!("keys.js"),
    script!("metadata.js"),
    script!("schema.js"),
    script!("cluster.js"),
    script!("changes.js"),
    script!("brokers.js"),
    (
        "schemas/topic-config.schema.json",
        "application/schema+json",
        include_str!("../../../schemas/json/topic-config.schema.json"),
    ),
    (
        "schemas/subscription-group-config.schema.json",
        "application/schema+json",
        include_str!("../../../schemas/json/subscription-group-config.schema.json"),
    ),
];

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent(UI_PATH) }))
        .route(UI_PATH, get(|| async { asset("") }))
        .route("/ui/{*file}", get(file))
}

async fn file(path: Result<Path<String>, PathRejection>) -> Response {
    // A path that is not UTF-8 names no file of the console.
    match path_capture(path, ErrorCode::NotFound, "file") {
        Ok(file) => asset(&file),
        Err(refused) => refused.into_response(),
    }
}

/// One file of the console, or 404 naming it.
fn asset(path: &str) -> Response {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(name, _, _)| *name == path) else {
        return ApiError::new(
            ErrorCode::NotFound,
            format!("the console has no file {path:?}"),
        )
        .into_response();
    };
    (
        [
            (CONTENT_TYPE, *content_type),
            (CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_VALUE),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (X_FRAME_OPTIONS, "DENY"),
            (REFERRER_POLICY, "no-referrer"),
            // The files change with the binary: ask again on every load.
            (CACHE_CONTROL, "no-cache"),
        ],
        *body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::{asset, ASSETS};

    #[test]
    fn every_file_is_served_with_its_type_and_the_policy_and_others_are_404() {
        for (path, content_type, body) in ASSETS {
            let response = asset(path);
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(response.headers()["content-type"], *content_type, "{path}");
            assert!(
                response.headers()["content-security-policy"]
                    .to_str()
                    .expect("ASCII")
                    .contains("connect-src 'self'"),
                "{path}"
            );
            assert!(!body.is_empty(), "{path}");
        }
        assert_eq!(asset("../Cargo.toml").status(), 404);
        assert_eq!(asset("missing.js").status(), 404);
    }
}
