//! Surviving a journal file truncated while it is mapped.
//!
//! Touching a page of a `MAP_SHARED` mapping beyond the end of its file raises `SIGBUS`, which
//! kills the process. Journal files are never truncated by repliq (retention unlinks whole
//! files), but an operator's `truncate`, a full or failing file system, or another program can
//! do it. A daemon that dies on one damaged queue would take every queue of the node with it.
//!
//! The choice: a process-wide `SIGBUS` handler that repairs the faulting access instead of
//! unwinding it. Every journal mapping registers its address range here. On a fault inside a
//! registered range the handler maps a private zero page over the faulting page (`MAP_FIXED`)
//! and marks the mapping *damaged*; the faulting instruction is restarted and succeeds on the
//! zero page. The journal checks the mark where it matters and turns it into a typed
//! [`QueueError::Corrupt`](crate::QueueError::Corrupt) naming the file: a writer before it
//! reports a record as appended, a reader when it finds no record where one should be, the
//! replication source before it sends bytes. A zero page reads as "no record here" (a zero
//! header word) and never as a committed record, so nothing wrong is handed out in between.
//!
//! Why not `siglongjmp` out of the handler: jumping over Rust frames skips their destructors
//! and is undefined behaviour for frames that are not plain C. Why not check the file's length
//! before each access: the truncation can land between the check and the access. A fault
//! outside every registered range is not ours: the handler restores the previous disposition
//! and returns, so the access faults again and the process dies (or the previous handler runs)
//! exactly as without this module.
//!
//! Async-signal safety: the handler only loads atomics of a fixed static table, calls `mmap`
//! (a system call) and stores atomics. Registration takes a free slot with a compare-and-swap.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// How many mappings can be protected at once. A mapping registered when the table is full
/// is not protected (it behaves as before: a truncation kills the process).
const SLOTS: usize = 4096;

struct Slot {
    /// Start address, 0 when the slot is free.
    start: AtomicUsize,
    len: AtomicUsize,
    damaged: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // the initializer of a static array
const FREE: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    damaged: AtomicBool::new(false),
};

static TABLE: [Slot; SLOTS] = [FREE; SLOTS];
static INSTALL: Once = Once::new();
/// Whether the handler is installed (false if `sigaction` failed).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The protection of one mapping: the slot it holds in the table, freed when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    slot: usize,
}

impl Registration {
    /// Protects the `len` bytes at `start` (a live mapping of a journal file). `None` if the
    /// handler could not be installed or the table is full.
    pub(crate) fn new(start: *mut u8, len: usize) -> Option<Registration> {
        install();
        if !INSTALLED.load(Ordering::Acquire) || len == 0 {
            return None;
        }
        for (i, slot) in TABLE.iter().enumerate() {
            if slot.start.load(Ordering::Relaxed) != 0 {
                continue;
            }
            // Claim the slot with a sentinel start that no fault address can fall into (length
            // is still 0), then fill it in.
            if slot
                .start
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                slot.damaged.store(false, Ordering::Relaxed);
                slot.len.store(len, Ordering::Relaxed);
                slot.start.store(start as usize, Ordering::Release);
                return Some(Registration { slot: i });
            }
        }
        None
    }

    /// Whether a fault in this mapping was repaired with a zero page: the file is shorter than
    /// its mapping, and some bytes read or written since were not the file's.
    pub(crate) fn damaged(&self) -> bool {
        TABLE[self.slot].damaged.load(Ordering::Acquire)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let slot = &TABLE[self.slot];
        slot.len.store(0, Ordering::Release);
        slot.start.store(0, Ordering::Release);
    }
}

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler has the
        // SA_SIGINFO signature; PREVIOUS is written once here, before the handler can run.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, &action, &mut previous) == 0 {
                PREVIOUS_ACTION.store(
                    Box::into_raw(Box::new(previous)) as usize,
                    Ordering::Release,
                );
                INSTALLED.store(true, Ordering::Release);
            }
        }
    });
}

/// The disposition before ours (a leaked `Box<sigaction>`), restored for faults that are not
/// ours.
static PREVIOUS_ACTION: AtomicUsize = AtomicUsize::new(0);

extern "C" fn handler(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = page_size();
    for slot in &TABLE {
        let start = slot.start.load(Ordering::Acquire);
        let len = slot.len.load(Ordering::Acquire);
        if start <= 1 || addr < start || addr >= start + len {
            continue;
        }
        let page_start = addr & !(page - 1);
        // SAFETY: the page lies inside a live mapping this process registered (registration is
        // dropped only when the mapping is); replacing it with a private zero page changes which
        // memory backs those addresses, not whether they are mapped, so every reference into the
        // mapping stays valid. mmap is a plain system call, safe in a signal handler.
        let rc = unsafe {
            libc::mmap(
                page_start as *mut libc::c_void,
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if rc != libc::MAP_FAILED {
            slot.damaged.store(true, Ordering::Release);
            return;
        }
        break;
    }
    // Not ours (or not repairable): restore the previous disposition; returning restarts the
    // access, which faults again under it.
    let previous = PREVIOUS_ACTION.load(Ordering::Acquire);
    // SAFETY: `previous` is the leaked sigaction stored at installation, never freed; sigaction
    // is async-signal-safe.
    unsafe {
        if previous != 0 {
            libc::sigaction(
                libc::SIGBUS,
                previous as *const libc::sigaction,
                std::ptr::null_mut(),
            );
        } else {
            libc::signal(libc::SIGBUS, libc::SIG_DFL);
        }
    }
}

fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf is async-signal-safe and has no preconditions.
            let p = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
                .ok()
                .filter(|p| p.is_power_of_two())
                .unwrap_or(4096);
            PAGE.store(p, Ordering::Relaxed);
            p
        }
        p => p,
    }
}
