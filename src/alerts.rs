//! Applies the rules' alert transitions: `cdc_health.alerts` rows, `NOTIFY` and the log.
//!
//! The table is the alert state (open alerts, when they started clearing, recent resolutions),
//! so the worker, a restarted worker and `check_now()` all continue from the same place.

use cdc_health_rules::alerts::{
    payload, transitions, Action, AlertPolicy, Event, Observed, OpenAlert, PayloadFields,
    ResolvedAlert, Target,
};
use cdc_health_rules::delivery::Transition;
use cdc_health_rules::disclosure::{public_detail, public_summary, text_is_private};
use cdc_health_rules::{Finding, FindingCode, Severity};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiHeapTupleData, SpiResult};
use pgrx::JsonB;
use serde_json::Value;

use crate::open_alerts::{self, Known};
use crate::settings;

/// Columns 3 and 4 of an alert row; `None` for values this version does not know.
fn finding_and_severity(row: &SpiHeapTupleData<'_>) -> SpiResult<Option<(FindingCode, Severity)>> {
    let finding = row
        .get::<String>(3)?
        .as_deref()
        .and_then(FindingCode::parse);
    let severity = row.get::<String>(4)?.as_deref().and_then(Severity::parse);
    Ok(finding.zip(severity))
}

/// Which alerts one caller owns: the monitoring pass all `slot:` and `server:` subjects, a
/// mirror check or a sink its own.
#[derive(Clone, Copy)]
enum Scope<'a> {
    Pass,
    Subject(&'a str),
}

impl Scope<'_> {
    /// A condition on `subject`, using parameter `$n` where the scope has one. Each scope has
    /// its own text (not one CASE on a flag) so that its kept plan is as good as one made for
    /// the values.
    fn condition(&self, n: usize) -> String {
        match self {
            Self::Pass => "(pg_catalog.starts_with(subject, 'slot:') \
                           OR pg_catalog.starts_with(subject, 'server:'))"
                .to_string(),
            Self::Subject(_) => format!("subject OPERATOR(pg_catalog.=) ${n}"),
        }
    }

    fn arg(&self) -> Option<DatumWithOid<'_>> {
        match *self {
            Self::Pass => None,
            Self::Subject(s) => Some(s.into()),
        }
    }
}

fn load_open(client: &SpiClient<'_>, scope: Scope<'_>) -> SpiResult<Vec<OpenAlert>> {
    let rows = crate::pg::plans::select(
        client,
        &format!(
            "SELECT id, subject, finding, severity,
                    pg_catalog.date_part('epoch', raised_at),
                    pg_catalog.date_part('epoch', last_notified_at),
                    pg_catalog.date_part('epoch', clear_since)
             FROM cdc_health.alerts WHERE resolved_at IS NULL AND {}",
            scope.condition(1)
        ),
        &scope.arg().into_iter().collect::<Vec<_>>(),
    )?;
    let mut open = Vec::new();
    for row in rows {
        let Some((finding, severity)) = finding_and_severity(&row)? else {
            continue;
        };
        open.push(OpenAlert {
            id: row.get(1)?.unwrap_or_default(),
            subject: row.get(2)?.unwrap_or_default(),
            finding,
            severity,
            raised_at: row.get(5)?.unwrap_or_default(),
            last_notified_at: row.get(6)?.unwrap_or_default(),
            clear_since: row.get(7)?,
        });
    }
    Ok(open)
}

