//! The simulation under the checker: many seeds valid; planted defects found, with the right
//! anomaly; a failing schedule shrunk; the container schedule format read and written.

use super::*;

fn run_seeds(
    seeds: std::ops::RangeInclusive<u64>,
    config: &Config,
) -> Vec<(u64, Outcome, Verdict)> {
    seeds
        .map(|seed| {
            let faults = draw_schedule(seed, config.duration, config.lease, config.overlap);
            let (o, v) = run_and_check(seed, &faults, config)
                .expect("the checker reads the simulation's output");
            (seed, o, v)
        })
        .collect()
}

fn show(o: &Outcome, v: &Verdict) -> String {
    let mut s = format!(
        "seed {} schedule {} {}\n",
        o.seed,
        format_schedule(&o.faults),
        v.report.summary()
    );
    for a in v.report.anomalies.iter().take(3) {
        s += &format!("{a}\n");
    }
    for e in &o.events {
        s += &format!("  {e}\n");
    }
    s
}

#[test]
fn two_hundred_random_schedules_are_valid_and_converge() {
    let config = Config::default();
    let runs = run_seeds(1..=200, &config);
    let (mut ok, mut unknown, mut elections, mut aside, mut faults) = (0, 0, 0, 0, 0);
    for (_, o, v) in &runs {
        assert!(v.valid(), "{}", show(o, v));
        ok += v.report.counts.ok;
        unknown += v.report.counts.unknown;
        elections += o.elections;
        aside += o.moved_aside;
        faults += o.faults.len();
    }
    eprintln!(
        "200 seeds: faults {faults} elections {elections} ok {ok} unknown {unknown} moved-aside {aside}"
    );
    // The schedules reach what they are meant to: failovers, unknown outcomes, moved suffixes.
    assert!(elections > 200 && unknown > 500 && aside > 100 && ok > 10_000);
}

#[test]
fn with_every_replica_required_overlapping_faults_are_valid_too() {
    let config = Config {
        required_acks: 2,
        overlap: true,
        ..Config::default()
    };
    for (_, o, v) in run_seeds(1..=100, &config) {
        assert!(v.valid(), "{}", show(&o, &v));
    }
}

/// Found by the simulation: `repliqd`'s election compares positions by `next_seq` alone, and an
/// old primary's unacknowledged suffix can outnumber a newer epoch's acknowledged records.
/// Seed 154 with overlapping faults (`--overlap`), minimized: a, primary of epoch 2, is cut off
/// and writes records 6..10 that no replica acknowledges; b becomes primary of epoch 3 from 6
/// and acknowledges 6 and 7 with c; a comes back fenced, and before b's stream reaches it b is
/// paused past its lease. a (10 records, the last of epoch 2) beats c (8 records, the last of
/// epoch 3) and b's acknowledged records are lost. Comparing the last record's epoch first (Raft's
/// rule) elects c.
///
/// Seed 540 of the container-like schedules (one fault at a time), minimized, is the same:
/// a, primary of epoch 1, is cut off and writes 7..10 alone; b becomes primary of epoch 2 from 7
/// and acknowledges with c; the partition heals and, before b's stream reaches a, b is killed.
/// a (10 records of epoch 1) beats c (9 records, the last of epoch 2).
#[test]
fn an_election_by_record_count_alone_loses_acknowledged_writes() {
    let one_at_a_time = parse_schedule(
        "[0.7s restart primary, 2.2s partition primary 3.8s, 6.5s kill primary 3.5s]",
    )
    .unwrap();
    for (rule, lost) in [
        (ElectionRule::NextSeq, true),
        (ElectionRule::EpochThenNextSeq, false),
    ] {
        let config = Config {
            election: rule,
            ..Config::default()
        };
        let (o, v) = run_and_check(540, &one_at_a_time, &config).unwrap();
        assert_eq!(
            v.report.by_kind().contains_key("lost"),
            lost,
            "{}",
            show(&o, &v)
        );
        assert_eq!(v.valid(), !lost, "{}", show(&o, &v));
    }
    let faults =
        parse_schedule("[0.4s elect etcd, 4.2s partition primary 6.5s, 8.1s pause primary 5.2s]")
            .unwrap();
    let by_count = Config {
        election: ElectionRule::NextSeq,
        ..Config::default()
    };
    let (o, v) = run_and_check(154, &faults, &by_count).unwrap();
    assert!(v.report.by_kind().contains_key("lost"), "{}", show(&o, &v));
    let epoch_first = Config {
        election: ElectionRule::EpochThenNextSeq,
        ..Config::default()
    };
    let (o, v) = run_and_check(154, &faults, &epoch_first).unwrap();
    assert!(v.valid(), "{}", show(&o, &v));
}

#[test]
fn a_seed_replays_exactly() {
    let config = Config::default();
    let faults = draw_schedule(7, config.duration, config.lease, config.overlap);
    let a = run(7, &faults, &config);
    let b = run(7, &faults, &config);
    assert_eq!(a.history, b.history);
    assert_eq!(a.primary, b.primary);
    assert_eq!(a.replicas, b.replicas);
}

