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

/* `verge invoke FILE.lua | -c CONFIG --function NAME --event FILE|-
 * [--trigger T] [--json]`: runs the function once on the event in a real
 * worker, with serving's limits, and judges its result with serving's
 * validation; prints the result, the function log's lines, duration and
 * peak memory against the limits, and the verdict (as one JSON object with
 * --json). argv[0] is the first argument after "invoke". Returns the exit
 * status: 0 a valid result, 1 the function failed, 2 its result failed
 * validation, 3 bad arguments or input (one line each on stderr). */
int command_invoke(int argc, char **argv);

#endif
