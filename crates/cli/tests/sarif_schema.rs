//! Tests of the SARIF test-support validator (`tests/common/sarif.rs`):
//! a minimal GitHub-acceptable log passes, and each kind of defect is
//! reported with a message that names it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "common/sarif.rs"]
mod sarif;

use serde_json::{json, Value};

use sarif::{github_checks, validate_for_github, validate_sarif};

/// The smallest log GitHub code scanning accepts: one run, one rule, one
/// result with a physical location.
fn minimal() -> Value {
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "qvet",
                    "version": "0.1.0",
                    "informationUri": "https://example.invalid/qvet",
                    "rules": [{
                        "id": "QV001",
                        "name": "BackingFileOutsideImage",
                        "shortDescription": { "text": "Backing file points outside the image" },
                        "defaultConfiguration": { "level": "warning" },
                        "properties": { "security-severity": "7.5", "tags": ["security"] }
                    }]
                }
            },
            "results": [{
                "ruleId": "QV001",
                "ruleIndex": 0,
                "level": "warning",
                "message": { "text": "backing file /etc/shadow is outside the image directory" },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": "images/disk.qcow2" },
                        "region": { "startLine": 1 }
                    }
                }],
                "partialFingerprints": { "primaryLocationLineHash": "abc123:1" }
            }]
        }]
    })
}

/// Assert `errors` is non-empty and some message contains every needle.
fn assert_mentions(what: &str, errors: &[String], needles: &[&str]) {
    assert!(!errors.is_empty(), "{what}: expected errors, got none");
    assert!(
        errors.iter().any(|e| needles.iter().all(|n| e.contains(n))),
        "{what}: no error mentions all of {needles:?}; errors were:\n{}",
        errors.join("\n")
    );
}

fn schema_errors(doc: &Value) -> Vec<String> {
    validate_sarif(doc).expect_err("schema validation should fail")
}

#[test]
fn minimal_log_passes_schema_and_github_checks() {
    let doc = minimal();
    if let Err(e) = validate_sarif(&doc) {
        panic!("schema errors:\n{}", e.join("\n"));
    }
    let gh = github_checks(&doc);
    assert!(gh.is_empty(), "github errors:\n{}", gh.join("\n"));
    assert!(validate_for_github(&doc).is_ok());
}

#[test]
fn log_with_no_results_passes() {
    let mut doc = minimal();
    doc["runs"][0]["results"] = json!([]);
    assert!(validate_sarif(&doc).is_ok());
    assert!(github_checks(&doc).is_empty());
}

#[test]
fn wrong_version_fails_both() {
    let mut doc = minimal();
    doc["version"] = json!("2.0.0");
    assert_mentions("schema", &schema_errors(&doc), &["/version", "\"2.0.0\""]);
    assert_mentions("github", &github_checks(&doc), &["/version", "2.1.0"]);
}

#[test]
fn result_missing_message_fails_both() {
    let mut doc = minimal();
    doc["runs"][0]["results"][0]
        .as_object_mut()
        .unwrap()
        .remove("message");
    assert_mentions(
        "schema",
        &schema_errors(&doc),
        &["/runs/0/results/0", "required", "message"],
    );
    assert_mentions(
        "github",
        &github_checks(&doc),
        &["/runs/0/results/0/message", "no message"],
    );
}

#[test]
fn fatal_level_fails_both() {
    let mut doc = minimal();
    doc["runs"][0]["results"][0]["level"] = json!("fatal");
    assert_mentions(
        "schema",
        &schema_errors(&doc),
        &["/runs/0/results/0/level", "fatal"],
    );
    assert_mentions(
        "github",
        &github_checks(&doc),
        &["/runs/0/results/0/level", "fatal"],
    );
}

#[test]
fn rule_id_missing_from_rules_fails_github() {
    let mut doc = minimal();
    doc["runs"][0]["results"][0]["ruleId"] = json!("QV999");
    doc["runs"][0]["results"][0]
        .as_object_mut()
        .unwrap()
        .remove("ruleIndex");
    // Schema-valid: the schema does not cross-check rule ids.
    assert!(validate_sarif(&doc).is_ok());
    assert_mentions(
        "github",
        &github_checks(&doc),
        &["/runs/0/results/0/ruleId", "QV999", "rules"],
    );
}

