//! The `ray start` command a Ray container really runs, read as bash and Ray's click CLI read it.
//!
//! KubeRay v1.5.0 writes `rayStartParams` unquoted into a `bash -c` line (`--key=value`, keys
//! sorted), or runs the user's own command. raygate judges the effective options of that one
//! command: it rebuilds the container's argv as the operator does, splits the script with a
//! strict subset of bash, and parses the words after `ray start` as click does (the last of a
//! repeated option wins). Anything outside that subset (an expansion it cannot resolve, a
//! second `ray start`, a command it does not know) is refused, so that nothing a tenant writes
//! can move a Ray process off the plan unseen. `tests/runtime/ray_cli_oracle.py` runs the same
//! cases through real bash and Ray 2.60.0's click command.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::ray::{ClusterSpec, NodeGroup, Role};

/// The variable in which KubeRay hands the generated `ray start` line to the container.
pub const GENERATED_CMD_VAR: &str = "KUBERAY_GEN_RAY_START_CMD";

pub use crate::ray_version::{Arity, ValueType, VersionFacts};

/// `ray start` options that keep `"true"`/`"false"` as a value (KubeRay v1.5.0's
/// `specialParameterOptions` in `convertParamMap`); for every other key KubeRay turns `"true"`
/// into a bare flag and drops `"false"`. (`include-log-monitor` is not one: KubeRay renders its
/// `"true"` as a bare `--include-log-monitor`, which takes the next word as its value.)
const KEEPS_BOOLEAN_TEXT: &[&str] = &["log-color", "include-dashboard"];

/// Commands that may run beside the one `ray start` in a Ray container's script: they neither
/// start a listener nor change what the shell runs next.
pub const HARMLESS_COMMANDS: &[&str] = &["ulimit", "echo", "printf", "true", ":", "sleep"];

/// How `ray start` of `ray` reads `--name`; `None` when it has no such option.
pub fn option(name: &str, ray: &'static VersionFacts) -> Option<Arity> {
    ray.option(name).map(|(_, arity)| arity)
}

/// Whether a `ray start` option sets a port a Ray process listens on.
pub fn is_port_option(name: &str) -> bool {
    name == "port"
        || name.ends_with("-port")
        || name.ends_with("-ports")
        || name == "worker-port-list"
}

/// Why raygate cannot say which `ray start` a container runs. Each names what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String, pub Cause);

/// What a refusal stems from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A command, value or option raygate cannot follow as KubeRay, bash and Ray would.
    Unfollowable,
    /// A resource quantity that is none: the CRD's schema refuses it before KubeRay sees it,
    /// and `resources/invalid-quantity` reports it.
    InvalidQuantity,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn refuse<T>(message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(message.into(), Cause::Unfollowable))
}

/// The command a Ray container runs, as the KubeRay operator builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The container's effective command and args.
    pub argv: Vec<String>,
    /// The value of `KUBERAY_GEN_RAY_START_CMD` in the container.
    pub generated: String,
    /// Whether the user's own command runs (it holds `ray start`, or the overwrite
    /// annotation is set) instead of KubeRay's generated one.
    pub own_command: bool,
}

impl Launch {
    /// Whether `start` is KubeRay's generated command, word for word (a script that runs
    /// `$KUBERAY_GEN_RAY_START_CMD` and nothing after it): its options are `rayStartParams`.
    pub fn runs_generated(&self, start: &EffectiveStart) -> bool {
        let mut generated = split_expansion(&self.generated).unwrap_or_default();
        strip_ray_start(&mut generated).is_some() && generated == start.words
    }
}

/// One value of an effective option: the text click converts, or a flag's count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionValue {
    Text(String),
    Flag,
    Count(u32),
}

impl OptionValue {
    pub fn text(&self) -> Option<&str> {
        match self {
            OptionValue::Text(t) => Some(t),
            _ => None,
        }
    }

    /// As the differential test prints it.
    pub fn shown(&self) -> String {
        match self {
            OptionValue::Text(t) => t.clone(),
            OptionValue::Flag => "true".to_owned(),
            OptionValue::Count(n) => n.to_string(),
        }
    }
}

/// The one `ray start` a container runs: its words after `start` and the options they set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EffectiveStart {
    pub words: Vec<String>,
    pub options: BTreeMap<&'static str, OptionValue>,
}

impl EffectiveStart {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.options.get(name).and_then(OptionValue::text)
    }

    /// An integer option's value, as click reads a plain decimal.
    pub fn port(&self, name: &str) -> Option<u32> {
        self.get(name).and_then(|v| v.parse().ok())
    }
}

/// A `rayStartParams` value as KubeRay renders it: strings as written, numbers and booleans
/// (which the CRD would reject) as their text.
pub fn param_value(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The `--key=value` words KubeRay v1.5.0 renders for `params` (`convertParamMap`): keys
/// sorted, `"true"` (any case) a bare flag, `"false"` dropped, except for the options that take
/// a boolean value.
pub fn render_params(params: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(params.iter().map(|(k, v)| k.len() + v.len() + 5).sum());
    for (key, value) in params {
        let is_true = value.eq_ignore_ascii_case("true");
        if (is_true || value.eq_ignore_ascii_case("false"))
            && !KEEPS_BOOLEAN_TEXT.contains(&key.as_str())
        {
            if is_true {
                for part in [" --", key, " "] {
                    out.push_str(part);
                }
            }
        } else {
            for part in [" --", key, "=", value, " "] {
                out.push_str(part);
            }
        }
    }
    out
}

/// What KubeRay reads from outside a group when it builds the group's `ray start`.
#[derive(Debug, Clone, Copy)]
pub struct ClusterContext<'a> {
    /// The RayCluster's name (KubeRay names a RayJob's or RayService's cluster
    /// `<name>-<5 random characters>`, which no admission can know).
    pub name: &'a str,
    pub namespace: &'a str,
    /// The head group's spec (`headGroupSpec`): its `port` param and `headService` name make a
    /// worker's `--address`.
    pub head: Option<&'a Value>,
    /// `enableInTreeAutoscaling: true`.
    pub autoscaling: bool,
}

