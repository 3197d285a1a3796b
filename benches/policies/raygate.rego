# raygate's rules in Rego, as Gatekeeper or OPA would run them: the built-in plan of
# policies/ray-platform.yaml for ports, placement and resources. NetworkPolicy coverage needs
# the cluster's NetworkPolicies and is left out (see docs/BENCHMARKS.md).
#
# Input: an admission.k8s.io/v1 AdmissionReview. Output: `violation`, a set of
# {rule, path, msg} with the same rule ids and JSON pointers as raygate's findings.
package raygate

import rego.v1

planned := [
	{"name": "gcs-server", "port": 6380, "param": "port", "every_node": false, "default": 6379, "aliases": ["gcs"]},
	{"name": "client", "port": 10002, "param": "ray-client-server-port", "every_node": false, "default": 10001, "aliases": ["client-server"]},
	{"name": "dashboard", "port": 8266, "param": "dashboard-port", "every_node": false, "default": 8265, "aliases": []},
	{"name": "serve", "port": 8001, "every_node": false, "default": 8000, "aliases": []},
	{"name": "metrics", "port": 8081, "param": "metrics-export-port", "every_node": true, "default": 8080, "aliases": []},
]

# Names a planned port claims: its own and its aliases.
claimed_names := {n | some p in planned; n := p.name} | {a | some p in planned; some a in p.aliases}

node_ports := [
	{"name": "agent-grpc", "port": 8601, "param": "dashboard-agent-grpc-port"},
	{"name": "agent-http", "port": 52365, "param": "dashboard-agent-listen-port"},
]

worker_range := {"from": 10003, "to": 19999}

node_ranges := [
	{"param": "object-manager-port", "from": 8301, "to": 8400},
	{"param": "node-manager-port", "from": 8401, "to": 8500},
	{"param": "runtime-env-agent-port", "from": 8501, "to": 8600},
]

forbidden := {6379, 10001, 8265, 8000, 8080}

serve_numbers := {8001, 8000}

masters := {"gpu-node"}

worker_key := "node-role"

worker_value := "worker"

control_plane_label := "node-role.kubernetes.io/control-plane"

taint_keys := {"node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"}

control_plane_keys := taint_keys | {control_plane_label}

hostname := "kubernetes.io/hostname"

exempt_namespaces := {"kube-system", "kube-public", "kube-node-lease"}

warn_rules := {"ports/serve-port-name"}

# --- the object and its scope -------------------------------------------------------------

object := input.request.object

operation_checked if input.request.operation in {"CREATE", "UPDATE"}

namespace := ns if {
	ns := object.metadata.namespace
} else := ns if {
	ns := input.request.namespace
} else := "default"

in_scope if {
	operation_checked
	not namespace in exempt_namespaces
}

ray_api if startswith(object.apiVersion, "ray.io/")

cluster := object.spec if {
	ray_api
	object.kind == "RayCluster"
}

cluster := object.spec.rayClusterSpec if {
	ray_api
	object.kind == "RayJob"
}

cluster := object.spec.rayClusterConfig if {
	ray_api
	object.kind == "RayService"
}

cluster := object.spec.jobTemplate.rayClusterSpec if {
	ray_api
	object.kind == "RayCronJob"
}

cluster_ptr := {
	"RayCluster": "/spec",
	"RayJob": "/spec/rayClusterSpec",
	"RayService": "/spec/rayClusterConfig",
	"RayCronJob": "/spec/jobTemplate/rayClusterSpec",
}[object.kind]

is_cluster if {
	in_scope
	is_object(cluster)
}

is_ray_pod if {
	in_scope
	object.apiVersion == "v1"
	object.kind == "Pod"
	is_string(object.metadata.labels["ray.io/cluster"])
}

# Groups with a pod template, keyed by their JSON pointer.
groups[path] := {"role": "head", "spec": g} if {
	is_cluster
	g := cluster.headGroupSpec
	is_object(g.template.spec)
	path := concat("", [cluster_ptr, "/headGroupSpec"])
}

