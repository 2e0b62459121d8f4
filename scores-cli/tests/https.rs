//! The service over HTTPS (`--tls-cert`, `--tls-key`), with a client that checks the
//! certificate, and a renewed certificate served after SIGHUP without a restart.
//!
//! Needs `openssl` for the certificates.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Running, certificates, free_address, scores, wait_for_port};

/// A client that trusts only the CA in `dir`.
fn client(dir: &Path) -> reqwest::blocking::Client {
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn the_service_speaks_https_and_serves_a_renewed_certificate_after_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (first, renewed) = (dir.path().join("first"), dir.path().join("renewed"));
    for dir in [&first, &renewed] {
        std::fs::create_dir(dir).unwrap();
        certificates(dir);
    }
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(first.join("server.pem"), &cert).unwrap();
    std::fs::copy(first.join("server.key"), &key).unwrap();
    let address = free_address();
    let serve = Running(
        scores()
            .args(["serve", "--simulate-count", "40", "--simulate-rate", "max"])
            .args(["--listen", &address.to_string(), "--tls-cert", cert.to_str().unwrap()])
            .args(["--tls-key", key.to_str().unwrap()])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .spawn()
            .unwrap(),
    );
    wait_for_port(address);
    let url = format!("https://127.0.0.1:{}/students", address.port());
    let answers = |client: &reqwest::blocking::Client| {
        client.get(&url).send().map(|response| response.status().as_u16()).ok()
    };
    assert_eq!(answers(&client(&first)), Some(200));
    assert_eq!(answers(&client(&renewed)), None, "another CA's certificate is refused");
    let plain = reqwest::blocking::get(format!("http://{address}/students"));
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "plain HTTP is not served");

    // A renewed certificate: read again on SIGHUP, served to new connections.
    std::fs::copy(renewed.join("server.pem"), &cert).unwrap();
    std::fs::copy(renewed.join("server.key"), &key).unwrap();
    let pid = serve.0.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while answers(&client(&renewed)) != Some(200) {
        assert!(Instant::now() < deadline, "the renewed certificate is not served");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(answers(&client(&first)), None, "the old certificate is no longer served");
}