impl<'a> ClusterContext<'a> {
    /// The context of a cluster spec, its namespace read from the object that holds it
    /// (`default` when it has none).
    pub fn of(cluster: &ClusterSpec<'a>) -> ClusterContext<'a> {
        ClusterContext {
            name: cluster.name,
            namespace: cluster
                .root
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default"),
            head: cluster.spec.get("headGroupSpec"),
            autoscaling: cluster.autoscaling(),
        }
    }

    /// `utils.GenerateFQDNServiceName`: the head Service's DNS name, which a worker's generated
    /// `--address` names. (The operator's `CLUSTER_DOMAIN` is taken to be the default.)
    pub fn head_fqdn(&self) -> String {
        let service = self
            .head
            .and_then(|h| h.pointer("/headService/metadata/name"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map_or_else(|| format!("{}-head-svc", self.name), str::to_owned);
        format!("{service}.{}.svc.cluster.local", self.namespace)
    }

    /// `common.GetHeadPort`: the head's `port` param as written, else 6379.
    pub fn head_port(&self) -> String {
        self.head
            .and_then(|h| h.get("rayStartParams"))
            .and_then(|p| p.get("port"))
            .and_then(param_value)
            .unwrap_or_else(|| "6379".to_owned())
    }
}

/// The params KubeRay v1.5.0 passes to a group's `ray start` (`DefaultHeadPodTemplate` /
/// `DefaultWorkerPodTemplate`, then `generateRayStartCommand`), in its order:
/// 1. the group's `rayStartParams`;
/// 2. the group-level `resources` (overriding `num-cpus`, `memory`, `num-gpus`, `resources`)
///    and `labels` (overriding `labels`);
/// 3. `setMissingRayStartParams`: a worker's `--address` (the head Service's FQDN and the
///    head's port), the head's `--dashboard-host=0.0.0.0`, `--metrics-export-port=8080`,
///    `--dashboard-agent-listen-port=52365` when missing, and `--block` always;
/// 4. the autoscaler's `--no-monitor` on the head, always;
/// 5. from the Ray container's resources, when missing: `--num-cpus` (CPU limit, else request),
///    `--memory` (memory limit), `--num-gpus` (a `*gpu` or MIG limit) and the first TPU or
///    Neuron core limit merged into `--resources`.
///
/// Quantities are read as `resource.Quantity` reads them (`Value()` rounds up, away from zero;
/// custom resources are `AsApproximateFloat64()` written by `encoding/json`).
pub fn kuberay_params(
    group: &NodeGroup<'_>,
    cluster: &ClusterContext<'_>,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut params = BTreeMap::new();
    if let Some(map) = group.ray_start_params() {
        for (key, value) in map {
            let Some(text) = param_value(value) else {
                return refuse(format!(
                    "rayStartParams.{key} is {value}, not a string; KubeRay takes strings only"
                ));
            };
            params.insert(key.clone(), text);
        }
    }
    group_resources(group, &mut params)?;
    if let Some(labels) = string_map(group, "labels")?
        && !labels.is_empty()
    {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        params.insert("labels".to_owned(), labels.join(","));
    }
    match group.role {
        Role::Worker => {
            if !params.contains_key("address") {
                let address = format!("{}:{}", cluster.head_fqdn(), cluster.head_port());
                params.insert("address".to_owned(), address);
            }
        }
        Role::Head => {
            params
                .entry("dashboard-host".to_owned())
                .or_insert_with(|| "0.0.0.0".to_owned());
        }
    }
    params
        .entry("metrics-export-port".to_owned())
        .or_insert_with(|| "8080".to_owned());
    params.insert("block".to_owned(), "true".to_owned());
    params
        .entry("dashboard-agent-listen-port".to_owned())
        .or_insert_with(|| "52365".to_owned());
    if group.role == Role::Head && cluster.autoscaling {
        params.insert("no-monitor".to_owned(), "true".to_owned());
    }
    container_resources(group, &mut params)?;
    Ok(params)
}

/// A group-level map of strings (`resources`, `labels`), sorted by key as Go sorts strings.
fn string_map<'a>(
    group: &NodeGroup<'a>,
    field: &str,
) -> Result<Option<BTreeMap<&'a str, &'a str>>, Refusal> {
    let Some(value) = group.spec.get(field).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(map) = value.as_object() else {
        return refuse(format!(
            "the {}'s {field} is {value}, not a map of strings; the CRD takes strings only",
            group.describe()
        ));
    };
    let mut out = BTreeMap::new();
    for (key, value) in map {
        let Some(text) = value.as_str() else {
            return refuse(format!(
                "the {}'s {field}.{key} is {value}, not a string; the CRD takes strings only",
                group.describe()
            ));
        };
        out.insert(key.as_str(), text);
    }
    Ok(Some(out))
}

/// `updateRayStartParamsResources`: the group-level `resources` override the params.
fn group_resources(
    group: &NodeGroup<'_>,
    params: &mut BTreeMap<String, String>,
) -> Result<(), Refusal> {
    let Some(resources) = string_map(group, "resources")? else {
        return Ok(());
    };
    // KubeRay walks a Go map, in random order: two names for one param must agree.
    let mut set: BTreeMap<&str, (&str, String)> = BTreeMap::new();
    let mut custom = BTreeMap::new();
    for (name, text) in resources {
        let quantity = match GoQuantity::parse(text) {
            Ok(q) => q,
            Err(QuantityError::Invalid) => continue, // KubeRay logs it and skips it.
            Err(QuantityError::Unmodelled) => {
                return refuse(format!(
                    "the {}'s resources.{name} is {text:?}, a quantity beyond what raygate reads exactly; write it plainly (e.g. 4, 500m or 16Gi)",
                    group.describe()
                ));
            }
        };
        // `strings.ToLower` maps rune by rune (U+0130 İ to a plain i).
        let lower: String = name
            .chars()
            .flat_map(|c| match c {
                '\u{130}' => 'i'.to_lowercase(),
                c => c.to_lowercase(),
            })
            .collect();
        let param = match lower.as_str() {
            "cpu" => "num-cpus",
            "memory" => "memory",
            gpu if is_gpu_resource_key(gpu) => "num-gpus",
            _ => {
                custom.insert(name.to_owned(), quantity.approximate_f64());
                continue;
            }
        };
        let value = quantity.value().to_string();
        if let Some((other, earlier)) = set.get(param)
            && *earlier != value
        {
            return refuse(format!(
                "the {}'s resources name --{param} twice ({other}: {earlier}, {name}: {value}), and KubeRay takes whichever it reads last, in random order; keep one",
                group.describe()
            ));
        }
        set.insert(param, (name, value));
    }
    for (param, (_, value)) in set {
        params.insert(param.to_owned(), value);
    }
    // A value `encoding/json` cannot write (an infinity) makes KubeRay log and skip the map.
    if !custom.is_empty()
        && let Some(json) = go_json_float_map(&custom)
    {
        params.insert("resources".to_owned(), format!("'{json}'"));
    }
    Ok(())
}

/// KubeRay's names for the accelerators it turns into custom Ray resources
/// (`customAcceleratorToRayResourceMap`).
const CUSTOM_ACCELERATORS: &[(&str, &str)] = &[
    ("aws.amazon.com/neuroncore", "neuron_cores"),
    ("google.com/tpu", "TPU"),
];

/// `utils.IsGPUResourceKey`: a name ending in `gpu`, or an NVIDIA MIG slice
/// (`nvidia.com/mig-<n>g.<n>gb` at the end).
fn is_gpu_resource_key(key: &str) -> bool {
    if key.ends_with("gpu") {
        return true;
    }
    // `nvidia\.com/mig-\d+g\.\d+gb$`, unanchored at the start.
    let Some(body) = key.strip_suffix("gb") else {
        return false;
    };
    let Some((head, memory)) = body.rsplit_once('.') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(memory) {
        return false;
    }
    let Some(head) = head.strip_suffix('g') else {
        return false;
    };
    let slices = head.trim_end_matches(|c: char| c.is_ascii_digit());
    slices.len() < head.len() && slices.ends_with("nvidia.com/mig-")
}

/// The Ray container's `resources.<field>`, each quantity as KubeRay decodes it.
fn container_quantities<'a>(
    group: &NodeGroup<'a>,
    container: &'a Value,
    field: &str,
) -> Result<BTreeMap<&'a str, GoQuantity>, Refusal> {
    let mut out = BTreeMap::new();
    let Some(map) = container.get("resources").and_then(|r| r.get(field)) else {
        return Ok(out);
    };
    let Some(map) = map.as_object() else {
        return Ok(out);
    };
    for (name, value) in map {
        // `Quantity.UnmarshalJSON`: null is zero, a string or number is parsed, trimmed.
        let text = match value {
            Value::Null => {
                out.insert(name.as_str(), GoQuantity::ZERO);
                continue;
            }
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        match GoQuantity::parse(&text) {
            Ok(q) => {
                out.insert(name.as_str(), q);
            }
            Err(why) => {
                let what = match why {
                    QuantityError::Invalid => "not a Kubernetes quantity",
                    QuantityError::Unmodelled => "a quantity beyond what raygate reads exactly",
                };
                let cause = match why {
                    QuantityError::Invalid => Cause::InvalidQuantity,
                    QuantityError::Unmodelled => Cause::Unfollowable,
                };
                return Err(Refusal(
                    format!(
                        "the {}'s Ray container resources.{field}.{name} is {value}, {what}; write it plainly (e.g. 4, 500m or 16Gi)",
                        group.describe()
                    ),
                    cause,
                ));
            }
        }
    }
    Ok(out)
}

/// `generateRayStartCommand` and `addWellKnownAcceleratorResources`: what the Ray container's
/// resources add to the params.
fn container_resources(
    group: &NodeGroup<'_>,
    params: &mut BTreeMap<String, String>,
) -> Result<(), Refusal> {
    let Some(container) = group
        .pod_spec()
        .and_then(|pod| pod.ray_container())
        .map(|c| c.value)
    else {
        return Ok(());
    };
    let limits = container_quantities(group, container, "limits")?;
    let requests = container_quantities(group, container, "requests")?;
    let nonzero = |map: &BTreeMap<&str, GoQuantity>, key: &str| {
        map.get(key).copied().filter(|q| !q.is_zero())
    };
    if !params.contains_key("num-cpus")
        && let Some(cpu) = nonzero(&limits, "cpu").or_else(|| nonzero(&requests, "cpu"))
    {
        params.insert("num-cpus".to_owned(), cpu.value().to_string());
    }
    if !params.contains_key("memory")
        && let Some(memory) = nonzero(&limits, "memory")
    {
        params.insert("memory".to_owned(), memory.value().to_string());
    }
    if limits.is_empty() {
        return Ok(());
    }
    // `getResourcesMap`: an error (the params' resources are not a JSON map of numbers) makes
    // KubeRay log it and add nothing, not even `--num-gpus`.
    let mut resources = match go_resources_map(params.get("resources").map(String::as_str)) {
        ResourcesMap::Map(map) => Some(map),
        ResourcesMap::Nil => None,
        ResourcesMap::Error => return Ok(()),
    };
    let mut accelerator_added = resources.as_ref().is_some_and(|map| {
        CUSTOM_ACCELERATORS
            .iter()
            .any(|(_, ray)| map.contains_key(*ray))
    });
    // `limits` is sorted as Go's `sort.Strings` sorts (by bytes).
    for (key, quantity) in &limits {
        if !params.contains_key("num-gpus") && is_gpu_resource_key(key) && !quantity.is_zero() {
            params.insert("num-gpus".to_owned(), quantity.value().to_string());
        }
        if accelerator_added {
            continue;
        }
        let Some((_, ray_name)) = CUSTOM_ACCELERATORS.iter().find(|(k, _)| k == key) else {
            continue;
        };
        if quantity.is_zero() {
            continue;
        }
        accelerator_added = true;
        let Some(map) = resources.as_mut() else {
            return refuse(format!(
                "rayStartParams.resources is JSON null, and KubeRay's operator panics adding {key} to it (no Pod is made); remove it or write a map"
            ));
        };
        if map.contains_key(*ray_name) {
            continue;
        }
        map.insert((*ray_name).to_owned(), quantity.approximate_f64());
        // A value `encoding/json` cannot write makes KubeRay stop here.
        let Some(json) = go_json_float_map(map) else {
            return Ok(());
        };
        params.insert("resources".to_owned(), format!("'{json}'"));
    }
    Ok(())
}

/// The params' `resources` as `getResourcesMap` reads them into a `map[string]float64`.
enum ResourcesMap {
    Map(BTreeMap<String, f64>),
    /// JSON `null`: a nil map, which KubeRay reads but panics writing to.
    Nil,
    /// Go's `json.Unmarshal` reports an error.
    Error,
}

/// `getResourcesMap`: the params' `resources`, trimmed of quotes, backticks and spaces, read
/// as Go's `json.Unmarshal` reads it.
fn go_resources_map(text: Option<&str>) -> ResourcesMap {
    let Some(text) = text else {
        return ResourcesMap::Map(BTreeMap::new());
    };
    let text = text.trim_matches(|c| matches!(c, '\'' | '"' | '`' | ' '));
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Null) => return ResourcesMap::Nil,
        Ok(Value::Object(_)) => {}
        _ => return ResourcesMap::Error,
    }
    // Duplicate keys: the last wins, in Go as in a BTreeMap.
    let Ok(raw) = serde_json::from_str::<BTreeMap<String, Box<serde_json::value::RawValue>>>(text)
    else {
        return ResourcesMap::Error;
    };
    let mut map = BTreeMap::new();
    for (key, value) in raw {
        let number = match value.get() {
            // Null leaves the element zero.
            "null" => Some(0.0),
            // A JSON number (a string, bool or object is Go's UnmarshalTypeError), read as
            // `strconv.ParseFloat` reads it: correctly rounded, out of range an error.
            n if n.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
                n.parse::<f64>().ok().filter(|f| f.is_finite())
            }
            _ => None,
        };
        let Some(number) = number else {
            return ResourcesMap::Error;
        };
        map.insert(key, number);
    }
    ResourcesMap::Map(map)
}

