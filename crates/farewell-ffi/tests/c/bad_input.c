/*
 * bad_input.c: every kind of bad input at libfarewell's boundary gets its
 * documented status code, a descriptor refused stays the caller's, and
 * shutdown while teardowns run hurries them and frees everything. Run by
 * tests/c/main.rs, natively and under valgrind. Prints one line per check;
 * exits 1 if any check failed.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "farewell.h"

static int failures;

static void expect(const char *what, int got, int want) {
    printf("%-58s %4d %s%s\n", what, got, fw_strerror(got), got == want ? "" : "  <-- WRONG");
    if (got != want) {
        printf("    expected %d (%s)\n", want, fw_strerror(want));
        failures++;
    }
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int outcomes, at_deadline, confirmed;

static void on_outcome(const fw_outcome *o, void *user) {
    (void)user;
    pthread_mutex_lock(&lock);
    outcomes++;
    if (o->ending == FW_ENDING_RESET_AT_DEADLINE) at_deadline++;
    if (o->goodbye == FW_DELIVERY_CONFIRMED) confirmed++;
    pthread_mutex_unlock(&lock);
    printf("outcome fd=%d ending=%s time_wait=%s goodbye=%s\n", o->fd, o->ending_name,
           o->time_wait_name, o->goodbye_name);
}

/* A listening TCP socket on 127.0.0.1 (port chosen by the kernel). */
static int listener(struct sockaddr_in *addr) {
    socklen_t len = sizeof *addr;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)addr, sizeof *addr) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)addr, &len) != 0) {
        perror("listener");
        exit(2);
    }
    return fd;
}

/* A connected pair over loopback: *client and the accepted server side. */
static int connected(int lfd, const struct sockaddr_in *addr, int *client) {
    int server;
    *client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (*client < 0 || connect(*client, (const struct sockaddr *)addr, sizeof *addr) != 0) {
        perror("connect");
        exit(2);
    }
    server = accept(lfd, NULL, NULL);
    if (server < 0) {
        perror("accept");
        exit(2);
    }
    return server;
}

/* True when fd is still open (a refused descriptor must stay the caller's). */
static int is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

