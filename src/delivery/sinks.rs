//! The SQL surface of delivery: `add_sink`, `remove_sink`, `test_sink` and `sinks()`.
//!
//! Configuration is the extension owner's (who may grant it on): the functions are not
//! PUBLIC, and they write the owner-only table as the owner, with values decided here.
//! `sinks()` is pg_monitor's and shows no secret.

use cdc_health_rules::delivery::{requests, SinkConfig, Transition, Verdict};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use super::error::Error;
use super::send;
use crate::outbox;
use crate::pg::errors::{OrRaise, SqlError};
use crate::pg::role::{as_extension_owner, Switched};
use crate::pg::spi::read_one;

fn stored(name: &str) -> outbox::StoredSink {
    as_extension_owner(outbox::load_sinks)
        .or_raise(|e| Error::Internal("reading sinks", e))
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| Error::NoSuchSink(name.into()).raise())
}

/// Refuses (42501) unless the calling role is, or has the rights of, the role that added the
/// sink or the extension's owner: a role granted the sink functions manages its own sinks.
fn check_manages(name: &str, action: &'static str) {
    let caller = crate::pg::backend::current_user();
    let allowed = as_extension_owner(|| {
        read_one::<bool>(
            "SELECT pg_catalog.pg_has_role($2, e.extowner, 'USAGE')
                    OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                               WHERE r.oid OPERATOR(pg_catalog.=) s.added_by::pg_catalog.oid
                                 AND pg_catalog.pg_has_role($2, r.oid, 'USAGE'))
             FROM cdc_health.sinks s, pg_catalog.pg_extension e
             WHERE s.name OPERATOR(pg_catalog.=) $1
               AND e.extname OPERATOR(pg_catalog.=) 'cdc_health'",
            &[name.into(), caller.into()],
        )
    })
    .or_raise(|e| Error::Internal("reading sinks", e));
    match allowed {
        None => Error::NoSuchSink(name.into()).raise(),
        Some(false) => Error::NotAllowed {
            name: name.into(),
            action,
        }
        .raise(),
        Some(true) => {}
    }
}

/// A test transition: an alert that is not one, so a receiver can be checked end to end.
fn test_transition(name: &str) -> Transition {
    let now = crate::alerts::now_text().unwrap_or_default();
    Transition {
        delivery_id: 0,
        alert_id: 0,
        event: "test".into(),
        subject: format!("sink:{name}"),
        finding: "test".into(),
        severity: "warning".into(),
        time: now.clone(),
        raised_at: now,
        resolved_at: None,
        summary: format!("cdc_health.test_sink('{name}'): a test alert; nothing is wrong"),
        remediation: None,
        detail: json!({ "test": true }),
        cluster: outbox::cluster(),
    }
}

#[pg_schema]
mod cdc_health {
    use super::*;