#[test]
fn non_numeric_security_severity_fails_github() {
    let mut doc = minimal();
    doc["runs"][0]["tool"]["driver"]["rules"][0]["properties"]["security-severity"] = json!("high");
    assert!(validate_sarif(&doc).is_ok());
    assert_mentions(
        "github",
        &github_checks(&doc),
        &["security-severity", "high", "not a number"],
    );
}

#[test]
fn out_of_range_or_non_string_security_severity_fails_github() {
    for bad in [json!("10.5"), json!("-1"), json!(5.0)] {
        let mut doc = minimal();
        doc["runs"][0]["tool"]["driver"]["rules"][0]["properties"]["security-severity"] =
            bad.clone();
        assert_mentions(
            &format!("security-severity {bad}"),
            &github_checks(&doc),
            &["/runs/0/tool/driver/rules/0/properties/security-severity"],
        );
    }
}

#[test]
fn artifact_location_without_uri_fails_github() {
    let mut doc = minimal();
    doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"] =
        json!({ "uriBaseId": "SRCROOT" });
    assert!(validate_sarif(&doc).is_ok());
    assert_mentions("github", &github_checks(&doc), &["artifactLocation", "uri"]);
}

#[test]
fn non_string_partial_fingerprint_fails_github() {
    let mut doc = minimal();
    doc["runs"][0]["results"][0]["partialFingerprints"]["primaryLocationLineHash"] = json!(42);
    assert_mentions(
        "schema",
        &schema_errors(&doc),
        &["/runs/0/results/0/partialFingerprints/primaryLocationLineHash"],
    );
    assert_mentions(
        "github",
        &github_checks(&doc),
        &["partialFingerprints/primaryLocationLineHash", "string"],
    );
}

#[test]
fn unknown_property_and_bad_region_fail_schema() {
    let mut doc = minimal();
    doc["runs"][0]["results"][0]["severity"] = json!("high");
    doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"] =
        json!({ "endLine": 3 });
    let errors = schema_errors(&doc);
    assert_mentions(
        "extra property",
        &errors,
        &["/runs/0/results/0", "severity"],
    );
    assert_mentions(
        "region anyOf",
        &errors,
        &[
            "/runs/0/results/0/locations/0/physicalLocation/region",
            "anyOf",
        ],
    );
}

#[test]
fn too_many_results_fails_github() {
    let mut doc = minimal();
    let one = doc["runs"][0]["results"][0].clone();
    doc["runs"][0]["results"] = Value::Array(vec![one; sarif::GITHUB_MAX_RESULTS_PER_RUN + 1]);
    assert_mentions(
        "github",
        &github_checks(&doc),
        &["/runs/0/results", "25000"],
    );
}

#[test]
fn too_many_runs_and_missing_driver_name_fail_github() {
    let mut doc = minimal();
    let mut run = doc["runs"][0].clone();
    run["tool"]["driver"]["name"] = json!("");
    doc["runs"] = Value::Array(vec![run; sarif::GITHUB_MAX_RUNS + 1]);
    let errors = github_checks(&doc);
    assert_mentions("runs", &errors, &["/runs", "at most 20"]);
    assert_mentions("driver name", &errors, &["/runs/0/tool/driver/name"]);
}

#[test]
fn malformed_uri_fails_schema_format_check() {
    let mut doc = minimal();
    doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] =
        json!("disk image.qcow2");
    assert_mentions(
        "schema",
        &schema_errors(&doc),
        &[
            "/runs/0/results/0/locations/0/physicalLocation/artifactLocation/uri",
            "uri-reference",
        ],
    );
}

#[test]
fn relative_information_uri_fails_schema_format_check() {
    let mut doc = minimal();
    doc["runs"][0]["tool"]["driver"]["informationUri"] = json!("qvet home page");
    assert_mentions(
        "schema",
        &schema_errors(&doc),
        &["/runs/0/tool/driver/informationUri", "\"uri\""],
    );
}

#[test]
fn uri_reference_checker() {
    for good in [
        "images/disk.qcow2",
        "file:///var/lib/images/disk%20one.qcow2",
        "disk.qcow2#L1",
        "",
        "./a/b:c",
    ] {
        assert!(sarif::is_uri_reference(good), "{good:?} should be accepted");
    }
    for bad in [
        "disk image.qcow2",
        "C:\\images\\disk.qcow2",
        "bad%2",
        "1a:b",
        "caf\u{e9}",
    ] {
        assert!(!sarif::is_uri_reference(bad), "{bad:?} should be rejected");
    }
}
