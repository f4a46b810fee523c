"""The load tool's private moto_server: infra/moto_server.py (same DynamoDB corrections), with
SQS reading the clock the cheap way.

moto's SQS checks every message of a queue for visibility and delay on each send, receive and
queue-attribute call, and each check reads the time through moto.core.utils.unix_time(), which
builds two datetimes to compute what time.time() returns. Profiled under the load tool, that
clock was most of moto's CPU time, so a few hundred queued messages made each call take tens to
hundreds of milliseconds. Here SQS gets the same value (seconds since the Unix epoch, UTC) from
time.time(); nothing else changes. A time given explicitly is converted as before.

Usage: python3 tests/load/moto_sqs.py [-H HOST] [-p PORT]
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "infra"))

import moto_server  # noqa: E402  (infra/moto_server.py, found through the path above)
from moto.core import utils as core_utils  # noqa: E402
from moto.sqs import models as sqs_models  # noqa: E402

_unix_time = core_utils.unix_time


def unix_time(dt=None):
    """Seconds since the epoch: time.time() for now, moto's conversion for a given time."""
    return time.time() if dt is None else _unix_time(dt)


def unix_time_millis(dt=None):
    """Milliseconds since the epoch, as moto's own."""
    return unix_time(dt) * 1000.0


sqs_models.unix_time = unix_time
sqs_models.unix_time_millis = unix_time_millis

if __name__ == "__main__":
    moto_server.main()
