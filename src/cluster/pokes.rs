//! Webhooks reach the owner: a registry posts its push event to whichever replica the load
//! balancer picks, and that replica may not own the image. It puts a poke for the image in
//! etcd; every replica reads the pokes every [`READ_EVERY`] and checks at once those it owns.
//! A poke lives under its sender's lease, so one that nobody took does not linger.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::etcd::Session;
use super::handover::Handover;

/// How often the pokes are read: the delay a forwarded webhook adds at most.
pub const READ_EVERY: Duration = Duration::from_secs(1);

/// Asks the owners of `aliases` to check them now.
pub async fn send(handover: &Handover, session: Option<Session>, aliases: &[String]) {
    // Outside the cluster (no lease), a poke without one: the key is overwritten by the next
    // poke of the same image, so there is at most one per image.
    let lease = session.as_ref().map_or(0, Session::lease);
    for alias in aliases {
        if let Err(e) = handover.store().poke(alias, handover.me(), lease).await {
            tracing::warn!(image = %alias, error = %e, "cluster: cannot pass the push on to the image's owner; it is checked at its next poll");
        }
    }
}

/// Reads the pokes until `stop`, and sends the aliases poked since the last read.
pub fn follow(
    handover: Arc<Handover>,
    mut stop: watch::Receiver<bool>,
) -> (mpsc::Receiver<Vec<String>>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(async move {
        let mut revision = 0;
        let mut failing = false;
        let mut tick = tokio::time::interval(READ_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            match handover.store().pokes_after(revision).await {
                Ok((aliases, now)) => {
                    failing = false;
                    revision = now;
                    if !aliases.is_empty() && tx.send(aliases).await.is_err() {
                        return;
                    }
                }
                // Membership says when etcd is gone; this says it once more, not every second.
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cluster: cannot read forwarded pushes");
                }
                Err(_) => {}
            }
        }
    });
    (rx, task)
}
