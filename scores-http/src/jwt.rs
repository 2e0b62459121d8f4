//! JSON Web Tokens for single sign-on: [`ApiJwt`] lets in a request whose bearer token is a JWT
//! signed by a key of a JWKS file (RS256, ES256 or EdDSA), from the configured issuer, for the
//! configured audience, and within its `exp` and `nbf` (60 s of leeway for clocks apart).

use std::path::{Path, PathBuf};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};

/// The keys, issuer and audience a JWT must match.
pub struct ApiJwt {
    jwks: PathBuf,
    issuer: String,
    audience: String,
    keys: ArcSwap<Vec<Key>>,
}

/// One key of the set, with the one algorithm it verifies.
struct Key {
    id: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for ApiJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiJwt")
            .field("jwks", &self.jwks)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys.load().len())
            .finish()
    }
}

impl ApiJwt {
    /// Reads the key set in `jwks` (a JSON Web Key Set file). An error names the file and what
    /// is wrong, or that it holds no key of an algorithm taken.
    pub fn load(
        jwks: impl Into<PathBuf>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<ApiJwt, String> {
        let jwks = jwks.into();
        let keys = read_keys(&jwks)?;
        Ok(ApiJwt {
            jwks,
            issuer: issuer.into(),
            audience: audience.into(),
            keys: ArcSwap::from_pointee(keys),
        })
    }

    /// Reads the key set again (on SIGHUP, after a key rotation); on an error the keys held
    /// stay. Returns how many keys it holds.
    pub fn reload(&self) -> Result<usize, String> {
        let keys = read_keys(&self.jwks)?;
        let n = keys.len();
        self.keys.store(keys.into());
        Ok(n)
    }

    /// The key set's file.
    pub fn path(&self) -> &Path {
        &self.jwks
    }

    /// Whether `token` is a JWT this service takes.
    pub fn allows(&self, token: &[u8]) -> bool {
        let Ok(token) = std::str::from_utf8(token) else { return false };
        let Ok(header) = decode_header(token) else { return false };
        let keys = self.keys.load();
        let fits = |key: &&Key| {
            key.algorithm == header.alg && (header.kid.is_none() || key.id == header.kid)
        };
        keys.iter().filter(fits).any(|key| {
            let mut validation = Validation::new(key.algorithm);
            validation.set_issuer(&[&self.issuer]);
            validation.set_audience(&[&self.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            validation.validate_nbf = true;
            decode::<serde_json::Value>(token, &key.key, &validation).is_ok()
        })
    }
}

fn read_keys(path: &Path) -> Result<Vec<Key>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read the JWKS {}: {error}", path.display()))?;
    let set: JwkSet = serde_json::from_str(&text)
        .map_err(|error| format!("{} is not a JSON Web Key Set: {error}", path.display()))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => {
                Algorithm::EdDSA
            }
            // HMAC secrets and other curves: not keys a sign-on provider publishes for this.
            _ => continue,
        };
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|error| format!("a key of {}: {error}", path.display()))?;
        keys.push(Key { id: jwk.common.key_id.clone(), algorithm, key });
    }
    if keys.is_empty() {
        return Err(format!("{} holds no RSA, P-256 or Ed25519 key", path.display()));
    }
    Ok(keys)
}
