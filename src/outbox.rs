//! The outbox's SQL: queueing transitions with the alert, reading a sink's queue in order and
//! recording what the receiver said.

use cdc_health_rules::delivery::{SinkConfig, Transition};
use cdc_health_rules::{FindingCode, Severity};
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use pgrx::JsonB;
use serde_json::Value;

use crate::pg::backend::setting_text;
use crate::pg::spi::read_one;
use crate::settings;

/// A sink as stored, its configuration validated again on the way out.
pub struct StoredSink {
    pub name: String,
    pub config: SinkConfig,
    /// Failed attempts of the sink's head since it last delivered.
    pub attempts: i32,
    /// When the next attempt is due (Unix time); `None`: now.
    pub next_attempt_at: Option<f64>,
    pub resent_at: Option<f64>,
    /// May the role that added it read `cdc_health.alerts` (pg_monitor, the owner, or a
    /// grant)? Else it receives what the public NOTIFY channel carries (`Transition::public`).
    pub full_detail: bool,
}

/// Timestamps as payloads carry them: ISO 8601 in UTC.
pub const ISO_UTC: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'";

/// Whether this database's extension has the outbox (0.1.0 had none).
fn present() -> SpiResult<bool> {
    Ok(read_one::<bool>(
        "SELECT pg_catalog.to_regclass('cdc_health.deliveries') IS NOT NULL",
        &[],
    )?
    .unwrap_or(false))
}

pub fn load_sinks() -> SpiResult<Vec<StoredSink>> {
    if !present()? {
        return Ok(Vec::new());
    }
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT s.name, s.kind, s.url, s.options, s.attempts,
                    extract(epoch FROM s.next_attempt_at)::pg_catalog.float8,
                    extract(epoch FROM s.resent_at)::pg_catalog.float8,
                    EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                            WHERE r.oid OPERATOR(pg_catalog.=) s.added_by::pg_catalog.oid
                              AND pg_catalog.has_table_privilege(
                                      r.oid, 'cdc_health.alerts', 'SELECT'))
             FROM cdc_health.sinks s ORDER BY s.name",
            None,
            &[],
        )?;
        let mut sinks = Vec::new();
        for row in rows {
            let name: String = row.get(1)?.unwrap_or_default();
            let kind: String = row.get(2)?.unwrap_or_default();
            let url: String = row.get(3)?.unwrap_or_default();
            let options = row.get::<JsonB>(4)?.map_or(Value::Null, |j| j.0);
            // add_sink validated it; a row edited by hand into nonsense is skipped, loudly.
            let config = match SinkConfig::parse(&kind, &url, &options) {
                Ok(c) => c,
                Err(e) => {
                    warning!("cdc_health: sink \"{name}\" is skipped: {e}");
                    continue;
                }
            };
            sinks.push(StoredSink {
                name,
                config,
                attempts: row.get(5)?.unwrap_or(0),
                next_attempt_at: row.get(6)?,
                resent_at: row.get(7)?,
                full_detail: row.get(8)?.unwrap_or(false),
            });
        }
        Ok(sinks)
    })
}

/// The `cluster` label: `cdc_health.cluster_name`, else `cluster_name`, else the system
/// identifier (unique per cluster, the same on its physical standbys).
pub fn cluster() -> String {
    let named = settings::cluster_name_setting();
    if !named.is_empty() {
        return named;
    }
    match setting_text(c"cluster_name") {
        Some(n) if !n.is_empty() => n,
        // SAFETY: a plain read of the control file's copy in shared memory.
        _ => unsafe { pg_sys::GetSystemIdentifier() }.to_string(),
    }
}

