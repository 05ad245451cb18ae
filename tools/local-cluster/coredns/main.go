// Command coredns is CoreDNS (github.com/coredns/coredns) with only the plugins the local
// cluster's DNS uses, which keeps its first build short: the kubernetes plugin serving
// cluster.local the way kube-dns does, plus errors, log, cache, health, ready, bind, loadbalance
// and prometheus. Built by ../build.sh.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
)

// directives keeps CoreDNS's own order (core/dnsserver/zdirectives.go) for the plugins above.
var directives = []string{
	"bind", "ready", "health", "prometheus", "errors", "log", "loadbalance", "cache", "kubernetes",
}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
