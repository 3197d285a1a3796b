//! `raygate certs --publish`: the Helm chart's self-signed step, in raygate's own image (which
//! has no shell). It
//!   1. keeps the TLS Secret when raygate wrote it for the same hosts and it is more than
//!      `renew_before_days` from expiry; otherwise writes new certificates into it (create, or
//!      update in place: the serving Pods hot-reload it);
//!   2. sets the caBundle of every webhook of the Validating- and MutatingWebhookConfiguration
//!      that exist (on a fresh install they do only after the pre-install run, so the
//!      post-install run sets them).
//!
//! On renewal the caBundle holds the old and the new CA, so the API server trusts the serving
//! certificate before and after the kubelet swaps the mounted Secret; the next run drops the
//! old CA.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::tls;

const NOT_AFTER: &str = "raygate.dev/not-after";
const HOSTS: &str = "raygate.dev/hosts";
const DAY: i64 = 86_400;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tls(#[from] tls::Error),
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {0} holds no ca.crt to keep")]
    NoCa(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the certificates go.
pub struct Target<'a> {
    pub namespace: &'a str,
    pub secret: &'a str,
    /// The name of both webhook configurations.
    pub webhook: &'a str,
    pub hosts: &'a [String],
    pub days: u32,
    pub renew_before_days: u32,
}

/// What became of the Secret.
#[derive(Debug, PartialEq, Eq)]
pub enum SecretOutcome {
    Kept,
    Created,
    Renewed,
}

fn kube_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}

/// Whether a Secret raygate wrote earlier still serves `hosts` for long enough.
fn still_valid(secret: &Secret, hosts: &str, now: i64, renew_before_days: u32) -> bool {
    let annotations = secret.metadata.annotations.as_ref();
    let get = |key| annotations.and_then(|a| a.get(key)).map(String::as_str);
    let not_after = get(NOT_AFTER).and_then(|t| t.parse::<i64>().ok());
    get(HOSTS) == Some(hosts)
        && not_after.is_some_and(|t| now < t - i64::from(renew_before_days) * DAY)
}

fn tls_secret(target: &Target<'_>, certs: &tls::GeneratedCerts, now: i64) -> Secret {
    let data = [
        ("tls.crt", &certs.cert_pem),
        ("tls.key", &certs.key_pem),
        ("ca.crt", &certs.ca_pem),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
    .collect();
    let mut secret = Secret {
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Secret::default()
    };
    secret.metadata.name = Some(target.secret.to_owned());
    secret.metadata.namespace = Some(target.namespace.to_owned());
    secret.metadata.annotations = Some(BTreeMap::from([
        (
            NOT_AFTER.to_owned(),
            (now + i64::from(target.days) * DAY).to_string(),
        ),
        (HOSTS.to_owned(), target.hosts.join(",")),
    ]));
    secret
}

/// Keeps or writes the Secret; returns the CA bundle the webhooks must trust.
async fn publish_secret(client: &Client, target: &Target<'_>) -> Result<(SecretOutcome, Vec<u8>)> {
    let api: Api<Secret> = Api::namespaced(client.clone(), target.namespace);
    let name = format!("Secret {}/{}", target.namespace, target.secret);
    let existing = api
        .get_opt(target.secret)
        .await
        .map_err(kube_error(format!("get {name}")))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let old_ca = existing
        .as_ref()
        .and_then(|s| s.data.as_ref()?.get("ca.crt"))
        .map(|ca| ca.0.clone());
    if let Some(secret) = &existing
        && still_valid(
            secret,
            &target.hosts.join(","),
            now,
            target.renew_before_days,
        )
    {
        return Ok((SecretOutcome::Kept, old_ca.ok_or(Error::NoCa(name))?));
    }
    let certs = tls::generate(target.hosts, target.days)?;
    let mut secret = tls_secret(target, &certs, now);
    let outcome = match existing {
        Some(old) => {
            secret.metadata.resource_version = old.metadata.resource_version;
            api.replace(target.secret, &PostParams::default(), &secret)
                .await
                .map_err(kube_error(format!("update {name}")))?;
            SecretOutcome::Renewed
        }
        None => {
            api.create(&PostParams::default(), &secret)
                .await
                .map_err(kube_error(format!("create {name}")))?;
            SecretOutcome::Created
        }
    };
    let mut bundle = old_ca.unwrap_or_default();
    if !bundle.is_empty() && !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(certs.ca_pem.as_bytes());
    Ok((outcome, bundle))
}

/// Sets the caBundle of every webhook of one configuration; `None` when it does not exist.
async fn set_ca_bundle<K>(client: &Client, name: &str, bundle: &str) -> Result<Option<usize>>
where
    K: Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let what = format!("{} {name}", K::kind(&()));
    let Some(config) = api
        .get_opt(name)
        .await
        .map_err(kube_error(format!("get {what}")))?
    else {
        return Ok(None);
    };
    let count = serde_json::to_value(&config)
        .ok()
        .and_then(|v| Some(v.get("webhooks")?.as_array()?.len()))
        .unwrap_or(0);
    let ops: Vec<_> = (0..count)
        .map(|i| json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle}))
        .collect();
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::Value::Array(ops)).expect("a JSON patch");
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map_err(kube_error(format!("patch {what}")))?;
    Ok(Some(count))
}

/// Runs both steps, logging each to stderr as the chart's hook Job shows it.
pub async fn publish(client: &Client, target: &Target<'_>) -> Result<SecretOutcome> {
    let log = |line: String| eprintln!("[raygate-certgen] {line}");
    let hosts = target.hosts.join(",");
    let (outcome, bundle) = publish_secret(client, target).await?;
    let secret = format!("secret {}/{}", target.namespace, target.secret);
    log(match outcome {
        SecretOutcome::Kept => format!(
            "{secret} is valid for {hosts} for more than {} days: kept",
            target.renew_before_days
        ),
        SecretOutcome::Created => format!("{secret}: created for {hosts}"),
        SecretOutcome::Renewed => format!("{secret}: renewed for {hosts}"),
    });
    let bundle = base64::engine::general_purpose::STANDARD.encode(bundle);
    for (kind, set) in [
        (
            "validatingwebhookconfiguration",
            set_ca_bundle::<ValidatingWebhookConfiguration>(client, target.webhook, &bundle)
                .await?,
        ),
        (
            "mutatingwebhookconfiguration",
            set_ca_bundle::<MutatingWebhookConfiguration>(client, target.webhook, &bundle).await?,
        ),
    ] {
        log(match set {
            Some(n) => format!("{kind}/{}: caBundle of {n} webhook(s) set", target.webhook),
            None => format!(
                "{kind}/{}: not there yet; the post-install run sets it",
                target.webhook
            ),
        });
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(not_after: i64, hosts: &str) -> Secret {
        let mut s = Secret::default();
        s.metadata.annotations = Some(BTreeMap::from([
            (NOT_AFTER.to_owned(), not_after.to_string()),
            (HOSTS.to_owned(), hosts.to_owned()),
        ]));
        s
    }

    #[test]
    fn a_secret_is_kept_only_for_the_same_hosts_and_far_enough_from_expiry() {
        let now = 1_000 * DAY;
        assert!(still_valid(&secret(now + 31 * DAY, "a,b"), "a,b", now, 30));
        assert!(!still_valid(&secret(now + 29 * DAY, "a,b"), "a,b", now, 30));
        assert!(!still_valid(&secret(now + 300 * DAY, "a"), "a,b", now, 30));
        assert!(!still_valid(&Secret::default(), "a,b", now, 30));
    }
}
