#include "tbx_shim.h"
#include <stdlib.h>
#include <isa-l/igzip_lib.h>

struct tbx_inflate {
    struct inflate_state state;
};

tbx_inflate *tbx_inflate_create(void) {
    tbx_inflate *inflater = malloc(sizeof(tbx_inflate));
    if (inflater == NULL) return NULL;
    isal_inflate_init(&inflater->state);
    inflater->state.crc_flag = ISAL_GZIP;
    return inflater;
}

void tbx_inflate_reset(tbx_inflate *inflater) {
    isal_inflate_reset(&inflater->state);
    inflater->state.crc_flag = ISAL_GZIP;
}

void tbx_inflate_free(tbx_inflate *inflater) {
    free(inflater);
}

int tbx_inflate_step(tbx_inflate *inflater, const void *input, size_t input_size, void *output, size_t output_size,
                     size_t *consumed, size_t *produced, int *finished) {
    struct inflate_state *state = &inflater->state;
    uint32_t in = input_size > UINT32_MAX ? UINT32_MAX : (uint32_t)input_size;
    uint32_t out = output_size > UINT32_MAX ? UINT32_MAX : (uint32_t)output_size;
    state->next_in = (uint8_t *)input;
    state->avail_in = in;
    state->next_out = output;
    state->avail_out = out;
    int status = isal_inflate(state);
    *consumed = in - state->avail_in;
    *produced = out - state->avail_out;
    *finished = state->block_state == ISAL_BLOCK_FINISH;
    return status;
}
