// Command netpol-oracle answers whether NetworkPolicies let connections between Pods through,
// with the SIG-Network reference implementation's own code, in-process: the NetworkPolicy
// path of sigs.k8s.io/kube-network-policies v0.8.0 (pkg/networkpolicy). Built by
// scripts/netpol-oracle.sh; tests/netpol_oracle.rs holds raygate's
// rules::network_policy::connection_allowed against it. Nothing here is imported by Rust.
//
// What is evaluated, per query (from, to, port, protocol):
//
//   - The policies are first made what the API server stores and kube-network-policies reads
//     (it lists them over protobuf): each is decoded from JSON case-sensitively as the API
//     server does (sigs.k8s.io/json), defaulted by k8s.io/kubernetes v1.32.3's own
//     SetObjectDefaults_NetworkPolicy (policyTypes: [Ingress], plus Egress when the egress list
//     is not empty; protocol: TCP), converted to the internal type and validated by its
//     ValidateNetworkPolicy (an invalid policy is an error: the API server would refuse it),
//     converted back to networking/v1 and round-tripped through its protobuf encoding, which
//     turns an empty list (`ingress: []`, `from: []`, ...) into a missing one, then defaulted
//     again as the storage decoder does. A policy without `spec` stores the zero spec: every
//     Pod of its namespace, policyTypes [Ingress], no rule.
//   - Namespaces get k8s.io/kubernetes' SetObjectDefaults_Namespace (the
//     kubernetes.io/metadata.name label is set to the name, overriding any written value) and
//     Pods SetObjectDefaults_Pod (a container port's protocol defaults to TCP). The Pods are on
//     one node and Running, with their IP in status.podIPs; all their ports are in one
//     container.
//   - The objects go into the listers of a real pkg/networkpolicy Controller made by its
//     exported NewController (fake clientset, client-go informers never started; the objects
//     are added to the informers' indexers; AdminNetworkPolicy and BaselineAdminNetworkPolicy
//     off, NRI off).
//   - The decision is the unexported (*Controller).evaluatePacket (controller.go), called
//     through go:linkname with a packet from `from`'s IP to `to`'s IP: it finds both Pods by IP
//     (getPodAssignedToIP), the policies selecting each (getNetworkPoliciesForPod) and runs
//     evaluator/evaluateEgress/evaluateIngress/evaluateSelectors/evaluatePorts/
//     evaluateIPBlocks (networkpolicy.go): egress of the source, then ingress of the
//     destination; named ports resolve on the destination Pod by name, number and protocol.
//     Only the packet type is copied (verbatim, below); scripts/netpol-oracle.sh checks the
//     copy and evaluatePacket's signature against the module before building, and a known
//     case is evaluated at start-up.
//   - A Pod's connection to its own IP is allowed without evaluation: inside the Pod's network
//     namespace it goes over the loopback interface and never reaches the node's netfilter
//     postrouting hook where kube-network-policies queues packets (the Kubernetes e2e
//     NetworkPolicy suite's Reachability.AllowLoopback expects the same).
//
// Input (stdin): one or more JSON documents, each
//
//	{"namespaces": {"<ns>": {<labels>}},
//	 "pods": [{"name": "...", "namespace": "...", "labels": {...}, "ip": "198.18.x.y",
//	           "ports": [{"name": "...", "containerPort": 1234, "protocol": "TCP"}]}],
//	 "policies": [<networking.k8s.io/v1 NetworkPolicy objects, as written>],
//	 "queries": [{"from": "<pod name>", "to": "<pod name>", "port": 1234, "protocol": "TCP"}]}
//
// Pod names are unique across namespaces. Output (stdout): one line per document,
// {"answers": [true|false, ...]} in query order, true when the connection is allowed. Any
// error (bad input, an invalid policy) ends the program with a message and exit status 1.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	_ "unsafe" // go:linkname

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	corev1defaults "k8s.io/kubernetes/pkg/apis/core/v1"
	"k8s.io/kubernetes/pkg/apis/networking"
	networkingv1defaults "k8s.io/kubernetes/pkg/apis/networking/v1"
	"k8s.io/kubernetes/pkg/apis/networking/validation"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kube-network-policies/pkg/networkpolicy"
)

// BEGIN packet: copied verbatim from
// sigs.k8s.io/kube-network-policies@v0.8.0/pkg/networkpolicy/packet.go. evaluatePacket takes
// it by value, so it must be the same type field for field.
type packet struct {
	id      uint32
	family  v1.IPFamily
	srcIP   net.IP
	dstIP   net.IP
	proto   v1.Protocol
	srcPort int
	dstPort int
	payload []byte
}

