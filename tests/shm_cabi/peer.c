/*
 * A C program on weft-shm's C ABI (weft-shm/include/weft_shm.h), driven by
 * tests/shm_cabi.rs against a real router:
 *
 *   peer SOCKET_PATH
 *
 * connects (NATS dialect), checks the argument and empty-receive codes,
 * subscribes to "c.in", says "READY", publishes "hello from C" on "c.out",
 * then receives one message on "c.in": first into a topic buffer too small
 * (WEFT_SHM_ERR_BUFFER, the message kept, its lengths told), then into
 * buffers of the told sizes, and prints "GOT <topic> <payload>".
 * Unsubscribes, closes, says "DONE". Any unexpected code: a line "FAIL
 * <what>: <code> <text>" and exit status 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft_shm.h"

static void fail(const char *what, int code) {
    printf("FAIL %s: %d %s (%s)\n", what, code, weft_shm_strerror(code), weft_shm_last_error());
    fflush(stdout);
    exit(1);
}

static void expect(const char *what, int got, int want) {
    if (got != want) fail(what, got);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: peer SOCKET_PATH\n");
        return 2;
    }
    int err = 0;
    weft_shm_client *bad = weft_shm_connect(argv[1], 9, "c-peer", 0, NULL, NULL, &err);
    if (bad != NULL) fail("unknown dialect accepted", 0);
    expect("unknown dialect", err, WEFT_SHM_ERR_ARGUMENT);

    weft_shm_client *c = weft_shm_connect(argv[1], WEFT_SHM_NATS, "c-peer", 0, NULL, NULL, &err);
    if (c == NULL) fail("connect", err);
    expect("publish with a NULL topic", weft_shm_publish(c, NULL, "x", 1), WEFT_SHM_ERR_ARGUMENT);
    expect("publish on a bad subject", weft_shm_publish(c, "bad subject", "x", 1),
           WEFT_SHM_ERR_INVALID);
    expect("subscribe", weft_shm_subscribe(c, "c.in"), WEFT_SHM_OK);

    char topic[64];
    char payload[256];
    size_t topic_len = 0, payload_len = 0;
    expect("receive with nothing there",
           weft_shm_recv(c, 0, topic, sizeof topic, &topic_len, payload, sizeof payload,
                         &payload_len),
           WEFT_SHM_EMPTY);

    printf("READY\n");
    fflush(stdout);

    const char *hello = "hello from C";
    expect("publish", weft_shm_publish(c, "c.out", hello, strlen(hello)), WEFT_SHM_OK);
    expect("flush", weft_shm_flush(c), WEFT_SHM_OK);

    /* Too small for the topic and its NUL: the message stays. */
    char tiny[2];
    int rc = weft_shm_recv(c, 10000, tiny, sizeof tiny, &topic_len, payload, sizeof payload,
                           &payload_len);
    expect("receive into a small buffer", rc, WEFT_SHM_ERR_BUFFER);
    if (topic_len != strlen("c.in")) fail("told topic length", (int)topic_len);
    char *t = malloc(topic_len + 1);
    char *p = malloc(payload_len > 0 ? payload_len : 1);
    size_t need = payload_len;
    rc = weft_shm_recv(c, 0, t, topic_len + 1, &topic_len, p, need, &payload_len);
    expect("receive the kept message", rc, WEFT_SHM_OK);
    printf("GOT %s %.*s\n", t, (int)payload_len, p);
    fflush(stdout);
    free(t);
    free(p);

    expect("unsubscribe", weft_shm_unsubscribe(c, "c.in"), WEFT_SHM_OK);
    expect("unsubscribe again", weft_shm_unsubscribe(c, "c.in"), WEFT_SHM_ERR_INVALID);
    weft_shm_close(c);
    weft_shm_close(NULL);
    printf("DONE\n");
    fflush(stdout);
    return 0;
}