/// `encoding/json`'s text for a `map[string]float64`: keys sorted, Go's escapes, Go's
/// numbers; `None` for an infinity or NaN, which Go refuses to write.
fn go_json_float_map(map: &BTreeMap<String, f64>) -> Option<String> {
    let mut out = String::from("{");
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&go_json_string(key));
        out.push(':');
        out.push_str(&go_json_float(*value)?);
    }
    out.push('}');
    Some(out)
}

/// `encoding/json`'s string, HTML-escaped as `json.Marshal` does.
fn go_json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&') => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `encoding/json`'s float64: the shortest text that reads back, plain between 1e-6 and
/// 1e21, else Go's exponent form (`1e+21`, `1e-7`).
fn go_json_float(value: f64) -> Option<String> {
    if !value.is_finite() {
        return None;
    }
    let abs = value.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let text = format!("{value:e}");
        let (mantissa, exponent) = text.split_once('e')?;
        let exponent: i32 = exponent.parse().ok()?;
        let sign = if exponent < 0 { '-' } else { '+' };
        let digits = exponent.unsigned_abs();
        // Go writes at least two digits, then trims `e-0X` to `e-X`.
        return Some(if exponent < 0 && digits < 10 {
            format!("{mantissa}e-{digits}")
        } else {
            format!("{mantissa}e{sign}{digits:02}")
        });
    }
    Some(format!("{value}"))
}

/// A Kubernetes quantity as `resource.ParseQuantity` (k8s.io/apimachinery v0.34) holds it, so
/// that `Value()` and `AsApproximateFloat64()` give what KubeRay gets, overflows included.
#[derive(Debug, Clone, Copy, PartialEq)]
enum GoQuantity {
    /// `int64Amount`: `value × 10^scale`.
    Int { value: i64, scale: i32 },
    /// `inf.Dec`: `unscaled × 10^-scale` (modelled while `unscaled` fits an i128).
    Dec { unscaled: i128, scale: i32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuantityError {
    /// `ParseQuantity` returns an error.
    Invalid,
    /// Go would compute it with big numbers (or not finish); raygate does not follow.
    Unmodelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Decimal,
    Binary,
}

/// A quantity's suffix: its base, exponent and format.
#[derive(Debug, Clone, Copy)]
struct Suffix {
    base: u32,
    exponent: i32,
    format: Format,
}

impl Suffix {
    fn parse(suffix: &str) -> Result<Suffix, QuantityError> {
        let (base, exponent, format) = match suffix {
            "" => (10, 0, Format::Decimal),
            "n" => (10, -9, Format::Decimal),
            "u" => (10, -6, Format::Decimal),
            "m" => (10, -3, Format::Decimal),
            "k" => (10, 3, Format::Decimal),
            "M" => (10, 6, Format::Decimal),
            "G" => (10, 9, Format::Decimal),
            "T" => (10, 12, Format::Decimal),
            "P" => (10, 15, Format::Decimal),
            "E" => (10, 18, Format::Decimal),
            "Ki" => (2, 10, Format::Binary),
            "Mi" => (2, 20, Format::Binary),
            "Gi" => (2, 30, Format::Binary),
            "Ti" => (2, 40, Format::Binary),
            "Pi" => (2, 50, Format::Binary),
            "Ei" => (2, 60, Format::Binary),
            s if s.len() > 1 && s.starts_with(['e', 'E']) => {
                let parsed: i64 = s[1..].parse().map_err(|_| QuantityError::Invalid)?;
                (10, parsed as i32, Format::Decimal)
            }
            _ => return Err(QuantityError::Invalid),
        };
        Ok(Suffix {
            base,
            exponent,
            format,
        })
    }
}

/// Rescales a non-zero `unscaled * 10^-scale` to nanos, rounding up; BinarySI caps at
/// MaxInt64.
fn round_to_nanos(
    mut unscaled: i128,
    scale: i64,
    format: Format,
) -> Result<(i128, i64), QuantityError> {
    if scale < 9 {
        let up = u32::try_from(9 - scale).map_err(|_| QuantityError::Unmodelled)?;
        unscaled = 10i128
            .checked_pow(up)
            .and_then(|p| unscaled.checked_mul(p))
            .ok_or(QuantityError::Unmodelled)?;
    } else if scale > 9 {
        unscaled = match 10i128.checked_pow((scale - 9).min(100) as u32) {
            Some(d) => unscaled / d + i128::from(unscaled % d != 0),
            None => 1,
        };
    }
    if format == Format::Binary && unscaled > i128::from(i64::MAX) * 1_000_000_000 {
        return Ok((i128::from(i64::MAX), 0));
    }
    Ok((unscaled, 9))
}

impl GoQuantity {
    const ZERO: GoQuantity = GoQuantity::Int { value: 0, scale: 0 };

    /// `resource.ParseQuantity`, step by step.
    fn parse(text: &str) -> Result<GoQuantity, QuantityError> {
        use QuantityError::Invalid;
        if text.is_empty() {
            return Err(Invalid);
        }
        if text == "0" {
            return Ok(GoQuantity::ZERO);
        }
        let (positive, value, num, denom, suffix) = quantity_string(text).ok_or(Invalid)?;
        let suffix = Suffix::parse(suffix)?;
        if let Some(fast) = GoQuantity::parse_int64(positive, num, denom, suffix)? {
            return Ok(fast);
        }
        GoQuantity::parse_dec(positive, value, suffix)
    }

    /// The int64 path, when the digits fit the suffix's precision.
    fn parse_int64(
        positive: bool,
        num: &str,
        denom: &str,
        suffix: Suffix,
    ) -> Result<Option<GoQuantity>, QuantityError> {
        let digits = (num.len() + denom.len()) as i32;
        let exponent = suffix.exponent;
        let (mut scale, mantissa, precision) = match suffix.format {
            Format::Decimal => (exponent, 1i64, 18 - digits),
            Format::Binary if denom.is_empty() => (
                0,
                1i64 << exponent,
                15 - num.len() as i32 - exponent * 3 / 10 - 1,
            ),
            Format::Binary => (0, 1, -1),
        };
        if precision < 0 {
            return Ok(None);
        }
        scale -= denom.len() as i32;
        if scale < -9 {
            return Ok(None);
        }
        let shifted: i64 = format!("{num}{denom}")
            .parse()
            .map_err(|_| QuantityError::Invalid)?;
        Ok(shifted.checked_mul(mantissa).map(|result| {
            let value = if positive { result } else { -result };
            GoQuantity::Int { value, scale }
        }))
    }

    /// The `inf.Dec` path: exact, then rounded up to nanos, BinarySI capped at MaxInt64.
    fn parse_dec(positive: bool, value: &str, suffix: Suffix) -> Result<GoQuantity, QuantityError> {
        use QuantityError::{Invalid, Unmodelled};
        let unsigned = value.trim_start_matches(['+', '-']);
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(Invalid);
        }
        let mut unscaled: i128 = format!("{whole}{fraction}")
            .parse()
            .map_err(|_| Unmodelled)?;
        let mut scale = fraction.len() as i64;
        if suffix.base == 10 {
            scale -= i64::from(suffix.exponent);
        } else {
            unscaled = unscaled
                .checked_mul(1i128 << suffix.exponent)
                .ok_or(Unmodelled)?;
        }
        // Go rescales by 10^|scale - 9| with big numbers: far out, it does not finish.
        if unscaled != 0 && (scale - 9).abs() > 10_000 {
            return Err(Unmodelled);
        }
        if unscaled != 0 {
            (unscaled, scale) = round_to_nanos(unscaled, scale, suffix.format)?;
        }
        let scale = i32::try_from(scale).map_err(|_| Unmodelled)?;
        let unscaled = if positive { unscaled } else { -unscaled };
        Ok(GoQuantity::Dec { unscaled, scale })
    }

    fn is_zero(&self) -> bool {
        match *self {
            GoQuantity::Int { value, .. } => value == 0,
            GoQuantity::Dec { unscaled, .. } => unscaled == 0,
        }
    }

    /// `Quantity.Value()`: rounded up, away from zero, with Go's overflows.
    fn value(&self) -> i64 {
        match *self {
            GoQuantity::Int { value, scale } if scale < 0 => {
                // `negativeScaleInt64`
                let (mut v, mut fraction) = (value, false);
                for _ in 0..-scale {
                    fraction |= v % 10 != 0;
                    v /= 10;
                    if v == 0 {
                        break;
                    }
                }
                match (fraction, v == 0) {
                    (false, _) => v,
                    (true, true) => value.signum(),
                    (true, false) => v + value.signum(),
                }
            }
            GoQuantity::Int { value, scale } => match scale {
                // `positiveScaleInt64`: 10, 100, 1000, 10^6 and 10^9 wrap; other scales give 0.
                0 => value,
                1 | 2 | 3 | 6 | 9 => {
                    if value == i64::MIN {
                        0
                    } else {
                        value.wrapping_mul(10i64.pow(scale as u32))
                    }
                }
                _ => {
                    let mut v = value;
                    for _ in 0..scale {
                        match v.checked_mul(10) {
                            Some(next) => v = next,
                            None => return 0,
                        }
                    }
                    v
                }
            },
            // `scaledValue(unscaled, scale, 0)`
            GoQuantity::Dec { unscaled, scale } => {
                if scale <= 0 {
                    // Only zero keeps a scale below 9 (or MaxInt64, at 0).
                    return unscaled as i64;
                }
                if unscaled < i128::from(i64::MAX) && scale < 19 {
                    let (u, d) = (unscaled as i64, 10i64.pow(scale as u32));
                    return u / d + i64::from(u % d != 0);
                }
                let d = 10i128.pow(scale.min(38) as u32);
                let (q, r) = (unscaled.div_euclid(d), unscaled.rem_euclid(d));
                (q as i64).wrapping_add(i64::from(r != 0))
            }
        }
    }

    /// `Quantity.AsApproximateFloat64()`.
    fn approximate_f64(&self) -> f64 {
        let (base, exponent) = match *self {
            GoQuantity::Int { value, scale } => (value as f64, scale),
            GoQuantity::Dec { unscaled, scale } => (unscaled as f64, -scale),
        };
        if exponent == 0 {
            base
        } else {
            base * go_pow10(exponent)
        }
    }
}

/// `parseQuantityString`: sign, value (the number as written), numerator without leading
/// zeros, denominator, suffix; `None` for `ErrFormatWrong`.
fn quantity_string(text: &str) -> Option<(bool, &str, &str, &str, &str)> {
    let b = text.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos += 1;
        }
        Some(b'+') => pos += 1,
        _ => {}
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return Some((positive, "0", "0", "", ""));
    }
    let start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos >= end {
        return Some((positive, text, &text[start..], "", ""));
    }
    let num = if pos == start { "0" } else { &text[start..pos] };
    let mut denom = "";
    if b[pos] == b'.' {
        pos += 1;
        let from = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos >= end {
            return Some((positive, text, num, &text[from..], ""));
        }
        denom = &text[from..pos];
    }
    let value = &text[..pos];
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && matches!(b[pos], b'-' | b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    (pos >= end).then(|| (positive, value, num, denom, &text[suffix_start..]))
}

