//go:build tools

// Package tools pins the Gateway API module whose standard-channel CRDs the local cluster
// installs (config/crd/standard/, read from the module at build time, never copied).
package tools

import _ "sigs.k8s.io/gateway-api/apis/v1"
