//! Single sign-on: with `--api-jwks`, a bearer token that is a JWT signed by a key of the set
//! (RS256, ES256, EdDSA), from the issuer, for the audience, within `exp` and `nbf`, is let in;
//! every other is 401. Keys made by `openssl`, tokens signed with `jsonwebtoken`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use scores_core::Scoreboard;
use scores_http::{ApiJwt, AppState, router};
use serde_json::json;
use tower::ServiceExt as _;

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl").args(args).current_dir(dir).output();
    let output = output.unwrap_or_else(|error| {
        panic!("openssl is needed to make test keys (apt install openssl): {error}")
    });
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A private key (PEM) made with `genpkey` options `options`, and its public key (DER).
fn key(dir: &Path, name: &str, options: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let pem = format!("{name}.pem");
    let args: Vec<&str> =
        ["genpkey"].into_iter().chain(options.iter().copied()).chain(["-out", &pem]).collect();
    openssl(dir, &args);
    let public = openssl(dir, &["pkey", "-in", &pem, "-pubout", "-outform", "DER"]);
    (std::fs::read(dir.join(&pem)).unwrap(), public)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn jwts_from_the_key_set_issuer_and_audience_are_let_in_and_no_others() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (rsa, _) = key(dir, "rsa", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let modulus =
        String::from_utf8(openssl(dir, &["rsa", "-in", "rsa.pem", "-noout", "-modulus"])).unwrap();
    let modulus = modulus.trim().trim_start_matches("Modulus=");
    let n: Vec<u8> = (0..modulus.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&modulus[i..i + 2], 16).unwrap())
        .collect();
    let (ec, ec_public) =
        key(dir, "ec", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let point = &ec_public[ec_public.len() - 64..];
    let (ed, ed_public) = key(dir, "ed", &["-algorithm", "ed25519"]);
    let (stranger, _) = key(dir, "stranger", &["-algorithm", "ed25519"]);
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa", "n": b64(&n), "e": "AQAB"},
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": b64(&point[..32]), "y": b64(&point[32..])},
        {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": b64(&ed_public[ed_public.len() - 32..])},
    ]});
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks.to_string()).unwrap();
    let jwt = Arc::new(ApiJwt::load(&path, "https://sso.example", "scores").unwrap());
    let state = AppState::serving(Scoreboard::new().snapshot()).with_api_jwt(jwt);

    let sign = |algorithm, kid: &str, pem: &[u8], claims: serde_json::Value| {
        let key = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
            _ => EncodingKey::from_ed_pem(pem),
        };
        let header = Header { kid: Some(kid.to_owned()), ..Header::new(algorithm) };
        encode(&header, &claims, &key.unwrap()).unwrap()
    };
    let claims = |iss: &str, aud: &str, exp: u64| json!({"iss": iss, "aud": aud, "exp": exp, "sub": "teacher"});
    let good = claims("https://sso.example", "scores", now() + 600);
    let status = |token: String| {
        let state = state.clone();
        async move {
            let request = Request::builder()
                .uri("/students")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            router(state).oneshot(request).await.unwrap().status()
        }
    };
    for (algorithm, kid, pem) in [
        (Algorithm::RS256, "rsa", &rsa),
        (Algorithm::ES256, "ec", &ec),
        (Algorithm::EdDSA, "ed", &ed),
    ] {
        assert_eq!(status(sign(algorithm, kid, pem, good.clone())).await, StatusCode::OK, "{kid}");
    }
    let refused = [
        (
            "expired",
            sign(
                Algorithm::EdDSA,
                "ed",
                &ed,
                claims("https://sso.example", "scores", now() - 3600),
            ),
        ),
        (
            "another audience",
            sign(Algorithm::EdDSA, "ed", &ed, claims("https://sso.example", "other", now() + 600)),
        ),
        (
            "another issuer",
            sign(
                Algorithm::EdDSA,
                "ed",
                &ed,
                claims("https://evil.example", "scores", now() + 600),
            ),
        ),
        (
            "not yet valid",
            sign(
                Algorithm::EdDSA,
                "ed",
                &ed,
                json!({"iss": "https://sso.example", "aud": "scores", "exp": now() + 7200, "nbf": now() + 3600}),
            ),
        ),
        (
            "no expiry",
            sign(
                Algorithm::EdDSA,
                "ed",
                &ed,
                json!({"iss": "https://sso.example", "aud": "scores"}),
            ),
        ),
        ("a key not in the set", sign(Algorithm::EdDSA, "ed", &stranger, good.clone())),
        ("another key's id", sign(Algorithm::EdDSA, "rsa", &ed, good.clone())),
        ("not a JWT", "garbage".to_owned()),
    ];
    for (why, token) in refused {
        assert_eq!(status(token).await, StatusCode::UNAUTHORIZED, "{why}");
    }
    // HS256 signed with a public key as its secret: no key of the set takes HS256.
    let confused = encode(
        &Header { kid: Some("ed".to_owned()), ..Header::new(Algorithm::HS256) },
        &good,
        &EncodingKey::from_secret(&ed_public),
    )
    .unwrap();
    assert_eq!(status(confused).await, StatusCode::UNAUTHORIZED);
}
