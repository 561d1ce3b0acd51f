//! PostgreSQL 17's failover slots: a physical slot named in `synchronized_standby_slots`
//! whose standby is down or behind makes every logical walsender of a failover slot wait
//! (`wait_event` `WaitForStandbyConfirmation`): consumers are connected and get nothing.

use crate::finding::{Finding, FindingCode, Severity};
use crate::observation::{SlotObservation, SlotType};
use crate::units::pretty_duration;

/// A logical walsender waiting for the standbys of `synchronized_standby_slots`.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiter {
    pub pid: i32,
    /// The failover slot it streams.
    pub slot_name: String,
    pub application_name: Option<String>,
}

/// The slot names of a `synchronized_standby_slots` value: a comma-separated list of
/// identifiers, double-quoted ones kept as written (with `""` for a quote), others folded to
/// lower case as PostgreSQL does.
pub fn parse_slot_list(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        skip_whitespace(&mut chars);
        let mut name = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        name.push('"');
                    } else {
                        break;
                    }
                } else {
                    name.push(c);
                }
            }
            while chars.peek().is_some_and(|&c| c != ',') {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                name.push(c.to_ascii_lowercase());
                chars.next();
            }
            name = name.trim_end().to_string();
        }
        if !name.is_empty() {
            names.push(name);
        }
        if chars.next().is_none() {
            return names;
        }
    }
}

fn skip_whitespace(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.next_if(|c| c.is_whitespace()).is_some() {}
}

/// `standby_slot_blocking` for each listed physical slot that holds the waiters up: the ones
/// without a standby (inactive or lost) or, when every listed standby is connected, all of
/// them (one of them is behind). Nothing while no walsender waits.
pub fn standby_slot_blocking(
    slots: &[SlotObservation],
    listed: &[String],
    waiters: &[Waiter],
) -> Vec<(String, Finding)> {
    if waiters.is_empty() || listed.is_empty() {
        return Vec::new();
    }
    let named: Vec<&SlotObservation> = slots
        .iter()
        .filter(|s| s.slot_type == SlotType::Physical && listed.contains(&s.slot_name))
        .collect();
    let down: Vec<&&SlotObservation> = named.iter().filter(|s| !s.active || s.is_lost()).collect();
    let blamed: Vec<&SlotObservation> = if down.is_empty() {
        named.clone()
    } else {
        down.into_iter().copied().collect()
    };
    let held: Vec<String> = waiters
        .iter()
        .map(|w| match &w.application_name {
            Some(app) if !app.is_empty() => {
                format!("{} ({app}, pid {})", w.slot_name, w.pid)
            }
            _ => format!("{} (pid {})", w.slot_name, w.pid),
        })
        .collect();
    blamed
        .into_iter()
        .map(|s| {
            let state = if s.is_lost() {
                "is lost".to_string()
            } else if !s.active {
                match s.inactive_for_secs {
                    Some(secs) => format!("has had no standby for {}", pretty_duration(secs)),
                    None => "has no standby connected".to_string(),
                }
            } else {
                "is behind".to_string()
            };
            let summary = format!(
                "this slot {state} and is named in synchronized_standby_slots: {} logical \
                 walsender(s) of failover slots wait for it and send nothing: {}",
                waiters.len(),
                held.join(", ")
            );
            (
                s.slot_name.clone(),
                Finding::new(
                    FindingCode::StandbySlotBlocking,
                    Severity::Critical,
                    summary,
                ),
            )
        })
        .collect()
}

/// What `failover_unready` needs to know of the server (17+, on the primary).
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverSetup {
    /// `synchronized_standby_slots`.
    pub listed: Vec<String>,
    /// Check every logical slot even without a streaming standby (`cdc_health.expect_failover
    /// = on`); `false` for `auto`, where only a streaming standby makes failover expected.
    pub expected: bool,
}

