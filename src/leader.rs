//! One leader among replicas: a `coordination.k8s.io/v1` Lease, with client-go's
//! leader-election semantics (lease duration, renew deadline, retry period, release on
//! shutdown). Admission never looks at it; the background audit and the NetworkPolicy
//! controller run only on the leader.
//!
//! As in client-go, expiry is judged on this process's own clock: a record counts as expired
//! once it has not changed for a lease duration since this process last saw it change, so a
//! skewed clock on another replica cannot make two leaders.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// The Lease the replicas share. Named for the audit, its first user; the NetworkPolicy
/// controller shares it, and deployed RBAC names it.
pub const LEASE_NAME: &str = "raygate-audit";

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name in `holderIdentity`.
    pub identity: String,
    /// How long others wait after the last renewal they saw before taking over.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down.
    pub renew_deadline: Duration,
    /// How often every replica tries to acquire or renew.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults (15 s, 10 s, 2 s).
    pub fn new(namespace: String, identity: String) -> LeaseConfig {
        LeaseConfig {
            namespace,
            name: LEASE_NAME.to_owned(),
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a replica knows of the Lease, and decides from it. Pure: the I/O is in [`run`].
#[derive(Debug)]
struct Elector {
    config: LeaseConfig,
    /// The holder and renew time last read, and when this process saw them change.
    observed: Option<(String, Option<MicroTime>, Instant)>,
    /// When the leader last renewed successfully.
    renewed_at: Option<Instant>,
}

/// What to write, if anything, after reading the Lease.
#[derive(Debug, PartialEq)]
enum Step {
    /// Someone else holds a live lease.
    Follow,
    /// Write this spec (create when there is no Lease).
    Write(LeaseSpec),
}

impl Elector {
    fn new(config: LeaseConfig) -> Elector {
        Elector {
            config,
            observed: None,
            renewed_at: None,
        }
    }

    fn decide(&mut self, current: Option<&LeaseSpec>, now: Instant, wall: MicroTime) -> Step {
        let seconds = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let ours = |acquired: Option<MicroTime>, transitions: i32| LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(seconds),
            acquire_time: acquired.or_else(|| Some(wall.clone())),
            renew_time: Some(wall.clone()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        };
        let Some(spec) = current else {
            return Step::Write(ours(None, 0));
        };
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let renew = spec.renew_time.clone();
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|(h, r, _)| *h != holder || *r != renew);
        if changed {
            self.observed = Some((holder.clone(), renew, now));
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        if holder == self.config.identity {
            return Step::Write(ours(spec.acquire_time.clone(), transitions));
        }
        let seen_at = self.observed.as_ref().map_or(now, |(_, _, at)| *at);
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.lease_duration, Duration::from_secs);
        if holder.is_empty() || now.duration_since(seen_at) > duration {
            return Step::Write(ours(None, transitions + 1));
        }
        Step::Follow
    }

    /// Whether this replica leads at `now`: it renewed within the renew deadline.
    fn leading(&self, now: Instant) -> bool {
        self.renewed_at
            .is_some_and(|at| now.duration_since(at) <= self.config.renew_deadline)
    }
}

/// Whether this replica currently leads, as [`run`] keeps it.
#[derive(Clone, Default)]
pub struct Leadership(Arc<AtomicBool>);

impl Leadership {
    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Tries to acquire or renew every retry period until `stop` resolves, then releases the
/// Lease if it holds it, so that another replica takes over at once.
pub async fn run(
    client: kube::Client,
    config: LeaseConfig,
    leadership: Leadership,
    stop: impl std::future::Future<Output = ()>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut elector = Elector::new(config);
    let mut ticker = tokio::time::interval(elector.config.retry_period);
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut stop => break,
        }
        let now = Instant::now();
        match try_once(&api, &mut elector, now).await {
            Ok(true) => elector.renewed_at = Some(now),
            Ok(false) => elector.renewed_at = None,
            Err(error) => tracing::warn!(%error, lease = %elector.config.name, "lease not renewed"),
        }
        let leading = elector.leading(Instant::now());
        if leadership.0.swap(leading, Ordering::AcqRel) != leading {
            tracing::info!(
                identity = %elector.config.identity,
                leading,
                "leadership changed"
            );
        }
    }
    if leadership.0.swap(false, Ordering::AcqRel) {
        release(&api, &elector.config).await;
    }
}

