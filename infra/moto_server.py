"""moto_server for Meterline's local runs and tests: the DynamoDB and SQS endpoint.

The same server as `moto_server`, with one correction: moto evaluates a TransactWriteItems'
conditions and applies its writes without isolation from concurrent requests, so two racing
transactions can both pass conditions that only one may pass (two owners demoting each other
would both succeed). Real DynamoDB serializes conflicting transactions. Running DynamoDB
requests one at a time restores that guarantee; other services (SQS) stay concurrent.

Usage: python3 infra/moto_server.py [-H HOST] [-p PORT]
"""

import argparse
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

_dynamodb = threading.Lock()


class SerializedDynamoDB:
    """WSGI middleware: one DynamoDB request at a time, everything else untouched."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with _dynamodb:
                # The response is produced entirely inside the lock.
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    args = parser.parse_args()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, SerializedDynamoDB(app), threaded=True)


if __name__ == "__main__":
    main()
