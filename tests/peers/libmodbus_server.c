/* A Modbus TCP server that is not pymodbus: libmodbus, a fixed register pattern, many clients.
 * Usage: libmodbus_server PORT (listens on 127.0.0.1).  Prints "listening" once ready; exit
 * status 3 means the port was taken (the caller retries).  The pattern is what
 * tests/peers/test_peer_libmodbus.py expects, written out by hand. */
#include <errno.h>
#include <modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

static const uint16_t HOLDING[16] = {
    0x3FC0, 0x0000, 0x0000, 0x3FC0, /* 0: float32 1.5 ABCD, 2: CDAB */
    0xC03F, 0x0000, 0x0000, 0xC03F, /* 4: float32 1.5 BADC, 6: DCBA */
    0xFFFF, 0xFFFE, 0x3039, 0xFF85, /* 8: int32 -2 ABCD, 10: uint16 12345, 11: int16 -123 */
    0xC004, 0x0000, 0x0000, 0x0000, /* 12: float64 -2.5 ABCD; 16..31 zero and writable */
};
static const uint16_t INPUT[3] = {0x1234, 0x5678, 0x0005}; /* uint32 0x12345678 ABCD; bits 0,2 */
static const uint8_t COILS[4] = {1, 0, 1, 1}, DISCRETE[2] = {0, 1};

int main(int argc, char **argv) {
    if (argc != 2) return fprintf(stderr, "usage: %s PORT\n", argv[0]), 64;
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", atoi(argv[1]));
    modbus_mapping_t *map = modbus_mapping_new(16, 16, 32, 16);
    if (ctx == NULL || map == NULL) return fprintf(stderr, "setup: %s\n", modbus_strerror(errno)), 1;
    memcpy(map->tab_registers, HOLDING, sizeof HOLDING);
    memcpy(map->tab_input_registers, INPUT, sizeof INPUT);
    memcpy(map->tab_bits, COILS, sizeof COILS);
    memcpy(map->tab_input_bits, DISCRETE, sizeof DISCRETE);

    int server = modbus_tcp_listen(ctx, 8);
    if (server < 0) {
        int err = errno;
        fprintf(stderr, "listen: %s\n", modbus_strerror(err));
        return err == EADDRINUSE ? 3 : 1;
    }
    printf("listening\n");
    fflush(stdout);

    fd_set all;
    FD_ZERO(&all);
    FD_SET(server, &all);
    int fdmax = server;
    for (;;) {
        fd_set ready = all;
        if (select(fdmax + 1, &ready, NULL, NULL, NULL) < 0) return perror("select"), 1;
        for (int fd = 0; fd <= fdmax; fd++) {
            if (!FD_ISSET(fd, &ready)) continue;
            if (fd == server) { /* new client */
                int client = accept(server, NULL, NULL);
                if (client >= 0) FD_SET(client, &all);
                if (client > fdmax) fdmax = client;
                continue;
            }
            uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
            modbus_set_socket(ctx, fd);
            int rc = modbus_receive(ctx, query);
            if (rc > 0) modbus_reply(ctx, query, rc, map);
            else if (rc == -1) close(fd), FD_CLR(fd, &all); /* client gone */
        }
    }
}
