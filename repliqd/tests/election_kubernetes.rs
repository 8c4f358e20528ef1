//! The Kubernetes Lease backend against a mocked API server (tower-test): absent lease, create,
//! compare-and-swap by resourceVersion (409 Conflict), candidates, RBAC refusal.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use repliqd::election::backend::LeaseBackend;
use repliqd::election::kubernetes::KubeLeaseBackend;
use repliqd::election::machine::WriteOutcome;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

async fn next(h: &mut ApiHandle) -> (Method, String, Value, SendResponse<Response<Body>>) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(10), h.next_request())
        .await
        .expect("no request")
        .expect("client gone");
    let (parts, body) = req.into_parts();
    let bytes = body.collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    let uri = parts.uri.to_string();
    (parts.method, uri, body, send)
}

fn reply(send: SendResponse<Response<Body>>, code: u16, body: Value) {
    send.send_response(
        Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}

fn lease(name: &str, holder: &str, transitions: i32, rv: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": name, "namespace": "queues", "resourceVersion": rv},
           "spec": {"holderIdentity": holder, "leaseTransitions": transitions}})
}

const BASE: &str = "/apis/coordination.k8s.io/v1/namespaces/queues/leases";

#[tokio::test]
async fn lease_create_compare_and_swap_and_candidates() {
    let (mock, mut h) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let backend = KubeLeaseBackend::new(kube::Client::new(mock, "queues"), "queues", "repliq", 10);
    assert_eq!(backend.lease_name("Orders_EU"), "repliq-orders-eu");

    let api = tokio::spawn(async move {
        // observe: the lease is absent; no candidates.
        let (m, uri, _, send) = next(&mut h).await;
        assert_eq!(
            (m, uri.as_str()),
            (Method::GET, &*format!("{BASE}/repliq-orders"))
        );
        reply(send, 404, status(404, "NotFound"));
        let (m, uri, _, send) = next(&mut h).await;
        assert_eq!(m, Method::GET);
        assert!(
            uri.contains("labelSelector=repliq.io%2Fcandidate-for%3Drepliq-orders"),
            "{uri}"
        );
        reply(
            send,
            200,
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "LeaseList",
                                "metadata": {"resourceVersion": "5"}, "items": [
            {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "repliq-orders-c-b", "resourceVersion": "4",
                          "annotations": {"repliq.io/node": "b", "repliq.io/next-seq": "42"}},
             "spec": {}}]}),
        );
        // write with no token: create, holder a, transitions = epoch 1.
        let (m, uri, body, send) = next(&mut h).await;
        assert_eq!((m, uri.starts_with(BASE)), (Method::POST, true));
        assert_eq!(body["spec"]["holderIdentity"], "a");
        assert_eq!(body["spec"]["leaseTransitions"], 1);
        reply(send, 201, lease("repliq-orders", "a", 1, "6"));
        // renew with token 6: replace carrying resourceVersion 6; someone else wrote: 409.
        let (m, uri, body, send) = next(&mut h).await;
        assert_eq!(m, Method::PUT);
        assert!(uri.starts_with(&format!("{BASE}/repliq-orders?")), "{uri}");
        assert_eq!(body["metadata"]["resourceVersion"], "6");
        reply(send, 409, status(409, "Conflict"));
        // RBAC refusal on get.
        let (_, _, _, send) = next(&mut h).await;
        reply(send, 403, status(403, "Forbidden"));
    });

    let obs = backend.observe("orders").await.unwrap();
    assert_eq!(obs.lease.holder, None);
    assert_eq!(obs.lease.epoch, 0);
    assert_eq!(obs.lease.token, "");
    assert_eq!(obs.candidates.len(), 1);
    // Advertised without `repliq.io/last-epoch` (an older repliqd): epoch 0.
    let c = &obs.candidates[0];
    assert_eq!(
        (c.node.as_str(), c.position.next_seq, c.position.last_epoch),
        ("b", 42, 0)
    );
    assert_eq!(
        backend.write("orders", "a", 1, "").await,
        WriteOutcome::Written("6".into())
    );
    assert_eq!(
        backend.write("orders", "a", 1, "6").await,
        WriteOutcome::Conflict
    );
    let err = backend.observe("orders").await.unwrap_err();
    assert!(
        err.contains("RBAC") && err.contains("namespace `queues`"),
        "{err}"
    );
    api.await.unwrap();
}