fn load_recently_resolved(
    client: &SpiClient<'_>,
    scope: Scope<'_>,
    holddown: f64,
) -> SpiResult<Vec<ResolvedAlert>> {
    let rows = crate::pg::plans::select(
        client,
        &format!(
            "SELECT id, subject, finding, pg_catalog.date_part('epoch', resolved_at)
             FROM cdc_health.alerts
             WHERE resolved_at OPERATOR(pg_catalog.>=)
                   (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))
               AND {}",
            scope.condition(2)
        ),
        &std::iter::once(holddown.into())
            .chain(scope.arg())
            .collect::<Vec<_>>(),
    )?;
    let mut resolved = Vec::new();
    for row in rows {
        let Some(finding) = row
            .get::<String>(3)?
            .as_deref()
            .and_then(FindingCode::parse)
        else {
            continue;
        };
        resolved.push(ResolvedAlert {
            id: row.get(1)?.unwrap_or_default(),
            subject: row.get(2)?.unwrap_or_default(),
            finding,
            resolved_at: row.get(4)?.unwrap_or_default(),
        });
    }
    Ok(resolved)
}

/// The transaction's time as ISO 8601 UTC, for payloads.
pub(crate) fn now_text() -> SpiResult<String> {
    Ok(crate::pg::spi::read_one::<String>(
        "SELECT pg_catalog.to_char(pg_catalog.timezone('UTC', pg_catalog.now()),
                                   'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        &[],
    )?
    .unwrap_or_default())
}

/// The remediation and detail of a finding on a subject, built only for the few actions that
/// write or send them: a pass at thousands of alerting slots would otherwise build (and drop)
/// every slot's detail each time, although nearly every open alert is left as it is.
pub type Content<'a> = &'a dyn Fn(&str, &Finding) -> (Option<String>, Value);

/// Computes and applies a pass's transitions (all `slot:` and `server:` alerts); returns the
/// events sent. `observed` carries no remediation or detail: `content` gives them where an
/// action needs them.
pub fn apply(observed: &[Observed], now: f64, content: Content<'_>) -> SpiResult<Vec<Applied>> {
    apply_scoped(
        Scope::Pass,
        observed,
        now,
        settings::alert_policy(),
        Some(content),
    )
}

/// The same for one subject only (a mirror check).
/// A mirror check clears after a full mirror interval without its finding.
pub fn apply_for(subject: &str, observed: &[Observed], now: f64) -> SpiResult<Vec<Applied>> {
    let mut policy = settings::alert_policy();
    policy.interval_secs = settings::mirror_interval_secs();
    apply_subject(subject, observed, now, policy)
}

/// The same for one subject under `policy` (a sink's `delivery_failed`).
pub fn apply_subject(
    subject: &str,
    observed: &[Observed],
    now: f64,
    policy: AlertPolicy,
) -> SpiResult<Vec<Applied>> {
    apply_scoped(Scope::Subject(subject), observed, now, policy, None)
}

fn apply_scoped(
    scope: Scope<'_>,
    observed: &[Observed],
    now: f64,
    policy: AlertPolicy,
    content: Option<Content<'_>>,
) -> SpiResult<Vec<Applied>> {
    let load = || {
        Spi::connect(|client| {
            Ok(Known {
                open: load_open(client, scope)?,
                resolved: load_recently_resolved(client, scope, policy.holddown_secs)?,
            })
        })
    };
    // The slot pass runs every interval and its alerts rarely change: they are kept.
    let Known { mut open, resolved } = match scope {
        Scope::Pass => open_alerts::slot_alerts(now, policy.holddown_secs, load)?,
        Scope::Subject(_) => load()?,
    };
    crate::shmem::reminder_clocks(&mut open);
    let mut actions = transitions(&open, &resolved, observed, now, &policy);
    if let Some(content) = content {
        complete(&mut actions, &open, &resolved, content);
    }
    if actions.is_empty() {
        return Ok(Vec::new());
    }
    // The trigger would say so too; the pass does not depend on it for its own writes.
    open_alerts::forget();
    let time = now_text()?;
    let mut applied = Vec::new();
    // An entry not refreshed for two reminder intervals belongs to an alert no longer open.
    let stale_before = now - 2.0 * policy.reminder_secs;
    for action in actions {
        if let Some((event, row)) = apply_one(action, now, stale_before)? {
            applied.push(notify(event, row, &time)?);
        }
    }
    Ok(applied)
}