groups[path] := {"role": "worker", "spec": g} if {
	is_cluster
	some i, g in cluster.workerGroupSpecs
	is_object(g.template.spec)
	path := sprintf("%s/workerGroupSpecs/%d", [cluster_ptr, i])
}

# Every pod spec to check: the groups' templates, or the Ray Pod.
pods[path] := grp.spec.template.spec if {
	some gpath, grp in groups
	path := concat("", [gpath, "/template/spec"])
}

pods["/spec"] := object.spec if is_ray_pod

# A RayJob's (or RayCronJob's) submitter pod.
pods["/spec/submitterPodTemplate/spec"] := spec if {
	is_cluster
	object.kind == "RayJob"
	spec := object.spec.submitterPodTemplate.spec
	is_object(spec)
}

pods["/spec/jobTemplate/submitterPodTemplate/spec"] := spec if {
	is_cluster
	object.kind == "RayCronJob"
	spec := object.spec.jobTemplate.submitterPodTemplate.spec
	is_object(spec)
}

# --- helpers --------------------------------------------------------------------------------

applies(_, role) if role == "head"

applies(p, _) if p.every_node

rule_for(p) := "ports/metrics-port" if p.name == "metrics"

rule_for(p) := "ports/head-port" if p.name != "metrics"

port_name(q) := object.get(q, "name", "")

as_port(v) := v if is_number(v)

as_port(v) := to_number(trim_space(v)) if {
	is_string(v)
	regex.match(`^[0-9]+$`, trim_space(v))
}

param_text(v) := trim_space(v) if is_string(v)

param_text(v) := sprintf("%v", [v]) if not is_string(v)

ray_ports(pod) := ports if {
	ports := pod.containers[0].ports
	is_array(ports)
} else := []

container_lists := {"containers", "initContainers"}

params(grp) := p if {
	p := grp.spec.rayStartParams
	is_object(p)
} else := {}

has_params(grp) if is_object(grp.spec.rayStartParams)

# --- ports ----------------------------------------------------------------------------------

# A planned port declared under its name with another number.
port_findings contains {"rule": rule_for(p), "path": path, "msg": msg} if {
	some gpath, grp in groups
	pod := grp.spec.template.spec
	is_object(pod.containers[0])
	ports := ray_ports(pod)
	some p in planned
	applies(p, grp.role)
	named := [i | some i, q in ports; port_name(q) == p.name]
	count(named) > 0
	i := named[0]
	not as_port(object.get(ports[i], "containerPort", null)) == p.port
	path := sprintf("%s/template/spec/containers/0/ports/%d/containerPort", [gpath, i])
	msg := sprintf("port %q is %v; set containerPort: %d", [p.name, object.get(ports[i], "containerPort", null), p.port])
}

# Where a planned port that is missing under its own name may be declared instead: under an
# alias, under its number with another name, or on KubeRay's default number.
alias_index(p, ports) := idx[0] if {
	idx := [i | some i, q in ports; port_name(q) in p.aliases]
	count(idx) > 0
}

number_index(p, ports) := idx[0] if {
	idx := [i | some i, q in ports; as_port(object.get(q, "containerPort", null)) == p.port]
	count(idx) > 0
}

default_index(p, ports) := idx[0] if {
	idx := [i |
		some i, q in ports
		as_port(object.get(q, "containerPort", null)) == p.default
		not port_name(q) in claimed_names
	]
	count(idx) > 0
}

unnamed_planned(grp, ports) := {p |
	some p in planned
	applies(p, grp.role)
	not p.name in {port_name(q) | some q in ports}
}

ray_ports_of(grp) := ray_ports(pod) if {
	pod := grp.spec.template.spec
	is_object(pod.containers[0])
}

