"""CloudEvents across weft's protocols, checked with the official CloudEvents
Python SDK (`cloudevents`): an event the SDK makes is published over MQTT 5
(binary mode, MQTT binding: user properties and Content Type) and over NATS
(binary mode, `ce-` headers); what MQTT 5, MQTT 3.1.1 and NATS subscribers
receive is parsed with the SDK's parsers and must be the same event.

The SDK has no MQTT or NATS binding: the MQTT 5 and NATS forms are built
from and read back through its HTTP binding, whose `ce-` header names and
percent-encoding the NATS binding shares, and whose binary attributes are
the MQTT binding's user properties once the prefix is dropped.

Usage: cloudevents_check.py MQTT_HOST MQTT_PORT NATS_HOST:PORT  (exit 0 = pass)
"""
import asyncio
import queue
import sys
from datetime import datetime, timezone
from urllib.parse import quote, unquote

import nats
import paho.mqtt.client as mqtt
from cloudevents.core.bindings.http import HTTPMessage, from_http, to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST, PORT, NATS_SERVER = sys.argv[1], int(sys.argv[2]), sys.argv[3]
TIMEOUT = 10
FORMAT = JSONFormat()


def client(cid, protocol):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=protocol)
    c.inbox = queue.Queue()
    c.acks = queue.Queue()
    c.on_message = lambda cl, ud, msg: cl.inbox.put(msg)
    c.on_subscribe = lambda cl, ud, mid, codes, props: cl.acks.put("suback")
    c.on_connect = lambda cl, ud, flags, rc, props: cl.acks.put("connack")
    c.connect(HOST, PORT, keepalive=30)
    c.loop_start()
    assert c.acks.get(timeout=TIMEOUT) == "connack"
    return c


def subscribe(c, topic):
    c.subscribe(topic, qos=1)
    assert c.acks.get(timeout=TIMEOUT) == "suback"


async def get(c):
    return await asyncio.get_running_loop().run_in_executor(
        None, lambda: c.inbox.get(timeout=TIMEOUT)
    )


async def settle(nc):
    """A round trip through the router: every SUB before it is in force."""
    inbox = nc.new_inbox()
    probe = await nc.subscribe(inbox)
    await nc.publish(inbox, b"")
    await probe.next_msg(timeout=TIMEOUT)
    await probe.unsubscribe()


def from_mqtt5(msg):
    """MQTT binding 3.1 read through the SDK's HTTP binding: user
    properties are the attributes, Content Type the datacontenttype."""
    props = msg.properties
    headers = {f"ce-{k}": quote(v, safe="") for k, v in getattr(props, "UserProperty", [])}
    if hasattr(props, "ContentType"):
        headers["content-type"] = props.ContentType
    return from_http(HTTPMessage(headers=headers, body=msg.payload), FORMAT)


def from_nats(msg):
    """NATS binding (1.0.3 draft) 3.1: `ce-` headers, percent-encoded as
    HTTP's, `ce-datacontenttype` included: the SDK reads them as they are."""
    assert msg.headers, f"no headers on {msg.subject}"
    return from_http(HTTPMessage(headers=dict(msg.headers), body=msg.data), FORMAT)


def same(got, want, where):
    assert got.get_attributes() == want.get_attributes(), (
        where,
        got.get_attributes(),
        want.get_attributes(),
    )
    assert got.get_data() == want.get_data(), (where, got.get_data(), want.get_data())


def event(ident, datacontenttype, data):
    return CloudEvent(
        attributes={
            "specversion": "1.0",
            "id": ident,
            "source": "https://example.com/sensors/7",
            "type": "com.example.reading",
            "time": datetime(2026, 12, 6, 10, 0, 0, tzinfo=timezone.utc),
            "subject": "room 1",
            "dataschema": "https://example.com/reading.json",
            "datacontenttype": datacontenttype,
            "comexampleext": "Euro \u20ac",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tracestate": "rojo=00f067aa0ba902b7",
        },
        data=data,
    )


async def main():
    nc = await nats.connect(f"nats://{NATS_SERVER}")
    nats_sub = await nc.subscribe("pyce.>")
    await settle(nc)
    v5 = client("pyce-v5-sub", mqtt.MQTTv5)
    v3 = client("pyce-v3-sub", mqtt.MQTTv311)
    for c in (v5, v3):
        subscribe(c, "pyce/#")
    publisher = client("pyce-v5-pub", mqtt.MQTTv5)

    # MQTT 5 publisher, binary mode (MQTT binding 3.1).
    original = event("py-mqtt5", "application/json", {"temp": 21, "unit": "C"})
    binary = to_binary(original, FORMAT)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [
        (k[3:], unquote(v)) for k, v in binary.headers.items() if k.startswith("ce-")
    ]
    props.ContentType = binary.headers["content-type"]
    publisher.publish("pyce/from5", binary.body, qos=1, properties=props).wait_for_publish(
        TIMEOUT
    )
    same(from_nats(await nats_sub.next_msg(timeout=TIMEOUT)), original, "MQTT 5 -> NATS")
    same(FORMAT.read(None, (await get(v3)).payload), original, "MQTT 5 -> MQTT 3.1.1")
    same(from_mqtt5(await get(v5)), original, "MQTT 5 -> MQTT 5")

    # NATS publisher, binary mode (NATS binding draft 3.1): the HTTP
    # binding's headers, datacontenttype as ce-datacontenttype.
    original = event("py-nats", "text/plain", "hello from nats-py")
    binary = to_binary(original, FORMAT)
    headers = {k: v for k, v in binary.headers.items() if k.startswith("ce-")}
    headers["ce-datacontenttype"] = quote(binary.headers["content-type"], safe="")
    await nc.publish("pyce.fromnats", binary.body, headers=headers)
    await nc.flush()
    same(from_mqtt5(await get(v5)), original, "NATS -> MQTT 5")
    same(FORMAT.read(None, (await get(v3)).payload), original, "NATS -> MQTT 3.1.1")
    same(from_nats(await nats_sub.next_msg(timeout=TIMEOUT)), original, "NATS -> NATS")

    for c in (v5, v3, publisher):
        c.loop_stop()
        c.disconnect()
    await nc.close()
    print("pass")


asyncio.run(main())
