/* commands.h — verge's local-testing commands (issue 6), beside `serve` and
 * `check` in main.c.
 */
#ifndef VERGE_COMMANDS_H
#define VERGE_COMMANDS_H

/* `verge event TRIGGER --url URL [options]`: prints the Lambda@Edge event
 * JSON for that trigger, made by the encoder the proxy uses (hooks/event.c)
 * the way the proxy fills it. argv[0] is the trigger. Returns the exit
 * status: 0, or 2 with a one-line error on stderr for bad arguments. */
int command_event(int argc, char **argv);

#endif
