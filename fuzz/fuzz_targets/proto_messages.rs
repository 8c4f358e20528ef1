//! Every protobuf message a node accepts from the network, decoded with prost from arbitrary
//! bytes (the first byte chooses the message), then checked the way the receiving side does:
//!
//! * on a replica, a `PrimaryMessage` (`repliq.replication.v1`): a `Hello` goes through the
//!   checks made before anything on disk is touched (queue name, queue parameters, the order of
//!   the epoch history: `__fuzz::check_hello`); a `Frame`'s bytes through the record walk
//!   (`frame_records`) and its header through a follower's decision (`Follower::on_frame`, on a
//!   follower that has seen the frame's epoch, and on one of an older and a newer epoch); the
//!   producers' table a frame may carry through the replica's decoding (`ShippedTables::decode`:
//!   a table or a typed error naming the file);
//! * on a primary, a `ReplicaMessage`: `Subscribe` and `Ack` feed the leader's state machine
//!   (`Leader::subscribe`, `Leader::ack`, with the values as received), `Refused` its reason code
//!   (an unknown code reads as `UNSPECIFIED`);
//! * the client protocol (`repliq.client.v1`): the node decodes `ProduceRequest` and
//!   `ConsumeRequest`; the remote producer and consumer decode `ProduceReply` and
//!   `ConsumeReply`, whose `Refusal` becomes a `ClientError` (`__fuzz::client_refusal`).
//!
//! Decoding gives a message or `DecodeError`; what follows gives a decision or a typed refusal;
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use repliq::client::proto as client;
use repliq::replication::grpc::proto::{
    self, PrimaryMessage, ReplicaMessage, primary_message, refused, replica_message,
};
use repliq::replication::{
    Follower, FollowerDecision, FrameHeader, Leader, LeaderConfig, Lineage, RecordId,
};

fn hello(h: &proto::Hello) {
    match repliq::__fuzz::check_hello(h) {
        Ok(n) => assert_eq!(n, h.epochs.len(), "a history that passes keeps its entries"),
        Err(e) => assert!(!e.detail.is_empty(), "a refusal without a detail: {e:?}"),
    }
}

/// A shipped producers' table: a table, or a typed error naming the file it would be.
fn producers_table(bytes: &[u8]) {
    let path = std::path::Path::new("q/producers.replica.json");
    match repliq::replication::producer_table::ShippedTables::decode(path, bytes) {
        Ok(t) => {
            let _ = t.valid_from();
        }
        Err(e) => assert!(e.to_string().contains("producers.replica.json"), "{e}"),
    }
}

fn frame(f: &proto::Frame) {
    if let Some(table) = &f.producers {
        producers_table(table);
    }
    let Ok(n) = repliq::__fuzz::frame_records(&f.bytes) else {
        return;
    };
    // The follower's decision over the records' identities (what `frame_records` reads from the
    // same bytes is their sequence numbers and checksums).
    let records: Vec<RecordId> = (0..n as u64)
        .map(|i| RecordId {
            seq: f.first_seq.wrapping_add(i),
            crc: f.record_count,
        })
        .collect();
    let header = FrameHeader {
        epoch: f.epoch,
        epoch_start: f.epoch_start,
        records,
    };
    for epoch in [
        f.epoch,
        f.epoch.saturating_sub(1),
        f.epoch.saturating_add(1),
    ] {
        let mut follower = Follower::new(epoch, f.offset, Lineage::of(epoch, 0));
        match follower.on_frame(&header, |_| Some(f.record_count)) {
            FollowerDecision::Append { skip, .. } => {
                assert!(
                    skip <= header.records.len(),
                    "skips more records than the frame has"
                );
            }
            FollowerDecision::Duplicate { .. } | FollowerDecision::Refuse(_) => {}
        }
    }
}

fn leader(kind: &replica_message::Kind) {
    let config = LeaderConfig {
        epoch: 3,
        epoch_start: 10,
        required_acks: 1,
        max_batch: 64,
        window: 1024,
    };
    let mut l = Leader::new(config, 20);
    match kind {
        replica_message::Kind::Subscribe(s) => {
            let _ = l.subscribe("r", s.epoch, s.next_seq);
            let _ = l.ack("r", s.epoch, s.next_seq);
        }
        replica_message::Kind::Ack(a) => {
            let _ = l.subscribe("r", a.epoch, a.next_seq.saturating_sub(1));
            let _ = l.ack("r", a.epoch, a.next_seq);
            let _ = l.ack("r", a.epoch, a.next_seq.wrapping_sub(5));
        }
        replica_message::Kind::Refused(r) => {
            let reason = r.reason();
            if refused::Reason::try_from(r.reason).is_err() {
                assert_eq!(reason, refused::Reason::Unspecified);
            }
            if reason == refused::Reason::StaleEpoch {
                let _ = l.ack("r", r.epoch, r.next_seq);
            }
        }
    }
    assert!(
        l.acked() <= l.next_seq(),
        "acknowledged past what was written"
    );
}

fn client_refusal(r: Option<client::Refusal>) {
    if let Some(r) = r {
        assert!(!repliq::__fuzz::client_refusal("n", r).is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => {
            if let Ok(m) = PrimaryMessage::decode(bytes) {
                match &m.kind {
                    Some(primary_message::Kind::Hello(h)) => hello(h),
                    Some(primary_message::Kind::Frame(f)) => frame(f),
                    Some(primary_message::Kind::Resync(_)) | None => {}
                }
            }
        }
        1 => {
            if let Ok(h) = proto::Hello::decode(bytes) {
                hello(&h);
            }
        }
        2 => {
            if let Ok(f) = proto::Frame::decode(bytes) {
                frame(&f);
            }
        }
        3 => {
            if let Ok(ReplicaMessage { kind: Some(k) }) = ReplicaMessage::decode(bytes) {
                leader(&k);
            }
        }
        4 => {
            let _ = client::ProduceRequest::decode(bytes).map(|m| format!("{m:?}"));
        }
        5 => {
            let _ = client::ConsumeRequest::decode(bytes).map(|m| format!("{m:?}"));
        }
        6 => {
            if let Ok(client::ProduceReply {
                kind: Some(client::produce_reply::Kind::Refusal(r)),
            }) = client::ProduceReply::decode(bytes)
            {
                client_refusal(Some(r));
            }
        }
        _ => {
            if let Ok(client::ConsumeReply {
                kind: Some(client::consume_reply::Kind::Refusal(r)),
            }) = client::ConsumeReply::decode(bytes)
            {
                client_refusal(Some(r));
            }
        }
    }
});
