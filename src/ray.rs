//! Borrowed views of Ray objects over `serde_json::Value`.
//!
//! The views never copy the object: rules read it in place, and every finding carries an
//! exact JSON pointer into it. Fields raygate does not know stay untouched in the object.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use kube::core::DynamicObject;
use serde_json::{Map, Value};

/// KubeRay's annotation that makes it run the user's command unchanged.
pub const OVERWRITE_CMD_ANNOTATION: &str = "ray.io/overwrite-container-cmd";
pub const LABEL_CLUSTER: &str = "ray.io/cluster";
pub const LABEL_NODE_TYPE: &str = "ray.io/node-type";
pub const LABEL_GROUP: &str = "ray.io/group";
pub const LABEL_IS_RAY_NODE: &str = "ray.io/is-ray-node";
/// KubeRay v1.5.0 labels a RayCluster it generates with the RayJob's or RayService's name,
/// but not its Pods, whose `ray.io/cluster` is a generated name: raygate fills this label
/// into the embedded pod templates (KubeRay copies template labels onto Pods), so that a
/// NetworkPolicy can select the Pods by the name the user wrote.
pub const LABEL_CR_NAME: &str = "raygate.dev/ray-cr-name";
/// KubeRay's `ray.io/group` value for the head.
pub const HEAD_GROUP_LABEL_VALUE: &str = "headgroup";

