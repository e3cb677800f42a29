"""paho-mqtt (3.1.1 and 5) over TLS against weft's [mqtt.tls] listener with
client certificates required: connect with a certificate, subscribe, and
get its own publish back; without a certificate the connection fails.

Usage: paho_tls.py HOST PORT CA_PEM CERT_PEM KEY_PEM   (exit 0 = pass)
"""
import queue
import ssl
import sys

import paho.mqtt.client as mqtt

HOST, PORT, CA, CERT, KEY = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
TIMEOUT = 10


def round_trip(protocol, cid):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=protocol)
    c.tls_set(ca_certs=CA, certfile=CERT, keyfile=KEY, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    events = queue.Queue()
    c.on_connect = lambda cl, ud, flags, rc, props: events.put(("connack", rc))
    c.on_subscribe = lambda cl, ud, mid, codes, props: events.put(("suback", codes))
    c.on_message = lambda cl, ud, msg: events.put(("message", msg.payload))
    c.connect(HOST, PORT, keepalive=30)
    c.loop_start()
    kind, rc = events.get(timeout=TIMEOUT)
    assert kind == "connack" and not rc.is_failure, (kind, rc)
    c.subscribe("paho/tls", 1)
    kind, _ = events.get(timeout=TIMEOUT)
    assert kind == "suback", kind
    c.publish("paho/tls", b"over tls", qos=1)
    kind, payload = events.get(timeout=TIMEOUT)
    assert (kind, payload) == ("message", b"over tls"), (kind, payload)
    c.disconnect()
    c.loop_stop()


def refused_without_certificate():
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-bare")
    c.tls_set(ca_certs=CA, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    try:
        c.connect(HOST, PORT, keepalive=30)
        # TLS 1.3: the server's refusal can come with the first read.
        c.loop_read()
        rc = c.loop(timeout=5)
    except (ssl.SSLError, OSError):
        return
    assert rc != mqtt.MQTT_ERR_SUCCESS, "served without a client certificate"


round_trip(mqtt.MQTTv311, "paho-tls-311")
round_trip(mqtt.MQTTv5, "paho-tls-5")
refused_without_certificate()
print("pass")