/// Go's `math.Pow10`, table for table (its products differ from `powi` in the last bit).
fn go_pow10(n: i32) -> f64 {
    const TAB: [f64; 32] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27, 1e28, 1e29, 1e30, 1e31,
    ];
    const POS32: [f64; 10] = [
        1e0, 1e32, 1e64, 1e96, 1e128, 1e160, 1e192, 1e224, 1e256, 1e288,
    ];
    const NEG32: [f64; 11] = [
        1e-0, 1e-32, 1e-64, 1e-96, 1e-128, 1e-160, 1e-192, 1e-224, 1e-256, 1e-288, 1e-320,
    ];
    match n {
        0..=308 => POS32[n as usize / 32] * TAB[n as usize % 32],
        -323..=-1 => NEG32[(-n) as usize / 32] / TAB[(-n) as usize % 32],
        n if n > 0 => f64::INFINITY,
        _ => 0.0,
    }
}

/// The command a group's Ray container runs, built as KubeRay v1.5.0's `BuildPod` does.
pub fn launch(
    group: &NodeGroup<'_>,
    params: &BTreeMap<String, String>,
    overwrite_annotation: bool,
) -> Launch {
    let generated = match group.role {
        Role::Head => format!("ray start --head {}", render_params(params)),
        Role::Worker => format!("ray start {}", render_params(params)),
    };
    let container = group
        .pod_spec()
        .and_then(|pod| pod.ray_container())
        .map(|c| c.value);
    let strings = |field: &str| -> Vec<String> {
        container
            .and_then(|c| c.get(field))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect()
    };
    let (command, args) = (strings("command"), strings("args"));
    // `convertCmdToString`: every item as " item ".
    let mut joined = String::new();
    for item in command.iter().chain(&args) {
        for part in [" ", item, " "] {
            joined.push_str(part);
        }
    }
    if overwrite_annotation || joined.contains("ray start") {
        let argv = command.into_iter().chain(args).collect();
        return Launch {
            argv,
            generated,
            own_command: true,
        };
    }
    let script = format!("ulimit -n 65536; {generated}");
    let script = if joined.is_empty() {
        script
    } else {
        format!("{joined} && {script}")
    };
    Launch {
        argv: vec!["/bin/bash".into(), "-c".into(), "--".into(), script],
        generated,
        own_command: false,
    }
}

/// The script a shell in `argv` runs, or `None` when argv runs a program directly.
pub fn shell_script(argv: &[String]) -> Result<Option<&str>, Refusal> {
    let Some(program) = argv.first() else {
        return refuse(
            "ray.io/overwrite-container-cmd makes KubeRay keep the container's own command, and it has none, so the image's entrypoint runs, which raygate cannot see; set command and args (e.g. `bash -c` with $KUBERAY_GEN_RAY_START_CMD)",
        );
    };
    let base = program.rsplit('/').next().unwrap_or(program);
    if !matches!(base, "bash" | "sh" | "dash") {
        return Ok(None);
    }
    let mut rest = argv[1..].iter();
    for word in rest.by_ref() {
        match word.as_str() {
            "-c" | "-lc" | "-cl" => break,
            "-l" | "--login" | "-e" | "-x" | "-ex" | "-xe" => continue,
            other => {
                return refuse(format!(
                    "{program} is given {other:?} before -c; run `{program} -c` with the script"
                ));
            }
        }
    }
    let mut script = rest.next();
    if script.is_some_and(|s| s == "--") {
        script = rest.next();
    }
    match script {
        Some(script) => Ok(Some(script)),
        None => refuse(format!("{program} -c is given no script")),
    }
}

/// The one `ray start` of a launch and its effective options.
pub fn effective_start(
    launch: &Launch,
    ray: &'static VersionFacts,
) -> Result<EffectiveStart, Refusal> {
    let words = match shell_script(&launch.argv)? {
        Some(script) => {
            let commands = split_script(script, &launch.generated)?;
            the_one_ray_start(commands)?
        }
        None => {
            let mut argv = launch.argv.clone();
            strip_ray_start(&mut argv).ok_or_else(|| {
                Refusal(
                    format!(
                        "the Ray container runs {:?}, not `ray start`, so raygate cannot tell which ports Ray uses; run `ray start` (or $KUBERAY_GEN_RAY_START_CMD) from `bash -c`",
                        launch.argv.first().map_or("", String::as_str)
                    ),
                    Cause::Unfollowable,
                )
            })?;
            argv
        }
    };
    parse_start(words, ray)
}

/// Removes a leading `ray start` (or `/path/to/ray start`); `None` if it is not there.
fn strip_ray_start(words: &mut Vec<String>) -> Option<()> {
    let is_ray = words
        .first()
        .is_some_and(|w| w == "ray" || w.ends_with("/ray"));
    if !is_ray || words.get(1).map(String::as_str) != Some("start") {
        return None;
    }
    words.drain(..2);
    Some(())
}

fn the_one_ray_start(commands: Vec<Vec<String>>) -> Result<Vec<String>, Refusal> {
    let mut found: Option<Vec<String>> = None;
    for mut words in commands {
        if words.first().is_some_and(|w| w == "exec") {
            words.remove(0);
        }
        let Some(first) = words.first() else {
            continue;
        };
        let base = first.rsplit('/').next().unwrap_or(first);
        if base == "ray" {
            let sub = words.get(1).cloned().unwrap_or_default();
            if sub != "start" {
                return refuse(format!(
                    "the script runs `ray {sub}`; only one `ray start` may run in a Ray container"
                ));
            }
            if found.is_some() {
                return refuse(
                    "the script runs `ray start` more than once, so the ports of the last one are not the first one's; keep one `ray start`",
                );
            }
            strip_ray_start(&mut words);
            found = Some(words);
            continue;
        }
        if !HARMLESS_COMMANDS.contains(&base) {
            return refuse(format!(
                "the script runs {first:?}, which raygate cannot judge (it may start Ray or a listener off the plan); keep to {} and one `ray start`",
                HARMLESS_COMMANDS.join(", ")
            ));
        }
    }
    found.ok_or_else(|| {
        Refusal(
            "the script never runs `ray start` (as bash reads it), so raygate cannot tell which ports Ray uses; run `ray start` or $KUBERAY_GEN_RAY_START_CMD"
                .to_owned(),
            Cause::Unfollowable,
        )
    })
}

