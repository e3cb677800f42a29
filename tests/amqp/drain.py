"""Drain: a receiver that asks the sender to use up its credit or give it
back (flow with drain=true) must get a flow with the credit consumed, also
when nothing is waiting; messages waiting are delivered first.

Two messages wait; the receiver drains 5: it must get the 2 and then see
its credit at 0 (the broker advanced delivery-count by the unused 3).
Sender and receiver share one connection: on a broker with several
threads (weft's shards) a message accepted from another connection may
still be on its way to the receiver's thread when the drain arrives, and
then "nothing waiting" is a right answer.
"""

from proton import Message

from common import connect, parser, pump, run, unique, wait_count

args = parser(__doc__).parse_args()


def body(observed):
    topic = args.prefix + unique("drain")
    rconn = connect(args)
    receiver = rconn.create_receiver(topic, credit=0)
    sender = rconn.create_sender(topic)
    for i in range(2):
        sender.send(Message(body="d%d" % i))
    receiver.link.drain(5)
    got = wait_count(rconn, receiver.fetcher, 2, args.timeout)
    try:
        rconn.wait(lambda: not receiver.link.draining(), timeout=args.timeout)
        answered = True
    except Exception:
        answered = False
    pump(rconn, 0.3)
    observed.update(
        {"received": receiver.fetcher.has_message, "drain_answered": answered, "credit_after": receiver.link.credit}
    )
    rconn.close()
    return {
        "waiting_delivered": got and observed["received"] == 2,
        "drain_answered": answered,
        "credit_used_up": receiver.link.credit == 0,
    }


run("drain", body)
