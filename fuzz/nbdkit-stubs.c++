// What the plugin code linked into the fuzz targets calls in nbdkit (no nbdkit in those
// processes): logging and errors go nowhere.
// The formats are still checked by the compiler through nbdkit-plugin.h's declarations.

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

void nbdkit_error(const char*, ...) {}
void nbdkit_debug(const char*, ...) {}
void nbdkit_set_error(int) {}
void nbdkit_shutdown(void) {}
