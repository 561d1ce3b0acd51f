"""A logical replication consumer that reads for a while, then stops reading and stops
answering the server, its connection left open: a hung consumer (not SIGSTOP: the process
runs, the way a consumer stuck on its destination does).

Usage: silent_consumer.py DSN SLOT READ_SECS
"""

import select
import sys
import time

import psycopg2
import psycopg2.extras


def main():
    dsn, slot, read_secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
    conn = psycopg2.connect(dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.start_replication(slot_name=slot, decode=True, status_interval=1)
    deadline = time.monotonic() + read_secs
    while time.monotonic() < deadline:
        msg = cur.read_message()
        if msg is None:
            select.select([conn], [], [], 0.2)
        else:
            cur.send_feedback(flush_lsn=msg.data_start)
    # From here on nothing is read and nothing is sent: psycopg2 answers only inside its calls.
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