# Under an alias with another number: fix the number (and the name).
port_findings contains {"rule": rule_for(p), "path": path, "msg": "alias on the wrong number"} if {
	some gpath, grp in groups
	ports := ray_ports_of(grp)
	some p in unnamed_planned(grp, ports)
	i := alias_index(p, ports)
	not as_port(object.get(ports[i], "containerPort", null)) == p.port
	path := sprintf("%s/template/spec/containers/0/ports/%d/containerPort", [gpath, i])
}

# Under an alias on the right number: rename.
port_findings contains {"rule": rule_for(p), "path": path, "msg": "alias"} if {
	some gpath, grp in groups
	ports := ray_ports_of(grp)
	some p in unnamed_planned(grp, ports)
	i := alias_index(p, ports)
	as_port(object.get(ports[i], "containerPort", null)) == p.port
	path := sprintf("%s/template/spec/containers/0/ports/%d/name", [gpath, i])
}

# A planned number declared under another name (Serve's case is serve-port-name's).
port_findings contains {"rule": rule_for(p), "path": path, "msg": "renamed"} if {
	some gpath, grp in groups
	ports := ray_ports_of(grp)
	some p in unnamed_planned(grp, ports)
	p.name != "serve"
	not alias_index(p, ports)
	i := number_index(p, ports)
	path := sprintf("%s/template/spec/containers/0/ports/%d/name", [gpath, i])
}

# On KubeRay's default number under a name no planned port claims.
port_findings contains {"rule": rule_for(p), "path": path, "msg": "on the default"} if {
	some gpath, grp in groups
	ports := ray_ports_of(grp)
	some p in unnamed_planned(grp, ports)
	p.name != "serve"
	not alias_index(p, ports)
	not number_index(p, ports)
	i := default_index(p, ports)
	path := sprintf("%s/template/spec/containers/0/ports/%d/containerPort", [gpath, i])
}

# A planned port missing altogether.
port_findings contains {"rule": rule_for(p), "path": path, "msg": msg} if {
	some gpath, grp in groups
	ports := ray_ports_of(grp)
	some p in unnamed_planned(grp, ports)
	not alias_index(p, ports)
	not number_index(p, ports)
	not default_index(p, ports)
	path := sprintf("%s/template/spec/containers/0/ports", [gpath])
	msg := sprintf("the Ray container has no port %q; add {name: %s, containerPort: %d}", [p.name, p.name, p.port])
}

violation contains {"rule": "ports/serve-port-name", "path": path, "msg": msg} if {
	some gpath, grp in groups
	grp.role == "head"
	pod := grp.spec.template.spec
	is_object(pod.containers[0])
	some i, q in ray_ports(pod)
	name := port_name(q)
	not name == "serve"
	not startswith(name, "serve-")
	looks_like_serve(q)
	path := sprintf("%s/template/spec/containers/0/ports/%d/name", [gpath, i])
	msg := sprintf("KubeRay's Serve Service ignores port %q; rename it to \"serve\"", [name])
}

looks_like_serve(q) if regex.match(`(^|[^A-Za-z0-9])(ray)?serve([^A-Za-z0-9]|$)`, port_name(q))

looks_like_serve(q) if as_port(object.get(q, "containerPort", null)) in serve_numbers

violation contains {"rule": "ports/ray-start-param", "path": path, "msg": msg} if {
	some gpath, grp in groups
	some p in planned
	applies(p, grp.role)
	key := p.param
	not key in object.keys(params(grp))
	path := concat("", [gpath, "/rayStartParams"])
	msg := sprintf("rayStartParams has no %q; set %s: \"%d\"", [key, key, p.port])
}

violation contains {"rule": "ports/ray-start-param", "path": path, "msg": msg} if {
	some gpath, grp in groups
	some p in planned
	applies(p, grp.role)
	key := p.param
	value := params(grp)[key]
	param_text(value) != format_int(p.port, 10)
	path := sprintf("%s/rayStartParams/%s", [gpath, key])
	msg := sprintf("rayStartParams.%s is %v; set it to \"%d\"", [key, value, p.port])
}

