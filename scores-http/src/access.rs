//! Access control: [`ApiTokens`], bearer tokens read from a file, and [`authorized`], whether a
//! request carries one (or a JWT, see `jwt`); [`AllowedHosts`], the names a request's `Host`
//! may carry. The router's middleware asks them (`lib.rs`).
//!
//! A request carries its token in `Authorization: Bearer TOKEN`, or, for the dashboard (whose
//! `EventSource` cannot set headers), in the cookie [`TOKEN_COOKIE`], which the dashboard sets
//! `SameSite=Strict` once the token is typed in. Neither is ever logged, and a token never goes
//! in a URL. `/healthz`, `/readyz` and the dashboard's page and assets (which hold no data) are
//! open, so that load balancers and the sign-in form work.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use arc_swap::ArcSwap;
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE, HOST};
use percent_encoding::percent_decode;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::jwt::ApiJwt;

/// The cookie the dashboard carries its token in.
pub const TOKEN_COOKIE: &str = "scores_token";

/// The paths anyone may ask: health checks, and the dashboard's page and assets.
const OPEN_PATHS: [&str; 5] =
    ["/healthz", "/readyz", "/", "/assets/dashboard.js", "/assets/dashboard.css"];

/// The tokens that let a request in, from a file of one token a line (blank lines and lines
/// starting with `#` skipped). Kept as SHA-256 digests, compared in constant time: neither a
/// token's bytes nor its length show in how long a refusal takes.
#[derive(Debug)]
pub struct ApiTokens {
    path: PathBuf,
    digests: ArcSwap<Vec<[u8; 32]>>,
}

impl ApiTokens {
    /// Reads the tokens in `path`. A file that cannot be read, or holds no token, is an error
    /// naming the file (never a token).
    pub fn load(path: impl Into<PathBuf>) -> Result<ApiTokens, String> {
        let path = path.into();
        let digests = read_digests(&path)?;
        Ok(ApiTokens { path, digests: ArcSwap::from_pointee(digests) })
    }

    /// Reads the file again (on SIGHUP) and returns how many tokens it holds; on an error the
    /// tokens held stay.
    pub fn reload(&self) -> Result<usize, String> {
        let digests = read_digests(&self.path)?;
        let n = digests.len();
        self.digests.store(digests.into());
        Ok(n)
    }

    /// The file the tokens come from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `presented` is one of the tokens.
    pub fn allows(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        // Every digest compared, whichever matches.
        let digests = self.digests.load();
        let found = digests
            .iter()
            .fold(subtle::Choice::from(0), |found, digest| found | digest.ct_eq(&presented));
        found.into()
    }
}

fn read_digests(path: &Path) -> Result<Vec<[u8; 32]>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read the API tokens in {}: {error}", path.display()))?;
    let digests: Vec<[u8; 32]> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|token| Sha256::digest(token.as_bytes()).into())
        .collect();
    if digests.is_empty() {
        return Err(format!("{} holds no API token (one a line)", path.display()));
    }
    Ok(digests)
}

/// The token a request carries: `Authorization: Bearer …`, else the dashboard's cookie
/// (percent-encoded, as the dashboard writes it).
fn presented(headers: &HeaderMap) -> Option<Cow<'_, [u8]>> {
    let bearer = headers.get(AUTHORIZATION).and_then(|value| {
        let value = value.as_bytes();
        let (scheme, token) = value.split_at_checked(7)?;
        scheme.eq_ignore_ascii_case(b"bearer ").then_some(Cow::Borrowed(token))
    });
    bearer.or_else(|| {
        headers.get_all(COOKIE).iter().find_map(|value| {
            value.as_bytes().split(|&b| b == b';').find_map(|pair| {
                let pair = pair.trim_ascii();
                let token = pair.strip_prefix(TOKEN_COOKIE.as_bytes())?.strip_prefix(b"=")?;
                Some(Cow::from(percent_decode(token)))
            })
        })
    })
}

/// Whether a request for `path` with `headers` is let in: access control is off (no tokens, no
/// JWT keys), the path is open, or it carries a token or a JWT that is taken.
pub(crate) fn authorized(
    tokens: Option<&ApiTokens>,
    jwt: Option<&ApiJwt>,
    path: &str,
    headers: &HeaderMap,
) -> bool {
    if tokens.is_none() && jwt.is_none() || OPEN_PATHS.contains(&path) {
        return true;
    }
    presented(headers).is_some_and(|token| {
        tokens.is_some_and(|tokens| tokens.allows(&token))
            || jwt.is_some_and(|jwt| jwt.allows(&token))
    })
}