/// Fills in the content of the actions that write or send it. Those that name an alert by id
/// take its subject from the open or recently resolved row they came from.
fn complete(
    actions: &mut [Action],
    open: &[OpenAlert],
    resolved: &[ResolvedAlert],
    content: Content<'_>,
) {
    let mut subjects: Option<std::collections::HashMap<i64, &str>> = None;
    for action in actions {
        let Some(c) = action.content_mut() else {
            continue;
        };
        let subject = match c.target {
            Target::Subject(subject) => Some(subject),
            Target::Alert(id) => subjects
                .get_or_insert_with(|| {
                    let open = open.iter().map(|a| (a.id, a.subject.as_str()));
                    let resolved = resolved.iter().map(|r| (r.id, r.subject.as_str()));
                    open.chain(resolved).collect()
                })
                .get(&id)
                .copied(),
        };
        if let Some(subject) = subject {
            (*c.remediation, *c.detail) = content(subject, c.finding);
        }
    }
}

/// Resolves every open alert of `subject` now (its check or sink was removed), announced and
/// queued like any other resolve.
pub fn resolve_subject(subject: &str) -> SpiResult<Vec<Applied>> {
    let open = Spi::connect(|client| load_open(client, Scope::Subject(subject)))?;
    if open.is_empty() {
        return Ok(Vec::new());
    }
    let time = now_text()?;
    let mut applied = Vec::new();
    for a in open {
        let action = Action::Resolve {
            id: a.id,
            finding: a.finding,
        };
        if let Some((event, row)) = apply_one(action, 0.0, 0.0)? {
            applied.push(notify(event, row, &time)?);
        }
    }
    Ok(applied)
}

/// A transition that was written and sent.
pub struct Applied {
    pub event: &'static str,
    pub alert_id: i64,
    pub subject: String,
    pub finding: &'static str,
    pub severity: &'static str,
    pub summary: String,
}

/// Row values an event is reported with.
struct Reported {
    id: i64,
    subject: String,
    finding: FindingCode,
    severity: Severity,
    summary: String,
    remediation: Option<String>,
    detail: Value,
    raised_at: String,
    resolved_at: Option<String>,
}

/// `raised_at` and `resolved_at` as ISO 8601 UTC text.
macro_rules! times {
    () => {
        "pg_catalog.to_char(pg_catalog.timezone('UTC', raised_at), 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
    pg_catalog.to_char(pg_catalog.timezone('UTC', resolved_at), 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    };
}
const RETURNING: &str = concat!(
    "RETURNING id, subject, finding, severity, summary, remediation, detail, ",
    times!()
);
const TIMES: &str = times!();

/// Runs a statement that returns one alert row (see `RETURNING`).
fn returning(sql: &str, args: Vec<DatumWithOid<'_>>) -> SpiResult<Option<Reported>> {
    Spi::connect_mut(|client| match client.update(sql, Some(1), &args)?.next() {
        Some(row) => reported(&row),
        None => Ok(None),
    })
}

/// The alert row as `RETURNING` lists it.
fn reported(row: &SpiHeapTupleData<'_>) -> SpiResult<Option<Reported>> {
    let Some((finding, severity)) = finding_and_severity(row)? else {
        return Ok(None);
    };
    Ok(Some(Reported {
        id: row.get(1)?.unwrap_or_default(),
        subject: row.get(2)?.unwrap_or_default(),
        finding,
        severity,
        summary: row.get(5)?.unwrap_or_default(),
        remediation: row.get(6)?,
        detail: row.get::<JsonB>(7)?.map_or(Value::Null, |j| j.0),
        raised_at: row.get(8)?.unwrap_or_default(),
        resolved_at: row.get(9)?,
    }))
}

/// A reminder whose clock is in shared memory: the open row with the current content, read
/// and not rewritten (see `cdc_health_rules::reminders`).
fn reminded(args: Vec<DatumWithOid<'_>>) -> SpiResult<Option<Reported>> {
    Spi::connect(|client| {
        let sql = format!(
            "SELECT id, subject, finding, $2, $3, $4, $5::pg_catalog.jsonb, {TIMES}
             FROM cdc_health.alerts
             WHERE id OPERATOR(pg_catalog.=) $1 AND resolved_at IS NULL"
        );
        match client.select(&sql, Some(1), &args)?.next() {
            Some(row) => reported(&row),
            None => Ok(None),
        }
    })
}

/// `lead` followed by the arguments that (re)write an alert's content.
fn content(
    lead: Vec<DatumWithOid<'static>>,
    f: &Finding,
    remediation: Option<String>,
    detail: &Value,
) -> Vec<DatumWithOid<'static>> {
    let mut args = lead;
    args.extend([
        f.severity.as_str().into(),
        f.summary.clone().into(),
        remediation.into(),
        detail.to_string().into(),
    ]);
    args
}

