"""Shared harness of the AMQP 1.0 client scripts (python-qpid-proton).

Each script in tests/amqp/ checks one behaviour of a broker with a real
client and prints ONE JSON object on stdout:
  {"test": name, "ok": bool, "checks": {name: bool}, "observed": {...}}
("error" instead of checks when it could not run to the end). Exit status 0
when ok. The same scripts run against RabbitMQ and weft
(perf/amqp-interop.sh, tests/amqp_interop.rs): everything broker specific
is an argument (the URL, the address prefix, queue address formats), and the
"observed" values are what the interop runner compares between brokers.
"""

import argparse
import json
import sys
import time
import traceback
import uuid

from proton import SSLDomain, Timeout
from proton._utils import Fetcher  # the blocking API's receiver handler
from proton.utils import BlockingConnection

# python-qpid-proton hands a data section's body out as a memoryview of a
# buffer it reuses for later transfers: a receiver that holds several
# messages before reading them would see later bytes. Every script's
# receivers copy the body when the message arrives.
_on_message = Fetcher.on_message


def _on_message_copying(self, event):
    msg = event.message
    if isinstance(msg.body, memoryview):
        inferred = msg.inferred
        msg.body = bytes(msg.body)
        msg.inferred = inferred
    _on_message(self, event)


Fetcher.on_message = _on_message_copying


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("url", help="broker URL, e.g. amqp://127.0.0.1:5672")
    p.add_argument("prefix", help="address prefix of a topic, e.g. /topic/ (RabbitMQ) or '' (weft)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds for any one wait")
    p.add_argument("--ca", default=None, help="amqps: the CA (PEM) that signed the broker's certificate")
    return p


def unique(stem):
    """A name no other run uses (dot separated: a routing key on RabbitMQ,
    NATS dialect on weft)."""
    return "interop.%s.%s" % (stem, uuid.uuid4().hex[:12])


def connect(args):
    """A connection to the broker; with --ca, TLS that verifies the
    broker's certificate and name (the URL must be amqps://NAME:PORT)."""
    if args.ca:
        domain = SSLDomain(SSLDomain.MODE_CLIENT)
        domain.set_trusted_ca_db(args.ca)
        domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME, args.ca)
        return BlockingConnection(args.url, timeout=args.timeout, ssl_domain=domain)
    return BlockingConnection(args.url, timeout=args.timeout)


def pump(conn, seconds):
    """Process the connection's events for `seconds` (to see what else
    arrives)."""
    try:
        conn.wait(lambda: False, timeout=seconds)
    except Timeout:
        pass


def wait_count(conn, fetcher, n, timeout):
    """Waits until the receiver's fetcher holds at least n messages; returns
    whether it did."""
    try:
        conn.wait(lambda: fetcher.has_message >= n, timeout=timeout)
        return True
    except Timeout:
        return False


def text(body):
    """A body as text: a string as it is, bytes (a data section: weft
    delivers every payload so) decoded as UTF-8."""
    if isinstance(body, (bytes, memoryview)):
        return bytes(body).decode("utf-8", "replace")
    return body


def body_json(body):
    if isinstance(body, memoryview):
        body = bytes(body)
    if isinstance(body, bytes):
        return {"bytes_hex": body.hex()}
    return body


def jsonable(value):
    if isinstance(value, (memoryview, bytes)):
        return {"bytes_hex": bytes(value).hex()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return "%s:%s" % (type(value).__name__, value)


def message_json(msg, delivery=None):
    out = {
        "body": body_json(msg.body),
        "body_section": "data" if msg.inferred and isinstance(msg.body, (bytes, memoryview)) else "amqp-value",
        "id": jsonable(msg.id),
        "correlation_id": jsonable(msg.correlation_id),
        "reply_to": msg.reply_to,
        "content_type": msg.content_type,
        "subject": msg.subject,
        "properties": jsonable(msg.properties),
        "durable": msg.durable,
        "delivery_count": msg.delivery_count,
        "first_acquirer": msg.first_acquirer,
    }
    if delivery is not None:
        out["arrived_settled"] = delivery.settled
    return out


def run(test, body):
    """Runs body(observed) -> checks and prints the JSON result."""
    observed = {}
    started = time.time()
    try:
        checks = body(observed)
        ok = bool(checks) and all(checks.values())
        result = {"test": test, "ok": ok, "checks": checks, "observed": observed}
    except Exception as e:  # the script's verdict: what failed, not a trace
        ok = False
        result = {"test": test, "ok": False, "error": "%s: %s" % (type(e).__name__, e), "observed": observed}
        traceback.print_exc(file=sys.stderr)
    result["seconds"] = round(time.time() - started, 3)
    print(json.dumps(result, sort_keys=True))
    sys.stdout.flush()
    sys.exit(0 if ok else 1)
