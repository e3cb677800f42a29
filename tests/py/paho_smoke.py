"""MQTT 3.1, 3.1.1 and 5.0 against weft with paho-mqtt, a second, independent
MQTT client implementation.

Usage: paho_smoke.py HOST PORT   (exit status 0 = pass)
"""
import queue
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST, PORT = sys.argv[1], int(sys.argv[2])
TIMEOUT = 10


def client(cid, protocol=mqtt.MQTTv5, **connect_kwargs):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=protocol)
    c.inbox = queue.Queue()
    c.acks = queue.Queue()
    c.on_message = lambda cl, ud, msg: cl.inbox.put(msg)
    c.on_subscribe = lambda cl, ud, mid, codes, props: cl.acks.put(("suback", mid, codes))
    c.on_connect = lambda cl, ud, flags, rc, props: cl.acks.put(("connack", flags, rc, props))
    c.on_publish = lambda cl, ud, mid, rc, props: cl.acks.put(("puback", mid, rc))
    c.connect(HOST, PORT, keepalive=30, **connect_kwargs)
    c.loop_start()
    kind, flags, rc, props = c.acks.get(timeout=TIMEOUT)
    assert kind == "connack" and not rc.is_failure, (kind, rc)
    c.connack = (flags, props)
    return c


def subscribe(c, *args, **kwargs):
    c.subscribe(*args, **kwargs)
    while True:
        kind, *rest = c.acks.get(timeout=TIMEOUT)
        if kind == "suback":
            return rest[1]


def get(c):
    return c.inbox.get(timeout=TIMEOUT)


def v311():
    sub = client("paho-311-sub", mqtt.MQTTv311)
    pub = client("paho-311-pub", mqtt.MQTTv311)
    codes = subscribe(sub, [("paho/311/#", 2)])
    assert [c.value for c in codes] == [2], codes
    for qos in (0, 1, 2):
        pub.publish("paho/311/x", f"q{qos}", qos=qos).wait_for_publish(TIMEOUT)
        m = get(sub)
        assert (m.topic, m.payload, m.qos) == ("paho/311/x", f"q{qos}".encode(), qos), m
    # Retained, delivered to a later subscriber with the retain flag.
    pub.publish("paho/311/kept", "r", qos=1, retain=True).wait_for_publish(TIMEOUT)
    late = client("paho-311-late", mqtt.MQTTv311)
    subscribe(late, "paho/311/kept", qos=1)
    m = get(late)
    assert m.retain and m.payload == b"r", m
    pub.publish("paho/311/kept", b"", qos=1, retain=True).wait_for_publish(TIMEOUT)
    for c in (sub, pub, late):
        c.loop_stop()
        c.disconnect()


def v31():
    # MQTT 3.1: protocol name MQIsdp, level 3; the same session rules.
    sub = client("paho-31-sub", mqtt.MQTTv31)
    pub = client("paho-31-pub", mqtt.MQTTv31)
    codes = subscribe(sub, [("paho/31/#", 1)])
    assert [c.value for c in codes] == [1], codes
    pub.publish("paho/31/x", "old", qos=1).wait_for_publish(TIMEOUT)
    m = get(sub)
    assert (m.topic, m.payload, m.qos) == ("paho/31/x", b"old", 1), m
    for c in (sub, pub):
        c.loop_stop()
        c.disconnect()
    # A 3.1 client id has at most 23 characters: CONNACK 2.
    long = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="x" * 24, protocol=mqtt.MQTTv31)
    acks = queue.Queue()
    long.on_connect = lambda cl, ud, flags, rc, props: acks.put(rc)
    long.connect(HOST, PORT, keepalive=30)
    long.loop_start()
    rc = acks.get(timeout=TIMEOUT)
    long.loop_stop()
    # paho maps the 3.1 CONNACK 2 to its v5 name.
    assert rc.is_failure and str(rc) == "Client identifier not valid", rc


def v5():
    sub = client("paho-5-sub")
    pub = client("paho-5-pub")
    # User properties, content type, correlation data, response topic.
    subscribe(sub, "paho/5/#", options=SubscribeOptions(qos=1))
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("a", "1"), ("b", "2")]
    props.ContentType = "text/plain"
    props.ResponseTopic = "paho/5/reply"
    props.CorrelationData = b"c-42"
    pub.publish("paho/5/x", "hello", qos=1, properties=props).wait_for_publish(TIMEOUT)
    m = get(sub)
    p = m.properties
    assert m.payload == b"hello"
    assert p.UserProperty == [("a", "1"), ("b", "2")], p.UserProperty
    assert p.ContentType == "text/plain" and p.ResponseTopic == "paho/5/reply"
    assert p.CorrelationData == b"c-42"

    # No local: a client's own publishes skip its no-local subscription.
    me = client("paho-5-me")
    subscribe(me, "paho/nl", options=SubscribeOptions(qos=0, noLocal=True))
    subscribe(me, "paho/nl-end", options=SubscribeOptions(qos=0))
    me.publish("paho/nl", "mine").wait_for_publish(TIMEOUT)
    me.publish("paho/nl-end", "end").wait_for_publish(TIMEOUT)
    assert get(me).topic == "paho/nl-end"

    # Shared subscription: each message to one member.
    m1, m2 = client("paho-5-m1"), client("paho-5-m2")
    subscribe(m1, "$share/pg/paho/work", options=SubscribeOptions(qos=1))
    subscribe(m2, "$share/pg/paho/work", options=SubscribeOptions(qos=1))
    for i in range(40):
        pub.publish("paho/work", str(i), qos=1).wait_for_publish(TIMEOUT)
    got = []
    deadline = time.time() + TIMEOUT
    while len(got) < 40 and time.time() < deadline:
        for m in (m1, m2):
            try:
                got.append((m._client_id, m.inbox.get(timeout=0.05).payload))
            except queue.Empty:
                pass
    payloads = sorted(int(p) for _, p in got)
    assert payloads == list(range(40)), payloads
    assert len({cid for cid, _ in got}) == 2, "both members got some"

    # Session expiry: a kept session collects QoS 1 while away.
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 300
    away = client("paho-5-away", clean_start=False, properties=props)
    subscribe(away, "paho/away", options=SubscribeOptions(qos=1))
    away.loop_stop()
    away.disconnect()
    pub.publish("paho/away", "while away", qos=1).wait_for_publish(TIMEOUT)
    back = client("paho-5-away", clean_start=False, properties=props)
    flags, _ = back.connack
    assert flags.session_present, flags
    assert get(back).payload == b"while away"

    for c in (sub, pub, me, m1, m2, back):
        c.loop_stop()
        c.disconnect()


v31()
v311()
v5()
print("paho smoke: pass")
