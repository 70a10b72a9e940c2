//! The in-process queue of all-in-one: the same delivery rules as the Redis adapter (pending
//! entries, reclaim after the lease, delivery counts), in memory.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Delivery;

#[derive(Clone, Debug, Default)]
pub struct LocalQueue {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    pushed: Notify,
}

#[derive(Debug, Default)]
struct State {
    next_receipt: u64,
    waiting: VecDeque<(String, String)>,
    pending: HashMap<String, Pending>,
}

#[derive(Debug)]
struct Pending {
    task_id: String,
    deliveries: u64,
    since: Instant,
}

impl LocalQueue {
    pub fn new() -> LocalQueue {
        LocalQueue::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is left consistent at every step, so a panic elsewhere cannot corrupt it.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, task_id: &str) {
        let mut state = self.state();
        state.next_receipt += 1;
        let receipt = state.next_receipt.to_string();
        state.waiting.push_back((receipt, task_id.to_owned()));
        drop(state);
        self.inner.pushed.notify_one();
    }

    pub async fn pop(&self, reclaim_after: Duration, wait: Duration) -> Option<Delivery> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a push between the look and the wait is not missed.
            let pushed = self.inner.pushed.notified();
            if let Some(delivery) = self.try_pop(reclaim_after) {
                return Some(delivery);
            }
            if tokio::time::timeout_at(deadline, pushed).await.is_err() {
                return self.try_pop(reclaim_after);
            }
        }
    }

    fn try_pop(&self, reclaim_after: Duration) -> Option<Delivery> {
        let mut state = self.state();
        let abandoned = state
            .pending
            .iter_mut()
            .find(|(_, p)| p.since.elapsed() >= reclaim_after);
        if let Some((receipt, pending)) = abandoned {
            pending.deliveries += 1;
            pending.since = Instant::now();
            return Some(Delivery {
                task_id: pending.task_id.clone(),
                deliveries: pending.deliveries,
                receipt: receipt.clone(),
            });
        }
        let (receipt, task_id) = state.waiting.pop_front()?;
        state.pending.insert(
            receipt.clone(),
            Pending {
                task_id: task_id.clone(),
                deliveries: 1,
                since: Instant::now(),
            },
        );
        Some(Delivery {
            task_id,
            deliveries: 1,
            receipt,
        })
    }

    pub fn touch(&self, delivery: &Delivery) {
        if let Some(pending) = self.state().pending.get_mut(&delivery.receipt) {
            pending.since = Instant::now();
        }
    }

    pub fn ack(&self, delivery: &Delivery) {
        self.state().pending.remove(&delivery.receipt);
    }

    pub fn task_ids(&self) -> HashSet<String> {
        let state = self.state();
        let waiting = state.waiting.iter().map(|(_, id)| id.clone());
        let pending = state.pending.values().map(|p| p.task_id.clone());
        waiting.chain(pending).collect()
    }

    pub fn waiting(&self) -> u64 {
        self.state().waiting.len() as u64
    }

    /// Entries handed out and not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.state().pending.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_once_until_abandoned() {
        let q = LocalQueue::new();
        let lease = Duration::from_millis(50);
        assert_eq!(q.pop(lease, Duration::from_millis(10)).await, None);
        q.push("t1");
        let first = q.pop(lease, Duration::ZERO).await.unwrap();
        assert_eq!((first.task_id.as_str(), first.deliveries), ("t1", 1));
        assert_eq!(q.pop(lease, Duration::from_millis(10)).await, None);
        assert!(
            q.task_ids().contains("t1"),
            "pending entries are still held"
        );

        // Abandoned past the lease: handed out again, counted.
        tokio::time::sleep(Duration::from_millis(60)).await;
        let again = q.pop(lease, Duration::ZERO).await.unwrap();
        assert_eq!((again.task_id.as_str(), again.deliveries), ("t1", 2));

        // Touched entries stay with their consumer; acked ones are gone.
        q.touch(&again);
        assert_eq!(q.pop(lease, Duration::ZERO).await, None);
        q.ack(&again);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(q.pop(lease, Duration::ZERO).await, None);
        assert!(q.task_ids().is_empty());
    }

    #[tokio::test]
    async fn a_waiting_pop_wakes_on_push() {
        let q = LocalQueue::new();
        let waiter = tokio::spawn({
            let q = q.clone();
            async move {
                q.pop(Duration::from_secs(60), Duration::from_secs(30))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        q.push("t2");
        let got = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the pop woke up")
            .unwrap();
        assert_eq!(got.map(|d| d.task_id), Some("t2".into()));
    }
}
