//! End to end over loopback: handshake, request/response, server close 1012, reconnect.

use std::time::Duration;

use async_tungstenite::tokio::accept_async;
use async_tungstenite::tungstenite::Message;
use futures::StreamExt;
use serde_json::{Value, json};
use tether_tokio::tether_core::profiles::{HelloAck, HelloAckRequest};
use tether_tokio::tether_core::{Config, Status};

async fn serve_once(listener: &tokio::net::TcpListener, close_after_request: bool) {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = accept_async(tcp).await.unwrap();
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        match v["type"].as_str() {
            Some("hello") => ws
                .send(Message::text(json!({"type":"hello_ack"}).to_string()))
                .await
                .unwrap(),
            Some("request") => {
                let r = json!({"type":"response","id":v["id"],"result":v["params"]});
                ws.send(Message::text(r.to_string())).await.unwrap();
                if close_after_request {
                    let _ = ws
                        .close(Some(async_tungstenite::tungstenite::protocol::CloseFrame {
                            code: 1012u16.into(),
                            reason: "restart".into(),
                        }))
                        .await;
                    return;
                }
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn handshake_request_and_reconnect_after_1012() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        serve_once(&listener, true).await;
        serve_once(&listener, false).await;
    });
    let policy = tether_tokio::tether_core::ClosePolicy::default()
        .with_code(1012, tether_tokio::tether_core::CloseClass::RECONNECT);
    let config = Config::builder()
        .close_policy(policy)
        .backoff_schedule(vec![Duration::from_millis(50)])
        .build()
        .unwrap();
    let hello = HelloAck::new(|| json!({"type": "hello"}));
    let client = tokio::time::timeout(
        Duration::from_secs(5),
        tether_tokio::connect(&url, config, hello),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(client.status(), Status::Open);
    let mut statuses = client.status_changes();
    let r = client
        .request(HelloAckRequest::new("echo", json!({"n": 1})))
        .await
        .unwrap();
    assert_eq!(r, json!({"n": 1}));
    // The server closed with 1012: the session reconnects and serves again.
    let s1 = tokio::time::timeout(Duration::from_secs(5), statuses.next())
        .await
        .unwrap();
    assert_eq!(s1, Some(Status::Reconnecting));
    let s2 = tokio::time::timeout(Duration::from_secs(5), statuses.next())
        .await
        .unwrap();
    assert_eq!(s2, Some(Status::Open));
    let r = client
        .request(HelloAckRequest::new("echo", json!({"n": 2})))
        .await
        .unwrap();
    assert_eq!(r, json!({"n": 2}));
    tokio::time::timeout(Duration::from_secs(5), client.close())
        .await
        .unwrap();
    assert_eq!(client.status(), Status::Closed);
    server.await.unwrap();
}

/// `feed` keeps many messages in flight from one task: every one arrives, in order, and a
/// message fed after the session ended comes back as `SendRefused`.
#[tokio::test]
async fn feed_pipelines_in_order_and_reports_refusals_as_events() {
    use tether_tokio::tether_core::profiles::Raw;
    use tether_tokio::tether_core::{DataFrame, Event, SendError};

    const N: usize = 2_000;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = accept_async(tcp).await.unwrap();
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let client = tokio::time::timeout(
        Duration::from_secs(5),
        tether_tokio::connect(&url, Config::default(), Raw),
    )
    .await
    .unwrap()
    .unwrap();
    let mut events = client.events();
    // Fed from one task while another reads: nothing waits for a verdict.
    let feeding = async {
        for i in 0..N {
            client
                .feed(DataFrame::Text(i.to_string().into()))
                .await
                .unwrap();
        }
    };
    let reading = async {
        let mut next = 0;
        while next < N {
            let event = tokio::time::timeout(Duration::from_secs(5), events.next())
                .await
                .unwrap_or_else(|_| panic!("stuck after {next} echoes"))
                .unwrap();
            match event {
                Event::Message(DataFrame::Text(t)) => {
                    assert_eq!(t.as_str(), next.to_string(), "echoes arrive in order");
                    next += 1;
                }
                Event::SendRefused { error, .. } => panic!("refused while open: {error}"),
                _ => {}
            }
        }
    };
    futures::join!(feeding, reading);
    tokio::time::timeout(Duration::from_secs(5), client.close())
        .await
        .unwrap();
    client.feed(DataFrame::Text("late".into())).await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = events.next().await {
            if let Event::SendRefused { error, .. } = event {
                return error;
            }
        }
        panic!("events ended without SendRefused");
    })
    .await
    .unwrap();
    assert_eq!(refused, SendError::Ended);
    server.await.unwrap();
}

/// A subscriber that does not read holds reading back instead of missing events: a second
/// subscriber races ahead by a full mailbox (and no further: its lead is bounded), then
/// both see every message, in order.
#[tokio::test]
async fn a_slow_subscriber_holds_reading_back_and_misses_nothing() {
    use tether_tokio::SUBSCRIBER_CAPACITY;
    use tether_tokio::tether_core::profiles::Raw;
    use tether_tokio::tether_core::{DataFrame, Event};

    const N: usize = 20_000;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = accept_async(tcp).await.unwrap();
        // Wait for the client's go, so both subscriptions exist before the flood.
        let _ = ws.next().await;
        for i in 0..N {
            if futures::SinkExt::feed(&mut ws, Message::text(i.to_string()))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = futures::SinkExt::flush(&mut ws).await;
        while let Some(Ok(_)) = ws.next().await {}
    });
    let client = tokio::time::timeout(
        Duration::from_secs(5),
        tether_tokio::connect(&url, Config::default(), Raw),
    )
    .await
    .unwrap()
    .unwrap();
    let mut slow = client.events();
    let mut fast = client.events();
    client.send(DataFrame::Text("go".into())).await.unwrap();
    async fn messages(
        events: &mut (impl futures::Stream<Item = Event<Raw>> + Unpin),
        count: usize,
        from: usize,
    ) {
        let mut next = from;
        while next < from + count {
            let event = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .unwrap_or_else(|_| panic!("stuck at message {next}"))
                .unwrap();
            if let Event::Message(DataFrame::Text(t)) = event {
                assert_eq!(t.as_str(), next.to_string(), "none missed, in order");
                next += 1;
            }
        }
    }
    // The fast subscriber gets a mailbox's worth while the slow one reads nothing...
    messages(&mut fast, SUBSCRIBER_CAPACITY, 0).await;
    // ...and then stalls: the slow one's full mailbox holds reading back, so the fast
    // one's lead is at most the capacity plus one read batch (64 frames). Ahead of it,
    // the frames are still in the socket. The lead is measured as what arrives before
    // the stream goes quiet for a while (nothing can arrive while reading is held).
    let mut lead = SUBSCRIBER_CAPACITY;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(300), fast.next()).await
    {
        if let Event::Message(DataFrame::Text(t)) = event {
            assert_eq!(t.as_str(), lead.to_string(), "none missed, in order");
            lead += 1;
        }
        assert!(
            lead <= SUBSCRIBER_CAPACITY + 64,
            "the fast subscriber ran {lead} messages ahead of one that reads nothing"
        );
    }
    assert!(lead < N, "reading was never held back");
    futures::join!(
        messages(&mut fast, N - lead, lead),
        messages(&mut slow, N, 0)
    );
    tokio::time::timeout(Duration::from_secs(5), client.close())
        .await
        .unwrap();
    server.abort();
}
