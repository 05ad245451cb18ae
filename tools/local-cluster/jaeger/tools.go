//go:build tools

// Package tools pins Jaeger v2 (an OpenTelemetry Collector distribution with Jaeger's storage and
// query UI), the trace backend of the local cluster and the tests: it receives OTLP and answers
// Jaeger's query API. Built by ../build.sh.
package tools

import _ "github.com/jaegertracing/jaeger/cmd/jaeger"
