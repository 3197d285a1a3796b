//! `raygate serve --generate-network-policies`: for each Ray object whose Pods no
//! NetworkPolicy of its namespace selects, the NetworkPolicy `raygate fix` would write,
//! applied server-side and owned by the Ray object (garbage collection removes it with it).
//! Only the replica that holds the Lease writes.
//!
//! RayCronJobs are not watched: each RayJob they create is, and gets its own policy.
//! RayClusters KubeRay generated from a RayJob or RayService are skipped: their owner's
//! policy selects their Pods by `raygate.dev/ray-cr-name`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Namespace};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, ResourceExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::live_engine::LiveEngine;
use crate::cluster::{self, WatchHealth, ray_resource};
use crate::leader::Leadership;
use crate::metrics::{GeneratedLabels, NetworkPolicyControllerMetrics, WatchMetrics};
use crate::policy::Policy;
use crate::ray::{ClusterSource, ObjectRef, Target};
use crate::rules::network_policy::{self, MANAGED_BY};

/// The field manager of every policy the controller applies.
pub const FIELD_MANAGER: &str = "raygate-network-policies";

/// A pass with a failed write is retried this soon.
const RETRY: Duration = Duration::from_secs(10);
/// How long a policy just applied counts as there while the watch has not shown it yet.
const WRITTEN_GRACE: Duration = Duration::from_secs(30);
/// How often a follower checks whether it leads now.
const POLL: Duration = Duration::from_secs(1);
/// The NetworkPolicy watch may fail this long before the controller stops writing: past it,
/// a policy someone wrote may be missing from the cache.
const STALE_AFTER: Duration = Duration::from_secs(60);

