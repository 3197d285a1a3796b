// Command etcd is a minimal single-member etcd for the e2e control plane.
//
// It wraps go.etcd.io/etcd/server/v3/embed so that etcd is built from the
// same pinned module graph as kube-apiserver instead of being downloaded as a
// release binary. Only the flags cluster.sh needs are exposed.
package main

import (
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func mustURL(name, raw string) url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		log.Fatalf("--%s: %v", name, err)
	}
	return *u
}

func main() {
	var (
		name       = flag.String("name", "default", "member name")
		dataDir    = flag.String("data-dir", "", "data directory (required)")
		clientURL  = flag.String("listen-client-urls", "http://127.0.0.1:2379", "client URL to listen on (one)")
		advClient  = flag.String("advertise-client-urls", "", "client URL to advertise (defaults to --listen-client-urls)")
		peerURL    = flag.String("listen-peer-urls", "http://127.0.0.1:2380", "peer URL to listen on (one)")
		quotaBytes = flag.Int64("quota-backend-bytes", 0, "backend quota in bytes (0 = etcd default)")
		noFsync    = flag.Bool("unsafe-no-fsync", false, "skip fsync; throwaway test data only")
		logLevel   = flag.String("log-level", "warn", "debug|info|warn|error")
	)
	flag.Parse()
	if *dataDir == "" {
		log.Fatal("--data-dir is required")
	}
	if *advClient == "" {
		*advClient = *clientURL
	}

	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = []url.URL{mustURL("listen-client-urls", *clientURL)}
	cfg.AdvertiseClientUrls = []url.URL{mustURL("advertise-client-urls", *advClient)}
	cfg.ListenPeerUrls = []url.URL{mustURL("listen-peer-urls", *peerURL)}
	cfg.AdvertisePeerUrls = cfg.ListenPeerUrls
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.QuotaBackendBytes = *quotaBytes
	cfg.UnsafeNoFsync = *noFsync
	cfg.LogLevel = *logLevel
	cfg.LogOutputs = []string{"stderr"}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("start etcd: %v", err)
	}
	defer e.Close()

	select {
	case <-e.Server.ReadyNotify():
		log.Printf("etcd ready, serving clients on %s", *clientURL)
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		log.Fatal("etcd did not become ready within 60s")
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-e.Err():
		log.Fatalf("etcd: %v", err)
	case s := <-sig:
		log.Printf("received %v, shutting down", s)
	}
}
