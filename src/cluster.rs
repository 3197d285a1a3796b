//! The cluster state the webhook consults: watch caches of NetworkPolicies, RayClusters and
//! Namespaces (their labels).
//!
//! Requests only read the in-memory stores; the watches run in the background, so an
//! admission never waits on the API server.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ResourceExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};

use crate::admission::ClusterState;
use crate::metrics::{ResourceLabels, WatchMetrics};

/// The custom resources raygate reads, as `(kind, plural)` of `ray.io/v1`: one per
/// [`ClusterSource`](crate::ray::ClusterSource).
pub const RAY_KINDS: [(&str, &str); 4] = {
    let [a, b, c, d] = crate::ray::ClusterSource::ALL;
    [
        (a.kind(), a.plural()),
        (b.kind(), b.plural()),
        (c.kind(), c.plural()),
        (d.kind(), d.plural()),
    ]
};

pub fn ray_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("ray.io", "v1", kind), plural)
}

/// Whether one watch has listed its resource and is keeping up.
pub struct WatchHealth {
    resource: &'static str,
    started: Instant,
    synced: AtomicBool,
    /// Milliseconds after `started` when the watch began failing; `u64::MAX` when healthy.
    failing_since_ms: AtomicU64,
}

impl WatchHealth {
    fn new(resource: &'static str) -> WatchHealth {
        WatchHealth {
            resource,
            started: Instant::now(),
            synced: AtomicBool::new(false),
            failing_since_ms: AtomicU64::new(u64::MAX),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Listed, and not failing for longer than `stale_after`.
    pub fn usable(&self, stale_after: Duration) -> bool {
        if !self.synced() {
            return false;
        }
        let since = self.failing_since_ms.load(Ordering::Acquire);
        since == u64::MAX
            || self.now_ms().saturating_sub(since)
                <= u64::try_from(stale_after.as_millis()).unwrap_or(u64::MAX)
    }

    fn healthy(&self) {
        self.failing_since_ms.store(u64::MAX, Ordering::Release);
    }

    fn failing(&self) {
        let now = self.now_ms();
        let _ = self.failing_since_ms.compare_exchange(
            u64::MAX,
            now,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

/// Watch caches of the cluster objects admission decisions depend on.
#[derive(Clone)]
pub struct ClusterCache {
    network_policies: Arc<NamespacedStore<NetworkPolicy>>,
    ray_clusters: Arc<NamespacedStore<DynamicObject>>,
    namespaces: Store<Namespace>,
    network_policy_health: Arc<WatchHealth>,
    ray_cluster_health: Arc<WatchHealth>,
    namespace_health: Arc<WatchHealth>,
    stale_after: Duration,
    sync_timeout: Duration,
}

impl ClusterCache {
    /// Starts the watches on the current tokio runtime.
    pub fn start(
        client: Client,
        metrics: &WatchMetrics,
        stale_after: Duration,
        sync_timeout: Duration,
    ) -> ClusterCache {
        let network_policy_health = Arc::new(WatchHealth::new("networkpolicies"));
        let network_policies = Arc::new(NamespacedStore::default());
        spawn_watch(
            Api::<NetworkPolicy>::all(client.clone()),
            NamespacedStore::writer(&network_policies),
            |p| p.managed_fields_mut().clear(),
            &network_policy_health,
            metrics,
        );

        // NetworkPolicy namespaceSelectors match namespaces by their labels.
        let namespace_health = Arc::new(WatchHealth::new("namespaces"));
        let (namespaces, writer) = reflector::store();
        spawn_watch(
            Api::<Namespace>::all(client.clone()),
            into_reflector(writer),
            trim_namespace,
            &namespace_health,
            metrics,
        );

        let ray_cluster_health = Arc::new(WatchHealth::new("rayclusters"));
        let resource = ray_resource("RayCluster", "rayclusters");
        let ray_clusters = Arc::new(NamespacedStore::default());
        spawn_watch(
            Api::<DynamicObject>::all_with(client, &resource),
            NamespacedStore::writer(&ray_clusters),
            trim_ray_object,
            &ray_cluster_health,
            metrics,
        );

        spawn_synced_gauges(
            [
                network_policy_health.clone(),
                ray_cluster_health.clone(),
                namespace_health.clone(),
            ],
            stale_after,
            metrics,
        );
        ClusterCache {
            network_policies,
            ray_clusters,
            namespaces,
            network_policy_health,
            ray_cluster_health,
            namespace_health,
            stale_after,
            sync_timeout,
        }
    }

    pub fn network_policies_synced(&self) -> bool {
        self.network_policy_health.synced()
    }
}

/// Only a namespace's labels are read.
pub fn trim_namespace(namespace: &mut Namespace) {
    namespace.managed_fields_mut().clear();
    namespace.metadata.annotations = None;
    namespace.spec = None;
    namespace.status = None;
}

/// Only the spec and metadata are read; status churns and costs memory.
pub fn trim_ray_object(cluster: &mut DynamicObject) {
    cluster.managed_fields_mut().clear();
    if let Some(map) = cluster.data.as_object_mut() {
        map.remove("status");
    }
}

/// `raygate_cache_synced` falls back to 0 while a watch is stale, as its help says.
fn spawn_synced_gauges(
    healths: [Arc<WatchHealth>; 3],
    stale_after: Duration,
    metrics: &WatchMetrics,
) {
    let synced_gauges = metrics.cache_synced.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            for health in &healths {
                let labels = ResourceLabels {
                    resource: health.resource.to_owned(),
                };
                synced_gauges
                    .get_or_create(&labels)
                    .set(i64::from(health.usable(stale_after)));
            }
        }
    });
}

/// Watches `api` into a store through `apply`, with each object trimmed to what is read, and
/// keeps `health` and the watch metrics up to date.
fn spawn_watch<K>(
    api: Api<K>,
    apply: impl FnMut(&watcher::Event<K>) + Send + 'static,
    trim: impl FnMut(&mut K) + Send + 'static,
    health: &Arc<WatchHealth>,
    metrics: &WatchMetrics,
) where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    spawn_watch_with(
        api,
        watcher::Config::default(),
        apply,
        trim,
        health,
        metrics,
        None,
    );
}

/// A watch cache for a controller: `config` narrows what is watched, and `changed` is woken
/// on every event once the first list is in.
pub fn spawn_reacting_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
    trim: impl FnMut(&mut K) + Send + 'static,
    resource: &'static str,
    metrics: &WatchMetrics,
    changed: Arc<tokio::sync::Notify>,
) -> Arc<WatchHealth>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let health = Arc::new(WatchHealth::new(resource));
    spawn_watch_with(
        api,
        config,
        into_reflector(writer),
        trim,
        &health,
        metrics,
        Some(changed),
    );
    health
}

