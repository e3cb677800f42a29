/*
 * weft_shm.h: the C interface of weft-shm, weft's shared-memory client.
 *
 * A co-located program reaches its weft router through shared memory:
 * two single-producer single-consumer rings in a segment the router hands
 * over at connect (see weft's README, "Shared memory"). The client is a
 * session like any other: NATS-dialect clients subscribe with NATS
 * subjects ("prices.>"), MQTT-dialect clients with MQTT filters
 * ("prices/#"); events cross to and from MQTT, NATS, AMQP, HTTP and mesh
 * clients.
 *
 * Link: build the weft-shm crate (cargo build -p weft-shm --release) and
 * link target/release/libweft_shm.so (-lweft_shm) or libweft_shm.a (with
 * -lpthread -ldl -lm). Linux only.
 *
 * Threads: one thread may publish while another receives on the same
 * client; more threads on one side take turns. Every call blocks at most
 * as documented; none is async-signal-safe.
 *
 * Errors: functions return WEFT_SHM_OK (0), a positive status, or a
 * negative WEFT_SHM_ERR_*; weft_shm_last_error() gives the failing call's
 * text on the calling thread. No call panics into C: an internal panic is
 * WEFT_SHM_ERR_PANIC (in a build with panic = "abort" it aborts).
 *
 * Strings are NUL-terminated UTF-8. Payloads are bytes, any length up to
 * what the router takes.
 */
#ifndef WEFT_SHM_H
#define WEFT_SHM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Codes. */
#define WEFT_SHM_OK 0
#define WEFT_SHM_EMPTY 1             /* weft_shm_recv: nothing within the timeout */
#define WEFT_SHM_ERR_IO (-1)         /* a system call failed (no socket at the path, ...) */
#define WEFT_SHM_ERR_HANDSHAKE (-2)  /* a bad reply or segment at connect */
#define WEFT_SHM_ERR_REFUSED (-3)    /* the router refused: limits, CONNECT, a subscription */
#define WEFT_SHM_ERR_CLOSED (-4)     /* the router closed the connection */
#define WEFT_SHM_ERR_CORRUPT (-5)    /* the router wrote an impossible ring index */
#define WEFT_SHM_ERR_PROTOCOL (-6)   /* the router sent bytes the client cannot parse */
#define WEFT_SHM_ERR_INVALID (-7)    /* a bad topic or filter, or an unsubscribe of an unknown one */
#define WEFT_SHM_ERR_TOO_LARGE (-8)  /* the message is larger than the ring */
#define WEFT_SHM_ERR_TIMEOUT (-9)    /* the router did not answer (connect, subscribe) in time */
#define WEFT_SHM_ERR_BUFFER (-10)    /* weft_shm_recv: a buffer is too small; the message is kept */
#define WEFT_SHM_ERR_ARGUMENT (-11)  /* a NULL or non-UTF-8 argument, or an unknown dialect */
#define WEFT_SHM_ERR_PANIC (-12)     /* an internal error */

/* Dialects: the wire protocol on the rings, and so the filter syntax. */
#define WEFT_SHM_NATS 0
#define WEFT_SHM_MQTT 1

/* A connected client. Opaque; free it with weft_shm_close. */
typedef struct WeftShmClient weft_shm_client;

/*
 * Connects to the router's shared-memory socket at `path` (its
 * `--shm-listen` / [shm] listen), maps the segment it hands over and opens
 * the session as `client_id`; waits (at most 10 s) for the router's
 * answer. `spin_us`: how long a waiting call spins before it sleeps
 * (0 = sleep at once). `user` and `password` may be NULL (anonymous).
 * Returns the client, or NULL with *error (if `error` is not NULL) set to
 * the code and weft_shm_last_error() to the reason.
 */
weft_shm_client *weft_shm_connect(const char *path, int dialect, const char *client_id,
                                  uint32_t spin_us, const char *user, const char *password,
                                  int *error);

/*
 * Publishes `len` bytes at `payload` (NULL when `len` is 0) on `topic` (a
 * NATS subject or an MQTT topic, per the dialect; MQTT is QoS 0). Blocks
 * while the ring is full (spins spin_us, then sleeps). The router is
 * woken only if it sleeps; weft_shm_flush makes sure.
 */
int weft_shm_publish(const weft_shm_client *c, const char *topic, const void *payload,
                     size_t len);

/* Subscribes to `filter`; returns once the router has taken (or refused:
 * WEFT_SHM_ERR_REFUSED) it. Subscribing twice to one filter is one. */
int weft_shm_subscribe(const weft_shm_client *c, const char *filter);

/* Unsubscribes from a filter subscribed before; returns once the router
 * has taken it. */
int weft_shm_unsubscribe(const weft_shm_client *c, const char *filter);

/*
 * Receives the next message into the caller's buffers, waiting at most
 * `timeout_ms` (0: only what is there; negative: until one comes).
 *   topic, topic_cap:     the topic is written NUL-terminated, so it needs
 *                         *topic_len + 1 bytes;
 *   payload, payload_cap: the payload (not terminated);
 *   *topic_len, *payload_len: the message's lengths, written on
 *                         WEFT_SHM_OK and on WEFT_SHM_ERR_BUFFER.
 * A buffer may be NULL only with capacity 0; the length pointers must not
 * be NULL.
 * Returns WEFT_SHM_OK (copied), WEFT_SHM_EMPTY (nothing in time),
 * WEFT_SHM_ERR_BUFFER (a buffer is too small: the lengths say what the
 * message needs and the message is kept: the next call returns it first),
 * or an error.
 */
int weft_shm_recv(const weft_shm_client *c, int64_t timeout_ms, char *topic, size_t topic_cap,
                  size_t *topic_len, void *payload, size_t payload_cap, size_t *payload_len);

/* Everything published is in the ring and the router is woken if it
 * sleeps. Also reports a router that went away (WEFT_SHM_ERR_CLOSED). */
int weft_shm_flush(const weft_shm_client *c);

/* Closes the connection (the router ends the session at once) and frees
 * the client. NULL is allowed. No other thread may use `c` any more. */
void weft_shm_close(weft_shm_client *c);

/* The calling thread's last error text ("" if none yet); valid until the
 * thread's next weft_shm_* call. */
const char *weft_shm_last_error(void);

/* A fixed description of a code (static storage). */
const char *weft_shm_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_SHM_H */