/// Splits a script into simple commands of words, as bash would after expansion, for the
/// subset raygate can follow exactly: words, single and double quotes, backslashes, comments,
/// `;`, `&&` and newlines, `$KUBERAY_GEN_RAY_START_CMD` (`generated`) and KubeRay's own
/// `${RAY_START_ULIMIT_OPEN_FILES:-65536}`. Anything else is refused.
pub fn split_script(script: &str, generated: &str) -> Result<Vec<Vec<String>>, Refusal> {
    let mut lexer = Lexer::new(script, generated);
    let mut commands = vec![Vec::new()];
    while let Some(token) = lexer.next_token()? {
        match token {
            // `;` or `&&` with no command before it is a syntax error: bash runs nothing.
            Token::Separator(operator)
                if operator != "\n" && commands.last().is_some_and(Vec::is_empty) =>
            {
                return refuse(format!(
                    "the script has `{operator}` with no command before it, a syntax error, so bash runs nothing (an empty command or args item does this)"
                ));
            }
            Token::Separator(_) => commands.push(Vec::new()),
            Token::Words(words) => commands.last_mut().map_or((), |c| c.extend(words)),
        }
    }
    for command in &commands {
        if let Some(first) = command.first()
            && let Some((name, _)) = first.split_once('=')
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return refuse(format!(
                "the script sets {name} before a command, which can change how Ray starts; set environment variables under env"
            ));
        }
    }
    Ok(commands.into_iter().filter(|c| !c.is_empty()).collect())
}

enum Token {
    /// `;`, `&&` or a newline.
    Separator(&'static str),
    /// One shell word, or the words an unquoted expansion splits into.
    Words(Vec<String>),
}

/// Reads a script byte by byte: every character bash treats specially is ASCII, and the bytes
/// of any other character are copied through in order, so words stay valid UTF-8.
struct Lexer<'s> {
    text: &'s str,
    at: usize,
    generated: &'s str,
}

/// Characters bash treats specially outside quotes that this subset does not follow.
fn unsupported(c: u8) -> Option<&'static str> {
    Some(match c {
        b'|' => "a pipe or `||`",
        b'&' => "a background job",
        b'(' | b')' => "a subshell",
        b'<' | b'>' => "a redirection",
        b'`' => "command substitution",
        b'*' | b'?' | b'[' => "a glob",
        b'{' | b'}' => "brace expansion",
        b'~' => "tilde expansion",
        b'!' => "history or negation",
        _ => return None,
    })
}

/// Bytes that are always literal in an unquoted word: copied in runs.
fn is_plain(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_' | b'.' | b',' | b':' | b'/' | b'=' | b'@' | b'+' | b'%'
        )
}

impl<'s> Lexer<'s> {
    fn new(text: &'s str, generated: &'s str) -> Lexer<'s> {
        Lexer {
            text,
            at: 0,
            generated,
        }
    }

    fn peek(&self, offset: usize) -> Option<u8> {
        self.text.as_bytes().get(self.at + offset).copied()
    }

    fn at_end(&self) -> bool {
        self.at >= self.text.len()
    }

    fn next_token(&mut self) -> Result<Option<Token>, Refusal> {
        // Blanks, comments and line continuations between words.
        loop {
            match self.peek(0) {
                Some(b' ' | b'\t') => self.at += 1,
                Some(b'\\') if self.peek(1) == Some(b'\n') => self.at += 2,
                Some(b'#') => {
                    while self.peek(0).is_some_and(|c| c != b'\n') {
                        self.at += 1;
                    }
                }
                _ => break,
            }
        }
        let Some(c) = self.peek(0) else {
            return Ok(None);
        };
        match c {
            b';' | b'\n' => {
                self.at += 1;
                if c == b';' && self.peek(0) == Some(b';') {
                    return refuse("the script has `;;`, which bash reads only in `case`");
                }
                Ok(Some(Token::Separator(if c == b';' { ";" } else { "\n" })))
            }
            b'&' if self.peek(1) == Some(b'&') => {
                self.at += 2;
                Ok(Some(Token::Separator("&&")))
            }
            _ => self.word().map(Some),
        }
    }

    /// One word up to an unquoted blank or operator.
    fn word(&mut self) -> Result<Token, Refusal> {
        let bytes = self.text.as_bytes();
        let mut text: Vec<u8> = Vec::new();
        let mut quoted = false;
        // An unquoted `$KUBERAY_GEN_RAY_START_CMD` alone in its word is split into words.
        let mut split: Option<Vec<String>> = None;
        while let Some(c) = self.peek(0) {
            match c {
                b' ' | b'\t' | b'\n' | b';' => break,
                b'&' if self.peek(1) == Some(b'&') => break,
                b'\\' => {
                    match self.peek(1) {
                        Some(b'\n') => {}
                        Some(next) => {
                            // A character of several bytes: its other bytes are plain copies.
                            text.push(next);
                            quoted = true;
                        }
                        None => return refuse("the script ends with a lone backslash"),
                    }
                    self.at += 2;
                }
                b'\'' => {
                    self.at += 1;
                    let Some(len) = bytes[self.at..].iter().position(|&b| b == b'\'') else {
                        return refuse("the script has an unclosed single quote");
                    };
                    text.extend_from_slice(&bytes[self.at..self.at + len]);
                    self.at += len + 1;
                    quoted = true;
                }
                b'"' => {
                    self.at += 1;
                    self.double_quoted(&mut text)?;
                    quoted = true;
                }
                b'$' => {
                    let (value, end) = self.expansion(self.at, false)?;
                    self.at = end;
                    if text.is_empty() && !quoted && self.at_word_end() {
                        split = Some(split_expansion(value)?);
                    } else {
                        return refuse(
                            "the script joins a variable with other text in one word; raygate follows $KUBERAY_GEN_RAY_START_CMD only as a word of its own",
                        );
                    }
                }
                b'#' if text.is_empty() && !quoted => break,
                _ => {
                    if let Some(what) = unsupported(c) {
                        return refuse(format!(
                            "the script uses {:?} ({what}), which raygate does not follow; write plain words",
                            c as char
                        ));
                    }
                    let run = bytes[self.at..]
                        .iter()
                        .position(|&b| !(is_plain(b) || b >= 0x80))
                        .unwrap_or(bytes.len() - self.at)
                        .max(1);
                    text.extend_from_slice(&bytes[self.at..self.at + run]);
                    self.at += run;
                }
            }
        }
        match split {
            Some(words) => Ok(Token::Words(words)),
            None => Ok(Token::Words(vec![utf8(text)?])),
        }
    }

    fn at_word_end(&self) -> bool {
        self.peek(0)
            .is_none_or(|c| matches!(c, b' ' | b'\t' | b'\n' | b';'))
            || (self.peek(0) == Some(b'&') && self.peek(1) == Some(b'&'))
    }

    fn double_quoted(&mut self, text: &mut Vec<u8>) -> Result<(), Refusal> {
        loop {
            match self.peek(0) {
                None => return refuse("the script has an unclosed double quote"),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    match self.peek(1) {
                        Some(c @ (b'$' | b'`' | b'"' | b'\\')) => text.push(c),
                        Some(b'\n') => {}
                        Some(c) => {
                            text.push(b'\\');
                            text.push(c);
                        }
                        None => return refuse("the script has an unclosed double quote"),
                    }
                    self.at += 2;
                }
                Some(b'$') => match self.quoted_variable() {
                    // Inside double quotes a variable stays one word whatever its value: it
                    // is kept as written (`$NAME`), which no number or JSON option accepts.
                    Some((name, end)) => {
                        text.push(b'$');
                        text.extend_from_slice(name.as_bytes());
                        self.at = end;
                    }
                    None => {
                        let (value, end) = self.expansion(self.at, true)?;
                        text.extend_from_slice(value.as_bytes());
                        self.at = end;
                    }
                },
                Some(b'`') => {
                    return refuse(
                        "the script uses command substitution, which raygate does not follow",
                    );
                }
                Some(c) => {
                    text.push(c);
                    self.at += 1;
                }
            }
        }
    }

    /// A plain `$NAME` or `${NAME}` at the cursor (not KubeRay's generated command), and where
    /// it ends.
    fn quoted_variable(&self) -> Option<(&'s str, usize)> {
        let braced = self.peek(1) == Some(b'{');
        let from = self.at + if braced { 2 } else { 1 };
        let rest = self.text.get(from..)?;
        let name = &rest[..rest
            .bytes()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
            .count()];
        if name.is_empty()
            || name.starts_with(|c: char| c.is_ascii_digit())
            || name == GENERATED_CMD_VAR
        {
            return None;
        }
        let mut end = from + name.len();
        if braced {
            if self.text.as_bytes().get(end) != Some(&b'}') {
                return None;
            }
            end += 1;
        }
        Some((name, end))
    }

    /// The value of the expansion at `start` and where it ends. Only KubeRay's two variables
    /// are known; `${RAY_START_ULIMIT_OPEN_FILES:-65536}` stands for its default.
    fn expansion(&self, start: usize, in_quotes: bool) -> Result<(&'s str, usize), Refusal> {
        const ULIMIT_FORM: &str = "${RAY_START_ULIMIT_OPEN_FILES:-65536}";
        const GENERATED_BRACED: &str = "${KUBERAY_GEN_RAY_START_CMD}";
        const GENERATED_PLAIN: &str = "$KUBERAY_GEN_RAY_START_CMD";
        let rest = &self.text[start..];
        for (form, value) in [
            (ULIMIT_FORM, "${RAY_START_ULIMIT_OPEN_FILES}"),
            (GENERATED_BRACED, self.generated),
            (GENERATED_PLAIN, self.generated),
        ] {
            if let Some(after) = rest.strip_prefix(form) {
                // `$KUBERAY_GEN_RAY_START_CMDX` names another variable.
                if form.ends_with(GENERATED_CMD_VAR)
                    && after
                        .bytes()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    break;
                }
                if in_quotes && form != ULIMIT_FORM {
                    return refuse(
                        "the script quotes \"$KUBERAY_GEN_RAY_START_CMD\", so bash runs it as one word and Ray never starts; leave it unquoted",
                    );
                }
                return Ok((value, start + form.len()));
            }
        }
        let name: String = rest
            .chars()
            .skip(1)
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '{' | '(' | '$'))
            .take(40)
            .collect();
        refuse(format!(
            "the script expands ${name}, whose value raygate cannot know at admission; write the flags out, or run $KUBERAY_GEN_RAY_START_CMD"
        ))
    }
}

