//! The Ray container's readiness and liveness probes. A Ray container without them gets
//! KubeRay v1.5.0's (`initLivenessAndReadinessProbe`), which call the dashboard on 8265 and the
//! dashboard agent on 52365 whatever ports Ray was started with: on the plan's dashboard port
//! the head is never Ready, and its liveness probe restarts it after about ten minutes. raygate
//! fills in the probes KubeRay would write, on the ports the node's Ray really listens on, and
//! denies a probe of the user's (or one KubeRay generated on a Pod) that calls a default Ray
//! does not listen on.

use crate::rule_id::RuleId;
use json_patch::jsonptr::PointerBuf;
use serde_json::{Value, json};

use crate::ray::{ContainerRef, NodeGroup, PodSpecRef, Role, as_port, child};
use crate::rules::Findings;

/// The ports KubeRay v1.5.0 writes into the probes it adds (`utils.DefaultDashboardPort`,
/// `DefaultDashboardAgentListenPort`, and `DefaultServingPort` when the Ray container
/// declares no `serve` port).
pub const KUBERAY_DASHBOARD_PORT: u32 = 8265;
pub const KUBERAY_AGENT_PORT: u32 = 52365;
pub const KUBERAY_SERVE_PORT: u32 = 8000;

/// `utils.BaseWgetHealthCommand`.
fn wget(timeout: u32, port: u32, path: &str) -> String {
    format!("wget --tries 1 -T {timeout} -q -O- http://localhost:{port}/{path} | grep success")
}

/// The ports a node's probes should reach: where its Ray listens once this admission's patch
/// is applied. `None` where raygate cannot tell (a value that is not a port, a command it
/// refused): nothing is then judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    pub role: Role,
    /// The dashboard (the head's only).
    pub dashboard: Option<u32>,
    /// The dashboard agent's HTTP server.
    pub agent: Option<u32>,
    /// Serve's proxies: the plan's Serve port (`ports/serve-config` holds a RayService to it).
    pub serve: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Readiness,
    Liveness,
}

impl Kind {
    fn field(self) -> &'static str {
        match self {
            Kind::Readiness => "readinessProbe",
            Kind::Liveness => "livenessProbe",
        }
    }

    fn consequence(self) -> &'static str {
        match self {
            // `utils.CheckAllPodsRunning` wants every Pod Ready.
            Kind::Readiness => {
                "so the Pod never becomes Ready and KubeRay never marks the cluster ready"
            }
            // initialDelaySeconds 30 + failureThreshold 120 × periodSeconds 5.
            Kind::Liveness => "so the kubelet restarts the container after about ten minutes",
        }
    }
}

/// The probe KubeRay v1.5.0 gives a Ray container that has none, with the agent's, the
/// dashboard's and Serve's ports Ray listens on in place of KubeRay's: head readiness and
/// liveness check the raylet (through the agent) and GCS (through the dashboard), a worker's
/// the raylet, and a RayService worker's readiness also Serve's proxy (`serve_check`), with a
/// failure threshold of 1.
fn kuberay_probe(
    kind: Kind,
    role: Role,
    agent: u32,
    dashboard: u32,
    serve_check: Option<u32>,
) -> Value {
    // The raylet check's -T is the readiness timeout, the GCS and Serve checks' are the
    // readiness failure threshold and initial delay: KubeRay's own arguments, reproduced.
    let mut command = wget(2, agent, "api/local_raylet_healthz");
    if role == Role::Head {
        command.push_str(" && ");
        command.push_str(&wget(10, dashboard, "api/gcs_healthz"));
    }
    let timeout = if role == Role::Head { 5 } else { 2 };
    let exec = |command: String| json!({"command": ["bash", "-c", command]});
    match kind {
        Kind::Liveness => json!({
            "exec": exec(command),
            "initialDelaySeconds": 30,
            "timeoutSeconds": timeout,
            "periodSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 120,
        }),
        Kind::Readiness => {
            let mut failure = 10;
            if let Some(serve) = serve_check {
                command.push_str(" && ");
                command.push_str(&wget(10, serve, "-/healthz"));
                failure = 1;
            }
            json!({
                "exec": exec(command),
                "initialDelaySeconds": 10,
                "timeoutSeconds": timeout,
                "periodSeconds": 5,
                "successThreshold": 1,
                "failureThreshold": failure,
            })
        }
    }
}

/// Whether a container sets `field` (a null is unset: the API server drops it).
fn has(container: &ContainerRef<'_>, field: &str) -> bool {
    container.value.get(field).is_some_and(|v| !v.is_null())
}

