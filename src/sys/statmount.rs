//! statmount(2) (Linux 6.8), which rustix lacks: one mount's record, asked by its unique id.
//! /proc/PID/mountinfo formats every mount of the namespace, its paths above all: 18 ms for
//! 10 000 mounts here, where the few mounts stacked at one path cost microseconds this way.
//! `Record::mountinfo_line` writes a record as the line mountinfo would show, so that the
//! parser and everything built on it serve both.

use std::ffi::c_long;
use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, StatxFlags, statx};
use rustix::io::Errno;

use super::{c, shared_number};
use crate::model::mountinfo::escape;

/// statmount's and listmount's numbers (elsewhere mountinfo is read).
const SYS_STATMOUNT: Option<c_long> = shared_number(457);
const SYS_LISTMOUNT: Option<c_long> = shared_number(458);

const SB_BASIC: u64 = 0x1;
const MNT_BASIC: u64 = 0x2;
const PROPAGATE_FROM: u64 = 0x4;
const MNT_ROOT: u64 = 0x8;
const MNT_POINT: u64 = 0x10;
const FS_TYPE: u64 = 0x20;
const MNT_OPTS: u64 = 0x80;
const FS_SUBTYPE: u64 = 0x100;
const SB_SOURCE: u64 = 0x200;
/// What a mountinfo line needs. The kernel leaves out the bit of a string it has nothing for
/// (a file system without options, a type without subtype), and of one it does not know yet
/// (options came in 6.10, sources in 6.13: Debian 13's 6.12 gives none); those of Linux 6.8
/// it always gives.
const ASKED: u64 =
    SB_BASIC | MNT_BASIC | PROPAGATE_FROM | MNT_ROOT | MNT_POINT | FS_TYPE | MNT_OPTS | FS_SUBTYPE | SB_SOURCE;
/// Without these a record is not the mount's line. The source is among them: a kernel that
/// gives it gives one for every mount made with a name (mount(2) always names one), and the
/// lines it is missing from would name the wrong file system in every message.
const NEEDED: u64 = SB_BASIC | MNT_BASIC | MNT_ROOT | MNT_POINT | FS_TYPE | SB_SOURCE;

/// STATX_MNT_ID_UNIQUE (Linux 6.8): the id statmount takes.
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

/// struct mnt_id_req, MNT_ID_REQ_SIZE_VER0.
#[repr(C)]
struct MntIdReq {
    size: u32,
    spare: u32,
    mnt_id: u64,
    param: u64,
}

/// Offsets in struct statmount (linux/mount.h); its strings start at `STR`.
mod at {
    pub const MNT_OPTS: usize = 4;
    pub const MASK: usize = 8;
    pub const SB_DEV_MAJOR: usize = 16;
    pub const SB_DEV_MINOR: usize = 20;
    pub const SB_MAGIC: usize = 24;
    pub const SB_FLAGS: usize = 32;
    pub const FS_TYPE: usize = 36;
    pub const MNT_PARENT_ID: usize = 48;
    pub const MNT_ID_OLD: usize = 56;
    pub const MNT_PARENT_ID_OLD: usize = 60;
    pub const MNT_ATTR: usize = 64;
    pub const MNT_PROPAGATION: usize = 72;
    pub const MNT_PEER_GROUP: usize = 80;
    pub const MNT_MASTER: usize = 88;
    pub const PROPAGATE_FROM: usize = 96;
    pub const MNT_ROOT: usize = 104;
    pub const MNT_POINT: usize = 108;
    pub const FS_SUBTYPE: usize = 120;
    pub const SB_SOURCE: usize = 124;
    pub const STR: usize = 512;
}

/// One mount, as statmount(2) gave it: struct statmount and its strings.
pub struct Record {
    buf: Vec<u8>,
}

/// The unique id (statx(2) with STATX_MNT_ID_UNIQUE) of the topmost mount at `name` in
/// `dir`, not following a symlink nor triggering an automount. ENOSYS before Linux 6.8.
pub fn top_mount_id(dir: BorrowedFd<'_>, name: &[u8]) -> Result<u64, Errno> {
    let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT;
    let st = statx(dir, name, flags, StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE))?;
    if st.stx_mask & STATX_MNT_ID_UNIQUE == 0 {
        return Err(Errno::NOSYS);
    }
    Ok(st.stx_mnt_id)
}

/// The unique id of the mount `fd` is on (statx(2) with STATX_MNT_ID_UNIQUE, AT_EMPTY_PATH).
pub fn mount_id(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    let st = statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE))?;
    if st.stx_mask & STATX_MNT_ID_UNIQUE == 0 {
        return Err(Errno::NOSYS);
    }
    Ok(st.stx_mnt_id)
}