/// Queues `t` for every sink whose filters take it, in the caller's transaction. A sink's
/// own `delivery_failed` is not queued for it: it would only wait behind what fails.
pub fn enqueue(t: &Transition) -> SpiResult<usize> {
    let Some(severity) = Severity::parse(&t.severity) else {
        return Ok(0);
    };
    let (full, public): (Vec<StoredSink>, Vec<StoredSink>) = load_sinks()?
        .into_iter()
        .filter(|s| s.config.matches(&t.finding, severity))
        .filter(|s| t.subject.strip_prefix("sink:") != Some(s.name.as_str()))
        .partition(|s| s.full_detail);
    let names = |sinks: Vec<StoredSink>| sinks.into_iter().map(|s| s.name).collect::<Vec<_>>();
    let (full, public) = (names(full), names(public));
    for (sinks, transition) in [(&full, None), (&public, Some(t.public()))] {
        if sinks.is_empty() {
            continue;
        }
        let payload = serde_json::to_string(transition.as_ref().unwrap_or(t))
            .expect("a transition always serializes");
        Spi::run_with_args(
            "INSERT INTO cdc_health.deliveries (sink, alert_id, event, payload)
             SELECT s, $2, $3, $4::pg_catalog.jsonb FROM pg_catalog.unnest($1::pg_catalog.text[]) s",
            &[
                sinks.clone().into(),
                t.alert_id.into(),
                t.event.as_str().into(),
                payload.into(),
            ],
        )?;
    }
    Ok(full.len() + public.len())
}

/// The oldest `limit` transitions waiting for `sink`, in order, with their delivery ids.
/// A row whose payload this version cannot read is failed here rather than blocking the rest.
pub fn pending(sink: &str, limit: i64) -> SpiResult<Vec<Transition>> {
    let rows: Vec<(i64, Value)> = Spi::connect(|client| {
        client
            .select(
                "SELECT id, payload FROM cdc_health.deliveries
                 WHERE sink OPERATOR(pg_catalog.=) $1 AND delivered_at IS NULL
                   AND failed_at IS NULL
                 ORDER BY id LIMIT $2",
                None,
                &[sink.into(), limit.into()],
            )?
            .map(|row| {
                Ok((
                    row.get::<i64>(1)?.unwrap_or_default(),
                    row.get::<JsonB>(2)?.map_or(Value::Null, |j| j.0),
                ))
            })
            .collect::<SpiResult<Vec<_>>>()
    })?;
    let mut out = Vec::new();
    for (id, payload) in rows {
        match serde_json::from_value::<Transition>(payload) {
            Ok(mut t) => {
                t.delivery_id = id;
                out.push(t);
            }
            Err(e) => {
                Spi::run_with_args(
                    "UPDATE cdc_health.deliveries SET failed_at = pg_catalog.now(), error = $2
                     WHERE id OPERATOR(pg_catalog.=) $1",
                    &[id.into(), format!("unreadable payload: {e}").into()],
                )?;
            }
        }
    }
    Ok(out)
}

/// The open alerts a sink takes, as transitions (Alertmanager's periodic resend).
pub fn open_alerts(sink: &StoredSink) -> SpiResult<Vec<Transition>> {
    let cluster = cluster();
    let rows = Spi::connect(|client| {
        client
            .select(
                &format!(
                    "SELECT id, subject, finding, severity, summary, remediation, detail,
                        pg_catalog.to_char(pg_catalog.timezone('UTC', raised_at), {ISO_UTC}),
                        pg_catalog.to_char(pg_catalog.timezone('UTC', pg_catalog.now()), {ISO_UTC})
                     FROM cdc_health.alerts WHERE resolved_at IS NULL ORDER BY id"
                ),
                None,
                &[],
            )?
            .map(|row| {
                Ok(Transition {
                    delivery_id: 0,
                    alert_id: row.get(1)?.unwrap_or_default(),
                    event: "raised".into(),
                    subject: row.get(2)?.unwrap_or_default(),
                    finding: row.get(3)?.unwrap_or_default(),
                    severity: row.get(4)?.unwrap_or_default(),
                    summary: row.get(5)?.unwrap_or_default(),
                    remediation: row.get(6)?,
                    detail: row.get::<JsonB>(7)?.map_or(Value::Null, |j| j.0),
                    raised_at: row.get(8)?.unwrap_or_default(),
                    time: row.get(9)?.unwrap_or_default(),
                    resolved_at: None,
                    cluster: cluster.clone(),
                })
            })
            .collect::<SpiResult<Vec<_>>>()
    })?;
    Ok(rows
        .into_iter()
        .filter(|t| {
            Severity::parse(&t.severity).is_some_and(|s| sink.config.matches(&t.finding, s))
                && t.subject.strip_prefix("sink:") != Some(sink.name.as_str())
        })
        .map(|t| if sink.full_detail { t } else { t.public() })
        .collect())
}