/// A group's Ray container: its missing probes filled in as KubeRay would write them but on
/// the ports Ray listens on, and its own probes judged. `serve_declared` is the `serve` port
/// the container declares once patched (KubeRay's Serve check uses it, else 8000), for a
/// worker of a RayService's cluster; `None` elsewhere.
pub fn check_group(
    group: &NodeGroup<'_>,
    pod: &PodSpecRef<'_>,
    ray: &ContainerRef<'_>,
    listening: Listening,
    serve_declared: Option<u32>,
    out: &mut Findings<'_>,
) {
    if !out.enabled(RuleId::ProbePort) {
        return;
    }
    let container_path = pod.container_path(ray);
    let subject = || format!("{} of the {}", ray.describe(), group.describe());
    judge_own_probes(ray, &container_path, &subject, listening, None, out);
    let Some(agent) = listening.agent else {
        return;
    };
    // A worker's probe never calls the dashboard.
    let dashboard = match (group.role, listening.dashboard) {
        (Role::Head, Some(dashboard)) => dashboard,
        (Role::Head, None) => return,
        (Role::Worker, _) => KUBERAY_DASHBOARD_PORT,
    };
    if !ray.value.is_object() {
        return;
    }
    for kind in [Kind::Readiness, Kind::Liveness] {
        if has(ray, kind.field()) {
            continue;
        }
        // What KubeRay's probe calls, and where Ray listens instead.
        let mut wrong: Vec<(u32, &str, u32)> = Vec::new();
        if agent != KUBERAY_AGENT_PORT {
            wrong.push((KUBERAY_AGENT_PORT, "dashboard agent", agent));
        }
        if group.role == Role::Head && dashboard != KUBERAY_DASHBOARD_PORT {
            wrong.push((KUBERAY_DASHBOARD_PORT, "dashboard", dashboard));
        }
        let serve_check = match (kind, serve_declared) {
            (Kind::Readiness, Some(declared)) => {
                if declared != listening.serve {
                    wrong.push((declared, "Serve proxy", listening.serve));
                }
                Some(listening.serve)
            }
            _ => None,
        };
        if wrong.is_empty() {
            continue;
        }
        let probe = kuberay_probe(kind, group.role, agent, dashboard, serve_check);
        let calls: Vec<String> = wrong
            .iter()
            .map(|(from, what, _)| format!("localhost:{from} ({what})"))
            .collect();
        let instead: Vec<String> = wrong
            .iter()
            .map(|(_, what, to)| format!("the {what} on {to}"))
            .collect();
        let path = child(&container_path, kind.field());
        out.report_fillable(RuleId::ProbePort, &path, || {
            format!(
                "{} has no {field}, so KubeRay v1.5.0 adds one that calls {}, where Ray does not listen, {}; set {field} to KubeRay's own with {}: {}",
                subject(),
                crate::rules::and_list(&calls),
                kind.consequence(),
                crate::rules::and_list(&instead),
                describe_probe(&probe),
                field = kind.field(),
            )
        });
        out.fill(path, probe);
    }
}

/// A Ray Pod's own probes (KubeRay generated them when the template had none): any that calls
/// a default its Ray does not listen on is denied.
pub fn check_pod(
    pod: &PodSpecRef<'_>,
    ray: &ContainerRef<'_>,
    subject: &str,
    listening: Listening,
    out: &mut Findings<'_>,
) {
    if !out.enabled(RuleId::ProbePort) {
        return;
    }
    let container_path = pod.container_path(ray);
    let subject = || format!("{} of the {subject}", ray.describe());
    let hint = " (KubeRay v1.5.0 writes 8265 and 52365 into the probes it adds when the pod template has none: give the group's template probes on Ray's ports, which raygate fills in when it admits the cluster)";
    judge_own_probes(ray, &container_path, &subject, listening, Some(hint), out);
}

/// One line that says what a probe raygate fills in is.
fn describe_probe(probe: &Value) -> String {
    let command = probe
        .pointer("/exec/command/2")
        .and_then(Value::as_str)
        .unwrap_or("");
    let number = |key: &str| probe.get(key).and_then(Value::as_u64).unwrap_or(0);
    format!(
        "exec [bash, -c, {command:?}], initialDelaySeconds {}, timeoutSeconds {}, periodSeconds {}, failureThreshold {}",
        number("initialDelaySeconds"),
        number("timeoutSeconds"),
        number("periodSeconds"),
        number("failureThreshold")
    )
}