/// A word's bytes as text. Only whole characters are ever copied, so this holds; a refusal
/// rather than a panic if it ever did not.
fn utf8(bytes: Vec<u8>) -> Result<String, Refusal> {
    String::from_utf8(bytes).or_else(|_| refuse("the script is not valid UTF-8"))
}

/// An unquoted expansion's words: split on blanks, quotes kept as they are (bash does not
/// remove quotes from an expansion), globs refused.
fn split_expansion(value: &str) -> Result<Vec<String>, Refusal> {
    if value.starts_with("${") {
        // The ulimit argument: one word whatever its value, and harmless.
        return Ok(vec![value.to_owned()]);
    }
    if let Some(c) = value.chars().find(|c| matches!(c, '*' | '?' | '[')) {
        return refuse(format!(
            "$KUBERAY_GEN_RAY_START_CMD holds {c:?}, which bash would expand as a glob; remove it from rayStartParams"
        ));
    }
    Ok(value
        .split([' ', '\t', '\n'])
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Parses the words after `ray start` as click 8 does: long options by their exact name (no
/// abbreviations), `--key=value` or `--key value`, the last repeated value wins, `-v` counts,
/// and any positional word or unknown option makes Ray exit.
pub fn parse_start(
    words: Vec<String>,
    ray: &'static VersionFacts,
) -> Result<EffectiveStart, Refusal> {
    let mut options: BTreeMap<&'static str, OptionValue> = BTreeMap::new();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        i += 1;
        if word == "--" {
            if i < words.len() {
                return refuse(format!(
                    "`ray start` is given {:?} after `--`; Ray exits (\"Got unexpected extra argument\")",
                    words[i]
                ));
            }
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (long, None),
            };
            let Some((key, arity)) = ray.option(name) else {
                return refuse(no_such_option(name, ray));
            };
            match (arity, inline) {
                (Arity::Flag | Arity::Count, Some(_)) => {
                    return refuse(format!(
                        "--{name} takes no value in `ray start`, so Ray exits; write it as a bare flag"
                    ));
                }
                (Arity::Flag, None) => {
                    options.insert(key, OptionValue::Flag);
                }
                (Arity::Count, None) => count(&mut options, key, 1),
                (Arity::Value(kind), inline) => {
                    let value = match inline {
                        Some(v) => v.to_owned(),
                        None => {
                            let Some(next) = words.get(i) else {
                                return refuse(format!(
                                    "--{name} is the last word of `ray start` and has no value; Ray exits"
                                ));
                            };
                            i += 1;
                            next.clone()
                        }
                    };
                    let value = convert(name, kind, value)?;
                    options.insert(key, OptionValue::Text(value));
                }
            }
            continue;
        }
        if let Some(short) = word.strip_prefix('-')
            && !short.is_empty()
        {
            if short.chars().all(|c| c == 'v') {
                count(&mut options, "verbose", short.len() as u32);
                continue;
            }
            return refuse(format!(
                "`ray start` has no short option {word}; Ray exits (\"No such option\")"
            ));
        }
        return refuse(format!(
            "`ray start` is given the extra word {word:?}; Ray exits (\"Got unexpected extra argument\")"
        ));
    }
    Ok(EffectiveStart { words, options })
}

/// Whether click accepts `value` for the option `name`, as raygate reads it (KubeRay's
/// `"true"`/`"false"` for flags and boolean-valued options included).
pub fn option_value(name: &str, value: String, ray: &'static VersionFacts) -> Result<(), Refusal> {
    match option(name, ray) {
        Some(Arity::Value(kind)) => {
            let lower = value.to_ascii_lowercase();
            if (lower == "true" || lower == "false") && !KEEPS_BOOLEAN_TEXT.contains(&name) {
                return refuse(format!(
                    "KubeRay turns {value:?} into a bare --{name} (or drops it), but --{name} takes a value, so Ray reads the next flag as its value; write a value"
                ));
            }
            convert(name, kind, value).map(drop)
        }
        Some(Arity::Flag | Arity::Count) => {
            let lower = value.to_ascii_lowercase();
            if lower == "true" || lower == "false" {
                Ok(())
            } else {
                refuse(format!(
                    "--{name} is a flag; write \"true\" (or remove it), as KubeRay renders other values as --{name}=VALUE, which Ray refuses"
                ))
            }
        }
        None => refuse(no_such_option(name, ray)),
    }
}

/// Why Ray exits on `--name`, with the measured Ray versions that have it.
pub fn no_such_option(name: &str, ray: &VersionFacts) -> String {
    format!(
        "`ray start` of Ray {} has no option --{name}; Ray exits (\"No such option\"){}",
        ray.version,
        measured_span(name, ray)
    )
}

/// "; of the measured versions, Ray 2.46.0 is the first that has it", when another measured
/// Ray has `--name`.
pub fn measured_span(name: &str, ray: &VersionFacts) -> String {
    match crate::ray_version::RayFacts::get().span_of(name) {
        Some((first, _)) if first > ray.version => {
            format!("; of the measured versions, Ray {first} is the first that has it")
        }
        Some((_, last)) if last < ray.version => {
            format!("; of the measured versions, Ray {last} is the last that has it")
        }
        Some(_) | None => String::new(),
    }
}

fn count(options: &mut BTreeMap<&'static str, OptionValue>, key: &'static str, by: u32) {
    let now = match options.get(key) {
        Some(OptionValue::Count(n)) => *n,
        _ => 0,
    };
    options.insert(key, OptionValue::Count(now.saturating_add(by)));
}

/// A value as raygate accepts it for click's type: stricter than click where click's own
/// reading is loose (an integer is ASCII digits only, not `+6380`, ` 6380` or `6_380`).
fn convert(name: &str, kind: ValueType, value: String) -> Result<String, Refusal> {
    match kind {
        ValueType::Int => {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) || value.len() > 18 {
                return refuse(format!(
                    "--{name}={value:?} is not a plain decimal number; write digits only"
                ));
            }
            Ok(value.trim_start_matches('0').to_owned())
                .map(|v| if v.is_empty() { "0".to_owned() } else { v })
        }
        ValueType::Float => match value.parse::<f64>() {
            Ok(f) if f.is_finite() && value.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                Ok(value)
            }
            _ => refuse(format!("--{name}={value:?} is not a plain decimal number")),
        },
        ValueType::Bool => match value.to_ascii_lowercase().as_str() {
            "1" | "true" | "t" | "yes" | "y" | "on" => Ok("true".to_owned()),
            "0" | "false" | "f" | "no" | "n" | "off" => Ok("false".to_owned()),
            _ => refuse(format!(
                "--{name}={value:?} is not a boolean; Ray exits (write true or false)"
            )),
        },
        ValueType::Choice(choices) => {
            if choices.contains(&value) {
                Ok(value)
            } else {
                refuse(format!(
                    "--{name}={value:?} is not one of {}; Ray exits",
                    choices.join(", ")
                ))
            }
        }
        ValueType::Json if value.contains('$') => refuse(format!(
            "--{name} holds a variable, whose value raygate cannot know; write the JSON out"
        )),
        ValueType::Json => match serde_json::from_str::<Value>(&value) {
            Ok(_) => Ok(value),
            Err(_) => refuse(format!("--{name} is not JSON; Ray exits")),
        },
        ValueType::Text => Ok(value),
    }
}

/// The single word a `rayStartParams` value becomes in KubeRay's `bash -c` line, after quote
/// removal, or why it is not one plain word. A value bash would split, expand or end the
/// command at is refused: it could add flags (click keeps the last) or run commands.
pub fn param_word(key: &str, value: &str) -> Result<String, Refusal> {
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return refuse(format!(
            "rayStartParams key {key:?} is not a `ray start` option name (lowercase letters, digits and '-'); KubeRay writes it unquoted into bash"
        ));
    }
    // Almost every value is plain text, which bash passes through as it is.
    if value.bytes().all(is_plain) {
        return Ok(value.to_owned());
    }
    lexed_param_word(key, value)
}