    /// Adds a sink alerts are delivered to: kind alertmanager, webhook, slack or pagerduty.
    #[pg_extern(volatile)]
    fn add_sink(name: &str, kind: &str, url: &str, options: default!(JsonB, "'{}'")) {
        let _path = Switched::safe_search_path();
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            Error::BadName.raise();
        }
        if let Err(e) = SinkConfig::parse(kind, url, &options.0) {
            Error::BadSink {
                name: name.into(),
                reason: e.to_string(),
            }
            .raise();
        }
        let taken = as_extension_owner(|| {
            read_one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM cdc_health.sinks WHERE name OPERATOR(pg_catalog.=) $1)",
                &[name.into()],
            )
        })
        .or_raise(|e| Error::Internal("reading sinks", e));
        if taken == Some(true) {
            Error::Exists(name.into()).raise();
        }
        // Recorded before switching: the sink belongs to whoever called.
        let caller = crate::pg::backend::current_user();
        as_extension_owner(|| {
            Spi::run_with_args(
                "INSERT INTO cdc_health.sinks (name, kind, url, options, added_by)
                 VALUES ($1, $2, $3, $4, $5::pg_catalog.oid::pg_catalog.regrole)",
                &[
                    name.into(),
                    kind.into(),
                    url.into(),
                    options.into(),
                    caller.into(),
                ],
            )
        })
        .or_raise(|e| Error::Internal("adding a sink", e));
    }

    /// Removes a sink, what waits for it, and resolves its delivery_failed alert.
    #[pg_extern(volatile)]
    fn remove_sink(name: &str) -> bool {
        let _path = Switched::safe_search_path();
        check_manages(name, "remove");
        let removed = as_extension_owner(|| {
            // The other sinks hear the resolve of this one's delivery_failed.
            crate::alerts::resolve_subject(&format!("sink:{name}"))?;
            // A writing statement, so not through a read-only `select`: that worked only
            // when the transaction already had an xid (an open alert had just been resolved).
            Spi::connect_mut(|client| {
                let deleted = client.update(
                    "DELETE FROM cdc_health.sinks WHERE name OPERATOR(pg_catalog.=) $1 RETURNING name",
                    Some(1),
                    &[name.into()],
                )?;
                Ok::<_, pgrx::spi::Error>(!deleted.is_empty())
            })
        })
        .or_raise(|e| Error::Internal("removing a sink", e));
        if !removed {
            Error::NoSuchSink(name.into()).raise();
        }
        true
    }

    /// Sends a test alert to the sink now and returns the HTTP status it answered.
    #[pg_extern(volatile)]
    fn test_sink(name: &str) -> i32 {
        let _path = Switched::safe_search_path();
        check_manages(name, "test");
        let sink = stored(name);
        let batch = [test_transition(name)];
        let reqs = requests(&sink.config, &batch);
        let config = sink.config.clone();
        // Off this backend's thread, waiting in steps that answer cancellation.
        let rx = send::spawn(move || send::send_all(&config, &reqs));
        let sent = send::wait_interruptible(&rx).unwrap_or_else(|| {
            Error::Internal("test_sink", "the sender thread failed".into()).raise()
        });
        match (sent.status, sent.verdict) {
            (Some(status), _) => i32::from(status),
            (None, Verdict::Retry { reason, .. } | Verdict::Permanent { reason }) => {
                Error::Unreachable {
                    name: name.into(),
                    reason,
                }
                .raise()
            }
            (None, Verdict::Delivered) => 0,
        }
    }

    /// Every sink with its filters and delivery counters; URLs and options without secrets.
    #[allow(clippy::type_complexity)]
    #[pg_extern(volatile)]
    fn sinks() -> TableIterator<
        'static,
        (
            name!(name, String),
            name!(kind, String),
            name!(url, String),
            name!(options, JsonB),
            name!(pending, i64),
            name!(delivered, i64),
            name!(failed, i64),
            name!(dropped, i64),
            name!(failing, bool),
            name!(last_error, Option<String>),
            name!(last_status, Option<i32>),
            name!(last_attempt_at, Option<TimestampWithTimeZone>),
            name!(last_delivered_at, Option<TimestampWithTimeZone>),
            name!(next_attempt_at, Option<TimestampWithTimeZone>),
        ),
    > {
        let _path = Switched::safe_search_path();
        let configs =
            as_extension_owner(outbox::load_sinks).or_raise(|e| Error::Internal("sinks()", e));
        type Row = (
            String,
            i64,
            i64,
            i64,
            i64,
            bool,
            Option<String>,
            Option<i32>,
            Option<TimestampWithTimeZone>,
            Option<TimestampWithTimeZone>,
            Option<TimestampWithTimeZone>,
        );
        let counters: Vec<Row> = as_extension_owner(|| {
            Spi::connect(|client| {
                client
                    .select(
                        "SELECT s.name,
                            (SELECT pg_catalog.count(*) FROM cdc_health.deliveries d
                             WHERE d.sink OPERATOR(pg_catalog.=) s.name
                               AND d.delivered_at IS NULL AND d.failed_at IS NULL),
                            s.delivered, s.failed, s.dropped, s.failing_since IS NOT NULL,
                            s.last_error, s.last_status, s.last_attempt_at, s.last_delivered_at,
                            s.next_attempt_at
                         FROM cdc_health.sinks s ORDER BY s.name",
                        None,
                        &[],
                    )?
                    .map(|r| {
                        Ok((
                            r.get(1)?.unwrap_or_default(),
                            r.get(2)?.unwrap_or(0),
                            r.get(3)?.unwrap_or(0),
                            r.get(4)?.unwrap_or(0),
                            r.get(5)?.unwrap_or(0),
                            r.get(6)?.unwrap_or(false),
                            r.get(7)?,
                            r.get(8)?,
                            r.get(9)?,
                            r.get(10)?,
                            r.get(11)?,
                        ))
                    })
                    .collect::<Result<Vec<_>, pgrx::spi::Error>>()
            })
        })
        .or_raise(|e| Error::Internal("sinks()", e));
        let rows: Vec<_> = counters
            .into_iter()
            .map(|c| {
                let config = configs.iter().find(|s| s.name == c.0);
                (
                    c.0.clone(),
                    config.map_or_else(String::new, |s| s.config.kind.as_str().to_string()),
                    config.map_or_else(|| "(invalid)".to_string(), |s| s.config.masked_url()),
                    JsonB(config.map_or(Value::Null, |s| s.config.public_options())),
                    c.1,
                    c.2,
                    c.3,
                    c.4,
                    c.5,
                    c.6,
                    c.7,
                    c.8,
                    c.9,
                    c.10,
                )
            })
            .collect();
        TableIterator::new(rows)
    }
}