/// The planted defect `ack-before-replicas`: the checker reports acknowledged enqueues lost.
#[test]
fn a_primary_that_acknowledges_before_its_replicas_loses_acknowledged_writes() {
    let config = Config {
        bug: Some(Bug::AckBeforeReplicas),
        ..Config::default()
    };
    let runs = run_seeds(1..=40, &config);
    let lost = runs
        .iter()
        .filter(|(_, _, v)| v.report.by_kind().contains_key("lost"))
        .count();
    eprintln!("ack-before-replicas: {lost} of 40 seeds lost acknowledged writes");
    assert!(lost >= 10, "{lost} of 40");
}

/// The planted defect `accept-stale-frames`: a replica that writes an older epoch's frames
/// ends up holding records the primary does not have.
#[test]
fn a_replica_that_accepts_stale_frames_diverges() {
    let config = Config {
        bug: Some(Bug::AcceptStaleFrames),
        ..Config::default()
    };
    let runs = run_seeds(1..=300, &config);
    let caught: Vec<_> = runs.iter().filter(|(_, _, v)| !v.valid()).collect();
    let mut kinds = BTreeSet::new();
    for (_, _, v) in &caught {
        kinds.extend(v.failures());
    }
    eprintln!(
        "accept-stale-frames: {} of 300 seeds invalid: {kinds:?}",
        caught.len()
    );
    assert!(!caught.is_empty());
    assert!(
        kinds.contains("replica-diverged") || kinds.contains("lost"),
        "{kinds:?}"
    );
}

#[test]
fn a_failing_schedule_is_shrunk_and_still_fails() {
    let config = Config {
        bug: Some(Bug::AckBeforeReplicas),
        ..Config::default()
    };
    let (seed, o, _) = run_seeds(1..=40, &config)
        .into_iter()
        .find(|(_, _, v)| v.report.by_kind().contains_key("lost"))
        .expect("a failing seed");
    let small = minimize(seed, &o.faults, &config, 300).unwrap();
    eprintln!(
        "seed {seed}: {} -> {}",
        format_schedule(&o.faults),
        format_schedule(&small)
    );
    assert!(small.len() < o.faults.len(), "{}", format_schedule(&small));
    let (_, v) = run_and_check(seed, &small, &config).unwrap();
    assert!(v.report.by_kind().contains_key("lost"));
}

#[test]
fn container_schedules_are_read_and_written() {
    let text = "[2.1s restart primary, 4.3s partition primary 3.5s, 9.5s pause replica1 4.1s, 11.0s etcd-stop etcd 1.2s]";
    let faults = parse_schedule(text).unwrap();
    assert_eq!(
        faults[1],
        Fault {
            at: 43,
            kind: FaultKind::Partition,
            target: Target::Primary,
            len: 35
        }
    );
    assert_eq!(faults[2].target, Target::Replica(1));
    assert_eq!(format_schedule(&faults), text);
    let err = parse_schedule("[1.0s explode primary]").unwrap_err();
    assert!(err.contains("unknown kind explode"), "{err}");
    // The container seeds' schedules run in the simulation (113 and 163: the old primary that
    // missed a whole epoch, docs/CHECKER.md), under many simulation seeds.
    for schedule in [
        "[1.1s partition primary 4.3s, 7.1s restart primary]",
        "[2.1s restart primary, 4.3s partition primary 3.5s, 9.5s pause primary 4.1s]",
    ] {
        let faults = parse_schedule(schedule).unwrap();
        for seed in 1..=50 {
            let (o, v) = run_and_check(seed, &faults, &Config::default()).unwrap();
            assert!(v.valid(), "{}", show(&o, &v));
        }
    }
}

#[test]
#[ignore = "statistics: cargo test -p repliq-check --lib sim::test::stats -- --ignored --nocapture"]
fn stats() {
    for (rule, k, overlap) in [
        (ElectionRule::NextSeq, 1, false),
        (ElectionRule::EpochThenNextSeq, 1, false),
        (ElectionRule::NextSeq, 2, false),
        (ElectionRule::NextSeq, 1, true),
        (ElectionRule::EpochThenNextSeq, 1, true),
        (ElectionRule::NextSeq, 2, true),
        (ElectionRule::EpochThenNextSeq, 2, true),
    ] {
        {
            let config = Config {
                election: rule,
                required_acks: k,
                overlap,
                ..Config::default()
            };
            let runs = run_seeds(1..=500, &config);
            let bad: Vec<_> = runs.iter().filter(|(_, _, v)| !v.valid()).collect();
            let mut kinds = BTreeMap::new();
            for (_, _, v) in &bad {
                for f in v.failures() {
                    *kinds.entry(f).or_insert(0) += 1;
                }
            }
            let seeds: Vec<u64> = bad.iter().map(|(s, _, _)| *s).take(15).collect();
            eprintln!(
                "{rule:?} k={k} overlap={overlap}: {} of 500 invalid {kinds:?} seeds {seeds:?}",
                bad.len()
            );
        }
    }
}
