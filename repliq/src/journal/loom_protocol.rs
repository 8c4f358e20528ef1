//! loom models of the record-header protocol and the cursor claim.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p repliq --lib loom`.

use loom::sync::Arc;
use loom::sync::atomic::AtomicU64;
use loom::thread;

use super::cursor;
use super::header::{self, State};
use crate::sync::{Ordering, Word};

/// A writer commits while another party abandons its expired reservation: exactly one wins, and
/// a reader that sees COMMITTED also sees the payload written before the commit.
#[test]
fn loom_commit_and_abandon_are_exclusive() {
    loom::model(|| {
        let word = Arc::new(AtomicU64::new(0));
        let payload = Arc::new(AtomicU64::new(0));
        let reserved = header::try_reserve(&*word, 64, 1).unwrap();

        let writer = {
            let (word, payload) = (word.clone(), payload.clone());
            thread::spawn(move || {
                payload.store(42, Ordering::Relaxed);
                header::commit(&*word, reserved, 8)
            })
        };
        let abandoner = {
            let word = word.clone();
            thread::spawn(move || {
                let seen = Word::load(&*word, Ordering::Acquire);
                match header::decode(seen) {
                    State::Reserved { .. } => header::abandon(&*word, seen),
                    _ => false,
                }
            })
        };
        let reader = {
            let (word, payload) = (word.clone(), payload.clone());
            thread::spawn(move || {
                if let State::Committed { len } =
                    header::decode(Word::load(&*word, Ordering::Acquire))
                {
                    assert_eq!(len, 8);
                    assert_eq!(
                        payload.load(Ordering::Relaxed),
                        42,
                        "payload visible after commit"
                    );
                }
            })
        };
        let committed = writer.join().unwrap();
        let abandoned = abandoner.join().unwrap();
        reader.join().unwrap();
        assert!(
            committed != abandoned,
            "exactly one of commit and abandon wins"
        );
        let last = header::decode(Word::load(&*word, Ordering::Acquire));
        if committed {
            assert_eq!(last, State::Committed { len: 8 });
        } else {
            assert_eq!(last, State::Abandoned { extent: 64 });
        }
    });
}

/// Two writers race to reserve the same EMPTY header: exactly one gets it.
#[test]
fn loom_reservation_is_exclusive() {
    loom::model(|| {
        let word = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..2u32)
            .map(|i| {
                let word = word.clone();
                thread::spawn(move || header::try_reserve(&*word, 32, i).is_ok())
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&won| won)
            .count();
        assert_eq!(wins, 1);
    });
}

/// Two consumers sharing a cursor each claim from the value they read: every record is claimed
/// exactly once.
#[test]
fn loom_cursor_claims_each_record_once() {
    loom::model(|| {
        let next = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let next = next.clone();
                thread::spawn(move || {
                    let mut mine = Vec::new();
                    for _ in 0..2 {
                        let at = Word::load(&*next, Ordering::Acquire);
                        if at >= 2 {
                            break;
                        }
                        if cursor::claim(&*next, at).is_ok() {
                            mine.push(at);
                        }
                    }
                    mine
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        let claims = all.len();
        all.dedup();
        assert_eq!(all.len(), claims, "no record claimed twice");
        let total = Word::load(&*next, Ordering::Acquire);
        assert_eq!(claims as u64, total, "every record claimed once");
    });
}