/// One round: read, decide, write. `Ok(true)` when this replica holds the Lease after it.
async fn try_once(api: &Api<Lease>, elector: &mut Elector, now: Instant) -> kube::Result<bool> {
    let current = api.get_opt(&elector.config.name).await?;
    let wall = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let step = elector.decide(current.as_ref().and_then(|l| l.spec.as_ref()), now, wall);
    let Step::Write(spec) = step else {
        return Ok(false);
    };
    let written = match current {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(elector.config.name.clone()),
                    namespace: Some(elector.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await
        }
        // The resourceVersion read above makes this a compare-and-swap: of two replicas
        // taking over at once, one gets a conflict.
        Some(mut lease) => {
            lease.spec = Some(spec);
            api.replace(&elector.config.name, &PostParams::default(), &lease)
                .await
        }
    };
    match written {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// client-go's release: an empty holder and a one-second lease.
async fn release(api: &Api<Lease>, config: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => tracing::info!(identity = %config.identity, "released the lease"),
        Err(error) => tracing::warn!(%error, "could not release the lease"),
    }
}

/// This replica's identity: its Pod name (`HOSTNAME`) and process id.
pub fn identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "raygate".to_owned());
    format!("{host}_{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(identity: &str) -> LeaseConfig {
        LeaseConfig::new("ns".into(), identity.into())
    }

    fn wall(seconds: i64) -> MicroTime {
        MicroTime(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(wall(renewed)),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_missing_lease_is_created_and_our_own_is_renewed() {
        let mut a = Elector::new(config("a"));
        let t0 = Instant::now();
        let Step::Write(spec) = a.decide(None, t0, wall(100)) else {
            panic!()
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(0));
        let Step::Write(renewed) = a.decide(Some(&spec), t0, wall(102)) else {
            panic!()
        };
        assert_eq!(renewed.renew_time, Some(wall(102)));
        assert_eq!(renewed.acquire_time, spec.acquire_time, "acquired once");
    }

    #[test]
    fn a_live_lease_is_followed_until_it_stops_changing_for_a_lease_duration() {
        let mut b = Elector::new(config("b"));
        let t0 = Instant::now();
        let lease = held_by("a", 100);
        assert_eq!(b.decide(Some(&lease), t0, wall(100)), Step::Follow);
        // Renewed by its holder: still followed, however long it has been held.
        let renewed = held_by("a", 110);
        let t1 = t0 + Duration::from_secs(14);
        assert_eq!(b.decide(Some(&renewed), t1, wall(110)), Step::Follow);
        assert_eq!(
            b.decide(Some(&renewed), t1 + Duration::from_secs(15), wall(125)),
            Step::Follow
        );
        // Unchanged for longer than the lease duration on our own clock: taken over.
        let Step::Write(spec) = b.decide(Some(&renewed), t1 + Duration::from_secs(16), wall(126))
        else {
            panic!()
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(4));
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut b = Elector::new(config("b"));
        let mut released = held_by("a", 100);
        released.holder_identity = None;
        assert!(matches!(
            b.decide(Some(&released), Instant::now(), wall(100)),
            Step::Write(_)
        ));
    }

    #[test]
    fn the_leader_steps_down_past_the_renew_deadline() {
        let mut a = Elector::new(config("a"));
        let t0 = Instant::now();
        a.renewed_at = Some(t0);
        assert!(a.leading(t0 + Duration::from_secs(10)));
        assert!(!a.leading(t0 + Duration::from_secs(11)));
    }
}