violation contains {"rule": "ports/node-port-range", "path": path, "msg": msg} if {
	some gpath, grp in groups
	some r in node_ranges
	not r.param in object.keys(params(grp))
	path := concat("", [gpath, "/rayStartParams"])
	msg := sprintf("%s is unset (Ray picks a random port); set %s: \"%d\"", [r.param, r.param, r.from])
}

violation contains {"rule": "ports/node-port-range", "path": path, "msg": msg} if {
	some gpath, grp in groups
	some r in node_ranges
	value := params(grp)[r.param]
	not in_range(value, r)
	path := sprintf("%s/rayStartParams/%s", [gpath, r.param])
	msg := sprintf("rayStartParams.%s is %v, outside %d-%d", [r.param, value, r.from, r.to])
}

in_range(value, r) if {
	n := as_port(value)
	n >= r.from
	n <= r.to
}

violation contains {"rule": "ports/ray-start-param", "path": path, "msg": msg} if {
	some gpath, grp in groups
	some p in node_ports
	not p.param in object.keys(params(grp))
	path := concat("", [gpath, "/rayStartParams"])
	msg := sprintf("rayStartParams has no %q; set %s: \"%d\"", [p.param, p.param, p.port])
}

violation contains {"rule": "ports/ray-start-param", "path": path, "msg": msg} if {
	some gpath, grp in groups
	some p in node_ports
	value := params(grp)[p.param]
	param_text(value) != format_int(p.port, 10)
	path := sprintf("%s/rayStartParams/%s", [gpath, p.param])
	msg := sprintf("rayStartParams.%s is %v; set it to \"%d\"", [p.param, value, p.port])
}

# Worker processes: min/max-worker-port inside the plan's range. An unset bound keeps Ray's
# default (10002 and 19999); a range holding a planned port is an overlap.
worker_keys := ["min-worker-port", "max-worker-port"]

has_worker_list(grp) if "worker-port-list" in object.keys(params(grp))

worker_min(grp) := n if {
	n := as_port(params(grp)["min-worker-port"])
} else := 10002 if not "min-worker-port" in object.keys(params(grp))

worker_max(grp) := n if {
	n := as_port(params(grp)["max-worker-port"])
} else := 19999 if not "max-worker-port" in object.keys(params(grp))

worker_outside(grp) := [k |
	some k in worker_keys
	value := params(grp)[k]
	not in_range(value, worker_range)
]

worker_bad(grp) if count(worker_outside(grp)) > 0

worker_bad(grp) if worker_min(grp) > worker_max(grp)

worker_bad_key(grp) := k if {
	outside := worker_outside(grp)
	count(outside) > 0
	k := outside[0]
} else := "min-worker-port"

worker_unset(grp) if {
	some k in worker_keys
	not k in object.keys(params(grp))
}

worker_rule(grp) := "ports/worker-port-overlap" if {
	min := worker_min(grp)
	max := worker_max(grp)
	min > 0
	min <= max
	worker_ports_clash(grp.role, min, max)
} else := "ports/worker-port-range"

violation contains {"rule": worker_rule(grp), "path": path, "msg": "worker ports outside the plan"} if {
	some gpath, grp in groups
	not has_worker_list(grp)
	worker_bad(grp)
	key := worker_bad_key(grp)
	path := sprintf("%s/rayStartParams/%s", [gpath, key])
}

violation contains {"rule": worker_rule(grp), "path": path, "msg": "worker ports unset"} if {
	some gpath, grp in groups
	not has_worker_list(grp)
	not worker_bad(grp)
	worker_unset(grp)
	path := concat("", [gpath, "/rayStartParams"])
}

violation contains {"rule": "ports/worker-port-range", "path": path, "msg": "worker-port-list outside the plan"} if {
	some gpath, grp in groups
	some item in split(param_text(params(grp)["worker-port-list"]), ",")
	not in_range(item, worker_range)
	path := sprintf("%s/rayStartParams/worker-port-list", [gpath])
}

