/*
 * echo_server.c: a libuv echo server that ends connections with libfarewell.
 *
 * The protocol is farewell's FLP/1, shortened: a client sends "HELLO <id>"
 * first (the server answers "WELCOME <id>"), then every line is echoed back;
 * "QUIT" ends it. The server disconnects a client that fails the handshake,
 * stays silent too long or sends too long a line, with a goodbye line
 * ("BYE bad-handshake", "BYE handshake-timeout", "BYE idle", ...).
 *
 * It never writes the goodbye itself and never closes such a connection
 * itself: it stops reading, dup()s the descriptor from uv_fileno(), hands the
 * duplicate and the goodbye to libfarewell, and uv_close()s the handle.
 * Closing one of two descriptors of a socket sends nothing (no FIN), so from
 * then on the library alone ends the connection: goodbye, wait for the
 * client's FIN (the client keeps TIME-WAIT), or reset once the goodbye is
 * ACKed. See README.md for why, and what must not be done.
 *
 * Usage: echo_server PORT [HANDSHAKE_MS [IDLE_MS [GRACE_MS]]]
 * Listens on 127.0.0.1:PORT; prints one "outcome ..." line per teardown.
 * SIGTERM or SIGINT: says "BYE shutdown" to everyone, then frees the closer.
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "farewell.h"

#define MAX_LINE 4096

typedef struct client {
    uv_tcp_t tcp;
    uv_timer_t timer;
    char line[MAX_LINE];
    size_t len;
    int greeted;
    int pending_writes; /* uv_write requests whose callback has not run */
    const char *bye;    /* the goodbye, once the server decided to end */
    int open_handles;
    int listed; /* in `clients` */
    struct client *prev, *next;
} client;

typedef struct write_req {
    uv_write_t req;
    char data[];
} write_req;

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sigterm_handle, sigint_handle;
static fw_closer *closer;
static client *clients;
static uint64_t handshake_ms = 5000, idle_ms = 30000;

/* Runs on libfarewell's thread, once per teardown. */
static void on_outcome(const fw_outcome *o, void *user) {
    (void)user;
    printf("outcome fd=%d policy=%s ending=%s time_wait=%s goodbye=%s written=%llu "
           "drained=%llu unacked=%lld state=%s elapsed_ms=%.1f local=%s peer=%s\n",
           o->fd, o->policy, o->ending_name, o->time_wait_name, o->goodbye_name,
           (unsigned long long)o->goodbye_written, (unsigned long long)o->bytes_drained,
           (long long)o->unacked_at_close, o->state_at_close_name,
           (double)o->elapsed_us / 1000.0, o->local, o->peer);
    fflush(stdout);
}

static void on_handle_closed(uv_handle_t *handle) {
    client *c = handle->data;
    if (--c->open_handles == 0) free(c);
}

static void unlist(client *c) {
    if (!c->listed) return;
    if (c->prev) c->prev->next = c->next; else clients = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->listed = 0;
}

static void forget(client *c) {
    unlist(c);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* The recipe: dup the descriptor, hand the duplicate over, close the handle. */
static void hand_over(client *c) {
    uv_os_fd_t fd;
    int rc = uv_fileno((uv_handle_t *)&c->tcp, &fd);
    int dup_fd = rc == 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (dup_fd < 0) {
        fprintf(stderr, "echo_server: cannot duplicate the descriptor; closing plainly\n");
    } else {
        rc = fw_close(closer, dup_fd, (const uint8_t *)c->bye, strlen(c->bye));
        if (rc != FW_OK) {
            fprintf(stderr, "echo_server: fw_close: %s\n", fw_strerror(rc));
            if (rc != FW_ERR_REGISTER && rc != FW_ERR_PANIC) close(dup_fd); /* still ours */
        }
    }
    forget(c); /* uv_close: closes libuv's descriptor, which sends nothing */
}

/* Decide to end: stop reading and timing, hand over once no write is pending. */
static void say_goodbye(client *c, const char *bye) {
    if (c->bye) return;
    c->bye = bye;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
    if (c->pending_writes == 0) hand_over(c);
    /* else on_write hands it over after the last write: the goodbye must follow it */
}

static void on_write(uv_write_t *req, int status) {
    client *c = req->data;
    (void)status;
    free(req);
    if (--c->pending_writes == 0 && c->bye) hand_over(c);
}

static void send_text(client *c, const char *text, size_t len) {
    write_req *w = malloc(sizeof *w + len);
    uv_buf_t buf;
    if (!w) { say_goodbye(c, "BYE busy\n"); return; }
    memcpy(w->data, text, len);
    buf = uv_buf_init(w->data, (unsigned int)len);
    w->req.data = c;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
        free(w);
        return;
    }
    c->pending_writes++;
}

static void on_timeout(uv_timer_t *timer) {
    client *c = timer->data;
    say_goodbye(c, c->greeted ? "BYE idle\n" : "BYE handshake-timeout\n");
}