/// `failover_unready` for a logical slot that would not survive a promotion of the standby,
/// naming the first gap; `None` when it would, or when no failover is expected (no standby
/// streams from this server and `cdc_health.expect_failover` is `auto`). Only the physical
/// slots of `slots` are looked at: a caller judging every slot passes just those, once.
pub fn failover_unready(
    slot: &SlotObservation,
    slots: &[SlotObservation],
    setup: &FailoverSetup,
) -> Option<Finding> {
    if slot.slot_type != SlotType::Logical || slot.temporary || slot.is_lost() {
        return None;
    }
    let failover = slot.failover?;
    let standbys: Vec<&SlotObservation> = slots
        .iter()
        .filter(|s| s.slot_type == SlotType::Physical && s.active)
        .collect();
    if standbys.is_empty() && !setup.expected {
        return None;
    }
    let name = &slot.slot_name;
    let list_remedy = |physical: &str| {
        format!(
            "ALTER SYSTEM SET synchronized_standby_slots = '{physical}'; SELECT pg_reload_conf(); \
             (every standby that may be promoted, comma-separated)"
        )
    };
    let first_standby = standbys
        .first()
        .map_or("<the standby's slot>", |s| s.slot_name.as_str());
    let (gap, remedy) = if !failover {
        (
            "the slot was created with failover = false: it is not synchronized to standbys \
             and will not exist after a promotion"
                .to_string(),
            format!(
                "Turn failover on: for a native subscription ALTER SUBSCRIPTION ... DISABLE, \
                 ALTER SUBSCRIPTION ... SET (failover = true), ENABLE; for other tools the \
                 replication command ALTER_REPLICATION_SLOT {name} (FAILOVER true)."
            ),
        )
    } else if setup.listed.is_empty() {
        (
            "synchronized_standby_slots is empty: a promoted standby may be behind what this \
             slot's consumer already received, so the synchronized copy cannot be used"
                .to_string(),
            list_remedy(first_standby),
        )
    } else {
        let listed: Vec<Option<&SlotObservation>> = setup
            .listed
            .iter()
            .map(|name| {
                slots
                    .iter()
                    .find(|s| s.slot_type == SlotType::Physical && s.slot_name == *name)
            })
            .collect();
        if let Some((missing, _)) = setup.listed.iter().zip(&listed).find(|(_, s)| s.is_none()) {
            (
                format!(
                    "synchronized_standby_slots names {missing}, which is no physical slot here"
                ),
                list_remedy(first_standby),
            )
        } else if let Some(down) = listed.iter().flatten().find(|s| !s.active) {
            (
                format!(
                    "{}, named in synchronized_standby_slots, has no standby connected",
                    down.slot_name
                ),
                "Bring that standby back (its primary_slot_name must be this slot), or name the \
                 slot of a standby that runs in synchronized_standby_slots."
                    .to_string(),
            )
        } else if let Some(unlisted) = standbys
            .iter()
            .find(|s| !setup.listed.contains(&s.slot_name))
        {
            (
                format!(
                    "the standby streaming from slot {} is not named in \
                     synchronized_standby_slots: it may be behind this slot's consumer when \
                     promoted",
                    unlisted.slot_name
                ),
                list_remedy(&format!(
                    "{},{}",
                    setup.listed.join(","),
                    unlisted.slot_name
                )),
            )
        } else {
            return None;
        }
    };
    Some(unready(&gap, remedy))
}

/// The `failover_unready` finding for one gap, primary or standby side.
fn unready(gap: &str, remedy: String) -> Finding {
    Finding::new(
        FindingCode::FailoverUnready,
        Severity::Warning,
        format!("not ready for failover: {gap}"),
    )
    .with_remedy(remedy)
}

/// A standby's own settings for slot synchronisation (17+), as far as they decide whether its
/// synchronized copies survive a promotion.
#[derive(Debug, Clone, PartialEq)]
pub struct StandbySync {
    pub sync_replication_slots: bool,
    pub hot_standby_feedback: bool,
    /// `primary_slot_name` is set.
    pub primary_slot_name: bool,
    /// `primary_conninfo` names a database (slot synchronisation connects to one).
    pub conninfo_dbname: bool,
}

