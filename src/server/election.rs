//! The one Lease elector of a replica. The background audit and the NetworkPolicy controller
//! both run only while it leads, so a single Lease decides for both.

use std::time::Duration;

use kube::Client;
use tokio::task::JoinHandle;

use crate::leader::{self, Leadership, LeaseConfig};

/// How long shutdown waits for the Lease to be released.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running elector.
pub struct Election {
    leadership: Leadership,
    stopping: tokio::sync::watch::Sender<bool>,
    elector: JoinHandle<()>,
}

impl Election {
    /// Starts contending for the Lease in `POD_NAMESPACE` (else the client's namespace).
    pub fn start(client: Client) -> Election {
        let namespace = std::env::var("POD_NAMESPACE")
            .unwrap_or_else(|_| client.default_namespace().to_owned());
        let lease = LeaseConfig::new(namespace, leader::identity());
        let leadership = Leadership::default();
        let (stopping, mut stopped) = tokio::sync::watch::channel(false);
        let elector = tokio::spawn(leader::run(client, lease, leadership.clone(), async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
        Election {
            leadership,
            stopping,
            elector,
        }
    }

    /// Whether this replica leads, as the elector keeps it.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    /// Steps down: the elector releases the Lease.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Waits a little for the Lease to be released, so that another replica takes over at once.
    pub async fn released(self) {
        let _ = tokio::time::timeout(RELEASE_TIMEOUT, self.elector).await;
    }
}
