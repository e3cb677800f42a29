"""Request/reply via reply-to.

A responder consumes requests on a service address and answers each to its
reply-to, with the request's correlation-id. The requester's reply address
is a dynamic receiver (the broker names a node) when --dynamic is yes, or
auto and the broker grants one; otherwise a named address under the prefix.
Three requests; every reply must come back to the requester matched by
correlation-id.
"""

from proton import ConnectionException, Message, Timeout
from proton.utils import LinkDetached

from common import connect, parser, run, text, unique, wait_count

p = parser(__doc__)
p.add_argument("--dynamic", choices=["yes", "no", "auto"], default="auto")
p.add_argument("--count", type=int, default=3)
args = p.parse_args()


def reply_receiver(observed):
    """The requester's connection, its reply receiver and reply address."""
    if args.dynamic != "no":
        conn = connect(args)
        try:
            conn.timeout = min(args.timeout, 3.0)
            r = conn.create_receiver(None, dynamic=True, credit=args.count)
            conn.timeout = args.timeout
            addr = r.link.remote_source.address
            if addr:
                observed["dynamic"] = True
                return conn, r, addr
            observed["dynamic_refused"] = "no address in the attach reply"
        except (Timeout, LinkDetached, ConnectionException) as e:
            observed["dynamic_refused"] = "%s: %s" % (type(e).__name__, e)
        if args.dynamic == "yes":
            raise RuntimeError("dynamic receiver refused: " + observed["dynamic_refused"])
        # A broker that did not answer may have given up on the session:
        # the named fallback gets a connection of its own.
        try:
            conn.close()
        except Exception:
            pass
    observed["dynamic"] = False
    conn = connect(args)
    addr = args.prefix + unique("reply")
    return conn, conn.create_receiver(addr, credit=args.count), addr


def body(observed):
    service = args.prefix + unique("svc")
    rconn = connect(args)
    requests = rconn.create_receiver(service, credit=args.count)
    qconn, replies, reply_to = reply_receiver(observed)
    observed["reply_to"] = reply_to
    sender = qconn.create_sender(service)
    for i in range(args.count):
        sender.send(Message(body="ping-%d" % i, reply_to=reply_to, correlation_id="corr-%d" % i))
    got_requests = wait_count(rconn, requests.fetcher, args.count, args.timeout)
    answer_senders = {}
    seen_reply_to = []
    while requests.fetcher.has_message:
        req = requests.fetcher.pop()
        requests.accept()
        seen_reply_to.append(req.reply_to)
        s = answer_senders.get(req.reply_to) or rconn.create_sender(req.reply_to)
        answer_senders[req.reply_to] = s
        s.send(Message(body="pong:" + text(req.body), correlation_id=req.correlation_id))
    got = wait_count(qconn, replies.fetcher, args.count, args.timeout)
    answers = {}
    while replies.fetcher.has_message:
        m = replies.fetcher.pop()
        replies.accept()
        cid = m.correlation_id
        cid = bytes(cid).decode() if isinstance(cid, (bytes, memoryview)) else cid
        answers[str(cid)] = text(m.body)
    observed.update({"requests_reply_to": seen_reply_to, "answers": answers})
    qconn.close()
    rconn.close()
    want = {"corr-%d" % i: "pong:ping-%d" % i for i in range(args.count)}
    return {
        "requests_arrived": got_requests,
        "replies_arrived": got,
        "replies_matched": answers == want,
    }


run("reqreply", body)
