//! One JSON dialect: every command's real JSON output validates against its
//! schema in `docs/schema/`, names it in a `schema` field, and spells every
//! key in snake_case (qemu-compatible `info`, `map` and `check` keep
//! qemu's spelling and are checked against qemu-img elsewhere).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use serde_json::Value;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/appliance.qcow2");

fn schema(name: &str) -> jsonschema::Validator {
    let path = format!(
        "{}/../../docs/schema/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::validator_for(&v).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every object key in `v`, with where it is (evidence values and free maps
/// such as digests are keys too).
fn keys(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.push(format!("{at}.{k}"));
                keys(x, &format!("{at}.{k}"), out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| keys(x, &format!("{at}[]"), out)),
        _ => {}
    }
}

fn check(name: &str, args: &[&str]) -> Value {
    let r = run_with(QVET, args, None, Stdout::Capture, ORACLE_TIMEOUT);
    assert!(matches!(r.code(), Some(0..=3)), "{}", r.describe());
    let v: Value =
        serde_json::from_str(&r.stdout_str()).unwrap_or_else(|e| panic!("{e}: {}", r.describe()));
    let validator = schema(name);
    let errors: Vec<String> = validator
        .iter_errors(&v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .take(10)
        .collect();
    assert!(
        errors.is_empty(),
        "{name} output does not match docs/schema/{name}.json: {errors:#?}"
    );
    let tops: Vec<&Value> = match &v {
        Value::Array(a) => a.iter().collect(),
        o => vec![o],
    };
    for t in tops {
        assert_eq!(t["schema"], format!("qvet-{name}-v1"), "{name}");
    }
    let mut all = Vec::new();
    keys(&v, "", &mut all);
    let bad: Vec<&String> = all
        .iter()
        .filter(|k| {
            let last = k.rsplit('.').next().unwrap();
            // Paths and digests are data keys of free maps; the rest are ours.
            !last.starts_with('/') && last.chars().any(|c| c == '-' || c.is_ascii_uppercase())
        })
        .collect();
    assert!(bad.is_empty(), "{name}: keys not in snake_case: {bad:?}");
    v
}

#[test]
fn every_command_speaks_one_dialect() {
    let s = Scratch::new("schema");
    let cat = s.s("c.sqlite");
    let tree = format!("{SAMPLE}:p1:/");
    let file = format!("{SAMPLE}:p1:/packages.conf");
    check(
        "audit",
        &["audit", "--output", "json", "--catalog", &cat, SAMPLE],
    );
    check("inspect", &["inspect", "--output", "json", SAMPLE]);
    check(
        "digest",
        &["digest", "--content", "--output", "json", SAMPLE],
    );
    check(
        "verify",
        &["verify", "--output", "json", "--catalog", &cat, SAMPLE],
    );
    check("diff", &["diff", "--output", "json", SAMPLE, SAMPLE]);
    check("fs", &["fs", "--output", "json", SAMPLE]);
    check("ls", &["ls", "-l", "-R", "--output", "json", &tree]);
    check("find", &["find", "--output", "json", &tree]);
    check("stat", &["stat", "--output", "json", &file]);
    check(
        "catalog",
        &["catalog", "--catalog", &cat, "list", "--output", "json"],
    );
    let dir = s.path("lab");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(SAMPLE, dir.join("a.qcow2")).unwrap();
    check(
        "scan",
        &[
            "scan",
            "--output",
            "json",
            "--catalog",
            &cat,
            dir.to_str().unwrap(),
        ],
    );
    // compact: a dry run (no proof) and a real run (with one).
    let out = s.s("compacted.qcow2");
    for dry in [true, false] {
        let mut a = vec!["compact", "-q", "--output", "json", "--drop-snapshots"];
        if dry {
            a.push("--dry-run");
        }
        a.extend([SAMPLE, out.as_str()]);
        let v = check("compact", &a);
        assert_eq!(v["proof"].is_null(), dry, "{v}");
    }
    let v = check("fleet", &["fleet", "--output", "json", "--catalog", &cat]);
    assert_eq!(v["summary"]["images"], 1, "{v}");
    // An image that cannot be opened is an error object the schema allows.
    let v = check(
        "audit",
        &[
            "audit",
            "--output",
            "json",
            "--catalog",
            &cat,
            "/nonexistent.qcow2",
        ],
    );
    assert!(v[0]["error"].is_string());
}

#[test]
fn schemas_reject_what_they_should() {
    let v = schema("inspect");
    assert!(!v.is_valid(&serde_json::json!({"schema": "qvet-inspect-v1"})));
    assert!(!v.is_valid(&serde_json::json!({"schema": "qvet-inspect-v2", "filename": "x", "partition_table": "mbr", "os": [], "partitions": []})));
    assert!(v.is_valid(&serde_json::json!({"schema": "qvet-inspect-v1", "filename": "x", "partition_table": "mbr", "os": [], "partitions": []})));
    let a = schema("audit");
    let bad_finding = serde_json::json!([{"schema": "qvet-audit-v1", "filename": "x", "verdict": "unknown", "reason": "", "counts": {"critical": 0, "high": 0, "medium": 0, "low": 0, "info": 0}, "suppressed": 0,
        "findings": [{"rule": "r", "title": "t", "severity": "urgent", "confidence": "high", "category": "c", "layer": "l", "evidence": {}}],
        "coverage": {"read": [], "not_read": []}, "partitions": [], "reference_changes": null, "os": []}]);
    assert!(
        !a.is_valid(&bad_finding),
        "an unknown severity must not validate"
    );
    // A compact report with a kebab-case key left over does not validate.
    let c = schema("compact");
    let mut report = serde_json::json!({"schema": "qvet-compact-v1", "image": "i", "output": "o", "dry_run": true,
        "virtual_size": 0, "cluster_size": 65536, "compression": null, "scheme": "unknown",
        "input_file_size": 0, "input_files": 1, "input_total_size": 0, "output_file_size": 0,
        "kept_bytes": 0, "zero_filled_bytes": 0, "data_clusters": 0, "compressed_clusters": 0,
        "metadata_clusters": 0, "snapshots_dropped": [], "input_damage": [],
        "dropped": {"unallocated": 0, "zero": 0, "zero_data": 0, "ext_free": 0, "fat_free": 0, "swap": 0, "leaked": 0, "snapshot": 0},
        "regions": [], "proof": null});
    assert!(c.is_valid(&report));
    report["kept-bytes"] = serde_json::json!(0);
    assert!(!c.is_valid(&report), "an unknown key must not validate");
}