/// The labels of an object, whichever way it was decoded.
#[derive(Debug, Clone, Copy)]
pub enum Labels<'a> {
    None,
    Typed(&'a BTreeMap<String, String>),
    Json(&'a Map<String, Value>),
}

impl<'a> Labels<'a> {
    pub fn from_metadata(metadata: Option<&'a Value>) -> Labels<'a> {
        match metadata
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
        {
            Some(map) => Labels::Json(map),
            None => Labels::None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a str> {
        match self {
            Labels::None => None,
            Labels::Typed(map) => map.get(key).map(String::as_str),
            Labels::Json(map) => map.get(key).and_then(Value::as_str),
        }
    }

    pub fn for_each(&self, mut f: impl FnMut(&'a str, &'a str)) {
        match self {
            Labels::None => {}
            Labels::Typed(map) => map.iter().for_each(|(k, v)| f(k, v)),
            Labels::Json(map) => map.iter().for_each(|(k, v)| {
                if let Some(v) = v.as_str() {
                    f(k, v)
                }
            }),
        }
    }
}

/// Any Kubernetes object, as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct ObjectRef<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub labels: Labels<'a>,
    /// The RayJob, RayService or RayCronJob that controls this object (KubeRay's generated
    /// RayClusters and RayJobs), from its owner references: its kind and name.
    pub owner: Option<(&'a str, &'a str)>,
    /// The object's top-level fields: `spec` is at `body["spec"]`.
    pub body: &'a Value,
}

/// Kinds whose objects KubeRay turns into RayClusters (or RayJobs) it owns.
fn is_ray_owner(api_version: &str, kind: &str) -> bool {
    api_version.starts_with("ray.io/") && matches!(kind, "RayJob" | "RayService" | "RayCronJob")
}

impl<'a> ObjectRef<'a> {
    /// A view of a whole object as parsed from a manifest. `None` if it has no `kind`.
    pub fn from_value(object: &'a Value) -> Option<ObjectRef<'a>> {
        let kind = object.get("kind")?.as_str()?;
        let metadata = object.get("metadata");
        let meta_str = |key| metadata.and_then(|m| m.get(key)).and_then(Value::as_str);
        Some(ObjectRef {
            api_version: object
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or(""),
            kind,
            name: meta_str("name")
                .or_else(|| meta_str("generateName"))
                .unwrap_or(""),
            namespace: meta_str("namespace"),
            labels: Labels::from_metadata(metadata),
            owner: metadata
                .and_then(|m| m.get("ownerReferences"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|r| {
                    r.get("controller").and_then(Value::as_bool) == Some(true)
                        && r.get("uid")
                            .and_then(Value::as_str)
                            .is_some_and(|u| !u.is_empty())
                        && is_ray_owner(
                            r.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
                            r.get("kind").and_then(Value::as_str).unwrap_or(""),
                        )
                })
                .and_then(|r| Some((r.get("kind")?.as_str()?, r.get("name")?.as_str()?))),
            body: object,
        })
    }

    /// A view of an object decoded from an AdmissionReview.
    pub fn from_dynamic(object: &'a DynamicObject) -> ObjectRef<'a> {
        let (api_version, kind) = object
            .types
            .as_ref()
            .map(|t| (t.api_version.as_str(), t.kind.as_str()))
            .unwrap_or(("", ""));
        let meta = &object.metadata;
        ObjectRef {
            api_version,
            kind,
            name: meta
                .name
                .as_deref()
                .or(meta.generate_name.as_deref())
                .unwrap_or(""),
            namespace: meta.namespace.as_deref(),
            labels: meta.labels.as_ref().map_or(Labels::None, Labels::Typed),
            owner: meta
                .owner_references
                .iter()
                .flatten()
                .find(|r| {
                    r.controller == Some(true)
                        && !r.uid.is_empty()
                        && is_ray_owner(&r.api_version, &r.kind)
                })
                .map(|r| (r.kind.as_str(), r.name.as_str())),
            body: &object.data,
        }
    }

    pub fn group(&self) -> &'a str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }
}

/// Which custom resource a cluster spec comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterSource {
    RayCluster,
    RayJob,
    RayService,
    RayCronJob,
}

impl ClusterSource {
    pub const ALL: [ClusterSource; 4] = [
        ClusterSource::RayCluster,
        ClusterSource::RayJob,
        ClusterSource::RayService,
        ClusterSource::RayCronJob,
    ];

    /// The `ray.io/v1` kind.
    pub const fn kind(self) -> &'static str {
        match self {
            ClusterSource::RayCluster => "RayCluster",
            ClusterSource::RayJob => "RayJob",
            ClusterSource::RayService => "RayService",
            ClusterSource::RayCronJob => "RayCronJob",
        }
    }

    /// The kind's resource name in the API.
    pub const fn plural(self) -> &'static str {
        match self {
            ClusterSource::RayCluster => "rayclusters",
            ClusterSource::RayJob => "rayjobs",
            ClusterSource::RayService => "rayservices",
            ClusterSource::RayCronJob => "raycronjobs",
        }
    }

    pub fn from_kind(kind: &str) -> Option<ClusterSource> {
        ClusterSource::ALL.into_iter().find(|s| s.kind() == kind)
    }

    /// Where a RayJob's submitter pod spec sits in the object (KubeRay runs `ray job submit`
    /// from it; placement and resources apply to it like to the cluster's pods).
    pub fn submitter_path(self) -> Option<&'static [&'static str]> {
        match self {
            ClusterSource::RayJob => Some(&["spec", "submitterPodTemplate", "spec"]),
            ClusterSource::RayCronJob => {
                Some(&["spec", "jobTemplate", "submitterPodTemplate", "spec"])
            }
            ClusterSource::RayCluster | ClusterSource::RayService => None,
        }
    }

    /// Where the cluster spec sits in the object.
    pub fn spec_path(self) -> &'static [&'static str] {
        match self {
            ClusterSource::RayCluster => &["spec"],
            ClusterSource::RayJob => &["spec", "rayClusterSpec"],
            ClusterSource::RayService => &["spec", "rayClusterConfig"],
            ClusterSource::RayCronJob => &["spec", "jobTemplate", "rayClusterSpec"],
        }
    }
}

/// What the engine has to check in an object.
#[derive(Debug)]
pub enum Target<'a> {
    Cluster(ClusterSpec<'a>),
    Pod(RayPod<'a>),
    /// Not Ray's, or a Ray object without a cluster spec (a RayJob using `clusterSelector`).
    OutOfScope,
}

impl<'a> Target<'a> {
    pub fn of(object: &ObjectRef<'a>) -> Target<'a> {
        if object.group() == "ray.io" {
            let Some(source) = ClusterSource::from_kind(object.kind) else {
                return Target::OutOfScope;
            };
            let mut value = object.body;
            for key in source.spec_path() {
                match value.get(key) {
                    Some(next) => value = next,
                    None => return Target::OutOfScope,
                }
            }
            if !value.is_object() {
                return Target::OutOfScope;
            }
            return Target::Cluster(ClusterSpec {
                source,
                name: object.name,
                spec: value,
                path: PointerBuf::from_tokens(source.spec_path().iter().copied()),
                root: object.body,
                overwrite_cmd: annotation_is_true(
                    object.body.pointer("/metadata/annotations"),
                    OVERWRITE_CMD_ANNOTATION,
                ),
            });
        }
        if object.api_version == "v1"
            && object.kind == "Pod"
            && let Some(cluster) = object.labels.get(LABEL_CLUSTER)
        {
            return Target::Pod(RayPod {
                cluster,
                role: match object.labels.get(LABEL_NODE_TYPE) {
                    Some("head") => Role::Head,
                    _ => Role::Worker,
                },
                group: object.labels.get(LABEL_GROUP),
                spec: object.body.get("spec").unwrap_or(&Value::Null),
            });
        }
        Target::OutOfScope
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Head,
    Worker,
}

/// A RayCluster spec, wherever it is embedded.
#[derive(Debug)]
pub struct ClusterSpec<'a> {
    pub source: ClusterSource,
    /// The name of the object that holds the spec (RayCluster, RayJob, ...).
    pub name: &'a str,
    pub spec: &'a Value,
    pub path: PointerBuf,
    /// The whole object that holds the spec.
    pub root: &'a Value,
    /// `ray.io/overwrite-container-cmd: "true"` on the object: KubeRay runs the Ray
    /// containers' own commands unchanged.
    pub overwrite_cmd: bool,
}

/// Whether `annotations` sets `key` to "true" in any case, as KubeRay compares it.
pub fn annotation_is_true(annotations: Option<&Value>, key: &str) -> bool {
    annotations
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

impl<'a> ClusterSpec<'a> {
    /// The kind KubeRay builds the cluster's Pods for (its `creatorCRDType`): the spec's own
    /// kind, RayJob for a RayCronJob (it makes RayJobs), and for a RayCluster the kind KubeRay
    /// generated it from (`ray.io/originated-from-crd`), else RayCluster.
    pub fn creator(&self) -> ClusterSource {
        match self.source {
            ClusterSource::RayCronJob => ClusterSource::RayJob,
            ClusterSource::RayCluster => match self
                .root
                .pointer("/metadata/labels/ray.io~1originated-from-crd")
                .and_then(Value::as_str)
            {
                Some("RayJob") => ClusterSource::RayJob,
                Some("RayService") => ClusterSource::RayService,
                _ => ClusterSource::RayCluster,
            },
            source => source,
        }
    }

    /// The cluster's `rayVersion`, as written.
    pub fn ray_version(&self) -> Option<&'a str> {
        self.spec.get("rayVersion").and_then(Value::as_str)
    }

    /// The Ray a group of this cluster runs (see [`crate::ray_version::RayOf::resolve`]).
    pub fn ray_of(
        &self,
        group: &NodeGroup<'a>,
        default: crate::ray_version::RayVersion,
    ) -> crate::ray_version::RayOf<'a> {
        crate::ray_version::RayOf::of_group(group.spec, self.ray_version(), default)
    }

    /// `enableInTreeAutoscaling: true`: KubeRay adds the autoscaler sidecar to the head.
    pub fn autoscaling(&self) -> bool {
        self.spec
            .get("enableInTreeAutoscaling")
            .and_then(Value::as_bool)
            == Some(true)
    }

    /// The head group first, then every worker group in order.
    pub fn groups(&self) -> impl Iterator<Item = NodeGroup<'a>> + '_ {
        let head = self.spec.get("headGroupSpec").map(|spec| NodeGroup {
            role: Role::Head,
            name: HEAD_GROUP_LABEL_VALUE,
            spec,
            path: child(&self.path, "headGroupSpec"),
        });
        let workers = self
            .spec
            .get("workerGroupSpecs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, spec)| NodeGroup {
                role: Role::Worker,
                name: spec.get("groupName").and_then(Value::as_str).unwrap_or(""),
                spec,
                path: child(&child(&self.path, "workerGroupSpecs"), &i.to_string()),
            });
        head.into_iter().chain(workers)
    }
}

/// A head or worker group of a cluster spec.
#[derive(Debug)]
pub struct NodeGroup<'a> {
    pub role: Role,
    pub name: &'a str,
    pub spec: &'a Value,
    pub path: PointerBuf,
}

