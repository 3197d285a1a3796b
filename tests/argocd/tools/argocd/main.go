// Command argocd is a multi-call binary like Argo CD's own cmd/main.go, limited to
// the components the Argo CD tier runs: the application controller, the repo
// server, the Config Management Plugin server and git's askpass helper. It
// dispatches on ARGOCD_BINARY_NAME or the name it is invoked as. Leaving out the
// API server, UI, CLI, ApplicationSet, notifications and Dex keeps the build
// shorter; the components themselves are Argo CD's, unchanged.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	appcontroller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
	cmpserver "github.com/argoproj/argo-cd/v3/cmd/argocd-cmp-server/commands"
	gitaskpass "github.com/argoproj/argo-cd/v3/cmd/argocd-git-ask-pass/commands"
	reposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
	"github.com/argoproj/argo-cd/v3/common"
	"github.com/argoproj/argo-cd/v3/util/log"
)

func init() {
	klog.SetLogger(log.NewLogrusLogger(log.NewWithCurrentConfig()))
}

func main() {
	// Argo CD's main calls grpc.DisableSRVLookups(), which panics unless gRPC's grpclb
	// balancer is linked in (its init turns SRV lookups on). None of these components
	// links it, so SRV lookups are already off and the call is left out.
	name := filepath.Base(os.Args[0])
	if v := os.Getenv("ARGOCD_BINARY_NAME"); v != "" {
		name = v
	}
	var command *cobra.Command
	switch name {
	case common.CommandApplicationController:
		command = appcontroller.NewCommand()
	case common.CommandRepoServer:
		command = reposerver.NewCommand()
	case common.CommandCMPServer:
		command = cmpserver.NewCommand()
	case common.CommandGitAskPass:
		command = gitaskpass.NewCommand()
	default:
		fmt.Fprintf(os.Stderr, "argocd: unknown component %q (invoke as %s, %s, %s or %s, or set ARGOCD_BINARY_NAME)\n",
			name, common.CommandApplicationController, common.CommandRepoServer, common.CommandCMPServer, common.CommandGitAskPass)
		os.Exit(2)
	}
	if err := command.Execute(); err != nil {
		os.Exit(1)
	}
}
