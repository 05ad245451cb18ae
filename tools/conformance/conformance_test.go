// Package conformance runs the upstream Gateway API conformance suite (sigs.k8s.io/gateway-api
// conformance module, pinned in go.mod) against Atrium, as implementations do in their own
// test: `go test -c` builds it once per version, `tools/conformance.sh` runs it with the flags
// (gateway class, profiles, report) on the local control plane.
package conformance

import (
	"testing"

	"sigs.k8s.io/gateway-api/conformance"
)

func TestConformance(t *testing.T) {
	conformance.RunConformance(t)
}
