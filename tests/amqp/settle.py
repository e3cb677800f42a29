"""Pre-settled and unsettled sends, and both receiver settle modes.

Two receivers on one topic: at-least-once (deliveries arrive unsettled; it
accepts them) and at-most-once (asks snd-settle-mode settled: deliveries
arrive settled). Two senders: one at-most-once (pre-settled transfers) and
one at-least-once (each send waits for the broker's disposition, which must
be `accepted`). Both receivers must get all 20 messages.
"""

from proton import Delivery, Link, Message
from proton.reactor import AtLeastOnce, AtMostOnce

from common import connect, parser, run, text, unique, wait_count

p = parser(__doc__)
p.add_argument("--count", type=int, default=10)
args = p.parse_args()


def drain_fetcher(receiver, accept):
    out = []
    while receiver.fetcher.has_message:
        msg, delivery = receiver.fetcher.incoming[0]
        out.append((text(msg.body), delivery.settled))
        receiver.fetcher.pop()
        if accept and not delivery.settled:
            receiver.accept()
    return out


def body(observed):
    n = args.count
    topic = args.prefix + unique("settle")
    rconn = connect(args)
    unsettled_rx = rconn.create_receiver(topic, credit=2 * n + 5, name=unique("rx-alo"), options=AtLeastOnce())
    settled_rx = rconn.create_receiver(topic, credit=2 * n + 5, name=unique("rx-amo"), options=AtMostOnce())
    sconn = connect(args)
    presettled = sconn.create_sender(topic, name=unique("tx-amo"), options=AtMostOnce())
    unsettled = sconn.create_sender(topic, name=unique("tx-alo"), options=AtLeastOnce())
    for i in range(n):
        presettled.send(Message(body="pre-%d" % i))
    states = []
    for i in range(n):
        d = unsettled.send(Message(body="ack-%d" % i))
        states.append(d.remote_state)
    # Pre-settled transfers leave with the next I/O: the unsettled sends
    # above flushed them first (one connection, in order).
    got_a = wait_count(rconn, unsettled_rx.fetcher, 2 * n, args.timeout)
    got_b = wait_count(rconn, settled_rx.fetcher, 2 * n, args.timeout)
    a = drain_fetcher(unsettled_rx, accept=True)
    b = drain_fetcher(settled_rx, accept=False)
    want = sorted(["pre-%d" % i for i in range(n)] + ["ack-%d" % i for i in range(n)])
    observed.update(
        {
            "unsettled_send_states": [str(s) for s in states],
            "presettled_sender_remote_snd_settle_mode": presettled.link.remote_snd_settle_mode,
            "settled_rx_remote_snd_settle_mode": settled_rx.link.remote_snd_settle_mode,
            "unsettled_rx_received": len(a),
            "settled_rx_received": len(b),
            "unsettled_rx_arrived_settled": sum(1 for _, s in a if s),
            "settled_rx_arrived_settled": sum(1 for _, s in b if s),
        }
    )
    sconn.close()
    rconn.close()
    return {
        "unsettled_sends_accepted": states == [Delivery.ACCEPTED] * n,
        "presettled_mode_agreed": presettled.link.remote_snd_settle_mode == Link.SND_SETTLED,
        "at_least_once_receiver_got_all": got_a and sorted(x for x, _ in a) == want,
        "at_least_once_deliveries_unsettled": all(not s for _, s in a),
        "at_most_once_receiver_got_all": got_b and sorted(x for x, _ in b) == want,
        "at_most_once_deliveries_settled": len(b) > 0 and all(s for _, s in b),
    }


run("settle", body)
