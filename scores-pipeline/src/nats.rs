//! The NATS connection: where the servers are, how a replica proves who it is, TLS, and why a
//! connection cannot be made, through async-nats' own [`ConnectOptions`].

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::{ConnectOptions, Event, ServerError};

/// How a replica proves who it is to NATS. Its [`Debug`] never shows a secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum NatsAuth {
    /// None: the server lets anyone in.
    #[default]
    None,
    /// A token (`authorization { token: … }`).
    Token(String),
    /// A user and password (`authorization { users: [{ user, password }] }`).
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// An nkey seed (`SU…`): the server holds its public key.
    NKey(String),
    /// A `.creds` file: a user JWT and its nkey seed, for servers run with operator JWTs.
    Credentials(PathBuf),
}

impl fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::Token(_) => f.write_str("Token(…)"),
            NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword({user:?}, …)"),
            NatsAuth::NKey(_) => f.write_str("NKey(…)"),
            NatsAuth::Credentials(path) => write!(f, "Credentials({path:?})"),
        }
    }
}

/// TLS to NATS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatsTls {
    /// Refuse a connection without TLS (`tls://` servers, or a CA or client certificate given).
    pub required: bool,
    /// A PEM file of the certificates that may sign the servers' (besides the system's).
    pub ca: Option<PathBuf>,
    /// A PEM certificate and its key, for servers that verify their clients (mutual TLS).
    pub client: Option<(PathBuf, PathBuf)>,
}

/// How often the client pings its server: a server that stopped answering (a host paused or
/// cut off, where no connection reset tells) is given up after two unanswered pings, and
/// another tried. async-nats pings every 60 s.
const PING_INTERVAL: Duration = Duration::from_secs(5);

/// The wait before reconnection attempt `attempts`: at once, then doubling from 100 ms to at
/// most 1 s, so that the client is back within a second of NATS (async-nats waits up to 4 s).
fn reconnect_delay(attempts: usize) -> Duration {
    match attempts {
        0 | 1 => Duration::ZERO,
        n => Duration::from_millis(100 << (n - 2).min(4)).min(Duration::from_secs(1)),
    }
}

/// Why the client is not connected, as async-nats last said: each server's last error
/// ("authorization violation", "TLS error: invalid peer certificate: UnknownIssuer").
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectProblem(Arc<Mutex<Option<String>>>);

impl ConnectProblem {
    pub(crate) fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set(&self, problem: Option<String>) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if problem.is_some() && *slot != problem {
            tracing::warn!(problem = problem.as_deref(), "cannot connect to NATS; retrying");
        }
        *slot = problem;
    }
}

/// Connects to `servers` (in the background: a server that is down at start is retried until
/// it is up, at most a second apart), with `auth` and `tls`. Why it cannot connect goes to the
/// returned [`ConnectProblem`] and, once for each new reason, to the log.
pub(crate) async fn connect(
    servers: &[String],
    auth: &NatsAuth,
    tls: &NatsTls,
) -> Result<(async_nats::Client, ConnectProblem), String> {
    let problem = ConnectProblem::default();
    let (on_event, on_attempt) = (problem.clone(), problem.clone());
    let mut options = ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(reconnect_delay)
        .ping_interval(PING_INTERVAL)
        .event_callback(move |event| {
            let problem = on_event.clone();
            async move {
                match event {
                    Event::Connected => problem.set(None),
                    Event::ServerError(ServerError::AuthorizationViolation) => {
                        problem.set(Some("authorization violation".to_owned()));
                    }
                    _ => {}
                }
            }
        })
        // Asked before each attempt; it only reads each server's last error, and leaves the
        // choice of server to async-nats.
        .reconnect_to_server_callback(move |pool, _| {
            let errors: Vec<String> = pool
                .iter()
                .filter_map(|server| Some(format!("{server}: {}", server.last_error.as_ref()?)))
                .collect();
            if !errors.is_empty() {
                on_attempt.set(Some(errors.join("; ")));
            }
            std::future::ready(None)
        });
    options = match auth {
        NatsAuth::None => options,
        NatsAuth::Token(token) => options.token(token.clone()),
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.clone())
        }
        NatsAuth::NKey(seed) => options.nkey(seed.clone()),
        NatsAuth::Credentials(path) => options
            .credentials_file(path)
            .await
            .map_err(|error| format!("reading the NATS credentials {}: {error}", path.display()))?,
    };
    if tls.required {
        options = options.require_tls(true);
    }
    if let Some(ca) = &tls.ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &tls.client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let client = options
        .connect(servers)
        .await
        .map_err(|error| format!("connecting to {}: {error}", servers.join(",")))?;
    Ok((client, problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_printed() {
        let auth = [
            NatsAuth::Token("s3cret".into()),
            NatsAuth::UserPassword { user: "scores".into(), password: "s3cret".into() },
            NatsAuth::NKey("SUs3cret".into()),
        ];
        for auth in auth {
            assert!(!format!("{auth:?}").contains("s3cret"), "{auth:?}");
        }
    }
}
