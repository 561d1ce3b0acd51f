//! Each slot's consumer: the sessions and errors the server's own processes recorded
//! (`hooks` into `ring`), and the session connected now (`pg_stat_replication`).

pub mod hooks;
pub mod ring;

use std::collections::HashMap;

use cdc_health_rules::consumer::{ConsumerEvent, LiveSession};
use cdc_health_rules::SlotObservation;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

/// What is known of every slot's consumer at one moment.
#[derive(Default)]
pub struct Consumers {
    /// Recorded events by slot name, oldest first.
    pub events: HashMap<String, Vec<ConsumerEvent>>,
    /// Connected walsenders by pid.
    pub live: HashMap<i32, LiveSession>,
}

impl Consumers {
    /// Reads the ring, and `pg_stat_replication` when a slot has a consumer connected.
    pub fn read(slots: &[SlotObservation]) -> SpiResult<Consumers> {
        let mut events: HashMap<String, Vec<ConsumerEvent>> = HashMap::new();
        for (slot, event) in ring::read_since(0) {
            events
                .entry(slot.as_str().to_owned())
                .or_default()
                .push(event);
        }
        let live = if slots.iter().any(|s| s.active_pid.is_some()) {
            live_sessions()?
        } else {
            HashMap::new()
        };
        Ok(Consumers { events, live })
    }

    pub fn events_of(&self, slot: &SlotObservation) -> &[ConsumerEvent] {
        self.events.get(&slot.slot_name).map_or(&[], Vec::as_slice)
    }

    pub fn live_of(&self, slot: &SlotObservation) -> Option<&LiveSession> {
        slot.active_pid.and_then(|pid| self.live.get(&pid))
    }
}

/// The connected walsenders' session start, last reply and positions.
fn live_sessions() -> SpiResult<HashMap<i32, LiveSession>> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT pid,
                        pg_catalog.date_part('epoch', backend_start),
                        pg_catalog.date_part('epoch', reply_time),
                        (sent_lsn OPERATOR(pg_catalog.-) '0/0'::pg_catalog.pg_lsn)::pg_catalog.int8,
                        (write_lsn OPERATOR(pg_catalog.-) '0/0'::pg_catalog.pg_lsn)::pg_catalog.int8,
                        (flush_lsn OPERATOR(pg_catalog.-) '0/0'::pg_catalog.pg_lsn)::pg_catalog.int8
                 FROM pg_catalog.pg_stat_replication",
                None,
                &[],
            )?
            .map(|row| {
                let lsn = |i: usize| -> SpiResult<Option<u64>> {
                    Ok(row.get::<i64>(i)?.and_then(|v| u64::try_from(v).ok()))
                };
                Ok((
                    row.get::<i32>(1)?.unwrap_or(0),
                    LiveSession {
                        started_at: row.get::<f64>(2)?,
                        reply_at: row.get::<f64>(3)?,
                        sent_lsn: lsn(4)?,
                        write_lsn: lsn(5)?,
                        flush_lsn: lsn(6)?,
                    },
                ))
            })
            .collect()
    })
}