/// statmount(2) of the mount with unique id `id` in our mount namespace, with what a
/// mountinfo line needs. ENOSYS where the kernel (before 6.8) or the architecture lacks it;
/// ENODATA where the record lacks a field we read: an autofs mount always has options (`fd=`,
/// `pgrp=`), so none means a kernel before 6.10; no source, one before 6.13 (or a mount made
/// by fsmount(2) without a name, which mountinfo shows as `none`). The caller then reads
/// mountinfo, which has every field on every kernel.
pub fn statmount(id: u64) -> Result<Record, Errno> {
    let Some(number) = SYS_STATMOUNT else { return Err(Errno::NOSYS) };
    let req = MntIdReq { size: size_of::<MntIdReq>() as u32, spare: 0, mnt_id: id, param: ASKED };
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `req` is a mnt_id_req of the size it says, and `buf` is writable for the
        // length passed; both outlive the call.
        let ret = unsafe { c::syscall(number, &raw const req, buf.as_mut_ptr(), buf.len(), 0) };
        match ret {
            0 => break,
            _ => match c::errno() {
                // The strings did not fit.
                Errno::OVERFLOW if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
                e => return Err(e),
            },
        }
    }
    let record = Record { buf };
    let mask = record.u64_at(at::MASK);
    if mask & NEEDED != NEEDED || (record.str_at(at::FS_TYPE, FS_TYPE) == b"autofs" && mask & MNT_OPTS == 0) {
        return Err(Errno::NODATA);
    }
    Ok(record)
}

/// The unique ids of the mounts of our mount namespace below our root, in the namespace's
/// order (mountinfo's): listmount(2) (Linux 6.8), a page of ids at a time. About 0.13 ms per
/// 1 000 mounts.
pub fn list_mounts() -> Result<Vec<u64>, Errno> {
    Lister::default().all()
}

/// listmount(2) of our mount namespace below our root (or below one mount), a page at a time:
/// a listing can go on where it stopped, so that two namespaces are counted in turns, as far
/// as the smaller goes.
#[derive(Default)]
pub struct Lister {
    /// The mount whose subtree is listed; 0 (no mount has that id) for our root's.
    below: u64,
    /// The last id listed (0 before the first page).
    last: u64,
    pub count: usize,
    /// Whether the last page was short: every mount is listed.
    pub done: bool,
}

impl Lister {
    /// Everything mounted below mount `id`, at any depth. The kernel walks the whole namespace
    /// for it (about 0.2 ms at 10 000 mounts), not the subtree alone.
    pub fn below(id: u64) -> Self {
        Lister { below: id, ..Lister::default() }
    }

    /// Every id from where the listing stands.
    pub fn all(mut self) -> Result<Vec<u64>, Errno> {
        let mut ids = Vec::new();
        while !self.done {
            self.page(&mut ids, 4096)?;
        }
        Ok(ids)
    }

    /// Lists up to `max` more ids into `ids`, in the mount namespace we are in now.
    pub fn page(&mut self, ids: &mut Vec<u64>, max: usize) -> Result<(), Errno> {
        const LSMT_ROOT: u64 = u64::MAX;
        let Some(number) = SYS_LISTMOUNT else { return Err(Errno::NOSYS) };
        let start = ids.len();
        ids.resize(start + max, 0);
        let below = if self.below == 0 { LSMT_ROOT } else { self.below };
        let req = MntIdReq { size: size_of::<MntIdReq>() as u32, spare: 0, mnt_id: below, param: self.last };
        let page = ids.get_mut(start..).unwrap_or_default();
        // SAFETY: `req` is a mnt_id_req of the size it says, and `page` is writable for the
        // count passed; both outlive the call.
        let ret = unsafe { c::syscall(number, &raw const req, page.as_mut_ptr(), page.len(), 0) };
        let n = usize::try_from(ret).map_err(|_| c::errno());
        ids.truncate(start + *n.as_ref().unwrap_or(&0));
        let n = n?;
        self.count += n;
        self.done = n < max;
        self.last = ids.get(start..).and_then(<[u64]>::last).copied().unwrap_or(self.last);
        Ok(())
    }
}

/// A mount without its strings: where it hangs and what file system it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Basic {
    pub id: u64,
    /// Its parent's unique id (its own for the root of the namespace).
    pub parent: u64,
    /// The file system's magic number (statfs(2)'s f_type).
    pub magic: u64,
}