/// The names (and addresses) a request's `Host` header may carry, the port aside: a page on
/// another site that makes a browser ask this service under a name of its own (DNS
/// rebinding) is refused, 403 `host_not_allowed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHosts(Option<Vec<String>>);

impl AllowedHosts {
    /// Any host: the check is off.
    pub fn any() -> AllowedHosts {
        AllowedHosts(None)
    }

    /// `names`, compared without case; `*` among them allows any.
    pub fn only(names: impl IntoIterator<Item = impl Into<String>>) -> AllowedHosts {
        let names: Vec<String> =
            names.into_iter().map(|name| name.into().to_ascii_lowercase()).collect();
        if names.iter().any(|name| name == "*") {
            AllowedHosts(None)
        } else {
            AllowedHosts(Some(names))
        }
    }

    /// What a service listening on `listen` allows unless told: on a loopback address, the
    /// loopback names and addresses only (a browser on this machine is the only client, and
    /// the one a rebinding attack uses); elsewhere any, since the names it is reached by are not
    /// known.
    pub fn default_for(listen: std::net::SocketAddr) -> AllowedHosts {
        if listen.ip().is_loopback() {
            AllowedHosts::only(["localhost", "127.0.0.1", "::1"])
        } else {
            AllowedHosts::any()
        }
    }

    /// Whether a request for `path` with `headers` is let in: its `Host` is allowed, or it is a
    /// health check (which probes send under any name, and which holds nothing a page could
    /// want).
    pub(crate) fn admit(&self, path: &str, headers: &HeaderMap) -> bool {
        let host = headers.get(HOST).map(|host| host.to_str().unwrap_or("\u{fffd}"));
        matches!(path, "/healthz" | "/readyz") || self.allows(host)
    }

    /// Whether a request whose `Host` is `host` (a name or address, with or without a port) is
    /// allowed. A request without one (HTTP/1.0) is.
    fn allows(&self, host: Option<&str>) -> bool {
        let (Some(names), Some(host)) = (&self.0, host) else { return true };
        let name = match host.strip_prefix('[') {
            Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
            None => host.rsplit_once(':').map_or(host, |(name, _)| name),
        };
        let name = name.trim_end_matches('.');
        names.iter().any(|allowed| allowed.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn tokens_come_one_a_line_and_are_found_by_header_or_cookie() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# the dashboard\nt0ken-one\n\n  t0ken-two  \n").unwrap();
        let tokens = ApiTokens::load(&path).unwrap();
        assert!(tokens.allows(b"t0ken-one") && tokens.allows(b"t0ken-two"));
        assert!(
            !tokens.allows(b"t0ken-on")
                && !tokens.allows(b"")
                && !tokens.allows(b"# the dashboard")
        );
        std::fs::write(&path, "t0ken-three\n").unwrap();
        assert_eq!(tokens.reload(), Ok(1));
        assert!(!tokens.allows(b"t0ken-one") && tokens.allows(b"t0ken-three"));
        std::fs::write(&path, "\n# none\n").unwrap();
        assert!(tokens.reload().unwrap_err().contains("no API token"));
        assert!(tokens.allows(b"t0ken-three"), "a failed reload keeps the tokens held");

        let mut headers = HeaderMap::new();
        assert_eq!(presented(&headers), None);
        headers.insert(COOKIE, HeaderValue::from_static("theme=dark; scores_token=abc; x=1"));
        assert_eq!(presented(&headers).as_deref(), Some(&b"abc"[..]));
        headers.insert(COOKIE, HeaderValue::from_static("scores_token=a%3Bb%20c"));
        assert_eq!(
            presented(&headers).as_deref(),
            Some(&b"a;b c"[..]),
            "as the dashboard encodes it"
        );
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer xyz"));
        assert_eq!(presented(&headers).as_deref(), Some(&b"xyz"[..]));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic eHl6"));
        assert_eq!(
            presented(&headers).as_deref(),
            Some(&b"a;b c"[..]),
            "not a bearer token: the cookie"
        );
    }
}