worker_ports_clash(role, min, max) if {
	some p in planned
	applies(p, role)
	p.port >= min
	p.port <= max
}

worker_ports_clash(_, min, max) if {
	some p in node_ports
	p.port >= min
	p.port <= max
}

worker_ports_clash(_, min, max) if {
	some r in node_ranges
	r.from <= max
	min <= r.to
}

violation contains {"rule": "ports/forbidden-port", "path": path, "msg": msg} if {
	some ppath, pod in pods
	some list in container_lists
	some c, container in pod[list]
	some i, q in container.ports
	some field in ["containerPort", "hostPort"]
	as_port(q[field]) in forbidden
	path := sprintf("%s/%s/%d/ports/%d/%s", [ppath, list, c, i, field])
	not planned_port_finding_at(path)
	msg := sprintf("port %q uses %v, a default the plan forbids", [port_name(q), q[field]])
}

# One finding per field: a planned port on the wrong number is not also a forbidden port.
planned_port_finding_at(path) if {
	some f in port_findings
	f.path == path
}

violation contains f if some f in port_findings

# --- placement ------------------------------------------------------------------------------

# Every pod but a worker's whose Ray container asks for whole GPUs (gpu_placed below).
placed[path] := pod if {
	some path, pod in pods
	not gpu_exempt(path, pod)
}

gpu_exempt(path, pod) if {
	contains(path, "/workerGroupSpecs/")
	gpu_pod(pod)
}

gpu_exempt("/spec", pod) if {
	is_ray_pod
	object.get(object.get(input.request.object.metadata, "labels", {}), "ray.io/node-type", "") != "head"
	gpu_pod(pod)
}

gpu_pod(pod) if {
	some kind in ["requests", "limits"]
	q := pod.containers[0].resources[kind]["nvidia.com/gpu"]
	regex.match(`^0*[1-9][0-9]*$`, trim_space(sprintf("%v", [q])))
}

is_zero(q) if q == 0

is_zero(q) if {
	is_string(q)
	trim_space(q) == "0"
}

node_name(pod) := n if {
	n := pod.nodeName
	is_string(n)
} else := ""

violation contains {"rule": "placement/node-name", "path": path, "msg": msg} if {
	some ppath, pod in placed
	node_name(pod) in masters
	path := concat("", [ppath, "/nodeName"])
	msg := sprintf("nodeName %s is a master; remove nodeName", [pod.nodeName])
}

selector_value(v) := v if is_string(v)

selector_value(v) := "" if not is_string(v)

violation contains {"rule": "placement/targets-master", "path": path, "msg": msg} if {
	some ppath, pod in placed
	some key, value in pod.nodeSelector
	selects_master(key, "In", [selector_value(value)])
	path := sprintf("%s/nodeSelector/%s", [ppath, replace(replace(key, "~", "~0"), "/", "~1")])
	msg := sprintf("nodeSelector %s: %v targets a master", [key, value])
}

violation contains {"rule": "placement/targets-master", "path": path, "msg": msg} if {
	some ppath, pod in placed
	some i, term in required_terms(pod)
	some r in requirements(term)
	selects_master(r.key, r.operator, r.values)
	path := sprintf("%s/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/%d/%s/%d", [ppath, i, r.field, r.index])
	msg := sprintf("node affinity %s %s %v targets a master", [r.key, r.operator, r.values])
}

required_terms(pod) := terms if {
	terms := pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms
	is_array(terms)
} else := []

requirements(term) := [r |
	some field in ["matchExpressions", "matchFields"]
	some j, req in term[field]
	raw_key := object.get(req, "key", "")
	key := requirement_key(field, raw_key)
	r := {
		"field": field,
		"index": j,
		"key": key,
		"operator": object.get(req, "operator", ""),
		"values": [v | some v in object.get(req, "values", []); is_string(v)],
	}
]

requirement_key("matchExpressions", key) := key

requirement_key("matchFields", "metadata.name") := hostname

selects_master(key, "In", values) if {
	key == hostname
	some v in values
	v in masters
}

