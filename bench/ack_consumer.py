"""A logical replication consumer that confirms everything it receives (write, flush and apply
position, as Debezium and PeerDB report them) until it gets SIGUSR1; from then on it stays
connected and keeps reading, but never confirms anything again: the "connected but no longer
acknowledging" fault, injected at a known instant.

    ack_consumer.py DSN SLOT      (application_name is set to SLOT)
"""

import select
import signal
import sys
import time

import psycopg2
import psycopg2.extras

STUCK = False


def stop_acknowledging(*_):
    global STUCK
    STUCK = True


def main():
    dsn, slot = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGUSR1, stop_acknowledging)
    conn = psycopg2.connect(dsn, application_name=slot,
                            connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.start_replication(slot_name=slot, decode=False, status_interval=1)
    received = 0
    confirmed = 0
    last_feedback = 0.0
    while True:
        msg = cur.read_message()
        if msg is not None:
            received = max(received, msg.data_start)
            continue
        now = time.monotonic()
        if not STUCK and (received > confirmed or now - last_feedback > 1):
            confirmed = received
            cur.send_feedback(write_lsn=confirmed, flush_lsn=confirmed, apply_lsn=confirmed,
                              force=True)
            last_feedback = now
        select.select([conn], [], [], 0.1)


if __name__ == "__main__":
    main()
