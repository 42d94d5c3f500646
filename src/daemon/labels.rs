//! Every metric a connection's work records carries that connection's
//! name as the `connection` label, without threading the name through the
//! CRM client and the sync engine: the daemon runs each connection's task
//! inside [`scope`], and [`Labelled`] (the installed recorder) adds the
//! label of the task it is called from.

use std::future::Future;
use std::sync::Arc;

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit,
};

tokio::task_local! {
    static CONNECTION: Arc<str>;
}

/// Runs `work` with metrics labelled by `connection`.
pub async fn scope<F: Future>(connection: Arc<str>, work: F) -> F::Output {
    CONNECTION.scope(connection, work).await
}

/// Runs `work` (synchronous: a schedule's callback) labelled by `connection`.
pub fn sync_scope<R>(connection: Arc<str>, work: impl FnOnce() -> R) -> R {
    CONNECTION.sync_scope(connection, work)
}

/// The connection the current task works for, if any.
pub fn current() -> Option<Arc<str>> {
    CONNECTION.try_with(Arc::clone).ok()
}

/// A recorder that adds `connection="<name>"` to every metric recorded
/// inside [`scope`], and leaves the others as they are.
#[derive(Debug)]
pub struct Labelled<R> {
    inner: R,
}

impl<R> Labelled<R> {
    pub fn new(inner: R) -> Labelled<R> {
        Labelled { inner }
    }

    fn key(key: &Key) -> Option<Key> {
        let connection = current()?;
        if key.labels().any(|l| l.key() == "connection") {
            return None;
        }
        Some(key.with_extra_labels(vec![Label::new("connection", connection.to_string())]))
    }
}

impl<R: Recorder> Recorder for Labelled<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        match Self::key(key) {
            Some(labelled) => self.inner.register_counter(&labelled, metadata),
            None => self.inner.register_counter(key, metadata),
        }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        match Self::key(key) {
            Some(labelled) => self.inner.register_gauge(&labelled, metadata),
            None => self.inner.register_gauge(key, metadata),
        }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        match Self::key(key) {
            Some(labelled) => self.inner.register_histogram(&labelled, metadata),
            None => self.inner.register_histogram(key, metadata),
        }
    }
}
