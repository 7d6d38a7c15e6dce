/* A Modbus RTU slave that is not pymodbus: libmodbus on a serial device (one end of a pty pair),
 * one unit id, the same fixed pattern as libmodbus_server.c (written out by hand again).
 * Usage: libmodbus_rtu_server DEVICE UNIT (19200 8N1).  Prints "listening" once the port is open.
 * MODBUS_DEBUG=1 in the environment prints libmodbus's frame trace.
 * Requests for other unit ids get no answer, as on a real RS-485 line.  libmodbus then expects to
 * overhear the other unit's answer and waits up to its response timeout (set to 100 ms here) to
 * skip it; a request arriving within that window is swallowed as that answer.  So a master must
 * not address this slave sooner than 100 ms after asking a unit that stays silent. */
#include <errno.h>
#include <modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint16_t HOLDING[16] = {
    0x3FC0, 0x0000, 0x0000, 0x3FC0, /* 0: float32 1.5 ABCD, 2: CDAB */
    0xC03F, 0x0000, 0x0000, 0xC03F, /* 4: float32 1.5 BADC, 6: DCBA */
    0xFFFF, 0xFFFE, 0x3039, 0xFF85, /* 8: int32 -2 ABCD, 10: uint16 12345, 11: int16 -123 */
    0xC004, 0x0000, 0x0000, 0x0000, /* 12: float64 -2.5 ABCD; 16..31 zero and writable */
};
static const uint16_t INPUT[3] = {0x1234, 0x5678, 0x0005}; /* uint32 0x12345678 ABCD; bits 0,2 */
static const uint8_t COILS[4] = {1, 0, 1, 1}, DISCRETE[2] = {0, 1};

int main(int argc, char **argv) {
    if (argc != 3) return fprintf(stderr, "usage: %s DEVICE UNIT\n", argv[0]), 64;
    modbus_t *ctx = modbus_new_rtu(argv[1], 19200, 'N', 8, 1);
    modbus_mapping_t *map = modbus_mapping_new(16, 16, 32, 16);
    if (ctx == NULL || map == NULL) return fprintf(stderr, "setup: %s\n", modbus_strerror(errno)), 1;
    memcpy(map->tab_registers, HOLDING, sizeof HOLDING);
    memcpy(map->tab_input_registers, INPUT, sizeof INPUT);
    memcpy(map->tab_bits, COILS, sizeof COILS);
    memcpy(map->tab_input_bits, DISCRETE, sizeof DISCRETE);
    if (getenv("MODBUS_DEBUG")) modbus_set_debug(ctx, TRUE);
    if (modbus_set_slave(ctx, atoi(argv[2])) == -1 || modbus_set_response_timeout(ctx, 0, 100000) == -1 ||
        modbus_connect(ctx) == -1)
        return fprintf(stderr, "open %s: %s\n", argv[1], modbus_strerror(errno)), 1;
    printf("listening\n");
    fflush(stdout);

    for (;;) {
        uint8_t query[MODBUS_RTU_MAX_ADU_LENGTH];
        int rc = modbus_receive(ctx, query); /* 0: a frame for another unit, ignored */
        if (rc > 0) {
            modbus_reply(ctx, query, rc, map);
        } else if (rc == -1) {
            if (errno != EMBBADCRC && errno != EMBBADDATA && errno != ETIMEDOUT)
                return fprintf(stderr, "receive: %s\n", modbus_strerror(errno)), 2; /* port gone */
            modbus_flush(ctx); /* garbage on the line: drop it and wait for the next frame */
        }
    }
}
