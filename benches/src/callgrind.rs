//! Counting instructions of a whole multi-threaded window with callgrind: the counted process
//! runs under `valgrind --tool=callgrind --instr-atstart=no` and switches instrumentation on
//! and off itself ([`start`], [`stop`]), so every thread's instructions between the two calls
//! count (unlike `--toggle-collect`, which counts one thread's calls of one function) and the
//! setup before (filling a journal, starting servers) runs uninstrumented and fast. The count is
//! user-space instructions only: what the kernel does for a system call or a page fault is not
//! in it.

use std::path::Path;
use std::process::Command;

use crate::BoxResult;

/// `VG_USERREQ_TOOL_BASE('C', 'T')` in `valgrind/callgrind.h`.
const CALLGRIND_BASE: u64 = ((b'C' as u64) << 24) | ((b'T' as u64) << 16);
/// `VG_USERREQ__START_INSTRUMENTATION`.
const START_INSTRUMENTATION: u64 = CALLGRIND_BASE + 4;
/// `VG_USERREQ__STOP_INSTRUMENTATION`.
const STOP_INSTRUMENTATION: u64 = CALLGRIND_BASE + 5;

/// A valgrind client request (`VALGRIND_DO_CLIENT_REQUEST_EXPR` of `valgrind.h` for amd64):
/// natively the magic sequence is a no-op that leaves `default` in `rdx`; under valgrind the
/// core answers the request.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn client_request(request: u64, default: u64) -> u64 {
    let args: [u64; 6] = [request, 0, 0, 0, 0, 0];
    let result: u64;
    // SAFETY: the four rotations of `rdi` add up to 128 bits (it ends unchanged) and
    // `xchg rbx, rbx` changes nothing: natively the sequence only clobbers the flags (which
    // `asm!` assumes anyway). Valgrind recognises it, reads the six words at `rax` (alive for
    // the whole statement) and writes its answer into `rdx`.
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") default => result,
            options(nostack),
        );
    }
    result
}

#[cfg(not(target_arch = "x86_64"))]
fn client_request(_request: u64, default: u64) -> u64 {
    default
}

/// Switches callgrind's instrumentation on: from here every thread's instructions count.
pub fn start() {
    client_request(START_INSTRUMENTATION, 0);
}

/// Switches callgrind's instrumentation off: nothing counts from here.
pub fn stop() {
    client_request(STOP_INSTRUMENTATION, 0);
}

/// What one counted run collected.
#[derive(Debug, Clone, Copy)]
pub struct Counted {
    /// Every instruction between [`start`] and [`stop`], all threads.
    pub total: u64,
    /// Of those, the ones in glibc's `memcpy`/`memmove`/`memset`: byte copies. Valgrind counts
    /// each iteration of a `rep movsb` (which glibc uses for copies of a few KiB and more) as
    /// one instruction, so a copy counts about one instruction per byte here although the CPU
    /// moves 32 or more bytes per cycle with it.
    pub copies: u64,
}

/// Runs `exe args` under callgrind with instrumentation off until the process calls [`start`];
/// returns what was collected and the process's standard output. The split by function comes
/// from `callgrind_annotate` (shipped with valgrind) on a temporary profile.
pub fn run_counted(exe: &Path, args: &[String]) -> BoxResult<(Counted, String)> {
    let profile = tempfile::NamedTempFile::new()?;
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", profile.path().display()))
        .arg("--instr-atstart=no")
        // Many threads (two tokio runtimes, the journal's background threads).
        .arg("--max-threads=1000");
    let out = cmd
        .arg(exe)
        .args(args)
        .output()
        .map_err(|e| format!("running valgrind (apt-get install -y valgrind): {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{} {args:?} failed under callgrind:\n{stderr}",
            exe.display()
        )
        .into());
    }
    let collected = stderr
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("Collected :")?;
            rest.trim().parse::<u64>().ok()
        })
        .ok_or_else(|| format!("no 'Collected' line from callgrind:\n{stderr}"))?;
    let copies = copy_instructions(profile.path())?;
    Ok((
        Counted {
            total: collected,
            copies,
        },
        stdout,
    ))
}

/// The instructions of `memcpy`, `memmove` and `memset` (any variant) in a callgrind profile.
fn copy_instructions(profile: &Path) -> BoxResult<u64> {
    let out = Command::new("callgrind_annotate")
        .arg("--threshold=100")
        .arg(profile)
        .output()
        .map_err(|e| format!("running callgrind_annotate (part of valgrind): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "callgrind_annotate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sum = 0;
    for line in text.lines() {
        // "55,281,549 (84.86%)  file:function [object]"
        let Some((count, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(n) = count.replace(',', "").parse::<u64>() else {
            continue;
        };
        let function = rest.rsplit_once(':').map_or(rest, |(_, f)| f);
        if ["memcpy", "memmove", "memset"]
            .iter()
            .any(|m| function.contains(m))
        {
            sum += n;
        }
    }
    Ok(sum)
}
