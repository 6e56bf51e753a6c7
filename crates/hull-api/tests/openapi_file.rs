//! The committed OpenAPI document is the one the code generates.

mod common;

#[test]
fn committed_document_is_the_generated_one() {
    let path = common::committed_path();
    let generated = hull_api::openapi_json().unwrap();
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not the document the code generates; regenerate it with\n\n    \
         cargo run -p hull-api --example write-openapi\n",
        hull_api::OPENAPI_FILE
    );
}

#[test]
fn document_is_openapi_3_1_with_every_endpoint() {
    let doc: serde_json::Value = serde_json::from_str(&hull_api::openapi_json().unwrap()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
        ("/v1/health", "get"),
        ("/v1/vm", "get"),
        ("/v1/vm/metrics", "get"),
        ("/v1/vm/memory", "put"),
        ("/v1/vm/vcpus", "put"),
        ("/v1/vm/pause", "post"),
        ("/v1/vm/resume", "post"),
        ("/v1/openapi.json", "get"),
    ] {
        let responses = &doc["paths"][path][method]["responses"];
        assert!(responses["200"].is_object(), "{method} {path}: no 200");
        assert!(
            responses["default"].is_object(),
            "{method} {path}: no default error"
        );
    }
}

#[test]
fn request_schemas_refuse_unknown_fields() {
    let doc: serde_json::Value = serde_json::from_str(&hull_api::openapi_json().unwrap()).unwrap();
    for name in ["MemoryResize", "VcpuResize"] {
        let schema = &doc["components"]["schemas"][name];
        assert_eq!(schema["additionalProperties"], false, "{name}");
        assert_eq!(schema["properties"].as_object().unwrap().len(), 1, "{name}");
    }
}