/// `failover_unready` for a synchronized copy on a standby that a promotion would not keep
/// usable: invalidated, the standby's own settings wrong, or not persisted yet; `None` for
/// a slot that is no synchronized copy, or one that is ready.
pub fn synced_copy_unready(slot: &SlotObservation, sync: &StandbySync) -> Option<Finding> {
    if slot.synced != Some(true) {
        return None;
    }
    let reload = "SELECT pg_reload_conf();";
    let (gap, remedy) = if slot.is_lost() {
        (
            format!(
                "the synchronized copy is invalidated ({}): it cannot be used after a promotion",
                slot.invalidation_reason.as_deref().unwrap_or("lost")
            ),
            "Check the slot on the primary: if it is lost there too, its consumer must \
             resync; if not, slot synchronisation recreates the copy once this standby keeps \
             what it needs (hot_standby_feedback = on, primary_slot_name set)."
                .to_string(),
        )
    } else if !sync.sync_replication_slots {
        (
            "sync_replication_slots is off on this standby: the copy is no longer kept up to \
             date and falls behind its consumer"
                .to_string(),
            format!("ALTER SYSTEM SET sync_replication_slots = on; {reload}"),
        )
    } else if !sync.hot_standby_feedback {
        (
            "hot_standby_feedback is off on this standby: the primary may remove catalog rows \
             the copy needs, and slot synchronisation does not run without it"
                .to_string(),
            format!("ALTER SYSTEM SET hot_standby_feedback = on; {reload}"),
        )
    } else if !sync.primary_slot_name {
        (
            "primary_slot_name is not set on this standby: slot synchronisation needs the \
             standby to stream through a physical slot"
                .to_string(),
            format!(
                "Create a physical slot on the primary (SELECT \
                 pg_create_physical_replication_slot('standby1')), then here ALTER SYSTEM SET \
                 primary_slot_name = 'standby1'; {reload} and name it in the primary's \
                 synchronized_standby_slots."
            ),
        )
    } else if !sync.conninfo_dbname {
        (
            "primary_conninfo names no database on this standby: slot synchronisation \
             cannot connect to the primary"
                .to_string(),
            format!(
                "Add dbname to primary_conninfo (ALTER SYSTEM SET primary_conninfo = '... \
                 dbname={}'; {reload}).",
                slot.database.as_deref().unwrap_or("postgres")
            ),
        )
    } else if slot.temporary {
        (
            "the synchronized copy is not persisted yet (temporary): the standby has not \
             caught up with the slot on the primary, and a promotion now drops it"
                .to_string(),
            "Wait for the slot's consumer to advance on the primary: the copy is persisted \
             once this standby has received what the slot needs (SELECT \
             pg_log_standby_snapshot() on the primary speeds this up)."
                .to_string(),
        )
    } else {
        return None;
    };
    Some(unready(&gap, remedy))
}

/// Whether a libpq connection string, in either keyword/value or URI form, names a database.
pub fn conninfo_has_dbname(conninfo: &str) -> bool {
    let text = conninfo.trim();
    if let Some(rest) = ["postgresql://", "postgres://"]
        .iter()
        .find_map(|scheme| text.strip_prefix(scheme))
    {
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = before_query.split_once('/').map_or("", |(_, path)| path);
        return !path.is_empty()
            || query.split('&').any(|pair| {
                pair.split_once('=')
                    .is_some_and(|(k, v)| k == "dbname" && !v.is_empty())
            });
    }
    keyword_values(text)
        .iter()
        .any(|(k, v)| k == "dbname" && !v.is_empty())
}