// END packet

// evaluatePacket is sigs.k8s.io/kube-network-policies@v0.8.0/pkg/networkpolicy/controller.go's
//
//	func (c *Controller) evaluatePacket(ctx context.Context, p packet) bool
//
// with the receiver as the first argument.
//
//go:linkname evaluatePacket sigs.k8s.io/kube-network-policies/pkg/networkpolicy.(*Controller).evaluatePacket
func evaluatePacket(c *networkpolicy.Controller, ctx context.Context, p packet) bool

const nodeName = "netpol-oracle-node"

type podIn struct {
	Name      string             `json:"name"`
	Namespace string             `json:"namespace"`
	Labels    map[string]string  `json:"labels"`
	IP        string             `json:"ip"`
	Ports     []v1.ContainerPort `json:"ports"`
}

type query struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
}

type document struct {
	Namespaces map[string]map[string]string `json:"namespaces"`
	Pods       []podIn                      `json:"pods"`
	Policies   []json.RawMessage            `json:"policies"`
	Queries    []query                      `json:"queries"`
}

type output struct {
	Answers []bool `json:"answers"`
}

// stored returns the NetworkPolicy the API server would store for `raw` and
// kube-network-policies would read back.
func stored(raw json.RawMessage) (*networkingv1.NetworkPolicy, error) {
	in := &networkingv1.NetworkPolicy{}
	strict, err := kjson.UnmarshalStrict(raw, in, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		// The API server drops unknown fields (with a warning); the corpus should not have any.
		return nil, errors.Join(strict...)
	}
	networkingv1defaults.SetObjectDefaults_NetworkPolicy(in)
	internal := &networking.NetworkPolicy{}
	if err := networkingv1defaults.Convert_v1_NetworkPolicy_To_networking_NetworkPolicy(in, internal, nil); err != nil {
		return nil, err
	}
	if errs := validation.ValidateNetworkPolicy(internal, validation.NetworkPolicyValidationOptions{}); len(errs) > 0 {
		return nil, fmt.Errorf("the API server refuses it: %v", errs.ToAggregate())
	}
	versioned := &networkingv1.NetworkPolicy{}
	if err := networkingv1defaults.Convert_networking_NetworkPolicy_To_v1_NetworkPolicy(internal, versioned, nil); err != nil {
		return nil, err
	}
	data, err := versioned.Marshal()
	if err != nil {
		return nil, err
	}
	out := &networkingv1.NetworkPolicy{}
	if err := out.Unmarshal(data); err != nil {
		return nil, err
	}
	networkingv1defaults.SetObjectDefaults_NetworkPolicy(out)
	return out, nil
}

type world struct {
	controller *networkpolicy.Controller
	pods       map[string]*v1.Pod
}

func newWorld(doc *document) (*world, error) {
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	policyInformer := factory.Networking().V1().NetworkPolicies()
	namespaceInformer := factory.Core().V1().Namespaces()
	podInformer := factory.Core().V1().Pods()
	controller, err := networkpolicy.NewController(client, policyInformer, namespaceInformer,
		podInformer, factory.Core().V1().Nodes(), nil, nil, nil,
		networkpolicy.Config{NodeName: nodeName, NRIdisabled: true})
	if err != nil {
		return nil, err
	}
	w := &world{controller: controller, pods: map[string]*v1.Pod{}}

	for name, labels := range doc.Namespaces {
		ns := &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: copyLabels(labels)}}
		corev1defaults.SetObjectDefaults_Namespace(ns)
		if err := namespaceInformer.Informer().GetIndexer().Add(ns); err != nil {
			return nil, err
		}
	}
	for _, in := range doc.Pods {
		if _, dup := w.pods[in.Name]; dup {
			return nil, fmt.Errorf("pod %q appears twice", in.Name)
		}
		if _, ok := doc.Namespaces[in.Namespace]; !ok {
			return nil, fmt.Errorf("pod %q: namespace %q is not in namespaces", in.Name, in.Namespace)
		}
		ip := net.ParseIP(in.IP)
		if ip == nil || ip.To4() == nil {
			return nil, fmt.Errorf("pod %q: %q is not an IPv4 address", in.Name, in.IP)
		}
		pod := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: in.Name, Namespace: in.Namespace, Labels: copyLabels(in.Labels)},
			Spec: v1.PodSpec{
				NodeName:   nodeName,
				Containers: []v1.Container{{Name: "main", Image: "netpol-oracle", Ports: in.Ports}},
			},
			Status: v1.PodStatus{
				Phase:  v1.PodRunning,
				PodIP:  in.IP,
				PodIPs: []v1.PodIP{{IP: in.IP}},
			},
		}
		corev1defaults.SetObjectDefaults_Pod(pod)
		if err := podInformer.Informer().GetIndexer().Add(pod); err != nil {
			return nil, err
		}
		w.pods[in.Name] = pod
	}
	seen := map[string]bool{}
	for i, raw := range doc.Policies {
		policy, err := stored(raw)
		if err != nil {
			return nil, fmt.Errorf("policies[%d] %s: %w", i, strings.TrimSpace(string(raw)), err)
		}
		key := policy.Namespace + "/" + policy.Name
		if seen[key] {
			return nil, fmt.Errorf("policies[%d]: %s appears twice", i, key)
		}
		seen[key] = true
		if err := policyInformer.Informer().GetIndexer().Add(policy); err != nil {
			return nil, err
		}
	}
	return w, nil
}

