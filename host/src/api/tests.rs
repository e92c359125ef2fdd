//! The API's own tests: the OpenAPI document against the router.

use super::*;
use std::collections::BTreeSet;

/// `/openapi.json` is a valid OpenAPI 3 document (it parses into the
/// `openapiv3` model, every `$ref` resolves, every path parameter is
/// declared) and describes exactly the routes the router serves.
#[test]
fn openapi_describes_exactly_the_served_endpoints() {
    let doc: openapiv3::OpenAPI = serde_json::from_str(OPENAPI).expect("a valid OpenAPI 3 document");
    assert!(doc.openapi.starts_with("3."), "{}", doc.openapi);
    let mut documented = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        let item = item.as_item().expect("paths are inline");
        for (method, operation) in item.iter() {
            documented.insert((method.to_ascii_uppercase(), path.clone()));
            assert!(operation.operation_id.is_some(), "{method} {path}: operationId");
            assert!(!operation.responses.responses.is_empty(), "{method} {path}: responses");
            let declared: BTreeSet<String> = operation
                .parameters
                .iter()
                .filter_map(|p| match p.as_item()? {
                    openapiv3::Parameter::Path { parameter_data, .. } => Some(parameter_data.name.clone()),
                    _ => None,
                })
                .collect();
            let templated: BTreeSet<String> =
                path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).map(str::to_string).collect();
            assert_eq!(declared, templated, "{method} {path}: path parameters");
        }
    }
    let served: BTreeSet<(String, String)> =
        endpoints().iter().map(|e| (e.method.as_str().to_string(), e.path.to_string())).collect();
    assert_eq!(documented, served, "documented = served");

    // Every reference points at a schema that exists.
    let raw: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
    let mut refs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r.to_string());
                }
                m.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&raw, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        assert!(raw.pointer(r.trim_start_matches('#')).is_some(), "unresolved $ref {r}");
    }
}
