//! The check after the last step, instance by instance: each service instance is read back as
//! soon as its own last step has finished, while the other instances' steps still run, instead
//! of all of them after the last step of the whole plan. The reads are the same ones
//! (`refresh_with_retries`, one instance each), made after the same steps, and the same rule
//! judges them (`session::check_converged`); only the wait for unrelated instances is gone.
//! A 100-instance apply no longer spends a round of 500 reads after its last step.
//!
//! `Watching` is the executor's `Progress` seen through: it counts each instance's finished
//! steps and names the instance whose count reaches its plan's. `read_back` reads those
//! instances as they come; the apply runs both side by side and waits for the reads only if
//! the steps succeeded.

use std::collections::HashMap;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::executor::{ApplyError, Progress};
use super::session::check_converged;
use crate::backend::{Backend, refresh_with_retries};
use crate::model::{LiveFleet, LiveInstance};
use crate::plan::{Plan, Step};

/// Forwards every event to the view, and says which instances have run all their steps.
pub struct Watching<'a> {
    view: &'a mut dyn Progress,
    /// Steps of each instance not finished yet.
    left: HashMap<String, usize>,
    done: UnboundedSender<String>,
}

/// The instances of `plan` that have finished, as `Watching` tells them.
pub struct Finished(UnboundedReceiver<String>);

/// A `Progress` for the executor that wraps `view`, and the instances it reports finished.
pub fn watch<'a>(view: &'a mut dyn Progress, plan: &Plan) -> (Watching<'a>, Finished) {
    let mut left: HashMap<String, usize> = HashMap::new();
    for step in &plan.steps {
        *left.entry(step.instance.clone()).or_default() += 1;
    }
    let (done, finished) = unbounded_channel();
    let watching = Watching { view, left, done };
    (watching, Finished(finished))
}

impl Progress for Watching<'_> {
    fn step_started(&mut self, step: &Step) {
        self.view.step_started(step);
    }

    fn step_finished(&mut self, finished: usize, total: usize, step: &Step) {
        self.view.step_finished(finished, total, step);
        if let Some(left) = self.left.get_mut(&step.instance) {
            *left -= 1;
            if *left == 0 {
                // The reader is gone only when the apply no longer waits for it.
                let _ = self.done.send(step.instance.clone());
            }
        }
    }

    fn line(&mut self, text: &str) {
        self.view.line(text);
    }

    fn interrupted(&mut self, in_flight: usize) {
        self.view.interrupted(in_flight);
    }
}

/// Reads back every instance of `plan`: those without steps at once, the others when
/// `finished` names them; then checks that every unit holds the desired key and nothing
/// staged. Ends early with the first read that fails. Waits for ever if a step never
/// finishes: the caller stops waiting when the steps fail.
pub async fn read_back<B: Backend>(
    backend: &B,
    plan: &Plan,
    finished: Finished,
) -> Result<LiveFleet, ApplyError> {
    let Finished(mut finished) = finished;
    let mut reads = FuturesUnordered::new();
    let read = |id: String| async move {
        refresh_with_retries(backend, std::slice::from_ref(&id))
            .await
            .map_err(|e| {
                ApplyError::NotConverged(format!("reading the live state after the last step: {e}"))
            })
    };
    for instance in &plan.instances {
        if !plan.steps.iter().any(|s| s.instance == instance.id) {
            reads.push(read(instance.id.clone()));
        }
    }
    let mut found: HashMap<String, LiveInstance> = HashMap::new();
    let (mut read_so_far, mut listening) = (0, true);
    while read_so_far < plan.instances.len() {
        tokio::select! {
            id = finished.recv(), if listening => match id {
                Some(id) => reads.push(read(id)),
                None => listening = false,
            },
            Some(live) = reads.next() => {
                for instance in live?.instances {
                    found.insert(instance.id.to_ascii_lowercase(), instance);
                }
                read_so_far += 1;
            }
            else => break,
        }
    }
    // In the plan's order, as one read of the whole fleet would give them.
    let live = LiveFleet {
        instances: plan
            .instances
            .iter()
            .filter_map(|i| found.remove(&i.id.to_ascii_lowercase()))
            .collect(),
    };
    check_converged(plan, &live)?;
    Ok(live)
}