/// How one group of transitions fared.
pub enum Outcome {
    Delivered,
    Retry { reason: String, wait_secs: f64 },
    Failed { reason: String },
}

/// Updates the rows of `ids` still pending for `sink`; returns how many there were. Rows
/// given up or dropped meanwhile, or of a sink removed (and maybe added again) since they
/// were read, are left alone.
fn update_pending(
    done_at: Option<&str>,
    sink: &str,
    ids: &[i64],
    error: Option<&str>,
) -> SpiResult<i64> {
    let done_at = done_at.map_or_else(String::new, |c| format!("{c} = pg_catalog.now(), "));
    Spi::connect_mut(|client| {
        let rows = client.update(
            &format!(
                "WITH done AS (
                 UPDATE cdc_health.deliveries SET {done_at}
                     attempts = attempts OPERATOR(pg_catalog.+) 1, error = $3
                 WHERE id OPERATOR(pg_catalog.=) ANY ($1) AND sink OPERATOR(pg_catalog.=) $2
                   AND delivered_at IS NULL AND failed_at IS NULL
                 RETURNING 1)
             SELECT pg_catalog.count(*) FROM done"
            ),
            Some(1),
            &[ids.to_vec().into(), sink.into(), error.into()],
        )?;
        Ok(rows.first().get_one::<i64>()?.unwrap_or(0))
    })
}

/// Records what happened to `ids` (sent together, in order) and updates the sink's counters.
pub fn record(sink: &str, ids: &[i64], outcome: &Outcome, status: Option<u16>) -> SpiResult<()> {
    let status = status.map(i32::from);
    match outcome {
        Outcome::Delivered => {
            let n = update_pending(Some("delivered_at"), sink, ids, None)?;
            if n == 0 && !ids.is_empty() {
                return Ok(());
            }
            Spi::run_with_args(
                "UPDATE cdc_health.sinks SET
                     delivered = delivered OPERATOR(pg_catalog.+) $2, attempts = 0,
                     next_attempt_at = NULL, last_attempt_at = pg_catalog.now(),
                     last_status = $3, last_delivered_at = pg_catalog.now(),
                     failing_since = NULL
                 WHERE name OPERATOR(pg_catalog.=) $1",
                &[sink.into(), n.into(), status.into()],
            )
        }
        Outcome::Retry { reason, wait_secs } => {
            if update_pending(None, sink, ids, Some(reason))? == 0 {
                return Ok(());
            }
            Spi::run_with_args(
                "UPDATE cdc_health.sinks SET attempts = attempts OPERATOR(pg_catalog.+) 1,
                     next_attempt_at = pg_catalog.now() OPERATOR(pg_catalog.+)
                                       pg_catalog.make_interval(secs => $2),
                     last_attempt_at = pg_catalog.now(), last_status = $3, last_error = $4
                 WHERE name OPERATOR(pg_catalog.=) $1",
                &[
                    sink.into(),
                    (*wait_secs).into(),
                    status.into(),
                    reason.as_str().into(),
                ],
            )
        }
        Outcome::Failed { reason } => {
            let n = update_pending(Some("failed_at"), sink, ids, Some(reason))?;
            if n == 0 {
                return Ok(());
            }
            mark_failing(sink, n, status, reason)
        }
    }
}

