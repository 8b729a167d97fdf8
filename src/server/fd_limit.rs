//! RLIMIT_NOFILE: raised to the hard limit at start (every connection and every open
//! segment file is a descriptor), and the share of it that connections may use.

/// The process's open-file limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    pub soft: u64,
    pub hard: u64,
}

/// What [`raise_nofile_limit`] did.
#[derive(Debug)]
pub struct Raised {
    pub before: NofileLimit,
    pub after: NofileLimit,
    /// Why the soft limit could not be raised as far as the hard one, if it could not.
    pub error: Option<std::io::Error>,
}

pub fn nofile_limit() -> std::io::Result<NofileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(NofileLimit {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

/// Raises the soft RLIMIT_NOFILE to the hard one (to `fs.nr_open` when the hard limit is
/// unlimited: Linux refuses a higher soft value). Blocking (reads /proc): call it before
/// the runtime starts.
pub fn raise_nofile_limit() -> std::io::Result<Raised> {
    let before = nofile_limit()?;
    let target = if before.hard == libc::RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .unwrap_or(1 << 20)
    } else {
        before.hard
    };
    if before.soft >= target {
        return Ok(Raised {
            before,
            after: before,
            error: None,
        });
    }
    let wanted = libc::rlimit {
        rlim_cur: target,
        rlim_max: before.hard,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    let error = if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } != 0 {
        Some(std::io::Error::last_os_error())
    } else {
        None
    };
    Ok(Raised {
        before,
        after: nofile_limit()?,
        error,
    })
}

/// Connections the descriptor limit leaves room for: three quarters of the soft limit; the
/// rest stays for segment files (three per segment), RocksDB and the listener, so that a
/// connection flood meets `max.connections`-style back-pressure instead of EMFILE in the
/// log.
pub fn connections_allowed_by(soft_limit: u64) -> usize {
    let allowed = soft_limit - soft_limit / 4;
    usize::try_from(allowed).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_of_the_descriptors_stays_for_storage() {
        assert_eq!(connections_allowed_by(1024), 768);
        assert_eq!(connections_allowed_by(0), 0);
        assert!(connections_allowed_by(u64::MAX) > 0);
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let before = nofile_limit().unwrap();
        let raised = raise_nofile_limit().unwrap();
        assert!(raised.after.soft >= before.soft);
        assert_eq!(raised.after.hard, before.hard);
    }
}
