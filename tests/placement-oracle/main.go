// Command placement-oracle answers where Pods can run among given Nodes, with kube-scheduler's
// and the kubelet's own code, in-process: the node-placement Filter plugins of
// k8s.io/kubernetes v1.34.4 (pkg/scheduler/framework/plugins) and the kubelet's admission of a
// Pod bound to its node (pkg/kubelet/lifecycle). Built by scripts/placement-oracle.sh;
// tests/placement_oracle.rs holds raygate's placement/* rules against it. Nothing here is
// imported by Rust.
//
// What is evaluated, per document:
//
//   - Each Node and Pod is first made what the API server stores and the scheduler and kubelet
//     read back: decoded from JSON case-sensitively as the API server does (sigs.k8s.io/json),
//     defaulted by k8s.io/kubernetes v1.34.4's own SetObjectDefaults_Node/SetObjectDefaults_Pod
//     (e.g. a container's requests default to its limits, which is how a GPU given only as a
//     limit is requested), converted to the internal type and validated as the API server's
//     Node and Pod strategies do (ValidateNode; ValidatePodCreate with the options of
//     GetValidationOptionsFromPodSpecAndMeta and ResourceIsPod), converted back to core/v1 and
//     round-tripped through its protobuf encoding (an empty list or map becomes a missing
//     one), then defaulted again as the storage decoder does. An invalid Pod is answered with
//     {"invalid": "<the API server's errors>"}; an invalid Node is an error. A toleration's
//     operator is not defaulted by the API server: "" is read as Equal by the toleration
//     helpers themselves (k8s.io/api core/v1 Toleration.ToleratesTaint).
//   - Admission plugins that change Pods are left out: DefaultTolerationSeconds only adds
//     NoExecute tolerations of node.kubernetes.io/not-ready and unreachable, which taint no
//     Ready node; the others (ServiceAccount, LimitRanger, Priority, RuntimeClass) add
//     nothing the filters below read unless a LimitRange, PriorityClass or RuntimeClass
//     applies, and the corpus has none.
//   - The scheduler (a Pod without spec.nodeName): the Filter plugins that judge a Pod against
//     a Node's labels, name, taints, resources and schedulability — NodeName, NodeAffinity
//     (nodeSelector and required node affinity, matchExpressions and matchFields),
//     TaintToleration, NodeResourcesFit and NodeUnschedulable — each made by its public
//     constructor with the arguments of kube-scheduler's default profile
//     (pkg/scheduler/apis/config/latest.Default) and the default feature gates, as
//     NewInTreeRegistry makes them. As the framework does, every PreFilter runs first: Skip
//     skips that plugin's Filter, a failure rejects every node, and a PreFilterResult's node
//     names reject the others. Each node is empty (no Pods yet), so resources only fail when the
//     node's allocatable lacks them. The default profile's other filters (NodePorts,
//     VolumeRestrictions, NodeVolumeLimits, VolumeBinding, VolumeZone, PodTopologySpread,
//     InterPodAffinity, DynamicResources) judge host ports, volumes, spread, pod (anti-)affinity
//     and resource claims, none of which the corpus uses.
//   - The kubelet (a Pod with spec.nodeName): the scheduler never sees such a Pod; the named
//     node's kubelet admits or rejects it. Its admission is the kubelet's own predicate admit
//     handler (lifecycle.NewPredicateAdmitHandler, Admit): OS label checks, resources (extended
//     resources the node does not have at all are dropped first), required node affinity and
//     nodeSelector, the node name and host ports, and of the taints only NoExecute ones — a
//     NoSchedule taint does not keep a bound Pod off.
//
// Input (stdin): one or more JSON documents, each
//
//	{"nodes": [<core/v1 Node objects, with labels, taints, unschedulable, status.allocatable>],
//	 "pods": [<core/v1 Pod objects>]}
//
// Node names are unique. Output (stdout): one line per document, {"pods": [<answer>, ...]} in
// Pod order, each answer
//
//	{"scheduler": [<nodes where every Filter passes>],
//	 "rejected": {"<node>": ["<plugin that rejects it>", ...]},
//	 "kubelet": [<nodes whose kubelet would admit the Pod bound to it>],
//	 "lands": [<where the Pod can run: the kubelet's answer for spec.nodeName when it is set
//	            (an unknown node: nowhere), else the scheduler's>]}
//
// or {"invalid": "..."}. Node lists keep the input's order. Any other error (bad input, an
// invalid Node) ends the program with a message and exit status 1.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	fwk "k8s.io/kube-scheduler/framework"
	podutil "k8s.io/kubernetes/pkg/api/pod"
	"k8s.io/kubernetes/pkg/apis/core"
	corev1defaults "k8s.io/kubernetes/pkg/apis/core/v1"
	"k8s.io/kubernetes/pkg/apis/core/validation"
	"k8s.io/kubernetes/pkg/kubelet/lifecycle"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/latest"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	plfeature "k8s.io/kubernetes/pkg/scheduler/framework/plugins/feature"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/names"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/nodeaffinity"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/nodename"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/noderesources"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/nodeunschedulable"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/tainttoleration"
	kjson "sigs.k8s.io/json"
)

