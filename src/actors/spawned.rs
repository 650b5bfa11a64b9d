//! [`Spawned`]: an actor handler's answer that runs as its own task, allocated once.

use std::future::Future;

use actix::dev::{MessageResponse, OneshotSender};
use actix::{Actor, Message};

/// A handler's answer that runs as its own task on the actor's thread, so the mailbox never
/// waits for it. It does what actix's `ResponseFuture` does, but `ResponseFuture` is a boxed
/// future that actix then spawns: two allocations per message (the box and the task), where
/// spawning the future as it is allocates only the task. The caller gets the future's output;
/// a message sent without waiting for its answer (`do_send`) still runs to its end.
pub struct Spawned<F>(pub F);

impl<A, M, F> MessageResponse<A, M> for Spawned<F>
where
    A: Actor,
    M: Message,
    F: Future<Output = M::Result> + 'static,
{
    fn handle(self, _: &mut A::Context, tx: Option<OneshotSender<M::Result>>) {
        actix_rt::spawn(async move {
            let result = self.0.await;
            if let Some(tx) = tx {
                // The caller may have given up (dropped its request): nothing to answer.
                let _ = tx.send(result);
            }
        });
    }
}
