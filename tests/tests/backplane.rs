//! The hub backplane across real processes: two or three `hub_node` processes
//! (`tests/src/bin/hub_node.rs`, on tokio or on smol) share a real Redis
//! (`scripts/redis-setup.sh`'s `redis-server`, started on a free loopback port by each
//! test and killed at its end), and real WebSocket clients on loopback check what reaches
//! them: delivery across processes, order per publisher, no double delivery to the
//! publisher's own members, an outage and its recovery, a process killed mid-broadcast,
//! and garbage published on the channel. `TETHER_SKIP_REDIS=1` skips them.
#![cfg(unix)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tether_tests::redis::{HubNode, Redis, WAIT};
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket client of a hub process, in a topic; what it receives is collected.
struct Client {
    got: Arc<Mutex<Vec<String>>>,
}

impl Client {
    async fn join(port: u16, topic: &str) -> Client {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}"))
            .await
            .expect("connect to hub_node");
        ws.send(Message::text(format!("join {topic}")))
            .await
            .expect("send join");
        let answer = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an answer to join in time");
        match answer {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), format!("joined {topic}")),
            other => panic!("unexpected answer to join: {other:?}"),
        }
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                let entry = match m {
                    Message::Text(t) => t.as_str().to_owned(),
                    Message::Binary(b) => format!("binary of {} bytes", b.len()),
                    _ => continue,
                };
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
            }
        });
        Client { got }
    }

    fn got(&self) -> Vec<String> {
        self.got.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits (polling, at most [`WAIT`]) until a message matching `done` came; all it
    /// received up to and including it.
    async fn until(&self, done: &str) -> Vec<String> {
        let start = Instant::now();
        loop {
            let got = self.got();
            if let Some(i) = got.iter().position(|m| m == done) {
                return got[..=i].to_vec();
            }
            assert!(
                start.elapsed() < WAIT,
                "{done:?} never came; got {} messages, last {:?}",
                got.len(),
                got.last()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `tag 0` … `tag n-1`.
fn seq(tag: &str, n: u64) -> Vec<String> {
    (0..n).map(|i| format!("{tag} {i}")).collect()
}

/// Checks that `got` holds `tag 0` … `tag n-1`, in order, each once; the failure names the
/// first difference rather than printing hundreds of messages.
fn assert_seq(got: &[String], tag: &str, n: u64, who: &str) {
    let want = seq(tag, n);
    let got = of(got, tag);
    if let Some(i) = (0..want.len().max(got.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!(
            "{who}: {} messages of {tag:?} where {n} were due; the first difference at {i}: \
             {:?} instead of {:?}",
            got.len(),
            got.get(i),
            want.get(i)
        );
    }
}

/// The messages of `tag`, in the order they came.
fn of(got: &[String], tag: &str) -> Vec<String> {
    let prefix = format!("{tag} ");
    got.iter()
        .filter(|m| m.starts_with(&prefix))
        .cloned()
        .collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

const BIN: &str = env!("CARGO_BIN_EXE_hub_node");

fn nodes(redis: &Redis, runtime: &str, n: usize, env: &[(&str, &str)]) -> Vec<HubNode> {
    let nodes: Vec<HubNode> = (0..n)
        .map(|i| {
            let name = format!("node{i} ({runtime})");
            HubNode::start(BIN, &name, runtime, &redis.url(), env)
        })
        .collect();
    for node in &nodes {
        node.wait_up(0);
    }
    nodes
}

/// Three processes, two of them publishing 300 messages each to one topic at once: every
/// member of the topic in every process gets all 600, each publisher's in its order, and
/// a member of another topic none. The publisher's own members get its messages once:
/// locally at once, and the copy Redis sends back is skipped by its origin id. A
/// sentinel from the third process, published after Redis acknowledged all 600, comes
/// after any such echo on the same subscription, so nothing can hide behind it.
fn delivery_order_and_no_double_delivery(runtime: &str) {
    let Some(redis) = Redis::start() else { return };
    let mut nodes = nodes(&redis, runtime, 3, &[]);
    let rt = rt();
    rt.block_on(async {
        let mut room = Vec::new();
        for node in &nodes {
            room.push(Client::join(node.port, "room").await);
            room.push(Client::join(node.port, "room").await);
        }
        let other = Client::join(nodes[0].port, "other").await;
        nodes[0].send("pub room 300 a");
        nodes[1].send("pub room 300 b");
        for (i, tag) in [(0, "a"), (1, "b")] {
            nodes[i].wait_for(0, |l| l == format!("DONE {tag}"));
            nodes[i].wait_stats("300 published", |s| s["published"] == 300);
        }
        nodes[2].send("pub room 1 end");
        for (i, c) in room.iter().enumerate() {
            let got = c.until("end 0").await;
            assert_seq(&got, "a", 300, &format!("client {i}"));
            assert_seq(&got, "b", 300, &format!("client {i}"));
            assert_eq!(got.len(), 601, "client {i}: nothing else");
        }
        assert!(other.got().is_empty(), "another topic's member got nothing");
    });
    let stats: Vec<_> = nodes.iter_mut().map(HubNode::stats).collect();
    assert_eq!(stats[0]["own"], 300, "{}", stats[0]);
    assert_eq!(stats[0]["received"], 301, "{}", stats[0]);
    assert_eq!(stats[2]["received"], 600, "{}", stats[2]);
    assert_eq!(stats[2]["own"], 1, "{}", stats[2]);
}

#[test]
fn delivery_order_and_no_double_delivery_tokio() {
    delivery_order_and_no_double_delivery("tokio");
}

#[test]
fn delivery_order_and_no_double_delivery_smol() {
    delivery_order_and_no_double_delivery("smol");
}

/// Redis is killed: both processes report the outage (`EVENT down`), a topic broadcast
/// still reaches the publisher's own members at once and is counted as not published,
/// and the other process gets nothing of it. Redis restarts on the same port: both
/// reconnect on their own (their backoff), and the next broadcast crosses again, with
/// nothing of the outage replayed.
fn an_outage_is_reported_and_recovered(runtime: &str) {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let mut nodes = nodes(&redis, runtime, 2, &[]);
    let rt = rt();
    rt.block_on(async {
        let a = Client::join(nodes[0].port, "room").await;
        let b = Client::join(nodes[1].port, "room").await;
        nodes[0].send("pub room 1 before");
        b.until("before 0").await;

        let marks: Vec<usize> = nodes.iter().map(HubNode::printed).collect();
        redis.kill();
        for (node, &from) in nodes.iter().zip(&marks) {
            node.wait_for(from, |l| l == "EVENT down publisher");
            node.wait_for(from, |l| l == "EVENT down subscriber");
        }
        nodes[0].send("pub room 5 during");
        let got = a.until("during 4").await;
        assert_seq(&got, "during", 5, "the publisher's own member");
        nodes[0].wait_stats("5 dropped", |s| s["dropped_down"] == 5);
        assert!(nodes[0].stats()["failures"].as_u64() >= Some(2));

        let marks: Vec<usize> = nodes.iter().map(HubNode::printed).collect();
        redis.restart();
        for (node, &from) in nodes.iter().zip(&marks) {
            node.wait_up(from);
        }
        nodes[0].send("pub room 3 after");
        let got = b.until("after 2").await;
        assert_eq!(
            got,
            ["before 0", "after 0", "after 1", "after 2"],
            "nothing of the outage replayed"
        );
    });
    assert_eq!(nodes[1].stats()["received"], 4);
}

#[test]
fn an_outage_is_reported_and_recovered_tokio() {
    an_outage_is_reported_and_recovered("tokio");
}

#[test]
fn an_outage_is_reported_and_recovered_smol() {
    an_outage_is_reported_and_recovered("smol");
}

/// A process killed (SIGKILL) in the middle of a slow broadcast of 100,000 messages: the
/// others received a gapless prefix of it, in order, keep running, and go on exchanging
/// broadcasts.
fn a_process_killed_mid_broadcast(runtime: &str) {
    let Some(redis) = Redis::start() else { return };
    let mut nodes = nodes(&redis, runtime, 3, &[]);
    let rt = rt();
    rt.block_on(async {
        let b = Client::join(nodes[1].port, "room").await;
        let c = Client::join(nodes[2].port, "room").await;
        nodes[0].send("pubslow room 100000 k");
        b.until("k 20").await;
        nodes[0].kill();
        let killed_at = b.got().len();
        nodes[2].send("pub room 50 c");
        for (name, client) in [("b", &b), ("c", &c)] {
            let got = client.until("c 49").await;
            assert_seq(&got, "c", 50, name);
            let k = of(&got, "k");
            assert!(k.len() >= killed_at.min(21), "{name}: {}", k.len());
            assert!(k.len() < 100_000, "{name}: the broadcast was cut");
            assert_eq!(k, seq("k", k.len() as u64), "{name}: a gapless prefix");
        }
        nodes[1].send("pub room 2 b");
        c.until("b 1").await;
    });
    assert!(nodes[1].alive() && nodes[2].alive());
}

#[test]
fn a_process_killed_mid_broadcast_tokio() {
    a_process_killed_mid_broadcast("tokio");
}

#[test]
fn a_process_killed_mid_broadcast_smol() {
    a_process_killed_mid_broadcast("smol");
}

/// Garbage published on the backplane's channels by someone else: not a backplane
/// message, a header with an unknown kind, text that is not UTF-8, a topic over the
/// length limit, and a message over the process's `max_message_bytes` (64 KiB here). Each
/// is dropped and counted, none reaches a member, and the process goes on delivering.
fn garbage_from_redis_is_dropped_and_counted(runtime: &str) {
    let Some(redis) = Redis::start() else { return };
    let env = [("HUB_NODE_MAX_MESSAGE", "65536")];
    let mut nodes = nodes(&redis, runtime, 2, &env);
    let rt = rt();
    rt.block_on(async {
        let a = Client::join(nodes[0].port, "room").await;
        let header = |kind: u8| {
            let mut m = b"TBP1".to_vec();
            m.extend_from_slice(&7u64.to_be_bytes());
            m.extend_from_slice(&0u64.to_be_bytes());
            m.push(kind);
            m
        };
        let mut bad_kind = header(9);
        bad_kind.extend_from_slice(b"hi");
        let mut bad_utf8 = header(0);
        bad_utf8.extend_from_slice(&[0xff, 0xfe]);
        let mut huge = header(1);
        huge.resize(100_000, b'x');
        let mut fine = header(0);
        fine.extend_from_slice(b"fine");
        let long_topic = format!("tether:hub:{}", "t".repeat(300));
        let room = b"tether:hub:room".as_slice();
        for (channel, message) in [
            (room, b"not a backplane message".as_slice()),
            (room, &bad_kind),
            (room, &bad_utf8),
            (long_topic.as_bytes(), &fine),
            (room, &huge),
        ] {
            let reply = redis
                .command(&[b"PUBLISH", channel, message])
                .expect("publish garbage");
            assert_eq!(reply, b":2\r\n", "both processes subscribed");
        }
        nodes[1].send("pub room 1 ok");
        let got = a.until("ok 0").await;
        assert_eq!(got, ["ok 0"], "no garbage reached a member");
    });
    for node in &mut nodes {
        let stats = node.stats();
        assert_eq!(stats["undecodable"], 4, "{}: {stats}", node.name);
        assert_eq!(stats["oversized"], 1, "{}: {stats}", node.name);
        assert!(node.alive());
    }
}

#[test]
fn garbage_from_redis_is_dropped_and_counted_tokio() {
    garbage_from_redis_is_dropped_and_counted("tokio");
}

#[test]
fn garbage_from_redis_is_dropped_and_counted_smol() {
    garbage_from_redis_is_dropped_and_counted("smol");
}
