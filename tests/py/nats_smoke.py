"""Smoke test of weft's NATS listener with nats-py, a second independent
NATS client implementation: pub/sub, request/reply, queue group.

Usage: nats_smoke.py HOST:PORT   (exit status 0 = pass)
"""
import asyncio
import sys

import nats


async def settle(nc) -> None:
    """A round trip through the router on this connection: once a message
    to our own inbox comes back, every SUB before it is in force on every
    shard. (nats-py's flush() can be satisfied by the PONG of an earlier
    PING, so it is not a reliable fence on a sharded router.)"""
    inbox = nc.new_inbox()
    probe = await nc.subscribe(inbox)
    await nc.publish(inbox, b"")
    await probe.next_msg(timeout=10)
    await probe.unsubscribe()


async def main(server: str) -> None:
    nc = await nats.connect(f"nats://{server}")
    other = await nats.connect(f"nats://{server}")

    # pub/sub with a wildcard
    got = []
    sub = await nc.subscribe("py.*")
    await settle(nc)
    await other.publish("py.one", b"1")
    await other.publish("py.two", b"2")
    await other.flush()
    for _ in range(2):
        msg = await sub.next_msg(timeout=10)
        got.append((msg.subject, msg.data))
    assert got == [("py.one", b"1"), ("py.two", b"2")], got

    # request/reply
    async def echo(msg):
        await msg.respond(b"echo:" + msg.data)

    await nc.subscribe("py.echo", cb=echo)
    await settle(nc)
    reply = await other.request("py.echo", b"hi", timeout=10)
    assert reply.data == b"echo:hi", reply.data

    # queue group: each message once across the members
    counts = {"a": 0, "b": 0}

    def member(name):
        async def handler(msg):
            counts[name] += 1
        return handler

    m1 = await nats.connect(f"nats://{server}")
    m2 = await nats.connect(f"nats://{server}")
    await m1.subscribe("py.work", queue="q", cb=member("a"))
    await m2.subscribe("py.work", queue="q", cb=member("b"))
    await settle(m1)
    await settle(m2)
    for i in range(100):
        await other.publish("py.work", str(i).encode())
    await other.flush()
    for _ in range(200):
        if counts["a"] + counts["b"] >= 100:
            break
        await asyncio.sleep(0.05)
    await m1.flush()
    await m2.flush()
    assert counts["a"] + counts["b"] == 100, counts

    for c in (nc, other, m1, m2):
        await c.close()
    print("nats-py smoke: pass", counts)


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1]), timeout=60))
