/* admin.h — the admin listener: GET /healthz, GET /metrics, POST /reload and
 * POST /purge (cache invalidation), on its own address, served by the main
 * thread's event loop.
 *
 * Without admin.token_file the config only allows a loopback address (checked
 * by conf/); with it, every call needs "Authorization: Bearer <token>"
 * (compared in constant time) or gets 401.
 */
#ifndef VERGE_ADMIN_H
#define VERGE_ADMIN_H

#include <ev.h>

#include "../conf/config.h"

/* Provided by the server (proxy/main.c): builds and installs a new config
 * generation from the current config file. Returns 0 and the new generation
 * number, or -1 with the messages in `errors` (the old generation keeps
 * serving). Must be called on the main thread. */
int server_reload(struct config_errors *errors, unsigned *generation);

/* Binds the admin address of `config` and serves it on `loop`. Returns 0, or
 * -1 after logging why (address in use, ...). */
int admin_listener_start(struct ev_loop *loop, const struct config *config);
/* Takes the token of a new generation (the address cannot change without a
 * restart; a warning is logged when it did). */
void admin_listener_update(const struct config *config);
/* Closes the listener and every admin connection. */
void admin_listener_stop(void);

#endif
