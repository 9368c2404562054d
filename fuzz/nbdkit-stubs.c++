// What script-outcome.c++ calls in nbdkit, for the reply fuzzer (no nbdkit in that process).
// The formats are still checked by the compiler through nbdkit-plugin.h's declarations.

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

void nbdkit_error(const char*, ...) {}
void nbdkit_debug(const char*, ...) {}
void nbdkit_set_error(int) {}
