//! The events port: Redis pub/sub between processes (here, two `Events` with their own
//! subscriptions, as two `serve` processes would have) and the in-process broadcast.

use std::time::Duration;

use ocrd::events::{ErrorInfo, Event, Events, TaskUpdate};
use ocrd::redis_pool;

use crate::support::{redis_url, unique};

fn sample(id: &str) -> Event {
    Event::TaskUpdated {
        task: TaskUpdate {
            id: id.into(),
            user_id: "u1".into(),
            status: "failed".into(),
            pages_done: 1,
            pages_total: Some(3),
            error: Some(ErrorInfo {
                code: "page_timeout".into(),
                message: "page 2 took longer than 300 s".into(),
            }),
        },
    }
}

#[test]
fn the_wire_format_is_stable() {
    let json = serde_json::to_value(sample("t1")).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "type": "task.updated",
            "task": {
                "id": "t1", "user_id": "u1", "status": "failed", "pages_done": 1,
                "pages_total": 3,
                "error": {"code": "page_timeout", "message": "page 2 took longer than 300 s"}
            }
        })
    );
}

async fn next(rx: &mut tokio::sync::broadcast::Receiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("an event within 20 s")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_events_reach_every_subscribed_process() {
    let url = redis_url();
    let prefix = format!("{}:", unique("ocrdtest-e-"));
    let events = |_: u8| Events::redis(redis_pool::pool(&url, 2).unwrap(), &url, &prefix);
    let (one, two, publisher) = (events(1), events(2), events(3));
    let mut a = one.subscribe();
    let mut a2 = one.subscribe();
    let mut b = two.subscribe();
    // Subscriptions are asynchronous: publish until the first arrives.
    let first = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            publisher.publish(&sample("warmup")).await;
            if let Ok(Ok(event)) = tokio::time::timeout(Duration::from_millis(200), b.recv()).await
            {
                return event;
            }
        }
    })
    .await
    .expect("the subscription is up");
    assert_eq!(first, sample("warmup"));
    publisher.publish(&sample("t2")).await;
    for rx in [&mut a, &mut a2, &mut b] {
        let mut got = next(rx).await;
        while got == sample("warmup") {
            got = next(rx).await;
        }
        assert_eq!(got, sample("t2"));
    }
    // Another install's channel is not ours.
    let other = Events::redis(redis_pool::pool(&url, 1).unwrap(), &url, "someone-else:");
    other.publish(&sample("theirs")).await;
    publisher.publish(&sample("t3")).await;
    let mut got = next(&mut b).await;
    while got == sample("warmup") {
        got = next(&mut b).await;
    }
    assert_eq!(got, sample("t3"));
}

#[tokio::test]
async fn in_process_events_fan_out() {
    let events = Events::local();
    let (mut a, mut b) = (events.subscribe(), events.subscribe());
    events.publish(&sample("t1")).await;
    assert_eq!(next(&mut a).await, sample("t1"));
    assert_eq!(next(&mut b).await, sample("t1"));
}
