//! Test support: check that a SARIF log produced by `qvet audit --output
//! sarif` is (1) valid against the official SARIF 2.1.0 JSON schema and
//! (2) acceptable to GitHub code scanning, which requires more than the
//! schema does.
//!
//! Schema file: `tests/data/sarif-schema-2.1.0.json`, copied byte for byte
//! from the OASIS SARIF TC repository:
//!   repo   github.com/oasis-tcs/sarif-spec
//!   path   sarif-2.1/schema/sarif-schema-2.1.0.json
//!   commit e0583813964ec43cea53b6b531b402866095ed1f (blob 0f58372b548f)
//!   sha256 c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e
//! This is the SARIF 2.1.0 *Errata 01* normative schema (its `id` is
//! docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/...); it is
//! identical to the last `Schemata/sarif-schema-2.1.0.json` before that
//! directory moved (commit ffa72eb4). It declares draft-04; the original
//! draft-07 2.1.0 schema (`sarif-2.1/prose/`) is looser (e.g. no
//! `region` anyOf startLine/charOffset/byteOffset, `level` without `type`).
//!
//! Validation uses the `jsonschema` crate with default features off, so it
//! never fetches anything: every `$ref` in the schema is local.
//!
//! Include from another integration test with
//! `#[path = "common/sarif.rs"] mod sarif;` (or `pub mod sarif;` in
//! `common/mod.rs` and `common::sarif::...`).

// Each integration-test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

/// Path of the vendored official schema.
pub const SARIF_SCHEMA_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/sarif-schema-2.1.0.json"
);

/// GitHub code scanning upload limits.
pub const GITHUB_MAX_RUNS: usize = 20;
pub const GITHUB_MAX_RESULTS_PER_RUN: usize = 25_000;

/// Longest rendering of an offending value inside an error message.
const MAX_VALUE_CHARS: usize = 120;

fn load_validator() -> Result<Validator, String> {
    let text = std::fs::read_to_string(SARIF_SCHEMA_PATH)
        .map_err(|e| format!("cannot read SARIF schema {SARIF_SCHEMA_PATH}: {e}"))?;
    let schema: Value = serde_json::from_str(&text)
        .map_err(|e| format!("SARIF schema {SARIF_SCHEMA_PATH} is not JSON: {e}"))?;
    // The draft is taken from the schema's own `$schema` keyword. Formats
    // are checked; draft-04 has no `uri-reference` (used by
    // `artifactLocation.uri`), so that one is registered here.
    jsonschema::options()
        .should_validate_formats(true)
        .with_format("uri-reference", is_uri_reference)
        .build(&schema)
        .map_err(|e| format!("SARIF schema {SARIF_SCHEMA_PATH} does not compile: {e}"))
}

/// RFC 3986 `URI-reference`, checked at the character level: only
/// unreserved, reserved and `%HH` escapes (so no spaces, backslashes or raw
/// non-ASCII), and a `:` before the first `/`, `?` or `#` must end a valid
/// scheme.
pub fn is_uri_reference(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b)) {
            return false;
        }
        i += 1;
    }
    let head = s.split(['/', '?', '#']).next().unwrap_or("");
    match head.split_once(':') {
        None => true,
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
    }
}

fn validator() -> Result<&'static Validator, String> {
    static VALIDATOR: OnceLock<Result<Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(load_validator)
        .as_ref()
        .map_err(Clone::clone)
}

