//! The checked-in JSON Schemas under `schemas/json/` equal the ones the
//! types generate. `UPDATE_SCHEMAS=1 cargo test -p schemas` rewrites them.

use std::path::PathBuf;

use serde_json::Value;

const REGENERATE: &str =
    "Regenerate it with `UPDATE_SCHEMAS=1 cargo test -p schemas --test schema_files` \
     and review the diff before committing.";

fn check_schema_file(file_name: &str, generated: Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("json")
        .join(file_name);
    let generated =
        serde_json::to_string_pretty(&generated).expect("a schema is plain JSON") + "\n";
    if std::env::var("UPDATE_SCHEMAS").as_deref() == Ok("1") {
        std::fs::write(&path, &generated)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let checked_in = match std::fs::read_to_string(&path) {
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