int main(void) {
    static const char bye[] = "BYE shutdown\n";
    static uint8_t big[16];
    fw_options *options;
    fw_closer *closer = NULL;
    fw_stats stats;
    struct sockaddr_in addr;
    int lfd, file, udp, unix_pair[2], unconnected, client1, client2, server1, server2, rc;

    printf("libfarewell %s\n", fw_version());

    /* Options. */
    options = fw_options_new();
    expect("fw_options_set_policy(NULL options)", fw_options_set_policy(NULL, "plain"), FW_ERR_NULL);
    expect("fw_options_set_policy(NULL name)", fw_options_set_policy(options, NULL), FW_ERR_NULL);
    expect("fw_options_set_policy(\"linger\")", fw_options_set_policy(options, "linger"), FW_ERR_UNKNOWN_POLICY);
    expect("fw_options_set_threads(0)", fw_options_set_threads(options, 0), FW_ERR_INVALID_ARGUMENT);
    expect("fw_options_set_threads(FW_MAX_THREADS + 1)", fw_options_set_threads(options, FW_MAX_THREADS + 1), FW_ERR_INVALID_ARGUMENT);
    expect("fw_options_set_policy(\"lingering\")", fw_options_set_policy(options, "lingering"), FW_OK);
    expect("fw_options_set_drain_limit(...)", fw_options_set_drain_limit(options, 100), FW_OK);
    expect("fw_closer_new(lingering + a peer-first setting)", fw_closer_new(options, &closer), FW_ERR_INVALID_ARGUMENT);
    expect("  ... leaves *closer NULL", closer == NULL ? FW_OK : FW_ERR_PANIC, FW_OK);
    fw_options_free(options);
    options = fw_options_new();
    expect("fw_options_set_policy(\"abort\")", fw_options_set_policy(options, "abort"), FW_OK);
    expect("fw_options_set_stall_timeout_ms(...)", fw_options_set_stall_timeout_ms(options, 100), FW_OK);
    expect("fw_closer_new(abort + a stall timeout)", fw_closer_new(options, &closer), FW_ERR_INVALID_ARGUMENT);
    expect("  ... leaves *closer NULL", closer == NULL ? FW_OK : FW_ERR_PANIC, FW_OK);
    fw_options_free(options);
    expect("fw_closer_new(NULL, NULL)", fw_closer_new(NULL, NULL), FW_ERR_NULL);
    fw_options_free(NULL);

    options = fw_options_new();
    expect("fw_options_set_policy(\"peer-first\")", fw_options_set_policy(options, "peer-first"), FW_OK);
    expect("fw_options_set_grace_ms(10000)", fw_options_set_grace_ms(options, 10000), FW_OK);
    expect("fw_options_set_threads(2)", fw_options_set_threads(options, 2), FW_OK);
    expect("fw_options_set_outcome_callback(...)", fw_options_set_outcome_callback(options, on_outcome, NULL), FW_OK);
    expect("fw_closer_new(peer-first, grace 10 s)", fw_closer_new(options, &closer), FW_OK);
    fw_options_free(options);

    /* Descriptors that are not connected TCP sockets. */
    lfd = listener(&addr);
    file = open("/dev/null", O_RDONLY | O_CLOEXEC);
    udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    unconnected = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (file < 0 || udp < 0 || unconnected < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, unix_pair) != 0) {
        perror("setup");
        return 2;
    }
    expect("fw_close(NULL closer)", fw_close(NULL, file, NULL, 0), FW_ERR_NULL);
    expect("fw_close(fd -1)", fw_close(closer, -1, NULL, 0), FW_ERR_BAD_FD);
    expect("fw_close(fd never opened: 4000)", fw_close(closer, 4000, NULL, 0), FW_ERR_BAD_FD);
    expect("fw_close(/dev/null)", fw_close(closer, file, NULL, 0), FW_ERR_NOT_SOCKET);
    expect("fw_close(UDP socket)", fw_close(closer, udp, NULL, 0), FW_ERR_NOT_TCP);
    expect("fw_close(Unix stream socket)", fw_close(closer, unix_pair[0], NULL, 0), FW_ERR_NOT_TCP);
    expect("fw_close(listening TCP socket)", fw_close(closer, lfd, NULL, 0), FW_ERR_LISTENING);
    expect("fw_close(unconnected TCP socket)", fw_close(closer, unconnected, NULL, 0), FW_ERR_NOT_CONNECTED);
    expect("  ... every refused descriptor is still open",
           is_open(file) && is_open(udp) && is_open(unix_pair[0]) && is_open(lfd) && is_open(unconnected)
               ? FW_OK : FW_ERR_PANIC, FW_OK);
    close(file);
    close(udp);
    close(unix_pair[0]);
    close(unix_pair[1]);
    close(unconnected);

    /* Goodbyes. */
    server1 = connected(lfd, &addr, &client1);
    expect("fw_close(goodbye NULL, len 5)", fw_close(closer, server1, NULL, 5), FW_ERR_NULL);
    expect("fw_close(len FW_GOODBYE_MAX + 1; buffer not read)", fw_close(closer, server1, big, FW_GOODBYE_MAX + 1), FW_ERR_GOODBYE_TOO_LONG);
    expect("fw_close(len SIZE_MAX)", fw_close(closer, server1, big, (size_t)-1), FW_ERR_GOODBYE_TOO_LONG);
    expect("  ... the descriptor is still open", is_open(server1) ? FW_OK : FW_ERR_PANIC, FW_OK);

    /* Hand-overs: with a goodbye, twice, and with no goodbye (NULL, 0). */
    expect("fw_close(connection, goodbye)", fw_close(closer, server1, (const uint8_t *)bye, strlen(bye)), FW_OK);
    expect("fw_close(same descriptor again)", fw_close(closer, server1, (const uint8_t *)bye, strlen(bye)), FW_ERR_ALREADY_OWNED);
    {
        fw_closer *other = NULL;
        expect("fw_closer_new(NULL options): a second closer", fw_closer_new(NULL, &other), FW_OK);
        expect("fw_close(same descriptor, to the second closer)", fw_close(other, server1, NULL, 0), FW_ERR_ALREADY_OWNED);
        expect("fw_closer_free(second closer, 0), nothing in flight", fw_closer_free(other, 0), FW_OK);
    }
    server2 = connected(lfd, &addr, &client2);
    expect("fw_close(connection, NULL goodbye, len 0)", fw_close(closer, server2, NULL, 0), FW_OK);
    expect("fw_close(same descriptor again, no goodbye)", fw_close(closer, server2, NULL, 0), FW_ERR_ALREADY_OWNED);

    /* Counters. */
    expect("fw_closer_stats(NULL closer)", fw_closer_stats(NULL, &stats), FW_ERR_NULL);
    expect("fw_closer_stats(NULL stats)", fw_closer_stats(closer, NULL), FW_ERR_NULL);
    stats.size = 0;
    expect("fw_closer_stats(size 0)", fw_closer_stats(closer, &stats), FW_ERR_INVALID_ARGUMENT);
    stats.size = sizeof stats;
    expect("fw_closer_stats(...)", fw_closer_stats(closer, &stats), FW_OK);
    expect("  ... 2 started, 2 in flight", stats.started == 2 && stats.in_flight == 2 ? FW_OK : FW_ERR_PANIC, FW_OK);
    expect("fw_closer_ending_count(NULL, ...) is 0", (int)fw_closer_ending_count(NULL, FW_ENDING_PEER_CLOSED), 0);
    expect("fw_closer_ending_count(closer, 9999) is 0", (int)fw_closer_ending_count(closer, 9999), 0);

    /* Names and descriptions of codes this library does not know. */
    expect("fw_ending_name(9999) is \"other\"", strcmp(fw_ending_name(9999), "other"), 0);
    expect("fw_time_wait_name(9999) is \"other\"", strcmp(fw_time_wait_name(9999), "other"), 0);
    expect("fw_delivery_name(9999) is \"other\"", strcmp(fw_delivery_name(9999), "other"), 0);
    expect("fw_strerror(12345) is \"unknown status code\"", strcmp(fw_strerror(12345), "unknown status code"), 0);

    /* Shutdown while both teardowns wait in their 10 s grace (the clients
     * never close): deadline 300 ms, then hurried to a reset. */
    expect("fw_closer_free(closer, 300) while 2 teardowns run", fw_closer_free(closer, 300), FW_OK);
    expect("  ... 2 outcomes, both reset-at-deadline", outcomes == 2 && at_deadline == 2 ? FW_OK : FW_ERR_PANIC, FW_OK);
    expect("  ... the goodbye confirmed delivered", confirmed >= 1 ? FW_OK : FW_ERR_PANIC, FW_OK);
    expect("fw_closer_free(NULL, 0)", fw_closer_free(NULL, 0), FW_OK);

    /* A freed closer used again: undefined by the header, but the magic word
     * turns the common misuse into an error code, never a crash. (Not under
     * valgrind, which rightly reports the read of freed memory.) */
    if (!getenv("FW_TEST_UNDER_VALGRIND")) {
        expect("fw_closer_free(closer, 0) twice", fw_closer_free(closer, 0), FW_ERR_NOT_A_CLOSER);
        expect("fw_close(freed closer, ...)", fw_close(closer, client1, NULL, 0), FW_ERR_NOT_A_CLOSER);
    }

    /* The client with the goodbye got it before the reset. */
    {
        char got[64] = {0};
        ssize_t n = recv(client1, got, sizeof got - 1, 0);
        printf("client 1 read %zd bytes: %s", n, n > 0 ? got : "\n");
        expect("  ... client 1 got the goodbye", n == (ssize_t)strlen(bye) && memcmp(got, bye, strlen(bye)) == 0 ? FW_OK : FW_ERR_PANIC, FW_OK);
    }
    close(client1);
    close(client2);
    close(lfd);

    rc = failures == 0 ? 0 : 1;
    printf("%s: %d wrong\n", rc == 0 ? "all as documented" : "FAILED", failures);
    return rc;
}
