//! What the integration tests share: the `scores` binary, loopback ports, child processes.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
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

/// Runs openssl with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl").args(args).current_dir(dir).status();
    let status = status.unwrap_or_else(|error| {
        panic!("openssl is needed to make test certificates (apt install openssl): {error}")
    });
    assert!(status.success(), "openssl {args:?}");
}

/// In `dir`: a CA (`ca.pem`), and certificates it signs with their keys: `server.pem` for
/// 127.0.0.1 and localhost, `client.pem` for clients.
pub(crate) fn certificates(dir: &Path) {
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca: Vec<&str> = ["req", "-x509"]
        .into_iter()
        .chain(key)
        .chain(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=scores test CA"])
        .chain(["-addext", "basicConstraints=critical,CA:TRUE"])
        .chain(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .collect();
    openssl(dir, &ca);
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for name in ["server", "client"] {
        let (keyout, csr, subject) =
            (format!("{name}.key"), format!("{name}.csr"), format!("/CN={name}"));
        let request: Vec<&str> = ["req"]
            .into_iter()
            .chain(key)
            .chain(["-keyout", &keyout, "-out", &csr, "-subj", &subject])
            .collect();
        openssl(dir, &request);
        let (pem, ext) = (format!("{name}.pem"), format!("{name}.ext"));
        openssl(
            dir,
            &["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key"]
                .into_iter()
                .chain(["-CAcreateserial", "-out", &pem, "-days", "2", "-extfile", &ext])
                .collect::<Vec<_>>(),
        );
    }
}
