//! A journal's epoch history: which primary term wrote which range of its records.
//!
//! Every node keeps one per queue, in `replication.json` (`"epochs": [{"epoch": 1, "start": 0},
//! {"epoch": 3, "start": 336}]`): the records from an entry's `start` up to the next entry's start
//! were written by the primary of that entry's epoch. A primary appends an entry when its term
//! begins; a replica takes its primary's history when it follows it (from then on it holds the
//! primary's records).
//!
//! It answers the question a replica asks when a newer primary's stream reaches it: *from which
//! sequence on may my records differ from yours?* The answer (Raft's log matching, Kafka's
//! `OffsetsForLeaderEpoch`) is the start of the first epoch in the primary's history that is newer
//! than the epoch of the replica's last record: up to there both logs hold what the same primaries
//! wrote. Knowing only the newest epoch's start is not enough: an old primary that missed a whole
//! epoch (it was partitioned while b's epoch 2 began at 336, and it wrote its own record 336
//! locally; c's epoch 3 began at 914) would keep its record 336 where every other node holds b's.

use serde::{Deserialize, Serialize};

/// One entry of a history: the primary of `epoch` wrote the records from `start` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStart {
    /// The primary term.
    pub epoch: u64,
    /// The first sequence number written in it.
    pub start: u64,
}

/// A journal's epoch history, oldest first: epochs increase, starts never decrease.
///
/// Deserializing checks that order as [`Lineage::checked`] does: a `replication.json` whose
/// history is out of order is refused when it is loaded (naming the file), not sent to replicas,
/// which would refuse every Hello of this primary as malformed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Lineage(Vec<EpochStart>);

/// The first two neighbouring entries out of order (an epoch not newer than the one before it,
/// or a start before the one before it), if any.
fn first_out_of_order(entries: &[EpochStart]) -> Option<&[EpochStart]> {
    entries
        .windows(2)
        .find(|w| !(w[0].epoch < w[1].epoch && w[0].start <= w[1].start))
}

impl<'de> Deserialize<'de> for Lineage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<EpochStart>::deserialize(d)?;
        if let Some(w) = first_out_of_order(&entries) {
            return Err(serde::de::Error::custom(format!(
                "epoch history out of order: epoch {} from {} is followed by epoch {} from {} \
                 (epochs must increase, starts must not decrease)",
                w[0].epoch, w[0].start, w[1].epoch, w[1].start
            )));
        }
        Ok(Lineage(entries))
    }
}

impl Lineage {
    /// The history of a journal whose only term so far is `epoch`, begun at `start`.
    #[must_use]
    pub fn of(epoch: u64, start: u64) -> Self {
        Lineage(vec![EpochStart { epoch, start }])
    }

    /// A history received from another node, if it is well formed (epochs strictly increase,
    /// starts never decrease); `None` otherwise.
    #[must_use]
    pub fn checked(entries: Vec<EpochStart>) -> Option<Self> {
        first_out_of_order(&entries)
            .is_none()
            .then_some(Lineage(entries))
    }

    /// The entries, oldest first.
    #[must_use]
    pub fn entries(&self) -> &[EpochStart] {
        &self.0
    }

    /// Whether the history has no entry (a state file written before histories were kept).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The epoch that wrote the last of the records before `next_seq` (the journal holds
    /// `0..next_seq`); 0 if no entry covers them.
    #[must_use]
    pub fn last_epoch_below(&self, next_seq: u64) -> u64 {
        self.0
            .iter()
            .rev()
            .find(|e| e.start < next_seq)
            .map_or(0, |e| e.epoch)
    }

    /// Where a journal whose last record was written in `last_epoch` may begin to differ from the
    /// journal this history describes: the start of the first newer epoch here. `None` if there
    /// is no newer epoch (the other journal's records are this one's, or a prefix of them).
    #[must_use]
    pub fn divergence_for(&self, last_epoch: u64) -> Option<u64> {
        self.0
            .iter()
            .find(|e| e.epoch > last_epoch)
            .map(|e| e.start)
    }

    /// Where a journal holding `0..next_seq`, written by the epochs `replica` names, may begin to
    /// differ from the journal this history describes (the primary's); `None` if it holds
    /// nothing this one does not.
    ///
    /// That is the end of the newest epoch both histories name, in whichever of the two journals
    /// it ends first: up to there both hold what the same primary wrote. Usually the replica's
    /// last epoch is in the primary's history and this is [`divergence_for`](Self::divergence_for)
    /// of it. But the replica's last records may come from an epoch the primary never had (a
    /// primary elected while that epoch's primary was away, which wrote them unacknowledged):
    /// they are not the primary's, from where that epoch began on the replica.
    #[must_use]
    pub fn divergence_of(&self, replica: &Lineage, next_seq: u64) -> Option<u64> {
        let last = replica.last_epoch_below(next_seq);
        let known = |epoch: u64| self.0.iter().any(|e| e.epoch == epoch);
        // A replica without a history (or with none below its tail), or whose last epoch the
        // primary has: the rule of `divergence_for`.
        let from = if last == 0 || known(last) {
            self.divergence_for(last)?
        } else {
            let held: Vec<&EpochStart> = replica.0.iter().filter(|e| e.start < next_seq).collect();
            match held.iter().rposition(|e| known(e.epoch)) {
                Some(i) => {
                    let ends_here = held.get(i + 1).map_or(next_seq, |e| e.start);
                    self.divergence_for(held[i].epoch)
                        .map_or(ends_here, |p| p.min(ends_here))
                }
                // No epoch in common: none of its records is known to be the primary's.
                None => held.first().map_or(0, |e| e.start),
            }
        };
        (next_seq > from).then_some(from)
    }