type document struct {
	Nodes []json.RawMessage `json:"nodes"`
	Pods  []json.RawMessage `json:"pods"`
}

type answer struct {
	Invalid   string              `json:"invalid,omitempty"`
	Scheduler []string            `json:"scheduler"`
	Rejected  map[string][]string `json:"rejected"`
	Kubelet   []string            `json:"kubelet"`
	Lands     []string            `json:"lands"`
}

type output struct {
	Pods []answer `json:"pods"`
}

// decodeStrict decodes as the API server does: case-sensitively, refusing duplicate fields.
// The API server drops unknown fields with a warning; the corpus should have none.
func decodeStrict(raw json.RawMessage, into any) error {
	strict, err := kjson.UnmarshalStrict(raw, into, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		return errors.Join(strict...)
	}
	return nil
}

// storedNode returns the Node the API server would store for `raw`.
func storedNode(raw json.RawMessage) (*v1.Node, error) {
	in := &v1.Node{}
	if err := decodeStrict(raw, in); err != nil {
		return nil, err
	}
	corev1defaults.SetObjectDefaults_Node(in)
	internal := &core.Node{}
	if err := corev1defaults.Convert_v1_Node_To_core_Node(in, internal, nil); err != nil {
		return nil, err
	}
	if errs := validation.ValidateNode(internal); len(errs) > 0 {
		return nil, fmt.Errorf("the API server refuses it: %v", errs.ToAggregate())
	}
	versioned := &v1.Node{}
	if err := corev1defaults.Convert_core_Node_To_v1_Node(internal, versioned, nil); err != nil {
		return nil, err
	}
	data, err := versioned.Marshal()
	if err != nil {
		return nil, err
	}
	out := &v1.Node{}
	if err := out.Unmarshal(data); err != nil {
		return nil, err
	}
	corev1defaults.SetObjectDefaults_Node(out)
	return out, nil
}

// storedPod returns the Pod the API server would store for `raw`, or why it refuses it.
func storedPod(raw json.RawMessage) (*v1.Pod, string, error) {
	in := &v1.Pod{}
	if err := decodeStrict(raw, in); err != nil {
		return nil, "", err
	}
	corev1defaults.SetObjectDefaults_Pod(in)
	internal := &core.Pod{}
	if err := corev1defaults.Convert_v1_Pod_To_core_Pod(in, internal, nil); err != nil {
		return nil, "", err
	}
	// As pkg/registry/core/pod's podStrategy.Validate.
	opts := podutil.GetValidationOptionsFromPodSpecAndMeta(&internal.Spec, nil, &internal.ObjectMeta, nil)
	opts.ResourceIsPod = true
	if errs := validation.ValidatePodCreate(internal, opts); len(errs) > 0 {
		return nil, errs.ToAggregate().Error(), nil
	}
	versioned := &v1.Pod{}
	if err := corev1defaults.Convert_core_Pod_To_v1_Pod(internal, versioned, nil); err != nil {
		return nil, "", err
	}
	data, err := versioned.Marshal()
	if err != nil {
		return nil, "", err
	}
	out := &v1.Pod{}
	if err := out.Unmarshal(data); err != nil {
		return nil, "", err
	}
	corev1defaults.SetObjectDefaults_Pod(out)
	return out, "", nil
}

