//! The scripted OpenClaw gateway (`servers::GatewayServer`) does what the real gateway
//! was seen doing, and the `Gateway` profile's session copes with each behaviour. Every
//! test checks both sides: the raw frames the server sent (so a behaviour removed from
//! the server fails the test) and what the session made of them.

use std::time::Duration;

use serde_json::{Value, json};
use tether_core::profiles::{Gateway, GatewayOptions, GatewayRequest};
use tether_core::{
    AttemptError, CloseCode, Config, DisconnectReason, EndReason, Event, InFrame, Input, Output,
    RequestFailure, RequestId, SessionError, StreamEvent, StreamEventKind,
};
use tether_sim::servers::GatewayServer;
use tether_sim::{
    Command, CommandRecord, Entry, Fault, FaultPlan, Run, RunConfig, Script, World, oracle,
};

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn chat_send(key: &str, at: Duration) -> (Duration, Command<Gateway>) {
    (
        at,
        Command::Request {
            request: GatewayRequest::chat_send(key, "hello"),
            timeout: None,
        },
    )
}

fn request(request: GatewayRequest, at: Duration) -> (Duration, Command<Gateway>) {
    (
        at,
        Command::Request {
            request,
            timeout: None,
        },
    )
}

fn run_with(
    options: GatewayOptions,
    server: GatewayServer,
    seed: u64,
    plan: Vec<(Duration, Fault)>,
    script: Vec<(Duration, Command<Gateway>)>,
    secs: u64,
) -> Run<Gateway> {
    run_full(Config::default(), options, server, seed, plan, script, secs)
}

fn run_full(
    config: Config,
    options: GatewayOptions,
    server: GatewayServer,
    seed: u64,
    plan: Vec<(Duration, Fault)>,
    script: Vec<(Duration, Command<Gateway>)>,
    secs: u64,
) -> Run<Gateway> {
    let run = World::new(config, Gateway::new(options), server, seed)
        .expect("valid config")
        .plan(FaultPlan::new(plan))
        .workload(Script::new(script))
        .run(RunConfig::lasting(s(secs)));
    let broken = oracle::check(&run.timeline);
    assert!(broken.is_empty(), "seed {seed}: {broken:#?}");
    run
}

fn run(
    server: GatewayServer,
    seed: u64,
    plan: Vec<(Duration, Fault)>,
    script: Vec<(Duration, Command<Gateway>)>,
    secs: u64,
) -> Run<Gateway> {
    run_with(GatewayOptions::default(), server, seed, plan, script, secs)
}

/// Every text frame the session received, parsed, with its time.
fn frames(run: &Run<Gateway>) -> Vec<(Duration, Value)> {
    run.timeline
        .records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Input(Input::FrameReceived {
                frame: InFrame::Text(b),
                ..
            }) => serde_json::from_slice(b).ok().map(|v| (r.at, v)),
            _ => None,
        })
        .collect()
}

/// The `chat` event payloads the session received, in order.
fn chat_payloads(run: &Run<Gateway>) -> Vec<Value> {
    frames(run)
        .into_iter()
        .filter(|(_, v)| v["event"] == "chat")
        .map(|(_, v)| v["payload"].clone())
        .collect()
}

/// Every event the session delivered, with its index in the timeline.
fn events(run: &Run<Gateway>) -> Vec<(usize, &Event<Gateway>)> {
    run.timeline
        .records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match &r.entry {
            Entry::Output(Output::Event(e)) => Some((i, e)),
            _ => None,
        })
        .collect()
}

/// The ids of the requests the workload issued, in order.
fn request_ids(run: &Run<Gateway>) -> Vec<RequestId> {
    run.timeline
        .records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Command(CommandRecord::Request { result: Ok(id), .. }) => Some(*id),
            _ => None,
        })
        .collect()
}

/// The stream events of request `id`, with their timeline index.
fn stream_of(
    run: &Run<Gateway>,
    id: RequestId,
) -> Vec<(usize, &StreamEventKind<tether_core::profiles::GatewayEvent>)> {
    events(run)
        .into_iter()
        .filter_map(|(i, e)| match e {
            Event::Stream(StreamEvent { request, kind, .. }) if *request == Some(id) => {
                Some((i, kind))
            }
            _ => None,
        })
        .collect()
}