    /// A new term begins: `epoch` writes from `start` on. Entries that begin at or after `start`
    /// hold no record of this journal any more and are dropped. An epoch not newer than the last
    /// entry's changes nothing.
    pub fn begin(&mut self, epoch: u64, start: u64) {
        if self.0.last().is_some_and(|e| e.epoch >= epoch) {
            return;
        }
        self.0.retain(|e| e.start < start);
        self.0.push(EpochStart { epoch, start });
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn lineage(entries: &[(u64, u64)]) -> Lineage {
        Lineage::checked(
            entries
                .iter()
                .map(|&(epoch, start)| EpochStart { epoch, start })
                .collect(),
        )
        .unwrap()
    }

    /// Seeds 113 and 163 of the fault schedules (docs/CHECKER.md): a, primary of epoch 1, wrote
    /// record 336 alone; b's epoch 2 began at 336, c's epoch 3 at 914. a's records may differ
    /// from c's from 336 on, not from 914.
    #[test]
    fn an_old_primary_that_missed_an_epoch_diverges_where_that_epoch_began() {
        let c = lineage(&[(1, 0), (2, 336), (3, 914)]);
        let a = Lineage::of(1, 0);
        assert_eq!(c.divergence_for(a.last_epoch_below(337)), Some(336));
        // A replica that followed b holds b's records: it differs from 914 on.
        let follower_of_b = lineage(&[(1, 0), (2, 336)]);
        assert_eq!(
            c.divergence_for(follower_of_b.last_epoch_below(400)),
            Some(914)
        );
        // One that follows c already: no divergence.
        assert_eq!(c.divergence_for(c.last_epoch_below(1000)), None);
        // An epoch c never held (d's epoch 2 that nobody followed): from c's next newer epoch.
        let d = lineage(&[(1, 0), (2, 300)]);
        let c2 = lineage(&[(1, 0), (3, 300)]);
        assert_eq!(c2.divergence_for(d.last_epoch_below(320)), Some(300));
    }

    #[test]
    fn the_last_epoch_is_the_one_of_the_last_record_held() {
        let l = lineage(&[(1, 0), (2, 100), (4, 100), (5, 250)]);
        assert_eq!(l.last_epoch_below(0), 0);
        assert_eq!(l.last_epoch_below(1), 1);
        assert_eq!(l.last_epoch_below(100), 1);
        assert_eq!(l.last_epoch_below(101), 4);
        assert_eq!(l.last_epoch_below(251), 5);
    }

    #[test]
    fn a_new_term_drops_entries_that_hold_no_record() {
        let mut l = lineage(&[(1, 0), (2, 100), (3, 150)]);
        l.begin(4, 120);
        assert_eq!(l, lineage(&[(1, 0), (2, 100), (4, 120)]));
        l.begin(4, 130);
        assert_eq!(
            l,
            lineage(&[(1, 0), (2, 100), (4, 120)]),
            "not a newer epoch"
        );
        l.begin(6, 120);
        assert_eq!(l, lineage(&[(1, 0), (2, 100), (6, 120)]));
    }

    #[test]
    fn a_malformed_history_is_refused() {
        let e = |epoch, start| EpochStart { epoch, start };
        assert!(Lineage::checked(vec![e(2, 0), e(1, 10)]).is_none());
        assert!(Lineage::checked(vec![e(1, 10), e(2, 5)]).is_none());
        assert!(Lineage::checked(vec![e(1, 0), e(1, 5)]).is_none());
        assert!(Lineage::checked(vec![]).is_some());
    }

    /// Found by the `replication_state` fuzz target: a state file whose history is out of order
    /// loaded, and its primary would have sent it in every Hello (which replicas refuse).
    #[test]
    fn a_malformed_history_does_not_deserialize() {
        let parse = |json: &str| serde_json::from_str::<Lineage>(json);
        let err = parse(r#"[{"epoch":5,"start":0},{"epoch":2,"start":41}]"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("epoch 5 from 0 is followed by epoch 2 from 41"),
            "{err}"
        );
        assert!(parse(r#"[{"epoch":1,"start":10},{"epoch":2,"start":5}]"#).is_err());
        assert!(parse(r#"[{"epoch":1,"start":0},{"epoch":1,"start":5}]"#).is_err());
        let ok = parse(r#"[{"epoch":1,"start":0},{"epoch":3,"start":40}]"#).unwrap();
        assert_eq!(ok, lineage(&[(1, 0), (3, 40)]));
        assert_eq!(parse("[]").unwrap(), Lineage::default());
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"[{"epoch":1,"start":0},{"epoch":3,"start":40}]"#
        );
    }
}