// plugin is one Filter plugin and, when it has one, its PreFilter.
type plugin struct {
	name   string
	filter framework.FilterPlugin
}

// filterPlugins makes the plugins as kube-scheduler's in-tree registry does, with the default
// profile's arguments.
func filterPlugins(ctx context.Context) ([]plugin, error) {
	cfg, err := latest.Default()
	if err != nil {
		return nil, err
	}
	if len(cfg.Profiles) != 1 || cfg.Profiles[0].SchedulerName != v1.DefaultSchedulerName {
		return nil, fmt.Errorf("the default configuration has %d profiles", len(cfg.Profiles))
	}
	profile := cfg.Profiles[0]
	args := map[string]runtime.Object{}
	for _, pc := range profile.PluginConfig {
		args[pc.Name] = pc.Args
	}
	enabled := map[string]bool{}
	for _, p := range profile.Plugins.MultiPoint.Enabled {
		enabled[p.Name] = true
	}
	for _, p := range profile.Plugins.Filter.Disabled {
		enabled[p.Name] = false
	}
	fts := plfeature.NewSchedulerFeaturesFromGates(utilfeature.DefaultFeatureGate)
	if fts.EnableDRAExtendedResource {
		// NodeResourcesFit would then need a framework handle with a DRA manager.
		return nil, errors.New("the DRAExtendedResource feature gate is on by default: not supported")
	}
	type factory func(context.Context, runtime.Object, framework.Handle, plfeature.Features) (framework.Plugin, error)
	factories := []struct {
		name string
		new  factory
	}{
		{names.NodeName, nodename.New},
		{names.NodeUnschedulable, nodeunschedulable.New},
		{names.TaintToleration, tainttoleration.New},
		{names.NodeAffinity, nodeaffinity.New},
		{names.NodeResourcesFit, noderesources.NewFit},
	}
	var plugins []plugin
	for _, f := range factories {
		if !enabled[f.name] {
			return nil, fmt.Errorf("%s is not enabled in the default profile", f.name)
		}
		p, err := f.new(ctx, args[f.name], nil, fts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		fp, ok := p.(framework.FilterPlugin)
		if !ok {
			return nil, fmt.Errorf("%s is not a Filter plugin", f.name)
		}
		plugins = append(plugins, plugin{name: f.name, filter: fp})
	}
	if a, ok := args[names.NodeResourcesFit].(*config.NodeResourcesFitArgs); !ok || a.ScoringStrategy == nil {
		return nil, errors.New("the default profile has no NodeResourcesFit arguments")
	}
	return plugins, nil
}

type world struct {
	plugins []plugin
	nodes   []*v1.Node
	infos   []fwk.NodeInfo
}

func newWorld(plugins []plugin, doc *document) (*world, error) {
	w := &world{plugins: plugins}
	seen := map[string]bool{}
	for i, raw := range doc.Nodes {
		node, err := storedNode(raw)
		if err != nil {
			return nil, fmt.Errorf("nodes[%d] %s: %w", i, strings.TrimSpace(string(raw)), err)
		}
		if seen[node.Name] {
			return nil, fmt.Errorf("nodes[%d]: node %q appears twice", i, node.Name)
		}
		seen[node.Name] = true
		info := framework.NewNodeInfo()
		info.SetNode(node)
		w.nodes = append(w.nodes, node)
		w.infos = append(w.infos, info)
	}
	return w, nil
}

// schedule runs the plugins as the framework's RunPreFilterPlugins and RunFilterPlugins do,
// but on every node and with every plugin, so that each rejection is named.
func (w *world) schedule(ctx context.Context, pod *v1.Pod) (fits []string, rejected map[string][]string, err error) {
	rejected = map[string][]string{}
	state := framework.NewCycleState()
	skip := map[string]bool{}
	preRejects := make([]map[string]bool, len(w.nodes))
	for i := range preRejects {
		preRejects[i] = map[string]bool{}
	}
	for _, p := range w.plugins {
		pre, ok := p.filter.(framework.PreFilterPlugin)
		if !ok {
			continue
		}
		result, status := pre.PreFilter(ctx, state, pod, w.infos)
		switch {
		case status.IsSkip():
			skip[p.name] = true
		case status.Code() == fwk.Error:
			return nil, nil, fmt.Errorf("%s PreFilter: %v", p.name, status.AsError())
		case !status.IsSuccess():
			for i := range w.nodes {
				preRejects[i][p.name] = true
			}
		case !result.AllNodes():
			for i, node := range w.nodes {
				if !result.NodeNames.Has(node.Name) {
					preRejects[i][p.name] = true
				}
			}
		}
	}
	for i, node := range w.nodes {
		var reasons []string
		for _, p := range w.plugins {
			if preRejects[i][p.name] {
				reasons = append(reasons, p.name)
				continue
			}
			if skip[p.name] {
				continue
			}
			status := p.filter.Filter(ctx, state, pod, w.infos[i])
			if status.Code() == fwk.Error {
				return nil, nil, fmt.Errorf("%s Filter on %s: %v", p.name, node.Name, status.AsError())
			}
			if !status.IsSuccess() {
				reasons = append(reasons, p.name)
			}
		}
		if len(reasons) == 0 {
			fits = append(fits, node.Name)
		} else {
			rejected[node.Name] = reasons
		}
	}
	return fits, rejected, nil
}

// kubeletAdmits is the named node's kubelet admitting the Pod bound to it.
func kubeletAdmits(node *v1.Node, pod *v1.Pod) bool {
	handler := lifecycle.NewPredicateAdmitHandler(
		// A copy: the OS label check writes the label into a node that lacks it.
		func() (*v1.Node, error) { return node.DeepCopy(), nil },
		lifecycle.NewAdmissionFailureHandlerStub(),
		// The device manager's update: a node's device-plugin resources are already in its
		// status.allocatable here.
		func(*framework.NodeInfo, *lifecycle.PodAdmitAttributes) error { return nil },
	)
	return handler.Admit(&lifecycle.PodAdmitAttributes{Pod: pod}).Admit
}

func (w *world) answer(ctx context.Context, raw json.RawMessage) (answer, error) {
	pod, invalid, err := storedPod(raw)
	if err != nil {
		return answer{}, err
	}
	if invalid != "" {
		return answer{Invalid: invalid}, nil
	}
	a := answer{Scheduler: []string{}, Kubelet: []string{}, Lands: []string{}}
	fits, rejected, err := w.schedule(ctx, pod)
	if err != nil {
		return answer{}, err
	}
	a.Scheduler = append(a.Scheduler, fits...)
	a.Rejected = rejected
	for _, node := range w.nodes {
		if kubeletAdmits(node, pod) {
			a.Kubelet = append(a.Kubelet, node.Name)
		}
	}
	if pod.Spec.NodeName == "" {
		a.Lands = append(a.Lands, a.Scheduler...)
	} else {
		for _, name := range a.Kubelet {
			if name == pod.Spec.NodeName {
				a.Lands = append(a.Lands, name)
			}
		}
	}
	return a, nil
}

func answerAll(ctx context.Context, plugins []plugin, doc *document) (output, error) {
	w, err := newWorld(plugins, doc)
	if err != nil {
		return output{}, err
	}
	out := output{Pods: make([]answer, 0, len(doc.Pods))}
	for i, raw := range doc.Pods {
		a, err := w.answer(ctx, raw)
		if err != nil {
			return output{}, fmt.Errorf("pods[%d] %s: %w", i, strings.TrimSpace(string(raw)), err)
		}
		out.Pods = append(out.Pods, a)
	}
	return out, nil
}

// selfCheck evaluates known cases, so that plugins made wrong show as an error rather than as
// answers.
func selfCheck(ctx context.Context, plugins []plugin) error {
	const in = `{
	  "nodes": [
	    {"metadata": {"name": "master", "labels": {"kubernetes.io/hostname": "master",
	       "kubernetes.io/os": "linux", "node-role.kubernetes.io/control-plane": ""}},
	     "spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
	     "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110", "example.com/gpu": "1"}}},
	    {"metadata": {"name": "worker", "labels": {"kubernetes.io/hostname": "worker",
	       "kubernetes.io/os": "linux", "role": "worker"}},
	     "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}},
	    {"metadata": {"name": "cordoned", "labels": {"kubernetes.io/os": "linux", "role": "worker"}},
	     "spec": {"unschedulable": true},
	     "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}],
	  "pods": [
	    {"metadata": {"name": "plain", "namespace": "a"},
	     "spec": {"containers": [{"name": "c", "image": "i"}]}},
	    {"metadata": {"name": "tolerant", "namespace": "a"},
	     "spec": {"containers": [{"name": "c", "image": "i"}], "tolerations": [{"operator": "Exists"}]}},
	    {"metadata": {"name": "gpu", "namespace": "a"},
	     "spec": {"containers": [{"name": "c", "image": "i",
	       "resources": {"limits": {"example.com/gpu": "1"}}}],
	       "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}},
	    {"metadata": {"name": "bound", "namespace": "a"},
	     "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": "master"}},
	    {"metadata": {"name": "selected", "namespace": "a"},
	     "spec": {"containers": [{"name": "c", "image": "i"}], "nodeSelector": {"role": "worker"},
	       "tolerations": [{"operator": "Exists"}]}},
	    {"metadata": {"name": "named", "namespace": "a"},
	     "spec": {"containers": [{"name": "c", "image": "i"}], "affinity": {"nodeAffinity": {
	       "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
	         {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["cordoned"]}]}]}}},
	       "tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]}},
	    {"metadata": {"name": "bad", "namespace": "a"},
	     "spec": {"containers": [{"name": "c", "image": "i"}], "tolerations": [{"operator": "Exists", "value": "x"}]}}]}`
	doc := &document{}
	if err := json.Unmarshal([]byte(in), doc); err != nil {
		return err
	}
	out, err := answerAll(ctx, plugins, doc)
	if err != nil {
		return err
	}
	var got []string
	for _, a := range out.Pods {
		if a.Invalid != "" {
			got = append(got, "invalid")
		} else {
			got = append(got, strings.Join(a.Lands, "+"))
		}
	}
	want := []string{"worker", "master+worker+cordoned", "master", "master", "worker+cordoned", "cordoned", "invalid"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("self-check: got %q, want %q", got, want)
	}
	if r := fmt.Sprint(out.Pods[0].Rejected); r != "map[cordoned:[NodeUnschedulable] master:[TaintToleration]]" {
		return fmt.Errorf("self-check: plain Pod rejected %s", r)
	}
	return nil
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "placement-oracle: %v\n", err)
		os.Exit(1)
	}
}

func run(stdin io.Reader, stdout io.Writer) error {
	ctx := context.Background()
	plugins, err := filterPlugins(ctx)
	if err != nil {
		return err
	}
	if err := selfCheck(ctx, plugins); err != nil {
		return err
	}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	dec := json.NewDecoder(bufio.NewReader(stdin))
	dec.DisallowUnknownFields()
	for n := 0; ; n++ {
		doc := &document{}
		if err := dec.Decode(doc); err != nil {
			if err == io.EOF {
				if n == 0 {
					return errors.New("no document on stdin")
				}
				return nil
			}
			return fmt.Errorf("document %d: %w", n, err)
		}
		answers, err := answerAll(ctx, plugins, doc)
		if err != nil {
			return fmt.Errorf("document %d: %w", n, err)
		}
		line, err := json.Marshal(answers)
		if err != nil {
			return err
		}
		out.Write(line)
		out.WriteByte('\n')
	}
}
