"""The HTTP edge with Python `requests`: a publish (202), a problem
(application/problem+json), and an event stream read with stream=True that
gets an event published over HTTP. Prints "pass"."""
import sys

import requests

base = "http://" + sys.argv[1]

with requests.get(
    base + "/v1/subscribe",
    params={"filter": "py/#"},
    headers={"Accept": "text/event-stream"},
    stream=True,
    timeout=20,
) as stream:
    assert stream.status_code == 200, stream.status_code
    assert stream.headers["Content-Type"] == "text/event-stream"
    r = requests.post(base + "/v1/topics/py%2Fhello", data="from python", timeout=20)
    assert r.status_code == 202, (r.status_code, r.text)
    bad = requests.post(base + "/v1/topics/py%2F%23", data="x", timeout=20)
    assert bad.status_code == 400, bad.status_code
    assert bad.headers["Content-Type"] == "application/problem+json"
    problem = bad.json()
    assert problem["status"] == 400 and problem["title"] and problem["detail"], problem
    event = {}
    # chunk_size=1: each line as it comes (the default waits for 512 bytes).
    for line in stream.iter_lines(chunk_size=1, decode_unicode=True):
        if line.startswith(":"):
            continue
        if not line:
            break
        name, _, value = line.partition(": ")
        event[name] = value
    assert event.get("event") == "py/hello", event
    assert event.get("data") == "from python", event
    assert int(event["id"]) > 0, event
print("pass")
