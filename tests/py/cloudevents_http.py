"""The CloudEvents Python SDK posts to weft's HTTP edge in binary,
structured and batched mode; what MQTT 5 and NATS subscribers receive is
parsed back with the SDK and must be the same events. Bad events get the
HTTP binding's errors (415 / 422 / 400) and publish nothing.

Usage: cloudevents_http.py HTTP_HOST:PORT MQTT_HOST MQTT_PORT NATS_HOST:PORT
(exit status 0 = pass)
"""
import asyncio
import json
import queue
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone
from urllib.parse import quote

import nats
import paho.mqtt.client as mqtt
from cloudevents.core.bindings.http import HTTPMessage, from_http, to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

HTTP, HOST, PORT, NATS_SERVER = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
TIMEOUT = 10
FORMAT = JSONFormat()


def post(topic, headers, body):
    req = urllib.request.Request(
        f"http://{HTTP}/v1/topics/{quote(topic, safe='')}", data=body, method="POST"
    )
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def mqtt5_client():
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cehttp-v5", protocol=mqtt.MQTTv5)
    c.inbox, c.acks = queue.Queue(), queue.Queue()
    c.on_message = lambda cl, ud, msg: cl.inbox.put(msg)
    c.on_subscribe = lambda cl, ud, mid, codes, props: cl.acks.put("suback")
    c.on_connect = lambda cl, ud, flags, rc, props: cl.acks.put("connack")
    c.connect(HOST, PORT, keepalive=30)
    c.loop_start()
    assert c.acks.get(timeout=TIMEOUT) == "connack"
    c.subscribe("cehttp/#", qos=1)
    assert c.acks.get(timeout=TIMEOUT) == "suback"
    return c


async def get(c):
    return await asyncio.get_running_loop().run_in_executor(
        None, lambda: c.inbox.get(timeout=TIMEOUT)
    )


def from_mqtt5(msg):
    props = msg.properties
    headers = {f"ce-{k}": quote(v, safe="") for k, v in getattr(props, "UserProperty", [])}
    if hasattr(props, "ContentType"):
        headers["content-type"] = props.ContentType
    return from_http(HTTPMessage(headers=headers, body=msg.payload), FORMAT)


def from_nats(msg):
    assert msg.headers, f"no headers on {msg.subject}"
    return from_http(HTTPMessage(headers=dict(msg.headers), body=msg.data), FORMAT)


def same(got, want, where):
    assert got.get_attributes() == want.get_attributes(), (
        where, got.get_attributes(), want.get_attributes())
    assert got.get_data() == want.get_data(), (where, got.get_data(), want.get_data())


def event(ident, datacontenttype, data):
    return CloudEvent(
        attributes={
            "specversion": "1.0",
            "id": ident,
            "source": "https://example.com/http",
            "type": "com.example.posted",
            "time": datetime(2026, 12, 6, 11, 0, 0, tzinfo=timezone.utc),
            "subject": "a b",
            "datacontenttype": datacontenttype,
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "comexampleext": "Euro \u20ac",
        },
        data=data,
    )


async def main():
    nc = await nats.connect(f"nats://{NATS_SERVER}")
    nats_sub = await nc.subscribe("cehttp.>")
    inbox = nc.new_inbox()
    probe = await nc.subscribe(inbox)
    await nc.publish(inbox, b"")
    await probe.next_msg(timeout=TIMEOUT)
    v5 = mqtt5_client()

    async def received(want, where):
        same(from_mqtt5(await get(v5)), want, f"{where} -> MQTT 5")
        same(from_nats(await nats_sub.next_msg(timeout=TIMEOUT)), want, f"{where} -> NATS")

    # Binary mode (HTTP binding 3.1).
    original = event("http-binary", "application/json", {"n": 1})
    msg = to_binary(original, FORMAT)
    status, body = post("cehttp/binary", msg.headers, msg.body)
    assert status in (201, 202), (status, body)
    await received(original, "HTTP binary")

    # Structured mode (3.2).
    original = event("http-structured", "text/plain", "plain text")
    msg = to_structured(original, FORMAT)
    status, body = post("cehttp/structured", msg.headers, msg.body)
    assert status in (201, 202), (status, body)
    await received(original, "HTTP structured")

    # Batched mode (3.3): one event each, in order.
    batch = [event(f"http-batch-{i}", "application/json", {"i": i}) for i in range(3)]
    body = b"[" + b",".join(FORMAT.write(e) for e in batch) + b"]"
    status, answer = post(
        "cehttp/batch", {"content-type": "application/cloudevents-batch+json"}, body
    )
    assert status in (201, 202), (status, answer)
    for e in batch:
        await received(e, "HTTP batch")

    # Refused: a missing required attribute, a format weft does not read,
    # bad JSON; nothing of them is published.
    no_id = json.dumps({"specversion": "1.0", "type": "t", "source": "/s"}).encode()
    status, answer = post("cehttp/bad", {"content-type": "application/cloudevents+json"}, no_id)
    assert status == 422 and b"id" in answer, (status, answer)
    status, _ = post("cehttp/bad", {"content-type": "application/cloudevents+avro"}, b"x")
    assert status == 415, status
    status, _ = post("cehttp/bad", {"content-type": "application/cloudevents+json"}, b"{")
    assert status == 400, status
    sentinel = event("http-sentinel", "application/json", {"end": True})
    msg = to_binary(sentinel, FORMAT)
    assert post("cehttp/end", msg.headers, msg.body)[0] in (201, 202)
    await received(sentinel, "HTTP sentinel (nothing refused was published)")

    v5.loop_stop()
    v5.disconnect()
    await nc.close()
    print("pass")


asyncio.run(main())
