"""A logical replication consumer that reads the stream but never confirms a position.

This is the "connected but stuck" consumer: active in pg_replication_slots, while its
confirmed_flush_lsn never moves. Usage: never_ack_consumer.py DSN SLOT
"""

import sys

import psycopg2
import psycopg2.extras


def main():
    dsn, slot = sys.argv[1], sys.argv[2]
    conn = psycopg2.connect(dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.start_replication(slot_name=slot, decode=True)
    while True:
        # Reads (and discards) what arrives; deliberately never calls send_feedback().
        if cur.read_message() is None:
            import select
            select.select([conn], [], [], 1.0)


if __name__ == "__main__":
    main()
