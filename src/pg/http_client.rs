//! The one HTTP client configuration every outgoing request uses (ClickHouse, alert sinks).

use std::time::Duration;

/// An agent with both timeouts, that returns every status as an answer, and that sends its
/// headers (credentials among them) nowhere the caller did not name: no redirects followed,
/// no proxy taken from the server's environment.
pub fn agent(connect: Duration, total: Duration, user_agent: &str) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(connect))
        .timeout_global(Some(total))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .user_agent(user_agent)
        .build()
        .into()
}