impl<'a> NodeGroup<'a> {
    /// Whether KubeRay runs this group's own container command unchanged: the cluster's
    /// annotation, which KubeRay copies onto the pod template, or the template's own.
    pub fn overwrites_command(&self, cluster: &ClusterSpec<'_>) -> bool {
        cluster.overwrite_cmd
            || annotation_is_true(
                self.spec.pointer("/template/metadata/annotations"),
                OVERWRITE_CMD_ANNOTATION,
            )
    }

    pub fn ray_start_params(&self) -> Option<&'a Map<String, Value>> {
        self.spec.get("rayStartParams").and_then(Value::as_object)
    }

    pub fn template_labels(&self) -> Labels<'a> {
        Labels::from_metadata(self.spec.get("template").and_then(|t| t.get("metadata")))
    }

    pub fn pod_spec(&self) -> Option<PodSpecRef<'a>> {
        let spec = self.spec.get("template")?.get("spec")?;
        Some(PodSpecRef {
            spec,
            path: child(&child(&self.path, "template"), "spec"),
        })
    }

    /// How a message names this group.
    pub fn describe(&self) -> String {
        match self.role {
            Role::Head => "head group".to_owned(),
            Role::Worker => format!("worker group {:?}", self.name),
        }
    }
}

/// A Pod created for a Ray cluster (labelled `ray.io/cluster`).
#[derive(Debug)]
pub struct RayPod<'a> {
    pub cluster: &'a str,
    pub role: Role,
    pub group: Option<&'a str>,
    pub spec: &'a Value,
}