/// Applies one action; returns the event to send, if the action is one. A reminder goes to
/// the shared-memory clock (noted at `now`, forgetting entries older than `stale_before`
/// when full) and is written to the row only when that cannot hold it.
fn apply_one(action: Action, now: f64, stale_before: f64) -> SpiResult<Option<(Event, Reported)>> {
    let refresh = format!(
        "UPDATE cdc_health.alerts SET resolved_at = NULL, clear_since = NULL, severity = $2,
             summary = $3, remediation = $4, detail = $5::pg_catalog.jsonb,
             updated_at = pg_catalog.now(), last_notified_at = pg_catalog.now(),
             notifications = notifications OPERATOR(pg_catalog.+) 1
         WHERE id OPERATOR(pg_catalog.=) $1 {RETURNING}"
    );
    let mut action = action;
    let event = match &action {
        Action::Raise { .. } | Action::Reopen { .. } => Some(Event::Raised),
        Action::Escalate { .. } => Some(Event::Escalated),
        Action::Remind { .. } => Some(Event::Reminder),
        _ => None,
    };
    if let (Some(event), Some(c)) = (event, action.content_mut()) {
        let remediation = c.remediation.take();
        let row = match c.target {
            Target::Subject(subject) => {
                let lead = vec![subject.to_string().into(), c.finding.code.as_str().into()];
                let args = content(lead, c.finding, remediation, c.detail);
                let sql = format!(
                    "INSERT INTO cdc_health.alerts (subject, finding, severity, summary,
                         remediation, detail, raised_at, updated_at, last_notified_at)
                     VALUES ($1, $2, $3, $4, $5, $6::pg_catalog.jsonb, pg_catalog.now(),
                             pg_catalog.now(), pg_catalog.now()) {RETURNING}"
                );
                returning(&sql, args)?
            }
            Target::Alert(id) => {
                let args = content(vec![id.into()], c.finding, remediation, c.detail);
                if event == Event::Reminder
                    && crate::shmem::remember_reminder(id, now, stale_before)
                {
                    reminded(args)?
                } else {
                    returning(&refresh, args)?
                }
            }
        };
        return Ok(row.map(|r| (event, r)));
    }
    let (event, row) = match action {
        Action::Resolve { id, .. } => {
            let sql = format!(
                "UPDATE cdc_health.alerts SET resolved_at = pg_catalog.now(),
                     updated_at = pg_catalog.now()
                 WHERE id OPERATOR(pg_catalog.=) $1 AND resolved_at IS NULL {RETURNING}"
            );
            (Event::Resolved, returning(&sql, vec![id.into()])?)
        }
        Action::Update { id, finding } => {
            Spi::run_with_args(
                "UPDATE cdc_health.alerts SET severity = $2, summary = $3, clear_since = NULL,
                     updated_at = pg_catalog.now() WHERE id OPERATOR(pg_catalog.=) $1",
                &[
                    id.into(),
                    finding.severity.as_str().into(),
                    finding.summary.into(),
                ],
            )?;
            return Ok(None);
        }
        Action::StartClearing { id, since } => {
            Spi::run_with_args(
                "UPDATE cdc_health.alerts SET clear_since = pg_catalog.to_timestamp($2) \
                 WHERE id OPERATOR(pg_catalog.=) $1",
                &[id.into(), since.into()],
            )?;
            return Ok(None);
        }
        // Handled above, with their content.
        Action::Raise { .. }
        | Action::Reopen { .. }
        | Action::Escalate { .. }
        | Action::Remind { .. } => return Ok(None),
    };
    Ok(row.map(|r| (event, r)))
}

