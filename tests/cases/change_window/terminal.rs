//! A real terminal for the tests that need one: a pseudo-terminal (openpty) whose slave side
//! is the child's stdin, stdout, stderr and controlling terminal, the child leading a session
//! of its own, as a shell runs a command in the foreground. Writing ^C to the master is then a
//! real Ctrl-C: the line discipline sends SIGINT to the foreground process group, and the
//! no-echo password prompt reads from /dev/tty.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Terminal {
    master: File,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Terminal {
    /// Runs `command` on a new terminal.
    pub fn spawn(mut command: Command) -> Terminal {
        let (master, slave) = open_terminal();
        command
            .stdin(slave.try_clone().expect("dup the terminal"))
            .stdout(slave.try_clone().expect("dup the terminal"))
            .stderr(slave);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start the command on the terminal");
        // The parent's copies of the slave side go with `command`.
        drop(command);
        let output = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let output = output.clone();
            let mut master = master.try_clone().expect("dup the master");
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                // Ends with EIO once every descriptor of the slave side is closed.
                while let Ok(read @ 1..) = master.read(&mut buffer) {
                    output.lock().unwrap().extend_from_slice(&buffer[..read]);
                }
            })
        };
        Terminal {
            master,
            child,
            output,
            reader: Some(reader),
        }
    }

    /// What the terminal showed so far, without carriage returns.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).replace('\r', "")
    }

    /// Types `text` (a line ends with "\n", which the terminal reads as Enter).
    pub fn type_text(&mut self, text: &str) {
        self.master
            .write_all(text.as_bytes())
            .expect("type on the terminal");
    }

    /// Ctrl-C: the terminal sends SIGINT to the foreground process group.
    pub fn ctrl_c(&mut self) {
        self.type_text("\u{3}");
    }

    /// Whether the terminal echoes what is typed (its mode, which the master shares).
    pub fn echoes(&self) -> bool {
        // SAFETY: termios is plain data that tcgetattr fills in.
        let mut mode: libc::termios = unsafe { std::mem::zeroed() };
        let read =
            unsafe { libc::tcgetattr(std::os::fd::AsRawFd::as_raw_fd(&self.master), &mut mode) };
        assert_eq!(read, 0, "tcgetattr: {}", std::io::Error::last_os_error());
        mode.c_lflag & libc::ECHO != 0
    }

    /// Waits until the terminal shows `text`; panics with what it shows after `timeout`.
    #[track_caller]
    pub fn wait_for(&self, text: &str, timeout: Duration) {
        let started = Instant::now();
        while !self.output().contains(text) {
            assert!(
                started.elapsed() < timeout,
                "the terminal did not show {text:?} within {timeout:?}; it shows:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the command to end (at most `timeout`): its status and everything it showed.
    pub fn wait(self, timeout: Duration) -> (ExitStatus, String) {
        let (status, output, _) = self.wait_keeping(timeout);
        (status, output)
    }

    /// As `wait`, keeping the terminal open for a look at its mode.
    pub fn wait_keeping(mut self, timeout: Duration) -> (ExitStatus, String, Terminal) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the command") {
                break status;
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "the command did not end within {timeout:?}; it shows:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The last bytes the command wrote, until the terminal reports its side closed.
        let reader = self.reader.take().expect("read once");
        while !reader.is_finished() && started.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(10));
        }
        let output = self.output();
        (status, output, self)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new pseudo-terminal: (master, slave), both close-on-exec from the start, so that no
/// process another test starts meanwhile holds the slave side open (the master would then
/// never see it closed). The window is 200 columns wide.
fn open_terminal() -> (File, File) {
    let failed = |what: &str| panic!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: plain libc calls on descriptors this function opens and then owns; ptsname_r
    // writes a NUL-terminated name into the buffer it is given.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if master < 0 {
            failed("posix_openpt");
        }
        let master = File::from_raw_fd(master);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&master);
        if libc::grantpt(fd) != 0 || libc::unlockpt(fd) != 0 {
            failed("grantpt/unlockpt");
        }
        let mut name = [0 as libc::c_char; 128];
        if libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) != 0 {
            failed("ptsname_r");
        }
        let slave = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if slave < 0 {
            failed("open the terminal's slave side");
        }
        let size = libc::winsize {
            ws_row: 50,
            ws_col: 200,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        libc::ioctl(slave, libc::TIOCSWINSZ, &size);
        (master, File::from_raw_fd(slave))
    }
}