/// The kinds whose objects get a policy. RayCronJob is left out: see the module's comment.
const SOURCES: [ClusterSource; 3] = [
    ClusterSource::RayCluster,
    ClusterSource::RayJob,
    ClusterSource::RayService,
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot apply NetworkPolicy {namespace}/{name}: {source}")]
    Apply {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the generated NetworkPolicy {name} is not a NetworkPolicy: {source}")]
    Generated {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// What the controller was asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Only namespaces whose labels match this selector; all when `None`.
    pub namespace_selector: Option<String>,
    /// Every object is looked at again this often, events or not.
    pub resync: Duration,
}

/// A running controller.
pub struct NetworkPolicyController {
    task: JoinHandle<()>,
}

impl NetworkPolicyController {
    /// Starts the watches and the loop. It writes only while `leadership` says this replica
    /// leads.
    pub fn start(
        client: Client,
        settings: Settings,
        engine: LiveEngine,
        leadership: Leadership,
        metrics: NetworkPolicyControllerMetrics,
        watch_metrics: &WatchMetrics,
    ) -> NetworkPolicyController {
        let changed = Arc::new(Notify::new());
        let caches = Caches::start(&client, &settings, watch_metrics, &changed);
        let controller = Controller {
            client,
            resync: settings.resync,
            engine,
            caches,
            metrics,
            foreign: BTreeSet::new(),
            written: BTreeMap::new(),
        };
        let task = tokio::spawn(controller.run(leadership, changed));
        NetworkPolicyController { task }
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

/// The watch caches the controller decides from.
struct Caches {
    ray: Vec<(ClusterSource, Store<DynamicObject>, Arc<WatchHealth>)>,
    policies: Store<NetworkPolicy>,
    policy_health: Arc<WatchHealth>,
    /// The namespaces the selector matches, when there is one.
    namespaces: Option<(Store<Namespace>, Arc<WatchHealth>)>,
}

impl Caches {
    fn start(
        client: &Client,
        settings: &Settings,
        metrics: &WatchMetrics,
        changed: &Arc<Notify>,
    ) -> Caches {
        let ray = SOURCES
            .into_iter()
            .map(|source| {
                let resource = ray_resource(source.kind(), source.plural());
                let writer = reflector::store::Writer::new(resource.clone());
                let store = writer.as_reader();
                let health = cluster::spawn_reacting_watch(
                    Api::<DynamicObject>::all_with(client.clone(), &resource),
                    watcher::Config::default(),
                    writer,
                    cluster::trim_ray_object,
                    source.plural(),
                    metrics,
                    changed.clone(),
                );
                (source, store, health)
            })
            .collect();
        let (policies, writer) = reflector::store();
        let policy_health = cluster::spawn_reacting_watch(
            Api::<NetworkPolicy>::all(client.clone()),
            watcher::Config::default(),
            writer,
            |p: &mut NetworkPolicy| p.managed_fields_mut().clear(),
            "networkpolicies",
            metrics,
            changed.clone(),
        );
        // The API server filters by the selector, so a namespace that gains the labels
        // arrives as an event.
        let namespaces = settings.namespace_selector.as_ref().map(|selector| {
            let (store, writer) = reflector::store();
            let health = cluster::spawn_reacting_watch(
                Api::<Namespace>::all(client.clone()),
                watcher::Config::default().labels(selector),
                writer,
                cluster::trim_namespace,
                "namespaces",
                metrics,
                changed.clone(),
            );
            (store, health)
        });
        Caches {
            ray,
            policies,
            policy_health,
            namespaces,
        }
    }

    /// Every cache has listed, and the NetworkPolicy one is not stale: deciding from less
    /// could write a policy for a cluster that one already covers.
    fn ready(&self) -> bool {
        self.policy_health.usable(STALE_AFTER)
            && self.ray.iter().all(|(_, _, health)| health.synced())
            && self.namespaces.as_ref().is_none_or(|(_, h)| h.synced())
    }

    fn selects_namespace(&self, namespace: &str) -> bool {
        match &self.namespaces {
            None => true,
            Some((store, _)) => store.get(&reflector::ObjectRef::new(namespace)).is_some(),
        }
    }
}

/// What one Ray object needs.
enum Outcome {
    Nothing,
    Created,
    Updated,
    Foreign,
}

struct Controller {
    client: Client,
    resync: Duration,
    engine: LiveEngine,
    caches: Caches,
    metrics: NetworkPolicyControllerMetrics,
    /// Generated names taken by a policy raygate did not create, warned about once.
    foreign: BTreeSet<(String, String)>,
    /// Policies applied that the cache has not shown yet, by (namespace, name): the owner's
    /// uid, the spec written and when. Keeps a pass that runs before the watch catches up from
    /// writing (and counting) them again.
    written: BTreeMap<(String, String), (String, NetworkPolicySpec, Instant)>,
}

impl Controller {
    async fn run(mut self, leadership: Leadership, changed: Arc<Notify>) {
        let mut dirty = true;
        let mut led = false;
        let mut next_pass = Instant::now();
        loop {
            tokio::select! {
                () = changed.notified() => dirty = true,
                () = tokio::time::sleep(POLL) => {}
            }
            if !leadership.is_leader() {
                led = false;
                continue;
            }
            // A replica that takes over looks at everything at once.
            dirty |= !led || Instant::now() >= next_pass;
            led = true;
            if !dirty || !self.caches.ready() {
                continue;
            }
            dirty = false;
            let failed = self.pass().await;
            next_pass = Instant::now()
                + if failed {
                    RETRY.min(self.resync)
                } else {
                    self.resync
                };
        }
    }

    /// Looks at every Ray object once. `true` when a write failed.
    async fn pass(&mut self) -> bool {
        let engine = self.engine.current();
        let plan = engine.policy();
        let mut addresses = None;
        let mut foreign = BTreeSet::new();
        let mut failed = false;
        let objects: Vec<(ClusterSource, Arc<DynamicObject>)> = self
            .caches
            .ray
            .iter()
            .flat_map(|(source, store, _)| store.state().into_iter().map(|o| (*source, o)))
            .collect();
        for (source, object) in objects {
            let result = self
                .reconcile(source, &object, plan, &mut addresses, &mut foreign)
                .await;
            let result = match result {
                Ok(Outcome::Nothing) => continue,
                Ok(Outcome::Created) => "created",
                Ok(Outcome::Updated) => "updated",
                Ok(Outcome::Foreign) => "foreign",
                Err(error) => {
                    tracing::warn!(%error, "NetworkPolicy not written; retrying");
                    failed = true;
                    "failed"
                }
            };
            self.metrics
                .generated
                .get_or_create(&GeneratedLabels { result })
                .inc();
        }
        self.foreign = foreign;
        self.metrics.passes.inc();
        failed
    }

    async fn reconcile(
        &mut self,
        source: ClusterSource,
        object: &DynamicObject,
        plan: &Policy,
        addresses: &mut Option<Vec<String>>,
        foreign: &mut BTreeSet<(String, String)>,
    ) -> Result<Outcome, Error> {
        let (Some(namespace), Some(uid)) = (object.namespace(), object.uid()) else {
            return Ok(Outcome::Nothing);
        };
        // One being deleted needs nothing; garbage collection takes its policy.
        if object.metadata.deletion_timestamp.is_some()
            || !self.caches.selects_namespace(&namespace)
        {
            return Ok(Outcome::Nothing);
        }
        // Lists and watches may leave out an item's kind; the store knows it.
        let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
        value["apiVersion"] = json!("ray.io/v1");
        value["kind"] = json!(source.kind());
        let Some(view) = ObjectRef::from_value(&value) else {
            return Ok(Outcome::Nothing);
        };
        let Target::Cluster(cluster) = Target::of(&view) else {
            // A RayJob that runs on an existing cluster (clusterSelector) has no Pods.
            return Ok(Outcome::Nothing);
        };
        // A RayCluster KubeRay generated for a RayJob or RayService: the owner's policy.
        if cluster.creator() != source {
            return Ok(Outcome::Nothing);
        }
        if cluster.autoscaling() && addresses.is_none() {
            *addresses = Some(self.api_server_addresses(plan).await);
        }
        let Some(generated) = network_policy::generate(
            &cluster,
            Some(&namespace),
            plan,
            addresses.as_deref().unwrap_or_default(),
        ) else {
            tracing::debug!(kind = source.kind(), %namespace, name = cluster.name,
                "its Pods carry no label a NetworkPolicy could select them by; skipped");
            return Ok(Outcome::Nothing);
        };
        let key = (namespace.clone(), generated.name.clone());
        let existing = self
            .caches
            .policies
            .get(&reflector::ObjectRef::new(&generated.name).within(&namespace));
        let desired = desired_object(&generated.object, source, cluster.name, &uid);
        let desired_spec = spec_of(&desired).map_err(|source| Error::Generated {
            name: generated.name.clone(),
            source,
        })?;
        match &existing {
            Some(current) if !created_for(current, source, cluster.name) => {
                let first = !self.foreign.contains(&key);
                if first {
                    tracing::warn!(%namespace, name = %generated.name, kind = source.kind(),
                        object = cluster.name,
                        "a NetworkPolicy raygate did not create has the name raygate would give this object's; left alone");
                }
                foreign.insert(key);
                return Ok(if first {
                    Outcome::Foreign
                } else {
                    Outcome::Nothing
                });
            }
            Some(current) => {
                self.written.remove(&key);
                let same_owner = owner_uid(current, source, cluster.name) == Some(uid.as_str());
                if same_owner && current.spec.as_ref() == Some(&desired_spec) {
                    return Ok(Outcome::Nothing);
                }
            }
            None => {
                if self.written.get(&key).is_some_and(|(u, s, at)| {
                    *u == uid && *s == desired_spec && at.elapsed() < WRITTEN_GRACE
                }) {
                    return Ok(Outcome::Nothing);
                }
                let in_namespace = self
                    .caches
                    .policies
                    .state_filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()));
                if network_policy::selected_by_any(&cluster, &namespace, &in_namespace) {
                    return Ok(Outcome::Nothing);
                }
            }
        }
        self.apply(&namespace, &generated.name, &desired).await?;
        tracing::info!(%namespace, name = %generated.name, kind = source.kind(), object = cluster.name,
            created = existing.is_none(), "applied the generated NetworkPolicy");
        self.written
            .insert(key, (uid, desired_spec, Instant::now()));
        Ok(if existing.is_some() {
            Outcome::Updated
        } else {
            Outcome::Created
        })
    }

    async fn apply(&self, namespace: &str, name: &str, desired: &Value) -> Result<(), Error> {
        let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), namespace);
        // force=false: a field another manager set is a conflict, never taken over.
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(desired),
        )
        .await
        .map(drop)
        .map_err(|source| Error::Apply {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })
    }

    /// The plan's addresses, else the endpoints of the `kubernetes` Service. Empty when
    /// neither is known: the generated rule then says how to narrow it.
    async fn api_server_addresses(&self, plan: &Policy) -> Vec<String> {
        let planned = &plan.spec().network_policy.api_server_addresses;
        if !planned.is_empty() {
            return planned.clone();
        }
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), "default");
        match api.get("kubernetes").await {
            Ok(endpoints) => endpoint_cidrs(&endpoints),
            Err(error) => {
                tracing::warn!(%error, "cannot read the kubernetes Endpoints; the API server rule allows any address");
                Vec::new()
            }
        }
    }
}

