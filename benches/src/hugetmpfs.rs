//! A tmpfs whose files are backed by 2 MiB pages, for the `repliq-hugetmpfs` rows.
//!
//! `/dev/shm` is mounted without huge pages on most machines (`huge=never`), so each 64 MiB
//! segment costs the kernel 16 384 page allocations and zeroings and the producer and readers
//! as many TLB entries. A tmpfs mounted with `huge=within_size` backs every file of 2 MiB or
//! more with huge pages; repliq needs no change to use it (`docs/DEPLOY.md`).
//!
//! The directory is `REPLIQ_BENCH_HUGE_TMPFS` when set (it must be on such a tmpfs); otherwise
//! the harness, when it runs as root, mounts one of its own under the temporary directory and
//! unmounts it at the end of the run ([`unmount`]). Without either the rows are skipped with the
//! reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The environment variable naming an existing huge-page tmpfs directory.
pub const ENV: &str = "REPLIQ_BENCH_HUGE_TMPFS";

struct Mounted {
    dir: PathBuf,
    /// Mounted by this process (to unmount at the end).
    ours: bool,
}

static DIR: OnceLock<Result<Mounted, String>> = OnceLock::new();

/// The huge-page tmpfs directory, mounting one on first use if needed.
pub fn dir() -> Result<&'static Path, String> {
    match DIR.get_or_init(find_or_mount) {
        Ok(m) => Ok(&m.dir),
        Err(e) => Err(e.clone()),
    }
}

/// Unmounts the tmpfs this process mounted, if any (call after the last row).
pub fn unmount() {
    if let Some(Ok(Mounted { dir, ours: true })) = DIR.get() {
        let _ = Command::new("umount").arg("-l").arg(dir).status();
        let _ = std::fs::remove_dir(dir);
    }
}

fn find_or_mount() -> Result<Mounted, String> {
    if let Some(dir) = std::env::var_os(ENV) {
        let dir = PathBuf::from(dir);
        return match huge_option(&dir) {
            Some(opt) if opt == "always" || opt == "within_size" => {
                Ok(Mounted { dir, ours: false })
            }
            Some(opt) => Err(format!(
                "{ENV}={} is on a tmpfs with huge={opt}; it needs huge=within_size or huge=always",
                dir.display()
            )),
            None => Err(format!(
                "{ENV}={} is not the mount point of a tmpfs",
                dir.display()
            )),
        };
    }
    // SAFETY: `geteuid` has no preconditions and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!(
            "no huge-page tmpfs: not root (cannot mount one); set {ENV} to a directory on a tmpfs \
             mounted with huge=within_size"
        ));
    }
    let dir = std::env::temp_dir().join(format!("repliq-bench-huge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let out = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "huge=within_size,size=8g,mode=1777",
            "tmpfs",
        ])
        .arg(&dir)
        .output()
        .map_err(|e| format!("running mount: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir(&dir);
        return Err(format!(
            "mounting a huge-page tmpfs at {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if huge_option(&dir).as_deref() != Some("within_size") {
        let _ = Command::new("umount").arg("-l").arg(&dir).status();
        let _ = std::fs::remove_dir(&dir);
        return Err("this kernel's tmpfs does not take huge=within_size".into());
    }
    Ok(Mounted { dir, ours: true })
}

/// The `huge=` option of the tmpfs mounted at `dir` ("never" when it has none), or `None` if
/// no tmpfs is mounted exactly there.
fn huge_option(dir: &Path) -> Option<String> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().rev().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, at, fs, opts) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        if fs != "tmpfs" || Path::new(at) != dir {
            return None;
        }
        Some(
            opts.split(',')
                .find_map(|o| o.strip_prefix("huge="))
                .unwrap_or("never")
                .to_owned(),
        )
    })
}
