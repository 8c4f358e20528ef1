//! Kubernetes discovery against a mocked API server (tower-test): list, watch events (added,
//! modified to not Ready, deleted), a dropped watch, `410 Gone` and re-list, RBAC refusals, a
//! selector that matches nothing.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::client::Body;
use repliqd::config::{Peer, PeerName, TlsIdentity};
use repliqd::discovery::PeerSet;
use repliqd::discovery::kubernetes::{self, Settings};
use serde_json::{Value, json};
use tokio::sync::watch;
use tower_test::mock::{Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn settings() -> Settings {
    Settings {
        namespace: "queues".into(),
        label_selector: "app=repliq".into(),
        port: 31337,
        peer_name: PeerName::Node,
        tls_identity: TlsIdentity::Peer,
        node: "node-a".into(),
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
    }
}

fn pod(name: &str, node: &str, ip: &str, ready: bool, rv: u32) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "queues", "resourceVersion": rv.to_string(),
                     "labels": {"app": "repliq"}},
        "spec": {"nodeName": node, "containers": []},
        "status": {
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
        }
    })
}

fn list(items: Vec<Value>, rv: u32) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items
    }))
    .unwrap()
}

fn events(events: &[(&str, Value)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, object) in events {
        serde_json::to_writer(&mut out, &json!({"type": kind, "object": object})).unwrap();
        out.push(b'\n');
    }
    out
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn peer(name: &str, ip: &str) -> Peer {
    Peer {
        name: name.into(),
        address: format!("{ip}:31337"),
        identity: None,
    }
}

/// The next request: (is it a watch, its query string, the responder).
async fn next(handle: &mut ApiHandle) -> (bool, String, SendResponse<Response<Body>>) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("the watcher sent no request")
        .expect("the client went away");
    assert_eq!(req.uri().path(), "/api/v1/namespaces/queues/pods");
    let query = req.uri().query().unwrap_or_default().to_owned();
    assert!(query.contains("labelSelector=app%3Drepliq"), "{query}");
    (query.contains("watch=true"), query, send)
}

fn ok(send: SendResponse<Response<Body>>, body: Vec<u8>) {
    send.send_response(Response::builder().body(Body::from(body)).unwrap());
}

async fn until(rx: &mut watch::Receiver<PeerSet>, what: &str, f: impl Fn(&PeerSet) -> bool) {
    let got = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| f(s)))
        .await
        .map(|r| r.is_ok());
    if got != Ok(true) {
        panic!("timed out waiting for {what}; last {:?}", *rx.borrow());
    }
}

#[tokio::test]
async fn peers_join_and_leave_through_list_watch_drop_and_relist() {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(mock, "queues");
    let discovery = kubernetes::spawn(client, settings());
    let mut rx = discovery.subscribe();
    assert!(!rx.borrow().ready, "not ready before the first list");

    // List: a (this node), b Ready, c not Ready.
    let (watching, _, send) = next(&mut handle).await;
    assert!(!watching);
    ok(
        send,
        list(
            vec![
                pod("repliq-a", "node-a", "10.0.0.1", true, 1),
                pod("repliq-b", "node-b", "10.0.0.2", true, 2),
                pod("repliq-c", "node-c", "10.0.0.3", false, 3),
            ],
            10,
        ),
    );
    until(&mut rx, "b", |s| {
        s.ready && s.peers == [peer("node-b", "10.0.0.2")]
    })
    .await;

    // Watch from the list's version: d is added, c becomes Ready; then the watch is dropped.
    let (watching, query, send) = next(&mut handle).await;
    assert!(watching && query.contains("resourceVersion=10"), "{query}");
    ok(
        send,
        events(&[
            ("ADDED", pod("repliq-d", "node-d", "10.0.0.4", true, 11)),
            ("MODIFIED", pod("repliq-c", "node-c", "10.0.0.3", true, 12)),
        ]),
    );
    until(&mut rx, "b, c, d", |s| {
        s.peers
            == [
                peer("node-b", "10.0.0.2"),
                peer("node-c", "10.0.0.3"),
                peer("node-d", "10.0.0.4"),
            ]
    })
    .await;

    // The dropped watch resumes from the last version seen: b stops being Ready, d is deleted.
    let (watching, query, send) = next(&mut handle).await;
    assert!(watching && query.contains("resourceVersion=12"), "{query}");
    ok(
        send,
        events(&[
            ("MODIFIED", pod("repliq-b", "node-b", "10.0.0.2", false, 13)),
            ("DELETED", pod("repliq-d", "node-d", "10.0.0.4", true, 14)),
        ]),
    );
    until(&mut rx, "c alone", |s| {
        s.ready && s.peers == [peer("node-c", "10.0.0.3")]
    })
    .await;

    // 410 Gone: the watcher re-lists; c has gone meanwhile (no delete event), e has come.
    let (watching, query, send) = next(&mut handle).await;
    assert!(watching && query.contains("resourceVersion=14"), "{query}");
    ok(
        send,
        events(&[(
            "ERROR",
            status(410, "Expired", "too old resource version: 14 (20)"),
        )]),
    );
    let (watching, _, send) = next(&mut handle).await;
    assert!(!watching, "a re-list after 410");
    ok(
        send,
        list(
            vec![
                pod("repliq-a", "node-a", "10.0.0.1", true, 1),
                pod("repliq-b", "node-b", "10.0.0.2", true, 21),
                pod("repliq-e", "node-e", "10.0.0.5", true, 22),
            ],
            30,
        ),
    );
    until(&mut rx, "b and e after the re-list", |s| {
        s.ready && s.peers == [peer("node-b", "10.0.0.2"), peer("node-e", "10.0.0.5")]
    })
    .await;

    // RBAC: the watch is refused with 403: the problem names the cause (the last list stays).
    let (watching, _, send) = next(&mut handle).await;
    assert!(watching);
    send.send_response(
        Response::builder()
            .status(StatusCode::FORBIDDEN)
            .body(Body::from(
                serde_json::to_vec(&status(
                    403,
                    "Forbidden",
                    "pods is forbidden: User \"system:serviceaccount:queues:default\" cannot watch resource \"pods\"",
                ))
                .unwrap(),
            ))
            .unwrap(),
    );
    until(&mut rx, "the RBAC problem after a refused watch", |s| {
        s.problem.as_deref().is_some_and(|p| p.contains("RBAC"))
            && s.peers == [peer("node-b", "10.0.0.2"), peer("node-e", "10.0.0.5")]
    })
    .await;
    // The grant arrives: the watch resumes and the next event clears the problem.
    let (watching, query, send) = next(&mut handle).await;
    assert!(watching && query.contains("resourceVersion=30"), "{query}");
    ok(
        send,
        events(&[("DELETED", pod("repliq-e", "node-e", "10.0.0.5", true, 31))]),
    );
    until(&mut rx, "ready again", |s| {
        s.ready && s.problem.is_none() && s.peers == [peer("node-b", "10.0.0.2")]
    })
    .await;
}

