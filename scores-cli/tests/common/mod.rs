//! What the integration tests share: the `scores` binary, loopback ports, child processes.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The `scores` binary under test, logging warnings only.
pub(crate) fn scores() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scores"));
    command.env("RUST_LOG", "warn");
    command
}

/// A child process killed when the test ends, however it ends.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

pub(crate) fn wait_for_port(address: SocketAddr) {
    // Generous: a debug build of the service starting on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(address).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {address}");
        sleep(Duration::from_millis(20));
    }
}
