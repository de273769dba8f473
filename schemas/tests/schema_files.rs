//! The checked-in JSON Schemas under `schemas/json/` and the OpenAPI
//! document `docs/openapi.json` equal the ones the types generate.
//! `UPDATE_SCHEMAS=1 cargo test -p schemas --test schema_files` rewrites them.

use std::path::PathBuf;

use serde_json::Value;

const REGENERATE: &str =
    "Regenerate it with `UPDATE_SCHEMAS=1 cargo test -p schemas --test schema_files` \
     and review the diff before committing.";

/// A file of the repository, from its path relative to the workspace root.
fn repository_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn check_schema_file(file_name: &str, generated: Value) {
    check_generated_file(
        &repository_file(&format!("schemas/json/{file_name}")),
        generated,
    );
}

fn check_generated_file(path: &std::path::Path, generated: Value) {
    let generated =
        serde_json::to_string_pretty(&generated).expect("a schema is plain JSON") + "\n";
    if std::env::var("UPDATE_SCHEMAS").as_deref() == Ok("1") {
        std::fs::write(path, &generated)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let checked_in = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => panic!("{} cannot be read ({e}).\n{REGENERATE}", path.display()),
    };
    if checked_in != generated {
        let first_difference = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(old, new)| old != new)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "{} is out of date with the Rust types (first difference at line {}).\n{REGENERATE}",
            path.display(),
            first_difference + 1
        );
    }
}

#[test]
fn topic_config_schema_file_matches_the_type() {
    check_schema_file(
        "topic-config.schema.json",
        schemas::schema::topic_config_schema(),
    );
}

#[test]
fn subscription_group_config_schema_file_matches_the_type() {
    check_schema_file(
        "subscription-group-config.schema.json",
        schemas::schema::subscription_group_config_schema(),
    );
}

#[test]
fn the_openapi_document_matches_the_api_types() {
    check_generated_file(
        &repository_file("docs/openapi.json"),
        schemas::api::openapi::document(),
    );
}
