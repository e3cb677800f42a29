"""nats-py against weft with authentication: user/password, token and
nkey (the nonce challenge), each right and wrong; a wrong one must fail
with the server's 'Authorization Violation'.

Usage: nats_auth.py HOST:PORT NKEY_SEED STRANGER_SEED [CA_PEM]   (exit 0 = pass)
With CA_PEM, every connection is made over TLS (the server requires it),
trusting that CA.
The router is configured with alice/"wonderland" (a password hash), a
user with token "tok-123", and the user of NKEY_SEED's public key;
STRANGER_SEED is a user key it does not know. (nats-py signs the nonce
with the `nkeys` package.)
"""
import asyncio
import ssl
import sys

import nats
import nkeys


async def works(nc) -> None:
    """A message to our own inbox comes back: the connection is in use."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(inbox, b"ok")
    msg = await sub.next_msg(timeout=10)
    assert msg.data == b"ok", msg.data
    await nc.close()


# Set by main: TLS options for every connection (empty = plain TCP).
TLS: dict = {}


async def refused(server: str, what: str, **options) -> None:
    errors = []

    async def on_error(e):
        errors.append(e)

    try:
        nc = await nats.connect(
            f"nats://{server}",
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=10,
            error_cb=on_error,
            **TLS,
            **options,
        )
    except Exception as e:  # nats-py raises what the server said
        errors.append(e)
    else:
        await nc.close()
        raise AssertionError(f"{what}: accepted")
    text = " ".join(f"{type(e).__name__}: {e}" for e in errors).lower()
    assert "authorization" in text, f"{what}: {text}"


async def main(server: str, seed: str, stranger: str, ca: str = "") -> None:
    url = f"nats://{server}"
    if ca:
        TLS["tls"] = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        url = f"tls://{server}"
    await works(await nats.connect(url, user="alice", password="wonderland", **TLS))
    await works(await nats.connect(url, token="tok-123", **TLS))
    await works(await nats.connect(url, nkeys_seed_str=seed, **TLS))

    await refused(server, "wrong password", user="alice", password="x")
    await refused(server, "wrong token", token="tok-999")
    assert nkeys.from_seed(stranger.encode()).public_key != nkeys.from_seed(seed.encode()).public_key
    await refused(server, "unknown nkey", nkeys_seed_str=stranger)
    await refused(server, "anonymous")
    print("pass")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