selects_master(key, operator, _) if {
	key != hostname
	operator in {"In", "Exists"}
	key in control_plane_keys
}

keeps_off(r) if {
	r.operator == "In"
	r.key == worker_key
	count(r.values) > 0
	every v in r.values {
		v == worker_value
	}
}

targets_master(pod) if node_name(pod) in masters

targets_master(pod) if {
	some key, value in pod.nodeSelector
	selects_master(key, "In", [selector_value(value)])
}

targets_master(pod) if {
	some term in required_terms(pod)
	some r in requirements(term)
	selects_master(r.key, r.operator, r.values)
}

kept_off(pod) if pod.nodeSelector[worker_key] == worker_value

kept_off(pod) if {
	terms := required_terms(pod)
	count(terms) > 0
	every term in terms {
		some r in requirements(term)
		keeps_off(r)
	}
}

violation contains {"rule": "placement/tolerates-control-plane", "path": path, "msg": msg} if {
	some ppath, pod in placed
	some i, t in pod.tolerations
	tolerates_master(object.get(t, "key", ""), object.get(t, "operator", "Equal"))
	path := sprintf("%s/tolerations/%d", [ppath, i])
	msg := "the pod tolerates the master taint; remove this toleration"
}

tolerates_master(key, operator) if {
	key == ""
	operator == "Exists"
}

tolerates_master(key, _) if key in taint_keys

violation contains {"rule": "placement/not-pinned-to-workers", "path": ppath, "msg": msg} if {
	some ppath, pod in placed
	not kept_off(pod)
	not targets_master(pod)
	msg := sprintf("the pod may be scheduled on a master; add nodeSelector %s: %s", [worker_key, worker_value])
}

# A GPU worker (the exception) may use the masters as well as the workers, and no other node.
gpu_placed[path] := pod if {
	some path, pod in pods
	gpu_exempt(path, pod)
}

keeps_on_masters(r) if {
	r.operator == "In"
	r.key == hostname
	count(r.values) > 0
	every v in r.values {
		v in masters
	}
}

keeps_on_masters(r) if {
	r.key != hostname
	r.operator in {"In", "Exists"}
	r.key in control_plane_keys
}

keeps_on(r) if keeps_off(r)

keeps_on(r) if keeps_on_masters(r)

kept_on(pod) if kept_off(pod)

kept_on(pod) if node_name(pod) in masters

kept_on(pod) if {
	some key, value in pod.nodeSelector
	is_string(value)
	keeps_on_masters({"key": key, "operator": "In", "values": [value]})
}

kept_on(pod) if {
	terms := required_terms(pod)
	count(terms) > 0
	every term in terms {
		some r in requirements(term)
		keeps_on(r)
	}
}

violation contains {"rule": "placement/not-pinned-to-workers", "path": ppath, "msg": msg} if {
	some ppath, pod in gpu_placed
	not kept_on(pod)
	msg := sprintf("the GPU pod may be scheduled on a node that is neither a worker nor a master; add nodeSelector %s: %s or select a master", [worker_key, worker_value])
}

# --- resources ------------------------------------------------------------------------------

containers[path] := container if {
	some ppath, pod in pods
	some list in container_lists
	some c, container in pod[list]
	path := sprintf("%s/%s/%d", [ppath, list, c])
}

section(container, kind) := s if {
	s := container.resources[kind]
	is_object(s)
} else := {}

violation contains {"rule": "resources/missing", "path": path, "msg": msg} if {
	some cpath, container in containers
	some kind in ["requests", "limits"]
	some resource in ["cpu", "memory"]
	not resource in object.keys(section(container, kind))
	path := concat("", [cpath, "/resources"])
	msg := sprintf("container %q has no %s.%s", [object.get(container, "name", ""), kind, resource])
}