/// The `keyword = value` pairs of a keyword/value connection string; values may be
/// single-quoted with backslash escapes.
fn keyword_values(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        skip_whitespace(&mut chars);
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        skip_whitespace(&mut chars);
        if key.is_empty() || chars.next() != Some('=') {
            return pairs;
        }
        skip_whitespace(&mut chars);
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    chars.next();
                    value.extend(chars.next());
                } else {
                    value.push(c);
                    chars.next();
                }
            }
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn physical(name: &str, active: bool) -> SlotObservation {
        SlotObservation {
            slot_type: SlotType::Physical,
            database: None,
            plugin: None,
            active,
            ..SlotObservation::logical(name)
        }
    }

    fn waiter(slot: &str) -> Waiter {
        Waiter {
            pid: 77,
            slot_name: slot.into(),
            application_name: Some("pg_recvlogical".into()),
        }
    }

    #[test]
    fn lists_are_parsed_like_identifiers() {
        assert_eq!(parse_slot_list(""), Vec::<String>::new());
        assert_eq!(parse_slot_list("sb1"), ["sb1"]);
        assert_eq!(parse_slot_list(" SB1 , sb2,"), ["sb1", "sb2"]);
        assert_eq!(
            parse_slot_list(r#""My ""slot""", b"#),
            [r#"My "slot""#, "b"]
        );
    }

    #[test]
    fn the_down_standby_is_blamed_with_who_waits() {
        let mut down = physical("sb_down", false);
        down.inactive_for_secs = Some(90.0);
        let slots = [
            down,
            physical("sb_up", true),
            SlotObservation::logical("cdc"),
        ];
        let listed = vec!["sb_down".to_string(), "sb_up".to_string()];
        let found = standby_slot_blocking(&slots, &listed, &[waiter("cdc")]);
        assert_eq!(found.len(), 1);
        let (slot, f) = &found[0];
        assert_eq!(slot, "sb_down");
        assert_eq!(
            (f.code, f.severity),
            (FindingCode::StandbySlotBlocking, Severity::Critical)
        );
        assert!(
            f.summary.contains("no standby for 1min 30s"),
            "{}",
            f.summary
        );
        assert!(
            f.summary.contains("cdc (pg_recvlogical, pid 77)"),
            "{}",
            f.summary
        );
    }

    #[test]
    fn connected_standbys_are_all_blamed_when_someone_waits() {
        let slots = [physical("a", true), physical("b", true)];
        let listed = vec!["a".to_string(), "b".to_string()];
        let found = standby_slot_blocking(&slots, &listed, &[waiter("cdc")]);
        assert_eq!(found.len(), 2);
        assert!(found[0].1.summary.contains("is behind"));
    }

    #[test]
    fn nothing_without_waiters_or_a_list() {
        let slots = [physical("a", false)];
        let listed = vec!["a".to_string()];
        assert!(standby_slot_blocking(&slots, &listed, &[]).is_empty());
        assert!(standby_slot_blocking(&slots, &[], &[waiter("cdc")]).is_empty());
        // A logical slot of the same name is not a standby's slot.
        let logical = [SlotObservation::logical("a")];
        assert!(standby_slot_blocking(&logical, &listed, &[waiter("cdc")]).is_empty());
    }

    fn setup(listed: &[&str]) -> FailoverSetup {
        FailoverSetup {
            listed: listed.iter().map(|s| s.to_string()).collect(),
            expected: false,
        }
    }

    fn failover_slot(name: &str, failover: bool) -> SlotObservation {
        SlotObservation {
            failover: Some(failover),
            ..SlotObservation::logical(name)
        }
    }

    #[test]
    fn the_first_gap_is_named() {
        let sb = physical("sb", true);
        let plain = failover_slot("plain", false);
        let fo = failover_slot("fo", true);
        let slots = [sb.clone(), plain.clone(), fo.clone()];
        let summary = |s: &SlotObservation, l: &[&str]| {
            failover_unready(s, &slots, &setup(l)).map(|f| f.summary)
        };
        assert!(summary(&plain, &["sb"])
            .unwrap()
            .contains("failover = false"));
        assert!(summary(&fo, &[])
            .unwrap()
            .contains("synchronized_standby_slots is empty"));
        assert!(summary(&fo, &["gone"])
            .unwrap()
            .contains("names gone, which is no physical slot"));
        assert_eq!(summary(&fo, &["sb"]), None);
        let f = failover_unready(&plain, &slots, &setup(&["sb"])).unwrap();
        assert_eq!(
            (f.code, f.severity),
            (FindingCode::FailoverUnready, Severity::Warning)
        );
        // A second standby that is not listed.
        let slots2 = [sb, physical("sb2", true), fo.clone()];
        let f = failover_unready(&fo, &slots2, &setup(&["sb"])).unwrap();
        assert!(f.summary.contains("slot sb2 is not named"), "{}", f.summary);
        // The listed standby is down.
        let slots3 = [physical("sb", false), physical("other", true), fo.clone()];
        let f = failover_unready(&fo, &slots3, &setup(&["sb"])).unwrap();
        assert!(f
            .summary
            .contains("sb, named in synchronized_standby_slots, has no standby"));
    }

    #[test]
    fn only_when_failover_is_expected_and_known() {
        let plain = failover_slot("plain", false);
        let alone = [plain.clone()];
        assert_eq!(
            failover_unready(&plain, &alone, &setup(&[])),
            None,
            "no standby: auto"
        );
        let on = FailoverSetup {
            expected: true,
            ..setup(&[])
        };
        assert!(
            failover_unready(&plain, &alone, &on).is_some(),
            "expect_failover = on"
        );
        // Before 17 the server does not say (failover unknown); physical slots never.
        let slots = [physical("sb", true), SlotObservation::logical("old")];
        assert_eq!(failover_unready(&slots[1], &slots, &on), None);
        assert_eq!(failover_unready(&slots[0], &slots, &on), None);
        let mut lost = failover_slot("lost", false);
        lost.invalidation_reason = Some("wal_removed".into());
        assert_eq!(failover_unready(&lost, &slots, &on), None);
    }

    fn ready_standby() -> StandbySync {
        StandbySync {
            sync_replication_slots: true,
            hot_standby_feedback: true,
            primary_slot_name: true,
            conninfo_dbname: true,
        }
    }

    fn synced(name: &str) -> SlotObservation {
        SlotObservation {
            synced: Some(true),
            failover: Some(true),
            active: false,
            ..SlotObservation::logical(name)
        }
    }

    #[test]
    fn a_synced_copy_names_its_gap_on_the_standby() {
        let ready = ready_standby();
        assert_eq!(synced_copy_unready(&synced("cdc"), &ready), None);
        let gap = |slot: &SlotObservation, sync: &StandbySync| {
            synced_copy_unready(slot, sync).map(|f| (f.summary, f.remedy.unwrap_or_default()))
        };
        let mut temporary = synced("cdc");
        temporary.temporary = true;
        let (summary, _) = gap(&temporary, &ready).unwrap();
        assert!(
            summary.contains("not persisted yet (temporary)"),
            "{summary}"
        );
        let mut lost = synced("cdc");
        lost.invalidation_reason = Some("rows_removed".into());
        let (summary, _) = gap(&lost, &ready).unwrap();
        assert!(summary.contains("invalidated (rows_removed)"), "{summary}");
        // Settings, in the order synchronisation needs them.
        let cases = [
            (
                StandbySync {
                    sync_replication_slots: false,
                    ..ready.clone()
                },
                "sync_replication_slots = on",
            ),
            (
                StandbySync {
                    hot_standby_feedback: false,
                    ..ready.clone()
                },
                "hot_standby_feedback = on",
            ),
            (
                StandbySync {
                    primary_slot_name: false,
                    ..ready.clone()
                },
                "primary_slot_name = ",
            ),
            (
                StandbySync {
                    conninfo_dbname: false,
                    ..ready.clone()
                },
                "dbname=postgres",
            ),
        ];
        for (sync, remedy) in cases {
            let (_, got) = gap(&synced("cdc"), &sync).unwrap();
            assert!(got.contains(remedy), "{got} lacks {remedy}");
        }
        // The standby's own slots (not synchronized) and copies before 17 are not judged.
        let own = SlotObservation::logical("local");
        let off = StandbySync {
            sync_replication_slots: false,
            ..ready
        };
        assert_eq!(synced_copy_unready(&own, &off), None);
    }

    #[test]
    fn conninfo_dbname_in_both_forms() {
        assert!(conninfo_has_dbname("host=p port=5432 user=r dbname=app"));
        assert!(conninfo_has_dbname("host=p dbname = 'my db' user=r"));
        assert!(conninfo_has_dbname("postgresql://r@p:5432/app"));
        assert!(conninfo_has_dbname("postgres://p?dbname=app&sslmode=off"));
        assert!(!conninfo_has_dbname("host=p port=5432 user=r"));
        assert!(!conninfo_has_dbname("host=p password='dbname=x' user=r"));
        assert!(
            !conninfo_has_dbname("host=p dbname='' user=r"),
            "empty value"
        );
        assert!(!conninfo_has_dbname("postgresql://r@p:5432"));
        assert!(!conninfo_has_dbname("postgresql://r@p/?sslmode=off"));
        assert!(!conninfo_has_dbname(""));
    }
}
