"""A consumer that disconnects holding unaccepted deliveries: they go to the
next consumer.

Consumer A (a child process) attaches to the shared address, grants credit
N, receives N messages and accepts none. Consumer B attaches to the same
address and must get nothing while A holds them. A is killed (SIGKILL: its
socket just closes, no detach). B must then receive the same N messages,
and nothing more.

What "the same address" is depends on the broker: --send and --recv are
formats with {} for a fresh name. RabbitMQ: a queue (/queue/{} for both);
weft: a queue group ({prefix}{} to send to, $share/g/{} to consume from).
"""

import json
import os
import signal
import subprocess
import sys

from proton import Message

from common import connect, message_json, parser, pump, run, text, unique, wait_count

p = parser(__doc__)
p.add_argument("--send", default=None, help="address format messages are sent to (default {prefix}{})")
p.add_argument("--recv", default=None, help="address format consumers attach to (default $share/g/{prefix}{})")
p.add_argument("--count", type=int, default=5)
p.add_argument("--settle-wait", type=float, default=0.5)
p.add_argument("--consumer-a", default=None, help="internal: run as consumer A of ADDRESS")
args = p.parse_args()


def consumer_a(address):
    """The child: attach, hold N, say so, wait to be killed."""
    conn = connect(args)
    receiver = conn.create_receiver(address, credit=0)
    receiver.link.flow(args.count)
    print(json.dumps({"attached": True}), flush=True)
    wait_count(conn, receiver.fetcher, args.count, args.timeout)
    held = []
    while receiver.fetcher.has_message:
        held.append(text(receiver.fetcher.pop().body))
    print(json.dumps({"held": held}), flush=True)
    pump(conn, 3600)


def body(observed):
    name = unique("redeliver")
    send_addr = (args.send or (args.prefix + "{}")).format(name)
    recv_addr = (args.recv or ("$share/g/" + args.prefix + "{}")).format(name)
    observed["send_address_form"] = args.send or (args.prefix + "{}")
    observed["recv_address_form"] = args.recv or ("$share/g/" + args.prefix + "{}")
    child = subprocess.Popen(
        [sys.executable, __file__, args.url, args.prefix, "--timeout", str(args.timeout),
         "--count", str(args.count), "--consumer-a", recv_addr],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = child.stdout.readline()
        if not line:
            raise RuntimeError("consumer A exited before attaching")
        sconn = connect(args)
        sender = sconn.create_sender(send_addr)
        sent = ["r-%d" % i for i in range(args.count)]
        for b in sent:
            sender.send(Message(body=b))
        line = child.stdout.readline()
        if not line:
            raise RuntimeError("consumer A exited before receiving")
        held = json.loads(line)["held"]
        bconn = connect(args)
        b = bconn.create_receiver(recv_addr, credit=0)
        b.link.flow(args.count + 1)
        pump(bconn, args.settle_wait)
        before = b.fetcher.has_message
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        wait_count(bconn, b.fetcher, args.count, args.timeout)
        pump(bconn, args.settle_wait)
        again, again_msgs = [], []
        while b.fetcher.has_message:
            m = b.fetcher.pop()
            again.append(message_json(m))
            again_msgs.append(m)
            b.accept()
        observed.update({"held_by_a": held, "b_before_kill": before, "b_after_kill": again})
        bconn.close()
        sconn.close()
        bodies = [text(m.body) for m in again_msgs]
        return {
            "a_held_all": sorted(held) == sent,
            "b_nothing_while_a_holds": before == 0,
            "b_got_them_after_a_died": sorted(bodies) == sent,
            "no_duplicates": len(bodies) == len(set(bodies)),
        }
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


if args.consumer_a:
    consumer_a(args.consumer_a)
else:
    run("redeliver", body)
