"""A logical replication consumer that connects, reads for a while and dies, again and again:
the crash loop of a CDC consumer.

Usage: looping_consumer.py DSN SLOT READ_SECS PAUSE_SECS CONFIRM
Each round is a process that connects, reads for READ_SECS (with CONFIRM=yes it confirms what
it read just before it dies, so each session makes a little progress; with no it confirms nothing)
and exits without closing its connection, as a crash leaves it; PAUSE_SECS later the next
round starts. It runs until killed.
"""

import os
import select
import subprocess
import sys
import time

import psycopg2
import psycopg2.extras


def one_session(dsn, slot, read_secs, confirm):
    conn = psycopg2.connect(dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.start_replication(slot_name=slot, decode=True)
    deadline = time.monotonic() + read_secs
    last = None
    while time.monotonic() < deadline:
        msg = cur.read_message()
        if msg is None:
            select.select([conn], [], [], 0.2)
            continue
        last = msg.data_start
    if confirm and last is not None:
        # What it read so far (a commit's position among it), once, before it dies.
        cur.send_feedback(flush_lsn=last, force=True)
        time.sleep(0.5)
    # A crash: the process ends without the protocol's Terminate message.
    os._exit(1)


def main():
    dsn, slot, read_secs, pause, confirm = sys.argv[1:6]
    if sys.argv[6:] == ["once"]:
        one_session(dsn, slot, float(read_secs), confirm == "yes")
        return
    while True:
        subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:6], "once"],
                       stderr=subprocess.DEVNULL)
        time.sleep(float(pause))


if __name__ == "__main__":
    main()