/// statmount(2) of mount `id` without strings (STATMOUNT_SB_BASIC | STATMOUNT_MNT_BASIC): no
/// path is made, which is what a mountinfo line costs. ENOSYS as `statmount`.
pub fn basic(id: u64) -> Result<Basic, Errno> {
    let Some(number) = SYS_STATMOUNT else { return Err(Errno::NOSYS) };
    let req = MntIdReq { size: size_of::<MntIdReq>() as u32, spare: 0, mnt_id: id, param: SB_BASIC | MNT_BASIC };
    // u64s: the record's 8-byte fields are read where they lie.
    let mut buf = [0u64; at::STR / 8];
    // SAFETY: `req` is a mnt_id_req of the size it says, and `buf` is writable for the length
    // passed (struct statmount, which is all the kernel writes when no string is asked for);
    // both outlive the call.
    let ret = unsafe { c::syscall(number, &raw const req, buf.as_mut_ptr(), size_of_val(&buf), 0) };
    if ret != 0 {
        return Err(c::errno());
    }
    let field = |off: usize| buf.get(off / 8).copied().unwrap_or(0);
    if field(at::MASK) & (SB_BASIC | MNT_BASIC) != SB_BASIC | MNT_BASIC {
        return Err(Errno::NOSYS);
    }
    Ok(Basic { id, parent: field(at::MNT_PARENT_ID), magic: field(at::SB_MAGIC) })
}

impl Record {
    fn u32_at(&self, off: usize) -> u32 {
        self.buf.get(off..off + 4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_ne_bytes)
    }

    fn u64_at(&self, off: usize) -> u64 {
        self.buf.get(off..off + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_ne_bytes)
    }