/// The generated policy with raygate's label and the Ray object as its (non-controller)
/// owner: garbage collection deletes it with the object, and no finalizer permission is
/// needed because blockOwnerDeletion is left unset.
fn desired_object(generated: &Value, source: ClusterSource, name: &str, uid: &str) -> Value {
    let mut object = generated.clone();
    object["metadata"]["labels"] = json!({MANAGED_BY.0: MANAGED_BY.1});
    object["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "ray.io/v1",
        "kind": source.kind(),
        "name": name,
        "uid": uid,
    }]);
    object
}

fn spec_of(object: &Value) -> Result<NetworkPolicySpec, serde_json::Error> {
    serde_json::from_value(object.get("spec").cloned().unwrap_or(Value::Null))
}

/// The uid of the owner reference to the Ray object `kind`/`name`.
fn owner_uid<'a>(policy: &'a NetworkPolicy, source: ClusterSource, name: &str) -> Option<&'a str> {
    policy
        .owner_references()
        .iter()
        .find(|r| r.api_version.starts_with("ray.io/") && r.kind == source.kind() && r.name == name)
        .map(|r| r.uid.as_str())
}

/// Whether raygate created `policy` for the Ray object `kind`/`name`: its label, and an owner
/// reference to an object of that kind and name (of any uid: one deleted and created again
/// keeps its policy, which is then handed to the new object).
fn created_for(policy: &NetworkPolicy, source: ClusterSource, name: &str) -> bool {
    let labelled = policy
        .labels()
        .get(MANAGED_BY.0)
        .is_some_and(|v| v == MANAGED_BY.1);
    labelled && owner_uid(policy, source, name).is_some()
}

