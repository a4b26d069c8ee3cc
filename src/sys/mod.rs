//! The system calls rustix lacks, each behind a small typed front whose doc names the call.
//! They come from the C library we link anyway (std needs it): no crate more, no assembly.
//! Where the kernel, its seccomp filter or the architecture lacks one, it fails with ENOSYS
//! (or EINVAL for a flag the kernel does not know) and the caller takes the older way.

pub mod fork;