    /// The string whose offset is at `off`, if the kernel gave it (`bit` in the mask).
    fn str_at(&self, off: usize, bit: u64) -> &[u8] {
        if self.u64_at(at::MASK) & bit == 0 {
            return b"";
        }
        let start = at::STR + self.u32_at(off) as usize;
        let rest = self.buf.get(start..).unwrap_or_default();
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    /// The parent's unique id (its own for the root of the namespace).
    pub fn parent_id(&self) -> u64 {
        self.u64_at(at::MNT_PARENT_ID)
    }

    /// Where it is mounted, relative to our root.
    pub fn mount_point(&self) -> &[u8] {
        self.str_at(at::MNT_POINT, MNT_POINT)
    }

    /// Its line as /proc/self/mountinfo would show it (proc(5)), newline included: the same
    /// ids (the old ones), the same options in the same order, the same escapes.
    pub fn mountinfo_line(&self) -> Vec<u8> {
        let mut line = format!(
            "{} {} {}:{} ",
            self.u32_at(at::MNT_ID_OLD),
            self.u32_at(at::MNT_PARENT_ID_OLD),
            self.u32_at(at::SB_DEV_MAJOR),
            self.u32_at(at::SB_DEV_MINOR)
        )
        .into_bytes();
        line.extend(escape(self.str_at(at::MNT_ROOT, MNT_ROOT)));
        line.push(b' ');
        line.extend(escape(self.mount_point()));
        line.push(b' ');
        line.extend(mount_options(self.u64_at(at::MNT_ATTR)).as_bytes());
        line.extend(self.propagation().as_bytes());
        line.extend_from_slice(b" - ");
        line.extend(escape(self.str_at(at::FS_TYPE, FS_TYPE)));
        let subtype = self.str_at(at::FS_SUBTYPE, FS_SUBTYPE);
        if !subtype.is_empty() {
            line.push(b'.');
            line.extend(escape(subtype));
        }
        line.push(b' ');
        line.extend(escape(self.str_at(at::SB_SOURCE, SB_SOURCE)));
        line.push(b' ');
        line.extend(super_options(self.u32_at(at::SB_FLAGS)).as_bytes());
        let opts = self.str_at(at::MNT_OPTS, MNT_OPTS);
        if !opts.is_empty() {
            line.push(b',');
            line.extend_from_slice(opts);
        }
        line.push(b'\n');
        line
    }

    /// The optional fields, each with the space before it.
    fn propagation(&self) -> String {
        const MS_UNBINDABLE: u64 = 1 << 17;
        const MS_SLAVE: u64 = 1 << 19;
        const MS_SHARED: u64 = 1 << 20;
        let prop = self.u64_at(at::MNT_PROPAGATION);
        let mut out = String::new();
        if prop & MS_SHARED != 0 {
            out += &format!(" shared:{}", self.u64_at(at::MNT_PEER_GROUP));
        }
        if prop & MS_SLAVE != 0 {
            let master = self.u64_at(at::MNT_MASTER);
            out += &format!(" master:{master}");
            let from = self.u64_at(at::PROPAGATE_FROM);
            if from != 0 && from != master {
                out += &format!(" propagate_from:{from}");
            }
        }
        if prop & MS_UNBINDABLE != 0 {
            out += " unbindable";
        }
        out
    }
}

/// Field 6 from MOUNT_ATTR_* bits, in the kernel's order (fs/proc_namespace.c).
fn mount_options(attr: u64) -> String {
    const NAMES: [(u64, &str); 4] = [(0x2, "nosuid"), (0x4, "nodev"), (0x8, "noexec"), (0x80, "nodiratime")];
    let mut out = String::from(if attr & 0x1 != 0 { "ro" } else { "rw" });
    for (bit, name) in NAMES {
        if attr & bit != 0 {
            out += ",";
            out += name;
        }
        // noatime comes between noexec and nodiratime, relatime after it.
        if bit == 0x8 && attr & 0x70 == 0x10 {
            out += ",noatime";
        }
    }
    if attr & 0x70 == 0 {
        out += ",relatime";
    }
    if attr & 0x20_0000 != 0 {
        out += ",nosymfollow";
    }
    if attr & 0x10_0000 != 0 {
        out += ",idmapped";
    }
    out
}

/// The start of field 11 from SB_* flags (the file system's own options follow).
fn super_options(flags: u32) -> String {
    let mut out = String::from(if flags & 0x1 != 0 { "ro" } else { "rw" });
    for (bit, name) in [(16, "sync"), (128, "dirsync"), (1 << 25, "lazytime")] {
        if flags & bit != 0 {
            out += ",";
            out += name;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mountinfo::parse;

    /// The offsets, against a struct laid out as linux/mount.h declares it.
    #[test]
    fn offsets_are_those_of_struct_statmount() {
        #[repr(C)]
        #[allow(dead_code)]
        struct Statmount {
            size: u32,
            mnt_opts: u32,
            mask: u64,
            sb_dev_major: u32,
            sb_dev_minor: u32,
            sb_magic: u64,
            sb_flags: u32,
            fs_type: u32,
            mnt_id: u64,
            mnt_parent_id: u64,
            mnt_id_old: u32,
            mnt_parent_id_old: u32,
            mnt_attr: u64,
            mnt_propagation: u64,
            mnt_peer_group: u64,
            mnt_master: u64,
            propagate_from: u64,
            mnt_root: u32,
            mnt_point: u32,
            mnt_ns_id: u64,
            fs_subtype: u32,
            sb_source: u32,
            opt_num: u32,
            opt_array: u32,
            opt_sec_num: u32,
            opt_sec_array: u32,
            supported_mask: u64,
            mnt_uidmap_num: u32,
            mnt_uidmap: u32,
            mnt_gidmap_num: u32,
            mnt_gidmap: u32,
            spare2: [u64; 43],
        }
        use std::mem::offset_of;
        assert_eq!(offset_of!(Statmount, mnt_opts), at::MNT_OPTS);
        assert_eq!(offset_of!(Statmount, mask), at::MASK);
        assert_eq!(offset_of!(Statmount, sb_dev_major), at::SB_DEV_MAJOR);
        assert_eq!(offset_of!(Statmount, sb_dev_minor), at::SB_DEV_MINOR);
        assert_eq!(offset_of!(Statmount, sb_magic), at::SB_MAGIC);
        assert_eq!(offset_of!(Statmount, sb_flags), at::SB_FLAGS);
        assert_eq!(offset_of!(Statmount, fs_type), at::FS_TYPE);
        assert_eq!(offset_of!(Statmount, mnt_parent_id), at::MNT_PARENT_ID);
        assert_eq!(offset_of!(Statmount, mnt_id_old), at::MNT_ID_OLD);
        assert_eq!(offset_of!(Statmount, mnt_parent_id_old), at::MNT_PARENT_ID_OLD);
        assert_eq!(offset_of!(Statmount, mnt_attr), at::MNT_ATTR);
        assert_eq!(offset_of!(Statmount, mnt_propagation), at::MNT_PROPAGATION);
        assert_eq!(offset_of!(Statmount, mnt_peer_group), at::MNT_PEER_GROUP);
        assert_eq!(offset_of!(Statmount, mnt_master), at::MNT_MASTER);
        assert_eq!(offset_of!(Statmount, propagate_from), at::PROPAGATE_FROM);
        assert_eq!(offset_of!(Statmount, mnt_root), at::MNT_ROOT);
        assert_eq!(offset_of!(Statmount, mnt_point), at::MNT_POINT);
        assert_eq!(offset_of!(Statmount, fs_subtype), at::FS_SUBTYPE);
        assert_eq!(offset_of!(Statmount, sb_source), at::SB_SOURCE);
        assert_eq!(size_of::<Statmount>(), at::STR);
    }

    #[test]
    fn the_listing_is_that_of_the_table_page_by_page_too() {
        let lines = std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count();
        let all = match list_mounts() {
            Ok(all) => all,
            Err(e) => return assert_eq!(e, Errno::NOSYS),
        };
        // The root itself is not below the root.
        assert!(all.len() == lines || all.len() + 1 == lines, "{} mounts listed, {lines} in mountinfo", all.len());
        let (mut lister, mut paged) = (Lister::default(), Vec::new());
        while !lister.done {
            lister.page(&mut paged, 3).unwrap();
        }
        assert_eq!((paged, lister.count), (all.clone(), all.len()));
    }

    /// Without strings, the same parent as the whole record, and the magic statfs gives.
    #[test]
    fn basics_are_the_records_own() {
        let ids = match list_mounts() {
            Ok(ids) => ids,
            Err(e) => return assert_eq!(e, Errno::NOSYS),
        };
        let (mut compared, mut records) = (0, true);
        for &id in &ids {
            let Ok(b) = basic(id) else { continue };
            match statmount(id) {
                Ok(record) => assert_eq!((b.id, b.parent), (id, record.parent_id())),
                // A kernel before 6.13 gives no sources: no whole record to compare with.
                Err(Errno::NODATA) => records = false,
                Err(_) => continue,
            }
            compared += 1;
        }
        assert!(compared > 0 && compared + 2 >= ids.len(), "{compared} of {} mounts", ids.len());
        if !records {
            eprintln!("this kernel's statmount lacks a field of the line: parents not compared");
        }
        // The topmost mount at /proc is the one statfs sees (at / it may be 9p, whose statfs
        // passes on the server's type); in a chroot below that mount's root (as `make
        // check-msrv` runs), a normal user may not see it (EPERM).
        match basic(top_mount_id(rustix::fs::CWD, b"/proc").unwrap()) {
            Ok(proc) => assert_eq!(proc.magic, rustix::fs::statfs("/proc").unwrap().f_type as u64),
            Err(e) => assert_eq!(e, Errno::PERM),
        }
    }

    #[test]
    fn options_in_the_kernels_order() {
        assert_eq!(mount_options(0), "rw,relatime");
        assert_eq!(mount_options(0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x80), "ro,nosuid,nodev,noexec,noatime,nodiratime");
        assert_eq!(mount_options(0x20), "rw", "strictatime says nothing");
        assert_eq!(mount_options(0x2 | 0x20_0000), "rw,nosuid,relatime,nosymfollow");
        assert_eq!(super_options(1 | 16), "ro,sync");
    }

    /// Every mount of this process's namespace: its statmount record written as a line is the
    /// kernel's own mountinfo line (a kernel, or a qemu-user, without statmount is told apart,
    /// not failed).
    #[test]
    fn lines_are_the_kernels_own() {
        let text = std::fs::read("/proc/self/mountinfo").unwrap();
        let real = parse(&text).unwrap();
        let root = rustix::fs::CWD;
        let (mut compared, mut lacking) = (0, 0);
        for m in &real {
            let id = match top_mount_id(root, &m.mount_point) {
                Ok(id) => id,
                Err(Errno::NOSYS) => {
                    eprintln!("this kernel has no statmount: nothing compared");
                    return;
                }
                // Hidden under another mount, or not reachable from here: not this mount's.
                Err(_) => continue,
            };
            let record = match statmount(id) {
                Ok(record) => record,
                // qemu-user passes on only the system calls it knows.
                Err(Errno::NOSYS) => {
                    eprintln!("no statmount here: nothing compared");
                    return;
                }
                // A kernel before 6.13 gives no sources (nor a newer one for a nameless mount).
                Err(Errno::NODATA) => {
                    lacking += 1;
                    continue;
                }
                Err(_) => continue,
            };
            let line = record.mountinfo_line();
            let Some(ours) = text.split(|&b| b == b'\n').find(|l| l.starts_with(format!("{} ", m.id).as_bytes()))
            else {
                continue;
            };
            if parse(&line).unwrap()[0].id != m.id {
                continue;
            }
            assert_eq!(String::from_utf8_lossy(&line), format!("{}\n", String::from_utf8_lossy(ours)));
            compared += 1;
        }
        if compared == 0 && lacking > 0 {
            eprintln!("this kernel's statmount lacks a field of the line: nothing compared");
            return;
        }
        assert!(compared > 0, "no mount compared: {}", String::from_utf8_lossy(&text));
    }
}
