"""nats-py over TLS against weft ([nats.tls] with client certificates
required): the client upgrades after the INFO, presents its certificate,
and pub/sub works over the upgraded connection.

Usage: nats_tls.py tls://HOST:PORT CA_PEM CERT_PEM KEY_PEM   (exit 0 = pass)
"""
import asyncio
import ssl
import sys

import nats


async def main(server: str, ca: str, cert: str, key: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.load_cert_chain(cert, key)
    nc = await nats.connect(server, tls=context, allow_reconnect=False)
    sub = await nc.subscribe("py.tls")
    await nc.flush()
    await nc.publish("py.tls", b"secure")
    msg = await sub.next_msg(timeout=10)
    assert msg.data == b"secure", msg.data
    await nc.close()

    # Without a certificate: refused (client_auth = "required").
    bare = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    try:
        nc = await nats.connect(
            server, tls=bare, allow_reconnect=False, connect_timeout=5, max_reconnect_attempts=0
        )
        await nc.flush(timeout=5)
    except Exception:
        pass
    else:
        raise AssertionError("served without a client certificate")
    print("pass")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
