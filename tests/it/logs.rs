//! The console's logs: every process's records in one Redis stream, filtered by level, process
//! and task, paged, and followed live over the WebSocket.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use ocrd::db::models::Role;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::admin::{Caller, served};
use crate::install::{Install, sample_pages, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_read_and_tail_every_processs_logs() {
    let _turn = crate::worker::one_at_a_time().await;
    let install = Install::distributed(|_| {}).await;
    let base = served(&install).await;
    let operator = Caller::new(&install, &base, Role::Operator).await;
    let user = Caller::new(&install, &base, Role::User).await;
    let page = std::fs::read(&sample_pages()[0].0).unwrap();
    let logs = |query: String| {
        let operator = &operator;
        let url = format!("{base}/api/admin/logs?{query}");
        async move {
            let response = operator.get(url).await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };

    // The live tail: an operator's socket (by token with the admin scope) asks for the logs.
    let token: Value = operator
        .post(
            format!("{base}/api/tokens"),
            json!({"name": "tail", "scopes": ["read", "write", "admin"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let connect = |token: String| {
        let url = format!("{}/ws", base.replace("http://", "ws://"));
        async move {
            let mut request = url.into_client_request().unwrap();
            request
                .headers_mut()
                .insert("Authorization", format!("Bearer {token}").parse().unwrap());
            let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
            let subscribe = tungstenite::Message::text(r#"{"subscribe":"logs"}"#);
            socket.send(subscribe).await.unwrap();
            socket
        }
    };
    let mut tail = connect(token["token"].as_str().unwrap().to_owned()).await;
    // A user asking for the logs gets none: the same socket carries only their tasks.
    let user_token: Value = user
        .post(format!("{base}/api/tokens"), json!({"name": "tail"}))
        .await
        .json()
        .await
        .unwrap();
    let mut refused = connect(user_token["token"].as_str().unwrap().to_owned()).await;

    let mut worker = install.spawn_worker("logs", &[]);
    let task = install.submit_bytes("logged.png", page).await.id;
    install
        .wait_finished(std::slice::from_ref(&task), Duration::from_secs(120))
        .await;

    // Live: the worker's record about this task arrives on the operator's socket.
    let heard = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(message)) = tail.next().await {
            let Ok(text) = message.into_text() else {
                continue;
            };
            let Ok(message) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if message["type"] == "log" && message["record"]["task"] == task.as_str() {
                return message["record"].clone();
            }
        }
        panic!("the socket closed");
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no live record of the task; worker log:\n{}",
            worker.log_text()
        )
    });
    assert!(
        heard["process"].as_str().unwrap().starts_with("work@"),
        "{heard}"
    );
    let quiet = tokio::time::timeout(Duration::from_millis(500), async {
        while let Some(Ok(message)) = refused.next().await {
            if message.to_text().unwrap_or("").contains(r#""type":"log""#) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        !matches!(quiet, Ok(true)),
        "a user's socket got log records"
    );

    // The list: the worker's records about the task, by task and by process.
    let about = wait_for(
        Duration::from_secs(30),
        "the task's records in the stream",
        || async {
            let page = logs(format!("task={task}")).await;
            let records = page["records"].as_array().unwrap().clone();
            records
                .iter()
                .any(|r| r["message"] == "completed")
                .then_some(records)
        },
    )
    .await;
    assert!(about.iter().all(|r| r["task"] == task.as_str()));
    let messages: Vec<&str> = about
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert!(messages.contains(&"processing"), "{messages:?}");
    let ids: Vec<&str> = about.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    let from_work = logs("process=work%40&limit=500".into()).await;
    assert!(
        from_work["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["process"].as_str().unwrap().starts_with("work@"))
    );
    let warnings = logs("level=WARN&limit=500".into()).await;
    assert!(
        warnings["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["level"] == "WARN" || r["level"] == "ERROR"),
        "{warnings}"
    );
    // Pages: one record at a time, each older than the last.
    let first = logs("limit=1".into()).await;
    let next = first["next_before"].as_str().unwrap().to_owned();
    let second = logs(format!("limit=1&before={next}")).await;
    assert!(second["records"][0]["id"].as_str().unwrap() < next.as_str());
    for bad in ["level=DEBUG", "before=yesterday", "limit=0"] {
        let response = operator.get(format!("{base}/api/admin/logs?{bad}")).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    assert_eq!(
        user.get(format!("{base}/api/admin/logs")).await.status(),
        403
    );
    worker.kill();
}

/// A record as another process ships it: one stream entry, its JSON under `r`.
async fn ship_record(redis: &mut redis::aio::MultiplexedConnection, key: &str, message: &str) {
    let record = json!({
        "id": "", "at": "2026-12-06T00:00:00Z", "level": "INFO", "target": "ocrd::test",
        "message": message, "process": "work@elsewhere:1", "task": null, "fields": {},
    });
    let _: String = redis::cmd("XADD")
        .arg(key)
        .arg("*")
        .arg("r")
        .arg(record.to_string())
        .query_async(redis)
        .await
        .unwrap();
}

/// Reads the socket for up to `within` until a log record with `message` arrives.
async fn hear<S>(socket: &mut S, message: &str, within: Duration) -> Option<Value>
where
    S: futures::Stream<Item = Result<tungstenite::Message, tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(within, async {
        while let Some(Ok(frame)) = socket.next().await {
            let text = frame.into_text().unwrap_or_default();
            if let Ok(value) = serde_json::from_str::<Value>(&text)
                && value["type"] == "log"
                && value["record"]["message"] == message
            {
                return Some(value);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_and_the_list_ride_out_a_redis_outage_odd_messages_and_bad_entries() {
    let real = url::Url::parse(&crate::support::redis_url()).unwrap();
    let target = format!(
        "{}:{}",
        real.host_str().unwrap(),
        real.port().unwrap_or(6379)
    );
    let outage = crate::install::Outage::proxy(&target).await;
    let install = Install::distributed(|c| {
        c.redis.url = ocrd::config::Secret::new(format!("redis://{}", outage.addr));
    })
    .await;
    let key = format!("{}logs", install.config.redis.key_prefix);
    let mut redis = redis::Client::open(crate::support::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let base = served(&install).await;
    let operator = Caller::new(&install, &base, Role::Operator).await;
    let token: Value = operator
        .post(
            format!("{base}/api/tokens"),
            json!({"name": "tail", "scopes": ["read", "admin"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    let mut request = format!("{}/ws", base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    request
        .headers_mut()
        .insert("Authorization", bearer.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    // Messages that are not a subscription are ignored, and the socket stays open.
    for odd in [
        "not json".to_owned(),
        r#"{"subscribe":"tasks"}"#.to_owned(),
        r#"{"subscribe":["logs"]}"#.to_owned(),
        r#"{"subscribe":null}"#.to_owned(),
        "{".repeat(60_000),
    ] {
        socket.send(tungstenite::Message::text(odd)).await.unwrap();
    }
    socket
        .send(tungstenite::Message::Ping("still there?".into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(frame)) = socket.next().await {
            if let tungstenite::Message::Pong(bytes) = frame {
                return bytes == "still there?".as_bytes();
            }
        }
        false
    })
    .await;
    assert!(matches!(pong, Ok(true)), "the socket closed: {pong:?}");

    socket
        .send(tungstenite::Message::text(r#"{"subscribe":"logs"}"#))
        .await
        .unwrap();
    // Entries another process might have written badly are skipped, not an error.
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("r")
        .arg("not a record")
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("other")
        .arg("field")
        .query_async(&mut redis)
        .await
        .unwrap();
    // The tail starts at the stream's end when first asked for: ship until one arrives.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let first = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the tail never followed the stream"
        );
        ship_record(&mut redis, &key, "before the outage").await;
        if let Some(heard) = hear(&mut socket, "before the outage", Duration::from_secs(2)).await {
            break heard;
        }
    };
    assert_eq!(first["record"]["process"], "work@elsewhere:1");
    let listed = operator.get(format!("{base}/api/admin/logs")).await;
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.unwrap();
    let messages: Vec<&str> = listed["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert!(messages.contains(&"before the outage"), "{messages:?}");

    // Redis away: the list says so (asked with a token: sessions live in Redis), and the tail
    // waits.
    outage.start();
    let during = reqwest::Client::new()
        .get(format!("{base}/api/admin/logs"))
        .header("Authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(during.status(), 503);
    let during: Value = during.json().await.unwrap();
    assert_eq!(during["error"]["code"], "unavailable", "{during}");
    assert!(
        during["error"]["message"]
            .as_str()
            .unwrap()
            .contains("log stream"),
        "{during}"
    );
    ship_record(&mut redis, &key, "during the outage").await;
    outage.end();
    // Back: the tail picks up where it stopped, so what was written meanwhile arrives.
    let heard = hear(&mut socket, "during the outage", Duration::from_secs(60)).await;
    assert!(
        heard.is_some(),
        "the record written during the outage never arrived"
    );
    let after = operator.get(format!("{base}/api/admin/logs")).await;
    assert_eq!(after.status(), 200);
}