/// Applies a watch's events to a kube reflector store.
fn into_reflector<K>(
    mut writer: reflector::store::Writer<K>,
) -> impl FnMut(&watcher::Event<K>) + Send + 'static
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    move |event| writer.apply_watcher_event(event)
}

fn spawn_watch_with<K>(
    api: Api<K>,
    config: watcher::Config,
    mut apply: impl FnMut(&watcher::Event<K>) + Send + 'static,
    trim: impl FnMut(&mut K) + Send + 'static,
    health: &Arc<WatchHealth>,
    metrics: &WatchMetrics,
    changed: Option<Arc<tokio::sync::Notify>>,
) where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let stream = watcher(api, config)
        .default_backoff()
        .modify(trim)
        .inspect(move |event| {
            if let Ok(event) = event {
                apply(event);
            }
        });
    tokio::spawn(follow(stream, health.clone(), metrics.clone(), changed));
}

async fn follow<K, S>(
    stream: S,
    health: Arc<WatchHealth>,
    metrics: WatchMetrics,
    changed: Option<Arc<tokio::sync::Notify>>,
) where
    K: Resource,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let labels = ResourceLabels {
        resource: health.resource.to_owned(),
    };
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::InitDone) => {
                health.healthy();
                if !health.synced.swap(true, Ordering::AcqRel) {
                    tracing::info!(resource = health.resource, "watch cache synced");
                }
                metrics.cache_synced.get_or_create(&labels).set(1);
                if let Some(changed) = &changed {
                    changed.notify_one();
                }
            }
            Ok(event) => {
                health.healthy();
                // Events of the first list come before InitDone; one wake-up after it does.
                if let Some(changed) = &changed
                    && matches!(event, watcher::Event::Apply(_) | watcher::Event::Delete(_))
                {
                    changed.notify_one();
                }
            }
            Err(error) => {
                health.failing();
                metrics.watch_errors.get_or_create(&labels).inc();
                tracing::warn!(resource = health.resource, %error, "watch failed; retrying");
            }
        }
    }
}