/// [`param_word`] for a value with quotes, blanks or other characters bash reads.
fn lexed_param_word(key: &str, value: &str) -> Result<String, Refusal> {
    let rendered = format!("--{key}={value}");
    let mut lexer = Lexer::new(&rendered, "");
    let first = lexer.next_token();
    // The whole value must be one word: a blank or a `#` after it would end the flag, and a
    // comment would swallow every flag KubeRay writes after it.
    let whole = lexer.at_end();
    let second = lexer.next_token();
    let single = match (first, second) {
        (Ok(Some(Token::Words(words))), Ok(None)) if words.len() == 1 && whole => {
            words.into_iter().next()
        }
        (Err(r), _) | (_, Err(r)) => {
            let quote = if value.contains('$') {
                format!(" (to pass a variable, quote it: '\"{value}\"')")
            } else {
                String::new()
            };
            return refuse(format!(
                "rayStartParams.{key} value {value:?} reaches KubeRay's `bash -c` line unquoted: {}{quote}",
                r.0.trim_start_matches("the script ")
            ));
        }
        _ => None,
    };
    match single {
        Some(word) => Ok(word
            .strip_prefix(&format!("--{key}="))
            .unwrap_or_default()
            .to_owned()),
        None => {
            let commands = split_script(&rendered, "").unwrap_or_default();
            let words = commands.iter().map(Vec::len).sum::<usize>();
            refuse(format!(
                "rayStartParams.{key} value {value:?} becomes {words} words (or commands) in KubeRay's unquoted `bash -c` line, so Ray reads other flags than the one written; write one plain word without spaces, quotes or ; & | $"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    fn ray(version: &str) -> &'static VersionFacts {
        let version = crate::ray_version::parse_version(version).unwrap();
        crate::ray_version::RayFacts::get().for_version(version).0
    }

    #[test]
    fn plain_values_are_the_word_bash_reads() {
        for value in [
            "",
            "6380",
            "0.0.0.0",
            "a-b_c.d,e:f/g=h@i+j%k",
            "CPU=2,GPU=0",
        ] {
            assert_eq!(lexed_param_word("port", value).unwrap(), value);
            assert_eq!(param_word("port", value).unwrap(), value);
        }
    }

    #[test]
    fn characters_of_several_bytes_are_copied_whole() {
        let commands = split_script(
            "echo 'é€' \\é \"ü\\ß\" x😀y; ray start --temp-dir=/tmp/é",
            "",
        )
        .unwrap();
        assert_eq!(
            commands,
            vec![
                vec!["echo", "é€", "é", "ü\\ß", "x😀y"],
                vec!["ray", "start", "--temp-dir=/tmp/é"],
            ]
        );
        assert_eq!(param_word("temp-dir", "/tmp/é").unwrap(), "/tmp/é");
        assert_eq!(param_word("temp-dir", "'/tmp/a b'").unwrap(), "/tmp/a b");
    }

    #[test]
    fn the_last_repeated_option_wins_as_in_click() {
        let start = parse_start(words("--head --port=6380 --port 6379"), ray("2.60.0")).unwrap();
        assert_eq!(start.get("port"), Some("6379"));
        assert_eq!(start.options.get("head"), Some(&OptionValue::Flag));
    }

    #[test]
    fn a_value_split_by_bash_is_refused() {
        assert!(param_word("temp-dir", "/tmp/ray --port=6379").is_err());
        assert!(param_word("port", " 6380").is_err());
        assert!(param_word("port", "$(echo 6379)").is_err());
        assert_eq!(
            param_word("resources", "\"{\\\"CPU\\\": 2}\"").unwrap(),
            "{\"CPU\": 2}"
        );
        assert_eq!(param_word("port", "6380").unwrap(), "6380");
    }

    #[test]
    fn scripts_reduce_to_one_ray_start_or_are_refused() {
        let generated = "ray start --head --port=6380";
        let one = |s: &str| {
            split_script(s, generated)
                .and_then(the_one_ray_start)
                .map(|w| w.join(" "))
        };
        assert_eq!(
            one("ulimit -n 65536; echo head; $KUBERAY_GEN_RAY_START_CMD").unwrap(),
            "--head --port=6380"
        );
        assert_eq!(one("ray  start --port=6379").unwrap(), "--port=6379");
        assert!(one("ray stop; ray start --port=6379").is_err());
        assert!(one("RAY_CMD='ray start'; $RAY_CMD").is_err());
        assert!(one("python -m ray.scripts.scripts start --head").is_err());
        assert_eq!(
            one("# runs $KUBERAY_GEN_RAY_START_CMD later\nray start --port=6379").unwrap(),
            "--port=6379"
        );
        assert!(one("\"$KUBERAY_GEN_RAY_START_CMD\"").is_err());
        assert_eq!(
            one("exec \"ray\" 'start' \"--port=6380\"").unwrap(),
            "--port=6380"
        );
    }

    #[test]
    fn a_comment_or_a_leading_operator_is_refused() {
        assert!(param_word("port", "6380 #--port=6379").is_err());
        // Mid-word, `#` is a plain character: one word, which no port accepts.
        let word = param_word("port", "6380#x").unwrap();
        assert!(option_value("port", word, ray("2.60.0")).is_err());
        assert!(split_script("   && ulimit -n 65536; ray start --head", "").is_err());
        assert!(split_script("echo a;; ray start", "").is_err());
    }

    #[test]
    fn unknown_options_and_extra_words_make_ray_exit() {
        assert!(parse_start(words("--dashboard-grpc-port=1"), ray("2.60.0")).is_err());
        // The same option is one Ray 2.9.3 to 2.46.0 take, and one Ray 2.9.3 lacks.
        assert!(parse_start(words("--dashboard-grpc-port=1"), ray("2.9.3")).is_ok());
        let why = parse_start(words("--enable-resource-isolation"), ray("2.9.3")).unwrap_err();
        assert!(
            why.0
                .contains("Ray 2.9.3 has no option --enable-resource-isolation"),
            "{}",
            why.0
        );
        assert!(
            why.0.contains("Ray 2.46.0 is the first that has it"),
            "{}",
            why.0
        );
        let why = parse_start(words("--dashboard-grpc-port=1"), ray("2.60.0")).unwrap_err();
        assert!(
            why.0.contains("Ray 2.46.0 is the last that has it"),
            "{}",
            why.0
        );
        assert!(parse_start(words("--head=true"), ray("2.60.0")).is_err());
        assert!(parse_start(words("--port=6380 extra"), ray("2.60.0")).is_err());
        assert!(parse_start(words("--port=+6380"), ray("2.60.0")).is_err());
        assert_eq!(
            parse_start(words("-vv -v"), ray("2.60.0"))
                .unwrap()
                .options
                .get("verbose"),
            Some(&OptionValue::Count(3))
        );
    }

    fn group<'a>(role: Role, spec: &'a Value) -> NodeGroup<'a> {
        NodeGroup {
            role,
            name: if role == Role::Head {
                "headgroup"
            } else {
                "workers"
            },
            spec,
            path: json_patch::jsonptr::PointerBuf::new(),
        }
    }

    fn context<'a>(head: Option<&'a Value>) -> ClusterContext<'a> {
        ClusterContext {
            name: "demo",
            namespace: "default",
            head,
            autoscaling: false,
        }
    }

    fn with_resources(params: Value, resources: Value) -> Value {
        serde_json::json!({
            "rayStartParams": params,
            "template": {"spec": {"containers": [{"name": "ray", "resources": resources}]}},
        })
    }

    #[test]
    fn kuberay_adds_dashboard_host_and_the_containers_resources() {
        // Item 1: --dashboard-host on the head; --num-cpus (limit, rounded up), --memory
        // (bytes), --num-gpus and the TPU limit merged into --resources, as v1.5.0 does.
        let spec = with_resources(
            serde_json::json!({"resources": "'{\"CPU\": 2}'"}),
            serde_json::json!({
                "limits": {"cpu": "1500m", "memory": "1.5Gi", "nvidia.com/gpu": 1, "google.com/tpu": "4"},
                "requests": {"cpu": "8"},
            }),
        );
        let head = group(Role::Head, &spec);
        let params = kuberay_params(&head, &context(None)).unwrap();
        assert_eq!(params["dashboard-host"], "0.0.0.0");
        assert_eq!(params["num-cpus"], "2");
        assert_eq!(params["memory"], "1610612736");
        assert_eq!(params["num-gpus"], "1");
        assert_eq!(params["resources"], "'{\"CPU\":2,\"TPU\":4}'");
        assert_eq!(
            render_params(&params),
            " --block  --dashboard-agent-listen-port=52365  --dashboard-host=0.0.0.0  --memory=1610612736  --metrics-export-port=8080  --num-cpus=2  --num-gpus=1  --resources='{\"CPU\":2,\"TPU\":4}' "
        );
        // A CPU request without a limit; a MIG slice counts as a GPU; the first Neuron core or
        // TPU limit (by name) only; a user's --dashboard-host stays.
        let spec = with_resources(
            serde_json::json!({"dashboard-host": "127.0.0.1"}),
            serde_json::json!({
                "limits": {"nvidia.com/mig-1g.5gb": "2", "google.com/tpu": "4", "aws.amazon.com/neuroncore": "0.3"},
                "requests": {"cpu": "250m", "memory": "4Gi"},
            }),
        );
        let params = kuberay_params(&group(Role::Head, &spec), &context(None)).unwrap();
        assert_eq!(params["dashboard-host"], "127.0.0.1");
        assert_eq!(params["num-cpus"], "1");
        assert!(!params.contains_key("memory"));
        assert_eq!(params["num-gpus"], "2");
        assert_eq!(
            params["resources"],
            "'{\"neuron_cores\":0.30000000000000004}'"
        );
        // Params that are not a JSON map of numbers: KubeRay adds no accelerator, no GPU.
        let spec = with_resources(
            serde_json::json!({"resources": "not json"}),
            serde_json::json!({"limits": {"nvidia.com/gpu": "1"}}),
        );
        let params = kuberay_params(&group(Role::Worker, &spec), &context(None)).unwrap();
        assert!(!params.contains_key("num-gpus"));
        assert_eq!(params["resources"], "not json");
    }

    #[test]
    fn group_resources_and_labels_override_the_params() {
        // Item 1: the group-level `resources` (Value() rounded up; the rest a JSON map as
        // encoding/json writes it) and `labels` (sorted) win over rayStartParams.
        let mut spec = with_resources(
            serde_json::json!({"num-cpus": "8", "labels": "x=y", "resources": "'{\"old\": 1}'"}),
            serde_json::json!({"limits": {"cpu": "4", "memory": "1Gi"}}),
        );
        spec["resources"] = serde_json::json!({
            "CPU": "1500m", "Memory": "1Gi", "GPU": "1", "custom": "0.3", "a<b": "1e21", "bad": "lots",
        });
        spec["labels"] = serde_json::json!({"zone": "a", "ray.io/market-type": "spot"});
        let params = kuberay_params(&group(Role::Worker, &spec), &context(None)).unwrap();
        assert_eq!(params["num-cpus"], "2");
        assert_eq!(params["memory"], "1073741824");
        assert_eq!(params["num-gpus"], "1");
        assert_eq!(
            params["resources"],
            "'{\"a\\u003cb\":1e+21,\"custom\":0.30000000000000004}'"
        );
        assert_eq!(params["labels"], "ray.io/market-type=spot,zone=a");
        // Two names for one param that disagree: KubeRay picks one at random.
        spec["resources"] = serde_json::json!({"CPU": "1", "cpu": "2"});
        assert!(kuberay_params(&group(Role::Worker, &spec), &context(None)).is_err());
    }

    #[test]
    fn kuberay_forces_block_even_when_written_false() {
        // Item 2: setMissingRayStartParams sets block=true whatever the user wrote.
        for value in ["false", "False", "true"] {
            let spec = serde_json::json!({"rayStartParams": {"block": value}});
            let params = kuberay_params(&group(Role::Worker, &spec), &context(None)).unwrap();
            assert_eq!(params["block"], "true");
            assert!(render_params(&params).contains(" --block "));
        }
    }

    #[test]
    fn only_log_color_and_include_dashboard_keep_boolean_text() {
        // Item 3: v1.5.0's specialParameterOptions.
        let params: BTreeMap<String, String> = [
            ("include-log-monitor", "false"),
            ("include-dashboard", "false"),
            ("log-color", "true"),
            ("disable-usage-stats", "TRUE"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            render_params(&params),
            " --disable-usage-stats  --include-dashboard=false  --log-color=true "
        );
        // "true" becomes a bare --include-log-monitor, which eats the next flag: refused.
        assert!(option_value("include-log-monitor", "false".into(), ray("2.60.0")).is_err());
        assert!(option_value("include-log-monitor", "true".into(), ray("2.60.0")).is_err());
        assert!(option_value("include-log-monitor", "0".into(), ray("2.60.0")).is_ok());
        assert!(option_value("include-dashboard", "false".into(), ray("2.60.0")).is_ok());
        assert!(option_value("log-color", "true".into(), ray("2.60.0")).is_ok());
    }

    #[test]
    fn a_workers_address_names_the_head_service_and_the_heads_port() {
        // Item 4: GenerateFQDNServiceName and GetHeadPort.
        let worker = serde_json::json!({"rayStartParams": {}});
        let worker = group(Role::Worker, &worker);
        let params = kuberay_params(&worker, &context(None)).unwrap();
        assert_eq!(
            params["address"],
            "demo-head-svc.default.svc.cluster.local:6379"
        );
        let head = serde_json::json!({
            "rayStartParams": {"port": "6380"},
            "headService": {"metadata": {"name": "custom-head"}},
        });
        let cluster = serde_json::json!({
            "metadata": {"name": "demo", "namespace": "team-a"},
            "spec": {"headGroupSpec": head, "enableInTreeAutoscaling": true},
        });
        let spec = ClusterSpec {
            source: crate::ray::ClusterSource::RayCluster,
            name: "demo",
            spec: &cluster["spec"],
            path: json_patch::jsonptr::PointerBuf::from_tokens(["spec"]),
            root: &cluster,
            overwrite_cmd: false,
        };
        let ctx = ClusterContext::of(&spec);
        let params = kuberay_params(&worker, &ctx).unwrap();
        assert_eq!(
            params["address"],
            "custom-head.team-a.svc.cluster.local:6380"
        );
        assert!(!params.contains_key("no-monitor"));
        // The autoscaler's --no-monitor on the head, forced over "false".
        let head = serde_json::json!({"rayStartParams": {"no-monitor": "false"}});
        let params = kuberay_params(&group(Role::Head, &head), &ctx).unwrap();
        assert_eq!(params["no-monitor"], "true");
        // A user's own address stays.
        let worker = serde_json::json!({"rayStartParams": {"address": "elsewhere:1"}});
        let params = kuberay_params(&group(Role::Worker, &worker), &ctx).unwrap();
        assert_eq!(params["address"], "elsewhere:1");
    }

    #[test]
    fn quantities_read_as_kubernetes_go_code_reads_them() {
        // (text, Some((IsZero(), Value(), json.Marshal(AsApproximateFloat64())))), from
        // k8s.io/apimachinery v0.34.1 itself; None where ParseQuantity fails.
        #[allow(clippy::type_complexity)]
        let table: &[(&str, Option<(bool, i64, Option<&str>)>)] = &[
            ("1", Some((false, 1, Some("1")))),
            ("1500m", Some((false, 2, Some("1.5")))),
            ("0.3", Some((false, 1, Some("0.30000000000000004")))),
            ("300m", Some((false, 1, Some("0.3")))),
            ("0.5Gi", Some((false, 536870912, Some("536870912")))),
            ("1.5Gi", Some((false, 1610612736, Some("1610612736")))),
            ("1e30", Some((false, 0, Some("1e+30")))),
            ("1e-20", Some((false, 1, Some("1e-9")))),
            (".", Some((true, 0, Some("0")))),
            ("+", Some((true, 0, Some("0")))),
            ("1.", Some((false, 1, Some("1")))),
            (".5", Some((false, 1, Some("0.5")))),
            (
                "1E",
                Some((false, 1000000000000000000, Some("1000000000000000000"))),
            ),
            ("1e", None),
            ("1K", None),
            (
                "8Ei",
                Some((false, 9223372036854775807, Some("9223372036854776000"))),
            ),
            (
                "9Ei",
                Some((false, 9223372036854775807, Some("9223372036854776000"))),
            ),
            (
                "1Pi",
                Some((false, 1125899906842624, Some("1125899906842624"))),
            ),
            ("0.1", Some((false, 1, Some("0.1")))),
            ("1e-7", Some((false, 1, Some("1e-7")))),
            (
                "123456789012345678901",
                Some((false, -5670419503621182411, Some("123456789012345680000"))),
            ),
            ("1.0000000001", Some((false, 2, Some("1.000000001")))),
            ("-1.5", Some((false, -2, Some("-1.5")))),
            ("-0.5Gi", Some((false, -536870912, Some("-536870912")))),
            ("1e21", Some((false, 0, Some("1e+21")))),
            ("0.000001", Some((false, 1, Some("0.000001")))),
            (
                "1.Pi",
                Some((false, 1125899906842624, Some("1125899906842624"))),
            ),
            (".Pi", None),
            ("-.5e-20", Some((false, 1, Some("-1e-9")))),
            (
                "1.5Ei",
                Some((false, 1729382256910270464, Some("1729382256910270500"))),
            ),
            (
                "1.5E",
                Some((false, 1500000000000000000, Some("1500000000000000000"))),
            ),
            ("00001.50000Ki", Some((false, 1536, Some("1536")))),
            ("1 ", None),
            ("1e+5", Some((false, 100000, Some("100000")))),
            ("1ee5", None),
            ("1e100", Some((false, 0, Some("1e+100")))),
            ("1e-100", Some((false, 1, Some("1e-9")))),
            ("1.5e-5", Some((false, 1, Some("0.000014999999999999999")))),
            ("0.3m", Some((false, 1, Some("0.00030000000000000003")))),
            ("7e-7", Some((false, 1, Some("7e-7")))),
            ("123.456", Some((false, 124, Some("123.456")))),
            ("1e308", Some((false, 0, Some("1e+308")))),
            ("1e309", Some((false, 0, None))),
            ("0e400", Some((true, 0, None))),
            (
                "99999999999999999G",
                Some((false, -2537764291115403776, Some("1e+26"))),
            ),
            (
                "9999999999999999k",
                Some((false, -8446744073709552616, Some("10000000000000000000"))),
            ),
            ("999999999999999999P", Some((false, 0, Some("1e+33")))),
            (
                "9223372036854775807",
                Some((false, 9223372036854775807, Some("9223372036854776000"))),
            ),
            (
                "-9223372036854775807",
                Some((false, 1, Some("-9223372036854776000"))),
            ),
            ("2.5", Some((false, 3, Some("2.5")))),
            ("250m", Some((false, 1, Some("0.25")))),
            ("3Gi", Some((false, 3221225472, Some("3221225472")))),
            ("0", Some((true, 0, Some("0")))),
            ("0.0", Some((true, 0, Some("0")))),
            ("-0", Some((true, 0, Some("0")))),
            ("1e2147483647", Some((false, 0, None))),
        ];
        for (text, want) in table {
            let got = GoQuantity::parse(text)
                .ok()
                .map(|q| (q.is_zero(), q.value(), go_json_float(q.approximate_f64())));
            let want = want.map(|(z, v, f)| (z, v, f.map(str::to_owned)));
            assert_eq!(got, want, "{text:?}");
        }
        assert_eq!(
            GoQuantity::parse("1e-2147483648"),
            Err(QuantityError::Unmodelled)
        );
        assert!(is_gpu_resource_key("nvidia.com/mig-3g.20gb"));
        assert!(is_gpu_resource_key("example.com/x-nvidia.com/mig-1g.5gb"));
        assert!(!is_gpu_resource_key("nvidia.com/mig-g.5gb"));
        assert!(!is_gpu_resource_key("nvidia.com/mig-1g.5gbx"));
        assert!(is_gpu_resource_key("amd.com/gpu"));
    }
}