/// The response of request `id` (its payload as a `Value`), with its timeline index.
fn response_of(
    run: &Run<Gateway>,
    id: RequestId,
) -> (
    usize,
    Result<Value, RequestFailure<tether_core::profiles::GatewayError>>,
) {
    events(run)
        .into_iter()
        .find_map(|(i, e)| match e {
            Event::Response { id: rid, result } if *rid == id => Some((
                i,
                result
                    .clone()
                    .map(|p| p.value().expect("the answer is JSON")),
            )),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no response for {id:?}"))
}

/// The concatenated delta text and the terminal of a stream.
fn text_and_end(
    kinds: &[(usize, &StreamEventKind<tether_core::profiles::GatewayEvent>)],
) -> (
    String,
    Vec<StreamEventKind<tether_core::profiles::GatewayEvent>>,
) {
    let mut text = String::new();
    let mut terminals = Vec::new();
    for (_, k) in kinds {
        match k {
            StreamEventKind::Delta { text: Some(t), .. } => text.push_str(t),
            k if k.is_terminal() => terminals.push((*k).clone()),
            _ => {}
        }
    }
    (text, terminals)
}

fn quiet_server() -> GatewayServer {
    {
        let mut g = GatewayServer::default();
        g.double_error = 0.0;
        g.abort = 0.0;
        g
    }
}

const REPLY: &str = "The quick brown fox jumps over the lazy dog";

// ---- runs ------------------------------------------------------------------------------------

/// Coalesced deltas, some of whose `deltaText` lost the words of dropped deltas: the text
/// rebuilt from the cumulative `message` is the reply, and the final carries all of it.
#[test]
fn coalesced_and_dropped_deltas_rebuild_the_reply_exactly() {
    let server = {
        let mut g = quiet_server();
        g.drop_delta = 1.0;
        g
    };
    let script = (0..6)
        .map(|i| chat_send("agent:main:main", s(1 + 10 * i)))
        .collect();
    let run = run(server, 11, vec![], script, 120);
    let ids = request_ids(&run);
    assert_eq!(ids.len(), 6);
    for id in ids {
        let kinds = stream_of(&run, id);
        let (text, terminals) = text_and_end(&kinds);
        assert_eq!(text, REPLY);
        assert!(
            matches!(&terminals[..], [StreamEventKind::Final { text: Some(t), .. }] if t == REPLY),
            "{terminals:?}"
        );
    }
    // The server did coalesce and drop: fewer deltas than words, and some deltaText that
    // is not the growth of the cumulative message.
    let deltas: Vec<Value> = chat_payloads(&run)
        .into_iter()
        .filter(|p| p["state"] == "delta")
        .collect();
    assert!(
        deltas.len() < 6 * REPLY.split(' ').count(),
        "{}",
        deltas.len()
    );
    let mut before = String::new();
    let mut mismatched = 0;
    for p in &deltas {
        let now = p["message"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        let growth = now.strip_prefix(before.as_str()).unwrap_or(&now).to_owned();
        if p["deltaText"] != growth.as_str() {
            mismatched += 1;
        }
        before = if now == REPLY { String::new() } else { now };
    }
    assert!(mismatched > 0, "no delta was dropped");
}

/// Run seqs skip numbers (`agent` events share the counter): the session reports gaps and
/// delivers the `agent` events as messages.
#[test]
fn run_seqs_skip_and_the_session_reports_gaps() {
    let script = (0..4)
        .map(|i| chat_send("agent:main:main", s(1 + 10 * i)))
        .collect();
    let run = run(quiet_server(), 12, vec![], script, 60);
    let seqs: Vec<u64> = chat_payloads(&run)
        .iter()
        .filter(|p| p["state"] == "status" || p["state"] == "delta")
        .filter_map(|p| p["seq"].as_u64())
        .collect();
    assert!(seqs.windows(2).any(|w| w[1] > w[0] + 1), "{seqs:?}");
    assert!(run.stats.gaps > 0);
    let agents = events(&run)
        .iter()
        .filter(|(_, e)| matches!(e, Event::Message(ev) if ev.event == "agent"))
        .count();
    assert!(agents > 0, "agent events are messages");
}

/// The `final` often carries the seq of the last delta: it still ends the run, with the
/// whole text, and is not taken for a duplicate.
#[test]
fn a_final_sharing_the_last_deltas_seq_ends_the_run() {
    let server = {
        let mut g = quiet_server();
        g.final_shares_seq = 1.0;
        g
    };
    let script = (0..5)
        .map(|i| chat_send("agent:main:main", s(1 + 10 * i)))
        .collect();
    let run = run(server, 13, vec![], script, 80);
    let payloads = chat_payloads(&run);
    let shared = payloads
        .windows(2)
        .filter(|w| {
            w[0]["state"] == "delta"
                && w[1]["state"] == "final"
                && w[0]["runId"] == w[1]["runId"]
                && w[0]["seq"] == w[1]["seq"]
        })
        .count();
    assert_eq!(shared, 5, "every final shares its last delta's seq");
    for id in request_ids(&run) {
        let (_, terminals) = text_and_end(&stream_of(&run, id));
        assert!(
            matches!(&terminals[..], [StreamEventKind::Final { text: Some(t), .. }] if t == REPLY),
            "{terminals:?}"
        );
    }
    assert_eq!(run.stats.duplicates_dropped, 0);
}

/// A failing run sends two `error` events, the second with its seq back at 1: one
/// `Error` reaches the application, the second is suppressed as late.
#[test]
fn a_double_error_ends_the_run_once() {
    let server = {
        let mut g = GatewayServer::default();
        g.double_error = 1.0;
        g
    };
    let script = (0..4)
        .map(|i| chat_send("agent:main:main", s(1 + 10 * i)))
        .collect();
    let run = run(server, 14, vec![], script, 60);
    let errors: Vec<(String, u64)> = chat_payloads(&run)
        .iter()
        .filter(|p| p["state"] == "error")
        .map(|p| {
            (
                p["runId"].as_str().unwrap().to_owned(),
                p["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(errors.len(), 8, "two per run: {errors:?}");
    for pair in errors.chunks(2) {
        assert_eq!(pair[0].0, pair[1].0);
        assert_eq!(pair[1].1, 1, "the second error's seq starts again");
        assert!(pair[1].1 < pair[0].1);
    }
    for id in request_ids(&run) {
        let (_, terminals) = text_and_end(&stream_of(&run, id));
        assert!(
            matches!(&terminals[..], [StreamEventKind::Error { .. }]),
            "{terminals:?}"
        );
    }
    assert!(run.stats.late_events + run.stats.duplicates_dropped >= 4);
    assert_eq!(run.stats.violations, 0);
}

/// With `event_first`, a run's first event beats the `chat.send` answer: the session
/// keeps it, because the stream was registered before the request was written.
#[test]
fn run_events_before_the_answer_are_kept() {
    let server = {
        let mut g = quiet_server();
        g.event_first = 1.0;
        g
    };
    let script = (0..4)
        .map(|i| chat_send("agent:main:main", s(1 + 10 * i)))
        .collect();
    let run = run(server, 15, vec![], script, 60);
    for id in request_ids(&run) {
        let kinds = stream_of(&run, id);
        let (answered, result) = response_of(&run, id);
        assert!(result.is_ok());
        let first = kinds.first().expect("stream events").0;
        assert!(first < answered, "the first event comes before the answer");
        assert!(matches!(kinds[0].1, StreamEventKind::Status(_)));
    }
}

/// Row 21: a gateway that names runs itself (`runId` ≠ `idempotencyKey`): the session
/// learns the run id from the answer and routes every event of the run to the caller's
/// stream, exactly once, ending with the whole reply; nothing is unsolicited.
#[test]
fn a_run_named_by_the_server_streams_to_its_caller() {
    let server = {
        let mut g = quiet_server();
        g.own_run_ids = 1.0;
        g
    };
    let script = (0..4)
        .map(|i| chat_send("agent:main:main", s(1 + 10 * i)))
        .collect();
    let run = run(server, 16, vec![], script, 60);
    let ids = request_ids(&run);
    assert_eq!(ids.len(), 4);
    for id in ids {
        let (_, result) = response_of(&run, id);
        let answer = result.as_ref().expect("answered");
        let run_id = answer["runId"].as_str().expect("a run id");
        assert!(run_id.starts_with("srv-run-"), "{answer}");
        let kinds = stream_of(&run, id);
        let terminals: Vec<_> = kinds
            .iter()
            .map(|(_, k)| *k)
            .filter(|k| k.is_terminal())
            .collect();
        assert!(
            matches!(&terminals[..], [StreamEventKind::Final { text: Some(t), .. }] if t == REPLY),
            "{id:?}: {kinds:?}"
        );
    }
    let unsolicited = events(&run)
        .into_iter()
        .filter(|(_, e)| matches!(e, Event::Unsolicited(_)))
        .count();
    assert_eq!(unsolicited, 0, "every run event reached its stream");
}

// ---- chat.abort, agent.wait, chat.history, chat.inject ----------------------------------------

/// `chat.abort` mid-run: the `aborted` event (with the text so far) comes before the
/// answer `{ok, aborted:true, runIds:[run]}`, and a pending `agent.wait` on the run is
/// answered `error`.
#[test]
fn chat_abort_ends_the_run_aborted_before_its_answer() {
    let server = {
        let mut g = quiet_server();
        g.reply = "w ".repeat(200).trim_end().to_owned();
        g.coalesce = 1;
        g.event_first = 0.0;
        g
    };
    let key = "agent:main:abort";
    let script = vec![
        (
            s(1),
            Command::Request {
                request: GatewayRequest::chat_send_with_key(key, "go", "run-a"),
                timeout: None,
            },
        ),
        request(GatewayRequest::agent_wait("run-a", s(60)), s(2)),
        request(GatewayRequest::chat_abort(key, Some("run-a".into())), s(3)),
        request(GatewayRequest::chat_abort(key, None), s(4)),
    ];
    let run = run(server, 16, vec![], script, 30);
    let ids = request_ids(&run);
    let kinds = stream_of(&run, ids[0]);
    let (text, terminals) = text_and_end(&kinds);
    assert!(
        matches!(&terminals[..], [StreamEventKind::Aborted(_)]),
        "{terminals:?}"
    );
    assert!(!text.is_empty() && text.len() < 399, "{}", text.len());
    let aborted_at = kinds.last().unwrap().0;
    let (answered_at, answer) = response_of(&run, ids[2]);
    assert!(aborted_at < answered_at);
    assert_eq!(
        answer.as_ref().unwrap(),
        &json!({"ok": true, "aborted": true, "runIds": ["run-a"]})
    );
    let (_, waited) = response_of(&run, ids[1]);
    assert_eq!(waited.as_ref().unwrap()["status"], "error");
    let (_, again) = response_of(&run, ids[3]);
    assert_eq!(
        again.as_ref().unwrap()["aborted"],
        false,
        "nothing left to abort"
    );
}

/// `agent.wait` answers `ok` when its run ends, `timeout` after `timeoutMs` for a run
/// that never ends; `chat.history` then holds the user message and the reply.
#[test]
fn agent_wait_and_chat_history_follow_the_runs() {
    let key = "agent:main:wait";
    let script = vec![
        (
            s(1),
            Command::Request {
                request: GatewayRequest::chat_send_with_key(key, "hi", "run-w"),
                timeout: None,
            },
        ),
        request(GatewayRequest::agent_wait("run-w", s(30)), ms(1010)),
        request(GatewayRequest::agent_wait("no-such-run", ms(2500)), s(2)),
        request(GatewayRequest::chat_history(key, Some(10)), s(10)),
        request(GatewayRequest::chat_history(key, Some(1)), s(11)),
    ];
    let run = run(quiet_server(), 17, vec![], script, 30);
    let ids = request_ids(&run);
    let (_, waited) = response_of(&run, ids[1]);
    assert_eq!(waited.as_ref().unwrap()["status"], "ok");
    let (timed_out_at, timed_out) = response_of(&run, ids[2]);
    assert_eq!(timed_out.as_ref().unwrap()["status"], "timeout");
    let at = run.timeline.records[timed_out_at].at;
    assert!(at >= ms(4500), "answered at {at:?}, before its timeoutMs");
    let (_, history) = response_of(&run, ids[3]);
    let history = history.as_ref().unwrap();
    assert_eq!(
        history["messages"][0],
        json!({"role": "user", "content": "hi"})
    );
    assert_eq!(history["messages"][1]["content"][0]["text"], REPLY);
    assert_eq!(history["hasMore"], false);
    let (_, page) = response_of(&run, ids[4]);
    assert_eq!(page.as_ref().unwrap()["hasMore"], true);
}

/// `chat.inject` needs `operator.admin`; with it, a `final` chat event of a run of its
/// own arrives (unsolicited) before the answer, and the transcript holds the message.
#[test]
fn chat_inject_needs_admin_and_arrives_unsolicited_first() {
    let key = "agent:main:inject";
    let script = || {
        vec![
            request(
                GatewayRequest::chat_inject(key, "note", Some("ops".into())),
                s(1),
            ),
            request(GatewayRequest::chat_history(key, None), s(2)),
        ]
    };
    let plain = run(quiet_server(), 18, vec![], script(), 10);
    let (_, refused) = response_of(&plain, request_ids(&plain)[0]);
    match refused {
        Err(RequestFailure::Remote(e)) => assert_eq!(e.code, "FORBIDDEN"),
        other => panic!("{other:?}"),
    }

    let mut options = GatewayOptions::default();
    options.scopes.push("operator.admin".into());
    let admin = run_with(options, quiet_server(), 18, vec![], script(), 10);
    let ids = request_ids(&admin);
    let (answered_at, answer) = response_of(&admin, ids[0]);
    let message_id = answer.as_ref().unwrap()["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (unsolicited_at, payload) = events(&admin)
        .into_iter()
        .find_map(|(i, e)| match e {
            Event::Unsolicited(ev) => Some((i, ev.payload.value().expect("JSON"))),
            _ => None,
        })
        .expect("the injected message's chat event");
    assert!(unsolicited_at < answered_at);
    assert_eq!(payload["state"], "final");
    assert_eq!(payload["runId"], format!("inject-{message_id}"));
    let (_, history) = response_of(&admin, ids[1]);
    assert_eq!(
        history.as_ref().unwrap()["messages"][0]["content"][0]["text"],
        "[ops]\n\nnote"
    );
}

// ---- connections -------------------------------------------------------------------------------

/// A run goes on while its client is away: after a drop and a reconnect, its remaining
/// events arrive on the new connection (the session ended the stream at the drop and
/// does not deliver them as the old stream's).
#[test]
fn a_run_outlives_its_connection() {
    let server = {
        let mut g = quiet_server();
        g.reply = "w ".repeat(100).trim_end().to_owned();
        g.coalesce = 1;
        g
    };
    let script = vec![(
        s(1),
        Command::Request {
            request: GatewayRequest::chat_send_with_key("agent:main:main", "go", "run-d"),
            timeout: None,
        },
    )];
    let run = run(server, 19, vec![(ms(2500), Fault::Drop)], script, 60);
    let id = request_ids(&run)[0];
    let kinds = stream_of(&run, id);
    assert!(
        matches!(kinds.last().unwrap().1, StreamEventKind::Ended(_)),
        "{:?}",
        kinds.last()
    );
    let reopened = run
        .timeline
        .records
        .iter()
        .filter(|r| matches!(&r.entry, Entry::Output(Output::Event(Event::Opened { .. }))))
        .nth(1)
        .expect("a second connection")
        .at;
    let later: Vec<Value> = frames(&run)
        .into_iter()
        .filter(|(at, v)| *at > reopened && v["event"] == "chat")
        .map(|(_, v)| v["payload"].clone())
        .collect();
    assert!(
        later
            .iter()
            .any(|p| p["runId"] == "run-d" && p["state"] == "final"),
        "the run's final reaches the new connection"
    );
}

/// Ticks every tick interval, each event with a per-connection seq.
#[test]
fn ticks_arrive_every_tick_interval() {
    let run = run(quiet_server(), 20, vec![], vec![], 300);
    let ticks: Vec<(Duration, Value)> = frames(&run)
        .into_iter()
        .filter(|(_, v)| v["event"] == "tick")
        .collect();
    assert_eq!(
        ticks.len(),
        9,
        "one every 30 s of a 300 s run, bar the last"
    );
    let seqs: Vec<u64> = ticks
        .iter()
        .map(|(_, v)| v["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
}

/// After a restart the gateway answers `UNAVAILABLE` (`retryAfterMs: 500`) and closes
/// 1013 while it starts: the session retries no sooner than 500 ms later and opens.
#[test]
fn a_starting_gateway_is_retried_after_its_retry_after() {
    let restart = Fault::Restart {
        down: s(5),
        graceful: false,
    };
    // Retried every 200 ms, so that attempts land in the 3 s the server is starting.
    let config = Config::builder()
        .backoff_schedule(vec![ms(200)])
        .build()
        .unwrap();
    let run = run_full(
        config,
        GatewayOptions::default(),
        quiet_server(),
        21,
        vec![(s(10), restart)],
        vec![],
        120,
    );
    let unavailable = frames(&run)
        .into_iter()
        .filter(|(_, v)| v["error"]["code"] == "UNAVAILABLE")
        .count();
    assert!(unavailable > 0);
    let closed_1013 = run.timeline.records.iter().any(|r| {
        matches!(
            &r.entry,
            Entry::Input(Input::TransportClosed {
                code: Some(CloseCode::TRY_AGAIN_LATER),
                ..
            })
        )
    });
    assert!(closed_1013);
    let floors: Vec<_> = events(&run)
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::AttemptFailed {
                error: AttemptError::HandshakeRejected { message },
                retry,
                ..
            } => Some((message.clone(), *retry)),
            _ => None,
        })
        .collect();
    assert!(!floors.is_empty());
    for (message, retry) in floors {
        assert_eq!(message, "gateway starting; retry shortly");
        let retry = retry.expect("retried");
        assert_eq!(retry.floor, Some(ms(500)));
        assert!(retry.wait >= ms(500));
    }
    assert!(run.stats.opens >= 2);
}

/// A graceful restart: a `shutdown` event, then close 1012; a request the server never
/// saw (written as the restart began) fails as `Disconnected`, while one it answered
/// just before is answered.
#[test]
fn a_graceful_restart_says_shutdown_before_1012() {
    let restart = Fault::Restart {
        down: s(3),
        graceful: true,
    };
    let script = vec![
        request(GatewayRequest::new("health", None), ms(9900)),
        request(GatewayRequest::new("health", None), s(10)),
    ];
    let run = run(quiet_server(), 22, vec![(s(10), restart)], script, 60);
    let shutdown = events(&run)
        .into_iter()
        .find_map(|(i, e)| matches!(e, Event::Message(ev) if ev.event == "shutdown").then_some(i))
        .expect("a shutdown event");
    let closed = events(&run)
        .into_iter()
        .find_map(|(i, e)| match e {
            Event::Disconnected {
                reason:
                    DisconnectReason::Closed {
                        code: Some(CloseCode::SERVICE_RESTART),
                        ..
                    },
                ..
            } => Some(i),
            _ => None,
        })
        .expect("a 1012 close");
    assert!(shutdown < closed);
    let ids = request_ids(&run);
    let (_, answered) = response_of(&run, ids[0]);
    assert_eq!(answered.as_ref().unwrap()["ok"], true);
    let (_, lost) = response_of(&run, ids[1]);
    assert_eq!(lost, Err(RequestFailure::Disconnected));
}

/// A wrong token: `INVALID_REQUEST`, not retryable, then close 1000 "handshake
/// rejected": the session fails for good after one attempt, whatever the close code.
#[test]
fn a_wrong_token_is_fatal() {
    let server = {
        let mut g = quiet_server();
        g.token = Some("right".into());
        g
    };
    let options = GatewayOptions {
        token: Some("wrong".into()),
        ..GatewayOptions::default()
    };
    let run = run_with(options, server, 23, vec![], vec![], 60);
    assert_eq!(run.stats.attempts, 1);
    let ended = events(&run)
        .into_iter()
        .find_map(|(_, e)| match e {
            Event::Ended(reason) => Some(reason.clone()),
            _ => None,
        })
        .expect("the session ended");
    assert!(
        matches!(
            &ended,
            EndReason::Failed(SessionError::FatalAttempt(AttemptError::HandshakeRejected { message }))
                if message.contains("token mismatch")
        ),
        "{ended:?}"
    );
}
