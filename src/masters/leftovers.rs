//! What a killed automount daemon leaves behind that stops its successor (`model::leftovers`):
//! its flag file and pid file, found while it still runs (inside: the container's paths),
//! cleared once it is killed, before anything can start a new one. A file is removed only if
//! it is still the very file found then (same device and inode: a daemon that takes the flag
//! makes a new file) and still names the killed daemon: nothing of another daemon is touched.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags, openat, unlinkat};

use crate::container::{Inside, paths};
use crate::error::{Context, Result};
use crate::model::{leftovers, procfs};
use crate::pids::CtrPid;
use crate::show::Shown;

/// A daemon's files that name it.
pub struct Leftovers {
    /// Its pid in the container, as its files say it (None where it has none there).
    pid: Option<CtrPid>,
    files: Vec<Named>,
}

/// A file found naming the daemon: its path, and which file it is (device, inode).
struct Named {
    path: Vec<u8>,
    id: (u64, u64),
}

/// A file as `naming` found it: its directory (resolved in the container), its name there,
/// and which file it is.
struct Found {
    dir: OwnedFd,
    name: Vec<u8>,
    id: (u64, u64),
}

impl Leftovers {
    /// The files of the daemon with host pid `pid` that name it, read while it runs: its flag
    /// (where its executable says) and its pid file (where its command line says).
    pub fn find(inside: &Inside, pid: u32) -> Leftovers {
        let init = inside.init();
        let Some(ctr_pid) = init.ctr_pid(pid) else { return Leftovers { pid: None, files: Vec::new() } };
        let argv = init.procs().proc_file(pid, "cmdline").map(|c| procfs::nul_list(&c)).unwrap_or_default();
        let mut candidates = leftovers::flag_paths(init.procs().proc_file(pid, "exe").as_deref());
        candidates.extend(leftovers::pid_file(&argv));
        let mut files: Vec<Named> = Vec::new();
        if let Ok(root) = paths::root() {
            for path in candidates {
                // /run and /var/run are the same directory on most systems: one file.
                let Ok(Some(found)) = naming(root.as_fd(), &path, ctr_pid) else { continue };
                if !files.iter().any(|f| f.id == found.id) {
                    files.push(Named { path, id: found.id });
                }
            }
        }
        Leftovers { pid: Some(ctr_pid), files }
    }

    /// Once the daemon is killed: removes each file found that is still the same file and
    /// still names it. Each one's path, and whether it was removed (false: not the same any
    /// more, left).
    pub fn clear(&self) -> Vec<(Vec<u8>, Result<bool>)> {
        let (Ok(root), Some(pid)) = (paths::root(), self.pid) else { return Vec::new() };
        let clear = |f: &Named| -> Result<bool> {
            match naming(root.as_fd(), &f.path, pid)? {
                Some(found) if found.id == f.id => {
                    unlinkat(&found.dir, found.name.as_slice(), AtFlags::empty())
                        .context(format!("removing {}", Shown(&f.path)))?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        };
        self.files.iter().map(|f| (f.path.clone(), clear(f))).collect()
    }

    /// The pid its files name, in the container (None where it had none there: then no file
    /// was found).
    pub fn pid(&self) -> Option<CtrPid> {
        self.pid
    }
}

/// The regular file at `path` in the container, if it names `pid`.
fn naming(root: BorrowedFd<'_>, path: &[u8], pid: CtrPid) -> Result<Option<Found>> {
    let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let (dir, name) = (if cut == 0 { &b"/"[..] } else { &path[..cut] }, &path[cut + 1..]);
    let dir = match paths::open_dir_in_root(root, dir) {
        Ok(dir) => dir,
        Err(e) if e.errno() == Some(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    // Never follows a symlink there, nor blocks on a fifo.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let file = match openat(&dir, name, flags, Mode::empty()) {
        Ok(file) => file,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP) => return Ok(None),
        Err(e) => return Err(e).context(format!("opening {}", Shown(path))),
    };
    let st = rustix::fs::fstat(&file).context(format!("stat {}", Shown(path)))?;
    if st.st_mode & 0o170000 != 0o100000 {
        return Ok(None);
    }
    // A pid and a newline; more is not the daemon's.
    let mut content = Vec::new();
    std::fs::File::from(file).take(32).read_to_end(&mut content).context(format!("reading {}", Shown(path)))?;
    Ok(leftovers::names(&content, pid).then(|| Found { dir, name: name.to_vec(), id: (st.st_dev, st.st_ino) }))
}
