//! The pipeline's parts, threads and tasks, and how they stop together: a part that fails
//! halts the others, and [`Running`] completes with the first error once all have ended.

use std::sync::Arc;

use tokio::sync::watch;

use crate::error::PipelineError;

/// A started pipeline: completes when it has stopped.
#[derive(Debug)]
pub struct Running(tokio::task::JoinHandle<Result<(), PipelineError>>);

impl Running {
    /// Waits until the pipeline has stopped: after `stop` turned true (the log drained, synced
    /// and checkpointed), or at once on a failure, such as a log that cannot be restored.
    pub async fn wait(self) -> Result<(), PipelineError> {
        self.0.await.map_err(|_| PipelineError::Panicked("pipeline"))?
    }
}

/// Waits for `thread`, the pipeline's main part, to end (on a stop, or first when it fails),
/// then stops the other parts and waits for `task`: the first error is the pipeline's.
pub(crate) fn supervise(
    (name, thread): (&'static str, std::thread::JoinHandle<Result<(), PipelineError>>),
    task: Option<(&'static str, tokio::task::JoinHandle<()>)>,
    halt: Arc<watch::Sender<bool>>,
) -> Running {
    Running(tokio::spawn(async move {
        let ended = finish(name, thread, &halt).await;
        let _ = halt.send(true);
        if let Some((task_name, task)) = task {
            task.await.map_err(|_| PipelineError::Panicked(task_name))?;
        }
        ended
    }))
}

/// A stop signal for the pipeline's parts: it turns true when `stop` does, or when a part
/// sends it on failing.
pub(crate) fn halt_on(
    mut stop: watch::Receiver<bool>,
) -> (Arc<watch::Sender<bool>>, watch::Receiver<bool>) {
    let (halt_tx, halt) = watch::channel(false);
    let halt_tx = Arc::new(halt_tx);
    let on_stop = halt_tx.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => {}
            () = on_stop.closed() => return,
        }
        let _ = on_stop.send(true);
    });
    (halt_tx, halt)
}

/// Starts `work` on a thread of its own, named `name`.
pub(crate) fn spawn_thread(
    name: &'static str,
    work: impl FnOnce() -> Result<(), PipelineError> + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<(), PipelineError>>, PipelineError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(work)
        .map_err(|source| PipelineError::Io { action: "starting a pipeline thread", source })
}

/// Waits for the thread `name` to end; halts the others when it fails.
async fn finish(
    name: &'static str,
    thread: std::thread::JoinHandle<Result<(), PipelineError>>,
    halt: &watch::Sender<bool>,
) -> Result<(), PipelineError> {
    let ended = tokio::task::spawn_blocking(move || thread.join()).await;
    let ended = match ended {
        Ok(Ok(ended)) => ended,
        _ => Err(PipelineError::Panicked(name)),
    };
    if ended.is_err() {
        let _ = halt.send(true);
    }
    ended
}
