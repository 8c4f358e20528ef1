//! An event log of repliq's one-way runs (`run --events`): where the messages above p99 spent
//! their time.
//!
//! The producer records, per message, its intended send time, when `enqueue` started and
//! returned, and the page faults and involuntary context switches of its thread (and the
//! faults of the whole process, i.e. of its other threads) since the previous message. The
//! reader records when it saw the message, how long it had been since its previous poll of the
//! queue (a gap means it was not running), and the same counters. Both use `CLOCK_MONOTONIC`.
//! Messages are then grouped into *episodes*: runs of slow messages (above the run's p99) with
//! no more than a few fast ones between them; an episode's first message is where it began.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::BoxResult;

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Turns the event log on for this process's one-way runs; files and `events.md` go to `dir`.
pub fn enable(dir: &Path) {
    let _ = DIR.set(dir.to_path_buf());
}

/// The directory of the event log, when it is on.
pub fn dir() -> Option<&'static Path> {
    DIR.get().map(PathBuf::as_path)
}

/// Counters from `getrusage`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Minor page faults.
    pub minflt: u64,
    /// Major page faults.
    pub majflt: u64,
    /// Involuntary context switches (preempted).
    pub nivcsw: u64,
}

impl Usage {
    fn of(who: libc::c_int) -> Self {
        // SAFETY: an all-zero rusage is a valid value to be overwritten.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable rusage; `who` is RUSAGE_THREAD or RUSAGE_SELF.
        unsafe { libc::getrusage(who, &mut ru) };
        Usage {
            minflt: ru.ru_minflt as u64,
            majflt: ru.ru_majflt as u64,
            nivcsw: ru.ru_nivcsw as u64,
        }
    }

    /// The calling thread's counters.
    pub fn thread() -> Self {
        Self::of(libc::RUSAGE_THREAD)
    }

    /// The whole process's counters.
    pub fn process() -> Self {
        Self::of(libc::RUSAGE_SELF)
    }

    fn minus(self, o: Usage) -> Usage {
        Usage {
            minflt: self.minflt.saturating_sub(o.minflt),
            majflt: self.majflt.saturating_sub(o.majflt),
            nivcsw: self.nivcsw.saturating_sub(o.nivcsw),
        }
    }
}

/// Counters since the previous sample, of a thread and of its process.
#[derive(Debug)]
pub struct Sampler {
    thread: Usage,
    process: Usage,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    /// Starts counting now.
    pub fn new() -> Self {
        Sampler {
            thread: Usage::thread(),
            process: Usage::process(),
        }
    }

    /// (this thread's, the other threads' of the process) counters since the last call.
    pub fn delta(&mut self) -> (Usage, Usage) {
        let (t, p) = (Usage::thread(), Usage::process());
        let dt = t.minus(self.thread);
        let dp = p.minus(self.process).minus(dt);
        self.thread = t;
        self.process = p;
        (dt, dp)
    }
}

/// One message as the producer saw it (ns on `CLOCK_MONOTONIC`).
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Intended send time.
    pub intended: u64,
    /// `enqueue` called.
    pub start: u64,
    /// `enqueue` returned (committed).
    pub end: u64,
    /// The producer thread's counters since the previous message.
    pub thread: Usage,
    /// Other threads of the producer process since the previous message.
    pub others: Usage,
}

/// One message as the reader saw it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    /// Sequence number (the benchmark's, from the payload).
    pub seq: u64,
    /// When the read returned it.
    pub at: u64,
    /// Time since the reader's previous poll began (a long gap: the reader was not running).
    pub gap: u64,
    /// The reader thread's counters since the previous message.
    pub thread: Usage,
    /// Other threads of the reader process since the previous message.
    pub others: Usage,
}

/// Writes the reader's events to `path`, one line each.
pub fn write_seen(path: &Path, seen: &[Seen]) -> BoxResult<()> {
    let mut s = String::with_capacity(seen.len() * 48);
    for e in seen {
        let _ = writeln!(
            s,
            "{} {} {} {} {} {} {} {}",
            e.seq,
            e.at,
            e.gap,
            e.thread.minflt,
            e.thread.majflt,
            e.thread.nivcsw,
            e.others.minflt,
            e.others.nivcsw
        );
    }
    std::fs::write(path, s)?;
    Ok(())
}

/// Reads what [`write_seen`] wrote.
pub fn read_seen(path: &Path) -> BoxResult<Vec<Seen>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    for line in text.lines() {
        let v: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        if v.len() != 8 {
            return Err(format!("bad event line `{line}`").into());
        }
        out.push(Seen {
            seq: v[0],
            at: v[1],
            gap: v[2],
            thread: Usage {
                minflt: v[3],
                majflt: v[4],
                nivcsw: v[5],
            },
            others: Usage {
                minflt: v[6],
                majflt: 0,
                nivcsw: v[7],
            },
        });
    }
    Ok(out)
}

fn us(ns: u64) -> String {
    format!("{:.0}", ns as f64 / 1e3)
}

