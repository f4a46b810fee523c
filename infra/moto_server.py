"""moto_server for Meterline's local runs and tests: the DynamoDB and SQS endpoint.

The same server as `moto_server`, with one correction: moto evaluates a TransactWriteItems'
conditions and applies its writes without isolation from concurrent requests, so two racing
transactions can both pass conditions that only one may pass (two owners demoting each other
would both succeed). Real DynamoDB serializes conflicting transactions. Running DynamoDB
requests one at a time restores that guarantee; other services (SQS) stay concurrent.

And one speed-up: moto backs a TransactWriteItems up by deep-copying the whole table once per
item in it, so a transaction costs time (and garbage) in proportion to the table's size and
10,000 usage events take hours and gigabytes. Since DynamoDB requests run one at a time, backing
up only the items a transaction touches is enough to roll it back.

And one SQS correction: a queue appends a sent message to its list under the queue's lock, but
deleting a message rebuilds that list without it, so a message sent while another is deleted
could vanish although SendMessage answered that it was sent (the load tool's books found it;
tests/load/README.md). Deletes take the lock too.

And one fault for the tests: real DynamoDB cancels a TransactWriteItems with
`TransactionConflict` when another request writes one of its items meanwhile (an API key's
`last_used_at` touch racing its revocation). moto never does, so a store test arms conflicts by
`POST /_meterline/transaction-conflicts {"table": NAME, "count": N}`: the next N
TransactWriteItems naming that table are cancelled that way, and nothing of them is written.

Usage: python3 infra/moto_server.py [-H HOST] [-p PORT]
"""

import argparse
import copy
import io
import json
import threading

from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.sqs import models as sqs_models
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

_dynamodb = threading.Lock()


_conflicts = {}
_CONFLICTS_PATH = "/_meterline/transaction-conflicts"


def _json_reply(start_response, status, body, content_type="application/json"):
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


def _read_body(environ):
    """The request body, put back so the wrapped app can read it again."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _armed_conflict(environ):
    """True when this TransactWriteItems names a table with conflicts armed (spends one)."""
    if not environ.get("HTTP_X_AMZ_TARGET", "").endswith(".TransactWriteItems"):
        return None
    try:
        request = json.loads(_read_body(environ) or b"{}")
    except ValueError:
        return None
    items = request.get("TransactItems", [])
    tables = {op.get("TableName") for entry in items for op in entry.values()}
    for table in tables:
        if _conflicts.get(table, 0) > 0:
            _conflicts[table] -= 1
            return len(items)
    return None


class SerializedDynamoDB:
    """WSGI middleware: one DynamoDB request at a time, everything else untouched; plus the
    armed transaction conflicts (see the module's doc)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == _CONFLICTS_PATH and environ["REQUEST_METHOD"] == "POST":
            request = json.loads(_read_body(environ) or b"{}")
            with _dynamodb:
                _conflicts[request["table"]] = int(request.get("count", 1))
            return _json_reply(start_response, "200 OK", {"armed": request["count"]})
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with _dynamodb:
                items = _armed_conflict(environ)
                if items is not None:
                    return _json_reply(
                        start_response,
                        "400 Bad Request",
                        {
                            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                            "message": "Transaction cancelled, please refer cancellation reasons "
                            "for specific reasons [TransactionConflict]",
                            "CancellationReasons": [
                                {"Code": "TransactionConflict",
                                 "Message": "Transaction is ongoing for the item"}
                            ] * items,
                        },
                        "application/x-amz-json-1.0",
                    )
                # The response is produced entirely inside the lock.
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


class _CopyButNotTables:
    """`copy` as moto.dynamodb.models sees it: a Table is not copied (its only deep copy is the
    whole-table backup of TransactWriteItems, replaced by the item backup below)."""

    copy = staticmethod(copy.copy)

    @staticmethod
    def deepcopy(value, memo=None):
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


_transact_write_items = dynamodb_models.DynamoDBBackend.transact_write_items


def _transact_write_items_item_backup(self, transact_items):
    """moto's TransactWriteItems, rolled back item by item when it fails."""
    before = {}
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        table = self.tables.get(op.get("TableName"))
        attrs = op.get("Item") or op.get("Key") or {}
        if table is None or table.hash_key_attr not in attrs:
            continue
        hash_value = DynamoType(attrs[table.hash_key_attr])
        range_value = None
        if table.range_key_attr is not None:
            if table.range_key_attr not in attrs:
                continue
            range_value = DynamoType(attrs[table.range_key_attr])
        slot = (op["TableName"], hash_value, range_value)
        if slot not in before:
            before[slot] = copy.deepcopy(table.get_item(hash_value, range_value))
    try:
        return _transact_write_items(self, transact_items)
    except BaseException:
        for (name, hash_value, range_value), item in before.items():
            table = self.tables[name]
            if item is None:
                table.delete_item(hash_value, range_value)
            elif range_value is not None:
                table.items[hash_value][range_value] = item
            else:
                table.items[hash_value] = item
        raise


dynamodb_models.copy = _CopyButNotTables
dynamodb_models.DynamoDBBackend.transact_write_items = _transact_write_items_item_backup


_delete_message = sqs_models.Queue.delete_message


def _delete_message_locked(self, receipt_handle):
    """Queue.delete_message under the lock Queue.add_message appends with."""
    with self._messages_lock:
        return _delete_message(self, receipt_handle)


sqs_models.Queue.delete_message = _delete_message_locked


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    args = parser.parse_args()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, SerializedDynamoDB(app), threaded=True)


if __name__ == "__main__":
    main()