violation contains {"rule": "resources/invalid-quantity", "path": path, "msg": msg} if {
	some cpath, container in containers
	some kind in ["requests", "limits"]
	some resource in ["cpu", "memory"]
	value := section(container, kind)[resource]
	not valid_quantity(value)
	path := sprintf("%s/resources/%s/%s", [cpath, kind, resource])
	msg := sprintf("%s.%s is %v, not a Kubernetes quantity", [kind, resource, value])
}

violation contains {"rule": "resources/limit-below-request", "path": path, "msg": msg} if {
	some cpath, container in containers
	some resource in ["cpu", "memory"]
	request := quantity(section(container, "requests")[resource])
	limit := quantity(section(container, "limits")[resource])
	limit < request
	path := sprintf("%s/resources/limits/%s", [cpath, resource])
	msg := sprintf("limits.%s is below its request; raise the limit", [resource])
}

violation contains {"rule": "resources/gpu-mismatch", "path": path, "msg": msg} if {
	some cpath, container in containers
	request := section(container, "requests")["nvidia.com/gpu"]
	not gpu_limit_equal(request, object.get(section(container, "limits"), "nvidia.com/gpu", null))
	path := concat("", [cpath, "/resources/limits/nvidia.com~1gpu"])
	msg := "set limits.nvidia.com/gpu equal to the request"
}

gpu_limit_equal(request, limit) if quantity(request) == quantity(limit)

gpu_limit_equal(request, limit) if {
	not valid_quantity(request)
	sprintf("%v", [request]) == sprintf("%v", [limit])
}

gpu_limit_equal(request, limit) if {
	not valid_quantity(limit)
	limit != null
	sprintf("%v", [request]) == sprintf("%v", [limit])
}

# Kubernetes quantities: the grammar, and their value as a number.
quantity_pattern := `^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$`

valid_quantity(v) if is_number(v)

valid_quantity(v) if {
	is_string(v)
	regex.match(quantity_pattern, trim_space(v))
}

binary_units := {"Ki": 1024, "Mi": 1048576, "Gi": 1073741824, "Ti": 1099511627776, "Pi": 1125899906842624, "Ei": 1152921504606846976}

decimal_units := {"n": 0.000000001, "u": 0.000001, "m": 0.001, "k": 1000, "M": 1000000, "G": 1000000000, "T": 1000000000000, "P": 1000000000000000, "E": 1000000000000000000}

quantity(v) := v if is_number(v)

quantity(v) := q if {
	valid_quantity(v)
	is_string(v)
	s := trim_space(v)
	q := string_quantity(s)
}

string_quantity(s) := to_number(number_part(s)) if regex.match(`^[+-]?[0-9.]+$`, s)

string_quantity(s) := to_number(number_part(trim_suffix(s, suffix))) * factor if {
	some suffix, factor in binary_units
	endswith(s, suffix)
}

string_quantity(s) := to_number(number_part(trim_suffix(s, suffix))) * factor if {
	some suffix, factor in decimal_units
	endswith(s, suffix)
	not regex.match(`[0-9][eE][+-]?[0-9]+$`, s)
}

string_quantity(s) := to_number(number_part(parts[0])) * power_of_ten(to_number(parts[1])) if {
	regex.match(`[0-9][eE][+-]?[0-9]+$`, s)
	parts := regex.split(`[eE]`, s)
}

# "1." and ".5" as to_number reads them.
number_part(s) := concat("", [s, "0"]) if endswith(s, ".")

number_part(s) := concat("", ["0", s]) if startswith(s, ".")

number_part(s) := s if {
	not endswith(s, ".")
	not startswith(s, ".")
}

power_of_ten(e) := 1 if e == 0

power_of_ten(e) := product([10 | some _ in numbers.range(1, e)]) if e > 0

power_of_ten(e) := 1 / product([10 | some _ in numbers.range(1, 0 - e)]) if e < 0

# --- the verdict ----------------------------------------------------------------------------

denials := [v | some v in violation; not v.rule in warn_rules]

warnings := [v | some v in violation; v.rule in warn_rules]

allowed if count(denials) == 0