/// Validate `doc` against the official SARIF 2.1.0 schema.
///
/// Each error reads `<instance pointer>: <problem> (schema <schema pointer>)`,
/// the pointer being `(root)` for the document itself.
pub fn validate_sarif(doc: &Value) -> Result<(), Vec<String>> {
    let validator = validator().map_err(|e| vec![e])?;
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| describe(&e, 0))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Both checks; all problems from either, schema problems first.
pub fn validate_for_github(doc: &Value) -> Result<(), Vec<String>> {
    let mut errors = validate_sarif(doc).err().unwrap_or_default();
    errors.extend(github_checks(doc));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn pointer_or_root(p: &str) -> &str {
    if p.is_empty() {
        "(root)"
    } else {
        p
    }
}

fn clip_value(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= MAX_VALUE_CHARS {
        s
    } else {
        let head: String = s.chars().take(MAX_VALUE_CHARS).collect();
        format!("{head}...")
    }
}

fn describe(e: &ValidationError<'_>, depth: usize) -> String {
    let at = pointer_or_root(e.instance_path().as_str()).to_owned();
    let schema = e.schema_path().as_str();
    let what = match e.kind() {
        ValidationErrorKind::Required { property } => {
            format!("missing required property {property}")
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            format!("unexpected properties {unexpected:?} (additionalProperties is false)")
        }
        ValidationErrorKind::Enum { options } => format!(
            "{} is not one of {}",
            clip_value(e.instance()),
            clip_value(options)
        ),
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            let keyword = if matches!(e.kind(), ValidationErrorKind::AnyOf { .. }) {
                "anyOf"
            } else {
                "oneOf"
            };
            let mut s = format!("matches none of the '{keyword}' alternatives");
            // Explain each alternative one level deep; deeper nesting is noise.
            if depth == 0 {
                for (i, alt) in context.iter().enumerate() {
                    let reasons: Vec<String> = alt.iter().map(|a| describe(a, 1)).collect();
                    s.push_str(&format!("\n    alternative {i}: {}", reasons.join("; ")));
                }
            }
            s
        }
        _ => {
            // The crate's own message embeds the whole offending value,
            // which can be an entire run; keep it short.
            let msg = e.to_string();
            if msg.chars().count() > 2 * MAX_VALUE_CHARS {
                format!(
                    "{} (value: {})",
                    e.kind().keyword(),
                    clip_value(e.instance())
                )
            } else {
                msg
            }
        }
    };
    format!("{at}: {what} (schema {schema})")
}

// ---------------------------------------------------------------------------
// GitHub code scanning requirements beyond the schema
// ---------------------------------------------------------------------------

/// Escape one reference token of a JSON pointer (RFC 6901).
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

const LEVELS: [&str; 4] = ["none", "note", "warning", "error"];

fn check_level(level: Option<&Value>, at: &str, errs: &mut Vec<String>) {
    if let Some(level) = level {
        if !level.as_str().is_some_and(|l| LEVELS.contains(&l)) {
            errs.push(format!(
                "{at}: level {} is not one of none/note/warning/error",
                clip_value(level)
            ));
        }
    }
}

/// What GitHub code scanning requires of an uploaded SARIF file that the
/// schema does not enforce. Returns one readable message (with a JSON
/// pointer) per problem; empty means acceptable.
pub fn github_checks(doc: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    match doc.get("version") {
        Some(Value::String(v)) if v == "2.1.0" => {}
        other => errs.push(format!(
            "/version: must be \"2.1.0\", found {}",
            other.map_or_else(|| "nothing".to_owned(), clip_value)
        )),
    }
    let Some(runs) = doc.get("runs").and_then(Value::as_array) else {
        errs.push("/runs: must be an array of runs".to_owned());
        return errs;
    };
    if runs.len() > GITHUB_MAX_RUNS {
        errs.push(format!(
            "/runs: {} runs, GitHub accepts at most {GITHUB_MAX_RUNS}",
            runs.len()
        ));
    }
    for (r, run) in runs.iter().enumerate() {
        check_run(run, &format!("/runs/{r}"), &mut errs);
    }
    errs
}

