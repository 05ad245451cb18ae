//go:build tools

// Package tools pins Prometheus and promtool for the tests (built by ../build.sh): Debian's
// prometheus package leaves out kubernetes_sd_configs, which Atrium's shipped config uses.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
