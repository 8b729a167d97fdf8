//! Long-lived client processes (group members: rdkafka children, kafka-python scripts,
//! Java console consumers) that a test can watch line by line, stop politely (close
//! stdin) or crash (SIGKILL). Each runs in its own process group; Drop kills the group.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{kill_group, poll_interval};

/// A running child whose stdout and stderr lines are collected as they arrive.
pub struct ClientProcess {
    name: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    /// Kept alive as long as the process (config files the command refers to).
    _keep: Option<tempfile::TempDir>,
}

fn collect(
    r: impl std::io::Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(l) => sink.lock().unwrap().push(l),
                Err(_) => break,
            }
        }
    })
}

impl ClientProcess {
    /// Spawn `cmd` (stdin piped, stdout/stderr collected) as its own process group.
    /// `keep` is dropped with the process (e.g. the temp dir holding its config).
    pub fn spawn(name: &str, mut cmd: Command, keep: Option<tempfile::TempDir>) -> ClientProcess {
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot spawn {cmd:?}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().expect("stdout"), stdout.clone()),
            collect(child.stderr.take().expect("stderr"), stderr.clone()),
        ];
        let stdin = child.stdin.take();
        ClientProcess {
            name: name.to_string(),
            child: Some(child),
            stdin,
            stdout,
            stderr,
            readers,
            _keep: keep,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// All stdout lines so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Number of stdout lines so far (cheap progress check).
    pub fn stdout_len(&self) -> usize {
        self.stdout.lock().unwrap().len()
    }

    /// Stdout lines from index `from` on.
    pub fn stdout_from(&self, from: usize) -> Vec<String> {
        let v = self.stdout.lock().unwrap();
        v[from.min(v.len())..].to_vec()
    }

    /// The last `n` stderr lines, for messages.
    pub fn stderr_tail(&self, n: usize) -> String {
        let v = self.stderr.lock().unwrap();
        v[v.len().saturating_sub(n)..].join("\n")
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => match c.try_wait().expect("try_wait") {
                None => true,
                Some(_) => {
                    // Keep the Child (reaped) so exit_status() can report; never signal it.
                    false
                }
            },
        }
    }

    /// Write one line to the child's stdin (a command to a member script).
    pub fn send_line(&mut self, line: &str) {
        let s = self
            .stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{}: stdin already closed", self.name));
        writeln!(s, "{line}").unwrap_or_else(|e| panic!("{}: write stdin: {e}", self.name));
        let _ = s.flush();
    }

    /// Close stdin (the members' "stop cleanly" signal) and wait for exit within
    /// `timeout`; returns whether it exited 0. Panics with stderr if it did not exit.
    pub fn stop(&mut self, timeout: Duration) -> bool {
        self.stdin = None;
        self.wait_exit(timeout)
    }

    /// Wait (bounded) for the process to exit on its own; true if it exited 0.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("child");
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                self.join_readers();
                return st.success();
            }
            if Instant::now() >= deadline {
                let pid = child.id() as i32;
                kill_group(pid, libc::SIGKILL);
                let _ = child.wait();
                self.child = None;
                panic!(
                    "{}: did not exit within {timeout:?}; stderr tail:\n{}",
                    self.name,
                    self.stderr_tail(40)
                );
            }
            std::thread::sleep(poll_interval());
        }
    }

    /// SIGKILL the whole process group (a crash: no LeaveGroup, no commit) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            if c.try_wait().expect("try_wait").is_none() {
                kill_group(c.id() as i32, libc::SIGKILL);
            }
            let _ = c.wait();
        }
        self.stdin = None;
        self.join_readers();
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Only signal a child that has not been reaped (its pid is still ours).
            if matches!(c.try_wait(), Ok(None)) {
                kill_group(c.id() as i32, libc::SIGKILL);
            }
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let out = self.stdout_lines();
            eprintln!(
                "--- {} stdout tail ---\n{}\n--- {} stderr tail ---\n{}",
                self.name,
                out[out.len().saturating_sub(15)..].join("\n"),
                self.name,
                self.stderr_tail(30)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_stop_and_kill() {
        // `cat` echoes stdin and exits 0 on EOF: stop() closes stdin.
        let mut p = ClientProcess::spawn("cat", Command::new("cat"), None);
        p.send_line("hello");
        crate::wait_until("echo", Duration::from_secs(10), || {
            if p.stdout_lines() == ["hello"] {
                Ok(())
            } else {
                Err(format!("{:?}", p.stdout_lines()))
            }
        });
        assert!(p.stop(Duration::from_secs(10)), "cat exits 0 on EOF");
        assert!(!p.is_running());

        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo up; exec sleep 600"]);
        let mut p = ClientProcess::spawn("sleeper", cmd, None);
        crate::wait_until("up", Duration::from_secs(10), || {
            if p.stdout_len() == 1 {
                Ok(())
            } else {
                Err("no output".into())
            }
        });
        assert!(p.is_running());
        p.kill9();
        assert!(!p.is_running());
        assert_eq!(p.stdout_from(0), ["up"]);
    }
}
