//! The projections of one program, by name: what the server lists, controls and measures.

use std::collections::BTreeMap;
use std::sync::Arc;

use factlog_store::EventStore;
use parking_lot::RwLock;

use crate::handle::ProjectionHandle;
use crate::projection::{Projection, ProjectionName, ProjectionOptions};
use crate::sink::Sink;
use crate::status::Status;

/// A set of running projections. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Projections {
    running: Arc<RwLock<BTreeMap<ProjectionName, ProjectionHandle>>>,
}

/// A second projection with a name already taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a projection named {0} is already running")]
pub struct DuplicateName(pub ProjectionName);

impl Projections {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `projection` and adds it to the set.
    pub fn start<S: Sink, P: Projection<S>>(
        &self,
        store: Arc<dyn EventStore>,
        sink: Arc<S>,
        projection: Arc<P>,
        options: ProjectionOptions,
    ) -> Result<ProjectionHandle, DuplicateName> {
        let mut running = self.running.write();
        if running.contains_key(&options.name) {
            return Err(DuplicateName(options.name));
        }
        let name = options.name.clone();
        let handle = crate::runner::spawn(store, sink, projection, options);
        running.insert(name, handle.clone());
        Ok(handle)
    }

    pub fn get(&self, name: &str) -> Option<ProjectionHandle> {
        let name = ProjectionName::new(name).ok()?;
        self.running.read().get(&name).cloned()
    }

    /// Every projection's status, by name.
    pub fn statuses(&self) -> Vec<Status> {
        self.running
            .read()
            .values()
            .map(ProjectionHandle::status)
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.running.read().is_empty()
    }

    /// Stops every projection after its batch in progress.
    pub async fn stop(&self) {
        let handles: Vec<ProjectionHandle> = std::mem::take(&mut *self.running.write())
            .into_values()
            .collect();
        for handle in handles {
            handle.stop().await;
        }
    }
}
