//! `replication.json` from a damaged disk or an older build: the input replaces the state file of
//! a real queue. `ReplicationState::load` gives the state or a typed `QueueError` (`Corrupt`
//! naming the file); a state that loads has a well-formed epoch history (what
//! `Lineage::checked` demands of a history received from another node: epochs strictly
//! increase, starts never decrease), and what the node does with it (its history's queries, a
//! promotion, a fence, an election's `promote_to_epoch`, then reopening and reading the queue)
//! gives `Ok` or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repliq::replication::{Lineage, ReplicationState, STATE_FILE};

mod recovery;
use recovery::{scratch, typed};

fuzz_target!(|data: &[u8]| {
    let s = scratch();
    let dir = &s.dir;
    std::fs::write(dir.join(STATE_FILE), data).expect("writing the state file");
    let state = match ReplicationState::load(dir) {
        Ok(state) => state,
        Err(e) => {
            typed("ReplicationState::load", &e);
            assert!(
                matches!(e, repliq::QueueError::Corrupt { .. }),
                "a state file that does not parse is Corrupt: {e:?}"
            );
            return;
        }
    };
    assert!(
        Lineage::checked(state.epochs.entries().to_vec()).is_some(),
        "loaded a malformed epoch history: {:?}",
        state.epochs
    );
    let lineage = state.lineage();
    for probe in [0, 1, state.epoch_start, u64::MAX] {
        let _ = lineage.last_epoch_below(probe);
        let _ = lineage.divergence_for(probe);
    }
    // What a node does with the state: an operator's promotion, a fence, an election.
    for step in 0..3 {
        let r = match step {
            0 => ReplicationState::promote(dir).map(drop),
            1 => ReplicationState::demote(dir).map(drop),
            _ => ReplicationState::promote_to_epoch(dir, state.epoch.saturating_add(1)).map(drop),
        };
        if let Err(e) = r {
            typed("promote / demote", &e);
        }
    }
    recovery::exercise(dir, true);
});