impl<'a> RayPod<'a> {
    pub fn pod_spec(&self) -> PodSpecRef<'a> {
        PodSpecRef {
            spec: self.spec,
            path: PointerBuf::from_tokens(["spec"]),
        }
    }
}

/// A pod spec (of a template or a Pod) and where it sits.
#[derive(Debug)]
pub struct PodSpecRef<'a> {
    pub spec: &'a Value,
    pub path: PointerBuf,
}

/// Which list of a pod spec a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerList {
    Containers,
    InitContainers,
}

impl ContainerList {
    pub fn field(self) -> &'static str {
        match self {
            ContainerList::Containers => "containers",
            ContainerList::InitContainers => "initContainers",
        }
    }
}

#[derive(Debug)]
pub struct ContainerRef<'a> {
    pub list: ContainerList,
    pub index: usize,
    pub name: &'a str,
    pub value: &'a Value,
}

impl<'a> PodSpecRef<'a> {
    pub fn field(&self, key: &str) -> Option<&'a Value> {
        self.spec.get(key)
    }

    /// Container 0, which KubeRay treats as the Ray container.
    pub fn ray_container(&self) -> Option<ContainerRef<'a>> {
        self.containers().next()
    }

    pub fn containers(&self) -> impl Iterator<Item = ContainerRef<'a>> + use<'a> {
        self.list(ContainerList::Containers)
    }

    /// Containers, then init containers (sidecars included).
    pub fn all_containers(&self) -> impl Iterator<Item = ContainerRef<'a>> + use<'a> {
        self.list(ContainerList::Containers)
            .chain(self.list(ContainerList::InitContainers))
    }

    fn list(&self, list: ContainerList) -> impl Iterator<Item = ContainerRef<'a>> + use<'a> {
        self.spec
            .get(list.field())
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .map(move |(index, value)| ContainerRef {
                list,
                index,
                name: value.get("name").and_then(Value::as_str).unwrap_or(""),
                value,
            })
    }

    pub fn container_path(&self, container: &ContainerRef<'_>) -> PointerBuf {
        child(
            &child(&self.path, container.list.field()),
            &container.index.to_string(),
        )
    }

    /// Where `field` of port `index` of `container` sits: `.../ports/<index>/<field>`.
    pub fn port_path(&self, container: &ContainerRef<'_>, index: usize, field: &str) -> PointerBuf {
        child(
            &child(
                &child(&self.container_path(container), "ports"),
                &index.to_string(),
            ),
            field,
        )
    }
}

impl ContainerRef<'_> {
    pub fn ports(&self) -> Option<&Vec<Value>> {
        self.value.get("ports").and_then(Value::as_array)
    }

    pub fn describe(&self) -> String {
        match self.list {
            ContainerList::Containers => format!("container {:?}", self.name),
            ContainerList::InitContainers => format!("init container {:?}", self.name),
        }
    }
}

/// `parent` extended by one token.
pub fn child(parent: &PointerBuf, token: &str) -> PointerBuf {
    let mut path = parent.clone();
    path.push_back(token);
    path
}

/// A port number from a JSON value that may hold a number or a numeric string.
pub fn as_port(value: &Value) -> Option<u32> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A `rayStartParams` value as Ray would read it.
pub fn param_text(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s.trim())),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(std::borrow::Cow::Owned(b.to_string())),
        _ => None,
    }
}
