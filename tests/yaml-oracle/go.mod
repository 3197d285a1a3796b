// The YAML oracle: reads manifests exactly as kubectl does (k8s.io/apimachinery's
// YAMLOrJSONDecoder, sigs.k8s.io/yaml). Pinned to the versions kubectl v1.34.4 builds with,
// as in tests/e2e/tools. Built by scripts/yaml-oracle.sh; nothing here is imported by Rust.
module raygate.local/yaml-oracle

go 1.24.0

require k8s.io/apimachinery v0.34.4

require (
	go.yaml.in/yaml/v2 v2.4.2 // indirect
	sigs.k8s.io/json v0.0.0-20241014173422-cfa47c3a1cc8 // indirect
	sigs.k8s.io/yaml v1.6.0 // indirect
)
