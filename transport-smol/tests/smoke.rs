//! End to end over loopback: handshake, request/response, server close 1012, reconnect.

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use async_tungstenite::accept_async;
use async_tungstenite::tungstenite::Message;
use futures::StreamExt;
use serde_json::{Value, json};
use smol::Async;
use tether_smol::tether_core::profiles::{HelloAck, HelloAckRequest};
use tether_smol::tether_core::{Config, Status};

/// `fut`, or a panic after `d`: no test can hang.
async fn timeout<T>(d: Duration, fut: impl Future<Output = T>) -> T {
    smol::future::or(fut, async {
        smol::Timer::after(d).await;
        panic!("timed out after {d:?}")
    })
    .await
}

async fn serve_once(listener: &Async<TcpListener>, close_after_request: bool) {
    let (tcp, _): (Async<TcpStream>, _) = listener.accept().await.unwrap();
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

#[test]
fn handshake_request_and_reconnect_after_1012() {
    smol::block_on(async {
        let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let url = format!("ws://{}/", listener.get_ref().local_addr().unwrap());
        let server = smol::spawn(async move {
            serve_once(&listener, true).await;
            serve_once(&listener, false).await;
        });
        let policy = tether_smol::tether_core::ClosePolicy::default()
            .with_code(1012, tether_smol::tether_core::CloseClass::RECONNECT);
        let config = Config::builder()
            .close_policy(policy)
            .backoff_schedule(vec![Duration::from_millis(50)])
            .build()
            .unwrap();
        let hello = HelloAck::new(|| json!({"type": "hello"}));
        let client = timeout(
            Duration::from_secs(5),
            tether_smol::connect(&url, config, hello),
        )
        .await
        .unwrap();
        assert_eq!(client.status(), Status::Open);
        let mut statuses = client.status_changes();
        let r = client
            .request(HelloAckRequest::new("echo", json!({"n": 1})))
            .await
            .unwrap();
        assert_eq!(r, json!({"n": 1}));
        // The server closed with 1012: the session reconnects and serves again.
        let s1 = timeout(Duration::from_secs(5), statuses.next()).await;
        assert_eq!(s1, Some(Status::Reconnecting));
        let s2 = timeout(Duration::from_secs(5), statuses.next()).await;
        assert_eq!(s2, Some(Status::Open));
        let r = client
            .request(HelloAckRequest::new("echo", json!({"n": 2})))
            .await
            .unwrap();
        assert_eq!(r, json!({"n": 2}));
        timeout(Duration::from_secs(5), client.close()).await;
        assert_eq!(client.status(), Status::Closed);
        timeout(Duration::from_secs(5), server).await;
    });
}
