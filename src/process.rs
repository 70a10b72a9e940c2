//! What a long-running process (`serve`, `work`, `all-in-one`) sets up about itself before it
//! opens anything: private files, and enough file descriptors for many idle clients.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Files this process creates are readable by its own user only (0600, directories 0700):
/// the database, uploads, results and temp files hold users' documents.
pub fn private_files() {
    // SAFETY: umask only sets the process's file mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates `data_dir` if needed and makes it 0700, also when an earlier version left it
/// readable by others.
pub fn private_data_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Raises the soft limit on open files to the hard limit, and returns the new soft limit.
///
/// Each client connection, WebSocket and pooled connection is a descriptor; a soft limit of
/// 1024 (a common default) would refuse clients long before the machine runs out of anything.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit write and read the one struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// Everything above, logged; for the start of every server or worker process.
pub fn prepare(data_dir: &Path) -> io::Result<()> {
    private_files();
    private_data_dir(data_dir)?;
    match raise_open_files_limit() {
        Ok(n) if n < 4096 => tracing::warn!(
            open_files = n,
            "the open-files limit is low; raise it (LimitNOFILE=) to serve many clients"
        ),
        Ok(n) => tracing::debug!(open_files = n, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    Ok(())
}

/// This machine's name, safe in file names and worker ids (dots and slashes replaced).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace(['.', '/'], "_"))
        .unwrap_or_else(|_| "localhost".into())
}