func (w *world) allowed(q query, id uint32) (bool, error) {
	from, ok := w.pods[q.From]
	if !ok {
		return false, fmt.Errorf("query %d: no pod %q", id, q.From)
	}
	to, ok := w.pods[q.To]
	if !ok {
		return false, fmt.Errorf("query %d: no pod %q", id, q.To)
	}
	proto := v1.Protocol(q.Protocol)
	if proto != v1.ProtocolTCP && proto != v1.ProtocolUDP && proto != v1.ProtocolSCTP {
		return false, fmt.Errorf("query %d: protocol %q", id, q.Protocol)
	}
	if q.Port < 1 || q.Port > 65535 {
		return false, fmt.Errorf("query %d: port %d", id, q.Port)
	}
	srcIP := net.ParseIP(from.Status.PodIP).To4()
	dstIP := net.ParseIP(to.Status.PodIP).To4()
	if srcIP.Equal(dstIP) {
		return true, nil // loopback inside the Pod: never queued (see the header)
	}
	p := packet{
		id:      id,
		family:  v1.IPv4Protocol,
		srcIP:   srcIP,
		dstIP:   dstIP,
		proto:   proto,
		srcPort: 40000 + int(id%20000), // an ephemeral port; NetworkPolicies do not look at it
		dstPort: q.Port,
	}
	return evaluatePacket(w.controller, context.Background(), p), nil
}

func answer(doc *document) (output, error) {
	w, err := newWorld(doc)
	if err != nil {
		return output{}, err
	}
	out := output{Answers: make([]bool, 0, len(doc.Queries))}
	for i, q := range doc.Queries {
		ok, err := w.allowed(q, uint32(i))
		if err != nil {
			return output{}, err
		}
		out.Answers = append(out.Answers, ok)
	}
	return out, nil
}

func copyLabels(in map[string]string) map[string]string {
	if in == nil {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

// selfCheck evaluates a known case, so that a call through go:linkname that went wrong shows
// as an error rather than as answers.
func selfCheck() error {
	doc := &document{}
	const in = `{
	  "namespaces": {"a": {}},
	  "pods": [
	    {"name": "client", "namespace": "a", "labels": {"role": "client"}, "ip": "198.18.0.1"},
	    {"name": "server", "namespace": "a", "labels": {"role": "server"}, "ip": "198.18.0.2",
	     "ports": [{"name": "web", "containerPort": 8080, "protocol": "TCP"}]}],
	  "policies": [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
	    "metadata": {"name": "p", "namespace": "a"},
	    "spec": {"podSelector": {"matchLabels": {"role": "server"}},
	             "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
	                          "ports": [{"port": "web"}]}]}}],
	  "queries": [
	    {"from": "client", "to": "server", "port": 8080, "protocol": "TCP"},
	    {"from": "client", "to": "server", "port": 8080, "protocol": "UDP"},
	    {"from": "client", "to": "server", "port": 8081, "protocol": "TCP"},
	    {"from": "server", "to": "server", "port": 8081, "protocol": "TCP"},
	    {"from": "server", "to": "client", "port": 8081, "protocol": "TCP"}]}`
	if err := json.Unmarshal([]byte(in), doc); err != nil {
		return err
	}
	out, err := answer(doc)
	if err != nil {
		return err
	}
	want := []bool{true, false, false, true, true}
	if fmt.Sprint(out.Answers) != fmt.Sprint(want) {
		return fmt.Errorf("self-check: got %v, want %v", out.Answers, want)
	}
	return nil
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "netpol-oracle: %v\n", err)
		os.Exit(1)
	}
}

func run(stdin io.Reader, stdout io.Writer) error {
	if err := selfCheck(); err != nil {
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
		answers, err := answer(doc)
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
