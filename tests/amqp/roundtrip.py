"""Send/receive round trip: exact body bytes and properties.

One receiver on a fresh topic, one sender to it; three messages: a data
section with all 256 byte values and every bare-message property the
contract maps (message-id, correlation-id, reply-to, content-type, subject,
application properties), an amqp-value string, an empty data section.
Checks what the contract promises to keep; "observed" shows the rest
(section types, reply-to form, header) for the interop comparison.
"""

from proton import Message

from common import connect, message_json, parser, run, unique, wait_count

args = parser(__doc__).parse_args()


def body(observed):
    topic = args.prefix + unique("rt")
    reply = args.prefix + unique("rt-reply")
    conn = connect(args)
    receiver = conn.create_receiver(topic, credit=10)
    sender = conn.create_sender(topic)
    payload = bytes(range(256))
    full = Message(
        body=payload,
        inferred=True,
        id="mid-1",
        correlation_id="corr-1",
        reply_to=reply,
        content_type="application/octet-stream",
        subject="subject-1",
        properties={"colour": "blue", "count": 42, "flag": True},
        durable=True,
    )
    sender.send(full)
    sender.send(Message(body="hello, text"))
    sender.send(Message(body=b"", inferred=True))
    got = wait_count(conn, receiver.fetcher, 3, args.timeout)
    msgs = []
    while receiver.fetcher.has_message:
        msgs.append(receiver.fetcher.pop())
        receiver.accept()
    observed["sent_reply_to"] = reply
    observed["received"] = [message_json(m) for m in msgs]
    conn.close()
    checks = {"three_received": got and len(msgs) == 3}
    if len(msgs) < 3:
        return checks
    m1, m2, m3 = msgs
    b1 = bytes(m1.body) if isinstance(m1.body, (bytes, memoryview)) else None
    checks.update(
        {
            "body_exact_bytes": b1 == payload,
            "message_id": m1.id == "mid-1",
            "correlation_id": m1.correlation_id in ("corr-1", b"corr-1"),
            "content_type": m1.content_type == "application/octet-stream",
            "subject": m1.subject == "subject-1",
            "reply_to_present": bool(m1.reply_to),
            "app_property_string": (m1.properties or {}).get("colour") == "blue",
            # Non-string values: as sent, or rendered as text (the contract).
            "app_property_int": str((m1.properties or {}).get("count")) == "42",
            "app_property_bool": str((m1.properties or {}).get("flag")).lower() == "true",
            # An amqp-value string arrives as that text (as a string, or as
            # its UTF-8 bytes in a data section).
            "text_body": m2.body == "hello, text"
            or (isinstance(m2.body, (bytes, memoryview)) and bytes(m2.body) == b"hello, text"),
            "empty_body": m3.body in (b"", None, "") or (isinstance(m3.body, memoryview) and bytes(m3.body) == b""),
        }
    )
    return checks


run("roundtrip", body)
