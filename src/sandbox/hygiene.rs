//! What the practice stack leaves behind when it is killed: nothing that runs, and no temporary
//! folder past the next start.
//!
//! - Its database process dies with msa-doctor: on Linux through `PR_SET_PDEATHSIG` (the
//!   kernel sends it SIGKILL when its parent dies, even by SIGKILL), elsewhere through a
//!   [`watchdog`] process that polls its owner.
//! - Its temporary folders (`msa-doctor-stack-*`, `msa-doctor-tsdb-*`, `msa-doctor-cluster-*`)
//!   hold an `owner.pid` file. Signals remove them through the stack's shutdown; after a SIGKILL
//!   they remain, and the next stack start removes those whose owner is dead
//!   ([`remove_stale_dirs`]).

use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// The prefixes of the practice stack's temporary folders.
pub const DIR_PREFIXES: [&str; 3] = [
    "msa-doctor-stack-",
    "msa-doctor-tsdb-",
    "msa-doctor-cluster-",
];

/// The file in each folder that names the process owning it.
pub const OWNER_FILE: &str = "owner.pid";

/// A fresh temporary folder with this prefix (one of [`DIR_PREFIXES`]), holding the current
/// process id in [`OWNER_FILE`].
pub fn owned_tempdir(prefix: &str) -> std::io::Result<TempDir> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    std::fs::write(
        dir.path().join(OWNER_FILE),
        format!("{}\n", std::process::id()),
    )?;
    Ok(dir)
}

/// Whether a process with this id exists (a zombie counts as gone).
pub fn process_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        // Field 3 of /proc/PID/stat is the state; `Z` is a zombie, `X` dead.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "Z" || state == "X"),
            Err(_) => false,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::process::Command::new("kill")
            .arg("-0")
            .arg(pid.to_string())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// The owner of a practice stack folder, when it names one.
fn owner_of(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join(OWNER_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Removes, under `tmp`, the practice stack folders whose owner process is dead (a stack
/// killed by SIGKILL cannot clean up after itself). Folders without an owner file (being
/// created right now, or from an older msa-doctor) and folders of live processes are left
/// alone. Returns the folders removed.
pub fn remove_stale_dirs_in(tmp: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return vec![];
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !DIR_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        // A real folder, not a link someone planted.
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = e.path();
        if let Some(pid) = owner_of(&path)
            && !process_alive(pid)
            && std::fs::remove_dir_all(&path).is_ok()
        {
            removed.push(path);
        }
    }
    removed
}

/// [`remove_stale_dirs_in`] the system's temporary folder (`TMPDIR`, else `/tmp`).
pub fn remove_stale_dirs() -> Vec<PathBuf> {
    remove_stale_dirs_in(&std::env::temp_dir())
}

/// Makes a child process die with msa-doctor, even when msa-doctor is killed by SIGKILL.
///
/// Linux: the child asks the kernel (`PR_SET_PDEATHSIG`) for SIGKILL when its parent dies,
/// between `fork` and `exec`. Note that "parent" is the *thread* that forked: the runtime's
/// threads that spawn the database live as long as the process (the main thread, or a worker
/// of the runtime that outlives the stack).
#[cfg(target_os = "linux")]
pub fn die_with_parent(cmd: &mut tokio::process::Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: `prctl` and `getppid` are system calls, and the error is built from
    // a raw errno without allocating. If the parent died before `prctl` took effect, the
    // child was re-parented already (`getppid` differs) and must not start at all.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Elsewhere there is no such kernel feature: see [`watchdog`], started after the spawn.
#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_cmd: &mut tokio::process::Command) {}

/// A process that kills `child` with SIGKILL as soon as `owner` is gone (polled every second),
/// for systems without `PR_SET_PDEATHSIG`. The caller kills the watchdog when it stops the
/// child itself. Used on every Unix but Linux; built everywhere so that it is tested.
pub fn watchdog(owner: u32, child: u32) -> std::io::Result<std::process::Child> {
    std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done; kill -9 "$2" 2>/dev/null"#)
        .arg("msa-doctor-watchdog")
        .arg(owner.to_string())
        .arg(child.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
}

/// A running [`watchdog`]; dropping it stops it.
#[derive(Debug)]
pub struct Watchdog(std::process::Child);

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What else a freshly spawned child needs to die with msa-doctor: nothing on Linux
/// ([`die_with_parent`] did it), a [`Watchdog`] elsewhere (none when it cannot start).
pub fn guard(child: Option<u32>) -> Option<Watchdog> {
    if cfg!(target_os = "linux") {
        return None;
    }
    watchdog(std::process::id(), child?).ok().map(Watchdog)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_gone(child: &mut std::process::Child, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    #[test]
    fn the_watchdog_kills_the_child_when_its_owner_dies() {
        let mut owner = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let mut dog = watchdog(owner.id(), child.id()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            child.try_wait().unwrap().is_none(),
            "alive while its owner is"
        );
        owner.kill().unwrap();
        owner.wait().unwrap();
        assert!(
            wait_gone(&mut child, Duration::from_secs(5)),
            "the child outlived its owner"
        );
        assert!(
            wait_gone(&mut dog, Duration::from_secs(2)),
            "the watchdog ends"
        );
    }

    #[test]
    fn stale_dirs_of_dead_owners_are_removed_and_no_other() {
        let tmp = tempfile::tempdir().unwrap();
        let mk = |name: &str, owner: Option<String>| {
            let d = tmp.path().join(name);
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("data"), "x").unwrap();
            if let Some(o) = owner {
                std::fs::write(d.join(OWNER_FILE), o).unwrap();
            }
            d
        };
        // A process that has exited (and been reaped): its id names no process.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        let dead = gone.id().to_string();
        let me = std::process::id().to_string();
        let stale_tsdb = mk("msa-doctor-tsdb-aaa", Some(dead.clone()));
        let stale_stack = mk("msa-doctor-stack-bbb", Some(dead.clone()));
        let live = mk("msa-doctor-cluster-ccc", Some(me));
        let unowned = mk("msa-doctor-tsdb-ddd", None);
        let garbage = mk("msa-doctor-tsdb-eee", Some("not a pid".into()));
        let other = mk("someone-else-fff", Some(dead));
        let mut removed = remove_stale_dirs_in(tmp.path());
        removed.sort();
        assert_eq!(removed, vec![stale_stack.clone(), stale_tsdb.clone()]);
        assert!(!stale_tsdb.exists() && !stale_stack.exists());
        for kept in [live, unowned, garbage, other] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
    }

    #[test]
    fn owned_dirs_name_this_process() {
        let d = owned_tempdir("msa-doctor-stack-").unwrap();
        assert_eq!(owner_of(d.path()), Some(std::process::id()));
        assert!(process_alive(std::process::id()));
    }
}
