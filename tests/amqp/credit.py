"""Credit-limited consumer: a receiver never holds more deliveries than the
credit it granted.

15 messages wait for a receiver that starts with no credit; it grants
credit 1, 2, .. 5 in turn, each time takes what arrives (waiting a moment
more for any excess), checks the count equals the credit and that the
link's credit is used up, accepts them, and goes on. Then the stream must
be complete, in order, with nothing more.
"""

from proton import Message

from common import connect, parser, pump, run, unique, wait_count

p = parser(__doc__)
p.add_argument("--rounds", type=int, default=5)
p.add_argument("--settle-wait", type=float, default=0.5, help="seconds to watch for excess deliveries")
args = p.parse_args()


def body(observed):
    topic = args.prefix + unique("credit")
    total = args.rounds * (args.rounds + 1) // 2
    rconn = connect(args)
    receiver = rconn.create_receiver(topic, credit=0)
    sconn = connect(args)
    sender = sconn.create_sender(topic)
    for i in range(total):
        sender.send(Message(body="m%d" % i, properties={"seq": str(i)}))
    rounds = []
    seqs = []
    for k in range(1, args.rounds + 1):
        receiver.link.flow(k)
        wait_count(rconn, receiver.fetcher, k, args.timeout)
        pump(rconn, args.settle_wait)
        held = receiver.fetcher.has_message
        rounds.append({"credit": k, "held": held, "link_credit_left": receiver.link.credit})
        while receiver.fetcher.has_message:
            m = receiver.fetcher.pop()
            seqs.append(int((m.properties or {}).get("seq", -1)))
            receiver.accept()
    # Nothing beyond the 15.
    receiver.link.flow(1)
    pump(rconn, args.settle_wait)
    extra = receiver.fetcher.has_message
    while receiver.fetcher.has_message:
        receiver.fetcher.pop()
        receiver.accept()
    observed.update(
        {
            "rounds": rounds,
            "seqs": seqs,
            "extra_after_stream": extra,
        }
    )
    sconn.close()
    rconn.close()
    return {
        "never_more_than_credit": all(r["held"] <= r["credit"] for r in rounds),
        "each_round_filled": all(r["held"] == r["credit"] for r in rounds),
        "credit_used_up": all(r["link_credit_left"] == 0 for r in rounds),
        "all_in_order": seqs == list(range(total)),
        "nothing_extra": extra == 0,
    }


run("credit", body)
