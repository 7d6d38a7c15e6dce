/* A fleet of Modbus TCP slaves in one process, on libmodbus: the benchmarks' server, so that the
 * server costs ~7 µs per request and the gateway under test is what is measured.
 *
 * Usage: fleet_server N [REGISTERS]
 * Listens on N free ports of 127.0.0.1 (port 0: the kernel picks), prints them on one line
 * ("ports P1 P2 ..."), then serves every client of every port with select().  Every request
 * advances a counter and rewrites the holding registers from it, so each poll sees new values.
 * Any unit id is answered (libmodbus does not filter unit ids over TCP).
 * On standard input: a line "stats" prints "requests R connections C" (R since the last
 * "stats"); end of input stops the server. */
#include <errno.h>
#include <modbus.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#define MAX_PORTS 512

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: %s N [REGISTERS]\n", argv[0]), 64;
    int n = atoi(argv[1]);
    int registers = argc > 2 ? atoi(argv[2]) : 64;
    if (n < 1 || n > MAX_PORTS || registers < 1 || registers > 10000) return fprintf(stderr, "bad arguments\n"), 64;
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", 0);
    modbus_mapping_t *map = modbus_mapping_new(registers, registers, registers, registers);
    if (ctx == NULL || map == NULL) return fprintf(stderr, "setup: %s\n", modbus_strerror(errno)), 1;

    fd_set all, listeners;
    FD_ZERO(&all);
    FD_ZERO(&listeners);
    FD_SET(0, &all);
    int fdmax = 0;
    printf("ports");
    for (int i = 0; i < n; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(s, 16) < 0 ||
            getsockname(s, (struct sockaddr *)&addr, &len) < 0)
            return perror("listen"), 1;
        FD_SET(s, &all);
        FD_SET(s, &listeners);
        if (s > fdmax) fdmax = s;
        printf(" %d", ntohs(addr.sin_port));
    }
    printf("\n");
    fflush(stdout);

    unsigned long requests = 0, tick = 0;
    int connections = 0;
    for (;;) {
        fd_set ready = all;
        if (select(fdmax + 1, &ready, NULL, NULL, NULL) < 0) {
            if (errno == EINTR) continue;
            return perror("select"), 1;
        }
        for (int fd = 0; fd <= fdmax; fd++) {
            if (!FD_ISSET(fd, &ready)) continue;
            if (fd == 0) { /* a command */
                char line[64];
                if (fgets(line, sizeof line, stdin) == NULL) return 0; /* end of input: stop */
                if (strncmp(line, "stats", 5) == 0) {
                    printf("requests %lu connections %d\n", requests, connections);
                    fflush(stdout);
                    requests = 0;
                }
                continue;
            }
            if (FD_ISSET(fd, &listeners)) { /* a new client */
                int client = accept(fd, NULL, NULL);
                if (client >= 0 && client < FD_SETSIZE) {
                    FD_SET(client, &all);
                    if (client > fdmax) fdmax = client;
                    connections++;
                } else if (client >= 0) {
                    close(client);
                }
                continue;
            }
            uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
            modbus_set_socket(ctx, fd);
            int rc = modbus_receive(ctx, query);
            if (rc > 0) {
                tick++;
                for (int r = 0; r < registers; r++) map->tab_registers[r] = (uint16_t)((tick + (unsigned long)r) & 0x7FFF);
                requests++;
                modbus_reply(ctx, query, rc, map);
            } else if (rc == -1) { /* client gone */
                close(fd);
                FD_CLR(fd, &all);
                connections--;
            }
        }
    }
}