/// Every probe the container sets: each call to a Ray endpoint where this node's Ray does not
/// serve it.
fn judge_own_probes(
    ray: &ContainerRef<'_>,
    container_path: &PointerBuf,
    subject: &dyn Fn() -> String,
    listening: Listening,
    hint: Option<&str>,
    out: &mut Findings<'_>,
) {
    for field in ["readinessProbe", "livenessProbe", "startupProbe"] {
        let Some(probe) = ray.value.get(field).filter(|p| p.is_object()) else {
            continue;
        };
        let probe_path = child(container_path, field);
        if let Some(command) = probe.pointer("/exec/command").and_then(Value::as_array) {
            for (i, word) in command.iter().enumerate() {
                let Some(text) = word.as_str() else { continue };
                let fixes: Vec<String> = local_calls(text)
                    .filter_map(|(port, path)| misdirected(port, path, listening))
                    .map(|fix| format!("localhost:{fix}"))
                    .collect();
                if fixes.is_empty() {
                    continue;
                }
                let path = child(
                    &child(&child(&probe_path, "exec"), "command"),
                    &i.to_string(),
                );
                out.report(RuleId::ProbePort, &path, || {
                    format!(
                        "{field} of {} calls {}; change the command{}",
                        subject(),
                        crate::rules::and_list(&fixes),
                        hint.unwrap_or("")
                    )
                });
            }
        }
        for handler in ["httpGet", "tcpSocket", "grpc"] {
            let Some(action) = probe.get(handler).filter(|a| a.is_object()) else {
                continue;
            };
            // Another host is not this Pod's Ray.
            let host = action.get("host").and_then(Value::as_str).unwrap_or("");
            if !matches!(host, "" | "localhost" | "127.0.0.1") {
                continue;
            }
            let Some(port) = action.get("port").and_then(|p| probe_port(p, ray)) else {
                continue;
            };
            let path = action.get("path").and_then(Value::as_str).unwrap_or("");
            let Some(fix) = misdirected(port, path, listening) else {
                continue;
            };
            let at = child(&child(&probe_path, handler), "port");
            out.report(RuleId::ProbePort, &at, || {
                format!(
                    "{field} of {} ({handler}) probes port {fix}; change its port{}",
                    subject(),
                    hint.unwrap_or("")
                )
            });
        }
    }
}

/// A probe's port: a number, or the name of one of the container's ports.
fn probe_port(port: &Value, container: &ContainerRef<'_>) -> Option<u32> {
    if let Some(name) = port
        .as_str()
        .filter(|s| !s.bytes().all(|b| b.is_ascii_digit()))
    {
        return container
            .ports()?
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|p| p.get("containerPort"))
            .and_then(as_port);
    }
    as_port(port)
}

/// What a command calls on its own Pod: each `localhost:<port><path>` and
/// `127.0.0.1:<port><path>`, the path up to the next blank or quote.
fn local_calls(text: &str) -> impl Iterator<Item = (u32, &str)> + '_ {
    ["localhost:", "127.0.0.1:"]
        .into_iter()
        .flat_map(move |host| {
            text.match_indices(host).filter_map(move |(at, _)| {
                let rest = &text[at + host.len()..];
                let digits = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                let port = rest[..digits].parse().ok()?;
                let rest = &rest[digits..];
                let path = rest
                    .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '|' | ';' | '&'))
                    .map_or(rest, |end| &rest[..end]);
                Some((port, path))
            })
        })
}

/// The Ray endpoints a probe can call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// The dashboard (`api/gcs_healthz`, the head's GCS check).
    Dashboard,
    /// The dashboard agent (`api/local_raylet_healthz`, the raylet check).
    Agent,
    /// Serve's proxy (`-/healthz`).
    Serve,
}

impl Endpoint {
    /// The endpoint a call reaches by its path (Ray 2.60.0 serves each on one server only),
    /// else by the KubeRay default it calls.
    fn of(port: u32, path: &str) -> Option<Endpoint> {
        if path.contains("local_raylet_healthz") {
            Some(Endpoint::Agent)
        } else if path.contains("gcs_healthz") {
            Some(Endpoint::Dashboard)
        } else if path.contains("-/healthz") {
            Some(Endpoint::Serve)
        } else {
            match port {
                KUBERAY_DASHBOARD_PORT => Some(Endpoint::Dashboard),
                KUBERAY_AGENT_PORT => Some(Endpoint::Agent),
                KUBERAY_SERVE_PORT => Some(Endpoint::Serve),
                _ => None,
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Endpoint::Dashboard => "the dashboard",
            Endpoint::Agent => "the dashboard agent",
            Endpoint::Serve => "Serve's proxy",
        }
    }
}

/// What is wrong with a probe's call to `port` (and `path`) when it reaches a Ray endpoint
/// where this node's Ray does not serve it, and the fix; `None` when it is fine or raygate
/// cannot tell.
fn misdirected(port: u32, path: &str, listening: Listening) -> Option<String> {
    let endpoint = Endpoint::of(port, path)?;
    let wanted = match endpoint {
        Endpoint::Dashboard if listening.role == Role::Worker => {
            return Some(match listening.agent {
                Some(agent) => format!(
                    "{port}{path} for the dashboard, but a worker runs no dashboard: check the raylet through the dashboard agent instead (localhost:{agent}/api/local_raylet_healthz)"
                ),
                None => format!(
                    "{port}{path} for the dashboard, but a worker runs no dashboard: remove that check"
                ),
            });
        }
        Endpoint::Dashboard => listening.dashboard?,
        Endpoint::Agent => listening.agent?,
        Endpoint::Serve => listening.serve,
    };
    (port != wanted).then(|| {
        format!(
            "{port}{path} for {}, which listens on {wanted}: use {wanted}",
            endpoint.name()
        )
    })
}
