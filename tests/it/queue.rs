//! The queue port's delivery rules, the same for the Redis Streams adapter (on the real
//! server) and the in-process one.

use std::time::Duration;

use ocrd::queue::{LocalQueue, Queue, RedisQueue};
use ocrd::redis_pool;

use crate::support::{redis_url, unique};

fn redis_queue() -> (Queue, String) {
    let url = redis_url();
    let prefix = format!("{}:", unique("ocrdtest-q-"));
    let queue = RedisQueue::new(
        redis_pool::pool(&url, 4).unwrap(),
        redis_pool::blocking_pool(&url, 2).unwrap(),
        &prefix,
    );
    (Queue::Redis(queue), prefix)
}

const LEASE: Duration = Duration::from_millis(300);
const NO_WAIT: Duration = Duration::from_millis(10);

async fn delivery_rules(queue: Queue) {
    assert_eq!(queue.pop("a", LEASE, NO_WAIT).await.unwrap(), None);
    queue.push("t1").await.unwrap();
    queue.push("t2").await.unwrap();
    assert_eq!(queue.waiting().await.unwrap(), 2);

    let first = queue.pop("a", LEASE, NO_WAIT).await.unwrap().unwrap();
    assert_eq!((first.task_id.as_str(), first.deliveries), ("t1", 1));
    let second = queue.pop("b", LEASE, NO_WAIT).await.unwrap().unwrap();
    assert_eq!(second.task_id, "t2");
    assert_eq!(
        queue.pop("b", LEASE, NO_WAIT).await.unwrap(),
        None,
        "each entry goes to one consumer"
    );
    assert_eq!(queue.waiting().await.unwrap(), 0);
    let held = queue.task_ids().await.unwrap();
    assert!(
        held.contains("t1") && held.contains("t2"),
        "pending entries still count: {held:?}"
    );

    // `a` keeps its entry alive; `b` goes silent and loses its entry to `c`, counted.
    for _ in 0..4 {
        tokio::time::sleep(LEASE / 3).await;
        queue.touch("a", &first).await.unwrap();
    }
    let taken = queue.pop("c", LEASE, NO_WAIT).await.unwrap().unwrap();
    assert_eq!((taken.task_id.as_str(), taken.deliveries), ("t2", 2));

    // Acked entries are gone for good.
    queue.ack(&first).await.unwrap();
    queue.ack(&taken).await.unwrap();
    tokio::time::sleep(LEASE * 2).await;
    assert_eq!(queue.pop("c", LEASE, NO_WAIT).await.unwrap(), None);
    assert!(queue.task_ids().await.unwrap().is_empty());

    // A requeued entry is available at once, with a fresh count.
    queue.push("t3").await.unwrap();
    let got = queue.pop("a", LEASE, NO_WAIT).await.unwrap().unwrap();
    queue.requeue(&got).await.unwrap();
    let again = queue
        .pop("b", Duration::from_secs(60), NO_WAIT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.task_id.as_str(), again.deliveries), ("t3", 1));
}

/// The names of gone workers' slots are forgotten once silent long enough, unless they still
/// hold an entry; a forgotten name reads again as if new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_consumers_holding_nothing_are_forgotten() {
    let (queue, _) = redis_queue();
    assert_eq!(
        queue.forget_idle_consumers(Duration::ZERO).await.unwrap(),
        0,
        "no group yet"
    );
    queue.push("t1").await.unwrap();
    queue.push("t2").await.unwrap();
    let done = queue.pop("gone", LEASE, NO_WAIT).await.unwrap().unwrap();
    queue.ack(&done).await.unwrap();
    let held = queue.pop("holding", LEASE, NO_WAIT).await.unwrap().unwrap();
    let consumers = |queue: &Queue| {
        let queue = queue.clone();
        async move { queue.stats().await.unwrap().consumers }
    };
    assert_eq!(consumers(&queue).await, Some(2));
    // Not silent long enough: all stay.
    assert_eq!(
        queue
            .forget_idle_consumers(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        queue.forget_idle_consumers(Duration::ZERO).await.unwrap(),
        1
    );
    assert_eq!(consumers(&queue).await, Some(1));
    // The one left still holds its entry, and a forgotten name works as before.
    queue.ack(&held).await.unwrap();
    queue.push("t3").await.unwrap();
    let again = queue.pop("gone", LEASE, NO_WAIT).await.unwrap().unwrap();
    assert_eq!(again.task_id, "t3");
    assert!(queue.task_ids().await.unwrap().contains("t3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_delivery_rules() {
    delivery_rules(redis_queue().0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_delivery_rules() {
    delivery_rules(Queue::Local(LocalQueue::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_pop_returns_as_soon_as_work_arrives() {
    let (queue, _) = redis_queue();
    // Create the group first, so the pusher does not race the group's creation.
    assert_eq!(queue.pop("a", LEASE, NO_WAIT).await.unwrap(), None);
    let pusher = {
        let queue = queue.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            queue.push("late").await.unwrap();
        })
    };
    let started = std::time::Instant::now();
    let got = queue
        .pop("a", LEASE, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(got.map(|d| d.task_id), Some("late".into()));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "woken by the push, not the timeout"
    );
    pusher.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_comes_back_after_redis_lost_everything() {
    use deadpool_redis::redis::AsyncCommands;
    let (queue, prefix) = redis_queue();
    queue.push("before").await.unwrap();
    assert!(queue.pop("a", LEASE, NO_WAIT).await.unwrap().is_some());
    // What FLUSHALL does to this install.
    let pool = redis_pool::pool(&redis_url(), 1).unwrap();
    let _: () = pool
        .get()
        .await
        .unwrap()
        .del(format!("{prefix}tasks"))
        .await
        .unwrap();
    assert_eq!(
        queue.pop("a", LEASE, NO_WAIT).await.unwrap(),
        None,
        "NOGROUP is repaired"
    );
    queue.push("after").await.unwrap();
    let got = queue.pop("a", LEASE, NO_WAIT).await.unwrap().unwrap();
    assert_eq!(got.task_id, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_an_error_not_a_hang() {
    let queue = Queue::Redis(RedisQueue::new(
        redis_pool::pool("redis://127.0.0.1:1", 1).unwrap(),
        redis_pool::blocking_pool("redis://127.0.0.1:1", 1).unwrap(),
        "x:",
    ));
    let popped =
        tokio::time::timeout(Duration::from_secs(30), queue.pop("a", LEASE, NO_WAIT)).await;
    assert!(popped.expect("no hang").is_err());
    assert!(queue.push("t").await.is_err());
}
