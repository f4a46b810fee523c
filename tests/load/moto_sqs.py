"""The load tool's private moto_server: infra/moto_server.py (same DynamoDB corrections), with
two corrections to SQS (moto 5.2.1):

1. SQS calls are served one at a time. moto's SQS queue is not safe for concurrent calls:
   Queue.add_message appends to the queue's message list under the queue's lock, but
   Queue.delete_message rebuilds that list without it (`self._messages = [m for m in
   self._messages if ...]`), so a message appended while a delete rebuilds the list is dropped
   although SendMessageBatch reported it sent, and a message deleted by one delete can come
   back through another's rebuild; concurrent receives also iterate sets that other receives
   change (`RuntimeError: Set changed size during iteration`, a 500). Under the load tool (the
   server sending while the billing consumers receive and delete) stock moto lost about one
   message in a few thousand: a 2xx answer whose usage event never reached billing. This is
   the same remedy infra/moto_server.py applies to DynamoDB's transactions. A long poll
   (WaitTimeSeconds > 0) would hold the others up for its wait: the load tool only short-polls.
2. SQS reads the clock the cheap way. moto checks every message of a queue for visibility and
   delay on each send, receive and attribute call, and each check reads the time through
   moto.core.utils.unix_time(), which builds two datetimes to compute what time.time() returns.
   Profiled under load, that clock was most of moto's CPU time, so a few hundred queued
   messages made each call take tens to hundreds of milliseconds. Here SQS gets the same value
   (seconds since the Unix epoch, UTC) from time.time(); a time given explicitly is converted
   as before.

Usage: python3 tests/load/moto_sqs.py [-H HOST] [-p PORT]
"""

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "infra"))

import moto_server  # noqa: E402  (infra/moto_server.py, found through the path above)
from moto.core import utils as core_utils  # noqa: E402
from moto.sqs import models as sqs_models  # noqa: E402
from werkzeug.serving import run_simple  # noqa: E402

_unix_time = core_utils.unix_time
_sqs = threading.Lock()


def unix_time(dt=None):
    """Seconds since the epoch: time.time() for now, moto's conversion for a given time."""
    return time.time() if dt is None else _unix_time(dt)


def unix_time_millis(dt=None):
    """Milliseconds since the epoch, as moto's own."""
    return unix_time(dt) * 1000.0


sqs_models.unix_time = unix_time
sqs_models.unix_time_millis = unix_time_millis


class SerializedSQS:
    """WSGI middleware: one SQS request (JSON protocol, as the AWS SDKs send) at a time."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("AmazonSQS."):
            with _sqs:
                # The response is produced entirely inside the lock.
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    args = parser.parse_args()
    app = moto_server.DomainDispatcherApplication(moto_server.create_backend_app)
    run_simple(
        args.host,
        args.port,
        SerializedSQS(moto_server.SerializedDynamoDB(app)),
        threaded=True,
    )


if __name__ == "__main__":
    main()