/// Sends the event on the notify channel and to the server log; returns what was sent.
/// The channel is public: the payload carries only what every role may know (see
/// `cdc_health_rules::disclosure`); the full row stays in `cdc_health.alerts`.
fn notify(event: Event, r: Reported, time: &str) -> SpiResult<Applied> {
    let private = text_is_private(r.finding, event);
    let summary = if private {
        public_summary(event, r.finding, r.severity, &r.subject, r.id)
    } else {
        r.summary.clone()
    };
    let detail = public_detail(&r.detail);
    let text = payload(&PayloadFields {
        alert_id: r.id,
        event,
        subject: &r.subject,
        finding: r.finding,
        severity: r.severity,
        time,
        summary: &summary,
        remediation: r.remediation.as_deref().filter(|_| !private),
        detail: &detail,
    });
    Spi::run_with_args(
        "SELECT pg_catalog.pg_notify($1, $2)",
        &[settings::notify_channel().into(), text.into()],
    )?;
    // The sinks get the whole row (they are the owner's), queued in this same transaction.
    crate::outbox::enqueue(&Transition {
        delivery_id: 0,
        alert_id: r.id,
        event: event.as_str().to_string(),
        subject: r.subject.clone(),
        finding: r.finding.as_str().to_string(),
        severity: r.severity.as_str().to_string(),
        time: time.to_string(),
        raised_at: r.raised_at.clone(),
        resolved_at: r.resolved_at.clone(),
        summary: r.summary.clone(),
        remediation: r.remediation.clone(),
        detail: r.detail.clone(),
        cluster: crate::outbox::cluster(),
    })?;
    let line = format!(
        "cdc_health: alert {} {} on {}: {} ({}): {}",
        r.id,
        event.as_str(),
        r.subject,
        r.finding.as_str(),
        r.severity.as_str(),
        r.summary
    );
    match event {
        Event::Raised | Event::Escalated | Event::BlockerTerminated => warning!("{line}"),
        Event::Resolved | Event::Reminder => log!("{line}"),
    }
    Ok(Applied {
        event: event.as_str(),
        alert_id: r.id,
        subject: r.subject,
        finding: r.finding.as_str(),
        severity: r.severity.as_str(),
        summary: r.summary,
    })
}

/// Announces an action taken on a subject (e.g. a terminated blocker) on the alert channel,
/// under the subject's open alert for `finding` (id 0 when there is none).
pub fn announce(
    event: Event,
    subject: &str,
    finding: Finding,
    detail: Value,
) -> SpiResult<Applied> {
    let id = crate::pg::spi::read_one::<i64>(
        "SELECT id FROM cdc_health.alerts WHERE subject OPERATOR(pg_catalog.=) $1 \
         AND finding OPERATOR(pg_catalog.=) $2 AND resolved_at IS NULL",
        &[subject.into(), finding.code.as_str().into()],
    )?
    .unwrap_or(0);
    let time = now_text()?;
    let reported = Reported {
        id,
        subject: subject.to_string(),
        finding: finding.code,
        severity: finding.severity,
        summary: finding.summary,
        remediation: finding.remedy,
        detail,
        raised_at: time.clone(),
        resolved_at: None,
    };
    notify(event, reported, &time)
}
