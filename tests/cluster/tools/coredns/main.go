// CoreDNS for the real-node cluster (tests/cluster/), with only the plugins
// that an answer-only cluster DNS needs. Without `forward` (or `cache`, which
// only matters in front of it) no query can ever leave the machine; names
// outside the cluster zones get NXDOMAIN from `template`.
//
// Built by scripts/cluster-tools.sh; the Corefile lives in tests/cluster/cluster.sh.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/template"
)

func main() {
	coremain.Run()
}