/// The addresses of `endpoints`, as /32 or /128 blocks.
fn endpoint_cidrs(endpoints: &Endpoints) -> Vec<String> {
    let mut cidrs: Vec<String> = endpoints
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter_map(|a| a.ip.parse::<IpAddr>().ok())
        .map(|ip| match ip {
            IpAddr::V4(v4) => format!("{v4}/32"),
            IpAddr::V6(v6) => format!("{v6}/128"),
        })
        .collect();
    cidrs.sort();
    cidrs.dedup();
    cidrs
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EndpointAddress, EndpointSubset};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn policy(labels: &[(&str, &str)], owner: Option<(&str, &str)>) -> NetworkPolicy {
        NetworkPolicy {
            metadata: ObjectMeta {
                name: Some("raygate-raycluster-a".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                owner_references: owner.map(|(kind, name)| {
                    vec![OwnerReference {
                        api_version: "ray.io/v1".into(),
                        kind: kind.into(),
                        name: name.into(),
                        uid: "u1".into(),
                        ..OwnerReference::default()
                    }]
                }),
                ..ObjectMeta::default()
            },
            spec: None,
        }
    }

    #[test]
    fn only_a_labelled_policy_owned_by_the_object_is_raygates() {
        let ours = policy(&[MANAGED_BY], Some(("RayCluster", "a")));
        assert!(created_for(&ours, ClusterSource::RayCluster, "a"));
        assert_eq!(owner_uid(&ours, ClusterSource::RayCluster, "a"), Some("u1"));
        assert!(!created_for(&ours, ClusterSource::RayJob, "a"));
        assert!(!created_for(&ours, ClusterSource::RayCluster, "b"));
        let unlabelled = policy(&[], Some(("RayCluster", "a")));
        assert!(!created_for(&unlabelled, ClusterSource::RayCluster, "a"));
        let unowned = policy(&[MANAGED_BY], None);
        assert!(!created_for(&unowned, ClusterSource::RayCluster, "a"));
    }

    #[test]
    fn the_desired_object_carries_the_label_and_a_plain_owner_reference() {
        let generated = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "raygate-rayjob-j", "namespace": "ns"}, "spec": {}});
        let desired = desired_object(&generated, ClusterSource::RayJob, "j", "u9");
        assert_eq!(
            desired["metadata"]["labels"],
            json!({"app.kubernetes.io/managed-by": "raygate"})
        );
        assert_eq!(
            desired["metadata"]["ownerReferences"],
            json!([{"apiVersion": "ray.io/v1", "kind": "RayJob", "name": "j", "uid": "u9"}])
        );
        assert_eq!(desired["metadata"]["namespace"], "ns");
    }

    #[test]
    fn endpoint_addresses_become_host_blocks() {
        let address = |ip: &str| EndpointAddress {
            ip: ip.into(),
            ..EndpointAddress::default()
        };
        let endpoints = Endpoints {
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![
                    address("10.0.0.2"),
                    address("fd00::1"),
                    address("10.0.0.2"),
                    address("not an ip"),
                ]),
                ..EndpointSubset::default()
            }]),
            ..Endpoints::default()
        };
        assert_eq!(
            endpoint_cidrs(&endpoints),
            vec!["10.0.0.2/32".to_owned(), "fd00::1/128".to_owned()]
        );
    }
}
