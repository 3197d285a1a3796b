// The test cluster's sandbox ("pause") image, registry.k8s.io/pause:3.10,
// built by scripts/cluster-images.sh: the nodes have no registry to pull it
// from. No dependencies.
module raygate.local/cluster/pause

go 1.24