/// The sink lost a transition in this round, whatever came after it: it is failing until a
/// later round delivers.
pub fn set_failing(sink: &str) -> SpiResult<()> {
    Spi::run_with_args(
        "UPDATE cdc_health.sinks SET failing_since = COALESCE(failing_since, pg_catalog.now())
         WHERE name OPERATOR(pg_catalog.=) $1",
        &[sink.into()],
    )
}

/// `n` transitions of `sink` are lost for good: counted, and the sink is failing.
fn mark_failing(sink: &str, n: i64, status: Option<i32>, reason: &str) -> SpiResult<()> {
    Spi::run_with_args(
        "UPDATE cdc_health.sinks SET failed = failed OPERATOR(pg_catalog.+) $2, attempts = 0,
             next_attempt_at = NULL, last_attempt_at = pg_catalog.now(),
             last_status = COALESCE($3, last_status), last_error = $4,
             failing_since = COALESCE(failing_since, pg_catalog.now())
         WHERE name OPERATOR(pg_catalog.=) $1",
        &[sink.into(), n.into(), status.into(), reason.into()],
    )
}

/// Which of housekeeping's writes have rows to write.
pub struct Due {
    pub expired: bool,
    pub overflow: bool,
    pub prunable: bool,
}

impl Due {
    pub fn any(&self) -> bool {
        self.expired || self.overflow || self.prunable
    }
}

pub fn housekeeping_due() -> SpiResult<Due> {
    if !present()? {
        return Ok(Due {
            expired: false,
            overflow: false,
            prunable: false,
        });
    }
    Spi::connect(|client| {
        let row = client
            .select(
                "SELECT
                   EXISTS (SELECT 1 FROM cdc_health.deliveries
                           WHERE delivered_at IS NULL AND failed_at IS NULL
                             AND created_at OPERATOR(pg_catalog.<) (pg_catalog.now()
                                 OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))),
                   EXISTS (SELECT 1 FROM cdc_health.deliveries
                           WHERE delivered_at IS NULL AND failed_at IS NULL
                           GROUP BY sink HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) $2),
                   EXISTS (SELECT 1 FROM cdc_health.deliveries
                           WHERE COALESCE(delivered_at, failed_at) OPERATOR(pg_catalog.<)
                                 (pg_catalog.now() OPERATOR(pg_catalog.-)
                                  pg_catalog.make_interval(secs => $3)))",
                Some(1),
                &[
                    settings::delivery_max_age_secs().into(),
                    settings::delivery_max_pending().into(),
                    settings::delivery_retention_secs().into(),
                ],
            )?
            .first();
        Ok(Due {
            expired: row.get(1)?.unwrap_or(false),
            overflow: row.get(2)?.unwrap_or(false),
            prunable: row.get(3)?.unwrap_or(false),
        })
    })
}

/// Gives up transitions older than `cdc_health.delivery_max_age`; returns how many per sink.
pub fn give_up_expired() -> SpiResult<Vec<(String, i64)>> {
    let max_age = settings::delivery_max_age_secs();
    let reason = format!(
        "given up: not delivered within cdc_health.delivery_max_age ({})",
        cdc_health_rules::units::pretty_duration(max_age)
    );
    let expired: Vec<(String, i64)> = Spi::connect_mut(|client| {
        client
            .update(
                "WITH gone AS (
                     UPDATE cdc_health.deliveries SET failed_at = pg_catalog.now(),
                         error = pg_catalog.concat_ws('; ', error, $2)
                     WHERE delivered_at IS NULL AND failed_at IS NULL
                       AND created_at OPERATOR(pg_catalog.<) (pg_catalog.now()
                           OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))
                     RETURNING sink)
                 SELECT sink, pg_catalog.count(*) FROM gone GROUP BY sink",
                None,
                &[max_age.into(), reason.as_str().into()],
            )?
            .map(|row| Ok((row.get(1)?.unwrap_or_default(), row.get(2)?.unwrap_or(0))))
            .collect::<SpiResult<Vec<_>>>()
    })?;
    for (sink, n) in &expired {
        mark_failing(sink, *n, None, &reason)?;
    }
    Ok(expired)
}

