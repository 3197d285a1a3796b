//! The policy in force, shared by admission, the policy reloader and the background audit.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::engine::Engine;

/// The engine in force; clones share it. A request takes it once and finishes on it, so a
/// reload never changes a decision half-way.
#[derive(Clone)]
pub struct LiveEngine(Arc<ArcSwap<Engine>>);

impl LiveEngine {
    pub fn new(engine: Engine) -> LiveEngine {
        LiveEngine(Arc::new(ArcSwap::from_pointee(engine)))
    }

    pub fn current(&self) -> Arc<Engine> {
        self.0.load_full()
    }

    pub fn replace(&self, engine: Engine) {
        self.0.store(Arc::new(engine));
    }
}
