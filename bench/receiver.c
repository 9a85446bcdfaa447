/* A minimal SMTP receiver for bench/send.py: accepts every message and counts it.
 *
 * Postfix's smtp-sink is single-threaded and saturates one core at about 3,600 messages/s
 * of 82 KB, so against it every sender looks close to the limit. This one reads with large
 * buffers, one thread per connection, finds the end of DATA with memmem, takes BDAT
 * (RFC 3030 CHUNKING) by length and answers pipelined commands (RFC 2920) in one write.
 *
 *   cc -O2 -pthread -o receiver bench/receiver.c
 *   ./receiver 127.0.0.1 PORT COUNTFILE     # COUNTFILE gets the count every 50 ms
 *
 * Loopback only; it stores nothing. Not part of the product.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF (1 << 20)

static atomic_long messages;

struct conn {
    int fd;
    char *buf;
    size_t len;
    char *out;
    size_t outlen;
};

static void reply(struct conn *c, const char *text) {
    size_t n = strlen(text);
    if (c->outlen + n > BUF) return;
    memcpy(c->out + c->outlen, text, n);
    c->outlen += n;
}

static int flush(struct conn *c) {
    size_t off = 0;
    while (off < c->outlen) {
        ssize_t w = write(c->fd, c->out + off, c->outlen - off);
        if (w <= 0) return -1;
        off += (size_t)w;
    }
    c->outlen = 0;
    return 0;
}

/* Read more into the buffer; 0 on EOF or error. */
static int fill(struct conn *c) {
    if (c->len == BUF) return 0;
    ssize_t r = read(c->fd, c->buf + c->len, BUF - c->len);
    if (r <= 0) return 0;
    c->len += (size_t)r;
    return 1;
}

static void consume(struct conn *c, size_t n) {
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Skip `n` bytes of a BDAT chunk, reading as needed; 0 on EOF. */
static int skip(struct conn *c, size_t n) {
    while (n) {
        if (c->len == 0 && !fill(c)) return 0;
        size_t take = c->len < n ? c->len : n;
        consume(c, take);
        n -= take;
    }
    return 1;
}

static void *serve(void *arg) {
    struct conn *c = arg;
    int in_data = 0;
    reply(c, "220 receiver.example.org ESMTP\r\n");
    if (flush(c)) goto done;
    for (;;) {
        if (in_data) {
            char *end = memmem(c->buf, c->len, "\r\n.\r\n", 5);
            if (!end) {
                /* keep the last 4 bytes: the terminator may straddle two reads */
                if (c->len > 4) consume(c, c->len - 4);
                if (!fill(c)) goto done;
                continue;
            }
            consume(c, (size_t)(end - c->buf) + 5);
            in_data = 0;
            atomic_fetch_add(&messages, 1);
            reply(c, "250 2.0.0 ok\r\n");
            continue;
        }
        char *eol = memchr(c->buf, '\n', c->len);
        if (!eol) {
            if (c->outlen && flush(c)) goto done; /* answer what came before waiting */
            if (!fill(c)) goto done;
            continue;
        }
        size_t n = (size_t)(eol - c->buf) + 1;
        char line[512];
        size_t m = n < sizeof line ? n : sizeof line - 1;
        memcpy(line, c->buf, m);
        line[m] = 0;
        consume(c, n);
        if (!strncasecmp(line, "EHLO", 4)) {
            reply(c, "250-receiver.example.org\r\n250-PIPELINING\r\n250-CHUNKING\r\n"
                     "250-8BITMIME\r\n250 SIZE 104857600\r\n");
        } else if (!strncasecmp(line, "HELO", 4) || !strncasecmp(line, "MAIL", 4) ||
                   !strncasecmp(line, "RCPT", 4) || !strncasecmp(line, "RSET", 4) ||
                   !strncasecmp(line, "NOOP", 4)) {
            reply(c, "250 2.0.0 ok\r\n");
        } else if (!strncasecmp(line, "DATA", 4)) {
            reply(c, "354 go ahead\r\n");
            if (flush(c)) goto done;
            in_data = 1;
            /* the data may start right after DATA in the buffer: look for a lone dot first */
            if (c->len >= 3 && !memcmp(c->buf, ".\r\n", 3)) {
                consume(c, 3);
                in_data = 0;
                atomic_fetch_add(&messages, 1);
                reply(c, "250 2.0.0 ok\r\n");
            }
        } else if (!strncasecmp(line, "BDAT", 4)) {
            size_t size = strtoul(line + 5, NULL, 10);
            if (!skip(c, size)) goto done;
            if (strcasestr(line, "LAST")) {
                atomic_fetch_add(&messages, 1);
                reply(c, "250 2.0.0 ok\r\n");
            } else {
                reply(c, "250 2.0.0 chunk ok\r\n");
            }
        } else if (!strncasecmp(line, "QUIT", 4)) {
            reply(c, "221 2.0.0 bye\r\n");
            flush(c);
            goto done;
        } else {
            reply(c, "502 5.5.2 not here\r\n");
        }
        if (c->len == 0 && flush(c)) goto done;
    }
done:
    close(c->fd);
    free(c->buf);
    free(c->out);
    free(c);
    return NULL;
}

static void *report(void *path) {
    for (;;) {
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "%ld\n", atomic_load(&messages));
            fclose(f);
        }
        usleep(50000);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s 127.0.0.1 PORT COUNTFILE\n", argv[0]);
        return 2;
    }
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1 ||
        ntohl(addr.sin_addr.s_addr) >> 24 != 127) {
        fprintf(stderr, "loopback addresses only\n");
        return 2;
    }
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) || listen(s, 1024)) {
        perror("bind");
        return 1;
    }
    pthread_t t;
    pthread_create(&t, NULL, report, argv[3]);
    for (;;) {
        int fd = accept(s, NULL, NULL);
        if (fd < 0) continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        c->fd = fd;
        c->buf = malloc(BUF);
        c->out = malloc(BUF);
        pthread_create(&t, NULL, serve, c);
        pthread_detach(t);
    }
}