/// Drops the oldest waiting transitions beyond `cdc_health.delivery_max_pending` per sink.
pub fn drop_overflow() -> SpiResult<Vec<(String, i64)>> {
    let max = settings::delivery_max_pending();
    Spi::connect_mut(|client| {
        client
            .update(
                "WITH ranked AS (
                     SELECT id, sink, pg_catalog.row_number() OVER (PARTITION BY sink ORDER BY id DESC) AS n
                     FROM cdc_health.deliveries
                     WHERE delivered_at IS NULL AND failed_at IS NULL),
                 gone AS (
                     UPDATE cdc_health.deliveries d SET failed_at = pg_catalog.now(),
                         error = 'dropped: more than cdc_health.delivery_max_pending waited'
                     FROM ranked r
                     WHERE d.id OPERATOR(pg_catalog.=) r.id AND r.n OPERATOR(pg_catalog.>) $1
                     RETURNING d.sink),
                 counted AS (SELECT sink, pg_catalog.count(*) AS n FROM gone GROUP BY sink),
                 bumped AS (
                     UPDATE cdc_health.sinks s SET dropped = dropped OPERATOR(pg_catalog.+) c.n
                     FROM counted c WHERE s.name OPERATOR(pg_catalog.=) c.sink RETURNING s.name)
                 SELECT sink, n FROM counted",
                None,
                &[max.into()],
            )?
            .map(|row| Ok((row.get(1)?.unwrap_or_default(), row.get(2)?.unwrap_or(0))))
            .collect::<SpiResult<Vec<_>>>()
    })
}

/// Deletes delivered and given-up rows past `cdc_health.delivery_retention`.
pub fn prune() -> SpiResult<()> {
    Spi::run_with_args(
        "DELETE FROM cdc_health.deliveries
         WHERE COALESCE(delivered_at, failed_at) OPERATOR(pg_catalog.<)
               (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))",
        &[settings::delivery_retention_secs().into()],
    )
}

/// Records Alertmanager's periodic resend (whatever its outcome, it is not repeated at once);
/// one that was accepted shows the sink delivers again.
pub fn resent(sink: &str, error: Option<&str>) -> SpiResult<()> {
    Spi::run_with_args(
        "UPDATE cdc_health.sinks SET resent_at = pg_catalog.now(),
             last_error = COALESCE($2, last_error),
             failing_since = CASE WHEN $2 IS NULL THEN NULL ELSE failing_since END,
             last_delivered_at = CASE WHEN $2 IS NULL THEN pg_catalog.now()
                                      ELSE last_delivered_at END
         WHERE name OPERATOR(pg_catalog.=) $1",
        &[sink.into(), error.into()],
    )
}

/// The finding a failing sink shows (`None` while it delivers).
pub fn sink_finding(sink: &str) -> SpiResult<Option<cdc_health_rules::Finding>> {
    let row = Spi::connect(|client| {
        let rows = client.select(
            "SELECT failing_since IS NOT NULL, failed, last_error FROM cdc_health.sinks
             WHERE name OPERATOR(pg_catalog.=) $1",
            Some(1),
            &[sink.into()],
        )?;
        if rows.is_empty() {
            return Ok(None);
        }
        let row = rows.first();
        Ok::<_, pgrx::spi::Error>(Some((
            row.get::<bool>(1)?.unwrap_or(false),
            row.get::<i64>(2)?.unwrap_or(0),
            row.get::<String>(3)?.unwrap_or_default(),
        )))
    })?;
    Ok(match row {
        Some((true, failed, error)) => Some(cdc_health_rules::Finding::new(
            FindingCode::DeliveryFailed,
            Severity::Critical,
            format!("alerts do not reach sink \"{sink}\" ({failed} transition(s) failed): {error}"),
        )),
        _ => None,
    })
}