impl ClusterState for ClusterCache {
    /// Ready once NetworkPolicies are listed. If they cannot be listed within the sync
    /// timeout, raygate serves anyway and reports coverage as unverified: a missing
    /// permission must never take Ray admission down with it.
    fn ready(&self) -> bool {
        self.network_policy_health.synced()
            || self.network_policy_health.started.elapsed() >= self.sync_timeout
    }

    fn network_policies(&self, namespace: &str) -> Option<Vec<Arc<NetworkPolicy>>> {
        self.network_policy_health
            .usable(self.stale_after)
            .then(|| self.network_policies.in_namespace(namespace))
    }

    fn ray_clusters(&self, namespace: &str) -> Option<Vec<Arc<DynamicObject>>> {
        self.ray_cluster_health
            .usable(self.stale_after)
            .then(|| self.ray_clusters.in_namespace(namespace))
    }

    fn ray_cluster(&self, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
        if !self.ray_cluster_health.usable(self.stale_after) {
            return None;
        }
        self.ray_clusters.get(namespace, name)
    }

    fn namespace_labels(
        &self,
        namespace: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        if !self.namespace_health.usable(self.stale_after) {
            return None;
        }
        let key = reflector::ObjectRef::<Namespace>::new(namespace);
        self.namespaces
            .get(&key)
            .map(|n| n.metadata.labels.clone().unwrap_or_default())
    }
}

/// A watch cache indexed by namespace, then name. Admission reads one namespace at a time
/// (a Pod's policies, its RayCluster); a flat store would make each read scan every
/// object in the cluster. Names are kept in order, so that what is read is deterministic.
pub struct NamespacedStore<K> {
    objects: RwLock<Namespaces<K>>,
}

type Namespaces<K> = HashMap<String, BTreeMap<String, Arc<K>>, foldhash::fast::RandomState>;

impl<K> Default for NamespacedStore<K> {
    fn default() -> Self {
        NamespacedStore {
            objects: RwLock::new(Namespaces::default()),
        }
    }
}