static void handle_line(client *c, char *line, size_t len) {
    if (len > 0 && line[len - 1] == '\r') len--;
    if (!c->greeted) {
        if (len > 6 && memcmp(line, "HELLO ", 6) == 0) {
            char reply[MAX_LINE + 16];
            int n = snprintf(reply, sizeof reply, "WELCOME %.*s\n", (int)(len - 6), line + 6);
            c->greeted = 1;
            send_text(c, reply, (size_t)n);
            uv_timer_start(&c->timer, on_timeout, idle_ms, 0);
        } else {
            say_goodbye(c, "BYE bad-handshake\n");
        }
        return;
    }
    if (len == 4 && memcmp(line, "QUIT", 4) == 0) {
        say_goodbye(c, "BYE quit\n");
        return;
    }
    line[len] = '\n';
    send_text(c, line, len + 1);
    uv_timer_start(&c->timer, on_timeout, idle_ms, 0);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    client *c = handle->data;
    (void)suggested;
    *buf = uv_buf_init(c->line + c->len, (unsigned int)(MAX_LINE - c->len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    client *c = stream->data;
    size_t start = 0, i;
    (void)buf;
    if (nread < 0) {
        /* The client closed (or reset) first: closing now is a passive close,
         * so the client keeps TIME-WAIT, not us. */
        forget(c);
        return;
    }
    c->len += (size_t)nread;
    for (i = 0; i < c->len && !c->bye; i++) {
        if (c->line[i] == '\n') {
            handle_line(c, c->line + start, i - start);
            start = i + 1;
        }
    }
    if (c->bye) return;
    memmove(c->line, c->line + start, c->len - start);
    c->len -= start;
    if (c->len == MAX_LINE) say_goodbye(c, "BYE line-too-long\n");
}

static void on_connection(uv_stream_t *listener, int status) {
    client *c;
    if (status < 0) return;
    c = calloc(1, sizeof *c);
    if (!c) return;
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    c->listed = 1;
    c->next = clients;
    if (clients) clients->prev = c;
    clients = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        forget(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    uv_timer_start(&c->timer, on_timeout, handshake_ms, 0);
}

static void on_signal(uv_signal_t *handle, int signum) {
    (void)handle;
    fprintf(stderr, "echo_server: signal %d: saying goodbye to everyone\n", signum);
    uv_close((uv_handle_t *)&server, NULL);
    uv_close((uv_handle_t *)&sigterm_handle, NULL);
    uv_close((uv_handle_t *)&sigint_handle, NULL);
    while (clients) {
        client *c = clients;
        if (c->bye) unlist(c); /* waits for a write: on_write hands it over */
        else say_goodbye(c, "BYE shutdown\n");
    }
}

int main(int argc, char **argv) {
    struct sockaddr_in addr;
    fw_options *options;
    fw_stats stats;
    int port, rc;

    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [HANDSHAKE_MS [IDLE_MS [GRACE_MS]]]\n", argv[0]);
        return 2;
    }
    port = atoi(argv[1]);
    if (argc > 2) handshake_ms = strtoull(argv[2], NULL, 10);
    if (argc > 3) idle_ms = strtoull(argv[3], NULL, 10);

    options = fw_options_new();
    if (!options) return 1;
    fw_options_set_outcome_callback(options, on_outcome, NULL);
    if (argc > 4) fw_options_set_grace_ms(options, strtoull(argv[4], NULL, 10));
    rc = fw_closer_new(options, &closer);
    fw_options_free(options);
    if (rc != FW_OK) {
        fprintf(stderr, "echo_server: fw_closer_new: %s\n", fw_strerror(rc));
        return 1;
    }

    loop = uv_default_loop();
    uv_tcp_init(loop, &server);
    uv_ip4_addr("127.0.0.1", port, &addr);
    rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&server, 128, on_connection);
    if (rc != 0) {
        fprintf(stderr, "echo_server: listen on 127.0.0.1:%d: %s\n", port, uv_strerror(rc));
        return 1;
    }
    uv_signal_init(loop, &sigterm_handle);
    uv_signal_start(&sigterm_handle, on_signal, SIGTERM);
    uv_signal_init(loop, &sigint_handle);
    uv_signal_start(&sigint_handle, on_signal, SIGINT);
    printf("listening on 127.0.0.1:%d (libfarewell %s)\n", port, fw_version());
    fflush(stdout);

    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);

    /* Every connection is handed over; give the teardowns 2 s, then hurry them. */
    stats.size = sizeof stats;
    fw_closer_stats(closer, &stats);
    rc = fw_closer_free(closer, 2000);
    printf("closer freed: %s; handed over %llu, in flight at exit %llu\n", fw_strerror(rc),
           (unsigned long long)stats.started, (unsigned long long)stats.in_flight);
    return rc == FW_OK ? 0 : 1;
}