fn check_run(run: &Value, at: &str, errs: &mut Vec<String>) {
    let driver = run.get("tool").and_then(|t| t.get("driver"));
    if driver
        .and_then(|d| str_at(d, "name"))
        .is_none_or(|n| n.trim().is_empty())
    {
        errs.push(format!(
            "{at}/tool/driver/name: missing or empty (GitHub requires the tool name)"
        ));
    }

    let rules: &[Value] = driver
        .and_then(|d| d.get("rules"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let rule_ids: Vec<Option<&str>> = rules.iter().map(|rule| str_at(rule, "id")).collect();
    for (i, rule) in rules.iter().enumerate() {
        check_rule(rule, &format!("{at}/tool/driver/rules/{i}"), errs);
    }

    let Some(results) = run.get("results") else {
        return;
    };
    let Some(results) = results.as_array() else {
        errs.push(format!("{at}/results: must be an array"));
        return;
    };
    if results.len() > GITHUB_MAX_RESULTS_PER_RUN {
        errs.push(format!(
            "{at}/results: {} results, GitHub accepts at most {GITHUB_MAX_RESULTS_PER_RUN} per run",
            results.len()
        ));
    }
    for (i, result) in results.iter().enumerate() {
        check_result(result, &format!("{at}/results/{i}"), &rule_ids, errs);
    }
}

fn check_rule(rule: &Value, at: &str, errs: &mut Vec<String>) {
    if str_at(rule, "id").is_none_or(str::is_empty) {
        errs.push(format!("{at}/id: rule has no id"));
    }
    check_level(
        rule.get("defaultConfiguration")
            .and_then(|c| c.get("level")),
        &format!("{at}/defaultConfiguration/level"),
        errs,
    );
    let Some(sev) = rule
        .get("properties")
        .and_then(|p| p.get("security-severity"))
    else {
        return;
    };
    let at = format!("{at}/properties/security-severity");
    match sev.as_str() {
        None => errs.push(format!(
            "{at}: security-severity must be a string holding a number 0.0-10.0, found {}",
            clip_value(sev)
        )),
        Some(s) => match s.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && (0.0..=10.0).contains(&x) => {}
            Ok(_) => errs.push(format!("{at}: security-severity {s:?} is outside 0.0-10.0")),
            Err(_) => errs.push(format!(
                "{at}: security-severity {s:?} is not a number (expected 0.0-10.0)"
            )),
        },
    }
}

fn check_result(result: &Value, at: &str, rule_ids: &[Option<&str>], errs: &mut Vec<String>) {
    match str_at(result, "ruleId") {
        None => errs.push(format!("{at}/ruleId: result has no ruleId")),
        Some(id) => {
            if !rule_ids.contains(&Some(id)) {
                errs.push(format!(
                    "{at}/ruleId: ruleId {id:?} is not among tool.driver.rules[].id"
                ));
            }
            if let Some(ix) = result.get("ruleIndex").and_then(Value::as_u64) {
                let listed = usize::try_from(ix)
                    .ok()
                    .and_then(|ix| rule_ids.get(ix))
                    .copied()
                    .flatten();
                if listed != Some(id) {
                    errs.push(format!(
                        "{at}/ruleIndex: rules[{ix}].id is {listed:?}, not ruleId {id:?}"
                    ));
                }
            }
        }
    }

    match result.get("message") {
        None => errs.push(format!("{at}/message: result has no message")),
        Some(m) => {
            if str_at(m, "text").is_none_or(str::is_empty) {
                errs.push(format!("{at}/message/text: message has no text"));
            }
        }
    }

    check_level(result.get("level"), &format!("{at}/level"), errs);

    let locations: &[Value] = result
        .get("locations")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let mut with_uri = 0usize;
    for (i, loc) in locations.iter().enumerate() {
        let Some(al) = loc
            .get("physicalLocation")
            .and_then(|p| p.get("artifactLocation"))
        else {
            continue;
        };
        if str_at(al, "uri").is_some_and(|u| !u.is_empty()) {
            with_uri += 1;
        } else {
            errs.push(format!(
                "{at}/locations/{i}/physicalLocation/artifactLocation/uri: artifactLocation has no uri"
            ));
        }
    }
    if with_uri == 0 {
        errs.push(format!(
            "{at}/locations: needs at least one locations[].physicalLocation.artifactLocation.uri"
        ));
    }

    if let Some(fps) = result.get("partialFingerprints") {
        match fps.as_object() {
            None => errs.push(format!("{at}/partialFingerprints: must be an object")),
            Some(map) => {
                for (k, v) in map {
                    if !v.is_string() {
                        errs.push(format!(
                            "{at}/partialFingerprints/{}: value must be a string, found {}",
                            token(k),
                            clip_value(v)
                        ));
                    }
                }
            }
        }
    }
}
