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