/// Appends the analysis of one run to `events.md` in the event directory: the slow messages'
/// episodes and what happened in each.
pub fn analyze(title: &str, sent: &[Sent], seen: &[Seen]) -> BoxResult<()> {
    let Some(dir) = dir() else { return Ok(()) };
    let mut lat: Vec<(usize, u64)> = seen
        .iter()
        .filter_map(|e| {
            let s = sent.get(usize::try_from(e.seq).ok()?)?;
            Some((e.seq as usize, e.at.saturating_sub(s.intended)))
        })
        .collect();
    if lat.len() < 100 {
        return Ok(());
    }
    let mut sorted: Vec<u64> = lat.iter().map(|x| x.1).collect();
    sorted.sort_unstable();
    let p50 = sorted[sorted.len() / 2];
    let p99 = sorted[sorted.len() * 99 / 100];
    lat.sort_unstable_by_key(|x| x.0);
    let by_seq: std::collections::HashMap<u64, &Seen> = seen.iter().map(|e| (e.seq, e)).collect();
    // Episodes: slow messages at most 8 apart belong together.
    let slow: Vec<usize> = lat.iter().filter(|x| x.1 > p99).map(|x| x.0).collect();
    let mut episodes: Vec<(usize, usize)> = Vec::new();
    for &i in &slow {
        match episodes.last_mut() {
            Some(e) if i <= e.1 + 8 => e.1 = i,
            _ => episodes.push((i, i)),
        }
    }
    let t0 = sent[0].intended;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### {title}\n\n{} messages, p50 {} µs, p99 {} µs; {} above p99 in {} episodes.\n",
        lat.len(),
        us(p50),
        us(p99),
        slow.len(),
        episodes.len()
    );
    let _ = writeln!(
        s,
        "Per episode (first message = where it began; times in µs; `late` = enqueue started \
         after the intended time, `enq` = enqueue's duration, `vis` = from commit to the \
         reader's receipt; counters summed over the episode, `P` producer, `R` reader, `thr` \
         the measuring thread, `bg` the process's other threads, `ivcs` involuntary context \
         switches, `flt` minor faults, `gap` the reader's longest pause between polls):\n"
    );
    let _ = writeln!(
        s,
        "| starts at (ms into run) | msgs | worst | first: late / enq / vis | P thr ivcs / flt | P bg flt / ivcs | R gap max | R thr ivcs / flt | R bg flt / ivcs |\n|---:|---:|---:|---|---|---|---:|---|---|"
    );
    let mut blame = [0usize; 4]; // producer late, enqueue, delivery, unknown
    for &(a, b) in &episodes {
        let msgs = (a..=b).filter(|i| slow.binary_search(i).is_ok()).count();
        let worst = lat[a..=b].iter().map(|x| x.1).max().unwrap_or(0);
        let first = &sent[a];
        let late = first.start.saturating_sub(first.intended);
        let enq = first.end.saturating_sub(first.start);
        let vis = by_seq
            .get(&(a as u64))
            .map_or(0, |e| e.at.saturating_sub(first.end));
        let (mut pt, mut pb, mut rt, mut rb, mut gap) = (
            Usage::default(),
            Usage::default(),
            Usage::default(),
            Usage::default(),
            0,
        );
        // Counters from a few messages before the episode: what led into it.
        let from = a.saturating_sub(2);
        for (i, p) in sent.iter().enumerate().take(b + 1).skip(from) {
            pt.minflt += p.thread.minflt;
            pt.nivcsw += p.thread.nivcsw;
            pb.minflt += p.others.minflt;
            pb.nivcsw += p.others.nivcsw;
            if let Some(r) = by_seq.get(&(i as u64)) {
                rt.minflt += r.thread.minflt;
                rt.nivcsw += r.thread.nivcsw;
                rb.minflt += r.others.minflt;
                rb.nivcsw += r.others.nivcsw;
                gap = gap.max(r.gap);
            }
        }
        let k = if late >= enq && late >= vis && late > p50 {
            0
        } else if enq >= vis && enq > p50 {
            1
        } else if vis > p50 {
            2
        } else {
            3
        };
        blame[k] += msgs;
        if episodes.len() <= 40 || worst > p99 * 2 {
            let _ = writeln!(
                s,
                "| {:.1} | {msgs} | {} | {} / {} / {} | {} / {} | {} / {} | {} | {} / {} | {} / {} |",
                first.intended.saturating_sub(t0) as f64 / 1e6,
                us(worst),
                us(late),
                us(enq),
                us(vis),
                pt.nivcsw,
                pt.minflt,
                pb.minflt,
                pb.nivcsw,
                us(gap),
                rt.nivcsw,
                rt.minflt,
                rb.minflt,
                rb.nivcsw
            );
        }
    }
    let total_p: (u64, u64) = sent.iter().fold((0, 0), |a, e| {
        (a.0 + e.thread.minflt, a.1 + e.others.minflt)
    });
    let total_r: (u64, u64) = seen.iter().fold((0, 0), |a, e| {
        (a.0 + e.thread.minflt, a.1 + e.others.minflt)
    });
    let _ = writeln!(
        s,
        "\nSlow messages by the part of their first message that was longest: producer late \
         {}, enqueue {}, commit → receipt {}, none above p50 {}. Whole run: producer thread {} \
         minor faults, its other threads {}; reader thread {}, its other threads {}.\n",
        blame[0], blame[1], blame[2], blame[3], total_p.0, total_p.1, total_r.0, total_r.1
    );
    let path = dir.join("events.md");
    let mut old = std::fs::read_to_string(&path).unwrap_or_default();
    old.push_str(&s);
    std::fs::write(path, old)?;
    Ok(())
}