impl<K> NamespacedStore<K> {
    // Poisoning is ignored: each change under the lock is one map operation, and the maps
    // stay whole if it panics.
    fn read(&self) -> RwLockReadGuard<'_, Namespaces<K>> {
        self.objects.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Namespaces<K>> {
        self.objects.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Resource + Clone> NamespacedStore<K> {
    /// The objects of a namespace, by name.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.read()
            .get(namespace)
            .map(|named| named.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.read().get(namespace)?.get(name).cloned()
    }

    /// Applies a watch's events: a relist (`Init` .. `InitDone`) replaces the whole store
    /// at its end, as the reflector's store does, so reads never see half a list.
    pub fn writer(store: &Arc<Self>) -> impl FnMut(&watcher::Event<K>) + Send + 'static
    where
        K: Send + Sync + 'static,
    {
        let store = store.clone();
        let mut relisted: Option<Namespaces<K>> = None;
        move |event| match event {
            watcher::Event::Apply(object) => insert(&mut store.write(), object),
            watcher::Event::Delete(object) => {
                let mut objects = store.write();
                let meta = object.meta();
                let namespace = meta.namespace.as_deref().unwrap_or_default();
                if let Some(named) = objects.get_mut(namespace) {
                    named.remove(meta.name.as_deref().unwrap_or_default());
                    if named.is_empty() {
                        objects.remove(namespace);
                    }
                }
            }
            watcher::Event::Init => relisted = Some(Namespaces::default()),
            watcher::Event::InitApply(object) => {
                if let Some(relisted) = &mut relisted {
                    insert(relisted, object);
                }
            }
            watcher::Event::InitDone => {
                if let Some(relisted) = relisted.take() {
                    *store.write() = relisted;
                }
            }
        }
    }
}

fn insert<K: Resource + Clone>(objects: &mut Namespaces<K>, object: &K) {
    let meta = object.meta();
    let (Some(name), namespace) = (meta.name.clone(), meta.namespace.clone()) else {
        return;
    };
    objects
        .entry(namespace.unwrap_or_default())
        .or_default()
        .insert(name, Arc::new(object.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(namespace: &str, name: &str) -> NetworkPolicy {
        let mut policy = NetworkPolicy::default();
        policy.metadata.namespace = Some(namespace.to_owned());
        policy.metadata.name = Some(name.to_owned());
        policy
    }

    fn names(objects: &[Arc<NetworkPolicy>]) -> Vec<&str> {
        objects
            .iter()
            .map(|p| p.metadata.name.as_deref().unwrap_or_default())
            .collect()
    }

    #[test]
    fn the_namespaced_store_reads_one_namespace_in_name_order() {
        let store = Arc::new(NamespacedStore::default());
        let mut apply = NamespacedStore::writer(&store);
        for (namespace, name) in [("a", "z"), ("b", "y"), ("a", "m"), ("a", "b")] {
            apply(&watcher::Event::Apply(policy(namespace, name)));
        }
        assert_eq!(names(&store.in_namespace("a")), ["b", "m", "z"]);
        assert_eq!(names(&store.in_namespace("b")), ["y"]);
        assert!(store.in_namespace("c").is_empty());
        assert_eq!(
            names(&store.get("a", "m").into_iter().collect::<Vec<_>>()),
            ["m"]
        );
        assert!(
            store.get("b", "m").is_none(),
            "a name is looked up in its namespace only"
        );

        let mut changed = policy("a", "m");
        changed.metadata.labels = Some([("k".to_owned(), "v".to_owned())].into());
        apply(&watcher::Event::Apply(changed));
        assert!(store.get("a", "m").unwrap().metadata.labels.is_some());
        assert_eq!(store.in_namespace("a").len(), 3, "an update replaces");

        apply(&watcher::Event::Delete(policy("a", "m")));
        apply(&watcher::Event::Delete(policy("b", "y")));
        assert_eq!(names(&store.in_namespace("a")), ["b", "z"]);
        assert!(store.in_namespace("b").is_empty());
        assert!(store.read().get("b").is_none(), "an emptied namespace goes");
    }

    #[test]
    fn a_relist_replaces_the_namespaced_store_only_when_done() {
        let store = Arc::new(NamespacedStore::default());
        let mut apply = NamespacedStore::writer(&store);
        apply(&watcher::Event::Apply(policy("a", "gone")));
        apply(&watcher::Event::Init);
        apply(&watcher::Event::InitApply(policy("a", "kept")));
        assert_eq!(
            names(&store.in_namespace("a")),
            ["gone"],
            "half a list is not read"
        );
        apply(&watcher::Event::InitApply(policy("b", "new")));
        apply(&watcher::Event::InitDone);
        assert_eq!(names(&store.in_namespace("a")), ["kept"]);
        assert_eq!(names(&store.in_namespace("b")), ["new"]);
        // An InitApply without its Init (never sent by the watcher) changes nothing.
        apply(&watcher::Event::InitApply(policy("c", "stray")));
        apply(&watcher::Event::InitDone);
        assert!(store.in_namespace("c").is_empty());
    }

    #[test]
    fn a_watch_is_usable_only_once_synced_and_until_stale() {
        let health = WatchHealth::new("test");
        assert!(!health.usable(Duration::from_secs(60)));
        health.synced.store(true, Ordering::Release);
        assert!(health.usable(Duration::from_secs(60)));
        health.failing();
        assert!(health.usable(Duration::from_secs(60)), "within the grace");
        assert!(!health.usable(Duration::ZERO) || health.now_ms() == 0);
        health.healthy();
        assert!(health.usable(Duration::ZERO));
    }
}
