//! Where a file holds data: `lseek(SEEK_DATA / SEEK_HOLE)`. A range the file system reports as
//! a hole reads as zeros (the calls' contract), so a search for non-zero bytes (a committed
//! record's header word) may skip it without reading it, and without faulting its pages in.

use std::fs::File;
use std::os::fd::AsRawFd;

/// The first range in `[from, end)` that may hold non-zero bytes: `Some((start, stop))` with
/// `from <= start < stop <= end`, or `None` if the file system reports `[from, end)` as one
/// hole. Where the file system cannot tell (no `SEEK_DATA` support, any error), the whole
/// `[from, end)` is returned: the caller then reads it all, as it would without this call.
pub(crate) fn next_data(file: &File, from: u64, end: u64) -> Option<(u64, u64)> {
    if from >= end {
        return None;
    }
    let everything = Some((from, end));
    let (Ok(at), Ok(_)) = (libc::off_t::try_from(from), libc::off_t::try_from(end)) else {
        return everything;
    };
    let fd = file.as_raw_fd();
    // `lseek` moves the descriptor's offset, which no one reads: the segment file is only read
    // and written with positioned calls (`pread`, `pwrite`) or through the mapping.
    // SAFETY: `fd` is an open descriptor owned by `file`, borrowed for the call.
    #[allow(unsafe_code)]
    let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
    if data < 0 {
        return match std::io::Error::last_os_error().raw_os_error() {
            // No data at or after `from`: the rest of the file is a hole.
            Some(libc::ENXIO) => None,
            _ => everything,
        };
    }
    let data = data as u64;
    if data >= end {
        return None;
    }
    // SAFETY: as above.
    #[allow(unsafe_code)]
    let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
    let stop = if hole < 0 {
        end
    } else {
        (hole as u64).clamp(data + 1, end)
    };
    Some((data, stop))
}

#[cfg(test)]
mod test {
    use super::next_data;
    use std::os::unix::fs::FileExt;

    #[test]
    fn a_written_range_is_found_and_the_rest_of_a_sparse_file_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        let size = 16u64 << 20;
        file.set_len(size).unwrap();
        let at = 8u64 << 20;
        file.write_all_at(&[0xAB; 100], at).unwrap();
        // Whatever the file system knows about holes, the written bytes are inside a range.
        let mut from = 0;
        let mut found = false;
        while let Some((start, stop)) = next_data(&file, from, size) {
            assert!(start >= from && stop > start && stop <= size);
            if start <= at && at + 100 <= stop {
                found = true;
            }
            from = stop;
        }
        assert!(
            found,
            "the written bytes at {at} were not in any data range"
        );
        // Past the written block: on a file system with holes (tmpfs, ext4, xfs) nothing is left.
        assert!(next_data(&file, size, size).is_none());
    }
}
