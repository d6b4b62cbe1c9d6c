//! The `/proc` and cgroup files the sampler reads, opened once when the
//! agent starts and read again from the top at every sample.
//!
//! A process at its fd limit can open nothing more, and that is exactly
//! when its fds, threads and memory must still be seen. Opening each file
//! per sample (as `procfs` does) would go blind at the limit; these
//! descriptors are held from the start, so a sample needs no new one. Only
//! thread names need a file per thread, and they are left out, counted as
//! `other`, while none can be opened.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// A file kept open and read whole again on each [`KeptFile::read`].
pub(crate) struct KeptFile(File);

impl KeptFile {
    pub(crate) fn open(path: impl AsRef<Path>) -> Option<KeptFile> {
        File::open(path).ok().map(KeptFile)
    }

    /// The file's contents now, into `buf`. `/proc` files are generated
    /// on read, so a seek to the start and one sequential read give a
    /// fresh copy (`pread` at offsets would make the kernel walk a large
    /// table again for every chunk).
    pub(crate) fn read<'b>(&self, buf: &'b mut Vec<u8>) -> io::Result<&'b [u8]> {
        let mut f = &self.0;
        f.seek(SeekFrom::Start(0))?;
        buf.clear();
        f.read_to_end(buf)?;
        Ok(buf)
    }

    /// Calls `each` with every line of the file now, read through a fixed
    /// buffer. For tables that grow with the host rather than with this
    /// process (`/proc/net/tcp` lists every socket of the namespace), so
    /// that a busy host cannot grow the agent's own memory: reading them
    /// whole would keep a buffer as large as the largest table ever seen,
    /// and that buffer would show as a growing site in the service's heap.
    pub(crate) fn for_each_line(&self, mut each: impl FnMut(&[u8])) -> io::Result<()> {
        let mut f = &self.0;
        f.seek(SeekFrom::Start(0))?;
        let mut lines = BufReader::with_capacity(LINE_BUFFER, f);
        // Lines of these tables are short (150 bytes), so this stays small.
        let mut line = Vec::with_capacity(256);
        loop {
            line.clear();
            if lines.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            each(&line);
        }
    }
}

/// The buffer [`KeptFile::for_each_line`] reads through.
const LINE_BUFFER: usize = 16 * 1024;

/// A directory kept open and listed again on each [`KeptDir::names`].
pub(crate) struct KeptDir(Dir);

impl KeptDir {
    pub(crate) fn open(path: &str) -> Option<KeptDir> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        Dir::open(path, flags, Mode::empty()).ok().map(KeptDir)
    }

    /// The entries' names, without `.` and `..`. nix rewinds the directory
    /// when the listing ends, so the next call lists it afresh.
    pub(crate) fn names(&mut self) -> io::Result<Vec<OsString>> {
        let mut out = Vec::new();
        for entry in self.0.iter() {
            let entry = entry.map_err(io::Error::from)?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                use std::os::unix::ffi::OsStrExt;
                out.push(std::ffi::OsStr::from_bytes(name).to_owned());
            }
        }
        Ok(out)
    }

    /// Where the link `name` in this directory points: no descriptor is
    /// opened, so it works at the fd limit.
    pub(crate) fn read_link(&self, name: &OsString) -> io::Result<OsString> {
        nix::fcntl::readlinkat(&self.0, name.as_os_str()).map_err(io::Error::from)
    }

    /// Opens `name` below this directory: a new descriptor, which fails
    /// at the fd limit.
    pub(crate) fn open_file(&self, name: &str) -> io::Result<File> {
        let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(&self.0, name, flags, Mode::empty())?;
        Ok(File::from(fd))
    }
}

/// A descriptor held in reserve: at the fd limit, giving it up makes room
/// for the one descriptor that matters then, the connection to the
/// analyzer, which then stays open in the connection pool.
pub(crate) struct Spare(Option<File>);

impl Spare {
    pub(crate) fn hold() -> Spare {
        Spare(File::open("/dev/null").ok())
    }

    pub(crate) fn is_held(&self) -> bool {
        self.0.is_some()
    }

    /// Gives the spare up: the next descriptor the process opens takes
    /// its place. [`Spare::hold`] takes one back once any is free.
    pub(crate) fn release(&mut self) {
        self.0 = None;
    }
}

/// Whether `e` says the process (or the system) has no descriptor left.
pub(crate) fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_file_reads_fresh_contents_every_time() {
        let dir = std::env::temp_dir().join(format!("heaptide-kept-{}", std::process::id()));
        std::fs::write(&dir, "one").unwrap();
        let kept = KeptFile::open(&dir).unwrap();
        let mut buf = Vec::new();
        assert_eq!(kept.read(&mut buf).unwrap(), b"one");
        std::fs::write(&dir, "two, longer").unwrap();
        assert_eq!(kept.read(&mut buf).unwrap(), b"two, longer");
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn a_kept_directory_lists_again_and_reads_links_without_opening() {
        use std::os::fd::AsRawFd;
        // Other tests of this process open and close files meanwhile, so
        // only this test's own descriptor is looked for.
        let mut fds = KeptDir::open("/proc/self/fd").unwrap();
        for _ in 0..2 {
            let extra = File::open("/proc/self/stat").unwrap();
            let name = OsString::from(extra.as_raw_fd().to_string());
            let names = fds.names().unwrap();
            assert!(names.contains(&name), "{name:?} not in {names:?}");
            let target = fds.read_link(&name).unwrap();
            assert!(target.to_string_lossy().ends_with("/stat"), "{target:?}");
        }
    }
}
