//! Replicas against nats-servers that require credentials or TLS, as operators secure them: a
//! user and password (in the URL and from files), a token, an nkey, TLS with a CA the test
//! makes, and mutual TLS. For each, a replica with the right secret connects and ingests, and
//! one with a wrong secret is not ready and says why in `/readyz`.
//!
//! Needs nats-server 2.10 or later (see `scores-pipeline/tests/support/nats.rs`) and `openssl`
//! for the certificates. And deploy/nats-authorization.conf, the example for operators.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../scores-pipeline/tests/support/nats.rs"]
mod nats;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Running, certificates, free_address, scores, wait_for_port};

/// Events each replica's simulated feed sends.
const COUNT: u64 = 50;

/// A `scores serve` on `log` with `args`, fed by its built-in simulator unless it only follows.
fn replica(dir: &Path, name: &str, log: &str, args: &[&str]) -> (SocketAddr, Running) {
    let address = free_address();
    let mut command = scores();
    command.args(["serve", "--listen", &address.to_string(), "--log", log]);
    command.arg("--data-dir").arg(dir.join(name)).args(args);
    if !args.contains(&"--follow-only") {
        command.args(["--simulate-rate", "max", "--simulate-count", &COUNT.to_string()]);
    }
    let child = command.spawn().unwrap();
    let running = Running(child);
    wait_for_port(address);
    (address, running)
}

/// `/readyz`'s status and body.
fn readiness(address: SocketAddr) -> (u16, String) {
    let response = reqwest::blocking::get(format!("http://{address}/readyz")).unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

/// Waits (generously) until `/readyz` satisfies `done`; panics with the last answer.
fn wait_for(address: SocketAddr, what: &str, done: impl Fn(u16, &str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = readiness(address);
        if done(status, &body) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: /readyz answers {status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A replica with the right secret ingests every event; one with a wrong one is not ready and
/// `/readyz` names `reason`.
fn check(dir: &Path, name: &str, good: (&str, &[&str]), bad: (&str, &[&str]), reason: &str) {
    let (good_address, _good) = replica(dir, &format!("{name}-good"), good.0, good.1);
    let (bad_address, _bad) = replica(dir, &format!("{name}-bad"), bad.0, bad.1);
    wait_for(good_address, &format!("{name}: the right secret ingests"), |status, body| {
        status == 200 && body.contains(&format!(r#""seq":{COUNT}"#))
    });
    wait_for(bad_address, &format!("{name}: a wrong secret says why"), |status, body| {
        status == 503 && body.contains("cannot reach NATS") && body.contains(reason)
    });
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn replicas_connect_with_a_password_a_token_or_an_nkey_and_say_why_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    let users = r#"authorization { users: [{ user: scores, password: "pw-r1ght" }] }"#;
    let Some(server) = nats::start_configured(users) else { return };
    let port = server.port;
    let password = write(dir, "password", "pw-r1ght\n");
    let wrong = write(dir, "wrong", "pw-wr0ng\n");
    let good: &[&str] = &["--nats-user", "scores", "--nats-password-file", &password];
    let bad: &[&str] = &["--nats-user", "scores", "--nats-password-file", &wrong];
    let url = format!("nats://127.0.0.1:{port}");
    check(dir, "password", (&url, good), (&url, bad), "authorization violation");
    let in_url = format!("nats://scores:pw-r1ght@127.0.0.1:{port}");
    let wrong_in_url = format!("nats://scores:pw-wr0ng@127.0.0.1:{port}");
    check(dir, "url", (&in_url, &[]), (&wrong_in_url, &[]), "authorization violation");
    // The password is never printed, even where the URL is.
    let (address, _replica) = replica(dir, "printed", &wrong_in_url, &[]);
    wait_for(address, "refused", |status, _| status == 503);
    assert!(!readiness(address).1.contains("pw-wr0ng"));
    drop(server);

    let Some(server) = nats::start_configured(r#"authorization { token: "t0ken-r1ght" }"#) else {
        return;
    };
    let url = format!("nats://127.0.0.1:{}", server.port);
    let token = write(dir, "token", "t0ken-r1ght\n");
    let wrong_token = format!("nats://t0ken-wr0ng@127.0.0.1:{}", server.port);
    let good: &[&str] = &["--nats-token-file", &token];
    check(dir, "token", (&url, good), (&wrong_token, &[]), "authorization violation");
    drop(server);

    let key = nkeys::KeyPair::new_user();
    let other = nkeys::KeyPair::new_user();
    let users = format!("authorization {{ users: [{{ nkey: {} }}] }}", key.public_key());
    let Some(server) = nats::start_configured(&users) else { return };
    let url = format!("nats://127.0.0.1:{}", server.port);
    let seed = write(dir, "seed", &key.seed().unwrap());
    let other_seed = write(dir, "other-seed", &other.seed().unwrap());
    let (good, bad): (&[&str], &[&str]) = (&["--nats-nkey", &seed], &["--nats-nkey", &other_seed]);
    check(dir, "nkey", (&url, good), (&url, bad), "authorization violation");
}

#[test]
fn replicas_connect_over_tls_and_mutual_tls_and_say_why_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    certificates(dir);
    let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));
    let tls = format!(
        "tls {{ cert_file: {:?}, key_file: {:?} }}\n",
        file("server.pem"),
        file("server.key")
    );
    let Some(server) = nats::start_configured(&tls) else { return };
    let url = format!("tls://127.0.0.1:{}", server.port);
    // Without the CA the server's certificate is not trusted.
    check(dir, "tls", (&url, &["--nats-tls-ca", &ca]), (&url, &[]), "invalid peer certificate");
    drop(server);

    let mutual = format!(
        "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {ca:?}, verify: true }}\n",
        file("server.pem"),
        file("server.key")
    );
    let Some(server) = nats::start_configured(&mutual) else { return };
    let url = format!("nats://127.0.0.1:{}", server.port);
    let with_client: &[&str] =
        &["--nats-tls-ca", &ca, "--nats-tls-cert", &cert, "--nats-tls-key", &key];
    // Without a client certificate the server refuses the handshake.
    check(dir, "mtls", (&url, with_client), (&url, &["--nats-tls-ca", &ca]), "cannot reach NATS");
}

/// deploy/nats-authorization.conf grants the replicas' user exactly what a replica needs: one
/// that makes the stream and ingests, one that follows it, `scores replay`; anyone else is
/// refused.
#[test]
fn the_deploy_examples_authorization_lets_replicas_do_all_they_need_and_no_one_else_in() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/nats-authorization.conf"
    ))
    .unwrap();
    let config = example.replace("$SCORES_NATS_PASSWORD", "\"pw-r1ght\"");
    assert_ne!(config, example, "the password comes from the environment");
    let Some(server) = nats::start_configured(&config) else { return };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let url = format!("nats://scores:pw-r1ght@127.0.0.1:{}", server.port);
    let anonymous = format!("nats://127.0.0.1:{}", server.port);
    check(dir, "deploy", (&url, &[]), (&anonymous, &[]), "authorization violation");
    let (follower, _follower) = replica(dir, "follower", &url, &["--follow-only"]);
    wait_for(follower, "a follower reads the stream", |status, body| {
        status == 200 && body.contains(&format!(r#""seq":{COUNT}"#))
    });
    let replay = scores().args(["replay", &url, "students"]).output().unwrap();
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
}