#[tokio::test]
async fn a_selector_that_matches_nothing_is_not_ready() {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(mock, "queues");
    let discovery = kubernetes::spawn(client, settings());
    let mut rx = discovery.subscribe();
    let (_, _, send) = next(&mut handle).await;
    ok(send, list(Vec::new(), 5));
    until(&mut rx, "the empty-selector problem", |s| {
        !s.ready
            && s.problem
                .as_deref()
                .is_some_and(|p| p.contains("matches no pod in namespace `queues`"))
    })
    .await;
}

#[tokio::test]
async fn a_forbidden_list_is_not_ready_and_names_rbac() {
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(mock, "queues");
    let discovery = kubernetes::spawn(client, settings());
    let mut rx = discovery.subscribe();
    let (_, _, send) = next(&mut handle).await;
    send.send_response(
        Response::builder()
            .status(StatusCode::FORBIDDEN)
            .body(Body::from(
                serde_json::to_vec(&status(403, "Forbidden", "pods is forbidden")).unwrap(),
            ))
            .unwrap(),
    );
    until(&mut rx, "the RBAC problem", |s| {
        !s.ready
            && s.problem
                .as_deref()
                .is_some_and(|p| p.contains("may not list/watch pods in namespace `queues`"))
    })
    .await;
    drop(handle);
}

#[test]
fn a_pod_is_a_peer_only_when_ready_with_an_ip_and_not_self() {
    let s = settings();
    let p = |v: Value| kubernetes::peer_of(&serde_json::from_value(v).unwrap(), &s);
    assert_eq!(
        p(pod("x", "node-b", "10.0.0.2", true, 1)),
        Some(peer("node-b", "10.0.0.2"))
    );
    assert_eq!(p(pod("x", "node-b", "10.0.0.2", false, 1)), None);
    assert_eq!(p(pod("x", "node-b", "", true, 1)), None);
    assert_eq!(p(pod("x", "node-a", "10.0.0.1", true, 1)), None, "self");
    let mut deleting = pod("x", "node-b", "10.0.0.2", true, 1);
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert_eq!(p(deleting), None);
    let by_pod = Settings {
        peer_name: PeerName::Pod,
        ..settings()
    };
    let v = pod("repliq-b", "node-b", "fd00::2", true, 1);
    assert_eq!(
        kubernetes::peer_of(&serde_json::from_value(v).unwrap(), &by_pod),
        Some(Peer {
            name: "repliq-b".into(),
            address: "[fd00::2]:31337".into(),
            identity: None,
        })
    );
    // A DaemonSet with per-pod certificates: the peer is the node, its identity the pod.
    let daemonset = Settings {
        tls_identity: TlsIdentity::Pod,
        ..settings()
    };
    let v = pod("repliq-x7k2p", "node-b", "10.0.0.2", true, 1);
    let peer = kubernetes::peer_of(&serde_json::from_value(v).unwrap(), &daemonset).unwrap();
    assert_eq!(peer.name, "node-b");
    assert_eq!(peer.identity(), "repliq-x7k2p");
    // Where the pod is the peer name already, no separate identity.
    let both = Settings {
        peer_name: PeerName::Pod,
        ..daemonset
    };
    let v = pod("repliq-b", "node-b", "10.0.0.2", true, 1);
    let peer = kubernetes::peer_of(&serde_json::from_value(v).unwrap(), &both).unwrap();
    assert_eq!(
        (peer.name.as_str(), peer.identity()),
        ("repliq-b", "repliq-b")
    );
    assert_eq!(peer.identity, None);
}
