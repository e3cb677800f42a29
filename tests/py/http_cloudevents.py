"""CloudEvents over the HTTP edge with the official CloudEvents Python SDK:
events the SDK makes are POSTed in binary, structured and batched mode
(`requests`), read back from an event stream (SSE: each a structured JSON
CloudEvent in `data:`) and from NATS (binary mode, `ce-` headers) with the
SDK's parsers, and must be the same events. Bad ones get problem details
with 400 / 415 / 422.

Usage: http_cloudevents.py HTTP_HOST:PORT NATS_HOST:PORT  (exit 0 = pass)
"""
import asyncio
import json
import queue
import sys
import threading
from datetime import datetime, timezone

import nats
import requests
from cloudevents.core.bindings.http import HTTPMessage, from_http, to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

BASE = "http://" + sys.argv[1]
NATS_SERVER = sys.argv[2]
FORMAT = JSONFormat()
TIMEOUT = 20


def event(ident, datacontenttype, data):
    return CloudEvent(
        attributes={
            "specversion": "1.0",
            "id": ident,
            "source": "https://example.com/sensors/7",
            "type": "com.example.reading",
            "time": datetime(2026, 12, 6, 10, 0, 0, tzinfo=timezone.utc),
            "subject": "room 1",
            "datacontenttype": datacontenttype,
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        },
        data=data,
    )


def same(got, want, where):
    assert got.get_attributes() == want.get_attributes(), (where, got.get_attributes(), want.get_attributes())
    assert got.get_data() == want.get_data(), (where, got.get_data(), want.get_data())


def read_stream(response, out):
    """Each SSE event's data (joined lines) into `out`."""
    data = []
    for line in response.iter_lines(chunk_size=1, decode_unicode=True):
        if line.startswith(":"):
            continue
        if not line:
            if data:
                out.put("\n".join(data))
                data = []
            continue
        name, _, value = line.partition(": ")
        if name == "data":
            data.append(value)


def post(message, topic="pyce%2Fhttp"):
    return requests.post(BASE + "/v1/topics/" + topic, data=message.body, headers=message.headers, timeout=TIMEOUT)


async def main():
    nc = await nats.connect(f"nats://{NATS_SERVER}")
    nats_sub = await nc.subscribe("pyce.http")
    await nc.flush()
    stream = requests.get(
        BASE + "/v1/subscribe",
        params={"filter": "pyce/http"},
        headers={"Accept": "text/event-stream"},
        stream=True,
        timeout=TIMEOUT,
    )
    assert stream.status_code == 200, stream.status_code
    sse = queue.Queue()
    threading.Thread(target=read_stream, args=(stream, sse), daemon=True).start()

    binary = event("b-1", "application/json", {"temp": 21})
    structured = event("s-1", "text/plain", "hello")
    batch = [event("x-1", "application/json", {"n": 1}), event("x-2", "text/plain", "two")]
    r = post(to_binary(binary, FORMAT))
    assert r.status_code == 202, (r.status_code, r.text)
    r = post(to_structured(structured, FORMAT))
    assert r.status_code == 202, (r.status_code, r.text)
    body = "[" + ",".join(FORMAT.write(e).decode() for e in batch) + "]"
    r = requests.post(
        BASE + "/v1/topics/pyce%2Fhttp",
        data=body,
        headers={"Content-Type": "application/cloudevents-batch+json"},
        timeout=TIMEOUT,
    )
    assert r.status_code == 202, (r.status_code, r.text)

    for want in [binary, structured] + batch:
        got = FORMAT.read(None, sse.get(timeout=TIMEOUT))
        same(got, want, "sse")
        msg = await nats_sub.next_msg(timeout=TIMEOUT)
        got = from_http(HTTPMessage(headers=dict(msg.headers or {}), body=msg.data), FORMAT)
        same(got, want, "nats")

    for headers, data, status in [
        ({"Content-Type": "application/cloudevents+json"}, "{not json", 400),
        ({"Content-Type": "application/cloudevents+xml"}, "<x/>", 415),
        ({"Content-Type": "application/cloudevents+json"}, '{"specversion":"1.0","id":"1"}', 422),
        ({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s"}, "no type", 422),
    ]:
        r = requests.post(BASE + "/v1/topics/pyce%2Fhttp", data=data, headers=headers, timeout=TIMEOUT)
        assert r.status_code == status, (headers, r.status_code, r.text)
        assert r.headers["Content-Type"] == "application/problem+json", r.headers
        assert r.json()["status"] == status
    stream.close()
    await nc.close()
    print("pass")


asyncio.run(main())
